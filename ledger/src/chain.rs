//! The hash chain: each entry's SHA-256 over its canonical text, which includes the previous
//! entry's hash. Changing any entry or posting changes its hash and breaks every link after it.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The hash before the first entry of a raffle.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// What the hash covers: everything that gives an entry its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryText<'a> {
    pub raffle_id: Uuid,
    pub sequence: i64,
    pub entry_type: &'a str,
    pub event_id: Uuid,
    pub order_id: Option<Uuid>,
    pub currency: &'a str,
    pub occurred_at_us: i64,
    /// (account code, amount: debit positive, credit negative).
    pub postings: Vec<(String, i64)>,
}

impl EntryText<'_> {
    /// `v1|raffle|sequence|type|event|order|currency|occurred_at_us|code=amount;…|previous`,
    /// postings in account-code order.
    pub fn canonical(&self, previous: &[u8; 32]) -> String {
        let mut postings = self.postings.clone();
        postings.sort();
        let postings: Vec<String> = postings
            .iter()
            .map(|(code, amount)| format!("{code}={amount}"))
            .collect();
        format!(
            "v1|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.raffle_id,
            self.sequence,
            self.entry_type,
            self.event_id,
            self.order_id
                .map(|o| o.to_string())
                .unwrap_or_else(|| "-".into()),
            self.currency,
            self.occurred_at_us,
            postings.join(";"),
            hex::encode(previous)
        )
    }

    pub fn hash(&self, previous: &[u8; 32]) -> [u8; 32] {
        Sha256::digest(self.canonical(previous).as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> EntryText<'static> {
        EntryText {
            raffle_id: Uuid::nil(),
            sequence: 1,
            entry_type: "ticket_sale",
            event_id: Uuid::nil(),
            order_id: None,
            currency: "USD",
            occurred_at_us: 1,
            postings: vec![
                ("payment_clearing".into(), 2000),
                ("gross_ticket_revenue".into(), -2000),
            ],
        }
    }

    #[test]
    fn any_change_changes_the_hash_and_posting_order_does_not() {
        let base = entry().hash(&GENESIS);
        let mut reordered = entry();
        reordered.postings.reverse();
        assert_eq!(reordered.hash(&GENESIS), base);
        let mut amount = entry();
        amount.postings[0].1 = 2001;
        assert_ne!(amount.hash(&GENESIS), base);
        let mut sequence = entry();
        sequence.sequence = 2;
        assert_ne!(sequence.hash(&GENESIS), base);
        assert_ne!(
            entry().hash(&[1u8; 32]),
            base,
            "the link to the previous entry is covered"
        );
    }
}
