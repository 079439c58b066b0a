//! Faults that must heal by themselves, in-process against the shared Postgres and broker:
//! a consumer service whose database refuses connections takes its leases again when it
//! returns, and its readiness is false exactly while a partition has no consumer; a consumer
//! that cannot recover stops its whole service with the reason (so the process exits and is
//! restarted) instead of leaving one partition dead; a pooled connection is never waited for
//! without a bound; and an RSU upload waiting on a stalled broker holds no connection that
//! checkout needs. The faults that need a restart of Postgres or the broker are in
//! `tests/chaos.rs`, on a cluster and a broker of their own.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, produce, wait_for_offset};
use platform::health::{Health, HealthConfig};
use platform::http_client::request;
use platform::service::ConsumerService;
use platform::testkit::TestEnv;
use platform::{BatchHandler, ConsumerConfig, ConsumerError, Disposition, HandlerError, Record};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_postgres::Transaction;

/// Refuses new connections to the test's database and kills the lease connections of
/// `application` (the consumers' own), leaving the pool's connections alive: the state of a
/// database that dropped a consumer's lease and will not let it back in.
async fn drop_leases_and_refuse(env: &TestEnv, admin: &tokio_postgres::Client) {
    let db = env.db.dbname().to_owned();
    admin
        .batch_execute(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
        .await
        .expect("refuse connections");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = $1 AND application_name LIKE 'raffle-lease%'",
            &[&db],
        )
        .await
        .expect("kill the lease connections");
}

async fn allow(env: &TestEnv, admin: &tokio_postgres::Client) {
    let db = env.db.dbname().to_owned();
    admin
        .batch_execute(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
        .await
        .expect("allow connections");
}

async fn admin_connection(env: &TestEnv) -> tokio_postgres::Client {
    env.db
        .with_dbname("postgres")
        .connect("raffle-test-admin")
        .await
        .expect("admin connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_service_takes_its_leases_again_after_the_database_refused_it() {
    let env = TestEnv::new().await;
    let service = ledger::service(&env.db, &env.pool, &env.brokers, &env.topics);
    let health = Health::start(HealthConfig {
        brokers: Some(env.brokers.clone()),
        leases: service.leases(),
        stats: service.stats(),
        ..HealthConfig::database_only("ledger", env.pool.clone())
    });
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(service.run(stopped));
    eventually("every partition owned", || async { health.report().ready }).await;

    let admin = admin_connection(&env).await;
    drop_leases_and_refuse(&env, &admin).await;
    eventually(
        "readiness to see the partitions without a consumer",
        || async {
            let report = health.report();
            !report.ready && report.partitions.iter().all(|p| !p.owned)
        },
    )
    .await;
    let report = health.report();
    assert!(
        report.postgres.ok,
        "the database itself answers: {report:?}"
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("tickets.v1[2]") && p.contains("no consumer")),
        "the problem names the partition: {:?}",
        report.problems
    );
    // Refused for longer than a consumer's first retries.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !running.is_finished(),
        "the service must not stop while the database refuses it"
    );
    assert!(!health.report().ready);

    allow(&env, &admin).await;
    let back = Instant::now();
    eventually("every partition owned again", || async {
        let report = health.report();
        report.ready && report.partitions.iter().all(|p| p.held_here)
    })
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(10),
        "leases taken again {:?} after the database came back",
        back.elapsed()
    );
    // And consuming: a record the ledger cannot decode is dead-lettered, its offset passed.
    produce(
        &env,
        &env.topics.tickets,
        2,
        &[("k".to_owned(), b"not avro".to_vec())],
    )
    .await;
    wait_for_offset(&env, ledger::CONSUMER_GROUP, &env.topics.tickets, 2, 1).await;

    let _ = stop.send(true);
    running
        .await
        .expect("service task")
        .expect("the service ran cleanly");
}

/// Applies every record, except that any record on `fatal_partition` is a fault retrying
/// cannot cure.
struct FatalOn {
    fatal_partition: i32,
}

impl BatchHandler for FatalOn {
    async fn handle(
        &self,
        _tx: &Transaction<'_>,
        batch: &[Record],
    ) -> Result<Vec<Disposition>, HandlerError> {
        if batch.iter().any(|r| r.partition == self.fatal_partition) {
            return Err(HandlerError::Fatal("the test's fatal record".into()));
        }
        Ok(vec![Disposition::Applied; batch.len()])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_cannot_recover_stops_its_service_with_the_reason() {
    let env = TestEnv::new().await;
    let group = format!("{}-fatal", env.unique);
    let configs = (0..env.topics.tickets_partitions)
        .map(|p| ConsumerConfig {
            poll_ms: 100,
            ..ConsumerConfig::new(
                &env.brokers,
                &group,
                &env.topics.tickets,
                p,
                &env.topics.dlq,
            )
        })
        .collect();
    let service = ConsumerService::new(&env.db, &env.pool, configs, FatalOn { fatal_partition: 1 });
    let stats = service.stats();
    let (_stop, stopped) = watch::channel(false);
    let running = tokio::spawn(service.run(stopped));
    eventually("every consumer holding its lease", || async {
        stats
            .iter()
            .all(|s| s.holding.load(std::sync::atomic::Ordering::Relaxed))
    })
    .await;
    produce(
        &env,
        &env.topics.tickets,
        1,
        &[("k".to_owned(), b"x".to_vec())],
    )
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the service stops instead of running on with a dead partition")
        .expect("service task");
    match ended {
        Err(ConsumerError::Handler { lease, reason, .. }) => {
            assert_eq!(lease.partition, 1);
            assert!(reason.contains("fatal record"), "{reason}");
        }
        other => panic!("expected the handler's error, got {other:?}"),
    }
    // Every other consumer was stopped with it: none holds its lease any more.
    assert!(
        stats
            .iter()
            .all(|s| !s.holding.load(std::sync::atomic::Ordering::Relaxed))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_pooled_connection_has_a_bound() {
    let env = TestEnv::new().await;
    let pool = env.db.pool(1).expect("pool");
    let held = pool.get().await.expect("the one connection");
    let waited = tokio::time::timeout(Duration::from_secs(20), pool.get()).await;
    let error = waited
        .expect("the wait ends by itself")
        .expect_err("no connection while the only one is held");
    assert!(
        matches!(
            error,
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)
        ),
        "{error:?}"
    );
    drop(held);
    let _again = pool.get().await.expect("a connection once it is free");
}

/// A broker that accepts connections and never answers: what ingest meets when the broker is
/// stalled.
async fn stalled_broker() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsu_upload_waiting_on_a_stalled_broker_does_not_hold_checkouts_connection() {
    let env = TestEnv::new().await;
    let s = scenario::seed::raffle_on_sale(&env.pool, &scenario::seed::Options::default())
        .await
        .expect("seed a raffle");
    let broker = stalled_broker().await.to_string();
    // One connection: whoever holds it through the broker's silence starves everyone else.
    let pool = env.db.pool(1).expect("pool");
    let state = Arc::new(
        ingest::IngestState::new(
            &env.db,
            pool,
            platform::kafka::producer(&broker, ingest::DELIVERY_TIMEOUT_MS).expect("producer"),
            ingest::IngestConfig {
                webhook_secret: b"whsec_resilience_test_secret".to_vec(),
                webhook_tolerance_s: 300,
                order_tickets_max: 500,
                sales_topic: env.topics.sales.clone(),
                brokers: broker.clone(),
                hold_minutes: ingest::HOLD_MINUTES_DEFAULT,
            },
        )
        .expect("ingest state"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(ingest::serve(state, listener, std::future::pending()));

    let rsu = &s.rsus[0];
    let alloc = &rsu.allocation;
    let block = &alloc["validation_number_block"];
    let start = alloc["start_number"].as_i64().expect("start");
    let record = json!({
        "localId": "stalled-1", "eventId": s.raffle_id, "allocationId": alloc["id"],
        "validationNumber": format!("{}{:04}", block["prefix"].as_str().expect("prefix"),
                                    block["first_sequence"].as_i64().expect("first")),
        "drawNumbers": (0..5).map(|k| start + k).collect::<Vec<_>>(),
        "packageId": s.package_id, "ticketCount": 5, "totalAmount": 2000, "currency": "USD",
        "operatorId": "seller-1", "createdAt": chrono::Utc::now(), "isOfflineSale": false,
        "syncStatus": "pending", "syncAttempts": 0
    });
    let auth = format!("Bearer {}", rsu.api_key);
    let upload_body = serde_json::to_vec(&json!({"records": [record]})).expect("JSON");
    let upload = tokio::spawn(async move {
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        request(addr, "POST", "/v1/rsu/sales", &headers, &upload_body)
            .await
            .expect("upload answered")
    });
    // The upload has read what it needs and waits for the broker.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!upload.is_finished(), "the upload waits for the broker");

    let checkout =
        serde_json::to_vec(&json!({"raffle_id": s.raffle_id, "package_id": s.package_id}))
            .expect("JSON");
    let answer = request(
        addr,
        "POST",
        "/v1/checkout",
        &[("Content-Type", "application/json")],
        &checkout,
    )
    .await
    .expect("checkout answered");
    let body: Value = answer.json().unwrap_or_default();
    assert_eq!(answer.status, 201, "checkout during the upload: {body}");
    assert!(
        !upload.is_finished(),
        "checkout was served while the upload still waited for the broker"
    );

    let upload = upload.await.expect("upload task");
    assert_eq!(
        upload.status,
        503,
        "no acknowledgement, so the device is told to retry: {}",
        String::from_utf8_lossy(&upload.body)
    );
}
