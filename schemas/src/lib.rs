//! Data contracts of the raffle platform.
//!
//! Owns: the Avro schemas of `raffle.sales.v1`, `raffle.tickets.v1` and `raffle.dlq.v1`
//! (`schemas/avro/<topic>/vN.avsc`, every version ever published), their Rust types, the one
//! encode/decode path ([`codec`]) and the domain value types that every stage shares
//! ([`Money`], [`Currency`], [`DrawNumber`], [`ValidationNumber`], [`RangePartition`],
//! [`Percentage`]), the states things move through ([`RaffleState`]) and what any text from outside may hold ([`text`]). Those types can only be
//! built through their parsers, so code that holds one knows it is valid.
//!
//! Must not touch: Postgres, Kafka, HTTP. This crate is pure data; the stages turn untrusted
//! bytes into these types at their edges and trust them inside.

pub mod codec;
pub mod events;
pub mod refund_source;
pub mod refusals;
pub mod states;
pub mod text;
mod values;

pub use codec::{Contract, DecodeError, EncodeError, decode, encode};
pub use events::{
    Customer, DeadLetter, PaymentRef, RsuSale, SaleEvent, SaleEventKind, SaleSource, TicketEvent,
    TicketEventKind,
};
pub use refund_source::RefundSource;
pub use refusals::{DrawRefusal, SealRefusal};
pub use states::{PaymentStatus, RaffleState, SaleRefusal};
pub use values::{
    CheckCode, Currency, DrawNumber, Money, Percentage, RangePartition, RangeRef, ValidationNumber,
    ValueError, amount_for_people, constant_time_eq,
};

/// Topic base names. Deployments may prefix them (tests do, so each test owns its topics).
pub mod topics {
    pub const SALES: &str = "raffle.sales.v1";
    pub const TICKETS: &str = "raffle.tickets.v1";
    pub const DLQ: &str = "raffle.dlq.v1";
}
