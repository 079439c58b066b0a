//! Chaos: the real services, each its own process, on a Postgres cluster and a broker of this
//! test's own (so that it can restart them without disturbing the other tests), under a steady
//! load of buyers whose payment webhooks are signed and retried the way Stripe retries them.
//! While the load runs, each fault strikes in turn:
//!
//! - `kill -9` of the allocator, the ledger and ingest, each restarted a second later by the
//!   test playing their supervisor;
//! - Postgres refusing every connection to the database for 30 s (its existing connections
//!   killed);
//! - a Postgres restart (immediate shutdown: what a crash looks like);
//! - the broker killed for 10 s, then brought back by `raffle stack up`.
//!
//! The last three must heal by themselves: no process is restarted, and every partition is
//! consumed again within 10 s of the fault's end. Afterwards every acknowledged order has its
//! tickets exactly once, no other order has any, the ledger verifies and holds exactly the
//! acknowledged revenue, and the stored offsets equal the broker's high watermarks. The test
//! prints how long each fault stalled the pipeline (`--no-capture` to see it) and writes the
//! figures to `target/chaos-report.json`.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use platform::http_client::request;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

const RAFFLE: &str = env!("CARGO_BIN_EXE_raffle");
const SECRET: &str = "whsec_chaos_test_secret_0123456789";
const PREFIX: &str = "chaos.";
/// Buyers at once; each buys, pays, and starts again.
const BUYERS: usize = 12;
/// New orders a second at most, all buyers together: steady load that does not sell the
/// raffle out on a fast machine.
const ORDERS_PER_S: u32 = 150;
/// The longest a fault's recovery may take (the promise).
const RECOVERY_MAX: Duration = Duration::from_secs(10);

/// A line on the test's output, with the time since the test began.
fn progress(began: Instant, what: &str) {
    eprintln!("chaos {:>6.1} s  {what}", began.elapsed().as_secs_f64());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Postgres cluster of the test's own, in a temporary directory, that it may restart.
struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

/// The server binaries: `PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
fn postgres_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("pg_ctl").is_file());
    versions.sort();
    versions.pop().expect(
        "the chaos test runs a Postgres cluster of its own and needs the server binaries \
         (initdb, pg_ctl): install Debian's postgresql package or set PG_BIN",
    )
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePostgres {
    fn start(dir: &Path) -> Self {
        let pg = Self {
            dir: dir.join("postgres"),
            port: free_port(),
            bin: postgres_bin(),
        };
        std::fs::create_dir_all(&pg.dir).expect("postgres dir");
        if running_as_root() {
            // Postgres refuses to run as root: the cluster belongs to the postgres user.
            let status = Command::new("chown")
                .args(["-R", "postgres", &pg.dir.display().to_string()])
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster directory to postgres");
        }
        let data = pg.data().display().to_string();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=300",
            pg.port,
            pg.dir.display()
        );
        let log = pg.dir.join("server.log").display().to_string();
        pg.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        );
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, program: &str, args: &[&str]) {
        let exe = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run a postgres program");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server the way a crash would (no checkpoint) and starts it again.
    fn restart(&self) {
        let data = self.data().display().to_string();
        // The log again: otherwise the new server writes to pg_ctl's output, which the test
        // reads to its end.
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-m", "immediate", "-w", "restart"],
        );
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let exe = self.bin.join("pg_ctl");
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One service of the platform as its own process, its log in the test directory.
struct ServiceProcess {
    name: &'static str,
    args: Vec<&'static str>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl ServiceProcess {
    fn new(
        name: &'static str,
        args: &[&'static str],
        env: Vec<(String, String)>,
        dir: &Path,
    ) -> Self {
        Self {
            name,
            args: args.to_vec(),
            env,
            log: dir.join(format!("{name}.log")),
            child: None,
            starts: 0,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("service log");
        let child = Command::new(RAFFLE)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start a service");
        self.child = Some(child);
        self.starts += 1;
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Still running (not exited).
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "--- {} (started {} times), {}:\n{tail}",
            self.name,
            self.starts,
            self.log.display()
        )
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What the buyers did: orders whose payment webhook was acknowledged, and how often they
/// had to retry.
#[derive(Default)]
struct Ledger {
    acknowledged: HashSet<Uuid>,
    deliveries: usize,
    retries: usize,
    duplicates_sent: usize,
}

/// The signed `payment_intent.succeeded` of `order`, as Stripe would send it now.
fn payment_event(event_id: &str, order: Uuid) -> Vec<u8> {
    let body = json!({
        "id": event_id, "type": "payment_intent.succeeded", "created": Utc::now().timestamp(),
        "data": {"object": {"id": format!("pi_{}", order.simple()), "amount": 2000, "currency": "usd",
                            "metadata": {"order_id": order}}}
    });
    serde_json::to_vec(&body).expect("event JSON")
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Value)> {
    let answer = tokio::time::timeout(
        Duration::from_secs(15),
        request(addr, method, path, headers, body),
    )
    .await;
    match answer {
        Ok(Ok(r)) => Some((r.status, r.json().unwrap_or(Value::Null))),
        _ => None,
    }
}

/// Stripe's retries, compressed: the same event again after a growing pause until it is
/// answered 2xx; signed afresh each time, as Stripe does.
async fn deliver_until_acknowledged(
    addr: SocketAddr,
    order: Uuid,
    event_id: &str,
    book: &Mutex<Ledger>,
) {
    let mut pause = Duration::from_millis(200);
    loop {
        let body = payment_event(event_id, order);
        let signature = ingest::signature::sign(SECRET.as_bytes(), &body, Utc::now().timestamp());
        let headers = [
            ("Stripe-Signature", signature.as_str()),
            ("Content-Type", "application/json"),
        ];
        let answer = call(addr, "POST", "/v1/webhooks/payments", &headers, &body).await;
        book.lock().await.deliveries += 1;
        match answer {
            Some((200, _)) => return,
            Some((status, body)) if (400..500).contains(&status) => {
                panic!("a genuine payment was refused {status}: {body}")
            }
            _ => {
                book.lock().await.retries += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Buys until `stop`: checkout (retried until it answers), then the payment webhook (retried
/// until acknowledged); every seventh payment is delivered twice, as providers do.
async fn buyer(
    addr: SocketAddr,
    raffle: Uuid,
    package: Uuid,
    book: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    n: Arc<AtomicUsize>,
    pace: Arc<Mutex<tokio::time::Interval>>,
) {
    let checkout =
        serde_json::to_vec(&json!({"raffle_id": raffle, "package_id": package})).expect("JSON");
    while !stop.load(Ordering::Relaxed) {
        pace.lock().await.tick().await;
        let order = loop {
            match call(
                addr,
                "POST",
                "/v1/checkout",
                &[("Content-Type", "application/json")],
                &checkout,
            )
            .await
            {
                Some((201 | 200, body)) => {
                    if let Some(id) = body["order_id"]
                        .as_str()
                        .and_then(|s| s.parse::<Uuid>().ok())
                    {
                        break id;
                    }
                    panic!("checkout answered without an order id: {body}");
                }
                Some((status, body)) if (400..500).contains(&status) => {
                    panic!("checkout refused {status}: {body}")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let i = n.fetch_add(1, Ordering::Relaxed);
        let event_id = format!("evt_{}", order.simple());
        deliver_until_acknowledged(addr, order, &event_id, &book).await;
        if i % 7 == 3 {
            deliver_until_acknowledged(addr, order, &event_id, &book).await;
            book.lock().await.duplicates_sent += 1;
        }
        book.lock().await.acknowledged.insert(order);
    }
}

/// The test's view of the pipeline: ownership and offsets read from the database, watermarks
/// from the broker, readiness from the services' own `/health`.
struct Probe {
    url: String,
    brokers: String,
    topics: platform::TopicNames,
    allocator_health: SocketAddr,
    ledger_health: SocketAddr,
}

impl Probe {
    /// The service says it is ready, in a report of a check made after `since`.
    async fn ready(&self, addr: SocketAddr, since: chrono::DateTime<Utc>) -> bool {
        match call(addr, "GET", "/health/ready", &[], b"").await {
            Some((200, report)) => report["checked_at"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok())
                .is_some_and(|checked| checked > since),
            _ => false,
        }
    }

    /// Both consumer services say every partition is owned and their dependencies answer.
    async fn all_ready(&self, since: chrono::DateTime<Utc>) -> bool {
        self.ready(self.allocator_health, since).await
            && self.ready(self.ledger_health, since).await
    }

    async fn stored_offsets(&self, group: &str, topic: &str, partitions: i32) -> Option<Vec<i64>> {
        let db = platform::db::DbTarget::parse(&self.url).ok()?;
        let client = tokio::time::timeout(Duration::from_secs(3), db.connect("chaos-probe"))
            .await
            .ok()?
            .ok()?;
        let rows = client
            .query(
                "SELECT partition, next_offset FROM platform.consumer_offsets WHERE consumer_group = $1 AND topic = $2",
                &[&group, &topic],
            )
            .await
            .ok()?;
        let mut offsets = vec![0; partitions as usize];
        for r in rows {
            let p: i32 = r.get(0);
            offsets[p as usize] = r.get(1);
        }
        Some(offsets)
    }

    /// Every partition of both topics has its stored offset at the broker's high watermark.
    async fn drained(&self) -> bool {
        let t = &self.topics;
        for (group, topic, partitions) in [
            (allocator::CONSUMER_GROUP, &t.sales, t.sales_partitions),
            (ledger::CONSUMER_GROUP, &t.tickets, t.tickets_partitions),
        ] {
            let Ok(high) = platform::kafka::high_watermarks(&self.brokers, topic, partitions).await
            else {
                return false;
            };
            if self.stored_offsets(group, topic, partitions).await != Some(high) {
                return false;
            }
        }
        true
    }

    /// Sales applied so far (sum of the allocator's stored offsets).
    async fn applied(&self) -> Option<i64> {
        let t = &self.topics;
        self.stored_offsets(allocator::CONSUMER_GROUP, &t.sales, t.sales_partitions)
            .await
            .map(|o| o.iter().sum())
    }
}

/// How one fault went.
#[derive(Debug, serde::Serialize)]
struct FaultReport {
    fault: &'static str,
    /// How long the fault itself lasted (the outage, the restart).
    fault_s: f64,
    /// From the fault's end until both consumer services were ready again.
    ready_after_s: f64,
    /// From the fault's end until the allocator applied a sale again.
    consuming_after_s: f64,
    /// A process had to be restarted (only for the kill -9 faults, by the test as supervisor).
    restarted_by_supervisor: bool,
}

/// Waits (up to 60 s) for readiness and for a sale applied after `since`; the two delays.
async fn recovery(probe: &Probe, ended: Instant) -> (f64, f64) {
    eprintln!("  waiting for recovery");
    let ended_at = Utc::now();
    let before = probe.applied().await.unwrap_or(0);
    let (mut ready, mut consuming) = (None, None);
    while ended.elapsed() < Duration::from_secs(60) && (ready.is_none() || consuming.is_none()) {
        if ready.is_none() && probe.all_ready(ended_at).await {
            ready = Some(ended.elapsed().as_secs_f64());
        }
        if consuming.is_none() && probe.applied().await.is_some_and(|n| n > before) {
            consuming = Some(ended.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("  ready after {ready:?} s, consuming after {consuming:?} s");
    (
        ready.unwrap_or(f64::INFINITY),
        consuming.unwrap_or(f64::INFINITY),
    )
}

async fn admin_client(pg: &PrivatePostgres) -> tokio_postgres::Client {
    platform::db::DbTarget::parse(&pg.url("postgres"))
        .expect("url")
        .connect("chaos-admin")
        .await
        .expect("connect to the private cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_heals_by_itself_and_nothing_acknowledged_is_lost_or_doubled() {
    platform::telemetry::init_with_default("warn");
    let t0 = Instant::now();
    let dir = std::env::temp_dir().join(format!("raffle-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let pg = PrivatePostgres::start(&dir);
    let database = "raffle_chaos";
    let url = pg.url(database);

    // The broker, brought up by the project's own command on a port of the test's.
    let stack_dir = dir.join("stack").display().to_string();
    let tansu_port = free_port().to_string();
    let stack_env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), url.clone()),
        ("RAFFLE_STATE_DIR".into(), stack_dir.clone()),
        ("RAFFLE_TANSU_PORT".into(), tansu_port.clone()),
        ("RAFFLE_TOPIC_PREFIX".into(), PREFIX.into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let stack_up = || {
        let out = Command::new(RAFFLE)
            .args(["stack", "up"])
            .env_remove("KAFKA_BROKERS")
            .envs(stack_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("raffle stack up");
        assert!(
            out.status.success(),
            "stack up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    stack_up();
    let brokers = format!("127.0.0.1:{tansu_port}");
    let _stack_down = StackDown(stack_env.clone());

    // A raffle on sale, set up through the admin API's own code.
    let db = platform::db::DbTarget::parse(&url).expect("url");
    let pool = db.pool(4).expect("pool");
    let scenario = scenario::seed::raffle_on_sale(&pool, &scenario::seed::Options::default())
        .await
        .expect("seed a raffle");
    drop(pool);

    let ingest_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let allocator_health: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let ledger_health: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let base_env = vec![
        ("DATABASE_URL".to_owned(), url.clone()),
        ("KAFKA_BROKERS".to_owned(), brokers.clone()),
        ("RAFFLE_TOPIC_PREFIX".to_owned(), PREFIX.to_owned()),
        ("INGEST_WEBHOOK_SECRET".to_owned(), SECRET.to_owned()),
        ("RAFFLE_INGEST_ADDR".to_owned(), ingest_addr.to_string()),
        (
            "RAFFLE_ALLOCATOR_HEALTH_ADDR".to_owned(),
            allocator_health.to_string(),
        ),
        (
            "RAFFLE_LEDGER_HEALTH_ADDR".to_owned(),
            ledger_health.to_string(),
        ),
        ("RUST_LOG".to_owned(), "info,rdkafka=warn".to_owned()),
    ];
    let mut ingest = ServiceProcess::new("ingest", &["ingest", "serve"], base_env.clone(), &dir);
    let mut allocator =
        ServiceProcess::new("allocator", &["allocator", "run"], base_env.clone(), &dir);
    let mut ledger = ServiceProcess::new("ledger", &["ledger", "run"], base_env.clone(), &dir);
    for s in [&mut ingest, &mut allocator, &mut ledger] {
        s.start();
    }
    let probe = Probe {
        url: url.clone(),
        brokers: brokers.clone(),
        topics: platform::TopicNames::with_prefix(PREFIX),
        allocator_health,
        ledger_health,
    };
    let started = Instant::now();
    while !(probe
        .all_ready(Utc::now() - chrono::Duration::seconds(60))
        .await
        && call(ingest_addr, "GET", "/health/ready", &[], b"")
            .await
            .is_some_and(|(s, _)| s == 200))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the services did not become ready:\n{}\n{}\n{}",
            ingest.log_tail(),
            allocator.log_tail(),
            ledger.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The load: buyers until the last fault has healed.
    let book = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let mut interval = tokio::time::interval(Duration::from_secs(1) / ORDERS_PER_S);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pace = Arc::new(Mutex::new(interval));
    let buyers: Vec<_> = (0..BUYERS)
        .map(|_| {
            tokio::spawn(buyer(
                ingest_addr,
                scenario.raffle_id,
                scenario.package_id,
                book.clone(),
                stop.clone(),
                count.clone(),
                pace.clone(),
            ))
        })
        .collect();
    assert!(
        health_check(allocator_health) && health_check(ledger_health),
        "`raffle health` agrees the services are ready"
    );
    progress(t0, "services ready, buyers buying");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut reports = Vec::new();
    // kill -9 of each service; its supervisor (the test) starts it again a second later.
    for which in ["allocator", "ledger", "ingest"] {
        let service = match which {
            "allocator" => &mut allocator,
            "ledger" => &mut ledger,
            _ => &mut ingest,
        };
        progress(t0, &format!("kill -9 {which}"));
        let began = Instant::now();
        service.kill9();
        tokio::time::sleep(Duration::from_secs(1)).await;
        service.start();
        let fault_s = began.elapsed().as_secs_f64();
        let ended = Instant::now();
        let (ready_after_s, consuming_after_s) = recovery(&probe, ended).await;
        reports.push(FaultReport {
            fault: match which {
                "allocator" => "kill -9 allocator",
                "ledger" => "kill -9 ledger",
                _ => "kill -9 ingest",
            },
            fault_s,
            ready_after_s,
            consuming_after_s,
            restarted_by_supervisor: true,
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // From here on nothing is restarted by anyone.
    let pids = (ingest.pid(), allocator.pid(), ledger.pid());

    // Postgres refuses every connection to the database for 30 s; what was connected is killed.
    progress(t0, "Postgres refuses connections");
    let admin = admin_client(&pg).await;
    let began = Instant::now();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
        ))
        .await
        .expect("refuse connections");
    let mut unready_seen = false;
    while began.elapsed() < Duration::from_secs(30) {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .await
            .expect("kill connections");
        tokio::time::sleep(Duration::from_secs(1)).await;
        // What a container health check sees meanwhile.
        unready_seen |= began.elapsed() > Duration::from_secs(5) && !health_check(allocator_health);
    }
    admin
        .batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .await
        .expect("allow connections");
    drop(admin);
    let fault_s = began.elapsed().as_secs_f64();
    let (ready_after_s, consuming_after_s) = recovery(&probe, Instant::now()).await;
    reports.push(FaultReport {
        fault: "Postgres refuses connections for 30 s",
        fault_s,
        ready_after_s,
        consuming_after_s,
        restarted_by_supervisor: false,
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A Postgres restart, as after a crash.
    progress(t0, "Postgres restarts");
    let began = Instant::now();
    pg.restart();
    let fault_s = began.elapsed().as_secs_f64();
    let (ready_after_s, consuming_after_s) = recovery(&probe, Instant::now()).await;
    reports.push(FaultReport {
        fault: "Postgres restart (immediate)",
        fault_s,
        ready_after_s,
        consuming_after_s,
        restarted_by_supervisor: false,
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The broker killed for 10 s, then brought back by the project's own command.
    progress(t0, "broker killed");
    let began = Instant::now();
    let state: Value = serde_json::from_slice(
        &std::fs::read(dir.join("stack").join("tansu.json")).expect("the stack's state file"),
    )
    .expect("state JSON");
    let tansu_pid = state["pid"].as_u64().expect("Tansu pid").to_string();
    let _ = Command::new("kill").args(["-9", &tansu_pid]).status();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let up = stack_up();
    let fault_s = began.elapsed().as_secs_f64();
    let (ready_after_s, consuming_after_s) = recovery(&probe, Instant::now()).await;
    reports.push(FaultReport {
        fault: "broker killed for 10 s",
        fault_s,
        ready_after_s,
        consuming_after_s,
        restarted_by_supervisor: false,
    });
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The load stops; what was acknowledged drains through.
    progress(t0, "load stops");
    stop.store(true, Ordering::Relaxed);
    for b in buyers {
        b.await.expect("buyer");
    }
    let started = Instant::now();
    while !probe.drained().await {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the pipeline did not drain:\n{}\n{}",
            allocator.log_tail(),
            ledger.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress(t0, "drained");
    let survivors = (ingest.running(), allocator.running(), ledger.running());
    let book = book.lock().await;

    // What the buyers were told against what the books say.
    let pool = db.pool(2).expect("pool");
    let client = pool.get().await.expect("connection");
    let acknowledged: Vec<Uuid> = book.acknowledged.iter().copied().collect();
    let rows = client
        .query(
            "SELECT o.id, o.payment_status, o.ticket_count, count(t.id)
               FROM sales.orders o LEFT JOIN sales.tickets t ON t.order_id = o.id
              WHERE o.raffle_id = $1 AND (o.payment_status <> 'pending' OR t.id IS NOT NULL)
              GROUP BY o.id",
            &[&scenario.raffle_id],
        )
        .await
        .expect("orders");
    let books: HashMap<Uuid, (String, i32, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let duplicated_numbers: i64 = client
        .query_one(
            "SELECT count(*) - count(DISTINCT draw_number) FROM sales.tickets WHERE raffle_id = $1",
            &[&scenario.raffle_id],
        )
        .await
        .expect("numbers")
        .get(0);
    let verification = ledger::verify(&**client, scenario.raffle_id)
        .await
        .expect("verify");
    let balances = ledger::balances(&**client, scenario.raffle_id, None)
        .await
        .expect("balances");

    let broker_log =
        std::fs::read_to_string(dir.join("stack").join("tansu.log")).unwrap_or_default();
    let report = json!({
        "broker_panicked": broker_log.contains("panicked"),
        "broker_starts": broker_log.matches("ready in").count(),
        "orders_acknowledged": acknowledged.len(),
        "webhook_deliveries": book.deliveries,
        "webhook_retries": book.retries,
        "duplicate_deliveries": book.duplicates_sent,
        "faults": reports,
        "machine": scenario::bench::machine(),
    });
    let text = serde_json::to_string_pretty(&report).expect("report JSON");
    println!("{text}");
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("../chaos-report.json"),
        &text,
    );

    // Nothing acknowledged is lost or doubled; nothing unacknowledged is issued.
    assert!(
        acknowledged.len() > 100,
        "the load ran: {} orders",
        acknowledged.len()
    );
    for order in &acknowledged {
        let (status, tickets, issued) = books.get(order).cloned().unwrap_or_default();
        assert_eq!(
            (status.as_str(), issued),
            ("completed", i64::from(tickets)),
            "order {order}"
        );
    }
    let unacknowledged: Vec<_> = books
        .keys()
        .filter(|o| !book.acknowledged.contains(o))
        .collect();
    assert!(
        unacknowledged.is_empty(),
        "orders with effects nobody was told of: {unacknowledged:?}"
    );
    assert_eq!(duplicated_numbers, 0, "a draw number was issued twice");
    assert!(
        verification.first_failure.is_none(),
        "ledger: {:?}",
        verification.first_failure
    );
    let revenue = balances
        .get(ledger::postings::GROSS_TICKET_REVENUE)
        .copied();
    assert_eq!(
        revenue.map(i64::abs),
        Some(acknowledged.len() as i64 * 2000),
        "revenue in the ledger: {balances:?}"
    );

    assert!(
        unready_seen,
        "`raffle health` said not ready while the database refused every connection"
    );
    // The three faults no one restarts anything for.
    assert_eq!(
        survivors,
        (true, true, true),
        "a service exited:\n{}\n{}\n{}",
        ingest.log_tail(),
        allocator.log_tail(),
        ledger.log_tail()
    );
    assert_eq!(
        (ingest.pid(), allocator.pid(), ledger.pid()),
        pids,
        "no process restarted by hand"
    );
    for r in reports.iter().filter(|r| !r.restarted_by_supervisor) {
        assert!(
            r.ready_after_s <= RECOVERY_MAX.as_secs_f64()
                && r.consuming_after_s <= RECOVERY_MAX.as_secs_f64(),
            "{}: ready after {:.1} s, consuming after {:.1} s (stack up said: {up})\n{}\n{}",
            r.fault,
            r.ready_after_s,
            r.consuming_after_s,
            allocator.log_tail(),
            ledger.log_tail()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `raffle health` on a consumer service's readiness, as a container health check runs it.
fn health_check(addr: SocketAddr) -> bool {
    Command::new(RAFFLE)
        .args(["health", &format!("http://{addr}/health/ready")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops the test's broker when the test ends, however it ends.
struct StackDown(Vec<(String, String)>);

impl Drop for StackDown {
    fn drop(&mut self) {
        let _ = Command::new(RAFFLE)
            .args(["stack", "down"])
            .env_remove("KAFKA_BROKERS")
            .envs(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
    }
}
