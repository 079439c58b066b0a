//! rsu-edge: the program on a Remote Sales Unit (handheld).
//!
//! Owns: the device's local SQLite store (its allocation, validation number block, sales and
//! their upload state), selling offline, receipts, and sync with `ingest`.
//!
//! Must not touch: the server's Postgres or Kafka directly; everything goes through ingest's
//! HTTP API with the device's API key.
//!
//! Status: the device agent is its own issue.
