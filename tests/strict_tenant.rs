//! The tool against the strict tenant (fixtures/tenants/strict.yaml), end to end: the real binary,
//! the real sandbox over HTTP. Four-eyes approval through a second user, and a permission the
//! API user lacks: the run stops resumably naming it and the step, and the resume (as a user that
//! holds it) finishes exactly once.

mod common;

use std::collections::HashSet;

use common::{API_KEY, Sandbox, binary, rows, run, stderr};

/// Clients holding at least one loan of a four-eyes product (PL-STD, SME-TERM in the strict
/// profile).
fn clients_with_four_eyes_loans() -> HashSet<String> {
    rows("fixtures/sample/loans.csv")
        .into_iter()
        .filter(|l| l["product_id"] == "PL-STD" || l["product_id"] == "SME-TERM")
        .map(|l| l["client_id"].clone())
        .collect()
}

/// The units a run's errors.csv lists, with the step each failed at.
fn failed_units(run_dir: &std::path::Path) -> Vec<(String, String)> {
    rows(run_dir.join("errors.csv").to_str().unwrap())
        .into_iter()
        .map(|r| (r["unit"].clone(), r["step"].clone()))
        .collect()
}

/// Four-eyes: without an approving user, every loan of a four-eyes product is refused at its
/// approval (the user approving it created it), and nothing else fails; with the sample's
/// `approver`, every unit lands.
#[test]
fn four_eyes_products_are_approved_by_the_second_user_only() {
    let dir = tempfile::tempdir().unwrap();
    // The error budget would stop the run: most units hold a four-eyes loan.
    let one_user = common::sample_plan_with(
        dir.path(),
        &[
            ("  approver: approver\n", ""),
            ("max_error_rate: 0.10", "max_error_rate: 1.0"),
            (
                "max_consecutive_failures: 10",
                "max_consecutive_failures: 1000",
            ),
        ],
    );
    let run_dir = dir.path().join("one-user");
    let output = binary()
        .args(["run", one_user.to_str().unwrap(), "--run-dir"])
        .arg(&run_dir)
        .args(["--rate", "3000", "--no-progress"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let failed = failed_units(&run_dir);
    let expected = clients_with_four_eyes_loans();
    assert_eq!(
        failed
            .iter()
            .map(|(u, _)| u.clone())
            .collect::<HashSet<_>>(),
        expected,
        "exactly the units with a four-eyes loan fail"
    );
    assert!(
        failed.iter().all(|(_, step)| step == "approve"),
        "each at its approval: {failed:?}"
    );

    let run_dir = dir.path().join("two-users");
    let output = binary()
        .args(["run", "plans/sample.yaml", "--run-dir"])
        .arg(&run_dir)
        .args(["--rate", "3000", "--no-progress"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// The strict profile where the `migration` user lacks APPLY_LOAN_FEES, and a `migration-full`
/// user (key `full-key`) holds every permission `migration` has and that one.
fn profile_without_fee_permission() -> String {
    let text = common::strict_profile();
    let granted = "DIBURSE_LOANS, APPLY_LOAN_FEES, ENTER_REPAYMENT";
    assert!(text.contains(granted));
    let without = text.replacen(granted, "DIBURSE_LOANS, ENTER_REPAYMENT", 1);
    let full = format!(
        "users:\n  - username: migration-full\n    apiKey: full-key\n    access:\n      permissions: [{}]\n",
        permissions_of(&text, "migration")
    );
    without.replacen("users:\n", &full, 1)
}

/// The permissions list of `user` in a profile, as written (one flow sequence).
fn permissions_of(profile: &str, user: &str) -> String {
    let start = profile
        .find(&format!("username: {user}\n"))
        .expect("the user");
    let list = &profile[start..];
    let open = list.find("permissions: [").unwrap() + "permissions: [".len();
    let close = list[open..].find(']').unwrap() + open;
    list[open..close]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A 403 for a missing permission stops the run resumably (exit 3), saying which permission and
/// which step, before more calls are refused; resumed as a user that holds it, the run finishes
/// and nothing was created twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_permission_stops_the_run_naming_it_and_the_resume_finishes() {
    let sandbox = Sandbox::tenant(&profile_without_fee_permission(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let output = run(&sandbox, "plans/sample.yaml", &run_dir, &["--rate", "3000"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(
        err.contains("step `fee` (apply_fee)")
            && err.contains("lacks `APPLY_LOAN_FEES`")
            && err.contains("--resume"),
        "{err}"
    );
    assert!(!err.contains(API_KEY), "no credential printed");
    let stats = sandbox.stats().await;
    let forbidden = stats["requests"]["by_status"]["403"].as_u64().unwrap_or(0);
    assert!(
        (1..=16).contains(&forbidden),
        "stopped at the first refusals, not after every fee: {forbidden}"
    );

    let output = binary()
        .env("MAMBU_API_KEY", "full-key")
        .args(common::run_args(
            &sandbox,
            "plans/sample.yaml",
            &run_dir,
            &["--rate", "3000", "--resume"],
        ))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stats = sandbox.stats().await;
    assert_eq!(stats["clients"], 250, "{stats}");
    assert_eq!(stats["duplicates"]["total"], 0, "{stats}");
    let fees = rows("fixtures/sample/transactions.csv")
        .into_iter()
        .filter(|t| t["kind"] == "FEE")
        .count();
    assert_eq!(
        stats["transactions_by_type"]["FEE_APPLIED"], fees,
        "{stats}"
    );
}

/// `tenant schema` describes a profile; `tenant check` accepts the shipped profiles and refuses
/// a broken one saying where (exit 2), as `sandbox --tenant` does before serving anything.
#[test]
fn the_tenant_profile_has_a_schema_and_a_check_that_says_where() {
    let schema = binary().args(["tenant", "schema"]).output().unwrap();
    assert_eq!(schema.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    let keys: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "timeZone",
        "users",
        "branches",
        "loanProducts",
        "depositProducts",
        "clientRules",
    ] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    assert_eq!(schema["additionalProperties"], false);
    for profile in [
        "fixtures/tenants/lenient.yaml",
        "fixtures/tenants/strict.yaml",
    ] {
        let output = binary()
            .args(["tenant", "check", profile])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string("fixtures/tenants/strict.yaml").unwrap();
    std::fs::write(
        &broken,
        text.replace("timeZone: Europe/Lisbon", "timeZone: Lisboa"),
    )
    .unwrap();
    for args in [
        vec!["tenant", "check", broken.to_str().unwrap()],
        vec![
            "sandbox",
            "--port",
            "0",
            "--tenant",
            broken.to_str().unwrap(),
        ],
    ] {
        let output = binary().args(&args).output().unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(
            err.contains("broken.yaml") && err.contains("`Lisboa` is not an IANA time zone"),
            "{err}"
        );
    }
}
