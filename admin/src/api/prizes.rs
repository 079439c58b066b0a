//! Prizes: an organisation's prize templates and a raffle's prizes, their values checked
//! against the jurisdiction's prize limit.

use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use catalog::regulations;

use super::raffles::{ensure_money_editable, raffle_json};
use super::{
    Ctx, Reply, currency, money, name_and_description, ok, opt_prose, own_template, parse, percent,
    positive, rows_json, text,
};
use crate::audit::Event;
use crate::auth::{require, rights};
use crate::problem::Problem;

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
        let rules = regulations::for_raffle(ctx.tx, raffle, Utc::now()).await?;
        rules.check_amount(
            "prize_limit",
            "value_minor",
            regulations::money("value_minor", v, &cur)?,
        )?;
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
