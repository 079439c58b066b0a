//! What a service says about itself: liveness and readiness, served on `/health`.
//!
//! A monitor task checks, once a second, what the service depends on: Postgres (a query on a
//! pooled connection), the broker (metadata, and the high watermark of every partition the
//! service consumes) and, for a consumer service, that every partition of its topic is held
//! by a live lease — this instance's or another's, read from the advisory locks themselves —
//! and how far its stored offset is behind the broker. The endpoints answer from the latest
//! check, so a probe never waits on a stalled dependency; a check older than
//! [`STALE_AFTER`] is not believed.
//!
//! - `GET /health/live`: 200 while the process serves requests (for a supervisor's restart).
//! - `GET /health/ready` and `GET /health`: 200 when every check passes, else 503; both with
//!   the whole report as JSON, each problem named with the ids a person searches for.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use warp::Filter;
use warp::http::StatusCode;

use crate::consumer::ConsumerStats;
use crate::error_chain;
use crate::kafka::base_config;
use crate::lease::LeaseKey;

/// How often the monitor checks.
const INTERVAL: Duration = Duration::from_secs(1);
/// A report older than this says nothing about now: the monitor itself is stuck.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
/// What one check of Postgres or the broker may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What a service depends on.
pub struct HealthConfig {
    /// The service's name in reports (`ingest`, `allocator`, ...).
    pub service: String,
    pub pool: Pool,
    /// The broker, for services that use one.
    pub brokers: Option<String>,
    /// Topics the service produces to; each must exist.
    pub produces: Vec<String>,
    /// The partitions the service consumes, each of which must be held by some instance.
    pub leases: Vec<LeaseKey>,
    /// This instance's consumers, in the order of `leases`.
    pub stats: Vec<Arc<ConsumerStats>>,
    /// Report the outbox's backlog (the service that relays it).
    pub outbox: bool,
}

impl HealthConfig {
    /// A service that needs Postgres only.
    pub fn database_only(service: &str, pool: Pool) -> Self {
        Self {
            service: service.to_owned(),
            pool,
            brokers: None,
            produces: Vec::new(),
            leases: Vec::new(),
            stats: Vec::new(),
            outbox: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub consumer_group: String,
    pub topic: String,
    pub partition: i32,
    /// Some instance holds the partition's lease.
    pub owned: bool,
    /// This instance holds it.
    pub held_here: bool,
    /// The stored offset: the next record the owner will apply.
    pub next_offset: Option<i64>,
    pub high_watermark: Option<i64>,
    /// Records on the broker not yet applied.
    pub lag: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxReport {
    /// Messages committed and not yet on the broker.
    pub pending: i64,
    pub oldest_pending_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub service: String,
    pub live: bool,
    pub ready: bool,
    pub checked_at: DateTime<Utc>,
    /// Why the service is not ready, one line each.
    pub problems: Vec<String>,
    pub postgres: Check,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<Check>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxReport>,
}

/// The latest report of a service, kept current by its monitor task.
pub struct Health {
    service: String,
    latest: RwLock<Option<(Instant, Report)>>,
}

impl Health {
    /// Starts the monitor on the current runtime; it stops when the last `Arc` of the
    /// returned health is dropped.
    pub fn start(config: HealthConfig) -> Arc<Health> {
        let health = Arc::new(Health {
            service: config.service.clone(),
            latest: RwLock::new(None),
        });
        let monitor = Arc::downgrade(&health);
        tokio::spawn(async move {
            let mut probe = Probe::new(config);
            loop {
                let report = probe.check().await;
                let Some(health) = monitor.upgrade() else {
                    return;
                };
                if let Ok(mut latest) = health.latest.write() {
                    *latest = Some((Instant::now(), report));
                }
                drop(health);
                tokio::time::sleep(INTERVAL).await;
            }
        });
        health
    }

    /// The latest report; not ready when there is none yet or it is stale.
    pub fn report(&self) -> Report {
        let latest = self.latest.read().ok().and_then(|l| l.clone());
        match latest {
            Some((at, report)) if at.elapsed() <= STALE_AFTER => report,
            Some((at, mut report)) => {
                report.ready = false;
                report.problems.push(format!(
                    "the health monitor last checked {} s ago",
                    at.elapsed().as_secs()
                ));
                report
            }
            None => Report {
                service: self.service.clone(),
                live: true,
                ready: false,
                checked_at: Utc::now(),
                problems: vec!["starting: not checked yet".to_owned()],
                postgres: Check {
                    ok: false,
                    latency_ms: 0,
                    error: Some("not checked yet".to_owned()),
                },
                broker: None,
                partitions: Vec::new(),
                outbox: None,
            },
        }
    }
}

/// The monitor's state between checks: its configuration and its broker client.
struct Probe {
    config: HealthConfig,
    kafka: Option<Arc<BaseConsumer>>,
}

impl Probe {
    fn new(config: HealthConfig) -> Self {
        Self {
            config,
            kafka: None,
        }
    }

    async fn check(&mut self) -> Report {
        let mut problems = Vec::new();
        let (postgres, db) = self.check_postgres().await;
        if let Some(e) = &postgres.error {
            problems.push(format!("Postgres: {e}"));
        }
        let broker = match self.config.brokers.clone() {
            None => None,
            Some(brokers) => Some(self.check_broker(&brokers).await),
        };
        let (broker_check, watermarks) = match broker {
            None => (None, Vec::new()),
            Some((check, watermarks)) => {
                if let Some(e) = &check.error {
                    problems.push(format!("broker: {e}"));
                }
                (Some(check), watermarks)
            }
        };
        let mut partitions = Vec::with_capacity(self.config.leases.len());
        for (i, lease) in self.config.leases.iter().enumerate() {
            let stored = db.as_ref().and_then(|d| d.partitions.get(i).copied());
            let high = watermarks.get(i).copied().flatten();
            let held_here = self
                .config
                .stats
                .get(i)
                .is_some_and(|s| s.holding.load(std::sync::atomic::Ordering::Relaxed));
            // Without Postgres, only this instance's own view is known.
            let owned = stored.map_or(held_here, |(owned, _)| owned);
            let next_offset = stored.and_then(|(_, offset)| offset);
            if !owned {
                problems.push(format!("{lease}: no consumer holds this partition"));
            }
            partitions.push(PartitionReport {
                consumer_group: lease.consumer_group.clone(),
                topic: lease.topic.clone(),
                partition: lease.partition,
                owned,
                held_here,
                next_offset,
                high_watermark: high,
                lag: high.map(|h| (h - next_offset.unwrap_or(0)).max(0)),
            });
        }
        Report {
            service: self.config.service.clone(),
            live: true,
            ready: problems.is_empty(),
            checked_at: Utc::now(),
            problems,
            postgres,
            broker: broker_check,
            partitions,
            outbox: db.and_then(|d| d.outbox),
        }
    }

    /// Postgres answers, and what it knows of the leases and the outbox.
    async fn check_postgres(&self) -> (Check, Option<DbFacts>) {
        let started = Instant::now();
        let facts = tokio::time::timeout(CHECK_TIMEOUT, self.db_facts()).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match facts {
            Ok(Ok(facts)) => (
                Check {
                    ok: true,
                    latency_ms,
                    error: None,
                },
                Some(facts),
            ),
            Ok(Err(error)) => (
                Check {
                    ok: false,
                    latency_ms,
                    error: Some(error),
                },
                None,
            ),
            Err(_) => (
                Check {
                    ok: false,
                    latency_ms,
                    error: Some(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
                },
                None,
            ),
        }
    }

    async fn db_facts(&self) -> Result<DbFacts, String> {
        let client = self.config.pool.get().await.map_err(|e| e.to_string())?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map_err(|e| error_chain(&e))?;
        let mut partitions = Vec::with_capacity(self.config.leases.len());
        for lease in &self.config.leases {
            // A lease is a session advisory lock (crate::lease): held exactly while its
            // owner's connection lives, whichever instance that is.
            let row = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks l
                                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                                       AND l.classid = hashtext($1)::oid AND l.objid = $2::int::oid),
                            (SELECT next_offset FROM platform.consumer_offsets
                              WHERE consumer_group = $3 AND topic = $4 AND partition = $2)",
                    &[
                        &crate::lease::lock_name(lease),
                        &lease.partition,
                        &lease.consumer_group,
                        &lease.topic,
                    ],
                )
                .await
                .map_err(|e| error_chain(&e))?;
            partitions.push((row.get(0), row.get(1)));
        }
        let outbox = if self.config.outbox {
            let row = client
                .query_one(
                    "SELECT count(*),
                            extract(epoch FROM now() - (SELECT created_at FROM platform.outbox
                                                         WHERE published_at IS NULL ORDER BY id LIMIT 1))::float8
                       FROM platform.outbox WHERE published_at IS NULL",
                    &[],
                )
                .await
                .map_err(|e| error_chain(&e))?;
            Some(OutboxReport {
                pending: row.get(0),
                oldest_pending_s: row.get(1),
            })
        } else {
            None
        };
        Ok(DbFacts { partitions, outbox })
    }

    /// The broker answers metadata (every produced topic exists) and the high watermark of
    /// each consumed partition.
    async fn check_broker(&mut self, brokers: &str) -> (Check, Vec<Option<i64>>) {
        let kafka = match &self.kafka {
            Some(k) => k.clone(),
            None => match base_config(brokers).create::<BaseConsumer>() {
                Ok(k) => {
                    let k = Arc::new(k);
                    self.kafka = Some(k.clone());
                    k
                }
                Err(e) => {
                    let check = Check {
                        ok: false,
                        latency_ms: 0,
                        error: Some(format!("cannot create a client for {brokers}: {e}")),
                    };
                    return (check, Vec::new());
                }
            },
        };
        let produces = self.config.produces.clone();
        let partitions: Vec<(String, i32)> = self
            .config
            .leases
            .iter()
            .map(|l| (l.topic.clone(), l.partition))
            .collect();
        let brokers = brokers.to_owned();
        let started = Instant::now();
        let answer = tokio::task::spawn_blocking(move || {
            // Errors the client queued about lost connections: read them so they do not pile up.
            for _ in 0..1000 {
                if kafka.poll(Duration::ZERO).is_none() {
                    break;
                }
            }
            let metadata = kafka
                .fetch_metadata(None, CHECK_TIMEOUT)
                .map_err(|e| format!("{brokers} does not answer: {e}"))?;
            for topic in &produces {
                let found = metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == topic && !t.partitions().is_empty());
                if !found {
                    return Err(format!("topic {topic} does not exist on {brokers}"));
                }
            }
            let mut watermarks = Vec::with_capacity(partitions.len());
            for (topic, partition) in &partitions {
                let high = kafka
                    .fetch_watermarks(topic, *partition, CHECK_TIMEOUT)
                    .map_err(|e| format!("{topic}[{partition}] on {brokers}: {e}"))?
                    .1;
                watermarks.push(Some(high));
            }
            Ok(watermarks)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the broker check failed: {e}")));
        let latency_ms = started.elapsed().as_millis() as u64;
        match answer {
            Ok(watermarks) => (
                Check {
                    ok: true,
                    latency_ms,
                    error: None,
                },
                watermarks,
            ),
            Err(error) => (
                Check {
                    ok: false,
                    latency_ms,
                    error: Some(error),
                },
                Vec::new(),
            ),
        }
    }
}

/// What one Postgres round of the check learned.
struct DbFacts {
    /// Per lease, in order: (held by some instance, stored next offset).
    partitions: Vec<(bool, Option<i64>)>,
    outbox: Option<OutboxReport>,
}

/// `/health`, `/health/live` and `/health/ready`.
pub fn routes(
    health: Arc<Health>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
+ Clone
+ Send
+ Sync
+ 'static {
    let live = {
        let health = health.clone();
        warp::path!("health" / "live").map(move || {
            use warp::Reply;
            let body = serde_json::json!({"service": health.service, "live": true});
            warp::reply::json(&body).into_response()
        })
    };
    let ready = warp::path!("health" / "ready")
        .or(warp::path!("health"))
        .unify()
        .map(move || {
            use warp::Reply;
            let report = health.report();
            let status = if report.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let reply = warp::reply::with_status(warp::reply::json(&report), status);
            warp::reply::with_header(reply, "cache-control", "no-store").into_response()
        });
    warp::get().and(live.or(ready).unify())
}

/// Serves the health endpoints alone on `listener` (the consumer services, which have no
/// other HTTP) until `shutdown` resolves.
pub async fn serve(
    health: Arc<Health>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let routes = routes(health)
        .recover(|_: warp::Rejection| async {
            use warp::Reply;
            let body = serde_json::json!({"detail": "the health endpoints are /health, /health/live and /health/ready"});
            Ok::<_, std::convert::Infallible>(
                warp::reply::with_status(warp::reply::json(&body), StatusCode::NOT_FOUND)
                    .into_response(),
            )
        })
        .unify();
    crate::http_server::serve(
        routes,
        listener,
        shutdown,
        crate::http_server::Limits {
            connections_max: 64,
            ..crate::http_server::Limits::default()
        },
    )
    .await;
}
