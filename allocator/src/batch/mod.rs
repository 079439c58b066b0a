//! One consumed batch of `raffle.sales.v1`, applied in one transaction, in three phases.
//!
//! [`load`] reads and locks what the batch's events touch — raffles, ranges, allocations,
//! validation blocks, orders and the tickets of orders to void — once; [`decide`] judges
//! every event in partition order against that state in memory, with no transaction; [`write`]
//! writes orders, tickets, voids, counters, rejections and outbox messages with a few
//! set-based statements. Numbers of a range are handed out from its cursor in the order the
//! events stand in the partition, so they are gap-free; the cursor is written back once.

mod decide;
mod load;
mod online;
mod rsu;
#[cfg(test)]
mod tests;
mod write;

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};
use platform::{BatchHandler, Disposition, HandlerError, Record};
use schemas::{SaleEvent, SaleEventKind};
use tokio_postgres::Transaction;

use decide::{Decider, Outcome};

/// Applies sales to Postgres; see the crate documentation.
pub struct Allocator {
    group: String,
    tickets_topic: String,
}

impl Allocator {
    pub fn new(group: &str, tickets_topic: &str) -> Self {
        Self {
            group: group.to_owned(),
            tickets_topic: tickets_topic.to_owned(),
        }
    }
}

/// A wire timestamp (microseconds since the epoch) as a time.
fn wire_time(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

impl BatchHandler for Allocator {
    async fn handle(
        &self,
        tx: &Transaction<'_>,
        batch: &[Record],
    ) -> Result<Vec<Disposition>, HandlerError> {
        let mut decoded = Vec::with_capacity(batch.len());
        for record in batch {
            decoded.push(decode(record));
        }
        let events: Vec<&SaleEvent> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
        let mut decider = Decider::new(load::load(tx, &events).await?);
        let mut out = Vec::with_capacity(batch.len());
        for (record, event) in batch.iter().zip(decoded) {
            let event = match event {
                Ok(e) => e,
                Err((kind, reason)) => {
                    out.push(Disposition::dead(kind, reason));
                    continue;
                }
            };
            let span = tracing::debug_span!(
                "sale",
                raffle = %event.raffle_id,
                order = ?event.order_id,
                partition = record.partition,
                offset = record.offset
            );
            let _e = span.enter();
            out.push(match decider.decide(event) {
                Outcome::Applied => Disposition::Applied,
                Outcome::Duplicate => Disposition::Duplicate,
            });
        }
        write::write(tx, &mut decider, &self.tickets_topic).await?;
        tracing::debug!(group = %self.group, records = batch.len(), "batch applied");
        Ok(out)
    }
}

fn decode(record: &Record) -> Result<SaleEvent, (&'static str, String)> {
    let payload = record
        .payload
        .as_deref()
        .ok_or(("undecodable", "message has no value".to_owned()))?;
    let event: SaleEvent = schemas::decode(payload).map_err(|e| ("undecodable", e.to_string()))?;
    if event.range_partition.raffle_id != event.raffle_id {
        return Err((
            "invalid",
            format!(
                "range partition {} is not of raffle {}",
                event.range_partition, event.raffle_id
            ),
        ));
    }
    if event.ticket_count < 0 || event.amount_minor < 0 {
        return Err(("invalid", "negative ticket count or amount".to_owned()));
    }
    let needs_order = matches!(
        event.kind,
        SaleEventKind::SaleCompleted
            | SaleEventKind::PaymentFailed
            | SaleEventKind::RefundRequested
    );
    if needs_order && event.order_id.is_none() {
        return Err((
            "invalid",
            format!("{:?} event without order_id", event.kind),
        ));
    }
    let needs_rsu = matches!(
        event.kind,
        SaleEventKind::RsuSaleRecorded | SaleEventKind::RsuSaleVoided
    );
    if needs_rsu && event.rsu_sale.is_none() {
        return Err((
            "invalid",
            format!("{:?} event without rsu_sale", event.kind),
        ));
    }
    Ok(event)
}

/// The distinct items, in order.
fn unique<T: Ord + Copy>(items: impl Iterator<Item = T>) -> Vec<T> {
    items.collect::<BTreeSet<T>>().into_iter().collect()
}
