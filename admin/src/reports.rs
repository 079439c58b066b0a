//! The reconciliation report over HTTP: the ledger builds it, this edge checks who asks and
//! serves it as JSON, CSV or HTML.

use uuid::Uuid;

/// `GET /v1/organizations/{org}/raffles/{raffle}/reports/reconciliation?format=json|csv|html`,
/// for an organisation's admins, finance staff and auditors, and `POST …/reconciliation/confirm`
/// for its admins and finance staff; refusals are recorded as the API's are.
pub fn routes(
    state: std::sync::Arc<crate::AppState>,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    let confirm = {
        let state = state.clone();
        warp::post()
            .and(warp::path!(
                "v1" / "organizations"
                    / Uuid
                    / "raffles"
                    / Uuid
                    / "reports"
                    / "reconciliation"
                    / "confirm"
            ))
            .and(warp::header::optional::<String>("authorization"))
            .and(platform::http_server::client_addr())
            .and(warp::any().map(move || state.clone()))
            .then(
                |org: Uuid,
                 raffle: Uuid,
                 authorization: Option<String>,
                 source: Option<std::net::SocketAddr>,
                 state: std::sync::Arc<crate::AppState>| async move {
                    let path = format!(
                        "organizations/{org}/raffles/{raffle}/reports/reconciliation/confirm"
                    );
                    let request = crate::RouteRequest {
                        method: &warp::http::Method::POST,
                        path: &path,
                        authorization: authorization.as_deref(),
                        source,
                    };
                    match serve_confirm(&state, org, raffle, &request).await {
                        Ok(response) => response,
                        Err(problem) => platform::problem::problem_response(&problem),
                    }
                },
            )
    };
    let report = warp::get()
        .and(warp::path!(
            "v1" / "organizations" / Uuid / "raffles" / Uuid / "reports" / "reconciliation"
        ))
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and(warp::header::optional::<String>("authorization"))
        .and(platform::http_server::client_addr())
        .and(warp::any().map(move || state.clone()))
        .then(
            |org: Uuid,
             raffle: Uuid,
             query: std::collections::HashMap<String, String>,
             authorization: Option<String>,
             source: Option<std::net::SocketAddr>,
             state: std::sync::Arc<crate::AppState>| async move {
                let path = format!("organizations/{org}/raffles/{raffle}/reports/reconciliation");
                let request = crate::RouteRequest {
                    method: &warp::http::Method::GET,
                    path: &path,
                    authorization: authorization.as_deref(),
                    source,
                };
                match serve_report(&state, org, raffle, &query, &request).await {
                    Ok(response) => response,
                    Err(problem) => platform::problem::problem_response(&problem),
                }
            },
        );
    confirm.or(report).unify()
}

async fn serve_report(
    state: &crate::AppState,
    org: Uuid,
    raffle: Uuid,
    query: &std::collections::HashMap<String, String>,
    request: &crate::RouteRequest<'_>,
) -> Result<warp::reply::Response, platform::problem::Problem> {
    use platform::problem::Problem;
    use warp::Reply;
    let format = query.get("format").map(String::as_str).unwrap_or("json");
    let content_type = match format {
        "json" => "application/json",
        "csv" => "text/csv; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        other => {
            return Err(Problem::invalid(
                "format",
                format!("{other:?} is not a report format: choose json, csv or html"),
            ));
        }
    };
    crate::authorize(state, request, org, crate::auth::rights::READ_AUDIT).await?;
    crate::raffle_of(state, org, raffle).await?;
    let client = platform::problem::pooled(&state.pool).await?;
    let report = ledger::report::reconciliation(&**client, raffle)
        .await
        .map_err(|e| Problem::internal("building the reconciliation report", &e))?;
    let body = match format {
        "csv" => ledger::report::to_csv(&report),
        "html" => ledger::report::to_html(&report),
        _ => serde_json::to_string_pretty(&report)
            .map_err(|e| Problem::internal("encoding the report", &e))?,
    };
    let mut response = warp::reply::with_status(body, warp::http::StatusCode::OK).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static(content_type),
    );
    Ok(response)
}

/// Finance confirms the reconciliation; 200 with the confirmation, 409 with the reason while a
/// check fails, a refund is owed or the books are not sealed, or once it is confirmed.
async fn serve_confirm(
    state: &crate::AppState,
    org: Uuid,
    raffle: Uuid,
    request: &crate::RouteRequest<'_>,
) -> Result<warp::reply::Response, platform::problem::Problem> {
    use ledger::report::ConfirmError;
    use platform::problem::Problem;
    use warp::Reply;
    let actor = crate::authorize(
        state,
        request,
        org,
        &[crate::auth::Role::Admin, crate::auth::Role::Finance],
    )
    .await?;
    let mut client = platform::problem::pooled(&state.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| platform::problem::from_db("confirming the reconciliation", &e))?;
    let ours = tx
        .query_opt(
            "SELECT 1 FROM catalog.raffle_events WHERE id = $1 AND organization_id = $2",
            &[&raffle, &org],
        )
        .await
        .map_err(|e| Problem::internal("finding the raffle", &e))?;
    if ours.is_none() {
        return Err(Problem::not_found(format!(
            "raffle {raffle} of organization {org}"
        )));
    }
    let confirmation = ledger::report::confirm(&*tx, raffle, &actor.who())
        .await
        .map_err(|e| match e {
            ConfirmError::UnknownRaffle(_) => Problem::not_found(e.to_string()),
            ConfirmError::Refused { .. } => Problem::conflict("not-reconciled", e.to_string()),
            ConfirmError::AlreadyConfirmed { .. } => {
                Problem::conflict("already-confirmed", e.to_string())
            }
            ConfirmError::Db(db) => {
                platform::problem::from_db("confirming the reconciliation", &db)
            }
            other => Problem::internal("confirming the reconciliation", &other),
        })?;
    tx.commit()
        .await
        .map_err(|e| platform::problem::from_db("confirming the reconciliation", &e))?;
    Ok(warp::reply::json(&confirmation).into_response())
}
