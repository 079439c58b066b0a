//! ledger: the double-entry books of each raffle.
//!
//! Owns: the `ledger` schema (accounts, journal entries, postings, seals), consumed from
//! `raffle.tickets.v1`; the hash chain; the seal; the reconciliation report; audit export and
//! verification.
//!
//! Must not touch: orders, tickets and counters (the allocator's), draw results (the draw
//! engine's; it posts prize entries through this crate's API).
//!
//! Status: the schema exists empty in migration V1; the ledger is its own issue.
