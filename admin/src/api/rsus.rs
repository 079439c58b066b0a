//! RSUs (handhelds): registration, API keys (shown once, stored hashed, expiring after the
//! configured rotation days; rotate and revoke), and allocations of number blocks with their
//! validation number blocks.

use chrono::{DateTime, Datelike, Utc};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Ctx, Reply, created, ok, opt_prose, parse, positive, rows_json, text};
use crate::audit::{self, Event, Severity};
use crate::auth::{require, rights};
use crate::problem::Problem;

/// A setting of the system configuration in force now, by JSON pointer.
pub async fn setting_i64(ctx: &Ctx<'_, '_>, pointer: &str) -> Result<i64, Problem> {
    let row = ctx
        .tx
        .query_opt(
            "SELECT settings #>> $1 FROM catalog.system_configurations
              WHERE effective_from <= now() AND (effective_to IS NULL OR effective_to > now())",
            &[&pointer
                .trim_start_matches('/')
                .split('/')
                .collect::<Vec<_>>()],
        )
        .await?;
    row.and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|v| v.parse().ok())
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

/// The SHA-256 under which an API key is stored.
pub fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
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

/// Verifies an RSU's API key: the RSU it belongs to, if the key is known, unrevoked and unexpired.
pub async fn authenticate_rsu(
    client: &impl tokio_postgres::GenericClient,
    key: &str,
) -> Result<Uuid, Problem> {
    let row = client
        .query_opt(
            "SELECT k.rsu_id, k.revoked_at IS NOT NULL, k.expires_at <= now(), r.state
               FROM catalog.rsu_api_keys k JOIN catalog.rsus r ON r.id = k.rsu_id WHERE k.key_hash = $1",
            &[&key_hash(key)],
        )
        .await?
        .ok_or_else(|| Problem::unauthenticated("unknown RSU API key"))?;
    let (rsu, revoked, expired, state): (Uuid, bool, bool, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if revoked {
        return Err(Problem::unauthenticated("this RSU API key was revoked"));
    }
    if expired {
        return Err(Problem::unauthenticated(
            "this RSU API key has expired; rotate it",
        ));
    }
    if state != "active" {
        return Err(Problem::forbidden(format!("RSU {rsu} is {state}")));
    }
    Ok(rsu)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocationInput {
    rsu_id: Uuid,
    size: Option<i64>,
    #[serde(default = "rsu_range")]
    range_type: String,
    /// The device asks for itself (with its API key), not an operator for it: bounded by
    /// [`DEVICE_OPEN_BLOCKS_MAX`] and the range's block size.
    #[serde(skip)]
    by_device: bool,
}

/// Blocks with numbers left that a device may hold in one raffle when it asks for another
/// itself: the one running low and the next. Without a bound one device key took 48,000
/// numbers in blocks of 100, starving every other device of the range.
pub const DEVICE_OPEN_BLOCKS_MAX: i64 = 2;

fn rsu_range() -> String {
    "rsu".into()
}

/// Hands the next block of the raffle's RSU (or reserve) range to a device, with a validation
/// number block for the receipts it prints offline.
pub async fn allocate(ctx: &Ctx<'_, '_>, org: Uuid, raffle: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::OPERATE).await?;
    let a: AllocationInput = parse(ctx.body)?;
    allocate_block(ctx, org, raffle, a).await
}

/// The block itself, for an operator (above) or the device asking for its own
/// ([`device_allocate`]).
async fn allocate_block(
    ctx: &Ctx<'_, '_>,
    org: Uuid,
    raffle: Uuid,
    a: AllocationInput,
) -> Result<Reply, Problem> {
    if !["rsu", "reserve"].contains(&a.range_type.as_str()) {
        return Err(Problem::invalid(
            "range_type",
            "must be one of: rsu, reserve",
        ));
    }
    let r = ctx
        .tx
        .query_opt(
            "SELECT r.state, r.sales_end_time, o.rsu_validation_number_prefix FROM catalog.raffle_events r
               JOIN catalog.organizations o ON o.id = r.organization_id WHERE r.id = $1 AND r.organization_id = $2",
            &[&raffle, &org],
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("raffle {raffle} of organization {org}")))?;
    let (state, sales_end, org_prefix): (String, DateTime<Utc>, String) =
        (r.get(0), r.get(1), r.get(2));
    if state != "draft" && state != "active" {
        return Err(Problem::conflict(
            "raffle-not-selling",
            format!("raffle {raffle} is {state}; blocks are allocated in draft or active"),
        ));
    }
    let device = own_rsu(ctx, org, a.rsu_id)
        .await
        .map_err(|p| p.with_field("rsu_id"))?;
    if device["state"] != "active" {
        return Err(Problem::conflict(
            "rsu-not-active",
            format!("RSU {} is {}", a.rsu_id, device["state"]),
        ));
    }
    let range = ctx
        .tx
        .query_opt(
            "SELECT id, next_number, end_number, default_allocation_size FROM catalog.raffle_ranges
              WHERE raffle_id = $1 AND range_type = $2 AND parent_range_id IS NULL AND next_number <= end_number
              ORDER BY start_number LIMIT 1 FOR UPDATE",
            &[&raffle, &a.range_type],
        )
        .await?
        .ok_or_else(|| Problem::conflict("range-exhausted", format!("raffle {raffle} has no {} numbers left to allocate", a.range_type)))?;
    let (range_id, next, end, default_size): (Uuid, i64, i64, i32) =
        (range.get(0), range.get(1), range.get(2), range.get(3));
    let size = match a.size {
        Some(s) => positive("size", s, 100_000)?,
        None => i64::from(default_size),
    };
    if a.by_device && size > i64::from(default_size) {
        return Err(Problem::invalid(
            "size",
            format!(
                "a device may ask for at most {default_size} numbers, the range's block size; an operator can allocate more"
            ),
        ));
    }
    if next + size - 1 > end {
        return Err(Problem::conflict(
            "range-exhausted",
            format!(
                "only {} numbers are left in the {} range; asked for {size}",
                end - next + 1,
                a.range_type
            ),
        )
        .with_field("size"));
    }
    let (start, stop) = (next, next + size - 1);
    ctx.tx
        .execute(
            "UPDATE catalog.raffle_ranges SET next_number = $2, allocated = allocated + $3 WHERE id = $1",
            &[&range_id, &(stop + 1), &size],
        )
        .await?;
    let allocation: Uuid = ctx
        .tx
        .query_one(
            "INSERT INTO catalog.rsu_allocations (raffle_id, range_id, range_type, entity_id, start_number, end_number,
                 next_draw_number, allocated_by, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $5, $7, $8) RETURNING id",
            &[&raffle, &range_id, &a.range_type, &a.rsu_id, &start, &stop, &ctx.actor.sub, &json!({"rsu_name": device["name"]})],
        )
        .await
        .map_err(|e| crate::problem::from_db("allocating the block", &e))?
        .get(0);
    // Validation numbers continue the RSU's sequence for this raffle: RSU001-2025-0001, ...
    let prefix = format!(
        "{org_prefix}{:03}-{}-",
        device["rsu_number"].as_i64().unwrap_or(0),
        sales_end.year()
    );
    let first: i32 = ctx
        .tx
        .query_one(
            "SELECT coalesce(max(first_sequence + block_size), 1) FROM catalog.validation_number_blocks
              WHERE raffle_event_id = $1 AND prefix = $2",
            &[&raffle, &prefix],
        )
        .await?
        .get(0);
    ctx.tx
        .execute(
            "INSERT INTO catalog.validation_number_blocks (rsu_allocation_id, rsu_id, raffle_event_id, prefix, first_sequence,
                 block_size, next_sequence, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $5, $7)",
            &[&allocation, &a.rsu_id, &raffle, &prefix, &first, &(size as i32), &sales_end],
        )
        .await
        .map_err(|e| crate::problem::from_db("allocating the validation numbers", &e))?;
    let after = allocation_json(ctx, allocation).await?;
    super::created_with(
        ctx,
        after,
        Event::info(
            Some(org),
            "RSU_ALLOCATION_CREATED",
            format!("numbers {start}..{stop} allocated to RSU {}", a.rsu_id),
        )
        .raffle(raffle)
        .rsu(a.rsu_id),
    )
    .await
}

/// An allocation with its validation number block, as one JSON object.
const ALLOCATION_JSON: &str = "SELECT to_jsonb(a) || jsonb_build_object('validation_number_block', to_jsonb(v))
       FROM catalog.rsu_allocations a JOIN catalog.validation_number_blocks v ON v.rsu_allocation_id = a.id";

async fn allocation_json(ctx: &Ctx<'_, '_>, allocation: Uuid) -> Result<Value, Problem> {
    let row = ctx
        .tx
        .query_one(
            &format!("{ALLOCATION_JSON} WHERE a.id = $1"),
            &[&allocation],
        )
        .await?;
    Ok(row.get(0))
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
        &format!("{ALLOCATION_JSON} WHERE a.raffle_id = $1 ORDER BY a.start_number"),
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
    return_block(ctx, org, allocation).await
}

async fn return_block(ctx: &Ctx<'_, '_>, org: Uuid, allocation: Uuid) -> Result<Reply, Problem> {
    let before = ctx
        .tx
        .query_opt(
            "SELECT to_jsonb(a) FROM catalog.rsu_allocations a JOIN catalog.raffle_events r ON r.id = a.raffle_id
              WHERE a.id = $1 AND r.organization_id = $2 FOR UPDATE OF a",
            &[&allocation, &org],
        )
        .await?
        .map(|r| r.get::<_, Value>(0))
        .ok_or_else(|| Problem::not_found(format!("allocation {allocation} of organization {org}")))?;
    if before["state"] != "active" && before["state"] != "exhausted" {
        return Err(Problem::conflict(
            "allocation-closed",
            format!("allocation {allocation} is already {}", before["state"]),
        ));
    }
    ctx.tx
        .execute("UPDATE catalog.rsu_allocations SET state = 'returned', returned_at = now() WHERE id = $1", &[&allocation])
        .await?;
    ctx.tx
        .execute("UPDATE catalog.validation_number_blocks SET is_active = false WHERE rsu_allocation_id = $1", &[&allocation])
        .await?;
    let after = allocation_json(ctx, allocation).await?;
    let raffle = before["raffle_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let unsold = after["tickets_available"].clone();
    super::changed_with(
        ctx,
        before,
        after,
        Event::info(
            Some(org),
            "RSU_ALLOCATION_RETURNED",
            format!("allocation {allocation} returned; {unsold} numbers unsold"),
        )
        .raffle(raffle),
    )
    .await
}

/// Runs `work` in one transaction as the device `rsu` itself (critical events name it
/// `rsu:{id}`, channel `rsu`): a device may take and give back only its own blocks.
async fn as_device<F>(pool: &deadpool_postgres::Pool, rsu: Uuid, work: F) -> Result<Value, Problem>
where
    F: for<'c> FnOnce(
        &'c Ctx<'c, 'c>,
        Uuid,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Reply, Problem>> + Send + 'c>,
    >,
{
    let mut client = crate::pooled(pool).await?;
    let tx = client.transaction().await?;
    let org: Uuid = tx
        .query_opt(
            "SELECT organization_id FROM catalog.rsus WHERE id = $1",
            &[&rsu],
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("RSU {rsu}")))?
        .get(0);
    let actor = crate::auth::Actor {
        user_id: Uuid::nil(),
        sub: format!("rsu:{rsu}"),
        display_name: None,
        is_platform_admin: false,
        channel: "rsu",
    };
    let query = std::collections::HashMap::new();
    let ctx = Ctx {
        tx: &tx,
        actor: &actor,
        query: &query,
        body: &[],
    };
    let (_, value) = work(&ctx, org).await?;
    tx.commit().await?;
    Ok(value)
}

/// A new number block (and validation block) of `raffle` for the device `rsu`, of the raffle's
/// default size unless `size` is given.
pub async fn device_allocate(
    pool: &deadpool_postgres::Pool,
    rsu: Uuid,
    raffle: Uuid,
    size: Option<i64>,
) -> Result<Value, Problem> {
    as_device(pool, rsu, move |ctx, org| {
        Box::pin(async move {
            let owned: bool = ctx
                .tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM catalog.raffle_events WHERE id = $1 AND organization_id = $2)",
                    &[&raffle, &org],
                )
                .await?
                .get(0);
            if !owned {
                return Err(Problem::not_found(format!("raffle {raffle} of this RSU's organization")));
            }
            // One request of a device at a time, so that the count below holds (an advisory
            // lock: the device's role may not update its RSU row).
            ctx.tx
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('rsu-blocks/' || $1::uuid::text, 0))",
                    &[&rsu],
                )
                .await?;
            let open: i64 = ctx
                .tx
                .query_one(
                    "SELECT count(*) FROM catalog.rsu_allocations
                      WHERE entity_id = $1 AND raffle_id = $2 AND state = 'active' AND tickets_available > 0",
                    &[&rsu, &raffle],
                )
                .await?
                .get(0);
            if open >= DEVICE_OPEN_BLOCKS_MAX {
                return Err(Problem::conflict(
                    "rsu-holds-enough",
                    format!("RSU {rsu} already holds {open} blocks of raffle {raffle} with numbers left; it gets another once one is used up or returned"),
                ));
            }
            allocate_block(
                ctx,
                org,
                raffle,
                AllocationInput {
                    rsu_id: rsu,
                    size,
                    range_type: rsu_range(),
                    by_device: true,
                },
            )
            .await
        })
    })
    .await
}

/// The device gives its block back (its unsold numbers count as unsold).
pub async fn device_return(
    pool: &deadpool_postgres::Pool,
    rsu: Uuid,
    allocation: Uuid,
) -> Result<Value, Problem> {
    as_device(pool, rsu, move |ctx, org| {
        Box::pin(async move {
            let mine: bool = ctx
                .tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM catalog.rsu_allocations WHERE id = $1 AND entity_id = $2)",
                    &[&allocation, &rsu],
                )
                .await?
                .get(0);
            if !mine {
                return Err(Problem::not_found(format!("allocation {allocation} of RSU {rsu}")));
            }
            return_block(ctx, org, allocation).await
        })
    })
    .await
}
