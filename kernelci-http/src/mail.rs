//! Outgoing e-mail (invites, password resets) and e-mail address checks.
//!
//! [`Mailer::send`] speaks SMTP (RFC 5321) itself over a plain TCP connection:
//! greeting, `EHLO` (`HELO` for servers without ESMTP), `AUTH PLAIN` or `AUTH LOGIN`
//! when a password is configured, `MAIL FROM`, `RCPT TO`, `DATA`, `QUIT`. Every
//! step has a time limit ([`STEP_TIMEOUT`]).
//!
//! # Limits
//!
//! **No TLS.** This crate ships no TLS stack, so:
//!
//! - port 465 (implicit TLS, `SMTP_PORT=465` in the reference) is refused before
//!   connecting with [`MailError::TlsRequired`];
//! - a server that only accepts credentials or mail after `STARTTLS` (it answers
//!   530, or it offers `STARTTLS` but no `AUTH` while a password is configured)
//!   fails with [`MailError::TlsRequired`]; credentials are never sent to a server
//!   that did not offer `AUTH` on the plain connection.
//!
//! Deployments that need TLS point `SMTP_HOST` at a local relay (an MTA on
//! localhost or in the same pod) that forwards with TLS. The reference always uses
//! TLS (STARTTLS or implicit); this is the one behaviour it has that we do not.
//!
//! Callers swallow failures as API.md §4 says: an invite answers
//! `email_sent: false`, forgot-password still answers 202.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::SmtpConfig;

/// Time allowed for connecting and for each command's reply.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest reply line read from a server (RFC 5321 allows 512; servers go beyond).
const MAX_REPLY_LINE: usize = 4096;

/// Most lines of one (multi-line) reply.
const MAX_REPLY_LINES: usize = 128;

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// No SMTP settings: nothing is ever sent.
    #[error("no SMTP server is configured")]
    NotConfigured,
    /// The server requires TLS, which this build does not speak (see the module docs).
    #[error("the SMTP server requires TLS, which kernelci-rs does not support: {0}")]
    TlsRequired(String),
    /// Connecting, reading or writing failed.
    #[error("SMTP connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// A step took longer than [`STEP_TIMEOUT`].
    #[error("SMTP server did not answer in time ({0})")]
    Timeout(&'static str),
    /// The server refused a step.
    #[error("SMTP server refused {stage}: {code} {text}")]
    Rejected {
        /// The step (`MAIL FROM`, `RCPT TO`, ...).
        stage: &'static str,
        /// The reply code.
        code: u16,
        /// The reply text.
        text: String,
    },
    /// The server's answer is not SMTP, or it lacks what we need.
    #[error("SMTP protocol error: {0}")]
    Protocol(String),
    /// The recipient is not a valid address.
    #[error("invalid recipient address: {0}")]
    BadAddress(String),
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
#[derive(Debug, Clone)]
pub struct Mailer {
    smtp: Option<SmtpConfig>,
}

impl Mailer {
    /// A mailer; `None`: nothing is ever sent.
    pub fn new(smtp: Option<SmtpConfig>) -> Self {
        Mailer { smtp }
    }

    /// Whether SMTP is configured.
    pub fn configured(&self) -> bool {
        self.smtp.is_some()
    }

    /// Sends `email` (see the module docs for the protocol and its limits).
    pub async fn send(&self, email: &Email) -> Result<(), MailError> {
        let Some(cfg) = &self.smtp else {
            return Err(MailError::NotConfigured);
        };
        if cfg.port == 465 {
            return Err(MailError::TlsRequired(format!(
                "port 465 is implicit TLS; use a relay reachable without TLS \
                 (SMTP_HOST={}, SMTP_PORT=465)",
                cfg.host
            )));
        }
        let to = single_line(&email.to);
        if to.is_empty() || to.contains(['<', '>']) {
            return Err(MailError::BadAddress(to));
        }
        let message = compose(cfg, &to, email);
        let stream = step("connect", TcpStream::connect((cfg.host.as_str(), cfg.port))).await??;
        let local = stream.local_addr().ok();
        let mut session = Session {
            stream: BufReader::new(stream),
        };
        let result = session.deliver(cfg, &to, &message, local).await;
        if result.is_ok() {
            // The message is accepted; a failing QUIT does not change that.
            let _ = session.command("QUIT", "QUIT").await;
        }
        result
    }
}

async fn step<T>(
    stage: &'static str,
    f: impl std::future::Future<Output = T>,
) -> Result<T, MailError> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| MailError::Timeout(stage))
}

/// A reply: its code and its lines' text (without the code).
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join(" ")
    }
}

struct Session {
    stream: BufReader<TcpStream>,
}

impl Session {
    async fn read_reply(&mut self, stage: &'static str) -> Result<Reply, MailError> {
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let n = step(
                stage,
                (&mut self.stream)
                    .take(MAX_REPLY_LINE as u64)
                    .read_until(b'\n', &mut raw),
            )
            .await??;
            if n == 0 {
                return Err(MailError::Protocol(format!(
                    "connection closed while waiting for the reply to {stage}"
                )));
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| MailError::Protocol(format!("not an SMTP reply: {line:?}")))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if !more {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(MailError::Protocol("reply has too many lines".into()));
            }
        }
    }

    async fn write(&mut self, stage: &'static str, bytes: &[u8]) -> Result<(), MailError> {
        let stream = self.stream.get_mut();
        step(stage, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await??;
        Ok(())
    }

    async fn command(&mut self, stage: &'static str, line: &str) -> Result<Reply, MailError> {
        self.write(stage, format!("{line}\r\n").as_bytes()).await?;
        self.read_reply(stage).await
    }

    /// A command whose reply must have one of the `ok` codes.
    async fn expect(
        &mut self,
        stage: &'static str,
        line: &str,
        ok: &[u16],
    ) -> Result<Reply, MailError> {
        let reply = self.command(stage, line).await?;
        check(stage, reply, ok)
    }

    async fn deliver(
        &mut self,
        cfg: &SmtpConfig,
        to: &str,
        message: &str,
        local: Option<std::net::SocketAddr>,
    ) -> Result<(), MailError> {
        let greeting = self.read_reply("greeting").await?;
        check("the connection", greeting, &[220])?;
        let client = match local.map(|a| a.ip()) {
            Some(std::net::IpAddr::V4(ip)) => format!("[{ip}]"),
            Some(std::net::IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
            None => "localhost".to_owned(),
        };
        let ehlo = self.command("EHLO", &format!("EHLO {client}")).await?;
        let capabilities: Vec<String> = if ehlo.code == 250 {
            ehlo.lines
                .iter()
                .skip(1)
                .map(|l| l.trim().to_ascii_uppercase())
                .collect()
        } else {
            // A server without ESMTP: plain HELO, no extensions.
            self.expect("HELO", &format!("HELO {client}"), &[250])
                .await?;
            Vec::new()
        };
        let offers = |name: &str| {
            capabilities
                .iter()
                .any(|c| c.split_whitespace().next() == Some(name))
        };
        if !cfg.password.is_empty() {
            let mechanisms: Vec<&str> = capabilities
                .iter()
                .filter_map(|c| c.strip_prefix("AUTH").map(str::split_whitespace))
                .flatten()
                .collect();
            if mechanisms.contains(&"PLAIN") {
                let token = base64(format!("\0{}\0{}", cfg.sender, cfg.password).as_bytes());
                self.expect("AUTH PLAIN", &format!("AUTH PLAIN {token}"), &[235])
                    .await?;
            } else if mechanisms.contains(&"LOGIN") {
                self.expect("AUTH LOGIN", "AUTH LOGIN", &[334]).await?;
                self.expect("AUTH LOGIN", &base64(cfg.sender.as_bytes()), &[334])
                    .await?;
                self.expect("AUTH LOGIN", &base64(cfg.password.as_bytes()), &[235])
                    .await?;
            } else if offers("STARTTLS") {
                return Err(MailError::TlsRequired(
                    "the server offers authentication only after STARTTLS".into(),
                ));
            } else {
                return Err(MailError::Protocol(
                    "a password is configured but the server offers neither AUTH PLAIN \
                     nor AUTH LOGIN"
                        .into(),
                ));
            }
        }
        let sender = single_line(&cfg.sender);
        self.expect("MAIL FROM", &format!("MAIL FROM:<{sender}>"), &[250])
            .await?;
        self.expect("RCPT TO", &format!("RCPT TO:<{to}>"), &[250, 251])
            .await?;
        self.expect("DATA", "DATA", &[354]).await?;
        self.write("DATA", dot_stuff(message).as_bytes()).await?;
        let done = self.read_reply("the message").await?;
        check("the message", done, &[250])?;
        Ok(())
    }
}

fn check(stage: &'static str, reply: Reply, ok: &[u16]) -> Result<Reply, MailError> {
    if ok.contains(&reply.code) {
        return Ok(reply);
    }
    let text = reply.text();
    if reply.code == 530 || (reply.code >= 500 && text.to_ascii_uppercase().contains("STARTTLS")) {
        return Err(MailError::TlsRequired(format!(
            "{stage}: {} {text}",
            reply.code
        )));
    }
    Err(MailError::Rejected {
        stage,
        code: reply.code,
        text,
    })
}

/// A header value on one line (CR and LF removed, so nothing can be injected).
fn single_line(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The message text (headers, blank line, body) with CRLF line ends.
fn compose(cfg: &SmtpConfig, to: &str, email: &Email) -> String {
    let sender = single_line(&cfg.sender);
    let subject = single_line(&email.subject);
    let subject = if subject.is_ascii() {
        subject
    } else {
        format!("=?utf-8?b?{}?=", base64(subject.as_bytes()))
    };
    let domain = sender
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("localhost");
    let body = email.body.replace("\r\n", "\n");
    let plain = body.is_ascii() && body.lines().all(|l| l.len() <= 998);
    let (encoding, body) = if plain {
        ("7bit", body.replace('\n', "\r\n"))
    } else {
        let encoded = base64(body.as_bytes());
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        ("base64", lines.join("\r\n"))
    };
    format!(
        "From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n\
         Message-ID: <{id}@{domain}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n\
         \r\n{body}",
        date = chrono::Utc::now().to_rfc2822(),
        id = uuid::Uuid::new_v4().simple(),
    )
}

/// The DATA payload: lines starting with `.` get another one (RFC 5321 §4.5.2), then
/// the end marker.
fn dot_stuff(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 8);
    for line in message.split("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// Standard base64 with padding (RFC 4648 §4), for AUTH and non-ASCII text.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Domain names reserved for special uses that cannot receive mail (the ones
/// pydantic's `EmailStr` refuses by default).
const SPECIAL_USE_DOMAINS: &[&str] = &["arpa", "invalid", "local", "localhost", "onion", "test"];

/// Checks an e-mail address the way the reference's `EmailStr` does (syntax only,
/// no DNS) and returns it normalised (the domain in lower case); `Err` carries the
/// reason, which the 422 answer shows.
///
/// Accepted: `local@domain` with a dot-atom local part (letters, digits,
/// ``!#$%&'*+-/=?^_`{|}~``, non-ASCII letters, dots not first, last or doubled; at
/// most 64 bytes) and a domain of at least two dot-separated labels (letters,
/// digits, hyphens not first or last, at most 63 bytes each, 253 in all), whose last
/// label is not all digits nor a special-use name (`localhost`, `test`, ...).
/// Quoted local parts and address literals (`user@[127.0.0.1]`) are refused, as
/// they are by default in the reference.
pub fn normalize_address(input: &str) -> Result<String, String> {
    match input.matches('@').count() {
        0 => return Err("An email address must have an @-sign.".to_owned()),
        1 => {}
        _ => {
            return Err(
                "The email address is not valid. It must have exactly one @-sign.".to_owned(),
            )
        }
    }
    let (local, domain) = input.split_once('@').unwrap_or((input, ""));
    if local.is_empty() {
        return Err("There must be something before the @-sign.".to_owned());
    }
    if domain.is_empty() {
        return Err("There must be something after the @-sign.".to_owned());
    }
    if input.len() > 254 {
        return Err("The email address is too long.".to_owned());
    }
    if local.len() > 64 {
        return Err("The email address is too long before the @-sign.".to_owned());
    }
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
    };
    if local.starts_with('.') {
        return Err("An email address cannot start with a period.".to_owned());
    }
    if local.ends_with('.') {
        return Err(
            "An email address cannot have a period immediately before the @-sign.".to_owned(),
        );
    }
    if local.contains("..") {
        return Err("An email address cannot have two periods in a row.".to_owned());
    }
    if let Some(bad) = local.chars().find(|c| *c != '.' && !atext(*c)) {
        return Err(format!(
            "The email address contains invalid characters before the @-sign: {bad:?}."
        ));
    }
    let domain = domain.to_lowercase();
    if domain.len() > 253 {
        return Err("The email address is too long after the @-sign.".to_owned());
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return Err(
            "An email address cannot have a period in this position after the @-sign.".to_owned(),
        );
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for label in &labels {
        if label.len() > 63 {
            return Err("The email address is too long after the @-sign.".to_owned());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("An email address cannot have a hyphen immediately after or before a period after the @-sign.".to_owned());
        }
        if let Some(bad) = label.chars().find(|c| !(c.is_alphanumeric() || *c == '-')) {
            return Err(format!(
                "The part after the @-sign contains invalid characters: {bad:?}."
            ));
        }
    }
    let tld = labels.last().copied().unwrap_or("");
    if labels.len() < 2 {
        return Err("The part after the @-sign is not valid. It should have a period.".to_owned());
    }
    if tld.chars().all(|c| c.is_ascii_digit()) {
        return Err(
            "The part after the @-sign is not valid. It is not within a valid top-level domain."
                .to_owned(),
        );
    }
    if SPECIAL_USE_DOMAINS.contains(&tld) {
        return Err("The part after the @-sign is a special-use or reserved name that cannot be used with email.".to_owned());
    }
    Ok(format!("{local}@{domain}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_vectors() {
        // RFC 4648 §10.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn dot_stuffing_and_end_marker() {
        assert_eq!(dot_stuff("a\r\n.b\r\n..c"), "a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff("."), "..\r\n.\r\n");
    }

    #[test]
    fn composed_messages() {
        let cfg = SmtpConfig {
            host: "h".into(),
            port: 25,
            sender: "bot@kernelci.org".into(),
            password: String::new(),
        };
        let m = compose(
            &cfg,
            "a@example.org",
            &Email {
                to: "a@example.org".into(),
                subject: "Hello\r\nBcc: evil@example.org".into(),
                body: "line 1\nline 2".into(),
            },
        );
        assert!(m.contains("Subject: HelloBcc: evil@example.org\r\n"), "{m}");
        assert!(!m.contains("\r\nBcc:"), "{m}");
        assert!(m.contains("Content-Transfer-Encoding: 7bit\r\n"));
        assert!(m.ends_with("\r\n\r\nline 1\r\nline 2"), "{m}");
        let m = compose(
            &cfg,
            "a@example.org",
            &Email {
                to: "a@example.org".into(),
                subject: "Grüße".into(),
                body: "Grüße".into(),
            },
        );
        assert!(m.contains("Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\n"), "{m}");
        assert!(m.contains("Content-Transfer-Encoding: base64\r\n"), "{m}");
        assert!(m.ends_with("\r\n\r\nR3LDvMOfZQ=="), "{m}");
    }

    #[test]
    fn addresses() {
        for (input, want) in [
            ("alice@example.org", "alice@example.org"),
            ("Alice.B+tag@Example.ORG", "Alice.B+tag@example.org"),
            ("o'neil@sub.kernelci.org", "o'neil@sub.kernelci.org"),
            ("josé@exämple.org", "josé@exämple.org"),
        ] {
            assert_eq!(normalize_address(input).as_deref(), Ok(want), "{input}");
        }
        for (input, reason) in [
            ("", "An email address must have an @-sign."),
            ("alice", "An email address must have an @-sign."),
            ("a@b@example.org", "The email address is not valid. It must have exactly one @-sign."),
            ("@example.org", "There must be something before the @-sign."),
            ("alice@", "There must be something after the @-sign."),
            ("alice@example", "The part after the @-sign is not valid. It should have a period."),
            (".alice@example.org", "An email address cannot start with a period."),
            ("alice.@example.org", "An email address cannot have a period immediately before the @-sign."),
            ("a..b@example.org", "An email address cannot have two periods in a row."),
            ("a b@example.org", "The email address contains invalid characters before the @-sign: ' '."),
            ("alice@-example.org", "An email address cannot have a hyphen immediately after or before a period after the @-sign."),
            ("alice@example..org", "An email address cannot have a period in this position after the @-sign."),
            ("alice@exa_mple.org", "The part after the @-sign contains invalid characters: '_'."),
            ("alice@127.0.0.1", "The part after the @-sign is not valid. It is not within a valid top-level domain."),
            ("alice@host.localhost", "The part after the @-sign is a special-use or reserved name that cannot be used with email."),
            ("alice@x.test", "The part after the @-sign is a special-use or reserved name that cannot be used with email."),
        ] {
            assert_eq!(normalize_address(input), Err(reason.to_owned()), "{input}");
        }
        let long_local = format!("{}@example.org", "a".repeat(65));
        assert!(normalize_address(&long_local).is_err());
    }
}
