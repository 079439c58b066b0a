//! `raffle stack …` and `raffle migrate`: presentation of `platform::devstack`.

use anyhow::Context;
use clap::Subcommand;
use platform::StackConfig;
use platform::db::DbTarget;
use platform::devstack;

#[derive(Subcommand)]
pub enum StackAction {
    /// Start what is not running, apply migrations, create topics, print each part's health.
    Up {
        /// Print the health as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Stop the Tansu this state directory started.
    Down,
    /// Print `KAFKA_BROKERS=…` for the running stack, for `eval` in scripts.
    Env,
}

pub async fn run(action: StackAction) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    match action {
        StackAction::Up { json } => {
            let health = devstack::up(&config).await?;
            if json {
                let topics: Vec<_> = health
                    .kafka
                    .topics
                    .iter()
                    .map(|(name, partitions)| serde_json::json!({"name": name, "partitions": partitions}))
                    .collect();
                let out = serde_json::json!({
                    "postgres": {"target": health.postgres, "version": health.postgres_version,
                                 "migrations_applied_now": health.migrations.applied_now,
                                 "migrations_total": health.migrations.total, "healthy": true},
                    "broker": {"brokers": health.broker.brokers, "pid": health.broker.pid,
                               "started_by_stack": health.broker.started_here,
                               "broker_count": health.kafka.broker_count, "healthy": true,
                               "restarted_because": health.restarted},
                    "topics": topics,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "postgres  healthy  {} (server {})",
                    health.postgres, health.postgres_version
                );
                println!(
                    "          migrations: {} applied in all, {} just now",
                    health.migrations.total, health.migrations.applied_now
                );
                let origin = match (health.broker.started_here, health.broker.pid) {
                    (true, Some(pid)) => {
                        format!("Tansu pid {pid}, data in {}", config.state_dir.display())
                    }
                    _ => "from KAFKA_BROKERS".to_owned(),
                };
                if let Some(why) = &health.restarted {
                    println!("broker    RESTARTED: it listened but did not work ({why})");
                }
                println!(
                    "broker    healthy  {} ({origin}), {} broker(s), a record produced and read back",
                    health.broker.brokers, health.kafka.broker_count
                );
                for (name, partitions) in &health.kafka.topics {
                    println!("topic     ready    {name} ({partitions} partitions)");
                }
                println!(
                    "stack is up. Use it from a shell with: export KAFKA_BROKERS={}",
                    health.broker.brokers
                );
            }
            Ok(())
        }
        StackAction::Down => {
            match devstack::stop_tansu(&config.state_dir) {
                Some(pid) => println!("stopped Tansu (pid {pid})"),
                None => println!("no Tansu of {} is running", config.state_dir.display()),
            }
            Ok(())
        }
        StackAction::Env => {
            let brokers = match &config.kafka_brokers {
                Some(b) => b.clone(),
                None => devstack::running_tansu(&config.state_dir)
                    .map(|p| p.brokers)
                    .context("the stack is not up: run `raffle stack up` first")?,
            };
            println!("KAFKA_BROKERS={brokers}");
            Ok(())
        }
    }
}

pub async fn migrate() -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    let db = DbTarget::parse(&config.database_url)?;
    db.ensure_database().await?;
    let report = db.migrate().await?;
    println!(
        "{}: {} migrations in all, {} applied now",
        db.description, report.total, report.applied_now
    );
    Ok(())
}

/// `raffle health URL [--ca FILE]`: GET the URL (http, or https trusting `ca` or the system's
/// roots); success only on 200.
pub async fn health(url: &str, ca: Option<&std::path::Path>) -> anyhow::Result<()> {
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => anyhow::bail!(
            "{url:?}: give an http:// or https:// URL, like http://127.0.0.1:8082/health/ready"
        ),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/health"),
    };
    let addr = tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("cannot resolve {authority:?}"))?
        .next()
        .with_context(|| format!("{authority:?} resolves to no address"))?;
    let ask = async {
        if !tls {
            return platform::http_client::request(addr, "GET", path, &[], b"")
                .await
                .with_context(|| format!("cannot reach {url}"));
        }
        let ca_pem = match ca {
            Some(p) => Some(std::fs::read(p).with_context(|| format!("--ca {}", p.display()))?),
            None => None,
        };
        let config = platform::tls::client_config(ca_pem.as_deref())?;
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .with_context(|| format!("server name {host:?}"))?;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {url}"))?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let head = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        if let Err(e) = stream.read_to_end(&mut raw).await
            && raw.is_empty()
        {
            return Err(e).with_context(|| format!("reading from {url}"));
        }
        Ok(platform::http_client::parse_response(&raw)?)
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), ask)
        .await
        .with_context(|| format!("{url} did not answer within 5 s"))??;
    println!("{}", String::from_utf8_lossy(&answer.body));
    anyhow::ensure!(answer.status == 200, "{url} answered {}", answer.status);
    Ok(())
}
