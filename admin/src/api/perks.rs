//! Perks with inventory, and claims against completed orders. Inventory never goes negative,
//! also under concurrent claims: the claim increments the counter in one UPDATE whose CHECK
//! the database evaluates against the latest row.

use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Ctx, Reply, opt_prose, opt_text, parse, text};
use crate::audit::Event;
use crate::auth::{require, rights};
use crate::problem::Problem;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PerkInput {
    name: String,
    description: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    category: Option<String>,
    requires_inventory: bool,
    #[serde(default)]
    inventory_total: i32,
    #[serde(default)]
    metadata: Option<Value>,
}

pub async fn create(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let p: PerkInput = parse(ctx.body)?;
    if !["benefit", "physical_item", "digital_item", "experience"].contains(&p.kind.as_str()) {
        return Err(Problem::invalid(
            "type",
            "must be one of: benefit, physical_item, digital_item, experience",
        ));
    }
    if p.inventory_total < 0 || p.inventory_total > 10_000_000 {
        return Err(Problem::invalid(
            "inventory_total",
            "must be between 0 and 10000000",
        ));
    }
    if p.requires_inventory && p.inventory_total == 0 {
        return Err(Problem::invalid(
            "inventory_total",
            "a perk that requires inventory needs some",
        ));
    }
    let metadata = p.metadata.clone().unwrap_or_else(|| json!({}));
    if !metadata.is_object() {
        return Err(Problem::invalid("metadata", "must be a JSON object"));
    }
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.perks (organization_id, name, description, perk_type, category, requires_inventory,
                 inventory_total, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING to_jsonb(perks.*)",
            &[&org, &text("name", &p.name, 200)?, &opt_prose("description", &p.description, 2000)?, &p.kind, &opt_text("category", &p.category, 100)?, &p.requires_inventory, &p.inventory_total, &metadata],
        )
        .await?;
    let after: Value = row.get(0);
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(org),
            "PERK_CREATED",
            format!("perk '{}' created", p.name),
        ),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimInput {
    order_id: Uuid,
    #[serde(default)]
    metadata: Option<Value>,
}

fn claim_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let code: String = (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("PERK-{code}")
}

/// Hands a perk to a paid order: one claim per order and perk, never beyond the inventory.
pub async fn claim(ctx: &Ctx<'_, '_>, org: Uuid, perk: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::OPERATE).await?;
    let c: ClaimInput = parse(ctx.body)?;
    let order = ctx
        .tx
        .query_opt(
            "SELECT o.payment_status FROM sales.orders o JOIN catalog.raffle_events r ON r.id = o.raffle_id
              WHERE o.id = $1 AND r.organization_id = $2",
            &[&c.order_id, &org],
        )
        .await?
        .ok_or_else(|| Problem::invalid("order_id", format!("order {} is not one of this organization's", c.order_id)))?;
    let status: String = order.get(0);
    if status != "completed" {
        return Err(Problem::conflict(
            "order-not-paid",
            format!(
                "order {} is {status}; only completed orders claim perks",
                c.order_id
            ),
        ));
    }
    let updated = ctx
        .tx
        .query_opt(
            "UPDATE catalog.perks SET inventory_claimed = inventory_claimed + CASE WHEN requires_inventory THEN 1 ELSE 0 END
              WHERE id = $1 AND organization_id = $2 AND is_active RETURNING inventory_available",
            &[&perk, &org],
        )
        .await
        .map_err(|e| match e.code() {
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION) => {
                Problem::conflict("perk-sold-out", format!("perk {perk} has no inventory left"))
            }
            _ => crate::problem::from_db("claiming the perk", &e),
        })?
        .ok_or_else(|| Problem::not_found(format!("active perk {perk} of organization {org}")))?;
    let available: i32 = updated.get(0);
    let code = claim_code();
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO sales.perk_claims (perk_id, order_id, claimed_at, claimed_by, status, claim_code, metadata)
             VALUES ($1, $2, now(), $3, 'claimed', $4, $5) RETURNING to_jsonb(perk_claims.*)",
            &[&perk, &c.order_id, &ctx.actor.sub, &code, &c.metadata.clone().unwrap_or_else(|| json!({}))],
        )
        .await
        .map_err(|e| crate::problem::from_db("recording the claim", &e))?;
    let after: Value = row.get(0);
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(org),
            "PERK_CLAIMED",
            format!(
                "perk {perk} claimed for order {}; {available} left",
                c.order_id
            ),
        ),
    )
    .await
}
