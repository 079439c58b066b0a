//! Errors as `application/problem+json` (RFC 9457), for both HTTP edges and the rules they
//! share: each failure has a stable `type` a client can act on, a `detail` for a person, and,
//! for bad input, the `field` and the rule it broke.

use serde::Serialize;
use tokio_postgres::error::SqlState;
use warp::http::StatusCode;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    fn new(kind: &str, title: &'static str, status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{kind}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    /// A field broke a rule: the field's path and the rule, in words.
    pub fn invalid(field: &str, rule: impl Into<String>) -> Self {
        let rule = rule.into();
        let mut p = Self::new(
            "invalid-field",
            "A field is invalid",
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: {rule}"),
        );
        p.field = Some(field.to_owned());
        p
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            "malformed-body",
            "The request body is not valid JSON for this endpoint",
            StatusCode::BAD_REQUEST,
            detail,
        )
    }

    /// A webhook's signature header is missing or cannot be read (the body is not judged).
    pub fn bad_signature(detail: impl Into<String>) -> Self {
        Self::new(
            "signature-missing",
            "The Stripe-Signature header is missing or malformed",
            StatusCode::BAD_REQUEST,
            detail,
        )
    }

    /// The caller is past a rate limit; the detail says until when.
    pub fn too_many(detail: impl Into<String>) -> Self {
        Self::new(
            "too-many-requests",
            "Too many requests",
            StatusCode::TOO_MANY_REQUESTS,
            detail,
        )
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            "body-too-large",
            "The request body is too large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("bodies are limited to {limit_bytes} bytes"),
        )
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(
            "unauthenticated",
            "Authentication failed",
            StatusCode::UNAUTHORIZED,
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new("forbidden", "Not allowed", StatusCode::FORBIDDEN, detail)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new("not-found", "Not found", StatusCode::NOT_FOUND, what)
    }

    /// It was there and is no more (an expired link): asking again will not help.
    pub fn gone(detail: impl Into<String>) -> Self {
        Self::new("gone", "No longer available", StatusCode::GONE, detail)
    }

    pub fn no_route(method: &str, path: &str) -> Self {
        Self::new(
            "no-such-endpoint",
            "No such endpoint",
            StatusCode::NOT_FOUND,
            format!("{method} /v1/{path}"),
        )
    }

    /// The request is well-formed but the current state forbids it (a lifecycle rule, a
    /// regulation, a frozen configuration).
    pub fn conflict(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(
            kind,
            "Refused by a rule of the current state",
            StatusCode::CONFLICT,
            detail,
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            "unavailable",
            "Temporarily unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            detail,
        )
    }

    /// Something broke on our side; the detail carries an incident id found in the logs.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        let incident = uuid::Uuid::now_v7();
        tracing::error!(%incident, context, %error, "internal error");
        Self::new(
            "internal",
            "Internal error",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("incident {incident}: {context} failed; nothing was changed"),
        )
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.detail)
    }
}

/// Maps a database error to what the client did wrong, when it is the client's doing: a
/// constraint names the rule broken. Anything else is internal.
pub fn from_db(context: &str, e: &tokio_postgres::Error) -> Problem {
    let Some(db) = e.as_db_error() else {
        if e.is_closed() {
            return Problem::unavailable(format!(
                "{context}: the database connection was lost, try again"
            ));
        }
        return Problem::internal(context, &crate::error_chain(e));
    };
    let rule = db.constraint().unwrap_or("a constraint").to_owned();
    let detail = format!("{context}: {} ({rule})", db.message());
    match *db.code() {
        SqlState::UNIQUE_VIOLATION => Problem::conflict("duplicate", detail),
        SqlState::EXCLUSION_VIOLATION => Problem::conflict("overlap", detail),
        SqlState::FOREIGN_KEY_VIOLATION => Problem::invalid(
            &rule,
            format!("refers to something that does not exist: {}", db.message()),
        ),
        SqlState::CHECK_VIOLATION => Problem::invalid(&rule, db.message().to_owned()),
        SqlState::NOT_NULL_VIOLATION => {
            Problem::invalid(db.column().unwrap_or("field"), "is required")
        }
        SqlState::TOO_MANY_CONNECTIONS
        | SqlState::ADMIN_SHUTDOWN
        | SqlState::CANNOT_CONNECT_NOW => Problem::unavailable(format!(
            "{context}: the database is overloaded or restarting, try again"
        )),
        SqlState::T_R_SERIALIZATION_FAILURE | SqlState::T_R_DEADLOCK_DETECTED => {
            Problem::unavailable(format!("{context}: concurrent change, try again"))
        }
        _ => Problem::internal(context, &crate::error_chain(e)),
    }
}

impl From<tokio_postgres::Error> for Problem {
    fn from(e: tokio_postgres::Error) -> Self {
        from_db("database", &e)
    }
}

/// The problem as an HTTP response, with its `application/problem+json` content type.
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

/// A pooled connection, or a 503 problem that says the database is unreachable.
pub async fn pooled(pool: &deadpool_postgres::Pool) -> Result<deadpool_postgres::Object, Problem> {
    pool.get()
        .await
        .map_err(|e| Problem::unavailable(format!("the database is unreachable: {e}")))
}

impl std::error::Error for Problem {}
