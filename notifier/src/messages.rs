//! `notify.messages`: the messages owed to buyers, written once each, and what became of them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::compose::{About, Letter, OrderFacts, letter};
use crate::settings::MailSettings;

/// Copies of an order's numbers that may be asked for in an hour (buyer and staff together).
pub const RESENDS_PER_HOUR: i64 = 3;

/// What a message is about, as `notify.messages.kind` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TicketsIssued,
    SaleRejected,
    TicketsVoided,
    Won,
    Resend,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TicketsIssued => "tickets_issued",
            Kind::SaleRejected => "sale_rejected",
            Kind::TicketsVoided => "tickets_voided",
            Kind::Won => "won",
            Kind::Resend => "resend",
        }
    }
}

/// A message to write.
pub struct NewMessage {
    pub raffle_id: Uuid,
    pub order_id: Uuid,
    pub kind: Kind,
    /// What it is about, unique: the same key is never written twice.
    pub dedupe_key: String,
    pub to_address: Option<String>,
    pub letter: Letter,
    pub requested_by: Option<String>,
}

impl NewMessage {
    /// The message `about` for the order in `facts`.
    pub fn about(
        facts: &OrderFacts,
        kind: Kind,
        dedupe_key: String,
        about: &About<'_>,
        settings: &MailSettings,
    ) -> Self {
        let link = settings.link_key.as_deref().map(|key| {
            let expires = Utc::now().timestamp() + crate::link::LINK_DAYS * 86_400;
            format!(
                "{}{}",
                settings.public_url,
                crate::link::path(key, facts.order_id, expires)
            )
        });
        Self {
            raffle_id: facts.raffle_id,
            order_id: facts.order_id,
            kind,
            dedupe_key,
            to_address: facts.customer_email.clone(),
            letter: letter(facts, about, &settings.public_url, link.as_deref()),
            requested_by: None,
        }
    }
}

/// The buyer's address if it is one a mail server would take; `None` (nothing sent, and the
/// row says why) otherwise.
fn deliverable(address: Option<&str>) -> Result<Option<String>, String> {
    match address.map(str::trim).filter(|a| !a.is_empty()) {
        None => Ok(None),
        Some(a) if a.chars().any(char::is_whitespace) || a.matches('@').count() != 1 => Err(
            format!("the buyer's address {a:?} is not an e-mail address"),
        ),
        Some(a) => a
            .parse::<lettre::Address>()
            .map(|parsed| Some(parsed.to_string()))
            .map_err(|e| format!("the buyer's address {a:?} is not an e-mail address ({e})")),
    }
}

/// Writes `messages`, skipping any whose key was written before; returns how many were new.
/// Each gets its Message-ID here, once.
pub async fn insert(
    client: &impl GenericClient,
    messages: &[NewMessage],
    settings: &MailSettings,
) -> Result<u64, tokio_postgres::Error> {
    if messages.is_empty() {
        return Ok(0);
    }
    let domain = settings.message_domain();
    let mut ids = Vec::with_capacity(messages.len());
    let mut message_ids = Vec::with_capacity(messages.len());
    let mut addresses = Vec::with_capacity(messages.len());
    let mut states = Vec::with_capacity(messages.len());
    let mut errors = Vec::with_capacity(messages.len());
    for _ in messages {
        let id = Uuid::now_v7();
        ids.push(id);
        message_ids.push(format!("<{}@{domain}>", id.simple()));
    }
    for m in messages {
        let (address, error) = match deliverable(m.to_address.as_deref()) {
            Ok(a) => (a, None),
            Err(e) => (None, Some(e)),
        };
        states.push(if address.is_some() {
            "pending"
        } else {
            "no_address"
        });
        addresses.push(address);
        errors.push(error);
    }
    let raffles: Vec<Uuid> = messages.iter().map(|m| m.raffle_id).collect();
    let orders: Vec<Uuid> = messages.iter().map(|m| m.order_id).collect();
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind.as_str()).collect();
    let keys: Vec<&str> = messages.iter().map(|m| m.dedupe_key.as_str()).collect();
    let subjects: Vec<&str> = messages.iter().map(|m| m.letter.subject.as_str()).collect();
    let texts: Vec<&str> = messages.iter().map(|m| m.letter.text.as_str()).collect();
    let htmls: Vec<&str> = messages.iter().map(|m| m.letter.html.as_str()).collect();
    let by: Vec<Option<&str>> = messages.iter().map(|m| m.requested_by.as_deref()).collect();
    client
        .execute(
            "INSERT INTO notify.messages (id, raffle_id, order_id, kind, dedupe_key, to_address, subject,
                                          text_body, html_body, message_id, state, last_error, requested_by)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                                  $13::text[])
             ON CONFLICT (dedupe_key) DO NOTHING",
            &[
                &ids, &raffles, &orders, &kinds, &keys, &addresses, &subjects, &texts, &htmls,
                &message_ids, &states, &errors, &by,
            ],
        )
        .await
}

/// What each of `orders` is, for the messages about it.
pub async fn facts(
    client: &impl GenericClient,
    orders: &[Uuid],
) -> Result<HashMap<Uuid, OrderFacts>, tokio_postgres::Error> {
    if orders.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            "SELECT o.id, o.raffle_id, g.name, g.license_number, r.name, r.draw_time,
                    r.draw_time + make_interval(days => r.claim_period_days), p.name, o.ticket_count,
                    o.total_amount_minor, o.currency, o.validation_number, o.customer_name, o.customer_email
               FROM sales.orders o
               JOIN catalog.raffle_events r ON r.id = o.raffle_id
               JOIN catalog.organizations g ON g.id = r.organization_id
               LEFT JOIN catalog.ticket_packages p ON p.id = o.package_id
              WHERE o.id = ANY($1)",
            &[&orders],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: Uuid = r.get(0);
            (
                id,
                OrderFacts {
                    order_id: id,
                    raffle_id: r.get(1),
                    organization: r.get(2),
                    license_number: r.get(3),
                    raffle: r.get(4),
                    draw_time: r.get(5),
                    claim_by: r.get(6),
                    package: r.get(7),
                    ticket_count: r.get(8),
                    amount_minor: r.get(9),
                    currency: r.get(10),
                    validation_number: r.get(11),
                    customer_name: r.get(12),
                    customer_email: r.get(13),
                },
            )
        })
        .collect())
}

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("no order {0}")]
    NoOrder(Uuid),
    #[error("order {0} has no draw numbers to send yet")]
    NoNumbers(Uuid),
    #[error("order {0} has no e-mail address to send to")]
    NoAddress(Uuid),
    #[error(
        "order {order}'s numbers were sent again {RESENDS_PER_HOUR} times in the last hour: try again in {} min",
        wait.as_secs().div_ceil(60).max(1)
    )]
    TooSoon { order: Uuid, wait: Duration },
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
}

impl ResendError {
    /// As an HTTP problem: too soon is 429, nothing to send 409, an unknown order 404.
    pub fn problem(self) -> platform::problem::Problem {
        use platform::problem::Problem;
        match self {
            ResendError::TooSoon { .. } => Problem::too_many(self.to_string()),
            ResendError::NoOrder(_) => Problem::not_found(self.to_string()),
            ResendError::NoNumbers(_) | ResendError::NoAddress(_) => {
                Problem::conflict("nothing-to-send", self.to_string())
            }
            ResendError::Database(e) => platform::problem::from_db("writing the copy", &e),
        }
    }
}

/// Writes, in `tx` (the caller commits), a fresh copy of the numbers `order` holds now, to be
/// sent to its buyer's address; refused when it was asked for [`RESENDS_PER_HOUR`] times in the
/// last hour.
pub async fn resend(
    tx: &tokio_postgres::Transaction<'_>,
    settings: &MailSettings,
    order: Uuid,
    requested_by: &str,
) -> Result<Delivery, ResendError> {
    // One request per order at a time, so two at once cannot both pass the count.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('notify-resend:' || $1::uuid::text, 0))",
        &[&order],
    )
    .await?;
    let facts = facts(tx, &[order])
        .await?
        .remove(&order)
        .ok_or(ResendError::NoOrder(order))?;
    if deliverable(facts.customer_email.as_deref())
        .ok()
        .flatten()
        .is_none()
    {
        return Err(ResendError::NoAddress(order));
    }
    let recent = tx
        .query_one(
            "SELECT count(*), min(created_at) FROM notify.messages
              WHERE order_id = $1 AND kind = 'resend' AND created_at > now() - interval '1 hour'",
            &[&order],
        )
        .await?;
    if recent.get::<_, i64>(0) >= RESENDS_PER_HOUR {
        let oldest: Option<DateTime<Utc>> = recent.get(1);
        let wait = oldest
            .map(|at| at + chrono::Duration::hours(1) - Utc::now())
            .and_then(|d| d.to_std().ok())
            .unwrap_or(Duration::from_secs(60));
        return Err(ResendError::TooSoon { order, wait });
    }
    let numbers: Vec<i64> = tx
        .query(
            "SELECT draw_number FROM sales.tickets WHERE order_id = $1 AND state <> 'voided' ORDER BY draw_number",
            &[&order],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if numbers.is_empty() {
        return Err(ResendError::NoNumbers(order));
    }
    let id = Uuid::now_v7();
    let mut message = NewMessage::about(
        &facts,
        Kind::Resend,
        format!("resend:{id}"),
        &About::Copy { numbers: &numbers },
        settings,
    );
    message.requested_by = Some(requested_by.to_owned());
    insert(tx, &[message], settings).await?;
    let delivery = deliveries(tx, order)
        .await?
        .into_iter()
        .rev()
        .find(|d| d.kind == "resend")
        .ok_or(ResendError::NoOrder(order))?;
    tracing::info!(%order, requested_by, message = %delivery.message_id, "numbers to be sent again");
    Ok(delivery)
}

/// One message and what became of it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: Uuid,
    pub kind: String,
    pub to_address: Option<String>,
    pub subject: String,
    pub message_id: String,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub requested_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl Delivery {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "kind": self.kind, "to": self.to_address, "subject": self.subject,
            "message_id": self.message_id, "state": self.state, "attempts": self.attempts,
            "last_error": self.last_error, "requested_by": self.requested_by,
            "created_at": self.created_at, "sent_at": self.sent_at,
        })
    }
}

/// The messages of `order`, oldest first.
pub async fn deliveries(
    client: &impl GenericClient,
    order: Uuid,
) -> Result<Vec<Delivery>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT id, kind, to_address, subject, message_id, state, attempts, last_error, requested_by,
                    created_at, sent_at
               FROM notify.messages WHERE order_id = $1 ORDER BY created_at, id",
            &[&order],
        )
        .await?
        .iter()
        .map(|r| Delivery {
            id: r.get(0),
            kind: r.get(1),
            to_address: r.get(2),
            subject: r.get(3),
            message_id: r.get(4),
            state: r.get(5),
            attempts: r.get(6),
            last_error: r.get(7),
            requested_by: r.get(8),
            created_at: r.get(9),
            sent_at: r.get(10),
        })
        .collect())
}

/// How a raffle's messages stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub no_address: i64,
}

impl Summary {
    /// Nothing left to try.
    pub fn settled(&self) -> bool {
        self.pending == 0 && self.sending == 0
    }
}

pub async fn summary(
    client: &impl GenericClient,
    raffle: Uuid,
) -> Result<Summary, tokio_postgres::Error> {
    let mut s = Summary::default();
    for r in client
        .query(
            "SELECT state, count(*) FROM notify.messages WHERE raffle_id = $1 GROUP BY state",
            &[&raffle],
        )
        .await?
    {
        let n: i64 = r.get(1);
        match r.get::<_, &str>(0) {
            "pending" => s.pending = n,
            "sending" => s.sending = n,
            "sent" => s.sent = n,
            "failed" => s.failed = n,
            _ => s.no_address = n,
        }
    }
    Ok(s)
}

/// Writes a message for each winning order of a completed draw that has none yet; returns how
/// many. Runs in the sender's passes: the draw engine writes no event to consume.
pub async fn owe_wins(
    pool: &deadpool_postgres::Pool,
    settings: &MailSettings,
) -> Result<u64, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "SELECT t.order_id, array_agg(r.winning_number ORDER BY r.position, r.winner_index),
                    array_agg(p.name ORDER BY r.position, r.winner_index),
                    array_agg(r.prize_value_at_draw_minor ORDER BY r.position, r.winner_index)
               FROM draw.draw_results r
               JOIN draw.draw_executions e ON e.id = r.draw_execution_id AND e.state = 'completed'
               JOIN sales.tickets t ON t.id = r.winning_ticket_id
               JOIN catalog.prizes p ON p.id = r.prize_id
              WHERE NOT EXISTS (SELECT 1 FROM notify.messages m WHERE m.dedupe_key = 'won:' || t.order_id::text)
              GROUP BY t.order_id LIMIT 500",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    if rows.is_empty() {
        return Ok(0);
    }
    let orders: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let facts = facts(&**client, &orders).await.map_err(|e| e.to_string())?;
    let mut owed = Vec::new();
    for r in &rows {
        let order: Uuid = r.get(0);
        let Some(facts) = facts.get(&order) else {
            continue;
        };
        let (numbers, prizes, values): (Vec<i64>, Vec<String>, Vec<i64>) =
            (r.get(1), r.get(2), r.get(3));
        let wins: Vec<crate::compose::Win> = numbers
            .into_iter()
            .zip(prizes)
            .zip(values)
            .map(|((number, prize), value_minor)| crate::compose::Win {
                number,
                prize,
                value_minor,
            })
            .collect();
        owed.push(NewMessage::about(
            facts,
            Kind::Won,
            format!("won:{order}"),
            &About::Won { wins: &wins },
            settings,
        ));
    }
    insert(&**client, &owed, settings)
        .await
        .map_err(|e| e.to_string())
}
