//! `rollback RUN_DIR --unit KEY… | --failed | --all` (issue 19), the real binary against a
//! `mambu-migrate sandbox` process: 20 clients, each with a deposit and its transactions and a
//! loan disbursed and repaid in part. Three units rolled back are gone (clients, loans,
//! deposits: 404, and from the stats), the others intact; `run --resume` migrates them again and
//! `verify` is clean. Under lost replies (no Idempotency-Key honoured) every undo is made once.
//! A client holding an account the run did not make is refused with Mambu's reason.

mod common;

use std::path::{Path, PathBuf};

use common::{Sandbox, binary, rollback, run, stderr, stdout, verify};
use serde_json::json;

const PLAN: &str = r#"version: 1
name: rollback
target: sandbox
timezone: "+00:00"
limits:
  requests_per_second: 2000
  concurrency: 6
  retry: { max_attempts: 12, initial_backoff_ms: 5, max_backoff_ms: 40 }
lookups:
  deposit_products: { path: /depositproducts }
sources:
  clients: { file: clients.csv, key: client_id }
  deposits: { file: deposits.csv, key: deposit_id, parent: clients.client_id }
  deposit_transactions: { file: deposit_transactions.csv, key: txn_id, parent: deposits.deposit_id, order_by: [seq] }
  loans: { file: loans.csv, key: loan_id, parent: clients.client_id }
  repayments: { file: repayments.csv, key: txn_id, parent: loans.loan_id, order_by: [seq] }
unit: clients
steps:
  - id: client
    action: create_client
    body:
      id: "{{ clients.client_id }}"
      firstName: "{{ clients.first_name }}"
      lastName: "{{ clients.last_name }}"
  - for_each: deposits
    steps:
      - id: deposit
        action: create_deposit
        body:
          id: "{{ deposits.deposit_id }}"
          accountHolderKey: "{{ steps.client.encodedKey }}"
          accountHolderType: CLIENT
          name: "Savings"
          productTypeKey: "{{ lookups.deposit_products['CA-STD'] }}"
      - id: approve_deposit
        action: approve_deposit
      - for_each: deposit_transactions
        steps:
          - id: money_in
            action: deposit
            body:
              amount: "{{ deposit_transactions.amount | decimal }}"
              externalId: "{{ deposit_transactions.txn_id }}"
  - for_each: loans
    steps:
      - id: loan
        action: create_loan
        body:
          id: "{{ loans.loan_id }}"
          accountHolderKey: "{{ steps.client.encodedKey }}"
          accountHolderType: CLIENT
          productTypeKey: 8a19c0de00000000000000000000a001
          loanAmount: "{{ loans.amount | decimal }}"
          interestSettings: { interestRate: 4 }
          scheduleSettings: { gracePeriod: 0, repaymentInstallments: 3 }
      - id: approve
        action: approve_loan
      - id: disburse
        action: disburse_loan
        body: { externalId: "DISB-{{ loans.loan_id }}" }
      - for_each: repayments
        steps:
          - id: repayment
            action: post_repayment
            body:
              amount: "{{ repayments.amount | decimal }}"
              externalId: "{{ repayments.txn_id }}"
"#;

/// 20 clients CL-01..CL-20, each with deposit DP-nn (two deposits in) and loan LN-nn of 1200
/// (two repayments of 100).
fn write_plan(dir: &Path) -> PathBuf {
    let mut clients = String::from("client_id,first_name,last_name\n");
    let mut deposits = String::from("deposit_id,client_id\n");
    let mut dtx = String::from("txn_id,deposit_id,seq,amount\n");
    let mut loans = String::from("loan_id,client_id,amount\n");
    let mut reps = String::from("txn_id,loan_id,seq,amount\n");
    for c in 1..=20 {
        clients.push_str(&format!("CL-{c:02},Ana,Client {c}\n"));
        deposits.push_str(&format!("DP-{c:02},CL-{c:02}\n"));
        loans.push_str(&format!("LN-{c:02},CL-{c:02},1200\n"));
        for s in 1..=2 {
            dtx.push_str(&format!("D-{c:02}-{s},DP-{c:02},{s},{}.50\n", 100 + c * s));
            reps.push_str(&format!("R-{c:02}-{s},LN-{c:02},{s},100\n"));
        }
    }
    for (name, text) in [
        ("clients.csv", clients),
        ("deposits.csv", deposits),
        ("deposit_transactions.csv", dtx),
        ("loans.csv", loans),
        ("repayments.csv", reps),
        ("plan.yaml", PLAN.to_owned()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir.join("plan.yaml")
}

/// Migrates the 20 clients into `sandbox`; the plan and the run directory.
fn migrate(sandbox: &Sandbox, dir: &Path) -> (PathBuf, PathBuf) {
    let plan = write_plan(dir);
    let run_dir = dir.join("run");
    let output = run(sandbox, plan.to_str().unwrap(), &run_dir, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    (plan, run_dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_units_rolled_back_are_gone_and_migrate_again_on_resume() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (plan, run_dir) = migrate(&sandbox, dir.path());
    let stats = sandbox.stats().await;
    assert_eq!(
        (stats["clients"].clone(), stats["loans"].clone()),
        (json!(20), json!(20))
    );

    let out = rollback(&run_dir, &["--unit", "CL-03", "CL-07", "CL-11"], 0);
    assert!(
        stdout(&out).contains("3 of 3 units rolled back"),
        "{}",
        stdout(&out)
    );
    let api = sandbox.api();
    for n in ["03", "07", "11"] {
        for path in [
            format!("/clients/CL-{n}"),
            format!("/loans/LN-{n}"),
            format!("/deposits/DP-{n}"),
        ] {
            assert_eq!(api.get(&path).await.status, 404, "{path}");
        }
    }
    for n in ["01", "02", "12", "20"] {
        for path in [
            format!("/clients/CL-{n}"),
            format!("/loans/LN-{n}"),
            format!("/deposits/DP-{n}"),
        ] {
            assert_eq!(api.get(&path).await.status, 200, "{path}");
        }
    }
    let stats = sandbox.stats().await;
    assert_eq!(stats["clients"], 17);
    assert_eq!(stats["loans"], 17);
    assert_eq!(stats["deposits"], 17);
    // 17 × (2 deposits in + a disbursement + 2 repayments).
    assert_eq!(stats["transactions"], 17 * 5);
    let csv = std::fs::read_to_string(run_dir.join("rollback.csv")).unwrap();
    assert_eq!(csv.matches("rolled_back").count(), 3, "{csv}");

    // A unit rolled back is no longer the run's: a second rollback of it is refused.
    rollback(&run_dir, &["--unit", "CL-03"], 2);

    let output = run(&sandbox, plan.to_str().unwrap(), &run_dir, &["--resume"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stats = sandbox.stats().await;
    let c3 = api.get("/clients/CL-03").await;
    let l3 = api.get("/loans/LN-03").await;
    assert_eq!(
        stats["clients"],
        20,
        "{}{stats}{c3:?}{l3:?}",
        stderr(&output)
    );
    assert_eq!(stats["loans"], 20);
    assert_eq!(stats["deposits"], 20);
    assert_eq!(stats["transactions"], 20 * 5);
    let (code, report) = verify(&run_dir);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["mismatches"], json!([]));
    assert_eq!(report["units_verified"], 20);
}

/// `rollback RUN_DIR --all` under the sandbox's faults, which are then cleared: replies were
/// lost, and every client, account and transaction is gone. The sandbox's stats.
async fn rollback_all_under_lost_replies(sandbox: &Sandbox, run_dir: &Path) -> serde_json::Value {
    rollback(run_dir, &["--all"], 0);
    sandbox.set_faults("{}").await;
    let stats = sandbox.stats().await;
    assert!(
        stats["requests"]["lost_replies"].as_u64().unwrap() > 0,
        "{stats}"
    );
    for what in ["clients", "loans", "deposits", "transactions"] {
        assert_eq!(stats[what], 0, "{what}: {stats}");
    }
    stats
}

#[tokio::test(flavor = "multi_thread")]
async fn under_lost_replies_each_undo_is_made_once() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = migrate(&sandbox, dir.path());
    sandbox
        .set_faults(r#"{"lost_reply_rate": 0.05, "idempotency": "ignore"}"#)
        .await;
    rollback_all_under_lost_replies(&sandbox, &run_dir).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_with_an_account_the_run_did_not_make_is_refused_with_the_reason() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = migrate(&sandbox, dir.path());
    let api = sandbox.api();
    let client = api.get("/clients/CL-05").await.key();
    let product = api.get("/deposits/DP-05").await.body["productTypeKey"].clone();
    let other = api
        .post(
            "/deposits",
            json!({ "id": "OTHER-05", "accountHolderKey": client, "accountHolderType": "CLIENT", "name": "Other", "productTypeKey": product }),
        )
        .await;
    assert_eq!(other.status, 201, "{other:?}");

    let out = rollback(&run_dir, &["--unit", "CL-05", "CL-06"], 1);
    let text = stdout(&out);
    assert!(
        text.contains("1 of 2 units rolled back, 1 partly"),
        "{text}"
    );
    assert!(text.contains("CL-05: DELETE /clients/"), "{text}");
    assert!(text.contains("CLIENT_HAS_ACCOUNTS"), "{text}");
    let csv = std::fs::read_to_string(run_dir.join("rollback.csv")).unwrap();
    assert!(csv.contains("\"CL-05\",partly,"), "{csv}");
    // Its loan and deposit are gone; the client and the account the run did not make stay.
    assert_eq!(api.get("/loans/LN-05").await.status, 404);
    assert_eq!(api.get("/deposits/DP-05").await.status, 404);
    assert_eq!(api.get("/clients/CL-05").await.status, 200);
    assert_eq!(api.get("/deposits/OTHER-05").await.status, 200);
    assert_eq!(api.get("/clients/CL-06").await.status, 404);

    // Once the other account is gone, a second rollback finishes the unit, sending only what
    // is left (the client's DELETE).
    let deleted = api
        .send(reqwest::Method::DELETE, "/deposits/OTHER-05", None, None)
        .await
        .unwrap();
    assert_eq!(deleted.status, 204, "{deleted:?}");
    rollback(&run_dir, &["--unit", "CL-05"], 0);
    assert_eq!(api.get("/clients/CL-05").await.status, 404);
}

/// Starts `rollback RUN_DIR --all --rate 40` (the 180 undo calls take 4.5 s) and kills it with
/// SIGKILL (`Child::kill`: nothing of its own runs on the way out) once at most `clients` are
/// left (polled, not timed: the machine may be busy); the sandbox's stats then.
async fn kill_rollback_midway(
    sandbox: &Sandbox,
    run_dir: &Path,
    clients: u64,
) -> serde_json::Value {
    let mut child = binary()
        .arg("rollback")
        .arg(run_dir)
        .args(["--all", "--rate", "40"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if sandbox.stats().await["clients"].as_u64().unwrap() <= clients {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let midway = sandbox.stats().await;
    assert!(midway["clients"].as_u64().unwrap() < 20, "{midway}");
    midway
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_killed_midway_goes_on_where_it_stopped() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = migrate(&sandbox, dir.path());
    let midway = kill_rollback_midway(&sandbox, &run_dir, 16).await;
    assert!(midway["clients"].as_u64().unwrap() > 0, "{midway}");
    let before = midway["requests"]["total"].as_u64().unwrap();

    let out = rollback(&run_dir, &["--all"], 0);
    assert!(
        stdout(&out).contains("rolled back, 0 partly"),
        "{}",
        stdout(&out)
    );
    let stats = sandbox.stats().await;
    for what in ["clients", "loans", "deposits", "transactions"] {
        assert_eq!(stats[what], 0, "{what}: {stats}");
    }
    // Only what was left was sent: 9 undo calls a unit (2 deposits, 2 repayments and the
    // disbursement adjusted, UNDO_APPROVE, 3 DELETEs), none again for a unit undone before the
    // kill; but the one call the kill may have caught between Mambu's answer and its record
    // (a client's DELETE: its unit counted undone here) is sent again, answered 404.
    let undone = 20 - midway["clients"].as_u64().unwrap();
    let sent = stats["requests"]["total"].as_u64().unwrap() - before;
    assert!(
        sent <= 9 * (20 - undone) + 1,
        "{sent} calls after the kill, {undone} units undone before"
    );
}

/// Lost replies (Idempotency-Keys not honoured) during a rollback killed with SIGKILL midway,
/// then the rollback run again under the same faults: every undo is made exactly once (each
/// transaction adjusted once, every account and client gone, each undo call recorded done once)
/// and the run's report says 20 units rolled back, none partly.
#[tokio::test(flavor = "multi_thread")]
async fn lost_replies_and_a_kill_midway_still_undo_everything_exactly_once() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = migrate(&sandbox, dir.path());
    sandbox
        .set_faults(r#"{"lost_reply_rate": 0.08, "idempotency": "ignore"}"#)
        .await;
    kill_rollback_midway(&sandbox, &run_dir, 14).await;

    let stats = rollback_all_under_lost_replies(&sandbox, &run_dir).await;
    // 20 × (2 deposits in + a disbursement + 2 repayments), each adjusted once.
    assert_eq!(stats["adjusted_transactions"], 20 * 5, "{stats}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    let r = &report["rollbacks"];
    assert_eq!(r["rolled_back"].as_array().unwrap().len(), 20, "{r}");
    assert!(
        r["rolled_back"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["times"] == 1),
        "{r}"
    );
    assert_eq!(r["partly"], json!([]), "{r}");
    // 9 undo calls a unit, each recorded done once however often it was sent.
    assert_eq!(r["calls_done"], 20 * 9, "{r}");
    assert_eq!(r["calls_refused"], 0, "{r}");
}
