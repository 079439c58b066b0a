//! Ticket packages: an organisation's package templates and a raffle's packages, their prices
//! checked against the jurisdiction's ticket price limit.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use catalog::regulations;

use super::raffles::{ensure_money_editable, raffle_json};
use super::{
    Ctx, Reply, currency, money, name_and_description, ok, opt_prose, own_template, parse,
    positive, rows_json, text,
};
use crate::audit::Event;
use crate::auth::{require, rights};
use crate::problem::Problem;

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
    let rules = regulations::for_raffle(ctx.tx, raffle, Utc::now()).await?;
    rules.check_package_price(
        "price_minor",
        regulations::money("price_minor", price, &cur)?,
        count,
    )?;
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
        let rules = regulations::for_raffle(ctx.tx, raffle, Utc::now()).await?;
        let currency = before["currency"].as_str().unwrap_or_default();
        rules.check_package_price(
            "price_minor",
            regulations::money("price_minor", price, currency)?,
            count,
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
