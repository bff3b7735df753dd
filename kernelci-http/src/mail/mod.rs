//! Outgoing e-mail (invites, password resets) and e-mail address checks.
//!
//! [`Mailer::send`] delivers one plain-text message through the configured SMTP
//! server with [lettre](https://lettre.rs) over the workspace's rustls:
//!
//! - [`SmtpTls::Starttls`] (the default, as the reference for every port but 465):
//!   a plain connection that must be upgraded with `STARTTLS` before anything else
//!   is sent; a server that does not offer it is an error, never a fallback to
//!   clear text.
//! - [`SmtpTls::Tls`] (the default on port 465): TLS from the first byte.
//! - [`SmtpTls::None`]: clear text, for a trusted relay on the same host or pod.
//!
//! The server's certificate is verified against the system's root certificates
//! (`/etc/ssl/certs`), plus the certificates of `SMTP_CA_FILE` when set (a private
//! CA, or a relay's self-signed certificate); the name checked is `SMTP_HOST`.
//! There is no setting that turns verification off.
//!
//! With a password, the client logs in as `EMAIL_SENDER` (AUTH PLAIN or LOGIN, as
//! the server offers); without one it does not log in. With [`SmtpTls::None`] a
//! password is refused unless the host is this machine (it would cross the network
//! in clear text). One delivery (connect,
//! handshake, every command, the message) must end within
//! [`SmtpConfig::timeout_seconds`].
//!
//! Callers swallow failures as API.md §4 says: an invite answers
//! `email_sent: false`, forgot-password still answers 202; the reason is logged.

mod address;

pub use address::normalize_address;

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpTls};

/// Why a message was not sent, or why the mailer cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// No SMTP settings: nothing is ever sent.
    #[error("no SMTP server is configured")]
    NotConfigured,
    /// The settings cannot work (an unreadable CA file, a sender that is not an
    /// address).
    #[error("SMTP configuration: {0}")]
    Config(String),
    /// The recipient is not a valid address.
    #[error("invalid recipient address: {0}")]
    BadAddress(String),
    /// The message could not be built.
    #[error("cannot build the message: {0}")]
    Message(String),
    /// The delivery did not end within the configured time.
    #[error("the SMTP server did not complete the delivery within {0} s")]
    Timeout(u64),
    /// Connecting, the TLS handshake or a command failed, or the server refused
    /// the message (the text says which: lettre's error with the server's reply).
    #[error("SMTP delivery failed: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// One plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The recipient address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The body (plain text, `\n` line ends).
    pub body: String,
}

/// Sends e-mail when SMTP is configured.
#[derive(Clone)]
pub struct Mailer {
    smtp: Option<Arc<Smtp>>,
}

/// A configured transport.
struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("configured", &self.configured())
            .finish()
    }
}

impl Mailer {
    /// A mailer; `None`: nothing is ever sent. Fails when the settings cannot
    /// work: the CA file cannot be read or holds no certificate, or the sender is
    /// not an address.
    pub fn new(smtp: Option<SmtpConfig>) -> Result<Self, MailError> {
        let Some(cfg) = smtp else {
            return Ok(Mailer { smtp: None });
        };
        let from: Mailbox = single_line(&cfg.sender)
            .parse()
            .map_err(|e| MailError::Config(format!("EMAIL_SENDER {:?}: {e}", cfg.sender)))?;
        let timeout = Duration::from_secs(cfg.timeout_seconds.max(1));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .timeout(Some(timeout));
        builder = match cfg.tls {
            SmtpTls::Starttls => builder.tls(Tls::Required(tls_parameters(&cfg)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls_parameters(&cfg)?)),
            SmtpTls::None => builder.tls(Tls::None),
        };
        if !cfg.password.is_empty() {
            if cfg.tls == SmtpTls::None && !is_loopback(&cfg.host) {
                return Err(MailError::Config(format!(
                    "SMTP_TLS=none would send EMAIL_PASSWORD in clear text to {}: use \
                     starttls or tls (none is for a relay on this host, without a password \
                     or over loopback)",
                    cfg.host
                )));
            }
            builder = builder.credentials(Credentials::new(
                from.email.to_string(),
                cfg.password.clone(),
            ));
        }
        Ok(Mailer {
            smtp: Some(Arc::new(Smtp {
                transport: builder.build(),
                from,
                timeout,
            })),
        })
    }

    /// Whether SMTP is configured.
    pub fn configured(&self) -> bool {
        self.smtp.is_some()
    }

    /// Sends `email` (see the module docs for the connection and its checks).
    pub async fn send(&self, email: &Email) -> Result<(), MailError> {
        let Some(smtp) = &self.smtp else {
            return Err(MailError::NotConfigured);
        };
        let message = compose(&smtp.from, email)?;
        match tokio::time::timeout(smtp.timeout, smtp.transport.send(message)).await {
            Ok(sent) => sent.map(|_| ()).map_err(MailError::from),
            Err(_) => Err(MailError::Timeout(smtp.timeout.as_secs())),
        }
    }
}

/// Whether `host` is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The TLS parameters: the name to check is the host; the system's roots plus the
/// CA file's certificates.
fn tls_parameters(cfg: &SmtpConfig) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(cfg.host.clone());
    if let Some(file) = &cfg.ca_file {
        let pem = std::fs::read(file)
            .map_err(|e| MailError::Config(format!("SMTP_CA_FILE {}: {e}", file.display())))?;
        if !pem
            .windows(b"-----BEGIN CERTIFICATE-----".len())
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(MailError::Config(format!(
                "SMTP_CA_FILE {}: no PEM certificate in the file",
                file.display()
            )));
        }
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| MailError::Config(format!("SMTP_CA_FILE {}: {e}", file.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| MailError::Config(format!("TLS: {e}")))
}

/// A header value on one line (CR and LF removed, so nothing can be injected).
fn single_line(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The message: From, To, Subject (encoded when not ASCII), Date, Message-ID and a
/// `text/plain; charset=utf-8` body, sent as 7bit when it is ASCII with lines of
/// at most 76 characters (RFC 5322's advice), base64 otherwise (long invite links
/// stay whole for every mail reader, where quoted-printable would cut them).
fn compose(from: &Mailbox, email: &Email) -> Result<Message, MailError> {
    let to: Mailbox = single_line(&email.to)
        .parse()
        .map_err(|e| MailError::BadAddress(format!("{:?}: {e}", email.to)))?;
    let text = email.body.replace("\r\n", "\n");
    let body = Body::new_with_encoding(text.clone(), ContentTransferEncoding::SevenBit)
        .or_else(|_| Body::new_with_encoding(text, ContentTransferEncoding::Base64))
        .map_err(|_| MailError::Message("the body cannot be encoded".into()))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(single_line(&email.subject))
        .message_id(None)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| MailError::Message(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn from() -> Mailbox {
        "bot@kernelci.org".parse().unwrap()
    }

    fn formatted(email: &Email) -> String {
        String::from_utf8(compose(&from(), email).unwrap().formatted()).unwrap()
    }

    #[test]
    fn composed_messages() {
        let m = formatted(&Email {
            to: "a@example.org".into(),
            subject: "Hello\r\nBcc: evil@example.org".into(),
            body: "line 1\nline 2".into(),
        });
        assert!(m.contains("Subject: HelloBcc: evil@example.org\r\n"), "{m}");
        assert!(!m.contains("\r\nBcc:"), "{m}");
        assert!(m.contains("Content-Transfer-Encoding: 7bit\r\n"), "{m}");
        assert!(
            m.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{m}"
        );
        assert!(m.contains("Message-ID: <"), "{m}");
        assert!(m.ends_with("\r\n\r\nline 1\r\nline 2"), "{m}");
        let m = formatted(&Email {
            to: "a@example.org".into(),
            subject: "Grüße".into(),
            body: "Grüße".into(),
        });
        assert!(m.contains("Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\n"), "{m}");
        assert!(m.contains("Content-Transfer-Encoding: base64\r\n"), "{m}");
        assert!(m.trim_end().ends_with("\r\n\r\nR3LDvMOfZQ=="), "{m}");
    }

    #[test]
    fn bad_recipients_and_settings() {
        let e = compose(
            &from(),
            &Email {
                to: "not an address".into(),
                subject: "s".into(),
                body: "b".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(e, MailError::BadAddress(_)), "{e}");
        let mut cfg = SmtpConfig::new("mail.example.org", 587, "bot@kernelci.org", "");
        cfg.ca_file = Some("/nonexistent/ca.pem".into());
        let e = Mailer::new(Some(cfg.clone())).unwrap_err();
        assert!(e.to_string().contains("SMTP_CA_FILE"), "{e}");
        cfg.ca_file = None;
        // No password in clear text over the network; over loopback, yes.
        cfg.tls = SmtpTls::None;
        cfg.password = "pw".into();
        let e = Mailer::new(Some(cfg.clone())).unwrap_err();
        assert!(e.to_string().contains("clear text"), "{e}");
        cfg.host = "127.0.0.1".into();
        assert!(Mailer::new(Some(cfg.clone())).is_ok());
        cfg.sender = "nobody".into();
        let e = Mailer::new(Some(cfg)).unwrap_err();
        assert!(e.to_string().contains("EMAIL_SENDER"), "{e}");
        assert!(!Mailer::new(None).unwrap().configured());
    }
}
