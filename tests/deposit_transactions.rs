//! Deposit balances and history (issue 18): `POST /deposits/{id}/deposit-transactions` and
//! `/withdrawal-transactions` over HTTP against the real binary's sandbox, each refusal checked
//! with its status and Mambu's v2 error body; then the plan's `deposit` and `withdrawal`
//! actions migrating deposit histories under faults, lost replies and expired idempotency keys:
//! every transaction lands once and every balance is the CSV's sum.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Answer, Api, CURRENT_ACCOUNT, Sandbox, binary, body, run, stderr, strict_profile};
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
    let profile = strict_profile().replace(
        "MAKE_WITHDRAWAL,\n        BACKDATE_SAVINGS_TRANSACTIONS]",
        "MAKE_WITHDRAWAL]",
    );
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

const PLAN: &str = r#"version: 1
name: deposit-history
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
          name: "{{ deposits.name }}"
          productTypeKey: "{{ lookups.deposit_products[deposits.product_id] }}"
      - id: approve_deposit
        action: approve_deposit
      - for_each: deposit_transactions
        steps:
          - id: money_in
            action: deposit                  # the deposit defaults to the last create_deposit's
            when: "deposit_transactions.kind == 'DEPOSIT'"
            body:
              amount: "{{ deposit_transactions.amount | decimal }}"
              valueDate: "{{ deposit_transactions.value_date | datetime }}"
              externalId: "{{ deposit_transactions.external_id | default(none) }}"
              notes: "{{ deposit_transactions.notes | default(none) }}"
          - id: money_out
            action: withdrawal
            when: "deposit_transactions.kind == 'WITHDRAWAL'"
            deposit: "{{ steps.deposit.encodedKey }}"
            body:
              amount: "{{ deposit_transactions.amount | decimal }}"
              valueDate: "{{ deposit_transactions.value_date | datetime }}"
              externalId: "{{ deposit_transactions.external_id | default(none) }}"
"#;

/// One expected transaction: (deposit id, kind, amount).
type Row = (String, &'static str, Decimal);

/// 30 clients, one or two deposits each; each deposit an opening deposit at its opening date
/// and a history of deposits and withdrawals, never below zero, half of them with an
/// externalId (the others get the run's). Returns the plan's path and the transactions.
fn write_plan(dir: &Path) -> (PathBuf, Vec<Row>) {
    let mut clients = String::from("client_id,first_name,last_name\n");
    let mut deposits = String::from("deposit_id,client_id,product_id,name\n");
    let mut txns = String::from("txn_id,deposit_id,seq,kind,amount,value_date,external_id,notes\n");
    let mut expected = Vec::new();
    let mut n = 0u32;
    for c in 1..=30u32 {
        clients.push_str(&format!("CL-{c:02},Ana,Saver {c}\n"));
        for d in 0..(1 + c % 2) {
            let deposit = format!("DP-{c:02}-{d}");
            let product = if d == 0 { "CA-STD" } else { "SAV-STD" };
            deposits.push_str(&format!("{deposit},CL-{c:02},{product},Account {d}\n"));
            let mut balance = Decimal::ZERO;
            for i in 0..(3 + (c + d) % 4) {
                n += 1;
                let opening = i == 0;
                let kind = if opening || i % 3 != 2 {
                    "DEPOSIT"
                } else {
                    "WITHDRAWAL"
                };
                let amount = if kind == "DEPOSIT" {
                    Decimal::new(i64::from(10_000 + 137 * n), 2)
                } else {
                    (balance / Decimal::from(3)).round_dp(2)
                };
                balance += if kind == "DEPOSIT" { amount } else { -amount };
                let ext = if n.is_multiple_of(2) {
                    format!("EXT-{n}")
                } else {
                    String::new()
                };
                let notes = if opening { "Opening balance" } else { "" };
                // Written out of order: `order_by: [seq]` puts them back.
                txns.insert_str(
                    txns.find('\n').unwrap() + 1,
                    &format!(
                        "T-{n},{deposit},{i:03},{kind},{amount},2024-{:02}-{:02},{ext},{notes}\n",
                        1 + c % 6,
                        1 + i * 3
                    ),
                );
                expected.push((deposit.clone(), kind, amount));
            }
        }
    }
    std::fs::write(dir.join("clients.csv"), clients).unwrap();
    std::fs::write(dir.join("deposits.csv"), deposits).unwrap();
    std::fs::write(dir.join("deposit_transactions.csv"), txns).unwrap();
    let plan = dir.join("plan.yaml");
    std::fs::write(&plan, PLAN).unwrap();
    (plan, expected)
}

fn number(v: &Value) -> Decimal {
    v.to_string().trim_matches('"').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_deposit_transaction_lands_once_under_faults_and_lost_replies() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, expected) = write_plan(dir.path());
    let plan = plan.to_str().unwrap();

    // The plan is valid, and its estimate counts one call per transaction row.
    let checked = binary().args(["plan", "validate", plan]).output().unwrap();
    assert_eq!(checked.status.code(), Some(0), "{}", stderr(&checked));
    let estimated = binary()
        .args(["plan", "estimate", plan, "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(estimated.status.code(), Some(0), "{}", stderr(&estimated));
    let estimate: Value = serde_json::from_slice(&estimated.stdout).unwrap();
    let calls = |id: &str| {
        estimate["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no step {id}: {estimate}"))["calls"]
            .as_u64()
            .unwrap()
    };
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
        let sandbox = Sandbox::start(&[
            "--fault-rate",
            "0.05",
            "--lost-reply-rate",
            "0.02",
            "--seed",
            seed,
            "--idempotency",
            "ignore",
        ]);
        let output = run(&sandbox, plan, &dir.path().join(format!("run-{seed}")), &[]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "seed {seed}: {}",
            stderr(&output)
        );
        sandbox.set_faults("{}").await;
        let stats = sandbox.stats().await;
        assert!(
            stats["requests"]["lost_replies"].as_u64().unwrap() > 0
                && stats["requests"]["injected_faults"].as_u64().unwrap() > 0,
            "faults were injected: {stats}"
        );
        assert_eq!(stats["duplicates"]["total"], 0, "seed {seed}: {stats}");
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
