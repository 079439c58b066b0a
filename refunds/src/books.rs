//! The refunds' own entries in the books, posted through the ledger's code in the transaction
//! that marks them booked: once per settlement, whichever process settled it.

use deadpool_postgres::Pool;
use ledger::Account;
use uuid::Uuid;

use crate::obligations::RefundError;

/// Books what the provider paid (`refund_paid`: refunds payable against clearing) and what it
/// took back (`refund_reopened`, a paid refund that later failed). Returns how many entries.
pub async fn book_settled(pool: &Pool, limit: i64) -> Result<usize, RefundError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| RefundError::Invalid(format!("no database connection: {e}")))?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "SELECT id, raffle_id, order_id, amount_minor, currency, state, payment_reference, provider_refund_id
               FROM refunds.obligations
              WHERE (state = 'succeeded' AND booked = 'owed') OR (state = 'failed' AND booked = 'paid')
              ORDER BY raffle_id, id LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&limit],
        )
        .await?;
    for row in &rows {
        let (id, raffle, order): (Uuid, Uuid, Option<Uuid>) = (row.get(0), row.get(1), row.get(2));
        let (amount, currency, state): (i64, String, String) = (row.get(3), row.get(4), row.get(5));
        let (payment, refund): (String, Option<String>) = (row.get(6), row.get(7));
        let refund = refund.unwrap_or_default();
        let order = order.map(|o| format!(" of order {o}")).unwrap_or_default();
        let (entry_type, description, postings, booked) = if state == "succeeded" {
            (
                "refund_paid",
                format!("refund {id}{order} paid by the provider ({refund}, payment {payment})"),
                [
                    Account::RefundsPayable.debit(amount),
                    Account::PaymentClearing.credit(amount),
                ],
                "paid",
            )
        } else {
            (
                "refund_reopened",
                format!(
                    "refund {id}{order} failed after it was paid ({refund}, payment {payment}): owed again"
                ),
                [
                    Account::PaymentClearing.debit(amount),
                    Account::RefundsPayable.credit(amount),
                ],
                "owed",
            )
        };
        ledger::append(&tx, raffle, entry_type, description, &currency, &postings).await?;
        tx.execute(
            "UPDATE refunds.obligations SET booked = $2, updated_at = now() WHERE id = $1",
            &[&id, &booked],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}
