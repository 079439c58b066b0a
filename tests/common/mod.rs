//! Helpers shared by the end-to-end tests: producing to and waiting on the real stack.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use platform::testkit::TestEnv;
use rdkafka::producer::FutureRecord;

/// Produces `(key, payload)` records to one partition and waits for every acknowledgement.
pub async fn produce(env: &TestEnv, topic: &str, partition: i32, records: &[(String, Vec<u8>)]) {
    let producer = platform::kafka::producer(&env.brokers, 10_000).expect("producer");
    let sends = records.iter().map(|(key, payload)| {
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(topic)
                        .partition(partition)
                        .key(key)
                        .payload(payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
        }
    });
    // In order, one at a time per call keeps offsets in the order given.
    for send in sends {
        send.await.expect("broker acknowledged");
    }
}

/// Waits until the stored offset of (group, topic, partition) reaches `target`.
pub async fn wait_for_offset(env: &TestEnv, group: &str, topic: &str, partition: i32, target: i64) {
    let client = env.client().await;
    let started = Instant::now();
    loop {
        let row = client
            .query_opt(
                "SELECT next_offset FROM platform.consumer_offsets
                  WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
                &[&group, &topic, &partition],
            )
            .await
            .expect("query offsets");
        let offset: i64 = row.map(|r| r.get(0)).unwrap_or(0);
        if offset >= target {
            assert_eq!(offset, target, "consumed past the end of what was produced");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{group}/{topic}[{partition}] stuck at offset {offset}, expected {target}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a condition checked by `probe`, failing the test with `what` after 30 s.
pub async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !probe().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The smallest catalog a sale needs, written with plain SQL so the tests exercise the
/// database's own constraints.
pub struct Fixture {
    pub organization_id: uuid::Uuid,
    pub raffle_id: uuid::Uuid,
    pub online_range_id: uuid::Uuid,
    pub rsu_range_id: uuid::Uuid,
    pub package_id: uuid::Uuid,
    pub rsu_id: uuid::Uuid,
}

pub async fn seed_catalog(client: &tokio_postgres::Client) -> Fixture {
    let row = client
        .query_one(
            "WITH j AS (
                 INSERT INTO catalog.jurisdictions (name, code, jurisdiction_type, created_by, updated_by)
                 VALUES ('Ontario', 'ON-CA-' || gen_random_uuid(), 'province', 'test', 'test') RETURNING id),
             o AS (
                 INSERT INTO catalog.organizations (name, primary_currency, operating_fee_percent, created_by, updated_by)
                 VALUES ('Community Center Inc', 'USD', 4.5, 'test', 'test') RETURNING id),
             v AS (
                 INSERT INTO catalog.venues (organization_id, name, jurisdiction_id, accepted_currencies, timezone, created_by, updated_by)
                 SELECT o.id, 'Main Hall', j.id, '{USD}', 'America/Toronto', 'test', 'test' FROM o, j RETURNING id, organization_id),
             r AS (
                 INSERT INTO catalog.raffle_events (organization_id, venue_id, name, event_identifier, sales_start_time,
                     sales_end_time, draw_time, currency, max_tickets, created_by, updated_by)
                 SELECT v.organization_id, v.id, 'Summer 50/50', 'RAFFLE-' || gen_random_uuid(), now() - interval '1 day',
                     now() + interval '1 day', now() + interval '2 days', 'USD', 200000, 'test', 'test' FROM v RETURNING id, organization_id),
             online AS (
                 INSERT INTO catalog.raffle_ranges (raffle_id, range_type, start_number, end_number, next_number)
                 SELECT id, 'online', 50001, 180000, 50001 FROM r RETURNING id),
             rsu AS (
                 INSERT INTO catalog.raffle_ranges (raffle_id, range_type, start_number, end_number, next_number, default_allocation_size)
                 SELECT id, 'rsu', 1, 50000, 1, 100 FROM r RETURNING id),
             p AS (
                 INSERT INTO catalog.ticket_packages (raffle_id, name, ticket_count, price_minor, currency, created_by, updated_by)
                 SELECT id, 'Value Pack', 5, 2000, 'USD', 'test', 'test' FROM r RETURNING id),
             d AS (
                 INSERT INTO catalog.rsus (organization_id, name, device_identifier, max_offline_tickets, sync_interval_minutes, rsu_number, created_by, updated_by)
                 SELECT id, 'RSU-001', 'MAC:' || gen_random_uuid(), 100, 5, 1, 'test', 'test' FROM o RETURNING id)
             SELECT r.organization_id, r.id, online.id, rsu.id, p.id, d.id FROM r, online, rsu, p, d",
            &[],
        )
        .await
        .expect("seed catalog");
    Fixture {
        organization_id: row.get(0),
        raffle_id: row.get(1),
        online_range_id: row.get(2),
        rsu_range_id: row.get(3),
        package_id: row.get(4),
        rsu_id: row.get(5),
    }
}

/// Inserts a completed online order of the fixture's package; returns its id.
pub async fn insert_order(client: &tokio_postgres::Client, f: &Fixture, key: &str) -> uuid::Uuid {
    client
        .query_one(
            "INSERT INTO sales.orders (raffle_id, package_id, validation_number, ticket_count, total_amount_minor,
                                       currency, payment_status, idempotency_key, source)
             VALUES ($1, $2, 'VAL-' || upper(substr(md5($3), 1, 12)), 5, 2000, 'USD', 'completed', $3, 'online')
             RETURNING id",
            &[&f.raffle_id, &f.package_id, &key],
        )
        .await
        .expect("insert order")
        .get(0)
}

/// The SQLSTATE of a failed statement, for asserting which constraint refused it.
pub fn sqlstate(result: Result<u64, tokio_postgres::Error>) -> String {
    match result {
        Ok(n) => format!("ok({n})"),
        Err(e) => e
            .code()
            .map(|c| c.code().to_owned())
            .unwrap_or_else(|| e.to_string()),
    }
}

/// The key of a raffle's online sales: its online range.
pub async fn online_partition(
    client: &tokio_postgres::Client,
    raffle: uuid::Uuid,
) -> schemas::RangePartition {
    let range: uuid::Uuid = client
        .query_one(
            "SELECT id FROM catalog.raffle_ranges WHERE raffle_id = $1 AND range_type = 'online'",
            &[&raffle],
        )
        .await
        .expect("online range")
        .get(0);
    schemas::RangePartition {
        raffle_id: raffle,
        range: schemas::RangeRef::Range(range),
    }
}

/// A pending online order of the seeded 5-for-$20 package, and the sale event that pays it at
/// `paid`, as ingest would produce it.
pub async fn pending_order_and_sale(
    client: &tokio_postgres::Client,
    s: &scenario::seed::Scenario,
    partition: schemas::RangePartition,
    validation_number: &str,
    paid: chrono::DateTime<chrono::Utc>,
) -> (uuid::Uuid, schemas::SaleEvent) {
    let order: uuid::Uuid = client
        .query_one(
            "INSERT INTO sales.orders (raffle_id, package_id, validation_number, ticket_count, total_amount_minor, currency, source)
             VALUES ($1, $2, $3, 5, 2000, 'USD', 'online') RETURNING id",
            &[&s.raffle_id, &s.package_id, &validation_number],
        )
        .await
        .expect("pending order")
        .get(0);
    let sale = schemas::SaleEvent {
        event_id: uuid::Uuid::now_v7(),
        idempotency_key: format!("evt_{validation_number}"),
        kind: schemas::SaleEventKind::SaleCompleted,
        raffle_id: s.raffle_id,
        range_partition: partition,
        order_id: Some(order),
        package_id: Some(s.package_id),
        ticket_count: 5,
        amount_minor: 2000,
        currency: schemas::Currency::parse("USD").expect("USD"),
        occurred_at_us: paid.timestamp_micros(),
        received_at_us: chrono::Utc::now().timestamp_micros(),
        payment: None,
        rsu_sale: None,
        customer: None,
        reason: None,
    };
    (order, sale)
}

type ServiceResult = Result<Vec<std::sync::Arc<platform::ConsumerStats>>, platform::ConsumerError>;

/// A consumer service (the allocator or the ledger) running inside the test on its topics and
/// database until [`Service::stop`] (or until the test ends).
pub struct Service {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<ServiceResult>,
}

impl Service {
    /// Stops it and checks it ran cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task
            .await
            .expect("the service task joins")
            .expect("the service ran cleanly");
    }
}

/// Starts a consumer service's `run` on the test's stack.
fn start<F, Fut>(env: &TestEnv, run: F) -> Service
where
    F: FnOnce(
            platform::db::DbTarget,
            deadpool_postgres::Pool,
            String,
            platform::TopicNames,
            tokio::sync::watch::Receiver<bool>,
        ) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ServiceResult> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (db, pool, brokers, topics) = (
        env.db.clone(),
        env.pool.clone(),
        env.brokers.clone(),
        env.topics.clone(),
    );
    let task = tokio::spawn(run(db, pool, brokers, topics, stopped));
    Service { stop, task }
}

/// Starts `allocator::run` on the test's stack.
pub fn allocator(env: &TestEnv) -> Service {
    start(env, |db, pool, brokers, topics, stopped| async move {
        allocator::run(db, pool, &brokers, &topics, stopped).await
    })
}

/// Starts `ledger::run` on the test's stack.
pub fn ledger(env: &TestEnv) -> Service {
    start(env, |db, pool, brokers, topics, stopped| async move {
        ledger::run(db, pool, &brokers, &topics, stopped).await
    })
}

/// The real ingest server on a free port, with the webhook secret `secret`, for the test's
/// lifetime.
pub async fn ingest(env: &TestEnv, secret: &[u8]) -> std::net::SocketAddr {
    ingest_with_mail(env, secret, notifier::MailSettings::default()).await
}

/// [`ingest`] composing buyers' copies with `mail` and opening the order links of its key.
pub async fn ingest_with_mail(
    env: &TestEnv,
    secret: &[u8],
    mail: notifier::MailSettings,
) -> std::net::SocketAddr {
    let state = std::sync::Arc::new(
        ingest::IngestState::new(
            &env.db,
            env.pool.clone(),
            platform::kafka::producer(&env.brokers, 10_000).expect("producer"),
            ingest::IngestConfig {
                webhook_secret: secret.to_vec(),
                webhook_tolerance_s: 300,
                order_tickets_max: 500,
                sales_topic: env.topics.sales.clone(),
                brokers: env.brokers.clone(),
                hold_minutes: ingest::HOLD_MINUTES_DEFAULT,
            },
        )
        .expect("ingest state")
        .with_mail(mail),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(ingest::serve(state, listener, std::future::pending()));
    addr
}

/// Waits until the allocator has decided every sale on the stream and its outbox is relayed.
pub async fn sales_settled(env: &TestEnv) {
    eventually("the allocator to decide every sale", || async {
        let client = env.client().await;
        let lag: i64 = client
            .query_one("SELECT count(*) FROM platform.outbox WHERE published_at IS NULL", &[])
            .await
            .unwrap()
            .get(0);
        let high = platform::kafka::high_watermarks(&env.brokers, &env.topics.sales, env.topics.sales_partitions)
            .await
            .unwrap();
        let stored: i64 = client
            .query_one(
                "SELECT coalesce(sum(next_offset), 0)::bigint FROM platform.consumer_offsets WHERE consumer_group = 'allocator'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        lag == 0 && stored == high.iter().sum::<i64>()
    })
    .await;
}

/// A buyer checks out and pays: the order id and its check code.
pub async fn buy(
    ingest: std::net::SocketAddr,
    secret: &[u8],
    s: &scenario::seed::Scenario,
    email: Option<&str>,
) -> (uuid::Uuid, String) {
    let mut body = serde_json::json!({"raffle_id": s.raffle_id, "package_id": s.package_id});
    if let Some(email) = email {
        body["customer"] = serde_json::json!({"name": "Pat Buyer", "email": email});
    }
    let r = platform::http_client::request(
        ingest,
        "POST",
        "/v1/checkout",
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&body).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let receipt = r.json().unwrap();
    let order = receipt["order_id"].as_str().unwrap().to_owned();
    let amount = receipt["amount_minor"].as_i64().unwrap();
    let event = scenario::sales::stripe_event(
        &format!("evt_{order}"),
        &order,
        amount,
        scenario::sales::Payment::Succeeded,
    );
    let r = scenario::sales::deliver(ingest, secret, &event)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    (
        order.parse().unwrap(),
        receipt["check_code"].as_str().unwrap().to_owned(),
    )
}

/// A raffle on sale with no RSUs (online sales only), seeded through the admin API.
pub async fn online_raffle(env: &TestEnv) -> scenario::seed::Scenario {
    scenario::seed::raffle_on_sale(
        &env.pool,
        &scenario::seed::Options {
            rsu_count: 0,
            ..Default::default()
        },
    )
    .await
    .expect("seed a raffle on sale")
}

/// Closes the raffle's sales (as its admin) and seals it once the pipeline drained.
pub async fn close_and_seal(env: &TestEnv, s: &scenario::seed::Scenario) -> ledger::SealRecord {
    scenario::seed::call_as(
        &env.pool,
        "admin",
        warp::http::Method::POST,
        &format!(
            "organizations/{}/raffles/{}/transitions",
            s.organization_id, s.raffle_id
        ),
        serde_json::json!({"to": "sales_closed", "reason": "the gates close"}),
    )
    .await
    .expect("close the sales");
    let seal = ledger::SealRequest {
        raffle_id: s.raffle_id,
        sealed_by: "finance".into(),
        grace_seconds: 0,
        write_off: Vec::new(),
        seed_key: None,
        seed_keeper: &draw_engine::SEED_KEEPER,
    };
    scenario::seal_when_drained(
        &env.pool,
        &env.brokers,
        &env.topics,
        &seal,
        Duration::from_secs(30),
    )
    .await
    .expect("seal")
}
