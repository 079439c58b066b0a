//! `raffle bench pipeline`: signed webhooks from concurrent clients through the real ingest
//! server, broker and allocator (each its own process), measured end to end, with the raw
//! broker produce rate measured in the same run as the ceiling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use platform::config::StackConfig;
use platform::db::DbTarget;
use platform::http_client::{Connection, request};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::bench::{BenchEnv, Latency, latency, machine, peak_rss_mib, spawn};
use ingest::signature;

pub(crate) const SECRET: &str = "whsec_benchmark_secret_0123456789";

pub struct BenchOptions {
    pub orders: usize,
    pub concurrency: usize,
    /// Orders sent at a steady 1,000/s to measure latency under the target load.
    pub paced_orders: usize,
    pub paced_rate: usize,
    pub keep: bool,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub orders: usize,
    pub tickets_per_order: i32,
    pub concurrency: usize,
    pub orders_per_s: f64,
    pub tickets_per_s: f64,
    /// How fast ingest acknowledged the webhooks (each sale durably on the broker), before the
    /// allocator finished: which side of the pipeline bounds the end-to-end rate.
    pub webhooks_acknowledged_per_s: f64,
    pub webhook_latency_at_max_load: Latency,
    pub paced_rate_per_s: usize,
    pub webhook_latency_at_paced_rate: Latency,
    pub broker_ceiling_records_per_s: f64,
    /// The same, every record under one key: the ceiling of one range partition.
    pub broker_ceiling_one_partition_records_per_s: f64,
    pub peak_memory_mib: serde_json::Value,
    pub machine: String,
}

/// The raw rate at which this broker acknowledges idempotent, acks=all records of a sale's
/// size from one producer over `keys` keys: what no pipeline built on it can beat.
async fn broker_ceiling(
    brokers: &str,
    topic: &str,
    records: usize,
    keys: usize,
) -> Result<f64, String> {
    let producer = platform::kafka::producer(brokers, 30_000).map_err(|e| e.to_string())?;
    let payload = vec![7u8; 220];
    let started = Instant::now();
    let records = crate::bench::produce_all(
        &producer,
        topic,
        (0..records).map(|i| (None, format!("ceiling-{}", i % keys), payload.clone())),
    )
    .await?;
    Ok(records as f64 / started.elapsed().as_secs_f64())
}

pub(crate) fn webhook(order: Uuid, i: usize) -> Result<(Vec<u8>, String), String> {
    let body = json!({"id": format!("evt_bench_{i}"), "type": "payment_intent.succeeded", "created": Utc::now().timestamp(),
                      "data": {"object": {"id": format!("pi_bench_{i}"), "amount": 2000, "currency": "usd",
                                          "metadata": {"order_id": order}}}});
    let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let header = signature::sign(SECRET.as_bytes(), &bytes, Utc::now().timestamp());
    Ok((bytes, header))
}

/// Delivers one webhook on a kept-alive connection; its latency in milliseconds.
async fn deliver(connection: &mut Connection, order: Uuid, i: usize) -> Result<f64, String> {
    let (bytes, header) = webhook(order, i)?;
    let started = Instant::now();
    let headers = [
        ("Stripe-Signature", header.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = connection
        .send("POST", "/v1/webhooks/payments", &headers, &bytes)
        .await
        .map_err(|e| format!("webhook {i}: {e}"))?;
    if r.status != 200 {
        return Err(format!(
            "webhook {i} answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// `clients` delivery workers, each on its own kept-alive connection, sharing the orders.
pub(crate) async fn deliver_all(
    addr: SocketAddr,
    orders: &[Uuid],
    offset: usize,
    clients: usize,
) -> Result<Vec<f64>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let orders = Arc::new(orders.to_vec());
    let mut workers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (next, orders) = (next.clone(), orders.clone());
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(addr).await.map_err(|e| e.to_string())?;
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(order) = orders.get(i) else {
                    return Ok::<_, String>(latencies);
                };
                latencies.push(deliver(&mut connection, *order, offset + i).await?);
            }
        }));
    }
    let mut all = Vec::with_capacity(orders.len());
    for w in workers {
        all.extend(w.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// Delivers the orders at a steady `rate` per second over a pool of kept-alive connections.
async fn deliver_paced(
    addr: SocketAddr,
    orders: &[Uuid],
    offset: usize,
    rate: usize,
) -> Result<Vec<f64>, String> {
    let (free_tx, free_rx) = tokio::sync::mpsc::channel::<Connection>(64);
    for _ in 0..32 {
        let connection = Connection::open(addr).await.map_err(|e| e.to_string())?;
        free_tx.send(connection).await.map_err(|e| e.to_string())?;
    }
    let free_rx = Arc::new(tokio::sync::Mutex::new(free_rx));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut inflight = Vec::with_capacity(orders.len());
    for (i, order) in orders.iter().enumerate() {
        ticker.tick().await;
        let (free_tx, free_rx, order) = (free_tx.clone(), free_rx.clone(), *order);
        inflight.push(tokio::spawn(async move {
            let mut connection = free_rx
                .lock()
                .await
                .recv()
                .await
                .ok_or("connection pool closed")?;
            let latency = deliver(&mut connection, order, offset + i).await?;
            let _ = free_tx.send(connection).await;
            Ok::<f64, String>(latency)
        }));
    }
    let mut latencies = Vec::with_capacity(orders.len());
    for task in inflight {
        latencies.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok(latencies)
}

/// Waits until the raffle has sold `target` tickets. Reads the raffle's counter, one row, so
/// the polling costs the machine nothing next to the pipeline it measures.
async fn wait_issued(db: &DbTarget, target: i64, deadline: Duration) -> Result<Instant, String> {
    let client = db
        .connect("raffle-bench")
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        let done: i64 = client
            .query_one(
                "SELECT coalesce(sum(total_sold), 0)::bigint FROM catalog.raffle_events",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if done >= target {
            return Ok(Instant::now());
        }
        if started.elapsed() > deadline {
            return Err(format!(
                "only {done} of {target} tickets were issued within {deadline:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `raffle ingest serve` on a free local port with `env` and waits until it answers.
pub(crate) async fn start_ingest(
    env: &[(&'static str, String)],
) -> Result<(crate::bench::Service, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut env = env.to_vec();
    env.push(("RAFFLE_INGEST_ADDR", addr.to_string()));
    let ingest = spawn(&exe, &["ingest", "serve"], &env)?;
    let started = Instant::now();
    loop {
        if let Ok(r) = request(addr, "GET", "/health", &[], b"").await
            && r.status == 200
        {
            return Ok((ingest, addr));
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("ingest did not come up within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the benchmark against the stack `config` points at, in a database and topics of its own.
pub async fn pipeline(
    config: &StackConfig,
    brokers: &str,
    options: &BenchOptions,
    progress: impl Fn(&str),
) -> Result<BenchReport, String> {
    let total = options.orders + options.paced_orders;
    let tickets_per_order = 5;
    let tickets = |orders: usize| (orders * tickets_per_order) as i64;
    if tickets(total) > 500_000 {
        return Err(format!(
            "{total} orders of 5 tickets need more numbers than the benchmark raffle holds (500,000)"
        ));
    }
    let bench = BenchEnv::create(config, brokers, "pipeline").await?;
    let (run, db, pool, topics) = (
        bench.run.clone(),
        bench.db.clone(),
        bench.pool.clone(),
        bench.topics.clone(),
    );
    let ceiling_topic = format!("{run}.ceiling");
    platform::kafka::ensure_topics(
        brokers,
        &[(&ceiling_topic, topics.sales_partitions)],
        topics.replication,
    )
    .await
    .map_err(|e| e.to_string())?;

    progress("measuring the broker's raw produce rate (the ceiling)");
    let ceiling = broker_ceiling(brokers, &ceiling_topic, total.max(20_000), 64).await?;
    // One raffle's online sales share one key (one range, one sequence): one partition.
    let ceiling_one_partition =
        broker_ceiling(brokers, &ceiling_topic, total.max(20_000), 1).await?;

    progress("seeding a raffle and pending orders");
    let seed = crate::seed::Options {
        rsu_count: 0,
        max_tickets: 500_000,
        online_end: 550_000,
        ..Default::default()
    };
    let scenario = crate::seed::raffle_on_sale(&pool, &seed)
        .await
        .map_err(|p| p.to_string())?;
    let client = pool.get().await.map_err(|e| e.to_string())?;
    // Ids as checkout makes them (time-ordered), paid in the order they were created.
    let orders: Vec<Uuid> = (0..total).map(|_| Uuid::now_v7()).collect();
    client
        .execute(
            "INSERT INTO sales.orders (id, raffle_id, package_id, validation_number, ticket_count, total_amount_minor, currency, source)
             SELECT u.id, $1, $2, 'VAL-B' || lpad(u.g::text, 11, '0'), 5, 2000, 'USD', 'online'
               FROM unnest($3::uuid[]) WITH ORDINALITY AS u(id, g)",
            &[&scenario.raffle_id, &scenario.package_id, &orders],
        )
        .await
        .map_err(|e| e.to_string())?;
    drop(client);

    let mut env = bench.service_env(brokers);
    env.push(("INGEST_WEBHOOK_SECRET", SECRET.to_owned()));
    let (ingest, addr) = start_ingest(&env).await?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let allocator = spawn(&exe, &["allocator", "run"], &env)?;
    // Let the allocator take its partition leases before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;

    progress(&format!(
        "sending {} webhooks from {} concurrent clients",
        options.orders, options.concurrency
    ));
    let (throughput, paced) = orders.split_at(options.orders);
    let started = Instant::now();
    let loaded = deliver_all(addr, throughput, 0, options.concurrency).await?;
    let acknowledged = started.elapsed();
    let finished = wait_issued(&db, tickets(options.orders), Duration::from_secs(600)).await?;
    let elapsed = finished - started;

    progress(&format!(
        "sending {} webhooks at a steady {}/s",
        paced.len(),
        options.paced_rate
    ));
    let steady = deliver_paced(addr, paced, options.orders, options.paced_rate).await?;
    wait_issued(&db, tickets(total), Duration::from_secs(600)).await?;

    let memory = json!({
        "ingest": peak_rss_mib(ingest.0.id()),
        "allocator": peak_rss_mib(allocator.0.id()),
        "load_generator": peak_rss_mib(None),
    });
    drop(ingest);
    drop(allocator);
    if !options.keep {
        bench.drop_database().await;
    }
    let orders_per_s = options.orders as f64 / elapsed.as_secs_f64();
    Ok(BenchReport {
        orders: options.orders,
        tickets_per_order: tickets_per_order as i32,
        concurrency: options.concurrency,
        orders_per_s,
        tickets_per_s: orders_per_s * tickets_per_order as f64,
        webhooks_acknowledged_per_s: options.orders as f64 / acknowledged.as_secs_f64(),
        webhook_latency_at_max_load: latency(loaded),
        paced_rate_per_s: options.paced_rate,
        webhook_latency_at_paced_rate: latency(steady),
        broker_ceiling_records_per_s: ceiling,
        broker_ceiling_one_partition_records_per_s: ceiling_one_partition,
        peak_memory_mib: memory,
        machine: machine(),
    })
}
