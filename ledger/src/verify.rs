//! Verification of a raffle's books from the rows alone: the chain links, every hash, every
//! entry's balance; and account balances now or as of any past entry.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::chain::{EntryText, GENESIS};

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

/// Recomputes the chain of `raffle_id` entry by entry.
pub async fn verify(
    client: &impl GenericClient,
    raffle_id: Uuid,
) -> Result<Verification, tokio_postgres::Error> {
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
    let mut previous = GENESIS;
    let mut verified = 0;
    for (i, row) in rows.iter().enumerate() {
        let id: Uuid = row.get(0);
        let sequence: i64 = row.get(1);
        let fail = |reason: String| Failure {
            entry_id: id,
            sequence,
            reason,
        };
        let stored_previous: &[u8] = row.get(7);
        let stored_hash: &[u8] = row.get(8);
        let codes: Vec<String> = row.get(9);
        let amounts: Vec<i64> = row.get(10);
        let failure = if sequence != i as i64 + 1 {
            Some(fail(format!(
                "sequence {sequence} where {} was expected: an entry is missing or inserted",
                i + 1
            )))
        } else if stored_previous != previous {
            Some(fail(
                "its previous_hash does not link to the entry before it".into(),
            ))
        } else if codes.len() < 2 || amounts.iter().sum::<i64>() != 0 {
            Some(fail(format!(
                "its {} postings sum to {}, not zero",
                codes.len(),
                amounts.iter().sum::<i64>()
            )))
        } else {
            let entry_type: String = row.get(2);
            let currency: String = row.get(5);
            let text = EntryText {
                raffle_id,
                sequence,
                entry_type: &entry_type,
                event_id: row.get(3),
                order_id: row.get(4),
                currency: &currency,
                occurred_at_us: row.get(6),
                postings: codes.into_iter().zip(amounts).collect(),
            };
            let hash = text.hash(&previous);
            if stored_hash != hash {
                Some(fail(
                    "its contents do not match its hash: the entry or a posting was changed".into(),
                ))
            } else {
                previous = hash;
                None
            }
        };
        if let Some(f) = failure {
            return Ok(Verification {
                raffle_id,
                entries_verified: verified,
                head_hash: hex::encode(previous),
                first_failure: Some(f),
            });
        }
        verified += 1;
    }
    Ok(Verification {
        raffle_id,
        entries_verified: verified,
        head_hash: hex::encode(previous),
        first_failure: None,
    })
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
