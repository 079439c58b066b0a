//! The refunds worker: asks the provider for every refund due, at most `rate_per_second`
//! requests a second (Stripe's default is 25 per endpoint), backing off on a 429 and on an
//! outage, then books what settled.
//!
//! Crash safety: an obligation is marked `requested` (and not due again for `lease`) in its
//! own committed transaction before the provider is asked. If the process dies after the
//! provider paid and before the answer was recorded, the obligation comes due again as
//! `requested`; the worker then first looks the refund up by its Idempotency-Key (which the
//! refund carries in its metadata) and asks again only when the provider has none, under the
//! same key — so a refund is never paid twice, even after the provider forgot the key.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use crate::obligations::{self, RefundError, Settlement, idempotency_key};
use crate::provider::{ProviderAnswer, RefundAsk, StripeApi};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Requests a second to the provider, at most.
    pub rate_per_second: u32,
    /// Requests under way at once (the provider's latency, not its limit, sets how many help).
    pub concurrency: usize,
    /// Obligations claimed per pass.
    pub batch: i64,
    /// How long a claimed request is left alone before it is looked at again.
    pub lease: Duration,
    /// How long a pending refund waits between look-ups when no webhook settled it.
    pub pending_recheck: Duration,
    /// The longest back-off after an outage.
    pub max_backoff: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            // A margin under Stripe's 25 a second: asked at the limit itself, jitter in the
            // requests' arrival trips 429s and the back-off costs more than the margin
            // (`raffle bench refunds`: 15.2/s asked at 25, 20.7/s asked at 22, no 429s).
            rate_per_second: 22,
            concurrency: 8,
            batch: 200,
            lease: Duration::from_secs(60),
            pending_recheck: Duration::from_secs(300),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub asked: usize,
    pub found_after_restart: usize,
    pub succeeded: usize,
    pub pending: usize,
    pub failed: usize,
    pub rate_limited: usize,
    pub unavailable: usize,
    pub booked: usize,
    /// Paid orders of cancelled raffles owed (and booked) in this pass.
    pub owed_for_cancellations: usize,
}

/// Spaces the requests' starts `1/rate` apart, and holds them all back after a 429.
pub struct Pacer {
    next: Mutex<Instant>,
    interval: Duration,
}

impl Pacer {
    pub fn new(rate_per_second: u32) -> Self {
        Self {
            next: Mutex::new(Instant::now()),
            interval: Duration::from_secs(1) / rate_per_second.max(1),
        }
    }

    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    async fn hold_back(&self, by: Duration) {
        let mut next = self.next.lock().await;
        *next = (*next).max(Instant::now() + by);
    }
}

struct Due {
    id: Uuid,
    raffle_id: Uuid,
    order_id: Option<Uuid>,
    payment_reference: String,
    amount_minor: i64,
    reason_code: String,
    key: String,
    attempts: i32,
    asked_before: bool,
}

fn db_err(e: impl std::fmt::Display) -> RefundError {
    RefundError::Invalid(format!("no database connection: {e}"))
}

/// Claims what is due: marks it requested and not due again for the lease, and commits, before
/// any provider call.
async fn claim(pool: &Pool, config: &WorkerConfig) -> Result<Vec<Due>, RefundError> {
    let mut client = pool.get().await.map_err(db_err)?;
    let tx = client.transaction().await?;
    let lease = config.lease.as_secs_f64();
    let rows = tx
        .query(
            "WITH due AS (
                 SELECT id, state FROM refunds.obligations
                  WHERE state IN ('owed', 'requested') AND next_attempt_at <= now()
                  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
             UPDATE refunds.obligations o
                SET state = 'requested', attempts = o.attempts + 1,
                    next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
               FROM due WHERE o.id = due.id
             RETURNING o.id, o.raffle_id, o.order_id, o.payment_reference, o.amount_minor, o.reason_code,
                       o.key_generation, o.attempts, due.state = 'requested' OR o.provider_refund_id IS NOT NULL",
            &[&config.batch, &lease],
        )
        .await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: Uuid = r.get(0);
            Due {
                id,
                raffle_id: r.get(1),
                order_id: r.get(2),
                payment_reference: r.get(3),
                amount_minor: r.get(4),
                reason_code: r.get(5),
                key: idempotency_key(id, r.get(6)),
                attempts: r.get(7),
                asked_before: r.get(8),
            }
        })
        .collect())
}

fn backoff(attempts: i32, max: Duration) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    Duration::from_secs(1u64 << exp.min(16)).min(max)
}

/// Records an answer: the attempt, and what it means for the obligation.
async fn record(
    pool: &Pool,
    due: &Due,
    answer: &ProviderAnswer,
    config: &WorkerConfig,
) -> Result<(), RefundError> {
    let mut client = pool.get().await.map_err(db_err)?;
    let tx = client.transaction().await?;
    let (http_status, outcome, detail): (Option<i32>, &str, String) = match answer {
        ProviderAnswer::Refund {
            id,
            status,
            failure_reason,
            ..
        } => (
            Some(200),
            "refund",
            format!(
                "{id} {status}{}",
                failure_reason
                    .as_deref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default()
            ),
        ),
        ProviderAnswer::RateLimited { retry_after } => (
            Some(429),
            "rate_limited",
            format!("retry after {retry_after:?}"),
        ),
        ProviderAnswer::Refused {
            http_status,
            code,
            message,
        } => (
            Some(i32::from(*http_status)),
            "refused",
            format!("{code}: {message}"),
        ),
        ProviderAnswer::Unavailable(e) => (None, "unavailable", e.clone()),
        ProviderAnswer::NotFound => (None, "not_found", "no refund of ours yet".into()),
    };
    tx.execute(
        "INSERT INTO refunds.attempts (obligation_id, idempotency_key, http_status, outcome, detail)
         VALUES ($1, $2, $3, $4, $5)",
        &[&due.id, &due.key, &http_status, &outcome, &detail],
    )
    .await?;
    let again = |d: Duration| d.as_secs_f64();
    match answer {
        ProviderAnswer::Refund {
            id,
            status,
            failure_reason,
            ..
        } => {
            obligations::settle(
                &*tx,
                &Settlement {
                    idempotency_key: due.key.clone(),
                    provider_refund_id: id.clone(),
                    provider_status: status.clone(),
                    failure_reason: failure_reason.clone(),
                },
            )
            .await?;
            // A pending refund is settled by its webhook; looked up now and then in case
            // none comes.
            tx.execute(
                "UPDATE refunds.obligations SET next_attempt_at = now() + make_interval(secs => $2)
                  WHERE id = $1 AND state = 'requested'",
                &[&due.id, &again(config.pending_recheck)],
            )
            .await?;
        }
        ProviderAnswer::RateLimited { retry_after } => {
            let wait = retry_after.unwrap_or_else(|| backoff(due.attempts, config.max_backoff));
            tx.execute(
                "UPDATE refunds.obligations SET next_attempt_at = now() + make_interval(secs => $2),
                        last_error = 'the provider asked us to slow down (429)' WHERE id = $1",
                &[&due.id, &again(wait)],
            )
            .await?;
        }
        ProviderAnswer::Unavailable(e) => {
            tx.execute(
                "UPDATE refunds.obligations SET next_attempt_at = now() + make_interval(secs => $2),
                        last_error = $3 WHERE id = $1",
                &[
                    &due.id,
                    &again(backoff(due.attempts, config.max_backoff)),
                    e,
                ],
            )
            .await?;
        }
        ProviderAnswer::Refused { code, message, .. } => {
            tx.execute(
                "UPDATE refunds.obligations SET state = 'failed', last_error = $2, updated_at = now()
                  WHERE id = $1 AND state = 'requested'",
                &[&due.id, &format!("the provider refused the refund: {code}: {message}")],
            )
            .await?;
            tracing::warn!(refund = %due.id, raffle = %due.raffle_id, payment = %due.payment_reference,
                           code = %code, "refund refused by the provider: finance retries or cancels it");
        }
        ProviderAnswer::NotFound => {}
    }
    tx.commit().await?;
    Ok(())
}

/// Asks the provider about one due obligation: looks it up first when it was asked before.
async fn ask(api: &StripeApi, pacer: &Pacer, due: &Due) -> (ProviderAnswer, bool) {
    if due.asked_before {
        pacer.wait().await;
        match api.find_refund(&due.payment_reference, &due.key).await {
            ProviderAnswer::NotFound => {}
            found => return (found, true),
        }
    }
    pacer.wait().await;
    let reason = if due.reason_code == schemas::SaleRefusal::OrderAlreadyPaid.as_str() {
        "duplicate"
    } else {
        "requested_by_customer"
    };
    let answer = api
        .create_refund(&RefundAsk {
            idempotency_key: &due.key,
            payment_intent: &due.payment_reference,
            amount_minor: due.amount_minor,
            obligation_id: due.id,
            raffle_id: due.raffle_id,
            order_id: due.order_id,
            reason,
        })
        .await;
    (answer, false)
}

/// One pass: claims what is due, asks the provider (paced, a few at once), records each
/// answer, books what settled.
pub async fn run_once(
    pool: &Pool,
    api: &StripeApi,
    config: &WorkerConfig,
    pacer: &Pacer,
) -> Result<Pass, RefundError> {
    let newly_owed = crate::orders::owe_cancelled(pool, config.batch).await?;
    let due = claim(pool, config).await?;
    let pass = Arc::new(std::sync::Mutex::new(Pass::default()));
    // Owned obligations into the stream: over borrowed ones the pass cannot run in a spawned
    // task (the compiler cannot show the closure is general over the borrow).
    let results: Vec<Result<(), RefundError>> = futures::stream::iter(due)
        .map(|d| {
            let pass = pass.clone();
            async move {
                let d = &d;
                let (answer, found) = ask(api, pacer, d).await;
                if let ProviderAnswer::RateLimited { retry_after } = &answer {
                    pacer
                        .hold_back(retry_after.unwrap_or(Duration::from_secs(1)))
                        .await;
                }
                record(pool, d, &answer, config).await?;
                let mut p = pass.lock().unwrap_or_else(|e| e.into_inner());
                p.asked += 1;
                p.found_after_restart += usize::from(found);
                match &answer {
                    ProviderAnswer::Refund { status, .. } => match status.as_str() {
                        "succeeded" => p.succeeded += 1,
                        "failed" | "canceled" => p.failed += 1,
                        _ => p.pending += 1,
                    },
                    ProviderAnswer::RateLimited { .. } => p.rate_limited += 1,
                    ProviderAnswer::Refused { .. } => p.failed += 1,
                    ProviderAnswer::Unavailable(e) => {
                        tracing::warn!(refund = %d.id, raffle = %d.raffle_id, error = %e, "provider unavailable; will ask again");
                        p.unavailable += 1;
                    }
                    ProviderAnswer::NotFound => {}
                }
                Ok(())
            }
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    for r in results {
        r?;
    }
    let booked = crate::books::book_settled(pool, 1000).await?;
    let mut pass = pass.lock().unwrap_or_else(|e| e.into_inner()).clone();
    pass.booked = booked;
    pass.owed_for_cancellations = newly_owed;
    Ok(pass)
}

/// Runs passes until `stop` turns true; sleeps a little when nothing was due.
pub async fn run(
    pool: &Pool,
    api: &StripeApi,
    config: &WorkerConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), RefundError> {
    let pacer = Pacer::new(config.rate_per_second);
    tracing::info!(provider = %api.base_url(), rate = config.rate_per_second, "refunds worker running");
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let pass = match run_once(pool, api, config, &pacer).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "refunds pass failed; trying again");
                Pass::default()
            }
        };
        if pass.asked > 0 || pass.booked > 0 || pass.owed_for_cancellations > 0 {
            tracing::info!(?pass, "refunds pass");
        } else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_its_ceiling() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff(1, max), Duration::from_secs(1));
        assert_eq!(backoff(2, max), Duration::from_secs(2));
        assert_eq!(backoff(5, max), Duration::from_secs(16));
        assert_eq!(backoff(40, max), max);
    }

    #[tokio::test]
    async fn the_pacer_spaces_requests_at_the_rate() {
        let pacer = Pacer::new(50);
        let start = Instant::now();
        for _ in 0..11 {
            pacer.wait().await;
        }
        // Ten intervals of 20 ms between eleven starts.
        assert!(start.elapsed() >= Duration::from_millis(200));
    }
}
