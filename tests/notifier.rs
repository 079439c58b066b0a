//! The buyers' e-mails, sent to a real SMTP server (aiosmtpd, started by the test) and read
//! back from what it received: one confirmation per order with its numbers, even when the
//! notifier is killed mid-run; an SMTP outage and a refused address retried and reported, never
//! dropped, never holding up the pipeline; copies on request, limited; links that open one order.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use platform::http_client::request;
use platform::mailbox::{Mailbox, Received};
use platform::testkit::TestEnv;
use serde_json::{Value, json};
use uuid::Uuid;

const SECRET: &[u8] = b"whsec_notifier_test_secret";
const RAFFLE: &str = env!("CARGO_BIN_EXE_raffle");

fn mail_dir(env: &TestEnv) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-mail")
        .join(&env.unique)
}

async fn wait_for(what: &str, within: Duration, mut probe: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !probe().await {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(env: &TestEnv, sql: &str) -> i64 {
    env.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

fn notifier_process(env: &TestEnv, smtp: &str, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(RAFFLE)
        .args(["notifier", "run"])
        .env("DATABASE_URL", &env.database_url)
        .env("KAFKA_BROKERS", &env.brokers)
        .env("RAFFLE_TOPIC_PREFIX", format!("{}.", env.unique))
        .env("RAFFLE_SMTP_URL", smtp)
        .env(
            "RAFFLE_MAIL_FROM",
            "Hospital Lottery <tickets@lottery.example.org>",
        )
        .env("RAFFLE_NOTIFIER_HEALTH_ADDR", "127.0.0.1:0")
        .env("RAFFLE_NOTIFIER_LEASE_SECONDS", "2")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start raffle notifier run")
}

fn confirmations(received: &[Received]) -> Vec<&Received> {
    received
        .iter()
        .filter(|m| {
            m.header("Subject")
                .is_some_and(|s| s.starts_with("Your draw numbers"))
        })
        .collect()
}

/// The notifier (its own process) is killed with SIGKILL while buyers' confirmations are going
/// out and tickets are still being issued; started again, it sends the rest. Every buyer ends
/// with their confirmation, and no buyer gets two: each order has one message, under one
/// Message-ID, whatever was delivered around the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_notifier_sends_each_buyer_one_confirmation() {
    let env = TestEnv::new().await;
    let s = common::online_raffle(&env).await;
    let ingest = common::ingest(&env, SECRET).await;
    let _allocator = common::allocator(&env);
    let _ledger = common::ledger(&env);
    let dir = mail_dir(&env);
    let mailbox = Mailbox::start(&dir).await.unwrap();
    let log = dir.join("notifier.log");

    const ORDERS: usize = 240;
    let mut orders = HashMap::new();
    for i in 0..ORDERS / 2 {
        let email = format!("buyer{i}@example.org");
        orders.insert(common::buy(ingest, SECRET, &s, Some(&email)).await.0, email);
    }
    let mut notifier = notifier_process(&env, &mailbox.smtp_url(), &log);
    // The rest are bought while it runs.
    for i in ORDERS / 2..ORDERS {
        let email = format!("buyer{i}@example.org");
        orders.insert(common::buy(ingest, SECRET, &s, Some(&email)).await.0, email);
        if i == ORDERS / 2 + 20 {
            wait_for(
                "the first confirmations",
                Duration::from_secs(60),
                async || !mailbox.received().is_empty(),
            )
            .await;
        }
    }
    wait_for(
        "a few more confirmations",
        Duration::from_secs(60),
        async || confirmations(&mailbox.received()).len() >= 40,
    )
    .await;
    notifier.kill().unwrap();
    let _ = notifier.wait();
    let at_kill = confirmations(&mailbox.received()).len();
    assert!(
        at_kill < ORDERS,
        "the kill came after every confirmation was out ({at_kill}); the test proves nothing"
    );

    let mut notifier = notifier_process(&env, &mailbox.smtp_url(), &log);
    wait_for("every confirmation", Duration::from_secs(120), async || {
        count(
            &env,
            "SELECT count(*) FROM notify.messages WHERE state <> 'sent'",
        )
        .await
            == 0
            && count(&env, "SELECT count(*) FROM notify.messages").await >= ORDERS as i64
    })
    .await;
    notifier.kill().unwrap();
    let _ = notifier.wait();

    let received = mailbox.received();
    let confirmations = confirmations(&received);
    let mut ids_per_buyer: HashMap<String, HashSet<String>> = HashMap::new();
    let mut deliveries_per_id: HashMap<String, usize> = HashMap::new();
    for m in &confirmations {
        let id = m
            .header("Message-ID")
            .expect("every message has a Message-ID");
        for to in &m.rcpt_to {
            ids_per_buyer
                .entry(to.clone())
                .or_default()
                .insert(id.clone());
        }
        *deliveries_per_id.entry(id).or_default() += 1;
    }
    assert_eq!(
        ids_per_buyer.len(),
        ORDERS,
        "every buyer got their confirmation"
    );
    for (buyer, ids) in &ids_per_buyer {
        assert_eq!(
            ids.len(),
            1,
            "{buyer} got {} different confirmations",
            ids.len()
        );
    }
    // The one delivery a kill can repeat: a message the server took just before the kill and
    // whose sending was not yet recorded; it goes out again with the same Message-ID (at most
    // one per concurrent send).
    let repeated: usize = deliveries_per_id.values().map(|n| n - 1).sum();
    assert!(
        repeated <= notifier::SenderConfig::default().concurrency,
        "{repeated} repeated deliveries"
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(DISTINCT order_id) FROM notify.messages WHERE kind = 'tickets_issued'"
        )
        .await,
        ORDERS as i64
    );
    // Each confirmation holds its order's numbers, as the allocator issued them.
    let client = env.client().await;
    let sample = confirmations[confirmations.len() / 2];
    let to = &sample.rcpt_to[0];
    let order = orders
        .iter()
        .find(|(_, e)| *e == to)
        .map(|(o, _)| *o)
        .unwrap();
    let numbers: Vec<i64> = client
        .query(
            "SELECT draw_number FROM sales.tickets WHERE order_id = $1 ORDER BY 1",
            &[&order],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let written = notifier::compose::numbers_for_people(&numbers);
    assert!(
        sample.raw.contains(&written) || sample.raw.contains(&written.replace('–', "=E2=80=93")),
        "the confirmation holds the order's numbers {written}:\n{}",
        sample.raw
    );
    eprintln!(
        "{} confirmations to {} buyers, {at_kill} before the kill, {repeated} repeated with the same Message-ID",
        confirmations.len(),
        ids_per_buyer.len()
    );
    mailbox.stop().await;
}

/// The SMTP server is down when the tickets are issued: the pipeline goes on (every order's
/// tickets issued and posted), the messages wait and are retried with backoff; when the server
/// is back they go out. An address the server refuses is tried again and then reported as
/// failed, with the server's answer; a buyer with no address is recorded as such. The notifier
/// runs under its own service role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_and_a_refused_address_are_retried_and_reported() {
    let env = TestEnv::new().await;
    let s = common::online_raffle(&env).await;
    let ingest = common::ingest(&env, SECRET).await;
    let _allocator = common::allocator(&env);
    let _ledger = common::ledger(&env);
    // A port with no server on it, yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let login = env.service_login("raffle_notifier").await;
    let pool = login.db.pool(4).unwrap();
    let settings = notifier::MailSettings {
        smtp_url: format!("smtp://127.0.0.1:{port}"),
        ..Default::default()
    };
    let sender = notifier::SenderConfig {
        max_attempts: 4,
        max_backoff: Duration::from_secs(1),
        poll: Duration::from_millis(100),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let service = {
        let (db, brokers, topics) = (login.db.clone(), env.brokers.clone(), env.topics.clone());
        tokio::spawn(async move {
            notifier::run(db, pool, &brokers, &topics, settings, sender, stopped).await
        })
    };

    let (good, _) = common::buy(ingest, SECRET, &s, Some("ann@example.org")).await;
    let (refused, _) = common::buy(ingest, SECRET, &s, Some("refuse-me@example.org")).await;
    let (silent, _) = common::buy(ingest, SECRET, &s, None).await;
    // The books do not wait for the mail.
    common::eventually("the ledger to post all three sales", || async {
        count(
            &env,
            "SELECT count(*) FROM ledger.journal_entries WHERE entry_type = 'ticket_sale'",
        )
        .await
            == 3
    })
    .await;
    wait_for("attempts against the absent server", Duration::from_secs(30), async || {
        count(&env, "SELECT count(*) FROM notify.messages WHERE attempts >= 2 AND state = 'pending' AND last_error IS NOT NULL").await == 2
    })
    .await;
    let client = env.client().await;
    let error: String = client
        .query_one(
            "SELECT last_error FROM notify.messages WHERE order_id = $1",
            &[&good],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        error.to_lowercase().contains("connect") || error.contains("refused"),
        "{error}"
    );
    let none: String = client
        .query_one(
            "SELECT state FROM notify.messages WHERE order_id = $1",
            &[&silent],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(none, "no_address");

    // The server comes back where the notifier expects it.
    let mailbox = Mailbox::start_on(&mail_dir(&env), port).await.unwrap();
    wait_for(
        "the waiting message to go out",
        Duration::from_secs(30),
        async || !mailbox.received().is_empty(),
    )
    .await;
    wait_for(
        "the refused address to be given up",
        Duration::from_secs(30),
        async || {
            count(
                &env,
                "SELECT count(*) FROM notify.messages WHERE state = 'failed'",
            )
            .await
                == 1
        },
    )
    .await;
    let row = client
        .query_one(
            "SELECT state, attempts, last_error FROM notify.messages WHERE order_id = $1",
            &[&refused],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(row.get::<_, i32>(1), 4);
    assert!(
        row.get::<_, String>(2).contains("550"),
        "{}",
        row.get::<_, String>(2)
    );
    let received = mailbox.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_to, vec!["ann@example.org".to_owned()]);
    // Staff see what became of each.
    let seen = scenario::seed::call_as(
        &env.pool,
        "admin",
        warp::http::Method::GET,
        &format!(
            "organizations/{}/orders/{refused}/messages",
            s.organization_id
        ),
        Value::Null,
    )
    .await
    .unwrap();
    assert_eq!(seen["messages"][0]["state"], "failed");
    assert!(
        seen["messages"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("550")
    );

    let _ = stop.send(true);
    service.await.unwrap().unwrap();
    mailbox.stop().await;
}

/// A buyer (with their check code) and staff may have the numbers sent again, to the address
/// the order was bought with, three times an hour between them; the link in the e-mail opens
/// that one order, and a changed link opens nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_on_request_are_limited_and_links_open_one_order() {
    let env = TestEnv::new().await;
    let s = common::online_raffle(&env).await;
    let dir = mail_dir(&env);
    let mailbox = Mailbox::start(&dir).await.unwrap();
    let settings = notifier::MailSettings {
        smtp_url: mailbox.smtp_url(),
        link_key: Some(vec![7u8; 32]),
        ..Default::default()
    };
    let ingest = common::ingest_with_mail(&env, SECRET, settings.clone()).await;
    let _allocator = common::allocator(&env);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let service = {
        let (db, pool, brokers, topics) = (
            env.db.clone(),
            env.pool.clone(),
            env.brokers.clone(),
            env.topics.clone(),
        );
        let settings = settings.clone();
        tokio::spawn(async move {
            notifier::run(
                db,
                pool,
                &brokers,
                &topics,
                settings,
                notifier::SenderConfig::default(),
                stopped,
            )
            .await
        })
    };
    let (order, code) = common::buy(ingest, SECRET, &s, Some("lee@example.org")).await;
    wait_for("the confirmation", Duration::from_secs(30), async || {
        mailbox.received().len() == 1
    })
    .await;

    // The link in the e-mail opens the order.
    let raw = mailbox.received()[0]
        .raw
        .replace("=\r\n", "")
        .replace("=3D", "=");
    let at = raw
        .find("/v1/orders/")
        .expect("the e-mail carries the order's link");
    let link: String = raw[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
        .collect();
    let r = request(ingest, "GET", &link, &[], b"").await.unwrap();
    assert_eq!(
        r.status,
        200,
        "{link}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json().unwrap()["order_id"], json!(order));
    assert_eq!(
        r.json().unwrap()["draw_numbers"].as_array().unwrap().len(),
        5
    );
    // Changed, it opens nothing, and says no more than an unknown order would.
    let other = link.replace(&order.to_string(), &Uuid::now_v7().to_string());
    let forged = format!("{}0", &link[..link.len() - 1]);
    for bad in [&other, &forged] {
        let r = request(ingest, "GET", bad, &[], b"").await.unwrap();
        assert_eq!(r.status, 404, "{bad}");
    }
    // Expired: it says so.
    let expired = notifier::link::path(&[7u8; 32], order, chrono::Utc::now().timestamp() - 10);
    assert_eq!(
        request(ingest, "GET", &expired, &[], b"")
            .await
            .unwrap()
            .status,
        410
    );

    // Copies: a wrong code is the one answer; the buyer twice, staff once, then no more.
    let ask = |code: String| {
        let body = serde_json::to_vec(&json!({"order_id": order, "check_code": code})).unwrap();
        async move {
            request(
                ingest,
                "POST",
                "/v1/orders/resend",
                &[("Content-Type", "application/json")],
                &body,
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(ask("00000-00000".into()).await.status, 404);
    for _ in 0..2 {
        let r = ask(code.clone()).await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    }
    let staff = scenario::seed::call_as(
        &env.pool,
        "admin",
        warp::http::Method::POST,
        &format!("organizations/{}/orders/{order}/resend", s.organization_id),
        Value::Null,
    )
    .await
    .unwrap();
    assert_eq!(staff["requested_by"], "admin");
    let r = ask(code.clone()).await;
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("try again in"));
    // Another organisation's staff do not see the order.
    let other_org = Uuid::now_v7();
    let refused = scenario::seed::call_as(
        &env.pool,
        "admin",
        warp::http::Method::POST,
        &format!("organizations/{other_org}/orders/{order}/resend"),
        Value::Null,
    )
    .await
    .unwrap_err();
    assert!(
        refused.status == 403 || refused.status == 404,
        "{refused:?}"
    );

    wait_for("the three copies", Duration::from_secs(30), async || {
        mailbox.received().len() == 4
    })
    .await;
    let received = mailbox.received();
    let ids: HashSet<String> = received
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(ids.len(), 4, "each copy is a message of its own");
    assert!(
        received
            .iter()
            .all(|m| m.rcpt_to == vec!["lee@example.org".to_owned()])
    );
    assert!(
        received[1..]
            .iter()
            .all(|m| m.header("Subject").unwrap().starts_with("A copy of"))
    );

    let _ = stop.send(true);
    service.await.unwrap().unwrap();
    mailbox.stop().await;
}
