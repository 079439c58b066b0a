//! Refunds the platform pays: a payment the allocator cannot honour is owed back, the refunds
//! worker asks the provider (the local stand-in for Stripe's Refunds API, `scenario::stripe`)
//! within its rate limit, the provider's webhooks settle it, and the books follow. A worker
//! killed mid-run pays nobody twice; a refund the provider fails is finance's to retry or
//! cancel.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use platform::http_client::request;
use platform::testkit::TestEnv;
use refunds::obligations::{self, NewObligation, State};
use scenario::stripe::{StandInConfig, StripeStandIn, WebhookTarget};
use serde_json::{Value, json};
use uuid::Uuid;

const SECRET: &[u8] = b"whsec_refunds_test_secret";

fn event(id: &str, kind: &str, object: Value) -> Value {
    json!({"id": id, "object": "event", "api_version": "2024-06-20", "created": Utc::now().timestamp(),
           "data": {"object": object}, "livemode": false, "type": kind})
}

fn payment_intent(pi: &str, amount: i64, status: &str, order: &str) -> Value {
    json!({"id": pi, "object": "payment_intent", "amount": amount,
           "amount_received": if status == "succeeded" { amount } else { 0 },
           "currency": "usd", "metadata": {"order_id": order}, "status": status})
}

async fn deliver(addr: SocketAddr, event: &Value) -> u16 {
    scenario::sales::deliver(addr, SECRET, event)
        .await
        .expect("webhook delivered")
        .status
}

async fn checkout(addr: SocketAddr, s: &scenario::seed::Scenario) -> String {
    let r = request(
        addr,
        "POST",
        "/v1/checkout",
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&json!({"raffle_id": s.raffle_id, "package_id": s.package_id}))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status,
        201,
        "checkout: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()["order_id"].as_str().unwrap().to_owned()
}

async fn seeded(env: &TestEnv) -> scenario::seed::Scenario {
    scenario::seed::raffle_on_sale(
        &env.pool,
        &scenario::seed::Options {
            rsu_count: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn stand_in(ingest: Option<SocketAddr>, config: StandInConfig) -> StripeStandIn {
    StripeStandIn::start(StandInConfig {
        webhooks: ingest.map(|ingest| WebhookTarget {
            ingest,
            secret: SECRET.to_vec(),
        }),
        ..config
    })
    .await
    .unwrap()
}

fn api(s: &StripeStandIn) -> refunds::StripeApi {
    refunds::StripeApi::new(&s.base_url(), &s.config.secret_key).unwrap()
}

async fn all(env: &TestEnv, raffle: Uuid) -> Vec<obligations::Obligation> {
    obligations::list(&env.client().await, Some(raffle), None)
        .await
        .unwrap()
}

/// Passes of the worker until `done` holds (at most 60 s).
async fn work_until(
    env: &TestEnv,
    api: &refunds::StripeApi,
    config: &refunds::WorkerConfig,
    raffle: Uuid,
    done: impl Fn(&[obligations::Obligation]) -> bool,
) -> Vec<refunds::Pass> {
    let pacer = refunds::Pacer::new(config.rate_per_second);
    let started = std::time::Instant::now();
    let mut passes = Vec::new();
    loop {
        passes.push(
            refunds::run_once(&env.pool, api, config, &pacer)
                .await
                .unwrap(),
        );
        if done(&all(env, raffle).await) {
            return passes;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "refunds did not settle: {:?}",
            all(env, raffle).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn owe_directly(env: &TestEnv, raffle: Uuid, payments: &[String], amount: i64) {
    let list: Vec<NewObligation<'_>> = payments
        .iter()
        .map(|pi| NewObligation {
            raffle_id: raffle,
            order_id: None,
            source_key: format!("test:{pi}"),
            reason_code: "raffle_sold_out",
            reason: "sold out before the payment came",
            provider: "stripe",
            payment_reference: pi,
            amount: schemas::Money::of(amount, "USD").unwrap(),
        })
        .collect();
    let new = obligations::owe(&env.client().await, &list).await.unwrap();
    assert_eq!(new as usize, payments.len());
    // Owing the same again does nothing.
    assert_eq!(
        obligations::owe(&env.client().await, &list).await.unwrap(),
        0
    );
}

async fn balance(env: &TestEnv, raffle: Uuid, account: &str) -> i64 {
    ledger::balances(&env.client().await, raffle, None)
        .await
        .unwrap()
        .get(account)
        .copied()
        .unwrap_or(0)
}

async fn count(env: &TestEnv, sql: &str, raffle: Uuid) -> i64 {
    env.client()
        .await
        .query_one(sql, &[&raffle])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_cannot_be_honoured_is_refunded_once_and_booked() {
    let env = TestEnv::new().await;
    let s = seeded(&env).await;
    let ingest = common::ingest(&env, SECRET).await;
    let provider = stand_in(Some(ingest), StandInConfig::default()).await;
    let _allocator = common::allocator(&env);
    let _ledger = common::ledger(&env);

    // One order paid twice: the second payment is owed back.
    let order = checkout(ingest, &s).await;
    let (first, second) = (
        format!("pi_first_{}", &order[..8]),
        format!("pi_second_{}", &order[..8]),
    );
    for (id, pi) in [("evt_p1", &first), ("evt_p2", &second)] {
        provider.charge(pi, 2000);
        let paid = event(
            id,
            "payment_intent.succeeded",
            payment_intent(pi, 2000, "succeeded", &order),
        );
        assert_eq!(deliver(ingest, &paid).await, 200);
    }
    // One order cancelled, then paid anyway: owed back.
    let ended = checkout(ingest, &s).await;
    let late = format!("pi_late_{}", &ended[..8]);
    provider.charge(&late, 2000);
    let cancelled = event(
        "evt_c1",
        "payment_intent.canceled",
        payment_intent(
            &format!("pi_gone_{}", &ended[..8]),
            2000,
            "canceled",
            &ended,
        ),
    );
    assert_eq!(deliver(ingest, &cancelled).await, 200);
    common::eventually("the cancelled order to end", || async {
        count(
            &env,
            "SELECT count(*) FROM sales.orders WHERE raffle_id = $1 AND payment_status = 'failed'",
            s.raffle_id,
        )
        .await
            == 1
    })
    .await;
    let paid_late = event(
        "evt_c2",
        "payment_intent.succeeded",
        payment_intent(&late, 2000, "succeeded", &ended),
    );
    assert_eq!(deliver(ingest, &paid_late).await, 200);

    common::eventually("two refunds owed", || async {
        all(&env, s.raffle_id).await.len() == 2
    })
    .await;
    let owed = all(&env, s.raffle_id).await;
    let mut reasons: Vec<&str> = owed.iter().map(|o| o.reason_code.as_str()).collect();
    reasons.sort();
    assert_eq!(reasons, ["order_already_paid", "order_not_pending"]);
    assert!(
        owed.iter()
            .all(|o| o.state == State::Owed && o.amount_minor == 2000)
    );

    // The worker asks; the provider's webhooks settle; the books follow.
    let config = refunds::WorkerConfig::default();
    work_until(&env, &api(&provider), &config, s.raffle_id, |list| {
        list.iter().all(|o| o.state == State::Succeeded)
    })
    .await;
    let per_payment = provider.refunds_per_payment();
    assert_eq!(
        per_payment,
        HashMap::from([(second.clone(), 1), (late.clone(), 1)]),
        "each payment owed back is refunded once, and only those"
    );
    work_until(&env, &api(&provider), &config, s.raffle_id, |_| true).await;
    common::eventually("the books to hold the refunds", || async {
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'refund_owed'", s.raffle_id).await == 2
            && count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'refund_paid'", s.raffle_id).await == 2
    })
    .await;
    assert_eq!(
        balance(&env, s.raffle_id, "refunds_payable").await,
        0,
        "nothing still owed"
    );
    assert_eq!(
        balance(&env, s.raffle_id, "payment_clearing").await,
        2000,
        "the provider holds the one sale it kept"
    );
    let verification = ledger::verify(&env.client().await, s.raffle_id)
        .await
        .unwrap();
    assert!(verification.first_failure.is_none(), "{verification:?}");

    // The provider also says the second charge was refunded: the order keeps the tickets the
    // first payment bought.
    let charge = json!({"id": format!("ch_{second}"), "object": "charge", "amount": 2000, "amount_refunded": 2000,
                        "refunded": true, "currency": "usd", "payment_intent": second, "metadata": {"order_id": order}});
    assert_eq!(
        deliver(ingest, &event("evt_r2", "charge.refunded", charge)).await,
        200
    );
    let order_id: Uuid = order.parse().unwrap();
    common::sales_settled(&env).await;
    let row = env
        .client()
        .await
        .query_one(
            "SELECT o.payment_status, count(t.id) FILTER (WHERE t.state <> 'voided')
               FROM sales.orders o JOIN sales.tickets t ON t.order_id = o.id WHERE o.id = $1 GROUP BY o.id",
            &[&order_id],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("completed".to_owned(), 5),
        "a refund of the second payment leaves the first payment's tickets"
    );

    // Sales close and the books are sealed; a payment comes after the seal and is owed back.
    scenario::seed::call_as(
        &env.pool,
        "admin",
        warp::http::Method::POST,
        &format!(
            "organizations/{}/raffles/{}/transitions",
            s.organization_id, s.raffle_id
        ),
        json!({"to": "sales_closed", "reason": "the gates close"}),
    )
    .await
    .unwrap();
    // One more payment for the ended order, as sales close: still owed when the books are
    // sealed, and the seal says so.
    let closing = format!("pi_closing_{}", &ended[..8]);
    provider.charge(&closing, 2000);
    let paid_closing = event(
        "evt_c3",
        "payment_intent.succeeded",
        payment_intent(&closing, 2000, "succeeded", &ended),
    );
    assert_eq!(deliver(ingest, &paid_closing).await, 200);
    common::eventually("a third refund owed", || async {
        all(&env, s.raffle_id).await.len() == 3
    })
    .await;
    common::sales_settled(&env).await;
    let seal_request = ledger::SealRequest {
        raffle_id: s.raffle_id,
        sealed_by: "finance".into(),
        grace_seconds: 0,
        write_off: Vec::new(),
        seed_key: None,
        seed_keeper: &draw_engine::SEED_KEEPER,
    };
    let seal = scenario::seal_when_drained(
        &env.pool,
        &env.brokers,
        &env.topics,
        &seal_request,
        Duration::from_secs(30),
    )
    .await
    .expect("seal");
    assert_eq!(
        (seal.refunds_owed_minor, seal.refunds_owed_count),
        (2000, 1),
        "the seal records the refund still owed"
    );
    assert_eq!(
        ledger::verify_seal(&env.client().await, s.raffle_id)
            .await
            .unwrap()
            .unwrap_or_default(),
        Vec::new(),
        "the refunds owed at the seal are re-derived from the entries"
    );
    let after_seal = "pi_after_the_seal".to_owned();
    provider.charge(&after_seal, 2000);
    {
        let mut client = env.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        owe_directly_in(&*tx, s.raffle_id, &after_seal, 2000).await;
        ledger::append(
            &tx,
            s.raffle_id,
            "refund_owed",
            "a payment after the seal, owed back".into(),
            "USD",
            &[
                ledger::Account::PaymentClearing.debit(2000),
                ledger::Account::RefundsPayable.credit(2000),
            ],
        )
        .await
        .expect("refund entries are accepted after the seal");
        tx.commit().await.unwrap();
    }
    let finance = catalog::audit::Actor::cli("finance-lead");
    let refused = ledger::report::confirm(&env.client().await, s.raffle_id, &finance).await;
    assert!(
        matches!(&refused, Err(ledger::report::ConfirmError::Refused { reason, .. })
            if reason.contains("refunds are still owed to buyers: 2 owed (40.00)")),
        "{refused:?}"
    );
    work_until(&env, &api(&provider), &config, s.raffle_id, |list| {
        list.iter().all(|o| o.state == State::Succeeded)
    })
    .await;
    work_until(&env, &api(&provider), &config, s.raffle_id, |_| true).await;
    assert_eq!(balance(&env, s.raffle_id, "refunds_payable").await, 0);

    // Everything holds: finance confirms, once, and the report says so.
    let mut client = env.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let confirmation = ledger::report::confirm(&*tx, s.raffle_id, &finance)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(confirmation.confirmed_by, "finance-lead");
    let report = ledger::report::reconciliation(&**client, s.raffle_id)
        .await
        .unwrap();
    assert!(report.all_pass(), "{:?}", report.failing());
    let shown = report
        .confirmation
        .clone()
        .expect("the report shows the confirmation");
    assert_eq!(shown.report_sha256, confirmation.report_sha256);
    assert!(shown.still_matches);
    let page = ledger::report::to_html(&report);
    assert!(page.contains("Confirmed by finance: finance-lead"));
    // The header finance signs under: the charity, its licence, the jurisdiction, the venue's
    // time zone, when and by which software the report was made.
    for shown in [
        "Stadium Foundation · licence LIC-",
        "· Ontario · venue Stadium",
        "(America/Toronto)",
        "Generated ",
        "by raffle ",
    ] {
        assert!(page.contains(shown), "{shown:?} not in the report's header");
    }
    assert!(matches!(
        ledger::report::confirm(&**client, s.raffle_id, &finance).await,
        Err(ledger::report::ConfirmError::AlreadyConfirmed { .. })
    ));
    assert_eq!(
        count(&env, "SELECT count(*) FROM audit.critical_events WHERE raffle_id = $1 AND event_type = 'RECONCILIATION_CONFIRMED'", s.raffle_id).await,
        1
    );
    let changed = client
        .execute(
            "UPDATE catalog.raffle_events SET reconciliation_confirmed_by = 'someone else' WHERE id = $1",
            &[&s.raffle_id],
        )
        .await;
    assert!(
        changed.is_err(),
        "the database keeps a confirmation as it was given"
    );
}

async fn owe_directly_in(
    client: &impl tokio_postgres::GenericClient,
    raffle: Uuid,
    pi: &str,
    amount: i64,
) {
    let new = obligations::owe(
        client,
        &[NewObligation {
            raffle_id: raffle,
            order_id: None,
            source_key: format!("test:{pi}"),
            reason_code: "raffle_not_selling",
            reason: "paid after the seal",
            provider: "stripe",
            payment_reference: pi,
            amount: schemas::Money::of(amount, "USD").unwrap(),
        }],
    )
    .await
    .unwrap();
    assert_eq!(new, 1);
}

/// The worker as its own process, killed with the test.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `raffle refunds run` under the refunds service's least-privilege role.
fn start_worker(env: &TestEnv, database_url: &str, provider: &StripeStandIn) -> Worker {
    Worker(
        Command::new(env!("CARGO_BIN_EXE_raffle"))
            .args(["refunds", "run"])
            .env("DATABASE_URL", database_url)
            .env("KAFKA_BROKERS", &env.brokers)
            .env("RAFFLE_TOPIC_PREFIX", format!("{}.", env.unique))
            .env("RAFFLE_STRIPE_API_URL", provider.base_url())
            .env("RAFFLE_STRIPE_SECRET_KEY", &provider.config.secret_key)
            .env("RAFFLE_REFUNDS_LEASE_SECONDS", "2")
            .env("RAFFLE_REFUNDS_RECHECK_SECONDS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the refunds worker"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_pays_no_refund_twice() {
    let env = TestEnv::new().await;
    let s = seeded(&env).await;
    let ingest = common::ingest(&env, SECRET).await;
    // Answers take 400 ms to come back, and settle after 3 s: a worker killed mid-run has
    // refunds made that it never heard of.
    let provider = stand_in(
        Some(ingest),
        StandInConfig {
            answer_delay: Duration::from_millis(400),
            settle_after: Duration::from_secs(3),
            ..Default::default()
        },
    )
    .await;
    let payments: Vec<String> = (0..30).map(|i| format!("pi_kill_{i:02}")).collect();
    for pi in &payments {
        provider.charge(pi, 2000);
    }
    owe_directly(&env, s.raffle_id, &payments, 2000).await;

    let login = env.service_login("raffle_refunds").await;
    let mut worker = start_worker(&env, &login.database_url, &provider);
    common::eventually("the worker to get going", || async {
        provider.counts().refunds_created >= 8
    })
    .await;
    let _ = worker.0.kill();
    let _ = worker.0.wait();
    let made = provider.counts().refunds_created;
    let recorded = all(&env, s.raffle_id)
        .await
        .iter()
        .filter(|o| o.provider_refund_id.is_some())
        .count();
    assert!(
        recorded < made,
        "the kill left refunds made but not recorded ({made} made, {recorded} recorded)"
    );

    let _worker = start_worker(&env, &login.database_url, &provider);
    common::eventually("every refund paid and booked", || async {
        count(&env, "SELECT count(*) FROM refunds.obligations WHERE raffle_id = $1 AND state = 'succeeded' AND booked = 'paid'", s.raffle_id).await == 30
    })
    .await;
    let per_payment = provider.refunds_per_payment();
    assert_eq!(per_payment.len(), 30);
    assert!(
        per_payment.values().all(|n| *n == 1),
        "a refund was paid twice: {per_payment:?}"
    );
    assert_eq!(provider.counts().refunds_created, 30);
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'refund_paid'", s.raffle_id).await,
        30,
        "each refund booked once"
    );
    assert!(
        count(
            &env,
            "SELECT count(*) FROM refunds.obligations WHERE raffle_id = $1 AND attempts >= 2",
            s.raffle_id
        )
        .await
            >= 1,
        "the restarted worker took up what the killed one had asked for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_rate_limit_is_honoured_and_what_it_refuses_is_finances() {
    let env = TestEnv::new().await;
    let s = seeded(&env).await;
    // No webhooks: pending refunds are looked up again; the provider allows 10 requests a
    // second and the worker is set to ask faster.
    let provider = stand_in(
        None,
        StandInConfig {
            rate_per_second: 10,
            settle_after: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await;
    let payments: Vec<String> = (0..25).map(|i| format!("pi_rate_{i:02}")).collect();
    for pi in &payments {
        provider.charge(pi, 1000);
    }
    provider.fail_refunds_of("pi_rate_07");
    owe_directly(&env, s.raffle_id, &payments, 1000).await;
    // A refund for a payment the provider does not know is refused for good.
    owe_directly(&env, s.raffle_id, &["pi_unknown".to_owned()], 1000).await;

    let config = refunds::WorkerConfig {
        rate_per_second: 100,
        pending_recheck: Duration::from_millis(200),
        ..Default::default()
    };
    work_until(&env, &api(&provider), &config, s.raffle_id, |list| {
        list.iter()
            .all(|o| matches!(o.state, State::Succeeded | State::Failed))
    })
    .await;
    let counts = provider.counts();
    assert!(
        counts.rate_limited > 0,
        "the worker was told to slow down: {counts:?}"
    );
    assert_eq!(counts.refunds_created, 25, "{counts:?}");
    assert!(provider.refunds_per_payment().values().all(|n| *n == 1));
    let list = all(&env, s.raffle_id).await;
    let state_of = |pi: &str| {
        list.iter()
            .find(|o| o.payment_reference == pi)
            .unwrap()
            .clone()
    };
    assert_eq!(state_of("pi_rate_07").state, State::Failed);
    let unknown = state_of("pi_unknown");
    assert_eq!(unknown.state, State::Failed);
    assert!(
        unknown
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("resource_missing"),
        "{unknown:?}"
    );
    assert_eq!(
        list.iter().filter(|o| o.state == State::Succeeded).count(),
        24
    );

    // Finance retries the failed one under a new key (it fails again), then cancels it.
    let finance = catalog::audit::Actor::cli("finance-lead");
    let failed = state_of("pi_rate_07");
    let retried = obligations::retry(&env.client().await, failed.id, &finance)
        .await
        .unwrap();
    assert_eq!(retried.state, State::Owed);
    assert_ne!(retried.idempotency_key, failed.idempotency_key);
    work_until(&env, &api(&provider), &config, s.raffle_id, |list| {
        list.iter()
            .all(|o| o.state != State::Owed && o.state != State::Requested)
    })
    .await;
    assert_eq!(
        provider.refunds_per_payment()["pi_rate_07"],
        2,
        "asked again once"
    );
    let client = env.client().await;
    assert!(matches!(
        obligations::cancel(&client, failed.id, &finance, " ").await,
        Err(refunds::RefundError::Invalid(_))
    ));
    let cancelled =
        obligations::cancel(&client, failed.id, &finance, "paid by cheque at the office")
            .await
            .unwrap();
    assert_eq!(cancelled.state, State::Cancelled);
    assert_eq!(cancelled.cancelled_by.as_deref(), Some("finance-lead"));
    let paid = state_of("pi_rate_00");
    assert!(matches!(
        obligations::cancel(&client, paid.id, &finance, "no").await,
        Err(refunds::RefundError::NotAllowed {
            state: State::Succeeded,
            ..
        })
    ));
    assert_eq!(
        count(&env, "SELECT count(*) FROM audit.critical_events WHERE raffle_id = $1 AND event_type IN ('REFUND_RETRIED', 'REFUND_CANCELLED')", s.raffle_id).await,
        2
    );

    // A paid refund the provider later reports failed is owed again, in the books too.
    let settled = obligations::settle(
        &client,
        &obligations::Settlement {
            idempotency_key: paid.idempotency_key.clone(),
            provider_refund_id: paid.provider_refund_id.clone().unwrap(),
            provider_status: "failed".into(),
            failure_reason: Some("lost_or_stolen_card".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(settled, Some(State::Failed));
    // A late "pending" for it changes nothing.
    let late = obligations::settle(
        &client,
        &obligations::Settlement {
            idempotency_key: paid.idempotency_key.clone(),
            provider_refund_id: paid.provider_refund_id.clone().unwrap(),
            provider_status: "pending".into(),
            failure_reason: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(late, None);
    assert_eq!(
        refunds::books::book_settled(&env.pool, 100).await.unwrap(),
        1
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'refund_reopened'", s.raffle_id).await,
        1
    );

    // The list as finance exports it.
    let csv = obligations::to_csv(&all(&env, s.raffle_id).await);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("refund_id,raffle_id,order_id,state,amount,currency")
    );
    assert_eq!(lines.count(), 26);
    assert!(csv.contains(",10.00,USD,"), "amounts in whole units");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_payouts_match_the_books_line_by_line() {
    let env = TestEnv::new().await;
    let s = seeded(&env).await;
    let ingest = common::ingest(&env, SECRET).await;
    let provider = stand_in(Some(ingest), StandInConfig::default()).await;
    let _allocator = common::allocator(&env);
    let _ledger = common::ledger(&env);
    // Three buyers; the first pays twice and is refunded the second payment.
    let mut payments = Vec::new();
    for i in 0..3 {
        let order = checkout(ingest, &s).await;
        let pi = format!("pi_buyer{i}_{}", &order[..8]);
        provider.charge(&pi, 2000);
        let paid = event(
            &format!("evt_b{i}"),
            "payment_intent.succeeded",
            payment_intent(&pi, 2000, "succeeded", &order),
        );
        assert_eq!(deliver(ingest, &paid).await, 200);
        if i == 0 {
            let again = format!("{pi}_again");
            provider.charge(&again, 2000);
            let paid = event(
                "evt_b0_again",
                "payment_intent.succeeded",
                payment_intent(&again, 2000, "succeeded", &order),
            );
            assert_eq!(deliver(ingest, &paid).await, 200);
        }
        payments.push(pi);
    }
    common::eventually("the second payment owed back", || async {
        all(&env, s.raffle_id).await.len() == 1
    })
    .await;
    let config = refunds::WorkerConfig::default();
    work_until(&env, &api(&provider), &config, s.raffle_id, |l| {
        l.iter().all(|o| o.state == State::Succeeded)
    })
    .await;
    work_until(&env, &api(&provider), &config, s.raffle_id, |_| true).await;
    common::eventually("the books to hold the sales and the refund", || async {
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type IN ('ticket_sale', 'refund_owed', 'refund_paid')", s.raffle_id).await == 5
    })
    .await;
    // Buyer 1 is refunded $5.00 in the provider's dashboard; the tickets stay, and the money
    // that left is booked once, however often the provider says so.
    let partly = &payments[1];
    provider.refunded_outside(partly, 500);
    for id in ["evt_part_1", "evt_part_2"] {
        let charge = json!({"id": format!("ch_{partly}"), "object": "charge", "amount": 2000, "amount_refunded": 500,
                            "refunded": false, "currency": "usd", "payment_intent": partly, "metadata": {}});
        assert_eq!(
            deliver(ingest, &event(id, "charge.refunded", charge)).await,
            200
        );
    }
    common::sales_settled(&env).await;
    common::eventually("the partial refund booked", || async {
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'ticket_reversal'", s.raffle_id).await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'ticket_reversal'", s.raffle_id).await,
        1,
        "the same cumulative refund is booked once"
    );
    assert_eq!(balance(&env, s.raffle_id, "refunds_and_voids").await, 500);

    let good = provider.payout_report("po_test_1");
    let import = |text: String| {
        let pool = env.pool.clone();
        let raffle = s.raffle_id;
        async move {
            let mut client = pool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            let r = ledger::payouts::import(&tx, raffle, &text, None, "finance").await;
            if r.is_ok() {
                tx.commit().await.unwrap();
            }
            r
        }
    };
    let refused = |r: Result<ledger::payouts::ImportOutcome, ledger::payouts::PayoutError>,
                   says: &str| match r {
        Err(ledger::payouts::PayoutError::Refused(problems)) => {
            assert!(
                problems.iter().any(|(_, p)| p.contains(says)),
                "{problems:?} does not say {says:?}"
            )
        }
        other => panic!("expected the file refused for {says:?}: {other:?}"),
    };
    // Bad files are refused whole, nothing imported.
    refused(
        import(good.replacen("description", "memo", 1)).await,
        "unknown column \"memo\"",
    );
    refused(
        import(good.replacen(",usd,", ",eur,", 1)).await,
        "is in EUR",
    );
    let second_line = good.lines().nth(1).unwrap().to_owned();
    refused(
        import(format!("{good}{second_line}\n")).await,
        "a duplicate line",
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM ledger.payout_lines WHERE raffle_id = $1",
            s.raffle_id
        )
        .await,
        0
    );

    // A line missing: the payment it would cover is unmatched in the books.
    let last_buyer = &payments[2];
    let missing: String = good
        .lines()
        .filter(|l| !l.ends_with(&format!(",{last_buyer}")))
        .map(|l| format!("{l}\n"))
        .collect();
    let outcome = import(missing).await.unwrap();
    assert!(outcome.unmatched_in_file.is_empty(), "{outcome:?}");
    assert_eq!(outcome.unmatched_in_books.len(), 1, "{outcome:?}");
    assert!(outcome.unmatched_in_books[0].contains(last_buyer.as_str()));
    // A changed amount matches nothing.
    let changed = good.replace(
        &format!("20.00,0.88,19.12,charge,ch_{last_buyer}"),
        &format!("21.00,0.88,20.12,charge,ch_{last_buyer}"),
    );
    let outcome = import(changed).await.unwrap();
    assert_eq!(outcome.unmatched_in_file.len(), 1, "{outcome:?}");
    assert!(
        outcome.unmatched_in_file[0]
            .2
            .contains("is 2100 in the file and 2000 in the books"),
        "{outcome:?}"
    );
    assert!(!outcome.payouts[0].clearing_nets_to_zero);
    // A foreign payment (another product on the same account) is reported, not booked.
    let extra = format!(
        "{good}po_test_1,,txn_foreign,,,usd,15.00,0.74,14.26,charge,ch_x,Mug,pi_foreign_mug\n"
    );
    let outcome = import(extra).await.unwrap();
    assert_eq!(outcome.unmatched_in_file.len(), 1);
    assert!(
        outcome.unmatched_in_file[0]
            .2
            .contains("is no payment of this raffle")
    );
    assert!(outcome.unmatched_in_books.is_empty(), "{outcome:?}");
    // The provider's own report: everything matched, already imported, nothing booked twice.
    let outcome = import(good.clone()).await.unwrap();
    assert!(outcome.all_matched(), "{outcome:?}");
    assert_eq!(outcome.already_imported, outcome.lines);
    assert!(outcome.payouts.iter().all(|p| p.clearing_nets_to_zero));

    // Four charges of $20.00 at $0.88 each, refunds of $20.00 and $5.00: $51.48 to the bank.
    assert_eq!(balance(&env, s.raffle_id, "processing_fees").await, 4 * 88);
    assert_eq!(
        balance(&env, s.raffle_id, "bank").await,
        4 * (2000 - 88) - 2000 - 500
    );
    assert_eq!(
        balance(&env, s.raffle_id, "payment_clearing").await,
        0,
        "the provider holds nothing more for the raffle"
    );
    let verification = ledger::verify(&env.client().await, s.raffle_id)
        .await
        .unwrap();
    assert!(verification.first_failure.is_none(), "{verification:?}");
}

/// A raffle cancelled after it sold: every paid order is owed back and booked once by the
/// worker, the provider refunds each once, its `charge.refunded` voids the order's tickets,
/// and the books end with nothing held and nothing owed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_raffle_that_sold_refunds_every_paid_order() {
    let env = TestEnv::new().await;
    let s = seeded(&env).await;
    let ingest = common::ingest(&env, SECRET).await;
    let provider = stand_in(
        Some(ingest),
        StandInConfig {
            settle_immediately: true,
            ..Default::default()
        },
    )
    .await;
    let _allocator = common::allocator(&env);
    let _ledger = common::ledger(&env);

    let mut paid = Vec::new();
    for i in 0..3 {
        let order = checkout(ingest, &s).await;
        let pi = format!("pi_cancelled_raffle_{i}_{}", &order[..8]);
        provider.charge(&pi, 2000);
        let event = event(
            &format!("evt_cr_{i}"),
            "payment_intent.succeeded",
            payment_intent(&pi, 2000, "succeeded", &order),
        );
        assert_eq!(deliver(ingest, &event).await, 200);
        paid.push((order.parse::<Uuid>().unwrap(), pi));
    }
    // A buyer who never paid is owed nothing.
    let _unpaid = checkout(ingest, &s).await;
    common::eventually("three orders paid and booked", || async {
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'ticket_sale'", s.raffle_id).await == 3
    })
    .await;

    scenario::seed::call_as(
        &env.pool,
        "admin",
        warp::http::Method::POST,
        &format!(
            "organizations/{}/raffles/{}/transitions",
            s.organization_id, s.raffle_id
        ),
        json!({"to": "cancelled", "reason": "the venue flooded"}),
    )
    .await
    .unwrap();

    let config = refunds::WorkerConfig::default();
    let passes = work_until(&env, &api(&provider), &config, s.raffle_id, |list| {
        list.len() == 3 && list.iter().all(|o| o.state == State::Succeeded)
    })
    .await;
    assert_eq!(
        passes
            .iter()
            .map(|p| p.owed_for_cancellations)
            .sum::<usize>(),
        3,
        "each paid order owed once"
    );
    let owed = all(&env, s.raffle_id).await;
    for (order, pi) in &paid {
        let o = owed
            .iter()
            .find(|o| o.order_id == Some(*order))
            .unwrap_or_else(|| panic!("order {order} is owed back: {owed:?}"));
        assert_eq!(
            (
                o.reason_code.as_str(),
                o.amount_minor,
                o.payment_reference.as_str()
            ),
            ("raffle_cancelled", 2000, pi.as_str())
        );
    }
    let per_payment = provider.refunds_per_payment();
    assert_eq!(per_payment.len(), 3);
    assert!(per_payment.values().all(|n| *n == 1), "{per_payment:?}");

    // The provider's `charge.refunded` voids each order's tickets; the books hold nothing.
    common::eventually("the cancelled raffle's orders refunded", || async {
        count(&env, "SELECT count(*) FROM sales.orders WHERE raffle_id = $1 AND payment_status = 'refunded'", s.raffle_id).await == 3
    })
    .await;
    work_until(&env, &api(&provider), &config, s.raffle_id, |_| true).await;
    common::sales_settled(&env).await;
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM sales.tickets WHERE raffle_id = $1 AND state = 'voided'",
            s.raffle_id
        )
        .await,
        15
    );
    common::eventually("the refunds paid in the books", || async {
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'refund_paid'", s.raffle_id).await == 3
    })
    .await;
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'ticket_reversal'", s.raffle_id).await,
        3,
        "each sale reversed once: by the worker as it owed the refund, not again by the void"
    );
    for (account, expected) in [
        ("refunds_payable", 0),
        ("payment_clearing", 0),
        ("gross_ticket_revenue", -6000),
        ("refunds_and_voids", 6000),
    ] {
        assert_eq!(
            balance(&env, s.raffle_id, account).await,
            expected,
            "{account}"
        );
    }
    let verification = ledger::verify(&env.client().await, s.raffle_id)
        .await
        .unwrap();
    assert!(verification.first_failure.is_none(), "{verification:?}");
    // Another pass owes nothing more.
    let pass = refunds::run_once(
        &env.pool,
        &api(&provider),
        &config,
        &refunds::Pacer::new(25),
    )
    .await
    .unwrap();
    assert_eq!(pass.owed_for_cancellations, 0);
    assert_eq!(all(&env, s.raffle_id).await.len(), 3);
}

/// Staff give one paid order back whole: the refund is owed and the sale reversed at once, the
/// worker pays it once, the provider's `charge.refunded` voids the tickets without reversing the
/// sale again; an order not paid, or owed already, is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_refund_an_order_whole_and_the_books_reverse_it_once() {
    let env = TestEnv::new().await;
    let s = seeded(&env).await;
    let ingest = common::ingest(&env, SECRET).await;
    let provider = stand_in(
        Some(ingest),
        StandInConfig {
            settle_immediately: true,
            ..Default::default()
        },
    )
    .await;
    let _allocator = common::allocator(&env);
    let _ledger = common::ledger(&env);
    let mut paid = Vec::new();
    for i in 0..2 {
        let order = checkout(ingest, &s).await;
        let pi = format!("pi_staff_{i}_{}", &order[..8]);
        provider.charge(&pi, 2000);
        let e = event(
            &format!("evt_staff_{i}"),
            "payment_intent.succeeded",
            payment_intent(&pi, 2000, "succeeded", &order),
        );
        assert_eq!(deliver(ingest, &e).await, 200);
        paid.push(order.parse::<Uuid>().unwrap());
    }
    let unpaid: Uuid = checkout(ingest, &s).await.parse().unwrap();
    common::eventually("two sales booked", || async {
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'ticket_sale'", s.raffle_id).await == 2
    })
    .await;

    let staff = catalog::audit::Actor::cli("fiona (finance)");
    let refund = |order: Uuid, reason: &'static str| {
        let (pool, staff, raffle) = (env.pool.clone(), staff.clone(), s.raffle_id);
        async move {
            let mut client = pool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            let r = refunds::orders::refund_order(&tx, raffle, order, reason, &staff).await;
            tx.commit().await.unwrap();
            r
        }
    };
    let owed = refund(paid[0], "the buyer bought for the wrong raffle")
        .await
        .unwrap();
    assert_eq!(
        (owed.reason_code.as_str(), owed.amount_minor, owed.state),
        ("staff_refund", 2000, State::Owed)
    );
    assert_eq!(
        balance(&env, s.raffle_id, "refunds_payable").await,
        -2000,
        "owed at once"
    );
    for (order, why) in [
        (paid[0], "already owed back"),
        (unpaid, "only a paid order is refunded"),
        (Uuid::now_v7(), "is not an order of raffle"),
    ] {
        match refund(order, "again").await {
            Err(refunds::RefundError::Invalid(reason)) => {
                assert!(reason.contains(why), "{why:?} not in {reason:?}")
            }
            other => panic!("refunding order {order} again: {other:?}"),
        }
    }
    assert!(matches!(
        refund(paid[1], " ").await,
        Err(refunds::RefundError::Invalid(r)) if r.contains("needs a reason")
    ));

    let config = refunds::WorkerConfig::default();
    work_until(&env, &api(&provider), &config, s.raffle_id, |list| {
        list.iter().all(|o| o.state == State::Succeeded)
    })
    .await;
    common::eventually("the order refunded and its tickets voided", || async {
        count(
            &env,
            "SELECT count(*) FROM sales.tickets WHERE raffle_id = $1 AND state = 'voided'",
            s.raffle_id,
        )
        .await
            == 5
    })
    .await;
    work_until(&env, &api(&provider), &config, s.raffle_id, |_| true).await;
    common::sales_settled(&env).await;
    assert_eq!(provider.refunds_per_payment().len(), 1);
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'ticket_reversal'", s.raffle_id).await,
        1,
        "the sale reversed once"
    );
    for (account, expected) in [
        ("refunds_payable", 0),
        ("payment_clearing", 2000),
        ("refunds_and_voids", 2000),
    ] {
        assert_eq!(
            balance(&env, s.raffle_id, account).await,
            expected,
            "{account}"
        );
    }
    assert_eq!(
        count(&env, "SELECT count(*) FROM audit.critical_events WHERE raffle_id = $1 AND event_type = 'ORDER_REFUNDED'", s.raffle_id).await,
        1
    );
    let report = ledger::report::reconciliation(&env.client().await, s.raffle_id)
        .await
        .unwrap();
    assert!(report.all_pass(), "{:?}", report.failing());
}
