//! `verify` reads Mambu back and reconciles it with the source: zero mismatches after a clean
//! migration, exactly the tampered records after changes made behind the tool's back, and
//! control totals equal to totals computed independently from the CSVs.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{API_KEY, Sandbox, rows, total, verify};
use rust_decimal::Decimal;
use serde_json::{Value, json};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mambu-migrate"));
    command
        .env("MAMBU_API_KEY", API_KEY)
        .env("MAMBU_APPROVER_API_KEY", common::APPROVER_KEY);
    command
}

fn sum(rows: &[HashMap<String, String>], column: &str) -> Decimal {
    rows.iter()
        .map(|r| r[column].parse::<Decimal>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_nothing_after_a_clean_run_and_exactly_what_was_tampered_with() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let output = binary()
        .args([
            "run",
            "plans/sample.yaml",
            "--target",
            &format!("{}/api", sandbox.origin),
            "--run-dir",
        ])
        .arg(&run_dir)
        .args(["--rate", "3000", "--no-progress"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let (code, report) = verify(&run_dir);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["mismatches"], json!([]));
    assert_eq!(report["units_verified"], 250);

    // Control totals, computed here from the CSVs alone.
    let clients = rows("fixtures/sample/clients.csv");
    let loans = rows("fixtures/sample/loans.csv");
    let transactions = rows("fixtures/sample/transactions.csv");
    let fees: Vec<_> = transactions
        .iter()
        .filter(|t| t["kind"] == "FEE")
        .cloned()
        .collect();
    let repayments: Vec<_> = transactions
        .iter()
        .filter(|t| t["kind"] == "REPAYMENT")
        .cloned()
        .collect();
    // The payoffs of paid-off loans are repayments too.
    let payoffs: Vec<_> = rows("fixtures/sample/loan_closures.csv")
        .into_iter()
        .filter(|c| c["final_state"] == "CLOSED")
        .collect();
    let repaid = sum(&repayments, "amount") + sum(&payoffs, "payoff_amount");
    let expect = |name: &str, value: String| {
        assert_eq!(total(&report, name), (value.clone(), value), "{name}")
    };
    expect("clients", clients.len().to_string());
    expect("loans", loans.len().to_string());
    expect(
        "loan amounts",
        sum(&loans, "amount").normalize().to_string(),
    );
    expect("repayment amounts", repaid.normalize().to_string());
    expect(
        "repayment transactions",
        (repayments.len() + payoffs.len()).to_string(),
    );
    expect("fee amounts", sum(&fees, "amount").normalize().to_string());
    expect("fee_applied transactions", fees.len().to_string());
    let micro: Vec<_> = loans
        .iter()
        .filter(|l| l["product_id"] == "MICRO")
        .cloned()
        .collect();
    expect(
        "loan amounts of product MICRO",
        sum(&micro, "amount").normalize().to_string(),
    );
    // Loans by final state: paid off, written off, the others active (or in arrears).
    let closures = rows("fixtures/sample/loan_closures.csv");
    let ended = |state: &str| {
        closures
            .iter()
            .filter(|c| c["final_state"] == state)
            .count()
    };
    expect(
        "loans by state: ACTIVE or in arrears",
        (loans.len() - closures.len()).to_string(),
    );
    expect("loans by state: CLOSED/REPAID", ended("CLOSED").to_string());
    expect(
        "loans by state: CLOSED/WRITTEN_OFF",
        ended("WRITTEN_OFF").to_string(),
    );
    for branch in ["BR-LIS", "BR-BER", "BR-NBO", "BR-SAO"] {
        let n = clients.iter().filter(|c| c["branch_id"] == branch).count();
        expect(&format!("clients of branch {branch}"), n.to_string());
    }
    let md = std::fs::read_to_string(run_dir.join("verify.md")).unwrap();
    assert!(
        md.contains(&format!("| repayment amounts | {} |", repaid.normalize())),
        "{md}"
    );
    let manifest = std::fs::read_to_string(run_dir.join("manifest.sha256")).unwrap();
    for file in [
        "plans/sample.yaml",
        "fixtures/sample/transactions.csv",
        "checkpoint.db",
        "report.json",
        "verify.md",
    ] {
        assert!(
            manifest.contains(file),
            "{file} in the manifest:\n{manifest}"
        );
    }

    // Behind the tool's back: a repayment deleted, a loan's amount altered.
    let http = reqwest::Client::new();
    let tamper = |body: Value| {
        http.post(format!("{}/_sandbox/tamper", sandbox.origin))
            .json(&body)
            .send()
    };
    assert!(
        tamper(json!({ "action": "delete_transaction", "externalId": repayments[0]["txn_id"] }))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert!(
        tamper(json!({ "action": "set_loan_amount", "loan": "LN-000005", "amount": 1.00 }))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let (code, report) = verify(&run_dir);
    assert_eq!(code, 1);
    let mut mismatches = common::mismatches(&report);
    mismatches.sort();
    let mut expected = vec![
        (
            format!("transaction {}", repayments[0]["txn_id"]),
            "exists".to_owned(),
            "no".to_owned(),
        ),
        (
            "loan LN-000005".to_owned(),
            "loanAmount".to_owned(),
            "1".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(mismatches, expected, "exactly the two changes");
    let (expected, found) = total(&report, "repayment transactions");
    assert_eq!(
        expected.parse::<u64>().unwrap(),
        found.parse::<u64>().unwrap() + 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_compares_custom_field_values_and_addresses_and_masks_what_is_personal() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    // The sample maps each client's employment status (`_Client_Details`) and address, and each
    // loan's origination (`_Loan_Origination`).
    let run_dir = dir.path().join("run");
    let output = common::run(&sandbox, "plans/sample.yaml", &run_dir, &["--rate", "3000"]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let stats = sandbox.stats().await;
    assert_eq!(stats["custom_field_values"]["_Client_Details"], 250);
    assert_eq!(stats["addresses"], 250);

    let (code, report) = verify(&run_dir);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["mismatches"], json!([]));
    for name in [
        "custom field values of _Client_Details",
        "addresses",
        "identification documents",
    ] {
        assert_eq!(
            total(&report, name),
            ("250".to_owned(), "250".to_owned()),
            "{name}"
        );
    }
    let loans = rows("fixtures/sample/loans.csv");
    let values = (2 * loans.len()).to_string();
    assert_eq!(
        total(&report, "custom field values of _Loan_Origination"),
        (values.clone(), values)
    );

    // Behind the tool's back: one client's custom field value, another's street.
    let clients = rows("fixtures/sample/clients.csv");
    let (changed, moved) = (&clients[1], &clients[2]);
    let expected_status = changed["employment_status"].as_str();
    assert_ne!(expected_status, "STUDENT");
    let http = reqwest::Client::new();
    for body in [
        json!({ "action": "set_custom_field", "client": changed["client_id"],
                "set": "_Client_Details", "field": "employment_status", "value": "STUDENT" }),
        json!({ "action": "set_address", "client": moved["client_id"], "index": 0,
                "field": "line1", "value": "Rua Falsa, 1" }),
        json!({ "action": "set_custom_field", "loan": loans[0]["loan_id"],
                "set": "_Loan_Origination", "field": "original_disbursement_date", "value": null }),
    ] {
        let answer = http
            .post(format!("{}/_sandbox/tamper", sandbox.origin))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{body}");
    }
    let (code, report) = verify(&run_dir);
    assert_eq!(code, 1, "{report}");
    let mut mismatches: Vec<Value> = report["mismatches"].as_array().unwrap().clone();
    mismatches.sort_by_key(|m| m["entity"].to_string());
    let address = &moved["address"];
    let masked = mambu_migrate::plan::template::mask_text(address);
    assert_eq!(
        mismatches,
        vec![
            json!({ "unit": changed["client_id"], "entity": format!("client {}", changed["client_id"]),
                    "field": "_Client_Details.employment_status",
                    "expected": expected_status, "found": "STUDENT" }),
            json!({ "unit": moved["client_id"], "entity": format!("client {}", moved["client_id"]),
                    "field": "addresses[0].line1",
                    "expected": masked, "found": "R** F***** 1" }),
            json!({ "unit": loans[0]["client_id"], "entity": format!("loan {}", loans[0]["loan_id"]),
                    "field": "_Loan_Origination.original_disbursement_date",
                    "expected": loans[0]["disbursed_on"], "found": "(none)" }),
        ],
        "exactly the three changes, the street masked"
    );
    // Neither street is anywhere in the evidence, nor on the run's page, which now shows
    // the control totals beside its own figures.
    let page = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        page.contains("Expected beside found (verify, "),
        "report.html has verify's totals"
    );
    assert!(
        page.contains("3 mismatches"),
        "report.html counts the mismatches"
    );
    for file in ["verify.md", "verify.json", "verify.html", "report.html"] {
        let text = std::fs::read_to_string(run_dir.join(file)).unwrap();
        for secret in [address.as_str(), "Rua Falsa"] {
            assert!(!text.contains(secret), "{file} shows {secret}");
        }
    }
}
