//! rsu-edge: the program on a Remote Sales Unit (handheld).
//!
//! Owns: the device's local SQLite store ([`store`]: its enrolment, the raffle set-up, its
//! number blocks and validation number blocks, every sale and its upload state), selling online
//! or offline, receipts, and sync with `ingest` ([`client`]).
//!
//! Must not touch: the server's Postgres or Kafka; everything goes through ingest's HTTP API
//! with the device's API key. It never deletes a sale: a record stays until the server's final
//! word is stored next to it.
//!
//! A sale is one SQLite transaction (`BEGIN IMMEDIATE`): it moves the block's number cursor and
//! validation cursor and records the sale together, so a crash at any point either sold the
//! numbers (all recorded) or did not (cursors unmoved); none is lost or reused.

pub mod client;
mod receipt;
pub mod store;
mod sync;

pub use receipt::Receipt;
use receipt::receipt;
use sync::records;
pub use sync::{SyncReport, sync};

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::client::Client;

/// Records one upload carries (ingest's limit).
pub const BATCH: usize = 500;
/// Ask for the next block when the current ones have fewer numbers left than this share of
/// them; a device may set its own (`RSU_EDGE_REFILL_BELOW_PERCENT`), e.g. higher on a busy gate.
pub const REFILL_BELOW_PERCENT: i64 = 20;

fn refill_below_percent() -> i64 {
    std::env::var("RSU_EDGE_REFILL_BELOW_PERCENT")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|p| (0..=100).contains(p))
        .unwrap_or(REFILL_BELOW_PERCENT)
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(
        "the local store {path} is damaged ({reason}); keep the file for the operator and do not delete it"
    )]
    CorruptStore { path: String, reason: String },
    #[error(
        "this device is not enrolled: run `rsu-edge enroll --server URL --device ID --api-key KEY`"
    )]
    NotEnrolled,
    #[error("no number block yet: run `rsu-edge allocate --raffle ID`")]
    NoAllocation,
    #[error("the server is unreachable ({0})")]
    Unreachable(String),
    #[error(
        "the server refused this device's API key ({0}); ask the operator for a new key and run `rsu-edge enroll` again — no sale was lost"
    )]
    KeyRefused(String),
    #[error("the server refused ({status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error("the server's answer could not be understood: {0}")]
    BadAnswer(String),
    #[error("sale refused: {0}")]
    SaleRefused(String),
    #[error("{0}")]
    Config(String),
    #[error("local store: {0}")]
    Store(#[from] rusqlite::Error),
}

pub type Result<T> = std::result::Result<T, EdgeError>;

/// The device's clock. A drill may shift it (`RSU_EDGE_CLOCK_SKEW_S`) to rehearse a handheld
/// whose clock drifted.
pub fn now() -> DateTime<Utc> {
    let skew = std::env::var("RSU_EDGE_CLOCK_SKEW_S")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    Utc::now() + chrono::Duration::seconds(skew)
}

fn client(conn: &Connection) -> Result<Client> {
    let device = store::device(conn)?;
    Client::new(&device.server_url, &device.api_key, &device.transport)
}

/// Enrols the device with its server (`https://`, trusting `transport.ca_pem` or the system's
/// roots; `http://` only with `transport.allow_plain_http`).
pub fn enroll(
    db: &Path,
    server_url: &str,
    device_identifier: &str,
    api_key: &str,
    transport: client::Transport,
) -> Result<()> {
    Client::new(server_url, api_key, &transport)?;
    let conn = store::open(db)?;
    store::enroll(
        &conn,
        &store::Device {
            server_url: server_url.to_owned(),
            device_identifier: device_identifier.to_owned(),
            api_key: api_key.trim().to_owned(),
            transport,
        },
    )
}

fn text(v: &Value, key: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| EdgeError::BadAnswer(format!("{key} is missing from {v}")))
}

fn int(v: &Value, key: &str) -> Result<i64> {
    v[key]
        .as_i64()
        .ok_or_else(|| EdgeError::BadAnswer(format!("{key} is missing from {v}")))
}

/// Stores a block the server handed out, if it is new (a block never moves backwards).
fn store_block(conn: &Connection, raffle: &str, block: &Value) -> Result<bool> {
    let id = text(block, "id")?;
    let got_raffle = text(block, "raffle_id")?;
    if got_raffle != raffle {
        return Err(EdgeError::BadAnswer(format!(
            "the server handed out block {id} of raffle {got_raffle}, not of raffle {raffle}"
        )));
    }
    let v = &block["validation_number_block"];
    let inserted = conn.execute(
        "INSERT INTO blocks (id, raffle_id, start_number, end_number, next_number, validation_prefix, validation_first,
             validation_size, validation_next)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
        params![
            id,
            raffle,
            int(block, "start_number")?,
            int(block, "end_number")?,
            int(block, "next_draw_number")?,
            text(v, "prefix")?,
            int(v, "first_sequence")?,
            int(v, "block_size")?,
            int(v, "next_sequence")?,
        ],
    )?;
    Ok(inserted == 1)
}

#[derive(Debug)]
pub struct Allocated {
    pub raffle_name: String,
    pub blocks_added: usize,
    pub numbers_left: i64,
}

/// Fetches the raffle's set-up and the device's blocks; asks for a block when it has none.
pub fn allocate(db: &Path, raffle: Uuid) -> Result<Allocated> {
    let conn = store::open(db)?;
    let api = client(&conn)?;
    let setup = api.get(&format!("rsu/setup?raffle_id={raffle}"))?;
    let raffle_json = &setup["raffle"];
    if raffle_json["id"].as_str() != Some(&raffle.to_string()) {
        return Err(EdgeError::BadAnswer(format!(
            "asked for raffle {raffle}, the server described {}",
            raffle_json["id"]
        )));
    }
    conn.execute(
        "INSERT INTO raffle (id, setup, fetched_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET setup = ?2, fetched_at = ?3",
        params![
            raffle.to_string(),
            setup.to_string(),
            Utc::now().to_rfc3339()
        ],
    )?;
    let mut added = 0;
    for block in setup["allocations"].as_array().into_iter().flatten() {
        added += usize::from(store_block(&conn, &raffle.to_string(), block)?);
    }
    if numbers_left(&conn, &raffle.to_string())? == 0 {
        let block = api.post("rsu/allocations", &json!({"raffle_id": raffle}))?;
        added += usize::from(store_block(&conn, &raffle.to_string(), &block)?);
    }
    Ok(Allocated {
        raffle_name: raffle_json["name"].as_str().unwrap_or("").to_owned(),
        blocks_added: added,
        numbers_left: numbers_left(&conn, &raffle.to_string())?,
    })
}

fn numbers_left(conn: &Connection, raffle: &str) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(end_number - next_number + 1), 0) FROM blocks WHERE raffle_id = ?1 AND state = 'active'",
        [raffle],
        |r| r.get(0),
    )?)
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

pub struct SaleRequest<'a> {
    /// The package's id or name.
    pub package: &'a str,
    pub customer_name: Option<&'a str>,
    pub operator_id: Option<&'a str>,
}

/// Sells a package: checks the sales window, the package's window, the limit of unsynced
/// tickets and (where offline sales are forbidden) that the server answers; then one
/// transaction takes the next numbers and validation number and records the sale.
pub fn sell(db: &Path, request: &SaleRequest<'_>) -> Result<Receipt> {
    let mut conn = store::open(db)?;
    let (raffle, setup) = store::raffle(&conn)?;
    let at = now();
    let r = &setup["raffle"];
    if let Some(end) = time(&r["sales_end_time"])
        && at >= end
    {
        return Err(EdgeError::SaleRefused(format!("sales ended at {end}")));
    }
    if let Some(start) = time(&r["sales_start_time"])
        && at < start
    {
        return Err(EdgeError::SaleRefused(format!("sales open at {start}")));
    }
    let package = setup["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["id"].as_str() == Some(request.package) || p["name"].as_str() == Some(request.package)
        })
        .ok_or_else(|| {
            EdgeError::SaleRefused(format!("no package {:?} in this raffle", request.package))
        })?
        .clone();
    if time(&package["active_from"]).is_some_and(|f| at < f)
        || time(&package["active_to"]).is_some_and(|t| at >= t)
    {
        return Err(EdgeError::SaleRefused(format!(
            "package {} is not on sale now",
            package["name"]
        )));
    }
    let count = int(&package, "ticket_count")?;
    let unsynced: i64 = conn.query_row(
        "SELECT coalesce(sum(ticket_count), 0) FROM sales WHERE sync_status = 'pending' AND NOT voided",
        [],
        |r| r.get(0),
    )?;
    let limit = setup["rsu"]["max_offline_tickets"].as_i64().unwrap_or(100);
    if unsynced + count > limit {
        return Err(EdgeError::SaleRefused(format!(
            "{unsynced} tickets are not yet synced and the limit is {limit}: run `rsu-edge sync` first"
        )));
    }
    let online = setup["offline_sales_allowed"] == json!(false);
    if online {
        client(&conn)?
            .get(&format!("raffles/{raffle}/rules"))
            .map_err(|e| {
                EdgeError::SaleRefused(format!(
                    "the jurisdiction forbids offline sales and the server cannot be reached ({e})"
                ))
            })?;
    }

    let local_id = Uuid::new_v4().to_string();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let block = tx
        .query_row(
            "SELECT id, next_number, validation_prefix, validation_next FROM blocks
              WHERE raffle_id = ?1 AND state = 'active' AND end_number - next_number + 1 >= ?2
                AND validation_next < validation_first + validation_size
              ORDER BY start_number LIMIT 1",
            params![raffle, count],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| {
            EdgeError::SaleRefused(format!(
                "no block holds {count} more numbers: run `rsu-edge allocate --raffle {raffle}`"
            ))
        })?;
    let (block_id, first, prefix, validation_seq) = block;
    let sequence = i32::try_from(validation_seq).map_err(|_| {
        EdgeError::SaleRefused(format!(
            "validation sequence {validation_seq} of block {block_id} is out of range"
        ))
    })?;
    let validation = schemas::ValidationNumber::in_block(&prefix, sequence);
    let check_code = {
        let mut bytes = [0u8; 8];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        schemas::CheckCode::from_random(bytes).display()
    };
    tx.execute(
        "UPDATE blocks SET next_number = next_number + ?2, validation_next = validation_next + 1 WHERE id = ?1",
        params![block_id, count],
    )?;
    if let Some(ms) = std::env::var("RSU_EDGE_DRILL_PAUSE_MS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        // Drill: a sale caught half-way, to rehearse a crash or a pulled battery.
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    tx.execute(
        "INSERT INTO sales (local_id, raffle_id, block_id, package_id, package_name, ticket_count, first_number, last_number,
             validation_number, amount_minor, currency, customer_name, operator_id, created_at, is_offline, check_code)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            local_id,
            raffle,
            block_id,
            text(&package, "id")?,
            text(&package, "name")?,
            count,
            first,
            first + count - 1,
            validation,
            int(&package, "price_minor")?,
            text(&package, "currency")?,
            request.customer_name,
            request.operator_id,
            at.to_rfc3339(),
            !online,
            check_code,
        ],
    )?;
    tx.commit()?;
    receipt(&conn, &local_id, false)
}

/// Asks the server for the next block when the current ones run low; quiet when offline.
pub fn refill_if_low(db: &Path) -> Result<Option<i64>> {
    let conn = store::open(db)?;
    let (raffle, _) = store::raffle(&conn)?;
    let (left, total): (i64, i64) = conn.query_row(
        "SELECT coalesce(sum(end_number - next_number + 1), 0), coalesce(sum(end_number - start_number + 1), 0)
           FROM blocks WHERE raffle_id = ?1 AND state = 'active'",
        [&raffle],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if total > 0 && left * 100 >= total * refill_below_percent() {
        return Ok(None);
    }
    let block = client(&conn)?.post("rsu/allocations", &json!({"raffle_id": raffle}))?;
    store_block(&conn, &raffle, &block)?;
    Ok(Some(numbers_left(&conn, &raffle)?))
}

/// Voids a sale that has not been synced yet (after sync, a void goes through the operator).
pub fn void(db: &Path, local_id: &str, reason: &str) -> Result<Receipt> {
    let conn = store::open(db)?;
    let changed = conn.execute(
        "UPDATE sales SET voided = 1, void_reason = ?2 WHERE local_id = ?1 AND sync_status = 'pending' AND NOT voided",
        params![local_id, reason],
    )?;
    if changed == 0 {
        let status: Option<(String, bool)> = conn
            .query_row(
                "SELECT sync_status, voided FROM sales WHERE local_id = ?1",
                [local_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        return Err(EdgeError::SaleRefused(match status {
            None => format!("no sale {local_id} on this device"),
            Some((_, true)) => format!("sale {local_id} is already void"),
            Some((s, _)) => format!(
                "sale {local_id} is already synced ({s}); ask the operator to void it on the server"
            ),
        }));
    }
    receipt(&conn, local_id, false)
}

/// Prints a sale's receipt again, marked REPRINT, and counts it.
pub fn reprint(db: &Path, local_id: &str) -> Result<Receipt> {
    let conn = store::open(db)?;
    conn.execute(
        "UPDATE sales SET reprints = reprints + 1 WHERE local_id = ?1",
        [local_id],
    )?;
    receipt(&conn, local_id, true)
}

#[derive(Debug)]
pub struct Status {
    pub server_url: String,
    pub raffle: Option<String>,
    pub numbers_left: i64,
    pub by_status: Vec<(String, i64)>,
    pub unsynced_tickets: i64,
    pub unsynced_limit: i64,
    pub rejected: Vec<(String, i64, String)>,
}

pub fn status(db: &Path) -> Result<Status> {
    let conn = store::open(db)?;
    let device = store::device(&conn)?;
    let raffle = store::raffle(&conn).ok();
    let numbers_left = match &raffle {
        Some((id, _)) => numbers_left(&conn, id)?,
        None => 0,
    };
    let mut stmt = conn.prepare(
        "SELECT sync_status || CASE WHEN voided THEN ' (void)' ELSE '' END, count(*) FROM sales GROUP BY 1 ORDER BY 1",
    )?;
    let by_status = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let unsynced_tickets = conn.query_row(
        "SELECT coalesce(sum(ticket_count), 0) FROM sales WHERE sync_status = 'pending' AND NOT voided",
        [],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "SELECT local_id, first_number, coalesce(sync_reason, '') FROM sales WHERE sync_status = 'rejected' ORDER BY created_at",
    )?;
    let rejected = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Status {
        server_url: device.server_url,
        unsynced_limit: raffle
            .as_ref()
            .and_then(|(_, s)| s["rsu"]["max_offline_tickets"].as_i64())
            .unwrap_or(100),
        raffle: raffle.map(|(id, _)| id),
        numbers_left,
        by_status,
        unsynced_tickets,
        rejected,
    })
}

/// Closes the device: refuses while sales wait to be synced, then gives every block back (its
/// unsold numbers count as unsold).
pub fn close(db: &Path) -> Result<Vec<(String, i64)>> {
    let conn = store::open(db)?;
    let pending: i64 = conn.query_row(
        "SELECT count(*) FROM sales WHERE sync_status = 'pending'",
        [],
        |r| r.get(0),
    )?;
    if pending > 0 {
        return Err(EdgeError::SaleRefused(format!(
            "{pending} sales are not synced yet: run `rsu-edge sync` before closing"
        )));
    }
    let api = client(&conn)?;
    let mut stmt =
        conn.prepare("SELECT id FROM blocks WHERE state = 'active' ORDER BY start_number")?;
    let blocks = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut returned = Vec::new();
    for id in blocks {
        let answer = api.post(&format!("rsu/allocations/{id}/return"), &json!({}))?;
        conn.execute("UPDATE blocks SET state = 'returned' WHERE id = ?1", [&id])?;
        returned.push((id, answer["tickets_available"].as_i64().unwrap_or(0)));
    }
    Ok(returned)
}

/// Writes every sale of the device, in the upload format, for a unit that can no longer sync:
/// the operator imports the file through the same path as a batch upload.
pub fn export(db: &Path, out: &Path) -> Result<usize> {
    let conn = store::open(db)?;
    let device = store::device(&conn)?;
    let all = records(&conn, "1 = 1")?;
    let document = json!({"device_identifier": device.device_identifier, "exported_at": Utc::now(), "records": all});
    let text = serde_json::to_string_pretty(&document)
        .map_err(|e| EdgeError::Config(format!("encoding the export: {e}")))?;
    std::fs::write(out, text)
        .map_err(|e| EdgeError::Config(format!("writing {}: {e}", out.display())))?;
    Ok(all.len())
}
