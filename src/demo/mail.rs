//! The demo's buyers' e-mails: a real SMTP server (aiosmtpd) started for the run, the notifier
//! sending to it, and at the end what the server received, counted and one shown.

use std::time::{Duration, Instant};

use platform::mailbox::Mailbox;
use uuid::Uuid;

/// The SMTP server of the run, keeping its messages under the stack's state directory.
pub(super) async fn mailbox(state_dir: &std::path::Path, run_id: &str) -> anyhow::Result<Mailbox> {
    Mailbox::start(&state_dir.join("mail").join(run_id))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The mail settings of the run: the server above, links signed with a key of the run's own.
pub(super) fn settings(mailbox: &Mailbox, ingest: std::net::SocketAddr) -> notifier::MailSettings {
    notifier::MailSettings {
        smtp_url: mailbox.smtp_url(),
        from: "Stadium Hospital Lottery <tickets@lottery.example.org>".into(),
        public_url: format!("http://{ingest}"),
        link_key: Some(Uuid::new_v4().as_bytes().repeat(2)),
    }
}

/// Waits until every message of the raffle was sent or settled otherwise (at most a minute),
/// then prints what the SMTP server received and one confirmation as the buyer reads it.
pub(super) async fn report(
    client: &tokio_postgres::Client,
    raffle: Uuid,
    mailbox: &Mailbox,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let summary = loop {
        let summary = notifier::messages::summary(client, raffle).await?;
        if summary.settled() || started.elapsed() > Duration::from_secs(60) {
            break summary;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let kinds = client
        .query(
            "SELECT kind, count(*) FROM notify.messages WHERE raffle_id = $1 AND state = 'sent' GROUP BY kind ORDER BY kind",
            &[&raffle],
        )
        .await?;
    let received = mailbox.received();
    println!(
        "E-MAILS  {} received by the SMTP server (aiosmtpd on {}, kept in {})",
        received.len(),
        mailbox.addr,
        mailbox.dir.display()
    );
    println!(
        "  sent: {}; buyers with no address: {}; waiting: {}; failed: {}",
        kinds
            .iter()
            .map(|r| format!(
                "{} {}",
                r.get::<_, i64>(1),
                r.get::<_, String>(0).replace('_', " ")
            ))
            .collect::<Vec<_>>()
            .join(", "),
        summary.no_address,
        summary.pending + summary.sending,
        summary.failed
    );
    if let Some(sample) = received.iter().find(|m| {
        m.header("Subject")
            .is_some_and(|s| s.starts_with("Your draw numbers"))
    }) {
        println!("  one of them, as the buyer reads it:");
        for header in ["From", "To", "Subject", "Message-ID"] {
            println!(
                "    {header}: {}",
                sample.header(header).unwrap_or_default()
            );
        }
        for line in sample.text_part().unwrap_or_default().lines() {
            println!("    | {line}");
        }
    }
    Ok(())
}
