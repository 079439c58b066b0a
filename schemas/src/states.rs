//! The states things move through, as the database stores them (`catalog.raffle_events.state`
//! and its transitions), and the reasons a sale is refused. Parsing is the only way in, so a
//! state held is a state that exists.

use std::fmt;
use std::str::FromStr;

/// Where a raffle is in its life: set up in `draft`, selling while `active`, then closed,
/// sealed, drawn and completed, or cancelled before the seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RaffleState {
    Draft,
    Active,
    SalesClosed,
    Sealed,
    Drawn,
    Completed,
    Cancelled,
}

impl RaffleState {
    pub const ALL: [RaffleState; 7] = [
        RaffleState::Draft,
        RaffleState::Active,
        RaffleState::SalesClosed,
        RaffleState::Sealed,
        RaffleState::Drawn,
        RaffleState::Completed,
        RaffleState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RaffleState::Draft => "draft",
            RaffleState::Active => "active",
            RaffleState::SalesClosed => "sales_closed",
            RaffleState::Sealed => "sealed",
            RaffleState::Drawn => "drawn",
            RaffleState::Completed => "completed",
            RaffleState::Cancelled => "cancelled",
        }
    }

    /// The lifecycle's arrows: activation, the close of sales, the seal, the draw, completion,
    /// and cancellation from any state before the seal.
    pub fn may_become(self, to: RaffleState) -> bool {
        use RaffleState::*;
        matches!(
            (self, to),
            (Draft, Active)
                | (Active, SalesClosed)
                | (SalesClosed, Sealed)
                | (Sealed, Drawn)
                | (Drawn, Completed)
                | (Draft | Active | SalesClosed, Cancelled)
        )
    }
}

impl fmt::Display for RaffleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not one of the states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of the states")]
pub struct UnknownState(pub String);

impl FromStr for RaffleState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RaffleState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Where an order's payment is (`sales.orders.payment_status`): pending until the provider
/// says, then completed (tickets issued), failed, rejected (paid but refused: to refund),
/// refunded or voided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    Pending,
    Completed,
    Failed,
    Rejected,
    Refunded,
    Voided,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 6] = [
        PaymentStatus::Pending,
        PaymentStatus::Completed,
        PaymentStatus::Failed,
        PaymentStatus::Rejected,
        PaymentStatus::Refunded,
        PaymentStatus::Voided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Completed => "completed",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Rejected => "rejected",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Voided => "voided",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentStatus {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentStatus::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Why the allocator refused a sale: stored as `sales.rejected_sales.reason_code` and carried
/// in the ticket event, in snake_case. The seal and the draw name their refusals in
/// kebab-case (`not-closed`, `wrong-check-code`): those are problem types of the API, these are
/// codes in the data; both spellings are kept as they are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaleRefusal {
    /// The event is not what its kind requires (no order, no range, a range of another raffle).
    Invalid,
    /// The raffle does not exist.
    UnknownRaffle,
    /// The raffle is not active or closed for late payments.
    RaffleNotSelling,
    /// The sale was made before the sales started or after they ended.
    OutsideSalesWindow,
    /// The tickets would go beyond the raffle's maximum.
    RaffleSoldOut,
    /// The order's hold ran out and what is left is held for other payments.
    SoldOutHoldExpired,
    /// The order does not exist.
    UnknownOrder,
    /// Another payment already paid the order: this one is to be refunded.
    OrderAlreadyPaid,
    /// The order ended (failed, rejected, refunded) before the payment came.
    OrderNotPending,
    /// The payment is not for the order's raffle, amount or currency.
    OrderMismatch,
    /// The payment already paid another order.
    PaymentReused,
    /// The range does not exist.
    UnknownRange,
    /// The range has too few numbers left.
    RangeExhausted,
    /// The RSU block does not exist.
    UnknownAllocation,
    /// The block is not this device's for this raffle.
    AllocationMismatch,
    /// The sale names no package of the raffle.
    UnknownPackage,
    /// The numbers, amount or currency do not match the package.
    PackageMismatch,
    /// A draw number lies outside the device's block.
    NumberOutsideAllocation,
    /// A draw number is already sold.
    NumberAlreadyUsed,
    /// The validation number is not in the block's validation numbers.
    ValidationNumberOutsideBlock,
    /// The validation number is already used.
    ValidationNumberUsed,
    /// An offline sale arrived after the offline expiry.
    OfflineSaleExpired,
    /// The order holds no tickets to refund.
    NothingToRefund,
    /// The raffle is sealed: refunds go through the ledger.
    RaffleSealed,
}

impl SaleRefusal {
    pub const ALL: [SaleRefusal; 24] = [
        SaleRefusal::Invalid,
        SaleRefusal::UnknownRaffle,
        SaleRefusal::RaffleNotSelling,
        SaleRefusal::OutsideSalesWindow,
        SaleRefusal::RaffleSoldOut,
        SaleRefusal::SoldOutHoldExpired,
        SaleRefusal::UnknownOrder,
        SaleRefusal::OrderAlreadyPaid,
        SaleRefusal::OrderNotPending,
        SaleRefusal::OrderMismatch,
        SaleRefusal::PaymentReused,
        SaleRefusal::UnknownRange,
        SaleRefusal::RangeExhausted,
        SaleRefusal::UnknownAllocation,
        SaleRefusal::AllocationMismatch,
        SaleRefusal::UnknownPackage,
        SaleRefusal::PackageMismatch,
        SaleRefusal::NumberOutsideAllocation,
        SaleRefusal::NumberAlreadyUsed,
        SaleRefusal::ValidationNumberOutsideBlock,
        SaleRefusal::ValidationNumberUsed,
        SaleRefusal::OfflineSaleExpired,
        SaleRefusal::NothingToRefund,
        SaleRefusal::RaffleSealed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SaleRefusal::Invalid => "invalid",
            SaleRefusal::UnknownRaffle => "unknown_raffle",
            SaleRefusal::RaffleNotSelling => "raffle_not_selling",
            SaleRefusal::OutsideSalesWindow => "outside_sales_window",
            SaleRefusal::RaffleSoldOut => "raffle_sold_out",
            SaleRefusal::SoldOutHoldExpired => "sold_out_hold_expired",
            SaleRefusal::UnknownOrder => "unknown_order",
            SaleRefusal::OrderAlreadyPaid => "order_already_paid",
            SaleRefusal::OrderNotPending => "order_not_pending",
            SaleRefusal::OrderMismatch => "order_mismatch",
            SaleRefusal::PaymentReused => "payment_reused",
            SaleRefusal::UnknownRange => "unknown_range",
            SaleRefusal::RangeExhausted => "range_exhausted",
            SaleRefusal::UnknownAllocation => "unknown_allocation",
            SaleRefusal::AllocationMismatch => "allocation_mismatch",
            SaleRefusal::UnknownPackage => "unknown_package",
            SaleRefusal::PackageMismatch => "package_mismatch",
            SaleRefusal::NumberOutsideAllocation => "number_outside_allocation",
            SaleRefusal::NumberAlreadyUsed => "number_already_used",
            SaleRefusal::ValidationNumberOutsideBlock => "validation_number_outside_block",
            SaleRefusal::ValidationNumberUsed => "validation_number_used",
            SaleRefusal::OfflineSaleExpired => "offline_sale_expired",
            SaleRefusal::NothingToRefund => "nothing_to_refund",
            SaleRefusal::RaffleSealed => "raffle_sealed",
        }
    }
}

impl SaleRefusal {
    /// Whether a captured payment refused for this reason is the buyer's to get back, paid by
    /// the platform (the `refunds` worker). Not for a payment that already paid another order
    /// (it is that order's money), nor for a payment naming no raffle, order or valid sale:
    /// those are finance's to look into (`sales.rejected_sales`).
    pub fn refunds_payment(self) -> bool {
        matches!(
            self,
            SaleRefusal::RaffleNotSelling
                | SaleRefusal::OutsideSalesWindow
                | SaleRefusal::RaffleSoldOut
                | SaleRefusal::SoldOutHoldExpired
                | SaleRefusal::OrderAlreadyPaid
                | SaleRefusal::OrderNotPending
                | SaleRefusal::OrderMismatch
        )
    }
}

impl fmt::Display for SaleRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_as_written_and_arrows_go_forward_only() {
        for state in RaffleState::ALL {
            assert_eq!(state.as_str().parse::<RaffleState>(), Ok(state));
            assert!(!state.may_become(state), "{state} does not become itself");
        }
        assert!("open".parse::<RaffleState>().is_err());
        for status in PaymentStatus::ALL {
            assert_eq!(status.as_str().parse::<PaymentStatus>(), Ok(status));
        }
        assert!(RaffleState::SalesClosed.may_become(RaffleState::Sealed));
        assert!(!RaffleState::Sealed.may_become(RaffleState::Cancelled));
        assert!(!RaffleState::Drawn.may_become(RaffleState::Sealed));
    }

    #[test]
    fn refusal_codes_are_distinct_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in SaleRefusal::ALL {
            let text = code.as_str();
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text}"
            );
            assert!(seen.insert(text), "{text} twice");
        }
    }
}
