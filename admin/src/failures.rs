//! Failed authentications, counted instead of recorded one by one.
//!
//! Anybody can send a junk token, so a critical event per failure let anybody write an
//! organisation's numbered trail (2,000 requests, 2,000 events). Here, per source address and
//! minute: the first failure is a critical event (the trail says an attack began and from
//! where), every failure up to [`FAILURES_PER_MINUTE_MAX`] is counted in
//! `audit.authentication_failures`, and beyond that the source is answered 429 without
//! anything written until the next minute. Counting happens in memory first, so the limit
//! holds without a database round trip; each admin instance keeps its own count.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use deadpool_postgres::Pool;
use warp::http::Method;

use crate::problem::Problem;

/// Failed authentications a source may have counted in one minute.
pub const FAILURES_PER_MINUTE_MAX: u32 = 20;
/// Sources remembered at once; beyond this the oldest minute's are forgotten.
const SOURCES_MAX: usize = 100_000;

struct Window {
    minute: DateTime<Utc>,
    failures: u32,
}

static WINDOWS: Mutex<Option<HashMap<IpAddr, Window>>> = Mutex::new(None);

/// Counts one failure of `source` in `minute`; returns the count so far this minute.
fn count(source: IpAddr, minute: DateTime<Utc>) -> u32 {
    let Ok(mut guard) = WINDOWS.lock() else {
        return u32::MAX;
    };
    let windows = guard.get_or_insert_with(HashMap::new);
    if windows.len() >= SOURCES_MAX {
        windows.retain(|_, w| w.minute == minute);
    }
    let window = windows.entry(source).or_insert(Window {
        minute,
        failures: 0,
    });
    if window.minute != minute {
        *window = Window {
            minute,
            failures: 0,
        };
    }
    window.failures = window.failures.saturating_add(1);
    window.failures
}

/// Notes a failed authentication and says what to answer: the refusal itself, or 429 once
/// the source is past its limit for the minute.
pub async fn note(
    pool: &Pool,
    source: Option<SocketAddr>,
    method: &Method,
    path: &str,
    refusal: &Problem,
) -> Problem {
    let now = Utc::now();
    let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    let ip = source.map_or(IpAddr::from([0, 0, 0, 0]), |s| s.ip());
    let failures = count(ip, minute);
    if failures > FAILURES_PER_MINUTE_MAX {
        return Problem::too_many(format!(
            "too many failed authentications from {ip} this minute; try again after {}",
            minute + TimeDelta::minutes(1)
        ));
    }
    let Ok(client) = pool.get().await else {
        return refusal.clone();
    };
    let written = client
        .execute(
            "INSERT INTO audit.authentication_failures (source, minute, failures, last_path, last_reason)
             VALUES ($1, $2, 1, $3, $4)
             ON CONFLICT (source, minute) DO UPDATE
                SET failures = audit.authentication_failures.failures + 1, last_at = now(),
                    last_path = EXCLUDED.last_path, last_reason = EXCLUDED.last_reason",
            &[&ip.to_string(), &minute, &format!("{method} /v1/{path}"), &refusal.detail],
        )
        .await;
    if let Err(e) = written {
        tracing::error!(source = %ip, error = %e, "could not count a failed authentication");
    }
    if failures == 1 {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let summary = refusal.clone().with_detail(format!(
            "{} (first failed authentication from {ip} in the minute from {minute}; all are counted in audit.authentication_failures)",
            refusal.detail
        ));
        crate::record_refusal(&client, None, method, path, &segments, &summary).await;
    }
    refusal.clone()
}
