//! The sample's groups (issue 17): plans/sample-groups.yaml, as shipped, migrates
//! fixtures/sample's solidarity groups into the strict tenant: every member a client with its ID
//! document, address and required custom field, every group with its branch and its members'
//! roles, every MICRO group loan approved and disbursed. Under faults, lost replies and
//! idempotency keys the sandbox ignores, each lands exactly once, and verify finds nothing
//! wrong; the estimate counts exactly the calls a fault-free run makes.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Sandbox, binary, rows, run, stderr};
use serde_json::Value;

const PLAN: &str = "plans/sample-groups.yaml";

fn sample(name: &str) -> Vec<std::collections::HashMap<String, String>> {
    rows(&format!(
        "{}/fixtures/sample/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

fn plan() -> String {
    format!("{}/{PLAN}", env!("CARGO_MANIFEST_DIR"))
}

fn n(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

/// What the fixture holds: (groups, members, group loans).
fn fixture_counts() -> (usize, usize, usize) {
    let groups = sample("groups.csv");
    let members = sample("group_members.csv");
    let loans = sample("group_loans.csv");
    let in_groups: BTreeSet<&String> = members.iter().map(|m| &m["group_id"]).collect();
    assert_eq!(in_groups.len(), groups.len(), "every group has members");
    (groups.len(), members.len(), loans.len())
}

/// The roles' encodedKeys in the strict tenant (its `groupRoleNames`), by id.
fn role_keys() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("LEADER", "8a19c0de0000000000000000000e0001"),
        ("TREASURER", "8a19c0de0000000000000000000e0002"),
        ("SECRETARY", "8a19c0de0000000000000000000e0003"),
        ("MEMBER", "8a19c0de0000000000000000000e0004"),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_groups_migrate_once_each_under_faults_and_verify_clean() {
    let (groups, members, loans) = fixture_counts();
    assert_eq!(
        (groups, members, loans),
        (10, 99, 12),
        "the sample as documented"
    );
    for seed in ["5", "23"] {
        let sandbox = Sandbox::strict(&[
            "--fault-rate",
            "0.05",
            "--lost-reply-rate",
            "0.02",
            "--seed",
            seed,
            "--idempotency",
            "ignore",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        // The plan's own pace, with short retries: the faults are many for so few calls.
        let output = run(&sandbox, &plan(), &run_dir, &["--rate", "2000"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "seed {seed}: {}",
            stderr(&output)
        );
        let printed = String::from_utf8_lossy(&output.stdout).into_owned() + &stderr(&output);
        assert!(
            printed.contains(&format!("{groups} units migrated, 0 failed")),
            "seed {seed}: {printed}"
        );

        sandbox.set_faults(r#"{"idempotency": "ignore"}"#).await;
        let stats = sandbox.stats().await;
        assert!(
            n(&stats["requests"]["lost_replies"]) > 0
                && n(&stats["requests"]["injected_faults"]) > 0,
            "faults were injected: {stats}"
        );
        assert_eq!(n(&stats["groups"]), groups as u64, "{stats}");
        assert_eq!(n(&stats["group_members"]), members as u64, "{stats}");
        assert_eq!(n(&stats["clients"]), members as u64, "{stats}");
        assert_eq!(n(&stats["loans"]), loans as u64, "{stats}");
        assert_eq!(
            n(&stats["loans_by_state"]["ACTIVE"]),
            loans as u64,
            "{stats}"
        );
        assert_eq!(
            n(&stats["transactions_by_type"]["DISBURSEMENT"]),
            loans as u64,
            "{stats}"
        );
        assert_eq!(n(&stats["duplicates"]["total"]), 0, "{stats}");
        // What the strict tenant requires of a client, for every member; the loans' origination.
        assert_eq!(n(&stats["addresses"]), members as u64, "{stats}");
        assert_eq!(
            n(&stats["custom_field_values"]["_Client_Details"]),
            members as u64,
            "{stats}"
        );
        assert_eq!(
            n(&stats["custom_field_values"]["_Loan_Origination"]),
            2 * loans as u64,
            "{stats}"
        );

        // Each group as the fixture has it: its branch, its members (by client id) and roles.
        let api = sandbox.api();
        let keys = role_keys();
        let mut expected: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for m in sample("group_members.csv") {
            expected
                .entry(m["group_id"].clone())
                .or_default()
                .insert((m["client_id"].clone(), keys[m["role"].as_str()].to_owned()));
        }
        for (group, members) in &expected {
            let found = api.get(&format!("/groups/{group}?detailsLevel=FULL")).await;
            assert_eq!(found.status, 200, "{found:?}");
            let mut got = BTreeSet::new();
            for member in found.body["groupMembers"].as_array().unwrap() {
                let client = api
                    .get(&format!(
                        "/clients/{}",
                        member["clientKey"].as_str().unwrap()
                    ))
                    .await;
                assert_eq!(client.status, 200, "{client:?}");
                assert_eq!(
                    client.body["assignedBranchKey"], found.body["assignedBranchKey"],
                    "a member of the group's branch: {client:?}"
                );
                let roles = member["roles"].as_array().unwrap();
                assert_eq!(roles.len(), 1, "{member}");
                got.insert((
                    client.body["id"].as_str().unwrap().to_owned(),
                    roles[0]["groupRoleNameKey"].as_str().unwrap().to_owned(),
                ));
            }
            assert_eq!(&got, members, "group {group}");
        }
        for loan in sample("group_loans.csv") {
            let found = api.get(&format!("/loans/{}", loan["loan_id"])).await;
            assert_eq!(found.body["accountHolderType"], "GROUP", "{found:?}");
            // Disbursed and unrepaid (the plan posts no repayment): active, or in arrears once
            // an installment is past due.
            assert!(
                matches!(
                    found.body["accountState"].as_str(),
                    Some("ACTIVE" | "ACTIVE_IN_ARREARS")
                ),
                "{found:?}"
            );
        }

        // Verify reads every member, group and loan back and finds them as the plan sent them.
        sandbox.set_faults("{}").await;
        let verified = binary()
            .args(["verify"])
            .arg(&run_dir)
            .arg("--no-progress")
            .output()
            .unwrap();
        assert_eq!(
            verified.status.code(),
            Some(0),
            "seed {seed}: {}",
            stderr(&verified)
        );
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("verify.json")).unwrap())
                .unwrap();
        assert_eq!(report["mismatches"], serde_json::json!([]), "{report}");
        let totals = report["totals"].as_array().unwrap();
        for (name, count) in [("groups", groups), ("group members", members)] {
            let total = totals
                .iter()
                .find(|t| t["name"] == name)
                .unwrap_or_else(|| panic!("no total {name}: {report}"));
            assert_eq!(total["expected"], total["found"], "{name}: {report}");
            // Control totals are written as text (sums are exact decimals).
            assert_eq!(total["expected"], count.to_string(), "{name}: {report}");
        }
    }
}

#[test]
fn the_estimate_of_the_sample_groups_is_the_number_of_calls_a_run_makes() {
    let estimate = binary()
        .args(["plan", "estimate", &plan(), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(estimate.status.code(), Some(0), "{}", stderr(&estimate));
    let e: Value = serde_json::from_slice(&estimate.stdout).unwrap();

    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let output = run(&sandbox, &plan(), &dir.path().join("run"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stats = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(sandbox.stats());
    assert_eq!(
        n(&stats["requests"]["total"]),
        n(&e["total_calls"]),
        "{:#}",
        stats["requests"]
    );
    // Per group unit: its members, the group, and create, approve and disburse per loan; and the
    // lookups and the tenant's time zone.
    let (groups, members, loans) = fixture_counts();
    let unit_calls = members + groups + 3 * loans;
    assert_eq!(unit_calls, 145);
    // The tenant's time zone, its record (the organization, the lookups' lists, the custom
    // field sets and definitions) and the lookups: 12 reads.
    assert_eq!(n(&e["lookup_calls"]), 12, "{e:#}");
    assert_eq!(n(&e["total_calls"]), unit_calls as u64 + 12, "{e:#}");
}
