//! allocator: where a sale becomes draw numbers, exactly once.
//!
//! Owns: the number sequences. Consumes `raffle.sales.v1` partition by partition through
//! `platform::consumer` (offsets committed with the effects, one transaction per batch); gives
//! online sales the next numbers of their range (unique, gap-free, in partition order); checks
//! RSU sales against their allocation, validation number block, the sales end time and the
//! offline expiry; refuses sales beyond the raffle's maximum (for refund, never over-issued).
//! Through `sales` it completes, fails and refunds online orders, records RSU orders, issues
//! and voids tickets and gives back the holds of the orders it decides and of holds whose time
//! ran out (checkout adds them). Through `catalog`
//! it records refused sales (`catalog::rejections`) and the counts it decided
//! (`catalog::counters`: a raffle's totals and first sale, ranges' cursors, RSU blocks'
//! cursors and validation sequences); through `platform::outbox` it emits `raffle.tickets.v1`,
//! relayed after commit. A batch is loaded, decided without a transaction and written in
//! three phases (`batch`).
//!
//! Must not touch: the ledger and draw schemas, a raffle's configuration, and any catalog table
//! but through `catalog`.

mod batch;

use std::sync::Arc;
use std::time::Duration;

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
    let sweeper_pool = pool.clone();
    Ok(ConsumerService::new(db, pool, configs, handler)
        .with_relay(relay)
        .with_task(move |stop| release_expired_holds_every(sweeper_pool, HOLD_SWEEP, stop)))
}

/// How often holds whose time ran out are given back.
pub const HOLD_SWEEP: Duration = Duration::from_secs(10);

pub use sales::orders::release_expired_holds;

async fn release_expired_holds_every(pool: Pool, every: Duration, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match pool.get().await {
            Ok(client) => match release_expired_holds(&**client).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(tickets = n, "holds whose time ran out given back"),
                Err(e) => {
                    tracing::warn!(error = %platform::error_chain(&e), "releasing expired holds failed; retrying")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "releasing expired holds: no connection; retrying")
            }
        }
        platform::retry::sleep_or_shutdown(every, &mut stop).await;
    }
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
