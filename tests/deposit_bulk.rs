//! Bulk deposits (issue 18): the sandbox's `POST /deposits/deposit-transactions:bulk` and
//! `GET /bulks/{key}` over HTTP (202 and Location, polled to COMPLETE, per-item errors,
//! Idempotency-Key replay, the maximum, permissions); then a plan giving a few hundred accounts
//! their opening balance through `deposit` with `bulk`, run by the real binary: every item
//! posted once in few calls, under faults and lost replies with idempotency ignored, and killed
//! at random moments then resumed; `plan validate` and `plan estimate` on such a plan.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Answer, Api, CURRENT_ACCOUNT, Sandbox, binary, run, stderr};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const BULK: &str = "/deposits/deposit-transactions:bulk";

/// An APPROVED current account of a new client; its id.
async fn approved_deposit(api: &Api, n: u32) -> String {
    let client = api
        .post(
            "/clients",
            json!({ "id": format!("CL-{n}"), "firstName": "Ada", "lastName": format!("L{n}") }),
        )
        .await;
    assert_eq!(client.status, 201, "{client:?}");
    let id = format!("DP-{n}");
    let deposit = api
        .post(
            "/deposits",
            json!({
                "id": id, "accountHolderKey": client.key(), "accountHolderType": "CLIENT",
                "name": "Current", "productTypeKey": CURRENT_ACCOUNT,
            }),
        )
        .await;
    assert_eq!(deposit.status, 201, "{deposit:?}");
    let approved = api
        .post(
            &format!("/deposits/{id}:changeState"),
            json!({ "action": "APPROVE" }),
        )
        .await;
    assert_eq!(approved.status, 200, "{approved:?}");
    id
}

/// The bulk process key of a 202: the last segment of its Location.
fn bulk_key(answer: &Answer) -> String {
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(
        answer.body,
        Value::String(String::new()),
        "no body: {answer:?}"
    );
    let location = answer.headers["location"].to_str().unwrap();
    assert!(location.starts_with("/api/bulks/"), "{location}");
    location.rsplit('/').next().unwrap().to_owned()
}

/// Polls the bulk until COMPLETE; the statuses seen on the way and the final answer.
async fn poll(api: &Api, key: &str) -> (Vec<String>, Value) {
    let mut seen = Vec::new();
    for _ in 0..200 {
        let answer = api.get(&format!("/bulks/{key}")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let status = answer.body["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "COMPLETE" {
            return (seen, answer.body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("bulk {key} never completed: {seen:?}");
}

#[tokio::test]
async fn a_bulk_is_accepted_then_polled_to_complete_with_each_items_outcome() {
    let sandbox = Sandbox::start(&["--bulk-delay-ms", "300"]);
    let api = sandbox.api();
    let a = approved_deposit(&api, 1).await;
    let b = approved_deposit(&api, 2).await;
    let body = json!({ "transactions": [
        { "accountId": a, "amount": 100.5, "externalId": "OPEN-1", "notes": "Opening balance" },
        { "accountId": b, "amount": "20", "externalId": "OPEN-2" },
        { "accountId": b, "amount": 5, "externalId": "OPEN-1" },
        { "accountId": a, "amount": 5, "valueDate": "2024-01-02T00:00:00+00:00" },
        { "accountId": a, "amount": 5, "bookingDate": "2024-01-02T00:00:00+00:00" },
        { "accountId": "DP-NONE", "amount": 5 },
        { "accountId": a, "amount": 0 },
    ]});
    let key = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    let accepted = api.post_keyed(BULK, body.clone(), key).await;
    let bulk = bulk_key(&accepted);
    // Nothing is posted before the bulk is processed.
    let (seen, status) = poll(&api, &bulk).await;
    assert_eq!(seen.first().map(String::as_str), Some("QUEUED"), "{seen:?}");
    assert!(seen.contains(&"IN_PROGRESS".to_owned()), "{seen:?}");
    let processed = status["processedItems"].as_array().unwrap();
    assert_eq!(processed.len(), 2, "{status}");
    assert_eq!(processed[0]["externalId"], "OPEN-1");
    assert_eq!(processed[0]["indexInRequest"], 0);
    assert!(processed[0]["id"].is_string());
    let errors: Vec<(u64, &str, &str)> = status["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["indexInRequest"].as_u64().unwrap(),
                e["errorReason"].as_str().unwrap(),
                e["errorSource"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (2, "EXTERNAL_ID_ALREADY_EXISTS", "externalId"),
            (
                3,
                "INVALID_PARAMETERS",
                "valueDate: a bulk deposit takes none (it posts at the current date)"
            ),
            (
                4,
                "INVALID_PARAMETERS",
                "bookingDate: a bulk deposit takes none (it posts at the current date)"
            ),
            (5, "INVALID_DEPOSIT_ACCOUNT_ID", "depositAccountId"),
            (6, "INVALID_DEPOSIT_AMOUNT", "amount"),
        ]
    );
    assert_eq!(status["errors"][0]["externalId"], "OPEN-1");
    assert_eq!(status["errors"][0]["errorCode"], 1702);
    let account = api.get(&format!("/deposits/{a}")).await.body;
    assert_eq!(account["accountState"], "ACTIVE");
    assert_eq!(account["balances"]["totalBalance"].to_string(), "100.5");

    // The same key and body: the same bulk, nothing queued again.
    let replay = api.post_keyed(BULK, body.clone(), key).await;
    assert_eq!(bulk_key(&replay), bulk);
    let stats = sandbox.stats().await;
    assert_eq!(stats["bulks"]["total"], 1, "{stats}");
    assert_eq!(stats["bulks"]["processed_items"], 2, "{stats}");
    assert_eq!(stats["requests"]["idempotent_replays"], 1, "{stats}");
    // Without a key: a new bulk, whose items already posted fail as duplicates.
    let again = api.post(BULK, body).await;
    let (_, second) = poll(&api, &bulk_key(&again)).await;
    assert_eq!(second["processedItems"], json!([]), "{second}");
    assert_eq!(
        second["errors"][0]["errorReason"],
        "EXTERNAL_ID_ALREADY_EXISTS"
    );
    assert_eq!(sandbox.stats().await["deposit_transactions"], 2);

    // Refused whole: not a list, empty, over the maximum; an unknown key.
    for body in [
        json!({}),
        json!({ "transactions": [] }),
        json!({ "transactions": vec![json!({ "accountId": a, "amount": 1 }); 1001] }),
    ] {
        let refused = api.post(BULK, body).await;
        assert_eq!(refused.status, 400, "{refused:?}");
        assert_eq!(refused.reason(), "INVALID_PARAMETERS");
    }
    let unknown = api.get("/bulks/8a5b0000").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
}

#[tokio::test]
async fn a_bulk_needs_make_deposit_and_its_status_view_savings() {
    let sandbox = Sandbox::strict(&[]);
    let auditor = sandbox.api().with_api_key("strict-auditor-api-key");
    let denied = auditor
        .post(
            BULK,
            json!({ "transactions": [{ "accountId": "DP-X", "amount": 5 }] }),
        )
        .await;
    assert_eq!(denied.status, 403, "{denied:?}");
    assert_eq!(
        denied.body,
        json!({ "errors": [{ "errorCode": 15, "errorReason": "INVALID_PERMISSIONS", "errorSource": "MAKE_DEPOSIT" }] })
    );
    // The migration user may: the bulk is accepted, its item refused on its own.
    let api = sandbox.api();
    let accepted = api
        .post(
            BULK,
            json!({ "transactions": [{ "accountId": "DP-X", "amount": 5 }] }),
        )
        .await;
    let key = bulk_key(&accepted);
    let (_, status) = poll(&api, &key).await;
    assert_eq!(
        status["errors"][0]["errorReason"],
        "INVALID_DEPOSIT_ACCOUNT_ID"
    );
    // The auditor may read deposits, so it may read the bulk.
    assert_eq!(auditor.get(&format!("/bulks/{key}")).await.status, 200);
}

/// `n` clients with one current account each, and a plan giving each its opening balance in
/// bulks of `size`. Returns the plan and each deposit's opening balance.
fn opening_balance_plan(
    dir: &std::path::Path,
    n: u32,
    size: usize,
) -> (std::path::PathBuf, BTreeMap<String, Decimal>) {
    let mut clients = String::from("client_id,first_name,last_name,deposit_id,opening\n");
    let mut expected = BTreeMap::new();
    for c in 1..=n {
        let amount = Decimal::new(i64::from(10_000 + 137 * c), 2);
        clients.push_str(&format!("CL-{c:04},Ana,Saver {c},DP-{c:04},{amount}\n"));
        expected.insert(format!("DP-{c:04}"), amount);
    }
    std::fs::write(dir.join("clients.csv"), clients).unwrap();
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            r#"version: 1
name: opening-balances
target: sandbox
timezone: "+00:00"
limits:
  requests_per_second: 2000
  concurrency: 6
  retry: {{ max_attempts: 12, initial_backoff_ms: 5, max_backoff_ms: 40 }}
lookups:
  deposit_products: {{ path: /depositproducts }}
sources:
  clients: {{ file: clients.csv, key: client_id }}
unit: clients
steps:
  - id: client
    action: create_client
    body:
      id: "{{{{ clients.client_id }}}}"
      firstName: "{{{{ clients.first_name }}}}"
      lastName: "{{{{ clients.last_name }}}}"
  - id: account
    action: create_deposit
    body:
      id: "{{{{ clients.deposit_id }}}}"
      accountHolderKey: "{{{{ steps.client.encodedKey }}}}"
      accountHolderType: CLIENT
      name: Current
      productTypeKey: "{{{{ lookups.deposit_products['CA-STD'] }}}}"
  - id: approve
    action: approve_deposit
  - id: opening
    action: deposit
    bulk: {{ size: {size} }}
    body:
      amount: "{{{{ clients.opening | decimal }}}}"
      externalId: "OPEN-{{{{ clients.deposit_id }}}}"
      notes: Opening balance
"#
        ),
    )
    .unwrap();
    (plan, expected)
}

/// Every account holds its opening balance, in exactly one transaction; nothing twice.
async fn assert_opened_once(sandbox: &Sandbox, expected: &BTreeMap<String, Decimal>) {
    let stats = sandbox.stats().await;
    assert_eq!(stats["deposit_transactions"], expected.len(), "{stats}");
    assert_eq!(stats["duplicates"]["total"], 0, "{stats}");
    let total: Decimal = expected.values().sum();
    let held: Decimal = stats["deposit_balances_total"].to_string().parse().unwrap();
    assert_eq!(held, total, "{stats}");
    let api = sandbox.api();
    for (deposit, amount) in expected.iter().step_by(17) {
        let account = api.get(&format!("/deposits/{deposit}")).await.body;
        assert_eq!(account["accountState"], "ACTIVE", "{account}");
        let balance: Decimal = account["balances"]["totalBalance"]
            .to_string()
            .parse()
            .unwrap();
        assert_eq!(balance, *amount, "{deposit}");
    }
}

/// `verify` reads every account back: no mismatch.
fn assert_verified(run_dir: &std::path::Path) {
    let verified = binary()
        .args(["verify"])
        .arg(run_dir)
        .arg("--no-progress")
        .output()
        .unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("verify.json")).unwrap())
            .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
}

/// The calls the run recorded to `endpoint` that were answered and used.
fn answered_calls(run_dir: &std::path::Path, endpoint: &str) -> i64 {
    let db = rusqlite::Connection::open(run_dir.join("checkpoint.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM calls WHERE endpoint = ?1 AND outcome = 'ok'",
        [endpoint],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn opening_balances_go_in_bulks_across_units_each_posted_once() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, expected) = opening_balance_plan(dir.path(), 240, 50);
    let plan = plan.to_str().unwrap();
    let sandbox = Sandbox::start(&["--bulk-delay-ms", "50"]);
    let run_dir = dir.path().join("run");
    let output = run(&sandbox, plan, &run_dir, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_opened_once(&sandbox, &expected).await;
    let stats = sandbox.stats().await;
    // 240 items in bulks of 50: 5 POSTs, not 240 calls.
    assert_eq!(stats["bulks"]["total"], 5, "{stats}");
    assert_eq!(stats["bulks"]["processed_items"], 240, "{stats}");
    assert_eq!(stats["transactions_by_type"]["DEPOSIT"], 240, "{stats}");
    assert_eq!(answered_calls(&run_dir, BULK), 5);
    assert!(answered_calls(&run_dir, "/bulks/{bulkProcessKey}") >= 5);
    assert_verified(&run_dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulks_under_faults_lost_replies_and_ignored_keys_post_each_item_once() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, expected) = opening_balance_plan(dir.path(), 200, 40);
    let plan = plan.to_str().unwrap();
    for seed in ["5", "23"] {
        let run_dir = dir.path().join(format!("run-{seed}"));
        let (sandbox, stats) = common::run_under_faults(plan, &run_dir, seed).await;
        assert!(stats["bulks"]["total"].as_u64().unwrap() >= 5, "{stats}");
        assert_opened_once(&sandbox, &expected).await;
        assert_verified(&run_dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_random_moments_and_resumed_every_bulk_item_lands_once() {
    let sandbox = Sandbox::start(&[
        "--lost-reply-rate",
        "0.02",
        "--seed",
        "7",
        "--idempotency",
        "ignore",
        "--bulk-delay-ms",
        "150",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (plan, expected) = opening_balance_plan(dir.path(), 300, 30);
    let plan = plan.to_str().unwrap();
    let run_dir = dir.path().join("run");
    common::kill_at_moments(
        &sandbox,
        plan,
        &run_dir,
        &["--rate", "400"],
        &[600, 900, 350, 1200, 700, 500],
    )
    .await;
    let output = run(&sandbox, plan, &run_dir, &["--resume"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_opened_once(&sandbox, &expected).await;
    assert_verified(&run_dir);
}

#[test]
fn validate_flags_bulk_items_without_external_id_or_with_dates() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, _) = opening_balance_plan(dir.path(), 3, 2);
    let text = std::fs::read_to_string(&plan).unwrap().replace(
        "      externalId: \"OPEN-{{ clients.deposit_id }}\"\n",
        "      valueDate: \"2024-01-01T00:00:00+00:00\"\n",
    );
    std::fs::write(&plan, text).unwrap();
    let output = binary()
        .args(["plan", "validate", plan.to_str().unwrap()])
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    assert_ne!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("plan.yaml:34:5:")
            && out.contains("bulk deposit `opening` has no `externalId`"),
        "{out}"
    );
    assert!(
        out.contains("plan.yaml:36:7:")
            && out.contains(
                "bulk deposit `opening` gives a `valueDate`: Mambu's bulk endpoint takes none"
            ),
        "{out}"
    );
}

#[test]
fn estimate_counts_bulk_calls_and_the_calls_they_save() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, _) = opening_balance_plan(dir.path(), 240, 50);
    let steps = common::validated_step_calls(plan.to_str().unwrap());
    // 5 POSTs and at least one poll each, not 240 single deposits.
    assert_eq!(steps["opening"], 10, "{steps:?}");
    assert_eq!(steps["client"], 240);
    let estimated = binary()
        .args(["plan", "estimate", plan.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&estimated.stdout);
    assert!(
        report.contains("bulk deposits: 240 items in 10 calls instead of 240 (230 saved): step `opening`, bulks of 50"),
        "{report}"
    );
}
