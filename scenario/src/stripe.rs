//! A stand-in for the payment provider's Refunds API, for the tests, the demo and the
//! benchmarks (Stripe cannot be reached from these machines). It implements what the refunds
//! worker relies on, as Stripe documents it:
//!
//! - `POST /v1/refunds` (form encoded: `payment_intent`, `amount`, `reason`, `metadata[…]`),
//!   `Authorization: Bearer <secret key>` required (401 otherwise);
//! - `Idempotency-Key`: the first answer is replayed for the same key; the same key with other
//!   parameters is a 400 `idempotency_error`;
//! - a rate limit (default 25 requests a second): beyond it, 429 `rate_limit`;
//! - a PaymentIntent it was not told of is a 404 `resource_missing`; refunds beyond what was
//!   charged are a 400 `charge_already_refunded` (nothing left) or `amount_too_large`;
//! - a refund is created `pending`, and after `settle_after` becomes `succeeded` (or `failed`
//!   with `failure_reason`, for the payments told to fail), announced by a signed
//!   `refund.updated` webhook to ingest when a webhook target is set, followed (when it
//!   succeeded) by `charge.refunded` with the charge's `amount_refunded` so far;
//! - `GET /v1/refunds?payment_intent=…&limit=…&starting_after=…`, newest first.
//!
//! It also counts what it saw, so a test can say "no refund was paid twice".

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::{Filter, Reply};

/// Where the stand-in announces settled refunds.
#[derive(Clone)]
pub struct WebhookTarget {
    pub ingest: SocketAddr,
    pub secret: Vec<u8>,
}

#[derive(Clone)]
pub struct StandInConfig {
    pub secret_key: String,
    pub rate_per_second: usize,
    pub settle_after: Duration,
    /// How long a created refund's answer takes to come back (the refund exists meanwhile):
    /// a worker killed in that window has been paid without knowing it.
    pub answer_delay: Duration,
    /// Refunds are made `succeeded` at once (as card refunds often are), not `pending`.
    pub settle_immediately: bool,
    pub webhooks: Option<WebhookTarget>,
}

impl Default for StandInConfig {
    fn default() -> Self {
        Self {
            secret_key: "sk_test_stand_in".into(),
            rate_per_second: 25,
            settle_after: Duration::from_millis(200),
            answer_delay: Duration::ZERO,
            settle_immediately: false,
            webhooks: None,
        }
    }
}

/// What the stand-in saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: usize,
    pub rate_limited: usize,
    pub refunds_created: usize,
    pub replays: usize,
    pub refused: usize,
}

struct Refund {
    object: Value,
    payment_intent: String,
}

#[derive(Default)]
struct Books {
    charged: HashMap<String, (i64, String)>,
    failing: HashSet<String>,
    refunds: Vec<Refund>,
    keys: HashMap<String, (String, u16, Value)>,
    window: VecDeque<Instant>,
    counts: Counts,
    /// Disputes the buyers' banks won: (PaymentIntent, amount).
    disputes: Vec<(String, i64)>,
}

/// A running stand-in.
#[derive(Clone)]
pub struct StripeStandIn {
    pub addr: SocketAddr,
    pub config: StandInConfig,
    books: Arc<Mutex<Books>>,
}

fn error(status: StatusCode, kind: &str, code: &str, message: String) -> (StatusCode, Value) {
    (
        status,
        json!({"error": {"type": kind, "code": code, "message": message}}),
    )
}

impl StripeStandIn {
    /// Starts it on a free local port.
    pub async fn start(config: StandInConfig) -> Result<Self, String> {
        let books = Arc::new(Mutex::new(Books::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the provider stand-in: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("the provider stand-in's address: {e}"))?;
        let stand_in = Self {
            addr,
            config,
            books,
        };
        let routes = routes(stand_in.clone());
        tokio::spawn(platform::http_server::serve(
            routes,
            listener,
            std::future::pending(),
            platform::http_server::Limits::default(),
        ));
        Ok(stand_in)
    }

    /// `http://127.0.0.1:PORT`, for `RAFFLE_STRIPE_API_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The provider captured `amount_minor` (USD) by `payment_intent`.
    pub fn charge(&self, payment_intent: &str, amount_minor: i64) {
        self.lock()
            .charged
            .insert(payment_intent.to_owned(), (amount_minor, "usd".into()));
    }

    /// A refund made outside the platform (in the provider's dashboard), already paid.
    pub fn refunded_outside(&self, payment_intent: &str, amount_minor: i64) {
        let mut books = self.lock();
        let id = format!("re_outside_{}", uuid::Uuid::new_v4().simple());
        books.refunds.push(Refund {
            object: json!({"id": id, "object": "refund", "amount": amount_minor, "currency": "usd",
                           "payment_intent": payment_intent, "status": "succeeded", "metadata": {}}),
            payment_intent: payment_intent.to_owned(),
        });
    }

    /// A dispute lost: the bank took `amount_minor` back, and the provider charges its fee.
    pub fn disputed(&self, payment_intent: &str, amount_minor: i64) {
        self.lock()
            .disputes
            .push((payment_intent.to_owned(), amount_minor));
    }

    /// Refunds of `payment_intent` fail (the card was closed, say).
    pub fn fail_refunds_of(&self, payment_intent: &str) {
        self.lock().failing.insert(payment_intent.to_owned());
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    /// Amount refunded (not failed) per PaymentIntent.
    pub fn refunded(&self) -> HashMap<String, i64> {
        let books = self.lock();
        let mut out: HashMap<String, i64> = HashMap::new();
        for r in &books.refunds {
            if r.object["status"] != "failed" {
                *out.entry(r.payment_intent.clone()).or_default() +=
                    r.object["amount"].as_i64().unwrap_or(0);
            }
        }
        out
    }

    /// How many refunds were made per PaymentIntent (failed ones too).
    pub fn refunds_per_payment(&self) -> HashMap<String, usize> {
        let books = self.lock();
        let mut out: HashMap<String, usize> = HashMap::new();
        for r in &books.refunds {
            *out.entry(r.payment_intent.clone()).or_default() += 1;
        }
        out
    }

    /// The itemized payout reconciliation report (Stripe's `payout_reconciliation.itemized`
    /// columns) of one automatic payout holding every charge it knows and every refund it made
    /// that did not fail, fees at 2.9% + 30¢ a charge. Amounts in major units, as the provider
    /// writes them.
    pub fn payout_report(&self, payout_id: &str) -> String {
        let books = self.lock();
        let units = |minor: i64| {
            let sign = if minor < 0 { "-" } else { "" };
            format!("{sign}{}.{:02}", minor.abs() / 100, minor.abs() % 100)
        };
        let mut out = String::from(
            "automatic_payout_id,automatic_payout_effective_at,balance_transaction_id,created,available_on,currency,gross,fee,net,reporting_category,source_id,description,payment_intent_id\n",
        );
        let effective = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S");
        let mut charges: Vec<(&String, &(i64, String))> = books.charged.iter().collect();
        charges.sort();
        // Balance transaction ids are the provider's, unique across its account: one per
        // charge, refund and dispute, the same in every report.
        for (pi, (amount, currency)) in charges {
            let fee = (amount * 29 + 500) / 1000 + 30;
            out.push_str(&format!(
                "{payout_id},{effective},txn_{pi},{effective},{effective},{currency},{},{},{},charge,ch_{pi},Raffle tickets,{pi}\n",
                units(*amount),
                units(fee),
                units(amount - fee)
            ));
        }
        for r in &books.refunds {
            if r.object["status"] == "failed" {
                continue;
            }
            let amount = r.object["amount"].as_i64().unwrap_or(0);
            out.push_str(&format!(
                "{payout_id},{effective},txn_{},{effective},{effective},{},{},0.00,{},refund,{},REFUND FOR CHARGE,{}\n",
                r.object["id"].as_str().unwrap_or_default(),
                r.object["currency"].as_str().unwrap_or("usd"),
                units(-amount),
                units(-amount),
                r.object["id"].as_str().unwrap_or_default(),
                r.payment_intent
            ));
        }
        for (pi, amount) in &books.disputes {
            // Stripe's dispute fee, $15.00, withdrawn with the disputed amount.
            out.push_str(&format!(
                "{payout_id},{effective},txn_dp_{pi},{effective},{effective},usd,{},15.00,{},dispute,dp_{pi},Chargeback withdrawal,{pi}\n",
                units(-amount),
                units(-amount - 1500)
            ));
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the request; the answer when it is over the limit or unauthenticated.
    fn admit(&self, books: &mut Books, auth: Option<&str>) -> Option<(StatusCode, Value)> {
        books.counts.requests += 1;
        let now = Instant::now();
        while books
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            books.window.pop_front();
        }
        if books.window.len() >= self.config.rate_per_second {
            books.counts.rate_limited += 1;
            return Some(error(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_request_error",
                "rate_limit",
                "Too many requests hit the API too quickly.".into(),
            ));
        }
        books.window.push_back(now);
        if auth != Some(format!("Bearer {}", self.config.secret_key).as_str()) {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "api_key_invalid",
                "Invalid API Key provided.".into(),
            ));
        }
        None
    }

    fn create(
        &self,
        auth: Option<String>,
        key: Option<String>,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut books = self.lock();
        if let Some(answer) = self.admit(&mut books, auth.as_deref()) {
            return answer;
        }
        let text = String::from_utf8_lossy(body).into_owned();
        let form: HashMap<String, String> =
            refunds::provider::form_decode(&text).into_iter().collect();
        let mut fingerprint: Vec<_> = form.iter().collect();
        fingerprint.sort();
        let fingerprint = format!("{fingerprint:?}");
        if let Some(key) = &key
            && let Some((seen, status, value)) = books.keys.get(key)
        {
            if *seen != fingerprint {
                books.counts.refused += 1;
                return error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    "idempotency_key_in_use",
                    format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with ({key})."
                    ),
                );
            }
            let answer = (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
                value.clone(),
            );
            books.counts.replays += 1;
            return answer;
        }
        let answer = self.make_refund(&mut books, &form);
        if answer.0 != StatusCode::OK {
            books.counts.refused += 1;
        }
        if let Some(key) = key {
            books
                .keys
                .insert(key, (fingerprint, answer.0.as_u16(), answer.1.clone()));
        }
        answer
    }

    fn make_refund(
        &self,
        books: &mut Books,
        form: &HashMap<String, String>,
    ) -> (StatusCode, Value) {
        let Some(pi) = form.get("payment_intent") else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_missing",
                "Must provide payment_intent or charge.".into(),
            );
        };
        let Some((charged, currency)) = books.charged.get(pi).cloned() else {
            return error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                format!("No such payment_intent: '{pi}'"),
            );
        };
        let already: i64 = books
            .refunds
            .iter()
            .filter(|r| &r.payment_intent == pi && r.object["status"] != "failed")
            .map(|r| r.object["amount"].as_i64().unwrap_or(0))
            .sum();
        let left = charged - already;
        let amount = match form.get("amount").map(|a| a.parse::<i64>()) {
            None => left,
            Some(Ok(a)) if a > 0 => a,
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "parameter_invalid_integer",
                    "Invalid positive integer: amount".into(),
                );
            }
        };
        if left <= 0 {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "charge_already_refunded",
                format!("Charge for {pi} has already been refunded."),
            );
        }
        if amount > left {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "amount_too_large",
                format!(
                    "Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
                ),
            );
        }
        let metadata: serde_json::Map<String, Value> = form
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("metadata[")
                    .and_then(|k| k.strip_suffix(']'))
                    .map(|k| (k.to_owned(), Value::String(v.clone())))
            })
            .collect();
        let id = format!("re_{}", uuid::Uuid::new_v4().simple());
        let object = json!({
            "id": id, "object": "refund", "amount": amount, "currency": currency,
            "payment_intent": pi,
            "status": if self.config.settle_immediately { "succeeded" } else { "pending" },
            "reason": form.get("reason"),
            "metadata": metadata, "created": chrono::Utc::now().timestamp(), "failure_reason": null,
        });
        books.refunds.push(Refund {
            object: object.clone(),
            payment_intent: pi.clone(),
        });
        books.counts.refunds_created += 1;
        let fails = books.failing.contains(pi);
        if self.config.settle_immediately && !fails {
            if self.config.webhooks.is_some() {
                let (me, pi) = (self.clone(), pi.clone());
                tokio::spawn(async move { me.announce_charge_refunded(&pi).await });
            }
            return (StatusCode::OK, object);
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.config.settle_after).await;
            me.settle(&id, fails).await;
        });
        (StatusCode::OK, object)
    }

    async fn settle(&self, id: &str, fails: bool) {
        let object = {
            let mut books = self.lock();
            let Some(r) = books.refunds.iter_mut().find(|r| r.object["id"] == id) else {
                return;
            };
            if fails {
                r.object["status"] = json!("failed");
                r.object["failure_reason"] = json!("expired_or_canceled_card");
            } else {
                r.object["status"] = json!("succeeded");
            }
            r.object.clone()
        };
        let Some(target) = &self.config.webhooks else {
            return;
        };
        let kind = if fails {
            "refund.failed"
        } else {
            "refund.updated"
        };
        self.announce(target, kind, object.clone()).await;
        if !fails && let Some(pi) = object["payment_intent"].as_str() {
            self.announce_charge_refunded(pi).await;
        }
    }

    /// `charge.refunded`, as the provider sends it once a refund of the charge went through:
    /// the charge with what has been refunded of it so far.
    async fn announce_charge_refunded(&self, pi: &str) {
        let Some(target) = &self.config.webhooks else {
            return;
        };
        let charge = {
            let books = self.lock();
            let Some((amount, currency)) = books.charged.get(pi).cloned() else {
                return;
            };
            let refunded: i64 = books
                .refunds
                .iter()
                .filter(|r| r.payment_intent == pi && r.object["status"] == "succeeded")
                .map(|r| r.object["amount"].as_i64().unwrap_or(0))
                .sum();
            json!({"id": format!("ch_{pi}"), "object": "charge", "payment_intent": pi, "amount": amount,
                   "amount_refunded": refunded, "refunded": refunded >= amount, "currency": currency})
        };
        self.announce(target, "charge.refunded", charge).await;
    }

    /// Delivers an event to ingest until it is acknowledged, as the provider does.
    async fn announce(&self, target: &WebhookTarget, kind: &str, object: Value) {
        let event = json!({"id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "type": kind,
                           "created": chrono::Utc::now().timestamp(), "data": {"object": object}});
        for attempt in 0..20u32 {
            match crate::sales::deliver(target.ingest, &target.secret, &event).await {
                Ok(r) if r.status < 300 => return,
                _ => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await,
            }
        }
        tracing::warn!(
            event = %event["id"],
            kind,
            "the stand-in gave up delivering a webhook"
        );
    }

    fn list(&self, auth: Option<String>, query: &str) -> (StatusCode, Value) {
        let mut books = self.lock();
        if let Some(answer) = self.admit(&mut books, auth.as_deref()) {
            return answer;
        }
        let q: HashMap<String, String> =
            refunds::provider::form_decode(query).into_iter().collect();
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(10)
            .clamp(1, 100);
        let mut of: Vec<&Value> = books
            .refunds
            .iter()
            .rev()
            .filter(|r| {
                q.get("payment_intent")
                    .is_none_or(|p| *p == r.payment_intent)
            })
            .map(|r| &r.object)
            .collect();
        if let Some(after) = q.get("starting_after") {
            match of.iter().position(|r| r["id"] == after.as_str()) {
                Some(i) => of.drain(..=i).for_each(drop),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "resource_missing",
                        format!("No such refund: '{after}'"),
                    );
                }
            }
        }
        let has_more = of.len() > limit;
        let data: Vec<Value> = of.into_iter().take(limit).cloned().collect();
        (
            StatusCode::OK,
            json!({"object": "list", "url": "/v1/refunds", "has_more": has_more, "data": data}),
        )
    }
}

fn routes(
    me: StripeStandIn,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let create = warp::post()
        .and(warp::path!("v1" / "refunds"))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(warp::body::bytes())
        .then({
            let me = me.clone();
            move |auth: Option<String>, key: Option<String>, body: bytes::Bytes| {
                let me = me.clone();
                async move {
                    let (status, value) = me.create(auth, key, &body);
                    if !me.config.answer_delay.is_zero() {
                        tokio::time::sleep(me.config.answer_delay).await;
                    }
                    warp::reply::with_status(warp::reply::json(&value), status).into_response()
                }
            }
        });
    let list = warp::get()
        .and(warp::path!("v1" / "refunds"))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(move |auth: Option<String>, query: String| {
            let (status, value) = me.list(auth, &query);
            warp::reply::with_status(warp::reply::json(&value), status).into_response()
        });
    create
        .or(list)
        .unify()
        .recover(|_| async {
            Ok::<_, std::convert::Infallible>(
                warp::reply::with_status(
                    warp::reply::json(&json!({"error": {"type": "invalid_request_error",
                    "code": "resource_missing", "message": "Unrecognized request URL"}})),
                    StatusCode::NOT_FOUND,
                )
                .into_response(),
            )
        })
        .unify()
}
