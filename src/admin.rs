//! `raffle admin …`: the admin API server and its command-line twin.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use platform::StackConfig;
use platform::db::DbTarget;

#[derive(Subcommand)]
pub enum AdminAction {
    /// Serve the admin API (`/v1`) on RAFFLE_ADMIN_ADDR (default 127.0.0.1:8081).
    Serve,
    /// Call any admin endpoint without HTTP, as a named user, with the same rules and
    /// audit trail: `raffle admin call --as alice POST organizations --body '{…}'`.
    Call {
        /// The user (token subject) to act as.
        #[arg(long = "as")]
        sub: String,
        /// HTTP method: GET, POST, PATCH, PUT, DELETE.
        method: String,
        /// Path under /v1, e.g. `organizations/<id>/raffles`.
        path: String,
        /// JSON body.
        #[arg(long, default_value = "")]
        body: String,
        /// Query parameters, `name=value`, repeatable.
        #[arg(long = "query", short = 'q')]
        query: Vec<String>,
    },
    /// Make a user a platform administrator (keeps jurisdictions, regulations and system
    /// configuration). Needs database access, so only the platform's operators can run it.
    GrantPlatformAdmin { sub: String },
}

async fn pool(config: &StackConfig) -> anyhow::Result<deadpool_postgres::Pool> {
    let db = DbTarget::parse(&config.database_url)?;
    db.ensure_database().await?;
    db.migrate().await?;
    Ok(db.pool(16)?)
}

pub async fn run(action: AdminAction) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    match action {
        AdminAction::Serve => {
            let verifier = admin::auth::Verifier::from_env().map_err(anyhow::Error::msg)?;
            let addr: SocketAddr = std::env::var("RAFFLE_ADMIN_ADDR")
                .unwrap_or_else(|_| "127.0.0.1:8081".into())
                .parse()
                .context("RAFFLE_ADMIN_ADDR must be an address like 127.0.0.1:8081")?;
            let state = Arc::new(admin::AppState {
                pool: pool(&config).await?,
                verifier,
            });
            let tls = platform::tls::server_config_from_env(
                "RAFFLE_ADMIN_TLS_CERT",
                "RAFFLE_ADMIN_TLS_KEY",
            )?;
            let listener = admin::bind(addr).await.map_err(anyhow::Error::msg)?;
            println!(
                "admin API listening on {}://{}/v1",
                if tls.is_some() { "https" } else { "http" },
                listener.local_addr()?
            );
            admin::serve_tls(state, listener, platform::service::termination(), tls).await;
            Ok(())
        }
        AdminAction::Call {
            sub,
            method,
            path,
            body,
            query,
        } => {
            let pool = pool(&config).await?;
            let client = pool.get().await?;
            let actor = admin::auth::resolve_actor(&**client, &sub, None, "cli")
                .await
                .map_err(|p| anyhow::anyhow!("{p}"))?;
            drop(client);
            let method: warp::http::Method = method
                .to_uppercase()
                .parse()
                .context("METHOD must be GET, POST, PATCH, PUT or DELETE")?;
            let mut params = HashMap::new();
            for q in query {
                let (k, v) = q.split_once('=').context("--query takes name=value")?;
                params.insert(k.to_owned(), v.to_owned());
            }
            // The CLI has no key source; it acts with database access, which is the trust.
            let state = admin::AppState {
                pool,
                verifier: admin::auth::Verifier::hs256(b"cli-has-no-bearer-tokens"),
            };
            match admin::call(&state, &actor, &method, &path, &params, body.as_bytes()).await {
                Ok((_, value)) => {
                    println!("{}", serde_json::to_string_pretty(&value)?);
                    Ok(())
                }
                Err(problem) => {
                    println!("{}", serde_json::to_string_pretty(&problem)?);
                    bail!("{problem}")
                }
            }
        }
        AdminAction::GrantPlatformAdmin { sub } => {
            let pool = pool(&config).await?;
            let client = pool.get().await?;
            let actor = admin::auth::grant_platform_admin(&**client, &sub, None, "cli")
                .await
                .map_err(|p| anyhow::anyhow!("{p}"))?;
            admin::audit::record(
                &**client,
                Some(&actor),
                admin::audit::Event::info(
                    None,
                    "PLATFORM_ADMIN_GRANTED",
                    format!("{sub} made a platform administrator"),
                )
                .severity(admin::audit::Severity::Warning),
            )
            .await?;
            println!("{sub} is a platform administrator");
            Ok(())
        }
    }
}
