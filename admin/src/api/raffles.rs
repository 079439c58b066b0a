//! Raffle events: configuration, number ranges and the lifecycle
//! draft → active → sales_closed → sealed → drawn → completed, or cancelled.
//! Every transition is checked and recorded (`catalog.raffle_transitions` and a critical event).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use catalog::regulations::{self, InForce, Regulations, RuleValue};
use catalog::{lifecycle, raffles};
use schemas::RaffleState;

use super::{Ctx, Reply, currency, ok, opt_prose, parse, positive, rows_json, text};
use crate::audit::{self, Event, Severity};
use crate::auth::{Role, require, rights};
use crate::problem::Problem;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeInput {
    #[serde(rename = "type")]
    kind: String,
    start: i64,
    end: i64,
    default_allocation_size: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RaffleInput {
    name: String,
    description: Option<String>,
    venue_id: Uuid,
    event_identifier: String,
    sales_start_time: DateTime<Utc>,
    sales_end_time: DateTime<Utc>,
    draw_time: DateTime<Utc>,
    currency: String,
    #[serde(default)]
    jackpot_seed_minor: i64,
    #[serde(default)]
    jackpot_starting_minor: i64,
    revenue_calculation_method: Option<String>,
    max_tickets: i64,
    ranges: Vec<RangeInput>,
}

/// The raffle with its ranges and counters, as one JSON object. 404 unless it belongs to `org`.
pub async fn raffle_json(
    client: &impl GenericClient,
    org: Uuid,
    raffle: Uuid,
) -> Result<Value, Problem> {
    let row = client
        .query_opt(
            "SELECT to_jsonb(r) || jsonb_build_object('ranges', coalesce((
                        SELECT jsonb_agg(to_jsonb(g) || jsonb_build_object('unsold', g.total - g.sold - g.voided)
                                         ORDER BY g.start_number)
                          FROM catalog.raffle_ranges g WHERE g.raffle_id = r.id), '[]'::jsonb))
               FROM catalog.raffle_events r WHERE r.id = $1 AND r.organization_id = $2",
            &[&raffle, &org],
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("raffle {raffle} of organization {org}")))?;
    Ok(row.get(0))
}

fn check_times(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    draw: DateTime<Utc>,
) -> Result<(), Problem> {
    if end <= start {
        return Err(Problem::invalid(
            "sales_end_time",
            "must be after sales_start_time",
        ));
    }
    if draw < end {
        return Err(Problem::invalid(
            "draw_time",
            "must not be before sales_end_time",
        ));
    }
    Ok(())
}

/// The regulations a raffle's configuration must meet, checked at configuration and activation.
struct Config<'a> {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    currency: &'a str,
    jackpot_minor: i64,
    range_types: Vec<String>,
}

fn check_config_rules(rules: &Regulations, c: &Config<'_>) -> Result<(), Problem> {
    if let Some(InForce {
        value: RuleValue::Duration { max_days },
        sources,
    }) = rules.get("event_duration")
    {
        let days = (c.end - c.start).num_seconds() as f64 / 86_400.0;
        if days > *max_days as f64 {
            return Err(Problem::conflict(
                "regulation",
                format!("sales run {days:.1} days; the jurisdiction allows at most {max_days} (regulation {})", sources[0]),
            )
            .with_field("sales_end_time"));
        }
    }
    rules.check_amount(
        "prize_limit",
        "jackpot_seed_minor",
        regulations::money("jackpot_seed_minor", c.jackpot_minor, c.currency)?,
    )?;
    let methods = rules.sales_methods();
    for kind in &c.range_types {
        let allowed = match kind.as_str() {
            "online" => methods.online,
            "rsu" => methods.rsu,
            _ => true,
        };
        if !allowed {
            return Err(Problem::conflict(
                "regulation",
                format!(
                    "{kind} sales are not allowed in this jurisdiction (regulation {})",
                    methods.regulation.unwrap_or_default()
                ),
            )
            .with_field("ranges"));
        }
    }
    Ok(())
}

pub async fn create(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let r: RaffleInput = parse(ctx.body)?;
    let name = text("name", &r.name, 200)?;
    let identifier = text("event_identifier", &r.event_identifier, 60)?;
    let currency = currency("currency", &r.currency)?;
    check_times(r.sales_start_time, r.sales_end_time, r.draw_time)?;
    super::money("jackpot_seed_minor", r.jackpot_seed_minor)?;
    super::money("jackpot_starting_minor", r.jackpot_starting_minor)?;
    let method = r
        .revenue_calculation_method
        .clone()
        .unwrap_or_else(|| "gross_revenue".into());
    if !["gross_revenue", "net_revenue"].contains(&method.as_str()) {
        return Err(Problem::invalid(
            "revenue_calculation_method",
            "must be one of: gross_revenue, net_revenue",
        ));
    }
    positive("max_tickets", r.max_tickets, 100_000_000)?;
    if r.ranges.is_empty() {
        return Err(Problem::invalid(
            "ranges",
            "a raffle needs at least one number range",
        ));
    }
    let mut numbers: i64 = 0;
    for (i, g) in r.ranges.iter().enumerate() {
        let f = |k: &str| format!("ranges[{i}].{k}");
        if !["rsu", "online", "reserve"].contains(&g.kind.as_str()) {
            return Err(Problem::invalid(
                &f("type"),
                format!("{:?} is not one of: rsu, online, reserve", g.kind),
            ));
        }
        positive(&f("start"), g.start, 1_000_000_000)?;
        if g.end < g.start || g.end > 1_000_000_000 {
            return Err(Problem::invalid(
                &f("end"),
                "must be at least start and at most 1000000000",
            ));
        }
        if let Some(size) = g.default_allocation_size {
            positive(&f("default_allocation_size"), size, g.end - g.start + 1)?;
        }
        numbers += g.end - g.start + 1;
    }
    if r.max_tickets > numbers {
        return Err(Problem::invalid(
            "max_tickets",
            format!(
                "is {} but the ranges hold only {numbers} numbers",
                r.max_tickets
            ),
        ));
    }
    // The venue must be this organisation's and accept the currency.
    let venue = ctx
        .tx
        .query_opt(
            "SELECT accepted_currencies, jurisdiction_id FROM catalog.venues WHERE id = $1 AND organization_id = $2",
            &[&r.venue_id, &org],
        )
        .await?
        .ok_or_else(|| Problem::invalid("venue_id", format!("venue {} is not one of this organization's", r.venue_id)))?;
    let accepted: Vec<String> = venue.get(0);
    if !accepted.contains(&currency) {
        return Err(Problem::invalid(
            "currency",
            format!("the venue accepts {} only", accepted.join(", ")),
        ));
    }
    let rules = regulations::effective(ctx.tx, venue.get(1), Utc::now()).await?;
    check_config_rules(
        &rules,
        &Config {
            start: r.sales_start_time,
            end: r.sales_end_time,
            currency: &currency,
            jackpot_minor: r.jackpot_seed_minor.max(r.jackpot_starting_minor),
            range_types: r.ranges.iter().map(|g| g.kind.clone()).collect(),
        },
    )?;
    let description = opt_prose("description", &r.description, 2000)?;
    let ranges =
        r.ranges
            .iter()
            .map(|g| raffles::NewRange {
                range_type: &g.kind,
                start_number: g.start,
                end_number: g.end,
                default_allocation_size: g
                    .default_allocation_size
                    .unwrap_or(if g.kind == "online" { 1 } else { 100 })
                    as i32,
            })
            .collect();
    let id = raffles::create(
        ctx.tx,
        &raffles::NewRaffle {
            organization_id: org,
            venue_id: r.venue_id,
            name: &name,
            description: description.as_deref(),
            event_identifier: &identifier,
            sales_start_time: r.sales_start_time,
            sales_end_time: r.sales_end_time,
            draw_time: r.draw_time,
            currency: &currency,
            jackpot_seed_minor: r.jackpot_seed_minor,
            jackpot_starting_minor: r.jackpot_starting_minor,
            revenue_calculation_method: &method,
            max_tickets: r.max_tickets,
            ranges,
            created_by: &ctx.actor.sub,
        },
    )
    .await?;
    let after = raffle_json(ctx.tx, org, id).await?;
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(org),
            "RAFFLE_CREATED",
            format!("raffle '{name}' ({identifier}) created in draft"),
        )
        .raffle(id),
    )
    .await
}

pub async fn list(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::READ_SETUP).await?;
    ok(rows_json(
        ctx.tx,
        "SELECT to_jsonb(r) FROM catalog.raffle_events r WHERE organization_id = $1 ORDER BY sales_start_time DESC",
        &[&org],
    )
    .await?)
}

pub async fn get(ctx: &Ctx<'_, '_>, org: Uuid, raffle: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::READ_SETUP).await?;
    ok(raffle_json(ctx.tx, org, raffle).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RafflePatch {
    name: Option<String>,
    description: Option<String>,
    sales_start_time: Option<DateTime<Utc>>,
    sales_end_time: Option<DateTime<Utc>>,
    draw_time: Option<DateTime<Utc>>,
    jackpot_seed_minor: Option<i64>,
    jackpot_starting_minor: Option<i64>,
    revenue_calculation_method: Option<String>,
    max_tickets: Option<i64>,
}

/// Locks the raffle row for the rest of the transaction; returns (state, first sale, venue jurisdiction).
async fn lock(
    ctx: &Ctx<'_, '_>,
    org: Uuid,
    raffle: Uuid,
) -> Result<(String, Option<DateTime<Utc>>), Problem> {
    let row = ctx
        .tx
        .query_opt(
            "SELECT state, first_sale_at FROM catalog.raffle_events WHERE id = $1 AND organization_id = $2 FOR UPDATE",
            &[&raffle, &org],
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("raffle {raffle} of organization {org}")))?;
    Ok((row.get(0), row.get(1)))
}

/// Refuses a change to money or numbers once the raffle has sold, or once it left draft/active.
pub async fn ensure_money_editable(
    ctx: &Ctx<'_, '_>,
    org: Uuid,
    raffle: Uuid,
    what: &str,
) -> Result<(), Problem> {
    let (state, first_sale) = lock(ctx, org, raffle).await?;
    if let Some(at) = first_sale {
        return Err(Problem::conflict(
            "frozen-after-first-sale",
            format!("{what} cannot change: the raffle's first sale was at {at}"),
        ));
    }
    if state != "draft" && state != "active" {
        return Err(Problem::conflict(
            "frozen",
            format!("{what} cannot change in state {state}"),
        ));
    }
    Ok(())
}

pub async fn update(ctx: &Ctx<'_, '_>, org: Uuid, raffle: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let p: RafflePatch = parse(ctx.body)?;
    let before = raffle_json(ctx.tx, org, raffle).await?;
    let touches_money = p.sales_start_time.is_some()
        || p.sales_end_time.is_some()
        || p.draw_time.is_some()
        || p.jackpot_seed_minor.is_some()
        || p.jackpot_starting_minor.is_some()
        || p.revenue_calculation_method.is_some()
        || p.max_tickets.is_some();
    if touches_money {
        ensure_money_editable(
            ctx,
            org,
            raffle,
            "the sales window, jackpot, revenue method or ticket limit",
        )
        .await?;
    } else {
        lock(ctx, org, raffle).await?;
    }
    let get_time = |k: &str| {
        before[k]
            .as_str()
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
    };
    let start = p
        .sales_start_time
        .or_else(|| get_time("sales_start_time"))
        .unwrap_or_default();
    let end = p
        .sales_end_time
        .or_else(|| get_time("sales_end_time"))
        .unwrap_or_default();
    let draw = p
        .draw_time
        .or_else(|| get_time("draw_time"))
        .unwrap_or_default();
    check_times(start, end, draw)?;
    if let Some(m) = &p.revenue_calculation_method
        && !["gross_revenue", "net_revenue"].contains(&m.as_str())
    {
        return Err(Problem::invalid(
            "revenue_calculation_method",
            "must be one of: gross_revenue, net_revenue",
        ));
    }
    for (field, v) in [
        ("jackpot_seed_minor", p.jackpot_seed_minor),
        ("jackpot_starting_minor", p.jackpot_starting_minor),
    ] {
        if let Some(v) = v {
            super::money(field, v)?;
        }
    }
    if let Some(max) = p.max_tickets {
        positive("max_tickets", max, 100_000_000)?;
    }
    let currency = before["currency"].as_str().unwrap_or_default().to_owned();
    let jackpot = p
        .jackpot_seed_minor
        .unwrap_or(before["jackpot_seed_minor"].as_i64().unwrap_or(0))
        .max(
            p.jackpot_starting_minor
                .unwrap_or(before["jackpot_starting_minor"].as_i64().unwrap_or(0)),
        );
    let rules = regulations::for_raffle(ctx.tx, raffle, Utc::now()).await?;
    let range_types = before["ranges"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g["range_type"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    check_config_rules(
        &rules,
        &Config {
            start,
            end,
            currency: &currency,
            jackpot_minor: jackpot,
            range_types,
        },
    )?;
    let name = p
        .name
        .as_deref()
        .map(|n| text("name", n, 200))
        .transpose()?;
    let description = opt_prose("description", &p.description, 2000)?;
    raffles::update(
        ctx.tx,
        org,
        raffle,
        &raffles::RaffleChanges {
            name: name.as_deref(),
            description: description.as_deref(),
            sales_start_time: start,
            sales_end_time: end,
            draw_time: draw,
            jackpot_seed_minor: p.jackpot_seed_minor,
            jackpot_starting_minor: p.jackpot_starting_minor,
            revenue_calculation_method: p.revenue_calculation_method.as_deref(),
            max_tickets: p.max_tickets,
            updated_by: &ctx.actor.sub,
        },
    )
    .await?;
    let after = raffle_json(ctx.tx, org, raffle).await?;
    super::changed_with(
        ctx,
        before,
        after,
        Event::info(Some(org), "RAFFLE_UPDATED", "raffle configuration changed").raffle(raffle),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionInput {
    to: String,
    reason: Option<String>,
}

/// Checks everything activation needs: packages, prizes, ranges, and every regulation.
async fn check_activation(ctx: &Ctx<'_, '_>, org: Uuid, raffle: Uuid) -> Result<(), Problem> {
    let r = raffle_json(ctx.tx, org, raffle).await?;
    let counts = ctx
        .tx
        .query_one(
            "SELECT (SELECT count(*) FROM catalog.ticket_packages WHERE raffle_id = $1 AND is_active),
                    (SELECT count(*) FROM catalog.prizes WHERE raffle_id = $1)",
            &[&raffle],
        )
        .await?;
    let (packages, prizes): (i64, i64) = (counts.get(0), counts.get(1));
    if packages == 0 {
        return Err(Problem::conflict(
            "activation-incomplete",
            "a raffle needs at least one active package before activation",
        ));
    }
    if prizes == 0 {
        return Err(Problem::conflict(
            "activation-incomplete",
            "a raffle needs at least one prize before activation",
        ));
    }
    let time = |k: &str| {
        r[k].as_str()
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
            .unwrap_or_default()
    };
    if time("sales_end_time") <= Utc::now() {
        return Err(Problem::conflict(
            "activation-too-late",
            "the sales end time has passed",
        ));
    }
    let rules = regulations::for_raffle(ctx.tx, raffle, Utc::now()).await?;
    let currency = r["currency"].as_str().unwrap_or_default();
    check_config_rules(
        &rules,
        &Config {
            start: time("sales_start_time"),
            end: time("sales_end_time"),
            currency,
            jackpot_minor: r["jackpot_seed_minor"]
                .as_i64()
                .unwrap_or(0)
                .max(r["jackpot_starting_minor"].as_i64().unwrap_or(0)),
            range_types: r["ranges"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g["range_type"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        },
    )?;
    // Rules may have changed since the packages and prizes were configured.
    for row in ctx
        .tx
        .query(
            "SELECT id, price_minor, ticket_count, currency FROM catalog.ticket_packages WHERE raffle_id = $1 AND is_active",
            &[&raffle],
        )
        .await?
    {
        let (id, price, count, cur): (Uuid, i64, i32, String) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let field = format!("package {id}");
        rules.check_package_price(&field, regulations::money(&field, price, &cur)?, count)?;
    }
    for row in ctx
        .tx
        .query("SELECT id, value_minor, currency FROM catalog.prizes WHERE raffle_id = $1 AND prize_type = 'fixed'", &[&raffle])
        .await?
    {
        let (id, value, cur): (Uuid, i64, String) = (row.get(0), row.get(1), row.get(2));
        let field = format!("prize {id}");
        rules.check_amount("prize_limit", &field, regulations::money(&field, value, &cur)?)?;
    }
    Ok(())
}

/// Moves a raffle along its lifecycle; sealing and drawing belong to the ledger and the draw
/// engine, not to this API.
pub async fn transition(ctx: &Ctx<'_, '_>, org: Uuid, raffle: Uuid) -> Result<Reply, Problem> {
    let role = require(ctx.tx, ctx.actor, org, rights::OPERATE).await?;
    let t: TransitionInput = parse(ctx.body)?;
    let reason = opt_prose("reason", &t.reason, 500)?.unwrap_or_else(|| "requested".into());
    let (from, _) = lock(ctx, org, raffle).await?;
    let to = t.to.as_str();
    let admin_only = |role: Role| {
        if role == Role::Admin {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "only an admin may move a raffle to {to}"
            )))
        }
    };
    let (event_type, severity) = match (from.as_str(), to) {
        ("draft", "active") => {
            admin_only(role)?;
            check_activation(ctx, org, raffle).await?;
            ("RAFFLE_ACTIVATED", Severity::Info)
        }
        ("active", "sales_closed") => ("RAFFLE_SALES_CLOSED", Severity::Info),
        ("draft" | "active" | "sales_closed", "cancelled") => {
            admin_only(role)?;
            ("RAFFLE_CANCELLED", Severity::Warning)
        }
        ("drawn", "completed") => {
            admin_only(role)?;
            ("RAFFLE_COMPLETED", Severity::Info)
        }
        ("sales_closed", "sealed") | ("sealed", "drawn") => {
            return Err(Problem::conflict(
                "transition-not-here",
                format!(
                    "{from} → {to} is done by the {} (`raffle {}`), which checks the ledger first",
                    if to == "sealed" {
                        "ledger"
                    } else {
                        "draw engine"
                    },
                    if to == "sealed" {
                        "ledger seal"
                    } else {
                        "draw run"
                    }
                ),
            ));
        }
        _ if ![
            "draft",
            "active",
            "sales_closed",
            "sealed",
            "drawn",
            "completed",
            "cancelled",
        ]
        .contains(&to) =>
        {
            return Err(Problem::invalid(
                "to",
                format!("{to:?} is not a raffle state"),
            ));
        }
        _ => {
            return Err(Problem::conflict(
                "invalid-transition",
                format!("a raffle cannot go from {from} to {to}"),
            ));
        }
    };
    let before = raffle_json(ctx.tx, org, raffle).await?;
    let state = |s: &str| {
        s.parse::<RaffleState>()
            .map_err(|e| Problem::internal("reading the raffle's state", &e))
    };
    lifecycle::transition(
        ctx.tx,
        raffle,
        state(&from)?,
        state(to)?,
        &reason,
        &ctx.actor.sub,
    )
    .await?;
    let after = raffle_json(ctx.tx, org, raffle).await?;
    audit::record(
        ctx.tx,
        Some(ctx.actor),
        Event::info(
            Some(org),
            event_type,
            format!("raffle transitioned from {from} to {to}: {reason}"),
        )
        .raffle(raffle)
        .severity(severity)
        .change(
            Some(json!({"state": before["state"]})),
            Some(json!({"state": after["state"]})),
        ),
    )
    .await?;
    ok(after)
}
