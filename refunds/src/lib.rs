//! refunds: the money the platform took and cannot keep, paid back through the provider.
//!
//! A payment the allocator rejects after the provider captured it (the raffle sold out, sales
//! closed, the order was already paid or had ended) becomes an obligation, owed in the same
//! transaction as the rejection ([`obligations::owe`]). The worker ([`worker`]) asks the
//! provider to refund each one (Stripe `POST /v1/refunds` through [`provider`]) with a durable
//! Idempotency-Key of its own, within the provider's rate limit, backing off on 429 and on
//! outages, and after a crash looks a refund up before asking again, so none is paid twice.
//! The provider's answer and its later `refund.*` webhooks (read by ingest, written here)
//! settle it: `owed → requested → succeeded | failed`, or `cancelled` by finance, who see
//! and act on the list ([`obligations::list`], `retry`, `cancel`).
//!
//! Books: the ledger posts `refund_owed` (payment clearing against refunds payable) when it
//! consumes the rejection; this crate posts, through the ledger's own code, `refund_paid`
//! (refunds payable against clearing) when the provider paid, and `refund_reopened` when a
//! paid refund later failed ([`books`]). Orders given back whole — a cancelled raffle's,
//! or one staff refund — are owed and booked at once (`ticket_reversal`: refunds and voids
//! against refunds payable; [`orders`]).
//!
//! Writes: `refunds.obligations`, `refunds.attempts`, and (through `ledger::append`) the
//! refund entries of the books, and the critical events of finance's actions (through
//! `catalog::audit`). Must not touch: orders and tickets (`sales`), rejections (`catalog`),
//! any other ledger entry.

pub mod books;
pub mod obligations;
pub mod orders;
pub mod provider;
pub mod worker;

pub use obligations::{NewObligation, Obligation, RefundError, State};
pub use provider::{ProviderAnswer, RefundAsk, StripeApi};
pub use worker::{Pacer, Pass, WorkerConfig, run, run_once};
