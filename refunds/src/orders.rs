//! Whole orders given back: a cancelled raffle's paid orders, and an order staff refund (a
//! buyer who asks, a sale made in error). Each becomes an obligation for what the buyer paid
//! less what was already refunded, and its entry in the books in the same transaction: the
//! sale reversed (`ticket_reversal`: refunds and voids against refunds payable), so that paying
//! it (`refund_paid`) settles the liability as for every other refund. When the provider has
//! paid, its `charge.refunded` voids the order's tickets through the allocator, and the ledger
//! posts nothing more for that void (it finds the obligation by its source).
//!
//! - Cancelled raffles: the worker owes their orders on each pass (source `cancel:<order>`,
//!   reason `raffle_cancelled`), so a cancellation owes its refunds within a second however it
//!   was made, and owing them again finds them owed.
//! - Staff refunds: [`refund_order`] (source `order-refund:<order>`, reason `staff_refund`), a
//!   critical event, while the raffle is on sale or closed (after the seal the revenue it would
//!   reverse is divided).
//!
//! Sales on RSUs were paid at the device (cash or its own terminal): they are not the
//! provider's to refund, and stay with finance (the report lists them by device).

use std::collections::HashSet;

use catalog::audit::{self, Actor, Severity};
use deadpool_postgres::Pool;
use ledger::Account;
use schemas::{Money, RefundSource};
use serde_json::json;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::obligations::{NewObligation, Obligation, RefundError};

/// The reason code cancellations are owed under.
pub const CANCELLED: &str = "raffle_cancelled";
/// The reason code of an order staff refund.
pub const STAFF_REFUND: &str = "staff_refund";

/// An order to give back whole.
struct Owed {
    order: Uuid,
    raffle: Uuid,
    amount: Money,
    provider: String,
    reference: String,
    source: RefundSource,
    reason: String,
}

/// The orders' obligations and their reversals, once each: returns the sources that are new.
async fn owe_and_reverse(
    tx: &Transaction<'_>,
    owed: &[Owed],
    reason_code: &str,
) -> Result<HashSet<String>, RefundError> {
    let keys: Vec<String> = owed.iter().map(|o| o.source.key()).collect();
    let list: Vec<NewObligation<'_>> = owed
        .iter()
        .zip(&keys)
        .map(|(o, key)| NewObligation {
            raffle_id: o.raffle,
            order_id: Some(o.order),
            source_key: key.clone(),
            reason_code,
            reason: &o.reason,
            provider: &o.provider,
            payment_reference: &o.reference,
            amount: o.amount,
        })
        .collect();
    let new = crate::obligations::owe_returning(tx, &list).await?;
    for (o, key) in owed.iter().zip(&keys) {
        if !new.contains(key) {
            continue;
        }
        let amount = o.amount.amount_minor();
        ledger::append(
            tx,
            o.raffle,
            "ticket_reversal",
            format!(
                "order {} reversed: {}; payment {} is owed back",
                o.order, o.reason, o.reference
            ),
            o.amount.currency_code(),
            &[
                Account::RefundsAndVoids.debit(amount),
                Account::RefundsPayable.credit(amount),
            ],
        )
        .await?;
    }
    Ok(new)
}

fn money(order: Uuid, amount: i64, currency: &str) -> Result<Money, RefundError> {
    Money::of(amount, currency).map_err(|e| RefundError::Invalid(format!("order {order}: {e}")))
}

/// Owes (and books) up to `limit` refunds of cancelled raffles not owed yet. Returns how many
/// are new.
pub async fn owe_cancelled(pool: &Pool, limit: i64) -> Result<usize, RefundError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| RefundError::Invalid(format!("no database connection: {e}")))?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "SELECT o.id, o.raffle_id, o.total_amount_minor - o.refunded_minor, o.currency,
                    o.payment_provider, o.payment_reference, r.name
               FROM catalog.raffle_events r JOIN sales.orders o ON o.raffle_id = r.id
              WHERE r.state = 'cancelled' AND o.source = 'online' AND o.payment_status = 'completed'
                AND o.payment_reference IS NOT NULL AND o.total_amount_minor > o.refunded_minor
                AND NOT EXISTS (SELECT 1 FROM refunds.obligations b WHERE b.source_key = 'cancel:' || o.id::text)
              ORDER BY o.raffle_id, o.id LIMIT $1",
            &[&limit],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut owed = Vec::with_capacity(rows.len());
    for row in &rows {
        let order: Uuid = row.get(0);
        debug_assert_eq!(
            RefundSource::CancelledOrder(order).key(),
            format!("cancel:{order}"),
            "the query's NOT EXISTS spells the key as the schemas do"
        );
        owed.push(Owed {
            order,
            raffle: row.get(1),
            amount: money(order, row.get(2), row.get(3))?,
            provider: row
                .get::<_, Option<String>>(4)
                .unwrap_or_else(|| "stripe".into()),
            reference: row.get(5),
            source: RefundSource::CancelledOrder(order),
            reason: format!("raffle {} was cancelled", row.get::<_, String>(6)),
        });
    }
    let new = owe_and_reverse(&tx, &owed, CANCELLED).await?;
    tx.commit().await?;
    if !new.is_empty() {
        tracing::info!(owed = new.len(), "refunds owed for cancelled raffles");
    }
    Ok(new.len())
}

/// Staff give an online order back whole, with the reason, in the caller's transaction: the
/// refund is owed and the sale reversed now; the worker pays it. Refused (with why) for an
/// order of another raffle, not online, not paid, already refunded or owed, or once the
/// raffle is sealed.
pub async fn refund_order(
    tx: &Transaction<'_>,
    raffle: Uuid,
    order: Uuid,
    reason: &str,
    by: &Actor,
) -> Result<Obligation, RefundError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(RefundError::Invalid(
            "a refund needs a reason of 1 to 500 characters".into(),
        ));
    }
    let row = tx
        .query_opt(
            "SELECT o.source, o.payment_status, o.total_amount_minor - o.refunded_minor, o.currency,
                    o.payment_provider, o.payment_reference, r.state, r.organization_id
               FROM sales.orders o JOIN catalog.raffle_events r ON r.id = o.raffle_id
              WHERE o.id = $1 AND o.raffle_id = $2 FOR UPDATE OF r",
            &[&order, &raffle],
        )
        .await?
        .ok_or_else(|| RefundError::Invalid(format!("order {order} is not an order of raffle {raffle}")))?;
    let (source, status, state): (String, String, String) = (row.get(0), row.get(1), row.get(6));
    let refused = |why: String| Err(RefundError::Invalid(format!("order {order}: {why}")));
    if source != "online" {
        return refused(
            "an RSU sale was paid at the device; give it back there, not through the provider"
                .into(),
        );
    }
    if status != "completed" {
        return refused(format!("it is {status}: only a paid order is refunded"));
    }
    if !matches!(state.as_str(), "active" | "sales_closed") {
        return refused(format!(
            "the raffle is {state}: after the seal its revenue is divided, and a cancelled raffle refunds every order itself"
        ));
    }
    let Some(reference) = row.get::<_, Option<String>>(5) else {
        return refused("it names no payment to refund".into());
    };
    let already: Option<(String, String)> = tx
        .query_opt(
            "SELECT id::text, state FROM refunds.obligations WHERE order_id = $1 AND source_key = ANY($2)",
            &[
                &order,
                &RefundSource::whole_order(order)
                    .iter()
                    .map(RefundSource::key)
                    .collect::<Vec<_>>(),
            ],
        )
        .await?
        .map(|r| (r.get(0), r.get(1)));
    if let Some((id, state)) = already {
        return refused(format!("it is already owed back (refund {id}, {state})"));
    }
    let amount = money(order, row.get(2), row.get(3))?;
    if amount.amount_minor() <= 0 {
        return refused("it has been refunded in full already".into());
    }
    let owed = Owed {
        order,
        raffle,
        amount,
        provider: row
            .get::<_, Option<String>>(4)
            .unwrap_or_else(|| "stripe".into()),
        reference,
        source: RefundSource::OrderRefund(order),
        reason: format!("refunded by {}: {reason}", by.sub),
    };
    owe_and_reverse(tx, std::slice::from_ref(&owed), STAFF_REFUND).await?;
    let id: Uuid = tx
        .query_one(
            "SELECT id FROM refunds.obligations WHERE source_key = $1",
            &[&owed.source.key()],
        )
        .await?
        .get(0);
    let organization: Uuid = row.get(7);
    audit::record(
        tx,
        Some(by),
        audit::Event::info(
            Some(organization),
            "ORDER_REFUNDED",
            format!(
                "order {order} refunded whole by staff ({} {}, payment {}): {reason}",
                amount.amount_minor(),
                amount.currency_code(),
                owed.reference
            ),
        )
        .raffle(raffle)
        .severity(Severity::Warning)
        .change(
            None,
            Some(json!({"refund_id": id, "order_id": order, "reason": reason})),
        ),
    )
    .await?;
    crate::obligations::get(tx, id).await
}
