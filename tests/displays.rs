//! The live jackpot and the public page, against the real pipeline: the estimate grows with
//! every sale and is pushed to a stream's subscribers, is labelled an estimate until the seal
//! and then shows the sealed prize, exactly; the JSON is cacheable by its ETag; the pages load
//! nothing from elsewhere and run in a real browser (Debian's chromium, headless), which
//! takes a phone-sized screenshot of each.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::http_client::{EventStream, request};
use platform::testkit::TestEnv;
use serde_json::{Value, json};

const SECRET: &[u8] = b"whsec_displays_test_secret";

/// The displays (consumer and server) on the test's stack.
async fn displays(env: &TestEnv) -> SocketAddr {
    let service = displays::service(&env.db, &env.pool, &env.brokers, &env.topics);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let health = platform::health::Health::start(platform::health::HealthConfig::database_only(
        "displays",
        env.pool.clone(),
    ));
    // Streams end after two seconds (screens reconnect by themselves), so that the headless
    // browser's virtual time, which waits for requests to end, moves on.
    let state = Arc::new(displays::http::DisplaysState {
        stream_lifetime: Duration::from_secs(2),
        ..displays::http::DisplaysState::new(env.pool.clone(), health)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(displays::http::serve(state, listener, stopped.clone()));
    tokio::spawn(async move {
        let _keep = _stop;
        service.run(stopped).await
    });
    addr
}

async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> platform::http_client::Response {
    request(addr, "GET", path, headers, b"").await.unwrap()
}

/// A screen on the jackpot's stream: reconnects when the server ends a stream, as an
/// `EventSource` does.
struct Screen {
    addr: SocketAddr,
    path: String,
    stream: EventStream,
}

impl Screen {
    async fn open(addr: SocketAddr, path: String) -> Self {
        let stream = EventStream::open(addr, &path).await.unwrap();
        Self { addr, path, stream }
    }

    /// The next jackpot value matching `wanted`, and how long it took to come.
    async fn next_matching(&mut self, wanted: impl Fn(&Value) -> bool) -> (Value, Duration) {
        let started = Instant::now();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), self.stream.next())
                .await
                .expect("an event within 30 s")
                .unwrap();
            let Some(event) = event else {
                self.stream = EventStream::open(self.addr, &self.path).await.unwrap();
                continue;
            };
            assert_eq!(event.name, "jackpot");
            let value: Value = serde_json::from_str(&event.data).unwrap();
            if wanted(&value) {
                return (value, started.elapsed());
            }
        }
    }
}

/// Debian's chromium, headless: the page's DOM once its script ran, and a phone-sized
/// screenshot in target/test-screens.
fn browse(url: &str, screenshot: &Path) -> String {
    let browser = std::env::var("RAFFLE_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=390,844",
        "--virtual-time-budget=3000",
    ];
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let shot = std::process::Command::new(&browser)
        .args(common)
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("run {browser} (scripts/test.sh installs chromium): {e}"));
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    assert!(
        std::fs::metadata(screenshot)
            .map(|m| m.len() > 1_000)
            .unwrap_or(false),
        "a screenshot of {url}"
    );
    let dom = std::process::Command::new(&browser)
        .args(common)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

fn screens(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-screens")
        .join(format!("{name}.png"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jackpot_grows_live_and_ends_at_the_sealed_prize() {
    let env = TestEnv::new().await;
    let s = common::online_raffle(&env).await;
    let ingest = common::ingest(&env, SECRET).await;
    let _allocator = common::allocator(&env);
    let _ledger = common::ledger(&env);
    let shown = displays(&env).await;
    let path = format!("/v1/raffles/{}/jackpot", s.raffle_id);
    let terms = ledger::split::Terms::load(&env.client().await, s.raffle_id)
        .await
        .unwrap()
        .unwrap();
    let main = terms.main_prize().unwrap();
    let estimate = |gross: i64| terms.split(gross).unwrap().prizes_minor[main];

    // Before any sale: the guaranteed minimum (and starting cash), as an estimate.
    let r = get(shown, &path, &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let first = r.json().unwrap();
    assert_eq!(first["label"], "Estimated jackpot");
    assert_eq!(first["final"], false);
    assert_eq!(first["jackpot_minor"], json!(estimate(0)));
    let etag = r.headers.get("etag").cloned().expect("an ETag");
    assert_eq!(
        get(shown, &path, &[("If-None-Match", &etag)]).await.status,
        304
    );
    let unknown = get(
        shown,
        &format!("/v1/raffles/{}/jackpot", uuid::Uuid::now_v7()),
        &[],
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown
            .content_type()
            .starts_with("application/problem+json")
    );

    // A screen subscribes; every sale moves the value it is pushed.
    let mut stream = Screen::open(shown, format!("{path}/stream")).await;
    let (now, _) = stream.next_matching(|_| true).await;
    assert_eq!(now["tickets_sold"], 0);
    for i in 1..=4i64 {
        let paid = Instant::now();
        common::buy(ingest, SECRET, &s, None).await;
        let (now, waited) = stream
            .next_matching(|v| v["tickets_sold"] == json!(5 * i))
            .await;
        assert_eq!(now["jackpot_minor"], json!(estimate(2_000 * i)), "{now}");
        assert_eq!(now["label"], "Estimated jackpot");
        eprintln!(
            "sale {i}: pushed {:?} after the payment was acknowledged ({:?} after the screen started waiting)",
            paid.elapsed(),
            waited
        );
    }
    let r = get(shown, &path, &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status, 200, "a changed jackpot is not 'not modified'");

    // The pages, in a real browser: the widget (embeddable) and the public page.
    let widget = format!("http://{shown}{path}/widget");
    let dom = browse(&widget, &screens("jackpot-widget"));
    assert!(dom.contains("Estimated jackpot"), "{dom}");
    assert!(dom.contains("20 tickets sold"), "{dom}");
    assert!(
        dom.contains(" left"),
        "the widget's script ran (the countdown): {dom}"
    );
    let widget_headers = get(shown, &format!("{path}/widget"), &[]).await.headers;
    let policy = &widget_headers["content-security-policy"];
    assert!(
        policy.contains("frame-ancestors *") && policy.contains("script-src 'sha256-"),
        "{policy}"
    );
    let page = format!("http://{shown}/v1/raffles/{}/page", s.raffle_id);
    let dom = browse(&page, &screens("raffle-page-selling"));
    for part in [
        "Value Pack",
        "licence",
        "Prizes",
        "Estimated jackpot",
        "claimed by",
    ] {
        assert!(dom.contains(part), "the page shows {part}: {dom}");
    }
    let served = String::from_utf8_lossy(
        &get(shown, &format!("/v1/raffles/{}/page", s.raffle_id), &[])
            .await
            .body,
    )
    .into_owned();
    assert!(
        !served.contains("src=\"http") && !served.contains("href=\"http"),
        "nothing from elsewhere"
    );

    // Sales close, the books are sealed: the value is final, and it is the sealed prize.
    let sealed = common::close_and_seal(&env, &s).await;
    let sealed_prize = sealed.prizes[main]["amount_minor"].as_i64().unwrap();
    let (last, _) = stream.next_matching(|v| v["final"] == true).await;
    assert_eq!(last["label"], "Final jackpot");
    assert_eq!(last["jackpot_minor"], json!(sealed_prize));
    assert_eq!(
        sealed_prize,
        estimate(8_000),
        "the last estimate was the sealed prize"
    );

    // Drawn: the winning numbers appear, on the feed and on the page with the evidence.
    draw_engine::run(
        &env.pool,
        &draw_engine::DrawRequest {
            raffle_id: s.raffle_id,
            conducted_by: "draw-officer".into(),
            interrupt_after_prizes: None,
            seed_key: None,
        },
    )
    .await
    .unwrap();
    let (drawn, _) = stream
        .next_matching(|v| !v["winning_numbers"].as_array().unwrap().is_empty())
        .await;
    assert_eq!(drawn["state"], "drawn");
    let dom = browse(&page, &screens("raffle-page-drawn"));
    for part in [
        "Final jackpot",
        "The winners",
        "Seed commitment",
        "Revealed seed",
        "Winning numbers",
    ] {
        assert!(dom.contains(part), "the drawn page shows {part}: {dom}");
    }
}
