//! displays: what the public sees of a raffle while it sells and after its draw.
//!
//! - The **live jackpot**: a consumer of `raffle.tickets.v1` ([`consumer`]) keeps each raffle's
//!   tallies (money and tickets issued and voided) in the transaction of its offsets; the
//!   jackpot is computed from them by the seal's own split rules on the raffle's terms
//!   (revenue basis, prize share, guaranteed minimum, starting cash) — an estimate, labelled so,
//!   until the seal, then the sealed value, and the winning numbers after the draw
//!   ([`jackpot`]). The feed ([`feed`]) holds the current value of every raffle being watched
//!   and pushes each change to its subscribers within a fraction of a second.
//! - Served ([`http`]) as public JSON (`GET /v1/raffles/{id}/jackpot`, with an ETag), as
//!   Server-Sent Events (`…/jackpot/stream`), as an embeddable widget (`…/jackpot/widget`), and
//!   the raffle's public page (`GET /v1/raffles/{id}/page`: rules, packages and prices, sales
//!   window, licence, the live jackpot, and after the draw the winners and the draw's evidence),
//!   whose JSON ([`public`]) ingest serves at `GET /v1/raffles/{id}`. Pages load nothing from
//!   elsewhere and read on a phone.
//!
//! Writes: `displays.jackpots` (and the consumer's offsets and leases through `platform`).
//! Must not touch: anything else; it reads the catalog, the seal and the draw.

pub mod consumer;
pub mod feed;
pub mod http;
pub mod jackpot;
pub mod page;
pub mod public;

pub use consumer::{CONSUMER_GROUP, Displays, service};
pub use feed::Feed;
pub use jackpot::Jackpot;
