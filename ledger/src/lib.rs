//! ledger: the double-entry books of each raffle.
//!
//! Owns: the `ledger` schema — accounts, journal entries, postings (balanced and append-only,
//! held by the database) and the per-raffle hash chain (`chain_heads`). Consumes
//! `raffle.tickets.v1` through `platform::consumer`: a balanced entry per issued sale, a
//! reversal per void or refund of an issued sale, idempotent by event id, one Postgres
//! transaction per consumed batch. Verifies the chain from the rows alone ([`verify`]).
//!
//! Must not touch: orders, tickets and counters (the allocator's), catalog configuration, draw
//! results. It reads the raffle's state to refuse postings to a sealed raffle.
//!
//! Also owns the seal ([`seal`]): after sales close and the pipeline drained, prizes, fee and
//! net proceeds are computed ([`split`]) and posted, and `ledger.seals` records the head hash,
//! totals, the eligible ticket set's digest and the draw seed's commitment. The seal moves the
//! raffle to `sealed` and records its critical event through `catalog` (the lifecycle's and
//! the critical events' one writer), and hands the seed it committed to its keeper
//! ([`SeedKeeper`], the draw engine) in the same transaction.
//!
//! Also owns the reconciliation report ([`report`]: built here, served by the CLI and by the
//! admin API's route), the audit export and its verification ([`audit`]), and the eligible ticket set
//! the seal and the draw agree on ([`tickets`]).

pub mod accounts;
pub mod audit;
pub mod cash;
mod chain;
mod consumer;
pub mod payouts;
pub mod postings;
pub mod report;
mod seal;
pub mod seed_key;
pub mod split;
pub mod tickets;
mod verify;

pub use accounts::Account;
pub use chain::{EntryText, GENESIS};
pub use consumer::{CONSUMER_GROUP, Ledger, append, run, service};
pub use seal::{SealError, SealRecord, SealRequest, SealedSeed, SeedKeeper, seal};
pub use verify::{
    ChainEntry, SealMismatch, Verification, balances, check_chain, load_entries, verify,
    verify_seal, verify_seal_with,
};
