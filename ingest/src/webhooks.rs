//! Payment webhooks: payment succeeded, failed, refunded. Answered 2xx only after the sale is
//! durably on `raffle.sales.v1`; the same provider event delivered any number of times issues
//! tickets once (the order is completed once, by the allocator).

use admin::problem::Problem;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use warp::http::StatusCode;

use crate::lookup::OrderForPayment;
use crate::signature::{self, SignatureError};
use crate::{IngestState, Reply, record_rejection};
use schemas::{Currency, PaymentRef, RangePartition, RangeRef, SaleEvent, SaleEventKind};

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: Object,
}

#[derive(Deserialize)]
struct Object {
    id: String,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    amount_refunded: Option<i64>,
    currency: String,
    #[serde(default)]
    payment_intent: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Deserialize, Default)]
struct Metadata {
    order_id: Option<String>,
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
                Problem::malformed(e.to_string())
            }
            _ => Problem::unauthenticated(e.to_string()),
        }
    })?;
    // Only the fields used are judged: a provider's event may carry any text elsewhere.
    let event: Event = admin::api::parse_unchecked(body)?;
    crate::provider_id("id", &event.id)?;
    crate::provider_id("data.object.id", &event.data.object.id)?;
    if let Some(intent) = &event.data.object.payment_intent {
        crate::provider_id("data.object.payment_intent", intent)?;
    }
    let kind = match event.kind.as_str() {
        "payment_intent.succeeded" => SaleEventKind::SaleCompleted,
        "payment_intent.payment_failed" => SaleEventKind::PaymentFailed,
        "charge.refunded" => SaleEventKind::RefundRequested,
        other => {
            // The provider sends many event types; those we do not act on are acknowledged.
            tracing::debug!(event = ?event.id, kind = ?other, "webhook type ignored");
            return Ok((StatusCode::OK, json!({"status": "ignored", "type": other})));
        }
    };
    let order_id = event
        .data
        .object
        .metadata
        .order_id
        .as_deref()
        .ok_or_else(|| Problem::invalid("data.object.metadata.order_id", "is required"))?;
    let order_id = Uuid::parse_str(order_id)
        .map_err(|_| Problem::invalid("data.object.metadata.order_id", "is not a UUID"))?;
    let currency = Currency::parse(&event.data.object.currency.to_uppercase())
        .map_err(|e| Problem::invalid("data.object.currency", e.to_string()))?;
    let Some(order) = state.orders.get(order_id).await? else {
        let client = admin::pooled(&state.pool).await?;
        record_rejection(
            &**client,
            None,
            None,
            None,
            Some(&event.id),
            "unknown_order",
            &format!(
                "webhook {} names order {order_id}, which does not exist",
                event.id
            ),
        )
        .await;
        return Err(Problem::not_found(format!("order {order_id}"))
            .with_field("data.object.metadata.order_id"));
    };
    let OrderForPayment {
        raffle_id,
        package_id,
        ticket_count: count,
        amount_minor: amount,
        currency: order_currency,
        payment_status: status,
        payment_reference: paid_by,
        online_range: range,
    } = order;
    let paid = match kind {
        SaleEventKind::RefundRequested => event
            .data
            .object
            .amount_refunded
            .or(event.data.object.amount),
        _ => event.data.object.amount,
    }
    .ok_or_else(|| Problem::invalid("data.object.amount", "is required"))?;
    if paid != amount || currency.as_str() != order_currency {
        let reason = format!(
            "webhook {} says {paid} {currency}; order {order_id} is {amount} {order_currency}",
            event.id
        );
        let client = admin::pooled(&state.pool).await?;
        record_rejection(
            &**client,
            Some(raffle_id),
            Some(order_id),
            None,
            Some(&event.id),
            "amount_mismatch",
            &reason,
        )
        .await;
        return Err(Problem::invalid("data.object.amount", reason));
    }
    let reference = event
        .data
        .object
        .payment_intent
        .clone()
        .unwrap_or_else(|| event.data.object.id.clone());
    // Re-deliveries of what is already done need no second trip through Kafka. A second,
    // different payment for a paid order is not one: it goes on, and the allocator rejects
    // it with the reason so that it is refunded.
    let done = match (kind, status.as_str()) {
        (SaleEventKind::SaleCompleted, "completed") => paid_by.as_deref() == Some(&reference),
        (SaleEventKind::PaymentFailed, "failed") | (SaleEventKind::RefundRequested, "refunded") => {
            true
        }
        _ => false,
    };
    if done {
        return Ok((
            StatusCode::OK,
            json!({"status": "duplicate", "order_id": order_id}),
        ));
    }
    let range = range.ok_or_else(|| {
        Problem::conflict(
            "no-online-range",
            format!("raffle {raffle_id} has no online range"),
        )
    })?;
    let sale = SaleEvent {
        event_id: Uuid::now_v7(),
        idempotency_key: event.id.clone(),
        kind,
        raffle_id,
        range_partition: RangePartition {
            raffle_id,
            range: RangeRef::Range(range),
        },
        order_id: Some(order_id),
        package_id: Some(package_id),
        ticket_count: count,
        amount_minor: amount,
        currency,
        occurred_at_us: event.created.saturating_mul(1_000_000),
        received_at_us: now.timestamp_micros(),
        payment: Some(PaymentRef {
            provider: "stripe".into(),
            reference,
            provider_event_id: event.id.clone(),
        }),
        rsu_sale: None,
        customer: None,
        reason: match kind {
            SaleEventKind::PaymentFailed => Some("payment failed at the provider".into()),
            SaleEventKind::RefundRequested => Some("refunded at the provider".into()),
            _ => None,
        },
    };
    state.publish(&sale).await?;
    tracing::info!(raffle = %raffle_id, order = %order_id, provider_event = %event.id, kind = ?kind, "webhook accepted");
    Ok((
        StatusCode::OK,
        json!({"status": "accepted", "order_id": order_id, "event_id": sale.event_id}),
    ))
}
