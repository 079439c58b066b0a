//! Sales as the outside world sends them: the payment provider's webhooks, signed, and an RSU's
//! upload records, built the same way for the demo and the tests.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use platform::http_client::{Response, request};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::seed::Scenario;

/// What the provider tells about the payment of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    /// `payment_intent.succeeded`.
    Succeeded,
    /// `payment_intent.payment_failed`: a declined attempt; the buyer may retry.
    Failed,
    /// `payment_intent.canceled`: the buyer gave up.
    Canceled,
    /// `checkout.session.completed`, paid, the order named by `client_reference_id`.
    SessionCompleted,
    /// `charge.refunded`, the whole charge.
    Refunded,
    /// `charge.refunded` for part of a charge of `charged_minor`, as Stripe sends it for a
    /// Checkout payment: no order id on the charge; the order is found by its PaymentIntent.
    PartlyRefunded { charged_minor: i64 },
    /// `charge.dispute.closed`, lost: the bank took the money back.
    DisputeLost,
}

/// The provider's event `event_id` about the payment of `order` (PaymentIntent `pi_{order}`,
/// charge `ch_{order}`) for `amount_minor` in USD — for a partial refund, the amount refunded.
pub fn stripe_event(event_id: &str, order: &str, amount_minor: i64, payment: Payment) -> Value {
    let pi = format!("pi_{order}");
    let charge = format!("ch_{order}");
    let (kind, object) = match payment {
        Payment::Succeeded | Payment::Failed | Payment::Canceled => (
            match payment {
                Payment::Succeeded => "payment_intent.succeeded",
                Payment::Failed => "payment_intent.payment_failed",
                _ => "payment_intent.canceled",
            },
            json!({"id": pi, "amount": amount_minor, "currency": "usd", "metadata": {"order_id": order}}),
        ),
        Payment::SessionCompleted => (
            "checkout.session.completed",
            json!({"id": format!("cs_{order}"), "object": "checkout.session", "amount_total": amount_minor,
                   "client_reference_id": order, "currency": "usd", "mode": "payment", "payment_intent": pi,
                   "payment_status": "paid", "status": "complete"}),
        ),
        Payment::Refunded => (
            "charge.refunded",
            json!({"id": charge, "amount": amount_minor, "amount_refunded": amount_minor, "currency": "usd",
                   "payment_intent": pi, "metadata": {"order_id": order}}),
        ),
        Payment::PartlyRefunded { charged_minor } => (
            "charge.refunded",
            json!({"id": charge, "amount": charged_minor, "amount_refunded": amount_minor, "currency": "usd",
                   "payment_intent": pi, "metadata": {}, "refunded": false}),
        ),
        Payment::DisputeLost => (
            "charge.dispute.closed",
            json!({"id": format!("dp_{order}"), "object": "dispute", "amount": amount_minor, "charge": charge,
                   "currency": "usd", "payment_intent": pi, "reason": "fraudulent", "status": "lost"}),
        ),
    };
    json!({"id": event_id, "type": kind, "created": Utc::now().timestamp(), "data": {"object": object}})
}

/// Delivers a webhook to ingest at `addr`, signed with `secret` as the provider signs it.
pub async fn deliver(addr: SocketAddr, secret: &[u8], event: &Value) -> Result<Response, String> {
    let bytes = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let signature = ingest::signature::sign(secret, &bytes, Utc::now().timestamp());
    let headers = [
        ("Stripe-Signature", signature.as_str()),
        ("Content-Type", "application/json"),
    ];
    request(addr, "POST", "/v1/webhooks/payments", &headers, &bytes)
        .await
        .map_err(|e| format!("delivering webhook {}: {e}", event["id"]))
}

/// One sale of an RSU, as its upload record, with what its receipt shows.
pub struct RsuSale {
    pub record: Value,
    pub validation_number: String,
    /// The code printed on the receipt; the record carries only its hash.
    pub check_code: String,
}

/// The `j`th sale (five numbers for $20) of the scenario's RSU `r`, from its block, made at
/// `made`; its local id is `{label}{r}-{j}`.
pub fn rsu_sale(s: &Scenario, r: usize, j: usize, made: DateTime<Utc>, label: &str) -> RsuSale {
    let alloc = &s.rsus[r].allocation;
    let start = alloc["start_number"].as_i64().unwrap_or_default();
    let block = &alloc["validation_number_block"];
    let prefix = block["prefix"].as_str().unwrap_or_default();
    let first = block["first_sequence"].as_i64().unwrap_or_default();
    let j = j as i64;
    let validation = schemas::ValidationNumber::in_block(prefix, (first + j) as i32);
    // As the device does: a code on the receipt, its hash in the record.
    let mut random = [0u8; 8];
    random.copy_from_slice(&Uuid::new_v4().as_bytes()[..8]);
    let code = schemas::CheckCode::from_random(random);
    let record = json!({
        "localId": format!("{label}{r}-{j}"), "eventId": s.raffle_id, "allocationId": alloc["id"],
        "validationNumber": validation,
        "checkCodeHash": hex::encode(code.hash(s.raffle_id, &validation)),
        "drawNumbers": (0..5).map(|k| start + 5 * j + k).collect::<Vec<_>>(),
        "packageId": s.package_id, "ticketCount": 5, "totalAmount": 2000, "currency": "USD",
        "operatorId": format!("seller-{}", r + 1), "createdAt": made, "isOfflineSale": true,
        "syncStatus": "pending", "syncAttempts": 0
    });
    RsuSale {
        record,
        validation_number: validation,
        check_code: code.display(),
    }
}
