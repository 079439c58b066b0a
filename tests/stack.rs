//! The stack commands as an operator meets them: the version line regulators ask for, the
//! stack coming up healthy, and one clear message (never a panic or a hang) when Postgres or
//! the broker is missing, unreachable or misconfigured.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const RAFFLE: &str = env!("CARGO_BIN_EXE_raffle");

fn raffle(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let mut command = Command::new(RAFFLE);
    command
        .args(args)
        .env_remove("KAFKA_BROKERS")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    let started = Instant::now();
    let output = command.output().expect("run raffle");
    (output, started.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("raffle-stack-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn assert_clear_failure(o: &Output, took: Duration, expected: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "must fail: {err}");
    assert!(!err.contains("panicked"), "no panic: {err}");
    for text in expected {
        assert!(err.contains(text), "message should contain {text:?}: {err}");
    }
    assert!(took < Duration::from_secs(30), "answered in {took:?}");
}

#[test]
fn version_prints_name_version_and_the_executables_sha256() {
    let (o, _) = raffle(&["--version"], &[]);
    assert!(o.status.success());
    let line = String::from_utf8(o.stdout).unwrap();
    let bytes = std::fs::read(RAFFLE).unwrap();
    let expected = hex::encode(Sha256::digest(&bytes));
    assert_eq!(
        line.trim(),
        format!("raffle {} sha256:{expected}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn stack_up_brings_everything_up_and_reports_it_healthy() {
    let dir = state_dir("up");
    let dir_s = dir.to_str().unwrap();
    let env = [
        ("RAFFLE_STATE_DIR", dir_s),
        ("RAFFLE_TOPIC_PREFIX", "stacktest."),
    ];
    let (o, _) = raffle(&["stack", "up", "--json"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let health: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(health["postgres"]["healthy"], true);
    assert_eq!(health["broker"]["healthy"], true);
    assert_eq!(health["broker"]["started_by_stack"], true);
    let topics = health["topics"].as_array().unwrap();
    let partitions: Vec<(String, i64)> = topics
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["partitions"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        partitions,
        vec![
            ("stacktest.raffle.sales.v1".into(), 8),
            ("stacktest.raffle.tickets.v1".into(), 4),
            ("stacktest.raffle.dlq.v1".into(), 1)
        ]
    );
    // A second `up` reuses the running broker.
    let (again, _) = raffle(&["stack", "up", "--json"], &env);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["broker"]["pid"], health["broker"]["pid"]);
    let (down, _) = raffle(&["stack", "down"], &env);
    assert!(String::from_utf8_lossy(&down.stdout).contains("stopped Tansu"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A broker that is alive and listening but answers nothing (here: stopped with SIGSTOP; in
/// the field, Tansu 0.6.0 after a panic in its storage) passes a liveness look. `stack up`
/// puts a record through it, finds it wedged, and starts it again on the same port.
#[test]
fn stack_up_restarts_a_broker_that_listens_but_does_not_work() {
    let dir = state_dir("wedged");
    let dir_s = dir.to_str().unwrap();
    let env = [
        ("RAFFLE_STATE_DIR", dir_s),
        ("RAFFLE_TOPIC_PREFIX", "stackwedge."),
    ];
    let (o, _) = raffle(&["stack", "up", "--json"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let first: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pid = first["broker"]["pid"].as_u64().unwrap();
    let stopped = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());

    let (o, took) = raffle(&["stack", "up", "--json"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let second: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        second["broker"]["restarted_because"].is_string(),
        "the wedged broker was noticed: {second}"
    );
    assert_ne!(second["broker"]["pid"], first["broker"]["pid"]);
    assert_eq!(second["broker"]["brokers"], first["broker"]["brokers"]);
    assert!(took < Duration::from_secs(60), "answered in {took:?}");
    // The new one works: a third `up` finds it healthy and keeps it.
    let (o, _) = raffle(&["stack", "up", "--json"], &env);
    let third: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(third["broker"]["pid"], second["broker"]["pid"]);
    assert!(third["broker"]["restarted_because"].is_null());
    let _ = raffle(&["stack", "down"], &env);
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_postgres_is_named_with_the_fix() {
    let (o, took) = raffle(
        &["stack", "up"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/raffle")],
    );
    assert_clear_failure(
        &o,
        took,
        &["cannot connect to Postgres at 127.0.0.1:1", "DATABASE_URL"],
    );
}

#[test]
fn a_malformed_database_url_is_named() {
    let (o, took) = raffle(&["migrate"], &[("DATABASE_URL", "postgres://[::1")]);
    assert_clear_failure(&o, took, &["DATABASE_URL is not a valid Postgres URL"]);
}

#[test]
fn a_database_user_that_does_not_exist_is_named() {
    let (o, took) = raffle(
        &["migrate"],
        &[(
            "DATABASE_URL",
            "postgres://nobody_here@127.0.0.1:5432/raffle",
        )],
    );
    assert_clear_failure(&o, took, &["Postgres at 127.0.0.1:5432", "nobody_here"]);
}

#[test]
fn an_unreachable_broker_is_named_with_the_fix() {
    let (o, took) = raffle(&["stack", "up"], &[("KAFKA_BROKERS", "127.0.0.1:1")]);
    assert_clear_failure(
        &o,
        took,
        &[
            "cannot reach the Kafka broker at 127.0.0.1:1",
            "KAFKA_BROKERS",
        ],
    );
}

#[test]
fn a_tansu_port_in_use_is_named_with_the_fix() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = state_dir("port");
    let (o, took) = raffle(
        &["stack", "up"],
        &[
            ("RAFFLE_STATE_DIR", dir.to_str().unwrap()),
            ("RAFFLE_TANSU_PORT", &port),
        ],
    );
    assert_clear_failure(
        &o,
        took,
        &[
            &format!("port {port} for Tansu is already in use"),
            "RAFFLE_TANSU_PORT",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_tansu_says_how_to_install_it() {
    let dir = state_dir("missing");
    let (o, took) = raffle(
        &["stack", "up"],
        &[
            ("RAFFLE_STATE_DIR", dir.to_str().unwrap()),
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/nonexistent"),
            ("TANSU_BIN", ""),
        ],
    );
    assert_clear_failure(
        &o,
        took,
        &[
            "Tansu 0.6.0 is not installed",
            "cargo install tansu",
            "KAFKA_BROKERS",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_partition_count_is_named() {
    let (o, took) = raffle(&["stack", "up"], &[("RAFFLE_SALES_PARTITIONS", "zero")]);
    assert_clear_failure(&o, took, &["RAFFLE_SALES_PARTITIONS", "\"zero\""]);
}

#[test]
fn the_admin_cli_calls_the_same_api_with_the_same_rules() {
    // Its own database, so the test leaves nothing behind in the shared one.
    let db = format!("raffle_clitest_{}", std::process::id());
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let env = [("DATABASE_URL", url.as_str())];
    let body = r#"{"name": "CLI Charity", "primary_currency": "USD", "operating_fee": {"type": "percentage", "percent": 5}}"#;
    let (o, _) = raffle(
        &[
            "admin",
            "call",
            "--as",
            "carol",
            "POST",
            "organizations",
            "--body",
            body,
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let org: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(org["created_by"], "carol");
    let path = format!("organizations/{}", org["id"].as_str().unwrap());
    // Another user is refused exactly as over HTTP, with the problem printed.
    let (o, took) = raffle(&["admin", "call", "--as", "mallory", "GET", &path], &env);
    assert_clear_failure(&o, took, &["403", "not a member"]);
    let problem: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(problem["type"], "/problems/forbidden");
    let _ = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        ])
        .output();
}
