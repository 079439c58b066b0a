//! `raffle bench ledger`: journal entries per second from the ticket stream into Postgres, by
//! `raffle ledger run` as its own process, against the raw consume rate of the same topic
//! measured in the same run.

use std::time::{Duration, Instant};

use crate::bench::{BenchEnv, machine, peak_rss_mib, spawn};
use chrono::Utc;
use platform::config::StackConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use schemas::{
    Currency, DrawNumber, RangePartition, RangeRef, SaleSource, TicketEvent, TicketEventKind,
};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

pub struct LedgerBenchOptions {
    pub entries: usize,
    /// Raffles the sales are spread over (each raffle is one chain, one partition).
    pub raffles: usize,
    pub keep: bool,
}

#[derive(Debug, Serialize)]
pub struct LedgerBenchReport {
    pub entries: usize,
    pub raffles: usize,
    pub entries_per_s: f64,
    pub consume_ceiling_records_per_s: f64,
    pub peak_memory_mib: serde_json::Value,
    pub machine: String,
}

pub(crate) fn sale(raffle: Uuid, i: usize) -> TicketEvent {
    TicketEvent {
        event_id: Uuid::now_v7(),
        kind: TicketEventKind::TicketsIssued,
        raffle_id: raffle,
        order_id: Some(Uuid::now_v7()),
        sale_event_id: Uuid::now_v7(),
        range_partition: RangePartition {
            raffle_id: raffle,
            range: RangeRef::Range(Uuid::nil()),
        },
        source: SaleSource::Online,
        rsu_id: None,
        allocation_id: None,
        package_id: None,
        seller_id: None,
        amount_minor: 2000,
        currency: Currency::parse("USD").unwrap_or_else(|_| unreachable!("USD is a currency")),
        draw_numbers: (0..5)
            .filter_map(|k| DrawNumber::new(50_001 + 5 * i as i64 + k).ok())
            .collect(),
        validation_number: None,
        reason: None,
        occurred_at_us: Utc::now().timestamp_micros(),
    }
}

/// Reads the whole topic with a plain consumer: the rate no consumer of it can beat.
async fn consume_ceiling(
    brokers: &str,
    topic: &str,
    partitions: i32,
    records: usize,
) -> Result<f64, String> {
    let consumer: StreamConsumer = platform::kafka::base_config(brokers)
        .set("group.id", "bench-ceiling")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut seen = 0;
    while seen < records {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(Ok(_)) => seen += 1,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("read only {seen} of {records} records")),
        }
    }
    Ok(records as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(
    config: &StackConfig,
    brokers: &str,
    options: &LedgerBenchOptions,
    progress: impl Fn(&str),
) -> Result<LedgerBenchReport, String> {
    let bench = BenchEnv::create(config, brokers, "ledger").await?;
    progress("seeding raffles");
    let mut raffles = Vec::new();
    for _ in 0..options.raffles.max(1) {
        let s = crate::seed::raffle_on_sale(
            &bench.pool,
            &crate::seed::Options {
                rsu_count: 0,
                ..Default::default()
            },
        )
        .await
        .map_err(|p| p.to_string())?;
        raffles.push(s.raffle_id);
    }
    progress(&format!("publishing {} ticket events", options.entries));
    let producer = platform::kafka::producer(brokers, 60_000).map_err(|e| e.to_string())?;
    let topic = bench.topics.tickets.clone();
    let mut encoded = Vec::with_capacity(options.entries);
    // Raffle k's chain on partition k (mod the partitions): as many parallel chains as there
    // are raffles and partitions in every run. Left to the key's hash, four raffles share four
    // partitions unevenly in most runs (all four apart in 3 of 32), and the busiest partition
    // sets the pace of the whole run.
    let partitions = bench.topics.tickets_partitions.max(1);
    for i in 0..options.entries {
        let k = i % raffles.len();
        let event = sale(raffles[k], i);
        encoded.push((
            Some((k % partitions as usize) as i32),
            event.raffle_id.to_string(),
            schemas::encode(&event).map_err(|e| e.to_string())?,
        ));
    }
    crate::bench::produce_all(&producer, &topic, encoded.into_iter()).await?;
    progress("measuring the raw consume rate (the ceiling)");
    let ceiling = consume_ceiling(
        brokers,
        &topic,
        bench.topics.tickets_partitions,
        options.entries,
    )
    .await?;

    progress("posting with `raffle ledger run`");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let ledger = spawn(&exe, &["ledger", "run"], &bench.service_env(brokers))?;
    let client = bench
        .db
        .connect("raffle-bench")
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let posted: i64 = client
            .query_one(
                "SELECT coalesce(sum(sequence), 0)::bigint FROM ledger.chain_heads",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if posted >= options.entries as i64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            return Err(format!(
                "only {posted} of {} entries posted in 15 minutes",
                options.entries
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let memory =
        json!({"ledger": peak_rss_mib(ledger.0.id()), "load_generator": peak_rss_mib(None)});
    drop(ledger);
    drop(client);
    if !options.keep {
        bench.drop_database().await;
    }
    Ok(LedgerBenchReport {
        entries: options.entries,
        raffles: raffles.len(),
        entries_per_s: options.entries as f64 / elapsed.as_secs_f64(),
        consume_ceiling_records_per_s: ceiling,
        peak_memory_mib: memory,
        machine: machine(),
    })
}
