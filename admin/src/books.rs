//! Money from outside the system over HTTP, for finance: RSU cash counted by two people and
//! taken to the bank, and the provider's payouts imported and matched. The ledger does the work
//! (`ledger::cash`, `ledger::payouts`), with the same rules as `raffle cash …` and `raffle
//! payouts import`; this edge checks who asks and turns refusals into problems.
//!
//! - `POST /v1/organizations/{org}/raffles/{raffle}/cash/counts` with `{"rsu_id", "seller_id"?,
//!   "float_minor", "counted_minor", "counted_by", "witnessed_by", "note"?}`;
//! - `POST /v1/organizations/{org}/raffles/{raffle}/cash/deposits` with `{"slip_number",
//!   "deposited_on": "YYYY-MM-DD", "amount_minor"}`;
//! - `POST /v1/organizations/{org}/raffles/{raffle}/payouts[?account=acct_…]` with the
//!   itemized payout report (CSV) or the payout's balance transactions (JSON) as the body, up
//!   to 64 MiB (a record day's payout is about 60 MB; larger files go through the CLI).
//!
//! All three are for admins and finance.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use platform::problem::Problem;
use uuid::Uuid;
use warp::Filter;
use warp::Reply;
use warp::http::{Method, StatusCode};

use crate::auth::Role;

const ACT: &[Role] = &[Role::Admin, Role::Finance];

/// A payout report of a record day, with room to spare.
const PAYOUT_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CountInput {
    rsu_id: Uuid,
    seller_id: Option<String>,
    float_minor: i64,
    counted_minor: i64,
    counted_by: String,
    witnessed_by: String,
    note: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DepositInput {
    slip_number: String,
    deposited_on: chrono::NaiveDate,
    amount_minor: i64,
}

pub fn routes(
    state: Arc<crate::AppState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let cash = warp::post()
        .and(warp::path!(
            "v1" / "organizations" / Uuid / "raffles" / Uuid / "cash" / String
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
             what: String,
             authorization: Option<String>,
             source: Option<SocketAddr>,
             body: bytes::Bytes,
             state: Arc<crate::AppState>| async move {
                let path = format!("organizations/{org}/raffles/{raffle}/cash/{what}");
                let request = crate::RouteRequest {
                    method: &Method::POST,
                    path: &path,
                    authorization: authorization.as_deref(),
                    source,
                };
                crate::answer(serve_cash(&state, org, raffle, &what, &request, &body).await)
            },
        );
    let payouts = warp::post()
        .and(warp::path!(
            "v1" / "organizations" / Uuid / "raffles" / Uuid / "payouts"
        ))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("authorization"))
        .and(platform::http_server::client_addr())
        .and(warp::body::content_length_limit(PAYOUT_LIMIT_BYTES))
        .and(warp::body::bytes())
        .and(with_state)
        .then(
            |org: Uuid,
             raffle: Uuid,
             query: HashMap<String, String>,
             authorization: Option<String>,
             source: Option<SocketAddr>,
             body: bytes::Bytes,
             state: Arc<crate::AppState>| async move {
                let path = format!("organizations/{org}/raffles/{raffle}/payouts");
                let request = crate::RouteRequest {
                    method: &Method::POST,
                    path: &path,
                    authorization: authorization.as_deref(),
                    source,
                };
                crate::answer(serve_payouts(&state, org, raffle, &query, &request, &body).await)
            },
        );
    cash.or(payouts).unify()
}

fn cash_problem(e: ledger::cash::CashError) -> Problem {
    match e {
        ledger::cash::CashError::Refused(reason) => Problem::conflict("cash-refused", reason),
        ledger::cash::CashError::Db(e) => platform::problem::from_db("cash", &e),
    }
}

async fn serve_cash(
    state: &crate::AppState,
    org: Uuid,
    raffle: Uuid,
    what: &str,
    request: &crate::RouteRequest<'_>,
    body: &[u8],
) -> Result<warp::reply::Response, Problem> {
    if what != "counts" && what != "deposits" {
        return Err(Problem::not_found(format!(
            "cash/{what}: cash is counted (cash/counts) or deposited (cash/deposits)"
        )));
    }
    let actor = crate::authorize(state, request, org, ACT).await?;
    crate::raffle_of(state, org, raffle).await?;
    let mut client = platform::problem::pooled(&state.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| platform::problem::from_db("cash", &e))?;
    let reply = if what == "counts" {
        let c: CountInput = platform::body::parse(body)?;
        let count = ledger::cash::count(
            &tx,
            &ledger::cash::NewCount {
                raffle_id: raffle,
                rsu_id: c.rsu_id,
                seller_id: c.seller_id.as_deref(),
                float_minor: c.float_minor,
                counted_minor: c.counted_minor,
                counted_by: &c.counted_by,
                witnessed_by: &c.witnessed_by,
                note: c.note.as_deref(),
            },
        )
        .await
        .map_err(cash_problem)?;
        serde_json::to_value(&count).map_err(|e| Problem::internal("the count", &e))?
    } else {
        let d: DepositInput = platform::body::parse(body)?;
        let recorded_by = actor.who().sub;
        let waiting = ledger::cash::deposit(
            &tx,
            &ledger::cash::NewDeposit {
                raffle_id: raffle,
                slip_number: &d.slip_number,
                deposited_on: d.deposited_on,
                amount_minor: d.amount_minor,
                recorded_by: &recorded_by,
            },
        )
        .await
        .map_err(cash_problem)?;
        serde_json::json!({"raffle_id": raffle, "slip_number": d.slip_number, "deposited_on": d.deposited_on,
                           "amount_minor": d.amount_minor, "recorded_by": recorded_by,
                           "still_to_deposit_minor": waiting})
    };
    tx.commit()
        .await
        .map_err(|e| platform::problem::from_db("cash", &e))?;
    Ok(warp::reply::with_status(warp::reply::json(&reply), StatusCode::CREATED).into_response())
}

async fn serve_payouts(
    state: &crate::AppState,
    org: Uuid,
    raffle: Uuid,
    query: &HashMap<String, String>,
    request: &crate::RouteRequest<'_>,
    body: &[u8],
) -> Result<warp::reply::Response, Problem> {
    if let Some(other) = query.keys().find(|k| k.as_str() != "account") {
        return Err(Problem::invalid(
            other,
            format!("{other:?} is not a parameter of a payout import (only account)"),
        ));
    }
    let actor = crate::authorize(state, request, org, ACT).await?;
    crate::raffle_of(state, org, raffle).await?;
    let text = std::str::from_utf8(body).map_err(|e| {
        Problem::invalid("body", format!("the payout report is not UTF-8 text: {e}"))
    })?;
    let mut client = platform::problem::pooled(&state.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| platform::problem::from_db("payouts", &e))?;
    let outcome = match ledger::payouts::import(
        &tx,
        raffle,
        text,
        query.get("account").map(String::as_str),
        &actor.who().sub,
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(e @ ledger::payouts::PayoutError::Refused(_)) => {
            return Err(Problem::invalid("body", e.to_string()));
        }
        Err(ledger::payouts::PayoutError::UnknownRaffle(r)) => {
            return Err(Problem::not_found(format!("raffle {r}")));
        }
        Err(ledger::payouts::PayoutError::Db(e)) => {
            return Err(platform::problem::from_db("payouts", &e));
        }
    };
    tx.commit()
        .await
        .map_err(|e| platform::problem::from_db("payouts", &e))?;
    Ok(warp::reply::json(&outcome).into_response())
}
