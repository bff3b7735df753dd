//! Outgoing e-mail (invites, password resets).

use crate::config::SmtpConfig;

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
}
