//! Prize claims by staff over HTTP: the draw engine judges a claim, this edge checks who asks.

use uuid::Uuid;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimInput {
    draw_number: i64,
    validation_number: String,
    check_code: String,
    /// Who the prize is paid to, as the staff member recorded them (name, ID checked).
    claimant: Option<String>,
}

/// `POST /v1/organizations/{org}/raffles/{raffle}/claims` for an organisation's admins and
/// operators: the same rules as `raffle draw claim` (winning
/// number, validation number and check code; the limits per number and per source, here the
/// staff member at their address). 201 with the claim; a refusal is a problem whose `type`
/// is the refusal's code.
pub fn routes(
    state: std::sync::Arc<crate::AppState>,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    warp::post()
        .and(warp::path!(
            "v1" / "organizations" / Uuid / "raffles" / Uuid / "claims"
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
             authorization: Option<String>,
             source: Option<std::net::SocketAddr>,
             body: bytes::Bytes,
             state: std::sync::Arc<crate::AppState>| async move {
                let path = format!("organizations/{org}/raffles/{raffle}/claims");
                let request = crate::RouteRequest {
                    method: &warp::http::Method::POST,
                    path: &path,
                    authorization: authorization.as_deref(),
                    source,
                };
                match serve_claim(&state, org, raffle, &request, &body).await {
                    Ok(record) => {
                        use warp::Reply;
                        warp::reply::with_status(
                            warp::reply::json(&record),
                            warp::http::StatusCode::CREATED,
                        )
                        .into_response()
                    }
                    Err(problem) => platform::problem::problem_response(&problem),
                }
            },
        )
}

async fn serve_claim(
    state: &crate::AppState,
    org: Uuid,
    raffle: Uuid,
    request: &crate::RouteRequest<'_>,
    body: &[u8],
) -> Result<draw_engine::ClaimRecord, platform::problem::Problem> {
    use platform::problem::Problem;
    let actor = crate::authorize(state, request, org, crate::auth::rights::OPERATE).await?;
    let input: ClaimInput = platform::body::parse(body)?;
    let claimant = platform::body::opt_text("claimant", &input.claimant, 200)?;
    let client = platform::problem::pooled(&state.pool).await?;
    let ours = client
        .query_opt(
            "SELECT 1 FROM catalog.raffle_events WHERE id = $1 AND organization_id = $2",
            &[&raffle, &org],
        )
        .await
        .map_err(|e| Problem::internal("finding the raffle", &e))?;
    drop(client);
    if ours.is_none() {
        return Err(Problem::not_found(format!(
            "raffle {raffle} of organization {org}"
        )));
    }
    let source = format!(
        "http:{}@{}",
        actor.sub,
        request
            .source
            .map_or_else(|| "unknown".to_owned(), |s| s.ip().to_string())
    );
    let claim_request = draw_engine::ClaimRequest {
        raffle_id: raffle,
        draw_number: input.draw_number,
        validation_number: input.validation_number,
        check_code: input.check_code,
        claimed_by: match claimant {
            Some(c) => format!("{c} (verified by {})", actor.sub),
            None => actor.sub.clone(),
        },
        source,
    };
    draw_engine::claim(&state.pool, &claim_request)
        .await
        .map_err(|e| match e {
            draw_engine::DrawError::Refused { code, reason } => refusal_problem(code, reason),
            other => Problem::internal("the claim", &other),
        })
}

/// A refused claim as the problem a client can act on: its code is the `type`.
fn refusal_problem(code: &'static str, reason: String) -> platform::problem::Problem {
    use platform::problem::Problem;
    match code {
        "rate-limited" => Problem::too_many(reason),
        "wrong-check-code" => Problem::invalid("check_code", reason),
        "wrong-validation-number" => Problem::invalid("validation_number", reason),
        "not-a-winner" => Problem::invalid("draw_number", reason),
        "unknown-raffle" => Problem::not_found(reason),
        other => Problem::conflict(other, reason),
    }
}
