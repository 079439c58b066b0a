//! catalog: the raffle's house rules, below every stage. What a raffle is allowed to do is
//! decided here once, whichever stage asks: the admin API, checkout and the RSU uploads in
//! ingest, the allocator, the ledger's seal, the draw engine.
//!
//! Owns: the lifecycle ([`lifecycle`]: the only writer of a raffle's state and of
//! `catalog.raffle_transitions`), the regulations in force and what they allow
//! ([`regulations`]), the system configuration in force ([`configuration`]), critical events
//! and who acted ([`audit`]: the only writer of `audit.critical_events`), refused sales
//! ([`rejections`]: the only writer of `sales.rejected_sales`), RSUs as devices ([`rsus`]: API
//! key checks, handing out, taking back and writing off number blocks), a raffle's
//! configuration and ranges ([`raffles`]) and its counts ([`counters`]). With these it is the
//! one writer of `catalog.raffle_events`, `catalog.raffle_ranges`, `catalog.raffle_transitions`,
//! `catalog.rsu_allocations` and `catalog.validation_number_blocks`: the stages decide (the
//! admin API what a raffle is, the allocator what was sold), the catalog writes.
//!
//! Must not touch: HTTP (its errors are `platform::problem::Problem`s an edge can serve as they
//! are), Kafka, orders and tickets, the ledger, the draw. It knows no stage; stages know it.

pub mod audit;
pub mod configuration;
pub mod counters;
pub mod lifecycle;
pub mod raffles;
pub mod regulations;
pub mod rejections;
pub mod rsus;
