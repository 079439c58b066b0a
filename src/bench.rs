//! `raffle bench …`: benchmark commands that print their figures (`--json` for one object).

use clap::Subcommand;
use platform::StackConfig;

#[derive(Subcommand)]
pub enum BenchAction {
    /// Signed webhooks through the real ingest server, broker and allocator.
    Pipeline {
        /// Orders (5-ticket packages) sent as fast as the clients can.
        #[arg(long, default_value_t = 20_000)]
        orders: usize,
        /// Concurrent webhook clients. Each waits for its answer, which comes only after the
        /// broker's ack (15-20 ms under load), so C clients cannot send more than about
        /// C / 18 ms per second: 64 measured the clients (~3,100/s here), not the pipeline.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Orders then sent at a steady rate to measure latency under the target load.
        #[arg(long, default_value_t = 5_000)]
        paced_orders: usize,
        #[arg(long, default_value_t = 1_000)]
        paced_rate: usize,
        /// Keep the benchmark's database afterwards.
        #[arg(long)]
        keep: bool,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Buyers checking out through the real ingest server, each checkout holding its tickets
    /// for the payment, then a sell-out with more buyers than tickets.
    Checkout {
        #[arg(long, default_value_t = 20_000)]
        checkouts: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Tickets of the raffle the sell-out phase empties.
        #[arg(long, default_value_t = 10_000)]
        sell_out_tickets: i64,
        /// Buyers in the sell-out phase, as a multiple of the orders that fit.
        #[arg(long, default_value_t = 3)]
        sell_out_demand: usize,
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: bool,
    },
    /// Journal entries per second from the ticket stream into Postgres.
    Ledger {
        #[arg(long, default_value_t = 100_000)]
        entries: usize,
        #[arg(long, default_value_t = 4)]
        raffles: usize,
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: bool,
    },
    /// The draw's work before it records anything (ledger check, ticket load, seal check,
    /// selection) over a sealed raffle of N sold tickets.
    Draw {
        #[arg(long, default_value_t = 10_000_000)]
        tickets: i64,
        /// Timed runs over the same raffle; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: bool,
    },
    /// A raffle the size of the record 50/50 from the first webhook to the verified export:
    /// sell-out, refunds at the provider's limit, close, seal, draw, payout, report, export.
    RecordDay {
        /// Orders of five tickets that sell the raffle out.
        #[arg(long, default_value_t = 300_000)]
        orders: usize,
        /// Payments after the sell-out, refunded through the provider stand-in.
        #[arg(long, default_value_t = 12_800)]
        refunds: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// The provider's limit, requests a second.
        #[arg(long, default_value_t = 25)]
        rate: usize,
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: bool,
    },
    /// A stadium's screens on the live jackpot: N Server-Sent-Event streams held open on the
    /// displays service while the jackpot moves; how long each update takes to reach them.
    JackpotStream {
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
        #[arg(long, default_value_t = 20)]
        updates: usize,
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: bool,
    },
    /// The refunds worker paying N owed refunds through the provider stand-in at its rate
    /// limit (the record 50/50 owed 12,800).
    Refunds {
        #[arg(long, default_value_t = 12_800)]
        refunds: usize,
        /// The provider's limit, requests a second (Stripe's default per endpoint).
        #[arg(long, default_value_t = 25)]
        rate: usize,
        /// What the worker asks, requests a second (default: the limit).
        #[arg(long)]
        worker_rate: Option<usize>,
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Steps go to stderr, unless the report is to be one JSON object.
fn progress(json: bool) -> impl Fn(&str) {
    move |step| {
        if !json {
            eprintln!("… {step}");
        }
    }
}

pub async fn run(action: BenchAction) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    // Every benchmark runs on the local stack (or the one KAFKA_BROKERS / DATABASE_URL name).
    let brokers = platform::devstack::up(&config).await?.broker.brokers;
    match action {
        BenchAction::JackpotStream {
            subscribers,
            updates,
            keep,
            json,
        } => {
            let options = scenario::bench::jackpot::JackpotBenchOptions {
                subscribers: subscribers.max(1),
                updates: updates.max(1),
                keep,
            };
            let report = scenario::bench::jackpot::run(&config, &brokers, &options, progress(json))
                .await
                .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("jackpot-stream benchmark on {}", report.machine);
                println!(
                    "  streams held            {} of {} (opened in {:.1} s)",
                    report.subscribers_held, report.subscribers_asked, report.connect_seconds
                );
                let l = &report.latency_all;
                println!(
                    "  update to every screen  p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms over {} updates ({} later than 1 s, {} missed; the feed looks every {} ms)",
                    l.p50_ms,
                    l.p99_ms,
                    l.max_ms,
                    report.updates,
                    report.later_than_1s,
                    report.missed,
                    report.feed_refresh_ms
                );
                println!(
                    "  peak memory (MiB)       displays {:.0}, the screens' side {:.0}",
                    report.displays_peak_memory_mib, report.bench_peak_memory_mib
                );
            }
            Ok(())
        }
        BenchAction::RecordDay {
            orders,
            refunds,
            concurrency,
            rate,
            keep,
            json,
        } => {
            let options = scenario::bench::record_day::RecordDayOptions {
                orders: orders.max(1),
                refunds,
                concurrency: concurrency.max(1),
                provider_rate: rate.max(1),
                keep,
            };
            let report =
                scenario::bench::record_day::run(&config, &brokers, &options, progress(json))
                    .await
                    .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("record-day benchmark on {}", report.machine);
                println!(
                    "  {} orders, {} tickets issued, {} payments after the sell-out",
                    report.orders, report.tickets_issued, report.payments_after_sell_out
                );
                for s in &report.steps {
                    println!(
                        "  {:<18} {:>8.1} s  {:>7.0} MiB  {}",
                        s.step, s.seconds, s.peak_memory_mib, s.detail
                    );
                }
                println!("  whole run          {:>8.1} s", report.total_seconds);
                println!(
                    "  refunds owed {}, paid twice {}; payout lines {} of {} matched, clearing after it {}; checks {}; confirmed {}; export verified {}; draw verified {}",
                    report.refunds_owed,
                    report.paid_twice,
                    report.payout_lines_matched,
                    report.payout_lines,
                    report.clearing_after_payout_minor,
                    report.checks_passing,
                    report.confirmed_by_finance,
                    report.export_verified,
                    report.draw_verified
                );
                println!(
                    "  services' peak memory (MiB) {}",
                    report.services_peak_memory_mib
                );
            }
            Ok(())
        }
        BenchAction::Refunds {
            refunds,
            rate,
            worker_rate,
            keep,
            json,
        } => {
            let options = scenario::bench::refunds::RefundsBenchOptions {
                refunds: refunds.max(1),
                provider_rate: rate.max(1),
                worker_rate: worker_rate.unwrap_or(rate).max(1),
                keep,
            };
            let report = scenario::bench::refunds::run(&config, &brokers, &options, progress(json))
                .await
                .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("refunds benchmark on {}", report.machine);
                println!(
                    "  refunds paid            {:>10.1} /s  ({} refunds in {:.1} s; the provider allows {}/s: ceiling {:.1} s; worker set to {}/s)",
                    report.refunds_per_s,
                    report.refunds,
                    report.seconds,
                    report.provider_rate_limit_per_s,
                    report.ceiling_seconds,
                    report.worker_rate_per_s
                );
                println!(
                    "  provider requests       {} ({} answered 429), refunds paid twice: {}",
                    report.provider_requests, report.rate_limited_answers, report.paid_twice
                );
                println!("  peak memory (MiB)       {}", report.peak_memory_mib);
            }
            Ok(())
        }
        BenchAction::Pipeline {
            orders,
            concurrency,
            paced_orders,
            paced_rate,
            keep,
            json,
        } => {
            let options = scenario::bench::pipeline::BenchOptions {
                orders,
                concurrency,
                paced_orders,
                paced_rate: paced_rate.max(1),
                keep,
            };
            let report =
                scenario::bench::pipeline::pipeline(&config, &brokers, &options, progress(json))
                    .await
                    .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("pipeline benchmark on {}", report.machine);
                println!(
                    "  orders end to end       {:>10.0} orders/s  ({} orders, {} concurrent clients)",
                    report.orders_per_s, report.orders, report.concurrency
                );
                println!(
                    "  tickets end to end      {:>10.0} tickets/s",
                    report.tickets_per_s
                );
                println!(
                    "  webhooks acknowledged   {:>10.0} /s (ingest alone: each sale durably on the broker)",
                    report.webhooks_acknowledged_per_s
                );
                println!(
                    "  broker ceiling          {:>10.0} records/s (raw idempotent produce, same run)",
                    report.broker_ceiling_records_per_s
                );
                println!(
                    "  broker ceiling, 1 key   {:>10.0} records/s (one range partition's share of the broker)",
                    report.broker_ceiling_one_partition_records_per_s
                );
                let l = &report.webhook_latency_at_max_load;
                println!(
                    "  webhook latency, max load     p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                    l.p50_ms, l.p99_ms, l.max_ms
                );
                let l = &report.webhook_latency_at_paced_rate;
                println!(
                    "  webhook latency at {}/s   p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                    report.paced_rate_per_s, l.p50_ms, l.p99_ms, l.max_ms
                );
                println!("  peak memory (MiB)       {}", report.peak_memory_mib);
            }
            Ok(())
        }
        BenchAction::Checkout {
            checkouts,
            concurrency,
            sell_out_tickets,
            sell_out_demand,
            keep,
            json,
        } => {
            let options = scenario::bench::checkout::CheckoutBenchOptions {
                checkouts: checkouts.max(1),
                concurrency: concurrency.max(1),
                sell_out_tickets: sell_out_tickets.max(5),
                sell_out_demand,
                keep,
            };
            let report =
                scenario::bench::checkout::run(&config, &brokers, &options, progress(json))
                    .await
                    .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("checkout benchmark on {}", report.machine);
                println!(
                    "  checkouts with holds    {:>10.0} /s  ({} checkouts, {} concurrent clients; every hold checked against its order)",
                    report.checkouts_per_s, report.checkouts, report.concurrency
                );
                let l = &report.checkout_latency;
                println!(
                    "  checkout latency        p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                    l.p50_ms, l.p99_ms, l.max_ms
                );
                println!(
                    "  HTTP ceiling            {:>10.0} /s (GET /health/live, same server and clients)",
                    report.http_ceiling_requests_per_s
                );
                println!(
                    "  one-row ceiling         {:>10.0} /s (one counter row updated from ingest's 32 connections)",
                    report.hot_row_ceiling_updates_per_s
                );
                let s = &report.sell_out;
                println!(
                    "  sell-out                {} buyers for {} tickets: {} orders taken, {} told sold out, {} tickets held ({:.0} answers/s)",
                    s.buyers,
                    s.max_tickets,
                    s.orders_taken,
                    s.sold_out_answers,
                    s.tickets_held,
                    s.answers_per_s
                );
                println!("  peak memory (MiB)       {}", report.peak_memory_mib);
            }
            Ok(())
        }
        BenchAction::Ledger {
            entries,
            raffles,
            keep,
            json,
        } => {
            let options = scenario::bench::ledger::LedgerBenchOptions {
                entries,
                raffles,
                keep,
            };
            let report = scenario::bench::ledger::run(&config, &brokers, &options, progress(json))
                .await
                .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("ledger benchmark on {}", report.machine);
                println!(
                    "  journal entries         {:>10.0} entries/s  ({} entries over {} raffles)",
                    report.entries_per_s, report.entries, report.raffles
                );
                println!(
                    "  consume ceiling         {:>10.0} records/s (plain consumer of the same topic, same run)",
                    report.consume_ceiling_records_per_s
                );
                println!("  peak memory (MiB)       {}", report.peak_memory_mib);
            }
            Ok(())
        }
        BenchAction::Draw {
            tickets,
            runs,
            keep,
            json,
        } => {
            let options = scenario::bench::draw::DrawBenchOptions {
                tickets,
                runs,
                keep,
            };
            let report = scenario::bench::draw::run(&config, &brokers, &options, progress(json))
                .await
                .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("draw benchmark on {}", report.machine);
                println!(
                    "  raffle                  {} sold tickets, {} eligible, {} winners (fixture built in {:.0} s, not timed)",
                    report.tickets_sold,
                    report.tickets_eligible,
                    report.winners,
                    report.fixture_seconds
                );
                for (i, r) in report.runs.iter().enumerate() {
                    println!(
                        "  run {}                   ledger {:.0} ms, ticket load {:.0} ms, seal check {:.0} ms, selection {:.1} ms: {:.2} s (ceiling: raw row stream {:.2} s)",
                        i + 1,
                        r.timings.ledger_check_ms,
                        r.timings.ticket_load_ms,
                        r.timings.seal_check_ms,
                        r.selection_ms,
                        r.total_ms / 1e3,
                        r.raw_row_stream_ms / 1e3
                    );
                }
                println!(
                    "  median                  {:>10.2} s (target < {:.0} s)",
                    report.median_total_seconds, report.target_seconds
                );
                println!(
                    "  peak memory             {:>10.0} MiB (target < {:.0} MiB)",
                    report.peak_memory_mib, report.target_memory_mib
                );
            }
            Ok(())
        }
    }
}
