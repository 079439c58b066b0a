//! The buyer looks their order up with its id and the receipt's check code: pending, then its
//! draw numbers once issued, then after the draw whether one won. A wrong code and an unknown
//! order get the same answer; too many look-ups from one address are refused. The raffle's
//! public JSON shows the seal's and the draw's evidence once there is some.

mod common;

use std::net::SocketAddr;

use chrono::Utc;
use platform::http_client::{Response, request};
use platform::testkit::TestEnv;
use serde_json::{Value, json};
use uuid::Uuid;

const SECRET: &[u8] = b"whsec_buyer_lookup_secret";

async fn post(addr: SocketAddr, path: &str, body: &Value) -> Response {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(body).unwrap(),
    )
    .await
    .unwrap()
}

async fn look_up(addr: SocketAddr, order: &str, code: &str) -> Response {
    post(
        addr,
        "/v1/orders/lookup",
        &json!({"order_id": order, "check_code": code}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_sees_their_order_its_numbers_and_whether_one_won() {
    let env = TestEnv::new().await;
    let s = scenario::seed::raffle_on_sale(
        &env.pool,
        &scenario::seed::Options {
            rsu_count: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ingest = common::ingest(&env, SECRET).await;
    let _allocator = common::allocator(&env);
    let _ledger = common::ledger(&env);

    let r = post(
        ingest,
        "/v1/checkout",
        &json!({"raffle_id": s.raffle_id, "package_id": s.package_id}),
    )
    .await;
    assert_eq!(r.status, 201);
    let receipt = r.json().unwrap();
    let order = receipt["order_id"].as_str().unwrap().to_owned();
    let code = receipt["check_code"].as_str().unwrap().to_owned();

    let r = look_up(ingest, &order, &code).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let seen = r.json().unwrap();
    assert_eq!(seen["payment_status"], "pending");
    assert_eq!(seen["draw_numbers"], json!([]));
    assert_eq!(seen["validation_number"], receipt["validation_number"]);

    // A wrong code and an order that does not exist read the same: nothing says which.
    let wrong = look_up(ingest, &order, "00000-00000").await;
    let unknown = look_up(ingest, &Uuid::now_v7().to_string(), &code).await;
    let garbled = look_up(ingest, &order, "not a code").await;
    for r in [&wrong, &unknown, &garbled] {
        assert_eq!(r.status, 404);
    }
    assert_eq!(
        wrong.json().unwrap()["detail"],
        unknown.json().unwrap()["detail"]
    );
    assert_eq!(
        wrong.json().unwrap()["detail"],
        garbled.json().unwrap()["detail"]
    );

    // Paid: the numbers the allocator issued.
    let pi = format!("pi_lookup_{}", &order[..8]);
    let paid = json!({"id": "evt_lookup_1", "object": "event", "created": Utc::now().timestamp(), "type": "payment_intent.succeeded",
                      "data": {"object": {"id": pi, "object": "payment_intent", "amount": 2000, "amount_received": 2000,
                                          "currency": "usd", "status": "succeeded", "metadata": {"order_id": order}}}});
    assert_eq!(
        scenario::sales::deliver(ingest, SECRET, &paid)
            .await
            .unwrap()
            .status,
        200
    );
    common::sales_settled(&env).await;
    let seen = look_up(ingest, &order, &code).await.json().unwrap();
    assert_eq!(seen["payment_status"], "completed");
    let numbers: Vec<i64> = seen["draw_numbers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(numbers.len(), 5, "{seen}");
    assert_eq!(seen["won"], json!([]));
    assert!(seen["drawn_at"].is_null());

    // The public page before the seal: the rules and the count, no evidence yet.
    let page = |ingest: SocketAddr, raffle: Uuid| async move {
        let r = request(ingest, "GET", &format!("/v1/raffles/{raffle}"), &[], b"")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json().unwrap()
    };
    let before = page(ingest, s.raffle_id).await;
    assert_eq!(before["tickets_sold"], 5);
    assert!(before["rules"]["packages"].is_array(), "{before}");
    assert!(
        before["seal"].is_null() && before["draw"].is_null(),
        "{before}"
    );
    assert!(
        !before.to_string().contains(&order),
        "nothing of a buyer on the public page"
    );

    // Close, seal, draw: the only tickets are this buyer's, so the 50/50 is theirs.
    common::close_and_seal(&env, &s).await;
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
    let seen = look_up(ingest, &order, &code).await.json().unwrap();
    assert!(seen["drawn_at"].is_string(), "{seen}");
    let won = seen["won"].as_array().unwrap();
    assert!(!won.is_empty(), "{seen}");
    assert!(
        won.iter()
            .all(|w| numbers.contains(&w["number"].as_i64().unwrap())),
        "{seen}"
    );

    // The public page after the draw: the seal's evidence, the revealed seed (whose SHA-256 is
    // the commitment published at the seal) and the winning numbers.
    let after = page(ingest, s.raffle_id).await;
    let seed = hex::decode(after["draw"]["seed"].as_str().expect("the seed, revealed")).unwrap();
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&seed)),
        after["seal"]["seed_commitment"].as_str().unwrap(),
        "{after}"
    );
    let published: Vec<i64> = after["draw"]["winners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["number"].as_i64().unwrap())
        .collect();
    let looked_up: Vec<i64> = won.iter().map(|w| w["number"].as_i64().unwrap()).collect();
    assert_eq!(published, looked_up, "{after}");
    assert!(after["draw"]["how_to_check"].is_string());
    assert_eq!(
        request(
            ingest,
            "GET",
            &format!("/v1/raffles/{}", Uuid::now_v7()),
            &[],
            b""
        )
        .await
        .unwrap()
        .status,
        404
    );

    // Too many look-ups from one address: refused, with when to come back.
    let mut refused = None;
    for _ in 0..ingest::buyers::LOOKUPS_PER_MINUTE {
        let r = look_up(ingest, &order, &code).await;
        if r.status == 429 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the address is refused within a minute's allowance");
    assert!(
        String::from_utf8_lossy(&refused.body).contains("too many order look-ups"),
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
}
