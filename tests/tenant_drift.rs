//! Stale-tenant detection (issue 19): a rehearsal records what the plan uses of the tenant; a
//! later run against the same tenant refuses, before any call that writes, when something the
//! plan uses changed, and says what and where; `--accept-tenant-changes` goes on and records.
//! The real binary against the real sandbox, the tenant changed under the same URL
//! (`POST /_sandbox/tamper`) or served again from an edited profile on another port.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Sandbox, TENANT_RECORDS, binary, run_args, sample_plan_with, stderr};
use serde_json::{Value, json};

/// Where a run in `dir/<name>` (and `plan validate --tenant-record` below) keeps the sample's
/// record of the strict tenant: beside the run directories.
fn record(dir: &Path) -> PathBuf {
    dir.join(".tenants/sample-migration@sandbox-strict-lisbon-bank.json")
}

/// `run` of the sample in `dir/<name>`, records beside the runs (not the harness's folder).
fn run(sandbox: &Sandbox, plan: &Path, dir: &Path, name: &str, extra: &[&str]) -> Output {
    binary()
        .env_remove(TENANT_RECORDS)
        .args(run_args(
            sandbox,
            plan.to_str().unwrap(),
            &dir.join(name),
            extra,
        ))
        .output()
        .unwrap()
}

fn validate(origin: &str, plan: &Path, dir: &Path) -> (i32, String) {
    let output = binary()
        .env_remove(TENANT_RECORDS)
        .args(["plan", "validate"])
        .arg(plan)
        .args(["--target", &format!("{origin}/api"), "--tenant-record"])
        .arg(record(dir))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
    )
}

fn snapshot_of(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The report with the test's folder, ports and times taken out.
fn filtered(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "<dir>")
}

/// The strict tenant, the sample in a folder of its own, and its rehearsal (`--sample N`) run
/// in `<dir>/rehearsal`.
fn rehearsed(sample: &str) -> (Sandbox, tempfile::TempDir, PathBuf) {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let plan = sample_plan_with(dir.path(), &[]);
    let rehearsal = run(
        &sandbox,
        &plan,
        dir.path(),
        "rehearsal",
        &["--sample", sample, "--rate", "3000"],
    );
    assert_eq!(rehearsal.status.code(), Some(0), "{}", stderr(&rehearsal));
    (sandbox, dir, plan)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_product_limit_edited_since_the_rehearsal_stops_the_run_until_accepted() {
    let (sandbox, dir, plan) = rehearsed("3");
    let dir = dir.path();
    let recorded = snapshot_of(&record(dir));
    assert_eq!(recorded["tenant"], "sandbox-strict-lisbon-bank");
    assert!(
        recorded["recorded_by"]
            .as_str()
            .unwrap()
            .starts_with("run ")
    );
    assert!(
        recorded["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let items = recorded["items"].as_object().unwrap();
    for item in [
        "loan product PL-STD",
        "deposit product CA-STD",
        "branch BR-LIS",
        "custom field _Client_Details.employment_status",
        "custom field set _Loan_Origination",
        "time zone",
    ] {
        assert!(items.contains_key(item), "{item} in {:?}", items.keys());
    }
    assert_eq!(
        items["loan product PL-STD"]["loanAmountSettings"]["loanAmount"]["maxValue"].to_string(),
        "50000"
    );
    // Nothing personal, nothing secret.
    let text = std::fs::read_to_string(record(dir)).unwrap();
    for secret in [common::API_KEY, "migration-password", "Lisboa", "Araújo"] {
        assert!(!text.contains(secret), "{secret} in the record");
    }
    // The run's own copy.
    assert_eq!(
        snapshot_of(&dir.join("rehearsal/tenant.json"))["fingerprint"],
        recorded["fingerprint"]
    );

    // The tenant's administrator lowers PL-STD's maximum (above every sample loan's amount).
    sandbox
        .tamper(
            json!({ "action": "set_product_setting", "product": "PL-STD",
            "path": "/loanAmountSettings/loanAmount/maxValue", "value": 45000 }),
        )
        .await;
    let clients = sandbox.stats().await["clients"].clone();
    let refused = run(
        &sandbox,
        &plan,
        dir,
        "cutover",
        &["--sample", "6", "--rate", "3000"],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let report = stderr(&refused);
    assert!(
        report.contains(
            "  loan product PL-STD: loanAmountSettings.loanAmount.maxValue 50000 → 45000\n    affects: steps "
        ),
        "{report}"
    );
    let pl_std = common::rows("fixtures/sample/loans.csv")
        .iter()
        .filter(|l| l["product_id"] == "PL-STD")
        .count();
    assert!(
        report.contains(&format!("; {pl_std} rows of loans (product_id PL-STD)")),
        "{report}"
    );
    assert!(report.contains("--accept-tenant-changes"), "{report}");
    assert_eq!(
        sandbox.stats().await["clients"],
        clients,
        "nothing was sent"
    );
    insta::with_settings!({ filters => vec![
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "[TIME]"),
    ] }, {
        insta::assert_snapshot!("a_product_limit_edited", filtered(&report, dir));
    });

    // Accepted: it runs, logs the change and records the tenant as it is.
    let accepted = run(
        &sandbox,
        &plan,
        dir,
        "cutover",
        &["--sample", "6", "--rate", "3000", "--accept-tenant-changes"],
    );
    assert_eq!(accepted.status.code(), Some(0), "{}", stderr(&accepted));
    let log = std::fs::read_to_string(dir.join("cutover/run.log")).unwrap();
    assert!(
        log.contains("tenant change accepted")
            && log.contains("loanAmountSettings.loanAmount.maxValue 50000 → 45000"),
        "{log}"
    );
    let now = snapshot_of(&record(dir));
    assert_ne!(now["fingerprint"], recorded["fingerprint"]);
    assert_eq!(
        snapshot_of(&dir.join("cutover/tenant.json"))["fingerprint"],
        now["fingerprint"]
    );
    // And the next run against it goes on.
    let again = run(
        &sandbox,
        &plan,
        dir,
        "again",
        &["--sample", "2", "--rate", "3000"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_branch_stops_the_run_only_when_the_data_names_it() {
    let (sandbox, dir, plan) = rehearsed("2");
    let dir = dir.path();

    // No client is of BR-PT01: the plan does not use it.
    sandbox
        .tamper(json!({ "action": "remove_branch", "branch": "BR-PT01" }))
        .await;
    let unused = run(
        &sandbox,
        &plan,
        dir,
        "second",
        &["--sample", "2", "--rate", "3000"],
    );
    assert_eq!(unused.status.code(), Some(0), "{}", stderr(&unused));
    assert!(
        !stderr(&unused).contains("tenant changed"),
        "{}",
        stderr(&unused)
    );
    let log = std::fs::read_to_string(dir.join("second/run.log")).unwrap();
    assert!(
        log.contains("branch BR-PT01: removed") && log.contains("does not use"),
        "{log}"
    );

    // BR-BER's clients are in the data.
    sandbox
        .tamper(json!({ "action": "remove_branch", "branch": "BR-BER" }))
        .await;
    let refused = run(
        &sandbox,
        &plan,
        dir,
        "third",
        &["--sample", "2", "--rate", "3000"],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let ber = common::rows("fixtures/sample/clients.csv")
        .iter()
        .filter(|c| c["branch_id"] == "BR-BER")
        .count();
    let report = stderr(&refused);
    assert!(
        report.contains(&format!(
            "  branch BR-BER: removed\n    affects: step client (lookups.branches); {ber} rows of clients (branch_id BR-BER)\n"
        )),
        "{report}"
    );
    assert!(!report.contains("BR-PT01"), "{report}");
}

#[test]
fn a_custom_field_made_required_shows_in_validate_and_stops_the_run_on_another_sandbox_of_the_same_tenant()
 {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let plan = sample_plan_with(dir, &[]);
    // The rehearsal: validated against the strict tenant, which records it.
    let first = Sandbox::strict(&[]);
    let (code, report) = validate(&first.origin, &plan, dir);
    assert_eq!(code, 0, "{report}");
    assert_eq!(snapshot_of(&record(dir))["recorded_by"], "plan validate");
    drop(first);

    // The same tenant (by its organization's name) on another port, a field made required.
    let optional = "{ id: original_disbursement_date, name: Original disbursement date, type: DATE, required: false }";
    let profile = common::strict_profile();
    assert!(profile.contains(optional));
    let second = Sandbox::tenant(
        &profile.replace(
            optional,
            &optional.replace("required: false", "required: true"),
        ),
        &[],
    );
    let (_, report) = validate(&second.origin, &plan, dir);
    let line = "custom field _Loan_Origination.original_disbursement_date: required false → true";
    assert!(
        report.lines().any(|l| l.starts_with("warning[tenant] ")
            && l.contains("the tenant changed since plan validate recorded it")
            && l.ends_with(line)),
        "{report}"
    );
    assert!(
        report.contains("warnings: 1 (the tenant changed since it was recorded)"),
        "{report}"
    );
    // validate does not accept it: the run refuses.
    let refused = run(
        &second,
        &plan,
        dir,
        "cutover",
        &["--sample", "2", "--rate", "3000"],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let loans = common::rows("fixtures/sample/loans.csv").len();
    assert!(
        stderr(&refused).contains(&format!(
            "  {line}\n    affects: step loan (creates loan_account); {loans} rows of loans\n"
        )),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_run_compares_with_what_it_started_with() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let plan = sample_plan_with(dir, &[]);
    // Stopped at once (the deadline has passed): resumable, its tenant recorded.
    let stopped = run(
        &sandbox,
        &plan,
        dir,
        "night",
        &["--rate", "3000", "--deadline", "2000-01-01T00:00:00Z"],
    );
    assert_eq!(stopped.status.code(), Some(3), "{}", stderr(&stopped));
    assert!(dir.join("night/tenant.json").exists());

    sandbox
        .tamper(
            json!({ "action": "set_product_setting", "product": "SME-TERM",
            "path": "/fourEyesPrinciple/activeForLoanApproval", "value": false }),
        )
        .await;
    let refused = run(
        &sandbox,
        &plan,
        dir,
        "night",
        &["--resume", "--sample", "3"],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let report = stderr(&refused);
    assert!(
        report.contains("night (attempt 1) recorded it")
            && report.contains("night/tenant.json")
            && report.contains(
                "  loan product SME-TERM: fourEyesPrinciple.activeForLoanApproval true → false"
            ),
        "{report}"
    );
    let resumed = run(
        &sandbox,
        &plan,
        dir,
        "night",
        &["--resume", "--sample", "3", "--accept-tenant-changes"],
    );
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert_eq!(
        snapshot_of(&dir.join("night/tenant.json"))["items"]["loan product SME-TERM"]["fourEyesPrinciple"]
            ["activeForLoanApproval"],
        false
    );
}
