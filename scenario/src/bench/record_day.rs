//! `raffle bench record-day`: a raffle the size of the record 50/50 from the first webhook to
//! the verified audit export. 300,000 orders of five tickets sell the raffle out (1.5 million
//! tickets), the payments that come after the sell-out (12,800 by default, the record day's
//! refunds) are refunded through the provider stand-in at its rate limit, and then the raffle
//! is closed, sealed, drawn, its payout imported, reconciled, confirmed by finance, exported
//! and verified. Every step is timed, with the peak memory of the process that did it.
//!
//! The services run as the product runs them, each its own process: `ingest serve`,
//! `allocator run`, `ledger run` and `refunds run` (pointed at the stand-in). The close, seal,
//! draw, payout import, report, confirmation, export and verification run in this process,
//! through the same library calls the CLI makes; its peak memory is reset before each of them
//! (`/proc/self/clear_refs`), so each step's figure is its own.

use std::time::{Duration, Instant};

use platform::config::StackConfig;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::bench::pipeline::{SECRET, deliver_all, start_ingest};
use crate::bench::{BenchEnv, machine, peak_rss_mib, spawn};
use crate::stripe::{StandInConfig, StripeStandIn};

pub struct RecordDayOptions {
    /// Orders that get their tickets (five each): the raffle's size.
    pub orders: usize,
    /// Payments that come after the sell-out, each refunded.
    pub refunds: usize,
    /// Concurrent webhook clients.
    pub concurrency: usize,
    /// The provider's rate limit, requests a second.
    pub provider_rate: usize,
    pub keep: bool,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub seconds: f64,
    /// Peak resident memory of the process that did the step (this one, unless named).
    pub peak_memory_mib: f64,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct RecordDayReport {
    pub orders: usize,
    pub tickets_issued: i64,
    pub payments_after_sell_out: usize,
    pub steps: Vec<Step>,
    pub total_seconds: f64,
    /// The services' peak memory over the whole run.
    pub services_peak_memory_mib: Value,
    /// Refunds not paid and booked at the end (must be 0).
    pub refunds_owed: i64,
    /// Refunds the provider made more than once for one payment (must be 0).
    pub paid_twice: usize,
    pub provider_rate_limited_answers: usize,
    pub payout_lines: usize,
    pub payout_lines_matched: usize,
    /// Payment clearing after the payout: what the provider still holds for the raffle (0).
    pub clearing_after_payout_minor: i64,
    pub checks_passing: String,
    pub confirmed_by_finance: bool,
    pub export_verified: bool,
    pub draw_verified: bool,
    pub machine: String,
}

/// Resets this process's peak resident memory, so the next reading is the next step's.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Clock {
    steps: Vec<Step>,
    started: Instant,
}

impl Clock {
    fn start() -> Instant {
        reset_peak_memory();
        Instant::now()
    }

    fn done(&mut self, step: &'static str, since: Instant, memory: f64, detail: String) {
        let seconds = since.elapsed().as_secs_f64();
        tracing::info!(step, seconds, memory, %detail, "record day step");
        self.steps.push(Step {
            step,
            seconds,
            peak_memory_mib: memory,
            detail,
        });
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn count(pool: &deadpool_postgres::Pool, sql: &str, raffle: Uuid) -> Result<i64, String> {
    let client = pool.get().await.map_err(err)?;
    client
        .query_one(sql, &[&raffle])
        .await
        .map(|r| r.get::<_, i64>(0))
        .map_err(err)
}

/// Polls `sql` (one count over the raffle) until it reaches `target`.
async fn wait_for(
    pool: &deadpool_postgres::Pool,
    what: &str,
    sql: &str,
    raffle: Uuid,
    target: i64,
    deadline: Duration,
    progress: &impl Fn(&str),
) -> Result<(), String> {
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        let done = count(pool, sql, raffle).await?;
        if done >= target {
            return Ok(());
        }
        if started.elapsed() > deadline {
            return Err(format!(
                "raffle {raffle}: only {done} of {target} {what} within {deadline:?}"
            ));
        }
        if said.elapsed() > Duration::from_secs(30) {
            progress(&format!("  {done} of {target} {what}"));
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn run(
    config: &StackConfig,
    brokers: &str,
    options: &RecordDayOptions,
    progress: impl Fn(&str),
) -> Result<RecordDayReport, String> {
    let tickets_per_order = 5_i64;
    let sold = i64::try_from(options.orders).map_err(err)? * tickets_per_order;
    let payments = options.orders + options.refunds;
    let bench = BenchEnv::create(config, brokers, "recordday").await?;
    let pool = bench.pool.clone();
    let mut clock = Clock {
        steps: Vec::new(),
        started: Instant::now(),
    };

    progress(&format!(
        "seeding a raffle of {sold} tickets and {payments} pending orders of 5 tickets for $20.00"
    ));
    let t = Clock::start();
    let scenario = crate::seed::raffle_on_sale(
        &pool,
        &crate::seed::Options {
            rsu_count: 0,
            max_tickets: sold,
            online_end: 50_000
                + sold
                + tickets_per_order * i64::try_from(options.refunds).map_err(err)?,
            ..Default::default()
        },
    )
    .await
    .map_err(err)?;
    let raffle = scenario.raffle_id;
    let orders: Vec<Uuid> = (0..payments).map(|_| Uuid::now_v7()).collect();
    {
        let client = pool.get().await.map_err(err)?;
        for (i, chunk) in orders.chunks(50_000).enumerate() {
            let first = i64::try_from(i * 50_000).map_err(err)?;
            client
                .execute(
                    "INSERT INTO sales.orders (id, raffle_id, package_id, validation_number, ticket_count, total_amount_minor, currency, source)
                     SELECT u.id, $1, $2, 'VAL-R' || lpad((u.g + $4)::text, 11, '0'), 5, 2000, 'USD', 'online'
                       FROM unnest($3::uuid[]) WITH ORDINALITY AS u(id, g)",
                    &[&raffle, &scenario.package_id, &chunk, &first],
                )
                .await
                .map_err(err)?;
        }
    }
    let provider = StripeStandIn::start(StandInConfig {
        rate_per_second: options.provider_rate.max(1),
        settle_immediately: true,
        ..Default::default()
    })
    .await?;
    // The payments the buyers' cards made: what the provider holds and will pay out.
    for i in 0..payments {
        provider.charge(&format!("pi_bench_{i}"), 2000);
    }
    clock.done(
        "set-up",
        t,
        peak_rss_mib(None),
        format!("{payments} orders checked out (not through checkout: `raffle bench checkout` measures that)"),
    );

    let mut env = bench.service_env(brokers);
    env.push(("INGEST_WEBHOOK_SECRET", SECRET.to_owned()));
    let (ingest, addr) = start_ingest(&env).await?;
    let exe = std::env::current_exe().map_err(err)?;
    let allocator = spawn(&exe, &["allocator", "run"], &env)?;
    let ledger = spawn(&exe, &["ledger", "run"], &env)?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    progress(&format!(
        "selling out: {payments} payment webhooks from {} clients, {} of them after the last ticket",
        options.concurrency, options.refunds
    ));
    let t = Clock::start();
    deliver_all(addr, &orders, 0, options.concurrency).await?;
    let acknowledged = t.elapsed().as_secs_f64();
    wait_for(
        &pool,
        "payments decided by the allocator",
        "SELECT count(*) FROM sales.orders WHERE raffle_id = $1 AND payment_status <> 'pending'",
        raffle,
        i64::try_from(payments).map_err(err)?,
        Duration::from_secs(1800),
        &progress,
    )
    .await?;
    let decided = t.elapsed().as_secs_f64();
    let issued = count(
        &pool,
        "SELECT total_sold FROM catalog.raffle_events WHERE id = $1",
        raffle,
    )
    .await?;
    let owed = count(
        &pool,
        "SELECT count(*) FROM refunds.obligations WHERE raffle_id = $1",
        raffle,
    )
    .await?;
    clock.done(
        "sales",
        t,
        peak_rss_mib(ingest.0.id()),
        format!(
            "{payments} webhooks acknowledged in {acknowledged:.1} s ({:.0}/s), decided in {decided:.1} s; {issued} tickets issued, {owed} payments owed back (peak memory: ingest)",
            payments as f64 / acknowledged
        ),
    );
    if issued != sold || owed != i64::try_from(options.refunds).map_err(err)? {
        return Err(format!(
            "raffle {raffle}: {issued} tickets issued and {owed} refunds owed, expected {sold} and {}",
            options.refunds
        ));
    }

    progress(&format!(
        "refunding {} payments through the provider stand-in at its limit of {}/s",
        options.refunds, options.provider_rate
    ));
    let t = Clock::start();
    let mut worker_env = env.clone();
    worker_env.push(("RAFFLE_STRIPE_API_URL", provider.base_url()));
    worker_env.push((
        "RAFFLE_STRIPE_SECRET_KEY",
        provider.config.secret_key.clone(),
    ));
    let worker = spawn(&exe, &["refunds", "run"], &worker_env)?;
    wait_for(
        &pool,
        "refunds paid and booked",
        "SELECT count(*) FROM refunds.obligations WHERE raffle_id = $1 AND state = 'succeeded' AND booked = 'paid'",
        raffle,
        owed,
        Duration::from_secs(3600),
        &progress,
    )
    .await?;
    let seconds = t.elapsed().as_secs_f64();
    let counts = provider.counts();
    clock.done(
        "refunds",
        t,
        peak_rss_mib(worker.0.id()),
        format!(
            "{owed} refunds in {seconds:.0} s ({:.1}/s; the limit allows {}/s: {:.0} s at best); {} requests, {} answered 429 (peak memory: the refunds worker)",
            owed as f64 / seconds,
            options.provider_rate,
            owed as f64 / options.provider_rate.max(1) as f64,
            counts.requests,
            counts.rate_limited
        ),
    );

    progress("closing sales");
    let t = Clock::start();
    let org = scenario.organization_id;
    crate::seed::call_as(
        &pool,
        "admin",
        warp::http::Method::POST,
        &format!("organizations/{org}/raffles/{raffle}/transitions"),
        json!({"to": "sales_closed", "reason": "record day: the sales end"}),
    )
    .await
    .map_err(err)?;
    clock.done("close", t, peak_rss_mib(None), "sales closed".into());

    progress("sealing the books");
    let t = Clock::start();
    let seed_key = ledger::seed_key::SeedKey::generate().map_err(err)?;
    let request = ledger::SealRequest {
        raffle_id: raffle,
        sealed_by: "finance".into(),
        grace_seconds: 0,
        write_off: Vec::new(),
        seed_key: Some(seed_key.clone()),
        seed_keeper: &draw_engine::SEED_KEEPER,
    };
    let seal = crate::seal_when_drained(
        &pool,
        brokers,
        &bench.topics,
        &request,
        Duration::from_secs(600),
    )
    .await
    .map_err(|e| format!("raffle {raffle}: {e}"))?;
    clock.done(
        "seal",
        t,
        peak_rss_mib(None),
        format!(
            "{} entries, {} tickets eligible, gross receipts {} minor units, waiting for the ledger to drain included",
            seal.entries, seal.tickets_eligible, seal.gross_receipts_minor
        ),
    );

    progress("drawing");
    let t = Clock::start();
    let outcome = draw_engine::run(
        &pool,
        &draw_engine::DrawRequest {
            raffle_id: raffle,
            conducted_by: "draw-officer".into(),
            interrupt_after_prizes: None,
            seed_key: Some(seed_key),
        },
    )
    .await
    .map_err(err)?;
    clock.done(
        "draw",
        t,
        peak_rss_mib(None),
        format!(
            "{} winners from {} eligible tickets",
            outcome.winners.len(),
            outcome.tickets_eligible
        ),
    );

    progress("importing the provider's payout report");
    let t = Clock::start();
    let file = provider.payout_report("po_record_day");
    let payout = {
        let mut client = pool.get().await.map_err(err)?;
        let tx = client.transaction().await.map_err(err)?;
        let payout = ledger::payouts::import(&tx, raffle, &file, None, "finance")
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        payout
    };
    let clearing = {
        let client = pool.get().await.map_err(err)?;
        ledger::balances(&**client, raffle, None)
            .await
            .map_err(err)?
            .get(ledger::postings::PAYMENT_CLEARING)
            .copied()
            .unwrap_or(0)
    };
    clock.done(
        "payout import",
        t,
        peak_rss_mib(None),
        format!(
            "{} lines, {} matched, {} unmatched in the file, {} unmatched in the books; clearing after it {clearing}",
            payout.lines,
            payout.matched.len(),
            payout.unmatched_in_file.len(),
            payout.unmatched_in_books.len()
        ),
    );

    progress("reconciling (report, printable page and CSV) and confirming");
    let t = Clock::start();
    let client = pool.get().await.map_err(err)?;
    let report = ledger::report::reconciliation(&**client, raffle)
        .await
        .map_err(err)?;
    let html = ledger::report::to_html(&report);
    let csv = ledger::report::to_csv(&report);
    let passing = report.checks.iter().filter(|c| c.pass).count();
    clock.done(
        "report",
        t,
        peak_rss_mib(None),
        format!(
            "{passing} of {} checks pass; page {} KiB, CSV {} KiB",
            report.checks.len(),
            html.len() / 1024,
            csv.len() / 1024
        ),
    );
    let t = Clock::start();
    client.batch_execute("BEGIN").await.map_err(err)?;
    let confirmed =
        match ledger::report::confirm(&**client, raffle, &catalog::audit::Actor::cli("finance"))
            .await
        {
            Ok(_) => {
                client.batch_execute("COMMIT").await.map_err(err)?;
                None
            }
            Err(e) => {
                client.batch_execute("ROLLBACK").await.map_err(err)?;
                Some(e.to_string())
            }
        };
    clock.done(
        "confirm",
        t,
        peak_rss_mib(None),
        confirmed
            .clone()
            .unwrap_or_else(|| "confirmed by finance".into()),
    );

    progress("exporting the audit files and verifying them");
    let t = Clock::start();
    let dir = std::env::temp_dir().join(format!("raffle-{}-audit", bench.run));
    let software = platform::version::version_line("raffle", env!("CARGO_PKG_VERSION"));
    ledger::audit::export(&**client, raffle, &dir, &software)
        .await
        .map_err(err)?;
    let exported = t.elapsed().as_secs_f64();
    let export = ledger::audit::verify_export(&dir).map_err(err)?;
    let draw = draw_engine::verify(&**client, raffle).await.map_err(err)?;
    let size: u64 = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    clock.done(
        "export and verify",
        t,
        peak_rss_mib(None),
        format!(
            "{} MiB written in {exported:.1} s; export {}, draw {}",
            size / (1024 * 1024),
            if export.ok() {
                "verifies"
            } else {
                "does NOT verify"
            },
            if draw.ok() {
                "re-derived"
            } else {
                "does NOT re-derive"
            }
        ),
    );
    drop(client);

    let refunds_owed = count(
        &pool,
        "SELECT count(*) FROM refunds.obligations WHERE raffle_id = $1 AND NOT (state = 'succeeded' AND booked = 'paid')",
        raffle,
    )
    .await?;
    let services = json!({
        "ingest": peak_rss_mib(ingest.0.id()),
        "allocator": peak_rss_mib(allocator.0.id()),
        "ledger": peak_rss_mib(ledger.0.id()),
        "refunds_worker": peak_rss_mib(worker.0.id()),
    });
    drop((ingest, allocator, ledger, worker));
    let total_seconds = clock.started.elapsed().as_secs_f64();
    let paid_twice = provider
        .refunds_per_payment()
        .values()
        .filter(|n| **n > 1)
        .count();
    let report = RecordDayReport {
        orders: options.orders,
        tickets_issued: issued,
        payments_after_sell_out: options.refunds,
        steps: clock.steps,
        total_seconds,
        services_peak_memory_mib: services,
        refunds_owed,
        paid_twice,
        provider_rate_limited_answers: provider.counts().rate_limited,
        payout_lines: payout.lines,
        payout_lines_matched: payout.matched.len(),
        clearing_after_payout_minor: clearing,
        checks_passing: format!("{passing} of {}", report.checks.len()),
        confirmed_by_finance: confirmed.is_none(),
        export_verified: export.ok(),
        draw_verified: draw.ok(),
        machine: machine(),
    };
    if !options.keep {
        let _ = std::fs::remove_dir_all(&dir);
        bench.drop_database().await;
    }
    Ok(report)
}
