//! ingest: the HTTP edge where sales enter the system.
//!
//! Owns: checkout (pending orders), payment-provider webhooks (signature check, idempotency by
//! provider event id) and RSU batch uploads (API-key authentication, idempotency by RSU and
//! local id). Writes: `sales.orders` rows in state `pending` at checkout; the topic
//! `raffle.sales.v1`, answering 2xx only after the broker acknowledged the event.
//!
//! Must not touch: draw numbers, tickets or counters (the allocator's), the ledger, the draw.
//!
//! Status: the plumbing it stands on (producer, schemas, config) is in `platform` and
//! `schemas`; the endpoints are the sales-pipeline issue.
