//! The sales pipeline end to end: the real ingest server, the real broker, the allocator as
//! its own process (killed and restarted mid-way), Postgres. 10,000 orders across online and
//! three RSUs, with duplicate and out-of-order deliveries, bad signatures, failed payments,
//! refunds, voids and refused records mixed in. Afterwards: every paid order holds exactly its
//! package's tickets, numbers are unique and gap-free per range, no unpaid order holds a
//! ticket, the counters match the tickets, and every refused sale is visible with its reason.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration as Span, Utc};
use futures::StreamExt;
use ingest::{IngestConfig, IngestState};
use platform::http_client::{Response, request};
use platform::testkit::TestEnv;
use scenario::seed::Scenario;
use serde_json::{Value, json};
use uuid::Uuid;

const WEBHOOK_SECRET: &[u8] = b"whsec_pipeline_test_secret";
const RSU_COUNT: usize = 3;

/// The real ingest server on a free port, stopped when the returned sender drops.
async fn spawn_ingest(env: &TestEnv) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    spawn_ingest_on(env, &env.db, env.pool.clone()).await
}

/// [`spawn_ingest`] on the database `db` through `pool` (a service role's, say).
async fn spawn_ingest_on(
    env: &TestEnv,
    db: &platform::db::DbTarget,
    pool: deadpool_postgres::Pool,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let state = Arc::new(
        IngestState::new(
            db,
            pool,
            platform::kafka::producer(&env.brokers, 10_000).unwrap(),
            IngestConfig {
                webhook_secret: WEBHOOK_SECRET.to_vec(),
                webhook_tolerance_s: 300,
                order_tickets_max: 500,
                sales_topic: env.topics.sales.clone(),
                brokers: env.brokers.clone(),
                hold_minutes: ingest::HOLD_MINUTES_DEFAULT,
            },
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ingest::serve(state, listener, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// The allocator as its own process; killed with the test, whatever happens.
struct AllocatorProcess(Child);

impl AllocatorProcess {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for AllocatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_allocator(env: &TestEnv) -> AllocatorProcess {
    start_service(env, &["allocator", "run"], &env.database_url)
}

/// `raffle ARGS` as its own process on the test's stack, with `database_url`.
fn start_service(env: &TestEnv, args: &[&str], database_url: &str) -> AllocatorProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_raffle"))
        .args(args)
        .env("RAFFLE_ALLOCATOR_HEALTH_ADDR", "127.0.0.1:0")
        .env("RAFFLE_LEDGER_HEALTH_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", database_url)
        .env("KAFKA_BROKERS", &env.brokers)
        .env("RAFFLE_TOPIC_PREFIX", format!("{}.", env.unique))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a service");
    AllocatorProcess(child)
}

async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> Response {
    request(
        addr,
        "POST",
        path,
        headers,
        &serde_json::to_vec(body).unwrap(),
    )
    .await
    .expect("HTTP request")
}

fn webhook(kind: &str, event_id: &str, order: &str, amount: i64) -> Value {
    use scenario::sales::Payment;
    let payment = match kind {
        "payment_intent.succeeded" => Payment::Succeeded,
        "payment_intent.payment_failed" => Payment::Failed,
        "payment_intent.canceled" => Payment::Canceled,
        "charge.refunded" => Payment::Refunded,
        other => panic!("no builder for {other}"),
    };
    scenario::sales::stripe_event(event_id, order, amount, payment)
}

async fn deliver(addr: SocketAddr, body: &Value, secret: &[u8]) -> u16 {
    deliver_for_answer(addr, body, secret).await.status
}

async fn deliver_for_answer(addr: SocketAddr, body: &Value, secret: &[u8]) -> Response {
    scenario::sales::deliver(addr, secret, body)
        .await
        .expect("HTTP request")
}

#[derive(Default, Debug)]
struct Expect {
    paid: usize,
    failed: usize,
    refunded: usize,
}

/// One online buyer: checkout, then the provider's webhooks, with trouble mixed in by `i`.
async fn buyer(
    addr: SocketAddr,
    raffle: Uuid,
    package: Uuid,
    i: usize,
) -> (String, &'static str, Option<Value>) {
    let r = post(
        addr,
        "/v1/checkout",
        &[("Content-Type", "application/json")],
        &json!({"raffle_id": raffle, "package_id": package}),
    )
    .await;
    assert_eq!(
        r.status,
        201,
        "checkout: {}",
        String::from_utf8_lossy(&r.body)
    );
    let order = r.json().unwrap()["order_id"].as_str().unwrap().to_owned();
    let paid = webhook(
        "payment_intent.succeeded",
        &format!("evt_ok_{i}"),
        &order,
        2000,
    );
    if i % 100 == 2 {
        // The card is declined, the buyer tries again and pays: a failed attempt leaves the
        // order payable (Payment Element and Checkout retry on the same PaymentIntent).
        let declined = webhook(
            "payment_intent.payment_failed",
            &format!("evt_fail_{i}"),
            &order,
            2000,
        );
        assert_eq!(deliver(addr, &declined, WEBHOOK_SECRET).await, 200);
        assert_eq!(
            deliver(addr, &declined, WEBHOOK_SECRET).await,
            200,
            "a repeated failure is fine"
        );
    }
    if i % 100 == 6 {
        // The buyer gives up: the PaymentIntent is cancelled, and the order ends.
        let cancelled = webhook(
            "payment_intent.canceled",
            &format!("evt_cancel_{i}"),
            &order,
            2000,
        );
        assert_eq!(deliver(addr, &cancelled, WEBHOOK_SECRET).await, 200);
        return (order, "failed", None);
    }
    if i % 50 == 1 {
        // A forged delivery first: refused, and nothing happens.
        assert_eq!(deliver(addr, &paid, b"not-the-secret").await, 401);
    }
    if i.is_multiple_of(20) {
        // The provider retries concurrently.
        let (a, b) = tokio::join!(
            deliver(addr, &paid, WEBHOOK_SECRET),
            deliver(addr, &paid, WEBHOOK_SECRET)
        );
        assert_eq!((a, b), (200, 200));
    } else {
        assert_eq!(deliver(addr, &paid, WEBHOOK_SECRET).await, 200);
    }
    if i % 100 == 3 {
        // A stale failure arriving after the success (out of order) changes nothing.
        let late = webhook(
            "payment_intent.payment_failed",
            &format!("evt_late_{i}"),
            &order,
            2000,
        );
        assert_eq!(deliver(addr, &late, WEBHOOK_SECRET).await, 200);
    }
    if i % 200 == 4 {
        let refund = webhook("charge.refunded", &format!("evt_refund_{i}"), &order, 2000);
        return (order, "refunded", Some(refund));
    }
    (
        order,
        "completed",
        if i % 97 == 5 { Some(paid) } else { None },
    )
}

fn rsu_record(setup: &Scenario, r: usize, j: i64, created: chrono::DateTime<Utc>) -> Value {
    scenario::sales::rsu_sale(setup, r, j as usize, created, "r").record
}

async fn upload(addr: SocketAddr, key: &str, records: &[Value]) -> Value {
    let auth = format!("Bearer {key}");
    let r = post(
        addr,
        "/v1/rsu/sales",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        &json!({"records": records}),
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "upload: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()
}

/// A raffle on sale (the seed's defaults), a client, and the raffle's online partition.
async fn raffle_on_sale(
    env: &TestEnv,
) -> (Scenario, tokio_postgres::Client, schemas::RangePartition) {
    let s = scenario::seed::raffle_on_sale(&env.pool, &scenario::seed::Options::default())
        .await
        .expect("seed a raffle");
    let client = env.client().await;
    let partition = common::online_partition(&client, s.raffle_id).await;
    (s, client, partition)
}

async fn pending_orders(env: &TestEnv) -> i64 {
    scalar(
        env,
        "SELECT count(*) FROM sales.orders WHERE payment_status = 'pending'",
    )
    .await
}

async fn scalar(env: &TestEnv, sql: &str) -> i64 {
    env.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_orders_online_and_offline_become_exactly_their_tickets() {
    let total_orders: usize = std::env::var("PIPELINE_E2E_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rsu_sales_each = (total_orders * 3 / 10 / RSU_COUNT).min(1000) as i64;
    let online_orders = total_orders - rsu_sales_each as usize * RSU_COUNT;
    let env = TestEnv::new().await;
    let setup = Arc::new(
        scenario::seed::raffle_on_sale(&env.pool, &scenario::seed::Options::default())
            .await
            .expect("seed a raffle"),
    );

    let (addr, _stop) = spawn_ingest(&env).await;
    let mut allocator = start_allocator(&env);
    let started = Instant::now();

    // A payment that is no raffle order's (another product on the account): acknowledged,
    // and recorded once for finance however often it comes.
    let unknown = webhook(
        "payment_intent.succeeded",
        "evt_unknown",
        &Uuid::new_v4().to_string(),
        2000,
    );
    for _ in 0..2 {
        assert_eq!(deliver(addr, &unknown, WEBHOOK_SECRET).await, 200);
    }
    let noted: i64 = env
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM sales.provider_events WHERE provider_event_id = 'evt_unknown' AND note = 'not_a_raffle_order'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(noted, 1);
    let mut stale = webhook(
        "payment_intent.succeeded",
        "evt_stale",
        &Uuid::new_v4().to_string(),
        2000,
    );
    stale["created"] = json!(0);
    let bytes = serde_json::to_vec(&stale).unwrap();
    let old_signature =
        ingest::signature::sign(WEBHOOK_SECRET, &bytes, Utc::now().timestamp() - 3600);
    let r = request(
        addr,
        "POST",
        "/v1/webhooks/payments",
        &[("Stripe-Signature", old_signature.as_str())],
        &bytes,
    )
    .await
    .expect("HTTP request");
    assert_eq!(r.status, 401, "a replayed signature is refused");
    assert!(
        r.json().unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("tolerance")
    );
    let r = request(
        addr,
        "POST",
        "/v1/webhooks/payments",
        &[("Stripe-Signature", "t=1")],
        b"{",
    )
    .await
    .expect("HTTP request");
    assert_eq!(r.status, 400);

    // A malformed body with a good signature, an oversized body, an unknown package, and a
    // payment whose amount does not match its order.
    let garbage = b"{\"id\": ";
    let sig = ingest::signature::sign(WEBHOOK_SECRET, garbage, Utc::now().timestamp());
    let r = request(
        addr,
        "POST",
        "/v1/webhooks/payments",
        &[("Stripe-Signature", sig.as_str())],
        garbage,
    )
    .await
    .expect("HTTP request");
    assert_eq!(
        (
            r.status,
            r.json().unwrap()["type"].as_str().map(str::to_owned)
        ),
        (400, Some("/problems/malformed-body".into()))
    );
    let huge = vec![b' '; 70 * 1024];
    let r = request(addr, "POST", "/v1/webhooks/payments", &[], &huge)
        .await
        .expect("HTTP request");
    assert_eq!(r.status, 413);
    let r = post(
        addr,
        "/v1/checkout",
        &[],
        &json!({"raffle_id": setup.raffle_id, "package_id": Uuid::new_v4()}),
    )
    .await;
    assert_eq!(
        (
            r.status,
            r.json().unwrap()["field"].as_str().map(str::to_owned)
        ),
        (422, Some("package_id".into()))
    );
    let r = post(
        addr,
        "/v1/checkout",
        &[],
        &json!({"raffle_id": setup.raffle_id, "package_id": setup.package_id}),
    )
    .await;
    let cheap_order = r.json().unwrap()["order_id"].as_str().unwrap().to_owned();
    let cheap = webhook("payment_intent.succeeded", "evt_cheap", &cheap_order, 1);
    assert_eq!(
        deliver(addr, &cheap, WEBHOOK_SECRET).await,
        200,
        "a captured amount that does not match the order is acknowledged, and rejected for refund"
    );
    assert_eq!(
        deliver(
            addr,
            &webhook(
                "payment_intent.payment_failed",
                "evt_cheap_fail",
                &cheap_order,
                2000
            ),
            WEBHOOK_SECRET
        )
        .await,
        200
    );

    // RSUs: the devices sold offline; they sync in shuffled batches, some twice.
    let sold_at = Utc::now() - Span::minutes(30);
    let mut rsu_uploads = Vec::new();
    for r in 0..RSU_COUNT {
        let mut records: Vec<Value> = (0..rsu_sales_each)
            .map(|j| rsu_record(&setup, r, j, sold_at))
            .collect();
        if r == 0 {
            records[7]["voided"] = json!(true);
            records[7]["voidReason"] = json!("customer changed their mind");
        }
        let mut batches: Vec<Vec<Value>> = records.chunks(100).map(<[Value]>::to_vec).collect();
        batches.reverse();
        if batches.len() > 2 {
            batches.swap(0, 1);
            let again = batches[1].clone();
            batches.push(again);
        }
        rsu_uploads.push(batches);
    }
    let setup_for_rsus = setup.clone();
    let rsu_task = tokio::spawn(async move {
        let mut results = Vec::new();
        for (r, batches) in rsu_uploads.into_iter().enumerate() {
            let key = setup_for_rsus.rsus[r].api_key.clone();
            for batch in batches {
                results.push(upload(addr, &key, &batch).await);
            }
        }
        results
    });

    // Online buyers, 16 at a time; the allocator is killed half-way and restarted.
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let buyers = futures::stream::iter(0..online_orders)
        .map(|i| buyer(addr, setup.raffle_id, setup.package_id, i))
        .buffer_unordered(16);
    let mut outcomes = Vec::with_capacity(online_orders);
    futures::pin_mut!(buyers);
    while let Some(outcome) = buyers.next().await {
        outcomes.push(outcome);
        if outcomes.len() == online_orders / 2
            && !killed.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            allocator.kill(); // SIGKILL: no shutdown, mid-batch
            allocator = start_allocator(&env);
        }
    }
    let rsu_results = rsu_task.await.unwrap();

    // Refunds and re-deliveries days later, once the first deliveries landed.
    let mut expect = Expect::default();
    let mut later = Vec::new();
    for (order, kind, follow_up) in &outcomes {
        match *kind {
            "failed" => expect.failed += 1,
            "refunded" => expect.refunded += 1,
            _ => expect.paid += 1,
        }
        if let Some(f) = follow_up {
            later.push((order.clone(), f.clone()));
        }
    }
    common::eventually("online payments to land", || {
        let env = &env;
        async move { scalar(env, "SELECT count(*) FROM sales.orders WHERE source = 'online' AND payment_status = 'pending'").await == 0 }
    })
    .await;
    for (_, body) in &later {
        assert_eq!(deliver(addr, body, WEBHOOK_SECRET).await, 200);
    }
    // Bad RSU records: a number outside the block (refused at the edge) and a sale from
    // before the sales window (refused by the allocator).
    let key0 = &setup.rsus[0].api_key;
    let mut outside = rsu_record(&setup, 0, rsu_sales_each + 1, sold_at);
    outside["drawNumbers"][0] = json!(49_999);
    let mut early = rsu_record(&setup, 0, rsu_sales_each + 2, Utc::now() - Span::days(2));
    early["localId"] = json!("r0-early");
    let bad = upload(addr, key0, &[outside, early]).await;
    assert_eq!(bad["results"][0]["status"], "rejected");
    assert!(
        bad["results"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("outside the allocation")
    );
    assert_eq!(
        bad["results"][1]["status"], "accepted",
        "only the allocator knows the sales window by then"
    );

    let rsu_orders_expected = (rsu_sales_each as usize) * RSU_COUNT;
    common::eventually("everything to land", || {
        let env = &env;
        async move {
            let rsu = scalar(
                env,
                "SELECT count(*) FROM sales.orders WHERE source = 'rsu'",
            )
            .await as usize;
            let refunded = scalar(
                env,
                "SELECT count(*) FROM sales.orders WHERE payment_status = 'refunded'",
            )
            .await as usize;
            let early = scalar(
                env,
                "SELECT count(*) FROM sales.rejected_sales WHERE local_id = 'r0-early'",
            )
            .await;
            let outbox = scalar(
                env,
                "SELECT count(*) FROM platform.outbox WHERE published_at IS NULL",
            )
            .await;
            rsu == rsu_orders_expected && refunded == expect.refunded && early == 1 && outbox == 0
        }
    })
    .await;
    let elapsed = started.elapsed();
    allocator.kill();

    // Every upload answered per record; repeated batches were duplicates.
    let duplicates: u64 = rsu_results
        .iter()
        .map(|r| r["duplicate"].as_u64().unwrap())
        .sum();
    let accepted: u64 = rsu_results
        .iter()
        .map(|r| r["accepted"].as_u64().unwrap())
        .sum();
    assert!(accepted >= rsu_orders_expected as u64);
    let _ = duplicates;

    let client = env.client().await;
    // Every paid order holds exactly its package's tickets; no unpaid order holds any.
    let wrong: i64 = client
        .query_one(
            "SELECT count(*) FROM sales.orders o
               LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE state = 'sold') AS sold, count(*) AS all_tickets
                                    FROM sales.tickets t WHERE t.order_id = o.id) t ON true
              WHERE (o.payment_status = 'completed' AND t.sold <> o.ticket_count)
                 OR (o.payment_status IN ('pending', 'failed', 'rejected') AND t.all_tickets <> 0)
                 OR (o.payment_status IN ('refunded', 'voided') AND (t.sold <> 0 OR t.all_tickets <> o.ticket_count))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0, "orders whose tickets do not match their state");
    let by_status: BTreeMap<String, i64> = client
        .query(
            "SELECT payment_status, count(*) FROM sales.orders WHERE source = 'online' GROUP BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        by_status.get("completed").copied().unwrap_or(0) as usize,
        expect.paid,
        "{by_status:?}"
    );
    assert_eq!(
        by_status.get("failed").copied().unwrap_or(0) as usize,
        expect.failed,
        "{by_status:?}"
    );
    assert_eq!(
        by_status.get("rejected").copied().unwrap_or(0),
        1,
        "the order whose payment did not match: {by_status:?}"
    );
    assert_eq!(
        by_status.get("refunded").copied().unwrap_or(0) as usize,
        expect.refunded
    );

    // Online numbers: unique (the database holds that) and gap-free from the range start.
    let online: (i64, i64, i64) = {
        let r = client
            .query_one(
                "SELECT min(draw_number), max(draw_number), count(*) FROM sales.tickets t
                   JOIN catalog.raffle_ranges g ON g.id = t.range_id WHERE g.range_type = 'online'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    let online_orders_with_numbers = (expect.paid + expect.refunded) as i64;
    assert_eq!(
        online,
        (
            50_001,
            50_000 + 5 * online_orders_with_numbers,
            5 * online_orders_with_numbers
        ),
        "gap-free online range"
    );
    // RSU numbers: exactly the numbers each device sold, voided ones included.
    for (r, seeded) in setup.rsus.iter().enumerate() {
        let (rsu, alloc) = (&seeded.id, &seeded.allocation);
        let start = alloc["start_number"].as_i64().unwrap();
        let row = client
            .query_one(
                "SELECT min(draw_number), max(draw_number), count(*), count(*) FILTER (WHERE state = 'voided')
                   FROM sales.tickets t JOIN sales.orders o ON o.id = t.order_id WHERE o.rsu_id = $1",
                &[rsu],
            )
            .await
            .unwrap();
        let (lo, hi, n, voided): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(
            (lo, hi, n),
            (start, start + 5 * rsu_sales_each - 1, 5 * rsu_sales_each),
            "RSU {r}"
        );
        assert_eq!(voided, if r == 0 { 5 } else { 0 });
    }
    // Counters match the tickets: sold + voided + unsold = total, per range, per allocation, raffle.
    let mismatched: i64 = client
        .query_one(
            "SELECT count(*) FROM catalog.raffle_ranges g
              WHERE g.sold <> (SELECT count(*) FROM sales.tickets t WHERE t.range_id = g.id AND t.state <> 'voided')
                 OR g.voided <> (SELECT count(*) FROM sales.tickets t WHERE t.range_id = g.id AND t.state = 'voided')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(mismatched, 0, "range counters");
    let mismatched: i64 = client
        .query_one(
            "SELECT count(*) FROM catalog.rsu_allocations a
              WHERE a.tickets_sold <> (SELECT count(*) FROM sales.tickets t WHERE t.rsu_allocation_id = a.id AND t.state <> 'voided')
                 OR a.tickets_voided <> (SELECT count(*) FROM sales.tickets t WHERE t.rsu_allocation_id = a.id AND t.state = 'voided')
                 OR a.tickets_sold + a.tickets_voided + a.tickets_available <> a.total_tickets",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(mismatched, 0, "allocation counters");
    let raffle = client
        .query_one(
            "SELECT total_sold, total_voided, (SELECT count(*) FROM sales.tickets WHERE state <> 'voided'),
                    (SELECT count(*) FROM sales.tickets WHERE state = 'voided') FROM catalog.raffle_events WHERE id = $1",
            &[&setup.raffle_id],
        )
        .await
        .unwrap();
    assert_eq!(
        (raffle.get::<_, i64>(0), raffle.get::<_, i64>(1)),
        (raffle.get::<_, i64>(2), raffle.get::<_, i64>(3)),
        "raffle counters"
    );

    // The ledger, fed by the allocator's ticket events, agrees with the orders to the cent.
    let ledger_task = common::ledger(&env);
    let issued_events: i64 = client
        .query_one(
            "SELECT count(*) FROM platform.outbox WHERE topic = $1",
            &[&env.topics.tickets],
        )
        .await
        .unwrap()
        .get(0);
    common::eventually("the ledger to post every ticket event", || {
        let env = &env;
        async move {
            scalar(env, "SELECT coalesce(sum(next_offset), 0)::bigint FROM platform.consumer_offsets WHERE consumer_group = 'ledger'").await
                >= issued_events
        }
    })
    .await;
    ledger_task.stop().await;
    let books = ledger::balances(&client, setup.raffle_id, None)
        .await
        .unwrap();
    let money = |sql: &str| {
        let client = &client;
        let sql = sql.to_owned();
        async move { client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let online_paid = money("SELECT coalesce(sum(total_amount_minor), 0)::bigint FROM sales.orders WHERE source = 'online' AND payment_status = 'completed'").await;
    let refunded = money("SELECT coalesce(sum(total_amount_minor), 0)::bigint FROM sales.orders WHERE payment_status = 'refunded'").await;
    let rsu_sold = money("SELECT coalesce(sum(total_amount_minor), 0)::bigint FROM sales.orders WHERE source = 'rsu' AND payment_status = 'completed'").await;
    // Payments the allocator refused after the provider captured them are owed back: the
    // provider still holds them, against refunds payable, until they are refunded.
    let owed_back = money("SELECT coalesce(sum(amount_minor), 0)::bigint FROM refunds.obligations WHERE state = 'owed'").await;
    assert_eq!(
        books.get("payment_clearing").copied().unwrap_or(0),
        online_paid + owed_back,
        "{books:?}"
    );
    assert_eq!(
        -books.get("refunds_payable").copied().unwrap_or(0),
        owed_back,
        "{books:?}"
    );
    assert_eq!(
        books.get("refunds_and_voids").copied().unwrap_or(0),
        refunded
    );
    assert_eq!(
        -books.get("gross_ticket_revenue").copied().unwrap_or(0),
        online_paid + refunded + rsu_sold
    );
    let floats: i64 = books
        .iter()
        .filter(|(k, _)| k.starts_with("rsu_float/"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(floats, rsu_sold, "each device's float is what it sold");
    assert_eq!(books.values().sum::<i64>(), 0, "trial balance");
    let verification = ledger::verify(&client, setup.raffle_id).await.unwrap();
    assert!(verification.ok(), "{verification:?}");
    let report = ledger::report::reconciliation(&client, setup.raffle_id)
        .await
        .unwrap();
    let failing: Vec<_> = report.checks.iter().filter(|c| !c.pass).collect();
    assert!(
        failing.is_empty(),
        "reconciliation checks failed: {failing:#?}"
    );

    // Every refused sale is visible with its reason.
    let rejected: HashMap<String, i64> = client
        .query(
            "SELECT reason_code, count(*) FROM sales.rejected_sales WHERE reason <> '' GROUP BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rejected.get("order_mismatch"), Some(&1), "{rejected:?}");
    assert_eq!(
        rejected.get("number_outside_allocation"),
        Some(&1),
        "{rejected:?}"
    );
    assert_eq!(
        rejected.get("outside_sales_window"),
        Some(&1),
        "{rejected:?}"
    );
    eprintln!(
        "pipeline: {online_orders} online + {} RSU orders in {elapsed:?} ({:.0} orders/s end to end, debug build)",
        rsu_orders_expected,
        total_orders as f64 / elapsed.as_secs_f64()
    );
}

/// A raffle at its maximum stops: later sales are rejected for refund, never over-issued; an
/// undecodable message on the way goes to the DLQ and the partition keeps moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_raffle_rejects_later_sales_and_garbage_goes_to_the_dlq() {
    let env = TestEnv::new().await;
    let options = scenario::seed::Options {
        rsu_count: 0,
        max_tickets: 10,
        ..Default::default()
    };
    let s = scenario::seed::raffle_on_sale(&env.pool, &options)
        .await
        .expect("seed a raffle");
    let client = env.client().await;
    let partition = common::online_partition(&client, s.raffle_id).await;
    let producer = platform::kafka::producer(&env.brokers, 10_000).unwrap();
    let key = partition.to_string();
    let send = |payload: Vec<u8>| {
        let producer = producer.clone();
        let key = key.clone();
        let topic = env.topics.sales.clone();
        async move {
            producer
                .send(
                    rdkafka::producer::FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&payload),
                    std::time::Duration::from_secs(10),
                )
                .await
                .expect("broker ack");
        }
    };
    send(b"\x00garbage that is not avro".to_vec()).await;
    let mut orders = Vec::new();
    for i in 0..3 {
        let (order, event) = common::pending_order_and_sale(
            &client,
            &s,
            partition,
            &format!("VAL-SOLDOUT{i}"),
            Utc::now(),
        )
        .await;
        send(schemas::encode(&event).unwrap()).await;
        orders.push(order);
    }
    let running = common::allocator(&env);
    common::eventually("the three sales to be decided", || {
        let env = &env;
        async move {
            pending_orders(env).await == 0
                && scalar(
                    env,
                    "SELECT count(*) FROM platform.outbox WHERE published_at IS NULL",
                )
                .await
                    == 0
        }
    })
    .await;
    running.stop().await;
    let statuses: Vec<String> = client
        .query(
            "SELECT payment_status FROM sales.orders WHERE id = ANY($1) ORDER BY validation_number",
            &[&orders],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, vec!["completed", "completed", "rejected"]);
    assert_eq!(
        scalar(&env, "SELECT total_sold FROM catalog.raffle_events").await,
        10,
        "never over-issued"
    );
    let reason: String = client
        .query_one(
            "SELECT reason FROM sales.rejected_sales WHERE reason_code = 'raffle_sold_out'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reason.contains("maximum of 10"), "{reason}");
    let dead: i64 = client
        .query_one(
            "SELECT count(*) FROM platform.outbox WHERE topic = $1",
            &[&env.topics.dlq],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 1, "the garbage went to the DLQ");
    let issued_events: i64 = client
        .query_one(
            "SELECT count(*) FROM platform.outbox WHERE topic = $1",
            &[&env.topics.tickets],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        issued_events, 3,
        "two issued, one rejected, each told to the ledger"
    );
}

/// One payment pays one order. A sale naming a payment that already paid another order, in
/// the same batch or an earlier one, is rejected with the reason (so the refund can follow)
/// and the sales behind it in the partition still go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_already_paid_an_order_cannot_pay_another() {
    let env = TestEnv::new().await;
    let (s, client, partition) = raffle_on_sale(&env).await;
    let producer = platform::kafka::producer(&env.brokers, 10_000).unwrap();
    let mut orders = Vec::new();
    let mut sell = async |name: &str, reference: &str| {
        let (order, mut event) =
            common::pending_order_and_sale(&client, &s, partition, name, Utc::now()).await;
        event.payment = Some(schemas::PaymentRef {
            provider: "stripe".into(),
            reference: reference.into(),
            provider_event_id: format!("evt_{name}"),
        });
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&env.topics.sales)
                    .key(&partition.to_string())
                    .payload(&schemas::encode(&event).unwrap()),
                std::time::Duration::from_secs(10),
            )
            .await
            .expect("broker ack");
        orders.push(order);
    };
    // Before the allocator starts, so that the first three are decided in one batch.
    sell("VAL-PAY-A", "pi_shared").await;
    sell("VAL-PAY-B", "pi_shared").await;
    sell("VAL-PAY-C", "pi_c").await;
    let decided = || async { pending_orders(&env).await == 0 };
    let running = common::allocator(&env);
    common::eventually("the first three sales to be decided", decided).await;
    // A later batch: the payment of C is in the database by now.
    sell("VAL-PAY-D", "pi_c").await;
    sell("VAL-PAY-E", "pi_e").await;
    common::eventually("the last two sales to be decided", decided).await;
    running.stop().await;
    let statuses: Vec<(String, i64)> = client
        .query(
            "SELECT o.payment_status, (SELECT count(*) FROM sales.tickets t WHERE t.order_id = o.id)
               FROM sales.orders o WHERE o.id = ANY($1) ORDER BY o.validation_number",
            &[&orders],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [
        ("completed", 5),
        ("rejected", 0),
        ("completed", 5),
        ("rejected", 0),
        ("completed", 5),
    ];
    let expected: Vec<(String, i64)> = expected.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    assert_eq!(
        statuses, expected,
        "A, C and E paid; B and D reused a payment"
    );
    let reasons: Vec<String> = client
        .query(
            "SELECT reason FROM sales.rejected_sales WHERE reason_code = 'payment_reused' ORDER BY reason",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("pi_shared") && r.contains(&orders[0].to_string())),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("pi_c") && r.contains(&orders[2].to_string())),
        "{reasons:?}"
    );
    assert_eq!(
        scalar(&env, "SELECT total_sold FROM catalog.raffle_events").await,
        15
    );
}

/// A buyer who paid twice for one order: the second payment (another payment intent) is not a
/// re-delivery. Ingest passes it on, the allocator rejects it with the reason, and the order keeps
/// its tickets from the first payment, so that the second is refunded, not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_payment_for_a_paid_order_is_rejected_so_that_it_is_refunded() {
    let env = TestEnv::new().await;
    let (s, client, partition) = raffle_on_sale(&env).await;
    let (order, _) =
        common::pending_order_and_sale(&client, &s, partition, "VAL-TWICE", Utc::now()).await;
    let (addr, _stop) = spawn_ingest(&env).await;
    let running = common::allocator(&env);
    let paid = |event_id: &str, intent: &str| {
        json!({"id": event_id, "type": "payment_intent.succeeded", "created": Utc::now().timestamp(),
               "data": {"object": {"id": intent, "amount": 2000, "currency": "usd",
                                    "metadata": {"order_id": order.to_string()}}}})
    };
    let status = |answer: Response| {
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        serde_json::from_slice::<Value>(&answer.body).unwrap()["status"].clone()
    };
    let first = deliver_for_answer(addr, &paid("evt_first", "pi_first"), WEBHOOK_SECRET).await;
    assert_eq!(status(first), "accepted");
    common::eventually("the first payment to issue the tickets", || async {
        pending_orders(&env).await == 0
    })
    .await;
    let again = deliver_for_answer(addr, &paid("evt_first", "pi_first"), WEBHOOK_SECRET).await;
    assert_eq!(status(again), "duplicate", "the same payment re-delivered");
    let second = deliver_for_answer(addr, &paid("evt_second", "pi_second"), WEBHOOK_SECRET).await;
    assert_eq!(
        status(second),
        "accepted",
        "another payment is not a re-delivery"
    );
    let rejected =
        "SELECT count(*) FROM sales.rejected_sales WHERE reason_code = 'order_already_paid'";
    common::eventually("the second payment to be rejected", || async {
        scalar(&env, rejected).await == 1
    })
    .await;
    running.stop().await;
    let row = client
        .query_one(
            "SELECT o.payment_status, o.payment_reference, (SELECT count(*) FROM sales.tickets t WHERE t.order_id = o.id),
                    r.reason, r.amount_minor, r.order_id
               FROM sales.orders o JOIN sales.rejected_sales r ON r.order_id = o.id
              WHERE o.id = $1",
            &[&order],
        )
        .await
        .unwrap();
    let (status, reference, tickets): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (status.as_str(), reference.as_str(), tickets),
        ("completed", "pi_first", 5),
        "the order keeps the first payment and its tickets"
    );
    let reason: String = row.get(3);
    assert!(
        reason.contains("pi_first") && reason.contains("pi_second"),
        "{reason}"
    );
    assert_eq!(row.get::<_, i64>(4), 2000, "the amount to refund");
    assert_eq!(
        scalar(&env, "SELECT total_sold FROM catalog.raffle_events").await,
        5
    );
}

/// Where the jurisdiction forbids offline sales, an offline RSU record is refused at upload
/// with the reason, and a sale made while connected still goes through.
#[tokio::test]
async fn a_jurisdiction_that_forbids_offline_sales_refuses_offline_rsu_records() {
    let env = TestEnv::new().await;
    let options = scenario::seed::Options {
        rsu_count: 1,
        ..Default::default()
    };
    let s = scenario::seed::raffle_on_sale(&env.pool, &options)
        .await
        .expect("seed a raffle");
    env.client()
        .await
        .execute(
            "INSERT INTO catalog.jurisdiction_regulations (jurisdiction_id, name, regulation_type, value, effective_date, overridable)
             SELECT v.jurisdiction_id, 'online RSUs only', 'sales_method',
                    '{\"online\": true, \"rsu\": true, \"offline_rsu\": false, \"rng_draw\": true}', now() - interval '1 day', false
               FROM catalog.raffle_events r JOIN catalog.venues v ON v.id = r.venue_id WHERE r.id = $1",
            &[&s.raffle_id],
        )
        .await
        .unwrap();
    let (addr, _stop) = spawn_ingest(&env).await;
    let offline = rsu_record(&s, 0, 0, Utc::now() - Span::minutes(1));
    let mut connected = rsu_record(&s, 0, 1, Utc::now() - Span::minutes(1));
    connected["isOfflineSale"] = json!(false);
    let answer = upload(addr, &s.rsus[0].api_key, &[offline, connected]).await;
    assert_eq!(answer["results"][0]["status"], "rejected");
    assert!(
        answer["results"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("offline sales are not allowed"),
        "{answer}"
    );
    assert_eq!(answer["results"][1]["status"], "accepted");
    let recorded = scalar(
        &env,
        "SELECT count(*) FROM sales.rejected_sales WHERE reason_code = 'regulation'",
    )
    .await;
    assert_eq!(recorded, 1, "the refusal is visible with its reason");
    // The device asks for the final word on what it uploaded.
    let auth = format!("Bearer {}", s.rsus[0].api_key);
    let r = request(
        addr,
        "GET",
        "/v1/rsu/sales?local_ids=r0-0,r0-1",
        &[("Authorization", auth.as_str())],
        b"",
    )
    .await
    .expect("HTTP request");
    assert_eq!(r.status, 200);
    let records = r.json().unwrap()["records"].clone();
    assert_eq!(records[0]["status"], "rejected");
    assert_eq!(records[0]["reason_code"], "regulation");
    assert_eq!(
        records[1]["status"], "pending",
        "accepted, not yet allocated (no allocator runs here)"
    );
    let r = request(
        addr,
        "GET",
        "/v1/rsu/sales?local_ids=r0-0",
        &[("Authorization", "Bearer rsk_wrong")],
        b"",
    )
    .await
    .expect("HTTP request");
    assert_eq!(r.status, 401);
}

/// Payment webhooks' order look-ups are batched across concurrent webhooks: under any mix of
/// repeated, unknown and distinct orders, each caller gets its own order and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_order_lookups_each_get_their_own_order() {
    let env = TestEnv::new().await;
    let s = scenario::seed::raffle_on_sale(&env.pool, &scenario::seed::Options::default())
        .await
        .unwrap();
    let client = env.pool.get().await.unwrap();
    // Each order's amount is its own, so an answer given to the wrong caller shows.
    let orders: Vec<(Uuid, i64)> = client
        .query(
            "INSERT INTO sales.orders (raffle_id, package_id, validation_number, ticket_count, total_amount_minor, currency, source)
             SELECT $1, $2, 'VAL-L' || lpad(g::text, 6, '0'), 5, 1000 + g, 'USD', 'online' FROM generate_series(1, 300) g
             RETURNING id, total_amount_minor",
            &[&s.raffle_id, &s.package_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    drop(client);
    let lookup = Arc::new(ingest::lookup::OrderLookup::start(&env.db).unwrap());
    let mut asks: Vec<(Uuid, Option<i64>)> = Vec::new();
    for round in 0..3 {
        asks.extend(orders.iter().map(|(id, amount)| (*id, Some(*amount))));
        asks.extend((0..40).map(|_| (Uuid::now_v7(), None)));
        if round == 1 {
            asks.reverse();
        }
    }
    // All at once: most of them wait in the queue and go in shared queries.
    let answers = futures::future::join_all(asks.iter().map(|(id, expected)| {
        let lookup = lookup.clone();
        async move { (lookup.get(*id).await.expect("look-up"), *expected) }
    }))
    .await;
    for (answer, expected) in answers {
        assert_eq!(answer.as_ref().map(|o| o.amount_minor), expected);
        if let Some(order) = answer {
            assert_eq!(
                (order.raffle_id, order.package_id, order.ticket_count),
                (s.raffle_id, s.package_id, 5)
            );
            assert_eq!(order.payment_status, "pending");
            assert!(order.online_range.is_some(), "the sale's range partition");
        }
    }
}

/// Sales end when they are closed, not only at the configured end: a payment made after an
/// early close is rejected for refund; one made before it is issued even if it arrives late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_made_after_an_early_close_is_rejected_for_refund() {
    let env = TestEnv::new().await;
    let (s, client, partition) = raffle_on_sale(&env).await;
    let before_close = Utc::now() - chrono::Duration::seconds(5);
    scenario::seed::call_as(
        &env.pool,
        "admin",
        warp::http::Method::POST,
        &format!(
            "organizations/{}/raffles/{}/transitions",
            s.organization_id, s.raffle_id
        ),
        json!({"to": "sales_closed", "reason": "the gates closed early"}),
    )
    .await
    .expect("close sales early");
    let after_close = Utc::now() + chrono::Duration::seconds(1);
    let (paid_before, early) =
        common::pending_order_and_sale(&client, &s, partition, "VAL-EARLY-OK", before_close).await;
    let (paid_after, late) =
        common::pending_order_and_sale(&client, &s, partition, "VAL-EARLY-LATE", after_close).await;
    let records: Vec<(String, Vec<u8>)> = [early, late]
        .iter()
        .map(|e| (partition.to_string(), schemas::encode(e).unwrap()))
        .collect();
    let p = platform::kafka::producer(&env.brokers, 10_000).unwrap();
    for (key, payload) in &records {
        p.send(
            rdkafka::producer::FutureRecord::to(&env.topics.sales)
                .key(key)
                .payload(payload),
            std::time::Duration::from_secs(10),
        )
        .await
        .expect("broker ack");
    }
    let running = common::allocator(&env);
    common::eventually("both sales decided", || async {
        pending_orders(&env).await == 0
    })
    .await;
    running.stop().await;
    let status = |order: Uuid| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT payment_status FROM sales.orders WHERE id = $1",
                    &[&order],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(status(paid_before).await, "completed");
    assert_ne!(status(paid_after).await, "completed");
    let reason: String = client
        .query_one(
            "SELECT reason_code FROM sales.rejected_sales WHERE order_id = $1",
            &[&paid_after],
        )
        .await
        .expect("the late payment is on the list to refund")
        .get(0);
    assert_eq!(reason, "outside_sales_window");
}

/// A device asking for blocks itself holds at most two with numbers left in a raffle, each at
/// most the range's block size: one key cannot drain the RSU range from the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_take_more_numbers_than_its_blocks_allow() {
    let env = TestEnv::new().await;
    let options = scenario::seed::Options {
        rsu_count: 1,
        allocation_size: 100,
        ..Default::default()
    };
    let s = scenario::seed::raffle_on_sale(&env.pool, &options)
        .await
        .expect("seed a raffle");
    let (addr, _stop) = spawn_ingest(&env).await;
    let auth = format!("Bearer {}", s.rsus[0].api_key);
    let ask = |body: Value| {
        let auth = auth.clone();
        async move {
            post(
                addr,
                "/v1/rsu/allocations",
                &[
                    ("Authorization", auth.as_str()),
                    ("Content-Type", "application/json"),
                ],
                &body,
            )
            .await
        }
    };
    let too_big = ask(json!({"raffle_id": s.raffle_id, "size": 48_000})).await;
    assert_eq!(
        too_big.status,
        422,
        "{}",
        String::from_utf8_lossy(&too_big.body)
    );
    assert_eq!(too_big.json().unwrap()["field"], "size");
    // The seed gave it one block; it may take the next.
    let second = ask(json!({"raffle_id": s.raffle_id})).await;
    assert_eq!(
        second.status,
        201,
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    let mut refused = 0;
    for _ in 0..20 {
        let r = ask(json!({"raffle_id": s.raffle_id})).await;
        if r.status == 409 {
            refused += 1;
            assert!(
                r.json().unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .contains("rsu-holds-enough"),
                "{}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    assert_eq!(refused, 20);
    let held: i64 = env
        .client()
        .await
        .query_one(
            "SELECT coalesce(sum(total_tickets), 0)::bigint FROM catalog.rsu_allocations WHERE entity_id = $1",
            &[&s.rsus[0].id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(held <= 200, "the device holds {held} numbers");
}

/// Bytes the database cannot store, or that would forge a log line, are refused at the edge
/// with the field named — one record of a batch alone, the rest applied — never accepted and
/// then dropped by the allocator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_are_refused_at_the_edge_and_only_the_bad_record_is() {
    let env = TestEnv::new().await;
    let s = scenario::seed::raffle_on_sale(&env.pool, &scenario::seed::Options::default())
        .await
        .expect("seed a raffle");
    let (addr, _stop) = spawn_ingest(&env).await;
    let running = common::allocator(&env);
    let created = Utc::now() - Span::minutes(1);
    let good = rsu_record(&s, 0, 0, created);
    let mut nul_operator = rsu_record(&s, 0, 1, created);
    nul_operator["operatorId"] = json!("seller\u{0}1");
    let mut nul_name = rsu_record(&s, 0, 2, created);
    nul_name["customerInfo"] = json!({"name": "Ada\u{0}Lovelace"});
    let mut nul_local = rsu_record(&s, 0, 3, created);
    nul_local["localId"] = json!("r0-3\u{0}");
    let mut forged_log = rsu_record(&s, 0, 4, created);
    forged_log["localId"] = json!("r0-4\n2026-12-01T00:00:00Z  INFO RSU batch accepted=500");
    let answer = upload(
        addr,
        &s.rsus[0].api_key,
        &[good, nul_operator, nul_name, nul_local, forged_log],
    )
    .await;
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted", "{answer}");
    for (i, field) in [
        (1, "operatorId"),
        (2, "customerInfo.name"),
        (3, "localId"),
        (4, "localId"),
    ] {
        assert_eq!(results[i]["status"], "rejected", "{answer}");
        let reason = results[i]["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("records[{i}].{field}")),
            "{reason}"
        );
    }
    common::eventually("the good record to be issued", || async {
        scalar(&env, "SELECT count(*) FROM sales.orders WHERE source = 'rsu' AND payment_status = 'completed'").await == 1
    })
    .await;
    running.stop().await;
    assert_eq!(
        scalar(
            &env,
            "SELECT count(*) FROM platform.outbox WHERE topic LIKE '%dlq%'"
        )
        .await,
        0,
        "nothing reached the allocator that it had to refuse"
    );

    // Checkout and the admin API: 422 naming the field, not a 500.
    let nul_customer = post(
        addr,
        "/v1/checkout",
        &[("Content-Type", "application/json")],
        &json!({"raffle_id": s.raffle_id, "package_id": s.package_id, "customer": {"name": "Eve\u{0}"}}),
    )
    .await;
    assert_eq!(
        nul_customer.status,
        422,
        "{}",
        String::from_utf8_lossy(&nul_customer.body)
    );
    assert_eq!(nul_customer.json().unwrap()["field"], "customer.name");
    let newline_name = post(
        addr,
        "/v1/checkout",
        &[("Content-Type", "application/json")],
        &json!({"raffle_id": s.raffle_id, "package_id": s.package_id, "customer": {"name": "Eve\nINFO forged"}}),
    )
    .await;
    assert_eq!(newline_name.status, 422);
    let org = scenario::seed::call_as(
        &env.pool,
        "admin",
        warp::http::Method::POST,
        "organizations",
        json!({"name": "Bad\u{0}Name", "primary_currency": "USD", "operating_fee": {"type": "percentage", "percent": "1"}}),
    )
    .await
    .expect_err("a NUL in a name is refused");
    assert_eq!((org.status, org.field.as_deref()), (422, Some("name")));
    let described = scenario::seed::call_as(
        &env.pool,
        "admin",
        warp::http::Method::POST,
        "organizations",
        json!({"name": "Good Name", "description": "two\nlines", "primary_currency": "USD",
               "operating_fee": {"type": "percentage", "percent": "1"}}),
    )
    .await;
    assert!(
        described.is_ok(),
        "a description keeps its line breaks: {described:?}"
    );
}

/// The pipeline as a deployment runs it: each service under its own least-privilege role
/// (V18), the allocator and the ledger as processes. Online and RSU sales become tickets and
/// entries; nothing needs more than its role grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_under_its_least_privilege_roles() {
    let env = TestEnv::new().await;
    let options = scenario::seed::Options {
        rsu_count: 1,
        allocation_size: 100,
        ..Default::default()
    };
    let s = scenario::seed::raffle_on_sale(&env.pool, &options)
        .await
        .expect("seed a raffle");
    let ingest_login = env.service_login("raffle_ingest").await;
    let (addr, _stop) =
        spawn_ingest_on(&env, &ingest_login.db, ingest_login.db.pool(8).unwrap()).await;
    let allocator_url = env.service_login("raffle_allocator").await.database_url;
    let ledger_url = env.service_login("raffle_ledger").await.database_url;
    let _allocator = start_service(&env, &["allocator", "run"], &allocator_url);
    let _ledger = start_service(&env, &["ledger", "run"], &ledger_url);

    for i in 0..10 {
        let r = post(
            addr,
            "/v1/checkout",
            &[("Content-Type", "application/json")],
            &json!({"raffle_id": s.raffle_id, "package_id": s.package_id, "customer": {"name": format!("Buyer {i}")}}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let order = r.json().unwrap()["order_id"].as_str().unwrap().to_owned();
        let paid = webhook(
            "payment_intent.succeeded",
            &format!("evt_role_{i}"),
            &order,
            2000,
        );
        assert_eq!(deliver(addr, &paid, WEBHOOK_SECRET).await, 200);
    }
    let created = Utc::now() - Span::minutes(1);
    let records: Vec<Value> = (0..3).map(|j| rsu_record(&s, 0, j, created)).collect();
    let answer = upload(addr, &s.rsus[0].api_key, &records).await;
    assert_eq!(answer["accepted"], 3, "{answer}");
    let auth = format!("Bearer {}", s.rsus[0].api_key);
    let block = post(
        addr,
        "/v1/rsu/allocations",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        &json!({"raffle_id": s.raffle_id}),
    )
    .await;
    assert_eq!(
        block.status,
        201,
        "{}",
        String::from_utf8_lossy(&block.body)
    );

    common::eventually("every sale issued and posted", || async {
        scalar(
            &env,
            "SELECT count(*) FROM sales.orders WHERE payment_status = 'completed'",
        )
        .await
            == 13
            && scalar(&env, "SELECT count(*) FROM ledger.journal_entries").await >= 13
            && scalar(
                &env,
                "SELECT count(*) FROM platform.outbox WHERE published_at IS NULL",
            )
            .await
                == 0
    })
    .await;

    // The night of the draw, each step under its own role: staff close sales (admin API), the
    // ledger seals, the draw engine draws.
    let admin_pool = env.service_login("raffle_admin").await.db.pool(2).unwrap();
    scenario::seed::call_as(
        &admin_pool,
        "admin",
        warp::http::Method::POST,
        &format!(
            "organizations/{}/raffles/{}/transitions",
            s.organization_id, s.raffle_id
        ),
        json!({"to": "sales_closed", "reason": "the gates closed"}),
    )
    .await
    .expect("the admin role closes sales");
    let blocks: Vec<Uuid> = env
        .client()
        .await
        .query(
            "SELECT id FROM catalog.rsu_allocations WHERE raffle_id = $1",
            &[&s.raffle_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ledger_pool = env.service_login("raffle_ledger").await.db.pool(4).unwrap();
    ledger::seal(
        &ledger_pool,
        &env.brokers,
        &env.topics,
        &ledger::SealRequest {
            raffle_id: s.raffle_id,
            sealed_by: "finance".into(),
            grace_seconds: 0,
            write_off: blocks,
            seed_key: None,
            seed_keeper: &draw_engine::SEED_KEEPER,
        },
    )
    .await
    .expect("the ledger role seals");
    let draw_pool = env.service_login("raffle_draw").await.db.pool(4).unwrap();
    let drawn = draw_engine::run(
        &draw_pool,
        &draw_engine::DrawRequest {
            raffle_id: s.raffle_id,
            conducted_by: "draw-officer".into(),
            interrupt_after_prizes: None,
            seed_key: None,
        },
    )
    .await
    .expect("the draw role draws");
    assert!(!drawn.winners.is_empty());
}

/// A sell-out charges nobody for nothing: checkout holds the order's tickets for its payment,
/// says "sold out" before anyone pays once sold + held reaches the maximum, and a hold comes
/// back when its payment fails or its time runs out; a payment after its hold ran out and the
/// tickets went to others is rejected for refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sell_out_refuses_checkout_before_payment_and_holds_come_back() {
    let env = TestEnv::new().await;
    let options = scenario::seed::Options {
        rsu_count: 0,
        max_tickets: 15,
        ..Default::default()
    };
    let s = scenario::seed::raffle_on_sale(&env.pool, &options)
        .await
        .expect("seed a raffle");
    let (addr, _stop) = spawn_ingest(&env).await;
    let running = common::allocator(&env);
    let checkout = || async {
        post(
            addr,
            "/v1/checkout",
            &[("Content-Type", "application/json")],
            &json!({"raffle_id": s.raffle_id, "package_id": s.package_id}),
        )
        .await
    };
    let order_of = |r: &Response| r.json().unwrap()["order_id"].as_str().unwrap().to_owned();
    let (a, b, c) = (checkout().await, checkout().await, checkout().await);
    assert_eq!((a.status, b.status, c.status), (201, 201, 201));
    let (a, b, c) = (order_of(&a), order_of(&b), order_of(&c));
    let full = checkout().await;
    assert_eq!(
        full.status,
        409,
        "every ticket is held: {}",
        String::from_utf8_lossy(&full.body)
    );
    assert!(
        full.json().unwrap()["type"]
            .as_str()
            .unwrap()
            .contains("sold-out")
    );

    // B gives up: its hold comes back, and D can buy.
    let cancelled = webhook("payment_intent.canceled", "evt_hold_b", &b, 2000);
    assert_eq!(deliver(addr, &cancelled, WEBHOOK_SECRET).await, 200);
    let mut d = None;
    for _ in 0..100 {
        let r = checkout().await;
        if r.status == 201 {
            d = Some(order_of(&r));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let d = d.expect("the cancelled payment's tickets came back");

    // C's hold runs out (its time is moved back for the test); the sweeper gives it back and
    // E takes the tickets; C's payment, arriving late, is rejected for refund.
    let c_id: Uuid = c.parse().unwrap();
    env.client()
        .await
        .execute(
            "UPDATE sales.orders SET hold_expires_at = now() - interval '1 second' WHERE id = $1",
            &[&c_id],
        )
        .await
        .unwrap();
    let released = allocator::release_expired_holds(&env.client().await)
        .await
        .unwrap();
    assert_eq!(released, 5);
    let e = checkout().await;
    assert_eq!(e.status, 201);
    let e = order_of(&e);
    for (order, id) in [(&a, "a"), (&d, "d"), (&c, "c"), (&e, "e")] {
        let paid = webhook(
            "payment_intent.succeeded",
            &format!("evt_hold_pay_{id}"),
            order,
            2000,
        );
        assert_eq!(deliver(addr, &paid, WEBHOOK_SECRET).await, 200);
    }
    common::eventually("every payment decided", || async {
        pending_orders(&env).await == 0
    })
    .await;
    running.stop().await;
    let status = |order: &str| {
        let order: Uuid = order.parse().unwrap();
        let env = &env;
        async move {
            env.client()
                .await
                .query_one(
                    "SELECT payment_status FROM sales.orders WHERE id = $1",
                    &[&order],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(status(&a).await, "completed");
    assert_eq!(status(&d).await, "completed");
    assert_eq!(status(&e).await, "completed");
    assert_eq!(status(&b).await, "failed");
    assert_eq!(status(&c).await, "rejected");
    let reason: String = env
        .client()
        .await
        .query_one(
            "SELECT reason_code FROM sales.rejected_sales WHERE order_id = $1",
            &[&c_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        reason, "sold_out_hold_expired",
        "C is on the list to refund"
    );
    assert_eq!(
        scalar(&env, "SELECT held_tickets FROM sales.capacity_holds").await,
        0,
        "every hold given back"
    );
}

/// Checkouts are decided in batches: many buyers at once for the last tickets get exactly the
/// tickets there are, and a bad checkout in a batch is refused alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checkouts_take_exactly_the_tickets_there_are() {
    let env = TestEnv::new().await;
    let options = scenario::seed::Options {
        rsu_count: 0,
        max_tickets: 50,
        ..Default::default()
    };
    let s = scenario::seed::raffle_on_sale(&env.pool, &options)
        .await
        .expect("seed a raffle");
    let (addr, _stop) = spawn_ingest(&env).await;
    let buyers = (0..40).map(|i| {
        // Every fourth checkout names a package of no raffle: refused alone.
        let package = if i % 4 == 3 {
            Uuid::new_v4()
        } else {
            s.package_id
        };
        async move {
            post(
                addr,
                "/v1/checkout",
                &[("Content-Type", "application/json")],
                &json!({"raffle_id": s.raffle_id, "package_id": package}),
            )
            .await
        }
    });
    let answers = futures::future::join_all(buyers).await;
    let count = |status: u16| answers.iter().filter(|r| r.status == status).count();
    assert_eq!(count(422), 10, "the checkouts naming no package");
    assert_eq!(count(201), 10, "50 tickets: ten orders of five");
    assert_eq!(count(409), 20, "the rest told sold out before paying");
    assert_eq!(
        scalar(&env, "SELECT held_tickets FROM sales.capacity_holds").await,
        50
    );
    assert_eq!(
        scalar(
            &env,
            "SELECT sum(ticket_count)::bigint FROM sales.orders WHERE hold_expires_at IS NOT NULL AND payment_status = 'pending'"
        )
        .await,
        50,
        "every held ticket belongs to one pending order"
    );
}

/// One ingest server, its database and runtime, shared by the cases of the property below.
struct HoldsBench {
    runtime: tokio::runtime::Runtime,
    env: TestEnv,
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn holds_bench() -> &'static HoldsBench {
    static BENCH: std::sync::OnceLock<HoldsBench> = std::sync::OnceLock::new();
    BENCH.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (env, addr, stop) = runtime.block_on(async {
            let env = TestEnv::new().await;
            let (addr, stop) = spawn_ingest(&env).await;
            (env, addr, stop)
        });
        HoldsBench {
            runtime,
            env,
            addr,
            _stop: stop,
        }
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 10, ..Default::default() })]
    /// For any raffle size and any crowd of buyers of packages of 1, 2, 3 or 5 tickets
    /// arriving at once: the tickets held are exactly those of the orders taken, never more
    /// than the raffle holds, and every buyer told "sold out" wanted more than was left.
    #[test]
    fn holds_never_exceed_the_raffle_and_refuse_only_what_does_not_fit(
        max_tickets in 1i64..80,
        wanted in proptest::collection::vec(proptest::sample::select(vec![1i32, 2, 3, 5]), 1..40),
    ) {
        let bench = holds_bench();
        let (held, pending, taken, refused) = bench.runtime.block_on(async {
            let env = &bench.env;
            let s = scenario::seed::raffle_on_sale(&env.pool, &scenario::seed::Options {
                rsu_count: 0,
                max_tickets,
                ..Default::default()
            })
            .await
            .expect("seed a raffle");
            let client = env.client().await;
            let mut package_of = HashMap::new();
            package_of.insert(5, s.package_id);
            for size in [1i32, 2, 3] {
                let id: Uuid = client
                    .query_one(
                        "INSERT INTO catalog.ticket_packages (raffle_id, name, ticket_count, price_minor, currency, created_by, updated_by)
                         VALUES ($1, $2, $3, $4, 'USD', 'test', 'test') RETURNING id",
                        &[&s.raffle_id, &format!("{size}-pack"), &size, &(i64::from(size) * 400)],
                    )
                    .await
                    .unwrap()
                    .get(0);
                package_of.insert(size, id);
            }
            let answers = futures::future::join_all(wanted.iter().map(|size| {
                let body = json!({"raffle_id": s.raffle_id, "package_id": package_of[size]});
                async move { (*size, post(bench.addr, "/v1/checkout", &[("Content-Type", "application/json")], &body).await.status) }
            }))
            .await;
            let row = client
                .query_one(
                    "SELECT (SELECT held_tickets FROM sales.capacity_holds WHERE raffle_id = $1),
                            (SELECT coalesce(sum(ticket_count), 0)::bigint FROM sales.orders
                              WHERE raffle_id = $1 AND payment_status = 'pending' AND hold_expires_at IS NOT NULL)",
                    &[&s.raffle_id],
                )
                .await
                .unwrap();
            let taken: Vec<i32> = answers.iter().filter(|(_, st)| *st == 201).map(|(k, _)| *k).collect();
            let refused: Vec<(i32, u16)> = answers.iter().filter(|(_, st)| *st != 201).copied().collect();
            (row.get::<_, i64>(0), row.get::<_, i64>(1), taken, refused)
        });
        let taken_tickets: i64 = taken.iter().map(|k| i64::from(*k)).sum();
        proptest::prop_assert_eq!(held, taken_tickets, "the hold is the orders taken");
        proptest::prop_assert_eq!(pending, taken_tickets, "each held ticket is one pending order's");
        proptest::prop_assert!(held <= max_tickets, "held {} of {}", held, max_tickets);
        for (size, status) in refused {
            proptest::prop_assert_eq!(status, 409);
            proptest::prop_assert!(
                max_tickets - held < i64::from(size),
                "a buyer of {} was refused with {} left", size, max_tickets - held
            );
        }
    }
}
