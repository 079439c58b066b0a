//! The states things move through, as the database stores them (`catalog.raffle_events.state`
//! and its transitions). Parsing is the only way in, so a state held is a state that exists.

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
#[error("{0:?} is not a raffle state")]
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
        assert!(RaffleState::SalesClosed.may_become(RaffleState::Sealed));
        assert!(!RaffleState::Sealed.may_become(RaffleState::Cancelled));
        assert!(!RaffleState::Drawn.may_become(RaffleState::Sealed));
    }
}
