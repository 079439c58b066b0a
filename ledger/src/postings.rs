//! Which postings a ticket event makes: the charity's books in minor units.
//!
//! - tickets issued online: debit payment clearing (money held by the provider), credit gross
//!   ticket revenue;
//! - tickets issued on an RSU: debit that device's float (the cash and card it took), credit
//!   gross ticket revenue;
//! - tickets voided or refunded after they were issued: debit refunds and voids (a contra-revenue
//!   account, so gross stays visible), credit the clearing account or float the money left;
//! - a payment rejected after the provider captured it, and owed back (`refunds`): debit
//!   payment clearing, credit refunds payable (`refund_owed`); the refunds crate books the
//!   refund when the provider paid it (`refund_paid`) or reopens it (`refund_reopened`);
//! - any other rejected sale, or a sale voided on a device before it ever synced, moved no
//!   money: no entry.

use schemas::{SaleSource, TicketEvent, TicketEventKind};

pub use crate::accounts::{
    Account, GROSS_TICKET_REVENUE, PAYMENT_CLEARING, PRIZE_DISBURSEMENTS, Posting,
    REFUNDS_AND_VOIDS, REFUNDS_PAYABLE,
};

fn cash_account(event: &TicketEvent) -> Account {
    match (event.source, event.rsu_id) {
        (SaleSource::Rsu, Some(rsu)) => Account::RsuFloat(rsu),
        _ => Account::PaymentClearing,
    }
}

/// The entry type and postings of `event`, or `None` when it moved no money. `issued` says
/// whether the order's issuance was posted before (a void of a never-issued sale posts nothing);
/// `refund_owed` whether a rejection left a refund owed (the provider holds the money).
pub fn postings_for(
    event: &TicketEvent,
    issued: bool,
    refund_owed: bool,
) -> Option<(&'static str, Vec<Posting>)> {
    let amount = event.amount_minor;
    if amount == 0 {
        return None;
    }
    match event.kind {
        TicketEventKind::TicketsIssued => Some((
            "ticket_sale",
            vec![
                cash_account(event).debit(amount),
                Account::GrossTicketRevenue.credit(amount),
            ],
        )),
        TicketEventKind::TicketsVoided if issued => Some((
            "ticket_reversal",
            vec![
                Account::RefundsAndVoids.debit(amount),
                cash_account(event).credit(amount),
            ],
        )),
        TicketEventKind::SaleRejected if refund_owed => Some((
            "refund_owed",
            vec![
                Account::PaymentClearing.debit(amount),
                Account::RefundsPayable.credit(amount),
            ],
        )),
        TicketEventKind::TicketsVoided | TicketEventKind::SaleRejected => None,
    }
}
