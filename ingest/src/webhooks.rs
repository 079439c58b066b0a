//! Payment webhooks, as Stripe really sends them (README "Payment webhooks"). Answered 2xx
//! only after what the event says is durably on `raffle.sales.v1`, or recorded for finance;
//! the same provider event delivered any number of times issues tickets once (the order is
//! completed once, by the allocator).
//!
//! Nothing Stripe legitimately sends is refused: a type not acted on, a payment that is no
//! raffle order's, an amount that does not match are all acknowledged — the first ignored,
//! the others recorded once (`sales.provider_events`) or passed to the allocator, which
//! rejects a payment it cannot honour so that it is refunded. Only a bad signature (401) or a
//! body that is not an event (400) is refused.

use chrono::Utc;
use platform::problem::Problem;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;
use warp::http::StatusCode;

use crate::lookup::OrderForPayment;
use crate::signature::{self, SignatureError};
use crate::stripe::{Fact, Reading};
use crate::{IngestState, Reply};
use schemas::{Currency, PaymentRef, RangePartition, RangeRef, SaleEvent, SaleEventKind};

const PROVIDER: &str = "stripe";

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    created: i64,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: Value,
}

pub async fn receive(
    state: &IngestState,
    header: Option<&str>,
    body: &[u8],
) -> Result<Reply, Problem> {
    let now = Utc::now();
    signature::verify(
        &state.config.webhook_secret,
        header,
        body,
        now.timestamp(),
        state.config.webhook_tolerance_s,
    )
    .map_err(|e| {
        tracing::warn!(reason = %e, "webhook signature refused");
        match e {
            SignatureError::Missing | SignatureError::Malformed(_) => {
                Problem::bad_signature(e.to_string())
            }
            _ => Problem::unauthenticated(e.to_string()),
        }
    })?;
    // Only the envelope is judged here; the object is read by what its type says it is.
    let event: Envelope = platform::body::parse_unchecked(body)?;
    crate::provider_id("id", &event.id)?;
    let Some(reading) = crate::stripe::read(&event.kind, &event.data.object) else {
        tracing::debug!(event = ?event.id, kind = ?event.kind, "webhook type ignored");
        return Ok((
            StatusCode::OK,
            json!({"status": "ignored", "type": event.kind}),
        ));
    };
    if let Some(intent) = &reading.payment_intent {
        crate::provider_id("data.object.payment_intent", intent)?;
    }
    settle_our_refund(state, &event).await?;
    let order = find_order(state, &reading).await?;
    let Some((order_id, order)) = order else {
        return note(state, &event, &reading, None, "not_a_raffle_order").await;
    };
    let kind = match &reading.fact {
        Fact::Note(note_code) => {
            return note(state, &event, &reading, Some((order_id, &order)), note_code).await;
        }
        Fact::Paid => SaleEventKind::SaleCompleted,
        Fact::Ended(_) => SaleEventKind::PaymentFailed,
        Fact::Refunded { .. } | Fact::DisputeLost => SaleEventKind::RefundRequested,
    };
    if let Some(reply) = already_done(&reading, kind, order_id, &order) {
        return Ok(reply);
    }
    let Some(range) = order.online_range else {
        return note(
            state,
            &event,
            &reading,
            Some((order_id, &order)),
            "raffle_has_no_online_range",
        )
        .await;
    };
    // The amount that moved, in the currency the provider reports: the allocator compares
    // it with the order and rejects (for refund) what it cannot honour.
    let Some((amount, currency)) = moved(&reading, kind, &order) else {
        return note(
            state,
            &event,
            &reading,
            Some((order_id, &order)),
            "unreadable_currency",
        )
        .await;
    };
    if let Fact::Refunded { whole: false } = reading.fact
        && amount < order.amount_minor
    {
        // Tickets stay with a partial refund; finance sees it.
        let _ = note(
            state,
            &event,
            &reading,
            Some((order_id, &order)),
            "partial_refund",
        )
        .await?;
    }
    let sale = SaleEvent {
        event_id: Uuid::now_v7(),
        idempotency_key: event.id.clone(),
        kind,
        raffle_id: order.raffle_id,
        range_partition: RangePartition {
            raffle_id: order.raffle_id,
            range: RangeRef::Range(range),
        },
        order_id: Some(order_id),
        package_id: Some(order.package_id),
        ticket_count: order.ticket_count,
        amount_minor: amount,
        currency,
        occurred_at_us: event.created.saturating_mul(1_000_000),
        received_at_us: now.timestamp_micros(),
        payment: reading.payment_intent.clone().map(|reference| PaymentRef {
            provider: PROVIDER.into(),
            reference,
            provider_event_id: event.id.clone(),
        }),
        rsu_sale: None,
        customer: None,
        reason: match &reading.fact {
            Fact::Ended(why) => Some((*why).to_owned()),
            Fact::Refunded { .. } => Some("refunded at the provider".into()),
            Fact::DisputeLost => {
                Some("dispute lost: the bank returned the money to the buyer".into())
            }
            _ => None,
        },
    };
    state.publish(&sale).await?;
    tracing::info!(raffle = %order.raffle_id, order = %order_id, provider_event = ?event.id, kind = ?kind, "webhook accepted");
    Ok((
        StatusCode::OK,
        json!({"status": "accepted", "order_id": order_id, "event_id": sale.event_id}),
    ))
}

/// The order an event is about: the one it names, else the one its PaymentIntent paid (a
/// Session's PaymentIntent carries no order id).
async fn find_order(
    state: &IngestState,
    reading: &Reading,
) -> Result<Option<(Uuid, OrderForPayment)>, Problem> {
    if let Some(id) = reading
        .order_hint
        .as_deref()
        .and_then(|h| Uuid::parse_str(h.trim()).ok())
        && let Some(order) = state.orders.get(id).await?
    {
        return Ok(Some((id, order)));
    }
    let Some(intent) = &reading.payment_intent else {
        return Ok(None);
    };
    let client = platform::problem::pooled(&state.pool).await?;
    let row = client
        .query_opt(
            "SELECT id FROM sales.orders WHERE payment_provider = $1 AND payment_reference = $2 AND source = 'online'",
            &[&PROVIDER, intent],
        )
        .await
        .map_err(|e| platform::problem::from_db("finding the order of a payment", &e))?;
    drop(client);
    match row {
        Some(row) => {
            let id: Uuid = row.get(0);
            Ok(state.orders.get(id).await?.map(|o| (id, o)))
        }
        None => Ok(None),
    }
}

/// What is already done needs no second trip through Kafka. A second, different payment
/// for a paid order is not one: it goes on, and the allocator rejects it with the reason so
/// that it is refunded.
fn already_done(
    reading: &Reading,
    kind: SaleEventKind,
    order_id: Uuid,
    order: &OrderForPayment,
) -> Option<Reply> {
    let done = match (kind, order.payment_status.as_str()) {
        (SaleEventKind::SaleCompleted, "completed") => {
            order.payment_reference.is_some() && order.payment_reference == reading.payment_intent
        }
        (SaleEventKind::PaymentFailed, "failed") | (SaleEventKind::RefundRequested, "refunded") => {
            true
        }
        _ => false,
    };
    done.then(|| {
        (
            StatusCode::OK,
            json!({"status": "duplicate", "order_id": order_id}),
        )
    })
}

/// The amount and currency the event moved, as the sale event carries them; `None` when the
/// currency is neither reported readably nor the order's.
fn moved(
    reading: &Reading,
    kind: SaleEventKind,
    order: &OrderForPayment,
) -> Option<(i64, Currency)> {
    let currency = match reading.currency.as_deref() {
        Some(c) => Currency::parse(&c.to_uppercase()).ok()?,
        None => Currency::parse(&order.currency).ok()?,
    };
    let amount = match (kind, &reading.fact) {
        // A lost dispute, and a refund the provider calls whole, return the whole payment.
        (_, Fact::DisputeLost) | (_, Fact::Refunded { whole: true }) => order.amount_minor,
        _ => reading.amount_minor.unwrap_or(0),
    };
    Some((amount.max(0), currency))
}

/// Records what the event said for finance, once per event, and acknowledges it.
/// A `refund.*` event about a refund the platform asked for (its metadata carries our
/// Idempotency-Key) settles that refund obligation; the event is then noted like any other.
async fn settle_our_refund(state: &IngestState, event: &Envelope) -> Result<(), Problem> {
    if !event.kind.starts_with("refund.") {
        return Ok(());
    }
    let object = &event.data.object;
    let (Some(key), Some(id), Some(status)) = (
        object["metadata"]["idempotency_key"].as_str(),
        object["id"].as_str(),
        object["status"].as_str(),
    ) else {
        return Ok(());
    };
    if refunds::obligations::parse_idempotency_key(key).is_none() {
        return Ok(());
    }
    let settlement = refunds::obligations::Settlement {
        idempotency_key: key.to_owned(),
        provider_refund_id: id.to_owned(),
        provider_status: status.to_owned(),
        failure_reason: object["failure_reason"].as_str().map(str::to_owned),
    };
    let client = platform::problem::pooled(&state.pool).await?;
    match refunds::obligations::settle(&**client, &settlement).await {
        Ok(now) => {
            tracing::info!(provider_event = ?event.id, refund = %id, key, status, state = ?now, "refund settled by webhook");
            Ok(())
        }
        Err(refunds::RefundError::Db(e)) => {
            Err(platform::problem::from_db("settling a refund", &e))
        }
        // A status the provider does not document: noted, not refused (a refusal is retried
        // for days).
        Err(e) => {
            tracing::warn!(provider_event = ?event.id, refund = %id, error = %e, "refund webhook not understood");
            Ok(())
        }
    }
}

async fn note(
    state: &IngestState,
    event: &Envelope,
    reading: &Reading,
    order: Option<(Uuid, &OrderForPayment)>,
    note: &str,
) -> Result<Reply, Problem> {
    let detail = match (note, &reading.fact) {
        ("not_a_raffle_order", _) => format!(
            "{} names no order of this platform (order {:?}, payment {:?})",
            event.kind, reading.order_hint, reading.payment_intent
        ),
        (_, Fact::Note(n)) => format!("{}: {n}", event.kind),
        _ => format!("{}: {note}", event.kind),
    };
    let currency = reading
        .currency
        .as_deref()
        .map(str::to_uppercase)
        .filter(|c| Currency::parse(c).is_ok());
    let amount = reading.amount_minor.filter(|a| *a >= 0);
    let client = platform::problem::pooled(&state.pool).await?;
    client
        .execute(
            "INSERT INTO sales.provider_events (provider, provider_event_id, event_type, note, detail, order_id, raffle_id,
                 payment_reference, amount_minor, currency)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            &[
                &PROVIDER,
                &event.id,
                &event.kind,
                &note,
                &detail,
                &order.map(|(id, _)| id),
                &order.map(|(_, o)| o.raffle_id),
                &reading.payment_intent,
                &amount,
                &currency,
            ],
        )
        .await
        .map_err(|e| platform::problem::from_db("recording a provider event", &e))?;
    tracing::info!(provider_event = ?event.id, kind = ?event.kind, note, "webhook noted");
    Ok((
        StatusCode::OK,
        json!({"status": "noted", "note": note, "order_id": order.map(|(id, _)| id)}),
    ))
}
