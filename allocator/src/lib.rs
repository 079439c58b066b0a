//! allocator: where a sale becomes draw numbers, exactly once.
//!
//! Owns: the number sequences. Consumes `raffle.sales.v1` partition by partition through
//! `platform::consumer` (offsets committed with the effects); gives online sales the next
//! numbers of their range, checks RSU sales against their allocation and validation number
//! block; writes `sales.orders`, `sales.tickets` and the counters of `catalog.raffle_events`,
//! `catalog.raffle_ranges` and `catalog.rsu_allocations`; emits `raffle.tickets.v1` through
//! `platform.outbox`.
//!
//! Must not touch: the ledger schema, the draw schema, catalog configuration other than the
//! counters named above.
//!
//! Status: the consumer plumbing is in `platform`; the allocation rules are the sales-pipeline
//! issue.
