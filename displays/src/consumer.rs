//! The displays' consumer of `raffle.tickets.v1`: each raffle's tallies moved by a batch's
//! events, in the batch's transaction. A redelivered event is claimed once
//! (`platform.processed_events`), so a tally never counts it twice.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use platform::consumer::ConsumerConfig;
use platform::consumer::claim_event;
use platform::db::DbTarget;
use platform::service::ConsumerService;
use platform::{BatchHandler, Disposition, HandlerError, Record, TopicNames};
use schemas::{TicketEvent, TicketEventKind};
use tokio_postgres::Transaction;
use uuid::Uuid;

pub const CONSUMER_GROUP: &str = "displays";

/// Keeps the tallies; see the module documentation.
pub struct Displays;

#[derive(Default)]
struct Tally {
    currency: String,
    issued_minor: i64,
    voided_minor: i64,
    tickets_issued: i64,
    tickets_voided: i64,
}

impl BatchHandler for Displays {
    async fn handle(
        &self,
        tx: &Transaction<'_>,
        batch: &[Record],
    ) -> Result<Vec<Disposition>, HandlerError> {
        let mut dispositions = Vec::with_capacity(batch.len());
        let mut tallies: HashMap<Uuid, Tally> = HashMap::new();
        for record in batch {
            let event = match record
                .payload
                .as_deref()
                .map(schemas::decode::<TicketEvent>)
            {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    dispositions.push(Disposition::dead("decode", e.to_string()));
                    continue;
                }
                None => {
                    dispositions.push(Disposition::dead("decode", "message has no value"));
                    continue;
                }
            };
            if event.kind == TicketEventKind::SaleRejected {
                dispositions.push(Disposition::Applied);
                continue;
            }
            if !claim_event(tx, CONSUMER_GROUP, &event.event_id.to_string(), record).await? {
                dispositions.push(Disposition::Duplicate);
                continue;
            }
            let tally = tallies.entry(event.raffle_id).or_default();
            tally.currency = event.currency.to_string();
            let tickets = event.draw_numbers.len() as i64;
            let amount = event.amount_minor.max(0);
            let (money, count) = if event.kind == TicketEventKind::TicketsIssued {
                (&mut tally.issued_minor, &mut tally.tickets_issued)
            } else {
                (&mut tally.voided_minor, &mut tally.tickets_voided)
            };
            *money = money.checked_add(amount).ok_or_else(|| {
                HandlerError::Fatal(format!("raffle {}'s tally overflows", event.raffle_id))
            })?;
            *count += tickets;
            dispositions.push(Disposition::Applied);
        }
        for (raffle, t) in &tallies {
            tx.execute(
                "INSERT INTO displays.jackpots AS j (raffle_id, currency, issued_minor, voided_minor, tickets_issued,
                                                      tickets_voided, changes)
                 VALUES ($1, $2, $3, $4, $5, $6, 1)
                 ON CONFLICT (raffle_id) DO UPDATE
                    SET issued_minor = j.issued_minor + excluded.issued_minor,
                        voided_minor = j.voided_minor + excluded.voided_minor,
                        tickets_issued = j.tickets_issued + excluded.tickets_issued,
                        tickets_voided = j.tickets_voided + excluded.tickets_voided,
                        changes = j.changes + 1, updated_at = now()",
                &[
                    raffle,
                    &t.currency,
                    &t.issued_minor,
                    &t.voided_minor,
                    &t.tickets_issued,
                    &t.tickets_voided,
                ],
            )
            .await?;
        }
        Ok(dispositions)
    }
}

/// A consumer per partition of `raffle.tickets.v1` keeping the tallies.
pub fn service(
    db: &DbTarget,
    pool: &Pool,
    brokers: &str,
    topics: &TopicNames,
) -> ConsumerService<Displays> {
    let configs = ConsumerConfig::each_partition(
        brokers,
        CONSUMER_GROUP,
        &topics.tickets,
        topics.tickets_partitions,
        &topics.dlq,
        // Small lingers: a change should reach the screens within a second.
        |c| {
            c.batch_size_max = 5_000;
            c.linger_ms = 20;
        },
    );
    ConsumerService::new(db, pool, configs, Displays)
}
