//! admin: the API where a charity's staff set everything up and auditors read it.
//!
//! An edge, like ingest: nothing but the binary and the scenarios stands on it.
//!
//! Owns: the `/v1` JSON API (warp; errors as `application/problem+json`) and the `raffle admin`
//! commands, over the `catalog` schema (organisations, venues, addresses, contacts,
//! jurisdictions and regulations, users and memberships, templates, raffles with their ranges,
//! packages, prizes, perks, RSUs, API keys, system configuration), perk claims in
//! `sales.perk_claims`, failed authentications in `audit.authentication_failures`; and the
//! routes beside the JSON API that call the stages: the reconciliation report (built by the
//! ledger), staff prize claims (judged by the draw engine), finance's refund list with its
//! retry and cancel (the refunds crate's), and RSU cash counts, deposits and payout imports
//! (the ledger's).
//!
//! Through `catalog` it moves raffles along their lifecycle (activation, close, cancellation),
//! hands number blocks to RSUs and records the critical event of every change and refusal;
//! HTTP plumbing is `platform`'s. Finance's actions over HTTP (a device's cash counted or
//! deposited, a payout imported, an order refunded whole) run the ledger's and the refunds
//! crate's code in the request's transaction, and so append their journal entries, cash rows,
//! payout lines and obligations (the admin role holds exactly those writes, V28). Must not
//! touch: orders, tickets and counters written by the allocator (it reads orders to check perk
//! claims), any other ledger table (the seal above all), the draw. Sealing and drawing
//! are the ledger's and the draw engine's transitions.
//!
//! Every request runs in one Postgres transaction: rights, validation, writes and the critical
//! event commit together or not at all. A refused request is rolled back and its refusal is
//! recorded on its own.

pub mod api;
pub mod audit;
pub mod auth;
mod books;
mod claims;
mod failures;
mod refunds;
mod reports;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use deadpool_postgres::Pool;
use platform::health::{Health, HealthConfig};
use serde_json::{Value, json};
use tracing::Instrument;
use uuid::Uuid;
use warp::Filter;
use warp::http::{Method, StatusCode};

use crate::auth::{Actor, Verifier};
use platform::body::read_body;
pub(crate) use platform::problem;
use platform::problem::{Problem, pooled, problem_response};

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

pub struct AppState {
    pub pool: Pool,
    pub verifier: Verifier,
}

/// Runs one API call for an authenticated actor: the same path for HTTP and the CLI.
pub async fn call(
    state: &AppState,
    actor: &Actor,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(StatusCode, Value), Problem> {
    let mut client = pooled(&state.pool).await?;
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let result = {
        let tx = client.transaction().await?;
        let ctx = api::Ctx {
            tx: &tx,
            actor,
            query,
            body,
        };
        match api::dispatch(&ctx, method, &segments).await {
            Ok(reply) => tx
                .commit()
                .await
                .map(|()| reply)
                .map_err(|e| problem::from_db("commit", &e)),
            Err(p) => Err(p),
        }
    };
    if let Err(problem) = &result {
        record_refusal(&client, Some(actor), method, path, &segments, problem).await;
    }
    result
}

/// Records a refused request as a critical event, on its own: the request's transaction is
/// gone. Reads that found nothing are not refusals worth an event.
pub(crate) async fn record_refusal(
    client: &tokio_postgres::Client,
    actor: Option<&Actor>,
    method: &Method,
    path: &str,
    segments: &[&str],
    problem: &Problem,
) {
    let security = problem.status == 401 || problem.status == 403;
    let refused_change = method != Method::GET && (400..500).contains(&problem.status);
    if !security && !refused_change {
        return;
    }
    // Only an organisation that exists can own the event.
    let mut org: Option<Uuid> = None;
    if let ["organizations", id, ..] = segments
        && let Ok(id) = Uuid::parse_str(id)
        && let Ok(Some(_)) = client
            .query_opt("SELECT 1 FROM catalog.organizations WHERE id = $1", &[&id])
            .await
    {
        org = Some(id);
    }
    let event_type = match problem.status {
        401 => "AUTHENTICATION_FAILED",
        403 => "ACCESS_FORBIDDEN",
        _ => "REQUEST_REFUSED",
    };
    let severity = if security {
        audit::Severity::Warning
    } else {
        audit::Severity::Info
    };
    let mut event = audit::Event::info(
        org,
        event_type,
        format!(
            "{method} /v1/{} refused: {}",
            path.trim_matches('/'),
            problem.detail
        ),
    )
    .severity(severity)
    .change(None, Some(json!({"problem": problem})));
    if let ["organizations", _, "raffles", r, ..] = segments
        && let Ok(r) = Uuid::parse_str(r)
        && org.is_some()
        && let Ok(Some(_)) = client
            .query_opt("SELECT 1 FROM catalog.raffle_events WHERE id = $1", &[&r])
            .await
    {
        event = event.raffle(r);
    }
    if let Err(e) = audit::record(client, actor, event).await {
        tracing::error!(error = %e, "could not record a refused request");
    }
}

fn respond(result: Result<(StatusCode, Value), Problem>) -> warp::reply::Response {
    use warp::Reply;
    match result {
        Ok((status, body)) => {
            warp::reply::with_status(warp::reply::json(&body), status).into_response()
        }
        Err(problem) => problem_response(&problem),
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle_http(
    state: Arc<AppState>,
    method: Method,
    tail: warp::path::Tail,
    query: HashMap<String, String>,
    authorization: Option<String>,
    source: Option<SocketAddr>,
    body: impl futures::Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
) -> Result<warp::reply::Response, Infallible> {
    let path = tail.as_str().to_owned();
    let body = match read_body(body, BODY_LIMIT_BYTES).await {
        Ok(b) => b,
        Err(p) => return Ok(problem_response(&p)),
    };
    let claims = state.verifier.verify(authorization.as_deref());
    let actor = match claims {
        Ok((sub, name)) => {
            let client = match pooled(&state.pool).await {
                Ok(c) => c,
                Err(p) => return Ok(problem_response(&p)),
            };
            auth::resolve_actor(&**client, &sub, name.as_deref(), "http").await
        }
        Err(p) => Err(p),
    };
    let actor = match actor {
        Ok(a) => a,
        Err(problem) if problem.status == 401 => {
            let answer = failures::note(&state.pool, source, &method, &path, &problem).await;
            return Ok(problem_response(&answer));
        }
        Err(problem) => {
            if let Ok(client) = state.pool.get().await {
                let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                record_refusal(&client, None, &method, &path, &segments, &problem).await;
            }
            return Ok(problem_response(&problem));
        }
    };
    let span = tracing::info_span!("admin", %method, path, sub = %actor.sub);
    let result = call(&state, &actor, &method, &path, &query, &body)
        .instrument(span)
        .await;
    match &result {
        Ok((status, _)) => tracing::info!(status = status.as_u16(), "request served"),
        Err(p) => tracing::info!(
            status = p.status,
            kind = p.kind,
            detail = p.detail,
            "request refused"
        ),
    }
    Ok(respond(result))
}

/// Turns warp's own rejections (bad query string, unknown path) into problems.
async fn recover(rejection: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    let problem = if rejection.is_not_found() {
        Problem::not_found("no such endpoint; the API lives under /v1")
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        Problem::invalid("query", e.to_string())
    } else {
        Problem::malformed(format!("{rejection:?}"))
    };
    Ok(problem_response(&problem))
}

/// Authenticates `authorization` and checks its holder has one of the `allowed` roles in
/// `organization_id`, recording a refusal like any API refusal: for the endpoints beside the
/// JSON API (the report, staff claims).
pub(crate) async fn authorize(
    state: &AppState,
    request: &RouteRequest<'_>,
    organization_id: Uuid,
    allowed: &[auth::Role],
) -> Result<Actor, Problem> {
    let client = pooled(&state.pool).await?;
    let mut actor = None;
    let result: Result<Actor, Problem> = async {
        let (sub, name) = state.verifier.verify(request.authorization)?;
        let a = auth::resolve_actor(&**client, &sub, name.as_deref(), "http").await?;
        actor = Some(a.clone());
        auth::require(&**client, &a, organization_id, allowed).await?;
        Ok(a)
    }
    .await;
    match result {
        Err(problem) if problem.status == 401 => {
            drop(client);
            Err(failures::note(
                &state.pool,
                request.source,
                request.method,
                request.path,
                &problem,
            )
            .await)
        }
        Err(problem) => {
            let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
            record_refusal(
                &client,
                actor.as_ref(),
                request.method,
                request.path,
                &segments,
                &problem,
            )
            .await;
            Err(problem)
        }
        ok => ok,
    }
}

/// The raffle, if it is the organisation's; another organisation's raffle is not found (404),
/// as if it did not exist: for the endpoints beside the JSON API.
pub(crate) async fn raffle_of(state: &AppState, org: Uuid, raffle: Uuid) -> Result<(), Problem> {
    let client = pooled(&state.pool).await?;
    let found = client
        .query_opt(
            "SELECT 1 FROM catalog.raffle_events WHERE id = $1 AND organization_id = $2",
            &[&raffle, &org],
        )
        .await
        .map_err(|e| Problem::internal("finding the raffle", &e))?;
    match found {
        Some(_) => Ok(()),
        None => Err(Problem::not_found(format!(
            "raffle {raffle} of organization {org}"
        ))),
    }
}

/// A route's answer: its response, or its problem as `application/problem+json`.
pub(crate) fn answer(result: Result<warp::reply::Response, Problem>) -> warp::reply::Response {
    result.unwrap_or_else(|problem| platform::problem::problem_response(&problem))
}

/// What a route served beside the API (reports, claims) knows of its request, for
/// [`authorize`].
pub(crate) struct RouteRequest<'a> {
    pub method: &'a Method,
    /// Under `/v1`, without the leading slash.
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub source: Option<SocketAddr>,
}

/// The warp filter of the whole API: the JSON API under `/v1`, the reconciliation report
/// and staff claims beside it, and the health endpoints.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let health = Health::start(HealthConfig::database_only("admin", state.pool.clone()));
    let documents = reports::routes(state.clone())
        .or(claims::routes(state.clone()))
        .unify()
        .or(refunds::routes(state.clone()))
        .unify()
        .or(books::routes(state.clone()))
        .unify();
    let with_state = warp::any().map(move || state.clone());
    let api = warp::path("v1")
        .and(with_state)
        .and(warp::method())
        .and(warp::path::tail())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("authorization"))
        .and(platform::http_server::client_addr())
        .and(warp::body::stream())
        .and_then(
            |state, method, tail, query, authorization, source, body| async move {
                handle_http(
                    state,
                    method,
                    tail,
                    query,
                    authorization,
                    source,
                    Box::pin(body),
                )
                .await
            },
        );
    platform::health::routes(health)
        .or(documents)
        .unify()
        .or(api)
        .unify()
        .recover(recover)
        .unify()
}

/// Serves the API on `listener` until `shutdown` resolves; closes due raffles every second.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    serve_tls(state, listener, shutdown, None).await
}

/// [`serve`], over TLS when `tls` is given (`RAFFLE_ADMIN_TLS_CERT` / `_KEY`).
pub async fn serve_tls(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let sweeper = spawn_sweeper(state.pool.clone());
    platform::http_server::serve_tls(
        routes(state),
        listener,
        shutdown,
        platform::http_server::Limits::default(),
        tls,
    )
    .await;
    sweeper.abort();
}

/// Closes due raffles every second, in the background.
fn spawn_sweeper(pool: Pool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(mut client) = pool.get().await {
                match catalog::lifecycle::close_due_raffles(&mut client).await {
                    Ok(closed) if !closed.is_empty() => {
                        tracing::info!(?closed, "sales closed at their end time")
                    }
                    Ok(_) => {}
                    Err(p) => tracing::warn!(problem = %p, "closing due raffles failed"),
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Binds the admin API address, naming the address if it is taken.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for the admin API: {e}. Set RAFFLE_ADMIN_ADDR to a free address"))
}
