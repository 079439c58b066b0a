//! The displays' HTTP server: the jackpot as JSON, as a stream, as a widget, and the public
//! page. Public and read-only; a raffle that is not public (a draft, or none) is 404.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use platform::health::Health;
use platform::problem::{Problem, problem_response};
use uuid::Uuid;
use warp::Filter;
use warp::http::{HeaderValue, Response, StatusCode, header};
use warp::reply::Reply;

use crate::feed::Feed;

pub struct DisplaysState {
    pub pool: Pool,
    pub feed: Arc<Feed>,
    pub health: Arc<Health>,
    /// How long one stream lasts before the server ends it and the screen reconnects (an
    /// `EventSource` does so by itself, after the `retry` the stream gave it): connections move
    /// between instances and proxies as they come and go. [`STREAM_LIFETIME`] by default.
    pub stream_lifetime: Duration,
}

/// Ten minutes a stream.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(600);

impl DisplaysState {
    pub fn new(pool: Pool, health: Arc<Health>) -> Self {
        Self {
            feed: Feed::new(pool.clone()),
            pool,
            health,
            stream_lifetime: STREAM_LIFETIME,
        }
    }
}

/// How often an idle stream sends a comment, so proxies and the idle timeout keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn raffle_id(text: &str) -> Result<Uuid, Problem> {
    text.parse()
        .map_err(|_| Problem::not_found(format!("raffle {text:?}")))
}

async fn subscribe(
    state: &DisplaysState,
    raffle: Uuid,
) -> Result<tokio::sync::watch::Receiver<Arc<crate::feed::Snapshot>>, Problem> {
    state
        .feed
        .subscribe(raffle)
        .await
        .map_err(|e| {
            Problem::unavailable(format!(
                "the jackpot of raffle {raffle} cannot be read now: {e}"
            ))
        })?
        .ok_or_else(|| Problem::not_found(format!("raffle {raffle}")))
}

fn html(body: String, policy: String, cache: &'static str) -> warp::reply::Response {
    let mut r = Response::new(body.into());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(p) = HeaderValue::from_str(&policy) {
        h.insert(header::CONTENT_SECURITY_POLICY, p);
    }
    r
}

async fn route(
    state: Arc<DisplaysState>,
    path: String,
    headers: warp::http::HeaderMap,
) -> Result<warp::reply::Response, Problem> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["raffles", r, "jackpot"] => {
            let raffle = raffle_id(r)?;
            let snapshot = subscribe(&state, raffle).await?.borrow().clone();
            let matches = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|tags| {
                    tags.split(',')
                        .any(|t| t.trim() == snapshot.etag || t.trim() == "*")
                });
            let mut r = if matches {
                let mut r = Response::new(Vec::new().into());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                r
            } else {
                let mut r = Response::new(snapshot.json.to_vec().into());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            };
            let h = r.headers_mut();
            if let Ok(tag) = HeaderValue::from_str(&snapshot.etag) {
                h.insert(header::ETAG, tag);
            }
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=1"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            Ok(r)
        }
        ["raffles", r, "jackpot", "stream"] => {
            let raffle = raffle_id(r)?;
            let receiver = subscribe(&state, raffle).await?;
            // The current value first, then every change.
            let events = futures::stream::unfold((receiver, true), |(mut rx, first)| async move {
                if !first && rx.changed().await.is_err() {
                    return None;
                }
                let snapshot = rx.borrow_and_update().clone();
                let event = if first {
                    warp::sse::Event::default().retry(Duration::from_secs(1))
                } else {
                    warp::sse::Event::default()
                };
                let event = event
                    .event("jackpot")
                    .id(snapshot.jackpot.version.clone())
                    .data(String::from_utf8_lossy(&snapshot.json));
                Some((Ok::<_, Infallible>(event), (rx, false)))
            })
            .take_until(tokio::time::sleep(state.stream_lifetime));
            let mut r =
                warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(events))
                    .into_response();
            r.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            Ok(r)
        }
        ["raffles", r, "jackpot", "widget"] => {
            let raffle = raffle_id(r)?;
            let snapshot = subscribe(&state, raffle).await?.borrow().clone();
            Ok(html(
                crate::page::widget(&snapshot.jackpot),
                crate::page::policy(true),
                "no-cache",
            ))
        }
        ["raffles", r, "page"] => {
            let raffle = raffle_id(r)?;
            let snapshot = subscribe(&state, raffle).await?.borrow().clone();
            let client = platform::problem::pooled(&state.pool).await?;
            let public = crate::public::raffle(&**client, r).await?;
            Ok(html(
                crate::page::raffle_page(&public, &snapshot.jackpot),
                crate::page::policy(false),
                "no-cache",
            ))
        }
        _ => Err(Problem::no_route("GET", &path)),
    }
}

/// The warp filter of the displays.
pub fn routes(
    state: Arc<DisplaysState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let health = state.health.clone();
    let with_state = warp::any().map(move || state.clone());
    let api = warp::get()
        .and(warp::path("v1"))
        .and(with_state)
        .and(warp::path::tail())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::headers_cloned())
        .and_then(
            |state: Arc<DisplaysState>,
             tail: warp::path::Tail,
             _query: HashMap<String, String>,
             headers| async move {
                let path = tail.as_str().to_owned();
                Ok::<_, Infallible>(match route(state, path, headers).await {
                    Ok(r) => r,
                    Err(problem) => problem_response(&problem),
                })
            },
        );
    platform::health::routes(health)
        .or(api)
        .unify()
        .recover(|r: warp::Rejection| async move {
            let problem = if r.is_not_found() {
                Problem::not_found("no such endpoint; the displays live under /v1/raffles/{id}/")
            } else {
                Problem::malformed(format!("{r:?}"))
            };
            Ok::<_, Infallible>(problem_response(&problem))
        })
        .unify()
}

/// How many screens may hold a stream at once: a stadium's.
pub const CONNECTIONS_MAX: usize = 16_000;

/// Serves the displays on `listener` until `shutdown`, with the feed refreshing beside it.
pub async fn serve(
    state: Arc<DisplaysState>,
    listener: tokio::net::TcpListener,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let feed = state.feed.clone();
    let refresher = tokio::spawn(feed.run(shutdown.clone()));
    let mut stop = shutdown.clone();
    platform::http_server::serve(
        routes(state),
        listener,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
        platform::http_server::Limits {
            connections_max: CONNECTIONS_MAX,
            ..Default::default()
        },
    )
    .await;
    let _ = refresher.await;
}
