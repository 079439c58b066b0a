//! Sync with ingest: pending sales uploaded in batches, the server's final word stored next to
//! each, retried with backoff while the network is away.

use std::path::Path;

use chrono::Utc;
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::{BATCH, EdgeError, Result, client, store};

/// A sale in the shape of the seed's "RSU Offline Sale Record", as ingest takes it.
fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let (first, count): (i64, i64) = (row.get("first_number")?, row.get("ticket_count")?);
    let customer: Option<String> = row.get("customer_name")?;
    let (raffle, validation): (String, String) =
        (row.get("raffle_id")?, row.get("validation_number")?);
    // Only the hash leaves the device; the code is on the buyer's receipt.
    let check_code_hash = row
        .get::<_, Option<String>>("check_code")?
        .and_then(|c| schemas::CheckCode::parse(&c).ok())
        .zip(raffle.parse::<uuid::Uuid>().ok())
        .map(|(code, raffle)| hex::encode(code.hash(raffle, &validation)));
    Ok(json!({
        "localId": row.get::<_, String>("local_id")?,
        "eventId": row.get::<_, String>("raffle_id")?,
        "allocationId": row.get::<_, String>("block_id")?,
        "validationNumber": row.get::<_, String>("validation_number")?,
        "drawNumbers": (first..first + count).collect::<Vec<_>>(),
        "packageId": row.get::<_, String>("package_id")?,
        "ticketCount": count,
        "totalAmount": row.get::<_, i64>("amount_minor")?,
        "currency": row.get::<_, String>("currency")?,
        "customerInfo": customer.map(|n| json!({"name": n})),
        "operatorId": row.get::<_, Option<String>>("operator_id")?,
        "createdAt": row.get::<_, String>("created_at")?,
        "isOfflineSale": row.get::<_, bool>("is_offline")?,
        "voided": row.get::<_, bool>("voided")?,
        "voidReason": row.get::<_, Option<String>>("void_reason")?,
        "checkCodeHash": check_code_hash,
        "syncStatus": row.get::<_, String>("sync_status")?,
        "syncAttempts": row.get::<_, i64>("sync_attempts")?,
    }))
}

pub(crate) fn records(conn: &Connection, filter: &str) -> Result<Vec<Value>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT * FROM sales WHERE {filter} ORDER BY created_at, local_id"
    ))?;
    let rows = stmt.query_map([], record)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[derive(Debug, Default)]
pub struct SyncReport {
    pub uploaded: usize,
    pub accepted: usize,
    pub duplicate: usize,
    pub rejected: Vec<(String, String)>,
    pub issued: usize,
}

/// Uploads pending sales in batches (retrying with backoff while the server is unreachable),
/// stores each record's result, then asks for the final word on uploaded ones.
pub fn sync(db: &Path) -> Result<SyncReport> {
    let conn = store::open(db)?;
    let api = client(&conn)?;
    let mut report = SyncReport::default();
    loop {
        let batch: Vec<Value> = records(&conn, "sync_status = 'pending'")?
            .into_iter()
            .take(BATCH)
            .collect();
        if batch.is_empty() {
            break;
        }
        let ids: Vec<String> = batch
            .iter()
            .map(|r| r["localId"].as_str().unwrap_or("").to_owned())
            .collect();
        let attempt = Utc::now().to_rfc3339();
        for id in &ids {
            conn.execute(
                "UPDATE sales SET sync_attempts = sync_attempts + 1, last_sync_attempt = ?2 WHERE local_id = ?1",
                params![id, attempt],
            )?;
        }
        let answer = with_backoff(|| api.post("rsu/sales", &json!({"records": batch})))?;
        let results = answer["results"].as_array().ok_or_else(|| {
            EdgeError::BadAnswer(format!("the upload answer has no results: {answer}"))
        })?;
        if results.len() != batch.len() {
            return Err(EdgeError::BadAnswer(format!(
                "{} records uploaded, {} results received",
                batch.len(),
                results.len()
            )));
        }
        for (id, result) in ids.iter().zip(results) {
            let status = result["status"].as_str().unwrap_or("");
            let reason = result["reason"].as_str();
            match status {
                "accepted" | "duplicate" | "rejected" => {
                    conn.execute(
                        "UPDATE sales SET sync_status = ?2, sync_reason = ?3 WHERE local_id = ?1",
                        params![id, status, reason],
                    )?;
                }
                other => {
                    return Err(EdgeError::BadAnswer(format!(
                        "record {id}: unknown status {other:?}"
                    )));
                }
            }
            match status {
                "accepted" => report.accepted += 1,
                "duplicate" => report.duplicate += 1,
                _ => report
                    .rejected
                    .push((id.clone(), reason.unwrap_or("").to_owned())),
            }
        }
        report.uploaded += batch.len();
    }
    // The server's final word on what it took: issued, voided, or rejected by the allocator.
    let waiting: Vec<String> = records(&conn, "sync_status IN ('accepted', 'duplicate')")?
        .iter()
        .map(|r| r["localId"].as_str().unwrap_or("").to_owned())
        .collect();
    for chunk in waiting.chunks(BATCH) {
        let answer = with_backoff(|| api.get(&format!("rsu/sales?local_ids={}", chunk.join(","))))?;
        for r in answer["records"].as_array().into_iter().flatten() {
            let id = r["local_id"].as_str().unwrap_or("");
            let (status, reason) = match r["status"].as_str() {
                Some("issued") => ("issued", None),
                Some("voided") => ("voided", None),
                Some("rejected") => ("rejected", r["reason"].as_str()),
                _ => continue,
            };
            conn.execute(
                "UPDATE sales SET sync_status = ?2, sync_reason = ?3 WHERE local_id = ?1",
                params![id, status, reason],
            )?;
            match status {
                "issued" => report.issued += 1,
                "rejected" => report
                    .rejected
                    .push((id.to_owned(), reason.unwrap_or("").to_owned())),
                _ => {}
            }
        }
    }
    Ok(report)
}

/// Retries `call` while the server is unreachable: 4 attempts, 0.5 s, 1 s, 2 s apart.
fn with_backoff(mut call: impl FnMut() -> Result<Value>) -> Result<Value> {
    let mut wait = std::time::Duration::from_millis(500);
    for _ in 0..3 {
        match call() {
            Err(EdgeError::Unreachable(_)) => {
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other,
        }
    }
    call()
}
