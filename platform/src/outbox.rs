//! The transactional outbox: messages written in the same Postgres transaction as the effects
//! that caused them, and relayed to Kafka after commit by one relay at a time (a lease).
//! The relay may publish a message twice if it dies between the broker's ack and marking the
//! row; consumers dedupe by event id, so that is harmless.

use std::collections::BTreeMap;
use std::time::Duration;

use deadpool_postgres::Pool;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;
use tokio_postgres::Transaction;

use crate::db::DbTarget;
use crate::error_chain;
use crate::kafka::Record;
use crate::lease::{Lease, LeaseKey};
use crate::retry::{Backoff, sleep_or_shutdown};

/// Writes one message to the outbox inside `tx`.
pub async fn enqueue(
    tx: &Transaction<'_>,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: &BTreeMap<String, String>,
) -> Result<(), tokio_postgres::Error> {
    let headers = serde_json::to_value(headers).unwrap_or_default();
    tx.execute(
        "INSERT INTO platform.outbox (topic, message_key, payload, headers) VALUES ($1, $2, $3, $4)",
        &[&topic, &key, &payload, &headers],
    )
    .await?;
    Ok(())
}

/// Writes many messages of one topic to the outbox inside `tx`, in one statement, in order.
pub async fn enqueue_all(
    tx: &Transaction<'_>,
    topic: &str,
    messages: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), tokio_postgres::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    let (keys, payloads): (Vec<Vec<u8>>, Vec<Vec<u8>>) = messages.into_iter().unzip();
    tx.execute(
        "INSERT INTO platform.outbox (topic, message_key, payload) SELECT $1, k, p FROM unnest($2::bytea[], $3::bytea[]) AS u(k, p)",
        &[&topic, &keys, &payloads],
    )
    .await?;
    Ok(())
}

/// Sends a refused record to the DLQ through the outbox: the Avro envelope keeps the original
/// bytes whole, and the headers repeat where it came from and why, for operators' tools.
pub async fn enqueue_dead_letter(
    tx: &Transaction<'_>,
    dlq_topic: &str,
    consumer_group: &str,
    record: &Record,
    error_kind: &str,
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    let letter = schemas::DeadLetter {
        dead_letter_id: uuid::Uuid::now_v7(),
        consumer_group: consumer_group.to_owned(),
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        key: record.key.clone(),
        value: record.payload.clone(),
        error_kind: error_kind.to_owned(),
        reason: reason.to_owned(),
        failed_at_us: crate::now_us(),
    };
    // The envelope's schema is compiled in and every field is set above; encoding cannot fail
    // for any input bytes, which travel as opaque `bytes`.
    let payload = schemas::encode(&letter).unwrap_or_default();
    let headers = BTreeMap::from([
        ("dlq.consumer_group".to_owned(), consumer_group.to_owned()),
        ("dlq.topic".to_owned(), record.topic.clone()),
        ("dlq.partition".to_owned(), record.partition.to_string()),
        ("dlq.offset".to_owned(), record.offset.to_string()),
        ("dlq.error_kind".to_owned(), error_kind.to_owned()),
        ("dlq.reason".to_owned(), reason.to_owned()),
    ]);
    enqueue(tx, dlq_topic, record.key.as_deref(), &payload, &headers).await
}

/// How long the relay's producer keeps a message queued for delivery: longer than any broker
/// outage it should ride out, so that an outage does not time messages out (which bumps the
/// idempotent producer's epoch; see `ingest::DELIVERY_TIMEOUT_MS`).
pub const DELIVERY_TIMEOUT_MS: u64 = 300_000;

/// Publishes outbox rows in id order and marks them published.
pub struct OutboxRelay {
    pub db: DbTarget,
    pub pool: Pool,
    pub producer: FutureProducer,
    pub owner: String,
    pub batch_size_max: i64,
    pub idle_ms: u64,
}

impl OutboxRelay {
    /// Relays until `shutdown` turns true. One relay at a time holds the outbox's lease; the
    /// others wait. A lease that cannot be taken (Postgres unreachable) and a batch that
    /// fails (database or broker down) are retried with backoff for as long as it takes:
    /// the relay never stops by itself.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let key = LeaseKey {
            consumer_group: "outbox-relay".into(),
            topic: "platform.outbox".into(),
            partition: 0,
        };
        let mut backoff = Backoff::new(100, 2_000);
        loop {
            let lease = Lease::acquire(
                &self.db,
                key.clone(),
                &self.owner,
                Duration::from_millis(500),
                &mut shutdown,
            )
            .await;
            let lease = match lease {
                Ok(Some(lease)) => lease,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(lease = %key, reason = %error_chain(&e), retry_in_ms = backoff.ms, "outbox relay cannot take its lease; retrying");
                    backoff.pause(&mut shutdown).await;
                    continue;
                }
            };
            backoff.reset();
            while lease.is_alive() && !*shutdown.borrow() {
                match self.relay_once().await {
                    Ok(0) => {
                        backoff.reset();
                        sleep_or_shutdown(Duration::from_millis(self.idle_ms), &mut shutdown).await;
                    }
                    Ok(_) => backoff.reset(),
                    Err(reason) => {
                        tracing::warn!(lease = %key, %reason, retry_in_ms = backoff.ms, "outbox relay batch failed; retrying");
                        backoff.pause(&mut shutdown).await;
                    }
                }
            }
            if *shutdown.borrow() {
                return;
            }
            tracing::warn!(lease = %key, "outbox relay lost its lease connection; taking it again");
        }
    }

    /// Publishes one batch; returns how many rows were published.
    pub async fn relay_once(&self) -> Result<usize, String> {
        let client = self.pool.get().await.map_err(|e| e.to_string())?;
        // Prepared once per connection: the relay polls, and parsing and planning each poll
        // cost more than the poll.
        let pending = client
            .prepare_cached(
                "SELECT id, topic, message_key, payload, headers FROM platform.outbox
                  WHERE published_at IS NULL ORDER BY id LIMIT $1",
            )
            .await
            .map_err(|e| error_chain(&e))?;
        let rows = client
            .query(&pending, &[&self.batch_size_max])
            .await
            .map_err(|e| error_chain(&e))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut sends = Vec::with_capacity(rows.len());
        for row in &rows {
            let topic: String = row.get(1);
            let key: Option<Vec<u8>> = row.get(2);
            let payload: Vec<u8> = row.get(3);
            let headers: serde_json::Value = row.get(4);
            let mut owned = OwnedHeaders::new();
            if let Some(map) = headers.as_object() {
                for (k, v) in map {
                    owned = owned.insert(Header {
                        key: k,
                        value: v.as_str(),
                    });
                }
            }
            let producer = self.producer.clone();
            // Sent in id order; the idempotent producer keeps that order per partition.
            sends.push(async move {
                let mut record = FutureRecord::to(&topic).payload(&payload).headers(owned);
                if let Some(k) = key.as_deref() {
                    record = record.key(k);
                }
                producer
                    .send(record, Duration::from_secs(10))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| format!("publishing to {topic}: {e}"))
            });
        }
        let results = futures::future::join_all(sends).await;
        // Mark the prefix that was acknowledged; the rest is retried in order next time.
        let mut published = Vec::new();
        let mut failure = None;
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(()) => published.push(row.get::<_, i64>(0)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if !published.is_empty() {
            let mark = client
                .prepare_cached(
                    "UPDATE platform.outbox SET published_at = now() WHERE id = ANY($1)",
                )
                .await
                .map_err(|e| error_chain(&e))?;
            client
                .execute(&mark, &[&published])
                .await
                .map_err(|e| error_chain(&e))?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(published.len()),
        }
    }
}
