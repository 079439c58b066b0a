//! The one encode/decode path for every topic.
//!
//! Framing: Avro **single-object encoding** — `0xC3 0x01`, the 8-byte little-endian
//! CRC-64-AVRO (Rabin) fingerprint of the writer schema's canonical form, then the Avro binary
//! datum. A reader looks the fingerprint up among every schema version this build knows (all of
//! `schemas/avro/<topic>/vN.avsc` are compiled in) and resolves the datum from that writer
//! schema to its own, newest, reader schema. We chose it over the Confluent wire format because
//! it needs no schema-registry service: the fingerprint alone names the writer schema, the dev
//! stack stays two parts (Postgres and a broker), and every published version lives in this
//! repository, where the compatibility test can check it.

use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A payload type bound to the topic whose schemas describe it.
pub trait Contract: Serialize + DeserializeOwned {
    /// Topic base name; also the folder of its schema versions under `schemas/avro/`.
    const TOPIC: &'static str;
}

/// Every schema version ever published, oldest first per topic. Adding `vN.avsc` means adding
/// its line here; a test fails if a file on disk is missing from this list.
pub const SCHEMA_FILES: &[SchemaFile] = &[
    SchemaFile {
        topic: "raffle.sales.v1",
        version: 1,
        json: include_str!("../avro/raffle.sales.v1/v1.avsc"),
    },
    SchemaFile {
        topic: "raffle.sales.v1",
        version: 2,
        json: include_str!("../avro/raffle.sales.v1/v2.avsc"),
    },
    SchemaFile {
        topic: "raffle.tickets.v1",
        version: 1,
        json: include_str!("../avro/raffle.tickets.v1/v1.avsc"),
    },
    SchemaFile {
        topic: "raffle.dlq.v1",
        version: 1,
        json: include_str!("../avro/raffle.dlq.v1/v1.avsc"),
    },
];

pub struct SchemaFile {
    pub topic: &'static str,
    pub version: u32,
    pub json: &'static str,
}

const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("no schema is registered for topic {0}")]
    UnknownTopic(&'static str),
    #[error("value does not fit the {topic} schema: {source}")]
    Avro {
        topic: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "message of {len} bytes is too short for an Avro single-object header ({HEADER_LEN} bytes)"
    )]
    TooShort { len: usize },
    #[error("message does not start with the Avro single-object marker C3 01 (found {found:02X?})")]
    BadMagic { found: [u8; 2] },
    #[error("writer schema fingerprint {fingerprint} is not a known version of {topic}")]
    UnknownWriterSchema {
        topic: &'static str,
        fingerprint: String,
    },
    #[error("no schema is registered for topic {0}")]
    UnknownTopic(&'static str),
    #[error("cannot decode {topic} datum written with schema v{writer_version}: {source}")]
    Avro {
        topic: &'static str,
        writer_version: u32,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("{topic} datum decoded but does not make a valid value: {source}")]
    Invalid {
        topic: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

struct Version {
    number: u32,
    schema: Schema,
}

struct TopicSchemas {
    /// Newest schema: what this build writes and reads into.
    latest: Schema,
    latest_fingerprint: [u8; 8],
    by_fingerprint: HashMap<[u8; 8], Version>,
}

fn registry() -> &'static HashMap<&'static str, TopicSchemas> {
    static REGISTRY: OnceLock<HashMap<&'static str, TopicSchemas>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map: HashMap<&'static str, TopicSchemas> = HashMap::new();
        for file in SCHEMA_FILES {
            // The schemas are compiled into the binary and parsed by a test on every build, so
            // a failure here is a defect of this build, not bad input.
            let schema = Schema::parse_str(file.json).unwrap_or_else(|e| {
                panic!(
                    "embedded schema {} v{} must parse: {e}",
                    file.topic, file.version
                )
            });
            let fingerprint = fingerprint(&schema);
            let entry = map.entry(file.topic).or_insert_with(|| TopicSchemas {
                latest: schema.clone(),
                latest_fingerprint: fingerprint,
                by_fingerprint: HashMap::new(),
            });
            // SCHEMA_FILES lists versions oldest first, so the last one seen is the newest.
            entry.latest = schema.clone();
            entry.latest_fingerprint = fingerprint;
            entry.by_fingerprint.insert(
                fingerprint,
                Version {
                    number: file.version,
                    schema,
                },
            );
        }
        map
    })
}

/// The CRC-64-AVRO fingerprint of a schema's parsing canonical form, little-endian.
pub fn fingerprint(schema: &Schema) -> [u8; 8] {
    let fp = schema.fingerprint::<Rabin>();
    let mut out = [0u8; 8];
    out.copy_from_slice(&fp.bytes[..8]);
    out
}

/// The newest schema of `T`'s topic, and the single-object header that names it.
fn newest<T: Contract>() -> Result<(&'static Schema, Vec<u8>), EncodeError> {
    let topic = registry()
        .get(T::TOPIC)
        .ok_or(EncodeError::UnknownTopic(T::TOPIC))?;
    let mut header = Vec::with_capacity(HEADER_LEN + 256);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&topic.latest_fingerprint);
    Ok((&topic.latest, header))
}

fn avro_error<T: Contract>(source: apache_avro::Error) -> EncodeError {
    EncodeError::Avro {
        topic: T::TOPIC,
        source: Box::new(source),
    }
}

/// Encode with the newest schema of `T`'s topic, framed as an Avro single object.
pub fn encode<T: Contract>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let (schema, mut out) = newest::<T>()?;
    // Written straight from the value by a schema-aware serializer, which refuses what the
    // schema does not allow: the same bytes as building a generic Avro value, resolving it
    // and encoding that (tests/contracts.rs holds the two equal), at a sixth of the cost
    // (2.7 against 15 µs for a ticket event).
    apache_avro::write_avro_datum_ref(schema, value, &mut out).map_err(avro_error::<T>)?;
    Ok(out)
}

/// Encode the generic way: a serde value turned into an Avro value, resolved against the
/// newest schema and written. Slower than [`encode`]; kept to check that both agree.
pub fn encode_generic<T: Contract>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let (schema, mut out) = newest::<T>()?;
    let value = apache_avro::to_value(value)
        .and_then(|v| v.resolve(schema))
        .map_err(avro_error::<T>)?;
    out.extend_from_slice(&apache_avro::to_avro_datum(schema, value).map_err(avro_error::<T>)?);
    Ok(out)
}

/// Decode a framed message of `T`'s topic written with any known version of its schema.
pub fn decode<T: Contract>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort { len: bytes.len() });
    }
    if bytes[..2] != MAGIC {
        return Err(DecodeError::BadMagic {
            found: [bytes[0], bytes[1]],
        });
    }
    let topic = registry()
        .get(T::TOPIC)
        .ok_or(DecodeError::UnknownTopic(T::TOPIC))?;
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&bytes[2..HEADER_LEN]);
    let writer = topic
        .by_fingerprint
        .get(&fp)
        .ok_or_else(|| DecodeError::UnknownWriterSchema {
            topic: T::TOPIC,
            fingerprint: fp.iter().map(|b| format!("{b:02x}")).collect(),
        })?;
    let mut datum = &bytes[HEADER_LEN..];
    // Written with the latest schema (the common case): nothing to resolve, and resolving
    // would copy every value once more.
    let reader = (fp != topic.latest_fingerprint).then_some(&topic.latest);
    let value =
        apache_avro::from_avro_datum(&writer.schema, &mut datum, reader).map_err(|source| {
            DecodeError::Avro {
                topic: T::TOPIC,
                writer_version: writer.number,
                source: Box::new(source),
            }
        })?;
    apache_avro::from_value::<T>(&value).map_err(|source| DecodeError::Invalid {
        topic: T::TOPIC,
        source: Box::new(source),
    })
}

/// All versions of one topic's schema, oldest first, parsed. Used by the compatibility check.
pub fn versions(topic: &str) -> Result<Vec<(u32, Schema)>, apache_avro::Error> {
    SCHEMA_FILES
        .iter()
        .filter(|f| f.topic == topic)
        .map(|f| Schema::parse_str(f.json).map(|s| (f.version, s)))
        .collect()
}

/// Why a schema history is not backward compatible.
#[derive(Debug, thiserror::Error)]
#[error("{topic}: schema v{reader} cannot read data written with v{writer}: {reason}")]
pub struct CompatibilityError {
    pub topic: String,
    pub writer: u32,
    pub reader: u32,
    pub reason: String,
}

/// Transitive backward compatibility: every version must read data written by every earlier
/// version: a topic keeps old messages, and a consumer on the new schema must still read them.
pub fn check_backward_compatible(
    topic: &str,
    versions: &[(u32, Schema)],
) -> Result<(), CompatibilityError> {
    for (i, (reader_version, reader)) in versions.iter().enumerate() {
        for (writer_version, writer) in &versions[..i] {
            apache_avro::schema_compatibility::SchemaCompatibility::can_read(writer, reader)
                .map_err(|e| CompatibilityError {
                    topic: topic.to_owned(),
                    writer: *writer_version,
                    reader: *reader_version,
                    reason: e.to_string(),
                })?;
        }
    }
    Ok(())
}
