//! How a sealed raffle's money is divided, with the rounding rules written down once:
//! a percentage prize rounds **up** to the minor unit (a winner never gets less than the
//! advertised share), the operating fee rounds **half-even**, and net proceeds take the
//! remainder, so the parts add up to the gross to the cent.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

/// A prize as configured.
#[derive(Debug, Clone, PartialEq)]
pub enum PrizeValue {
    Fixed { value_minor: i64 },
    Percentage { percent: Decimal },
}

#[derive(Debug, Clone, PartialEq)]
pub enum OperatingFee {
    Percentage { percent: Decimal },
    Fixed { amount_minor: i64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SplitInput {
    /// Ticket revenue net of refunds and voids, plus numbers written off as sold.
    pub gross_receipts_minor: i64,
    /// `gross_revenue`: prizes are shares of the gross; `net_revenue`: of the gross less the fee.
    pub revenue_method_net: bool,
    /// Guaranteed minimum of the main (first percentage) prize.
    pub jackpot_seed_minor: i64,
    /// Cash the charity put into the main prize at the start.
    pub jackpot_starting_minor: i64,
    /// In position order.
    pub prizes: Vec<PrizeValue>,
    pub operating_fee: OperatingFee,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Per prize, in the order given.
    pub prizes_minor: Vec<i64>,
    pub operating_fee_minor: i64,
    /// What the charity keeps: the remainder of the gross after prizes and fee. Negative when a
    /// guaranteed minimum or the starting cash (which the charity funds) exceeds it.
    pub net_proceeds_minor: i64,
    /// The percentage base the prizes were computed on.
    pub prize_basis_minor: i64,
}

/// A figure of the split does not fit in minor units of `i64`: the inputs are beyond any
/// raffle (the edges bound every amount; this is the last line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {what} does not fit in 64-bit minor units")]
pub struct SplitOverflow {
    pub what: &'static str,
}

fn to_minor(d: Option<Decimal>, what: &'static str) -> Result<i64, SplitOverflow> {
    d.and_then(|d| d.to_i64()).ok_or(SplitOverflow { what })
}

/// `share` percent of `base`, exactly, as a decimal.
fn share_of(base: i64, percent: &Decimal) -> Option<Decimal> {
    Decimal::from(base)
        .checked_mul(*percent)?
        .checked_div(Decimal::ONE_HUNDRED)
}

/// A prize of the raffle, as the split and the seal name it.
#[derive(Debug, Clone, PartialEq)]
pub struct TermsPrize {
    pub id: uuid::Uuid,
    pub name: String,
    pub value: PrizeValue,
}

/// What a raffle's money is divided by, as configured: read once here for the seal and for the
/// live jackpot's estimate, so the two cannot divide differently.
#[derive(Debug, Clone, PartialEq)]
pub struct Terms {
    pub currency: String,
    pub revenue_method_net: bool,
    pub jackpot_seed_minor: i64,
    pub jackpot_starting_minor: i64,
    /// In position order.
    pub prizes: Vec<TermsPrize>,
    pub operating_fee: OperatingFee,
}

impl Terms {
    /// The raffle's terms, or `None` when there is no such raffle.
    pub async fn load(
        client: &impl tokio_postgres::GenericClient,
        raffle: uuid::Uuid,
    ) -> Result<Option<Terms>, tokio_postgres::Error> {
        let Some(row) = client
            .query_opt(
                "SELECT r.currency, r.revenue_calculation_method, r.jackpot_seed_minor, r.jackpot_starting_minor,
                        o.operating_fee_type, o.operating_fee_percent, o.operating_fee_minor
                   FROM catalog.raffle_events r JOIN catalog.organizations o ON o.id = r.organization_id
                  WHERE r.id = $1",
                &[&raffle],
            )
            .await?
        else {
            return Ok(None);
        };
        let operating_fee = match (
            row.get::<_, String>(4).as_str(),
            row.get::<_, Option<Decimal>>(5),
            row.get::<_, Option<i64>>(6),
        ) {
            ("percentage", Some(percent), _) => OperatingFee::Percentage { percent },
            (_, _, Some(amount_minor)) => OperatingFee::Fixed { amount_minor },
            _ => OperatingFee::Fixed { amount_minor: 0 },
        };
        let prizes = client
            .query(
                "SELECT id, name, prize_type, value_minor, percentage FROM catalog.prizes WHERE raffle_id = $1 ORDER BY position",
                &[&raffle],
            )
            .await?
            .iter()
            .map(|r| TermsPrize {
                id: r.get(0),
                name: r.get(1),
                value: match (
                    r.get::<_, String>(2).as_str(),
                    r.get::<_, Option<i64>>(3),
                    r.get::<_, Option<Decimal>>(4),
                ) {
                    ("fixed", Some(value_minor), _) => PrizeValue::Fixed { value_minor },
                    (_, _, Some(percent)) => PrizeValue::Percentage { percent },
                    _ => PrizeValue::Fixed { value_minor: 0 },
                },
            })
            .collect();
        Ok(Some(Terms {
            currency: row.get(0),
            revenue_method_net: row.get::<_, String>(1) == "net_revenue",
            jackpot_seed_minor: row.get(2),
            jackpot_starting_minor: row.get(3),
            prizes,
            operating_fee,
        }))
    }

    /// The split of `gross_receipts_minor` under these terms.
    pub fn split(&self, gross_receipts_minor: i64) -> Result<Split, SplitOverflow> {
        split(&SplitInput {
            gross_receipts_minor,
            revenue_method_net: self.revenue_method_net,
            jackpot_seed_minor: self.jackpot_seed_minor,
            jackpot_starting_minor: self.jackpot_starting_minor,
            prizes: self.prizes.iter().map(|p| p.value.clone()).collect(),
            operating_fee: self.operating_fee.clone(),
        })
    }

    /// The main prize: the first percentage prize (the one a guaranteed minimum and starting
    /// cash go to), else the first prize.
    pub fn main_prize(&self) -> Option<usize> {
        self.prizes
            .iter()
            .position(|p| matches!(p.value, PrizeValue::Percentage { .. }))
            .or(if self.prizes.is_empty() {
                None
            } else {
                Some(0)
            })
    }
}

pub fn split(input: &SplitInput) -> Result<Split, SplitOverflow> {
    let fee = match &input.operating_fee {
        OperatingFee::Percentage { percent } => to_minor(
            share_of(input.gross_receipts_minor, percent)
                .map(|d| d.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)),
            "operating fee",
        )?,
        OperatingFee::Fixed { amount_minor } => *amount_minor,
    };
    let basis = if input.revenue_method_net {
        input
            .gross_receipts_minor
            .checked_sub(fee)
            .ok_or(SplitOverflow {
                what: "prize basis",
            })?
            .max(0)
    } else {
        input.gross_receipts_minor
    };
    let mut main_seen = false;
    let mut prizes_minor = Vec::with_capacity(input.prizes.len());
    for p in &input.prizes {
        let amount = match p {
            PrizeValue::Fixed { value_minor } => *value_minor,
            PrizeValue::Percentage { percent } => {
                let share = to_minor(share_of(basis, percent).map(|d| d.ceil()), "prize share")?;
                if main_seen {
                    share
                } else {
                    main_seen = true;
                    share
                        .checked_add(input.jackpot_starting_minor)
                        .ok_or(SplitOverflow { what: "main prize" })?
                        .max(input.jackpot_seed_minor)
                }
            }
        };
        prizes_minor.push(amount);
    }
    let prizes_total = prizes_minor
        .iter()
        .try_fold(0i64, |sum, p| sum.checked_add(*p))
        .ok_or(SplitOverflow {
            what: "prize total",
        })?;
    let net_proceeds_minor = input
        .gross_receipts_minor
        .checked_sub(prizes_total)
        .and_then(|n| n.checked_sub(fee))
        .ok_or(SplitOverflow {
            what: "net proceeds",
        })?;
    Ok(Split {
        net_proceeds_minor,
        prizes_minor,
        operating_fee_minor: fee,
        prize_basis_minor: basis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pct(p: &str) -> Decimal {
        p.parse().unwrap()
    }

    fn split_ok(input: SplitInput) -> Split {
        split(&input).expect("a split within bounds")
    }

    #[test]
    fn amounts_beyond_i64_are_an_error_not_a_wrap() {
        let huge = SplitInput {
            gross_receipts_minor: i64::MAX,
            revenue_method_net: false,
            jackpot_seed_minor: 0,
            jackpot_starting_minor: i64::MAX,
            prizes: vec![PrizeValue::Percentage { percent: pct("50") }],
            operating_fee: OperatingFee::Fixed { amount_minor: 0 },
        };
        assert_eq!(split(&huge), Err(SplitOverflow { what: "main prize" }));
        let two_prizes = SplitInput {
            jackpot_starting_minor: 0,
            prizes: vec![
                PrizeValue::Fixed {
                    value_minor: i64::MAX,
                },
                PrizeValue::Fixed { value_minor: 1 },
            ],
            ..huge
        };
        assert_eq!(
            split(&two_prizes),
            Err(SplitOverflow {
                what: "prize total"
            })
        );
    }

    #[test]
    fn a_fifty_fifty_rounds_the_prize_up_and_the_fee_half_even() {
        let s = split_ok(SplitInput {
            gross_receipts_minor: 1_000_001,
            revenue_method_net: false,
            jackpot_seed_minor: 0,
            jackpot_starting_minor: 0,
            prizes: vec![PrizeValue::Percentage { percent: pct("50") }],
            operating_fee: OperatingFee::Percentage {
                percent: pct("4.5"),
            },
        });
        assert_eq!(s.prizes_minor, vec![500_001], "500,000.5 rounds up");
        assert_eq!(
            s.operating_fee_minor, 45_000,
            "45,000.045 rounds to the nearest"
        );
        assert_eq!(s.net_proceeds_minor, 1_000_001 - 500_001 - 45_000);
        let tie = split_ok(SplitInput {
            gross_receipts_minor: 100,
            revenue_method_net: false,
            jackpot_seed_minor: 0,
            jackpot_starting_minor: 0,
            prizes: vec![],
            operating_fee: OperatingFee::Percentage {
                percent: pct("2.5"),
            },
        });
        assert_eq!(tie.operating_fee_minor, 2, "2.5 rounds half to even");
    }

    #[test]
    fn the_guaranteed_minimum_and_the_starting_amount_lift_the_main_prize_only() {
        let s = split_ok(SplitInput {
            gross_receipts_minor: 10_000,
            revenue_method_net: false,
            jackpot_seed_minor: 100_000,
            jackpot_starting_minor: 2_000,
            prizes: vec![
                PrizeValue::Percentage { percent: pct("50") },
                PrizeValue::Percentage { percent: pct("10") },
                PrizeValue::Fixed { value_minor: 1_500 },
            ],
            operating_fee: OperatingFee::Fixed { amount_minor: 300 },
        });
        assert_eq!(s.prizes_minor, vec![100_000, 1_000, 1_500]);
        assert!(s.net_proceeds_minor < 0, "the charity funds the guarantee");
    }

    proptest! {
        #[test]
        fn the_parts_add_up_to_the_cent_and_winners_never_get_less(
            gross in 0i64..10_000_000_000,
            main in 1u32..=100,
            early in 0u32..=20,
            fee_bp in 0u32..=2_000,
            net in any::<bool>(),
            seed in 0i64..1_000_000,
            start in 0i64..1_000_000,
        ) {
            let main_pct = Decimal::from(main);
            let early_pct = Decimal::from(early);
            let fee_pct = Decimal::new(fee_bp.into(), 2);
            let mut prizes = vec![PrizeValue::Percentage { percent: main_pct }];
            if early > 0 { prizes.push(PrizeValue::Percentage { percent: early_pct }); }
            let s = split_ok(SplitInput {
                gross_receipts_minor: gross,
                revenue_method_net: net,
                jackpot_seed_minor: seed,
                jackpot_starting_minor: start,
                prizes,
                operating_fee: OperatingFee::Percentage { percent: fee_pct },
            });
            // Reconciles to the cent.
            prop_assert_eq!(s.prizes_minor.iter().sum::<i64>() + s.operating_fee_minor + s.net_proceeds_minor, gross);
            // A percentage prize is never below the advertised share, and under one cent above it.
            let exact = Decimal::from(s.prize_basis_minor) * main_pct / Decimal::ONE_HUNDRED;
            prop_assert!(Decimal::from(s.prizes_minor[0]) >= exact + Decimal::from(start));
            prop_assert!(Decimal::from(s.prizes_minor[0]) >= Decimal::from(seed));
            if early > 0 {
                let exact = Decimal::from(s.prize_basis_minor) * early_pct / Decimal::ONE_HUNDRED;
                prop_assert!(Decimal::from(s.prizes_minor[1]) >= exact && Decimal::from(s.prizes_minor[1]) < exact + Decimal::ONE);
            }
            // The fee is within half a cent of the exact share.
            let exact_fee = Decimal::from(gross) * fee_pct / Decimal::ONE_HUNDRED;
            prop_assert!((Decimal::from(s.operating_fee_minor) - exact_fee).abs() <= Decimal::new(5, 1));
        }
    }
}
