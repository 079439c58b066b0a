//! What a stage implements to consume a partition, and what it answers per record.

use tokio_postgres::Transaction;

use crate::error_chain;
use crate::kafka::Record;

/// What the handler did with one record of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Its effects are written in the batch transaction.
    Applied,
    /// Seen before (same idempotency key): nothing written.
    Duplicate,
    /// Cannot be decoded or validated: sent to the DLQ with the reason, partition moves on.
    DeadLetter { error_kind: String, reason: String },
}

impl Disposition {
    pub fn dead(error_kind: &str, reason: impl Into<String>) -> Self {
        Self::DeadLetter {
            error_kind: error_kind.to_owned(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying the whole batch (database busy, connection lost).
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying will not help; the consumer stops and says why.
    #[error("fatal: {0}")]
    Fatal(String),
    /// The database refused what the batch wrote: one of its records cannot be applied as
    /// it is. The consumer narrows the batch down to that record and dead-letters it.
    #[error("refused by the database: {0}")]
    Refused(String),
}

impl From<tokio_postgres::Error> for HandlerError {
    fn from(e: tokio_postgres::Error) -> Self {
        if refused(&e) {
            HandlerError::Refused(error_chain(&e))
        } else {
            HandlerError::Transient(error_chain(&e))
        }
    }
}

/// A data exception (class 22) or an integrity constraint violation (class 23, which the
/// schema's own triggers raise too): the same statement with the same data fails again.
/// Serialization failures, deadlocks, lost connections and shutdowns are worth a retry.
pub fn refused(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// Applies a batch of records inside the consumer's transaction.
pub trait BatchHandler: Send + Sync {
    /// Returns one disposition per record, in order. Must write only through `tx`.
    fn handle(
        &self,
        tx: &Transaction<'_>,
        batch: &[Record],
    ) -> impl Future<Output = Result<Vec<Disposition>, HandlerError>> + Send;
}

/// Records that `event_id` was applied by `consumer_group`; false if it already was, in which
/// case the caller writes nothing. Call it inside the batch transaction.
pub async fn claim_event(
    tx: &Transaction<'_>,
    consumer_group: &str,
    event_id: &str,
    record: &Record,
) -> Result<bool, tokio_postgres::Error> {
    let inserted = tx
        .execute(
            "INSERT INTO platform.processed_events (consumer_group, event_id, topic, partition, \"offset\")
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&consumer_group, &event_id, &record.topic, &record.partition, &record.offset],
        )
        .await?;
    Ok(inserted == 1)
}
