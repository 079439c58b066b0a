//! The device's SQLite store: WAL, synchronous writes (`synchronous = FULL`), checked for
//! corruption when opened. One file holds the enrolment, the raffle set-up as the server gave it,
//! the number blocks with their cursors, and every sale with its upload state. Nothing is ever
//! deleted: a sale stays until the server's final word is recorded, and after.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::EdgeError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS device (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    server_url        TEXT NOT NULL,
    device_identifier TEXT NOT NULL,
    api_key           TEXT NOT NULL,
    enrolled_at       TEXT NOT NULL
);
-- The raffle as the server described it (times, packages, limits), refreshed by `allocate`.
CREATE TABLE IF NOT EXISTS raffle (
    id         TEXT PRIMARY KEY,
    setup      TEXT NOT NULL,
    fetched_at TEXT NOT NULL
);
-- Number blocks: a cursor each, never moving backwards; numbers below it are sold (or, once the
-- block is returned, unsold).
CREATE TABLE IF NOT EXISTS blocks (
    id                TEXT PRIMARY KEY,
    raffle_id         TEXT NOT NULL REFERENCES raffle (id),
    start_number      INTEGER NOT NULL,
    end_number        INTEGER NOT NULL,
    next_number       INTEGER NOT NULL,
    validation_prefix TEXT NOT NULL,
    validation_first  INTEGER NOT NULL,
    validation_size   INTEGER NOT NULL,
    validation_next   INTEGER NOT NULL,
    state             TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'returned')),
    CHECK (next_number BETWEEN start_number AND end_number + 1),
    CHECK (validation_next BETWEEN validation_first AND validation_first + validation_size)
);
CREATE TABLE IF NOT EXISTS sales (
    local_id          TEXT PRIMARY KEY,
    raffle_id         TEXT NOT NULL REFERENCES raffle (id),
    block_id          TEXT NOT NULL REFERENCES blocks (id),
    package_id        TEXT NOT NULL,
    package_name      TEXT NOT NULL,
    ticket_count      INTEGER NOT NULL CHECK (ticket_count > 0),
    first_number      INTEGER NOT NULL,
    last_number       INTEGER NOT NULL,
    validation_number TEXT NOT NULL UNIQUE,
    amount_minor      INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency          TEXT NOT NULL,
    customer_name     TEXT,
    operator_id       TEXT,
    created_at        TEXT NOT NULL,
    -- Made while the server was not confirmed reachable.
    is_offline        INTEGER NOT NULL DEFAULT 1,
    voided            INTEGER NOT NULL DEFAULT 0,
    void_reason       TEXT,
    reprints          INTEGER NOT NULL DEFAULT 0,
    -- pending: not yet uploaded; accepted/duplicate: the server has it; issued/rejected/voided:
    -- the server's final word.
    sync_status       TEXT NOT NULL DEFAULT 'pending'
                          CHECK (sync_status IN ('pending', 'accepted', 'duplicate', 'issued', 'rejected', 'voided')),
    sync_reason       TEXT,
    sync_attempts     INTEGER NOT NULL DEFAULT 0,
    last_sync_attempt TEXT,
    CHECK (last_number = first_number + ticket_count - 1)
);
CREATE UNIQUE INDEX IF NOT EXISTS sales_first_number ON sales (raffle_id, first_number);
";

/// Opens (creating if needed) the store at `path`. A file that is not a healthy SQLite
/// database is refused with a message that says so, and left untouched.
pub fn open(path: &Path) -> Result<Connection, EdgeError> {
    let corrupt = |e: rusqlite::Error| EdgeError::CorruptStore {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let conn = Connection::open(path).map_err(corrupt)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(corrupt)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(corrupt)?;
    if check != "ok" {
        return Err(EdgeError::CorruptStore {
            path: path.display().to_string(),
            reason: check,
        });
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(corrupt)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(corrupt)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(corrupt)?;
    conn.execute_batch(SCHEMA).map_err(corrupt)?;
    upgrade(&conn).map_err(corrupt)?;
    Ok(conn)
}

/// Columns added after the first release of the store, added to an older store on open.
fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    let has_check_code: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('sales') WHERE name = 'check_code'",
        [],
        |r| r.get(0),
    )?;
    if !has_check_code {
        // The receipt's secret, kept for reprints; only its hash is uploaded. Sales made
        // before it existed have none (their prizes are verified by staff).
        conn.execute_batch("ALTER TABLE sales ADD COLUMN check_code TEXT")?;
    }
    let has_tls: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('device') WHERE name = 'ca_pem'",
        [],
        |r| r.get(0),
    )?;
    if !has_tls {
        // What the device trusts, and whether plain HTTP was allowed (development).
        conn.execute_batch(
            "ALTER TABLE device ADD COLUMN ca_pem TEXT;
             ALTER TABLE device ADD COLUMN allow_plain_http INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    Ok(())
}

pub struct Device {
    pub server_url: String,
    pub device_identifier: String,
    pub api_key: String,
    pub transport: crate::client::Transport,
}

pub fn device(conn: &Connection) -> Result<Device, EdgeError> {
    conn.query_row(
        "SELECT server_url, device_identifier, api_key, ca_pem, allow_plain_http FROM device WHERE id = 1",
        [],
        |r| {
            Ok(Device {
                server_url: r.get(0)?,
                device_identifier: r.get(1)?,
                api_key: r.get(2)?,
                transport: crate::client::Transport {
                    ca_pem: r.get(3)?,
                    allow_plain_http: r.get(4)?,
                },
            })
        },
    )
    .optional()?
    .ok_or(EdgeError::NotEnrolled)
}

pub fn enroll(conn: &Connection, device: &Device) -> Result<(), EdgeError> {
    conn.execute(
        "INSERT INTO device (id, server_url, device_identifier, api_key, enrolled_at, ca_pem, allow_plain_http)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET server_url = ?1, device_identifier = ?2, api_key = ?3, enrolled_at = ?4,
             ca_pem = ?5, allow_plain_http = ?6",
        params![
            device.server_url,
            device.device_identifier,
            device.api_key,
            chrono::Utc::now().to_rfc3339(),
            device.transport.ca_pem,
            device.transport.allow_plain_http
        ],
    )?;
    Ok(())
}

/// The raffle set-up last fetched, with its id.
pub fn raffle(conn: &Connection) -> Result<(String, serde_json::Value), EdgeError> {
    let (id, setup): (String, String) = conn
        .query_row(
            "SELECT id, setup FROM raffle ORDER BY fetched_at DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or(EdgeError::NoAllocation)?;
    let setup = serde_json::from_str(&setup).map_err(|e| EdgeError::CorruptStore {
        path: "raffle set-up".into(),
        reason: e.to_string(),
    })?;
    Ok((id, setup))
}
