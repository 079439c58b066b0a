//! `raffle bench checkout`: buyers checking out through the real ingest server, each checkout
//! taking a capacity hold, then a sell-out where more buyers come than there are tickets.
//!
//! Two ceilings are measured in the same run: the server's rate for a request that touches
//! nothing (`GET /health/live`, the HTTP layer alone), and the rate at which Postgres takes
//! single-statement updates of one row from as many connections as ingest has (what any
//! design that counts a raffle's holds in one row can reach). The holds are then checked
//! against the orders: every ticket held belongs to exactly one pending order, and the
//! sell-out took exactly the tickets there were.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::bench::{BenchEnv, Latency, latency, machine, peak_rss_mib};
use platform::StackConfig;
use platform::http_client::Connection;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

/// Ingest's database pool (`raffle ingest serve`): the hot-row ceiling uses as many connections.
const INGEST_POOL: usize = 32;
const TICKETS_PER_ORDER: i64 = 5;

pub struct CheckoutBenchOptions {
    pub checkouts: usize,
    pub concurrency: usize,
    /// Tickets of the raffle the sell-out phase runs against.
    pub sell_out_tickets: i64,
    /// Buyers in the sell-out phase, as a multiple of the orders that fit.
    pub sell_out_demand: usize,
    pub keep: bool,
}

#[derive(Debug, Serialize)]
pub struct SellOut {
    pub max_tickets: i64,
    pub buyers: usize,
    pub orders_taken: usize,
    pub sold_out_answers: usize,
    pub tickets_held: i64,
    pub answers_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct CheckoutBenchReport {
    pub checkouts: usize,
    pub concurrency: usize,
    pub checkouts_per_s: f64,
    pub checkout_latency: Latency,
    /// `GET /health/live` over the same connections to the same server: the HTTP layer alone.
    pub http_ceiling_requests_per_s: f64,
    /// One row updated by single statements from ingest's pool size of connections.
    pub hot_row_ceiling_updates_per_s: f64,
    pub tickets_held: i64,
    pub sell_out: SellOut,
    pub peak_memory_mib: serde_json::Value,
    pub machine: String,
}

/// The `i`th request of a run: method, path and body.
type MakeRequest = Arc<dyn Fn(usize) -> (&'static str, &'static str, Vec<u8>) + Send + Sync>;

/// Sends `count` requests over `clients` kept-alive connections; each answer's status and
/// latency in milliseconds, and the wall time of the whole.
async fn drive(
    addr: SocketAddr,
    count: usize,
    clients: usize,
    request: MakeRequest,
) -> Result<(Vec<(u16, f64)>, f64), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (next, request) = (next.clone(), request.clone());
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(addr).await.map_err(|e| e.to_string())?;
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, String>(answers);
                }
                let (method, path, body) = request(i);
                let sent = Instant::now();
                let r = connection
                    .send(method, path, &[("Content-Type", "application/json")], &body)
                    .await
                    .map_err(|e| format!("request {i} to {path}: {e}"))?;
                answers.push((r.status, sent.elapsed().as_secs_f64() * 1000.0));
                if r.status >= 500 || (r.status >= 400 && r.status != 409) {
                    return Err(format!(
                        "request {i} to {path} answered {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for w in workers {
        all.extend(w.await.map_err(|e| e.to_string())??);
    }
    Ok((all, started.elapsed().as_secs_f64()))
}

fn checkout_body(raffle: Uuid, package: Uuid, i: usize) -> Vec<u8> {
    json!({"raffle_id": raffle, "package_id": package,
           "customer": {"name": format!("Buyer {i}"), "email": format!("buyer{i}@example.org")}})
    .to_string()
    .into_bytes()
}

/// Updates one row `updates` times from `connections` connections, each update its own
/// transaction, as checkout's hold is: the rate one counter row allows.
async fn hot_row_ceiling(
    db: &platform::db::DbTarget,
    updates: usize,
    connections: usize,
) -> Result<f64, String> {
    let pool = db.pool(connections).map_err(|e| e.to_string())?;
    let setup = pool.get().await.map_err(|e| e.to_string())?;
    setup
        .batch_execute(
            "CREATE TABLE public.bench_hot_row (id int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO public.bench_hot_row VALUES (1, 0);",
        )
        .await
        .map_err(|e| e.to_string())?;
    drop(setup);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (pool, next) = (pool.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            let update = client
                .prepare("UPDATE public.bench_hot_row SET n = n + 5 WHERE id = 1")
                .await
                .map_err(|e| e.to_string())?;
            while next.fetch_add(1, Ordering::Relaxed) < updates {
                client
                    .execute(&update, &[])
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for w in workers {
        w.await.map_err(|e| e.to_string())??;
    }
    let rate = updates as f64 / started.elapsed().as_secs_f64();
    pool.close();
    Ok(rate)
}

/// Tickets held for raffle `raffle`, checked against its pending orders' tickets.
async fn held_and_checked(pool: &deadpool_postgres::Pool, raffle: Uuid) -> Result<i64, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT coalesce((SELECT held_tickets FROM sales.capacity_holds WHERE raffle_id = $1), 0),
                    coalesce((SELECT sum(ticket_count) FROM sales.orders
                               WHERE raffle_id = $1 AND payment_status = 'pending' AND hold_expires_at IS NOT NULL), 0)::bigint",
            &[&raffle],
        )
        .await
        .map_err(|e| e.to_string())?;
    let (held, pending): (i64, i64) = (row.get(0), row.get(1));
    if held != pending {
        return Err(format!(
            "raffle {raffle}: {held} tickets held but pending orders hold {pending}"
        ));
    }
    Ok(held)
}

pub async fn run(
    config: &StackConfig,
    brokers: &str,
    options: &CheckoutBenchOptions,
    progress: impl Fn(&str),
) -> Result<CheckoutBenchReport, String> {
    let bench = BenchEnv::create(config, brokers, "checkout").await?;
    let pool = bench.pool.clone();
    progress("seeding a raffle to buy from and one to sell out");
    let wide = crate::seed::raffle_on_sale(
        &pool,
        &crate::seed::Options {
            rsu_count: 0,
            max_tickets: (options.checkouts as i64 + 1) * TICKETS_PER_ORDER,
            online_end: 50_000 + (options.checkouts as i64 + 1) * TICKETS_PER_ORDER,
            ..Default::default()
        },
    )
    .await
    .map_err(|p| p.to_string())?;
    let scarce = crate::seed::raffle_on_sale(
        &pool,
        &crate::seed::Options {
            rsu_count: 0,
            max_tickets: options.sell_out_tickets,
            online_end: 50_000 + options.sell_out_tickets.max(1),
            ..Default::default()
        },
    )
    .await
    .map_err(|p| p.to_string())?;

    let mut env = bench.service_env(brokers);
    env.push(("INGEST_WEBHOOK_SECRET", super::pipeline::SECRET.to_owned()));
    let (ingest, addr) = super::pipeline::start_ingest(&env).await?;

    progress(&format!(
        "ceiling: {} GET /health/live from {} clients",
        options.checkouts, options.concurrency
    ));
    let live: MakeRequest = Arc::new(|_| ("GET", "/health/live", Vec::new()));
    let (_, seconds) = drive(addr, options.checkouts, options.concurrency, live).await?;
    let http_ceiling = options.checkouts as f64 / seconds;

    progress(&format!(
        "ceiling: {} one-row updates from {INGEST_POOL} connections",
        options.checkouts
    ));
    let hot_row = hot_row_ceiling(&bench.db, options.checkouts, INGEST_POOL).await?;

    progress(&format!(
        "{} checkouts from {} clients",
        options.checkouts, options.concurrency
    ));
    let (raffle, package) = (wide.raffle_id, wide.package_id);
    let buy: MakeRequest =
        Arc::new(move |i| ("POST", "/v1/checkout", checkout_body(raffle, package, i)));
    let (answers, seconds) = drive(addr, options.checkouts, options.concurrency, buy).await?;
    let refused = answers.iter().filter(|(s, _)| *s != 201).count();
    if refused > 0 {
        return Err(format!(
            "{refused} of {} checkouts were refused though the raffle had room for all",
            options.checkouts
        ));
    }
    let checkouts_per_s = options.checkouts as f64 / seconds;
    let checkout_latency = latency(answers.into_iter().map(|(_, ms)| ms).collect());
    let tickets_held = held_and_checked(&pool, raffle).await?;
    if tickets_held != options.checkouts as i64 * TICKETS_PER_ORDER {
        return Err(format!(
            "{} checkouts took holds of {tickets_held} tickets, not {}",
            options.checkouts,
            options.checkouts as i64 * TICKETS_PER_ORDER
        ));
    }

    let fits = (options.sell_out_tickets / TICKETS_PER_ORDER) as usize;
    let buyers = fits.max(1) * options.sell_out_demand.max(1);
    progress(&format!(
        "sell-out: {buyers} buyers for {} tickets ({fits} orders)",
        options.sell_out_tickets
    ));
    let (raffle, package) = (scarce.raffle_id, scarce.package_id);
    let buy: MakeRequest =
        Arc::new(move |i| ("POST", "/v1/checkout", checkout_body(raffle, package, i)));
    let (answers, seconds) = drive(addr, buyers, options.concurrency, buy).await?;
    let taken = answers.iter().filter(|(s, _)| *s == 201).count();
    let sold_out_answers = answers.iter().filter(|(s, _)| *s == 409).count();
    let held = held_and_checked(&pool, raffle).await?;
    if taken != fits || held != fits as i64 * TICKETS_PER_ORDER {
        return Err(format!(
            "the sell-out took {taken} orders holding {held} tickets; {fits} orders of {TICKETS_PER_ORDER} fit in {}",
            options.sell_out_tickets
        ));
    }

    let memory = json!({
        "ingest": peak_rss_mib(ingest.0.id()),
        "load_generator": peak_rss_mib(None),
    });
    drop(ingest);
    if !options.keep {
        bench.drop_database().await;
    }
    Ok(CheckoutBenchReport {
        checkouts: options.checkouts,
        concurrency: options.concurrency,
        checkouts_per_s,
        checkout_latency,
        http_ceiling_requests_per_s: http_ceiling,
        hot_row_ceiling_updates_per_s: hot_row,
        tickets_held,
        sell_out: SellOut {
            max_tickets: options.sell_out_tickets,
            buyers,
            orders_taken: taken,
            sold_out_answers,
            tickets_held: held,
            answers_per_s: buyers as f64 / seconds,
        },
        peak_memory_mib: memory,
        machine: machine(),
    })
}
