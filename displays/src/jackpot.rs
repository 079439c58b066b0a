//! A raffle's jackpot as the public is shown it: an estimate from the tallies while it sells,
//! by the same split rules and terms the seal applies, and the sealed value once sealed.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// The jackpot of one raffle at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Jackpot {
    pub raffle_id: Uuid,
    pub raffle: String,
    pub state: String,
    pub currency: String,
    /// The main prize's value: estimated, or final once sealed.
    pub jackpot_minor: i64,
    pub is_final: bool,
    pub tickets_sold: i64,
    pub sales_end_time: DateTime<Utc>,
    pub draw_time: DateTime<Utc>,
    /// After the draw: the winning numbers, prize by prize.
    pub winners: Vec<Value>,
    /// Moves whenever anything above may have changed: the tallies' batches and the state.
    pub version: String,
}

/// How a raffle's figures stand, read in one go for the feed's change check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub changes: i64,
    pub state: String,
}

/// The stamps of `raffles` (those that exist).
pub async fn stamps(
    client: &impl GenericClient,
    raffles: &[Uuid],
) -> Result<Vec<(Uuid, Stamp)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT r.id, coalesce(j.changes, 0), r.state FROM catalog.raffle_events r
               LEFT JOIN displays.jackpots j ON j.raffle_id = r.id
              WHERE r.id = ANY($1) AND r.state <> 'draft'",
            &[&raffles],
        )
        .await?
        .iter()
        .map(|r| {
            (
                r.get(0),
                Stamp {
                    changes: r.get(1),
                    state: r.get(2),
                },
            )
        })
        .collect())
}

impl Jackpot {
    /// The jackpot of `raffle` now; `None` for no such (public) raffle.
    pub async fn load(
        client: &impl GenericClient,
        raffle: Uuid,
    ) -> Result<Option<Jackpot>, String> {
        let db = |e: tokio_postgres::Error| platform::error_chain(&e);
        let Some(row) = client
            .query_opt(
                "SELECT r.name, r.state, r.currency, r.sales_end_time, r.draw_time,
                        coalesce(j.issued_minor, 0), coalesce(j.voided_minor, 0),
                        coalesce(j.tickets_issued, 0), coalesce(j.tickets_voided, 0), coalesce(j.changes, 0),
                        s.prizes, s.tickets_eligible,
                        (SELECT jsonb_agg(jsonb_build_object('prize', p.name, 'number', d.winning_number,
                                'value_minor', d.prize_value_at_draw_minor) ORDER BY d.position, d.winner_index)
                           FROM draw.draw_executions e JOIN draw.draw_results d ON d.draw_execution_id = e.id
                           JOIN catalog.prizes p ON p.id = d.prize_id
                          WHERE e.raffle_event_id = r.id AND e.state = 'completed')
                   FROM catalog.raffle_events r
                   LEFT JOIN displays.jackpots j ON j.raffle_id = r.id
                   LEFT JOIN ledger.seals s ON s.raffle_id = r.id
                  WHERE r.id = $1 AND r.state <> 'draft'",
                &[&raffle],
            )
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let terms = ledger::split::Terms::load(client, raffle)
            .await
            .map_err(db)?
            .ok_or_else(|| format!("raffle {raffle} has no terms"))?;
        let main = terms.main_prize();
        let state: String = row.get(1);
        let sealed: Option<Value> = row.get(10);
        let (issued, voided): (i64, i64) = (row.get(5), row.get(6));
        let (jackpot_minor, is_final, tickets_sold) = match sealed {
            Some(prizes) => {
                let id = main.map(|i| terms.prizes[i].id.to_string());
                let value = prizes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["prize_id"].as_str() == id.as_deref())
                    .and_then(|p| p["amount_minor"].as_i64())
                    .unwrap_or(0);
                (value, true, row.get::<_, i64>(11))
            }
            None => {
                let gross = issued.saturating_sub(voided).max(0);
                let split = terms
                    .split(gross)
                    .map_err(|e| format!("raffle {raffle}: {e}"))?;
                let value = main
                    .and_then(|i| split.prizes_minor.get(i).copied())
                    .unwrap_or(0);
                let tickets: i64 = row.get::<_, i64>(7) - row.get::<_, i64>(8);
                (value, false, tickets)
            }
        };
        let winners: Option<Value> = row.get(12);
        let changes: i64 = row.get(9);
        Ok(Some(Jackpot {
            raffle_id: raffle,
            raffle: row.get(0),
            version: format!("{}-{changes}-{state}", raffle.simple()),
            state,
            currency: row.get(2),
            jackpot_minor,
            is_final,
            tickets_sold,
            sales_end_time: row.get(3),
            draw_time: row.get(4),
            winners: winners
                .and_then(|w| w.as_array().cloned())
                .unwrap_or_default(),
        }))
    }

    /// As the feeds publish it. Ontario's rule: until the seal it is called an estimate.
    pub fn to_json(&self) -> Value {
        json!({
            "raffle_id": self.raffle_id,
            "raffle": self.raffle,
            "state": self.state,
            "currency": self.currency,
            "jackpot_minor": self.jackpot_minor,
            "jackpot": format!("{} {}", schemas::amount_for_people(self.jackpot_minor), self.currency),
            "final": self.is_final,
            "label": if self.is_final { "Final jackpot" } else { "Estimated jackpot" },
            "note": if self.is_final {
                "as sealed in the raffle's books"
            } else {
                "an estimate until sales close and the books are sealed"
            },
            "tickets_sold": self.tickets_sold,
            "sales_end_time": self.sales_end_time,
            "draw_time": self.draw_time,
            "winning_numbers": self.winners,
            "version": self.version,
        })
    }
}
