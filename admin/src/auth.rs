//! Who is calling, and what they may do.
//!
//! A caller is the `sub` of a bearer JWT, verified with RS256 against a configured JWKS file
//! or, for development, HS256 with a configured secret. The `sub` maps to `catalog.users`
//! (the seed's Cognito sub), created on first sight. Rights come from per-organisation
//! memberships with one role each; platform administrators also keep the shared reference
//! data (jurisdictions, regulations, system configuration).

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::problem::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Operator,
    Finance,
    Auditor,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "finance" => Some(Role::Finance),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Finance => "finance",
            Role::Auditor => "auditor",
        }
    }
}

/// Who may do what. Auditors and finance read and change nothing of the setup.
pub mod rights {
    use super::Role::{self, *};
    pub const READ_SETUP: &[Role] = &[Admin, Operator, Finance, Auditor];
    pub const CHANGE_SETUP: &[Role] = &[Admin];
    /// Day-of-event work: close sales, hand out perks, hand number blocks to RSUs.
    pub const OPERATE: &[Role] = &[Admin, Operator];
    pub const READ_AUDIT: &[Role] = &[Admin, Finance, Auditor];
    /// A buyer's order, with their name, e-mail and phone: the staff who answer buyers.
    pub const FIND_ORDERS: &[Role] = &[Admin, Operator, Finance];
}

/// An authenticated caller.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    pub user_id: Uuid,
    pub sub: String,
    pub display_name: Option<String>,
    pub is_platform_admin: bool,
    /// `http` or `cli`: how the request came in, for the critical events.
    pub channel: &'static str,
}

impl Actor {
    /// The caller as critical events name them.
    pub fn who(&self) -> catalog::audit::Actor {
        catalog::audit::Actor {
            sub: self.sub.clone(),
            channel: self.channel,
        }
    }
}

enum Keys {
    Hs256(DecodingKey),
    Jwks(JwkSet),
}

/// How bearer tokens are checked (README "Configuration").
pub struct Verifier {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
}

impl Verifier {
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            keys: Keys::Hs256(DecodingKey::from_secret(secret)),
            issuer: None,
            audience: None,
        }
    }

    pub fn jwks(json: &str) -> Result<Self, String> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| format!("JWKS is not a valid key set: {e}"))?;
        if set.keys.is_empty() {
            return Err("JWKS holds no keys".into());
        }
        Ok(Self {
            keys: Keys::Jwks(set),
            issuer: None,
            audience: None,
        })
    }

    pub fn with_issuer(mut self, issuer: Option<String>) -> Self {
        self.issuer = issuer;
        self
    }

    pub fn with_audience(mut self, audience: Option<String>) -> Self {
        self.audience = audience;
        self
    }

    /// From `ADMIN_JWKS_FILE` (RS256) or `ADMIN_JWT_HS256_SECRET`, plus optional
    /// `ADMIN_JWT_ISSUER` and `ADMIN_JWT_AUDIENCE`.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let verifier = match (var("ADMIN_JWKS_FILE"), var("ADMIN_JWT_HS256_SECRET")) {
            (Some(path), _) => {
                let json = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read ADMIN_JWKS_FILE {path:?}: {e}"))?;
                Self::jwks(&json).map_err(|e| format!("ADMIN_JWKS_FILE {path:?}: {e}"))?
            }
            (None, Some(secret)) if secret.len() >= 32 => Self::hs256(secret.as_bytes()),
            (None, Some(_)) => {
                return Err("ADMIN_JWT_HS256_SECRET must be at least 32 bytes".into());
            }
            (None, None) => {
                return Err("set ADMIN_JWKS_FILE (RS256, production) or ADMIN_JWT_HS256_SECRET (HS256, development)".into());
            }
        };
        Ok(verifier
            .with_issuer(var("ADMIN_JWT_ISSUER"))
            .with_audience(var("ADMIN_JWT_AUDIENCE")))
    }

    /// Checks the `Authorization: Bearer …` header; returns the token's subject and name.
    pub fn verify(&self, authorization: Option<&str>) -> Result<(String, Option<String>), Problem> {
        let header = authorization
            .ok_or_else(|| Problem::unauthenticated("missing Authorization: Bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| {
                Problem::unauthenticated("Authorization header must be 'Bearer <token>'")
            })?
            .trim();
        // What the parser says stays in the server's log: a caller learns only what to fix.
        let jwt_header = decode_header(token).map_err(|e| {
            tracing::debug!(error = %e, "bearer token header does not parse");
            Problem::unauthenticated(
                "token is malformed: a JWT is three dot-separated parts, header.payload.signature",
            )
        })?;
        let (key, algorithm) = match &self.keys {
            Keys::Hs256(key) => (key.clone(), Algorithm::HS256),
            Keys::Jwks(set) => {
                let jwk = match &jwt_header.kid {
                    Some(kid) => set.find(kid),
                    None if set.keys.len() == 1 => set.keys.first(),
                    None => None,
                }
                .ok_or_else(|| {
                    Problem::unauthenticated("token's key id is not in the configured key set")
                })?;
                let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                    tracing::warn!(kid = ?jwt_header.kid, error = %e, "a key of the configured JWKS is unusable");
                    Problem::unauthenticated("token's key cannot be used to verify it")
                })?;
                (key, Algorithm::RS256)
            }
        };
        if jwt_header.alg != algorithm {
            return Err(Problem::unauthenticated(format!(
                "token is signed with {:?}; this server accepts {algorithm:?}",
                jwt_header.alg
            )));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        validation.validate_nbf = true;
        // A configured issuer or audience is required, not only checked when present: a
        // token without `iss` / `aud` was accepted before.
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            let why = match e.kind() {
                ExpiredSignature => "token has expired".to_owned(),
                InvalidSignature => "token signature does not verify".to_owned(),
                InvalidIssuer => "token issuer is not accepted".to_owned(),
                InvalidAudience => "token audience is not accepted".to_owned(),
                ImmatureSignature => "token is not valid yet (nbf)".to_owned(),
                MissingRequiredClaim(claim) => format!("token lacks the required claim {claim:?}"),
                other => {
                    tracing::debug!(error = ?other, "bearer token refused");
                    "token claims do not verify".to_owned()
                }
            };
            Problem::unauthenticated(why)
        })?;
        if data.claims.sub.is_empty() || data.claims.sub.len() > 255 {
            return Err(Problem::unauthenticated(
                "token subject must be 1-255 characters",
            ));
        }
        Ok((data.claims.sub, data.claims.name))
    }
}

/// Makes `sub` a platform administrator (a user created if new), who keeps the shared
/// reference data; returns them as they are now. Only the platform's operators can run it:
/// it needs the database, not the API.
pub async fn grant_platform_admin(
    client: &impl GenericClient,
    sub: &str,
    display_name: Option<&str>,
    channel: &'static str,
) -> Result<Actor, Problem> {
    let actor = resolve_actor(client, sub, display_name, channel).await?;
    client
        .execute(
            "UPDATE catalog.users SET is_platform_admin = true WHERE id = $1",
            &[&actor.user_id],
        )
        .await?;
    Ok(Actor {
        is_platform_admin: true,
        ..actor
    })
}

/// The caller's user row, created on first sight; refuses deactivated users.
pub async fn resolve_actor(
    client: &impl GenericClient,
    sub: &str,
    display_name: Option<&str>,
    channel: &'static str,
) -> Result<Actor, Problem> {
    let row = client
        .query_one(
            "INSERT INTO catalog.users (cognito_sub, display_name, last_login) VALUES ($1, $2, now())
             ON CONFLICT (cognito_sub) DO UPDATE
                 SET last_login = now(), display_name = coalesce(EXCLUDED.display_name, users.display_name)
             RETURNING id, is_active, is_platform_admin, display_name",
            &[&sub, &display_name],
        )
        .await?;
    if !row.get::<_, bool>(1) {
        return Err(Problem::forbidden(format!("user {sub} is deactivated")));
    }
    Ok(Actor {
        user_id: row.get(0),
        sub: sub.to_owned(),
        display_name: row.get(3),
        is_platform_admin: row.get(2),
        channel,
    })
}

/// The caller's role in `organization_id`, if it is one of `allowed`; otherwise 403 naming why.
/// Nobody reads or changes another organisation's data.
pub async fn require(
    client: &impl GenericClient,
    actor: &Actor,
    organization_id: Uuid,
    allowed: &[Role],
) -> Result<Role, Problem> {
    let row = client
        .query_opt(
            "SELECT role FROM catalog.organization_memberships WHERE user_id = $1 AND organization_id = $2",
            &[&actor.user_id, &organization_id],
        )
        .await?;
    let Some(row) = row else {
        return Err(Problem::forbidden(format!(
            "{} is not a member of organization {organization_id}",
            actor.sub
        )));
    };
    let text: String = row.get(0);
    let role = Role::parse(&text).ok_or_else(|| Problem::internal("membership role", &text))?;
    if allowed.contains(&role) {
        Ok(role)
    } else {
        Err(Problem::forbidden(format!(
            "role {} in organization {organization_id} may not do this (needs one of: {})",
            role.as_str(),
            allowed
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

pub fn require_platform_admin(actor: &Actor) -> Result<(), Problem> {
    if actor.is_platform_admin {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "{} is not a platform administrator; jurisdictions, regulations and system configuration are theirs",
            actor.sub
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &[u8] = b"a-development-secret-of-32-bytes!";

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("sign")
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn strict() -> Verifier {
        Verifier::hs256(SECRET)
            .with_issuer(Some("https://id.example".into()))
            .with_audience(Some("raffle-admin".into()))
    }

    fn refusal(v: &Verifier, t: &str) -> String {
        v.verify(Some(&format!("Bearer {t}")))
            .expect_err("refused")
            .detail
    }

    #[test]
    fn a_configured_issuer_and_audience_are_required_not_only_checked() {
        let v = strict();
        let good = json!({"sub": "ada", "exp": now() + 600, "iss": "https://id.example", "aud": "raffle-admin"});
        assert_eq!(
            v.verify(Some(&format!("Bearer {}", token(good))))
                .expect("accepted")
                .0,
            "ada"
        );
        let no_aud = json!({"sub": "ada", "exp": now() + 600, "iss": "https://id.example"});
        assert!(refusal(&v, &token(no_aud)).contains("\"aud\""));
        let no_iss = json!({"sub": "ada", "exp": now() + 600, "aud": "raffle-admin"});
        assert!(refusal(&v, &token(no_iss)).contains("\"iss\""));
        let other_aud = json!({"sub": "ada", "exp": now() + 600, "iss": "https://id.example", "aud": "billing"});
        assert_eq!(
            refusal(&v, &token(other_aud)),
            "token audience is not accepted"
        );
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let v = Verifier::hs256(SECRET);
        let later = json!({"sub": "ada", "exp": now() + 7200, "nbf": now() + 3600});
        assert_eq!(refusal(&v, &token(later)), "token is not valid yet (nbf)");
        let within_leeway = json!({"sub": "ada", "exp": now() + 7200, "nbf": now() + 10});
        assert!(
            v.verify(Some(&format!("Bearer {}", token(within_leeway))))
                .is_ok()
        );
    }

    #[test]
    fn refusals_do_not_echo_the_parsers_internals() {
        let v = Verifier::hs256(SECRET);
        for junk in [
            "not-a-token",
            "a.b.c",
            "eyJhbGciOiJIUzI1NiJ9.e30.",
            "\u{0}\u{1}",
        ] {
            let detail = refusal(&v, junk).to_lowercase();
            assert!(
                ["error", "base64", "json", "utf", "invalid"]
                    .iter()
                    .all(|internal| !detail.contains(internal)),
                "{junk:?}: {detail}"
            );
        }
    }
}
