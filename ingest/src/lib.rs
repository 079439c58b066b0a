//! ingest: the HTTP edge where sales enter the system.
//!
//! Owns: checkout (pending orders, checked against the raffle's state, sales window, the
//! package's active window, the jurisdiction's rules, a per-order ticket limit and the
//! remaining capacity), payment-provider webhooks (signature, then the sale onto Kafka), and
//! RSU batch uploads (API key, a result per record), and the buyer's read-only look-up of
//! their order by its id and the receipt's check code (`buyers`), and the raffle's public JSON
//! with the seal's and the draw's evidence (composed by `displays::public`). Creates pending orders and their
//! capacity holds at checkout through `sales` (the allocator, which decides the orders, gives
//! the holds back), records refused records through `catalog::rejections`, and writes
//! `sales.provider_events` (what the provider said that moves no tickets),
//! `sales.rsu_receipts` and the topic
//! `raffle.sales.v1` — answering 2xx only after the broker acknowledged the event (acks=all,
//! idempotent producer), 503 when it cannot, so the provider or the device retries.
//!
//! Regulations, RSU keys and number blocks are `catalog`'s; HTTP plumbing (problems, bodies,
//! the server) is `platform`'s. Must not touch: draw numbers, tickets or counters (the
//! allocator's), the ledger, the draw; and it stands on no other edge (never on `admin`).

pub mod buyers;
pub mod checkout;
pub mod lookup;
pub mod rsu;
pub mod signature;
pub mod stripe;
mod webhooks;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use platform::health::{Health, HealthConfig};
use platform::problem::Problem;
use platform::problem::problem_response;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tracing::Instrument;
use warp::Filter;
use warp::http::{Method, StatusCode};

/// What the ingest service needs (README "Configuration").
pub struct IngestConfig {
    /// `INGEST_WEBHOOK_SECRET`: the provider's signing secret.
    pub webhook_secret: Vec<u8>,
    /// Signatures older or newer than this are refused (replay protection).
    pub webhook_tolerance_s: i64,
    /// `INGEST_ORDER_TICKETS_MAX`: tickets one order may hold.
    pub order_tickets_max: i32,
    pub sales_topic: String,
    /// The broker, for the readiness check.
    pub brokers: String,
    /// `INGEST_HOLD_MINUTES`: how long checkout holds an order's tickets for its payment.
    pub hold_minutes: i32,
}

/// Tickets are held this long for a payment unless `INGEST_HOLD_MINUTES` says otherwise: a
/// Stripe Checkout Session lives at least 30 minutes.
pub const HOLD_MINUTES_DEFAULT: i32 = 30;

impl IngestConfig {
    pub fn from_env(sales_topic: &str, brokers: &str) -> Result<Self, String> {
        let secret = std::env::var("INGEST_WEBHOOK_SECRET")
            .ok()
            .filter(|s| s.len() >= 16)
            .ok_or("INGEST_WEBHOOK_SECRET must be set to the payment provider's signing secret (16 bytes or more)")?;
        let order_tickets_max = match std::env::var("INGEST_ORDER_TICKETS_MAX") {
            Ok(v) => v
                .parse()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or(format!(
                    "INGEST_ORDER_TICKETS_MAX={v:?} must be a whole number 1-100000"
                ))?,
            Err(_) => 500,
        };
        let hold_minutes = match std::env::var("INGEST_HOLD_MINUTES") {
            Ok(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=24 * 60).contains(n))
                .ok_or(format!(
                    "INGEST_HOLD_MINUTES={v:?} must be a whole number of minutes, 1-1440"
                ))?,
            Err(_) => HOLD_MINUTES_DEFAULT,
        };
        Ok(Self {
            webhook_secret: secret.into_bytes(),
            webhook_tolerance_s: 300,
            order_tickets_max,
            sales_topic: sales_topic.to_owned(),
            brokers: brokers.to_owned(),
            hold_minutes,
        })
    }
}

pub struct IngestState {
    pub pool: Pool,
    pub producer: FutureProducer,
    pub config: IngestConfig,
    /// Payment webhooks' order look-ups, batched across concurrent webhooks.
    pub orders: lookup::OrderLookup,
    /// Checkouts, decided in batches that take their capacity holds together.
    pub checkouts: checkout::Checkouts,
    /// `/health`: Postgres and the broker, checked every second.
    pub health: Arc<Health>,
    /// Buyers' order look-ups per address.
    pub buyer_lookups: buyers::LookupLimiter,
    /// How copies of an order's numbers are composed, and the key of the order links in
    /// e-mails ([`IngestState::with_mail`]; none by default).
    pub mail: notifier::MailSettings,
}

/// Body limits: a webhook or checkout is small; an RSU batch holds up to `rsu::BATCH_RECORDS_MAX`.
const SMALL_BODY_BYTES: usize = 64 * 1024;
const BATCH_BODY_BYTES: usize = 1024 * 1024;

type Reply = (StatusCode, Value);

impl IngestState {
    /// The state of one ingest server on `db`; starts its order look-up on the current runtime.
    pub fn new(
        db: &platform::db::DbTarget,
        pool: Pool,
        producer: FutureProducer,
        config: IngestConfig,
    ) -> Result<Self, platform::db::DbError> {
        let health = Health::start(HealthConfig {
            produces: vec![config.sales_topic.clone()],
            brokers: Some(config.brokers.clone()),
            ..HealthConfig::database_only("ingest", pool.clone())
        });
        Ok(Self {
            orders: lookup::OrderLookup::start(db)?,
            checkouts: checkout::Checkouts::start(db, &config)?,
            health,
            buyer_lookups: buyers::LookupLimiter::default(),
            mail: notifier::MailSettings::default(),
            pool,
            producer,
            config,
        })
    }

    /// With these mail settings: the copies a buyer asks for are composed with them, and the
    /// order links signed with their key are opened.
    pub fn with_mail(mut self, mail: notifier::MailSettings) -> Self {
        self.mail = mail;
        self
    }

    /// Produces `event` to the sales topic keyed by its range partition; returns once the
    /// broker acknowledged it, or 503 naming why not — at the latest after [`ACK_WAIT`]. A
    /// sale not acknowledged by then stays queued for delivery (up to [`DELIVERY_TIMEOUT_MS`]):
    /// if it lands after all, the provider's retry is a duplicate the allocator ignores.
    pub async fn publish(&self, event: &schemas::SaleEvent) -> Result<(), Problem> {
        let payload =
            schemas::encode(event).map_err(|e| Problem::internal("encoding the sale", &e))?;
        let key = event.range_partition.to_string();
        let record = FutureRecord::to(&self.config.sales_topic)
            .key(&key)
            .payload(&payload);
        let unavailable = |why: String| {
            tracing::warn!(raffle = %event.raffle_id, order = ?event.order_id, reason = %why, "broker did not acknowledge a sale");
            Problem::unavailable(format!(
                "the sale could not be recorded durably ({why}); retry"
            ))
        };
        match tokio::time::timeout(ACK_WAIT, self.producer.send(record, ACK_WAIT)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(unavailable(e.to_string())),
            Err(_) => Err(unavailable(format!(
                "no acknowledgement within {} s",
                ACK_WAIT.as_secs()
            ))),
        }
    }
}

/// How long a request waits for the broker's acknowledgement of its sale before it answers
/// 503 (the provider or the device retries).
pub const ACK_WAIT: Duration = Duration::from_secs(5);

/// How long the producer keeps a sale queued for delivery. Longer than any broker outage
/// ingest should ride out: a sale that times out makes librdkafka bump the idempotent
/// producer's epoch, and the development broker (Tansu 0.6.0, sqlite) panicked on the bumped
/// epoch after a 10 s outage and then refused every request (docs/RESILIENCE.md).
pub const DELIVERY_TIMEOUT_MS: u64 = 300_000;

async fn route(
    state: Arc<IngestState>,
    method: Method,
    path: warp::path::Tail,
    query: HashMap<String, String>,
    headers: warp::http::HeaderMap,
    client: Option<std::net::SocketAddr>,
    body: impl futures::Stream<Item = Result<impl bytes::Buf, warp::Error>> + Unpin,
) -> Result<warp::reply::Response, Infallible> {
    let path = path.as_str().to_owned();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let limit = if path == "rsu/sales" {
        BATCH_BODY_BYTES
    } else {
        SMALL_BODY_BYTES
    };
    let span = tracing::info_span!("ingest", %method, path);
    let result = async {
        let body = platform::body::read_body(body, limit).await?;
        match (method.as_str(), path.as_str()) {
            ("POST", "checkout") => checkout::create(&state, &body).await,
            ("POST", "orders/lookup") => {
                buyers::look_up(&state, client.map(|a| a.ip()), &body).await
            }
            ("POST", "orders/resend") => {
                buyers::resend(&state, client.map(|a| a.ip()), &body).await
            }
            ("GET", p) if p.starts_with("orders/") && !p["orders/".len()..].contains('/') => {
                buyers::by_link(
                    &state,
                    client.map(|a| a.ip()),
                    &p["orders/".len()..],
                    &query,
                )
                .await
            }
            ("POST", "webhooks/payments") => {
                webhooks::receive(&state, header("stripe-signature").as_deref(), &body).await
            }
            ("POST", "rsu/sales") => {
                rsu::upload(&state, header("authorization").as_deref(), &body).await
            }
            ("GET", "rsu/sales") => {
                rsu::status(&state, header("authorization").as_deref(), &query).await
            }
            ("GET", "rsu/setup") => {
                rsu::setup(&state, header("authorization").as_deref(), &query).await
            }
            ("POST", "rsu/allocations") => {
                rsu::allocate(&state, header("authorization").as_deref(), &body).await
            }
            ("GET", p) if p.starts_with("raffles/") && p.ends_with("/rules") => {
                let client = platform::problem::pooled(&state.pool).await?;
                let raffle = p.trim_start_matches("raffles/").trim_end_matches("/rules");
                Ok((
                    StatusCode::OK,
                    displays::public::rules(&**client, raffle).await?,
                ))
            }
            ("GET", p) if p.starts_with("raffles/") && !p["raffles/".len()..].contains('/') => {
                let client = platform::problem::pooled(&state.pool).await?;
                let raffle = displays::public::raffle(&**client, &p["raffles/".len()..]).await?;
                Ok((StatusCode::OK, raffle))
            }
            ("POST", p) if p.starts_with("rsu/allocations/") && p.ends_with("/return") => {
                let id = p
                    .trim_start_matches("rsu/allocations/")
                    .trim_end_matches("/return");
                rsu::return_block(&state, header("authorization").as_deref(), id).await
            }
            _ => Err(Problem::no_route(method.as_str(), &path)),
        }
    }
    .instrument(span)
    .await;
    Ok(match result {
        Ok((status, body)) => {
            use warp::Reply;
            warp::reply::with_status(warp::reply::json(&body), status).into_response()
        }
        Err(problem) => {
            tracing::info!(
                status = problem.status,
                kind = problem.kind,
                detail = problem.detail,
                "request refused"
            );
            problem_response(&problem)
        }
    })
}

/// The warp filter of the ingest API.
pub fn routes(
    state: Arc<IngestState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let health = state.health.clone();
    let with_state = warp::any().map(move || state.clone());
    let api = warp::path("v1")
        .and(with_state)
        .and(warp::method())
        .and(warp::path::tail())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::headers_cloned())
        .and(platform::http_server::client_addr())
        .and(warp::body::stream())
        .and_then(
            |state, method, tail, query, headers, client, body| async move {
                route(state, method, tail, query, headers, client, Box::pin(body)).await
            },
        );
    platform::health::routes(health)
        .or(api)
        .unify()
        .recover(|r: warp::Rejection| async move {
            let problem = if r.is_not_found() {
                Problem::not_found("no such endpoint; the API lives under /v1")
            } else {
                Problem::malformed(format!("{r:?}"))
            };
            Ok::<_, Infallible>(problem_response(&problem))
        })
        .unify()
}

pub async fn serve(
    state: Arc<IngestState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    serve_tls(state, listener, shutdown, None).await
}

/// [`serve`], over TLS when `tls` is given (`RAFFLE_INGEST_TLS_CERT` / `_KEY`).
pub async fn serve_tls(
    state: Arc<IngestState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    platform::http_server::serve_tls(
        routes(state),
        listener,
        shutdown,
        platform::http_server::Limits::default(),
        tls,
    )
    .await;
}

/// What a buyer gave about themselves, checked as the edge must: each field optional (empty
/// counts as absent), one line of text without control characters, bounded; the e-mail shaped
/// like one. A refusal names the field under `prefix` (`customer.name`,
/// `records[3].customerInfo.name`).
pub(crate) fn customer(
    prefix: &str,
    name: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<schemas::Customer, (String, String)> {
    let field = |name: &str, value: Option<&str>, max: usize| {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        schemas::text::line(value, max)
            .map(|()| Some(value.to_owned()))
            .map_err(|e| (format!("{prefix}.{name}"), e.to_string()))
    };
    let customer = schemas::Customer {
        name: field("name", name, 200)?,
        email: field("email", email, 254)?,
        phone: field("phone", phone, 40)?,
    };
    if customer.email.as_deref().is_some_and(|e| !e.contains('@')) {
        return Err((format!("{prefix}.email"), "is not an email address".into()));
    }
    Ok(customer)
}

/// A payment provider's id of an event, a payment or a charge (`evt_…`, `pi_…`): 1-255
/// printable ASCII characters, nothing that could forge a log line or fail to store.
pub(crate) fn provider_id(field: &str, value: &str) -> Result<(), Problem> {
    let ok = !value.is_empty() && value.len() <= 255 && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Problem::invalid(
            field,
            "must be 1-255 printable ASCII characters, as the provider's ids are",
        ))
    }
}

/// Records a sale refused at the edge, so it is visible with its reason.
pub(crate) async fn record_rejection(
    client: &impl tokio_postgres::GenericClient,
    raffle_id: Option<uuid::Uuid>,
    order_id: Option<uuid::Uuid>,
    rsu: Option<(uuid::Uuid, &str)>,
    idempotency_key: Option<&str>,
    code: &str,
    reason: &str,
) {
    let rejection = catalog::rejections::Rejection {
        raffle_id,
        order_id,
        rsu,
        idempotency_key,
        code,
        reason,
        rejected_by: "ingest",
        ..Default::default()
    };
    let result = catalog::rejections::record(client, &rejection).await;
    if let Err(e) = result {
        tracing::error!(error = %e, code, reason, "could not record a rejected sale");
    }
}
