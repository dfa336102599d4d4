//! Tranched loans (issue 18): `tranches[]` on loan creation and one disbursement per tranche,
//! in the sandbox over HTTP with Mambu's error bodies, and through a plan run under faults and
//! lost replies.

mod common;

use std::collections::BTreeMap;

use common::{Api, PERSONAL_LOAN, Sandbox, binary, body, stderr};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// SME-TRANCHE, the TRANCHED_LOAN product of both tenant profiles (at most 5 tranches,
/// 10,000 to 500,000).
const TRANCHED: &str = "8a19c0de00000000000000000000a004";

fn number(v: &Value) -> Decimal {
    v.to_string().trim_matches('"').parse().unwrap()
}

/// A tranche as POST /loans takes it.
fn tranche(amount: &str, on: &str) -> String {
    format!(r#"{{"amount":{amount},"disbursementDetails":{{"expectedDisbursementDate":"{on}"}}}}"#)
}

async fn create(
    api: &Api,
    holder: &str,
    product: &str,
    amount: &str,
    tranches: &[String],
) -> common::Answer {
    let tranches = if tranches.is_empty() {
        String::new()
    } else {
        format!(r#","tranches":[{}]"#, tranches.join(","))
    };
    api.post(
        "/loans",
        body(&format!(
            r#"{{"accountHolderKey":"{holder}","accountHolderType":"CLIENT","productTypeKey":"{product}","loanAmount":{amount},"interestSettings":{{"interestRate":6}},"scheduleSettings":{{"gracePeriod":0,"repaymentInstallments":12}}{tranches}}}"#
        )),
    )
    .await
}

fn refused(answer: &common::Answer, status: u16, code: i64, reason: &str, source: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.code(), code, "{answer:?}");
    assert_eq!(answer.reason(), reason, "{answer:?}");
    assert_eq!(
        answer.body["errors"][0]["errorSource"], source,
        "{answer:?}"
    );
}

/// The principal the loan's schedule expects, over all installments.
async fn scheduled_principal(api: &Api, loan: &str) -> Decimal {
    api.get(&format!("/loans/{loan}/schedule")).await.body["installments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| number(&i["principal"]["amount"]["expected"]))
        .sum()
}

/// A new client, Ada Builder, of id `id`: its encodedKey.
async fn builder(api: &Api, id: &str) -> String {
    api.post(
        "/clients",
        json!({ "id": id, "firstName": "Ada", "lastName": "Builder" }),
    )
    .await
    .key()
}

/// Approves `loan`; panics unless Mambu does.
async fn approve(api: &Api, loan: &str) {
    let approved = api
        .post(
            &format!("/loans/{loan}:changeState"),
            json!({ "action": "APPROVE" }),
        )
        .await;
    assert_eq!(approved.status, 200, "{approved:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tranches_are_checked_on_creation_and_disbursed_one_at_a_time() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let holder = builder(&api, "CL-1").await;
    let (jan, mar, may) = (
        "2024-01-15T00:00:00+00:00",
        "2024-03-15T00:00:00+00:00",
        "2024-05-15T00:00:00+00:00",
    );

    // Creation rules, Mambu's reasons (codes inferred, see src/sandbox/error.rs).
    let none = create(&api, &holder, TRANCHED, "100000", &[]).await;
    refused(&none, 400, 473, "TRANCHES_NOT_DEFINED", "tranches");
    let untranched = create(
        &api,
        &holder,
        PERSONAL_LOAN,
        "1000",
        &[tranche("1000", jan)],
    )
    .await;
    refused(&untranched, 400, 472, "TRANCHES_NOT_ALLOWED", "tranches");
    let six: Vec<String> = (0..6).map(|_| tranche("20000", jan)).collect();
    let many = create(&api, &holder, TRANCHED, "120000", &six).await;
    refused(&many, 400, 474, "MORE_TRANCHES_THAN_ALLOWED", "tranches");
    let zero = create(
        &api,
        &holder,
        TRANCHED,
        "100000",
        &[tranche("100000", jan), tranche("0", mar)],
    )
    .await;
    refused(
        &zero,
        400,
        477,
        "TRANCHE_AMOUNT_SHOULD_BE_STRICT_POSITIVE",
        "tranches[1].amount",
    );
    let unordered = create(
        &api,
        &holder,
        TRANCHED,
        "100000",
        &[tranche("50000", mar), tranche("50000", jan)],
    )
    .await;
    refused(
        &unordered,
        400,
        471,
        "TRANCHES_EXPECTED_DISBURSMENT_DATES_NOT_ORDERED",
        "tranches[1].disbursementDetails.expectedDisbursementDate",
    );
    for total in ["100001", "99999"] {
        let off = create(
            &api,
            &holder,
            TRANCHED,
            total,
            &[tranche("50000", jan), tranche("50000", mar)],
        )
        .await;
        refused(
            &off,
            400,
            475,
            "TOTAL_TRANCHES_AMOUNT_MORE_THAN_LOAN_AMOUNT",
            "tranches",
        );
    }
    let offset = create(
        &api,
        &holder,
        TRANCHED,
        "100000",
        &[tranche("100000", "2024-01-15T00:00:00+02:00")],
    )
    .await;
    assert_eq!(offset.status, 400, "{offset:?}");
    assert_eq!(
        offset.body["errors"][0]["errorSource"],
        "tranches[0].disbursementDetails.expectedDisbursementDate",
        "{offset:?}"
    );
    let undated = create(
        &api,
        &holder,
        TRANCHED,
        "100000",
        &[r#"{"amount":100000}"#.to_owned()],
    )
    .await;
    assert_eq!(undated.status, 400, "{undated:?}");
    assert_eq!(undated.reason(), "INVALID_PARAMETERS", "{undated:?}");

    // 30,000 + 20,000 + 50,000.
    let created = create(
        &api,
        &holder,
        TRANCHED,
        "100000",
        &[
            tranche("30000", jan),
            tranche("20000", mar),
            tranche("50000", may),
        ],
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let loan = created.body["id"].as_str().unwrap().to_owned();
    let tranches = created.body["tranches"].as_array().unwrap().clone();
    assert_eq!(tranches.len(), 3);
    assert_eq!(tranches[1]["trancheNumber"], 2);
    assert_eq!(number(&tranches[1]["amount"]), Decimal::from(20_000));
    assert_eq!(
        tranches[2]["disbursementDetails"]["expectedDisbursementDate"],
        may
    );
    assert!(
        tranches[0]["disbursementDetails"]
            .get("disbursementTransactionKey")
            .is_none()
    );
    let disburse = |on: &str, extra: Value| {
        let mut b = json!({ "valueDate": on });
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let path = format!("/loans/{loan}/disbursement-transactions");
        let api = &api;
        async move { api.post(&path, b).await }
    };
    // Not approved yet.
    let early = disburse(jan, json!({})).await;
    assert_eq!(early.reason(), "INVALID_ACCOUNT_STATE", "{early:?}");
    approve(&api, &loan).await;

    // Before the tranche's expected date; another amount than the tranche's.
    let before = disburse("2024-01-14T00:00:00+00:00", json!({})).await;
    assert_eq!(before.reason(), "INVALID_DISBURSEMENT_DATE", "{before:?}");
    let whole = disburse(jan, json!({ "amount": 100000 })).await;
    assert_eq!(whole.reason(), "INVALID_AMOUNT", "{whole:?}");

    let mut keys = Vec::new();
    let mut so_far = Decimal::ZERO;
    for (on, amount, given) in [
        ("2024-01-20T00:00:00+00:00", 30_000, json!({})),
        (mar, 20_000, json!({ "amount": 20000 })),
        (
            "2024-05-31T00:00:00+00:00",
            50_000,
            json!({ "externalId": "T-3" }),
        ),
    ] {
        if amount == 20_000 {
            let early = disburse("2024-03-14T00:00:00+00:00", json!({})).await;
            assert_eq!(early.reason(), "INVALID_DISBURSEMENT_DATE", "{early:?}");
        }
        let posted = disburse(on, given).await;
        assert_eq!(posted.status, 201, "{posted:?}");
        assert_eq!(posted.body["type"], "DISBURSEMENT");
        assert_eq!(number(&posted.body["amount"]), Decimal::from(amount));
        keys.push(posted.key());
        so_far += Decimal::from(amount);
        let read = api.get(&format!("/loans/{loan}")).await.body;
        assert!(
            read["accountState"].as_str().unwrap().starts_with("ACTIVE"),
            "{read}"
        );
        assert_eq!(
            number(&read["balances"]["principalBalance"]),
            so_far,
            "{read}"
        );
        assert_eq!(scheduled_principal(&api, &loan).await, so_far);
        let done: Vec<Option<&str>> = read["tranches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["disbursementDetails"]["disbursementTransactionKey"].as_str())
            .collect();
        let want: Vec<Option<&str>> = (0..3).map(|i| keys.get(i).map(String::as_str)).collect();
        assert_eq!(done, want, "{read}");
    }
    let beyond = disburse("2024-06-01T00:00:00+00:00", json!({})).await;
    refused(
        &beyond,
        400,
        482,
        "ALL_TRANCHES_ALREADY_DISBURSED",
        "tranches",
    );
    let replayed = disburse("2024-06-01T00:00:00+00:00", json!({ "externalId": "T-3" })).await;
    assert_eq!(
        replayed.reason(),
        "EXTERNAL_ID_ALREADY_EXISTS",
        "{replayed:?}"
    );

    let stats = sandbox.stats().await;
    assert_eq!(
        stats["transactions_by_type"],
        json!({ "DISBURSEMENT": 3 }),
        "{stats}"
    );
}

const PLAN: &str = r#"version: 1
name: tranches
target: sandbox
timezone: "+00:00"
limits:
  requests_per_second: 2000
  concurrency: 6
  retry: { max_attempts: 12, initial_backoff_ms: 5, max_backoff_ms: 40 }
sources:
  clients: { file: clients.csv, key: client_id }
  loans: { file: loans.csv, key: loan_id, parent: clients.client_id }
  tranches: { file: tranches.csv, key: tranche_id, parent: loans.loan_id, order_by: [seq] }
unit: clients
steps:
  - id: client
    action: create_client
    body:
      id: "{{ clients.client_id }}"
      firstName: "{{ clients.first_name }}"
      lastName: "{{ clients.last_name }}"
  - for_each: loans
    steps:
      - id: loan
        action: create_loan
        body:
          id: "{{ loans.loan_id }}"
          accountHolderKey: "{{ steps.client.encodedKey }}"
          accountHolderType: CLIENT
          productTypeKey: 8a19c0de00000000000000000000a004
          loanAmount: "{{ loans.amount | decimal }}"
          interestSettings: { interestRate: 6 }
          scheduleSettings: { gracePeriod: 0, repaymentInstallments: 12 }
          tranches:
            for_each: tranches
            item:
              amount: "{{ tranches.amount | decimal }}"
              disbursementDetails:
                expectedDisbursementDate: "{{ tranches.expected_on | datetime }}"
      - id: approve
        action: approve_loan
      - for_each: tranches
        steps:
          - id: disburse
            action: disburse_loan
            body:
              valueDate: "{{ tranches.disbursed_on | datetime }}"
              externalId: "{{ tranches.tranche_id }}"
"#;

/// 40 clients with one or two SME-TRANCHE loans of one to four tranches each. Each loan's
/// tranche amounts, in order.
fn write_plan(dir: &std::path::Path) -> BTreeMap<String, Vec<Decimal>> {
    let mut clients = String::from("client_id,first_name,last_name\n");
    let mut loans = String::from("loan_id,client_id,amount\n");
    let mut tranches = String::from("tranche_id,loan_id,seq,amount,expected_on,disbursed_on\n");
    let mut expected = BTreeMap::new();
    let mut n = 0usize;
    for c in 1..=40 {
        clients.push_str(&format!("CL-{c:02},Ana,Builder {c}\n"));
        for l in 0..(1 + c % 2) {
            n += 1;
            let loan = format!("LN-{c:02}-{l}");
            let count = 1 + n % 4;
            let amounts: Vec<Decimal> = (0..count)
                .map(|t| Decimal::new(1_000_000 + 123_456 * (t as i64 + n as i64 % 3), 2))
                .collect();
            let total: Decimal = amounts.iter().sum();
            loans.push_str(&format!("{loan},CL-{c:02},{total}\n"));
            for (t, amount) in amounts.iter().enumerate() {
                let month = 1 + 2 * t;
                tranches.push_str(&format!(
                    "T-{loan}-{t},{loan},{t},{amount},2024-{month:02}-10,2024-{month:02}-{:02}\n",
                    10 + t
                ));
            }
            expected.insert(loan, amounts);
        }
    }
    std::fs::write(dir.join("clients.csv"), clients).unwrap();
    std::fs::write(dir.join("loans.csv"), loans).unwrap();
    std::fs::write(dir.join("tranches.csv"), tranches).unwrap();
    std::fs::write(dir.join("plan.yaml"), PLAN).unwrap();
    expected
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tranche_is_disbursed_once_under_faults_and_lost_replies() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_plan(dir.path());
    let plan = dir.path().join("plan.yaml");
    let plan = plan.to_str().unwrap();
    let tranche_rows: usize = expected.values().map(Vec::len).sum();

    let checked = binary().args(["plan", "validate", plan]).output().unwrap();
    assert_eq!(checked.status.code(), Some(0), "{}", stderr(&checked));

    for seed in ["5", "23"] {
        let run_dir = dir.path().join(format!("run-{seed}"));
        let (sandbox, stats) = common::run_under_faults(plan, &run_dir, seed).await;
        assert_eq!(stats["loans"], expected.len() as u64, "{stats}");
        assert_eq!(
            stats["transactions_by_type"]["DISBURSEMENT"], tranche_rows as u64,
            "seed {seed}: {stats}"
        );
        // Verify reads every loan back: each tranche's amount as the plan sent it.
        let report = common::verified(&run_dir);
        let tranches = report["totals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "loan tranches")
            .unwrap_or_else(|| panic!("no tranche total: {report}"));
        assert_eq!(tranches["expected"], tranche_rows.to_string(), "{report}");
        assert_eq!(tranches["found"], tranche_rows.to_string(), "{report}");
        let api = sandbox.api();
        for (loan, amounts) in &expected {
            let read = api.get(&format!("/loans/{loan}")).await.body;
            let tranches = read["tranches"].as_array().unwrap();
            let got: Vec<Decimal> = tranches.iter().map(|t| number(&t["amount"])).collect();
            assert_eq!(&got, amounts, "seed {seed} {loan}: {read}");
            assert!(
                tranches
                    .iter()
                    .all(|t| t["disbursementDetails"]["disbursementTransactionKey"].is_string()),
                "seed {seed} {loan}: {read}"
            );
            let total: Decimal = amounts.iter().sum();
            assert_eq!(
                number(&read["balances"]["principalBalance"]),
                total,
                "seed {seed} {loan}"
            );
            let disbursed: Vec<Decimal> = api
                .get(&format!("/loans/{loan}/transactions"))
                .await
                .body
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["type"] == "DISBURSEMENT")
                .map(|t| number(&t["amount"]))
                .collect();
            assert_eq!(&disbursed, amounts, "seed {seed} {loan}");
        }
    }
}

/// Issue 19: adjusting a tranche's disbursement (a rollback) leaves the tranche undisbursed,
/// what it added to the schedule taken off, so that it is disbursed again; the first
/// tranche's adjusted too takes the loan back to APPROVED.
#[tokio::test(flavor = "multi_thread")]
async fn an_adjusted_tranche_disbursement_leaves_the_tranche_to_disburse_again() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let holder = builder(&api, "CL-9").await;
    let (jan, mar) = ("2024-01-15T00:00:00+00:00", "2024-03-15T00:00:00+00:00");
    let created = create(
        &api,
        &holder,
        TRANCHED,
        "50000",
        &[tranche("30000", jan), tranche("20000", mar)],
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let loan = created.body["id"].as_str().unwrap().to_owned();
    approve(&api, &loan).await;
    let disburse = |on: &'static str| {
        let path = format!("/loans/{loan}/disbursement-transactions");
        let api = &api;
        async move { api.post(&path, json!({ "valueDate": on })).await }
    };
    let disbursed_tranches = |body: &Value| -> Vec<bool> {
        body["tranches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                t["disbursementDetails"]
                    .get("disbursementTransactionKey")
                    .is_some()
            })
            .collect()
    };
    let first = disburse(jan).await;
    assert_eq!(first.status, 201, "{first:?}");
    let schedule_after_first = scheduled_principal(&api, &loan).await;
    let second = disburse(mar).await;
    assert_eq!(second.status, 201, "{second:?}");
    assert_eq!(
        scheduled_principal(&api, &loan).await,
        Decimal::from(50_000)
    );

    let adjust = |key: String| {
        let api = &api;
        async move {
            api.post(
                &format!("/loans/transactions/{key}:adjust"),
                json!({ "notes": "rollback" }),
            )
            .await
        }
    };
    let adjusted = adjust(second.key()).await;
    assert_eq!(adjusted.status, 200, "{adjusted:?}");
    let read = api.get(&format!("/loans/{loan}")).await.body;
    assert_eq!(disbursed_tranches(&read), [true, false], "{read}");
    assert!(read["accountState"].as_str().unwrap().starts_with("ACTIVE"));
    assert_eq!(scheduled_principal(&api, &loan).await, schedule_after_first);
    assert_eq!(
        number(&read["balances"]["principalBalance"]),
        Decimal::from(30_000)
    );

    // Disbursed again, as a re-migration would; then both adjusted, newest first.
    let again = disburse(mar).await;
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(number(&again.body["amount"]), Decimal::from(20_000));
    assert_eq!(
        scheduled_principal(&api, &loan).await,
        Decimal::from(50_000)
    );
    assert_eq!(adjust(again.key()).await.status, 200);
    assert_eq!(adjust(first.key()).await.status, 200);
    let read = api.get(&format!("/loans/{loan}")).await.body;
    assert_eq!(read["accountState"], "APPROVED", "{read}");
    assert_eq!(disbursed_tranches(&read), [false, false], "{read}");
    let first_again = disburse(jan).await;
    assert_eq!(first_again.status, 201, "{first_again:?}");
    assert_eq!(number(&first_again.body["amount"]), Decimal::from(30_000));
}
