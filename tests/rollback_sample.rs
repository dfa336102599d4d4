//! `rollback` (issue 19) of the sample migration (plans/sample.yaml against the strict tenant,
//! its `migration` user allowed to adjust and delete): units holding an opening balance posted
//! through the bulk endpoint, a loan paid off and closed, loans written off and a loan
//! disbursed in four tranches are undone whole (every transaction adjusted once, a bulk item's
//! found by its externalId when the bulk's status gave no id, the accounts
//! and clients deleted) and migrated again by `run --resume` to the same tenant figures, and
//! `verify` is clean. A write-off or a close an end of day has made final is refused with
//! Mambu's reason: the unit is left partly undone, and report.md, report.json and `status` say
//! so.

mod common;

use common::{Sandbox, binary, rollback, run, stderr, stdout, verify};
use serde_json::{Value, json};

/// The tenant figures a migration leaves, to compare after a rollback and a resume.
fn figures(stats: &Value) -> Value {
    let keys = [
        "clients",
        "deposits",
        "deposits_by_state",
        "deposit_transactions",
        "deposit_balances_total",
        "loans",
        "loans_by_state",
        "loans_by_sub_state",
        "settlement_links",
        "loan_guarantors",
        "loan_assets",
        "transactions",
        "transactions_by_type",
        "transaction_amounts_by_type",
        "custom_schedules",
        "custom_field_values",
        "addresses",
    ];
    keys.iter()
        .map(|k| (k.to_string(), stats[k].clone()))
        .collect()
}

fn number(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_units_are_undone_whole_and_migrated_again() {
    let sandbox = Sandbox::tenant(&common::strict_profile_for_rollback(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let output = run(&sandbox, "plans/sample.yaml", &run_dir, &["--rate", "3000"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let before = sandbox.stats().await;
    let api = sandbox.api();

    // CL-000002: LN-000003 paid off and closed. CL-000003: DP-000002, a current account whose
    // balance went through the bulk endpoint and the settlement account of LN-000004, written
    // off as LN-000008 is. CL-000009: LN-000016 in four tranches, LN-000015 written off.
    let units = ["CL-000002", "CL-000003", "CL-000009"];
    let loans = [
        "LN-000003",
        "LN-000004",
        "LN-000008",
        "LN-000015",
        "LN-000016",
    ];
    assert_eq!(
        api.get("/loans/LN-000004").await.body["accountSubState"],
        "WRITTEN_OFF"
    );
    let tranched = api.get("/loans/LN-000016").await.body;
    assert_eq!(
        tranched["tranches"].as_array().unwrap().len(),
        4,
        "{tranched}"
    );
    let bulk_balance =
        number(&api.get("/deposits/DP-000002").await.body["balances"]["totalBalance"]);
    assert!(bulk_balance > 0.0);
    let of_units = |file: &str, key: &str| -> Vec<String> {
        common::rows(file)
            .into_iter()
            .filter(|r| units.contains(&r["client_id"].as_str()))
            .map(|r| r[key].clone())
            .collect()
    };
    let deposits = of_units("fixtures/sample/deposits.csv", "deposit_id");
    let all_loans = of_units("fixtures/sample/loans.csv", "loan_id");
    assert!(loans.iter().all(|l| all_loans.iter().any(|a| a == l)));
    let mut balances = 0.0;
    for d in &deposits {
        balances +=
            number(&api.get(&format!("/deposits/{d}")).await.body["balances"]["totalBalance"]);
    }

    // A tenant whose bulk status gives no item's id (BulkProcessingSuccess.id is optional): the
    // step names only its bulk, and the rollback finds the transaction by its externalId.
    let db = rusqlite::Connection::open(run_dir.join("checkpoint.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE steps SET outputs = json_remove(outputs, '$.id') WHERE unit = 'CL-000003' AND step_id = 'opening_balance'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let mut args = vec!["--unit"];
    args.extend(units);
    let out = rollback(&run_dir, &args, 0);
    assert!(
        stdout(&out).contains("3 of 3 units rolled back, 0 partly"),
        "{}",
        stdout(&out)
    );
    for path in units
        .iter()
        .map(|u| format!("/clients/{u}"))
        .chain(all_loans.iter().map(|l| format!("/loans/{l}")))
        .chain(deposits.iter().map(|d| format!("/deposits/{d}")))
    {
        assert_eq!(api.get(&path).await.status, 404, "{path}");
    }
    let after = sandbox.stats().await;
    assert_eq!(after["clients"], number(&before["clients"]) as u64 - 3);
    assert_eq!(
        after["loans"],
        number(&before["loans"]) as u64 - all_loans.len() as u64
    );
    assert_eq!(
        after["deposits"],
        number(&before["deposits"]) as u64 - deposits.len() as u64
    );
    // Every transaction of the accounts deleted was adjusted first, each once.
    let gone = number(&before["transactions"]) - number(&after["transactions"]);
    assert!(gone > 0.0);
    assert_eq!(number(&after["adjusted_transactions"]), gone, "{after}");
    let left = number(&before["deposit_balances_total"]) - balances;
    assert!(
        (number(&after["deposit_balances_total"]) - left).abs() < 0.005,
        "{after}"
    );

    // Migrated again: the tenant's figures are the first run's.
    let output = run(&sandbox, "plans/sample.yaml", &run_dir, &["--resume"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let again = sandbox.stats().await;
    assert_eq!(figures(&again), figures(&before));
    assert_eq!(again["duplicates"]["total"], 0, "{again}");
    let read = api.get("/loans/LN-000016").await.body;
    assert!(
        read["tranches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["disbursementDetails"]["disbursementTransactionKey"].is_string()),
        "{read}"
    );
    let (code, report) = verify(&run_dir);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["mismatches"], json!([]));

    // An end of day has run since LN-000021's write-off and LN-000011's close: Mambu refuses to
    // undo them, and CL-000012 and CL-000006 stay as they are from there on (the loan CLOSED,
    // the client).
    for loan in ["LN-000021", "LN-000011"] {
        sandbox
            .tamper(json!({ "action": "age_closure", "loan": loan }))
            .await;
    }
    let out = rollback(
        &run_dir,
        &["--unit", "CL-000012", "CL-000006", "CL-000020"],
        1,
    );
    let text = stdout(&out);
    assert!(
        text.contains("1 of 3 units rolled back, 2 partly"),
        "{text}"
    );
    assert!(
        text.contains(":undoWriteOff refused: NON_REVERSIBLE_WRITE_OFF"),
        "{text}"
    );
    assert!(
        text.contains(":changeState refused: CLOSURE_DATE_AFTER_MAX_ALLOWED_UNDO_CLOSURE_PERIOD"),
        "{text}"
    );
    let loan = api.get("/loans/LN-000021").await.body;
    assert_eq!(loan["accountSubState"], "WRITTEN_OFF", "{loan}");
    let loan = api.get("/loans/LN-000011").await.body;
    assert_eq!(loan["accountSubState"], "REPAID", "{loan}");
    assert_eq!(api.get("/clients/CL-000012").await.status, 200);
    assert_eq!(api.get("/clients/CL-000006").await.status, 200);
    assert_eq!(api.get("/clients/CL-000020").await.status, 404);

    // The reports and `status` show the rollbacks.
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    let r = &summary["rollbacks"];
    let rolled: Vec<&str> = r["rolled_back"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_str().unwrap())
        .collect();
    assert_eq!(rolled, ["CL-000002", "CL-000003", "CL-000009", "CL-000020"]);
    assert_eq!(r["partly"][0]["unit"], "CL-000012", "{r}");
    assert!(
        r["partly"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("NON_REVERSIBLE_WRITE_OFF"),
        "{r}"
    );
    assert!(r["calls_done"].as_i64().unwrap() > gone as i64, "{r}");
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("## Rollbacks"), "{md}");
    assert!(md.contains("`run --resume`): 4. Partly undone: 2."), "{md}");
    assert!(md.contains("NON_REVERSIBLE_WRITE_OFF"), "{md}");
    let status = binary().arg("status").arg(&run_dir).output().unwrap();
    let text = stdout(&status);
    assert!(
        text.contains("rollbacks  4 units rolled back · 2 partly undone"),
        "{text}"
    );
    assert!(text.contains("CL-000012: POST /loans/"), "{text}");
    // No personal data: the sample's names are nowhere in what the rollback wrote or printed.
    let last_names: Vec<String> = common::rows("fixtures/sample/clients.csv")
        .into_iter()
        .filter(|r| {
            ["CL-000002", "CL-000003", "CL-000006", "CL-000012"].contains(&r["client_id"].as_str())
        })
        .map(|r| r["last_name"].clone())
        .collect();
    for name in &last_names {
        for shown in [&md, &text, &stdout(&out)] {
            assert!(!shown.contains(name.as_str()), "{name} shown");
        }
    }
}

/// Group units (plans/sample-groups.yaml): the group's loans go, then the group
/// (`DELETE /groups/{id}`), then the member clients the unit created. A group holding an
/// account the run did not make is refused with Mambu's GROUP_HAS_ACCOUNTS, its members kept;
/// once that account is gone a second rollback finishes it, and `run --resume` migrates both
/// groups again.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_unit_goes_loans_first_then_the_group_then_its_members() {
    let sandbox = Sandbox::tenant(&common::strict_profile_for_rollback(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let plan = "plans/sample-groups.yaml";
    let output = run(&sandbox, plan, &run_dir, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let before = sandbox.stats().await;
    let api = sandbox.api();
    let members = |group: &str| -> Vec<String> {
        common::rows("fixtures/sample/group_members.csv")
            .into_iter()
            .filter(|r| r["group_id"] == group)
            .map(|r| r["client_id"].clone())
            .collect()
    };
    // GR-000002 gets a loan the run did not make.
    let theirs = api.get("/loans/GL-000002").await.body;
    let group_key = api.get("/groups/GR-000002").await.key();
    let other = api
        .post(
            "/loans",
            json!({
                "id": "OTHER-GL", "accountHolderKey": group_key, "accountHolderType": "GROUP",
                "productTypeKey": theirs["productTypeKey"], "loanAmount": 500,
                "interestSettings": { "interestRate": 12 },
                "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 },
                "_Loan_Origination": { "legacy_account_number": "OTHER-GL" },
            }),
        )
        .await;
    assert_eq!(other.status, 201, "{other:?}");

    let out = rollback(&run_dir, &["--unit", "GR-000001", "GR-000002"], 1);
    let text = stdout(&out);
    assert!(
        text.contains("1 of 2 units rolled back, 1 partly"),
        "{text}"
    );
    assert!(
        text.contains("GR-000002: DELETE /groups/") && text.contains("GROUP_HAS_ACCOUNTS"),
        "{text}"
    );
    assert_eq!(api.get("/groups/GR-000001").await.status, 404);
    assert_eq!(api.get("/loans/GL-000001").await.status, 404);
    for m in members("GR-000001") {
        assert_eq!(api.get(&format!("/clients/{m}")).await.status, 404, "{m}");
    }
    assert_eq!(api.get("/loans/GL-000002").await.status, 404);
    assert_eq!(api.get("/groups/GR-000002").await.status, 200);
    for m in members("GR-000002") {
        assert_eq!(api.get(&format!("/clients/{m}")).await.status, 200, "{m}");
    }
    // A member of a group is not deleted apart from it: Mambu's reason.
    let member = &members("GR-000002")[0];
    let refused = api
        .send(
            reqwest::Method::DELETE,
            &format!("/clients/{member}"),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        refused.reason(),
        "CLIENT_IS_MEMBER_OF_A_GROUP",
        "{refused:?}"
    );

    let deleted = api
        .send(reqwest::Method::DELETE, "/loans/OTHER-GL", None, None)
        .await
        .unwrap();
    assert_eq!(deleted.status, 204, "{deleted:?}");
    rollback(&run_dir, &["--unit", "GR-000002"], 0);
    assert_eq!(api.get("/groups/GR-000002").await.status, 404);
    for m in members("GR-000002") {
        assert_eq!(api.get(&format!("/clients/{m}")).await.status, 404, "{m}");
    }
    let after = sandbox.stats().await;
    let gone = (members("GR-000001").len() + members("GR-000002").len()) as u64;
    assert_eq!(after["groups"], number(&before["groups"]) as u64 - 2);
    assert_eq!(after["clients"], number(&before["clients"]) as u64 - gone);
    assert_eq!(
        after["group_members"],
        number(&before["group_members"]) as u64 - gone
    );

    let output = run(&sandbox, plan, &run_dir, &["--resume"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let again = sandbox.stats().await;
    for k in [
        "clients",
        "groups",
        "group_members",
        "loans",
        "transactions",
    ] {
        assert_eq!(again[k], before[k], "{k}: {again}");
    }
}
