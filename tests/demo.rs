//! `raffle demo`, the README's main command, run as a process against the test's database and
//! broker: it must reach the end with every check passing and say so in words.

use platform::testkit::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_a_whole_raffle_and_every_check_passes() {
    let env = TestEnv::new().await;
    let state = tempfile_dir(&env.unique);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_raffle"))
        .args([
            "demo",
            "--orders",
            "300",
            "--rsus",
            "3",
            "--rsu-sales",
            "10",
        ])
        .env("DATABASE_URL", &env.database_url)
        .env("KAFKA_BROKERS", &env.brokers)
        .env("RAFFLE_STATE_DIR", &state)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("raffle demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // 300 online less one cancelled, one refunded and one disputed; 3 × 10 on RSUs less one
    // voided.
    for expected in [
        "orders paid 326, declined 1, refunded 2, voided 1",
        "for finance: partial refund on order",
        "sell-out of a 25-ticket raffle: 5 orders paid, 3 buyers told sold out before paying",
        "rejected sale demo-2-10: sale at",
        "refunds paid through the provider 1 ($20.00); refunds owed 0 ($0.00)",
        "reconciliation: 18 of 18 checks pass",
        "reconciliation confirmed by finance at",
        "audit verify: PASS",
        "audit export verified from its files alone: PASS",
        "draw verify: PASS",
        "Early-bird draw claimed with its validation number and paid: $500.00",
        // The buyers' e-mails as the SMTP server received them, and the live jackpot's feed.
        "E-MAILS  ",
        "tickets issued, 3 tickets voided, 2 won; buyers with no address: ",
        "waiting: 0; failed: 0",
        "Subject: Your draw numbers for Record 50/50",
        "These are your draw numbers:",
        "Final jackpot",
        "the feed's last value equals it",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    for step in [
        "selling online",
        "selling on the RSUs",
        "sealing the books",
        "drawing the winners",
        "10 of 10 answered duplicate, nothing counted twice",
        "refunds still owed: 0",
        "cash counted on 3 devices by two people",
        "$5.00 short (booked as cash over/short)",
        "deposited $",
        "the provider's payout, matched to the books line by line",
        "matched; ",
        "clearing nets to zero",
        "payment clearing after the payout: $0.00",
    ] {
        assert!(stderr.contains(step), "missing step {step:?} in:\n{stderr}");
    }
    // No consumer refused a record: a void that comes without its issue (a partial refund) once
    // broke the jackpot's tallies and went to the DLQ.
    assert!(
        !stderr.contains("refused by the database"),
        "a record went to the DLQ:\n{stderr}"
    );
    assert!(
        !stderr.contains(" INFO "),
        "the services' info logs stay out of the demo's story"
    );
    let html = stdout
        .lines()
        .find_map(|l| l.split_once("reconciliation report (printable): "))
        .map(|(_, path)| path.trim().to_owned())
        .expect("the report's path is printed");
    let page = std::fs::read_to_string(&html).expect("the report was written");
    assert!(page.contains("<svg"), "the page has its chart");
    let _ = std::fs::remove_dir_all(&state);
}

fn tempfile_dir(unique: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("raffle-demo-{unique}"));
    std::fs::create_dir_all(&dir).expect("a state directory");
    dir
}
