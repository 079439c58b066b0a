//! A real SMTP server for the tests and the demo: `scripts/mailbox.py` (aiosmtpd, from PyPI)
//! run as a child process, keeping every message it accepts as a file in a directory, so that
//! what a buyer would have received can be read back and counted.
//!
//! The interpreter is `RAFFLE_PYTHON` (the README's scripts set it to the project's virtual
//! environment, where they installed aiosmtpd), else `python3`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SCRIPT: &str = include_str!("../../scripts/mailbox.py");

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The file it was kept in.
    pub file: PathBuf,
    /// The message as sent: headers and body.
    pub raw: String,
    /// The envelope's recipients.
    pub rcpt_to: Vec<String>,
}

impl Received {
    /// The first header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let raw = self.raw.replace("\r\n", "\n");
        let head = raw.split("\n\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.lines() {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push(' ');
                    v.push_str(line.trim_start());
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }
}

impl Received {
    /// The plain-text part as a person reads it (quoted-printable decoded), if there is one.
    pub fn text_part(&self) -> Option<String> {
        let raw = self.raw.replace("\r\n", "\n");
        let at = raw.find("Content-Type: text/plain")?;
        let part = &raw[at..];
        let (head, body) = part.split_once("\n\n")?;
        let body = match raw[..at].rfind("\n--") {
            // The part ends at the next boundary line.
            Some(b) => {
                let boundary = raw[b + 1..].lines().next().unwrap_or("--").to_owned();
                body.split(&boundary).next().unwrap_or(body)
            }
            None => body,
        };
        let quoted = head.to_ascii_lowercase().contains("quoted-printable");
        Some(
            if quoted {
                quoted_printable(body)
            } else {
                body.to_owned()
            }
            .trim_end()
            .to_owned(),
        )
    }
}

/// Decodes quoted-printable text (RFC 2045 6.7): soft line breaks and `=XX` octets.
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Some(Ok(b)) = joined.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The running server; stopped when dropped.
pub struct Mailbox {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
}

impl Mailbox {
    /// Starts a server on a free port of 127.0.0.1 keeping its messages in `dir`.
    pub async fn start(dir: &Path) -> Result<Self, String> {
        Self::start_on(dir, 0).await
    }

    /// Starts a server on `port` (0: any free one), e.g. to bring one back where the senders
    /// expect it after an outage.
    pub async fn start_on(dir: &Path, port: u16) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let script = dir.join(".mailbox.py");
        std::fs::write(&script, SCRIPT)
            .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free port for the SMTP server: {e}"))?
                .port()
        } else {
            port
        };
        let python = std::env::var("RAFFLE_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {python} for the SMTP server: {e}"))?;
        let stdout = child.stdout.take().ok_or("the SMTP server has no output")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line.starts_with("ready") => {}
            other => {
                let _ = child.kill().await;
                return Err(format!(
                    "the SMTP server (aiosmtpd under {python}) did not start ({other:?}); run the README's \
                     scripts, which install it, or `pip install aiosmtpd` and set RAFFLE_PYTHON"
                ));
            }
        }
        Ok(Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: dir.to_owned(),
            child,
        })
    }

    /// The URL the notifier sends to.
    pub fn smtp_url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message accepted so far, in the order they came.
    pub fn received(&self) -> Vec<Received> {
        received_in(&self.dir)
    }

    /// Stops the server (its messages stay in the directory).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// The messages a server kept in `dir`.
pub fn received_in(dir: &Path) -> Vec<Received> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|file| {
            let raw = std::fs::read_to_string(&file).ok()?;
            let envelope: serde_json::Value = std::fs::read_to_string(file.with_extension("json"))
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            let rcpt_to = envelope["rcpt_tos"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Some(Received { file, raw, rcpt_to })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_part_reads_as_written() {
        let raw = "Message-ID: <a@b>\r\nSubject: Your\r\n draw numbers\r\nContent-Type: multipart/alternative; boundary=\"XX\"\r\n\r\n\
                   --XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                   Numbers 101=E2=80=93105, a long line that was wra=\r\npped\r\n--XX\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--XX--\r\n";
        let m = Received {
            file: PathBuf::new(),
            raw: raw.to_owned(),
            rcpt_to: vec![],
        };
        assert_eq!(m.header("subject").as_deref(), Some("Your draw numbers"));
        assert_eq!(m.header("Message-ID").as_deref(), Some("<a@b>"));
        assert_eq!(
            m.text_part().as_deref(),
            Some("Numbers 101–105, a long line that was wrapped")
        );
    }
}
