//! Kafka clients: the idempotent producer, topic administration and the health check.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureProducer;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error(
        "cannot reach the Kafka broker at {brokers}: {reason}. Check KAFKA_BROKERS, or unset it to let the project start Tansu"
    )]
    Unreachable { brokers: String, reason: String },
    #[error("cannot create Kafka client for {brokers}: {reason}")]
    Client { brokers: String, reason: String },
    #[error("cannot create topic {topic} on {brokers}: {reason}")]
    CreateTopic {
        topic: String,
        brokers: String,
        reason: String,
    },
    #[error("topic {topic} on {brokers} has {found} partitions, expected {expected}")]
    PartitionCount {
        topic: String,
        brokers: String,
        found: i32,
        expected: i32,
    },
}

/// How clients authenticate to the brokers and encrypt the traffic, from the environment:
/// `KAFKA_SECURITY_PROTOCOL` (`plaintext`, the default; `ssl`, `sasl_plaintext`, `sasl_ssl`),
/// `KAFKA_SASL_MECHANISM` (`SCRAM-SHA-512` by default; `SCRAM-SHA-256`, `PLAIN`),
/// `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`, and `KAFKA_SSL_CA_LOCATION` (the brokers'
/// CA, PEM; the system's roots when unset).
fn security_settings() -> Vec<(&'static str, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut settings = Vec::new();
    let Some(protocol) = var("KAFKA_SECURITY_PROTOCOL") else {
        return settings;
    };
    settings.push(("security.protocol", protocol.to_lowercase()));
    if protocol.to_lowercase().starts_with("sasl") {
        settings.push((
            "sasl.mechanism",
            var("KAFKA_SASL_MECHANISM").unwrap_or_else(|| "SCRAM-SHA-512".into()),
        ));
        if let Some(user) = var("KAFKA_SASL_USERNAME") {
            settings.push(("sasl.username", user));
        }
        if let Some(password) = var("KAFKA_SASL_PASSWORD") {
            settings.push(("sasl.password", password));
        }
    }
    if let Some(ca) = var("KAFKA_SSL_CA_LOCATION") {
        settings.push(("ssl.ca.location", ca));
    }
    settings
}

/// Settings every client shares.
pub fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in security_settings() {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", brokers)
        .set("socket.connection.setup.timeout.ms", "5000")
        // librdkafka backs off up to 10 s between reconnects by default: a broker that is back
        // would wait that long for its clients. 1 s keeps recovery within a second or two.
        .set("reconnect.backoff.max.ms", "1000")
        .set("log_level", "4");
    config
}

/// Idempotent producer with acks from all in-sync replicas: a message the broker acknowledged
/// is durable and a retried send is not duplicated. `message_timeout_ms` bounds how long a send
/// may wait before the caller answers 503.
pub fn producer(brokers: &str, message_timeout_ms: u64) -> Result<FutureProducer, KafkaError> {
    base_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "none")
        // Fuller produce requests: the broker's and librdkafka's cost is largely per request.
        // 10 ms (from 5) gave more orders/s under load at the same p99 at 1,000 webhooks/s.
        .set("linger.ms", "10")
        .set("message.timeout.ms", message_timeout_ms.to_string())
        .create()
        .map_err(|e| KafkaError::Client {
            brokers: brokers.to_owned(),
            reason: e.to_string(),
        })
}

/// What the broker reports about itself and the topics asked for.
#[derive(Debug, Clone)]
pub struct BrokerHealth {
    pub brokers: String,
    pub broker_count: usize,
    /// (topic, partitions); 0 partitions when the topic does not exist.
    pub topics: Vec<(String, i32)>,
}

/// Asks the broker for metadata; fails with a clear message within `timeout`.
pub async fn health(
    brokers: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<BrokerHealth, KafkaError> {
    let brokers = brokers.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            base_config(&brokers)
                .create()
                .map_err(|e| KafkaError::Client {
                    brokers: brokers.clone(),
                    reason: e.to_string(),
                })?;
        let metadata =
            consumer
                .fetch_metadata(None, timeout)
                .map_err(|e| KafkaError::Unreachable {
                    brokers: brokers.clone(),
                    reason: e.to_string(),
                })?;
        let found = topics
            .iter()
            .map(|name| {
                let partitions = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name)
                    .map(|t| t.partitions().len() as i32)
                    .unwrap_or(0);
                (name.clone(), partitions)
            })
            .collect();
        Ok(BrokerHealth {
            brokers: brokers.clone(),
            broker_count: metadata.brokers().len(),
            topics: found,
        })
    })
    .await
    .map_err(|e| KafkaError::Client {
        brokers: "?".into(),
        reason: e.to_string(),
    })?
}

/// Creates the topics that do not exist yet and checks every one has its partition count.
pub async fn ensure_topics(
    brokers: &str,
    topics: &[(&str, i32)],
    replication: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(brokers)
            .create()
            .map_err(|e| KafkaError::Client {
                brokers: brokers.to_owned(),
                reason: e.to_string(),
            })?;
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(replication))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new_topics.iter(), &options)
        .await
        .map_err(|e| KafkaError::Unreachable {
            brokers: brokers.to_owned(),
            reason: e.to_string(),
        })?;
    for result in results {
        if let Err((topic, code)) = result
            && code != RDKafkaErrorCode::TopicAlreadyExists
        {
            return Err(KafkaError::CreateTopic {
                topic,
                brokers: brokers.to_owned(),
                reason: code.to_string(),
            });
        }
    }
    // Metadata can lag creation by a moment.
    let names: Vec<&str> = topics.iter().map(|(n, _)| *n).collect();
    let mut last = None;
    for _ in 0..50 {
        let h = health(brokers, &names, Duration::from_secs(5)).await?;
        let mismatch = h
            .topics
            .iter()
            .zip(topics)
            .find(|((_, found), (_, expected))| found != expected)
            .map(|((name, found), (_, expected))| (name.clone(), *found, *expected));
        match mismatch {
            None => return Ok(()),
            Some(m) => last = Some(m),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (topic, found, expected) = last.unwrap_or_default();
    Err(KafkaError::PartitionCount {
        topic,
        brokers: brokers.to_owned(),
        found,
        expected,
    })
}

/// The topic the stack's round trip writes to and reads back (one partition, no prefix: it
/// checks the broker, not a deployment).
pub const PROBE_TOPIC: &str = "_raffle_stack_probe";

/// A real round trip through the broker: one record produced by an idempotent producer (as the
/// services produce) and read back by offset. A broker that is alive and listening but fails
/// requests — seen with Tansu 0.6.0 after an outage — fails this where a metadata request
/// alone may pass. Returns how long it took.
pub async fn round_trip(brokers: &str, timeout: Duration) -> Result<Duration, KafkaError> {
    let started = std::time::Instant::now();
    let unreachable = |reason: String| KafkaError::Unreachable {
        brokers: brokers.to_owned(),
        reason,
    };
    let attempt = async {
        ensure_topics(brokers, &[(PROBE_TOPIC, 1)], 1).await?;
        let producer = producer(brokers, timeout.as_millis() as u64)?;
        let marker = uuid::Uuid::new_v4().to_string();
        let rdkafka::producer::future_producer::Delivery {
            partition, offset, ..
        } = producer
            .send(
                rdkafka::producer::FutureRecord::to(PROBE_TOPIC)
                    .key("probe")
                    .payload(&marker),
                timeout,
            )
            .await
            .map_err(|(e, _)| unreachable(format!("producing to {PROBE_TOPIC}: {e}")))?;
        let brokers = brokers.to_owned();
        tokio::task::spawn_blocking(move || {
            read_back(&brokers, partition, offset, &marker, timeout)
        })
        .await
        .map_err(|e| unreachable(e.to_string()))?
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| unreachable(format!("no round trip within {} ms", timeout.as_millis())))??;
    Ok(started.elapsed())
}

/// Reads the record at (`partition`, `offset`) of the probe topic and checks it is `marker`.
fn read_back(
    brokers: &str,
    partition: i32,
    offset: i64,
    marker: &str,
    timeout: Duration,
) -> Result<(), KafkaError> {
    use rdkafka::message::Message;
    let unreachable = |reason: String| KafkaError::Unreachable {
        brokers: brokers.to_owned(),
        reason,
    };
    let consumer: BaseConsumer = base_config(brokers)
        .set("group.id", "raffle-stack-probe")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| KafkaError::Client {
            brokers: brokers.to_owned(),
            reason: e.to_string(),
        })?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(PROBE_TOPIC, partition, rdkafka::Offset::Offset(offset))
        .and_then(|()| consumer.assign(&tpl))
        .map_err(|e| unreachable(e.to_string()))?;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.offset() == offset => {
                return if m.payload() == Some(marker.as_bytes()) {
                    Ok(())
                } else {
                    Err(unreachable(format!(
                        "{PROBE_TOPIC}[{partition}] at offset {offset} holds another record than the one produced"
                    )))
                };
            }
            Some(Ok(_)) | None => {}
            Some(Err(e)) => return Err(unreachable(format!("fetching from {PROBE_TOPIC}: {e}"))),
        }
    }
    Err(unreachable(format!(
        "the record produced to {PROBE_TOPIC}[{partition}] at offset {offset} could not be read back"
    )))
}

/// The high watermark (next offset to be written) of each partition of `topic`.
pub async fn high_watermarks(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<i64>, KafkaError> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            base_config(&brokers)
                .create()
                .map_err(|e| KafkaError::Client {
                    brokers: brokers.clone(),
                    reason: e.to_string(),
                })?;
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .map(|(_, high)| high)
                    .map_err(|e| KafkaError::Unreachable {
                        brokers: brokers.clone(),
                        reason: format!("{topic}[{p}]: {e}"),
                    })
            })
            .collect()
    })
    .await
    .map_err(|e| KafkaError::Client {
        brokers: "?".into(),
        reason: e.to_string(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

    #[test]
    fn clients_take_sasl_and_tls_from_the_environment() {
        // nextest runs each test in a process of its own: the variables are this test's.
        unsafe {
            std::env::set_var("KAFKA_SECURITY_PROTOCOL", "SASL_SSL");
            std::env::set_var("KAFKA_SASL_USERNAME", "raffle");
            std::env::set_var("KAFKA_SASL_PASSWORD", "secret");
            // A CA file that exists: librdkafka reads it when the client is made.
            std::env::set_var("KAFKA_SSL_CA_LOCATION", CA_BUNDLE);
        }
        let config = base_config("kafka-1:9092");
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("raffle"));
        assert_eq!(config.get("ssl.ca.location"), Some(CA_BUNDLE));
        // librdkafka was built with TLS and SASL: a client with these settings can be made.
        let client: Result<rdkafka::producer::BaseProducer, _> = config.create();
        assert!(client.is_ok(), "{:?}", client.err());
    }
}

/// One consumed message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
}
