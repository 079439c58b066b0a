//! The eligible ticket set of a raffle: every sold, non-voided number, in draw-number order.
//! The seal records its digest; `verify_seal` and the draw recompute it. Streamed row by row
//! into a compact vector (24 bytes a ticket), so ten million tickets fit in a few hundred MB.

use std::io::Write;

use futures::{StreamExt, pin_mut};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EligibleTicket {
    pub draw_number: i64,
    pub ticket_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct EligibleSet {
    /// In draw-number order.
    pub tickets: Vec<EligibleTicket>,
    /// SHA-256 over `"{draw_number}:{ticket_id}\n"` of every ticket, in order.
    pub digest: [u8; 32],
}

impl EligibleSet {
    /// Builds the set (and its digest) from tickets in draw-number order.
    pub fn from_sorted(tickets: Vec<EligibleTicket>) -> Self {
        let mut hasher = Sha256::new();
        let mut line = Vec::with_capacity(64);
        for t in &tickets {
            line.clear();
            // Writing to a Vec cannot fail.
            let _ = write!(line, "{}:", t.draw_number);
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            line.extend_from_slice(t.ticket_id.hyphenated().encode_lower(&mut text).as_bytes());
            line.push(b'\n');
            hasher.update(&line);
        }
        Self {
            tickets,
            digest: hasher.finalize().into(),
        }
    }

    /// Loads the set of `raffle_id`; `expected` (the count the seal recorded, when known)
    /// reserves the memory once.
    pub async fn load(
        client: &impl GenericClient,
        raffle_id: Uuid,
        expected: usize,
    ) -> Result<Self, tokio_postgres::Error> {
        let rows = client
            .query_raw(
                "SELECT draw_number, id FROM sales.tickets WHERE raffle_id = $1 AND state <> 'voided' ORDER BY draw_number",
                [&raffle_id],
            )
            .await?;
        pin_mut!(rows);
        let mut tickets = Vec::with_capacity(expected);
        while let Some(row) = rows.next().await {
            let row = row?;
            tickets.push(EligibleTicket {
                draw_number: row.get(0),
                ticket_id: row.get(1),
            });
        }
        Ok(Self::from_sorted(tickets))
    }

    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    /// The ticket holding `draw_number`, if it is eligible.
    pub fn find(&self, draw_number: i64) -> Option<EligibleTicket> {
        self.tickets
            .binary_search_by_key(&draw_number, |t| t.draw_number)
            .ok()
            .map(|i| self.tickets[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_the_documented_text() {
        let id = Uuid::from_u128(7);
        let set = EligibleSet::from_sorted(vec![EligibleTicket {
            draw_number: 42,
            ticket_id: id,
        }]);
        let expected: [u8; 32] = Sha256::digest(format!("42:{id}\n").as_bytes()).into();
        assert_eq!(set.digest, expected);
        assert_eq!(set.find(42).map(|t| t.ticket_id), Some(id));
        assert_eq!(set.find(41), None);
    }
}
