//! Why the seal and the draw (and a prize claim) refuse, as published codes. The API's problem
//! types and the operators' runbooks use these kebab-case spellings; the allocator's codes in
//! the data are [`crate::SaleRefusal`] (snake_case, as stored). Each code is written once, here.

use std::fmt;

/// An enum of refusals, each with its published code, listed in `ALL`.
macro_rules! refusal_codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The published code.
            pub fn code(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

refusal_codes! {
    /// Why a seal did not happen.
    SealRefusal {
        /// The raffle does not exist.
        UnknownRaffle => "unknown-raffle",
        /// Sales have not closed.
        NotClosed => "not-closed",
        /// Sales closed less than the grace period ago: late payments may still land.
        GracePeriod => "grace-period",
        /// Sales or tickets are still on their way through the pipeline.
        InFlight => "in-flight",
        /// RSU blocks hold sales not yet uploaded, and no write-off was asked for.
        UnsyncedAllocations => "unsynced-allocations",
        /// A device's cash was not counted (nor its block written off).
        CashNotCounted => "cash-not-counted",
        /// The chained ledger does not verify.
        LedgerDoesNotVerify => "ledger-does-not-verify",
        /// A figure does not fit in 64-bit minor units.
        AmountOverflow => "amount-overflow",
    }
}

refusal_codes! {
    /// Why a draw, a manual result or a prize claim was refused.
    DrawRefusal {
        /// The raffle does not exist.
        UnknownRaffle => "unknown-raffle",
        /// The raffle is not sealed.
        NotSealed => "not-sealed",
        /// The ledger under the seal does not verify.
        LedgerDoesNotVerify => "ledger-does-not-verify",
        /// The seal's record no longer matches the books.
        SealDoesNotVerify => "seal-does-not-verify",
        /// The revealed seed does not match the commitment made at the seal.
        CommitmentMismatch => "commitment-mismatch",
        /// Another draw of this raffle is running.
        DrawInProgress => "draw-in-progress",
        /// The raffle is drawn already.
        AlreadyDrawn => "already-drawn",
        /// Fewer eligible tickets than winners to pick.
        TooFewTickets => "too-few-tickets",
        /// The jurisdiction does not allow a random-number draw.
        RngDrawForbidden => "rng-draw-forbidden",
        /// The seed was sealed under a key that is not configured here.
        SeedKeyMissing => "seed-key-missing",
        /// A resumed draw's recorded results are not what its committed inputs select.
        RecordedResultsDiffer => "recorded-results-differ",
        /// A manual draw's results do not fit the raffle.
        InvalidManualResult => "invalid-manual-result",
        /// Too many claim attempts.
        RateLimited => "rate-limited",
        /// The draw number did not win.
        NotAWinner => "not-a-winner",
        /// The raffle is not drawn yet.
        NotDrawn => "not-drawn",
        /// The prize is claimed already.
        AlreadyClaimed => "already-claimed",
        /// The claim period has ended.
        ClaimPeriodOver => "claim-period-over",
        /// The claim period has not ended yet (unclaimed prizes cannot be settled).
        ClaimPeriodOpen => "claim-period-open",
        /// The validation number is not the winning ticket's.
        WrongValidationNumber => "wrong-validation-number",
        /// The receipt was issued without a check code: staff verify the winner in person.
        NoCheckCode => "no-check-code",
        /// The check code is not the ticket's.
        WrongCheckCode => "wrong-check-code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_kebab_case_and_unique_per_enum() {
        for codes in [
            SealRefusal::ALL
                .iter()
                .map(|r| r.code())
                .collect::<Vec<_>>(),
            DrawRefusal::ALL
                .iter()
                .map(|r| r.code())
                .collect::<Vec<_>>(),
        ] {
            let unique: HashSet<_> = codes.iter().collect();
            assert_eq!(unique.len(), codes.len(), "a code is used twice: {codes:?}");
            for code in codes {
                assert!(
                    code.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                    "{code} is not kebab-case"
                );
            }
        }
    }
}
