//! RSU batch uploads: records shaped like the seed's "RSU Offline Sale Record", authenticated
//! by the device's API key, answered with a result per record (accepted, duplicate, rejected
//! with the reason). Idempotent by RSU and local id: a record sent again is a duplicate.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use platform::problem::Problem;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;
use warp::http::StatusCode;

use crate::{IngestState, Reply, record_rejection};
use schemas::{
    Currency, DrawNumber, RangePartition, RangeRef, RsuSale, SaleEvent, SaleEventKind,
    ValidationNumber,
};

/// Records one upload may carry.
pub const BATCH_RECORDS_MAX: usize = 500;
/// The longest local id a device may give a sale.
const LOCAL_ID_CHARS_MAX: usize = 100;

/// The record's text fields hold what can be stored and printed on a receipt; otherwise the
/// reason, naming the field. Checked before anything is published: the allocator would
/// refuse the bytes, and the sale would miss the draw after the device heard "accepted".
fn text_fields(i: usize, r: &Record) -> Result<(), String> {
    let named = |field: &str, e: schemas::text::TextError| format!("records[{i}].{field}: {e}");
    schemas::text::line(&r.local_id, LOCAL_ID_CHARS_MAX).map_err(|e| named("localId", e))?;
    if let Some(operator) = &r.operator_id {
        schemas::text::line(operator, 100).map_err(|e| named("operatorId", e))?;
    }
    if let Some(reason) = &r.void_reason {
        schemas::text::prose(reason, 500).map_err(|e| named("voidReason", e))?;
    }
    if let Some(hash) = &r.check_code_hash
        && (hash.len() != 64
            || !hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(format!(
            "records[{i}].checkCodeHash: must be 64 lower-case hex digits (the SHA-256 of the receipt's check code)"
        ));
    }
    if let Some(c) = &r.customer_info {
        crate::customer(
            &format!("records[{i}].customerInfo"),
            c.name.as_deref(),
            c.email.as_deref(),
            c.phone.as_deref(),
        )
        .map_err(|(field, why)| format!("{field}: {why}"))?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Record {
    local_id: String,
    /// The raffle (the seed's record calls it the event).
    #[serde(rename = "eventId")]
    raffle_id: Uuid,
    allocation_id: Uuid,
    validation_number: String,
    draw_numbers: Vec<i64>,
    package_id: Uuid,
    ticket_count: i32,
    total_amount: i64,
    currency: String,
    #[serde(default)]
    customer_info: Option<CustomerInfo>,
    #[serde(default)]
    operator_id: Option<String>,
    created_at: DateTime<Utc>,
    #[serde(default = "offline_unless_told")]
    is_offline_sale: bool,
    /// The sale was voided on the device (before or after an earlier sync).
    #[serde(default)]
    voided: bool,
    #[serde(default)]
    void_reason: Option<String>,
    /// Hex SHA-256 of the check code printed on the receipt (`schemas::CheckCode::hash` of the
    /// raffle and validation number); the code itself stays with the buyer.
    #[serde(default)]
    check_code_hash: Option<String>,
    // Device-side bookkeeping the seed's record carries; the server does not act on it.
    #[serde(default)]
    #[allow(dead_code)]
    sync_status: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    sync_attempts: Option<i64>,
    #[serde(default)]
    #[allow(dead_code)]
    last_sync_attempt: Option<Value>,
}

/// A record that does not say is an offline sale: the device kept it while unsynced.
fn offline_unless_told() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerInfo {
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    records: Vec<Value>,
}

async fn device(
    state: &IngestState,
    authorization: Option<&str>,
) -> Result<(deadpool_postgres::Object, Uuid), Problem> {
    let key = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| Problem::unauthenticated("missing Authorization: Bearer <RSU API key>"))?;
    let client = platform::problem::pooled(&state.pool).await?;
    let rsu = catalog::rsus::authenticate(&**client, key.trim()).await?;
    Ok((client, rsu))
}

/// The device behind the key, without holding a connection.
async fn device_id(state: &IngestState, authorization: Option<&str>) -> Result<Uuid, Problem> {
    Ok(device(state, authorization).await?.1)
}

struct Allocation {
    raffle_id: Uuid,
    start: i64,
    end: i64,
}

/// Checks one record; the event to publish, or why it is refused (code, reason).
fn check(
    rsu: Uuid,
    record: &Record,
    allocations: &HashMap<Uuid, Allocation>,
    now: DateTime<Utc>,
) -> Result<SaleEvent, (&'static str, String)> {
    let a = allocations.get(&record.allocation_id).ok_or((
        "unknown_allocation",
        format!("allocation {} is not this RSU's", record.allocation_id),
    ))?;
    if a.raffle_id != record.raffle_id {
        return Err((
            "allocation_mismatch",
            format!(
                "allocation {} is not for raffle {}",
                record.allocation_id, record.raffle_id
            ),
        ));
    }
    if record.draw_numbers.len() != record.ticket_count.max(0) as usize || record.ticket_count < 1 {
        return Err((
            "invalid",
            format!(
                "{} draw numbers for a ticketCount of {}",
                record.draw_numbers.len(),
                record.ticket_count
            ),
        ));
    }
    let mut numbers = Vec::with_capacity(record.draw_numbers.len());
    for &n in &record.draw_numbers {
        if n < a.start || n > a.end {
            return Err((
                "number_outside_allocation",
                format!(
                    "draw number {n} is outside the allocation {}..{}",
                    a.start, a.end
                ),
            ));
        }
        numbers.push(DrawNumber::new(n).map_err(|e| ("invalid", e.to_string()))?);
    }
    ValidationNumber::parse(&record.validation_number).map_err(|e| ("invalid", e.to_string()))?;
    let currency = Currency::parse(&record.currency).map_err(|e| ("invalid", e.to_string()))?;
    let amount_max = platform::config::amount_minor_max();
    if !(0..=amount_max).contains(&record.total_amount) {
        return Err((
            "invalid",
            format!("totalAmount must be 0 to {amount_max} minor units"),
        ));
    }
    if record.created_at > now + Duration::minutes(5) {
        return Err((
            "invalid",
            format!(
                "createdAt {} is in the future; check the device clock",
                record.created_at
            ),
        ));
    }
    // Checked by `text_fields` before: the same answer, the fields trimmed.
    let customer = match &record.customer_info {
        None => None,
        Some(c) => Some(
            crate::customer(
                "customerInfo",
                c.name.as_deref(),
                c.email.as_deref(),
                c.phone.as_deref(),
            )
            .map_err(|(field, why)| ("invalid", format!("{field}: {why}")))?,
        ),
    };
    Ok(SaleEvent {
        event_id: Uuid::now_v7(),
        idempotency_key: format!("rsu:{rsu}:{}", record.local_id),
        kind: if record.voided {
            SaleEventKind::RsuSaleVoided
        } else {
            SaleEventKind::RsuSaleRecorded
        },
        raffle_id: record.raffle_id,
        range_partition: RangePartition {
            raffle_id: record.raffle_id,
            range: RangeRef::Allocation(record.allocation_id),
        },
        order_id: None,
        package_id: Some(record.package_id),
        ticket_count: record.ticket_count,
        amount_minor: record.total_amount,
        currency,
        occurred_at_us: record.created_at.timestamp_micros(),
        received_at_us: now.timestamp_micros(),
        payment: None,
        rsu_sale: Some(RsuSale {
            rsu_id: rsu,
            allocation_id: record.allocation_id,
            local_id: record.local_id.clone(),
            validation_number: record.validation_number.clone(),
            draw_numbers: numbers,
            operator_id: record.operator_id.clone(),
            is_offline_sale: record.is_offline_sale,
            check_code_hash: record.check_code_hash.clone(),
        }),
        customer,
        reason: record.void_reason.clone(),
    })
}

pub async fn upload(
    state: &IngestState,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<Reply, Problem> {
    let (client, rsu) = device(state, authorization).await?;
    drop(client);
    // Each record is judged by itself: a bad one must not refuse the others.
    let upload: Upload = platform::body::parse_unchecked(body)?;
    accept(state, rsu, &upload.records).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Export {
    device_identifier: String,
    #[allow(dead_code)]
    exported_at: Option<Value>,
    records: Vec<Value>,
}

/// Imports the file `rsu-edge export` wrote on a unit that can no longer sync, for the RSU
/// `rsu` (an operator's action: the device's key may be gone with it). The records take the
/// same path as a batch upload, in batches; already-uploaded ones come back as duplicates.
pub async fn import(state: &IngestState, rsu: Uuid, body: &[u8]) -> Result<Reply, Problem> {
    let export: Export = platform::body::parse_unchecked(body)?;
    let client = platform::problem::pooled(&state.pool).await?;
    let device: String = client
        .query_opt(
            "SELECT device_identifier FROM catalog.rsus WHERE id = $1",
            &[&rsu],
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("RSU {rsu}")))?
        .get(0);
    if device != export.device_identifier {
        return Err(Problem::invalid(
            "device_identifier",
            format!(
                "the file comes from device {:?}, but RSU {rsu} is {device:?}",
                export.device_identifier
            ),
        ));
    }
    let (mut accepted, mut duplicate, mut results) = (0, 0, Vec::new());
    for chunk in export.records.chunks(BATCH_RECORDS_MAX) {
        let (_, answer) = accept(state, rsu, chunk).await?;
        accepted += answer["accepted"].as_u64().unwrap_or(0);
        duplicate += answer["duplicate"].as_u64().unwrap_or(0);
        results.extend(answer["results"].as_array().cloned().unwrap_or_default());
    }
    let rejected = results.iter().filter(|r| r["status"] == "rejected").count();
    Ok((
        StatusCode::OK,
        json!({"rsu_id": rsu, "accepted": accepted, "duplicate": duplicate, "rejected": rejected, "results": results}),
    ))
}

/// Checks and publishes one batch of an RSU's records; a result per record. Holds a pooled
/// connection while it reads and while it records what was taken, never while it waits for
/// the broker: a slow broker must not starve checkout of connections.
async fn accept(state: &IngestState, rsu: Uuid, records: &[Value]) -> Result<Reply, Problem> {
    if records.len() > BATCH_RECORDS_MAX {
        return Err(Problem::invalid(
            "records",
            format!("a batch holds at most {BATCH_RECORDS_MAX} records"),
        ));
    }
    let now = Utc::now();
    let pooled = platform::problem::pooled(&state.pool).await?;
    let client: &tokio_postgres::Client = &pooled;
    let allocations: HashMap<Uuid, Allocation> = client
        .query("SELECT id, raffle_id, start_number, end_number FROM catalog.rsu_allocations WHERE entity_id = $1", &[&rsu])
        .await?
        .iter()
        .map(|r| (r.get(0), Allocation { raffle_id: r.get(1), start: r.get(2), end: r.get(3) }))
        .collect();
    // A local id that cannot be stored is that record's problem alone: it stays out of the
    // look-ups below (which it would fail for the whole batch) and is rejected by itself.
    let local_ids: Vec<&str> = records
        .iter()
        .filter_map(|r| r.get("localId").and_then(Value::as_str))
        .filter(|id| schemas::text::line(id, LOCAL_ID_CHARS_MAX).is_ok())
        .collect();
    let already: HashMap<String, String> = client
        .query(
            "SELECT rsu_local_id, payment_status FROM sales.orders WHERE rsu_id = $1 AND rsu_local_id = ANY($2)",
            &[&rsu, &local_ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Taken earlier but not yet written by the allocator.
    let received: std::collections::HashSet<(String, bool)> = client
        .query(
            "SELECT local_id, voided FROM sales.rsu_receipts WHERE rsu_id = $1 AND local_id = ANY($2)",
            &[&rsu, &local_ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut results: Vec<Value> = Vec::with_capacity(records.len());
    let mut methods: HashMap<Uuid, (bool, bool)> = HashMap::new();
    let mut pending = Vec::new();
    for (i, raw) in records.iter().enumerate() {
        let local_id = raw
            .get("localId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let parsed = serde_path_to_error::deserialize::<_, Record>(raw)
            .map_err(|e| format!("records[{i}].{}: {}", e.path(), e.inner()))
            .and_then(|r| text_fields(i, &r).map(|()| r));
        let record = match parsed {
            Ok(r) => r,
            Err(reason) => {
                // The local id is kept as the device sent it, escaped so that it can be
                // stored and shown.
                let local_id: String = local_id.escape_default().take(LOCAL_ID_CHARS_MAX).collect();
                record_rejection(
                    client,
                    None,
                    None,
                    Some((rsu, &local_id)),
                    None,
                    "malformed",
                    &reason,
                )
                .await;
                results.push(json!({"local_id": local_id, "status": "rejected", "reason": reason}));
                continue;
            }
        };
        if let Some(status) = already.get(&record.local_id)
            && !(record.voided && status == "completed")
        {
            results.push(json!({"local_id": record.local_id, "status": "duplicate", "server_status": status}));
            continue;
        }
        if received.contains(&(record.local_id.clone(), record.voided)) {
            results.push(json!({"local_id": record.local_id, "status": "duplicate", "server_status": "received"}));
            continue;
        }
        // The jurisdiction's sales methods, once per raffle of the batch.
        if let std::collections::hash_map::Entry::Vacant(slot) = methods.entry(record.raffle_id) {
            let methods = catalog::regulations::for_raffle(client, record.raffle_id, now)
                .await
                .map(|r| r.sales_methods())
                .unwrap_or_default();
            let allowed = (methods.rsu, methods.offline_rsu);
            slot.insert(allowed);
        }
        let (rsu_allowed, offline_allowed) = methods[&record.raffle_id];
        let verdict = if !rsu_allowed {
            Err((
                "regulation",
                "RSU sales are not allowed in this raffle's jurisdiction".to_owned(),
            ))
        } else if record.is_offline_sale && !offline_allowed {
            Err((
                "regulation",
                "offline sales are not allowed in this raffle's jurisdiction".to_owned(),
            ))
        } else {
            check(rsu, &record, &allocations, now)
        };
        match verdict {
            Ok(event) => {
                results.push(json!({"local_id": record.local_id, "status": "accepted"}));
                pending.push(((record.local_id.clone(), record.voided), event));
            }
            Err((code, reason)) => {
                tracing::info!(rsu = %rsu, local_id = ?record.local_id, code, reason = ?reason, "RSU record rejected");
                record_rejection(
                    client,
                    Some(record.raffle_id),
                    None,
                    Some((rsu, &record.local_id)),
                    None,
                    code,
                    &reason,
                )
                .await;
                results.push(
                    json!({"local_id": record.local_id, "status": "rejected", "reason": reason}),
                );
            }
        }
    }
    drop(pooled);
    // Every accepted record is on the broker before the device hears "accepted".
    let sends = pending.iter().map(|(_, event)| state.publish(event));
    let outcomes = futures::future::join_all(sends).await;
    if let Some(failure) = outcomes.iter().find_map(|o| o.as_ref().err()) {
        return Err(failure.clone());
    }
    // Only now, with every event acknowledged, is the record taken: a failure before this
    // point leaves the device to send it again.
    let (taken, voids): (Vec<&str>, Vec<bool>) = pending
        .iter()
        .map(|((local, voided), _)| (local.as_str(), *voided))
        .unzip();
    platform::problem::pooled(&state.pool)
        .await?
        .execute(
            "INSERT INTO sales.rsu_receipts (rsu_id, local_id, voided) SELECT $1, l, v FROM unnest($2::text[], $3::bool[]) AS t(l, v)
             ON CONFLICT DO NOTHING",
            &[&rsu, &taken, &voids],
        )
        .await?;
    let count = |s: &str| results.iter().filter(|r| r["status"] == s).count();
    tracing::info!(rsu = %rsu, accepted = count("accepted"), duplicate = count("duplicate"), rejected = count("rejected"), "RSU batch");
    Ok((
        StatusCode::OK,
        json!({"rsu_id": rsu, "accepted": count("accepted"), "duplicate": count("duplicate"), "rejected": count("rejected"), "results": results}),
    ))
}

/// The server's final word on records the device uploaded: issued, voided, rejected with the
/// reason, or still pending in the pipeline. `?local_ids=a,b,c`.
pub async fn status(
    state: &IngestState,
    authorization: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<Reply, Problem> {
    let (client, rsu) = device(state, authorization).await?;
    let ids: Vec<String> = query
        .get("local_ids")
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() || ids.len() > BATCH_RECORDS_MAX {
        return Err(Problem::invalid(
            "local_ids",
            format!("give 1-{BATCH_RECORDS_MAX} comma-separated local ids"),
        ));
    }
    let mut out: HashMap<String, Value> = ids
        .iter()
        .map(|id| (id.clone(), json!({"local_id": id, "status": "pending"})))
        .collect();
    for row in client
        .query(
            "SELECT o.rsu_local_id, o.payment_status, o.id, coalesce(array_agg(t.draw_number ORDER BY t.draw_number)
                    FILTER (WHERE t.draw_number IS NOT NULL), '{}')
               FROM sales.orders o LEFT JOIN sales.tickets t ON t.order_id = o.id
              WHERE o.rsu_id = $1 AND o.rsu_local_id = ANY($2) GROUP BY o.id",
            &[&rsu, &ids],
        )
        .await?
    {
        let (local, status, order, numbers): (String, String, Uuid, Vec<i64>) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let status = if status == "completed" { "issued" } else { status.as_str() };
        out.insert(local.clone(), json!({"local_id": local, "status": status, "order_id": order, "draw_numbers": numbers}));
    }
    for row in client
        .query(
            "SELECT DISTINCT ON (local_id) local_id, reason_code, reason FROM sales.rejected_sales
              WHERE rsu_id = $1 AND local_id = ANY($2) ORDER BY local_id, rejected_at DESC",
            &[&rsu, &ids],
        )
        .await?
    {
        let (local, code, reason): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if out.get(&local).is_some_and(|v| v["status"] == "pending") {
            out.insert(local.clone(), json!({"local_id": local, "status": "rejected", "reason_code": code, "reason": reason}));
        }
    }
    Ok((
        StatusCode::OK,
        json!({"rsu_id": rsu, "records": ids.iter().map(|id| out[id].clone()).collect::<Vec<_>>()}),
    ))
}

/// What a device needs before it sells for a raffle: the raffle (times, currency, claim-by
/// date, rules), its packages, whether the jurisdiction allows offline sales, the device's limit
/// of unsynced tickets, and its active blocks. `?raffle_id=`.
pub async fn setup(
    state: &IngestState,
    authorization: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<Reply, Problem> {
    let (client, rsu) = device(state, authorization).await?;
    let raffle: Uuid = query
        .get("raffle_id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Problem::invalid("raffle_id", "give the raffle's id: ?raffle_id=<uuid>"))?;
    let row = client
        .query_opt(
            "SELECT jsonb_build_object('id', r.id, 'name', r.name, 'event_identifier', r.event_identifier, 'state', r.state,
                    'currency', r.currency, 'sales_start_time', r.sales_start_time, 'sales_end_time', r.sales_end_time,
                    'draw_time', r.draw_time, 'claim_by', r.draw_time + make_interval(days => r.claim_period_days),
                    'organization', o.name, 'license_number', o.license_number),
                    jsonb_build_object('id', d.id, 'name', d.name, 'device_identifier', d.device_identifier,
                    'max_offline_tickets', d.max_offline_tickets)
               FROM catalog.raffle_events r JOIN catalog.organizations o ON o.id = r.organization_id
               JOIN catalog.rsus d ON d.organization_id = r.organization_id AND d.id = $2
              WHERE r.id = $1",
            &[&raffle, &rsu],
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("raffle {raffle} of this RSU's organization")))?;
    let packages: Vec<Value> = client
        .query(
            "SELECT jsonb_build_object('id', id, 'name', name, 'ticket_count', ticket_count, 'price_minor', price_minor,
                    'currency', currency, 'active_from', active_from, 'active_to', active_to)
               FROM catalog.ticket_packages WHERE raffle_id = $1 AND is_active ORDER BY display_order, name",
            &[&raffle],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let allocations: Vec<Value> = client
        .query(
            "SELECT to_jsonb(a) || jsonb_build_object('validation_number_block', to_jsonb(v))
               FROM catalog.rsu_allocations a JOIN catalog.validation_number_blocks v ON v.rsu_allocation_id = a.id
              WHERE a.entity_id = $1 AND a.raffle_id = $2 AND a.state = 'active' ORDER BY a.start_number",
            &[&rsu, &raffle],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let offline_allowed = catalog::regulations::for_raffle(&**client, raffle, Utc::now())
        .await?
        .sales_methods()
        .offline_rsu;
    let expiry = catalog::configuration::setting_i64(
        &**client,
        catalog::configuration::OFFLINE_SALE_EXPIRATION_MINUTES,
    )
    .await?;
    Ok((
        StatusCode::OK,
        json!({
            "raffle": row.get::<_, Value>(0),
            "rsu": row.get::<_, Value>(1),
            "packages": packages,
            "allocations": allocations,
            "offline_sales_allowed": offline_allowed,
            "offline_sale_expiration_minutes": expiry,
            "rules_url": format!("/v1/raffles/{raffle}/rules"),
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockRequest {
    raffle_id: Uuid,
    size: Option<i64>,
}

/// The device asks for a new block of numbers (before its current one runs out).
pub async fn allocate(
    state: &IngestState,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<Reply, Problem> {
    let rsu = device_id(state, authorization).await?;
    let request: BlockRequest = platform::body::parse(body)?;
    let allocation =
        catalog::rsus::device_allocate(&state.pool, rsu, request.raffle_id, request.size).await?;
    Ok((StatusCode::CREATED, allocation))
}

/// The device gives its block back when it closes; unsold numbers count as unsold.
pub async fn return_block(
    state: &IngestState,
    authorization: Option<&str>,
    allocation: &str,
) -> Result<Reply, Problem> {
    let rsu = device_id(state, authorization).await?;
    let allocation: Uuid = allocation
        .parse()
        .map_err(|_| Problem::invalid("allocation_id", "must be a UUID"))?;
    let value = catalog::rsus::device_return(&state.pool, rsu, allocation).await?;
    Ok((StatusCode::OK, value))
}
