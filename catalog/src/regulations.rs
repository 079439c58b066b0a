//! Jurisdiction regulations: their typed values, which of two is stricter, the rules in force
//! for a jurisdiction at a moment (its own, inherited from its parents, and clamped by every
//! parent rule marked not overridable), and what they allow: every stage asks [`Regulations`]
//! (sales methods, price and prize limits) rather than reading a rule's value itself.
//!
//! Value shapes (JSON, in `catalog.jurisdiction_regulations.value`):
//! - `prize_limit`, `ticket_price_limit`: `{"amount": minor units, "currency": "USD"}`; the
//!   ticket price limit applies to the price per ticket of a package (rounded up).
//! - `event_duration`: `{"max_days": n}` between sales start and sales end.
//! - `sales_method`: `{"online": bool, "rsu": bool, "offline_rsu": bool, "rng_draw": bool}`.
//! - `reporting_requirement`: `{"reconciliation_within_days": n}` after the draw.
//! - `data_retention`: `{"ticket_data_days": n, "critical_events_days": n}`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use platform::problem::Problem;
use schemas::Money;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RuleValue {
    Amount {
        amount: i64,
        currency: String,
    },
    Duration {
        max_days: i64,
    },
    SalesMethod {
        online: bool,
        rsu: bool,
        offline_rsu: bool,
        rng_draw: bool,
    },
    Reporting {
        reconciliation_within_days: i64,
    },
    Retention {
        ticket_data_days: i64,
        critical_events_days: i64,
    },
}

pub const TYPES: &[&str] = &[
    "prize_limit",
    "ticket_price_limit",
    "event_duration",
    "sales_method",
    "reporting_requirement",
    "data_retention",
];

/// Parses a regulation's value for its type; the error names the rule broken.
pub fn parse(regulation_type: &str, value: &Value) -> Result<RuleValue, Problem> {
    let bad =
        |rule: &str| Problem::invalid("value", format!("a {regulation_type} value must be {rule}"));
    let obj = value.as_object().ok_or_else(|| bad("a JSON object"))?;
    let int = |k: &str| obj.get(k).and_then(Value::as_i64);
    let flag = |k: &str| obj.get(k).and_then(Value::as_bool);
    let rule = match regulation_type {
        "prize_limit" | "ticket_price_limit" => {
            let amount = int("amount").filter(|a| *a >= 0);
            let currency = obj
                .get("currency")
                .and_then(Value::as_str)
                .filter(|c| schemas::Currency::parse(c).is_ok());
            match (amount, currency, obj.len()) {
                (Some(amount), Some(c), 2) => RuleValue::Amount {
                    amount,
                    currency: c.to_owned(),
                },
                _ => {
                    return Err(bad(
                        r#"{"amount": non-negative minor units, "currency": ISO code}"#,
                    ));
                }
            }
        }
        "event_duration" => match (int("max_days").filter(|d| *d >= 1), obj.len()) {
            (Some(max_days), 1) => RuleValue::Duration { max_days },
            _ => return Err(bad(r#"{"max_days": at least 1}"#)),
        },
        "sales_method" => match (
            flag("online"),
            flag("rsu"),
            flag("offline_rsu"),
            flag("rng_draw"),
            obj.len(),
        ) {
            (Some(online), Some(rsu), Some(offline_rsu), Some(rng_draw), 4) => {
                RuleValue::SalesMethod {
                    online,
                    rsu,
                    offline_rsu,
                    rng_draw,
                }
            }
            _ => {
                return Err(bad(
                    r#"{"online", "rsu", "offline_rsu", "rng_draw"}, each true or false"#,
                ));
            }
        },
        "reporting_requirement" => match (
            int("reconciliation_within_days").filter(|d| *d >= 1),
            obj.len(),
        ) {
            (Some(days), 1) => RuleValue::Reporting {
                reconciliation_within_days: days,
            },
            _ => return Err(bad(r#"{"reconciliation_within_days": at least 1}"#)),
        },
        "data_retention" => match (
            int("ticket_data_days").filter(|d| *d >= 1),
            int("critical_events_days").filter(|d| *d >= 1),
            obj.len(),
        ) {
            (Some(t), Some(c), 2) => RuleValue::Retention {
                ticket_data_days: t,
                critical_events_days: c,
            },
            _ => {
                return Err(bad(
                    r#"{"ticket_data_days", "critical_events_days"}, each at least 1"#,
                ));
            }
        },
        other => {
            return Err(Problem::invalid(
                "type",
                format!("{other:?} is not one of: {}", TYPES.join(", ")),
            ));
        }
    };
    Ok(rule)
}

/// The stricter of two values of one type, or why they cannot be compared.
pub fn strictest(a: &RuleValue, b: &RuleValue) -> Result<RuleValue, String> {
    use RuleValue::*;
    Ok(match (a, b) {
        (
            Amount {
                amount: x,
                currency: c1,
            },
            Amount {
                amount: y,
                currency: c2,
            },
        ) => {
            if c1 != c2 {
                return Err(format!("limits in {c1} and {c2} cannot be compared"));
            }
            Amount {
                amount: (*x).min(*y),
                currency: c1.clone(),
            }
        }
        (Duration { max_days: x }, Duration { max_days: y }) => Duration {
            max_days: (*x).min(*y),
        },
        (
            SalesMethod {
                online: a1,
                rsu: a2,
                offline_rsu: a3,
                rng_draw: a4,
            },
            SalesMethod {
                online: b1,
                rsu: b2,
                offline_rsu: b3,
                rng_draw: b4,
            },
        ) => SalesMethod {
            online: *a1 && *b1,
            rsu: *a2 && *b2,
            offline_rsu: *a3 && *b3,
            rng_draw: *a4 && *b4,
        },
        (
            Reporting {
                reconciliation_within_days: x,
            },
            Reporting {
                reconciliation_within_days: y,
            },
        ) => Reporting {
            reconciliation_within_days: (*x).min(*y),
        },
        (
            Retention {
                ticket_data_days: t1,
                critical_events_days: c1,
            },
            Retention {
                ticket_data_days: t2,
                critical_events_days: c2,
            },
        ) => Retention {
            ticket_data_days: (*t1).max(*t2),
            critical_events_days: (*c1).max(*c2),
        },
        _ => return Err("values of different regulation types".into()),
    })
}

/// True when `child` allows something `parent` does not.
pub fn loosens(child: &RuleValue, parent: &RuleValue) -> Result<bool, String> {
    Ok(strictest(child, parent)? != *child)
}

/// One rule in force, and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct InForce {
    pub value: RuleValue,
    /// The regulations that made it: the nearest one, then every non-overridable parent rule
    /// that clamps it.
    pub sources: Vec<Uuid>,
}

/// SQL naming `chain(id, parent, depth)`: the jurisdiction `$1` and its ancestors, nearest
/// first (depth 0 is the jurisdiction itself), bounded against a cycle.
pub const JURISDICTION_CHAIN: &str = "WITH RECURSIVE chain(id, parent, depth) AS (
     SELECT id, parent_jurisdiction_id, 0 FROM catalog.jurisdictions WHERE id = $1
     UNION ALL
     SELECT j.id, j.parent_jurisdiction_id, c.depth + 1
       FROM catalog.jurisdictions j JOIN chain c ON j.id = c.parent WHERE c.depth < 32)";

/// The rules in force for `jurisdiction_id` at `at`, by type.
pub async fn effective(
    client: &impl GenericClient,
    jurisdiction_id: Uuid,
    at: DateTime<Utc>,
) -> Result<Regulations, Problem> {
    let rows = client
        .query(
            &format!(
                "{JURISDICTION_CHAIN}
             SELECT r.id, r.regulation_type, r.value, r.overridable, c.depth
               FROM chain c JOIN catalog.jurisdiction_regulations r ON r.jurisdiction_id = c.id
              WHERE r.effective_date <= $2 AND (r.expiration_date IS NULL OR r.expiration_date > $2)
              ORDER BY c.depth, r.effective_date DESC"
            ),
            &[&jurisdiction_id, &at],
        )
        .await?;
    let mut rules: BTreeMap<String, InForce> = BTreeMap::new();
    for row in &rows {
        let (id, kind, value, overridable, depth): (Uuid, String, Value, bool, i32) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let value = parse(&kind, &value)?;
        match rules.get_mut(&kind) {
            None => {
                rules.insert(
                    kind,
                    InForce {
                        value,
                        sources: vec![id],
                    },
                );
            }
            // A farther rule binds only if it is not overridable (or is a same-level duplicate).
            Some(current) if !overridable || depth == 0 => {
                current.value = strictest(&current.value, &value).map_err(|e| {
                    Problem::conflict("regulation-conflict", format!("{kind}: {e}"))
                })?;
                current.sources.push(id);
            }
            Some(_) => {}
        }
    }
    Ok(Regulations(rules))
}

/// The rules in force for a raffle: those of its venue's jurisdiction.
pub async fn for_raffle(
    client: &impl GenericClient,
    raffle_id: Uuid,
    at: DateTime<Utc>,
) -> Result<Regulations, Problem> {
    let row = client
        .query_opt(
            "SELECT v.jurisdiction_id FROM catalog.raffle_events r JOIN catalog.venues v ON v.id = r.venue_id WHERE r.id = $1",
            &[&raffle_id],
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("raffle {raffle_id}")))?;
    effective(client, row.get(0), at).await
}

/// The rules in force for one jurisdiction (or one raffle's), by type.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Regulations(pub BTreeMap<String, InForce>);

/// Which ways of selling and drawing a jurisdiction allows; everything when it says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalesMethods {
    pub online: bool,
    pub rsu: bool,
    pub offline_rsu: bool,
    pub rng_draw: bool,
    /// The regulation that says so, when one does.
    pub regulation: Option<Uuid>,
}

impl Default for SalesMethods {
    fn default() -> Self {
        Self {
            online: true,
            rsu: true,
            offline_rsu: true,
            rng_draw: true,
            regulation: None,
        }
    }
}

impl Regulations {
    pub fn get(&self, kind: &str) -> Option<&InForce> {
        self.0.get(kind)
    }

    /// The sales methods allowed.
    pub fn sales_methods(&self) -> SalesMethods {
        match self.get("sales_method") {
            Some(InForce {
                value:
                    RuleValue::SalesMethod {
                        online,
                        rsu,
                        offline_rsu,
                        rng_draw,
                    },
                sources,
            }) => SalesMethods {
                online: *online,
                rsu: *rsu,
                offline_rsu: *offline_rsu,
                rng_draw: *rng_draw,
                regulation: sources.first().copied(),
            },
            _ => SalesMethods::default(),
        }
    }

    /// Refuses an amount above a limit in force (`prize_limit`, `ticket_price_limit`), naming
    /// the regulation.
    pub fn check_amount(&self, kind: &str, field: &str, money: Money) -> Result<(), Problem> {
        if let Some(InForce {
            value:
                RuleValue::Amount {
                    amount,
                    currency: c,
                },
            sources,
        }) = self.get(kind)
        {
            let (amount_minor, currency) = (money.amount_minor(), money.currency());
            if c != currency.as_str() {
                return Err(Problem::conflict(
                    "regulation",
                    format!("{field}: the {kind} of this jurisdiction is in {c}, the amount is in {currency}"),
                )
                .with_field(field));
            }
            if amount_minor > *amount {
                return Err(Problem::conflict(
                    "regulation",
                    format!("{field}: {amount_minor} {currency} exceeds the {kind} of {amount} {c} (regulation {})", sources[0]),
                )
                .with_field(field));
            }
        }
        Ok(())
    }

    /// The ticket price limit applies per ticket: a package's price divided by its ticket
    /// count, rounded up (a 5-for-$20 package costs $4 a ticket).
    pub fn check_package_price(
        &self,
        field: &str,
        price: Money,
        ticket_count: i32,
    ) -> Result<(), Problem> {
        let per_ticket = price.per_unit_rounded_up(i64::from(ticket_count));
        self.check_amount("ticket_price_limit", field, per_ticket)
    }
}

/// An amount as stored, or the problem with it named by field (a negative amount or an unknown
/// currency code never passes a limit check by accident).
pub fn money(field: &str, amount_minor: i64, currency: &str) -> Result<Money, Problem> {
    Money::of(amount_minor, currency).map_err(|e| Problem::invalid(field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_parse_by_type_and_refuse_wrong_shapes() {
        assert!(
            parse(
                "prize_limit",
                &json!({"amount": 5_000_000, "currency": "USD"})
            )
            .is_ok()
        );
        assert!(parse("prize_limit", &json!({"amount": -1, "currency": "USD"})).is_err());
        assert!(parse("prize_limit", &json!({"amount": 1, "currency": "usd"})).is_err());
        assert!(parse("event_duration", &json!({"max_days": 0})).is_err());
        assert!(parse("sales_method", &json!({"online": true})).is_err());
        assert!(parse("bogus", &json!({})).is_err());
    }

    #[test]
    fn strictness_per_type() {
        let limit = |a| RuleValue::Amount {
            amount: a,
            currency: "USD".into(),
        };
        assert_eq!(strictest(&limit(5), &limit(3)), Ok(limit(3)));
        assert!(loosens(&limit(5), &limit(3)).unwrap());
        assert!(!loosens(&limit(2), &limit(3)).unwrap());
        let keep = |t, c| RuleValue::Retention {
            ticket_data_days: t,
            critical_events_days: c,
        };
        assert!(
            loosens(&keep(100, 2000), &keep(365, 1095)).unwrap(),
            "keeping tickets shorter loosens"
        );
        let methods = |offline| RuleValue::SalesMethod {
            online: true,
            rsu: true,
            offline_rsu: offline,
            rng_draw: true,
        };
        assert!(loosens(&methods(true), &methods(false)).unwrap());
        assert!(
            strictest(
                &limit(1),
                &RuleValue::Amount {
                    amount: 1,
                    currency: "CAD".into()
                }
            )
            .is_err()
        );
    }
}
