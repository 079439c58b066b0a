//! A cancelled raffle gives every buyer's money back. Each paid online order of a raffle in
//! state `cancelled` becomes an obligation (source `cancel:<order>`, reason
//! `raffle_cancelled`) for what the buyer paid less what was already refunded, and its entry
//! in the books in the same transaction: the sale reversed (`ticket_reversal`: refunds and
//! voids against refunds payable), so that paying it (`refund_paid`) settles the liability as
//! for every other refund. The worker does this on each pass, so a cancellation owes its
//! refunds within a second however it was made, and owing them again finds them owed.
//!
//! Sales on RSUs were paid in cash or on the device's own terminal: they are not the
//! provider's to refund, and stay with finance (the report lists them by device).

use deadpool_postgres::Pool;
use ledger::Account;
use schemas::{Money, RefundSource};
use uuid::Uuid;

use crate::obligations::{NewObligation, RefundError};

/// The reason code cancellations are owed under.
pub const REASON_CODE: &str = "raffle_cancelled";

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
    struct Owed {
        order: Uuid,
        raffle: Uuid,
        amount: Money,
        provider: String,
        reference: String,
        source: String,
        reason: String,
    }
    let mut owed = Vec::with_capacity(rows.len());
    for row in &rows {
        let (order, raffle): (Uuid, Uuid) = (row.get(0), row.get(1));
        let (amount, currency): (i64, String) = (row.get(2), row.get(3));
        let amount = Money::of(amount, &currency)
            .map_err(|e| RefundError::Invalid(format!("order {order} of raffle {raffle}: {e}")))?;
        let name: String = row.get(6);
        owed.push(Owed {
            order,
            raffle,
            amount,
            provider: row
                .get::<_, Option<String>>(4)
                .unwrap_or_else(|| "stripe".into()),
            reference: row.get(5),
            source: RefundSource::CancelledOrder(order).key(),
            reason: format!("raffle {name} was cancelled: the buyer's payment goes back"),
        });
    }
    let list: Vec<NewObligation<'_>> = owed
        .iter()
        .map(|o| NewObligation {
            raffle_id: o.raffle,
            order_id: Some(o.order),
            source_key: o.source.clone(),
            reason_code: REASON_CODE,
            reason: &o.reason,
            provider: &o.provider,
            payment_reference: &o.reference,
            amount: o.amount,
        })
        .collect();
    let new = crate::obligations::owe_returning(&*tx, &list).await?;
    for o in owed.iter().filter(|o| new.contains(&o.source)) {
        let amount = o.amount.amount_minor();
        ledger::append(
            &tx,
            o.raffle,
            "ticket_reversal",
            format!(
                "order {} reversed: its raffle was cancelled and payment {} is owed back",
                o.order, o.reference
            ),
            o.amount.currency_code(),
            &[
                Account::RefundsAndVoids.debit(amount),
                Account::RefundsPayable.credit(amount),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    if !new.is_empty() {
        tracing::info!(owed = new.len(), "refunds owed for cancelled raffles");
    }
    Ok(new.len())
}
