//! sales: the one writer of the `sales` schema's orders, tickets and capacity holds. The
//! stages decide — checkout (ingest) which orders to create and hold, the allocator what a
//! payment or an RSU sale issues, voids or refuses, the draw engine which tickets win and are
//! claimed — and write through this crate.
//!
//! Writes: `sales.orders` ([`orders`]), `sales.tickets` ([`tickets`]), `sales.capacity_holds`
//! ([`holds`]). Must not touch: anything but those three; the catalog's counts are
//! `catalog::counters`', refused sales `catalog::rejections`'.

pub mod holds;
pub mod orders;
pub mod tickets;
