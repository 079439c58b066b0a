//! The invariants the database holds by itself, whatever code writes to it: unique draw
//! numbers inside their ranges, tickets that belong to orders, unique idempotency keys,
//! non-negative money with a currency, non-overlapping ranges and allocations, perk inventory
//! that never goes negative, and critical events numbered without gaps and never changed.

mod common;

use std::collections::BTreeSet;

use common::{Fixture, insert_order, seed_catalog, sqlstate};
use platform::testkit::TestEnv;
use proptest::prelude::*;
use tokio_postgres::Client;

const UNIQUE: &str = "23505";
const CHECK: &str = "23514";
const FOREIGN_KEY: &str = "23503";
const EXCLUSION: &str = "23P01";
const NOT_NULL: &str = "23502";
const APPEND_ONLY: &str = "42501";

async fn insert_ticket(
    client: &Client,
    f: &Fixture,
    order: uuid::Uuid,
    number: i64,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO sales.tickets (raffle_id, order_id, range_id, draw_number, sold_at)
             VALUES ($1, $2, $3, $4, now())",
            &[&f.raffle_id, &order, &f.online_range_id, &number],
        )
        .await
}

#[tokio::test]
async fn migrations_are_applied_once_and_rerun_as_a_no_op() {
    let env = TestEnv::new().await;
    let report = env.db.migrate().await.expect("migrate again");
    assert_eq!(report.applied_now, 0);
    assert!(report.total >= 2);
}

#[tokio::test]
async fn draw_numbers_are_unique_per_raffle_and_inside_their_range() {
    let env = TestEnv::new().await;
    let client = env.client().await;
    let f = seed_catalog(&client).await;
    let order = insert_order(&client, &f, "evt_1").await;
    assert_eq!(
        sqlstate(insert_ticket(&client, &f, order, 50_001).await),
        "ok(1)"
    );
    assert_eq!(
        sqlstate(insert_ticket(&client, &f, order, 50_001).await),
        UNIQUE,
        "same number twice"
    );
    assert_eq!(
        sqlstate(insert_ticket(&client, &f, order, 50_000).await),
        CHECK,
        "below the range"
    );
    assert_eq!(
        sqlstate(insert_ticket(&client, &f, order, 180_001).await),
        CHECK,
        "above the range"
    );
    assert_eq!(
        sqlstate(insert_ticket(&client, &f, order, 0).await),
        CHECK,
        "draw numbers start at 1"
    );

    // Another raffle may use the same number.
    let g = seed_catalog(&client).await;
    let other = insert_order(&client, &g, "evt_2").await;
    assert_eq!(
        sqlstate(insert_ticket(&client, &g, other, 50_001).await),
        "ok(1)"
    );
}

#[tokio::test]
async fn every_ticket_belongs_to_an_order_of_its_raffle() {
    let env = TestEnv::new().await;
    let client = env.client().await;
    let f = seed_catalog(&client).await;
    let g = seed_catalog(&client).await;
    let foreign_order = insert_order(&client, &g, "evt_other").await;
    let missing = uuid::Uuid::now_v7();
    assert_eq!(
        sqlstate(insert_ticket(&client, &f, missing, 50_010).await),
        FOREIGN_KEY,
        "no such order"
    );
    assert_eq!(
        sqlstate(insert_ticket(&client, &f, foreign_order, 50_010).await),
        FOREIGN_KEY,
        "order of another raffle"
    );
    let no_order = client
        .execute(
            "INSERT INTO sales.tickets (raffle_id, range_id, draw_number, sold_at) VALUES ($1, $2, 50010, now())",
            &[&f.raffle_id, &f.online_range_id],
        )
        .await;
    assert_eq!(sqlstate(no_order), NOT_NULL);

    // The range and the allocation are checked like the order (V14: per statement).
    let order = insert_order(&client, &f, "evt_own").await;
    let ticket = |range: uuid::Uuid, allocation: Option<uuid::Uuid>, number: i64| {
        let (client, raffle) = (&client, f.raffle_id);
        async move {
            client
                .execute(
                    "INSERT INTO sales.tickets (raffle_id, order_id, range_id, rsu_allocation_id, draw_number, sold_at)
                     VALUES ($1, $2, $3, $4, $5, now())",
                    &[&raffle, &order, &range, &allocation, &number],
                )
                .await
        }
    };
    assert_eq!(
        sqlstate(ticket(missing, None, 50_020).await),
        FOREIGN_KEY,
        "no such range"
    );
    assert_eq!(
        sqlstate(ticket(g.online_range_id, None, 50_020).await),
        FOREIGN_KEY,
        "range of another raffle"
    );
    assert_eq!(
        sqlstate(ticket(f.online_range_id, Some(missing), 50_020).await),
        FOREIGN_KEY,
        "no such allocation"
    );
    assert_eq!(
        sqlstate(ticket(f.online_range_id, None, 50_020).await),
        "ok(1)"
    );

    // What a ticket refers to stays: no delete, no new identity, no shrinking past it.
    let refused = [
        ("DELETE FROM sales.orders WHERE id = $1", order),
        (
            "UPDATE sales.orders SET raffle_id = $2 WHERE id = $1",
            order,
        ),
        (
            "DELETE FROM catalog.raffle_ranges WHERE id = $1",
            f.online_range_id,
        ),
        (
            "UPDATE catalog.raffle_ranges SET end_number = 50019, next_number = 50001 WHERE id = $1",
            f.online_range_id,
        ),
        (
            "UPDATE sales.tickets SET order_id = $2 WHERE order_id = $1",
            order,
        ),
    ];
    for (sql, id) in refused {
        let result = if sql.contains("$2") {
            client.execute(sql, &[&id, &missing]).await
        } else {
            client.execute(sql, &[&id]).await
        };
        assert_eq!(sqlstate(result), FOREIGN_KEY, "{sql}");
    }
    assert_eq!(
        sqlstate(client.execute("TRUNCATE sales.orders CASCADE", &[]).await),
        FOREIGN_KEY,
        "truncating orders under their tickets"
    );
    // An order without tickets can still be corrected, and a range grown.
    let spare = insert_order(&client, &f, "evt_spare").await;
    assert_eq!(
        sqlstate(
            client
                .execute("DELETE FROM sales.orders WHERE id = $1", &[&spare])
                .await
        ),
        "ok(1)"
    );
    assert_eq!(
        sqlstate(
            client
                .execute(
                    "UPDATE catalog.raffle_ranges SET end_number = end_number + 1 WHERE id = $1",
                    &[&f.online_range_id]
                )
                .await
        ),
        "ok(1)"
    );
}

#[tokio::test]
async fn idempotency_keys_and_payment_references_are_unique() {
    let env = TestEnv::new().await;
    let client = env.client().await;
    let f = seed_catalog(&client).await;
    insert_order(&client, &f, "evt_dup").await;
    let again = client
        .execute(
            "INSERT INTO sales.orders (raffle_id, package_id, validation_number, ticket_count, total_amount_minor,
                                       currency, idempotency_key, source)
             VALUES ($1, $2, 'VAL-OTHER', 5, 2000, 'USD', 'evt_dup', 'online')",
            &[&f.raffle_id, &f.package_id],
        )
        .await;
    assert_eq!(sqlstate(again), UNIQUE);
    let pay = "INSERT INTO sales.orders (raffle_id, package_id, validation_number, ticket_count, total_amount_minor,
                                         currency, source, payment_provider, payment_reference)
               VALUES ($1, $2, $3, 5, 2000, 'USD', 'online', 'stripe', 'pi_1')";
    assert_eq!(
        sqlstate(
            client
                .execute(pay, &[&f.raffle_id, &f.package_id, &"VAL-A"])
                .await
        ),
        "ok(1)"
    );
    assert_eq!(
        sqlstate(
            client
                .execute(pay, &[&f.raffle_id, &f.package_id, &"VAL-B"])
                .await
        ),
        UNIQUE
    );
}

#[tokio::test]
async fn money_is_a_non_negative_integer_with_an_iso_currency() {
    let env = TestEnv::new().await;
    let client = env.client().await;
    let f = seed_catalog(&client).await;
    let order = |amount: i64, currency: &'static str, key: &'static str| {
        let client = &client;
        let f = &f;
        async move {
            client
                .execute(
                    "INSERT INTO sales.orders (raffle_id, package_id, validation_number, ticket_count, total_amount_minor,
                                               currency, idempotency_key, source)
                     VALUES ($1, $2, $3, 5, $4, $5, $3, 'online')",
                    &[&f.raffle_id, &f.package_id, &key, &amount, &currency],
                )
                .await
        }
    };
    assert_eq!(
        sqlstate(order(-1, "USD", "K1").await),
        CHECK,
        "negative amount"
    );
    assert_eq!(
        sqlstate(order(2000, "usd", "K2").await),
        CHECK,
        "lower-case currency"
    );
    assert_eq!(
        sqlstate(order(2000, "US", "K3").await),
        CHECK,
        "two-letter currency"
    );
    assert_eq!(
        sqlstate(order(0, "USD", "K4").await),
        "ok(1)",
        "a free package is allowed"
    );
    let price = client
        .execute(
            "UPDATE catalog.ticket_packages SET price_minor = -5 WHERE id = $1",
            &[&f.package_id],
        )
        .await;
    assert_eq!(sqlstate(price), CHECK);
}

#[tokio::test]
async fn ranges_and_allocations_never_overlap_and_allocations_stay_inside_their_range() {
    let env = TestEnv::new().await;
    let client = env.client().await;
    let f = seed_catalog(&client).await;
    let overlapping = client
        .execute(
            "INSERT INTO catalog.raffle_ranges (raffle_id, range_type, start_number, end_number, next_number)
             VALUES ($1, 'reserve', 179000, 200000, 179000)",
            &[&f.raffle_id],
        )
        .await;
    assert_eq!(sqlstate(overlapping), EXCLUSION);
    let allocate = |start: i64, end: i64| {
        let client = &client;
        let f = &f;
        async move {
            client
                .execute(
                    "INSERT INTO catalog.rsu_allocations (raffle_id, range_id, range_type, entity_id, start_number,
                                                          end_number, next_draw_number, allocated_by)
                     VALUES ($1, $2, 'rsu', $3, $4, $5, $4, 'test')",
                    &[&f.raffle_id, &f.rsu_range_id, &f.rsu_id, &start, &end],
                )
                .await
        }
    };
    assert_eq!(sqlstate(allocate(1001, 1100).await), "ok(1)");
    assert_eq!(
        sqlstate(allocate(1050, 1150).await),
        EXCLUSION,
        "overlaps the first block"
    );
    assert_eq!(
        sqlstate(allocate(49_950, 50_050).await),
        CHECK,
        "runs past the rsu range"
    );
    // Counters cannot claim more than the block holds.
    let oversold = client
        .execute(
            "UPDATE catalog.rsu_allocations SET next_draw_number = 1101, tickets_sold = 99, tickets_voided = 2
              WHERE raffle_id = $1",
            &[&f.raffle_id],
        )
        .await;
    assert_eq!(sqlstate(oversold), CHECK);
    let available: i64 = client
        .query_one(
            "UPDATE catalog.rsu_allocations SET next_draw_number = 1030, tickets_sold = 27, tickets_voided = 2
              WHERE raffle_id = $1 RETURNING tickets_available",
            &[&f.raffle_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(available, 71, "sold + voided + available = total");
}

#[tokio::test]
async fn perk_inventory_never_goes_negative_under_concurrent_claims() {
    let env = TestEnv::new().await;
    let client = env.client().await;
    let f = seed_catalog(&client).await;
    let perk: uuid::Uuid = client
        .query_one(
            "INSERT INTO catalog.perks (organization_id, name, perk_type, requires_inventory, inventory_total)
             VALUES ($1, 'VIP Parking', 'benefit', true, 3) RETURNING id",
            &[&f.organization_id],
        )
        .await
        .unwrap()
        .get(0);
    // Ten buyers race for three spaces, each on its own connection.
    let mut racers = Vec::new();
    for _ in 0..10 {
        let client = env.client().await;
        racers.push(tokio::spawn(async move {
            client
                .execute(
                    "UPDATE catalog.perks SET inventory_claimed = inventory_claimed + 1 WHERE id = $1",
                    &[&perk],
                )
                .await
                .is_ok()
        }));
    }
    let mut won = 0;
    for r in racers {
        if r.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 3);
    let row = client
        .query_one(
            "SELECT inventory_claimed, inventory_available FROM catalog.perks WHERE id = $1",
            &[&perk],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (3, 0));
}

#[tokio::test]
async fn critical_events_are_numbered_per_organisation_without_gaps_and_never_change() {
    let env = TestEnv::new().await;
    let mut client = env.client().await;
    let f = seed_catalog(&client).await;
    let g = seed_catalog(&client).await;
    let insert = "INSERT INTO audit.critical_events (organization_id, event_type, severity, description, retain_until)
                  VALUES ($1, 'RAFFLE_ACTIVATED', 'INFO', 'test', now() + interval '1095 days') RETURNING sequence_number";
    let mut seen = Vec::new();
    for org in [f.organization_id, f.organization_id, g.organization_id] {
        seen.push(
            client
                .query_one(insert, &[&org])
                .await
                .unwrap()
                .get::<_, i64>(0),
        );
    }
    // A refused action's event that rolls back takes its number with it.
    let tx = client.transaction().await.unwrap();
    tx.query_one(insert, &[&f.organization_id]).await.unwrap();
    tx.rollback().await.unwrap();
    seen.push(
        client
            .query_one(insert, &[&f.organization_id])
            .await
            .unwrap()
            .get(0),
    );
    assert_eq!(seen, vec![1, 2, 1, 3]);

    let update = client
        .execute(
            "UPDATE audit.critical_events SET description = 'edited'",
            &[],
        )
        .await;
    assert_eq!(sqlstate(update), APPEND_ONLY);
    let delete = client
        .execute("DELETE FROM audit.critical_events", &[])
        .await;
    assert_eq!(sqlstate(delete), APPEND_ONLY);
    let truncate = client.batch_execute("TRUNCATE audit.critical_events").await;
    assert_eq!(sqlstate(truncate.map(|_| 0)), APPEND_ONLY);
}

#[tokio::test]
async fn system_configuration_periods_never_overlap() {
    let env = TestEnv::new().await;
    let client = env.client().await;
    let current: serde_json::Value = client
        .query_one(
            "SELECT settings FROM catalog.system_configurations
              WHERE effective_from <= now() AND (effective_to IS NULL OR effective_to > now())",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(current["rsu"]["apiKeyRotationDays"], 90);
    let overlapping = client
        .execute(
            "INSERT INTO catalog.system_configurations (version, effective_from, settings, created_by)
             VALUES ('1.1.0', now(), '{}', 'test')",
            &[],
        )
        .await;
    assert_eq!(sqlstate(overlapping), EXCLUSION, "1.0.0 is open-ended");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever numbers a buggy writer tries, the table ends up with exactly the distinct
    /// in-range ones: unique and inside the range, held by the database alone.
    #[test]
    fn the_database_keeps_only_unique_in_range_numbers(
        numbers in proptest::collection::vec(49_990i64..50_030, 1..40)
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let env = TestEnv::new().await;
            let client = env.client().await;
            let f = seed_catalog(&client).await;
            let order = insert_order(&client, &f, "evt_prop").await;
            let mut expected = BTreeSet::new();
            for n in &numbers {
                let accepted = insert_ticket(&client, &f, order, *n).await.is_ok();
                let should = (50_001..=180_000).contains(n) && expected.insert(*n);
                assert_eq!(accepted, should, "number {n}");
            }
            let stored: BTreeSet<i64> = client
                .query("SELECT draw_number FROM sales.tickets WHERE raffle_id = $1", &[&f.raffle_id])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(stored, expected);
        });
    }
}

/// The ledger's references and balances, checked by the database per statement (V12): an entry
/// of an unknown raffle, a posting to a missing entry or account, to an account in another
/// currency or of another raffle are refused at once; an entry that does not balance, or an
/// older entry given one more posting, is refused at commit; postings may arrive over several
/// statements of one transaction; accounts cannot be removed or renamed.
#[tokio::test]
async fn ledger_entries_refer_to_what_exists_and_balance_at_commit() {
    let env = TestEnv::new().await;
    let mut client = env.client().await;
    let f = seed_catalog(&client).await;
    let g = seed_catalog(&client).await;
    let account = |raffle: uuid::Uuid, code: &str, currency: &str| {
        format!(
            "INSERT INTO ledger.accounts (raffle_id, code, kind, currency) VALUES ('{raffle}', '{code}', 'asset', '{currency}') RETURNING id"
        )
    };
    let mut accounts = Vec::new();
    for (raffle, code, currency) in [
        (f.raffle_id, "payment_clearing", "USD"),
        (f.raffle_id, "gross_ticket_revenue", "USD"),
        (f.raffle_id, "operating_fee", "USD"),
        (f.raffle_id, "payment_clearing", "CAD"),
        (g.raffle_id, "payment_clearing", "USD"),
    ] {
        let id: uuid::Uuid = client
            .query_one(&account(raffle, code, currency), &[])
            .await
            .unwrap()
            .get(0);
        accounts.push(id);
    }
    let [clearing, revenue, fee, cad, other_raffle] = accounts[..] else {
        unreachable!()
    };
    let entry = |id: uuid::Uuid, raffle: uuid::Uuid, sequence: i64| {
        format!(
            "INSERT INTO ledger.journal_entries (id, raffle_id, sequence, entry_type, event_id, description, currency,
                 occurred_at, previous_hash, hash)
             VALUES ('{id}', '{raffle}', {sequence}, 'ticket_sale', gen_random_uuid(), 'test', 'USD', now(),
                     sha256(''), sha256('{id}'))"
        )
    };
    let posting = |entry: uuid::Uuid, raffle: uuid::Uuid, account: uuid::Uuid, amount: i64| {
        format!(
            "INSERT INTO ledger.postings (entry_id, raffle_id, account_id, amount_minor)
             VALUES ('{entry}', '{raffle}', '{account}', {amount})"
        )
    };
    let r = f.raffle_id;

    // Postings over three statements of one transaction: accepted at commit.
    let first = uuid::Uuid::now_v7();
    let tx = client.transaction().await.unwrap();
    tx.execute(&entry(first, r, 1), &[]).await.unwrap();
    tx.execute(&posting(first, r, clearing, 500), &[])
        .await
        .unwrap();
    tx.execute(&posting(first, r, revenue, -500), &[])
        .await
        .unwrap();
    tx.commit().await.expect("a balanced entry commits");

    // Refused at once, naming what is missing or wrong.
    let missing = uuid::Uuid::now_v7();
    assert_eq!(
        sqlstate(client.execute(&entry(missing, missing, 1), &[]).await),
        FOREIGN_KEY,
        "an entry of an unknown raffle"
    );
    assert_eq!(
        sqlstate(client.execute(&posting(missing, r, clearing, 1), &[]).await),
        FOREIGN_KEY,
        "a posting to a missing entry"
    );
    assert_eq!(
        sqlstate(client.execute(&posting(first, r, missing, 1), &[]).await),
        FOREIGN_KEY,
        "a posting to a missing account"
    );
    assert_eq!(
        sqlstate(
            client
                .execute(&posting(first, r, other_raffle, 1), &[])
                .await
        ),
        FOREIGN_KEY,
        "a posting to another raffle's account"
    );
    let in_cad = client
        .execute(&posting(first, r, cad, 1), &[])
        .await
        .unwrap_err();
    assert_eq!(in_cad.code().map(|c| c.code()), Some(CHECK));
    assert!(
        format!("{in_cad:?}").contains("in CAD"),
        "names the currency: {in_cad:?}"
    );

    // Refused at commit: one more posting to an older entry that balanced; a new entry that
    // does not balance, or has no postings at all.
    let late = client.execute(&posting(first, r, fee, 1), &[]).await;
    assert_eq!(sqlstate(late), CHECK, "one posting added to an older entry");
    for postings in [vec![(clearing, 500)], vec![]] {
        let id = uuid::Uuid::now_v7();
        let tx = client.transaction().await.unwrap();
        tx.execute(&entry(id, r, 2), &[]).await.unwrap();
        for (account, amount) in postings {
            tx.execute(&posting(id, r, account, amount), &[])
                .await
                .unwrap();
        }
        let refused = tx.commit().await.unwrap_err();
        assert!(
            format!("{refused:?}").contains("does not balance"),
            "{refused:?}"
        );
    }
    let queued: i64 = client
        .query_one("SELECT count(*) FROM ledger.entries_to_check", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 0, "every queued check removes itself");

    // Accounts stay what they are; the consumer's upsert still returns the id.
    assert_eq!(
        sqlstate(
            client
                .execute("DELETE FROM ledger.accounts WHERE id = $1", &[&fee])
                .await
        ),
        APPEND_ONLY
    );
    assert_eq!(
        sqlstate(
            client
                .execute(
                    "UPDATE ledger.accounts SET currency = 'EUR' WHERE id = $1",
                    &[&fee]
                )
                .await
        ),
        APPEND_ONLY
    );
    let upserted: uuid::Uuid = client
        .query_one(
            "INSERT INTO ledger.accounts (raffle_id, code, kind, currency) VALUES ($1, 'operating_fee', 'asset', 'USD')
             ON CONFLICT (raffle_id, code, currency) DO UPDATE SET kind = ledger.accounts.kind RETURNING id",
            &[&r],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(upserted, fee);
}

/// A batch of tickets is checked as a whole (V13): one number outside its range, or outside
/// the device's allocation, refuses the statement and writes none of its tickets.
#[tokio::test]
async fn a_batch_with_one_ticket_outside_its_range_or_allocation_writes_nothing() {
    let env = TestEnv::new().await;
    let client = env.client().await;
    let f = seed_catalog(&client).await;
    let order = insert_order(&client, &f, "evt_batch").await;
    let allocation: uuid::Uuid = client
        .query_one(
            "INSERT INTO catalog.rsu_allocations (raffle_id, range_id, range_type, entity_id, start_number, end_number,
                 next_draw_number, allocated_by)
             VALUES ($1, $2, 'rsu', $3, 101, 200, 101, 'test') RETURNING id",
            &[&f.raffle_id, &f.rsu_range_id, &f.rsu_id],
        )
        .await
        .unwrap()
        .get(0);
    let batch = |numbers: &[i64], range: uuid::Uuid, allocation: Option<uuid::Uuid>| {
        let numbers = numbers.to_vec();
        let client = &client;
        let (raffle, order) = (f.raffle_id, order);
        async move {
            client
                .execute(
                    "INSERT INTO sales.tickets (raffle_id, order_id, range_id, rsu_allocation_id, draw_number, sold_at)
                     SELECT $1, $2, $3, $4, n, now() FROM unnest($5::bigint[]) n",
                    &[&raffle, &order, &range, &allocation, &numbers],
                )
                .await
        }
    };
    let outside_range = batch(&[50_001, 50_002, 180_001], f.online_range_id, None)
        .await
        .unwrap_err();
    assert_eq!(outside_range.code().map(|c| c.code()), Some(CHECK));
    assert!(
        format!("{outside_range:?}").contains("180001 of raffle"),
        "names the ticket: {outside_range:?}"
    );
    let outside_allocation = batch(&[150, 199, 201], f.rsu_range_id, Some(allocation))
        .await
        .unwrap_err();
    assert!(
        format!("{outside_allocation:?}").contains("outside allocation"),
        "{outside_allocation:?}"
    );
    let written: i64 = client
        .query_one("SELECT count(*) FROM sales.tickets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0, "nothing of a refused batch is written");
    assert_eq!(
        sqlstate(batch(&[150, 199, 200], f.rsu_range_id, Some(allocation)).await),
        "ok(3)"
    );
}

/// Each service's role writes only what its service owns (V18): ingest cannot write the
/// books, nothing but the ledger's code writes `ledger.*`, and no service can switch off or
/// skip the triggers that hold the invariants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_role_writes_only_what_its_service_owns() {
    let env = TestEnv::new().await;
    let mut refused = Vec::new();
    let attempts: &[(&str, &str)] = &[
        (
            "raffle_ingest",
            "INSERT INTO ledger.accounts (raffle_id, code, kind, currency) VALUES (gen_random_uuid(), 'x', 'asset', 'USD')",
        ),
        (
            "raffle_ingest",
            "INSERT INTO sales.tickets (raffle_id, order_id, range_id, draw_number, state) VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 1, 'sold')",
        ),
        (
            "raffle_ingest",
            "UPDATE catalog.organizations SET name = 'mine'",
        ),
        (
            "raffle_allocator",
            "INSERT INTO ledger.accounts (raffle_id, code, kind, currency) VALUES (gen_random_uuid(), 'x', 'asset', 'USD')",
        ),
        (
            "raffle_allocator",
            "UPDATE catalog.organizations SET name = 'mine'",
        ),
        (
            "raffle_ledger",
            "INSERT INTO sales.tickets (raffle_id, order_id, range_id, draw_number, state) VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 1, 'sold')",
        ),
        (
            "raffle_ledger",
            "UPDATE sales.orders SET payment_status = 'completed'",
        ),
        // Finance's HTTP actions (cash counts, payouts, staff refunds) append entries through
        // the ledger's code in the admin service (V28); the seal stays the ledger's alone.
        (
            "raffle_admin",
            "INSERT INTO ledger.seals (raffle_id, head_hash, entries, currency, gross_sales_minor, refunds_minor, written_off_minor, gross_receipts_minor, prizes, operating_fee_minor, net_proceeds_minor, tickets_eligible, tickets_voided, ticket_set_digest, seed_commitment, sealed_by) VALUES (gen_random_uuid(), '\\x00', 0, 'USD', 0, 0, 0, 0, '[]', 0, 0, 0, 0, '\\x00', '\\x00', 'x')",
        ),
        ("raffle_admin", "UPDATE sales.tickets SET state = 'voided'"),
        (
            "raffle_draw",
            "UPDATE sales.orders SET payment_status = 'completed'",
        ),
        (
            "raffle_ingest",
            "ALTER TABLE sales.orders DISABLE TRIGGER ALL",
        ),
        (
            "raffle_ledger",
            "ALTER TABLE ledger.postings DISABLE TRIGGER ALL",
        ),
        ("raffle_allocator", "SET session_replication_role = replica"),
        // The buyers' e-mails and the jackpot's tallies (V30, V31): each its own writer.
        (
            "raffle_notifier",
            "UPDATE sales.orders SET customer_email = 'someone@example.org'",
        ),
        (
            "raffle_notifier",
            "UPDATE displays.jackpots SET changes = 0",
        ),
        (
            "raffle_displays",
            "UPDATE notify.messages SET state = 'sent'",
        ),
        ("raffle_ingest", "UPDATE notify.messages SET state = 'sent'"),
        ("raffle_admin", "UPDATE displays.jackpots SET changes = 0"),
        ("raffle_admin", "CREATE TABLE catalog.mine (x int)"),
    ];
    for (group, sql) in attempts {
        let login = env.service_login(group).await;
        let client = login
            .db
            .connect("raffle-test-role")
            .await
            .expect("connect as the service role");
        let outcome = client.batch_execute(sql).await;
        let state = outcome
            .as_ref()
            .err()
            .and_then(|e| e.code())
            .map(|c| c.code().to_owned());
        if state.as_deref() != Some("42501") {
            refused.push(format!("{group}: {sql} -> {outcome:?}"));
        }
    }
    assert!(
        refused.is_empty(),
        "allowed, or refused for another reason: {refused:#?}"
    );

    // And what each service needs is allowed: a refusal ingest records, an outbox message
    // the allocator writes.
    let ingest = env
        .service_login("raffle_ingest")
        .await
        .db
        .connect("raffle-test-role")
        .await
        .unwrap();
    ingest
        .execute(
            "INSERT INTO sales.rejected_sales (source, reason_code, reason, rejected_by) VALUES ('online', 'test', 'test', 'ingest')",
            &[],
        )
        .await
        .expect("ingest records refusals");
    let allocator = env
        .service_login("raffle_allocator")
        .await
        .db
        .connect("raffle-test-role")
        .await
        .unwrap();
    allocator
        .execute(
            "INSERT INTO platform.outbox (topic, payload) VALUES ('t', '\\x00')",
            &[],
        )
        .await
        .expect("the allocator writes its outbox");
}
