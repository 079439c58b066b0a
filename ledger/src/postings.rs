//! Which postings a ticket event makes: the charity's books in minor units.
//!
//! - tickets issued online: debit payment clearing (money held by the provider), credit gross
//!   ticket revenue;
//! - tickets issued on an RSU: debit that device's float (the cash and card it took), credit
//!   gross ticket revenue;
//! - tickets voided or refunded after they were issued: debit refunds and voids (a contra-revenue
//!   account, so gross stays visible), credit the clearing account or float the money left;
//! - a sale rejected, or voided on a device before it ever synced, moved no money: no entry.

use schemas::{SaleSource, TicketEvent, TicketEventKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub code: String,
    pub kind: &'static str,
    /// Debit positive, credit negative.
    pub amount_minor: i64,
}

pub const GROSS_TICKET_REVENUE: &str = "gross_ticket_revenue";
pub const REFUNDS_AND_VOIDS: &str = "refunds_and_voids";
pub const PAYMENT_CLEARING: &str = "payment_clearing";

fn cash_account(event: &TicketEvent) -> String {
    match (event.source, event.rsu_id) {
        (SaleSource::Rsu, Some(rsu)) => format!("rsu_float/{rsu}"),
        _ => PAYMENT_CLEARING.to_owned(),
    }
}

/// The entry type and postings of `event`, or `None` when it moved no money. `issued` says
/// whether the order's issuance was posted before (a void of a never-issued sale posts nothing).
pub fn postings_for(event: &TicketEvent, issued: bool) -> Option<(&'static str, Vec<Posting>)> {
    let amount = event.amount_minor;
    if amount == 0 {
        return None;
    }
    match event.kind {
        TicketEventKind::TicketsIssued => Some((
            "ticket_sale",
            vec![
                Posting {
                    code: cash_account(event),
                    kind: "asset",
                    amount_minor: amount,
                },
                Posting {
                    code: GROSS_TICKET_REVENUE.into(),
                    kind: "revenue",
                    amount_minor: -amount,
                },
            ],
        )),
        TicketEventKind::TicketsVoided if issued => Some((
            "ticket_reversal",
            vec![
                Posting {
                    code: REFUNDS_AND_VOIDS.into(),
                    kind: "revenue",
                    amount_minor: amount,
                },
                Posting {
                    code: cash_account(event),
                    kind: "asset",
                    amount_minor: -amount,
                },
            ],
        )),
        TicketEventKind::TicketsVoided | TicketEventKind::SaleRejected => None,
    }
}
