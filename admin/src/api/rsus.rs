//! RSUs (handhelds): registration, API keys (shown once, stored hashed, expiring after the
//! configured rotation days; rotate and revoke), and allocations of number blocks with their
//! validation number blocks.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use catalog::rsus::{self, BlockRequest, key_hash};

use super::{Ctx, Reply, created, ok, opt_prose, parse, positive, rows_json, text};
use crate::audit::{self, Event, Severity};
use crate::auth::{require, rights};
use crate::problem::Problem;

/// A setting of the system configuration in force now, by JSON pointer; missing is our fault.
pub async fn setting_i64(ctx: &Ctx<'_, '_>, pointer: &str) -> Result<i64, Problem> {
    catalog::configuration::setting_i64(ctx.tx, pointer)
        .await?
        .ok_or_else(|| {
            Problem::internal(
                "system configuration",
                &format!("setting {pointer} is missing"),
            )
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RsuInput {
    name: String,
    description: Option<String>,
    venue_id: Option<Uuid>,
    device_identifier: String,
    max_offline_tickets: Option<i64>,
    sync_interval_minutes: Option<i64>,
    printer_settings: Option<Value>,
}

pub async fn create(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let r: RsuInput = parse(ctx.body)?;
    let max_offline = match r.max_offline_tickets {
        Some(v) if !(0..=100_000).contains(&v) => {
            return Err(Problem::invalid(
                "max_offline_tickets",
                "must be between 0 and 100000",
            ));
        }
        Some(v) => v,
        None => setting_i64(ctx, "/rsu/defaultMaxOfflineTickets").await?,
    };
    let interval = match r.sync_interval_minutes {
        Some(v) => positive("sync_interval_minutes", v, 1440)?,
        None => setting_i64(ctx, "/rsu/defaultSyncIntervalMinutes").await?,
    };
    if let Some(v) = r.venue_id {
        ctx.tx
            .query_opt(
                "SELECT 1 FROM catalog.venues WHERE id = $1 AND organization_id = $2",
                &[&v, &org],
            )
            .await?
            .ok_or_else(|| {
                Problem::invalid(
                    "venue_id",
                    format!("venue {v} is not one of this organization's"),
                )
            })?;
    }
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.rsus (organization_id, venue_id, name, description, device_identifier, max_offline_tickets,
                 sync_interval_minutes, printer_settings, rsu_number, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                     (SELECT coalesce(max(rsu_number), 0) + 1 FROM catalog.rsus WHERE organization_id = $1), $9, $9)
             RETURNING to_jsonb(rsus.*)",
            &[
                &org,
                &r.venue_id,
                &text("name", &r.name, 100)?,
                &opt_prose("description", &r.description, 2000)?,
                &text("device_identifier", &r.device_identifier, 100)?,
                &(max_offline as i32),
                &(interval as i32),
                &r.printer_settings.clone().unwrap_or_else(|| json!({})),
                &ctx.actor.sub,
            ],
        )
        .await
        .map_err(|e| crate::problem::from_db("registering the RSU", &e))?;
    let after: Value = row.get(0);
    let id = after["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(org),
            "RSU_REGISTERED",
            format!("RSU '{}' ({}) registered", r.name, r.device_identifier),
        )
        .rsu(id),
    )
    .await
}

async fn own_rsu(ctx: &Ctx<'_, '_>, org: Uuid, rsu: Uuid) -> Result<Value, Problem> {
    ctx.tx
        .query_opt(
            "SELECT to_jsonb(r) FROM catalog.rsus r WHERE id = $1 AND organization_id = $2",
            &[&rsu, &org],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| Problem::not_found(format!("RSU {rsu} of organization {org}")))
}

/// Issues a new API key for the RSU, revoking any key it had (rotation). The key is in this
/// response only; the server keeps its hash.
pub async fn issue_key(ctx: &Ctx<'_, '_>, org: Uuid, rsu: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    let device = own_rsu(ctx, org, rsu).await?;
    if device["state"] != "active" {
        return Err(Problem::conflict(
            "rsu-not-active",
            format!("RSU {rsu} is {}", device["state"]),
        ));
    }
    let days = setting_i64(ctx, "/rsu/apiKeyRotationDays").await?;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("rsk_{}", hex::encode(secret));
    let prefix = key[..12].to_owned();
    let revoked = rows_json(
        ctx.tx,
        "UPDATE catalog.rsu_api_keys SET revoked_at = now() WHERE rsu_id = $1 AND revoked_at IS NULL RETURNING to_jsonb(id)",
        &[&rsu],
    )
    .await?;
    let row = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.rsu_api_keys (rsu_id, key_hash, key_prefix, created_by, expires_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(days => $5)) RETURNING id, expires_at",
            &[&rsu, &key_hash(&key), &prefix, &ctx.actor.sub, &(days as i32)],
        )
        .await?;
    let (key_id, expires_at): (Uuid, DateTime<Utc>) = (row.get(0), row.get(1));
    audit::record(
        ctx.tx,
        Some(ctx.actor),
        Event::info(Some(org), "RSU_API_KEY_ISSUED", format!("API key {prefix}… issued for RSU {rsu}, expires {expires_at}; {} older key(s) revoked", revoked.as_array().map_or(0, Vec::len)))
            .rsu(rsu)
            .severity(Severity::Warning)
            .change(None, Some(json!({"key_id": key_id, "key_prefix": prefix, "expires_at": expires_at, "revoked": revoked}))),
    )
    .await?;
    created(
        json!({"key_id": key_id, "api_key": key, "key_prefix": prefix, "expires_at": expires_at, "revoked_key_ids": revoked}),
    )
}

pub async fn list_keys(ctx: &Ctx<'_, '_>, org: Uuid, rsu: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::READ_SETUP).await?;
    own_rsu(ctx, org, rsu).await?;
    ok(rows_json(
        ctx.tx,
        "SELECT jsonb_build_object('key_id', id, 'key_prefix', key_prefix, 'created_at', created_at, 'created_by', created_by,
                                   'expires_at', expires_at, 'revoked_at', revoked_at,
                                   'usable', revoked_at IS NULL AND expires_at > now())
           FROM catalog.rsu_api_keys WHERE rsu_id = $1 ORDER BY created_at",
        &[&rsu],
    )
    .await?)
}

pub async fn revoke_key(
    ctx: &Ctx<'_, '_>,
    org: Uuid,
    rsu: Uuid,
    key: Uuid,
) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::CHANGE_SETUP).await?;
    own_rsu(ctx, org, rsu).await?;
    let row = ctx
        .tx
        .query_opt(
            "UPDATE catalog.rsu_api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND rsu_id = $2
             RETURNING key_prefix, revoked_at",
            &[&key, &rsu],
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("API key {key} of RSU {rsu}")))?;
    let (prefix, at): (String, DateTime<Utc>) = (row.get(0), row.get(1));
    audit::record(
        ctx.tx,
        Some(ctx.actor),
        Event::info(
            Some(org),
            "RSU_API_KEY_REVOKED",
            format!("API key {prefix}… of RSU {rsu} revoked"),
        )
        .rsu(rsu)
        .severity(Severity::Warning),
    )
    .await?;
    ok(json!({"key_id": key, "revoked_at": at}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocationInput {
    rsu_id: Uuid,
    size: Option<i64>,
    #[serde(default = "rsu_range")]
    range_type: String,
}

fn rsu_range() -> String {
    "rsu".into()
}

/// Hands the next block of the raffle's RSU (or reserve) range to a device, with a validation
/// number block for the receipts it prints offline.
pub async fn allocate(ctx: &Ctx<'_, '_>, org: Uuid, raffle: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::OPERATE).await?;
    let a: AllocationInput = parse(ctx.body)?;
    let request = BlockRequest {
        rsu_id: a.rsu_id,
        size: a.size,
        range_type: a.range_type,
        by_device: false,
    };
    created(rsus::allocate_block(ctx.tx, &ctx.actor.who(), org, raffle, request).await?)
}

pub async fn list_allocations(
    ctx: &Ctx<'_, '_>,
    org: Uuid,
    raffle: Uuid,
) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::READ_SETUP).await?;
    super::raffles::raffle_json(ctx.tx, org, raffle).await?;
    ok(rows_json(
        ctx.tx,
        &format!(
            "{} WHERE a.raffle_id = $1 ORDER BY a.start_number",
            rsus::ALLOCATION_JSON
        ),
        &[&raffle],
    )
    .await?)
}

/// A device hands its block back: the numbers it never sold count as unsold.
pub async fn return_allocation(
    ctx: &Ctx<'_, '_>,
    org: Uuid,
    allocation: Uuid,
) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::OPERATE).await?;
    ok(rsus::return_block(ctx.tx, &ctx.actor.who(), org, allocation).await?)
}
