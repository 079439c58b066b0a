//! The admin API against the real server and Postgres: lifecycle, regulations, the
//! authorisation matrix, tokens, API keys, allocations, perk inventory under concurrency, bad
//! input, and the critical events every change and refusal leaves.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use admin::auth::Verifier;
use admin::{AppState, BODY_LIMIT_BYTES};
use chrono::{Duration as Span, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use platform::http_client::{Response, request};
use platform::testkit::TestEnv;
use serde_json::{Value, json};
use uuid::Uuid;

/// (method, path, body) of the calls of one endpoint family.
type Calls = Vec<(&'static str, String, Value)>;
/// A change to a valid request body, for the bad-input cases.
type Mutation = Box<dyn Fn(&mut Value)>;

const SECRET: &[u8] = b"a-development-secret-of-at-least-32-bytes";

struct App {
    env: TestEnv,
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn spawn_app_with(verifier: Verifier) -> App {
    let env = TestEnv::new().await;
    let state = Arc::new(AppState {
        pool: env.pool.clone(),
        verifier,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(admin::serve(state, listener, async move {
        let _ = stopped.await;
    }));
    App {
        env,
        addr,
        _stop: stop,
    }
}

async fn spawn_app() -> App {
    spawn_app_with(Verifier::hs256(SECRET)).await
}

fn token_with(sub: &str, expires_in: Span, secret: &[u8]) -> String {
    let claims = json!({"sub": sub, "exp": (Utc::now() + expires_in).timestamp(), "name": sub});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn token(sub: &str) -> String {
    token_with(sub, Span::minutes(10), SECRET)
}

impl App {
    async fn raw(&self, method: &str, path: &str, bearer: Option<&str>, body: &[u8]) -> Response {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        request(self.addr, method, &format!("/v1/{path}"), &headers, body)
            .await
            .expect("HTTP request")
    }

    async fn call(&self, sub: &str, method: &str, path: &str, body: Value) -> Response {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        self.raw(method, path, Some(&token(sub)), &bytes).await
    }

    /// Calls and asserts the status, returning the JSON body.
    async fn ok(&self, sub: &str, method: &str, path: &str, body: Value, status: u16) -> Value {
        let r = self.call(sub, method, path, body).await;
        assert_eq!(
            r.status,
            status,
            "{method} {path} as {sub}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json().unwrap()
    }

    /// Calls, asserts a problem with this status, returns it.
    async fn refused(
        &self,
        sub: &str,
        method: &str,
        path: &str,
        body: Value,
        status: u16,
    ) -> Value {
        let r = self.call(sub, method, path, body).await;
        assert_eq!(
            r.status,
            status,
            "{method} {path} as {sub}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.content_type(), "application/problem+json");
        let p = r.json().unwrap();
        assert!(p["type"].as_str().unwrap().starts_with("/problems/"), "{p}");
        assert!(!p["detail"].as_str().unwrap().is_empty());
        p
    }

    async fn sql(&self, sql: &str) {
        self.env.client().await.batch_execute(sql).await.unwrap();
    }

    async fn count(&self, sql: &str) -> i64 {
        self.env
            .client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// A platform admin "root", a jurisdiction, an organisation run by `admin`, and a venue.
struct World {
    org: String,
    venue: String,
    jurisdiction: String,
}

async fn world(app: &App) -> World {
    app.sql("INSERT INTO catalog.users (cognito_sub, is_platform_admin) VALUES ('root', true) ON CONFLICT (cognito_sub) DO NOTHING")
        .await;
    let code = format!(
        "ON-{}",
        &Uuid::new_v4().simple().to_string()[..8].to_uppercase()
    );
    let j = app
        .ok(
            "root",
            "POST",
            "jurisdictions",
            json!({"name": "Ontario", "code": code, "type": "province"}),
            201,
        )
        .await;
    let org = app
        .ok(
            "admin",
            "POST",
            "organizations",
            json!({"name": "Community Center Inc", "primary_currency": "USD", "operating_fee": {"type": "percentage", "percent": "4.5"},
                   "address": {"street": "123 Main Street", "city": "Anytown", "country": "US"}}),
            201,
        )
        .await;
    let org = org["id"].as_str().unwrap().to_owned();
    let venue = app
        .ok(
            "admin",
            "POST",
            &format!("organizations/{org}/venues"),
            json!({"name": "Main Hall", "jurisdiction_id": j["id"], "accepted_currencies": ["USD"], "timezone": "America/Toronto"}),
            201,
        )
        .await;
    World {
        org,
        venue: venue["id"].as_str().unwrap().to_owned(),
        jurisdiction: j["id"].as_str().unwrap().to_owned(),
    }
}

fn raffle_body(w: &World, hours: i64) -> Value {
    let now = Utc::now();
    json!({
        "name": "Summer 50/50", "venue_id": w.venue, "event_identifier": format!("RAFFLE-{}", Uuid::new_v4()),
        "sales_start_time": now - Span::hours(1), "sales_end_time": now + Span::hours(hours),
        "draw_time": now + Span::hours(hours + 1), "currency": "USD", "jackpot_seed_minor": 100000, "max_tickets": 200000,
        "ranges": [{"type": "rsu", "start": 1, "end": 50000, "default_allocation_size": 100},
                   {"type": "online", "start": 50001, "end": 180000},
                   {"type": "reserve", "start": 180001, "end": 200000, "default_allocation_size": 1000}]
    })
}

async fn raffle(app: &App, w: &World) -> String {
    let r = app
        .ok(
            "admin",
            "POST",
            &format!("organizations/{}/raffles", w.org),
            raffle_body(w, 48),
            201,
        )
        .await;
    assert_eq!(r["state"], "draft");
    assert_eq!(r["ranges"].as_array().unwrap().len(), 3);
    r["id"].as_str().unwrap().to_owned()
}

async fn furnish(app: &App, w: &World, raffle: &str) {
    let base = format!("organizations/{}/raffles/{raffle}", w.org);
    app.ok(
        "admin",
        "POST",
        &format!("{base}/packages"),
        json!({"name": "Value Pack", "ticket_count": 5, "price_minor": 2000, "currency": "USD"}),
        201,
    )
    .await;
    app.ok(
        "admin",
        "POST",
        &format!("{base}/prizes"),
        json!({"name": "Raffle Winner", "type": "percentage", "percentage": 50, "position": 1}),
        201,
    )
    .await;
}

async fn member(app: &App, w: &World, sub: &str, role: &str) {
    app.ok(
        "admin",
        "PUT",
        &format!("organizations/{}/members/{sub}", w.org),
        json!({"role": role}),
        200,
    )
    .await;
}

async fn transition(app: &App, sub: &str, w: &World, raffle: &str, to: &str) -> Response {
    app.call(
        sub,
        "POST",
        &format!("organizations/{}/raffles/{raffle}/transitions", w.org),
        json!({"to": to, "reason": "test"}),
    )
    .await
}

#[tokio::test]
async fn every_lifecycle_transition_is_checked_and_recorded() {
    let app = spawn_app().await;
    let w = world(&app).await;
    member(&app, &w, "olivia", "operator").await;
    let r = raffle(&app, &w).await;

    // No activation without a package and a prize.
    let p = app
        .refused(
            "admin",
            "POST",
            &format!("organizations/{}/raffles/{r}/transitions", w.org),
            json!({"to": "active"}),
            409,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("package"), "{p}");
    furnish(&app, &w, &r).await;
    // Operators may not activate; straight to sealed or back to draft is never allowed.
    assert_eq!(
        transition(&app, "olivia", &w, &r, "active").await.status,
        403
    );
    assert_eq!(
        transition(&app, "admin", &w, &r, "sealed").await.status,
        409
    );
    assert_eq!(
        transition(&app, "admin", &w, &r, "nonsense").await.status,
        422
    );
    assert_eq!(
        transition(&app, "admin", &w, &r, "active").await.status,
        200
    );
    assert_eq!(transition(&app, "admin", &w, &r, "draft").await.status, 409);
    assert_eq!(
        transition(&app, "admin", &w, &r, "active").await.status,
        409,
        "already active"
    );
    // An operator closes sales; sealing belongs to the ledger.
    assert_eq!(
        transition(&app, "olivia", &w, &r, "sales_closed")
            .await
            .status,
        200
    );
    let p = transition(&app, "admin", &w, &r, "sealed").await;
    assert_eq!(p.status, 409);
    assert!(
        p.json().unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("ledger seal")
    );
    // The ledger and the draw engine move it on; an admin completes it.
    app.sql(&format!(
        "UPDATE catalog.raffle_events SET state = 'drawn' WHERE id = '{r}'"
    ))
    .await;
    assert_eq!(
        transition(&app, "olivia", &w, &r, "completed").await.status,
        403
    );
    assert_eq!(
        transition(&app, "admin", &w, &r, "completed").await.status,
        200
    );
    assert_eq!(
        transition(&app, "admin", &w, &r, "cancelled").await.status,
        409,
        "completed is final"
    );

    // A second raffle is cancelled from draft.
    let r2 = raffle(&app, &w).await;
    assert_eq!(
        transition(&app, "admin", &w, &r2, "cancelled").await.status,
        200
    );
    assert_eq!(
        transition(&app, "admin", &w, &r2, "active").await.status,
        409,
        "cancelled is final"
    );

    let transitions = app
        .count(&format!(
            "SELECT count(*) FROM catalog.raffle_transitions WHERE raffle_id = '{r}'"
        ))
        .await;
    assert_eq!(transitions, 3, "active, sales_closed, completed");
    let events = app
        .count(&format!(
            "SELECT count(*) FROM audit.critical_events WHERE raffle_id = '{r}'
              AND event_type IN ('RAFFLE_ACTIVATED', 'RAFFLE_SALES_CLOSED', 'RAFFLE_COMPLETED')"
        ))
        .await;
    assert_eq!(events, 3);
    let refusals = app
        .count(&format!(
            "SELECT count(*) FROM audit.critical_events WHERE organization_id = '{}' AND event_type IN ('REQUEST_REFUSED', 'ACCESS_FORBIDDEN')",
            w.org
        ))
        .await;
    assert!(
        refusals >= 8,
        "every refused attempt is recorded, got {refusals}"
    );
}

#[tokio::test]
async fn sales_close_at_the_configured_time_even_if_nobody_acts() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let mut body = raffle_body(&w, 1);
    body["sales_end_time"] = json!(Utc::now() + Span::seconds(2));
    body["draw_time"] = json!(Utc::now() + Span::hours(1));
    let r = app
        .ok(
            "admin",
            "POST",
            &format!("organizations/{}/raffles", w.org),
            body,
            201,
        )
        .await;
    let r = r["id"].as_str().unwrap().to_owned();
    furnish(&app, &w, &r).await;
    assert_eq!(
        transition(&app, "admin", &w, &r, "active").await.status,
        200
    );
    common::eventually("the sweeper to close sales", || {
        let app = &app;
        let r = r.clone();
        async move {
            app.count(&format!("SELECT count(*) FROM catalog.raffle_events WHERE id = '{r}' AND state = 'sales_closed'")).await == 1
        }
    })
    .await;
    let actor: String = app
        .env
        .client()
        .await
        .query_one("SELECT actor FROM catalog.raffle_transitions WHERE raffle_id = $1 AND to_state = 'sales_closed'", &[&r.parse::<Uuid>().unwrap()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor, "system");
}

#[tokio::test]
async fn money_and_numbers_are_frozen_after_the_first_sale() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let r = raffle(&app, &w).await;
    furnish(&app, &w, &r).await;
    let base = format!("organizations/{}/raffles/{r}", w.org);
    app.ok(
        "admin",
        "PATCH",
        &base,
        json!({"jackpot_seed_minor": 250000}),
        200,
    )
    .await;
    app.sql(&format!(
        "UPDATE catalog.raffle_events SET first_sale_at = now() WHERE id = '{r}'"
    ))
    .await;
    let p = app
        .refused(
            "admin",
            "PATCH",
            &base,
            json!({"jackpot_seed_minor": 1}),
            409,
        )
        .await;
    assert_eq!(p["type"], "/problems/frozen-after-first-sale");
    app.refused("admin", "PATCH", &base, json!({"max_tickets": 10}), 409)
        .await;
    app.refused(
        "admin",
        "PATCH",
        &base,
        json!({"sales_end_time": Utc::now() + Span::hours(100)}),
        409,
    )
    .await;
    let package = app
        .ok(
            "admin",
            "GET",
            &format!("{base}/packages"),
            Value::Null,
            200,
        )
        .await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.refused(
        "admin",
        "PATCH",
        &format!("{base}/packages/{package}"),
        json!({"price_minor": 1500}),
        409,
    )
    .await;
    app.refused(
        "admin",
        "POST",
        &format!("{base}/prizes"),
        json!({"name": "Late", "type": "fixed", "value_minor": 1, "position": 9}),
        409,
    )
    .await;
    // What does not touch money still can change.
    let renamed = app
        .ok(
            "admin",
            "PATCH",
            &base,
            json!({"name": "Summer 50/50 (renamed)"}),
            200,
        )
        .await;
    assert_eq!(renamed["jackpot_seed_minor"], 250000);
    app.ok(
        "admin",
        "PATCH",
        &format!("{base}/packages/{package}"),
        json!({"display_order": 3}),
        200,
    )
    .await;
}

#[tokio::test]
async fn regulations_inherit_and_a_child_cannot_loosen_a_parent_rule() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let country = app.ok("root", "POST", "jurisdictions", json!({"name": "Canada", "code": format!("CA-{}", &Uuid::new_v4().simple().to_string()[..6].to_uppercase()), "type": "country"}), 201).await;
    let country = country["id"].as_str().unwrap().to_owned();
    let province = app
        .ok("root", "POST", "jurisdictions", json!({"name": "Ontario", "code": format!("ON-CA-{}", &Uuid::new_v4().simple().to_string()[..6].to_uppercase()), "type": "province", "parent_jurisdiction_id": country}), 201)
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reg = |kind: &str, value: Value, overridable: bool| json!({"name": kind, "type": kind, "value": value, "effective_date": Utc::now() - Span::days(1), "overridable": overridable});
    app.ok(
        "root",
        "POST",
        &format!("jurisdictions/{country}/regulations"),
        reg(
            "prize_limit",
            json!({"amount": 1_000_000, "currency": "USD"}),
            false,
        ),
        201,
    )
    .await;
    app.ok(
        "root",
        "POST",
        &format!("jurisdictions/{country}/regulations"),
        reg("event_duration", json!({"max_days": 30}), true),
        201,
    )
    .await;
    // Loosening the non-overridable limit is refused; tightening it is fine.
    let p = app
        .refused(
            "root",
            "POST",
            &format!("jurisdictions/{province}/regulations"),
            reg(
                "prize_limit",
                json!({"amount": 2_000_000, "currency": "USD"}),
                true,
            ),
            409,
        )
        .await;
    assert_eq!(p["type"], "/problems/regulation-loosens-parent");
    app.ok(
        "root",
        "POST",
        &format!("jurisdictions/{province}/regulations"),
        reg(
            "prize_limit",
            json!({"amount": 500_000, "currency": "USD"}),
            true,
        ),
        201,
    )
    .await;
    // The overridable duration can be loosened by the child.
    app.ok(
        "root",
        "POST",
        &format!("jurisdictions/{province}/regulations"),
        reg("event_duration", json!({"max_days": 60}), true),
        201,
    )
    .await;
    // Only platform admins keep regulations; the shape of a value is checked.
    app.refused(
        "admin",
        "POST",
        &format!("jurisdictions/{province}/regulations"),
        reg("prize_limit", json!({"amount": 1, "currency": "USD"}), true),
        403,
    )
    .await;
    let p = app
        .refused(
            "root",
            "POST",
            &format!("jurisdictions/{province}/regulations"),
            reg("event_duration", json!({"days": 3}), true),
            422,
        )
        .await;
    assert_eq!(p["field"], "value");

    let rules = app
        .ok(
            "admin",
            "GET",
            &format!("jurisdictions/{province}/effective-rules"),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(
        rules["rules"]["prize_limit"]["value"]["amount"], 500_000,
        "nearest, within the parent's limit"
    );
    assert_eq!(
        rules["rules"]["event_duration"]["value"]["max_days"], 60,
        "the child overrides"
    );
    let at_country = app
        .ok(
            "admin",
            "GET",
            &format!("jurisdictions/{country}/effective-rules"),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(
        at_country["rules"]["prize_limit"]["value"]["amount"],
        1_000_000
    );

    // Enforced when a raffle is configured and when it is activated, in a venue of the province.
    let venue = app
        .ok("admin", "POST", &format!("organizations/{}/venues", w.org), json!({"name": "Arena", "jurisdiction_id": province, "accepted_currencies": ["USD"], "timezone": "America/Toronto"}), 201)
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let w2 = World {
        org: w.org.clone(),
        venue,
        jurisdiction: province.clone(),
    };
    let mut body = raffle_body(&w2, 48);
    body["jackpot_seed_minor"] = json!(600_000);
    let p = app
        .refused(
            "admin",
            "POST",
            &format!("organizations/{}/raffles", w.org),
            body,
            409,
        )
        .await;
    assert_eq!(p["field"], "jackpot_seed_minor");
    let mut long = raffle_body(&w2, 24 * 90);
    long["draw_time"] = json!(Utc::now() + Span::days(91));
    let p = app
        .refused(
            "admin",
            "POST",
            &format!("organizations/{}/raffles", w.org),
            long,
            409,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("at most 60"), "{p}");
    let r = raffle(&app, &w2).await;
    let base = format!("organizations/{}/raffles/{r}", w.org);
    let p = app
        .refused(
            "admin",
            "POST",
            &format!("{base}/prizes"),
            json!({"name": "Car", "type": "fixed", "value_minor": 700_000, "position": 2}),
            409,
        )
        .await;
    assert_eq!(p["field"], "value_minor");
    furnish(&app, &w2, &r).await;
    app.ok(
        "admin",
        "POST",
        &format!("{base}/prizes"),
        json!({"name": "TV", "type": "fixed", "value_minor": 400_000, "position": 2}),
        201,
    )
    .await;
    // The rule tightens after configuration: activation checks again.
    app.ok(
        "root",
        "POST",
        &format!("jurisdictions/{country}/regulations"),
        reg(
            "ticket_price_limit",
            json!({"amount": 300, "currency": "USD"}),
            false,
        ),
        201,
    )
    .await;
    let p = transition(&app, "admin", &w2, &r, "active").await;
    assert_eq!(
        p.status, 409,
        "a 5-for-$20 package is $4 a ticket, over the $3 limit"
    );
    assert!(
        p.json().unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("ticket_price_limit")
    );
    let _ = w.jurisdiction;
}

#[tokio::test]
async fn a_jurisdiction_that_forbids_rsu_sales_refuses_rsu_ranges() {
    let app = spawn_app().await;
    let w = world(&app).await;
    app.ok(
        "root",
        "POST",
        &format!("jurisdictions/{}/regulations", w.jurisdiction),
        json!({"name": "online only", "type": "sales_method", "value": {"online": true, "rsu": false, "offline_rsu": false, "rng_draw": false},
               "effective_date": Utc::now() - Span::days(1), "overridable": false}),
        201,
    )
    .await;
    let p = app
        .refused(
            "admin",
            "POST",
            &format!("organizations/{}/raffles", w.org),
            raffle_body(&w, 48),
            409,
        )
        .await;
    assert_eq!(p["field"], "ranges");
    let mut online_only = raffle_body(&w, 48);
    online_only["ranges"] = json!([{"type": "online", "start": 1, "end": 200000}]);
    app.ok(
        "admin",
        "POST",
        &format!("organizations/{}/raffles", w.org),
        online_only,
        201,
    )
    .await;
}

/// Each role against each endpoint family, and nobody into another organisation.
#[tokio::test]
async fn the_authorisation_matrix_holds() {
    let app = spawn_app().await;
    let w = world(&app).await;
    for (sub, role) in [
        ("olivia", "operator"),
        ("fiona", "finance"),
        ("audrey", "auditor"),
    ] {
        member(&app, &w, sub, role).await;
    }
    let r = raffle(&app, &w).await;
    furnish(&app, &w, &r).await;
    let rsu = app
        .ok(
            "admin",
            "POST",
            &format!("organizations/{}/rsus", w.org),
            json!({"name": "RSU-001", "device_identifier": "MAC:00:1B:44:11:3A:B7"}),
            201,
        )
        .await;
    let rsu = rsu["id"].as_str().unwrap().to_owned();
    let org = &w.org;
    // (method, path, body) per family.
    let read = vec![
        ("GET", format!("organizations/{org}"), Value::Null),
        (
            "GET",
            format!("organizations/{org}/raffles/{r}"),
            Value::Null,
        ),
        (
            "GET",
            format!("organizations/{org}/raffles/{r}/packages"),
            Value::Null,
        ),
        ("GET", format!("organizations/{org}/rsus"), Value::Null),
    ];
    let change = vec![
        (
            "PATCH",
            format!("organizations/{org}"),
            json!({"description": "changed"}),
        ),
        (
            "POST",
            format!("organizations/{org}/raffles"),
            raffle_body(&w, 48),
        ),
        (
            "POST",
            format!("organizations/{org}/raffles/{r}/packages"),
            json!({"name": "Single", "ticket_count": 1, "price_minor": 500, "currency": "USD"}),
        ),
        (
            "POST",
            format!("organizations/{org}/perks"),
            json!({"name": "Parking", "type": "benefit", "requires_inventory": false}),
        ),
        (
            "POST",
            format!("organizations/{org}/rsus/{rsu}/api-keys"),
            Value::Null,
        ),
        (
            "PUT",
            format!("organizations/{org}/members/newbie"),
            json!({"role": "auditor"}),
        ),
    ];
    let operate = vec![(
        "POST",
        format!("organizations/{org}/raffles/{r}/allocations"),
        json!({"rsu_id": rsu, "size": 10}),
    )];
    let audit = vec![(
        "GET",
        format!("organizations/{org}/critical-events"),
        Value::Null,
    )];
    let families: [(&str, &Calls, &[&str]); 4] = [
        ("read setup", &read, &["admin", "olivia", "fiona", "audrey"]),
        ("change setup", &change, &["admin"]),
        ("operate", &operate, &["admin", "olivia"]),
        ("read audit", &audit, &["admin", "fiona", "audrey"]),
    ];
    for (family, calls, allowed) in families {
        for sub in ["admin", "olivia", "fiona", "audrey", "mallory"] {
            for (method, path, body) in calls.iter() {
                let mut body = body.clone();
                if path.ends_with("/raffles") {
                    body["event_identifier"] = json!(format!("R-{}", Uuid::new_v4()));
                }
                let status = app.call(sub, method, path, body).await.status;
                if allowed.contains(&sub) {
                    assert!(
                        (200..300).contains(&status),
                        "{family}: {sub} {method} {path} got {status}"
                    );
                } else {
                    assert_eq!(status, 403, "{family}: {sub} {method} {path}");
                }
            }
        }
    }
    // Another organisation's admin sees nothing of this one.
    let other = app
        .ok("eve", "POST", "organizations", json!({"name": "Other Charity", "primary_currency": "USD", "operating_fee": {"type": "fixed", "amount_minor": 100}}), 201)
        .await;
    app.refused(
        "eve",
        "GET",
        &format!("organizations/{org}/raffles/{r}"),
        Value::Null,
        403,
    )
    .await;
    app.refused(
        "admin",
        "GET",
        &format!("organizations/{}", other["id"].as_str().unwrap()),
        Value::Null,
        403,
    )
    .await;
    // A raffle addressed through the wrong organisation is not found.
    app.refused(
        "eve",
        "GET",
        &format!(
            "organizations/{}/raffles/{r}",
            other["id"].as_str().unwrap()
        ),
        Value::Null,
        404,
    )
    .await;
    let forbidden = app.count(&format!("SELECT count(*) FROM audit.critical_events WHERE organization_id = '{org}' AND event_type = 'ACCESS_FORBIDDEN'")).await;
    assert!(
        forbidden >= 20,
        "forbidden attempts are recorded: {forbidden}"
    );
}

#[tokio::test]
async fn expired_tampered_and_missing_tokens_are_refused_and_recorded() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let path = format!("organizations/{}", w.org);
    let expired = token_with("admin", Span::minutes(-5), SECRET);
    let forged = token_with(
        "admin",
        Span::minutes(10),
        b"somebody-elses-secret-of-32-bytes-or-more",
    );
    let mut tampered = token("admin");
    // Flip a character of the payload: the signature no longer matches.
    let dot = tampered.find('.').unwrap() + 3;
    let flipped = if &tampered[dot..dot + 1] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(dot..dot + 1, flipped);
    for (bearer, why) in [
        (Some(expired.as_str()), "expired"),
        (Some(forged.as_str()), "signature"),
        (Some(tampered.as_str()), ""),
        (Some("not.a.jwt"), "malformed"),
        (None, "missing"),
    ] {
        let r = app.raw("GET", &path, bearer, b"").await;
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(r.content_type(), "application/problem+json");
        assert!(
            r.json().unwrap()["detail"].as_str().unwrap().contains(why),
            "{}",
            r.json().unwrap()
        );
    }
    // One critical event says failures began from this source; the table counts them all.
    let events = app
        .count(
            "SELECT count(*) FROM audit.critical_events WHERE event_type = 'AUTHENTICATION_FAILED'",
        )
        .await;
    let counted = app
        .count("SELECT coalesce(sum(failures), 0)::bigint FROM audit.authentication_failures WHERE source = '127.0.0.1'")
        .await;
    assert!(
        (1..=2).contains(&events),
        "{events} events (two if a minute turned)"
    );
    assert_eq!(counted, 5);
}

/// Junk tokens cannot write an organisation's trail: failures are counted per source and
/// minute, one critical event marks the start, and past the limit the source is told to wait
/// with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_tokens_are_counted_and_limited_not_recorded_one_by_one() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let before = app
        .count(&format!(
            "SELECT count(*) FROM audit.critical_events WHERE organization_id = '{}'",
            w.org
        ))
        .await;
    let path = format!("organizations/{}/venues", w.org);
    let mut statuses = Vec::new();
    for i in 0..100 {
        let r = app.raw("GET", &path, Some(&format!("junk-{i}")), b"").await;
        statuses.push(r.status);
    }
    let unauthenticated = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(unauthenticated + limited, 100, "{statuses:?}");
    assert!(
        (20..=40).contains(&unauthenticated),
        "{unauthenticated} answered 401 before the limit (20 a minute)"
    );
    let added = app
        .count(&format!(
            "SELECT count(*) FROM audit.critical_events WHERE organization_id = '{}'",
            w.org
        ))
        .await
        - before;
    assert!(
        (1..=2).contains(&added),
        "{added} critical events for 100 junk requests"
    );
    let counted = app
        .count("SELECT coalesce(sum(failures), 0)::bigint FROM audit.authentication_failures")
        .await;
    assert_eq!(
        counted, unauthenticated as i64,
        "every 401 counted, nothing after the limit"
    );
    // A good token still works from the same source.
    app.ok("admin", "GET", &path, Value::Null, 200).await;
}

#[tokio::test]
async fn rs256_tokens_verify_against_the_configured_key_set() {
    let jwks = include_str!("fixtures/jwt/jwks.json");
    let app = spawn_app_with(Verifier::jwks(jwks).unwrap()).await;
    let key =
        EncodingKey::from_rsa_pem(include_bytes!("fixtures/jwt/rs256-test-private.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let claims = json!({"sub": "rsa-user", "exp": (Utc::now() + Span::minutes(5)).timestamp()});
    let good = encode(&header, &claims, &key).unwrap();
    let r = app.raw("GET", "me", Some(&good), b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["user"]["sub"], "rsa-user");
    // An HS256 token is refused by an RS256 server, whatever its secret.
    let r = app.raw("GET", "me", Some(&token("rsa-user")), b"").await;
    assert_eq!(r.status, 401);
    let mut unknown = header.clone();
    unknown.kid = Some("other-key".into());
    let r = app
        .raw(
            "GET",
            "me",
            Some(&encode(&unknown, &claims, &key).unwrap()),
            b"",
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn api_keys_are_shown_once_stored_hashed_rotated_and_revoked() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let rsu = app
        .ok(
            "admin",
            "POST",
            &format!("organizations/{}/rsus", w.org),
            json!({"name": "RSU-001", "device_identifier": "MAC:1"}),
            201,
        )
        .await;
    assert_eq!(
        rsu["max_offline_tickets"], 100,
        "default from the system configuration"
    );
    assert_eq!(rsu["rsu_number"], 1);
    let rsu_id: Uuid = rsu["id"].as_str().unwrap().parse().unwrap();
    let keys = format!("organizations/{}/rsus/{rsu_id}/api-keys", w.org);
    let first = app.ok("admin", "POST", &keys, Value::Null, 201).await;
    let first_key = first["api_key"].as_str().unwrap().to_owned();
    let client = app.env.client().await;
    assert_eq!(
        catalog::rsus::authenticate(&client, &first_key)
            .await
            .unwrap(),
        rsu_id
    );
    // Stored hashed, expiring after the configured rotation days.
    let stored: i64 = app
        .count(&format!(
            "SELECT count(*) FROM catalog.rsu_api_keys WHERE rsu_id = '{rsu_id}' AND key_hash = sha256('{first_key}'::bytea)
              AND expires_at BETWEEN now() + interval '89 days' AND now() + interval '91 days'"
        ))
        .await;
    assert_eq!(stored, 1);
    let listed = app
        .ok("audrey_is_not_member", "GET", &keys, Value::Null, 403)
        .await;
    let _ = listed;
    let listed = app.ok("admin", "GET", &keys, Value::Null, 200).await;
    assert!(
        !listed.to_string().contains(&first_key),
        "the key is never shown again"
    );
    // Rotation: a new key works, the old one is refused as revoked.
    let second = app.ok("admin", "POST", &keys, Value::Null, 201).await;
    let second_key = second["api_key"].as_str().unwrap().to_owned();
    assert_eq!(second["revoked_key_ids"], json!([first["key_id"]]));
    let p = catalog::rsus::authenticate(&client, &first_key)
        .await
        .unwrap_err();
    assert!(p.detail.contains("revoked"));
    assert_eq!(
        catalog::rsus::authenticate(&client, &second_key)
            .await
            .unwrap(),
        rsu_id
    );
    // Revocation.
    app.ok(
        "admin",
        "DELETE",
        &format!("{keys}/{}", second["key_id"].as_str().unwrap()),
        Value::Null,
        200,
    )
    .await;
    assert!(
        catalog::rsus::authenticate(&client, &second_key)
            .await
            .is_err()
    );
    // Expiry.
    let third = app.ok("admin", "POST", &keys, Value::Null, 201).await;
    app.sql(&format!("UPDATE catalog.rsu_api_keys SET created_at = now() - interval '100 days', expires_at = now() - interval '1 day' WHERE id = '{}'", third["key_id"].as_str().unwrap())).await;
    let p = catalog::rsus::authenticate(&client, third["api_key"].as_str().unwrap())
        .await
        .unwrap_err();
    assert!(p.detail.contains("expired"));
    assert!(
        catalog::rsus::authenticate(&client, "rsk_unknown")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn allocations_hand_out_blocks_with_validation_numbers_and_come_back() {
    let app = spawn_app().await;
    let w = world(&app).await;
    member(&app, &w, "olivia", "operator").await;
    let r = raffle(&app, &w).await;
    let rsu = app
        .ok(
            "admin",
            "POST",
            &format!("organizations/{}/rsus", w.org),
            json!({"name": "RSU-001", "device_identifier": "MAC:1"}),
            201,
        )
        .await;
    let path = format!("organizations/{}/raffles/{r}/allocations", w.org);
    let a = app
        .ok("olivia", "POST", &path, json!({"rsu_id": rsu["id"]}), 201)
        .await;
    assert_eq!(
        (a["start_number"].as_i64(), a["end_number"].as_i64()),
        (Some(1), Some(100)),
        "the range's default size"
    );
    let year = (Utc::now() + Span::hours(48)).format("%Y").to_string();
    assert_eq!(
        a["validation_number_block"]["block_start"],
        format!("RSU001-{year}-0001")
    );
    assert_eq!(
        a["validation_number_block"]["block_end"],
        format!("RSU001-{year}-0100")
    );
    let b = app
        .ok(
            "olivia",
            "POST",
            &path,
            json!({"rsu_id": rsu["id"], "size": 50}),
            201,
        )
        .await;
    assert_eq!(
        (b["start_number"].as_i64(), b["end_number"].as_i64()),
        (Some(101), Some(150))
    );
    assert_eq!(
        b["validation_number_block"]["block_start"],
        format!("RSU001-{year}-0101"),
        "the sequence continues"
    );
    let raffle_now = app
        .ok(
            "admin",
            "GET",
            &format!("organizations/{}/raffles/{r}", w.org),
            Value::Null,
            200,
        )
        .await;
    let rsu_range = raffle_now["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["range_type"] == "rsu")
        .unwrap()
        .clone();
    assert_eq!(rsu_range["allocated"], 150);
    assert_eq!(rsu_range["available"], 50000 - 150);
    // Too big a block is refused; a block is returned once.
    let p = app
        .refused(
            "olivia",
            "POST",
            &path,
            json!({"rsu_id": rsu["id"], "size": 60000}),
            409,
        )
        .await;
    assert_eq!(
        (p["type"].as_str(), p["field"].as_str()),
        (Some("/problems/range-exhausted"), Some("size"))
    );
    let p = app
        .refused(
            "olivia",
            "POST",
            &path,
            json!({"rsu_id": rsu["id"], "size": 0}),
            422,
        )
        .await;
    assert_eq!(p["field"], "size");
    let back = format!(
        "organizations/{}/allocations/{}/return",
        w.org,
        a["id"].as_str().unwrap()
    );
    let returned = app.ok("olivia", "POST", &back, Value::Null, 200).await;
    assert_eq!(returned["state"], "returned");
    assert_eq!(returned["tickets_available"], 100, "never sold: all unsold");
    app.refused("olivia", "POST", &back, Value::Null, 409).await;
}

#[tokio::test]
async fn perk_inventory_holds_under_concurrent_claims() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let r = raffle(&app, &w).await;
    furnish(&app, &w, &r).await;
    let perk = app
        .ok("admin", "POST", &format!("organizations/{}/perks", w.org), json!({"name": "VIP Parking", "type": "benefit", "requires_inventory": true, "inventory_total": 3}), 201)
        .await;
    let package: Uuid = app
        .ok(
            "admin",
            "GET",
            &format!("organizations/{}/raffles/{r}/packages", w.org),
            Value::Null,
            200,
        )
        .await[0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let raffle_id: Uuid = r.parse().unwrap();
    let client = app.env.client().await;
    let mut orders = Vec::new();
    for i in 0..10 {
        let id: Uuid = client
            .query_one(
                "INSERT INTO sales.orders (raffle_id, package_id, validation_number, ticket_count, total_amount_minor, currency,
                                           payment_status, idempotency_key, source)
                 VALUES ($1, $2, $3, 5, 2000, 'USD', 'completed', $3, 'online') RETURNING id",
                &[&raffle_id, &package, &format!("VAL-{i}")],
            )
            .await
            .unwrap()
            .get(0);
        orders.push(id);
    }
    let claims = format!(
        "organizations/{}/perks/{}/claims",
        w.org,
        perk["id"].as_str().unwrap()
    );
    let results = futures::future::join_all(
        orders
            .iter()
            .map(|o| app.call("admin", "POST", &claims, json!({"order_id": o}))),
    )
    .await;
    let won: Vec<&Response> = results.iter().filter(|r| r.status == 201).collect();
    let sold_out = results
        .iter()
        .filter(|r| r.status == 409 && r.json().unwrap()["type"] == "/problems/perk-sold-out")
        .count();
    assert_eq!((won.len(), sold_out), (3, 7));
    assert!(won.iter().all(|r| {
        r.json().unwrap()["claim_code"]
            .as_str()
            .unwrap()
            .starts_with("PERK-")
    }));
    let perks = app
        .ok(
            "admin",
            "GET",
            &format!("organizations/{}/perks", w.org),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(
        (
            perks[0]["inventory_claimed"].as_i64(),
            perks[0]["inventory_available"].as_i64()
        ),
        (Some(3), Some(0))
    );
    assert_eq!(app.count("SELECT count(*) FROM sales.perk_claims").await, 3);
}

#[tokio::test]
async fn bad_input_gets_a_problem_naming_the_field_and_writes_nothing() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let raffles = format!("organizations/{}/raffles", w.org);
    let before = app
        .count("SELECT count(*) FROM catalog.raffle_events")
        .await;
    let t = token("admin");
    // Malformed JSON, no body, oversized body.
    let r = app.raw("POST", &raffles, Some(&t), b"{\"name\": ").await;
    assert_eq!(
        (r.status, r.json().unwrap()["type"].as_str()),
        (400, Some("/problems/malformed-body"))
    );
    let r = app.raw("POST", &raffles, Some(&t), b"").await;
    assert_eq!(r.status, 400);
    let big = vec![b' '; BODY_LIMIT_BYTES + 1];
    let r = app.raw("POST", &raffles, Some(&t), &big).await;
    assert_eq!(r.status, 413);
    // Unknown, wrongly typed, out-of-range fields are named.
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|b| b["colour"] = json!("red")), "colour"),
        (
            Box::new(|b| b["max_tickets"] = json!("lots")),
            "max_tickets",
        ),
        (Box::new(|b| b["max_tickets"] = json!(0)), "max_tickets"),
        (Box::new(|b| b["currency"] = json!("usd")), "currency"),
        (
            Box::new(|b| b["jackpot_seed_minor"] = json!(-1)),
            "jackpot_seed_minor",
        ),
        (
            Box::new(|b| b["ranges"][1]["end"] = json!(10)),
            "ranges[1].end",
        ),
        (
            Box::new(|b| b["ranges"][0]["type"] = json!("kiosk")),
            "ranges[0].type",
        ),
        (
            Box::new(|b| b["sales_end_time"] = json!(Utc::now() - Span::days(9))),
            "sales_end_time",
        ),
        (
            Box::new(|b| b["sales_start_time"] = json!("yesterday")),
            "sales_start_time",
        ),
        (
            Box::new(|b| b["venue_id"] = json!(Uuid::new_v4())),
            "venue_id",
        ),
        (
            Box::new(|b| b["max_tickets"] = json!(300_000)),
            "max_tickets",
        ),
    ];
    for (mutate, field) in cases {
        let mut body = raffle_body(&w, 48);
        mutate(&mut body);
        let p = app.refused("admin", "POST", &raffles, body, 422).await;
        assert_eq!(p["field"], field, "{p}");
    }
    // Overlapping ranges: refused by the database, nothing of the raffle remains.
    let mut overlapping = raffle_body(&w, 48);
    overlapping["ranges"][1]["start"] = json!(40000);
    app.refused("admin", "POST", &raffles, overlapping, 409)
        .await;
    assert_eq!(
        app.count("SELECT count(*) FROM catalog.raffle_events")
            .await,
        before,
        "nothing partly written"
    );
    // A bad path id and an unknown endpoint.
    app.refused("admin", "GET", "organizations/not-a-uuid", Value::Null, 422)
        .await;
    app.refused("admin", "GET", "organisations", Value::Null, 404)
        .await;
}

#[tokio::test]
async fn critical_events_are_gapless_and_exportable_by_auditors_only() {
    let app = spawn_app().await;
    let w = world(&app).await;
    member(&app, &w, "audrey", "auditor").await;
    member(&app, &w, "olivia", "operator").await;
    raffle(&app, &w).await;
    app.call(
        "olivia",
        "PATCH",
        &format!("organizations/{}", w.org),
        json!({"name": "hijack"}),
    )
    .await;
    let page = app
        .ok(
            "audrey",
            "GET",
            &format!(
                "organizations/{}/critical-events?after_sequence=2&limit=2",
                w.org
            ),
            Value::Null,
            200,
        )
        .await;
    let seqs: Vec<i64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence_number"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4]);
    let export = app
        .ok(
            "audrey",
            "GET",
            &format!("organizations/{}/critical-events/export", w.org),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(export["sequence_gapless"], true);
    let events = export["events"].as_array().unwrap();
    assert_eq!(export["count"].as_u64(), Some(events.len() as u64));
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types[0], "ORGANIZATION_CREATED");
    assert!(
        types.contains(&"RAFFLE_CREATED") && types.contains(&"ACCESS_FORBIDDEN"),
        "{types:?}"
    );
    let created = events
        .iter()
        .find(|e| e["event_type"] == "RAFFLE_CREATED")
        .unwrap();
    assert_eq!(created["user_id"], "admin");
    assert!(
        created["metadata"]["after"]["id"].is_string(),
        "after image recorded"
    );
    let forbidden = events
        .iter()
        .find(|e| e["event_type"] == "ACCESS_FORBIDDEN")
        .unwrap();
    assert_eq!(forbidden["user_id"], "olivia");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        serde_json::to_vec(&export["events"]).unwrap(),
    ));
    assert_eq!(export["events_sha256"], digest);
    app.refused(
        "olivia",
        "GET",
        &format!("organizations/{}/critical-events/export", w.org),
        Value::Null,
        403,
    )
    .await;
}

#[tokio::test]
async fn system_configuration_is_versioned_and_kept_by_platform_admins() {
    let app = spawn_app().await;
    let _w = world(&app).await;
    let current = app
        .ok("admin", "GET", "system-configuration", Value::Null, 200)
        .await;
    assert_eq!(current["version"], "1.0.0");
    let mut settings = current["settings"].clone();
    settings["rsu"]["apiKeyRotationDays"] = json!(30);
    let body = json!({"version": "1.1.0", "effective_from": Utc::now(), "settings": settings});
    app.refused("admin", "POST", "system-configuration", body.clone(), 403)
        .await;
    let mut broken = body.clone();
    broken["settings"]["rsu"]["apiKeyRotationDays"] = json!(0);
    let p = app
        .refused("root", "POST", "system-configuration", broken, 422)
        .await;
    assert_eq!(p["field"], "settings.rsu.apiKeyRotationDays");
    app.ok("root", "POST", "system-configuration", body, 201)
        .await;
    let now = app
        .ok("admin", "GET", "system-configuration", Value::Null, 200)
        .await;
    assert_eq!(now["version"], "1.1.0");
    // The old version still answers for its own period.
    let past = app
        .ok(
            "admin",
            "GET",
            &format!(
                "system-configuration?at={}",
                (Utc::now() - Span::days(1))
                    .to_rfc3339()
                    .replace('+', "%2B")
            ),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(past["version"], "1.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciliation_report_is_served_to_the_organisations_finance_and_auditors() {
    let app = spawn_app().await;
    let s = scenario::seed::raffle_on_sale(
        &app.env.pool,
        &scenario::seed::Options {
            rsu_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let path = format!(
        "organizations/{}/raffles/{}/reports/reconciliation",
        s.organization_id, s.raffle_id
    );
    let admin_token = token("admin");
    let r = app.raw("GET", &path, Some(&admin_token), b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let report = r.json().unwrap();
    assert!(report["checks"].as_array().is_some_and(|c| !c.is_empty()));
    assert_eq!(report["raffle"]["id"], json!(s.raffle_id));
    for (format, content_type, starts) in [
        ("csv", "text/csv", ""),
        ("html", "text/html", "<!doctype html>"),
    ] {
        let r = app
            .raw(
                "GET",
                &format!("{path}?format={format}"),
                Some(&admin_token),
                b"",
            )
            .await;
        assert_eq!(r.status, 200);
        assert!(
            r.headers
                .get("content-type")
                .is_some_and(|v| v.starts_with(content_type)),
            "{:?}",
            r.headers
        );
        assert!(String::from_utf8_lossy(&r.body).starts_with(starts));
    }
    let r = app
        .raw(
            "GET",
            &format!("{path}?format=pdf"),
            Some(&admin_token),
            b"",
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(String::from_utf8_lossy(&r.body).contains("choose json, csv or html"));
    assert_eq!(app.raw("GET", &path, None, b"").await.status, 401);
    assert_eq!(
        app.raw("GET", &path, Some(&token("outsider")), b"")
            .await
            .status,
        403
    );
    let elsewhere = format!(
        "organizations/{}/raffles/{}/reports/reconciliation",
        s.organization_id,
        Uuid::new_v4()
    );
    assert_eq!(
        app.raw("GET", &elsewhere, Some(&admin_token), b"")
            .await
            .status,
        404
    );
}

/// An address belongs to the organisation that made it: another organisation cannot attach it
/// to its contact and then read it through its own address list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_address_cannot_be_attached_or_read() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let theirs = app
        .ok(
            "admin",
            "POST",
            &format!("organizations/{}/addresses", w.org),
            json!({"street": "1 Private Lane", "city": "Hometown", "country": "US"}),
            201,
        )
        .await;
    let mine = app
        .ok(
            "mallory",
            "POST",
            "organizations",
            json!({"name": "Mallory's Raffles", "primary_currency": "USD", "operating_fee": {"type": "percentage", "percent": "1"}}),
            201,
        )
        .await;
    let mine = mine["id"].as_str().unwrap();
    let p = app
        .refused(
            "mallory",
            "POST",
            &format!("organizations/{mine}/contacts"),
            json!({"name": "Eve", "address_id": theirs["id"]}),
            422,
        )
        .await;
    assert_eq!(p["field"], "address_id", "{p}");
    let listed = app
        .ok(
            "mallory",
            "GET",
            &format!("organizations/{mine}/addresses"),
            Value::Null,
            200,
        )
        .await;
    assert!(
        !listed.to_string().contains("Private Lane"),
        "another organisation's address is not listed: {listed}"
    );
    // The database holds it too, whatever the code path.
    let forced = app
        .env
        .client()
        .await
        .execute(
            &format!(
                "INSERT INTO catalog.contacts (organization_id, name, address_id) VALUES ('{mine}', 'Eve', '{}')",
                theirs["id"].as_str().unwrap()
            ),
            &[],
        )
        .await;
    assert_eq!(common::sqlstate(forced), "23503");
    // Its own organisation lists it, and may use it.
    let listed = app
        .ok(
            "admin",
            "GET",
            &format!("organizations/{}/addresses", w.org),
            Value::Null,
            200,
        )
        .await;
    assert!(listed.to_string().contains("Private Lane"), "{listed}");
    app.ok(
        "admin",
        "POST",
        &format!("organizations/{}/contacts", w.org),
        json!({"name": "Ada", "address_id": theirs["id"]}),
        201,
    )
    .await;
}

/// Money has bounds at the edge: a package priced i64::MAX passed the ticket-price limit
/// before (`price + count - 1` wrapped), and jackpots had no upper bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_beyond_the_configured_bound_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let r = raffle(&app, &w).await;
    let base = format!("organizations/{}/raffles/{r}", w.org);
    let p = app
        .refused(
            "admin",
            "POST",
            &format!("{base}/packages"),
            json!({"name": "Everything", "ticket_count": 2, "price_minor": i64::MAX, "currency": "USD"}),
            422,
        )
        .await;
    assert_eq!(p["field"], "price_minor", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("RAFFLE_AMOUNT_MINOR_MAX"),
        "{p}"
    );
    let p = app
        .refused(
            "admin",
            "POST",
            &format!("{base}/prizes"),
            json!({"name": "A planet", "type": "fixed", "value_minor": 9_000_000_000_000_000_000i64, "position": 3}),
            422,
        )
        .await;
    assert_eq!(p["field"], "value_minor", "{p}");
    app.ok(
        "admin",
        "POST",
        &format!("{base}/packages"),
        json!({"name": "Big but sane", "ticket_count": 1, "price_minor": 10_000_000, "currency": "USD"}),
        201,
    )
    .await;
}

/// Staff claim prizes over HTTP with the rules of the CLI: the check code is required, a
/// wrong one is named, the limits hold, and only admins and operators may claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_claim_a_prize_over_http_with_the_receipts_check_code() {
    let app = spawn_app().await;
    let f = scenario::fixture::sealed_raffle(
        &app.env.pool,
        &app.env.brokers,
        &app.env.topics,
        &scenario::fixture::FixtureOptions::default(),
    )
    .await
    .expect("a sealed raffle");
    let outcome = draw_engine::run(
        &app.env.pool,
        &draw_engine::DrawRequest {
            raffle_id: f.raffle_id,
            conducted_by: "draw-officer".into(),
            interrupt_after_prizes: None,
            seed_key: None,
        },
    )
    .await
    .expect("drawn");
    let winner = outcome.winners[0].draw_number;
    let validation: String = app
        .env
        .client()
        .await
        .query_one(
            "SELECT o.validation_number FROM sales.tickets t JOIN sales.orders o ON o.id = t.order_id
              WHERE t.raffle_id = $1 AND t.draw_number = $2",
            &[&f.raffle_id, &winner],
        )
        .await
        .unwrap()
        .get(0);
    let path = format!(
        "organizations/{}/raffles/{}/claims",
        f.organization_id, f.raffle_id
    );
    let body = |code: &str| json!({"draw_number": winner, "validation_number": validation, "check_code": code, "claimant": "Jo Winner"});
    let p = app
        .refused("admin", "POST", &path, body("ABCDE-12345"), 422)
        .await;
    assert_eq!(p["field"], "check_code", "{p}");
    let p = app
        .refused(
            "outsider",
            "POST",
            &path,
            body(scenario::fixture::CHECK_CODE),
            403,
        )
        .await;
    assert!(
        p["detail"].as_str().unwrap().contains("not a member"),
        "{p}"
    );
    let paid = app
        .ok(
            "admin",
            "POST",
            &path,
            body(scenario::fixture::CHECK_CODE),
            201,
        )
        .await;
    assert_eq!(paid["draw_number"], winner);
    let p = app
        .refused(
            "admin",
            "POST",
            &path,
            body(scenario::fixture::CHECK_CODE),
            409,
        )
        .await;
    assert!(
        p["type"].as_str().unwrap().contains("already-claimed"),
        "{p}"
    );
    let claimed_by: String = app
        .env
        .client()
        .await
        .query_one("SELECT claimed_by FROM draw.prize_claims", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(claimed_by, "Jo Winner (verified by admin)");
}

/// Finance sees the refunds a raffle owes, as JSON or CSV, and retries or cancels one; every
/// refusal is a problem that names what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_lists_retries_and_cancels_refunds_over_http() {
    let app = spawn_app().await;
    let s = scenario::seed::raffle_on_sale(
        &app.env.pool,
        &scenario::seed::Options {
            rsu_count: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let owed = refunds::NewObligation {
        raffle_id: s.raffle_id,
        order_id: None,
        source_key: "test:http".into(),
        reason_code: "raffle_sold_out",
        reason: "sold out before the payment came",
        provider: "stripe",
        payment_reference: "pi_http_1",
        amount: schemas::Money::of(2000, "USD").unwrap(),
    };
    refunds::obligations::owe(&app.env.client().await, &[owed])
        .await
        .unwrap();
    let base = format!(
        "organizations/{}/raffles/{}/refunds",
        s.organization_id, s.raffle_id
    );
    let admin = token("admin");
    let r = app.raw("GET", &base, Some(&admin), b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let list = r.json().unwrap();
    assert_eq!(list["refunds"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["refunds"][0]["state"], "owed");
    assert_eq!(list["refunds"][0]["amount_minor"], 2000);
    let id = list["refunds"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .raw(
            "GET",
            &format!("{base}?format=csv&state=owed"),
            Some(&admin),
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
    let csv = String::from_utf8_lossy(&r.body).into_owned();
    assert!(csv.starts_with("refund_id,"), "{csv}");
    assert!(csv.contains(",20.00,USD,"), "{csv}");
    let r = app
        .raw("GET", &format!("{base}?state=lost"), Some(&admin), b"")
        .await;
    assert_eq!(r.status, 422);
    assert!(String::from_utf8_lossy(&r.body).contains("is not a refund state"));

    let r = app
        .raw("POST", &format!("{base}/{id}/retry"), Some(&admin), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["state"], "owed");
    let r = app
        .raw("POST", &format!("{base}/{id}/cancel"), Some(&admin), b"{}")
        .await;
    assert_eq!(r.status, 400, "a cancellation needs its reason");
    assert!(
        String::from_utf8_lossy(&r.body).contains("reason"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = app
        .raw(
            "POST",
            &format!("{base}/{id}/cancel"),
            Some(&admin),
            br#"{"reason": " "}"#,
        )
        .await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let r = app
        .raw(
            "POST",
            &format!("{base}/{id}/cancel"),
            Some(&admin),
            br#"{"reason": "paid by cheque at the office"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["state"], "cancelled");
    let r = app
        .raw(
            "POST",
            &format!("{base}/{id}/cancel"),
            Some(&admin),
            br#"{"reason": "again"}"#,
        )
        .await;
    assert_eq!(r.status, 409);
    assert!(String::from_utf8_lossy(&r.body).contains("is cancelled"));
    assert_eq!(
        app.raw(
            "POST",
            &format!("{base}/{id}/refund-twice"),
            Some(&admin),
            b""
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.raw(
            "POST",
            &format!("{base}/{}/retry", Uuid::new_v4()),
            Some(&admin),
            b""
        )
        .await
        .status,
        404
    );
    assert_eq!(app.raw("GET", &base, None, b"").await.status, 401);
    assert_eq!(
        app.raw("GET", &base, Some(&token("outsider")), b"")
            .await
            .status,
        403
    );
}

/// Finance confirms a reconciliation over HTTP only once the books are sealed (the whole flow,
/// with refunds owed and paid, is in tests/refunds.rs); outsiders may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_is_not_confirmed_before_the_seal_or_by_outsiders() {
    let app = spawn_app().await;
    let admin = token("admin");
    let on_sale = scenario::seed::raffle_on_sale(
        &app.env.pool,
        &scenario::seed::Options {
            rsu_count: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let path = format!(
        "organizations/{}/raffles/{}/reports/reconciliation/confirm",
        on_sale.organization_id, on_sale.raffle_id
    );
    let r = app.raw("POST", &path, Some(&admin), b"").await;
    assert_eq!(r.status, 409);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        body.contains("it is active; the books are confirmed once they are sealed"),
        "{body}"
    );
    assert_eq!(
        app.raw("POST", &path, Some(&token("outsider")), b"")
            .await
            .status,
        403
    );
    assert_eq!(app.raw("POST", &path, None, b"").await.status, 401);
    let elsewhere = format!(
        "organizations/{}/raffles/{}/reports/reconciliation/confirm",
        on_sale.organization_id,
        Uuid::new_v4()
    );
    assert_eq!(
        app.raw("POST", &elsewhere, Some(&admin), b"").await.status,
        404
    );
}

/// Finance counts a device's cash, deposits it and imports the provider's payout over HTTP,
/// under the same rules as the CLI: a count by one person, for an unknown device or a deposit
/// beyond what was counted is refused with the reason; a payout file with an unknown column or
/// a JSON list naming no payout is refused whole; outsiders are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_counts_cash_deposits_it_and_imports_payouts_over_http() {
    let app = spawn_app().await;
    let s = scenario::seed::raffle_on_sale(
        &app.env.pool,
        &scenario::seed::Options {
            rsu_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let admin = token("admin");
    let base = format!(
        "organizations/{}/raffles/{}",
        s.organization_id, s.raffle_id
    );
    let rsu = s.rsus[0].id;
    let count = |counted_by: &str, rsu: Uuid| {
        json!({"rsu_id": rsu, "float_minor": 10_000, "counted_minor": 9_500,
               "counted_by": counted_by, "witnessed_by": "Sam (treasurer)"})
        .to_string()
    };
    let body = |r: &Response| String::from_utf8_lossy(&r.body).into_owned();

    let r = app
        .raw(
            "POST",
            &format!("{base}/cash/counts"),
            Some(&admin),
            count(" ", rsu).as_bytes(),
        )
        .await;
    assert_eq!(r.status, 409, "{}", body(&r));
    assert!(body(&r).contains("two people"), "{}", body(&r));
    let r = app
        .raw(
            "POST",
            &format!("{base}/cash/counts"),
            Some(&admin),
            count("Pat", Uuid::new_v4()).as_bytes(),
        )
        .await;
    assert_eq!(r.status, 409, "{}", body(&r));
    assert_eq!(
        app.raw(
            "POST",
            &format!("{base}/cash/counts"),
            Some(&token("outsider")),
            count("Pat", rsu).as_bytes()
        )
        .await
        .status,
        403
    );
    let r = app
        .raw(
            "POST",
            &format!("{base}/cash/counts"),
            Some(&admin),
            count("Pat", rsu).as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", body(&r));
    let counted = r.json().unwrap();
    assert_eq!(counted["over_short_minor"], -500, "{counted}");
    assert!(
        counted["rsu_name"].as_str().is_some_and(|n| !n.is_empty())
            && counted["deposit_due_by"].is_string(),
        "the device by name and the deposit's deadline: {counted}"
    );

    let r = app
        .raw(
            "POST",
            &format!("{base}/cash/deposits"),
            Some(&admin),
            br#"{"slip_number": "DEP-1", "deposited_on": "2026-12-02", "amount_minor": 100}"#,
        )
        .await;
    assert_eq!(
        r.status,
        409,
        "nothing was counted to deposit: {}",
        body(&r)
    );
    let r = app
        .raw(
            "POST",
            &format!("{base}/cash/deposits"),
            Some(&admin),
            br#"{"slip_number": "DEP-1", "deposited_on": "the second", "amount_minor": 100}"#,
        )
        .await;
    assert_eq!(r.status, 422, "{}", body(&r));
    assert!(
        body(&r).contains("\"field\":\"deposited_on\""),
        "{}",
        body(&r)
    );
    assert_eq!(
        app.raw("POST", &format!("{base}/cash/floats"), Some(&admin), b"{}")
            .await
            .status,
        404
    );

    let header = "automatic_payout_id,balance_transaction_id,currency,gross,fee,net,reporting_category,payment_intent_id";
    let r = app
        .raw(
            "POST",
            &format!("{base}/payouts"),
            Some(&admin),
            format!("{header},shoe_size\npo_1,txn_h1,usd,20.00,0.88,19.12,charge,pi_h1,9\n")
                .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 422, "{}", body(&r));
    assert!(
        body(&r).contains("unknown column \\\"shoe_size\\\""),
        "{}",
        body(&r)
    );
    let r = app
        .raw(
            "POST",
            &format!("{base}/payouts"),
            Some(&admin),
            br#"{"object": "list", "data": [{"id": "txn_h2", "amount": 2000, "fee": 88, "net": 1912, "currency": "usd", "type": "charge", "source": {"id": "ch_h2", "payment_intent": "pi_h2"}}]}"#,
        )
        .await;
    assert_eq!(r.status, 422, "{}", body(&r));
    assert!(body(&r).contains("?payout=po_"), "{}", body(&r));
    // A well-formed file of a payment that is not this raffle's: imported as unmatched, not booked.
    let r = app
        .raw(
            "POST",
            &format!("{base}/payouts"),
            Some(&admin),
            format!("{header}\npo_1,txn_h3,usd,20.00,0.88,19.12,charge,pi_foreign\n").as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", body(&r));
    let outcome = r.json().unwrap();
    assert_eq!(outcome["lines"], 1);
    assert_eq!(outcome["matched"].as_array().map(Vec::len), Some(0));
    assert!(
        outcome["unmatched_in_file"][0][2]
            .as_str()
            .is_some_and(|w| w.contains("pi_foreign is no payment of this raffle")),
        "{outcome}"
    );
    assert_eq!(
        app.raw(
            "POST",
            &format!("{base}/payouts?acount=acct_1"),
            Some(&admin),
            b""
        )
        .await
        .status,
        422
    );
}

/// Finance gives an online order back whole over HTTP: 201 with the refund owed; an order not
/// paid is refused with the reason (409), an unknown one is not found, a missing reason is a
/// bad request, an outsider is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_refunds_an_order_whole_over_http() {
    let app = spawn_app().await;
    let s = scenario::seed::raffle_on_sale(
        &app.env.pool,
        &scenario::seed::Options {
            rsu_count: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (paid, pending) = (Uuid::now_v7(), Uuid::now_v7());
    app.env
        .client()
        .await
        .execute(
            "INSERT INTO sales.orders (id, raffle_id, package_id, validation_number, ticket_count, total_amount_minor, currency, source,
                                       payment_status, payment_provider, payment_reference, paid_at)
             VALUES ($1, $3, $4, 'VAL-HTTP-1', 5, 2000, 'USD', 'online', 'completed', 'stripe', 'pi_http_refund', now()),
                    ($2, $3, $4, 'VAL-HTTP-2', 5, 2000, 'USD', 'online', 'pending', NULL, NULL, NULL)",
            &[&paid, &pending, &s.raffle_id, &s.package_id],
        )
        .await
        .unwrap();
    let admin = token("admin");
    let path = |order: Uuid| {
        format!(
            "organizations/{}/raffles/{}/orders/{order}/refund",
            s.organization_id, s.raffle_id
        )
    };
    let reason = br#"{"reason": "the buyer asked within the cooling-off period"}"#;
    let body = |r: &Response| String::from_utf8_lossy(&r.body).into_owned();
    let r = app.raw("POST", &path(pending), Some(&admin), reason).await;
    assert_eq!(r.status, 409, "{}", body(&r));
    assert!(
        body(&r).contains("only a paid order is refunded"),
        "{}",
        body(&r)
    );
    let r = app
        .raw("POST", &path(Uuid::now_v7()), Some(&admin), reason)
        .await;
    assert_eq!(r.status, 404, "{}", body(&r));
    let r = app.raw("POST", &path(paid), Some(&admin), b"{}").await;
    assert_eq!(r.status, 400, "{}", body(&r));
    assert_eq!(
        app.raw("POST", &path(paid), Some(&token("outsider")), reason)
            .await
            .status,
        403
    );
    let r = app.raw("POST", &path(paid), Some(&admin), reason).await;
    assert_eq!(r.status, 201, "{}", body(&r));
    let owed = r.json().unwrap();
    assert_eq!(
        (
            owed["reason_code"].as_str(),
            owed["amount_minor"].as_i64(),
            owed["state"].as_str()
        ),
        (Some("staff_refund"), Some(2000), Some("owed"))
    );
    let r = app.raw("POST", &path(paid), Some(&admin), reason).await;
    assert_eq!(r.status, 409, "{}", body(&r));
    assert!(body(&r).contains("already owed back"), "{}", body(&r));
}

/// Finance's HTTP actions run under the admin service's own role where each service logs in as
/// its own (V28): a cash count, a payout import and a staff refund append what they must and
/// nothing refuses them for want of a grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finances_actions_work_under_the_admin_services_own_role() {
    let env = TestEnv::new().await;
    let s = scenario::seed::raffle_on_sale(
        &env.pool,
        &scenario::seed::Options {
            rsu_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let order = Uuid::now_v7();
    env.client()
        .await
        .execute(
            "INSERT INTO sales.orders (id, raffle_id, package_id, validation_number, ticket_count, total_amount_minor, currency, source,
                                       payment_status, payment_provider, payment_reference, paid_at)
             VALUES ($1, $2, $3, 'VAL-ROLE-1', 5, 2000, 'USD', 'online', 'completed', 'stripe', 'pi_role_1', now())",
            &[&order, &s.raffle_id, &s.package_id],
        )
        .await
        .unwrap();
    let admin_pool = env.service_login("raffle_admin").await.db.pool(2).unwrap();
    let mut client = admin_pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    ledger::cash::count(
        &tx,
        &ledger::cash::NewCount {
            raffle_id: s.raffle_id,
            rsu_id: s.rsus[0].id,
            seller_id: None,
            float_minor: 10_000,
            counted_minor: 10_000,
            counted_by: "Pat",
            witnessed_by: "Sam",
            note: None,
        },
    )
    .await
    .expect("the admin role counts cash");
    let header = "automatic_payout_id,balance_transaction_id,currency,gross,fee,net,reporting_category,payment_intent_id";
    ledger::payouts::import(
        &tx,
        s.raffle_id,
        &format!("{header}\npo_role,txn_role_1,usd,20.00,0.88,19.12,charge,pi_role_1\n"),
        None,
        "finance",
    )
    .await
    .expect("the admin role imports a payout");
    refunds::orders::refund_order(
        &tx,
        s.raffle_id,
        order,
        "the buyer asked",
        &catalog::audit::Actor::cli("finance"),
    )
    .await
    .expect("the admin role refunds an order");
    tx.commit().await.unwrap();
    let written: (i64, i64) = {
        let row = env
            .client()
            .await
            .query_one(
                "SELECT (SELECT count(*) FROM ledger.cash_counts WHERE raffle_id = $1),
                        (SELECT count(*) FROM ledger.journal_entries WHERE raffle_id = $1 AND entry_type = 'ticket_reversal')",
                &[&s.raffle_id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(written, (1, 1), "the count and the refund's reversal");
}

/// Staff find a buyer's order by what the buyer can tell them, within their organisation only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_find_a_buyers_order_by_what_the_buyer_can_tell_them() {
    let app = spawn_app().await;
    let options = scenario::seed::Options {
        rsu_count: 0,
        ..Default::default()
    };
    let ours = scenario::seed::raffle_on_sale(&app.env.pool, &options)
        .await
        .unwrap();
    let theirs = scenario::seed::raffle_on_sale(&app.env.pool, &options)
        .await
        .unwrap();
    assert_ne!(ours.organization_id, theirs.organization_id);
    let (mine, elsewhere) = (Uuid::now_v7(), Uuid::now_v7());
    let client = app.env.client().await;
    for (order, s, validation, pi) in [
        (mine, &ours, "VAL-FIND-1", "pi_find_1"),
        (elsewhere, &theirs, "VAL-FIND-2", "pi_find_2"),
    ] {
        client
            .execute(
                "INSERT INTO sales.orders (id, raffle_id, package_id, validation_number, ticket_count, total_amount_minor, currency, source,
                                           payment_status, payment_provider, payment_reference, paid_at, customer_name, customer_email, customer_phone)
                 VALUES ($1, $2, $3, $4, 5, 2000, 'USD', 'online', 'completed', 'stripe', $5, now(), 'Jo Bloggs', 'Jo@Example.org', '+1 (701) 555-0100')",
                &[&order, &s.raffle_id, &s.package_id, &validation, &pi],
            )
            .await
            .unwrap();
    }
    let admin = token("admin");
    let base = format!("organizations/{}/orders", ours.organization_id);
    let found = |query: &'static str| {
        let (app, admin, base) = (&app, admin.clone(), base.clone());
        async move {
            let r = app
                .raw("GET", &format!("{base}?{query}"), Some(&admin), b"")
                .await;
            assert_eq!(
                r.status,
                200,
                "{query}: {}",
                String::from_utf8_lossy(&r.body)
            );
            r.json().unwrap()["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["order_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    for query in [
        "email=jo%40example.org",
        "name=blogg",
        "phone=701-555-0100",
        "validation_number=VAL-FIND-1",
        "payment_reference=pi_find_1",
    ] {
        assert_eq!(found(query).await, [mine.to_string()], "{query}");
    }
    // Another organisation's order is not found, even by its own references.
    assert!(found("payment_reference=pi_find_2").await.is_empty());
    assert!(found("validation_number=VAL-FIND-2").await.is_empty());
    assert!(
        found("draw_number=50001").await.is_empty(),
        "no tickets were issued"
    );
    for (query, status, says) in [
        ("", 422, "say how to find the order"),
        ("shoe_size=9", 422, "is not a way to find an order"),
        ("name=jo", 422, "at least three letters"),
        ("draw_number=ten", 422, "whole number"),
    ] {
        let r = app
            .raw("GET", &format!("{base}?{query}"), Some(&admin), b"")
            .await;
        assert_eq!(r.status, status, "{query}");
        assert!(
            String::from_utf8_lossy(&r.body).contains(says),
            "{query}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(
        app.raw(
            "GET",
            &format!("{base}?email=jo%40example.org"),
            Some(&token("outsider")),
            b""
        )
        .await
        .status,
        403
    );
}
