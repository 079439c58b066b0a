//! `raffle bench draw --tickets N`: the work a draw does before it records anything — the
//! ledger chain check, loading the eligible tickets, recomputing the seal against them, and the
//! selection — over a sealed raffle of N sold tickets, timed several times in one run.

use std::time::Instant;

use crate::bench::{BenchEnv, machine, peak_rss_mib};
use platform::config::StackConfig;
use serde::Serialize;

use crate::fixture::{FixtureOptions, sealed_raffle};
use draw_engine::{Timings, prepare, select_winners};

pub struct DrawBenchOptions {
    pub tickets: i64,
    pub runs: usize,
    pub keep: bool,
}

#[derive(Debug, Serialize)]
pub struct DrawRun {
    #[serde(flatten)]
    pub timings: Timings,
    pub selection_ms: f64,
    pub total_ms: f64,
    /// The ceiling: Postgres streaming the same rows to a client that only counts them.
    pub raw_row_stream_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct DrawBenchReport {
    pub tickets_sold: i64,
    pub tickets_eligible: usize,
    pub winners: usize,
    pub fixture_seconds: f64,
    pub runs: Vec<DrawRun>,
    pub median_total_seconds: f64,
    pub target_seconds: f64,
    pub peak_memory_mib: f64,
    pub target_memory_mib: f64,
    pub machine: String,
}

pub async fn run(
    config: &StackConfig,
    brokers: &str,
    options: &DrawBenchOptions,
    progress: impl Fn(&str),
) -> Result<DrawBenchReport, String> {
    let bench = BenchEnv::create(config, brokers, "draw").await?;
    progress(&format!(
        "building and sealing a raffle of {} sold tickets (not timed)",
        options.tickets
    ));
    let started = Instant::now();
    let fixture = sealed_raffle(
        &bench.pool,
        brokers,
        &bench.topics,
        &FixtureOptions {
            tickets: options.tickets,
            void_every: 1000,
            unsold: 1000,
            early_bird_winners: 3,
            claim_period_days: 30,
            seed_key: None,
        },
    )
    .await?;
    let fixture_seconds = started.elapsed().as_secs_f64();
    let client = bench.pool.get().await.map_err(|e| e.to_string())?;
    let mut runs = Vec::new();
    let mut eligible = 0;
    let mut winners = 0;
    for i in 0..options.runs.max(1) {
        progress(&format!("run {} of {}", i + 1, options.runs.max(1)));
        let raw = Instant::now();
        let rows = client
            .query_raw(
                "SELECT draw_number, id FROM sales.tickets WHERE raffle_id = $1 AND state <> 'voided' ORDER BY draw_number",
                [&fixture.raffle_id],
            )
            .await
            .map_err(|e| e.to_string())?;
        futures::pin_mut!(rows);
        let mut counted = 0usize;
        while let Some(row) = futures::StreamExt::next(&mut rows).await {
            row.map_err(|e| e.to_string())?;
            counted += 1;
        }
        let raw_row_stream_ms = raw.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let prepared = prepare(&**client, fixture.raffle_id)
            .await
            .map_err(|e| e.to_string())?;
        let selecting = Instant::now();
        let chosen = select_winners(&prepared).map_err(|e| e.to_string())?;
        let selection_ms = selecting.elapsed().as_secs_f64() * 1e3;
        eligible = prepared.eligible.len();
        if counted != eligible {
            return Err(format!(
                "the raw stream counted {counted} rows, the draw loaded {eligible}"
            ));
        }
        winners = chosen.len();
        runs.push(DrawRun {
            timings: prepared.timings,
            selection_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            raw_row_stream_ms,
        });
    }
    let mut totals: Vec<f64> = runs.iter().map(|r| r.total_ms).collect();
    totals.sort_by(f64::total_cmp);
    let median = totals[totals.len() / 2] / 1e3;
    drop(client);
    if !options.keep {
        bench.drop_database().await;
    }
    Ok(DrawBenchReport {
        tickets_sold: fixture.sold,
        tickets_eligible: eligible,
        winners,
        fixture_seconds,
        runs,
        median_total_seconds: median,
        target_seconds: 10.0,
        peak_memory_mib: peak_rss_mib(None),
        target_memory_mib: 2048.0,
        machine: machine(),
    })
}
