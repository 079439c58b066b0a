//! Verification of a raffle's books from the rows alone: the chain links, every hash, every
//! entry's balance; and account balances now or as of any past entry.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::chain::{EntryText, GENESIS};
use crate::tickets::EligibleSet;

/// The outcome: how many entries verified, and the first that did not, with why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verification {
    pub raffle_id: Uuid,
    pub entries_verified: i64,
    pub head_hash: String,
    pub first_failure: Option<Failure>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub entry_id: Uuid,
    pub sequence: i64,
    pub reason: String,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.first_failure.is_none()
    }
}

/// One entry as the chain covers it: what the database holds, and what an export carries.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ChainEntry {
    pub id: Uuid,
    pub sequence: i64,
    pub entry_type: String,
    pub event_id: Uuid,
    pub order_id: Option<Uuid>,
    pub currency: String,
    pub occurred_at_us: i64,
    /// Hex.
    pub previous_hash: String,
    /// Hex.
    pub hash: String,
    /// (account code, amount: debit positive), in account-code order.
    pub postings: Vec<(String, i64)>,
}

/// Every entry of the raffle, in sequence order, with its postings.
pub async fn load_entries(
    client: &impl GenericClient,
    raffle_id: Uuid,
) -> Result<Vec<ChainEntry>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT e.id, e.sequence, e.entry_type, e.event_id, e.order_id, e.currency,
                    (extract(epoch FROM e.occurred_at) * 1000000)::bigint, e.previous_hash, e.hash,
                    coalesce(array_agg(a.code ORDER BY a.code) FILTER (WHERE a.code IS NOT NULL), '{}'),
                    coalesce(array_agg(p.amount_minor ORDER BY a.code) FILTER (WHERE a.code IS NOT NULL), '{}')
               FROM ledger.journal_entries e
               LEFT JOIN ledger.postings p ON p.entry_id = e.id
               LEFT JOIN ledger.accounts a ON a.id = p.account_id
              WHERE e.raffle_id = $1
              GROUP BY e.id ORDER BY e.sequence",
            &[&raffle_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let codes: Vec<String> = row.get(9);
            let amounts: Vec<i64> = row.get(10);
            ChainEntry {
                id: row.get(0),
                sequence: row.get(1),
                entry_type: row.get(2),
                event_id: row.get(3),
                order_id: row.get(4),
                currency: row.get(5),
                occurred_at_us: row.get(6),
                previous_hash: hex::encode(row.get::<_, &[u8]>(7)),
                hash: hex::encode(row.get::<_, &[u8]>(8)),
                postings: codes.into_iter().zip(amounts).collect(),
            }
        })
        .collect())
}

/// Checks a chain entry by entry: contiguous sequence, each link, each balance, each hash.
pub fn check_chain(raffle_id: Uuid, entries: &[ChainEntry]) -> Verification {
    let mut previous = GENESIS;
    for (i, e) in entries.iter().enumerate() {
        let fail = |reason: String| Failure {
            entry_id: e.id,
            sequence: e.sequence,
            reason,
        };
        let total: i64 = e.postings.iter().map(|p| p.1).sum();
        let failure = if e.sequence != i as i64 + 1 {
            Some(fail(format!(
                "sequence {} where {} was expected: an entry is missing or inserted",
                e.sequence,
                i + 1
            )))
        } else if e.previous_hash != hex::encode(previous) {
            Some(fail(
                "its previous_hash does not link to the entry before it".into(),
            ))
        } else if e.postings.len() < 2 || total != 0 {
            Some(fail(format!(
                "its {} postings sum to {total}, not zero",
                e.postings.len()
            )))
        } else {
            let text = EntryText {
                raffle_id,
                sequence: e.sequence,
                entry_type: &e.entry_type,
                event_id: e.event_id,
                order_id: e.order_id,
                currency: &e.currency,
                occurred_at_us: e.occurred_at_us,
                postings: e.postings.clone(),
            };
            let hash = text.hash(&previous);
            if e.hash != hex::encode(hash) {
                Some(fail(
                    "its contents do not match its hash: the entry or a posting was changed".into(),
                ))
            } else {
                previous = hash;
                None
            }
        };
        if let Some(f) = failure {
            return Verification {
                raffle_id,
                entries_verified: i as i64,
                head_hash: hex::encode(previous),
                first_failure: Some(f),
            };
        }
    }
    Verification {
        raffle_id,
        entries_verified: entries.len() as i64,
        head_hash: hex::encode(previous),
        first_failure: None,
    }
}

/// Recomputes the chain of `raffle_id` entry by entry from the database rows.
pub async fn verify(
    client: &impl GenericClient,
    raffle_id: Uuid,
) -> Result<Verification, tokio_postgres::Error> {
    Ok(check_chain(
        raffle_id,
        &load_entries(client, raffle_id).await?,
    ))
}

/// Balance of every account of the raffle (debit positive), after entry `up_to_sequence` or
/// now when `None`.
pub async fn balances(
    client: &impl GenericClient,
    raffle_id: Uuid,
    up_to_sequence: Option<i64>,
) -> Result<BTreeMap<String, i64>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.code, coalesce(sum(p.amount_minor) FILTER (WHERE $2::bigint IS NULL OR e.sequence <= $2), 0)::bigint
               FROM ledger.accounts a
               LEFT JOIN ledger.postings p ON p.account_id = a.id
               LEFT JOIN ledger.journal_entries e ON e.id = p.entry_id
              WHERE a.raffle_id = $1
              GROUP BY a.code ORDER BY a.code",
            &[&raffle_id, &up_to_sequence],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A figure of the seal that the books no longer support.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SealMismatch {
    pub field: &'static str,
    pub sealed: String,
    pub recomputed: String,
}

/// Recomputes the seal of `raffle_id` (if it was sealed) from the entries and the tickets: the
/// head hash at the seal, the totals, the prizes, fee and net proceeds, the eligible ticket
/// set. Returns every figure that differs; empty when the seal holds.
pub async fn verify_seal(
    client: &impl GenericClient,
    raffle_id: Uuid,
) -> Result<Option<Vec<SealMismatch>>, tokio_postgres::Error> {
    verify_seal_with(client, raffle_id, None).await
}

/// [`verify_seal`] against an eligible set the caller already loaded (the draw loads it once).
pub async fn verify_seal_with(
    client: &impl GenericClient,
    raffle_id: Uuid,
    eligible: Option<&EligibleSet>,
) -> Result<Option<Vec<SealMismatch>>, tokio_postgres::Error> {
    let Some(seal) = client
        .query_opt(
            "SELECT head_hash, entries, gross_sales_minor, refunds_minor, written_off_minor, gross_receipts_minor, prizes,
                    operating_fee_minor, net_proceeds_minor, tickets_eligible, ticket_set_digest, refunds_owed_minor
               FROM ledger.seals WHERE raffle_id = $1",
            &[&raffle_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut mismatches = Vec::new();
    let mut check = |field: &'static str, sealed: String, recomputed: String| {
        if sealed != recomputed {
            mismatches.push(SealMismatch {
                field,
                sealed,
                recomputed,
            });
        }
    };
    let entries: i64 = seal.get(1);
    let head: Option<Vec<u8>> = client
        .query_opt(
            "SELECT hash FROM ledger.journal_entries WHERE raffle_id = $1 AND sequence = $2",
            &[&raffle_id, &entries],
        )
        .await?
        .map(|r| r.get(0));
    check(
        "head_hash",
        hex::encode(seal.get::<_, Vec<u8>>(0)),
        head.map(hex::encode)
            .unwrap_or_else(|| "(no such entry)".into()),
    );
    // Totals from the entries of each kind.
    let sums = client
        .query_one(
            "SELECT coalesce(sum(-p.amount_minor) FILTER (WHERE e.entry_type = 'ticket_sale' AND a.code = 'gross_ticket_revenue'), 0)::bigint,
                    coalesce(sum(p.amount_minor) FILTER (WHERE e.entry_type = 'ticket_reversal' AND a.code = 'refunds_and_voids'), 0)::bigint,
                    coalesce(sum(-p.amount_minor) FILTER (WHERE e.entry_type = 'written_off_receipts' AND a.code = 'gross_ticket_revenue'), 0)::bigint,
                    coalesce(sum(p.amount_minor) FILTER (WHERE e.entry_type = 'prize_and_fee_allocation' AND a.code = 'operating_fee_expense'), 0)::bigint,
                    coalesce(sum(-p.amount_minor) FILTER (WHERE e.entry_type = 'close_to_net_proceeds' AND a.code = 'net_proceeds'), 0)::bigint,
                    coalesce(sum(-p.amount_minor) FILTER (WHERE a.code = 'refunds_payable'), 0)::bigint
               FROM ledger.journal_entries e JOIN ledger.postings p ON p.entry_id = e.id JOIN ledger.accounts a ON a.id = p.account_id
              WHERE e.raffle_id = $1 AND e.sequence <= $2",
            &[&raffle_id, &entries],
        )
        .await?;
    let (gross, refunds, written_off, fee, net): (i64, i64, i64, i64, i64) = (
        sums.get(0),
        sums.get(1),
        sums.get(2),
        sums.get(3),
        sums.get(4),
    );
    check(
        "refunds_owed_minor",
        seal.get::<_, i64>(11).to_string(),
        sums.get::<_, i64>(5).to_string(),
    );
    check(
        "gross_sales_minor",
        seal.get::<_, i64>(2).to_string(),
        gross.to_string(),
    );
    check(
        "refunds_minor",
        seal.get::<_, i64>(3).to_string(),
        refunds.to_string(),
    );
    check(
        "written_off_minor",
        seal.get::<_, i64>(4).to_string(),
        written_off.to_string(),
    );
    check(
        "gross_receipts_minor",
        seal.get::<_, i64>(5).to_string(),
        (gross + written_off - refunds).to_string(),
    );
    check(
        "operating_fee_minor",
        seal.get::<_, i64>(7).to_string(),
        fee.to_string(),
    );
    check(
        "net_proceeds_minor",
        seal.get::<_, i64>(8).to_string(),
        net.to_string(),
    );
    let prizes: serde_json::Value = seal.get(6);
    for prize in prizes.as_array().into_iter().flatten() {
        let code = prize["prize_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .map(|id| crate::Account::PrizeExpense(id).code())
            .unwrap_or_default();
        let posted: i64 = client
            .query_one(
                "SELECT coalesce(sum(p.amount_minor), 0)::bigint FROM ledger.journal_entries e
                   JOIN ledger.postings p ON p.entry_id = e.id JOIN ledger.accounts a ON a.id = p.account_id
                  WHERE e.raffle_id = $1 AND e.entry_type = 'prize_and_fee_allocation' AND a.code = $2",
                &[&raffle_id, &code],
            )
            .await?
            .get(0);
        check(
            "prizes",
            prize["amount_minor"].to_string(),
            posted.to_string(),
        );
    }
    // The eligible ticket set, recomputed from the tickets.
    let tickets = match eligible {
        Some(set) => std::borrow::Cow::Borrowed(set),
        None => std::borrow::Cow::Owned(
            EligibleSet::load(client, raffle_id, seal.get::<_, i64>(9).max(0) as usize).await?,
        ),
    };
    check(
        "tickets_eligible",
        seal.get::<_, i64>(9).to_string(),
        tickets.len().to_string(),
    );
    check(
        "ticket_set_digest",
        hex::encode(seal.get::<_, Vec<u8>>(10)),
        tickets.digest_hex(),
    );
    Ok(Some(mismatches))
}
