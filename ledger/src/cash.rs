//! The cash a device took, counted and deposited. A count is made by two people (both named)
//! against the device's starting float and the value of its sales since its last count, as
//! the books hold it (`rsu_float/<rsu>`); the entry `cash_count` moves that value into
//! undeposited cash and books the difference as over or short. A deposit (`cash_deposit`)
//! moves undeposited cash to the bank, with its slip, due by the third banking day after the
//! count (North Dakota's rule; weekends are not banking days).
//!
//! Writes `ledger.cash_counts`, `ledger.cash_deposits` and their entries. Refused, with the
//! reason: a count by one person, for a device that had no number block of the raffle, after
//! the seal or after finance confirmed the reconciliation; a deposit of more than is waiting.

use chrono::{Datelike, NaiveDate, Utc, Weekday};
use serde::Serialize;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::Account;

#[derive(Debug, thiserror::Error)]
pub enum CashError {
    #[error("{0}")]
    Refused(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

fn refused(text: impl Into<String>) -> CashError {
    CashError::Refused(text.into())
}

/// A count as the two people made it.
#[derive(Debug, Clone)]
pub struct NewCount<'a> {
    pub raffle_id: Uuid,
    pub rsu_id: Uuid,
    pub seller_id: Option<&'a str>,
    pub float_minor: i64,
    pub counted_minor: i64,
    pub counted_by: &'a str,
    pub witnessed_by: &'a str,
    pub note: Option<&'a str>,
}

/// A recorded count.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub id: Uuid,
    pub rsu_id: Uuid,
    pub rsu_name: String,
    pub expected_minor: i64,
    pub counted_minor: i64,
    pub float_minor: i64,
    /// Counted less float less expected: positive over, negative short.
    pub over_short_minor: i64,
    pub to_deposit_minor: i64,
    pub deposit_due_by: NaiveDate,
}

/// The third banking day after `day` (Saturdays and Sundays are not banking days).
pub fn third_banking_day(day: NaiveDate) -> NaiveDate {
    let mut d = day;
    let mut left = 3;
    while left > 0 {
        d = d.succ_opt().unwrap_or(d);
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    d
}

async fn open_for_cash(
    tx: &Transaction<'_>,
    raffle: Uuid,
    what: &str,
    sealed_ok: bool,
) -> Result<String, CashError> {
    let row = tx
        .query_opt(
            "SELECT currency, state, reconciliation_confirmed_at IS NOT NULL,
                    EXISTS (SELECT 1 FROM ledger.seals s WHERE s.raffle_id = r.id)
               FROM catalog.raffle_events r WHERE id = $1",
            &[&raffle],
        )
        .await?
        .ok_or_else(|| refused(format!("raffle {raffle} does not exist")))?;
    let (currency, state, confirmed, sealed): (String, String, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if confirmed {
        return Err(refused(format!(
            "raffle {raffle}'s reconciliation is confirmed by finance: no {what} is recorded after the sign-off"
        )));
    }
    if sealed && !sealed_ok {
        return Err(refused(format!(
            "raffle {raffle} is {state}: its devices are counted before the seal"
        )));
    }
    Ok(currency)
}

/// Records a count and its entry, in the caller's transaction.
pub async fn count(tx: &Transaction<'_>, c: &NewCount<'_>) -> Result<Count, CashError> {
    let (counted_by, witnessed_by) = (c.counted_by.trim(), c.witnessed_by.trim());
    if counted_by.is_empty() || witnessed_by.is_empty() {
        return Err(refused(
            "a cash count is made by two people: name who counted and who witnessed",
        ));
    }
    if counted_by.eq_ignore_ascii_case(witnessed_by) {
        return Err(refused(format!(
            "a cash count is made by two people: {counted_by} cannot witness their own count"
        )));
    }
    if c.float_minor < 0 || c.counted_minor < 0 {
        return Err(refused("the float and the counted cash are not negative"));
    }
    let currency = open_for_cash(tx, c.raffle_id, "cash count", false).await?;
    let device = tx
        .query_opt(
            "SELECT r.name FROM catalog.rsus r
              WHERE r.id = $2 AND EXISTS (SELECT 1 FROM catalog.rsu_allocations a WHERE a.raffle_id = $1 AND a.entity_id = r.id)",
            &[&c.raffle_id, &c.rsu_id],
        )
        .await?
        .ok_or_else(|| {
            refused(format!(
                "RSU {} had no number block of raffle {}: there is no cash of it to count",
                c.rsu_id, c.raffle_id
            ))
        })?;
    let rsu_name: String = device.get(0);
    // The float account, locked through the chain head the entry will take anyway.
    let float_account = Account::RsuFloat(c.rsu_id);
    let expected: i64 = tx
        .query_one(
            "SELECT coalesce(sum(p.amount_minor), 0)::bigint FROM ledger.postings p
               JOIN ledger.accounts a ON a.id = p.account_id
              WHERE a.raffle_id = $1 AND a.code = $2",
            &[&c.raffle_id, &float_account.code()],
        )
        .await?
        .get(0);
    let expected = expected.max(0);
    let to_deposit = c
        .counted_minor
        .checked_sub(c.float_minor)
        .ok_or_else(|| refused("the counted cash does not fit in 64-bit minor units"))?;
    let over_short = to_deposit
        .checked_sub(expected)
        .ok_or_else(|| refused("the difference does not fit in 64-bit minor units"))?;
    let today = Utc::now().date_naive();
    let due = third_banking_day(today);
    let id = Uuid::now_v7();
    tx.execute(
        "INSERT INTO ledger.cash_counts (id, raffle_id, rsu_id, seller_id, currency, float_minor, counted_minor,
             expected_minor, over_short_minor, counted_by, witnessed_by, deposit_due_by, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            &id,
            &c.raffle_id,
            &c.rsu_id,
            &c.seller_id,
            &currency,
            &c.float_minor,
            &c.counted_minor,
            &expected,
            &over_short,
            &counted_by,
            &witnessed_by,
            &due,
            &c.note,
        ],
    )
    .await?;
    let mut postings = vec![
        Account::UndepositedCash.debit(to_deposit),
        float_account.credit(expected),
    ];
    if over_short != 0 {
        postings.push(Account::CashOverShort.credit(over_short));
    }
    postings.retain(|p| p.amount_minor != 0);
    if !postings.is_empty() {
        crate::append(
            tx,
            c.raffle_id,
            "cash_count",
            format!(
                "cash of {rsu_name} counted by {counted_by}, witnessed by {witnessed_by}: {} counted, float {}, sales {}, {} {}",
                schemas::amount_for_people(c.counted_minor),
                schemas::amount_for_people(c.float_minor),
                schemas::amount_for_people(expected),
                if over_short < 0 { "short" } else { "over" },
                schemas::amount_for_people(over_short.abs())
            ),
            &currency,
            &postings,
        )
        .await?;
    }
    Ok(Count {
        id,
        rsu_id: c.rsu_id,
        rsu_name,
        expected_minor: expected,
        counted_minor: c.counted_minor,
        float_minor: c.float_minor,
        over_short_minor: over_short,
        to_deposit_minor: to_deposit,
        deposit_due_by: due,
    })
}

/// A deposit to the bank, with its slip.
#[derive(Debug, Clone)]
pub struct NewDeposit<'a> {
    pub raffle_id: Uuid,
    pub slip_number: &'a str,
    pub deposited_on: NaiveDate,
    pub amount_minor: i64,
    pub recorded_by: &'a str,
}

/// Records a deposit and its entry; refused beyond what is waiting to be deposited.
pub async fn deposit(tx: &Transaction<'_>, d: &NewDeposit<'_>) -> Result<i64, CashError> {
    if d.slip_number.trim().is_empty() {
        return Err(refused("a deposit names its slip number"));
    }
    if d.amount_minor <= 0 {
        return Err(refused("a deposit is of a positive amount"));
    }
    let currency = open_for_cash(tx, d.raffle_id, "deposit", true).await?;
    let waiting: i64 = tx
        .query_one(
            "SELECT coalesce(sum(p.amount_minor), 0)::bigint FROM ledger.postings p
               JOIN ledger.accounts a ON a.id = p.account_id
              WHERE a.raffle_id = $1 AND a.code = $2",
            &[&d.raffle_id, &Account::UndepositedCash.code()],
        )
        .await?
        .get(0);
    if d.amount_minor > waiting {
        return Err(refused(format!(
            "a deposit of {} is more than the {} counted and not yet deposited",
            schemas::amount_for_people(d.amount_minor),
            schemas::amount_for_people(waiting)
        )));
    }
    let inserted = tx
        .execute(
            "INSERT INTO ledger.cash_deposits (id, raffle_id, slip_number, deposited_on, amount_minor, currency, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (raffle_id, slip_number) DO NOTHING",
            &[
                &Uuid::now_v7(),
                &d.raffle_id,
                &d.slip_number.trim(),
                &d.deposited_on,
                &d.amount_minor,
                &currency,
                &d.recorded_by,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(refused(format!(
            "deposit slip {} of raffle {} is recorded already",
            d.slip_number.trim(),
            d.raffle_id
        )));
    }
    crate::append(
        tx,
        d.raffle_id,
        "cash_deposit",
        format!(
            "deposit slip {} of {} on {}, recorded by {}",
            d.slip_number.trim(),
            schemas::amount_for_people(d.amount_minor),
            d.deposited_on,
            d.recorded_by
        ),
        &currency,
        &[
            Account::Bank.debit(d.amount_minor),
            Account::UndepositedCash.credit(d.amount_minor),
        ],
    )
    .await?;
    Ok(waiting - d.amount_minor)
}

/// The devices of the raffle whose sales the books hold uncounted (balance of their float
/// account, less what the seal wrote off), by name.
pub async fn uncounted(
    client: &impl tokio_postgres::GenericClient,
    raffle: Uuid,
) -> Result<Vec<(Uuid, String, i64)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT r.id, r.name, coalesce((SELECT sum(p.amount_minor) FROM ledger.postings p JOIN ledger.accounts a ON a.id = p.account_id
                                       JOIN ledger.journal_entries e ON e.id = p.entry_id
                                      WHERE a.raffle_id = $1 AND a.code = 'rsu_float/' || r.id::text
                                        AND e.entry_type <> 'written_off_receipts'), 0)::bigint AS uncounted
               FROM catalog.rsus r
              WHERE r.id IN (SELECT entity_id FROM catalog.rsu_allocations WHERE raffle_id = $1)
              ORDER BY r.name",
            &[&raffle],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .filter(|(_, _, v): &(Uuid, String, i64)| *v != 0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposits_are_due_by_the_third_banking_day() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        // A Tuesday count is due Friday; a Friday count the next Wednesday; a Saturday one
        // the next Wednesday.
        assert_eq!(third_banking_day(d(2026, 12, 1)), d(2026, 12, 4));
        assert_eq!(third_banking_day(d(2026, 12, 4)), d(2026, 12, 9));
        assert_eq!(third_banking_day(d(2026, 12, 5)), d(2026, 12, 9));
    }
}
