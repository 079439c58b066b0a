//! `raffle bench refunds --refunds N`: the refunds worker paying N owed refunds through the
//! provider stand-in at the provider's rate limit — the record 50/50's 12,800 refunds, which
//! took weeks by e-mail, should take about N / 25 seconds. The ceiling is the limit itself.

use std::time::{Duration, Instant};

use platform::config::StackConfig;
use serde::Serialize;

use crate::bench::{BenchEnv, machine, peak_rss_mib};
use crate::stripe::{StandInConfig, StripeStandIn};

pub struct RefundsBenchOptions {
    pub refunds: usize,
    /// The provider's limit, requests a second.
    pub provider_rate: usize,
    /// What the worker is set to ask, requests a second.
    pub worker_rate: usize,
    pub keep: bool,
}

#[derive(Debug, Serialize)]
pub struct RefundsBenchReport {
    pub refunds: usize,
    pub provider_rate_limit_per_s: usize,
    pub worker_rate_per_s: usize,
    pub seconds: f64,
    pub refunds_per_s: f64,
    /// `refunds / limit`: no worker can pay them faster through this provider.
    pub ceiling_seconds: f64,
    pub provider_requests: usize,
    pub rate_limited_answers: usize,
    /// Refunds the provider made more than once for one payment (must be 0).
    pub paid_twice: usize,
    pub peak_memory_mib: f64,
    pub machine: String,
}

pub async fn run(
    config: &StackConfig,
    brokers: &str,
    options: &RefundsBenchOptions,
    progress: impl Fn(&str),
) -> Result<RefundsBenchReport, String> {
    let bench = BenchEnv::create(config, brokers, "refunds").await?;
    let raffle = crate::seed::raffle_on_sale(
        &bench.pool,
        &crate::seed::Options {
            rsu_count: 0,
            ..Default::default()
        },
    )
    .await
    .map_err(|p| p.to_string())?;
    let provider = StripeStandIn::start(StandInConfig {
        rate_per_second: options.provider_rate.max(1),
        settle_immediately: true,
        ..Default::default()
    })
    .await?;
    progress(&format!(
        "owing {} refunds of $20.00 (not timed)",
        options.refunds
    ));
    let payments: Vec<String> = (0..options.refunds)
        .map(|i| format!("pi_bench_{i:06}"))
        .collect();
    for pi in &payments {
        provider.charge(pi, 2000);
    }
    let client = bench.pool.get().await.map_err(|e| e.to_string())?;
    for chunk in payments.chunks(1000) {
        let owed: Vec<refunds::NewObligation<'_>> = chunk
            .iter()
            .map(|pi| refunds::NewObligation {
                raffle_id: raffle.raffle_id,
                order_id: None,
                source_key: format!("bench:{pi}"),
                reason_code: "raffle_sold_out",
                reason: "sold out before the payment came",
                provider: "stripe",
                payment_reference: pi,
                amount: schemas::Money::of(2000, "USD").unwrap_or_else(|_| unreachable!()),
            })
            .collect();
        refunds::obligations::owe(&**client, &owed)
            .await
            .map_err(|e| e.to_string())?;
    }
    drop(client);
    let api = refunds::StripeApi::new(&provider.base_url(), &provider.config.secret_key)?;
    let worker = refunds::WorkerConfig {
        rate_per_second: u32::try_from(options.worker_rate.max(1)).unwrap_or(u32::MAX),
        ..Default::default()
    };
    let pacer = refunds::Pacer::new(worker.rate_per_second);
    progress("paying them through the provider stand-in");
    let started = Instant::now();
    loop {
        refunds::run_once(&bench.pool, &api, &worker, &pacer)
            .await
            .map_err(|e| e.to_string())?;
        let client = bench.pool.get().await.map_err(|e| e.to_string())?;
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM refunds.obligations WHERE NOT (state = 'succeeded' AND booked = 'paid')",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if left == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(format!("{left} refunds still unpaid after an hour"));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let counts = provider.counts();
    let paid_twice = provider
        .refunds_per_payment()
        .values()
        .filter(|n| **n > 1)
        .count();
    let report = RefundsBenchReport {
        refunds: options.refunds,
        provider_rate_limit_per_s: options.provider_rate,
        worker_rate_per_s: options.worker_rate,
        seconds,
        refunds_per_s: options.refunds as f64 / seconds,
        ceiling_seconds: options.refunds as f64 / options.provider_rate.max(1) as f64,
        provider_requests: counts.requests,
        rate_limited_answers: counts.rate_limited,
        paid_twice,
        peak_memory_mib: peak_rss_mib(None),
        machine: machine(),
    };
    if !options.keep {
        bench.drop_database().await;
    }
    Ok(report)
}
