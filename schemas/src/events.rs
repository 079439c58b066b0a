//! Rust types of the topic payloads. Field names are the Avro field names, which are the SQL
//! column names: one word for one thing from the wire to the database.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::Contract;
use crate::values::{Currency, DrawNumber, RangePartition};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SaleEventKind {
    SaleCompleted,
    PaymentFailed,
    RefundRequested,
    RsuSaleRecorded,
    RsuSaleVoided,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRef {
    pub provider: String,
    pub reference: String,
    pub provider_event_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsuSale {
    #[serde(with = "uuid_text")]
    pub rsu_id: Uuid,
    #[serde(with = "uuid_text")]
    pub allocation_id: Uuid,
    pub local_id: String,
    pub validation_number: String,
    pub draw_numbers: Vec<DrawNumber>,
    pub operator_id: Option<String>,
    pub is_offline_sale: bool,
    /// Hex SHA-256 of the receipt's check code ([`crate::CheckCode::hash`]), when the device
    /// printed one (schema v2).
    #[serde(default)]
    pub check_code_hash: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// `raffle.sales.v1`: one confirmed fact about a sale. See `schemas/avro/raffle.sales.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleEvent {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub idempotency_key: String,
    pub kind: SaleEventKind,
    #[serde(with = "uuid_text")]
    pub raffle_id: Uuid,
    pub range_partition: RangePartition,
    #[serde(with = "uuid_text::option")]
    pub order_id: Option<Uuid>,
    #[serde(with = "uuid_text::option")]
    pub package_id: Option<Uuid>,
    pub ticket_count: i32,
    pub amount_minor: i64,
    pub currency: Currency,
    pub occurred_at_us: i64,
    pub received_at_us: i64,
    pub payment: Option<PaymentRef>,
    pub rsu_sale: Option<RsuSale>,
    pub customer: Option<Customer>,
    pub reason: Option<String>,
}

impl Contract for SaleEvent {
    const TOPIC: &'static str = crate::topics::SALES;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketEventKind {
    TicketsIssued,
    SaleRejected,
    TicketsVoided,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SaleSource {
    Online,
    Rsu,
}

impl SaleSource {
    /// As `sales.orders.source` stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            SaleSource::Online => "online",
            SaleSource::Rsu => "rsu",
        }
    }
}

impl std::str::FromStr for SaleSource {
    type Err = crate::states::UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [SaleSource::Online, SaleSource::Rsu]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| crate::states::UnknownState(s.to_owned()))
    }
}

impl SaleEvent {
    /// The sale's amount as money, or `None` when it is negative (the allocator refuses it).
    pub fn money(&self) -> Option<crate::Money> {
        crate::Money::new(self.amount_minor, self.currency).ok()
    }
}

/// `raffle.tickets.v1`: what the allocator decided about a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketEvent {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub kind: TicketEventKind,
    #[serde(with = "uuid_text")]
    pub raffle_id: Uuid,
    #[serde(with = "uuid_text::option")]
    pub order_id: Option<Uuid>,
    #[serde(with = "uuid_text")]
    pub sale_event_id: Uuid,
    pub range_partition: RangePartition,
    pub source: SaleSource,
    #[serde(with = "uuid_text::option")]
    pub rsu_id: Option<Uuid>,
    #[serde(with = "uuid_text::option")]
    pub allocation_id: Option<Uuid>,
    #[serde(with = "uuid_text::option")]
    pub package_id: Option<Uuid>,
    pub seller_id: Option<String>,
    pub amount_minor: i64,
    pub currency: Currency,
    pub draw_numbers: Vec<DrawNumber>,
    pub validation_number: Option<String>,
    pub reason: Option<String>,
    pub occurred_at_us: i64,
}

impl Contract for TicketEvent {
    const TOPIC: &'static str = crate::topics::TICKETS;
}

/// `raffle.dlq.v1`: a message a consumer could not decode or validate, kept whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    #[serde(with = "uuid_text")]
    pub dead_letter_id: Uuid,
    pub consumer_group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(with = "optional_bytes")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "optional_bytes")]
    pub value: Option<Vec<u8>>,
    pub error_kind: String,
    pub reason: String,
    pub failed_at_us: i64,
}

impl Contract for DeadLetter {
    const TOPIC: &'static str = crate::topics::DLQ;
}

/// Avro `bytes` must be serialised as bytes, not as a sequence of integers.
mod optional_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_some(&serde_bytes_ref(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<Bytes>::deserialize(d).map(|o| o.map(|b| b.0))
    }

    struct BytesRef<'a>(&'a [u8]);

    fn serde_bytes_ref(bytes: &[u8]) -> BytesRef<'_> {
        BytesRef(bytes)
    }

    impl serde::Serialize for BytesRef<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct Bytes(Vec<u8>);

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Bytes, A::Error> {
                    let mut out = Vec::new();
                    while let Some(b) = seq.next_element::<u8>()? {
                        out.push(b);
                    }
                    Ok(Bytes(out))
                }
            }
            d.deserialize_bytes(Visitor)
        }
    }
}

/// Ids travel as their hyphenated text: the Avro serializer is not "human readable", so the
/// uuid crate would otherwise write 16 raw bytes into a `string` field.
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&id.hyphenated())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a UUID: {e}")))
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(id: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
            match id {
                Some(id) => s.serialize_some(&id.hyphenated().to_string()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| {
                    Uuid::parse_str(&text).map_err(|e| {
                        serde::de::Error::custom(format!("{text:?} is not a UUID: {e}"))
                    })
                })
                .transpose()
        }
    }
}
