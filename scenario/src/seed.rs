//! A raffle on sale, set up through the API itself (same rules, same audit trail): what the
//! demo, the benchmarks and the end-to-end tests start from.

use chrono::{Duration, Utc};
use deadpool_postgres::Pool;
use serde_json::{Value, json};
use uuid::Uuid;
use warp::http::Method;

use admin::auth::{Actor, Verifier, grant_platform_admin, resolve_actor};
use admin::{AppState, call};
use platform::problem::Problem;

pub struct Options {
    pub rsu_count: usize,
    /// Numbers each RSU's block holds.
    pub allocation_size: i64,
    pub max_tickets: i64,
    pub sales_hours: i64,
    /// The online range is 50001 ..= `online_end`.
    pub online_end: i64,
    /// Winners of a fixed $500 early-bird prize (position 2); none when 0.
    pub early_bird_winners: i64,
    /// Also sell a time-windowed "Early-bird pack" (3 for $10) during the first two hours.
    pub windowed_package: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rsu_count: 3,
            allocation_size: 6000,
            max_tickets: 180_000,
            sales_hours: 6,
            online_end: 180_000,
            early_bird_winners: 0,
            windowed_package: false,
        }
    }
}

pub struct SeededRsu {
    pub id: Uuid,
    pub api_key: String,
    /// The allocation with its validation number block, as the API returns it.
    pub allocation: Value,
}

pub struct Scenario {
    pub organization_id: Uuid,
    pub raffle_id: Uuid,
    /// Five tickets for $20.
    pub package_id: Uuid,
    /// Three tickets for $10 while its window is open, when asked for.
    pub windowed_package_id: Option<Uuid>,
    pub rsus: Vec<SeededRsu>,
}

struct Caller<'a> {
    state: &'a AppState,
}

impl Caller<'_> {
    async fn call(
        &self,
        actor: &Actor,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Value, Problem> {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap_or_default()
        };
        call(
            self.state,
            actor,
            &method,
            path,
            &Default::default(),
            &bytes,
        )
        .await
        .map(|(_, v)| v)
    }
}

/// Calls the API as the user `sub` (the seed's `admin` runs the charity) through the same code
/// and audit trail as HTTP: what the demo uses to close sales and take devices' blocks back.
pub async fn call_as(
    pool: &Pool,
    sub: &str,
    method: Method,
    path: &str,
    body: Value,
) -> Result<Value, Problem> {
    let state = AppState {
        pool: pool.clone(),
        verifier: Verifier::hs256(b"the-seed-calls-the-api-without-http"),
    };
    let client = pool
        .get()
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    let actor = resolve_actor(&**client, sub, None, "cli").await?;
    drop(client);
    Caller { state: &state }
        .call(&actor, method, path, body)
        .await
}

fn id(v: &Value) -> Uuid {
    v["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// Ontario, a charity run by `admin`, a stadium, an active 50/50 selling 5-for-$20 with an online
/// range (50001..=`online_end`) and an RSU range (1..50000), and RSUs with keys and number blocks.
pub async fn raffle_on_sale(pool: &Pool, options: &Options) -> Result<Scenario, Problem> {
    let state = AppState {
        pool: pool.clone(),
        verifier: Verifier::hs256(b"the-seed-calls-the-api-without-http"),
    };
    let api = Caller { state: &state };
    let client = pool
        .get()
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    let root = grant_platform_admin(&**client, "root", Some("Platform operator"), "cli").await?;
    let admin = resolve_actor(&**client, "admin", Some("Charity admin"), "cli").await?;
    drop(client);
    let suffix = Uuid::new_v4().simple().to_string()[..6].to_uppercase();
    let j = api
        .call(
            &root,
            Method::POST,
            "jurisdictions",
            json!({"name": "Ontario", "code": format!("ON-CA-{suffix}"), "type": "province"}),
        )
        .await?;
    let org = api
        .call(
            &admin,
            Method::POST,
            "organizations",
            json!({"name": "Stadium Foundation", "primary_currency": "USD", "license_number": format!("LIC-{suffix}"),
                   "operating_fee": {"type": "percentage", "percent": "4.5"}}),
        )
        .await?;
    let org = id(&org);
    let venue = api
        .call(
            &admin,
            Method::POST,
            &format!("organizations/{org}/venues"),
            json!({"name": "Stadium", "jurisdiction_id": j["id"], "accepted_currencies": ["USD"], "timezone": "America/Toronto"}),
        )
        .await?;
    let now = Utc::now();
    let raffle = api
        .call(
            &admin,
            Method::POST,
            &format!("organizations/{org}/raffles"),
            json!({"name": "Record 50/50", "venue_id": venue["id"], "event_identifier": format!("RAFFLE-{suffix}"),
                   "sales_start_time": now - Duration::hours(1), "sales_end_time": now + Duration::hours(options.sales_hours),
                   "draw_time": now + Duration::hours(options.sales_hours + 1), "currency": "USD",
                   "jackpot_seed_minor": 100_000, "max_tickets": options.max_tickets,
                   "ranges": [{"type": "rsu", "start": 1, "end": 50000, "default_allocation_size": options.allocation_size},
                              {"type": "online", "start": 50001, "end": options.online_end}]}),
        )
        .await?;
    let raffle = id(&raffle);
    let base = format!("organizations/{org}/raffles/{raffle}");
    let package = api
        .call(
            &admin,
            Method::POST,
            &format!("{base}/packages"),
            json!({"name": "Value Pack", "ticket_count": 5, "price_minor": 2000, "currency": "USD", "display_order": 1}),
        )
        .await?;
    api.call(
        &admin,
        Method::POST,
        &format!("{base}/prizes"),
        json!({"name": "50/50 jackpot", "type": "percentage", "percentage": 50, "position": 1}),
    )
    .await?;
    let windowed_package = if options.windowed_package {
        let p = api
            .call(
                &admin,
                Method::POST,
                &format!("{base}/packages"),
                json!({"name": "Early-bird pack", "ticket_count": 3, "price_minor": 1000, "currency": "USD", "display_order": 2,
                       "active_from": now - Duration::hours(1), "active_to": now + Duration::hours(1)}),
            )
            .await?;
        Some(id(&p))
    } else {
        None
    };
    if options.early_bird_winners > 0 {
        api.call(
            &admin,
            Method::POST,
            &format!("{base}/prizes"),
            json!({"name": "Early-bird draw", "type": "fixed", "value_minor": 50_000,
                   "position": 2, "winner_count": options.early_bird_winners}),
        )
        .await?;
    }
    api.call(
        &admin,
        Method::POST,
        &format!("{base}/transitions"),
        json!({"to": "active", "reason": "doors open"}),
    )
    .await?;
    let mut rsus = Vec::with_capacity(options.rsu_count);
    for i in 0..options.rsu_count {
        let rsu = api
            .call(
                &admin,
                Method::POST,
                &format!("organizations/{org}/rsus"),
                json!({"name": format!("RSU-{:03}", i + 1), "device_identifier": format!("MAC:00:1B:44:11:3A:{:02X}", i)}),
            )
            .await?;
        let rsu_id = id(&rsu);
        let key = api
            .call(
                &admin,
                Method::POST,
                &format!("organizations/{org}/rsus/{rsu_id}/api-keys"),
                Value::Null,
            )
            .await?;
        let allocation = api
            .call(
                &admin,
                Method::POST,
                &format!("{base}/allocations"),
                json!({"rsu_id": rsu_id}),
            )
            .await?;
        rsus.push(SeededRsu {
            id: rsu_id,
            api_key: key["api_key"].as_str().unwrap_or_default().to_owned(),
            allocation,
        });
    }
    Ok(Scenario {
        organization_id: org,
        raffle_id: raffle,
        package_id: id(&package),
        windowed_package_id: windowed_package,
        rsus,
    })
}
