//! Partition ownership held in Postgres.
//!
//! A lease is a session advisory lock on a dedicated connection: it lives exactly as long as
//! that connection, so a crashed owner releases it. Taking a lease also bumps the fencing
//! `epoch` in `platform.partition_leases` and stamps it on the partition's offset row; every
//! offset commit is a compare-and-set on (offset, epoch), so an owner that lost its lease
//! without noticing (paused, partitioned) can never commit again.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::db::{DbError, DbTarget};

/// What a lease protects: one partition of one topic for one consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    pub consumer_group: String,
    pub topic: String,
    pub partition: i32,
}

impl std::fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}[{}]",
            self.consumer_group, self.topic, self.partition
        )
    }
}

/// A held lease. Dropping it closes the connection and so releases the lock.
pub struct Lease {
    pub key: LeaseKey,
    pub epoch: i64,
    /// The stored offset at takeover: where consumption resumes.
    pub next_offset: i64,
    client: Client,
}

impl Lease {
    /// Waits until the lease is free and takes it, or returns `None` on shutdown.
    pub async fn acquire(
        db: &DbTarget,
        key: LeaseKey,
        owner: &str,
        retry: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Lease>, DbError> {
        let application_name = format!("raffle-lease {owner} {key}");
        let mut client = db.connect(&truncate(&application_name, 63)).await?;
        let lock_name = lock_name(&key);
        loop {
            if *shutdown.borrow() {
                return Ok(None);
            }
            let row = client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtext($1), $2)",
                    &[&lock_name, &key.partition],
                )
                .await?;
            if row.get::<_, bool>(0) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.changed() => {}
            }
        }
        let tx = client.transaction().await?;
        let epoch: i64 = tx
            .query_one(
                "INSERT INTO platform.partition_leases AS l (consumer_group, topic, partition, epoch, owner)
                 VALUES ($1, $2, $3, 1, $4)
                 ON CONFLICT (consumer_group, topic, partition)
                 DO UPDATE SET epoch = l.epoch + 1, owner = EXCLUDED.owner, acquired_at = now()
                 RETURNING epoch",
                &[&key.consumer_group, &key.topic, &key.partition, &owner],
            )
            .await?
            .get(0);
        // Waits for a stale owner's in-flight commit on this row, then sees its result.
        let next_offset: i64 = tx
            .query_one(
                "INSERT INTO platform.consumer_offsets AS o (consumer_group, topic, partition, next_offset, lease_epoch)
                 VALUES ($1, $2, $3, 0, $4)
                 ON CONFLICT (consumer_group, topic, partition)
                 DO UPDATE SET lease_epoch = EXCLUDED.lease_epoch
                 RETURNING next_offset",
                &[&key.consumer_group, &key.topic, &key.partition, &epoch],
            )
            .await?
            .get(0);
        tx.commit().await?;
        tracing::info!(lease = %key, epoch, next_offset, owner, "partition lease taken");
        Ok(Some(Lease {
            key,
            epoch,
            next_offset,
            client,
        }))
    }

    /// False once the lease connection has gone: the lock is no longer ours.
    pub fn is_alive(&self) -> bool {
        !self.client.is_closed()
    }

    /// The backend pid of the lease connection (tests terminate it to simulate a lost lease).
    pub async fn backend_pid(&self) -> Result<i32, DbError> {
        Ok(self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0))
    }
}

/// The advisory lock of a lease is `(hashtext(lock_name), partition)`.
pub fn lock_name(key: &LeaseKey) -> String {
    format!("{}\u{1f}{}", key.consumer_group, key.topic)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
