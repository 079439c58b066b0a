//! Refunds over HTTP, for finance: the list (JSON or CSV), and retry or cancel one. The refunds
//! crate does the work; this edge checks who asks.
//!
//! - `GET  /v1/organizations/{org}/raffles/{raffle}/refunds?state=…&format=json|csv`
//!   (admins, finance, auditors);
//! - `POST /v1/organizations/{org}/raffles/{raffle}/refunds/{id}/retry` (admins, finance);
//! - `POST /v1/organizations/{org}/raffles/{raffle}/refunds/{id}/cancel` with
//!   `{"reason": "…"}` (admins, finance);
//! - `POST /v1/organizations/{org}/raffles/{raffle}/orders/{order}/refund` with
//!   `{"reason": "…"}`: an online order given back whole, its sale reversed now and the refund
//!   paid by the worker (admins, finance).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use platform::problem::Problem;
use refunds::obligations::{self, RefundError, State};
use uuid::Uuid;
use warp::Filter;
use warp::Reply;
use warp::http::{Method, StatusCode};

use crate::auth::Role;

/// Who may act on refunds: they move money back to buyers.
const ACT: &[Role] = &[Role::Admin, Role::Finance];

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelInput {
    reason: String,
}

pub fn routes(
    state: Arc<crate::AppState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let list = warp::get()
        .and(warp::path!(
            "v1" / "organizations" / Uuid / "raffles" / Uuid / "refunds"
        ))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("authorization"))
        .and(platform::http_server::client_addr())
        .and(with_state.clone())
        .then(
            |org: Uuid,
             raffle: Uuid,
             query: HashMap<String, String>,
             authorization: Option<String>,
             source: Option<SocketAddr>,
             state: Arc<crate::AppState>| async move {
                let path = format!("organizations/{org}/raffles/{raffle}/refunds");
                let request = crate::RouteRequest {
                    method: &Method::GET,
                    path: &path,
                    authorization: authorization.as_deref(),
                    source,
                };
                crate::answer(serve_list(&state, org, raffle, &query, &request).await)
            },
        );
    let act = warp::post()
        .and(warp::path!(
            "v1" / "organizations" / Uuid / "raffles" / Uuid / "refunds" / Uuid / String
        ))
        .and(warp::header::optional::<String>("authorization"))
        .and(platform::http_server::client_addr())
        .and(warp::body::content_length_limit(
            crate::BODY_LIMIT_BYTES as u64,
        ))
        .and(warp::body::bytes())
        .and(with_state.clone())
        .then(
            |org: Uuid,
             raffle: Uuid,
             id: Uuid,
             action: String,
             authorization: Option<String>,
             source: Option<SocketAddr>,
             body: bytes::Bytes,
             state: Arc<crate::AppState>| async move {
                let path = format!("organizations/{org}/raffles/{raffle}/refunds/{id}/{action}");
                let request = crate::RouteRequest {
                    method: &Method::POST,
                    path: &path,
                    authorization: authorization.as_deref(),
                    source,
                };
                crate::answer(serve_action(&state, org, raffle, id, &action, &request, &body).await)
            },
        );
    let refund_order = warp::post()
        .and(warp::path!(
            "v1" / "organizations" / Uuid / "raffles" / Uuid / "orders" / Uuid / "refund"
        ))
        .and(warp::header::optional::<String>("authorization"))
        .and(platform::http_server::client_addr())
        .and(warp::body::content_length_limit(
            crate::BODY_LIMIT_BYTES as u64,
        ))
        .and(warp::body::bytes())
        .and(warp::any().map(move || state.clone()))
        .then(
            |org: Uuid,
             raffle: Uuid,
             order: Uuid,
             authorization: Option<String>,
             source: Option<SocketAddr>,
             body: bytes::Bytes,
             state: Arc<crate::AppState>| async move {
                let path = format!("organizations/{org}/raffles/{raffle}/orders/{order}/refund");
                let request = crate::RouteRequest {
                    method: &Method::POST,
                    path: &path,
                    authorization: authorization.as_deref(),
                    source,
                };
                crate::answer(serve_refund_order(&state, org, raffle, order, &request, &body).await)
            },
        );
    list.or(act).unify().or(refund_order).unify()
}

/// Staff give an order back whole: 201 with the refund owed, 409 with the reason when the order
/// cannot be (not paid, on an RSU, already owed, the raffle sealed).
async fn serve_refund_order(
    state: &crate::AppState,
    org: Uuid,
    raffle: Uuid,
    order: Uuid,
    request: &crate::RouteRequest<'_>,
    body: &[u8],
) -> Result<warp::reply::Response, Problem> {
    let actor = crate::authorize(state, request, org, ACT).await?;
    crate::raffle_of(state, org, raffle).await?;
    let input: CancelInput = platform::body::parse(body)?;
    let mut client = platform::problem::pooled(&state.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| platform::problem::from_db("refunds", &e))?;
    let owed = refunds::orders::refund_order(&tx, raffle, order, &input.reason, &actor.who())
        .await
        .map_err(|e| match e {
            RefundError::Invalid(why) if why.starts_with("a refund needs") => {
                Problem::invalid("reason", why)
            }
            RefundError::Invalid(why) if why.contains("is not an order of raffle") => {
                Problem::not_found(why)
            }
            RefundError::Invalid(why) => Problem::conflict("order-not-refundable", why),
            other => refund_problem(other),
        })?;
    tx.commit()
        .await
        .map_err(|e| platform::problem::from_db("refunds", &e))?;
    Ok(warp::reply::with_status(warp::reply::json(&owed), StatusCode::CREATED).into_response())
}

fn refund_problem(e: RefundError) -> Problem {
    match e {
        RefundError::Unknown(id) => Problem::not_found(format!("refund {id}")),
        RefundError::NotAllowed { .. } => Problem::conflict("refund-state", e.to_string()),
        RefundError::Invalid(text) => Problem::invalid("reason", text),
        RefundError::Db(e) => platform::problem::from_db("refunds", &e),
    }
}

async fn serve_list(
    state: &crate::AppState,
    org: Uuid,
    raffle: Uuid,
    query: &HashMap<String, String>,
    request: &crate::RouteRequest<'_>,
) -> Result<warp::reply::Response, Problem> {
    let csv = match query.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(Problem::invalid(
                "format",
                format!("{other:?} is not a format of the refund list: choose json or csv"),
            ));
        }
    };
    let filter: Option<State> = query
        .get("state")
        .map(|s| s.parse())
        .transpose()
        .map_err(|e: String| Problem::invalid("state", e))?;
    crate::authorize(state, request, org, crate::auth::rights::READ_AUDIT).await?;
    crate::raffle_of(state, org, raffle).await?;
    let client = platform::problem::pooled(&state.pool).await?;
    let list = obligations::list(&**client, Some(raffle), filter)
        .await
        .map_err(refund_problem)?;
    if csv {
        let mut response =
            warp::reply::with_status(obligations::to_csv(&list), StatusCode::OK).into_response();
        response.headers_mut().insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        return Ok(response);
    }
    Ok(
        warp::reply::json(&serde_json::json!({"raffle_id": raffle, "refunds": list}))
            .into_response(),
    )
}

async fn serve_action(
    state: &crate::AppState,
    org: Uuid,
    raffle: Uuid,
    id: Uuid,
    action: &str,
    request: &crate::RouteRequest<'_>,
    body: &[u8],
) -> Result<warp::reply::Response, Problem> {
    if action != "retry" && action != "cancel" {
        return Err(Problem::not_found(format!(
            "refunds/{id}/{action}: a refund can be retried or cancelled"
        )));
    }
    let actor = crate::authorize(state, request, org, ACT).await?;
    crate::raffle_of(state, org, raffle).await?;
    let reason = if action == "cancel" {
        let input: CancelInput = platform::body::parse(body)?;
        Some(input.reason)
    } else {
        None
    };
    let mut client = platform::problem::pooled(&state.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| platform::problem::from_db("refunds", &e))?;
    let before = obligations::get(&*tx, id).await.map_err(refund_problem)?;
    if before.raffle_id != raffle {
        return Err(Problem::not_found(format!(
            "refund {id} of raffle {raffle}"
        )));
    }
    let after = match &reason {
        Some(reason) => obligations::cancel(&*tx, id, &actor.who(), reason).await,
        None => obligations::retry(&*tx, id, &actor.who()).await,
    }
    .map_err(refund_problem)?;
    tx.commit()
        .await
        .map_err(|e| platform::problem::from_db("refunds", &e))?;
    Ok(warp::reply::json(&after).into_response())
}
