//! A sealed raffle of any size, for the draw's tests and benchmark: the raffle is set up
//! through the admin API ([`crate::seed`]), its sales are written in bulk by SQL (the allocator's
//! per-sale path is the pipeline's own test), its books get one sale entry and one reversal
//! entry matching those sales, and the real seal closes them.

use deadpool_postgres::Pool;
use ledger::postings::Account;
use platform::TopicNames;
use uuid::Uuid;

pub struct FixtureOptions {
    /// Numbers sold, from 50001 up, five to an order of $20.
    pub tickets: i64,
    /// Every n-th sold number is voided (none when 0).
    pub void_every: i64,
    /// Numbers of the online range left unsold after the sold ones.
    pub unsold: i64,
    /// Winners of the fixed early-bird prize (position 2); none when 0.
    pub early_bird_winners: i64,
    pub claim_period_days: i32,
    /// The key the seal wraps the draw seed under (none: in clear).
    pub seed_key: Option<ledger::seed_key::SeedKey>,
}

impl Default for FixtureOptions {
    fn default() -> Self {
        Self {
            tickets: 500,
            void_every: 10,
            unsold: 100,
            early_bird_winners: 3,
            claim_period_days: 30,
            seed_key: None,
        }
    }
}

/// The check code on every receipt of the fixture (as printed).
pub const CHECK_CODE: &str = "FXTRC-0DE00";

pub struct SealedRaffle {
    pub raffle_id: Uuid,
    pub organization_id: Uuid,
    pub sold: i64,
    pub voided: i64,
    pub seal: ledger::SealRecord,
}

fn e(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

pub async fn sealed_raffle(
    pool: &Pool,
    brokers: &str,
    topics: &TopicNames,
    options: &FixtureOptions,
) -> Result<SealedRaffle, String> {
    let tickets = options.tickets.max(1);
    let online_end = 50_000 + tickets + options.unsold;
    let scenario = crate::seed::raffle_on_sale(
        pool,
        &crate::seed::Options {
            rsu_count: 0,
            allocation_size: 100,
            max_tickets: online_end,
            sales_hours: 6,
            online_end,
            early_bird_winners: options.early_bird_winners,
            windowed_package: false,
        },
    )
    .await
    .map_err(e)?;
    let raffle = scenario.raffle_id;
    let mut client = pool.get().await.map_err(e)?;
    // Sales closed; the draw is now, so the claim period runs from now.
    client
        .execute(
            "UPDATE catalog.raffle_events SET state = 'sales_closed', sales_start_time = now() - interval '2 hours',
                    sales_end_time = now() - interval '1 minute', draw_time = now(), claim_period_days = $2
              WHERE id = $1",
            &[&raffle, &options.claim_period_days],
        )
        .await
        .map_err(e)?;
    let range: Uuid = client
        .query_one(
            "SELECT id FROM catalog.raffle_ranges WHERE raffle_id = $1 AND range_type = 'online'",
            &[&raffle],
        )
        .await
        .map_err(e)?
        .get(0);
    let orders = (tickets + 4) / 5;
    let void_every = options.void_every.max(0);
    let tx = client.transaction().await.map_err(e)?;
    // Ten million rows load much faster without per-row triggers; a superuser may skip them for
    // this transaction (the numbers are built inside the range). Others take the slow path.
    let skip = tx
        .batch_execute("SAVEPOINT fast; SET LOCAL session_replication_role = replica")
        .await;
    if skip.is_err() {
        tx.batch_execute("ROLLBACK TO SAVEPOINT fast")
            .await
            .map_err(e)?;
    }
    tx.execute(
        // Every order's check code is CHECK_CODE; its hash is schemas::CheckCode::hash,
        // written out in SQL (claims in the tests check the two agree).
        "INSERT INTO sales.orders (id, raffle_id, package_id, validation_number, ticket_count, total_amount_minor, currency,
             payment_status, payment_provider, payment_reference, idempotency_key, source, paid_at, created_by,
             check_code_hash)
         SELECT md5($1::uuid::text || ':' || g)::uuid, $1::uuid, $2, v.number, 5, 2000, 'USD',
                'completed', 'fixture', $1::uuid::text || ':' || g, 'fixture:' || $1::uuid::text || ':' || g, 'online', now(), 'fixture',
                sha256(convert_to('raffle-check-code/v1', 'UTF8') || '\\x00'::bytea || uuid_send($1::uuid)
                       || convert_to(v.number, 'UTF8') || '\\x00'::bytea || convert_to($4, 'UTF8'))
           FROM generate_series(0::bigint, $3::bigint - 1) g, LATERAL (SELECT 'VAL-' || lpad(g::text, 9, '0') AS number) v",
        &[&raffle, &scenario.package_id, &orders, &CHECK_CODE.replace('-', "")],
    )
    .await
    .map_err(e)?;
    tx.execute(
        "INSERT INTO sales.tickets (raffle_id, order_id, range_id, draw_number, state, sold_at, sold_by, voided_at, voided_by, voided_reason)
         SELECT $1::uuid, md5($1::uuid::text || ':' || (g / 5))::uuid, $2, 50001 + g,
                CASE WHEN v THEN 'voided' ELSE 'sold' END, now() - interval '1 hour', 'online',
                CASE WHEN v THEN now() END, CASE WHEN v THEN 'fixture' END, CASE WHEN v THEN 'voided for the fixture' END
           FROM generate_series(0::bigint, $3::bigint - 1) g, LATERAL (SELECT $4::bigint > 0 AND g % $4::bigint = $4::bigint - 1 AS v) x",
        &[&raffle, &range, &tickets, &void_every],
    )
    .await
    .map_err(e)?;
    let voided = if void_every > 0 {
        tickets / void_every
    } else {
        0
    };
    tx.execute(
        "UPDATE catalog.raffle_ranges SET next_number = 50001 + $2::bigint WHERE id = $1",
        &[&range, &tickets],
    )
    .await
    .map_err(e)?;
    tx.execute(
        "UPDATE catalog.raffle_events SET total_sold = $2, total_voided = $3, first_sale_at = now() - interval '1 hour' WHERE id = $1",
        &[&raffle, &(tickets - voided), &voided],
    )
    .await
    .map_err(e)?;
    let gross = orders * 2000;
    let reversed = voided * 400;
    ledger::append(
        &tx,
        raffle,
        "ticket_sale",
        format!("{orders} orders sold (fixture)"),
        "USD",
        &[
            Account::PaymentClearing.debit(gross),
            Account::GrossTicketRevenue.credit(gross),
        ],
    )
    .await
    .map_err(e)?;
    if reversed > 0 {
        ledger::append(
            &tx,
            raffle,
            "ticket_reversal",
            format!("{voided} tickets voided (fixture)"),
            "USD",
            &[
                Account::RefundsAndVoids.debit(reversed),
                Account::PaymentClearing.credit(reversed),
            ],
        )
        .await
        .map_err(e)?;
    }
    tx.commit().await.map_err(e)?;
    drop(client);
    let seal = ledger::seal(
        pool,
        brokers,
        topics,
        &ledger::SealRequest {
            raffle_id: raffle,
            sealed_by: "fixture".into(),
            grace_seconds: 0,
            write_off: Vec::new(),
            seed_key: options.seed_key.clone(),
            seed_keeper: &draw_engine::SEED_KEEPER,
        },
    )
    .await
    .map_err(e)?;
    Ok(SealedRaffle {
        raffle_id: raffle,
        organization_id: scenario.organization_id,
        sold: tickets - voided,
        voided,
        seal,
    })
}
