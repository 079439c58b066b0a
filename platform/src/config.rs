//! Configuration of the stack, read from the environment once (README "Configuration").

use std::path::PathBuf;

use schemas::topics;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/raffle";

/// Where Postgres and the broker are, and how the topics are named and partitioned.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `KAFKA_BROKERS`; when unset the dev stack starts Tansu.
    pub kafka_brokers: Option<String>,
    /// `RAFFLE_STATE_DIR`: where the dev stack keeps Tansu's data, log and pid.
    pub state_dir: PathBuf,
    /// `RAFFLE_TANSU_PORT`: a fixed port for Tansu instead of a free one.
    pub tansu_port: Option<u16>,
    pub topics: TopicNames,
}

/// Topic names (with the deployment's prefix, `RAFFLE_TOPIC_PREFIX`) and partition counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    pub sales: String,
    pub tickets: String,
    pub dlq: String,
    /// `RAFFLE_SALES_PARTITIONS`: range partitions hash onto these.
    pub sales_partitions: i32,
    /// `RAFFLE_TICKETS_PARTITIONS`.
    pub tickets_partitions: i32,
    pub dlq_partitions: i32,
    /// `RAFFLE_TOPIC_REPLICATION`: 1 on a single dev broker, 3 on the compose cluster.
    pub replication: i32,
}

impl TopicNames {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            sales: format!("{prefix}{}", topics::SALES),
            tickets: format!("{prefix}{}", topics::TICKETS),
            dlq: format!("{prefix}{}", topics::DLQ),
            sales_partitions: 8,
            tickets_partitions: 4,
            dlq_partitions: 1,
            replication: 1,
        }
    }

    /// Every topic with its partition count, for creation and health checks.
    pub fn all(&self) -> [(&str, i32); 3] {
        [
            (&self.sales, self.sales_partitions),
            (&self.tickets, self.tickets_partitions),
            (&self.dlq, self.dlq_partitions),
        ]
    }
}

/// The largest amount of money, in minor units, that any input may name (a price, a prize, a
/// jackpot, a fee, an RSU sale's total): `RAFFLE_AMOUNT_MINOR_MAX`, by default
/// 100,000,000,000 (a billion in a currency of cents; the record 50/50 was $15.2M). Sums of
/// such amounts stay far from `i64::MAX`, and every sum is checked besides.
pub fn amount_minor_max() -> i64 {
    static MAX: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        amount_minor_max_from_env()
            .ok()
            .flatten()
            .unwrap_or(AMOUNT_MINOR_MAX_DEFAULT)
    })
}

pub const AMOUNT_MINOR_MAX_DEFAULT: i64 = 100_000_000_000;

fn amount_minor_max_from_env() -> Result<Option<i64>, ConfigError> {
    let reason = "expected a whole number of minor units from 1 to 1000000000000000";
    match parse_var::<i64>("RAFFLE_AMOUNT_MINOR_MAX", reason)? {
        Some(n) if !(1..=1_000_000_000_000_000).contains(&n) => Err(ConfigError {
            name: "RAFFLE_AMOUNT_MINOR_MAX",
            value: n.to_string(),
            reason: reason.to_owned(),
        }),
        other => Ok(other),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration variable {name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_var<T: std::str::FromStr>(
    name: &'static str,
    reason: &str,
) -> Result<Option<T>, ConfigError> {
    match var(name) {
        None => Ok(None),
        Some(value) => value.trim().parse().map(Some).map_err(|_| ConfigError {
            name,
            value,
            reason: reason.to_owned(),
        }),
    }
}

impl StackConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut topics = TopicNames::with_prefix(&var("RAFFLE_TOPIC_PREFIX").unwrap_or_default());
        let partitions = "expected a whole number between 1 and 1000";
        for (name, slot) in [
            ("RAFFLE_SALES_PARTITIONS", &mut topics.sales_partitions),
            ("RAFFLE_TICKETS_PARTITIONS", &mut topics.tickets_partitions),
            ("RAFFLE_TOPIC_REPLICATION", &mut topics.replication),
        ] {
            if let Some(n) = parse_var::<i32>(name, partitions)? {
                if !(1..=1000).contains(&n) {
                    return Err(ConfigError {
                        name,
                        value: n.to_string(),
                        reason: partitions.to_owned(),
                    });
                }
                *slot = n;
            }
        }
        amount_minor_max_from_env()?;
        if let Some(protocol) = var("KAFKA_SECURITY_PROTOCOL") {
            let known = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
            if !known.contains(&protocol.to_lowercase().as_str()) {
                return Err(ConfigError {
                    name: "KAFKA_SECURITY_PROTOCOL",
                    value: protocol,
                    reason: "expected one of plaintext, ssl, sasl_plaintext, sasl_ssl".into(),
                });
            }
        }
        if let Err(reason) = crate::db::pool_wait_from_env() {
            return Err(ConfigError {
                name: "DATABASE_POOL_WAIT_MS",
                value: var("DATABASE_POOL_WAIT_MS").unwrap_or_default(),
                reason: reason.to_owned(),
            });
        }
        Ok(Self {
            database_url: var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            kafka_brokers: var("KAFKA_BROKERS"),
            state_dir: var("RAFFLE_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".stack")),
            tansu_port: parse_var("RAFFLE_TANSU_PORT", "expected a TCP port number 1-65535")?,
            topics,
        })
    }
}
