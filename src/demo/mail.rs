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
    let this_raffle: i64 = kinds.iter().map(|r| r.get::<_, i64>(1)).sum();
    println!(
        "E-MAILS  {} received by the SMTP server (aiosmtpd on {}, kept in {}): {this_raffle} of this raffle, {} of the sell-out's",
        received.len(),
        mailbox.addr,
        mailbox.dir.display(),
        (received.len() as i64 - this_raffle).max(0)
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

/// The displays of the run (consumer and server) and one screen watching the jackpot's stream
/// from the start: every value it was pushed, kept for the summary.
pub(super) struct Screen {
    pub addr: std::net::SocketAddr,
    pub values: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

pub(super) async fn screen(
    pool: &deadpool_postgres::Pool,
    raffle: Uuid,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Screen> {
    let health = platform::health::Health::start(platform::health::HealthConfig::database_only(
        "displays",
        pool.clone(),
    ));
    let state = std::sync::Arc::new(displays::http::DisplaysState::new(pool.clone(), health));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(displays::http::serve(state, listener, stopped));
    let mut stream = platform::http_client::EventStream::open(
        addr,
        &format!("/v1/raffles/{raffle}/jackpot/stream"),
    )
    .await?;
    let values = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = values.clone();
    tokio::spawn(async move {
        while let Ok(Some(event)) = stream.next().await {
            if let Ok(v) = serde_json::from_str(&event.data) {
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(v);
            }
        }
    });
    Ok(Screen { addr, values })
}

/// What the screen saw: how many values, the last one, and whether it is the sealed prize.
pub(super) async fn report_screen(
    client: &tokio_postgres::Client,
    screen: &Screen,
    seal: &ledger::SealRecord,
) -> anyhow::Result<()> {
    let main = ledger::split::Terms::load(client, seal.raffle_id)
        .await?
        .and_then(|t| t.main_prize());
    // The last value the screen has (the draw's, pushed within a second of it).
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let values = screen.values.lock().unwrap_or_else(|e| e.into_inner());
    let Some(last) = values.last() else {
        println!("JACKPOT FEED  no value reached the screen");
        return Ok(());
    };
    let sealed = main.and_then(|i| seal.prizes[i]["amount_minor"].as_i64());
    println!(
        "JACKPOT FEED  {} values pushed to a screen on http://{}/v1/raffles/{}/jackpot/stream; the last: {} {} ({} tickets{})",
        values.len(),
        screen.addr,
        last["raffle_id"].as_str().unwrap_or(""),
        last["label"].as_str().unwrap_or(""),
        last["jackpot"].as_str().unwrap_or(""),
        last["tickets_sold"],
        if last["winning_numbers"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
        {
            ", winning numbers shown"
        } else {
            ""
        }
    );
    let equal = sealed == last["jackpot_minor"].as_i64();
    println!(
        "  the sealed main prize is {}: {}",
        sealed
            .map(|m| format!("${}", schemas::amount_for_people(m)))
            .unwrap_or_default(),
        if equal {
            "the feed's last value equals it"
        } else {
            "THE FEED DIFFERS FROM THE SEAL"
        }
    );
    Ok(())
}
