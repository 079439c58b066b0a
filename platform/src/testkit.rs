//! The test harness: each test gets its own fresh database, cloned from a template built once
//! per set of migrations, and its own topic names on the real broker. Tests run in parallel
//! (nextest runs each in its own process); nothing here mocks Postgres or Kafka.
//!
//! Postgres comes from `DATABASE_URL` (the server; the database name is ignored). The broker
//! comes from `KAFKA_BROKERS`; when unset the harness uses, or starts, the Tansu of the test
//! state directory (`target/test-stack`), serialised across test processes by a Postgres
//! advisory lock.

use std::path::PathBuf;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::Client;

use crate::config::{StackConfig, TopicNames};
use crate::db::{DbTarget, migrations_fingerprint};
use crate::{devstack, kafka};

const HARNESS_LOCK_KEY: i64 = 0x7261_6666_6c65_7473; // "rafflets"

/// Everything one test owns.
pub struct TestEnv {
    pub db: DbTarget,
    /// This test's database as a URL, for child processes (`raffle allocator run`).
    pub database_url: String,
    pub pool: Pool,
    pub brokers: String,
    pub topics: TopicNames,
    /// A prefix unique to this test, for consumer groups and other names.
    pub unique: String,
    db_name: String,
    admin: DbTarget,
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("test harness: {what}: {e}")
}

async fn admin_client(admin: &DbTarget) -> Client {
    admin
        .connect("raffle-testkit")
        .await
        .unwrap_or_else(|e| fail("connecting to Postgres (set DATABASE_URL)", e))
}

impl TestEnv {
    /// A fresh, migrated database and fresh topics with the production partition counts.
    pub async fn new() -> TestEnv {
        crate::telemetry::init();
        let url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| crate::config::DEFAULT_DATABASE_URL.to_owned());
        let server = DbTarget::parse(&url).unwrap_or_else(|e| fail("DATABASE_URL", e));
        let admin = server.with_dbname("postgres");
        let template = format!("raffle_tpl_{}", migrations_fingerprint());
        let client = admin_client(&admin).await;

        // One process builds the template; the others wait for it.
        client
            .execute("SELECT pg_advisory_lock($1)", &[&HARNESS_LOCK_KEY])
            .await
            .unwrap_or_else(|e| fail("locking the harness", e));
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .unwrap_or_else(|e| fail("looking up the template database", e))
            .is_some();
        if !exists {
            let building = format!("{template}_building");
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
                .await;
            client
                .batch_execute(&format!("CREATE DATABASE {building}"))
                .await
                .unwrap_or_else(|e| fail("creating the template database", e));
            server
                .with_dbname(&building)
                .migrate()
                .await
                .unwrap_or_else(|e| fail("migrating the template database", e));
            client
                .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
                .await
                .unwrap_or_else(|e| fail("publishing the template database", e));
        }
        let brokers = match std::env::var("KAFKA_BROKERS")
            .ok()
            .filter(|b| !b.is_empty())
        {
            Some(brokers) => brokers,
            None => {
                let mut config =
                    StackConfig::from_env().unwrap_or_else(|e| fail("configuration", e));
                config.kafka_brokers = None;
                config.state_dir =
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-stack");
                tokio::task::spawn_blocking(move || devstack::ensure_broker(&config))
                    .await
                    .unwrap_or_else(|e| fail("starting Tansu", e))
                    .unwrap_or_else(|e| fail("starting Tansu", e))
                    .brokers
            }
        };
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&HARNESS_LOCK_KEY])
            .await
            .unwrap_or_else(|e| fail("unlocking the harness", e));

        let unique = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let db_name = format!("raffle_test_{unique}");
        let mut attempt = 0;
        loop {
            match client
                .batch_execute(&format!("CREATE DATABASE {db_name} TEMPLATE {template}"))
                .await
            {
                Ok(()) => break,
                // "source database is being accessed by other users": a moment of contention.
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "retrying CREATE DATABASE");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => fail("creating the test database", e),
            }
        }
        let db = server.with_dbname(&db_name);
        let database_url = with_database(&url, &db_name);
        // Tests run two at a time against one server (100 connections): keep pools small.
        let pool = db.pool(8).unwrap_or_else(|e| fail("building the pool", e));

        let topics = TopicNames::with_prefix(&format!("{unique}."));
        kafka::ensure_topics(&brokers, &topics.all(), 1)
            .await
            .unwrap_or_else(|e| fail("creating the test topics", e));
        TestEnv {
            db,
            database_url,
            pool,
            brokers,
            topics,
            unique,
            db_name,
            admin,
        }
    }

    /// A plain connection to this test's database.
    pub async fn client(&self) -> Client {
        self.db
            .connect("raffle-test")
            .await
            .unwrap_or_else(|e| fail("connecting to the test database", e))
    }
}

/// A login role of this test that is a member of the service role `group` (V18), with
/// what a service started under it needs: its database target and URL.
pub struct ServiceLogin {
    pub role: String,
    pub db: DbTarget,
    pub database_url: String,
}

impl TestEnv {
    /// Creates (once) a login role for this test in the service role `group`
    /// (`raffle_ingest`, `raffle_allocator`, ...): what a deployment runs each service as.
    pub async fn service_login(&self, group: &str) -> ServiceLogin {
        let role = format!("{}_{}", self.unique, group.trim_start_matches("raffle_"));
        let client = self.client().await;
        client
            .batch_execute(&format!(
                "DO $$ BEGIN
                     IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                         CREATE ROLE \"{role}\" LOGIN IN ROLE {group};
                     END IF;
                 END $$;"
            ))
            .await
            .unwrap_or_else(|e| fail("creating a service login", e));
        let mut config = self.db.config.clone();
        config.user(&role);
        let db = DbTarget {
            config,
            description: format!("{} as {role}", self.db.description),
        };
        let database_url = match self.database_url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                format!("{scheme}://{role}@{host}")
            }
            None => self.database_url.clone(),
        };
        ServiceLogin {
            role,
            db,
            database_url,
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let server = match base.find("://").map(|i| i + 3) {
        Some(start) => match base[start..].find('/') {
            Some(slash) => &base[..start + slash],
            None => base,
        },
        None => base,
    };
    format!("{server}/{name}{query}")
}

impl Drop for TestEnv {
    /// Drops the test's database. Runs on its own thread and runtime: `Drop` cannot await.
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.db_name.clone();
        let logins = format!("{}\\_%", self.unique);
        let pool = self.pool.clone();
        let _ = std::thread::spawn(move || {
            pool.close();
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(client) = admin.connect("raffle-testkit-drop").await {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    // The test's service logins (roles outlive databases).
                    if let Ok(rows) = client
                        .query(
                            "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
                            &[&logins],
                        )
                        .await
                    {
                        for row in rows {
                            let role: String = row.get(0);
                            let _ = client
                                .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
                                .await;
                        }
                    }
                }
            });
        })
        .join();
    }
}
