//! The sender: delivers the messages `notify.messages` holds over SMTP.
//!
//! Each pass claims the messages that are due — marks them `sending` and not due again for
//! [`SenderConfig::lease`], and commits — before it talks to the mail server; each answer is
//! then recorded: `sent` with the server's reply, or back to `pending` with the error and a later
//! attempt (doubling from 2 s up to [`SenderConfig::max_backoff`]), or `failed` after
//! [`SenderConfig::max_attempts`] (a server that keeps refusing the address: reported in the
//! order's deliveries and the raffle's summary, never dropped unseen). A crash between the
//! server's acceptance and the record leaves the message `sending`; it is due again when its
//! lease ends and goes out once more with the same Message-ID, which mail systems fold into
//! the first. The consumer never waits on any of this: an SMTP outage only lets rows wait.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::watch;
use uuid::Uuid;

use crate::settings::MailSettings;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Messages claimed per pass.
    pub batch: i64,
    /// Messages being sent at once (each over a pooled SMTP connection).
    pub concurrency: usize,
    /// How long a claimed message is left alone before it is tried again.
    pub lease: Duration,
    /// Attempts before a message is marked failed.
    pub max_attempts: i32,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// How often an idle sender looks for due messages and new winners.
    pub poll: Duration,
    /// How long one SMTP exchange may take.
    pub smtp_timeout: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            batch: 200,
            concurrency: 4,
            lease: Duration::from_secs(120),
            max_attempts: 12,
            max_backoff: Duration::from_secs(30 * 60),
            poll: Duration::from_millis(250),
            smtp_timeout: Duration::from_secs(30),
        }
    }
}

struct Due {
    id: Uuid,
    order_id: Uuid,
    to: String,
    subject: String,
    text: String,
    html: String,
    message_id: String,
    attempts: i32,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
    pub wins_owed: u64,
}

async fn claim(pool: &Pool, config: &SenderConfig) -> Result<Vec<Due>, String> {
    let mut client = pool.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    let rows = tx
        .query(
            "WITH due AS (
                 SELECT id FROM notify.messages
                  WHERE state IN ('pending', 'sending') AND next_attempt_at <= now()
                  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
             UPDATE notify.messages m
                SET state = 'sending', attempts = m.attempts + 1,
                    next_attempt_at = now() + make_interval(secs => $2)
               FROM due WHERE m.id = due.id
             RETURNING m.id, m.order_id, m.to_address, m.subject, m.text_body, m.html_body, m.message_id, m.attempts",
            &[&config.batch, &config.lease.as_secs_f64()],
        )
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(rows
        .iter()
        .map(|r| Due {
            id: r.get(0),
            order_id: r.get(1),
            to: r.get(2),
            subject: r.get(3),
            text: r.get(4),
            html: r.get(5),
            message_id: r.get(6),
            attempts: r.get(7),
        })
        .collect())
}

fn backoff(attempts: i32, max: Duration) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 20)).unwrap_or(1);
    Duration::from_secs(1u64 << exp.min(16)).min(max)
}

enum Outcome {
    Sent(String),
    NotSent(String),
}

async fn deliver(
    mailer: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
    due: &Due,
) -> Outcome {
    let to: Mailbox = match due.to.parse() {
        Ok(to) => to,
        Err(e) => {
            return Outcome::NotSent(format!("the address {:?} is not a mailbox ({e})", due.to));
        }
    };
    let message = Message::builder()
        .message_id(Some(due.message_id.clone()))
        .from(from.clone())
        .to(to)
        .subject(due.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            due.text.clone(),
            due.html.clone(),
        ));
    let message = match message {
        Ok(m) => m,
        Err(e) => return Outcome::NotSent(format!("the message cannot be built: {e}")),
    };
    match mailer.send(message).await {
        Ok(reply) => Outcome::Sent(format!(
            "{} {}",
            reply.code(),
            reply.message().collect::<Vec<_>>().join(" ")
        )),
        Err(e) => Outcome::NotSent(platform::error_chain(&e)),
    }
}

async fn record(
    pool: &Pool,
    due: &Due,
    outcome: &Outcome,
    config: &SenderConfig,
) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    match outcome {
        Outcome::Sent(reply) => client
            .execute(
                "UPDATE notify.messages SET state = 'sent', sent_at = now(), smtp_reply = $2, last_error = NULL
                  WHERE id = $1",
                &[&due.id, reply],
            )
            .await
            .map(|_| ()),
        Outcome::NotSent(error) => {
            let give_up = due.attempts >= config.max_attempts;
            let wait = backoff(due.attempts, config.max_backoff).as_secs_f64();
            client
                .execute(
                    "UPDATE notify.messages
                        SET state = CASE WHEN $3 THEN 'failed' ELSE 'pending' END, last_error = $2,
                            next_attempt_at = now() + make_interval(secs => $4)
                      WHERE id = $1",
                    &[&due.id, error, &give_up, &wait],
                )
                .await
                .map(|_| ())
        }
    }
    .map_err(|e| e.to_string())
}

/// The SMTP client for `settings`: pooled connections, the configured TLS and credentials.
pub fn mailer(
    settings: &MailSettings,
    config: &SenderConfig,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.smtp_url)
            .map_err(|e| format!("RAFFLE_SMTP_URL {:?}: {e}", settings.smtp_url_for_people()))?
            .timeout(Some(config.smtp_timeout))
            .build(),
    )
}

/// One pass: the wins owed since the last one, then the messages that are due.
pub async fn run_once(
    pool: &Pool,
    settings: &MailSettings,
    mailer: &AsyncSmtpTransport<Tokio1Executor>,
    config: &SenderConfig,
) -> Result<Pass, String> {
    let mut pass = Pass {
        wins_owed: crate::messages::owe_wins(pool, settings)
            .await
            .map_err(|e| e.to_string())?,
        ..Pass::default()
    };
    let from: Mailbox = settings
        .from
        .parse()
        .map_err(|e| format!("RAFFLE_MAIL_FROM is not a mailbox: {e}"))?;
    let due = claim(pool, config).await?;
    // Each answer is recorded as soon as it comes: a crash repeats at most the sends under way.
    let outcomes: Vec<Result<(Due, Outcome), String>> = futures::stream::iter(due)
        .map(|due| {
            let from = &from;
            async move {
                let outcome = deliver(mailer, from, &due).await;
                record(pool, &due, &outcome, config).await?;
                Ok((due, outcome))
            }
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    for done in outcomes {
        let (due, outcome) = done?;
        match &outcome {
            Outcome::Sent(_) => pass.sent += 1,
            Outcome::NotSent(error) if due.attempts >= config.max_attempts => {
                pass.failed += 1;
                tracing::error!(order = %due.order_id, message = %due.message_id, attempts = due.attempts, %error,
                    "gave up on a buyer's e-mail; staff see it in the order's deliveries");
            }
            Outcome::NotSent(error) => {
                pass.retried += 1;
                tracing::warn!(order = %due.order_id, message = %due.message_id, attempts = due.attempts, %error,
                    "a buyer's e-mail was not sent; trying again later");
            }
        }
    }
    Ok(pass)
}

/// Sends until `stop` turns true. Database trouble is ridden out: the pass is tried again
/// after a pause, as an SMTP outage is.
pub async fn run(
    pool: Pool,
    settings: Arc<MailSettings>,
    config: SenderConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mailer = match mailer(&settings, &config) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "the notifier cannot send e-mail; messages wait in notify.messages");
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
    };
    let mut pause = config.poll;
    while !*stop.borrow() {
        match run_once(&pool, &settings, &mailer, &config).await {
            Ok(pass) if pass.sent + pass.retried + pass.failed > 0 => {
                tracing::debug!(?pass, "sender pass");
                pause = Duration::ZERO;
            }
            Ok(_) => pause = config.poll,
            Err(e) => {
                tracing::warn!(error = %e, "sender pass failed; trying again");
                pause = (pause * 2).clamp(config.poll, Duration::from_secs(30));
            }
        }
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
    }
}
