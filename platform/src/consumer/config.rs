//! How a partition consumer is set up, what stops it, and what it counts.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::db::DbError;
use crate::lease::LeaseKey;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub consumer_group: String,
    pub topic: String,
    pub partition: i32,
    /// Where refused records go.
    pub dlq_topic: String,
    /// Who this is, in leases and logs (host, pid, instance).
    pub owner: String,
    pub batch_size_max: usize,
    /// How long to keep filling a batch once the first record arrived.
    pub linger_ms: u64,
    /// How long to wait for a first record before checking lease and shutdown again.
    pub poll_ms: u64,
    /// How often a standby retries the lease.
    pub lease_retry_ms: u64,
    /// Backoff after a failed batch or lease attempt, doubled up to `retry_backoff_max_ms`.
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// Quiet time with records waiting at the broker after which the Kafka client is rebuilt.
    pub stall_check_ms: u64,
    /// Trouble (no lease for want of Postgres, batches failing) lasting this long ends the run
    /// with an error, for the process's supervisor to restart it.
    pub give_up_after_ms: u64,
}

impl ConsumerConfig {
    pub fn new(
        brokers: &str,
        consumer_group: &str,
        topic: &str,
        partition: i32,
        dlq_topic: &str,
    ) -> Self {
        Self {
            brokers: brokers.to_owned(),
            consumer_group: consumer_group.to_owned(),
            topic: topic.to_owned(),
            partition,
            dlq_topic: dlq_topic.to_owned(),
            owner: default_owner(),
            batch_size_max: 500,
            linger_ms: 5,
            poll_ms: 200,
            lease_retry_ms: 500,
            retry_backoff_ms: 100,
            // Retries keep coming at least every 2 s: a partition resumes within about 2 s of
            // the database's return.
            retry_backoff_max_ms: 2_000,
            stall_check_ms: 3_000,
            give_up_after_ms: 300_000,
        }
    }

    /// One configuration per partition of `topic` (`0..partitions`), each adjusted by
    /// `tune`: what a consumer service runs.
    pub fn each_partition(
        brokers: &str,
        consumer_group: &str,
        topic: &str,
        partitions: i32,
        dlq_topic: &str,
        tune: impl Fn(&mut ConsumerConfig),
    ) -> Vec<ConsumerConfig> {
        (0..partitions)
            .map(|partition| {
                let mut config = Self::new(brokers, consumer_group, topic, partition, dlq_topic);
                tune(&mut config);
                config
            })
            .collect()
    }

    pub(super) fn lease_key(&self) -> LeaseKey {
        LeaseKey {
            consumer_group: self.consumer_group.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }
}

pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("{lease}: lease lost (epoch {epoch} superseded); this instance stops committing")]
    LeaseLost { lease: LeaseKey, epoch: i64 },
    #[error("{lease}: {source}")]
    Db {
        lease: LeaseKey,
        #[source]
        source: DbError,
    },
    #[error("{lease}: kafka: {reason}")]
    Kafka { lease: LeaseKey, reason: String },
    #[error("{lease}: handler gave {got} dispositions for {expected} records")]
    DispositionCount {
        lease: LeaseKey,
        got: usize,
        expected: usize,
    },
    #[error("{lease} at offset {offset}: handler failed: {reason}")]
    Handler {
        lease: LeaseKey,
        offset: i64,
        reason: String,
    },
    #[error(
        "{lease}: no progress for {seconds} s, giving up so that the process is restarted: {reason}"
    )]
    GaveUp {
        lease: LeaseKey,
        seconds: u64,
        reason: String,
    },
    #[error("{lease}: the consumer task panicked: {reason}")]
    Panicked { lease: LeaseKey, reason: String },
}

/// Counters a benchmark or health endpoint can read while the consumer runs.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_letters: AtomicU64,
    pub retries: AtomicU64,
    pub leases_taken: AtomicU64,
    pub leases_lost: AtomicU64,
    /// Kafka clients rebuilt because records waited at the broker and none arrived.
    pub kafka_reconnects: AtomicU64,
    /// This instance holds the partition's lease now.
    pub holding: AtomicBool,
    /// The next offset to consume, as last committed by this instance.
    pub next_offset: AtomicI64,
}

impl ConsumerStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
