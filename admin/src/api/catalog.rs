//! Package and prize templates (per organisation) and a raffle's packages and prizes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::raffles::{ensure_money_editable, raffle_json};
use super::{
    Ctx, Reply, currency, money, ok, opt_prose, parse, percent, positive, rows_json, text,
};
use crate::audit::Event;
use crate::auth::{require, rights};
use crate::problem::Problem;
use crate::rules::{self, InForce};

/// The ticket price limit applies per ticket: a package's price divided by its ticket count,
/// rounded up (a 5-for-$20 package costs $4 a ticket).
pub fn check_package_price(
    rules: &BTreeMap<String, InForce>,
    field: &str,
    price_minor: i64,
    ticket_count: i32,
    currency: &str,
) -> Result<(), Problem> {
    // Rounded up without `price + count - 1`, which wraps for a price near i64::MAX and let
    // such a package pass the limit.
    let count = i64::from(ticket_count.max(1));
    let per_ticket = price_minor / count + i64::from(price_minor % count != 0);
    rules::check_amount(rules, "ticket_price_limit", field, per_ticket, currency)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageTemplateInput {
    name: String,
    description: Option<String>,
    ticket_count: i64,
    price_minor: i64,
    currency: String,
    #[serde(default)]
    display_order: i32,
}

pub async fn create_package_template(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let t: PackageTemplateInput = parse(ctx.body)?;
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.package_templates (organization_id, name, description, ticket_count, price_minor, currency,
                 display_order, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING to_jsonb(package_templates.*)",
            &[
                &org,
                &text("name", &t.name, 200)?,
                &opt_prose("description", &t.description, 2000)?,
                &(positive("ticket_count", t.ticket_count, 10_000)? as i32),
                &money("price_minor", t.price_minor)?,
                &currency("currency", &t.currency)?,
                &t.display_order,
                &ctx.actor.sub,
            ],
        )
        .await?;
    let after: Value = row.get(0);
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(org),
            "PACKAGE_TEMPLATE_CREATED",
            format!("package template '{}' created", t.name),
        ),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrizeTemplateInput {
    name: String,
    description: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    value_minor: Option<i64>,
    percentage: Option<Value>,
    currency: String,
}

/// (value, percentage) of a prize, validated for its type.
fn prize_value(
    kind: &str,
    value_minor: Option<i64>,
    pct: &Option<Value>,
) -> Result<(Option<i64>, Option<rust_decimal::Decimal>), Problem> {
    match (kind, value_minor, pct) {
        ("fixed", Some(v), None) => Ok((Some(money("value_minor", v)?), None)),
        ("percentage", None, Some(p)) => {
            let p = percent("percentage", p)?;
            if p.is_zero() {
                return Err(Problem::invalid("percentage", "must be more than 0"));
            }
            Ok((None, Some(p)))
        }
        ("fixed", _, _) => Err(Problem::invalid(
            "value_minor",
            "a fixed prize has value_minor and no percentage",
        )),
        ("percentage", _, _) => Err(Problem::invalid(
            "percentage",
            "a percentage prize has percentage and no value_minor",
        )),
        (other, _, _) => Err(Problem::invalid(
            "type",
            format!("{other:?} is not one of: fixed, percentage"),
        )),
    }
}

pub async fn create_prize_template(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let t: PrizeTemplateInput = parse(ctx.body)?;
    let (value, pct) = prize_value(&t.kind, t.value_minor, &t.percentage)?;
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.prize_templates (organization_id, name, description, prize_type, value_minor, percentage,
                 currency, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING to_jsonb(prize_templates.*)",
            &[&org, &text("name", &t.name, 200)?, &opt_prose("description", &t.description, 2000)?, &t.kind, &value, &pct, &currency("currency", &t.currency)?, &ctx.actor.sub],
        )
        .await?;
    let after: Value = row.get(0);
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(org),
            "PRIZE_TEMPLATE_CREATED",
            format!("prize template '{}' created", t.name),
        ),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageInput {
    template_id: Option<Uuid>,
    name: Option<String>,
    description: Option<String>,
    ticket_count: Option<i64>,
    price_minor: Option<i64>,
    currency: Option<String>,
    #[serde(default)]
    display_order: i32,
    active_from: Option<DateTime<Utc>>,
    active_to: Option<DateTime<Utc>>,
    #[serde(default)]
    perk_ids: Vec<Uuid>,
}

pub async fn create_package(ctx: &Ctx<'_, '_>, org: Uuid, raffle: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let p: PackageInput = parse(ctx.body)?;
    ensure_money_editable(ctx, org, raffle, "the packages").await?;
    let r = raffle_json(ctx.tx, org, raffle).await?;
    // Fields come from the request, or else from the template.
    let template = own_template(
        ctx,
        "SELECT name, description, ticket_count, price_minor, currency FROM catalog.package_templates",
        p.template_id,
        org,
        "package template",
    )
    .await?;
    let (name, description) = name_and_description(&p.name, &p.description, template.as_ref())?;
    let count = p
        .ticket_count
        .or_else(|| template.as_ref().map(|t| i64::from(t.get::<_, i32>(2))))
        .ok_or_else(|| Problem::invalid("ticket_count", "is required"))?;
    let price = p
        .price_minor
        .or_else(|| template.as_ref().map(|t| t.get(3)))
        .ok_or_else(|| Problem::invalid("price_minor", "is required"))?;
    let cur = p
        .currency
        .clone()
        .or_else(|| template.as_ref().map(|t| t.get(4)))
        .ok_or_else(|| Problem::invalid("currency", "is required"))?;
    let count = positive("ticket_count", count, 10_000)? as i32;
    let price = money("price_minor", price)?;
    let cur = currency("currency", &cur)?;
    if r["currency"].as_str() != Some(cur.as_str()) {
        return Err(Problem::invalid(
            "currency",
            format!(
                "the raffle sells in {}",
                r["currency"].as_str().unwrap_or("?")
            ),
        ));
    }
    if let (Some(from), Some(to)) = (p.active_from, p.active_to)
        && from >= to
    {
        return Err(Problem::invalid("active_to", "must be after active_from"));
    }
    let rules = rules::for_raffle(ctx.tx, raffle, Utc::now()).await?;
    check_package_price(&rules, "price_minor", price, count, &cur)?;
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.ticket_packages (raffle_id, template_id, name, description, ticket_count, price_minor, currency,
                 display_order, active_from, active_to, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
            &[&raffle, &p.template_id, &text("name", &name, 200)?, &description, &count, &price, &cur, &p.display_order, &p.active_from, &p.active_to, &ctx.actor.sub],
        )
        .await?;
    let id: Uuid = row.get(0);
    for (i, perk) in p.perk_ids.iter().enumerate() {
        let n = ctx
            .tx
            .execute(
                "INSERT INTO catalog.package_perks (package_id, perk_id)
                 SELECT $1, id FROM catalog.perks WHERE id = $2 AND organization_id = $3",
                &[&id, perk, &org],
            )
            .await?;
        if n != 1 {
            return Err(Problem::invalid(
                &format!("perk_ids[{i}]"),
                format!("perk {perk} is not this organization's"),
            ));
        }
    }
    let after = package_json(ctx, id).await?;
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(org),
            "PACKAGE_CREATED",
            format!("package '{name}' ({count} tickets for {price} {cur}) added"),
        )
        .raffle(raffle),
    )
    .await
}

async fn package_json(ctx: &Ctx<'_, '_>, id: Uuid) -> Result<Value, Problem> {
    let row = ctx
        .tx
        .query_one(
            "SELECT to_jsonb(p) || jsonb_build_object('perk_ids',
                 coalesce((SELECT jsonb_agg(perk_id) FROM catalog.package_perks WHERE package_id = p.id), '[]'::jsonb))
               FROM catalog.ticket_packages p WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn list_packages(ctx: &Ctx<'_, '_>, org: Uuid, raffle: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::READ_SETUP).await?;
    raffle_json(ctx.tx, org, raffle).await?;
    ok(rows_json(ctx.tx, "SELECT to_jsonb(p) FROM catalog.ticket_packages p WHERE raffle_id = $1 ORDER BY display_order, name", &[&raffle]).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackagePatch {
    name: Option<String>,
    description: Option<String>,
    is_active: Option<bool>,
    display_order: Option<i32>,
    price_minor: Option<i64>,
    ticket_count: Option<i64>,
    active_from: Option<DateTime<Utc>>,
    active_to: Option<DateTime<Utc>>,
}

/// Display fields change any time; price, ticket count and price window only before the
/// first sale (prices do not change after the first sale in several jurisdictions).
pub async fn update_package(
    ctx: &Ctx<'_, '_>,
    org: Uuid,
    raffle: Uuid,
    package: Uuid,
) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let p: PackagePatch = parse(ctx.body)?;
    raffle_json(ctx.tx, org, raffle).await?;
    let before = ctx
        .tx
        .query_opt(
            "SELECT to_jsonb(p) FROM catalog.ticket_packages p WHERE id = $1 AND raffle_id = $2",
            &[&package, &raffle],
        )
        .await?
        .map(|r| r.get::<_, Value>(0))
        .ok_or_else(|| Problem::not_found(format!("package {package} of raffle {raffle}")))?;
    let money_change = p.price_minor.is_some()
        || p.ticket_count.is_some()
        || p.active_from.is_some()
        || p.active_to.is_some();
    if money_change {
        ensure_money_editable(
            ctx,
            org,
            raffle,
            "a package's price, ticket count or price window",
        )
        .await?;
        let price = money(
            "price_minor",
            p.price_minor
                .unwrap_or(before["price_minor"].as_i64().unwrap_or(0)),
        )?;
        let count = positive(
            "ticket_count",
            p.ticket_count
                .unwrap_or(before["ticket_count"].as_i64().unwrap_or(1)),
            10_000,
        )? as i32;
        let rules = rules::for_raffle(ctx.tx, raffle, Utc::now()).await?;
        check_package_price(
            &rules,
            "price_minor",
            price,
            count,
            before["currency"].as_str().unwrap_or_default(),
        )?;
    }
    ctx.tx
        .execute(
            "UPDATE catalog.ticket_packages SET name = coalesce($2, name), description = coalesce($3, description),
                 is_active = coalesce($4, is_active), display_order = coalesce($5, display_order),
                 price_minor = coalesce($6, price_minor), ticket_count = coalesce($7, ticket_count),
                 active_from = coalesce($8, active_from), active_to = coalesce($9, active_to),
                 updated_at = now(), updated_by = $10
             WHERE id = $1",
            &[
                &package,
                &p.name.as_deref().map(|n| text("name", n, 200)).transpose()?,
                &opt_prose("description", &p.description, 2000)?,
                &p.is_active,
                &p.display_order,
                &p.price_minor,
                &p.ticket_count.map(|c| c as i32),
                &p.active_from,
                &p.active_to,
                &ctx.actor.sub,
            ],
        )
        .await
        .map_err(|e| crate::problem::from_db("updating the package", &e))?;
    let after = package_json(ctx, package).await?;
    super::changed_with(
        ctx,
        before,
        after,
        Event::info(Some(org), "PACKAGE_UPDATED", "package changed").raffle(raffle),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrizeInput {
    template_id: Option<Uuid>,
    name: Option<String>,
    description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    value_minor: Option<i64>,
    percentage: Option<Value>,
    position: i64,
    #[serde(default = "one")]
    winner_count: i64,
}

fn one() -> i64 {
    1
}

pub async fn create_prize(ctx: &Ctx<'_, '_>, org: Uuid, raffle: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let p: PrizeInput = parse(ctx.body)?;
    ensure_money_editable(ctx, org, raffle, "the prizes").await?;
    let r = raffle_json(ctx.tx, org, raffle).await?;
    let cur = r["currency"].as_str().unwrap_or_default().to_owned();
    let template = own_template(
        ctx,
        "SELECT name, description, prize_type, value_minor, percentage::text, currency FROM catalog.prize_templates",
        p.template_id,
        org,
        "prize template",
    )
    .await?;
    let (name, description) = name_and_description(&p.name, &p.description, template.as_ref())?;
    let kind = p
        .kind
        .clone()
        .or_else(|| template.as_ref().map(|t| t.get(2)))
        .ok_or_else(|| Problem::invalid("type", "is required"))?;
    let (value, pct) = if p.kind.is_some() || template.is_none() {
        prize_value(&kind, p.value_minor, &p.percentage)?
    } else {
        let t = template
            .as_ref()
            .ok_or_else(|| Problem::invalid("template_id", "is required"))?;
        let pct: Option<String> = t.get(4);
        prize_value(&kind, t.get(3), &pct.map(Value::String))?
    };
    if let Some(t) = &template
        && t.get::<_, String>(5) != cur
    {
        return Err(Problem::invalid(
            "template_id",
            format!("the template's currency differs from the raffle's {cur}"),
        ));
    }
    let position = positive("position", p.position, 1000)? as i32;
    let winners = positive("winner_count", p.winner_count, 10_000)? as i32;
    if let Some(v) = value {
        let rules = rules::for_raffle(ctx.tx, raffle, Utc::now()).await?;
        rules::check_amount(&rules, "prize_limit", "value_minor", v, &cur)?;
    }
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.prizes (raffle_id, template_id, name, description, prize_type, value_minor, percentage, currency,
                 position, winner_count, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING to_jsonb(prizes.*)",
            &[&raffle, &p.template_id, &text("name", &name, 200)?, &description, &kind, &value, &pct, &cur, &position, &winners, &ctx.actor.sub],
        )
        .await
        .map_err(|e| crate::problem::from_db("adding the prize", &e))?;
    let after: Value = row.get(0);
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(org),
            "PRIZE_CREATED",
            format!("prize '{name}' at position {position} added"),
        )
        .raffle(raffle),
    )
    .await
}

pub async fn list_prizes(ctx: &Ctx<'_, '_>, org: Uuid, raffle: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::READ_SETUP).await?;
    raffle_json(ctx.tx, org, raffle).await?;
    ok(rows_json(
        ctx.tx,
        "SELECT to_jsonb(p) FROM catalog.prizes p WHERE raffle_id = $1 ORDER BY position",
        &[&raffle],
    )
    .await?)
}

/// The template `template_id` of this organisation (its row from `select`, whose first two
/// columns are name and description), refused when it is another organisation's.
async fn own_template(
    ctx: &Ctx<'_, '_>,
    select: &str,
    template_id: Option<Uuid>,
    org: Uuid,
    what: &str,
) -> Result<Option<tokio_postgres::Row>, Problem> {
    let Some(t) = template_id else {
        return Ok(None);
    };
    ctx.tx
        .query_opt(
            &format!("{select} WHERE id = $1 AND organization_id = $2"),
            &[&t, &org],
        )
        .await?
        .map(Some)
        .ok_or_else(|| {
            Problem::invalid(
                "template_id",
                format!("{what} {t} is not this organization's"),
            )
        })
}

/// Name and description from the request, or else from the template.
fn name_and_description(
    name: &Option<String>,
    description: &Option<String>,
    template: Option<&tokio_postgres::Row>,
) -> Result<(String, Option<String>), Problem> {
    let name = name
        .clone()
        .or_else(|| template.map(|t| t.get(0)))
        .ok_or_else(|| Problem::invalid("name", "is required"))?;
    Ok((
        name,
        description
            .clone()
            .or_else(|| template.and_then(|t| t.get(1))),
    ))
}
