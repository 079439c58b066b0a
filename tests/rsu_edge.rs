//! The `rsu-edge` program against the real ingest server, allocator, Postgres and broker:
//! offline sales synced later issue exactly their numbers; a `kill -9` mid-sale loses and
//! duplicates nothing; a repeated sync is a no-op; a sale after the end is refused on the
//! device; a sale the server rejects shows as rejected on the device; an exported file from a
//! broken unit imports and reconciles; and bad input (a damaged store, a revoked key, another
//! organisation's raffle, an answer that is not JSON) gets a clear message with nothing lost.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use platform::testkit::TestEnv;
use uuid::Uuid;

const EDGE: &str = env!("CARGO_BIN_EXE_rsu-edge");

struct Ingest {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts ingest on `addr` (a fresh port when `None`).
async fn ingest(env: &TestEnv, addr: Option<SocketAddr>) -> Ingest {
    ingest_with_tls(env, addr, None).await
}

async fn ingest_with_tls(
    env: &TestEnv,
    addr: Option<SocketAddr>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Ingest {
    let listener = tokio::net::TcpListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into()))
        .await
        .expect("bind ingest");
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(
        ingest::IngestState::new(
            &env.db,
            env.pool.clone(),
            platform::kafka::producer(&env.brokers, 5_000).unwrap(),
            ingest::IngestConfig {
                webhook_secret: b"whsec_rsu_edge_tests_secret".to_vec(),
                webhook_tolerance_s: 300,
                order_tickets_max: 500,
                sales_topic: env.topics.sales.clone(),
                brokers: env.brokers.clone(),
                hold_minutes: ingest::HOLD_MINUTES_DEFAULT,
            },
        )
        .unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ingest::serve_tls(
        state,
        listener,
        async move {
            let _ = stopped.await;
        },
        tls,
    ));
    Ingest { addr, stop, task }
}

impl Ingest {
    async fn shut(self) -> SocketAddr {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.addr
    }
}

struct Run {
    ok: bool,
    out: String,
}

async fn edge(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::process::Command::new(EDGE)
        .arg("--db")
        .arg(db)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("rsu-edge runs");
    Run {
        ok: output.status.success(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

async fn ok(db: &Path, args: &[&str]) -> String {
    let r = edge(db, args, &[]).await;
    assert!(r.ok, "rsu-edge {args:?} failed: {}", r.out);
    r.out
}

fn store(env: &TestEnv, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rsu-edge-{}", env.unique));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.db"))
}

/// The numbers the server issued for this RSU's allocation, in order.
async fn issued(env: &TestEnv, rsu: Uuid) -> Vec<i64> {
    env.client()
        .await
        .query(
            "SELECT t.draw_number FROM sales.tickets t JOIN sales.orders o ON o.id = t.order_id
              WHERE o.rsu_id = $1 AND t.state <> 'voided' ORDER BY t.draw_number",
            &[&rsu],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Enrols the device of the seed's RSU `r` with the server at `addr` and fetches its block;
/// the output of `allocate`.
async fn enrolled(db: &Path, addr: SocketAddr, s: &scenario::seed::Scenario, r: usize) -> String {
    let url = format!("http://{addr}");
    let device = format!("MAC:00:1B:44:11:3A:{r:02X}");
    ok(
        db,
        &[
            "enroll",
            "--server",
            &url,
            "--device",
            &device,
            "--api-key",
            &s.rsus[r].api_key,
            "--allow-plain-http",
        ],
    )
    .await;
    ok(db, &["allocate", "--raffle", &s.raffle_id.to_string()]).await
}

async fn scenario(env: &TestEnv, rsus: usize) -> scenario::seed::Scenario {
    scenario::seed::raffle_on_sale(
        &env.pool,
        &scenario::seed::Options {
            rsu_count: rsus,
            allocation_size: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sales_sync_later_exactly_once_and_a_killed_sale_loses_nothing() {
    let env = TestEnv::new().await;
    let s = scenario(&env, 1).await;
    let _allocator = common::allocator(&env);
    let server = ingest(&env, None).await;
    let db = store(&env, "device");
    let rsu = s.rsus[0].id;
    let out = enrolled(&db, server.addr, &s, 0).await;
    assert!(out.contains("100 numbers left"), "{out}");

    // The Wi-Fi drops: the device keeps selling (this jurisdiction allows offline sales).
    let addr = server.shut().await;
    let mut first_numbers = Vec::new();
    for i in 0..3 {
        let out = ok(
            &db,
            &[
                "sell",
                "--package",
                "Value Pack",
                "--customer",
                &format!("Fan {i}"),
            ],
        )
        .await;
        for required in [
            "numbers ",
            "validation ",
            "rules http://",
            "claim prizes by",
            "sold ",
            "by RSU RSU-001",
            "price 20.00 USD",
            "draw ",
            "check code ",
        ] {
            assert!(
                out.contains(required),
                "the receipt lacks {required:?}: {out}"
            );
        }
        first_numbers.push(out);
    }
    assert!(
        first_numbers[0].contains("numbers 1..5"),
        "{}",
        first_numbers[0]
    );
    assert!(
        first_numbers[2].contains("numbers 11..15"),
        "{}",
        first_numbers[2]
    );

    // kill -9 in the middle of a sale: nothing sold, nothing lost, the next sale takes 16..20.
    let mut child = tokio::process::Command::new(EDGE)
        .arg("--db")
        .arg(&db)
        .args(["sell", "--package", "Value Pack"])
        .env("RSU_EDGE_DRILL_PAUSE_MS", "5000")
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.kill().await.unwrap();
    let out = ok(&db, &["status"]).await;
    assert!(out.contains("sales pending: 3"), "{out}");
    let out = ok(&db, &["sell", "--package", "Value Pack"]).await;
    assert!(out.contains("numbers 16..20"), "{out}");
    let local_id = out
        .lines()
        .find_map(|l| l.strip_prefix("sale "))
        .unwrap()
        .trim()
        .to_owned();
    let out = ok(&db, &["reprint", "--sale", &local_id]).await;
    assert!(out.starts_with("*** REPRINT ***"), "{out}");
    // A sale voided before it synced travels as a void: its numbers are never issued.
    let out = ok(&db, &["sell", "--package", "Value Pack"]).await;
    assert!(out.contains("numbers 21..25"), "{out}");
    let voided = out
        .lines()
        .find_map(|l| l.strip_prefix("sale "))
        .unwrap()
        .trim()
        .to_owned();
    let out = ok(
        &db,
        &["void", "--sale", &voided, "--reason", "wrong package"],
    )
    .await;
    assert!(out.starts_with("*** VOID ***"), "{out}");

    // A sync while the server is still down keeps everything, and says why.
    let r = edge(&db, &["sync"], &[]).await;
    assert!(!r.ok && r.out.contains("unreachable"), "{}", r.out);
    assert!(ok(&db, &["status"]).await.contains("sales pending: 4"));

    // The server is back: the four sales upload, and issue exactly their numbers.
    let server = ingest(&env, Some(addr)).await;
    let out = ok(&db, &["sync"]).await;
    assert!(out.contains("uploaded 5: 5 accepted"), "{out}");
    common::eventually("the allocator to issue the device's sales", || {
        let env = &env;
        async move { issued(env, rsu).await.len() == 20 }
    })
    .await;
    assert_eq!(issued(&env, rsu).await, (1..=20).collect::<Vec<i64>>());
    // The server holds each receipt's check code only as its hash, and the hash is the one of
    // the code printed on the receipt.
    let receipt = &first_numbers[0];
    let field = |prefix: &str| {
        receipt
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    let (validation, printed) = (field("validation "), field("check code "));
    let stored: Option<Vec<u8>> = env
        .client()
        .await
        .query_one(
            "SELECT check_code_hash FROM sales.orders WHERE rsu_id = $1 AND validation_number = $2",
            &[&rsu, &validation],
        )
        .await
        .unwrap()
        .get(0);
    let code = schemas::CheckCode::parse(&printed).expect("the receipt's check code reads back");
    assert_eq!(stored, Some(code.hash(s.raffle_id, &validation).to_vec()));
    let out = ok(&db, &["sync"]).await;
    assert!(
        out.contains("uploaded 0") && out.contains("4 issued"),
        "{out}"
    );
    // Again: a no-op.
    let orders = || async {
        env.client()
            .await
            .query_one(
                "SELECT count(*) FROM sales.orders WHERE rsu_id = $1",
                &[&rsu],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = orders().await;
    let out = ok(&db, &["sync"]).await;
    assert!(out.contains("uploaded 0"), "{out}");
    assert_eq!(orders().await, before);
    let out = ok(&db, &["status"]).await;
    assert!(
        out.contains("sales issued: 4") && out.contains("sales voided (void): 1"),
        "{out}"
    );
    // After a sync a void is the operator's, on the server.
    let r = edge(&db, &["void", "--sale", &local_id], &[]).await;
    assert!(!r.ok && r.out.contains("already synced"), "{}", r.out);

    // Where the jurisdiction forbids offline sales, no sale while the server cannot be reached.
    env.client()
        .await
        .execute(
            "INSERT INTO catalog.jurisdiction_regulations (jurisdiction_id, name, regulation_type, value, effective_date, overridable)
             SELECT v.jurisdiction_id, 'no offline RSU sales', 'sales_method',
                    '{\"online\": true, \"rsu\": true, \"offline_rsu\": false, \"rng_draw\": true}', now() - interval '1 day', false
               FROM catalog.raffle_events r JOIN catalog.venues v ON v.id = r.venue_id WHERE r.id = $1",
            &[&s.raffle_id],
        )
        .await
        .unwrap();
    ok(&db, &["allocate", "--raffle", &s.raffle_id.to_string()]).await;
    let addr = server.shut().await;
    let r = edge(&db, &["sell", "--package", "Value Pack"], &[]).await;
    assert!(
        !r.ok && r.out.contains("forbids offline sales"),
        "{}",
        r.out
    );
    assert!(
        ok(&db, &["status"]).await.contains("numbers left 75"),
        "nothing taken: 25 numbers sold, one sale of them voided"
    );
    let server = ingest(&env, Some(addr)).await;

    // The server's sales end moves before a sale the device still thinks is on time: the
    // server rejects it, and the device shows it as rejected.
    env.client()
        .await
        .execute(
            "UPDATE catalog.raffle_events SET sales_end_time = now() - interval '1 minute' WHERE id = $1",
            &[&s.raffle_id],
        )
        .await
        .unwrap();
    ok(&db, &["sell", "--package", "Value Pack"]).await;
    let out = ok(&db, &["sync"]).await;
    assert!(out.contains("1 accepted"), "{out}");
    common::eventually("the allocator to reject the late sale", || {
        let db = db.clone();
        async move { ok(&db, &["sync"]).await.contains("REJECTED") }
    })
    .await;
    let out = ok(&db, &["status"]).await;
    assert!(
        out.contains("REJECTED sale") && out.contains("outside the sales window"),
        "{out}"
    );

    // With the set-up refreshed, the device itself refuses a sale after the end.
    ok(&db, &["allocate", "--raffle", &s.raffle_id.to_string()]).await;
    let r = edge(&db, &["sell", "--package", "Value Pack"], &[]).await;
    assert!(!r.ok && r.out.contains("sales ended at"), "{}", r.out);

    // Closing gives the block back; its unsold numbers count as unsold on the server.
    let out = ok(&db, &["close"]).await;
    assert!(out.contains("returned"), "{out}");
    let state: String = env
        .client()
        .await
        .query_one(
            "SELECT state FROM catalog.rsu_allocations WHERE entity_id = $1",
            &[&rsu],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "returned");
    server.shut().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_unit_exports_its_sales_and_bad_input_loses_nothing() {
    let env = TestEnv::new().await;
    let s = scenario(&env, 2).await;
    let other = scenario(&env, 0).await;
    let _allocator = common::allocator(&env);
    let server = ingest(&env, None).await;
    let db = store(&env, "broken");
    let rsu = s.rsus[1].id;
    enrolled(&db, server.addr, &s, 1).await;

    // Another organisation's raffle: refused, clearly.
    let r = edge(
        &db,
        &["allocate", "--raffle", &other.raffle_id.to_string()],
        &[],
    )
    .await;
    assert!(
        !r.ok && r.out.contains("of this RSU's organization"),
        "{}",
        r.out
    );

    for _ in 0..3 {
        ok(&db, &["sell", "--package", "Value Pack"]).await;
    }
    let numbers = device_numbers(&db);
    // The unit breaks: its sales go to a file, which the server imports like an upload.
    let file = db.with_extension("json");
    let out = ok(&db, &["export", "--out", file.to_str().unwrap()]).await;
    assert!(out.contains("3 sales written"), "{out}");
    let import = |file: PathBuf| {
        let env = &env;
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_raffle"))
                .args(["ingest", "import-rsu", "--rsu", &rsu.to_string(), "--file"])
                .arg(file)
                .env("DATABASE_URL", &env.database_url)
                .env("KAFKA_BROKERS", &env.brokers)
                .env(
                    "RAFFLE_TOPIC_PREFIX",
                    env.topics.sales.trim_end_matches("raffle.sales.v1"),
                )
                .output()
                .await
                .unwrap()
        }
    };
    let out = import(file.clone()).await;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("3 accepted"),
        "{text}"
    );
    // At once again, before the allocator wrote the orders: duplicates, nothing published twice.
    let out = import(file.clone()).await;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("0 accepted, 3 already on the server"),
        "{text}"
    );
    common::eventually("the imported sales to be issued", || {
        let env = &env;
        async move { issued(env, rsu).await.len() == 15 }
    })
    .await;
    assert_eq!(
        issued(&env, rsu).await,
        numbers,
        "the server holds exactly the unit's numbers"
    );

    // The device's limit of unsynced tickets (its exported sales were never synced from it).
    env.client()
        .await
        .execute(
            "UPDATE catalog.rsus SET max_offline_tickets = 20 WHERE id = $1",
            &[&rsu],
        )
        .await
        .unwrap();
    ok(&db, &["allocate", "--raffle", &s.raffle_id.to_string()]).await;
    // Running low, the device asks for its next block by itself (this one sets the mark high).
    let r = edge(
        &db,
        &["sell", "--package", "Value Pack"],
        &[("RSU_EDGE_REFILL_BELOW_PERCENT", "90")],
    )
    .await;
    assert!(
        r.ok && r.out.contains("new number block received"),
        "{}",
        r.out
    );
    let blocks: i64 = env
        .client()
        .await
        .query_one("SELECT count(*) FROM catalog.rsu_allocations WHERE entity_id = $1 AND state = 'active'", &[&rsu])
        .await
        .unwrap()
        .get(0);
    assert_eq!(blocks, 2);
    let r = edge(&db, &["sell", "--package", "Value Pack"], &[]).await;
    assert!(
        !r.ok
            && r.out
                .contains("20 tickets are not yet synced and the limit is 20"),
        "{}",
        r.out
    );

    // A revoked key: the sync says so, and the unsynced sales stay on the device.
    env.client()
        .await
        .execute(
            "UPDATE catalog.rsu_api_keys SET revoked_at = now() WHERE rsu_id = $1",
            &[&rsu],
        )
        .await
        .unwrap();
    let r = edge(&db, &["sync"], &[]).await;
    assert!(
        !r.ok && r.out.contains("refused this device's API key"),
        "{}",
        r.out
    );
    let out = ok(&db, &["status"]).await;
    assert!(out.contains("sales pending: 4"), "nothing dropped: {out}");

    // A server answer that is not JSON: a clear message, nothing dropped.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage_addr = garbage.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = garbage.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n<html>oops",
                )
                .await;
        }
    });
    ok(
        &db,
        &[
            "enroll",
            "--server",
            &format!("http://{garbage_addr}"),
            "--device",
            "MAC:00:1B:44:11:3A:01",
            "--api-key",
            "whatever",
            "--allow-plain-http",
        ],
    )
    .await;
    let r = edge(&db, &["sync"], &[]).await;
    assert!(
        !r.ok && r.out.contains("could not be understood"),
        "{}",
        r.out
    );
    assert!(ok(&db, &["status"]).await.contains("sales pending: 4"));

    // A damaged store: refused with a clear message, the file left as it was.
    let damaged = store(&env, "damaged");
    std::fs::write(
        &damaged,
        b"this is not a SQLite database, it was a receipt printer buffer",
    )
    .unwrap();
    let r = edge(&damaged, &["status"], &[]).await;
    assert!(!r.ok && r.out.contains("is damaged"), "{}", r.out);
    assert!(std::fs::read(&damaged).unwrap().starts_with(b"this is not"));
    server.shut().await;
}

/// Every number the device's store holds as sold (not voided), in order.
fn device_numbers(db: &Path) -> Vec<i64> {
    let out = std::process::Command::new(EDGE)
        .arg("--db")
        .arg(db)
        .args(["export", "--out"])
        .arg(db.with_extension("peek.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(db.with_extension("peek.json")).unwrap()).unwrap();
    let mut numbers: Vec<i64> = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["voided"] == false)
        .flat_map(|r| {
            r["drawNumbers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_i64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

/// A CA and a certificate for 127.0.0.1 it signed, written as PEM files; their paths.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Raffle test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, server.pem()).unwrap();
    std::fs::write(&paths.2, server_key.serialize_pem()).unwrap();
    paths
}

/// The device speaks HTTPS: it syncs over TLS with the server's CA, refuses a server it does
/// not trust, and refuses plain HTTP unless enrolled with the development flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_speaks_https_and_plain_http_only_by_choice() {
    let env = TestEnv::new().await;
    let s = scenario(&env, 1).await;
    let _allocator = common::allocator(&env);
    let db = store(&env, "tls");
    let dir = db.parent().unwrap().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates(&dir);
    let tls = platform::tls::server_config(&cert, &key).expect("server TLS");
    let server = ingest_with_tls(&env, None, Some(tls)).await;
    let https = format!("https://127.0.0.1:{}", server.addr.port());
    let raffle = s.raffle_id.to_string();
    let enroll = |url: String, extra: Vec<String>| {
        let db = db.clone();
        let key = s.rsus[0].api_key.clone();
        async move {
            let mut args = vec![
                "enroll".to_owned(),
                "--server".into(),
                url,
                "--device".into(),
                "MAC:00:1B:44:11:3A:00".into(),
                "--api-key".into(),
                key,
            ];
            args.extend(extra);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            edge(&db, &args, &[]).await
        }
    };

    // What a container health check runs against an edge serving HTTPS.
    let health = std::process::Command::new(env!("CARGO_BIN_EXE_raffle"))
        .args([
            "health",
            &format!("{https}/health/live"),
            "--ca",
            &ca.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    // Plain HTTP is refused unless asked for.
    let r = enroll(format!("http://{}", server.addr), vec![]).await;
    assert!(!r.ok && r.out.contains("--allow-plain-http"), "{}", r.out);

    // A server whose certificate the device cannot trust: refused, and said so.
    assert!(enroll(https.clone(), vec![]).await.ok);
    let r = edge(&db, &["allocate", "--raffle", &raffle], &[]).await;
    assert!(!r.ok && r.out.contains("not trusted"), "{}", r.out);

    // With the server's CA: the whole round, over TLS.
    let r = enroll(https.clone(), vec!["--ca".into(), ca.display().to_string()]).await;
    assert!(r.ok, "{}", r.out);
    ok(&db, &["allocate", "--raffle", &raffle]).await;
    ok(&db, &["sell", "--package", "Value Pack"]).await;
    let out = ok(&db, &["sync"]).await;
    assert!(out.contains("uploaded 1: 1 accepted"), "{out}");
    let rsu = s.rsus[0].id;
    common::eventually("the sale issued", || {
        let env = &env;
        async move { issued(env, rsu).await.len() == 5 }
    })
    .await;
}
