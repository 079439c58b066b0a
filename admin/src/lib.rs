//! admin: the API where a charity's staff set everything up and auditors read it.
//!
//! Owns: the `/v1` JSON API (warp; errors as `application/problem+json`) and the `raffle admin`
//! commands, over the `catalog` schema (organisations, venues, addresses, contacts,
//! jurisdictions and regulations, users and memberships, templates, raffles with their ranges
//! and lifecycle, packages, prizes, perks, RSUs, API keys, allocations, validation number
//! blocks, system configuration), perk claims in `sales.perk_claims`, and the critical events
//! of every change and refusal in `audit.critical_events`.
//!
//! Must not touch: orders, tickets and counters written by the allocator (it reads orders to
//! check perk claims), the ledger, the draw. Sealing and drawing are the ledger's and the draw
//! engine's transitions.
//!
//! Every request runs in one Postgres transaction: rights, validation, writes and the critical
//! event commit together or not at all. A refused request is rolled back and its refusal is
//! recorded on its own.

pub mod api;
pub mod audit;
pub mod auth;
mod failures;
pub mod problem;
pub mod rules;
pub mod seed;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use deadpool_postgres::Pool;
use futures::StreamExt;
use platform::health::{Health, HealthConfig};
use serde_json::{Value, json};
use tracing::Instrument;
use uuid::Uuid;
use warp::Filter;
use warp::http::{Method, StatusCode};

use crate::auth::{Actor, Verifier};
use crate::problem::Problem;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

pub struct AppState {
    pub pool: Pool,
    pub verifier: Verifier,
}

/// A pooled connection, or a 503 problem that says the database is unreachable.
pub async fn pooled(pool: &Pool) -> Result<deadpool_postgres::Object, Problem> {
    pool.get()
        .await
        .map_err(|e| Problem::unavailable(format!("the database is unreachable: {e}")))
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
    let mut client = crate::pooled(&state.pool).await?;
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

pub fn problem_response(problem: &Problem) -> warp::reply::Response {
    use warp::Reply;
    let mut response =
        warp::reply::with_status(warp::reply::json(problem), problem.status_code()).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// Reads the body up to `limit_bytes`, whatever the framing (Content-Length or chunked).
pub async fn read_body(
    mut stream: impl futures::Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    limit_bytes: usize,
) -> Result<Vec<u8>, Problem> {
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|e| Problem::malformed(format!("could not read the body: {e}")))?;
        if body.len() + chunk.remaining() > limit_bytes {
            return Err(Problem::too_large(limit_bytes));
        }
        while chunk.has_remaining() {
            let bytes = chunk.chunk();
            body.extend_from_slice(bytes);
            let n = bytes.len();
            chunk.advance(n);
        }
    }
    Ok(body)
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
/// `organization_id`, recording a refusal like any API refusal: for endpoints that other crates
/// serve next to this API (the ledger's reports), which cannot live here without a cycle.
pub async fn authorize(
    state: &AppState,
    request: &RouteRequest<'_>,
    organization_id: Uuid,
    allowed: &[auth::Role],
) -> Result<Actor, Problem> {
    let client = crate::pooled(&state.pool).await?;
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

/// What a route served beside the API (reports, claims) knows of its request, for
/// [`authorize`].
pub struct RouteRequest<'a> {
    pub method: &'a Method,
    /// Under `/v1`, without the leading slash.
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub source: Option<SocketAddr>,
}

/// The warp filter of the whole API.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    routes_with(state, no_extra_routes())
}

/// Matches nothing: the API alone.
fn no_extra_routes() -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
+ Clone
+ Send
+ Sync
+ 'static {
    warp::any().and_then(|| async { Err::<warp::reply::Response, _>(warp::reject::not_found()) })
}

/// The API with `extra` routes tried first (the ledger's report documents).
pub fn routes_with(
    state: Arc<AppState>,
    extra: impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
    + Clone
    + Send
    + Sync
    + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let health = Health::start(HealthConfig::database_only("admin", state.pool.clone()));
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
        .or(extra)
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
    serve_with(state, no_extra_routes(), listener, shutdown).await
}

/// [`serve_with`], over TLS when `tls` is given (`RAFFLE_ADMIN_TLS_CERT` / `_KEY`).
pub async fn serve_with_tls(
    state: Arc<AppState>,
    extra: impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
    + Clone
    + Send
    + Sync
    + 'static,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let sweeper = spawn_sweeper(state.pool.clone());
    platform::http_server::serve_tls(
        routes_with(state, extra),
        listener,
        shutdown,
        platform::http_server::Limits::default(),
        tls,
    )
    .await;
    sweeper.abort();
}

/// [`serve`] with `extra` routes in front of the API.
pub async fn serve_with(
    state: Arc<AppState>,
    extra: impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
    + Clone
    + Send
    + Sync
    + 'static,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    serve_with_tls(state, extra, listener, shutdown, None).await
}

/// Closes due raffles every second, in the background.
fn spawn_sweeper(pool: Pool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(mut client) = pool.get().await {
                match api::close_due_raffles(&mut client).await {
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
