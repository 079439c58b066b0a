//! What every benchmark command shares: latency percentiles, peak memory of a process, the
//! machine's description, and services started as child processes that die with the run;
//! and the benchmark commands themselves, one per module.

pub mod checkout;
pub mod draw;
pub mod jackpot;
pub mod ledger;
pub mod pipeline;
pub mod record_day;
pub mod refunds;

use std::process::Stdio;

use serde::Serialize;
use tokio::process::{Child, Command};

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn latency(mut samples: Vec<f64>) -> Latency {
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Latency {
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: samples.last().copied().unwrap_or(0.0),
    }
}

pub fn peak_rss_mib(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".into(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<u64>().ok())
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    format!(
        "{} cores, {} GiB, {cpu}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        mem / 1024 / 1024
    )
}

/// Kills the child when dropped: a failed benchmark leaves no service behind.
pub struct Service(pub Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

pub fn spawn(
    exe: &std::path::Path,
    args: &[&str],
    env: &[(&str, String)],
) -> Result<Service, String> {
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .spawn()
        .map(Service)
        .map_err(|e| format!("cannot start `raffle {}`: {e}", args.join(" ")))
}

/// A database and topics of the benchmark's own, named after the run, on the stack the
/// configuration points at.
pub struct BenchEnv {
    pub run: String,
    pub server: platform::db::DbTarget,
    pub db: platform::db::DbTarget,
    pub pool: deadpool_postgres::Pool,
    pub topics: platform::config::TopicNames,
    /// The benchmark database as a URL, for the services it starts.
    pub database_url: String,
}

impl BenchEnv {
    pub async fn create(
        config: &platform::config::StackConfig,
        brokers: &str,
        kind: &str,
    ) -> Result<Self, String> {
        let run = format!("bench{kind}{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
        let server =
            platform::db::DbTarget::parse(&config.database_url).map_err(|e| e.to_string())?;
        let db = server.with_dbname(&format!("raffle_{run}"));
        db.ensure_database().await.map_err(|e| e.to_string())?;
        db.migrate().await.map_err(|e| e.to_string())?;
        let pool = db.pool(8).map_err(|e| e.to_string())?;
        let topics = platform::config::TopicNames::with_prefix(&format!("{run}."));
        platform::kafka::ensure_topics(brokers, &topics.all(), topics.replication)
            .await
            .map_err(|e| e.to_string())?;
        let (base, _) = config
            .database_url
            .rsplit_once('/')
            .unwrap_or((&config.database_url, ""));
        let database_url = format!("{base}/raffle_{run}");
        Ok(Self {
            run,
            server,
            db,
            pool,
            topics,
            database_url,
        })
    }

    /// The environment a service started for this run needs.
    pub fn service_env(&self, brokers: &str) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("KAFKA_BROKERS", brokers.to_owned()),
            ("RAFFLE_TOPIC_PREFIX", format!("{}.", self.run)),
            ("RUST_LOG", "warn".to_owned()),
        ]
    }

    /// Drops the benchmark's database (its topics stay with the broker's data).
    pub async fn drop_database(self) {
        self.pool.close();
        if let Ok(admin) = self
            .server
            .with_dbname("postgres")
            .connect("raffle-bench")
            .await
        {
            let _ = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS raffle_{} WITH (FORCE)",
                    self.run
                ))
                .await;
        }
    }
}

/// Produces every `(partition, key, payload)` to `topic` with up to 5,000 in flight and waits
/// for every acknowledgement: the way a benchmark loads a topic as fast as the broker takes
/// it. A record without a partition goes where the producer's partitioner puts its key.
pub async fn produce_all(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    records: impl Iterator<Item = (Option<i32>, String, Vec<u8>)>,
) -> Result<usize, String> {
    use futures::StreamExt;
    let sends = futures::stream::iter(records)
        .map(|(partition, key, payload)| {
            let producer = producer.clone();
            async move {
                let mut record = rdkafka::producer::FutureRecord::to(topic)
                    .key(&key)
                    .payload(&payload);
                record.partition = partition;
                producer
                    .send(record, std::time::Duration::from_secs(60))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e.to_string())
            }
        })
        .buffer_unordered(5_000);
    futures::pin_mut!(sends);
    let mut sent = 0;
    while let Some(r) = sends.next().await {
        r?;
        sent += 1;
    }
    Ok(sent)
}
