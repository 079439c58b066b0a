//! scenario: raffles and sales to run the real services against, for the demo, the benchmark
//! commands and the tests — never part of a service.
//!
//! Owns: a raffle on sale set up through the admin API with its own rules and audit trail
//! ([`seed`]), a sealed raffle of any size for the draw ([`fixture`]), and the `raffle bench`
//! commands with what they share ([`bench`]), and a stand-in for the payment provider's
//! Refunds API ([`stripe`]), which these machines cannot reach.
//!
//! Writes: nothing of its own. It acts through the services' APIs; the fixture alone writes
//! sales in bulk by SQL, into a raffle it created, where the allocator's per-sale path is not
//! what is being measured.

pub mod bench;
pub mod fixture;
pub mod sales;
pub mod seed;
pub mod stripe;
