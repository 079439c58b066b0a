//! The local development stack: Postgres from `DATABASE_URL`, and the broker from
//! `KAFKA_BROKERS` or else a Tansu this module starts (sqlite storage, free port) and keeps
//! running in the background between commands. State lives in `RAFFLE_STATE_DIR`
//! (`.stack/` by default): `tansu.json` (pid, port), `tansu.log`, `tansu.db`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::StackConfig;
use crate::db::{DbError, DbTarget, MigrationReport};
use crate::kafka::{self, BrokerHealth, KafkaError};

pub const TANSU_VERSION: &str = "0.6.0";
pub const TANSU_INSTALL: &str = "cargo install tansu --version 0.6.0 --locked --features libsql";

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(
        "Tansu {TANSU_VERSION} is not installed (looked for $TANSU_BIN, `tansu` on PATH and ~/.cargo/bin/tansu). Install it with `{TANSU_INSTALL}` (scripts/run.sh and scripts/test.sh do this; about 10-15 minutes, once), or set KAFKA_BROKERS to a running broker"
    )]
    TansuMissing,
    #[error(
        "port {port} for Tansu is already in use on 127.0.0.1. Unset RAFFLE_TANSU_PORT to let the stack pick a free port, or free that port"
    )]
    PortInUse { port: u16 },
    #[error("cannot start Tansu ({binary}): {reason}. Its log is {log}")]
    TansuStart {
        binary: String,
        reason: String,
        log: String,
    },
    #[error(
        "cannot use state directory {dir}: {reason}. Set RAFFLE_STATE_DIR to a writable directory"
    )]
    StateDir { dir: String, reason: String },
}

/// The running broker, and whether this stack started it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerProcess {
    pub brokers: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub started_here: bool,
}

/// What `stack up` reports about each part.
#[derive(Debug, Clone)]
pub struct StackHealth {
    pub postgres: String,
    pub postgres_version: String,
    pub migrations: MigrationReport,
    pub broker: BrokerProcess,
    pub kafka: BrokerHealth,
    /// Why the broker was restarted, when `up` found it alive but not working.
    pub restarted: Option<String>,
}

/// How long the broker gets to take a record and hand it back before it counts as wedged.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds the tansu binary: `$TANSU_BIN`, then PATH, then `~/.cargo/bin`.
pub fn find_tansu() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        let path = PathBuf::from(bin);
        if path.is_file() {
            return Some(path);
        }
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("tansu.json")
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The broker to use: `KAFKA_BROKERS`, or the Tansu this state directory already runs, or a
/// new Tansu started now.
pub fn ensure_broker(config: &StackConfig) -> Result<BrokerProcess, StackError> {
    if let Some(brokers) = &config.kafka_brokers {
        return Ok(BrokerProcess {
            brokers: brokers.clone(),
            pid: None,
            port: None,
            started_here: false,
        });
    }
    let dir = &config.state_dir;
    let state_dir_err = |e: std::io::Error| StackError::StateDir {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(state_dir_err)?;
    if let Some(running) = running_tansu(dir) {
        return Ok(running);
    }
    // A broker recorded here that died: start the new one where the services look for it.
    let recorded_port = recorded_tansu(dir).and_then(|p| p.port);
    let port = match config.tansu_port.or(recorded_port) {
        Some(port) if port_open(port) => return Err(StackError::PortInUse { port }),
        Some(port) => port,
        None => free_port().map_err(state_dir_err)?,
    };
    start_tansu(dir, port)
}

/// Starts Tansu on `port` with its data in `dir` and records it in the state file.
fn start_tansu(dir: &Path, port: u16) -> Result<BrokerProcess, StackError> {
    let state_dir_err = |e: std::io::Error| StackError::StateDir {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    };
    let binary = find_tansu().ok_or(StackError::TansuMissing)?;
    let dir = std::fs::canonicalize(dir).map_err(state_dir_err)?;
    let log_path = dir.join("tansu.log");
    // Appended to: the log of a broker that was restarted says why.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(state_dir_err)?;
    let log_err = log.try_clone().map_err(state_dir_err)?;
    let url = format!("tcp://127.0.0.1:{port}");
    let start_err = |reason: String| StackError::TansuStart {
        binary: binary.display().to_string(),
        reason,
        log: log_path.display().to_string(),
    };
    let mut command = Command::new(&binary);
    command
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", &tansu_storage()])
        // Not the services' RUST_LOG: at `info` the broker logs every request (2.4 GB in five
        // minutes of load was measured).
        .env("RUST_LOG", tansu_log_filter())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // Its own process group: the broker outlives the command that started it, and a Ctrl-C
    // in that terminal does not stop it (`raffle stack down` does).
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|e| start_err(e.to_string()))?;
    let pid = child.id();
    let started = Instant::now();
    while !port_open(port) {
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        if exited || started.elapsed() > Duration::from_secs(15) {
            if !exited {
                let _ = child.kill();
            }
            return Err(start_err(format!(
                "it did not listen on port {port} ({})",
                log_tail(&log_path)
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let process = BrokerProcess {
        brokers: format!("127.0.0.1:{port}"),
        pid: Some(pid),
        port: Some(port),
        started_here: true,
    };
    let json = serde_json::to_string_pretty(&process).unwrap_or_default();
    std::fs::write(state_file(&dir), json).map_err(state_dir_err)?;
    tracing::info!(pid, port, "started Tansu");
    Ok(process)
}

/// `RAFFLE_TANSU_STORAGE`, else sqlite in the state directory (Tansu 0.6.0 reads the sqlite
/// URL's path relative to its working directory). A `postgres://` URL needs Tansu's schema in
/// that database first (`etc/initdb.d/010-schema.sql` of Tansu's repository at its release);
/// docs/RESILIENCE.md compares the two.
fn tansu_storage() -> String {
    std::env::var("RAFFLE_TANSU_STORAGE")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "sqlite://tansu.db".to_owned())
}

/// `RAFFLE_TANSU_LOG`, else `warn`: the broker's own log filter.
fn tansu_log_filter() -> String {
    std::env::var("RAFFLE_TANSU_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "warn".to_owned())
}

/// The last lines of a log, on one line.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.reverse();
    lines.join(" | ")
}

/// Stops the Tansu this stack started, however wedged it is, and starts it again on the same
/// port with the same data.
fn restart_tansu(dir: &Path, process: &BrokerProcess) -> Result<BrokerProcess, StackError> {
    if let Some(pid) = process.pid {
        kill_and_wait(pid, "-KILL");
    }
    let port = process.port.ok_or_else(|| StackError::TansuStart {
        binary: "tansu".into(),
        reason: "the stack's state file has no port to restart it on".into(),
        log: dir.join("tansu.log").display().to_string(),
    })?;
    start_tansu(dir, port)
}

fn kill_and_wait(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Tansu recorded in the state directory, if it still runs and listens.
pub fn running_tansu(dir: &Path) -> Option<BrokerProcess> {
    let process = recorded_tansu(dir)?;
    let alive = process.pid.is_some_and(pid_alive) && process.port.is_some_and(port_open);
    alive.then_some(process)
}

/// The Tansu the state file records, running or not.
fn recorded_tansu(dir: &Path) -> Option<BrokerProcess> {
    let text = std::fs::read_to_string(state_file(dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Stops the Tansu this state directory started. Returns its pid if one was running.
pub fn stop_tansu(dir: &Path) -> Option<u32> {
    let process = running_tansu(dir)?;
    let pid = process.pid?;
    kill_and_wait(pid, "-TERM");
    if pid_alive(pid) {
        // A wedged broker may not answer SIGTERM.
        kill_and_wait(pid, "-KILL");
    }
    let _ = std::fs::remove_file(state_file(dir));
    Some(pid)
}

/// Runs a start or restart of the broker (blocking: it waits for a port) off the runtime.
async fn blocking(
    work: impl FnOnce() -> Result<BrokerProcess, StackError> + Send + 'static,
) -> Result<BrokerProcess, StackError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StackError::TansuStart {
            binary: "tansu".into(),
            reason: e.to_string(),
            log: String::new(),
        })?
}

/// Brings every part up and reports its health: Postgres reachable, database present and
/// migrated; broker reachable (started if needed) and the topics at their partition counts.
pub async fn up(config: &StackConfig) -> Result<StackHealth, StackError> {
    let db = DbTarget::parse(&config.database_url)?;
    db.ensure_database().await?;
    let migrations = db.migrate().await?;
    let client = db.connect("raffle-stack").await?;
    let postgres_version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(DbError::from)?
        .get(0);

    let cfg = config.clone();
    let mut broker = blocking(move || ensure_broker(&cfg)).await?;
    let mut restarted = None;
    if let Err(wedged) = kafka::round_trip(&broker.brokers, PROBE_TIMEOUT).await {
        if !broker.started_here {
            return Err(wedged.into());
        }
        // Alive and listening, but not doing its job: the only cure is a fresh process.
        tracing::warn!(pid = ?broker.pid, error = %wedged, "the broker does not work; restarting it");
        let (dir, running) = (config.state_dir.clone(), broker.clone());
        broker = blocking(move || restart_tansu(&dir, &running)).await?;
        kafka::round_trip(&broker.brokers, PROBE_TIMEOUT).await?;
        restarted = Some(wedged.to_string());
    }
    kafka::ensure_topics(
        &broker.brokers,
        &config.topics.all(),
        config.topics.replication,
    )
    .await?;
    let names: Vec<&str> = config.topics.all().iter().map(|(n, _)| *n).collect();
    let kafka = kafka::health(&broker.brokers, &names, Duration::from_secs(10)).await?;
    Ok(StackHealth {
        postgres: db.description.clone(),
        postgres_version,
        migrations,
        broker,
        kafka,
        restarted,
    })
}
