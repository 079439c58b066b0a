//! What made a refund owed, spelled once. Its key makes an obligation unique
//! (`refunds.obligations.source_key`): owing the same thing twice finds the first.

use std::fmt;

use uuid::Uuid;

/// Why the platform owes a payment back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundSource {
    /// A sale event the allocator rejected after the provider captured its payment (sold out,
    /// after the close, a second payment of a paid order).
    SaleEvent(Uuid),
    /// A paid order of a raffle that was cancelled.
    CancelledOrder(Uuid),
    /// A paid order staff gave back whole.
    OrderRefund(Uuid),
}

impl RefundSource {
    const SALE_EVENT: &'static str = "sale-event:";
    const CANCELLED_ORDER: &'static str = "cancel:";
    const ORDER_REFUND: &'static str = "order-refund:";

    /// The sources that give `order` back whole (its sale reversed as the refund is owed).
    pub fn whole_order(order: Uuid) -> [Self; 2] {
        [Self::CancelledOrder(order), Self::OrderRefund(order)]
    }

    pub fn key(&self) -> String {
        self.to_string()
    }

    /// The source a key names, or `None` for a key of another kind (a benchmark's, a test's).
    pub fn parse(key: &str) -> Option<Self> {
        if let Some(id) = key.strip_prefix(Self::SALE_EVENT) {
            return id.parse().ok().map(Self::SaleEvent);
        }
        if let Some(id) = key.strip_prefix(Self::ORDER_REFUND) {
            return id.parse().ok().map(Self::OrderRefund);
        }
        key.strip_prefix(Self::CANCELLED_ORDER)
            .and_then(|id| id.parse().ok())
            .map(Self::CancelledOrder)
    }
}

impl fmt::Display for RefundSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SaleEvent(id) => write!(f, "{}{id}", Self::SALE_EVENT),
            Self::CancelledOrder(id) => write!(f, "{}{id}", Self::CANCELLED_ORDER),
            Self::OrderRefund(id) => write!(f, "{}{id}", Self::ORDER_REFUND),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_what_they_name() {
        let id = Uuid::now_v7();
        for source in [
            RefundSource::SaleEvent(id),
            RefundSource::CancelledOrder(id),
        ] {
            assert_eq!(RefundSource::parse(&source.key()), Some(source));
        }
        assert_eq!(
            RefundSource::SaleEvent(id).key(),
            format!("sale-event:{id}"),
            "the key V21's rows already hold"
        );
        assert_eq!(RefundSource::parse("bench:pi_1"), None);
        assert_eq!(RefundSource::parse("sale-event:not-a-uuid"), None);
    }
}
