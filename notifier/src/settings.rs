//! Where and as whom the notifier sends, from the environment.

/// The mail settings of a deployment.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `RAFFLE_SMTP_URL`: `smtp://host:port` (plain, or STARTTLS when the server offers it with
    /// `?tls=opportunistic`, required with `?tls=required`), `smtps://host:port` (TLS from the
    /// first byte); credentials as `smtp://user:password@host`. Default `smtp://127.0.0.1:2525`.
    pub smtp_url: String,
    /// `RAFFLE_MAIL_FROM`: the sender, `Name <address>`.
    pub from: String,
    /// `RAFFLE_PUBLIC_URL`: where buyers reach ingest (rules and order links point there).
    pub public_url: String,
    /// `RAFFLE_LINK_KEY` (hex, at least 32 bytes): signs the order links in e-mails. Without
    /// one, messages carry no link and ingest opens none.
    pub link_key: Option<Vec<u8>>,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            smtp_url: "smtp://127.0.0.1:2525".into(),
            from: "Raffle tickets <tickets@raffle.localhost>".into(),
            public_url: "http://127.0.0.1:8080".into(),
            link_key: None,
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The link key from `RAFFLE_LINK_KEY`, checked: hex of at least 32 bytes.
pub fn link_key_from_env() -> Result<Option<Vec<u8>>, String> {
    match var("RAFFLE_LINK_KEY") {
        None => Ok(None),
        Some(hex_key) => {
            let key =
                hex::decode(&hex_key).map_err(|e| format!("RAFFLE_LINK_KEY must be hex ({e})"))?;
            if key.len() < 32 {
                return Err(format!(
                    "RAFFLE_LINK_KEY must hold at least 32 bytes (64 hex digits); it holds {}",
                    key.len()
                ));
            }
            Ok(Some(key))
        }
    }
}

impl MailSettings {
    pub fn from_env() -> Result<Self, String> {
        let defaults = Self::default();
        let settings = Self {
            smtp_url: var("RAFFLE_SMTP_URL").unwrap_or(defaults.smtp_url),
            from: var("RAFFLE_MAIL_FROM").unwrap_or(defaults.from),
            public_url: var("RAFFLE_PUBLIC_URL")
                .unwrap_or(defaults.public_url)
                .trim_end_matches('/')
                .to_owned(),
            link_key: link_key_from_env()?,
        };
        settings.check()?;
        Ok(settings)
    }

    /// Refuses settings that could never send: a sender that is not an address, a URL that is
    /// not SMTP.
    pub fn check(&self) -> Result<(), String> {
        self.from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("RAFFLE_MAIL_FROM {:?} is not a mailbox ({e})", self.from))?;
        if !(self.smtp_url.starts_with("smtp://") || self.smtp_url.starts_with("smtps://")) {
            return Err(format!(
                "RAFFLE_SMTP_URL {:?} must start with smtp:// or smtps://",
                self.smtp_url
            ));
        }
        Ok(())
    }

    /// The SMTP URL without its password, for logs.
    pub fn smtp_url_for_people(&self) -> String {
        redacted(&self.smtp_url)
    }

    /// The domain the Message-IDs are made in: the sender's.
    pub fn message_domain(&self) -> String {
        self.from
            .parse::<lettre::message::Mailbox>()
            .map(|m| m.email.domain().to_owned())
            .unwrap_or_else(|_| "raffle.localhost".into())
    }
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}
