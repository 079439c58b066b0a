//! The data contracts: every schema version parses, every history is backward compatible, the
//! Rust types round-trip through the framing, and bad bytes are refused with a reason.

use std::collections::BTreeSet;
use std::path::Path;

use apache_avro::Schema;
use schemas::codec::{SCHEMA_FILES, check_backward_compatible, encode_generic, versions};
use schemas::*;
use uuid::Uuid;

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn sale() -> SaleEvent {
    let raffle_id = Uuid::now_v7();
    SaleEvent {
        event_id: Uuid::now_v7(),
        idempotency_key: "evt_1PZ".into(),
        kind: SaleEventKind::RsuSaleRecorded,
        raffle_id,
        range_partition: RangePartition {
            raffle_id,
            range: RangeRef::Allocation(Uuid::now_v7()),
        },
        order_id: Some(Uuid::now_v7()),
        package_id: Some(Uuid::now_v7()),
        ticket_count: 5,
        amount_minor: 2000,
        currency: usd(),
        occurred_at_us: 1_751_120_700_000_000,
        received_at_us: 1_751_120_701_000_000,
        payment: Some(PaymentRef {
            provider: "stripe".into(),
            reference: "pi_123".into(),
            provider_event_id: "evt_1PZ".into(),
        }),
        rsu_sale: Some(RsuSale {
            rsu_id: Uuid::now_v7(),
            allocation_id: Uuid::now_v7(),
            local_id: "local-1".into(),
            validation_number: "RSU001-2025-0001".into(),
            draw_numbers: (1001..=1005).map(|n| DrawNumber::new(n).unwrap()).collect(),
            operator_id: None,
            check_code_hash: None,
            is_offline_sale: true,
        }),
        customer: Some(Customer {
            name: Some("John Doe".into()),
            email: None,
            phone: None,
        }),
        reason: None,
    }
}

#[test]
fn every_schema_file_on_disk_is_registered_and_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let mut on_disk = BTreeSet::new();
    for topic in std::fs::read_dir(&root).unwrap() {
        let topic = topic.unwrap();
        for file in std::fs::read_dir(topic.path()).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            on_disk.insert(format!("{}/{}", topic.file_name().to_string_lossy(), name));
        }
    }
    let registered: BTreeSet<String> = SCHEMA_FILES
        .iter()
        .map(|f| format!("{}/v{}.avsc", f.topic, f.version))
        .collect();
    assert_eq!(
        on_disk, registered,
        "schemas/avro and SCHEMA_FILES must list the same files"
    );
    for f in SCHEMA_FILES {
        Schema::parse_str(f.json).unwrap_or_else(|e| panic!("{} v{}: {e}", f.topic, f.version));
    }
}

#[test]
fn every_topic_history_is_backward_compatible() {
    for topic in [topics::SALES, topics::TICKETS, topics::DLQ] {
        let history = versions(topic).unwrap();
        assert!(!history.is_empty(), "{topic} has no schema");
        check_backward_compatible(topic, &history).unwrap();
    }
}

#[test]
fn the_compatibility_check_refuses_a_breaking_version_and_accepts_a_good_one() {
    let mut history = versions(topics::SALES).unwrap();
    let broken = Schema::parse_str(include_str!("fixtures/sales.v2.incompatible.avsc")).unwrap();
    history.push((2, broken));
    let err = check_backward_compatible(topics::SALES, &history).unwrap_err();
    assert_eq!((err.writer, err.reader), (1, 2));
    assert!(
        err.to_string().contains("cannot read data written with v1"),
        "{err}"
    );

    history.pop();
    let good = Schema::parse_str(include_str!("fixtures/sales.v2.compatible.avsc")).unwrap();
    history.push((2, good));
    check_backward_compatible(topics::SALES, &history).unwrap();
}

#[test]
fn sale_event_round_trips_through_the_framing() {
    let event = sale();
    let bytes = encode(&event).unwrap();
    assert_eq!(&bytes[..2], &[0xC3, 0x01], "single-object marker");
    assert_eq!(
        bytes,
        encode_generic(&event).unwrap(),
        "both encoders agree"
    );
    assert_eq!(decode::<SaleEvent>(&bytes).unwrap(), event);

    let mut online = sale();
    online.kind = SaleEventKind::SaleCompleted;
    online.rsu_sale = None;
    online.customer = None;
    assert_eq!(
        decode::<SaleEvent>(&encode(&online).unwrap()).unwrap(),
        online
    );
    assert_eq!(encode(&online).unwrap(), encode_generic(&online).unwrap());
}

#[test]
fn ticket_event_and_dead_letter_round_trip() {
    let s = sale();
    let ticket = TicketEvent {
        event_id: Uuid::now_v7(),
        kind: TicketEventKind::TicketsIssued,
        raffle_id: s.raffle_id,
        order_id: s.order_id,
        sale_event_id: s.event_id,
        range_partition: s.range_partition,
        source: SaleSource::Online,
        rsu_id: None,
        allocation_id: None,
        package_id: s.package_id,
        seller_id: None,
        amount_minor: 2000,
        currency: usd(),
        draw_numbers: vec![DrawNumber::new(50_001).unwrap()],
        validation_number: Some("VAL-9F8E7D6C5B4A".into()),
        reason: None,
        occurred_at_us: 1,
    };
    assert_eq!(
        decode::<TicketEvent>(&encode(&ticket).unwrap()).unwrap(),
        ticket
    );
    assert_eq!(encode(&ticket).unwrap(), encode_generic(&ticket).unwrap());

    let dead = DeadLetter {
        dead_letter_id: Uuid::now_v7(),
        consumer_group: "allocator".into(),
        topic: "raffle.sales.v1".into(),
        partition: 3,
        offset: 42,
        key: Some(b"key".to_vec()),
        value: Some(vec![0, 1, 2, 255]),
        error_kind: "undecodable".into(),
        reason: "bad magic".into(),
        failed_at_us: 7,
    };
    assert_eq!(decode::<DeadLetter>(&encode(&dead).unwrap()).unwrap(), dead);
    assert_eq!(encode(&dead).unwrap(), encode_generic(&dead).unwrap());
}

#[test]
fn bad_bytes_are_refused_with_the_reason() {
    assert!(matches!(
        decode::<SaleEvent>(b"short"),
        Err(DecodeError::TooShort { len: 5 })
    ));
    assert!(matches!(
        decode::<SaleEvent>(b"{\"json\": \"not avro\"}"),
        Err(DecodeError::BadMagic { .. })
    ));
    // A ticket event is not a sale event: its fingerprint is unknown to the sales topic.
    let s = sale();
    let ticket_bytes = encode(&DeadLetter {
        dead_letter_id: s.event_id,
        consumer_group: "g".into(),
        topic: "t".into(),
        partition: 0,
        offset: 0,
        key: None,
        value: None,
        error_kind: "x".into(),
        reason: "y".into(),
        failed_at_us: 0,
    })
    .unwrap();
    let err = decode::<SaleEvent>(&ticket_bytes).unwrap_err();
    assert!(
        matches!(err, DecodeError::UnknownWriterSchema { .. }),
        "{err}"
    );
    // A truncated datum is an Avro error, not a panic.
    let mut bytes = encode(&s).unwrap();
    bytes.truncate(20);
    assert!(decode::<SaleEvent>(&bytes).is_err());
    // A datum that fits the schema but breaks a value rule is refused: the schema types the
    // currency as a string, the contract parses it as an ISO code.
    let mut bytes = encode(&s).unwrap();
    let pos = bytes.windows(3).position(|w| w == b"USD").unwrap();
    bytes[pos..pos + 3].copy_from_slice(b"usd");
    let err = decode::<SaleEvent>(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
}
