//! Postgres: the pool, clear connection errors, and the versioned migrations of every schema.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

mod embedded {
    refinery::embed_migrations!("migrations");
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a pooled connection before it is told the database is busy
/// (`DATABASE_POOL_WAIT_MS`): a request that cannot get a connection answers 503 at once
/// instead of queueing behind a stalled one, and a consumer retries its batch.
const POOL_WAIT_DEFAULT: Duration = Duration::from_secs(3);
/// A pooled connection's liveness check on hand-out; a server that does not answer within
/// this is treated as gone.
const POOL_RECYCLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Serialises migration runs of several services starting at once against one database.
const MIGRATION_LOCK_KEY: i64 = 0x7261_6666_6c65_6d67; // "rafflemg"

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "DATABASE_URL is not a valid Postgres URL ({reason}); expected something like postgres://postgres@127.0.0.1:5432/raffle"
    )]
    BadUrl { reason: String },
    #[error(
        "cannot connect to Postgres at {target}: {reason}. Start the server there, or set DATABASE_URL to one that runs (default postgres://postgres@127.0.0.1:5432/raffle)"
    )]
    Unreachable { target: String, reason: String },
    #[error("Postgres at {target} refused: {reason}")]
    Refused { target: String, reason: String },
    #[error("cannot take a connection from the pool for {target}: {reason}")]
    Pool { target: String, reason: String },
    #[error("migrations failed on {target}: {reason}")]
    Migration { target: String, reason: String },
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
}

/// A parsed `DATABASE_URL`, with a description safe to print (no password).
#[derive(Clone)]
pub struct DbTarget {
    pub config: Config,
    pub description: String,
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl DbTarget {
    pub fn parse(url: &str) -> Result<Self, DbError> {
        let mut config = Config::from_str(url).map_err(|e| DbError::BadUrl {
            reason: e.to_string(),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let description = format!(
            "{}:{} database {:?} as user {:?}",
            hosts.join(","),
            port,
            config.get_dbname().unwrap_or("(default)"),
            config.get_user().unwrap_or("(default)"),
        );
        Ok(Self {
            config,
            description,
        })
    }

    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut config = self.config.clone();
        config.dbname(dbname);
        let description = self.description.replace(
            &format!("database {:?}", self.dbname()),
            &format!("database {dbname:?}"),
        );
        Self {
            config,
            description,
        }
    }

    /// One connection outside any pool, its driver task spawned on the current runtime.
    pub async fn connect(&self, application_name: &str) -> Result<Client, DbError> {
        let mut config = self.config.clone();
        config.application_name(application_name);
        let (client, connection) = config.connect(NoTls).await.map_err(|e| self.classify(e))?;
        let target = self.description.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%target, error = %e, "postgres connection closed");
            }
        });
        Ok(client)
    }

    fn classify(&self, e: tokio_postgres::Error) -> DbError {
        let target = self.description.clone();
        match e.as_db_error() {
            Some(db) => DbError::Refused {
                target,
                reason: format!("{} ({})", db.message(), db.code().code()),
            },
            None => DbError::Unreachable {
                target,
                reason: crate::error_chain(&e),
            },
        }
    }

    /// Creates the database when the server runs but the database does not exist yet.
    pub async fn ensure_database(&self) -> Result<(), DbError> {
        match self.connect("raffle-ensure-db").await {
            Ok(_) => Ok(()),
            Err(DbError::Refused { reason, .. }) if reason.contains("(3D000)") => {
                let admin = self
                    .with_dbname("postgres")
                    .connect("raffle-ensure-db")
                    .await?;
                let name = self.dbname().replace('"', "\"\"");
                match admin
                    .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                    .await
                {
                    Ok(()) => Ok(()),
                    // Another process created it meanwhile.
                    Err(e)
                        if e.code()
                            == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(self.classify(e)),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub fn pool(&self, size_max: usize) -> Result<Pool, DbError> {
        self.pool_with_config(size_max, self.config.clone())
    }

    /// A pool whose sessions always run prepared statements with their generic plan, for a
    /// caller with one hot statement whose custom plan would be rebuilt on every execution
    /// (Postgres keeps choosing custom plans for `= ANY($1)` over arrays of varying size).
    pub fn pool_with_generic_plans(
        &self,
        size_max: usize,
        application_name: &str,
    ) -> Result<Pool, DbError> {
        let mut config = self.config.clone();
        // Kept after any options the database URL already gives.
        let options = match config.get_options() {
            Some(given) if !given.is_empty() => {
                format!("{given} -c plan_cache_mode=force_generic_plan")
            }
            _ => "-c plan_cache_mode=force_generic_plan".to_owned(),
        };
        config.application_name(application_name).options(&options);
        self.pool_with_config(size_max, config)
    }

    fn pool_with_config(&self, size_max: usize, config: Config) -> Result<Pool, DbError> {
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size_max)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(pool_wait()))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(POOL_RECYCLE_TIMEOUT))
            .build()
            .map_err(|e| DbError::Pool {
                target: self.description.clone(),
                reason: e.to_string(),
            })
    }

    /// Applies every pending migration, one process at a time. When none is pending nothing
    /// is run, so a service whose role may not change the schema (V18) starts on a database
    /// the migration owner has brought up to date; when some are pending and this role cannot
    /// apply them, the error says who can.
    pub async fn migrate(&self) -> Result<MigrationReport, DbError> {
        let mut client = self.connect("raffle-migrate").await?;
        let known = embedded::migrations::runner().get_migrations().len() as i64;
        if let Some(applied) = applied_migrations(&client).await
            && applied >= known
        {
            return Ok(MigrationReport {
                applied_now: 0,
                total: applied,
            });
        }
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        let result = embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|e| {
                let text = e.to_string();
                let reason = if text.contains("permission denied") || text.contains("must be owner") {
                    format!("{text}; this role may not change the schema: run `raffle migrate` as the migration owner")
                } else {
                    text
                };
                DbError::Migration {
                    target: self.description.clone(),
                    reason,
                }
            });
        // The lock is released with the session if this fails.
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await;
        let report = result?;
        let applied_now = report.applied_migrations().len();
        let total: i64 = client
            .query_one("SELECT count(*) FROM refinery_schema_history", &[])
            .await?
            .get(0);
        Ok(MigrationReport { applied_now, total })
    }
}

/// How many migrations the database records as applied; `None` before the first.
async fn applied_migrations(client: &Client) -> Option<i64> {
    client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .ok()
        .map(|r| r.get(0))
}

/// `DATABASE_POOL_WAIT_MS`, or [`POOL_WAIT_DEFAULT`]; an unparsable value keeps the default
/// (the services check it at start through [`pool_wait_from_env`]).
fn pool_wait() -> Duration {
    pool_wait_from_env()
        .ok()
        .flatten()
        .unwrap_or(POOL_WAIT_DEFAULT)
}

/// `DATABASE_POOL_WAIT_MS` as given: `None` when unset, an error saying what was expected
/// when it is not a whole number of milliseconds from 1 to 60,000.
pub fn pool_wait_from_env() -> Result<Option<Duration>, &'static str> {
    match std::env::var("DATABASE_POOL_WAIT_MS") {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| (1..=60_000).contains(ms))
            .map(|ms| Some(Duration::from_millis(ms)))
            .ok_or("expected a whole number of milliseconds from 1 to 60000"),
    }
}

/// What a migration run did.
#[derive(Debug, Clone, Copy)]
pub struct MigrationReport {
    pub applied_now: usize,
    pub total: i64,
}

/// A fingerprint of every migration this build carries: databases built from the same
/// migrations can be cloned from one template.
pub fn migrations_fingerprint() -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for m in embedded::migrations::runner().get_migrations() {
        hasher.update(m.version().to_le_bytes());
        hasher.update(m.checksum().to_le_bytes());
    }
    hex::encode(&hasher.finalize()[..6])
}
