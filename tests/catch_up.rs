//! `run --catch-up` (issue 19): a run migrates an extract, then a newer extract is caught up
//! on the same run directory, the real binary against a `mambu-migrate sandbox` process.
//! Unchanged units make no call; a new unit migrates in full; new rows of migrated units run
//! their steps; a changed phone is applied by the plan's update (`on_change`, PATCH
//! /clients/{id}); other changes, removed rows and units, and a row dated before migrated rows
//! are drift, listed in drift.csv (personal values masked) and left. A catch-up killed under
//! faults resumes to the end with every record once; `plan estimate --catch-up` counts the
//! night's calls exactly.

mod common;

use std::path::{Path, PathBuf};

use common::{Sandbox, binary, run, stderr, verify};
use serde_json::{Value, json};

const PLAN: &str = r#"version: 1
name: catch-up
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
  deposit_transactions:
    file: deposit_transactions.csv
    key: txn_id
    parent: deposits.deposit_id
    order_by: [seq]
    columns: { seq: { type: int } }
  loans: { file: loans.csv, key: loan_id, parent: clients.client_id }
  repayments:
    file: repayments.csv
    key: txn_id
    parent: loans.loan_id
    order_by: [seq]
    columns: { seq: { type: int } }
unit: clients
steps:
  - id: client
    action: create_client
    body:
      id: "{{ clients.client_id }}"
      firstName: "{{ clients.first_name }}"
      lastName: "{{ clients.last_name }}"
      mobilePhone: "{{ clients.phone }}"
  # A catch-up's update: the phone changed in the legacy system since it was migrated.
  - id: contact
    action: request
    on_change: [phone]
    method: PATCH
    path: "/clients/{{ clients.client_id }}"
    body:
      - op: REPLACE
        path: /mobilePhone
        value: "{{ clients.phone }}"
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

/// The extract's five files, as lines (headers first).
struct Extract {
    clients: Vec<String>,
    deposits: Vec<String>,
    dtx: Vec<String>,
    loans: Vec<String>,
    reps: Vec<String>,
}

impl Extract {
    /// `n` clients CL-001…, each with deposit DP-nnn (two deposits in) and loan LN-nnn of 1200
    /// (two repayments of 100).
    fn new(n: usize) -> Self {
        let mut e = Extract {
            clients: vec!["client_id,first_name,last_name,phone".into()],
            deposits: vec!["deposit_id,client_id".into()],
            dtx: vec!["txn_id,deposit_id,seq,amount".into()],
            loans: vec!["loan_id,client_id,amount".into()],
            reps: vec!["txn_id,loan_id,seq,amount".into()],
        };
        for c in 1..=n {
            e.client(c);
        }
        e
    }

    fn client(&mut self, c: usize) {
        self.clients
            .push(format!("CL-{c:03},Ana,Client {c},+35191{c:07}"));
        self.deposits.push(format!("DP-{c:03},CL-{c:03}"));
        self.loans.push(format!("LN-{c:03},CL-{c:03},1200"));
        for s in 1..=2 {
            self.dtx
                .push(format!("D-{c:03}-{s},DP-{c:03},{s},{}.50", 100 + c * s));
            self.reps.push(format!("R-{c:03}-{s},LN-{c:03},{s},100"));
        }
    }

    /// Replaces the line starting with `prefix` in `lines` by `with` (or removes it: `None`).
    fn edit(lines: &mut Vec<String>, prefix: &str, with: Option<&str>) {
        let i = lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix}"));
        match with {
            Some(line) => lines[i] = line.to_owned(),
            None => {
                lines.remove(i);
            }
        }
    }

    /// Writes the files (and the plan, in the first extract's folder) into `dir`.
    fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, lines) in [
            ("clients.csv", &self.clients),
            ("deposits.csv", &self.deposits),
            ("deposit_transactions.csv", &self.dtx),
            ("loans.csv", &self.loans),
            ("repayments.csv", &self.reps),
        ] {
            std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
        }
    }
}

/// `--source NAME=PATH` for every file of the extract in `dir`.
fn sources(dir: &Path) -> Vec<String> {
    [
        "clients",
        "deposits",
        "deposit_transactions",
        "loans",
        "repayments",
    ]
    .iter()
    .flat_map(|name| {
        [
            "--source".to_owned(),
            format!("{name}={}", dir.join(format!("{name}.csv")).display()),
        ]
    })
    .collect()
}

/// The first extract migrated into `sandbox`: the plan and the run directory.
fn migrate(sandbox: &Sandbox, dir: &Path, clients: usize) -> (PathBuf, PathBuf) {
    Extract::new(clients).write(&dir.join("day1"));
    let plan = dir.join("day1").join("plan.yaml");
    std::fs::write(&plan, PLAN).unwrap();
    let run_dir = dir.join("run");
    let output = run(sandbox, plan.to_str().unwrap(), &run_dir, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    (plan, run_dir)
}

/// Phases the checkpoint records.
fn phases(run_dir: &Path) -> i64 {
    rusqlite::Connection::open(run_dir.join("checkpoint.db"))
        .and_then(|db| db.query_row("SELECT COUNT(*) FROM phases", [], |r| r.get(0)))
        .unwrap_or(0)
}

/// Calls of units (not the tenant's reads and lookups) the checkpoint holds since phase `n`
/// began.
fn unit_calls_since_phase(run_dir: &Path, n: i64) -> i64 {
    let db = rusqlite::Connection::open(run_dir.join("checkpoint.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM calls WHERE unit != '' AND at >= (SELECT started_at FROM phases WHERE n = ?1)",
        [n],
        |r| r.get(0),
    )
    .unwrap()
}

fn catch_up(sandbox: &Sandbox, plan: &Path, run_dir: &Path, day2: &Path) -> std::process::Output {
    let mut args = vec!["--catch-up".to_owned()];
    args.extend(sources(day2));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(sandbox, plan.to_str().unwrap(), run_dir, &args)
}

/// `plan estimate PLAN --catch-up RUN_DIR --source …` as JSON.
fn estimate_catch_up(plan: &Path, run_dir: &Path, day2: &Path) -> Value {
    let out = binary()
        .args(["plan", "estimate"])
        .arg(plan)
        .arg("--catch-up")
        .arg(run_dir)
        .args(sources(day2))
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catch_up_sends_only_the_delta_applies_declared_updates_and_lists_drift() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (plan, run_dir) = migrate(&sandbox, dir.path(), 20);
    let before = sandbox.stats().await;
    assert_eq!(before["transactions"], 20 * 5);

    // The night's extract.
    let mut e = Extract::new(20);
    e.client(21); // a new client, with its deposit, loan and history
    e.reps.push("R-001-3,LN-001,3,100".into()); // a new repayment after the others
    e.dtx.push("D-002-3,DP-002,3,70.00".into()); // a new deposit after the others
    Extract::edit(
        &mut e.clients,
        "CL-003,",
        Some("CL-003,Ana,Client 3,+351919999999"),
    ); // the phone: applied by `contact`
    Extract::edit(
        &mut e.clients,
        "CL-004,",
        Some("CL-004,Ana,Married Name,+351910000004"),
    ); // the name: left for a person
    e.reps.push("R-005-0,LN-005,0,50".into()); // before migrated repayments: held
    Extract::edit(&mut e.reps, "R-006-2,", None); // a repayment deleted
    Extract::edit(&mut e.loans, "LN-007,", Some("LN-007,CL-007,1500")); // an amount changed
    for lines in [
        &mut e.clients,
        &mut e.deposits,
        &mut e.loans,
        &mut e.dtx,
        &mut e.reps,
    ] {
        lines.retain(|l| !l.contains("-020"));
    } // a client gone from the extract
    let day2 = dir.path().join("day2");
    e.write(&day2);

    // The estimate of the night, before it.
    let estimate = estimate_catch_up(&plan, &run_dir, &day2);
    for (format, line) in [
        ("md", "| units unchanged (no call) | 12 |"),
        (
            "html",
            "<tr><td>units unchanged (no call)</td><td class=n>12</td></tr>",
        ),
    ] {
        let out = binary()
            .args(["plan", "estimate"])
            .arg(&plan)
            .arg("--catch-up")
            .arg(&run_dir)
            .args(sources(&day2))
            .args(["--format", format])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(line), "{format}: {text}");
    }

    let output = catch_up(&sandbox, &plan, &run_dir, &day2);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(
        err.contains("catch-up (phase 2): 1 new units, 7 changed (2 new rows), 12 unchanged (no call), 1 removed; drift: 1 applied, 0 not sent by the plan, 5 left for a person (drift.csv)"),
        "{err}"
    );

    // CL-021 in full (client, deposit, approval, 2 deposits, loan, approval, disbursement, 2
    // repayments: 10), a repayment, a deposit and the PATCH: 13 calls, and nothing else.
    assert_eq!(unit_calls_since_phase(&run_dir, 2), 13);
    let after = sandbox.stats().await;
    assert_eq!(after["clients"], 21);
    assert_eq!(after["loans"], 21);
    assert_eq!(after["transactions"], 20 * 5 + 5 + 2);
    assert_eq!(after["duplicates"]["total"], 0, "{after}");
    let client = sandbox.api().get("/clients/CL-003").await;
    assert_eq!(client.body["mobilePhone"], "+351919999999");
    // The held repayment was not sent.
    let held = sandbox
        .api()
        .get("/loans/LN-005/transactions?paginationDetails=ON")
        .await;
    assert!(!held.body.to_string().contains("R-005-0"), "{}", held.body);

    // The estimate said so: the units' calls of the night.
    assert_eq!(estimate["catch_up"]["unit_calls"], 13, "{estimate}");
    assert_eq!(estimate["catch_up"]["units_unchanged"], 12, "{estimate}");

    // drift.csv: every change, personal values masked, with what was done.
    let drift = std::fs::read_to_string(run_dir.join("drift.csv")).unwrap();
    insta::assert_snapshot!("drift_csv", drift);
    assert!(!drift.contains("Married") && !drift.contains("+35191"));

    // The report and status show both phases.
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(
        phases
            .iter()
            .map(|p| p["kind"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["migration", "catch-up"]
    );
    assert_eq!(phases[1]["compared"]["units_new"], 1);
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("## Phases"), "{md}");
    let page = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        page.contains("<section id=\"phases\">") && page.contains("<td>catch-up</td>"),
        "report.html shows the phases"
    );
    let status = binary().arg("status").arg(&run_dir).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("phase 2    catch-up") && status.contains("12 unchanged without a call"),
        "{status}"
    );

    // verify compares with the newest extract: the repayment removed there and the loan amount
    // changed there differ from Mambu (left for a person); names are not compared, and the
    // held row was never sent (drift.csv lists both).
    let (code, verified) = verify(&run_dir);
    assert_eq!(code, 1, "{verified}");
    let mut units: Vec<String> = verified["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["unit"].as_str().unwrap_or_default().to_owned())
        .collect();
    units.sort();
    units.dedup();
    assert_eq!(units, ["CL-006", "CL-007"], "{verified}");
    assert_eq!(verified["units_verified"], 20);

    // The same extract again: nothing to catch up.
    let output = catch_up(&sandbox, &plan, &run_dir, &day2);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("nothing to catch up"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catch_up_killed_under_faults_resumes_with_every_record_once() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (plan, run_dir) = migrate(&sandbox, dir.path(), 150);
    // Every client gets a repayment and a deposit; every third a new phone; 30 new clients.
    let mut e = Extract::new(180);
    for c in 1..=150 {
        e.reps.push(format!("R-{c:03}-3,LN-{c:03},3,100"));
        e.dtx.push(format!("D-{c:03}-3,DP-{c:03},3,10.00"));
        if c % 3 == 0 {
            Extract::edit(
                &mut e.clients,
                &format!("CL-{c:03},"),
                Some(&format!("CL-{c:03},Ana,Client {c},+35192{c:07}")),
            );
        }
    }
    let day2 = dir.path().join("day2");
    e.write(&day2);

    sandbox
        .set_faults(r#"{"fault_rate": 0.05, "lost_reply_rate": 0.03, "idempotency": "ignore"}"#)
        .await;
    // The catch-up killed once its phase is recorded, then its resumes killed in turn.
    let mut args = vec!["--catch-up".to_owned(), "--rate".into(), "400".into()];
    args.extend(sources(&day2));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = common::spawn(&sandbox, plan.to_str().unwrap(), &run_dir, &args);
    while phases(&run_dir) < 2 && child.try_wait().unwrap().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _ = child.kill();
    child.wait().unwrap();
    assert_eq!(phases(&run_dir), 2, "the catch-up began");
    for wait_ms in [500, 900] {
        let mut child = common::spawn(
            &sandbox,
            plan.to_str().unwrap(),
            &run_dir,
            &["--resume", "--rate", "400"],
        );
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        let _ = child.kill();
        child.wait().unwrap();
    }
    let output = run(&sandbox, plan.to_str().unwrap(), &run_dir, &["--resume"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    sandbox.set_faults("{}").await;
    let stats = sandbox.stats().await;
    assert_eq!(stats["duplicates"]["total"], 0, "{stats}");
    assert_eq!(stats["clients"], 180);
    assert_eq!(stats["transactions"], 180 * 5 + 150 * 2, "{stats}");
    for c in [3, 150] {
        let client = sandbox.api().get(&format!("/clients/CL-{c:03}")).await;
        assert_eq!(
            client.body["mobilePhone"],
            json!(format!("+35192{c:07}")),
            "{}",
            client.body
        );
    }
    let (code, verified) = verify(&run_dir);
    assert_eq!(code, 0, "{verified}");
    assert_eq!(verified["units_verified"], 180);
}

#[test]
fn plan_validate_checks_an_updates_columns_and_renders_it() {
    let dir = tempfile::tempdir().unwrap();
    Extract::new(3).write(dir.path());
    let plan = dir.path().join("plan.yaml");
    let validate = |text: String| {
        std::fs::write(&plan, text).unwrap();
        let out = binary()
            .args(["plan", "validate"])
            .arg(&plan)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out)
    };
    let text = validate(PLAN.replace("on_change: [phone]", "on_change: [phne]"));
    assert!(
        text.contains("`on_change` names `phne`: clients has no column `phne`")
            && text.contains("did you mean `phone`?"),
        "{text}"
    );
    // The update is rendered for every row, as a catch-up would for a changed one.
    let text = validate(PLAN.replace(
        "value: \"{{ clients.phone }}\"",
        "value: \"{{ clients.first_name | decimal }}\"",
    ));
    assert!(
        text.contains("clients.csv:2") && text.contains("step `contact` (request)"),
        "{text}"
    );
}
