//! `run` as the cutover night sees it: the real binary against the real sandbox (a separate
//! process on loopback), with faults, kills, interrupts and a spent error budget; the sandbox's
//! stats are checked against counts computed from the CSVs. Reloads are in tests/reload.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use common::{API_KEY, Sandbox, binary, rows, run, run_args, spawn, stderr};
use serde_json::Value;

/// What fixtures/sample must become in Mambu, computed from the CSVs alone.
struct Expected {
    clients: u64,
    deposits: u64,
    loans: u64,
    links: u64,
    custom_schedules: u64,
    fees: u64,
    /// The repayments of transactions.csv and the payoffs of loan_closures.csv.
    repayments: u64,
    /// One per loan, one per tranche of a tranched loan.
    disbursements: u64,
    /// Paid off or written off (loan_closures.csv).
    closed: u64,
    /// The savings histories, and one per current account holding something at the cutover.
    deposit_transactions: u64,
    /// Accounts that received no deposit stay APPROVED.
    deposits_approved: u64,
}

fn expected_sample() -> Expected {
    let loans = rows("fixtures/sample/loans.csv");
    let transactions = rows("fixtures/sample/transactions.csv");
    let tranches = rows("fixtures/sample/tranches.csv");
    let closures = rows("fixtures/sample/loan_closures.csv");
    let deposits = rows("fixtures/sample/deposits.csv");
    let history = rows("fixtures/sample/deposit_transactions.csv");
    let balances = rows("fixtures/sample/deposit_balances.csv");
    let current: std::collections::HashSet<&str> = deposits
        .iter()
        .filter(|d| d["product_id"] == "CA-STD")
        .map(|d| d["deposit_id"].as_str())
        .collect();
    let opening_balances = balances
        .iter()
        .filter(|b| current.contains(b["deposit_id"].as_str()) && b["balance"] != "0.00")
        .count() as u64;
    let with_history: std::collections::HashSet<&str> =
        history.iter().map(|t| t["deposit_id"].as_str()).collect();
    let tranched = loans
        .iter()
        .filter(|l| l["product_id"] == "SME-TRANCHE")
        .count() as u64;
    Expected {
        clients: rows("fixtures/sample/clients.csv").len() as u64,
        deposits: deposits.len() as u64,
        loans: loans.len() as u64,
        links: loans
            .iter()
            .filter(|l| !l["settlement_deposit_id"].is_empty())
            .count() as u64,
        custom_schedules: loans.iter().filter(|l| l["custom_schedule"] == "Y").count() as u64,
        fees: transactions.iter().filter(|t| t["kind"] == "FEE").count() as u64,
        repayments: transactions
            .iter()
            .filter(|t| t["kind"] == "REPAYMENT")
            .count() as u64
            + closures
                .iter()
                .filter(|c| c["final_state"] == "CLOSED")
                .count() as u64,
        disbursements: loans.len() as u64 - tranched + tranches.len() as u64,
        closed: closures.len() as u64,
        deposit_transactions: history.len() as u64 + opening_balances,
        deposits_approved: deposits.len() as u64 - opening_balances - with_history.len() as u64,
    }
}

/// The sandbox's stats say the sample landed whole, each record once.
fn assert_sample_migrated_exactly_once(stats: &Value) {
    let e = expected_sample();
    assert_eq!(stats["clients"], e.clients, "{stats}");
    assert_eq!(stats["deposits"], e.deposits, "{stats}");
    assert_eq!(stats["loans"], e.loans, "{stats}");
    assert_eq!(stats["loans_by_state"]["CLOSED"], e.closed, "{stats}");
    assert_eq!(
        stats["loans_by_state"]["ACTIVE"],
        e.loans - e.closed,
        "every other loan disbursed: {stats}"
    );
    assert_eq!(stats["settlement_links"], e.links, "{stats}");
    assert_eq!(stats["custom_schedules"], e.custom_schedules, "{stats}");
    assert_eq!(
        stats["transactions_by_type"]["DISBURSEMENT"], e.disbursements,
        "{stats}"
    );
    assert_eq!(
        stats["transactions_by_type"]["FEE_APPLIED"], e.fees,
        "{stats}"
    );
    assert_eq!(
        stats["transactions_by_type"]["REPAYMENT"], e.repayments,
        "{stats}"
    );
    assert_eq!(
        stats["deposit_transactions"], e.deposit_transactions,
        "{stats}"
    );
    assert_eq!(
        stats["deposits_by_state"]["ACTIVE"],
        e.deposits - e.deposits_approved,
        "{stats}"
    );
    assert_eq!(stats["duplicates"]["total"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_survives_faults_lost_replies_and_throttling_without_duplicates() {
    for idempotency in ["honour", "ignore"] {
        let sandbox = Sandbox::strict(&[
            "--fault-rate",
            "0.05",
            "--lost-reply-rate",
            "0.02",
            "--throttle-rps",
            "200",
            "--seed",
            "11",
            "--idempotency",
            idempotency,
        ]);
        let dir = tempfile::tempdir().unwrap();
        let output = run(
            &sandbox,
            "plans/sample.yaml",
            &dir.path().join("run"),
            &["--rate", "220", "--concurrency", "16"],
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "idempotency {idempotency}: {}",
            stderr(&output)
        );
        let stats = sandbox.stats().await;
        assert_sample_migrated_exactly_once(&stats);
        assert!(
            stats["requests"]["lost_replies"].as_u64().unwrap() > 0
                && stats["requests"]["injected_faults"].as_u64().unwrap() > 0,
            "faults were injected: {stats}"
        );
        if idempotency == "ignore" {
            let refused = &stats["refused_duplicates"];
            assert!(
                refused["client_id"].as_u64().unwrap()
                    + refused["account_id"].as_u64().unwrap()
                    + refused["external_id"].as_u64().unwrap()
                    > 0,
                "replays were caught by ids, not keys: {stats}"
            );
        }
    }
}

/// The whole sample, the rest of the book with it (savings histories, balances, tranches,
/// payoffs and closes, write-offs: issue 18), against its strict tenant under faults, lost
/// replies and Idempotency-Keys ignored: every record once, as the CSVs say, each paid-off loan
/// CLOSED / REPAID and each written-off one CLOSED / WRITTEN_OFF, and verify finds nothing
/// amiss.
#[tokio::test(flavor = "multi_thread")]
async fn the_whole_book_lands_once_under_faults_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let (sandbox, stats) =
        common::run_strict_under_faults("plans/sample.yaml", &run_dir, "29").await;
    assert_sample_migrated_exactly_once(&stats);

    let api = sandbox.api();
    for closure in rows("fixtures/sample/loan_closures.csv") {
        let sub = match closure["final_state"].as_str() {
            "CLOSED" => "REPAID",
            other => other,
        };
        let loan = api.get(&format!("/loans/{}", closure["loan_id"])).await;
        assert_eq!(
            (&loan.body["accountState"], &loan.body["accountSubState"]),
            (&serde_json::json!("CLOSED"), &serde_json::json!(sub)),
            "{closure:?}: {loan:?}"
        );
    }

    let report = common::verified(&run_dir);
    let e = expected_sample();
    let totals = report["totals"].as_array().unwrap();
    let total = |name: &str| {
        totals
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no total {name}: {report}"))
    };
    let tranches = total("loan tranches");
    assert_eq!(tranches["expected"], tranches["found"], "{report}");
    assert_eq!(
        tranches["expected"],
        rows("fixtures/sample/tranches.csv").len().to_string()
    );
    let balances = total("deposit balances (accounts with transactions)");
    assert_eq!(balances["expected"], balances["found"], "{report}");
    // Every account with something in it at the cutover holds exactly its legacy balance.
    let held: rust_decimal::Decimal = rows("fixtures/sample/deposit_balances.csv")
        .iter()
        .map(|b| b["balance"].parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(
        stats["deposit_balances_total"]
            .to_string()
            .parse::<rust_decimal::Decimal>()
            .unwrap(),
        held,
        "{stats}"
    );
    assert!(e.closed > 0);
}

/// The sample's tenant is in Lisbon: the sample at a fixed +00:00 is refused before anything is
/// recorded (its summer dates would be refused one by one); at `timezone: Europe/Lisbon` (the
/// sample as shipped) every date carries the offset of its own date and the whole sample lands.
#[tokio::test(flavor = "multi_thread")]
async fn a_lisbon_tenant_takes_the_sample_only_in_its_own_time_zone() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let fixed = common::sample_plan_with(
        dir.path(),
        &[("timezone: Europe/Lisbon", "timezone: \"+00:00\"")],
    );
    let refused = run(
        &sandbox,
        fixed.to_str().unwrap(),
        &dir.path().join("fixed"),
        &["--rate", "3000"],
    );
    let text = stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{text}");
    assert!(
        text.contains("is not always the tenant's (Europe/Lisbon")
            && text.contains("set the plan's `timezone: Europe/Lisbon`"),
        "{text}"
    );
    assert!(
        !dir.path().join("fixed/checkpoint.db").exists(),
        "nothing recorded"
    );
    assert_eq!(sandbox.stats().await["clients"], 0, "nothing sent");

    let output = run(
        &sandbox,
        "plans/sample.yaml",
        &dir.path().join("lisbon"),
        &["--rate", "3000"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_sample_migrated_exactly_once(&sandbox.stats().await);
}

/// Keys expired (as on a resume the next day) and every fault at once, then each alone: every
/// replay is adopted through a read-back that gets the same retry policy as every other call,
/// so a spoiled answer to the read-back is read again, never taken for "not found".
#[tokio::test(flavor = "multi_thread")]
async fn replays_are_adopted_whatever_the_faults_with_idempotency_keys_expired() {
    let mixes: [&[&str]; 4] = [
        &[
            "--fault-rate",
            "0.05",
            "--lost-reply-rate",
            "0.05",
            "--malformed-rate",
            "0.02",
        ],
        &["--fault-rate", "0.05"],
        &["--lost-reply-rate", "0.05"],
        &["--malformed-rate", "0.02"],
    ];
    for (seed, faults) in mixes.iter().enumerate() {
        let seed = (seed + 21).to_string();
        let mut args = vec!["--idempotency", "ignore", "--seed", &seed];
        args.extend_from_slice(faults);
        let sandbox = Sandbox::strict(&args);
        let dir = tempfile::tempdir().unwrap();
        // Short backoffs: the faults are many, and waiting is not what is tested.
        let plan = common::sample_plan_with(
            dir.path(),
            &[(
                "initial_backoff_ms: 250, max_backoff_ms: 30000",
                "initial_backoff_ms: 10, max_backoff_ms: 100",
            )],
        );
        let output = run(
            &sandbox,
            plan.to_str().unwrap(),
            &dir.path().join("run"),
            &["--rate", "3000"],
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{faults:?}: no unit may fail: {}",
            stderr(&output)
        );
        assert_sample_migrated_exactly_once(&sandbox.stats().await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_random_moments_and_resumed_every_record_lands_exactly_once() {
    let sandbox = Sandbox::strict(&["--lost-reply-rate", "0.01", "--seed", "5"]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    common::kill_at_moments(
        &sandbox,
        "plans/sample.yaml",
        &run_dir,
        &["--rate", "1500", "--concurrency", "8"],
        &[700, 1300, 450, 1900, 900],
    )
    .await;
    let output = run(
        &sandbox,
        "plans/sample.yaml",
        &run_dir,
        &["--rate", "3000", "--resume"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_sample_migrated_exactly_once(&sandbox.stats().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_before_its_first_commit_resumes_by_starting_over() {
    // What a kill between the checkpoint's creation and its first commit leaves: the file,
    // empty (0 bytes), or with its tables and nothing in them.
    for leftover in ["empty file", "tables only"] {
        let sandbox = Sandbox::strict(&[]);
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        let db = run_dir.join("checkpoint.db");
        if leftover == "empty file" {
            std::fs::write(&db, b"").unwrap();
        } else {
            mambu_migrate::checkpoint::Checkpoint::open(&db)
                .unwrap()
                .close()
                .unwrap();
        }
        let output = run(
            &sandbox,
            "plans/sample.yaml",
            &run_dir,
            &["--rate", "3000", "--resume"],
        );
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(0), "{leftover}: {err}");
        assert!(
            err.contains("stopped before it recorded anything; starting it over"),
            "{leftover}: {err}"
        );
        assert_sample_migrated_exactly_once(&sandbox.stats().await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_that_cannot_be_written_stops_the_run_and_resume_finishes() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    // A full disk, as the run sees it: no file of the process may grow past 1 MiB
    // (RLIMIT_FSIZE, with SIGXFSZ ignored so that writes fail instead), so the checkpoint's
    // commits fail once its log outgrows that, early in the run.
    let output = Command::new("python3")
        .args([
            "-c",
            "import os, resource, signal, sys\n\
             signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n\
             resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n\
             os.execv(sys.argv[1], sys.argv[1:])",
            env!("CARGO_BIN_EXE_mambu-migrate"),
        ])
        .args(run_args(
            &sandbox,
            "plans/sample.yaml",
            &run_dir,
            &["--rate", "3000"],
        ))
        .env("MAMBU_API_KEY", API_KEY)
        .env("MAMBU_APPROVER_API_KEY", common::APPROVER_KEY)
        .env_remove("MAMBU_USERNAME")
        .env_remove("MAMBU_PASSWORD")
        .output()
        .unwrap();
    assert_stopped(&sandbox, &output, "cannot be written").await;
    // Space again: the resume finishes, and nothing was done twice.
    resume_to_the_end(&sandbox, "plans/sample.yaml", &run_dir).await;
}

/// Asserts that the run stopped resumably (exit 3, its `--resume` command printed) saying
/// `why`, before the sample's end.
async fn assert_stopped(sandbox: &Sandbox, output: &Output, why: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(err.contains(why) && err.contains("--resume"), "{err}");
    let stats = sandbox.stats().await;
    assert!(
        stats["clients"].as_u64().unwrap() < 250,
        "stopped before the end: {stats}"
    );
}

/// Resumes the run in `run_dir` to its end: the sample migrated, nothing twice.
async fn resume_to_the_end(sandbox: &Sandbox, plan: &str, run_dir: &Path) {
    let output = run(sandbox, plan, run_dir, &["--rate", "3000", "--resume"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_sample_migrated_exactly_once(&sandbox.stats().await);
}

/// The sample plan, giving up on a call after 4 attempts within about half a second, and
/// waiting out an outage for `outage_wait` seconds.
fn plan_for_outages(dir: &Path, outage_wait: u64) -> String {
    let retry = format!(
        "max_attempts: 4, initial_backoff_ms: 50, max_backoff_ms: 200, \
         outage_wait_seconds: {outage_wait}"
    );
    common::sample_plan_with(
        dir,
        &[(
            "max_attempts: 8, initial_backoff_ms: 250, max_backoff_ms: 30000",
            &retry,
        )],
    )
    .display()
    .to_string()
}

/// Waits until the sandbox holds `n` clients.
async fn until_clients(sandbox: &Sandbox, n: u64) {
    let waiting = std::time::Instant::now();
    while sandbox.stats().await["clients"].as_u64().unwrap() < n {
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A run of the sample plan that waits out an outage for `outage_wait` seconds, with the
/// outage begun once the sandbox holds 20 clients; the temporary directory holds the run.
async fn run_into_an_outage(
    outage_wait: u64,
) -> (Sandbox, tempfile::TempDir, PathBuf, String, Child) {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let plan = plan_for_outages(dir.path(), outage_wait);
    let child = spawn(&sandbox, &plan, &run_dir, &["--rate", "1000"]);
    until_clients(&sandbox, 20).await;
    sandbox.set_faults(r#"{"outage": true}"#).await;
    (sandbox, dir, run_dir, plan, child)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_stops_the_run_without_failing_units_and_resume_finishes() {
    let (sandbox, _dir, run_dir, plan, child) = run_into_an_outage(0).await;
    let output = child.wait_with_output().unwrap();
    assert_stopped(&sandbox, &output, "stopped (Mambu unreachable").await;
    assert!(
        stderr(&output).contains(" 0 failed"),
        "an outage fails no unit"
    );
    let drops = sandbox.stats().await["requests"]["outage_drops"].as_u64();
    assert!(drops.unwrap() > 0);
    // Mambu is back: the resume finishes every unit, and nothing was done twice.
    sandbox.set_faults("{}").await;
    resume_to_the_end(&sandbox, &plan, &run_dir).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_outage_is_waited_out_and_the_run_finishes() {
    let (sandbox, _dir, run_dir, _plan, child) = run_into_an_outage(120).await;
    // Long past the 4 attempts of every call in flight.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = binary().arg("status").arg(&run_dir).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("outage     calls waiting for Mambu since")
            && status.contains("Mambu unreachable"),
        "{status}"
    );
    sandbox.set_faults("{}").await;
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(err.contains(" 0 failed"), "{err}");
    let stats = sandbox.stats().await;
    assert!(
        stats["requests"]["outage_drops"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_sample_migrated_exactly_once(&stats);
    let log = std::fs::read_to_string(run_dir.join("run.log")).unwrap();
    assert!(
        log.contains("waiting for Mambu") && log.contains("Mambu unreachable"),
        "the wait is in the run's log"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    let kinds: Vec<&str> = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let (start, over) = (
        kinds.iter().position(|k| *k == "outage"),
        kinds.iter().rposition(|k| *k == "outage over"),
    );
    assert!(
        start.is_some() && over > start,
        "the outage is in the report's history: {kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_in_the_same_directory_is_refused_while_the_first_runs() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let first = spawn(&sandbox, "plans/sample.yaml", &run_dir, &["--rate", "1000"]);
    until_clients(&sandbox, 5).await;
    let second = run(
        &sandbox,
        "plans/sample.yaml",
        &run_dir,
        &["--rate", "1000", "--resume"],
    );
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("(pid {}) is using", first.id())),
        "{err}"
    );
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_sample_migrated_exactly_once(&sandbox.stats().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_cleanly_and_resume_finishes() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut child = spawn(&sandbox, "plans/sample.yaml", &run_dir, &["--rate", "400"]);
    // Interrupted once it is under way (a few clients in), however slow the machine is to
    // start it: about 16 s of calls at 400/s are left then.
    let waiting = std::time::Instant::now();
    while sandbox.stats().await["clients"].as_u64().unwrap() < 5 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was interrupted"
        );
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_stopped(&sandbox, &output, "stopped (interrupted)").await;

    let again = run(&sandbox, "plans/sample.yaml", &run_dir, &["--rate", "3000"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a run directory with a run refuses to start over"
    );
    assert!(stderr(&again).contains("--resume"));
    resume_to_the_end(&sandbox, "plans/sample.yaml", &run_dir).await;
}

/// A plan of one create_client step over clients without last names: every unit fails.
fn failing_data(dir: &Path, clients: usize, budget: &str) -> PathBuf {
    let mut csv = String::from("client_id,first_name,last_name\n");
    for i in 0..clients {
        csv.push_str(&format!("C{i:04},Ada,\n"));
    }
    std::fs::write(dir.join("clients.csv"), csv).unwrap();
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!("version: 1\nname: failing\nlimits: {{ requests_per_second: 1000, concurrency: 4 }}\nerror_budget: {budget}\nsources:\n  clients: {{ file: clients.csv, key: client_id }}\nunit: clients\nsteps:\n  - id: client\n    action: create_client\n    body: {{ id: \"{{{{ clients.client_id }}}}\", firstName: \"{{{{ clients.first_name }}}}\", lastName: \"{{{{ clients.last_name }}}}\" }}\n"),
    )
    .unwrap();
    plan
}

#[tokio::test(flavor = "multi_thread")]
async fn the_error_budget_stops_a_run_that_fails_everything() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let plan = failing_data(dir.path(), 200, "{ max_consecutive_failures: 10 }");
    let output = run(
        &sandbox,
        plan.to_str().unwrap(),
        &dir.path().join("run1"),
        &[],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(err.contains("units failed in a row"), "{err}");
    let tried = sandbox.stats().await["requests"]["total"].as_u64().unwrap();
    assert!(
        tried < 40,
        "stopped soon after 10 failures in a row, not after 200: {tried} calls"
    );

    let plan = failing_data(
        dir.path(),
        200,
        "{ max_consecutive_failures: 100000, min_units: 20, max_error_rate: 0.5 }",
    );
    let output = run(
        &sandbox,
        plan.to_str().unwrap(),
        &dir.path().join("run2"),
        &[],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(
        err.contains("error budget:") && err.contains("> 50.0%"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spoiled_answers_are_sent_again_and_classified_when_they_persist() {
    // 5% of successful answers spoiled (HTML, cut-off JSON, wrong types): everything migrates,
    // once.
    let sandbox = Sandbox::strict(&["--malformed-rate", "0.05", "--seed", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        &sandbox,
        "plans/sample.yaml",
        &dir.path().join("run"),
        &["--rate", "3000"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stats = sandbox.stats().await;
    assert!(
        stats["requests"]["malformed_answers"].as_u64().unwrap() > 100,
        "{stats}"
    );
    assert_sample_migrated_exactly_once(&stats);

    // Every answer spoiled: each unit fails, classified, and the run ends cleanly.
    // The built-in tenant: the plan below sends what it takes (no ID documents, UTC).
    let sandbox = Sandbox::start(&["--malformed-rate", "1"]);
    let csv: String = std::iter::once("client_id,first_name,last_name\n".to_owned())
        .chain((0..5).map(|i| format!("C{i},Ada,Lovelace\n")))
        .collect();
    std::fs::write(dir.path().join("clients.csv"), csv).unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: spoiled\nlimits: { requests_per_second: 1000, retry: { max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 20 } }\nsources:\n  clients: { file: clients.csv, key: client_id }\nunit: clients\nsteps:\n  - id: client\n    action: create_client\n    body: { id: \"{{ clients.client_id }}\", firstName: \"{{ clients.first_name }}\", lastName: \"{{ clients.last_name }}\" }\n",
    )
    .unwrap();
    let run_dir = dir.path().join("spoiled");
    let output = run(&sandbox, plan.to_str().unwrap(), &run_dir, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let errors = rows(run_dir.join("errors.csv").to_str().unwrap());
    assert_eq!(errors.len(), 5);
    assert!(
        errors
            .iter()
            .all(|e| e["message"].contains("gave up after 2 attempts")
                && e["message"].contains("not usable")),
        "{errors:?}"
    );
}
