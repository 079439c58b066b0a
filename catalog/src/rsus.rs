//! RSUs as every stage meets them: a device proves itself with its API key, and takes and gives
//! back blocks of draw numbers (each with the validation numbers its offline receipts carry).
//! The one writer of `catalog.rsu_allocations` and `catalog.validation_number_blocks` being
//! handed out, returned or written off at the seal, whether an operator asks (admin), the
//! device itself (ingest) or the seal (ledger).

use chrono::{DateTime, Datelike, Utc};
use platform::problem::{Problem, from_db, pooled};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::audit::{self, Actor, Event};

/// The SHA-256 under which an API key is stored.
pub fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Verifies an RSU's API key: the RSU it belongs to, if the key is known, unrevoked and
/// unexpired and the RSU active.
pub async fn authenticate(client: &impl GenericClient, key: &str) -> Result<Uuid, Problem> {
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

/// Blocks with numbers left that a device may hold in one raffle when it asks for another
/// itself: the one running low and the next. Without a bound one device key took 48,000
/// numbers in blocks of 100, starving every other device of the range.
pub const DEVICE_OPEN_BLOCKS_MAX: i64 = 2;

/// The most numbers one block may hold.
pub const BLOCK_SIZE_MAX: i64 = 100_000;

/// A block to hand out.
#[derive(Debug, Clone)]
pub struct BlockRequest {
    pub rsu_id: Uuid,
    /// The range's default block size when `None`.
    pub size: Option<i64>,
    /// `rsu` or `reserve`.
    pub range_type: String,
    /// The device asks for itself (with its API key), not an operator for it: bounded by the
    /// range's block size.
    pub by_device: bool,
}

/// An allocation with its validation number block, as one JSON object.
pub const ALLOCATION_JSON: &str = "SELECT to_jsonb(a) || jsonb_build_object('validation_number_block', to_jsonb(v))
       FROM catalog.rsu_allocations a JOIN catalog.validation_number_blocks v ON v.rsu_allocation_id = a.id";

async fn allocation_json(client: &impl GenericClient, allocation: Uuid) -> Result<Value, Problem> {
    let row = client
        .query_one(
            &format!("{ALLOCATION_JSON} WHERE a.id = $1"),
            &[&allocation],
        )
        .await?;
    Ok(row.get(0))
}

/// Hands the next block of the raffle's RSU (or reserve) range to a device, with a validation
/// number block for the receipts it prints offline, and records the critical event. Returns
/// the allocation as [`ALLOCATION_JSON`] shows it.
pub async fn allocate_block(
    tx: &impl GenericClient,
    actor: &Actor,
    org: Uuid,
    raffle: Uuid,
    a: BlockRequest,
) -> Result<Value, Problem> {
    if !["rsu", "reserve"].contains(&a.range_type.as_str()) {
        return Err(Problem::invalid(
            "range_type",
            "must be one of: rsu, reserve",
        ));
    }
    let r = tx
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
    let device: Value = tx
        .query_opt(
            "SELECT to_jsonb(r) FROM catalog.rsus r WHERE id = $1 AND organization_id = $2",
            &[&a.rsu_id, &org],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| {
            Problem::not_found(format!("RSU {} of organization {org}", a.rsu_id))
                .with_field("rsu_id")
        })?;
    if device["state"] != "active" {
        return Err(Problem::conflict(
            "rsu-not-active",
            format!("RSU {} is {}", a.rsu_id, device["state"]),
        ));
    }
    let range = tx
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
        Some(s) if !(1..=BLOCK_SIZE_MAX).contains(&s) => {
            return Err(Problem::invalid(
                "size",
                format!("must be between 1 and {BLOCK_SIZE_MAX}"),
            ));
        }
        Some(s) => s,
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
    tx.execute(
        "UPDATE catalog.raffle_ranges SET next_number = $2, allocated = allocated + $3 WHERE id = $1",
        &[&range_id, &(stop + 1), &size],
    )
    .await?;
    let allocation: Uuid = tx
        .query_one(
            "INSERT INTO catalog.rsu_allocations (raffle_id, range_id, range_type, entity_id, start_number, end_number,
                 next_draw_number, allocated_by, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $5, $7, $8) RETURNING id",
            &[&raffle, &range_id, &a.range_type, &a.rsu_id, &start, &stop, &actor.sub, &json!({"rsu_name": device["name"]})],
        )
        .await
        .map_err(|e| from_db("allocating the block", &e))?
        .get(0);
    // Validation numbers continue the RSU's sequence for this raffle: RSU001-2025-0001, ...
    let prefix = format!(
        "{org_prefix}{:03}-{}-",
        device["rsu_number"].as_i64().unwrap_or(0),
        sales_end.year()
    );
    let first: i32 = tx
        .query_one(
            "SELECT coalesce(max(first_sequence + block_size), 1) FROM catalog.validation_number_blocks
              WHERE raffle_event_id = $1 AND prefix = $2",
            &[&raffle, &prefix],
        )
        .await?
        .get(0);
    tx.execute(
        "INSERT INTO catalog.validation_number_blocks (rsu_allocation_id, rsu_id, raffle_event_id, prefix, first_sequence,
             block_size, next_sequence, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $5, $7)",
        &[&allocation, &a.rsu_id, &raffle, &prefix, &first, &(size as i32), &sales_end],
    )
    .await
    .map_err(|e| from_db("allocating the validation numbers", &e))?;
    let after = allocation_json(tx, allocation).await?;
    audit::record(
        tx,
        Some(actor),
        Event::info(
            Some(org),
            "RSU_ALLOCATION_CREATED",
            format!("numbers {start}..{stop} allocated to RSU {}", a.rsu_id),
        )
        .raffle(raffle)
        .rsu(a.rsu_id)
        .change(None, Some(after.clone())),
    )
    .await?;
    Ok(after)
}

/// A block handed back: the numbers it never sold count as unsold. Records the critical
/// event; returns the allocation as it is now.
pub async fn return_block(
    tx: &impl GenericClient,
    actor: &Actor,
    org: Uuid,
    allocation: Uuid,
) -> Result<Value, Problem> {
    let before = tx
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
    tx.execute(
        "UPDATE catalog.rsu_allocations SET state = 'returned', returned_at = now() WHERE id = $1",
        &[&allocation],
    )
    .await?;
    tx.execute("UPDATE catalog.validation_number_blocks SET is_active = false WHERE rsu_allocation_id = $1", &[&allocation])
        .await?;
    let after = allocation_json(tx, allocation).await?;
    let raffle = before["raffle_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let unsold = after["tickets_available"].clone();
    audit::record(
        tx,
        Some(actor),
        Event::info(
            Some(org),
            "RSU_ALLOCATION_RETURNED",
            format!("allocation {allocation} returned; {unsold} numbers unsold"),
        )
        .raffle(raffle)
        .change(Some(before), Some(after.clone())),
    )
    .await?;
    Ok(after)
}

/// A block never handed back by the seal: its unsold numbers cannot be accounted for and are
/// written off (the seal books their value).
pub async fn write_off(
    client: &impl GenericClient,
    allocation: Uuid,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE catalog.rsu_allocations SET state = 'written_off' WHERE id = $1",
            &[&allocation],
        )
        .await?;
    Ok(())
}

/// The organisation of the device `rsu`.
async fn device_organization(client: &impl GenericClient, rsu: Uuid) -> Result<Uuid, Problem> {
    Ok(client
        .query_opt(
            "SELECT organization_id FROM catalog.rsus WHERE id = $1",
            &[&rsu],
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("RSU {rsu}")))?
        .get(0))
}

/// A new number block (and validation block) of `raffle` for the device `rsu`, asked for by
/// the device itself, in one transaction: of the raffle's default size unless `size` is
/// given, and only while it holds fewer than [`DEVICE_OPEN_BLOCKS_MAX`] blocks with numbers left.
pub async fn device_allocate(
    pool: &deadpool_postgres::Pool,
    rsu: Uuid,
    raffle: Uuid,
    size: Option<i64>,
) -> Result<Value, Problem> {
    let mut client = pooled(pool).await?;
    let tx = client.transaction().await?;
    let org = device_organization(&*tx, rsu).await?;
    let owned: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM catalog.raffle_events WHERE id = $1 AND organization_id = $2)",
            &[&raffle, &org],
        )
        .await?
        .get(0);
    if !owned {
        return Err(Problem::not_found(format!(
            "raffle {raffle} of this RSU's organization"
        )));
    }
    // One request of a device at a time, so that the count below holds (an advisory lock: the
    // device's role may not update its RSU row).
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('rsu-blocks/' || $1::uuid::text, 0))",
        &[&rsu],
    )
    .await?;
    let open: i64 = tx
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
            format!(
                "RSU {rsu} already holds {open} blocks of raffle {raffle} with numbers left; it gets another once one is used up or returned"
            ),
        ));
    }
    let request = BlockRequest {
        rsu_id: rsu,
        size,
        range_type: "rsu".into(),
        by_device: true,
    };
    let value = allocate_block(&*tx, &Actor::rsu(rsu), org, raffle, request).await?;
    tx.commit().await?;
    Ok(value)
}

/// The device gives its own block back (its unsold numbers count as unsold).
pub async fn device_return(
    pool: &deadpool_postgres::Pool,
    rsu: Uuid,
    allocation: Uuid,
) -> Result<Value, Problem> {
    let mut client = pooled(pool).await?;
    let tx = client.transaction().await?;
    let org = device_organization(&*tx, rsu).await?;
    let mine: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM catalog.rsu_allocations WHERE id = $1 AND entity_id = $2)",
            &[&allocation, &rsu],
        )
        .await?
        .get(0);
    if !mine {
        return Err(Problem::not_found(format!(
            "allocation {allocation} of RSU {rsu}"
        )));
    }
    let value = return_block(&*tx, &Actor::rsu(rsu), org, allocation).await?;
    tx.commit().await?;
    Ok(value)
}
