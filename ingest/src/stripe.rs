//! What a Stripe event says, read from its genuine shape: the event type first, then only the
//! fields that type carries. Pure: no database, no broker; `webhooks` acts on the answer.
//!
//! The types acted on, and what they mean for an order:
//!
//! | event | fact |
//! |---|---|
//! | `payment_intent.succeeded` | paid (the PaymentIntent's received amount) |
//! | `payment_intent.payment_failed` | an attempt failed: the order stays payable |
//! | `payment_intent.canceled` | the payment ended without success |
//! | `checkout.session.completed` | paid when `payment_status` is `paid`; else waiting |
//! | `checkout.session.async_payment_succeeded` | paid |
//! | `checkout.session.async_payment_failed`, `checkout.session.expired` | ended |
//! | `charge.refunded` | refunded, `amount_refunded` so far (partial or whole) |
//! | `charge.dispute.closed` with `status` `lost` | the money went back to the buyer |
//! | `charge.dispute.*` otherwise, `refund.*` | noted for finance |
//!
//! Every other type is acknowledged and ignored whatever its object holds: Stripe retries a
//! refusal for three days and then disables the endpoint.

use serde_json::Value;

/// What one event says about a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// Money was captured for the payment.
    Paid,
    /// The payment ended without success (cancelled, expired, asynchronous payment failed).
    Ended(&'static str),
    /// `amount` has been refunded so far (cumulative); `whole` when the provider says all.
    Refunded { whole: bool },
    /// A dispute was lost: the amount went back to the buyer through their bank.
    DisputeLost,
    /// Nothing to do for the order; kept for finance under this note.
    Note(&'static str),
}

/// A fact about a payment with what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub fact: Fact,
    /// The order the event names (`metadata.order_id`, or a Session's `client_reference_id`).
    pub order_hint: Option<String>,
    /// The PaymentIntent the money moved by: the payment reference orders keep.
    pub payment_intent: Option<String>,
    /// In the order's currency when the provider reports a conversion.
    pub amount_minor: Option<i64>,
    /// Lower-case ISO code as the provider sends it.
    pub currency: Option<String>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// An id field that may come expanded (`{"id": …}`) or as the id itself.
fn id_of(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn metadata_order(object: &Value) -> Option<String> {
    object
        .get("metadata")
        .and_then(|m| m.get("order_id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A Checkout Session's amount in the currency the session was created in: sessions of
/// Adaptive Pricing created before 2025-03-31 report the buyer's currency in `currency` and
/// the creation currency under `currency_conversion`; later ones keep `currency` and
/// `amount_total` in the creation currency (the buyer's are under `presentment_details`).
fn session_amount(session: &Value) -> (Option<i64>, Option<String>) {
    if let Some(conversion) = session.get("currency_conversion").filter(|c| c.is_object()) {
        return (
            conversion.get("amount_total").and_then(Value::as_i64),
            text(conversion, "source_currency"),
        );
    }
    (
        session.get("amount_total").and_then(Value::as_i64),
        text(session, "currency"),
    )
}

fn session(object: &Value, fact: Fact) -> Reading {
    let (amount_minor, currency) = session_amount(object);
    Reading {
        fact,
        order_hint: text(object, "client_reference_id").or_else(|| metadata_order(object)),
        payment_intent: id_of(object, "payment_intent"),
        amount_minor,
        currency,
    }
}

fn intent(object: &Value, fact: Fact) -> Reading {
    Reading {
        fact,
        order_hint: metadata_order(object),
        payment_intent: text(object, "id"),
        // What was captured; `amount` is what was asked (the 2020 shape has no
        // amount_received on failed attempts).
        amount_minor: object
            .get("amount_received")
            .and_then(Value::as_i64)
            .filter(|a| *a > 0)
            .or_else(|| object.get("amount").and_then(Value::as_i64)),
        currency: text(object, "currency"),
    }
}

/// What the event of type `kind` with `object` says; `None` for a type not acted on.
pub fn read(kind: &str, object: &Value) -> Option<Reading> {
    Some(match kind {
        "payment_intent.succeeded" => intent(object, Fact::Paid),
        "payment_intent.payment_failed" => intent(object, Fact::Note("payment_attempt_failed")),
        "payment_intent.canceled" => intent(object, Fact::Ended("cancelled at the provider")),
        "checkout.session.completed" => {
            let paid = matches!(
                object.get("payment_status").and_then(Value::as_str),
                Some("paid" | "no_payment_required")
            );
            session(
                object,
                if paid {
                    Fact::Paid
                } else {
                    Fact::Note("awaiting_async_payment")
                },
            )
        }
        "checkout.session.async_payment_succeeded" => session(object, Fact::Paid),
        "checkout.session.async_payment_failed" => {
            session(object, Fact::Ended("the asynchronous payment failed"))
        }
        "checkout.session.expired" => session(object, Fact::Ended("the checkout session expired")),
        "charge.refunded" => Reading {
            fact: Fact::Refunded {
                whole: object.get("refunded").and_then(Value::as_bool) == Some(true),
            },
            order_hint: metadata_order(object),
            payment_intent: id_of(object, "payment_intent"),
            amount_minor: object.get("amount_refunded").and_then(Value::as_i64),
            currency: text(object, "currency"),
        },
        k if k.starts_with("charge.dispute.") => Reading {
            fact: match (k, object.get("status").and_then(Value::as_str)) {
                ("charge.dispute.closed", Some("lost")) => Fact::DisputeLost,
                ("charge.dispute.closed", _) => Fact::Note("dispute_closed"),
                _ => Fact::Note("dispute_open"),
            },
            order_hint: metadata_order(object),
            payment_intent: id_of(object, "payment_intent"),
            amount_minor: object.get("amount").and_then(Value::as_i64),
            currency: text(object, "currency"),
        },
        "refund.created" | "refund.updated" | "refund.failed" => Reading {
            fact: Fact::Note(match object.get("status").and_then(Value::as_str) {
                Some("succeeded") => "refund_succeeded",
                Some("failed") => "refund_failed",
                Some("canceled") => "refund_canceled",
                _ => "refund_pending",
            }),
            order_hint: metadata_order(object),
            payment_intent: id_of(object, "payment_intent"),
            amount_minor: object.get("amount").and_then(Value::as_i64),
            currency: text(object, "currency"),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_not_acted_on_are_ignored_whatever_their_object() {
        for kind in [
            "customer.created",
            "balance.available",
            "invoice.paid",
            "payout.paid",
        ] {
            assert_eq!(read(kind, &json!({"currency": null})), None, "{kind}");
            assert_eq!(read(kind, &json!([1, 2])), None, "{kind}");
        }
    }

    #[test]
    fn a_failed_attempt_is_a_note_and_a_session_finds_its_order_by_reference_id() {
        let failed = read("payment_intent.payment_failed", &json!({"id": "pi_1", "amount": 2000, "currency": "usd", "metadata": {"order_id": "o"}})).unwrap();
        assert_eq!(failed.fact, Fact::Note("payment_attempt_failed"));
        let s = read(
            "checkout.session.completed",
            &json!({"id": "cs_1", "payment_status": "paid", "client_reference_id": "o1",
                    "payment_intent": "pi_9", "amount_total": 2000, "currency": "usd", "metadata": {}}),
        )
        .unwrap();
        assert_eq!(
            (s.fact, s.order_hint.as_deref(), s.payment_intent.as_deref()),
            (Fact::Paid, Some("o1"), Some("pi_9"))
        );
        let unpaid = read(
            "checkout.session.completed",
            &json!({"payment_status": "unpaid"}),
        )
        .unwrap();
        assert_eq!(unpaid.fact, Fact::Note("awaiting_async_payment"));
    }

    #[test]
    fn a_converted_session_is_read_in_the_currency_it_was_created_in() {
        let s = read(
            "checkout.session.completed",
            &json!({"payment_status": "paid", "amount_total": 1850, "currency": "eur",
                    "currency_conversion": {"amount_total": 2000, "source_currency": "usd", "fx_rate": "0.925"}}),
        )
        .unwrap();
        assert_eq!(
            (s.amount_minor, s.currency.as_deref()),
            (Some(2000), Some("usd"))
        );
    }

    #[test]
    fn refunds_and_disputes_say_how_much_went_back() {
        let partial = read("charge.refunded", &json!({"amount": 2000, "amount_refunded": 500, "refunded": false, "payment_intent": {"id": "pi_2"}, "currency": "usd"})).unwrap();
        assert_eq!(
            (
                partial.fact,
                partial.amount_minor,
                partial.payment_intent.as_deref()
            ),
            (Fact::Refunded { whole: false }, Some(500), Some("pi_2"))
        );
        let lost = read(
            "charge.dispute.closed",
            &json!({"status": "lost", "amount": 2000, "payment_intent": "pi_3"}),
        )
        .unwrap();
        assert_eq!(lost.fact, Fact::DisputeLost);
        let won = read("charge.dispute.closed", &json!({"status": "won"})).unwrap();
        assert_eq!(won.fact, Fact::Note("dispute_closed"));
    }
}
