//! `verify` over deposit histories (issue 18): every deposit and withdrawal the run posted is
//! read back by its externalId (type, amount, value date) and every balance is compared with
//! the plan's deposits minus its withdrawals; control totals by transaction type and of the
//! balances, computed here from the CSVs. Then, behind the tool's back, a transaction deleted,
//! a withdrawal posted and a balance altered: verify finds exactly those.

mod common;

use std::collections::BTreeMap;

use common::{Sandbox, deposit_history_plan, rows, run, stderr, verify};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// A control total's (expected, found).
fn total(report: &Value, name: &str) -> (Decimal, Decimal) {
    let (expected, found) = common::total(report, name);
    (expected.parse().unwrap(), found.parse().unwrap())
}

/// Each mismatch as (unit, entity, field, expected, found), sorted.
fn mismatches(report: &Value) -> Vec<[String; 5]> {
    let mut out: Vec<[String; 5]> = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            ["unit", "entity", "field", "expected", "found"]
                .map(|k| m[k].as_str().unwrap().to_owned())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reconciles_deposit_transactions_and_balances_and_finds_what_was_tampered_with() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (plan, expected) = deposit_history_plan(dir.path());
    let run_dir = dir.path().join("run");
    let output = run(&sandbox, plan.to_str().unwrap(), &run_dir, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let (code, report) = verify(&run_dir);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["mismatches"], json!([]));
    assert_eq!(report["units_verified"], 30);

    // The totals, from the CSVs alone.
    let mut balances: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut counts: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
    for (deposit, kind, amount) in &expected {
        let signed = if *kind == "DEPOSIT" {
            *amount
        } else {
            -*amount
        };
        *balances.entry(deposit.clone()).or_default() += signed;
        *counts.entry(kind).or_default() += Decimal::ONE;
        *sums.entry(kind).or_default() += amount;
    }
    assert_eq!(balances.len(), 45);
    assert!(counts["WITHDRAWAL"] > Decimal::from(5));
    for kind in ["DEPOSIT", "WITHDRAWAL"] {
        let (count, sum) = (counts[kind], sums[kind]);
        assert_eq!(
            total(&report, &format!("deposit transactions of type {kind}")),
            (count, count)
        );
        assert_eq!(
            total(
                &report,
                &format!("deposit transaction amounts of type {kind}")
            ),
            (sum, sum)
        );
    }
    let all: Decimal = balances.values().sum();
    let balance_total = "deposit balances (accounts with transactions)";
    assert_eq!(total(&report, balance_total), (all, all));
    assert_eq!(
        total(&report, "deposits"),
        (Decimal::from(45), Decimal::from(45))
    );
    let md = std::fs::read_to_string(run_dir.join("verify.md")).unwrap();
    assert!(
        md.contains(&format!("| {balance_total} | {all} | {all} | 0 |")),
        "{md}"
    );

    // Behind the tool's back: a deposit with its externalId deleted (the balance left as it
    // was), a withdrawal posted on a second account, a third account's balance altered.
    let txns = rows(
        dir.path()
            .join("deposit_transactions.csv")
            .to_str()
            .unwrap(),
    );
    let deleted = txns
        .iter()
        .find(|t| !t["external_id"].is_empty() && t["kind"] == "DEPOSIT")
        .unwrap();
    let owner = |deposit: &str| format!("CL-{}", &deposit[3..5]);
    let mut others = balances
        .keys()
        .filter(|d| **d != deleted["deposit_id"] && owner(d) != owner(&deleted["deposit_id"]));
    let withdrawn = others.next().unwrap().clone();
    let altered = others
        .find(|d| owner(d) != owner(&withdrawn))
        .unwrap()
        .clone();
    let http = reqwest::Client::new();
    let tamper = |body: Value| {
        let http = http.clone();
        let origin = sandbox.origin.clone();
        async move {
            let answer = http
                .post(format!("{origin}/_sandbox/tamper"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success(), "{body}");
        }
    };
    tamper(json!({ "action": "delete_transaction", "externalId": deleted["external_id"] })).await;
    tamper(json!({ "action": "set_deposit_balance", "deposit": altered, "balance": 12.34 })).await;
    let posted = sandbox
        .api()
        .post(
            &format!("/deposits/{withdrawn}/withdrawal-transactions"),
            json!({ "amount": 1 }),
        )
        .await;
    assert_eq!(posted.status, 201, "{posted:?}");

    let (code, report) = verify(&run_dir);
    assert_eq!(code, 1, "{report}");
    let found = mismatches(&report);
    let unposted = found
        .iter()
        .find(|m| m[1] == "transaction (no externalId)")
        .unwrap_or_else(|| panic!("the withdrawal posted behind the tool's back: {found:?}"));
    assert!(unposted[4].starts_with("WITHDRAWAL 1 "), "{unposted:?}");
    let s = |v: &str| v.to_owned();
    let mut want = vec![
        [
            owner(&deleted["deposit_id"]),
            format!("transaction {}", deleted["external_id"]),
            s("exists"),
            format!(
                "DEPOSIT {}",
                deleted["amount"].parse::<Decimal>().unwrap().normalize()
            ),
            s("no"),
        ],
        [
            owner(&withdrawn),
            s("transaction (no externalId)"),
            s("exists"),
            s("no (not posted by the run)"),
            unposted[4].clone(),
        ],
        [
            owner(&withdrawn),
            format!("deposit {withdrawn}"),
            s("balances.totalBalance"),
            balances[&withdrawn].normalize().to_string(),
            (balances[&withdrawn] - Decimal::ONE)
                .normalize()
                .to_string(),
        ],
        [
            owner(&altered),
            format!("deposit {altered}"),
            s("balances.totalBalance"),
            balances[&altered].normalize().to_string(),
            s("12.34"),
        ],
    ];
    want.sort();
    assert_eq!(found, want, "exactly the three changes");

    // The totals show them: one deposit fewer, one withdrawal more, the balances moved.
    let (count, sum) = (counts["DEPOSIT"], sums["DEPOSIT"]);
    let amount: Decimal = deleted["amount"].parse().unwrap();
    assert_eq!(
        total(&report, "deposit transactions of type DEPOSIT"),
        (count, count - Decimal::ONE)
    );
    assert_eq!(
        total(&report, "deposit transaction amounts of type DEPOSIT"),
        (sum, sum - amount)
    );
    let (count, sum) = (counts["WITHDRAWAL"], sums["WITHDRAWAL"]);
    assert_eq!(
        total(&report, "deposit transactions of type WITHDRAWAL"),
        (count, count + Decimal::ONE)
    );
    assert_eq!(
        total(&report, "deposit transaction amounts of type WITHDRAWAL"),
        (sum, sum + Decimal::ONE)
    );
    assert_eq!(
        total(&report, balance_total),
        (
            all,
            all - Decimal::ONE - balances[&altered] + Decimal::new(1234, 2)
        )
    );
}
