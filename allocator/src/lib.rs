//! allocator: where a sale becomes draw numbers, exactly once.
//!
//! Owns: the number sequences. Consumes `raffle.sales.v1` partition by partition through
//! `platform::consumer` (offsets committed with the effects, one transaction per batch); gives
//! online sales the next numbers of their range (unique, gap-free, in partition order); checks
//! RSU sales against their allocation, validation number block, the sales end time and the
//! offline expiry; refuses sales beyond the raffle's maximum (for refund, never over-issued).
//! Writes `sales.orders` (completes, fails, refunds online orders; records RSU orders),
//! `sales.tickets`, `sales.rejected_sales`, and the counters of `catalog.raffle_events`
//! (total_sold, total_voided, first_sale_at), `catalog.raffle_ranges` (next_number, sold,
//! voided), `catalog.rsu_allocations` (next_draw_number, tickets_sold, tickets_voided) and
//! `catalog.validation_number_blocks` (next_sequence, numbers_used); emits `raffle.tickets.v1`
//! through `platform.outbox`, relayed after commit.
//!
//! Must not touch: the ledger and draw schemas, catalog configuration other than the counters.

mod batch;

use std::sync::Arc;

use deadpool_postgres::Pool;
use platform::consumer::{ConsumerConfig, ConsumerStats};
use platform::db::DbTarget;
use platform::outbox::OutboxRelay;
use platform::service::ConsumerService;
use platform::{ConsumerError, TopicNames};
use tokio::sync::watch;

pub use batch::Allocator;

/// The consumer group whose offsets and leases are the allocator's.
pub const CONSUMER_GROUP: &str = "allocator";

/// Most sale records applied in one transaction.
pub const BATCH_SIZE_MAX: usize = 1000;

/// The allocator service: a partition consumer for every partition of the sales topic (each
/// waits for its lease, so several instances share the work) and the outbox relay.
pub fn service(
    db: &DbTarget,
    pool: &Pool,
    brokers: &str,
    topics: &TopicNames,
) -> Result<ConsumerService<Allocator>, ConsumerError> {
    let configs = ConsumerConfig::each_partition(
        brokers,
        CONSUMER_GROUP,
        &topics.sales,
        topics.sales_partitions,
        &topics.dlq,
        // One raffle's online sales are one partition, applied one transaction after
        // another; its fixed costs (round trips, locks, counters, commit) are per batch.
        // 500 → 1,000 records a batch: about +20 % orders/s in `raffle bench pipeline`.
        |c| c.batch_size_max = BATCH_SIZE_MAX,
    );
    let relay = OutboxRelay {
        db: db.clone(),
        pool: pool.clone(),
        producer: platform::kafka::producer(brokers, platform::outbox::DELIVERY_TIMEOUT_MS)
            .map_err(|e| ConsumerError::Kafka {
                lease: platform::lease::LeaseKey {
                    consumer_group: CONSUMER_GROUP.into(),
                    topic: topics.tickets.clone(),
                    partition: -1,
                },
                reason: e.to_string(),
            })?,
        owner: platform::consumer::default_owner(),
        batch_size_max: 1000,
        idle_ms: 20,
    };
    let handler = Allocator::new(CONSUMER_GROUP, &topics.tickets);
    Ok(ConsumerService::new(db, pool, configs, handler).with_relay(relay))
}

/// Runs the allocator [`service`] until `shutdown` turns true; returns the consumers'
/// statistics, or the error of a consumer that could not recover.
pub async fn run(
    db: DbTarget,
    pool: Pool,
    brokers: &str,
    topics: &TopicNames,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<Arc<ConsumerStats>>, ConsumerError> {
    service(&db, &pool, brokers, topics)?.run(shutdown).await
}
