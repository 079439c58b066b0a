//! The buyer's look-up of their order: `POST /v1/orders/lookup` with `{"order_id",
//! "check_code"}` — the order id and the check code the checkout answered (and the receipt
//! shows). It answers the order's state, its draw numbers once the allocator issued them, and
//! after the draw whether any of them won.
//!
//! The check code is the buyer's secret, stored only as its hash: a wrong code, an unknown
//! order and an RSU sale (looked up at the venue, not here) get the same answer, so the answer
//! does not say whether an order exists. Each address may look up [`LOOKUPS_PER_MINUTE`] times
//! a minute; beyond, 429 says when to come back. Read-only: this writes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use platform::problem::Problem;
use serde_json::{Value, json};
use uuid::Uuid;
use warp::http::StatusCode;

use crate::IngestState;

/// Look-ups an address may make in a minute: a buyer checking after a payment, and again later.
pub const LOOKUPS_PER_MINUTE: u32 = 20;

/// Look-ups per address in the current minute.
#[derive(Default)]
pub struct LookupLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LookupLimiter {
    /// Counts one look-up from `address`; how long to wait when it is one too many.
    fn admit(&self, address: Option<IpAddr>) -> Result<(), Duration> {
        let Some(address) = address else {
            return Ok(());
        };
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the addresses whose minute is over, so the map stays as big as the last
        // minute's callers.
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let (start, count) = windows.entry(address).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            *start = now;
            *count = 0;
        }
        if *count >= LOOKUPS_PER_MINUTE {
            return Err(Duration::from_secs(60).saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupInput {
    order_id: Uuid,
    check_code: String,
}

/// The one answer for an order that is not there, not online, or not this code's.
fn not_found() -> Problem {
    Problem::not_found("no order matches that order id and check code")
}

/// Counts one look-up from `address` against its limit.
fn admit(state: &IngestState, address: Option<IpAddr>) -> Result<(), Problem> {
    state.buyer_lookups.admit(address).map_err(|wait| {
        Problem::too_many(format!(
            "too many order look-ups from this address: try again in {} s",
            wait.as_secs().max(1)
        ))
    })
}

/// Whether `code` is the check code of online order `order`; the one answer otherwise.
async fn check(state: &IngestState, order: Uuid, code: &str) -> Result<(), Problem> {
    let code = schemas::CheckCode::parse(code).map_err(|_| not_found())?;
    let client = platform::problem::pooled(&state.pool).await?;
    let row = client
        .query_opt(
            "SELECT raffle_id, validation_number, check_code_hash FROM sales.orders
              WHERE id = $1 AND source = 'online'",
            &[&order],
        )
        .await
        .map_err(|e| platform::problem::from_db("looking the order up", &e))?
        .ok_or_else(not_found)?;
    let (raffle, validation): (Uuid, String) = (row.get(0), row.get(1));
    let stored: Option<Vec<u8>> = row.get(2);
    if !stored.is_some_and(|stored| code.matches(raffle, &validation, &stored)) {
        tracing::info!(%order, "order look-up with a code that does not match");
        return Err(not_found());
    }
    Ok(())
}

/// The order id of a request with `{"order_id", "check_code"}`, counted against its address's
/// limit and checked against the code.
async fn authorised(
    state: &IngestState,
    address: Option<IpAddr>,
    body: &[u8],
) -> Result<Uuid, Problem> {
    let input: LookupInput = platform::body::parse(body)?;
    admit(state, address)?;
    check(state, input.order_id, &input.check_code).await?;
    Ok(input.order_id)
}

pub async fn look_up(
    state: &IngestState,
    address: Option<IpAddr>,
    body: &[u8],
) -> Result<(StatusCode, Value), Problem> {
    let order = authorised(state, address, body).await?;
    answer(state, order).await
}

/// `GET /v1/orders/{id}?expires=…&signature=…`: the link in the buyer's e-mail, signed with the
/// operator's link key; a link that is not this key's for this order gets the one answer, an
/// expired one says so.
pub async fn by_link(
    state: &IngestState,
    address: Option<IpAddr>,
    order: &str,
    query: &HashMap<String, String>,
) -> Result<(StatusCode, Value), Problem> {
    admit(state, address)?;
    let Some(key) = state.mail.link_key.as_deref() else {
        return Err(Problem::not_found(
            "order links are not enabled here (RAFFLE_LINK_KEY); look the order up with its check code",
        ));
    };
    let order: Uuid = order.parse().map_err(|_| not_found())?;
    let expires: i64 = query
        .get("expires")
        .and_then(|e| e.parse().ok())
        .ok_or_else(not_found)?;
    let signature = query.get("signature").ok_or_else(not_found)?;
    match notifier::link::verify(
        key,
        order,
        expires,
        signature,
        chrono::Utc::now().timestamp(),
    ) {
        Ok(()) => answer(state, order).await,
        Err(e @ notifier::link::LinkError::Expired) => Err(Problem::gone(e.to_string())),
        Err(notifier::link::LinkError::Forged) => {
            tracing::info!(%order, "order link with a signature that does not match");
            Err(not_found())
        }
    }
}

/// `POST /v1/orders/resend` with `{"order_id", "check_code"}`: the order's numbers e-mailed
/// again to the address it was bought with (never to one given here), a few times an hour.
pub async fn resend(
    state: &IngestState,
    address: Option<IpAddr>,
    body: &[u8],
) -> Result<(StatusCode, Value), Problem> {
    let order = authorised(state, address, body).await?;
    let mut client = state
        .pool
        .get()
        .await
        .map_err(|e| Problem::unavailable(format!("no database connection: {e}")))?;
    let db = |e: tokio_postgres::Error| platform::problem::from_db("writing the copy", &e);
    let tx = client.transaction().await.map_err(db)?;
    let delivery = notifier::messages::resend(&tx, &state.mail, order, "buyer")
        .await
        .map_err(|e| {
            tracing::info!(order = %order, refused = %e, "a buyer's copy refused");
            e.problem()
        })?;
    tx.commit().await.map_err(db)?;
    Ok((
        StatusCode::ACCEPTED,
        json!({"order_id": order, "message_id": delivery.message_id, "state": delivery.state,
               "says": "your draw numbers are on their way to the address you bought with"}),
    ))
}

/// The order as its buyer sees it.
async fn answer(state: &IngestState, order: Uuid) -> Result<(StatusCode, Value), Problem> {
    let client = platform::problem::pooled(&state.pool).await?;
    let db = |e: tokio_postgres::Error| platform::problem::from_db("looking the order up", &e);
    let Some(row) = client
        .query_opt(
            "SELECT o.raffle_id, o.validation_number, o.check_code_hash, o.payment_status, o.ticket_count,
                    o.total_amount_minor, o.currency, o.refunded_minor, r.name, r.state, p.name
               FROM sales.orders o JOIN catalog.raffle_events r ON r.id = o.raffle_id
               LEFT JOIN catalog.ticket_packages p ON p.id = o.package_id
              WHERE o.id = $1 AND o.source = 'online'",
            &[&order],
        )
        .await
        .map_err(db)?
    else {
        return Err(not_found());
    };
    let (raffle, validation): (Uuid, String) = (row.get(0), row.get(1));
    let mut numbers = Vec::new();
    let mut voided = Vec::new();
    for t in client
        .query(
            "SELECT draw_number, state FROM sales.tickets WHERE order_id = $1 ORDER BY draw_number",
            &[&order],
        )
        .await
        .map_err(db)?
    {
        let (number, state): (i64, String) = (t.get(0), t.get(1));
        if state == "voided" {
            voided.push(number);
        } else {
            numbers.push(number);
        }
    }
    let draw = client
        .query_opt(
            "SELECT e.id, e.completed_at FROM draw.draw_executions e
              WHERE e.raffle_event_id = $1 AND e.state = 'completed'",
            &[&raffle],
        )
        .await
        .map_err(db)?;
    let (drawn, won) = match draw {
        None => (Value::Null, Vec::new()),
        Some(d) => {
            let execution: Uuid = d.get(0);
            let won: Vec<Value> = client
                .query(
                    "SELECT r.winning_number, p.name, r.prize_value_at_draw_minor
                       FROM draw.draw_results r JOIN catalog.prizes p ON p.id = r.prize_id
                      WHERE r.draw_execution_id = $1 AND r.winning_number = ANY($2)
                      ORDER BY r.position, r.winner_index",
                    &[&execution, &numbers],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|w| {
                    json!({"number": w.get::<_, i64>(0), "prize": w.get::<_, String>(1),
                           "value_minor": w.get::<_, i64>(2)})
                })
                .collect();
            (
                json!(d.get::<_, Option<chrono::DateTime<chrono::Utc>>>(1)),
                won,
            )
        }
    };
    let status: String = row.get(3);
    let says = match status.as_str() {
        "pending" => "waiting for the payment",
        "completed" if numbers.is_empty() => "paid; the draw numbers are being issued",
        "completed" => "paid; these are your draw numbers",
        "failed" => "the payment did not go through; nothing was charged",
        "rejected" => "the payment came when no tickets were left; it is refunded",
        "refunded" => "refunded",
        "voided" => "voided and refunded",
        _ => "see the payment status",
    };
    Ok((
        StatusCode::OK,
        json!({
            "order_id": order,
            "raffle": {"id": raffle, "name": row.get::<_, String>(8), "state": row.get::<_, String>(9)},
            "package": row.get::<_, Option<String>>(10),
            "payment_status": status,
            "says": says,
            "validation_number": validation,
            "ticket_count": row.get::<_, i32>(4),
            "amount_minor": row.get::<_, i64>(5),
            "currency": row.get::<_, String>(6),
            "refunded_minor": row.get::<_, i64>(7),
            "draw_numbers": numbers,
            "voided_numbers": voided,
            "drawn_at": drawn,
            "won": won,
        }),
    ))
}
