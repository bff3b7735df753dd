//! A tiny scriptable SMTP server for tests: it speaks enough of RFC 5321 for
//! `kernelci_http::mail::Mailer` in its plain-relay mode (EHLO/HELO, AUTH
//! PLAIN/LOGIN, MAIL, RCPT, DATA, QUIT), can refuse any step, and hands every
//! accepted message to the test through a channel. The TLS modes are tested
//! against a real server (aiosmtpd, `smtp_tls.rs`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How the fake server behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Extensions announced after EHLO (e.g. `AUTH PLAIN LOGIN`, `STARTTLS`).
    pub extensions: Vec<String>,
    /// A reply sent instead of 250 to `MAIL FROM` (e.g. a 530 asking for TLS).
    pub reject_mail: Option<String>,
    /// A reply sent instead of 250 to `RCPT TO`.
    pub reject_rcpt: Option<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            extensions: vec!["AUTH PLAIN LOGIN".into(), "8BITMIME".into()],
            reject_mail: None,
            reject_rcpt: None,
        }
    }
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    /// Every command line of the session, in order (AUTH payloads included).
    pub commands: Vec<String>,
    /// The `MAIL FROM` address.
    pub from: String,
    /// The `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The user and password of AUTH PLAIN or LOGIN, if any.
    pub auth: Option<(String, String)>,
    /// The message as received, dot-stuffing undone, CRLF line ends.
    pub data: String,
}

impl Received {
    /// The message body (after the blank line), decoded when it is base64.
    pub fn body(&self) -> String {
        decoded_body(&self.data)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.data.split_once("\r\n\r\n").map(|(h, _)| h)?;
        head.split("\r\n").find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A running fake server.
pub struct FakeSmtp {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl FakeSmtp {
    /// Starts a server on a loopback port.
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, b) = (tx.clone(), behaviour.clone());
                tokio::spawn(async move {
                    if let Some(m) = session(stream, &b).await {
                        let _ = tx.send(m);
                    }
                });
            }
        });
        FakeSmtp { addr, rx }
    }

    /// The next accepted message (waits up to a generous minute).
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(60), self.rx.recv())
            .await
            .expect("no message within a minute")
            .expect("fake SMTP server gone")
    }

    /// A message already accepted, if any (no waiting).
    pub fn try_next(&mut self) -> Option<Received> {
        self.rx.try_recv().ok()
    }

    /// The SMTP settings that point at this server (a plain-text relay: TLS
    /// is tested against a real server in `smtp_tls.rs`).
    pub fn config(&self, password: &str) -> kernelci_http::SmtpConfig {
        kernelci_http::SmtpConfig {
            tls: kernelci_http::SmtpTls::None,
            ..kernelci_http::SmtpConfig::new(
                &self.addr.ip().to_string(),
                self.addr.port(),
                "kernelci@example.org",
                password,
            )
        }
    }
}

async fn session(stream: TcpStream, b: &Behaviour) -> Option<Received> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut out = Received {
        commands: Vec::new(),
        from: String::new(),
        to: Vec::new(),
        auth: None,
        data: String::new(),
    };
    let mut got_data = false;
    macro_rules! say {
        ($s:expr) => {
            write
                .write_all(format!("{}\r\n", $s).as_bytes())
                .await
                .ok()?
        };
    }
    say!("220 fake.example.org ESMTP ready");
    while let Some(line) = lines.next_line().await.ok()? {
        out.commands.push(line.clone());
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            if b.extensions.is_empty() {
                say!("250 fake.example.org");
            } else {
                say!("250-fake.example.org");
                for (i, e) in b.extensions.iter().enumerate() {
                    let sep = if i + 1 == b.extensions.len() {
                        ' '
                    } else {
                        '-'
                    };
                    say!(format!("250{sep}{e}"));
                }
            }
        } else if upper.starts_with("HELO") {
            say!("250 fake.example.org");
        } else if let Some(payload) = line.strip_prefix("AUTH PLAIN ") {
            let raw = decode64(payload);
            let parts: Vec<&str> = raw.split('\0').collect();
            out.auth = Some((
                parts.get(1).unwrap_or(&"").to_string(),
                parts.get(2).unwrap_or(&"").to_string(),
            ));
            say!("235 2.7.0 Authentication successful");
        } else if upper == "AUTH LOGIN" {
            say!("334 VXNlcm5hbWU6");
            let user = decode64(&lines.next_line().await.ok()??);
            say!("334 UGFzc3dvcmQ6");
            let pass = decode64(&lines.next_line().await.ok()??);
            out.auth = Some((user, pass));
            say!("235 2.7.0 Authentication successful");
        } else if upper.starts_with("MAIL FROM:") {
            if let Some(r) = &b.reject_mail {
                say!(r);
                continue;
            }
            out.from = line[10..].trim_matches(['<', '>', ' ']).to_owned();
            say!("250 2.1.0 Ok");
        } else if upper.starts_with("RCPT TO:") {
            if let Some(r) = &b.reject_rcpt {
                say!(r);
                continue;
            }
            out.to
                .push(line[8..].trim_matches(['<', '>', ' ']).to_owned());
            say!("250 2.1.5 Ok");
        } else if upper == "DATA" {
            say!("354 End data with <CR><LF>.<CR><LF>");
            let mut data = Vec::new();
            loop {
                let l = lines.next_line().await.ok()??;
                if l == "." {
                    break;
                }
                data.push(l.strip_prefix('.').map(str::to_owned).unwrap_or(l));
            }
            out.data = data.join("\r\n");
            got_data = true;
            say!("250 2.0.0 Ok: queued");
        } else if upper == "QUIT" {
            say!("221 2.0.0 Bye");
            break;
        } else {
            say!("502 5.5.2 Command not recognised");
        }
    }
    got_data.then_some(out)
}

/// Standard base64 decoding (test inputs are well-formed).
/// The body of a raw message (after the blank line), decoded when its
/// `Content-Transfer-Encoding` is base64 (what the mailer uses for non-ASCII text
/// and lines over 76 characters).
pub fn decoded_body(data: &str) -> String {
    let (head, body) = data.split_once("\r\n\r\n").unwrap_or((data, ""));
    let base64 = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("Content-Transfer-Encoding: base64"));
    if base64 {
        decode64(&body.split_whitespace().collect::<String>())
    } else {
        body.to_owned()
    }
}

/// Standard base64 (padding optional) to UTF-8 text.
pub fn decode64(s: &str) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim().bytes().filter(|c| *c != b'=') {
        let v = alphabet.iter().position(|a| *a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).unwrap()
}
