//! The draw against real Postgres (and the broker the seal checks): refused before the seal, on
//! a tampered ledger and a second time; interrupted and resumed with the same winners; multi-
//! prize and multi-winner; manual where RNG draws are forbidden; claims within and after the
//! period; `draw verify` catching a changed result; and the statistics of the selection.

use chrono::{Duration, Utc};
use draw_engine::{DrawError, DrawRequest};
use platform::testkit::TestEnv;
use scenario::fixture::{FixtureOptions, SealedRaffle, sealed_raffle};
use uuid::Uuid;

async fn sealed(env: &TestEnv, options: FixtureOptions) -> SealedRaffle {
    sealed_raffle(&env.pool, &env.brokers, &env.topics, &options)
        .await
        .expect("a sealed raffle")
}

fn request(raffle: Uuid) -> DrawRequest {
    DrawRequest {
        raffle_id: raffle,
        conducted_by: "draw-officer".into(),
        interrupt_after_prizes: None,
        seed_key: None,
    }
}

fn code(e: &DrawError) -> &'static str {
    match e {
        DrawError::Refused { code, .. } => code,
        other => panic!("expected a refusal, got {other}"),
    }
}

async fn events(client: &tokio_postgres::Client, raffle: Uuid, event_type: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM audit.critical_events WHERE raffle_id = $1 AND event_type = $2",
            &[&raffle, &event_type],
        )
        .await
        .unwrap()
        .get(0)
}

/// How many draw results the raffle holds.
async fn recorded_results(env: &TestEnv, raffle: Uuid) -> i64 {
    env.client()
        .await
        .query_one(
            "SELECT count(*) FROM draw.draw_results r JOIN draw.draw_executions e ON e.id = r.draw_execution_id
              WHERE e.raffle_event_id = $1",
            &[&raffle],
        )
        .await
        .unwrap()
        .get(0)
}

/// The validation number printed with winning number `number` of `raffle`.
async fn validation_of(client: &tokio_postgres::Client, raffle: Uuid, number: i64) -> String {
    client
        .query_one(
            "SELECT o.validation_number FROM sales.tickets t JOIN sales.orders o ON o.id = t.order_id
              WHERE t.raffle_id = $1 AND t.draw_number = $2",
            &[&raffle, &number],
        )
        .await
        .unwrap()
        .get(0)
}

/// Runs `sql` as superuser with triggers off, as someone tampering with the rows would.
async fn tamper(client: &tokio_postgres::Client, sql: &str) {
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT;"
        ))
        .await
        .expect("tampering as superuser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draw_before_the_seal_is_refused_and_recorded() {
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
    let e = draw_engine::run(&env.pool, &request(s.raffle_id))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "not-sealed", "{e}");
    assert!(e.to_string().contains("active"), "{e}");
    let client = env.client().await;
    assert_eq!(events(&client, s.raffle_id, "DRAW_REFUSED").await, 1);
    let e = draw_engine::run(&env.pool, &request(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "unknown-raffle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raffle_with_fewer_tickets_than_winners_is_refused_not_half_drawn() {
    let env = TestEnv::new().await;
    // Three sold tickets (the third voided), a jackpot and three early birds: four winners.
    let f = sealed(
        &env,
        FixtureOptions {
            tickets: 3,
            void_every: 3,
            ..Default::default()
        },
    )
    .await;
    let e = draw_engine::run(&env.pool, &request(f.raffle_id))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "too-few-tickets", "{e}");
    assert!(
        e.to_string().contains("2 eligible tickets for 4 winners"),
        "{e}"
    );
    let results = recorded_results(&env, f.raffle_id).await;
    assert_eq!(results, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_multi_prize_draw_resumes_with_the_same_winners_and_verifies() {
    let env = TestEnv::new().await;
    let f = sealed(&env, FixtureOptions::default()).await;
    let client = env.client().await;

    // What the committed seed selects, derived before anything is recorded.
    let prepared = draw_engine::prepare(&client, f.raffle_id).await.unwrap();
    assert_eq!(prepared.eligible.len() as i64, f.sold);
    let expected = draw_engine::select_winners(&prepared).unwrap();
    assert_eq!(expected.len(), 1 + 3, "the jackpot and three early birds");

    // The first run stops after the jackpot, as a crash would.
    let e = draw_engine::run(
        &env.pool,
        &DrawRequest {
            interrupt_after_prizes: Some(1),
            ..request(f.raffle_id)
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, DrawError::Interrupted { prizes_recorded: 1 }),
        "{e}"
    );
    let partial = draw_engine::recorded_winners(&client, prepared.execution_id)
        .await
        .unwrap();
    assert_eq!(partial, expected[..1].to_vec());
    let state: String = client
        .query_one(
            "SELECT state FROM draw.draw_executions WHERE id = $1",
            &[&prepared.execution_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "in_progress");

    // The second run resumes: the jackpot winner is kept, the rest follow the same stream.
    let outcome = draw_engine::run(&env.pool, &request(f.raffle_id))
        .await
        .unwrap();
    assert!(outcome.resumed);
    assert_eq!(outcome.winners, expected);
    assert_eq!(
        outcome.seed_commitment, f.seal.seed_commitment,
        "the seed revealed is the one committed at the seal"
    );
    assert!(outcome.system_checksum.contains(&f.seal.head_hash));

    // Prize values: the sealed jackpot to its winner, $500 shared to the cent by three.
    let jackpot = f.seal.prizes[0]["amount_minor"].as_i64().unwrap();
    let values: Vec<i64> = outcome.winners.iter().map(|w| w.value_minor).collect();
    assert_eq!(values, vec![jackpot, 16_667, 16_667, 16_666]);
    // Winners are distinct, sold, not voided, and marked.
    let numbers: Vec<i64> = outcome.winners.iter().map(|w| w.draw_number).collect();
    let marked: i64 = client
        .query_one(
            "SELECT count(*) FROM sales.tickets WHERE raffle_id = $1 AND state = 'winner' AND draw_number = ANY($2)",
            &[&f.raffle_id, &numbers],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(marked, 4);
    let raffle_state: String = client
        .query_one(
            "SELECT state FROM catalog.raffle_events WHERE id = $1",
            &[&f.raffle_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(raffle_state, "drawn");

    // The books: prize liabilities moved to the winners, still balanced and chained.
    let balances = ledger::balances(&client, f.raffle_id, None).await.unwrap();
    assert_eq!(balances.values().sum::<i64>(), 0);
    assert!(
        balances
            .iter()
            .filter(|(k, _)| k.starts_with("prize_liability/"))
            .all(|(_, v)| *v == 0),
        "{balances:?}"
    );
    let payable: i64 = balances
        .iter()
        .filter(|(k, _)| k.starts_with("prize_payable/"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(-payable, jackpot + 50_000);
    assert!(ledger::verify(&client, f.raffle_id).await.unwrap().ok());

    let v = draw_engine::verify(&client, f.raffle_id).await.unwrap();
    assert!(v.ok(), "{:#?}", v.checks);
    assert_eq!(events(&client, f.raffle_id, "DRAW_RESUMED").await, 1);

    // An independent implementation (what an auditor would write) draws the same winners.
    let reference = std::process::Command::new("python3")
        .args([
            "scripts/draw_reference.py",
            outcome.seed.as_deref().unwrap(),
            &outcome.seal_head_hash,
            &prepared.eligible.len().to_string(),
            "1",
            "3",
        ])
        .output()
        .expect("python3 runs the reference implementation");
    let text = String::from_utf8_lossy(&reference.stdout);
    let indices: Vec<usize> = text
        .lines()
        .flat_map(|l| {
            l.split_once(": ")
                .map(|(_, list)| list.trim_matches(['[', ']']).to_owned())
                .unwrap_or_default()
                .split(", ")
                .filter_map(|x| x.parse().ok())
                .collect::<Vec<usize>>()
        })
        .collect();
    assert_eq!(
        indices
            .iter()
            .map(|&i| prepared.eligible.tickets[i].draw_number)
            .collect::<Vec<_>>(),
        numbers,
        "reference implementation: {text}"
    );
    assert_eq!(events(&client, f.raffle_id, "DRAW_COMPLETED").await, 1);

    // A second draw is refused and recorded.
    let e = draw_engine::run(&env.pool, &request(f.raffle_id))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "already-drawn", "{e}");
    assert_eq!(events(&client, f.raffle_id, "DRAW_REFUSED").await, 1);

    // The operator's command says the same.
    let cli = draw_verify_cli(&env, f.raffle_id).await;
    assert!(cli.0 && cli.1.contains("PASS"), "{}", cli.1);

    // A result changed in the database is caught by `draw verify`, naming the prize.
    let other: i64 = client
        .query_one(
            "SELECT draw_number FROM sales.tickets WHERE raffle_id = $1 AND state = 'sold' ORDER BY draw_number LIMIT 1",
            &[&f.raffle_id],
        )
        .await
        .unwrap()
        .get(0);
    tamper(
        &client,
        &format!(
            "UPDATE draw.draw_results SET winning_number = {other},
                    winning_ticket_id = (SELECT id FROM sales.tickets WHERE raffle_id = '{}' AND draw_number = {other})
              WHERE draw_execution_id = '{}' AND position = 2 AND winner_index = 2",
            f.raffle_id, prepared.execution_id
        ),
    )
    .await;
    let v = draw_engine::verify(&client, f.raffle_id).await.unwrap();
    assert!(!v.ok());
    let cli = draw_verify_cli(&env, f.raffle_id).await;
    assert!(!cli.0 && cli.1.contains("FAIL"), "{}", cli.1);
    let failing = v.checks.iter().find(|c| !c.pass).unwrap();
    assert!(
        failing.detail.contains("prize 2 winner 2") && failing.detail.contains(&other.to_string()),
        "{}",
        failing.detail
    );
}

/// `raffle draw verify` as a process: (success, output).
async fn draw_verify_cli(env: &TestEnv, raffle: Uuid) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_raffle"))
        .args(["draw", "verify", "--raffle", &raffle.to_string()])
        .env("DATABASE_URL", &env.database_url)
        .output()
        .await
        .expect("raffle draw verify runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_draws_at_once_draw_the_raffle_once() {
    let env = TestEnv::new().await;
    let f = sealed(&env, FixtureOptions::default()).await;
    let (first, second) = (request(f.raffle_id), request(f.raffle_id));
    let (a, b) = tokio::join!(
        draw_engine::run(&env.pool, &first),
        draw_engine::run(&env.pool, &second)
    );
    let outcomes = [a, b];
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    let refusal = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
    assert!(
        ["draw-in-progress", "already-drawn"].contains(&code(refusal)),
        "{refusal}"
    );
    let results = recorded_results(&env, f.raffle_id).await;
    assert_eq!(results, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_ledger_or_ticket_set_refuses_the_draw() {
    let env = TestEnv::new().await;
    let f = sealed(
        &env,
        FixtureOptions {
            tickets: 100,
            ..Default::default()
        },
    )
    .await;
    let client = env.client().await;
    // A posting's amount changed.
    tamper(
        &client,
        &format!(
            "UPDATE ledger.postings SET amount_minor = amount_minor + 100 WHERE entry_id =
                 (SELECT id FROM ledger.journal_entries WHERE raffle_id = '{}' AND sequence = 1)
               AND amount_minor > 0",
            f.raffle_id
        ),
    )
    .await;
    let e = draw_engine::run(&env.pool, &request(f.raffle_id))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ledger-does-not-verify", "{e}");
    assert!(e.to_string().contains("sequence 1"), "{e}");

    // A fresh raffle whose voided ticket was quietly revived: the eligible set left the seal.
    let g = sealed(
        &env,
        FixtureOptions {
            tickets: 100,
            ..Default::default()
        },
    )
    .await;
    tamper(
        &client,
        &format!(
            "UPDATE sales.tickets SET state = 'sold', voided_at = NULL WHERE raffle_id = '{}' AND state = 'voided'
               AND draw_number = (SELECT min(draw_number) FROM sales.tickets WHERE raffle_id = '{}' AND state = 'voided')",
            g.raffle_id, g.raffle_id
        ),
    )
    .await;
    let e = draw_engine::run(&env.pool, &request(g.raffle_id))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "seal-does-not-verify", "{e}");
    assert!(e.to_string().contains("ticket_set_digest"), "{e}");
    assert_eq!(events(&client, g.raffle_id, "DRAW_REFUSED").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_rng_draws_are_forbidden_the_barrel_list_is_drawn_by_hand() {
    let env = TestEnv::new().await;
    let f = sealed(
        &env,
        FixtureOptions {
            tickets: 50,
            early_bird_winners: 2,
            ..Default::default()
        },
    )
    .await;
    let client = env.client().await;
    client
        .execute(
            "INSERT INTO catalog.jurisdiction_regulations (jurisdiction_id, name, regulation_type, value, effective_date, overridable)
             SELECT v.jurisdiction_id, 'electronic raffles: no RNG draws', 'sales_method',
                    '{\"online\": true, \"rsu\": true, \"offline_rsu\": true, \"rng_draw\": false}', now() - interval '1 day', false
               FROM catalog.raffle_events r JOIN catalog.venues v ON v.id = r.venue_id WHERE r.id = $1",
            &[&f.raffle_id],
        )
        .await
        .unwrap();
    let e = draw_engine::run(&env.pool, &request(f.raffle_id))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "rng-draw-forbidden", "{e}");

    let mut barrel = Vec::new();
    let (count, digest) =
        draw_engine::export_barrel(&env.pool, f.raffle_id, "draw-officer", &mut barrel)
            .await
            .unwrap();
    assert_eq!(count as i64, f.sold);
    assert_eq!(digest, f.seal.ticket_set_digest);
    let text = String::from_utf8(barrel).unwrap();
    let numbers: Vec<i64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), count);
    let voided: i64 = client
        .query_one(
            "SELECT min(draw_number) FROM sales.tickets WHERE raffle_id = $1 AND state = 'voided'",
            &[&f.raffle_id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !numbers.contains(&voided),
        "a voided number is not in the barrel"
    );

    let manual = |results: Vec<(i32, Vec<i64>)>| draw_engine::ManualRequest {
        raffle_id: f.raffle_id,
        conducted_by: "draw-officer".into(),
        results,
    };
    // Wrong: a voided number, a number twice, a prize short of winners, an unknown prize.
    let e = draw_engine::manual(
        &env.pool,
        &manual(vec![
            (1, vec![voided]),
            (2, vec![numbers[0]]),
            (3, vec![numbers[0]]),
        ]),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), "invalid-manual-result", "{e}");
    let reason = e.to_string();
    for expected in [
        &format!("number {voided} is not a sold"),
        "prize 2 (Early-bird draw) needs 2 winning numbers, 1 given",
        "no prize at position 3",
    ] {
        assert!(reason.contains(expected), "{reason} lacks {expected}");
    }
    let state: String = client
        .query_one(
            "SELECT state FROM catalog.raffle_events WHERE id = $1",
            &[&f.raffle_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "sealed", "nothing was recorded");

    let outcome = draw_engine::manual(
        &env.pool,
        &manual(vec![
            (1, vec![numbers[7]]),
            (2, vec![numbers[3], numbers[11]]),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(outcome.method, "manual");
    assert_eq!(
        outcome
            .winners
            .iter()
            .map(|w| w.draw_number)
            .collect::<Vec<_>>(),
        vec![numbers[7], numbers[3], numbers[11]]
    );
    let v = draw_engine::verify(&client, f.raffle_id).await.unwrap();
    assert!(v.ok(), "{:#?}", v.checks);
    assert_eq!(v.method, "manual");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn winners_claim_within_the_period_and_unclaimed_prizes_return_to_proceeds() {
    let env = TestEnv::new().await;
    let f = sealed(
        &env,
        FixtureOptions {
            tickets: 200,
            claim_period_days: 30,
            ..Default::default()
        },
    )
    .await;
    let client = env.client().await;
    let claim = |number: i64, validation: &str| draw_engine::ClaimRequest {
        raffle_id: f.raffle_id,
        draw_number: number,
        validation_number: validation.into(),
        check_code: scenario::fixture::CHECK_CODE.into(),
        claimed_by: "winner".into(),
        source: "test".into(),
    };
    let e = draw_engine::claim(&env.pool, &claim(50_001, "X"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "not-drawn");
    let outcome = draw_engine::run(&env.pool, &request(f.raffle_id))
        .await
        .unwrap();
    let validation = |number: i64| validation_of(&client, f.raffle_id, number);
    let jackpot = &outcome.winners[0];
    let early = &outcome.winners[1];
    let loser: i64 = client
        .query_one(
            "SELECT min(draw_number) FROM sales.tickets WHERE raffle_id = $1 AND state = 'sold'",
            &[&f.raffle_id],
        )
        .await
        .unwrap()
        .get(0);

    // Refused: wrong validation number, a number that did not win.
    let e = draw_engine::claim(&env.pool, &claim(jackpot.draw_number, "VAL-999999999"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "wrong-validation-number");
    let e = draw_engine::claim(&env.pool, &claim(loser, &validation(loser).await))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "not-a-winner");

    // Accepted: paid out through the ledger, the ticket claimed; a second claim refused.
    let paid = draw_engine::claim(
        &env.pool,
        &claim(
            jackpot.draw_number,
            &validation(jackpot.draw_number).await.to_lowercase(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(paid.amount_minor, jackpot.value_minor);
    let e = draw_engine::claim(
        &env.pool,
        &claim(jackpot.draw_number, &validation(jackpot.draw_number).await),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), "already-claimed");
    let balances = ledger::balances(&client, f.raffle_id, None).await.unwrap();
    assert_eq!(
        balances[draw_engine::claims::PRIZE_DISBURSEMENTS],
        -jackpot.value_minor
    );

    // Wrong guesses at one number are rate-limited, even before the right one.
    for _ in 0..draw_engine::claims::MAX_REFUSED_ATTEMPTS {
        let e = draw_engine::claim(&env.pool, &claim(early.draw_number, "GUESS"))
            .await
            .unwrap_err();
        assert_eq!(code(&e), "wrong-validation-number");
    }
    let e = draw_engine::claim(
        &env.pool,
        &claim(early.draw_number, &validation(early.draw_number).await),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), "rate-limited", "{e}");
    // Later (past the window), the right claim goes through.
    let later = Utc::now() + Duration::minutes(draw_engine::claims::RATE_WINDOW_MINUTES + 1);
    draw_engine::claim_at(
        &env.pool,
        &claim(early.draw_number, &validation(early.draw_number).await),
        later,
    )
    .await
    .unwrap();
    let refused: i64 = client
        .query_one(
            "SELECT count(*) FROM draw.claim_attempts WHERE raffle_id = $1 AND outcome = 'refused'",
            &[&f.raffle_id],
        )
        .await
        .unwrap()
        .get(0);
    // not drawn, wrong validation, not a winner, already claimed, five guesses, rate-limited.
    assert_eq!(refused, 4 + 5 + 1);
    assert_eq!(
        events(&client, f.raffle_id, "PRIZE_CLAIM_REFUSED").await,
        refused
    );

    // After the period: a claim is refused; the two unclaimed early birds return to proceeds.
    let after = Utc::now() + Duration::days(31);
    let late = &outcome.winners[2];
    let e = draw_engine::claim_at(
        &env.pool,
        &claim(late.draw_number, &validation(late.draw_number).await),
        after,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), "claim-period-over");
    let e = draw_engine::expire_unclaimed(&env.pool, f.raffle_id, "finance")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "claim-period-open");
    let expiry = draw_engine::expire_unclaimed_at(&env.pool, f.raffle_id, "finance", after)
        .await
        .unwrap();
    assert_eq!(expiry.expired.len(), 2);
    assert_eq!(
        expiry.returned_to_proceeds_minor,
        outcome.winners[2].value_minor + outcome.winners[3].value_minor
    );
    let balances = ledger::balances(&client, f.raffle_id, None).await.unwrap();
    assert!(
        balances
            .iter()
            .filter(|(k, _)| k.starts_with("prize_payable/") || k.starts_with("prize_liability/"))
            .all(|(_, v)| *v == 0),
        "every prize paid or returned: {balances:?}"
    );
    assert_eq!(
        balances["net_proceeds"],
        -f.seal.net_proceeds_minor - expiry.returned_to_proceeds_minor
    );
    assert_eq!(balances.values().sum::<i64>(), 0);
    assert!(ledger::verify(&client, f.raffle_id).await.unwrap().ok());
    assert!(
        draw_engine::verify(&client, f.raffle_id)
            .await
            .unwrap()
            .ok()
    );
    // The database takes no sale after the seal.
    let e = client
        .batch_execute(&format!(
            "BEGIN; INSERT INTO ledger.journal_entries (raffle_id, sequence, entry_type, event_id, currency, occurred_at, previous_hash, hash, description)
             VALUES ('{}', 999, 'ticket_sale', gen_random_uuid(), 'USD', now(), decode(repeat('00', 32), 'hex'), decode(repeat('ab', 32), 'hex'), 'late sale'); COMMIT;",
            f.raffle_id
        ))
        .await
        .unwrap_err();
    let _ = client.batch_execute("ROLLBACK").await;
    assert!(
        format!("{e:?}").contains("not accepted after the seal"),
        "{e:?}"
    );
}

/// The chi-square statistic of observed counts against equal expectation.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

/// The 99th percentile of chi-square with `df` degrees of freedom (Wilson–Hilferty; within a
/// fraction of a percent for df above 30).
fn chi_square_99(df: f64) -> f64 {
    let z = 2.326_348;
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + z * a.sqrt()).powi(3)
}

#[test]
fn every_ticket_wins_equally_often() {
    use draw_engine::select::{key, winners};
    use sha2::Digest;
    // 60 tickets, one or three winners a draw, 30,000 simulated draws with seeds of their own.
    for per_draw in [1u32, 3] {
        let n = 60;
        let mut counts = vec![0u64; n];
        for d in 0u32..30_000 {
            let seed: [u8; 32] =
                sha2::Sha256::digest(format!("simulated seed {per_draw}/{d}")).into();
            for i in winners(key(&seed, &[7; 32]), n, &[per_draw]).concat() {
                counts[i] += 1;
            }
        }
        let statistic = chi_square(&counts);
        let critical = chi_square_99((n - 1) as f64);
        assert!(
            statistic < critical,
            "{per_draw} winners a draw: chi-square {statistic:.1} ≥ {critical:.1} (99%): {counts:?}"
        );
        assert!(counts.iter().all(|&c| c > 0), "every ticket can win");
    }
    assert!(
        (chi_square_99(59.0) - 87.17).abs() < 0.3,
        "against the table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_never_selects_a_voided_or_unsold_number() {
    let env = TestEnv::new().await;
    let f = sealed(
        &env,
        FixtureOptions {
            tickets: 40,
            void_every: 4,
            unsold: 30,
            early_bird_winners: 2,
            claim_period_days: 30,
            seed_key: None,
        },
    )
    .await;
    let client = env.client().await;
    let rows = client
        .query(
            "SELECT draw_number FROM sales.tickets WHERE raffle_id = $1 AND state = 'sold'",
            &[&f.raffle_id],
        )
        .await
        .unwrap();
    let sold: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(sold.len() as i64, f.sold);
    assert_eq!(f.voided, 10);
    let prepared = draw_engine::prepare(&client, f.raffle_id).await.unwrap();
    let mut hits = std::collections::HashMap::new();
    for d in 0u32..5_000 {
        let seed: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(d.to_le_bytes()).into();
        for i in draw_engine::select::winners(
            draw_engine::select::key(&seed, &prepared.seal_head),
            prepared.eligible.len(),
            &[1, 2],
        )
        .concat()
        {
            let number = prepared.eligible.tickets[i].draw_number;
            assert!(
                sold.contains(&number),
                "selected {number}, which is not sold or is voided"
            );
            *hits.entry(number).or_insert(0u64) += 1;
        }
    }
    assert_eq!(
        hits.len(),
        sold.len(),
        "every sold number won at least once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_sealed_under_a_key_is_unreadable_until_the_draw_reveals_it() {
    let env = TestEnv::new().await;
    let key = ledger::seed_key::SeedKey::new([9; 32]);
    let f = sealed(
        &env,
        FixtureOptions {
            tickets: 100,
            seed_key: Some(key.clone()),
            ..Default::default()
        },
    )
    .await;
    let client = env.client().await;
    let stored = || async {
        let r = client
            .query_one(
                "SELECT rng_seed, rng_seed_wrapped FROM draw.draw_executions WHERE raffle_event_id = $1",
                &[&f.raffle_id],
            )
            .await
            .unwrap();
        (r.get::<_, Vec<u8>>(0), r.get::<_, bool>(1))
    };
    let (at_rest, wrapped) = stored().await;
    assert!(wrapped);
    assert_ne!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&at_rest)),
        f.seal.seed_commitment,
        "what the table holds is not the seed"
    );
    // Without the key, or with another, no draw.
    let e = draw_engine::run(&env.pool, &request(f.raffle_id))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "seed-key-missing", "{e}");
    let wrong = DrawRequest {
        seed_key: Some(ledger::seed_key::SeedKey::new([8; 32])),
        ..request(f.raffle_id)
    };
    let e = draw_engine::run(&env.pool, &wrong).await.unwrap_err();
    assert_eq!(code(&e), "commitment-mismatch", "{e}");
    // With it, the draw reveals the seed, which meets the commitment, and verifies.
    let right = DrawRequest {
        seed_key: Some(key),
        ..request(f.raffle_id)
    };
    let outcome = draw_engine::run(&env.pool, &right).await.unwrap();
    let (revealed, wrapped) = stored().await;
    assert!(!wrapped);
    assert_eq!(Some(hex::encode(&revealed)), outcome.seed);
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&revealed)),
        f.seal.seed_commitment
    );
    let v = draw_engine::verify(&client, f.raffle_id).await.unwrap();
    assert!(v.ok(), "{:#?}", v.checks);
}

/// A critical event that cannot be written makes the claim fail, instead of a COMMIT that
/// the server turns into a ROLLBACK while the claimant is told the prize was paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_critical_event_cannot_be_written_fails_and_pays_nothing() {
    let env = TestEnv::new().await;
    let f = sealed(&env, FixtureOptions::default()).await;
    let outcome = draw_engine::run(&env.pool, &request(f.raffle_id))
        .await
        .unwrap();
    let client = env.client().await;
    let winner = &outcome.winners[0];
    let validation = validation_of(&client, f.raffle_id, winner.draw_number).await;
    client
        .batch_execute(
            "CREATE FUNCTION test_refuse_claim_events() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.event_type = 'PRIZE_CLAIMED' THEN RAISE EXCEPTION 'the audit trail is full'; END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER test_refuse_claim_events BEFORE INSERT ON audit.critical_events
                 FOR EACH ROW EXECUTE FUNCTION test_refuse_claim_events();",
        )
        .await
        .unwrap();
    let claim = draw_engine::ClaimRequest {
        raffle_id: f.raffle_id,
        draw_number: winner.draw_number,
        validation_number: validation,
        check_code: scenario::fixture::CHECK_CODE.into(),
        claimed_by: "winner".into(),
        source: "test".into(),
    };
    let e = draw_engine::claim(&env.pool, &claim)
        .await
        .expect_err("the claim cannot succeed without its critical event");
    assert!(
        matches!(&e, DrawError::Failed(why) if why.contains("PRIZE_CLAIMED")),
        "{e}"
    );
    let claimed: i64 = client
        .query_one(
            "SELECT count(*) FROM draw.prize_claims c JOIN draw.draw_results r ON r.id = c.draw_result_id
               JOIN draw.draw_executions e ON e.id = r.draw_execution_id WHERE e.raffle_event_id = $1",
            &[&f.raffle_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(claimed, 0, "nothing paid");

    client
        .batch_execute("DROP TRIGGER test_refuse_claim_events ON audit.critical_events")
        .await
        .unwrap();
    draw_engine::claim(&env.pool, &claim)
        .await
        .expect("with its trail writable the same claim is paid");
}

/// The winner's validation number can be worked out from another receipt (RSU numbers are
/// sequential); without the receipt's check code the claim is refused, and wrong claims are
/// limited atomically with their judgement, per number and per source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_needs_the_receipts_check_code_and_wrong_ones_are_limited_atomically() {
    let env = TestEnv::new().await;
    let f = sealed(
        &env,
        FixtureOptions {
            tickets: 200,
            early_bird_winners: 3,
            ..Default::default()
        },
    )
    .await;
    let outcome = draw_engine::run(&env.pool, &request(f.raffle_id))
        .await
        .unwrap();
    let client = env.client().await;
    let claim =
        |number: i64, validation: String, code: &str, source: &str| draw_engine::ClaimRequest {
            raffle_id: f.raffle_id,
            draw_number: number,
            validation_number: validation,
            check_code: code.into(),
            claimed_by: "someone".into(),
            source: source.into(),
        };
    let jackpot = outcome.winners[0].draw_number;
    let validation = validation_of(&client, f.raffle_id, jackpot).await;

    // The right validation number and a guessed check code: refused.
    let e = draw_engine::claim(
        &env.pool,
        &claim(jackpot, validation.clone(), "ABCDE-12345", "impostor-1"),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), "wrong-check-code");

    // Twelve wrong claims at once on one number: five judged, the rest refused unjudged.
    let tries = (0..12).map(|i| {
        let request = claim(
            jackpot,
            validation.clone(),
            "ZZZZZ-ZZZZZ",
            &format!("crowd-{i}"),
        );
        let pool = env.pool.clone();
        async move { draw_engine::claim(&pool, &request).await }
    });
    let results = futures::future::join_all(tries).await;
    let codes: Vec<&str> = results
        .iter()
        .map(|r| code(r.as_ref().unwrap_err()))
        .collect();
    let judged = codes.iter().filter(|c| **c == "wrong-check-code").count();
    let limited = codes.iter().filter(|c| **c == "rate-limited").count();
    assert_eq!(
        (judged, limited),
        (4, 8),
        "five judgements in the window (one before the crowd): {codes:?}"
    );
    // Even the true holder waits now; the limit is per number.
    let e = draw_engine::claim(
        &env.pool,
        &claim(
            jackpot,
            validation.clone(),
            scenario::fixture::CHECK_CODE,
            "holder",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), "rate-limited");

    // Per source: twenty refusals from one source, across numbers, and it waits too.
    let winning: Vec<i64> = outcome.winners.iter().map(|w| w.draw_number).collect();
    let mut losers = (50_001i64..).filter(|n| !winning.contains(n));
    for _ in 0..draw_engine::MAX_REFUSED_PER_SOURCE {
        let n = losers.next().unwrap();
        let _ = draw_engine::claim(
            &env.pool,
            &claim(n, "VAL-WRONG".into(), "ABCDE-12345", "one-desk"),
        )
        .await;
    }
    let early = outcome.winners[1].draw_number;
    let e = draw_engine::claim(
        &env.pool,
        &claim(
            early,
            validation_of(&client, f.raffle_id, early).await,
            scenario::fixture::CHECK_CODE,
            "one-desk",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), "rate-limited");
    // From another source, the true holder of that number is paid.
    draw_engine::claim(
        &env.pool,
        &claim(
            early,
            validation_of(&client, f.raffle_id, early).await,
            scenario::fixture::CHECK_CODE,
            "another-desk",
        ),
    )
    .await
    .expect("the holder with the check code is paid");
}
