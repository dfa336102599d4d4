//! Deposit balances and history (issue 18): `POST /deposits/{id}/deposit-transactions` and
//! `/withdrawal-transactions` over HTTP against the real binary's sandbox, each refusal checked
//! with its status and Mambu's v2 error body; then the plan's `deposit` and `withdrawal`
//! actions migrating deposit histories under faults, lost replies and expired idempotency keys:
//! every transaction lands once and every balance is the CSV's sum.

mod common;

use std::collections::BTreeMap;

use common::{Answer, Api, CURRENT_ACCOUNT, Sandbox, body, deposit_history_plan, strict_profile};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// Asserts a refusal: the status and the whole v2 error body.
#[track_caller]
fn refused(answer: &Answer, status: u16, code: i64, reason: &str, source: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({ "errors": [{ "errorCode": code, "errorReason": reason, "errorSource": source }] }),
        "{answer:?}"
    );
}

/// A client's current account, left PENDING_APPROVAL; its id.
async fn pending_deposit(api: &Api, client_id: &str, deposit_id: &str) -> String {
    let client = api
        .post(
            "/clients",
            json!({ "id": client_id, "firstName": "Ada", "lastName": client_id }),
        )
        .await;
    assert_eq!(client.status, 201, "{client:?}");
    let deposit = api
        .post(
            "/deposits",
            json!({
                "id": deposit_id, "accountHolderKey": client.key(), "accountHolderType": "CLIENT",
                "name": "Current", "productTypeKey": CURRENT_ACCOUNT,
            }),
        )
        .await;
    assert_eq!(deposit.status, 201, "{deposit:?}");
    deposit_id.to_owned()
}

async fn approve(api: &Api, deposit: &str) {
    let approved = api
        .post(
            &format!("/deposits/{deposit}:changeState"),
            json!({ "action": "APPROVE" }),
        )
        .await;
    assert_eq!(approved.status, 200, "{approved:?}");
}

fn deposit_path(id: &str) -> String {
    format!("/deposits/{id}/deposit-transactions")
}

fn withdrawal_path(id: &str) -> String {
    format!("/deposits/{id}/withdrawal-transactions")
}

#[tokio::test]
async fn deposits_and_withdrawals_move_the_balance_under_mambus_rules() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let id = pending_deposit(&api, "CL-1", "DP-1").await;

    // Not yet approved: no transaction.
    let early = api.post(&deposit_path(&id), json!({ "amount": 10 })).await;
    refused(
        &early,
        400,
        407,
        "INVALID_DEPOSIT_ACCOUNT_STATE",
        "accountState",
    );
    approve(&api, &id).await;
    // Nothing to withdraw yet.
    let empty = api
        .post(&withdrawal_path(&id), json!({ "amount": 1 }))
        .await;
    refused(&empty, 400, 401, "BALANCE_BELOW_ZERO", "amount");

    // The opening deposit, backdated: the account becomes ACTIVE.
    let opening = api
        .post(
            &deposit_path(&id),
            body(
                r#"{"amount": 250.75, "valueDate": "2024-01-15T00:00:00+00:00",
                "externalId": "OPEN-DP-1", "notes": "Opening balance",
                "transactionDetails": {"transactionChannelId": "migration"}}"#,
            ),
        )
        .await;
    assert_eq!(opening.status, 201, "{opening:?}");
    let t = &opening.body;
    assert_eq!(t["type"], "DEPOSIT");
    assert_eq!(t["amount"].to_string(), "250.75");
    assert_eq!(t["externalId"], "OPEN-DP-1");
    assert_eq!(t["notes"], "Opening balance");
    assert_eq!(t["transactionDetails"]["transactionChannelId"], "migration");
    assert_eq!(t["valueDate"], "2024-01-15T00:00:00+00:00");
    assert_eq!(t["bookingDate"], "2024-01-15T00:00:00+00:00");
    assert_eq!(t["affectedAmounts"]["fundsAmount"].to_string(), "250.75");
    assert_eq!(t["accountBalances"]["totalBalance"].to_string(), "250.75");
    assert_eq!(t["currencyCode"], "EUR");
    assert!(t["encodedKey"].is_string() && t["id"].is_string() && t["creationDate"].is_string());
    let account = api.get(&format!("/deposits/{id}")).await.body;
    assert_eq!(account["accountState"], "ACTIVE");
    assert_eq!(account["balances"]["totalBalance"].to_string(), "250.75");
    assert_eq!(t["parentAccountKey"], account["encodedKey"]);

    let out = api
        .post(
            &withdrawal_path(&id),
            body(r#"{"amount": "50.25", "valueDate": "2024-02-01T00:00:00+00:00"}"#),
        )
        .await;
    assert_eq!(out.status, 201, "{out:?}");
    assert_eq!(out.body["type"], "WITHDRAWAL");
    assert_eq!(
        out.body["accountBalances"]["totalBalance"].to_string(),
        "200.5"
    );

    // Never beyond the balance.
    let beyond = api
        .post(
            &withdrawal_path(&id),
            body(r#"{"amount": 200.51, "valueDate": "2024-02-02T00:00:00+00:00"}"#),
        )
        .await;
    refused(&beyond, 400, 401, "BALANCE_BELOW_ZERO", "amount");
    // Not before a later transaction of the account (the loans' rule).
    let backdated = api
        .post(
            &deposit_path(&id),
            body(r#"{"amount": 5, "valueDate": "2024-01-31T00:00:00+00:00"}"#),
        )
        .await;
    refused(
        &backdated,
        400,
        326,
        "BACKDATE_BEFORE_OTHER_OPERATION",
        "valueDate",
    );
    // Not in the future.
    let future = api
        .post(
            &deposit_path(&id),
            body(r#"{"amount": 5, "valueDate": "2999-01-01T00:00:00+00:00"}"#),
        )
        .await;
    refused(&future, 400, 405, "BACKDATE_SET_IN_THE_FUTURE", "valueDate");
    // A positive amount, required; the tenant's offset on every date-time.
    for amount in ["0", "-3"] {
        let bad = api
            .post(
                &withdrawal_path(&id),
                body(&format!(r#"{{"amount": {amount}}}"#)),
            )
            .await;
        refused(&bad, 400, 406, "INVALID_DEPOSIT_AMOUNT", "amount");
    }
    let missing = api.post(&deposit_path(&id), json!({ "notes": "x" })).await;
    assert_eq!(
        (missing.status.as_u16(), missing.reason()),
        (400, "INVALID_PARAMETERS"),
        "{missing:?}"
    );
    let offset = api
        .post(
            &deposit_path(&id),
            json!({ "amount": 5, "valueDate": "2024-03-01T00:00:00+01:00" }),
        )
        .await;
    assert_eq!(offset.reason(), "INVALID_PARAMETERS", "{offset:?}");
    // An externalId is unique across the tenant's transactions.
    let again = api
        .post(
            &withdrawal_path(&id),
            json!({ "amount": 1, "externalId": "OPEN-DP-1" }),
        )
        .await;
    refused(
        &again,
        400,
        1702,
        "EXTERNAL_ID_ALREADY_EXISTS",
        "externalId",
    );
    let unknown = api
        .post(&deposit_path("DP-NONE"), json!({ "amount": 1 }))
        .await;
    refused(
        &unknown,
        404,
        400,
        "INVALID_DEPOSIT_ACCOUNT_ID",
        "depositAccountId",
    );

    // The history, oldest first, paged.
    let all = api.get(&format!("/deposits/{id}/transactions")).await;
    let types: Vec<&str> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["DEPOSIT", "WITHDRAWAL"]);
    let page = api
        .get(&format!(
            "/deposits/{id}/transactions?offset=1&limit=1&paginationDetails=ON"
        ))
        .await;
    assert_eq!(page.body.as_array().unwrap().len(), 1);
    assert_eq!(page.body[0]["type"], "WITHDRAWAL");
    assert_eq!(page.headers["items-total"], "2");
    let balance =
        api.get(&format!("/deposits/{id}")).await.body["balances"]["totalBalance"].to_string();
    assert_eq!(balance, "200.5");
}

#[tokio::test]
async fn a_key_replays_and_stats_count_duplicates_without_external_id() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let id = pending_deposit(&api, "CL-2", "DP-2").await;
    approve(&api, &id).await;
    let key = "6f1c1b7e-9a0b-4c4e-8f00-000000000001";
    let opening = json!({ "amount": 100, "valueDate": "2024-04-01T00:00:00+00:00" });
    let first = api
        .post_keyed(&deposit_path(&id), opening.clone(), key)
        .await;
    let replay = api.post_keyed(&deposit_path(&id), opening, key).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(replay.status, 201, "{replay:?}");
    assert_eq!(first.key(), replay.key());
    let other = api
        .post_keyed(&deposit_path(&id), json!({ "amount": 7 }), key)
        .await;
    assert_eq!(other.status, 400, "{other:?}");

    // Sent twice without externalId: a duplicate by (deposit, type, amount, value date).
    let dated = json!({ "amount": 20, "valueDate": "2024-05-01T00:00:00+00:00" });
    for _ in 0..2 {
        let w = api.post(&withdrawal_path(&id), dated.clone()).await;
        assert_eq!(w.status, 201, "{w:?}");
    }
    let stats = sandbox.stats().await;
    assert_eq!(stats["duplicates"]["transactions"], 1, "{stats}");
    assert_eq!(stats["transactions_by_type"]["DEPOSIT"], 1, "{stats}");
    assert_eq!(stats["transactions_by_type"]["WITHDRAWAL"], 2, "{stats}");
    assert_eq!(
        stats["transaction_amounts_by_type"]["WITHDRAWAL"].to_string(),
        "40"
    );
    assert_eq!(stats["deposit_transactions"], 3, "{stats}");
    assert_eq!(stats["deposit_balances_total"].to_string(), "60");
}

#[tokio::test]
async fn each_call_needs_its_permission_and_backdating_needs_backdate_savings() {
    // The strict tenant's migration user holds MAKE_DEPOSIT, MAKE_WITHDRAWAL and
    // BACKDATE_SAVINGS_TRANSACTIONS: its calls pass the permission check (and meet no deposit).
    let sandbox = Sandbox::strict(&[]);
    let api = sandbox.api();
    let backdated = json!({ "amount": 5, "valueDate": "2024-01-15T00:00:00+00:00" });
    for path in [deposit_path("DP-X"), withdrawal_path("DP-X")] {
        let answer = api.post(&path, backdated.clone()).await;
        assert_eq!(answer.reason(), "INVALID_DEPOSIT_ACCOUNT_ID", "{answer:?}");
    }
    // The auditor only reads.
    let auditor = api.clone().with_api_key("strict-auditor-api-key");
    let denied = auditor
        .post(&deposit_path("DP-X"), json!({ "amount": 5 }))
        .await;
    refused(&denied, 403, 15, "INVALID_PERMISSIONS", "MAKE_DEPOSIT");
    let denied = auditor
        .post(&withdrawal_path("DP-X"), json!({ "amount": 5 }))
        .await;
    refused(&denied, 403, 15, "INVALID_PERMISSIONS", "MAKE_WITHDRAWAL");
    drop(sandbox);

    // Without BACKDATE_SAVINGS_TRANSACTIONS: today's deposit passes, a backdated one is refused.
    let profile = strict_profile().replace("BACKDATE_SAVINGS_TRANSACTIONS, ", "");
    assert!(!profile.contains("BACKDATE_SAVINGS_TRANSACTIONS"));
    let sandbox = Sandbox::tenant(&profile, &[]);
    let api = sandbox.api();
    let denied = api.post(&deposit_path("DP-X"), backdated.clone()).await;
    refused(
        &denied,
        403,
        15,
        "INVALID_PERMISSIONS",
        "BACKDATE_SAVINGS_TRANSACTIONS",
    );
    let today = api
        .post(&deposit_path("DP-X"), json!({ "amount": 5 }))
        .await;
    assert_eq!(today.reason(), "INVALID_DEPOSIT_ACCOUNT_ID", "{today:?}");
}

fn number(v: &Value) -> Decimal {
    v.to_string().trim_matches('"').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_deposit_transaction_lands_once_under_faults_and_lost_replies() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, expected) = deposit_history_plan(dir.path());
    let plan = plan.to_str().unwrap();

    // The plan is valid, and its estimate counts one call per transaction row.
    let steps = common::validated_step_calls(plan);
    let calls = |id: &str| steps[id];
    let count = |kind: &str| expected.iter().filter(|(_, k, _)| *k == kind).count() as u64;
    assert_eq!(calls("money_in"), count("DEPOSIT"));
    assert_eq!(calls("money_out"), count("WITHDRAWAL"));
    assert!(count("WITHDRAWAL") > 5);

    let mut balances: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
    for (deposit, kind, amount) in &expected {
        let sign = if *kind == "DEPOSIT" {
            Decimal::ONE
        } else {
            -Decimal::ONE
        };
        *balances.entry(deposit.clone()).or_default() += sign * amount;
        *sums.entry(kind).or_default() += amount;
    }

    let mut adopted = 0;
    for seed in ["5", "23"] {
        let (sandbox, stats) =
            common::run_under_faults(plan, &dir.path().join(format!("run-{seed}")), seed).await;
        // Replays refused by their externalId, then adopted from the deposit's transactions.
        adopted += stats["refused_duplicates"]["external_id"].as_u64().unwrap();
        assert_eq!(
            stats["deposit_transactions"],
            expected.len(),
            "seed {seed}: {stats}"
        );
        for kind in ["DEPOSIT", "WITHDRAWAL"] {
            assert_eq!(stats["transactions_by_type"][kind], count(kind), "{stats}");
            assert_eq!(
                number(&stats["transaction_amounts_by_type"][kind]),
                sums[kind],
                "{kind}: {stats}"
            );
        }
        let api = sandbox.api();
        for (deposit, balance) in &balances {
            let account = api.get(&format!("/deposits/{deposit}")).await.body;
            assert_eq!(account["accountState"], "ACTIVE", "{account}");
            assert_eq!(
                number(&account["balances"]["totalBalance"]),
                *balance,
                "{deposit}"
            );
            let history = api
                .get(&format!("/deposits/{deposit}/transactions?limit=1000"))
                .await
                .body;
            let rows = expected.iter().filter(|(d, ..)| d == deposit).count();
            assert_eq!(history.as_array().unwrap().len(), rows, "{deposit}");
        }
    }
    assert!(adopted > 0, "no transaction was replayed and adopted");
}
