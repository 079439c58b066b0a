//! Shared plumbing of the raffle platform: everything a pipeline stage needs to talk to
//! Postgres and Kafka correctly, and nothing about raffles themselves.
//!
//! Owns: configuration from the environment ([`config`]), the Postgres pool and the versioned
//! migrations of every schema ([`db`], `platform/migrations/`), the Kafka producer and admin
//! helpers ([`kafka`]), the exactly-once partition consumer with its Postgres lease and offset
//! compare-and-set ([`consumer`], [`lease`]), the transactional outbox and its relay
//! ([`outbox`]), the local development stack that starts Tansu ([`devstack`]) and the SMTP server the tests
//! and the demo read ([`mailbox`]), telemetry
//! ([`telemetry`]), the executable's own hash ([`version`]), the HTTP plumbing both edges
//! share (errors as problem+json in [`problem`], request bodies in [`body`], the server in
//! [`http_server`]) and, behind the `testkit` feature, the test harness.
//!
//! Writes: `platform.partition_leases`, `platform.consumer_offsets`, `platform.processed_events`,
//! `platform.outbox`. Must not touch: any other schema's tables; business rules live in the
//! stage crates.

pub mod batching;
pub mod body;
pub mod config;
pub mod consumer;
pub mod db;
pub mod devstack;
pub mod failure;
pub mod files;
pub mod health;
pub mod http_client;
pub mod http_server;
pub mod kafka;
pub mod lease;
pub mod mailbox;
pub mod outbox;
pub mod problem;
pub mod retry;
pub mod service;
pub mod telemetry;
pub mod tls;
pub mod version;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{StackConfig, TopicNames};
pub use consumer::{
    BatchHandler, ConsumerConfig, ConsumerError, ConsumerStats, Disposition, HandlerError,
    PartitionConsumer,
};
pub use failure::Failure;
pub use kafka::Record;

/// Microseconds since the Unix epoch, UTC: the one timestamp unit on the wire.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// An error with every cause under it, `outer: inner: innermost` — a Postgres error's own text
/// is only in its source ("db error: duplicate key value violates …").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}
