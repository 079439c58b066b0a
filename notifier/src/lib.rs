//! notifier: the e-mails buyers get.
//!
//! A buyer who paid online gets one message with their draw numbers once the allocator issued
//! them; one when a sale is refused (its payment is refunded), when tickets are voided, and when
//! a number wins; and a fresh copy of their numbers when they or staff ask for one
//! ([`messages::resend`], rate-limited). Each message is written by the consumer of
//! `raffle.tickets.v1` ([`consumer`]) in the transaction that stores the consumer's offsets, under a
//! unique key of what it is about, so a crash or a redelivered event never writes two. The sender
//! ([`sender`]) then delivers each one over SMTP (STARTTLS or TLS, credentials from the URL) with
//! the Message-ID fixed when it was written, backs off when the server is down or refuses,
//! gives up after [`sender::SenderConfig::max_attempts`] and reports it, and never holds up the
//! pipeline: the consumer only writes rows, whatever the mail server does.
//!
//! The messages carry what the RSU's receipt carries (organisation, licence, raffle, draw time,
//! numbers, validation number, rules link, claim-by date) and, where a link key is configured, a
//! signed link to the order's page ([`link`]) that ingest checks.
//!
//! Writes: `notify.messages` (and the consumer's offsets and leases through `platform`).
//! Reads: orders and tickets (`sales`), the raffle and its organisation (`catalog`), draw results
//! (`draw`). Must not touch: anything else; it never changes an order, a ticket or the books.

pub mod compose;
pub mod consumer;
pub mod link;
pub mod messages;
pub mod sender;
pub mod settings;

pub use consumer::{CONSUMER_GROUP, Notifier, run, service};
pub use messages::{Delivery, ResendError, Summary};
pub use sender::SenderConfig;
pub use settings::MailSettings;
