//! `raffle bench jackpot-stream --subscribers N`: a stadium's screens on the live jackpot.
//! The displays service runs as its own process (`raffle displays run`); this process holds N
//! Server-Sent-Event streams open on it, then moves the jackpot U times (one ticket event
//! produced to the tickets topic at a time) and measures, for every update, how long after the
//! event was produced each screen had it, and how many screens got it at all.
//!
//! The floor in the same run: the feed looks for changes every `Feed::REFRESH`, and the
//! consumer lingers up to 20 ms for a batch; the rest is the fan-out to N connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use platform::config::StackConfig;
use platform::http_client::EventStream;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::bench::{BenchEnv, Latency, latency, machine, peak_rss_mib, spawn};

pub struct JackpotBenchOptions {
    pub subscribers: usize,
    pub updates: usize,
    pub keep: bool,
}

#[derive(Debug, Serialize)]
pub struct UpdateFigures {
    pub update: usize,
    pub delivered: usize,
    pub latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct JackpotBenchReport {
    pub subscribers_asked: usize,
    /// Streams open (first value received) when the updates began.
    pub subscribers_held: usize,
    pub connect_seconds: f64,
    pub updates: usize,
    /// Every update's delivery, over all screens.
    pub latency_all: Latency,
    /// Deliveries later than a second, over all updates and screens (the target: none).
    pub later_than_1s: usize,
    /// Deliveries that never came within 10 s of their update.
    pub missed: usize,
    pub per_update: Vec<UpdateFigures>,
    pub feed_refresh_ms: u64,
    pub displays_peak_memory_mib: f64,
    pub bench_peak_memory_mib: f64,
    pub machine: String,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub async fn run(
    config: &StackConfig,
    brokers: &str,
    options: &JackpotBenchOptions,
    progress: impl Fn(&str),
) -> Result<JackpotBenchReport, String> {
    let bench = BenchEnv::create(config, brokers, "jackpot").await?;
    let raffle = crate::seed::raffle_on_sale(
        &bench.pool,
        &crate::seed::Options {
            rsu_count: 0,
            ..Default::default()
        },
    )
    .await
    .map_err(err)?
    .raffle_id;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(err)?
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut env = bench.service_env(brokers);
    env.push(("RAFFLE_DISPLAYS_ADDR", addr.to_string()));
    let exe = std::env::current_exe().map_err(err)?;
    let displays = spawn(&exe, &["displays", "run"], &env)?;
    let pid = displays.0.id();
    let path = format!("/v1/raffles/{raffle}/jackpot/stream");
    let started = Instant::now();
    loop {
        match platform::http_client::request(
            addr,
            "GET",
            &format!("/v1/raffles/{raffle}/jackpot"),
            &[],
            b"",
        )
        .await
        {
            Ok(r) if r.status == 200 => break,
            _ if started.elapsed() > Duration::from_secs(60) => {
                return Err("the displays service did not answer within 60 s".into());
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }

    progress(&format!("opening {} streams", options.subscribers));
    let (deliveries, mut received) = mpsc::unbounded_channel::<(i64, Instant)>();
    let held = Arc::new(AtomicUsize::new(0));
    let opening = Arc::new(tokio::sync::Semaphore::new(256));
    let connect_started = Instant::now();
    let mut screens = Vec::with_capacity(options.subscribers);
    for _ in 0..options.subscribers {
        let (deliveries, held, opening, path) = (
            deliveries.clone(),
            held.clone(),
            opening.clone(),
            path.clone(),
        );
        screens.push(tokio::spawn(async move {
            let mut stream = {
                let _permit = opening.acquire().await.ok()?;
                let mut stream = EventStream::open(addr, &path).await.ok()?;
                stream.next().await.ok()??;
                stream
            };
            held.fetch_add(1, Ordering::Relaxed);
            while let Ok(Some(event)) = stream.next().await {
                let at = Instant::now();
                let sold = serde_json::from_str::<serde_json::Value>(&event.data)
                    .ok()
                    .and_then(|v| v["tickets_sold"].as_i64())
                    .unwrap_or(-1);
                if deliveries.send((sold, at)).is_err() {
                    break;
                }
            }
            Some(())
        }));
    }
    drop(deliveries);
    while held.load(Ordering::Relaxed) < options.subscribers
        && connect_started.elapsed() < Duration::from_secs(120)
        && !screens.iter().all(|s| s.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let subscribers_held = held.load(Ordering::Relaxed);
    progress(&format!(
        "{subscribers_held} streams open in {connect_seconds:.1} s; moving the jackpot {} times",
        options.updates
    ));

    let producer = platform::kafka::producer(brokers, 60_000).map_err(err)?;
    let mut per_update = Vec::new();
    let mut all = Vec::new();
    let (mut later, mut missed) = (0, 0);
    for update in 1..=options.updates {
        let event = crate::bench::ledger::sale(raffle, update);
        let payload = schemas::encode(&event).map_err(err)?;
        let key = raffle.to_string();
        let sent = Instant::now();
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&bench.topics.tickets)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e.to_string())?;
        let wanted = 5 * update as i64;
        let mut samples = Vec::with_capacity(subscribers_held);
        let deadline = sent + Duration::from_secs(10);
        while samples.len() < subscribers_held {
            match tokio::time::timeout_at(deadline.into(), received.recv()).await {
                Ok(Some((sold, at))) if sold == wanted => {
                    samples.push(at.duration_since(sent).as_secs_f64() * 1e3);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        missed += subscribers_held - samples.len();
        later += samples.iter().filter(|ms| **ms > 1_000.0).count();
        all.extend_from_slice(&samples);
        per_update.push(UpdateFigures {
            update,
            delivered: samples.len(),
            latency: latency(samples),
        });
        // Updates a little apart, as sales move a real jackpot.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let displays_peak = peak_rss_mib(pid);
    for s in &screens {
        s.abort();
    }
    drop(displays);
    if !options.keep {
        bench.drop_database().await;
    }
    Ok(JackpotBenchReport {
        subscribers_asked: options.subscribers,
        subscribers_held,
        connect_seconds,
        updates: options.updates,
        latency_all: latency(all),
        later_than_1s: later,
        missed,
        per_update,
        feed_refresh_ms: displays::Feed::REFRESH.as_millis() as u64,
        displays_peak_memory_mib: displays_peak,
        bench_peak_memory_mib: peak_rss_mib(None),
        machine: machine(),
    })
}
