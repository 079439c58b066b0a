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
