//! The chart of accounts: each account's code (as `ledger.accounts.code` stores it) and its
//! kind, named once. A posting is made from an [`Account`], so a code and its kind cannot drift
//! apart and no site spells an account by hand.

use uuid::Uuid;

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
pub const PRIZE_DISBURSEMENTS: &str = "prize_disbursements";
pub const REFUNDS_PAYABLE: &str = "refunds_payable";

/// An account of a raffle's books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    /// Money the payment provider holds for the raffle (asset).
    PaymentClearing,
    /// Cash and card money an RSU took (asset), per device.
    RsuFloat(Uuid),
    /// Ticket sales (revenue, credit).
    GrossTicketRevenue,
    /// Refunds and voids of issued sales (contra-revenue, debit).
    RefundsAndVoids,
    /// Money captured for sales that were not issued, owed back to the buyers until the
    /// provider has refunded it (liability).
    RefundsPayable,
    /// A prize's cost, set at the seal (expense), per prize.
    PrizeExpense(Uuid),
    /// What a prize owes its winners until drawn (liability), per prize.
    PrizeLiability(Uuid),
    /// What one winner is owed (liability), per draw result.
    PrizePayable(Uuid),
    /// Prizes paid out to winners (asset side of the payout: the money left).
    PrizeDisbursements,
    /// The operating fee (expense).
    OperatingFeeExpense,
    /// The operating fee owed (liability).
    OperatingFeePayable,
    /// What the charity keeps (equity).
    NetProceeds,
    /// Device cash counted and not yet deposited (asset).
    UndepositedCash,
    /// The charity's bank account, for deposits (asset).
    Bank,
    /// Cash counted over (credit) or short (debit) of what the devices sold (expense).
    CashOverShort,
    /// The payment provider's processing fees (operating expense).
    ProcessingFees,
    /// The provider's fees for disputes (expense).
    DisputeFees,
}

impl Account {
    pub fn code(self) -> String {
        match self {
            Account::PaymentClearing => PAYMENT_CLEARING.to_owned(),
            Account::RsuFloat(rsu) => format!("rsu_float/{rsu}"),
            Account::GrossTicketRevenue => GROSS_TICKET_REVENUE.to_owned(),
            Account::RefundsAndVoids => REFUNDS_AND_VOIDS.to_owned(),
            Account::RefundsPayable => REFUNDS_PAYABLE.to_owned(),
            Account::PrizeExpense(prize) => format!("prize_expense/{prize}"),
            Account::PrizeLiability(prize) => format!("prize_liability/{prize}"),
            Account::PrizePayable(result) => format!("prize_payable/{result}"),
            Account::PrizeDisbursements => PRIZE_DISBURSEMENTS.to_owned(),
            Account::OperatingFeeExpense => "operating_fee_expense".to_owned(),
            Account::OperatingFeePayable => "operating_fee_payable".to_owned(),
            Account::NetProceeds => "net_proceeds".to_owned(),
            Account::UndepositedCash => "undeposited_cash".to_owned(),
            Account::Bank => "bank".to_owned(),
            Account::CashOverShort => "cash_over_short".to_owned(),
            Account::ProcessingFees => "processing_fees".to_owned(),
            Account::DisputeFees => "dispute_fees".to_owned(),
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Account::PaymentClearing
            | Account::RsuFloat(_)
            | Account::PrizeDisbursements
            | Account::UndepositedCash
            | Account::Bank => "asset",
            Account::GrossTicketRevenue | Account::RefundsAndVoids => "revenue",
            Account::PrizeExpense(_)
            | Account::OperatingFeeExpense
            | Account::CashOverShort
            | Account::ProcessingFees
            | Account::DisputeFees => "expense",
            Account::PrizeLiability(_)
            | Account::PrizePayable(_)
            | Account::OperatingFeePayable
            | Account::RefundsPayable => "liability",
            Account::NetProceeds => "equity",
        }
    }

    /// A debit of `amount_minor` to this account.
    pub fn debit(self, amount_minor: i64) -> Posting {
        Posting {
            code: self.code(),
            kind: self.kind(),
            amount_minor,
        }
    }

    /// A credit of `amount_minor` to this account.
    pub fn credit(self, amount_minor: i64) -> Posting {
        self.debit(-amount_minor)
    }
}
