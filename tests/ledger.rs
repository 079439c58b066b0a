//! The ledger against the real broker and Postgres: balanced entries posted once per event,
//! chained per raffle, refused for unknown or sealed raffles, and every change made directly in
//! the database — as superuser, triggers disabled — caught by verification.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use platform::testkit::TestEnv;
use proptest::prelude::*;
use rdkafka::producer::FutureRecord;
use schemas::{
    Currency, DrawNumber, RangePartition, RangeRef, SaleSource, TicketEvent, TicketEventKind,
};
use uuid::Uuid;

fn event(
    raffle: Uuid,
    kind: TicketEventKind,
    order: Uuid,
    rsu: Option<Uuid>,
    amount: i64,
) -> TicketEvent {
    TicketEvent {
        event_id: Uuid::now_v7(),
        kind,
        raffle_id: raffle,
        order_id: Some(order),
        sale_event_id: Uuid::now_v7(),
        range_partition: RangePartition {
            raffle_id: raffle,
            range: RangeRef::Range(Uuid::nil()),
        },
        source: if rsu.is_some() {
            SaleSource::Rsu
        } else {
            SaleSource::Online
        },
        rsu_id: rsu,
        allocation_id: None,
        package_id: None,
        seller_id: None,
        amount_minor: amount,
        currency: Currency::parse("USD").unwrap(),
        draw_numbers: vec![DrawNumber::new(50_001).unwrap()],
        validation_number: None,
        reason: None,
        occurred_at_us: Utc::now().timestamp_micros(),
    }
}

async fn publish(env: &TestEnv, events: &[TicketEvent]) {
    let producer = platform::kafka::producer(&env.brokers, 10_000).unwrap();
    for e in events {
        let key = e.raffle_id.to_string();
        let payload = schemas::encode(e).unwrap();
        producer
            .send(
                FutureRecord::to(&env.topics.tickets)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .expect("broker ack");
    }
}

/// Runs the ledger until everything published so far (`count` messages) is consumed.
async fn consume(env: &TestEnv, count: i64) {
    let running = common::ledger(env);
    common::eventually("the ledger to consume everything", || async {
        let done: i64 = env
            .client()
            .await
            .query_one("SELECT coalesce(sum(next_offset), 0)::bigint FROM platform.consumer_offsets WHERE consumer_group = 'ledger'", &[])
            .await
            .unwrap()
            .get(0);
        done >= count
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_events_post_balanced_chained_entries_once() {
    let env = TestEnv::new().await;
    let s = scenario::seed::raffle_on_sale(
        &env.pool,
        &scenario::seed::Options {
            rsu_count: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let rsu = s.rsus[0].id;
    let (a, b, c, d) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let first = event(s.raffle_id, TicketEventKind::TicketsIssued, a, None, 2000);
    let events = vec![
        first.clone(),
        event(s.raffle_id, TicketEventKind::TicketsIssued, b, None, 2000),
        event(
            s.raffle_id,
            TicketEventKind::TicketsIssued,
            c,
            Some(rsu),
            2000,
        ),
        first.clone(), // delivered twice
        event(s.raffle_id, TicketEventKind::TicketsVoided, b, None, 2000), // refund of an issued sale
        event(
            s.raffle_id,
            TicketEventKind::TicketsVoided,
            d,
            Some(rsu),
            2000,
        ), // voided before it ever synced
        event(s.raffle_id, TicketEventKind::SaleRejected, d, None, 2000),
        event(
            Uuid::now_v7(),
            TicketEventKind::TicketsIssued,
            d,
            None,
            2000,
        ), // unknown raffle
    ];
    publish(&env, &events).await;
    consume(&env, events.len() as i64).await;

    let client = env.client().await;
    let balances = ledger::balances(&client, s.raffle_id, None).await.unwrap();
    let expected: BTreeMap<String, i64> = [
        ("gross_ticket_revenue".to_owned(), -6000),
        ("payment_clearing".to_owned(), 2000),
        ("refunds_and_voids".to_owned(), 2000),
        (format!("rsu_float/{rsu}"), 2000),
    ]
    .into();
    assert_eq!(balances, expected);
    assert_eq!(
        balances.values().sum::<i64>(),
        0,
        "the trial balance is zero"
    );
    // As of the second entry, only two sales.
    let early = ledger::balances(&client, s.raffle_id, Some(2))
        .await
        .unwrap();
    assert_eq!(early["gross_ticket_revenue"], -4000);
    assert_eq!(early["refunds_and_voids"], 0);
    let verification = ledger::verify(&client, s.raffle_id).await.unwrap();
    assert!(verification.ok(), "{verification:?}");
    assert_eq!(
        verification.entries_verified, 4,
        "three sales and one reversal; duplicates and rejections post nothing"
    );
    let head: Vec<u8> = client
        .query_one(
            "SELECT hash FROM ledger.chain_heads WHERE raffle_id = $1",
            &[&s.raffle_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(hex::encode(head), verification.head_hash);
    let dead: i64 = client
        .query_one("SELECT count(*) FROM platform.outbox WHERE topic = $1 AND headers->>'dlq.error_kind' = 'unknown_raffle'", &[&env.topics.dlq])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        dead, 1,
        "an event for an unknown raffle is refused to the DLQ with its reason"
    );

    // Sealed: sales no longer post.
    client
        .execute(
            "UPDATE catalog.raffle_events SET state = 'sealed' WHERE id = $1",
            &[&s.raffle_id],
        )
        .await
        .unwrap();
    publish(
        &env,
        &[event(
            s.raffle_id,
            TicketEventKind::TicketsIssued,
            Uuid::now_v7(),
            None,
            2000,
        )],
    )
    .await;
    consume(&env, events.len() as i64 + 1).await;
    let sealed: i64 = client
        .query_one("SELECT count(*) FROM platform.outbox WHERE topic = $1 AND headers->>'dlq.error_kind' = 'raffle_sealed'", &[&env.topics.dlq])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sealed, 1);
    assert_eq!(
        ledger::verify(&client, s.raffle_id)
            .await
            .unwrap()
            .entries_verified,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_unbalanced_and_changed_entries_and_verify_catches_the_superuser() {
    let env = TestEnv::new().await;
    let s = scenario::seed::raffle_on_sale(
        &env.pool,
        &scenario::seed::Options {
            rsu_count: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let events: Vec<TicketEvent> = (0..5)
        .map(|_| {
            event(
                s.raffle_id,
                TicketEventKind::TicketsIssued,
                Uuid::now_v7(),
                None,
                2000,
            )
        })
        .collect();
    publish(&env, &events).await;
    consume(&env, 5).await;
    let mut client = env.client().await;
    assert!(ledger::verify(&client, s.raffle_id).await.unwrap().ok());

    // Append-only and balanced, held by the database.
    let update = client
        .execute(
            "UPDATE ledger.postings SET amount_minor = amount_minor * 2",
            &[],
        )
        .await;
    assert_eq!(common::sqlstate(update), "42501");
    let delete = client
        .execute("DELETE FROM ledger.journal_entries", &[])
        .await;
    assert_eq!(common::sqlstate(delete), "42501");
    let tx = client.transaction().await.unwrap();
    let entry: Uuid = tx
        .query_one(
            "INSERT INTO ledger.journal_entries (raffle_id, sequence, entry_type, event_id, description, currency, occurred_at,
                 previous_hash, hash)
             VALUES ($1, 99, 'ticket_sale', gen_random_uuid(), 'forged', 'USD', now(), $2, $3) RETURNING id",
            &[&s.raffle_id, &vec![0u8; 32], &vec![9u8; 32]],
        )
        .await
        .unwrap()
        .get(0);
    tx.execute(
        "INSERT INTO ledger.postings (entry_id, raffle_id, account_id, amount_minor)
         SELECT $1, $2, id, 500 FROM ledger.accounts WHERE raffle_id = $2 AND code = 'payment_clearing'",
        &[&entry, &s.raffle_id],
    )
    .await
    .unwrap();
    let committed = tx.commit().await;
    assert!(
        committed.is_err(),
        "an unbalanced entry is refused at commit"
    );
    // A posting added later to an entry that balanced is refused too.
    let late = client
        .execute(
            "INSERT INTO ledger.postings (entry_id, raffle_id, account_id, amount_minor)
             SELECT e.id, e.raffle_id, a.id, 1 FROM ledger.journal_entries e
               JOIN ledger.accounts a ON a.raffle_id = e.raffle_id AND a.code = 'gross_ticket_revenue'
              WHERE e.sequence = 1 AND e.raffle_id = $1",
            &[&s.raffle_id],
        )
        .await;
    assert!(
        late.is_err(),
        "a posting added to a balanced entry is refused at commit"
    );

    // A superuser who disables the triggers changes one thing at a time; verify names the entry.
    let tampering = [
        ("a posting's amount", "UPDATE ledger.postings p SET amount_minor = amount_minor + 100 FROM ledger.journal_entries e
             WHERE e.id = p.entry_id AND e.sequence = 3 AND p.amount_minor > 0", 3, "sum to"),
        ("both postings of an entry", "UPDATE ledger.postings p SET amount_minor = amount_minor * 2 FROM ledger.journal_entries e
             WHERE e.id = p.entry_id AND e.sequence = 3", 3, "hash"),
        ("an entry's time", "UPDATE ledger.journal_entries SET occurred_at = occurred_at - interval '1 day' WHERE sequence = 2", 2, "hash"),
        ("an entry removed", "DELETE FROM ledger.postings p USING ledger.journal_entries e WHERE e.id = p.entry_id AND e.sequence = 4;
             DELETE FROM ledger.journal_entries WHERE sequence = 4", 5, "sequence"),
    ];
    for (what, sql, sequence, reason) in tampering {
        let tx = client.transaction().await.unwrap();
        tx.batch_execute(&format!(
            "SET LOCAL session_replication_role = replica; {sql}"
        ))
        .await
        .unwrap();
        let v = ledger::verify(&tx, s.raffle_id).await.unwrap();
        let failure = v
            .first_failure
            .clone()
            .unwrap_or_else(|| panic!("{what} went unnoticed"));
        assert_eq!(failure.sequence, sequence, "{what}: {failure:?}");
        assert!(failure.reason.contains(reason), "{what}: {failure:?}");
        tx.rollback().await.unwrap();
    }
    assert!(
        ledger::verify(&client, s.raffle_id).await.unwrap().ok(),
        "rolled back, the books verify again"
    );
}

proptest! {
    /// For any sequence of sales and reversals, the postings balance, the trial balance is
    /// zero, and revenue is issued sales minus reversals.
    #[test]
    fn postings_always_balance(ops in proptest::collection::vec((0usize..6, 1i64..100_000, any::<bool>(), any::<bool>()), 1..60)) {
        let raffle = Uuid::now_v7();
        let rsu = Uuid::now_v7();
        let mut orders: Vec<(Uuid, i64, bool, bool)> = Vec::new(); // (order, amount, rsu, voided)
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        let (mut issued, mut reversed) = (0i64, 0i64);
        for (pick, amount, on_rsu, void) in ops {
            let e = if void && !orders.is_empty() {
                let i = pick % orders.len();
                let (order, amount, on_rsu, voided) = orders[i];
                let issued_before = !voided;
                orders[i].3 = true;
                let e = event(raffle, TicketEventKind::TicketsVoided, order, on_rsu.then_some(rsu), amount);
                (e, issued_before)
            } else {
                let order = Uuid::now_v7();
                orders.push((order, amount, on_rsu, false));
                (event(raffle, TicketEventKind::TicketsIssued, order, on_rsu.then_some(rsu), amount), false)
            };
            // A second void of the same order is not an issued sale any more.
            if let Some((kind, postings)) = ledger::postings::postings_for(&e.0, e.1, false) {
                prop_assert_eq!(postings.iter().map(|p| p.amount_minor).sum::<i64>(), 0);
                match kind {
                    "ticket_sale" => issued += e.0.amount_minor,
                    _ => reversed += e.0.amount_minor,
                }
                for p in postings {
                    *totals.entry(p.code).or_default() += p.amount_minor;
                }
            }
        }
        prop_assert_eq!(totals.values().sum::<i64>(), 0);
        let revenue = -totals.get("gross_ticket_revenue").copied().unwrap_or(0) - totals.get("refunds_and_voids").copied().unwrap_or(0);
        prop_assert_eq!(revenue, issued - reversed);
    }
}

/// Sales that reached the broker before the close, in flight through the allocator.
async fn sell_online(
    env: &TestEnv,
    s: &scenario::seed::Scenario,
    count: usize,
    paid: chrono::DateTime<Utc>,
) {
    let client = env.client().await;
    let partition = common::online_partition(&client, s.raffle_id).await;
    let producer = platform::kafka::producer(&env.brokers, 10_000).unwrap();
    for i in 0..count {
        let (_, sale) =
            common::pending_order_and_sale(&client, s, partition, &format!("VAL-SEAL{i:04}"), paid)
                .await;
        let key = partition.to_string();
        let payload = schemas::encode(&sale).unwrap();
        producer
            .send(
                FutureRecord::to(&env.topics.sales)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .expect("broker ack");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seal_refuses_while_sales_are_in_flight_and_closes_the_books_once_they_land() {
    let env = TestEnv::new().await;
    let s = scenario::seed::raffle_on_sale(
        &env.pool,
        &scenario::seed::Options {
            rsu_count: 1,
            allocation_size: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let client = env.client().await;
    sell_online(&env, &s, 3, Utc::now() - chrono::Duration::minutes(10)).await;
    // Sales close (as the sweeper does at the end time).
    client
        .execute(
            "UPDATE catalog.raffle_events SET state = 'sales_closed', sales_end_time = now() - interval '1 minute' WHERE id = $1",
            &[&s.raffle_id],
        )
        .await
        .unwrap();
    let request = |write_off: Vec<Uuid>| ledger::SealRequest {
        raffle_id: s.raffle_id,
        sealed_by: "finance".into(),
        grace_seconds: 0,
        write_off,
        seed_key: None,
        seed_keeper: &draw_engine::SEED_KEEPER,
    };
    let refused = ledger::seal(&env.pool, &env.brokers, &env.topics, &request(vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            ledger::SealError::Refused {
                code: "in-flight",
                ..
            }
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("allocator"), "{refused}");

    // The pipeline drains: the allocator issues, the ledger posts.
    let allocator = common::allocator(&env);
    let ledger_task = common::ledger(&env);
    let mut refusal = String::new();
    let mut drained = false;
    for _ in 0..600 {
        match ledger::seal(&env.pool, &env.brokers, &env.topics, &request(vec![])).await {
            Err(ledger::SealError::Refused {
                code: "in-flight",
                reason,
            }) => refusal = reason,
            Err(ledger::SealError::Refused {
                code: "unsynced-allocations",
                reason,
            }) => {
                refusal = reason;
                drained = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(drained, "the pipeline never drained: {refusal}");
    assert!(
        refusal.contains("neither returned nor written off"),
        "{refusal}"
    );
    let allocation: Uuid = s.rsus[0].allocation["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let record = ledger::seal(
        &env.pool,
        &env.brokers,
        &env.topics,
        &request(vec![allocation]),
    )
    .await
    .expect("sealed");
    allocator.stop().await;
    ledger_task.stop().await;

    // 3 sales of $20; 100 unaccounted numbers at $4 a ticket count as gross receipts.
    assert_eq!(
        (
            record.gross_sales_minor,
            record.refunds_minor,
            record.written_off_minor
        ),
        (6_000, 0, 40_000)
    );
    assert_eq!(record.gross_receipts_minor, 46_000);
    assert_eq!(
        record.prizes[0]["amount_minor"], 100_000,
        "the guaranteed minimum of $1,000 beats 50% of $460"
    );
    assert_eq!(record.operating_fee_minor, 2_070, "4.5% of 46,000");
    assert_eq!(record.net_proceeds_minor, 46_000 - 100_000 - 2_070);
    assert_eq!((record.tickets_eligible, record.tickets_voided), (15, 0));
    let verification = ledger::verify(&client, s.raffle_id).await.unwrap();
    assert!(verification.ok(), "{verification:?}");
    assert_eq!(verification.head_hash, record.head_hash);
    let balances = ledger::balances(&client, s.raffle_id, None).await.unwrap();
    assert_eq!(
        balances["gross_ticket_revenue"], 0,
        "revenue closed to net proceeds"
    );
    assert_eq!(balances["net_proceeds"], -record.net_proceeds_minor);
    assert_eq!(balances.values().sum::<i64>(), 0);
    let (state, seed, commitment): (String, Vec<u8>, Vec<u8>) = {
        let r = client
            .query_one(
                "SELECT r.state, d.rng_seed, d.rng_seed_commitment FROM catalog.raffle_events r
                   JOIN draw.draw_executions d ON d.raffle_event_id = r.id WHERE r.id = $1",
                &[&s.raffle_id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(state, "sealed");
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&seed)),
        hex::encode(&commitment)
    );
    assert_eq!(hex::encode(&commitment), record.seed_commitment);
    // The reconciliation report: every check passes, every figure matches the tables.
    let report = ledger::report::reconciliation(&client, s.raffle_id)
        .await
        .unwrap();
    assert!(
        report.all_pass(),
        "{:#?}",
        report.checks.iter().filter(|c| !c.pass).collect::<Vec<_>>()
    );
    assert_eq!(report.gross_by_source[0].amount_minor, 6_000);
    let online = report
        .numbers_by_range
        .iter()
        .find(|r| r.range_type == "online")
        .unwrap()
        .clone();
    assert_eq!(
        (Some(online.sold), Some(online.unsold)),
        (Some(15), Some(130_000 - 15))
    );
    assert_eq!(report.money_by_rsu[0].written_off_minor, 40_000);
    assert_eq!(
        report.seal.as_ref().map(|s| s.gross_receipts_minor),
        Some(46_000)
    );
    let csv = ledger::report::to_csv(&report);
    // Section by section, each under its title and a header row, money in whole units.
    assert!(csv.starts_with("Raffle\nitem,value\n"), "{csv}");
    assert!(csv.contains("\n\nSeal\nitem,amount (USD)\n"), "{csv}");
    assert!(csv.contains("\ngross receipts,460.00\n"), "{csv}");
    assert!(csv.contains("\n\nChecks\ncheck,result\n"), "{csv}");
    assert!(!csv.contains(",FAIL\n"), "no failing check in the CSV");
    let html = ledger::report::to_html(&report);
    assert!(
        html.contains("<svg") && html.contains("checks pass."),
        "a printable page with its chart"
    );
    assert!(
        html.contains("460.00"),
        "gross receipts as money: {}",
        &html[..200]
    );

    // The audit export verifies from its files alone, and names what was changed in them.
    let dir = std::env::temp_dir().join(format!("raffle-audit-{}", env.unique));
    let manifest = ledger::audit::export(&client, s.raffle_id, &dir, "raffle test")
        .await
        .unwrap();
    assert_eq!(manifest["entries"], verification.entries_verified);
    let exported = ledger::audit::verify_export(&dir).unwrap();
    assert!(exported.ok(), "{exported:?}");
    let draw = std::fs::read_to_string(dir.join("draw.json")).unwrap();
    assert!(
        !draw.contains(&hex::encode(&seed)),
        "a pending draw's seed stays out of the export"
    );
    let entries_path = dir.join("entries.jsonl");
    let original = std::fs::read_to_string(&entries_path).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replacen("2000", "2100", 1);
    std::fs::write(&entries_path, lines.join("\n") + "\n").unwrap();
    let tampered = ledger::audit::verify_export(&dir).unwrap();
    assert_eq!(tampered.changed_files, vec!["entries.jsonl".to_owned()]);
    let failure = tampered
        .chain
        .first_failure
        .clone()
        .expect("the changed entry is named");
    assert_eq!(failure.sequence, 2, "{failure:?}");
    std::fs::write(&entries_path, &original).unwrap();
    let seal_path = dir.join("seal.json");
    let seal_text = std::fs::read_to_string(&seal_path).unwrap();
    std::fs::write(
        &seal_path,
        seal_text.replace(
            "\"gross_receipts_minor\": 46000",
            "\"gross_receipts_minor\": 46001",
        ),
    )
    .unwrap();
    let tampered = ledger::audit::verify_export(&dir).unwrap();
    assert!(
        tampered
            .seal_mismatches
            .iter()
            .any(|m| m.0 == "gross_receipts_minor"),
        "{tampered:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // The seal holds; a superuser changing it, or the tickets behind it, is caught.
    assert_eq!(
        ledger::verify_seal(&client, s.raffle_id).await.unwrap(),
        Some(vec![])
    );
    let mut client = client;
    for (what, sql, field) in [
        (
            "the sealed gross",
            "UPDATE ledger.seals SET gross_receipts_minor = gross_receipts_minor + 1",
            "gross_receipts_minor",
        ),
        (
            "the sealed head",
            "UPDATE ledger.seals SET head_hash = sha256(head_hash)",
            "head_hash",
        ),
        (
            "a ticket voided after the seal",
            "UPDATE sales.tickets SET state = 'voided', voided_at = now() WHERE draw_number = 50001",
            "ticket_set_digest",
        ),
        (
            "the fee posting",
            "UPDATE ledger.postings p SET amount_minor = amount_minor + 1 FROM ledger.accounts a
             WHERE a.id = p.account_id AND a.code = 'operating_fee_expense' AND p.amount_minor > 0",
            "operating_fee_minor",
        ),
    ] {
        let tx = client.transaction().await.unwrap();
        tx.batch_execute(&format!(
            "SET LOCAL session_replication_role = replica; {sql}"
        ))
        .await
        .unwrap();
        let mismatches = ledger::verify_seal(&tx, s.raffle_id)
            .await
            .unwrap()
            .unwrap();
        assert!(
            mismatches.iter().any(|m| m.field == field),
            "{what}: {mismatches:?}"
        );
        tx.rollback().await.unwrap();
    }
    let again = ledger::seal(&env.pool, &env.brokers, &env.topics, &request(vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            again,
            ledger::SealError::Refused {
                code: "not-closed",
                ..
            }
        ),
        "a raffle is sealed once"
    );
}

/// `raffle audit verify` in text mode names the changed entry, also when the change breaks
/// the seal's figures too (which it reported alone before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_in_text_names_the_changed_entry_of_a_sealed_raffle() {
    let env = TestEnv::new().await;
    let f = scenario::fixture::sealed_raffle(
        &env.pool,
        &env.brokers,
        &env.topics,
        &scenario::fixture::FixtureOptions::default(),
    )
    .await
    .expect("a sealed raffle");
    env.client()
        .await
        .batch_execute(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica;
             UPDATE ledger.postings p SET amount_minor = amount_minor * 2 FROM ledger.journal_entries e
              WHERE e.id = p.entry_id AND e.sequence = 3 AND e.raffle_id = '{}';
             COMMIT;",
            f.raffle_id
        ))
        .await
        .expect("tampering as superuser");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raffle"))
        .args(["audit", "verify", "--raffle", &f.raffle_id.to_string()])
        .env("DATABASE_URL", &env.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("raffle audit verify");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success());
    assert!(
        stdout.contains("(sequence 3)") && stderr.contains("(sequence 3)"),
        "the entry is named in the report and the error:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("seal"),
        "the seal's mismatch is still said: {stderr}"
    );
}

/// A device's cash is counted by two people against its float and sales; a shortage is booked;
/// the deposit moves it to the bank, never more than was counted; the seal waits for every
/// device's count; nothing is counted after finance signed off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cash_is_counted_by_two_people_booked_and_deposited() {
    let env = TestEnv::new().await;
    let s = scenario::seed::raffle_on_sale(
        &env.pool,
        &scenario::seed::Options {
            rsu_count: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (first, second) = (s.rsus[0].id, s.rsus[1].id);
    let events: Vec<TicketEvent> = [(first, 2000), (first, 2000), (second, 2000)]
        .iter()
        .map(|(rsu, amount)| {
            event(
                s.raffle_id,
                TicketEventKind::TicketsIssued,
                Uuid::now_v7(),
                Some(*rsu),
                *amount,
            )
        })
        .collect();
    publish(&env, &events).await;
    consume(&env, events.len() as i64).await;

    let count = |rsu: Uuid, counted: i64, by: &'static str, witness: &'static str| {
        let pool = env.pool.clone();
        let raffle = s.raffle_id;
        async move {
            let mut client = pool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            let r = ledger::cash::count(
                &tx,
                &ledger::cash::NewCount {
                    raffle_id: raffle,
                    rsu_id: rsu,
                    seller_id: Some("seller-7"),
                    float_minor: 10_000,
                    counted_minor: counted,
                    counted_by: by,
                    witnessed_by: witness,
                    note: None,
                },
            )
            .await;
            if r.is_ok() {
                tx.commit().await.unwrap();
            }
            r
        }
    };
    let refused = |r: Result<ledger::cash::Count, ledger::cash::CashError>, says: &str| match r {
        Err(ledger::cash::CashError::Refused(reason)) => {
            assert!(reason.contains(says), "{reason:?} does not say {says:?}")
        }
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    };
    refused(count(first, 14_000, "Pat", "pat ").await, "two people");
    refused(count(first, 14_000, "Pat", " ").await, "two people");
    refused(
        count(Uuid::new_v4(), 14_000, "Pat", "Sam").await,
        "had no number block",
    );

    // The first device is $5.00 short: $100 float + $40 of sales, $135 counted.
    let c = count(first, 13_500, "Pat", "Sam").await.unwrap();
    assert_eq!(
        (c.expected_minor, c.over_short_minor, c.to_deposit_minor),
        (4_000, -500, 3_500)
    );
    let books = ledger::balances(&env.client().await, s.raffle_id, None)
        .await
        .unwrap();
    assert_eq!(books.get(&format!("rsu_float/{first}")).copied(), Some(0));
    assert_eq!(books.get("undeposited_cash").copied(), Some(3_500));
    assert_eq!(
        books.get("cash_over_short").copied(),
        Some(500),
        "the shortage is a loss"
    );
    assert_eq!(books.values().sum::<i64>(), 0);

    // The seal waits for the second device's count.
    env.client()
        .await
        .execute(
            "UPDATE catalog.raffle_events SET state = 'sales_closed', sales_end_time = now() - interval '1 minute' WHERE id = $1",
            &[&s.raffle_id],
        )
        .await
        .unwrap();
    let request = ledger::SealRequest {
        raffle_id: s.raffle_id,
        sealed_by: "finance".into(),
        grace_seconds: 0,
        write_off: Vec::new(),
        seed_key: None,
        seed_keeper: &draw_engine::SEED_KEEPER,
    };
    match ledger::seal(&env.pool, &env.brokers, &env.topics, &request).await {
        Err(ledger::SealError::Refused {
            code: "cash-not-counted",
            reason,
        }) => {
            assert!(reason.contains("is not counted"), "{reason}");
            let name_of = |rsu: Uuid| {
                let env = &env;
                async move {
                    env.client()
                        .await
                        .query_one("SELECT name FROM catalog.rsus WHERE id = $1", &[&rsu])
                        .await
                        .unwrap()
                        .get::<_, String>(0)
                }
            };
            assert!(reason.contains(&name_of(second).await), "{reason}");
            assert!(
                !reason.contains(&name_of(first).await),
                "the counted device is not named: {reason}"
            );
        }
        other => panic!("the seal must wait for the count: {other:?}"),
    }
    count(second, 12_000, "Pat", "Sam").await.unwrap();

    // Deposits: never more than counted, each slip once.
    let deposit = |slip: &'static str, amount: i64| {
        let pool = env.pool.clone();
        let raffle = s.raffle_id;
        async move {
            let mut client = pool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            let r = ledger::cash::deposit(
                &tx,
                &ledger::cash::NewDeposit {
                    raffle_id: raffle,
                    slip_number: slip,
                    deposited_on: Utc::now().date_naive(),
                    amount_minor: amount,
                    recorded_by: "Sam",
                },
            )
            .await;
            if r.is_ok() {
                tx.commit().await.unwrap();
            }
            r
        }
    };
    assert!(
        matches!(deposit("S-1", 99_999).await, Err(ledger::cash::CashError::Refused(r)) if r.contains("more than"))
    );
    assert_eq!(deposit("S-1", 5_000).await.unwrap(), 500);
    assert!(
        matches!(deposit("S-1", 500).await, Err(ledger::cash::CashError::Refused(r)) if r.contains("recorded already"))
    );
    assert_eq!(deposit("S-2", 500).await.unwrap(), 0);
    let books = ledger::balances(&env.client().await, s.raffle_id, None)
        .await
        .unwrap();
    assert_eq!(books.get("bank").copied(), Some(5_500));
    assert_eq!(books.get("undeposited_cash").copied(), Some(0));
    let verification = ledger::verify(&env.client().await, s.raffle_id)
        .await
        .unwrap();
    assert!(verification.first_failure.is_none(), "{verification:?}");

    // After finance's sign-off nothing more is counted.
    catalog::raffles::confirm_reconciliation(
        &env.client().await,
        s.raffle_id,
        "finance",
        &"0".repeat(64),
    )
    .await
    .unwrap();
    refused(
        count(second, 10_000, "Pat", "Sam").await,
        "confirmed by finance",
    );
}
