//! Critical events for auditors: listing by sequence, and a self-checking export.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Ctx, Reply, ok, query, rows_json};
use crate::auth::{require, rights};
use crate::problem::Problem;

pub async fn list(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::READ_AUDIT).await?;
    let after: i64 = query(ctx, "after_sequence", 0)?;
    let limit: i64 = query(ctx, "limit", 100)?;
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid("limit", "must be between 1 and 1000"));
    }
    ok(rows_json(
        ctx.tx,
        "SELECT to_jsonb(e) FROM audit.critical_events e WHERE organization_id = $1 AND sequence_number > $2
          ORDER BY sequence_number LIMIT $3",
        &[&org, &after, &limit],
    )
    .await?)
}

/// Every event of the organisation in sequence order, with the SHA-256 of the events array as
/// serialised here, so an auditor can tell the file was not edited after export.
pub async fn export(ctx: &Ctx<'_, '_>, org: Uuid) -> Result<Reply, Problem> {
    require(ctx.tx, ctx.actor, org, rights::READ_AUDIT).await?;
    let events = rows_json(
        ctx.tx,
        "SELECT to_jsonb(e) FROM audit.critical_events e WHERE organization_id = $1 ORDER BY sequence_number",
        &[&org],
    )
    .await?;
    let serialized = serde_json::to_vec(&events).unwrap_or_default();
    let count = events.as_array().map_or(0, Vec::len);
    let gapless = events
        .as_array()
        .map(|a| {
            a.iter()
                .enumerate()
                .all(|(i, e)| e["sequence_number"].as_i64() == Some(i as i64 + 1))
        })
        .unwrap_or(true);
    ok(json!({
        "organization_id": org,
        "exported_at": chrono::Utc::now(),
        "exported_by": ctx.actor.sub,
        "count": count,
        "sequence_gapless": gapless,
        "events_sha256": hex::encode(Sha256::digest(&serialized)),
        "events": Value::Array(events.as_array().cloned().unwrap_or_default()),
    }))
}
