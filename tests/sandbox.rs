//! The sandbox binary over real HTTP: every endpoint's success path, Mambu's refusals, the
//! Idempotency-Key, each fault flag, and the stats that prove what was (not) done twice.

mod common;

use common::{
    API_KEY, Api, CURRENT_ACCOUNT, MICRO_LOAN, PERSONAL_LOAN, Sandbox, active_loan, body,
};
use serde_json::{Value, json};

#[tokio::test]
async fn the_whole_migration_flow_succeeds_step_by_step() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();

    let client = api.post("/clients", json!({ "id": "CL-1", "firstName": "Zoë", "lastName": "O'Brien", "birthDate": "1980-02-29" })).await;
    assert_eq!(client.status, 201);
    assert_eq!(client.body["id"], "CL-1");
    assert_eq!(client.body["state"], "INACTIVE");
    let holder = client.key();
    assert_eq!(holder.len(), 32);
    assert_eq!(
        api.get("/clients/CL-1").await.body["encodedKey"],
        holder.as_str()
    );
    assert_eq!(
        api.get(&format!("/clients/{holder}")).await.body["id"],
        "CL-1"
    );

    let deposit = api.post("/deposits", json!({ "id": "DP-1", "accountHolderKey": holder, "accountHolderType": "CLIENT", "name": "Current", "productTypeKey": CURRENT_ACCOUNT })).await;
    assert_eq!(deposit.status, 201, "{deposit:?}");
    assert_eq!(deposit.body["accountState"], "PENDING_APPROVAL");
    let approved = api
        .post("/deposits/DP-1:changeState", json!({ "action": "APPROVE" }))
        .await;
    assert_eq!(approved.status, 200);
    assert_eq!(approved.body["accountState"], "APPROVED");
    assert_eq!(
        api.get(&format!("/deposits/{}", deposit.key())).await.body["id"],
        "DP-1"
    );

    let loan = api
        .post(
            "/loans",
            body(&format!(
                r#"{{"id":"LN-1","accountHolderKey":"{holder}","accountHolderType":"CLIENT","productTypeKey":"{PERSONAL_LOAN}","loanAmount":1200.50,
                "interestSettings":{{"interestRate":12.5}},"scheduleSettings":{{"gracePeriod":0,"repaymentInstallments":3}},
                "disbursementDetails":{{"expectedDisbursementDate":"2024-01-15T00:00:00+00:00","firstRepaymentDate":"2024-02-15T00:00:00+00:00"}}}}"#
            )),
        )
        .await;
    assert_eq!(loan.status, 201, "{loan:?}");
    assert_eq!(loan.body["accountState"], "PENDING_APPROVAL");
    assert_eq!(loan.body["loanAmount"].to_string(), "1200.5");
    let approved = api
        .post(
            "/loans/LN-1:changeState",
            json!({ "action": "APPROVE", "notes": "migration" }),
        )
        .await;
    assert_eq!(approved.body["accountState"], "APPROVED");

    let linked = api.link("LN-1", "DP-1").await;
    assert_eq!(linked.status, 200, "{linked:?}");
    assert_eq!(
        linked.body,
        json!({ "returnCode": 0, "returnStatus": "SUCCESS" })
    );
    assert_eq!(
        api.get("/loans/LN-1").await.body["settlementAccountKey"],
        deposit.key().as_str()
    );

    let schedule = api.get("/loans/LN-1/schedule").await;
    let installments = schedule.body["installments"].as_array().unwrap().clone();
    assert_eq!(installments.len(), 3);
    assert_eq!(installments[0]["dueDate"], "2024-02-15T00:00:00+00:00");
    let edited: Vec<Value> = installments
        .iter()
        .zip(["400.00", "400.00", "400.50"])
        .map(|(i, principal)| body(&format!(r#"{{"encodedKey":"{}","dueDate":"{}","principal":{{"amount":{{"due":{principal}}}}},"interest":{{"amount":{{"due":8.00}}}}}}"#, i["encodedKey"].as_str().unwrap(), i["dueDate"].as_str().unwrap())))
        .collect();
    let put = api
        .put("/loans/LN-1/schedule", Value::Array(edited.clone()))
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(
        put.body["installments"][2]["principal"]["amount"]["due"].to_string(),
        "400.5"
    );
    assert_eq!(
        api.put("/loans/LN-1/schedule", Value::Array(edited))
            .await
            .status,
        200,
        "the same PUT again is idempotent"
    );
    assert_eq!(
        api.get("/loans/LN-1").await.body["scheduleSettings"]["hasCustomSchedule"],
        true
    );

    let disbursed = api.post("/loans/LN-1/disbursement-transactions", json!({ "valueDate": "2024-01-15T00:00:00+00:00", "externalId": "DISB-1", "transferDetails": { "linkedAccountId": "DP-1" } })).await;
    assert_eq!(disbursed.status, 201, "{disbursed:?}");
    assert_eq!(disbursed.body["type"], "DISBURSEMENT");
    // Disbursed in 2024, its installments are past due and unpaid: Mambu reads it in arrears.
    assert_eq!(
        api.get("/loans/LN-1").await.body["accountState"],
        "ACTIVE_IN_ARREARS"
    );
    assert_eq!(api.get("/clients/CL-1").await.body["state"], "ACTIVE");
    assert_eq!(
        api.get("/deposits/DP-1").await.body["balances"]["totalBalance"].to_string(),
        "1200.5"
    );

    let fee = api.post("/loans/LN-1/fee-transactions", json!({ "amount": 25, "installmentNumber": 3, "externalId": "FEE-1", "valueDate": "2024-01-20T00:00:00+00:00" })).await;
    assert_eq!(fee.status, 201, "{fee:?}");
    assert_eq!(fee.body["type"], "FEE_APPLIED");
    let repaid = api
        .post(
            "/loans/LN-1/repayment-transactions",
            body(
                r#"{"amount":410.00,"externalId":"PAY-1","valueDate":"2024-02-15T00:00:00+00:00"}"#,
            ),
        )
        .await;
    assert_eq!(repaid.status, 201, "{repaid:?}");
    assert_eq!(
        repaid.body["affectedAmounts"]["principalAmount"].to_string(),
        "400"
    );
    assert_eq!(
        repaid.body["accountBalances"]["totalBalance"].to_string(),
        "839.5"
    );

    let listed = api.get("/loans/LN-1/transactions").await;
    let types: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["DISBURSEMENT", "FEE_APPLIED", "REPAYMENT"]);
    assert_eq!(
        api.get("/loanproducts")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        4 // PL-STD, SME-TERM, MICRO, SME-TRANCHE
    );
    assert_eq!(
        api.get("/depositproducts/CA-STD").await.body["encodedKey"],
        CURRENT_ACCOUNT
    );
    assert_eq!(api.get("/branches").await.body[0]["id"], "BR-LIS");

    let stats = sandbox.stats().await;
    assert_eq!(stats["clients"], 1);
    assert_eq!(stats["loans_by_state"]["ACTIVE"], 1);
    assert_eq!(
        stats["transactions_by_type"],
        json!({ "DISBURSEMENT": 1, "FEE_APPLIED": 1, "REPAYMENT": 1 })
    );
    assert_eq!(stats["settlement_links"], 1);
    assert_eq!(stats["custom_schedules"], 1);
    assert_eq!(stats["duplicates"]["total"], 0);
}

#[tokio::test]
async fn refusals_carry_mambus_codes_and_reasons() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();

    let missing = api.post("/clients", json!({ "firstName": "Ada" })).await;
    assert_eq!(
        (missing.status.as_u16(), missing.code(), missing.reason()),
        (400, 4, "INVALID_PARAMETERS")
    );
    assert!(
        missing.body["errors"][0]["errorSource"]
            .as_str()
            .unwrap()
            .contains("lastName")
    );

    let unauthorised = api
        .clone()
        .with_api_key("wrong")
        .post("/clients", json!({ "firstName": "A", "lastName": "B" }))
        .await;
    assert_eq!(
        (
            unauthorised.status.as_u16(),
            unauthorised.code(),
            unauthorised.reason()
        ),
        (401, 2, "INVALID_CREDENTIALS")
    );
    let no_credentials = Api {
        api_key: None,
        ..api.clone()
    }
    .get("/clients/x")
    .await;
    assert_eq!(no_credentials.status, 401);
    let basic = api
        .clone()
        .with_basic("sandbox", "sandbox")
        .post("/clients", json!({ "firstName": "A", "lastName": "B" }))
        .await;
    assert_eq!(basic.status, 201, "basic auth is accepted too");

    let no_accept = api
        .clone()
        .without_accept()
        .post("/clients", json!({ "firstName": "A", "lastName": "B" }))
        .await;
    assert_eq!(no_accept.status, 400);
    assert_eq!(no_accept.reason(), "INVALID_API_OPERATION", "{no_accept:?}");

    assert_eq!(
        api.post(
            "/clients",
            json!({ "id": "C1", "firstName": "A", "lastName": "B" })
        )
        .await
        .status,
        201
    );
    let taken = api
        .post(
            "/clients",
            json!({ "id": "C1", "firstName": "Other", "lastName": "Person" }),
        )
        .await;
    assert_eq!(
        (taken.status.as_u16(), taken.code(), taken.reason()),
        (400, 316, "CLIENT_ID_ALREADY_IN_USE")
    );

    let (holder, loan) = active_loan(&api, "C2", "L2", "1000").await;
    let again = api.post("/loans", json!({ "id": "L2", "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": PERSONAL_LOAN, "loanAmount": 1000, "scheduleSettings": { "gracePeriod": 0 } })).await;
    assert_eq!(
        (again.code(), again.reason()),
        (411, "ACCOUNT_ID_ALREADY_IN_USE")
    );

    let outside = api.post("/loans", json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": MICRO_LOAN, "loanAmount": 5000.01, "scheduleSettings": { "gracePeriod": 0 } })).await;
    assert_eq!(outside.reason(), "PARAMS_INCONSISTENT_WITH_PRODUCT_RULES");
    assert_eq!(outside.body["errors"][0]["errorSource"], "loanAmount");
    let too_many = api.post("/loans", json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": MICRO_LOAN, "loanAmount": 500, "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 25 } })).await;
    assert_eq!(
        too_many.body["errors"][0]["errorSource"],
        "scheduleSettings.repaymentInstallments"
    );
    let unknown_product = api.post("/loans", json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": "PL-STD", "loanAmount": 500, "scheduleSettings": { "gracePeriod": 0 } })).await;
    assert_eq!(
        unknown_product.reason(),
        "INVALID_PRODUCT_KEY",
        "productTypeKey takes the encodedKey, not the product id"
    );

    let paid = api
        .post(
            &format!("/loans/{loan}/repayment-transactions"),
            json!({ "amount": 10, "externalId": "P1" }),
        )
        .await;
    assert_eq!(paid.status, 201, "{paid:?}");
    let twice = api
        .post(
            &format!("/loans/{loan}/repayment-transactions"),
            json!({ "amount": 10, "externalId": "P1" }),
        )
        .await;
    assert_eq!(twice.reason(), "EXTERNAL_ID_ALREADY_EXISTS");

    let reapprove = api
        .post(
            &format!("/loans/{loan}:changeState"),
            json!({ "action": "APPROVE" }),
        )
        .await;
    assert_eq!(
        (reapprove.code(), reapprove.reason()),
        (116, "INVALID_STATE_TRANSITION")
    );
    let redisburse = api
        .post(
            &format!("/loans/{loan}/disbursement-transactions"),
            json!({}),
        )
        .await;
    assert_eq!(redisburse.reason(), "ACCOUNT_ALREADY_DISBURSED");

    let excess = api
        .post(
            &format!("/loans/{loan}/repayment-transactions"),
            json!({ "amount": 100000 }),
        )
        .await;
    assert_eq!(
        (excess.code(), excess.reason()),
        (110, "EXCESS_REPAYMENT_ERROR")
    );

    api.post(
        "/clients",
        json!({ "id": "C3", "firstName": "A", "lastName": "B" }),
    )
    .await;
    let c3 = api.get("/clients/C3").await.key();
    api.post("/loans", json!({ "id": "L3", "accountHolderKey": c3, "accountHolderType": "CLIENT", "productTypeKey": PERSONAL_LOAN, "loanAmount": 1000, "scheduleSettings": { "gracePeriod": 0 } })).await;
    let unapproved = api
        .post("/loans/L3/disbursement-transactions", json!({}))
        .await;
    assert_eq!(
        (unapproved.code(), unapproved.reason()),
        (105, "INVALID_ACCOUNT_STATE")
    );
    let not_active = api
        .post("/loans/L3/repayment-transactions", json!({ "amount": 1 }))
        .await;
    assert_eq!(
        (not_active.code(), not_active.reason()),
        (128, "INVALID_ACCOUNT_STATE_FOR_REPAYMENTS")
    );
    let fee_without_installment = api
        .post(
            &format!("/loans/{loan}/fee-transactions"),
            json!({ "amount": 5 }),
        )
        .await;
    assert_eq!(
        fee_without_installment.reason(),
        "INSTALLMENT_NUMBER_MANDATORY_FOR_FIXED_ACCOUNTS"
    );

    // The principal no longer adds up to the loan amount.
    let mut unbalanced = unchanged_schedule(&api, "L3").await;
    unbalanced[0]["principal"]["amount"]["due"] = json!(1);
    let bad_schedule = api
        .put("/loans/L3/schedule", Value::Array(unbalanced))
        .await;
    assert_eq!(
        (bad_schedule.code(), bad_schedule.reason()),
        (132, "INCONSISTENT_SCHEDULE_PRINCIPAL_DUE_WITH_LOAN_AMOUNT")
    );

    let no_link = api.link("L3", "nope").await;
    assert_eq!(no_link.reason(), "INVALID_SETTLEMENT_ACCOUNT_KEY");
    assert!(
        no_link.body.get("returnCode").is_some(),
        "v1 answers carry the v1 body: {no_link:?}"
    );

    let missing_loan = api.get("/loans/nope").await;
    assert_eq!(
        (missing_loan.status.as_u16(), missing_loan.reason()),
        (404, "INVALID_LOAN_ACCOUNT_ID")
    );
    let malformed = api
        .send(
            reqwest::Method::POST,
            "/clients",
            Some(&Value::String("{".into())),
            None,
        )
        .await
        .unwrap();
    assert_eq!(malformed.status, 400);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let key = "0b6b3c3e-52d4-4bd4-9d1a-0d6a1e6b9c11";
    let first = api
        .post_keyed(
            "/clients",
            json!({ "firstName": "Ada", "lastName": "Lovelace" }),
            key,
        )
        .await;
    let replay = api
        .post_keyed(
            "/clients",
            json!({ "firstName": "Ada", "lastName": "Lovelace" }),
            key,
        )
        .await;
    assert_eq!(first.status, 201);
    assert_eq!(replay.status, 201);
    assert_eq!(
        replay.key(),
        first.key(),
        "the replay answers the first creation"
    );
    let other = api
        .post_keyed(
            "/clients",
            json!({ "firstName": "Grace", "lastName": "Hopper" }),
            key,
        )
        .await;
    assert_eq!(other.status, 400);
    assert!(
        other.body["errors"][0]["errorSource"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    let not_uuid = api
        .post_keyed(
            "/clients",
            json!({ "firstName": "A", "lastName": "B" }),
            "not-a-uuid",
        )
        .await;
    assert_eq!(not_uuid.status, 400);
    let stats = sandbox.stats().await;
    assert_eq!(stats["clients"], 1);
    assert_eq!(stats["requests"]["idempotent_replays"], 1);
    assert_eq!(stats["requests"]["idempotency_conflicts"], 1);
}

#[tokio::test]
async fn ignored_idempotency_keys_let_duplicates_through_and_stats_count_them() {
    let sandbox = Sandbox::start(&["--idempotency", "ignore"]);
    let api = sandbox.api();
    let key = "5f0a1a43-3a43-4c55-8c61-2f0b8f7c1d22";
    let first = api
        .post_keyed(
            "/clients",
            json!({ "firstName": "Ada", "lastName": "Lovelace", "birthDate": "1815-12-10" }),
            key,
        )
        .await;
    let second = api
        .post_keyed(
            "/clients",
            json!({ "firstName": "Ada", "lastName": "Lovelace", "birthDate": "1815-12-10" }),
            key,
        )
        .await;
    assert_ne!(first.key(), second.key(), "an expired key does not protect");
    let (_, loan) = active_loan(&api, "C9", "L9", "1000").await;
    for _ in 0..3 {
        let r = api
            .post(
                &format!("/loans/{loan}/repayment-transactions"),
                json!({ "amount": 12.5, "valueDate": "2024-03-01T00:00:00+00:00" }),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let stats = sandbox.stats().await;
    assert_eq!(stats["duplicates"]["clients"], 1);
    assert_eq!(stats["duplicates"]["transactions"], 2);
    assert_eq!(stats["duplicates"]["total"], 3);
}

#[tokio::test]
async fn a_lost_reply_still_applies_the_change() {
    let sandbox = Sandbox::start(&["--lost-reply-rate", "1", "--seed", "7"]);
    let api = sandbox.api();
    let mut dropped = 0;
    let mut errored = 0;
    for i in 0..12 {
        match api
            .send(
                reqwest::Method::POST,
                "/clients",
                Some(&json!({ "id": format!("C{i}"), "firstName": "A", "lastName": "B" })),
                None,
            )
            .await
        {
            Err(_) => dropped += 1,
            Ok(answer) => {
                assert_eq!(answer.status, 500, "{answer:?}");
                errored += 1;
            }
        }
        assert_eq!(
            api.get(&format!("/clients/C{i}")).await.status,
            200,
            "client C{i} exists although its answer was lost"
        );
    }
    assert!(
        dropped > 0 && errored > 0,
        "both ways of losing a reply happen: {dropped} dropped, {errored} errored"
    );
    let stats = sandbox.stats().await;
    assert_eq!(stats["clients"], 12);
    assert_eq!(stats["requests"]["lost_replies"], 12);
    assert_eq!(stats["requests"]["dropped_connections"], dropped);
}

#[tokio::test]
async fn throttling_answers_429_past_the_rate_with_retry_after() {
    let sandbox = Sandbox::start(&["--throttle-rps", "2"]);
    let api = sandbox.api();
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for _ in 0..6 {
        let answer = api.get("/loanproducts").await;
        statuses.push(answer.status.as_u16());
        if let Some(v) = answer.headers.get("retry-after") {
            retry_after.push(v.to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    // A burst of 2 passes; the rest, sent faster than 2/s, is throttled.
    assert_eq!(&statuses[..2], [200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert_eq!(
        retry_after.len(),
        statuses.iter().filter(|s| **s == 429).count()
    );
    assert!(retry_after.iter().all(|s| *s >= 1));
    assert_eq!(
        sandbox.stats().await["requests"]["throttled"],
        retry_after.len()
    );

    let quiet = Sandbox::start(&["--throttle-rps", "1", "--no-retry-after"]);
    let api = quiet.api();
    api.get("/loanproducts").await;
    let throttled = api.get("/loanproducts").await;
    assert_eq!(throttled.status, 429);
    assert!(throttled.headers.get("retry-after").is_none());
}

#[tokio::test]
async fn injected_faults_change_nothing() {
    let sandbox = Sandbox::start(&["--fault-rate", "1", "--seed", "3"]);
    let api = sandbox.api();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let answer = api
            .post(
                "/clients",
                json!({ "id": format!("C{i}"), "firstName": "A", "lastName": "B" }),
            )
            .await;
        seen.insert(answer.status.as_u16());
    }
    assert_eq!(seen, [409, 500, 502, 503, 504].into_iter().collect());
    let stats = sandbox.stats().await;
    assert_eq!(stats["clients"], 0);
    assert_eq!(stats["requests"]["injected_faults"], 40);
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let sandbox = Sandbox::start(&["--latency-ms", "150", "--jitter-ms", "20"]);
    let api = sandbox.api();
    let started = std::time::Instant::now();
    api.get("/loanproducts").await;
    api.get("/loanproducts").await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "two calls take at least twice the latency"
    );
}

#[tokio::test]
async fn faults_can_be_changed_while_running() {
    let sandbox = Sandbox::start(&[]);
    let http = reqwest::Client::new();
    let faults: Value = http
        .put(format!("{}/_sandbox/faults", sandbox.origin))
        .body(r#"{"throttle_rps":1.0}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["throttle_rps"], 1.0);
    let api = sandbox.api();
    api.get("/loanproducts").await;
    assert_eq!(api.get("/loanproducts").await.status, 429);
    let refused = http
        .put(format!("{}/_sandbox/faults", sandbox.origin))
        .body(r#"{"throttle":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "unknown fault names are refused");
}

#[tokio::test]
async fn sigterm_stops_it_cleanly() {
    let sandbox = Sandbox::start(&[]);
    assert_eq!(sandbox.api().get("/loanproducts").await.status, 200);
    let status = sandbox.terminate();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn products_load_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("products.json");
    std::fs::write(
        &path,
        r#"{"loanProducts":[{"id":"X","encodedKey":"k1","name":"X loan","type":"DYNAMIC_TERM_LOAN",
            "loanAmountSettings":{"loanAmount":{"minValue":10,"maxValue":20}},
            "scheduleSettings":{"numInstallments":{"minValue":1,"maxValue":2}}}],
           "depositProducts":[]}"#,
    )
    .unwrap();
    let sandbox = Sandbox::start(&["--products", path.to_str().unwrap()]);
    let api = sandbox.api();
    let listed = api.get("/loanproducts").await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    let holder = api
        .post("/clients", json!({ "firstName": "A", "lastName": "B" }))
        .await
        .key();
    let ok = api.post("/loans", json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": "k1", "loanAmount": 15, "scheduleSettings": { "gracePeriod": 0 } })).await;
    assert_eq!(ok.status, 201, "{ok:?}");
    let too_big = api.post("/loans", json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": "k1", "loanAmount": 21, "scheduleSettings": { "gracePeriod": 0 } })).await;
    assert_eq!(too_big.status, 400);
    let _ = API_KEY;
}

#[test]
fn a_bad_products_file_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("products.json");
    std::fs::write(
        &path,
        r#"{"loanProducts":[{"id":"X"}],"depositProducts":[]}"#,
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mambu-migrate"))
        .args(["sandbox", "--port", "0", "--products"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("products.json") && stderr.contains("line 1"),
        "{stderr}"
    );
}

/// A loan with `n` small repayments after its disbursement: a list longer than one page.
async fn loan_with_repayments(api: &common::Api, n: usize) -> String {
    let (_, loan) = common::active_loan(api, "CL-PAGES", "LN-PAGES", "5000").await;
    for i in 0..n {
        let paid = api
            .post(
                &format!("/loans/{loan}/repayment-transactions"),
                json!({ "amount": 1, "externalId": format!("R-{i}"), "valueDate": "2024-02-01T00:00:00+00:00" }),
            )
            .await;
        assert_eq!(paid.status, 201, "{paid:?}");
    }
    loan
}

#[tokio::test]
async fn lists_are_paged_as_mambu_pages_them() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let loan = loan_with_repayments(&api, 120).await;
    let path = format!("/loans/{loan}/transactions");
    // No limit: 50, and nothing says there are more.
    let first = api.get(&path).await;
    assert_eq!(first.body.as_array().unwrap().len(), 50);
    assert!(first.headers.get("items-total").is_none());
    // With paginationDetails=ON the headers say where the page stands.
    let last = api
        .get(&format!("{path}?offset=100&limit=50&paginationDetails=ON"))
        .await;
    assert_eq!(last.body.as_array().unwrap().len(), 21);
    let header = |name: &str| last.headers[name].to_str().unwrap().to_owned();
    assert_eq!(
        (
            header("items-offset"),
            header("items-limit"),
            header("items-total")
        ),
        ("100".into(), "50".into(), "121".into())
    );
    // Past Mambu's maximum page: refused.
    let too_big = api.get(&format!("{path}?limit=1001")).await;
    assert_eq!(
        (too_big.status.as_u16(), too_big.reason()),
        (400, "INVALID_PARAMETERS")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_reads_every_page_and_a_missing_entity_is_none() {
    use mambu_migrate::mambu::{Client, Credentials, Expect, Keep, Quiet, RetrySettings, Session};
    // Spoiled answers on a fifth of the calls: each page is read again until it is a list.
    let sandbox = Sandbox::start(&["--seed", "4"]);
    let loan = loan_with_repayments(&sandbox.api(), 120).await;
    sandbox.set_faults(r#"{"malformed_rate": 0.2}"#).await;
    let client = Client::new(
        &format!("{}/api", sandbox.origin),
        Credentials::ApiKey(API_KEY.into()),
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let retry = RetrySettings {
        max_attempts: 20,
        initial_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(5),
        outage_wait: std::time::Duration::ZERO,
    };
    let session = Session::reader(client, 1000.0, None, retry);
    let items = session
        .list_in_pages(&format!("/loans/{loan}/transactions"), 50, &mut Quiet)
        .await
        .unwrap();
    assert_eq!(items.len(), 121, "every page, once");
    assert_eq!(items[0]["type"], "DISBURSEMENT");
    let externals: Vec<&str> = items[1..]
        .iter()
        .map(|t| t["externalId"].as_str().unwrap())
        .collect();
    assert_eq!(
        externals,
        (0..120).map(|i| format!("R-{i}")).collect::<Vec<_>>()
    );
    assert!(session.attempts() >= 3, "three pages at least");
    let missing = session
        .read("/loans/NO-SUCH-LOAN", Expect::Entity, Keep::All, &mut Quiet)
        .await
        .unwrap();
    assert!(missing.is_none(), "a 404 is None, not an error");
}

/// The offset Lisbon had at the instant a date-time the sandbox wrote names.
fn lisbon_offset_at(text: &str) -> String {
    use chrono::{Offset, TimeZone};
    let at = chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    chrono_tz::Europe::Lisbon
        .offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .to_string()
}

#[tokio::test]
async fn every_v2_date_time_carries_the_tenants_offset_at_that_date() {
    let sandbox = Sandbox::start(&["--timezone", "Europe/Lisbon"]);
    let api = sandbox.api();

    let setup = api.get("/setup/organization").await;
    assert_eq!(setup.status, 200, "{setup:?}");
    assert_eq!(setup.body["timeZoneID"], "Europe/Lisbon");
    for field in [
        "currency",
        "dateFormat",
        "dateTimeFormat",
        "decimalSeparator",
        "institutionName",
    ] {
        assert!(setup.body[field].is_string(), "{field}: {setup:?}");
    }

    // Disbursed on 2024-01-15T00:00:00+00:00: Lisbon is on winter time (WET, +00:00).
    let (holder, loan) = active_loan(&api, "CL-TZ", "LN-TZ", "3000").await;
    let repay = |value_date: String| {
        let api = api.clone();
        let loan = loan.clone();
        async move {
            api.post(
                &format!("/loans/{loan}/repayment-transactions"),
                json!({ "amount": 10, "valueDate": value_date }),
            )
            .await
        }
    };
    let refusal = |value: &str, offset: &str| {
        json!({ "errors": [{ "errorCode": 4, "errorReason": "INVALID_PARAMETERS",
            "errorSource": format!("Invalid date offset for value {value} org offset is {offset}") }] })
    };

    // Winter time (WET, +00:00), then summer time (WEST, +01:00) from 2024-03-31T01:00:00Z:
    // each refused with the other season's offset, accepted with its own.
    for (local, wrong, right) in [
        ("2024-02-01T10:00:00", "+01:00", "+00:00"),
        ("2024-07-01T10:00:00", "+00:00", "+01:00"),
    ] {
        let refused = repay(format!("{local}{wrong}")).await;
        assert_eq!(refused.status, 400, "{local}{wrong}");
        assert_eq!(refused.body, refusal(local, right));
        let accepted = repay(format!("{local}{right}")).await;
        assert_eq!(accepted.status, 201, "{accepted:?}");
        assert_eq!(accepted.body["valueDate"], format!("{local}{right}"));
    }

    // 01:00-02:00 on 2024-03-31 never happened on Lisbon's clocks.
    for lost in ["2024-03-31T01:30:00+00:00", "2024-03-31T01:30:00+01:00"] {
        let answer = repay(lost.into()).await;
        assert_eq!(answer.status, 400, "{lost}: {answer:?}");
        assert_eq!(
            answer.body,
            refusal("2024-03-31T01:30:00", "+01:00"),
            "{lost}"
        );
    }
    let no_offset = repay("2024-07-01T10:00:00".into()).await;
    assert_eq!(no_offset.body, refusal("2024-07-01T10:00:00", "+01:00"));

    // Every other date-time of a body is checked alike.
    let booking = api
        .post(
            &format!("/loans/{loan}/repayment-transactions"),
            json!({ "amount": 10, "valueDate": "2024-07-02T10:00:00+01:00", "bookingDate": "2024-07-02T10:00:00+00:00" }),
        )
        .await;
    assert_eq!(booking.body, refusal("2024-07-02T10:00:00", "+01:00"));
    let summer_loan = api.post("/loans", json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": PERSONAL_LOAN, "loanAmount": 1000, "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 },
        "disbursementDetails": { "expectedDisbursementDate": "2024-06-03T00:00:00+01:00", "firstRepaymentDate": "2024-07-03T00:00:00+00:00" } })).await;
    assert_eq!(summer_loan.status, 400);
    assert_eq!(summer_loan.body, refusal("2024-07-03T00:00:00", "+01:00"));

    // What the sandbox writes carries Lisbon's offsets: the schedule counted from a winter
    // disbursement crosses into summer, and reads back into an edit unchanged.
    let schedule = api.get(&format!("/loans/{loan}/schedule")).await;
    let dues: Vec<&str> = schedule.body["installments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["dueDate"].as_str().unwrap())
        .collect();
    assert_eq!(
        dues,
        [
            "2024-02-15T00:00:00+00:00",
            "2024-03-15T00:00:00+00:00",
            "2024-04-15T00:00:00+01:00"
        ]
    );
    let edit = |due: &str| {
        let installments: Vec<Value> = schedule.body["installments"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(n, i)| {
                let due = if n == 2 {
                    due
                } else {
                    i["dueDate"].as_str().unwrap()
                };
                json!({ "encodedKey": i["encodedKey"], "dueDate": due })
            })
            .collect();
        Value::Array(installments)
    };
    let as_read = api
        .put(
            &format!("/loans/{loan}/schedule"),
            edit("2024-04-15T00:00:00+01:00"),
        )
        .await;
    assert_eq!(as_read.status, 200, "{as_read:?}");
    let winter_offset = api
        .put(
            &format!("/loans/{loan}/schedule"),
            edit("2024-04-15T00:00:00+00:00"),
        )
        .await;
    assert_eq!(winter_offset.body, refusal("2024-04-15T00:00:00", "+01:00"));
    let today = repay_today(&api, &loan).await;
    for field in ["valueDate", "creationDate"] {
        let text = today.body[field].as_str().unwrap();
        assert_eq!(
            &text[text.len() - 6..],
            lisbon_offset_at(text),
            "{field}: {today:?}"
        );
    }
}

/// A repayment without a value date: Mambu dates it today.
async fn repay_today(api: &common::Api, loan: &str) -> common::Answer {
    let answer = api
        .post(
            &format!("/loans/{loan}/repayment-transactions"),
            json!({ "amount": 1 }),
        )
        .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    answer
}

#[test]
fn a_time_zone_that_is_not_iana_is_refused_naming_it() {
    use predicates::prelude::*;
    assert_cmd::Command::new(env!("CARGO_BIN_EXE_mambu-migrate"))
        .args(["sandbox", "--port", "0", "--timezone", "Europe/Lisbn"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("`Europe/Lisbn` is not an IANA time zone")
                .and(predicate::str::contains("--timezone")),
        );
}

/// A body with each of its JSON numbers written as a JSON string of the same digits
/// (`1200.50` → `"1200.50"`), as some clients send them.
fn quoted(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Array(items) => Value::Array(items.iter().map(quoted).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), quoted(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The migration flow (client, loan, approval, edited schedule, disbursement, fee, repayment)
/// with each body passed through `write`, then the loan, client, schedule and transactions read
/// back: every answer, named by its step.
async fn numeric_flow(api: &common::Api, write: fn(&Value) -> Value) -> Vec<(String, Value)> {
    let mut answers = Vec::new();
    let mut keep = |step: &str, answer: common::Answer, status: u16| {
        assert_eq!(answer.status, status, "{step}: {answer:?}");
        answers.push((step.to_owned(), answer.body));
    };
    let client = api
        .post(
            "/clients",
            write(&json!({ "id": "CL-N", "firstName": "Ada", "lastName": "Lovelace" })),
        )
        .await;
    let holder = client.key();
    keep("client", client, 201);
    let loan = body(&format!(
        r#"{{"id":"LN-N","accountHolderKey":"{holder}","accountHolderType":"CLIENT","productTypeKey":"{PERSONAL_LOAN}","loanAmount":1200.50,
        "interestSettings":{{"interestRate":12.5}},"scheduleSettings":{{"gracePeriod":0,"repaymentInstallments":3}},
        "disbursementDetails":{{"expectedDisbursementDate":"2024-01-15T00:00:00+00:00","firstRepaymentDate":"2024-02-15T00:00:00+00:00"}}}}"#
    ));
    keep("loan", api.post("/loans", write(&loan)).await, 201);
    let approval = json!({ "action": "APPROVE", "notes": "migration" });
    keep(
        "approval",
        api.post("/loans/LN-N:changeState", write(&approval)).await,
        200,
    );
    let schedule = api.get("/loans/LN-N/schedule").await;
    let edited: Vec<Value> = schedule.body["installments"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["400.00", "400.00", "400.50"])
        .map(|(i, principal)| write(&body(&format!(r#"{{"encodedKey":"{}","dueDate":"{}","principal":{{"amount":{{"due":{principal}}}}},"interest":{{"amount":{{"due":8.00}}}},"fee":{{"amount":{{"due":0}}}}}}"#, i["encodedKey"].as_str().unwrap(), i["dueDate"].as_str().unwrap()))))
        .collect();
    keep(
        "schedule edit",
        api.put("/loans/LN-N/schedule", Value::Array(edited)).await,
        200,
    );
    let disbursement =
        body(r#"{"amount":1200.50,"valueDate":"2024-01-15T00:00:00+00:00","externalId":"DISB-N"}"#);
    keep(
        "disbursement",
        api.post(
            "/loans/LN-N/disbursement-transactions",
            write(&disbursement),
        )
        .await,
        201,
    );
    let fee = body(
        r#"{"amount":25.50,"installmentNumber":3,"valueDate":"2024-01-20T00:00:00+00:00","externalId":"FEE-N"}"#,
    );
    keep(
        "fee",
        api.post("/loans/LN-N/fee-transactions", write(&fee)).await,
        201,
    );
    let repayment =
        body(r#"{"amount":410.00,"valueDate":"2024-02-15T00:00:00+00:00","externalId":"PAY-N"}"#);
    keep(
        "repayment",
        api.post("/loans/LN-N/repayment-transactions", write(&repayment))
            .await,
        201,
    );
    for (step, path) in [
        ("loan read back", "/loans/LN-N"),
        ("client read back", "/clients/CL-N"),
        ("schedule read back", "/loans/LN-N/schedule"),
        ("transactions read back", "/loans/LN-N/transactions"),
    ] {
        keep(step, api.get(path).await, 200);
    }
    answers
}

/// Where two answers differ, field by field, leaving out the stamps of the moment a request was
/// handled (the two flows run a moment apart).
fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    const NOW: [&str; 4] = [
        "creationDate",
        "lastModifiedDate",
        "approvedDate",
        "activationDate",
    ];
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for name in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                if NOW.contains(&name.as_str()) {
                    continue;
                }
                let at = format!("{path}.{name}");
                match (x.get(name), y.get(name)) {
                    (Some(p), Some(q)) => differences(p, q, &at, out),
                    (p, q) => out.push(format!("{at}: {p:?} ≠ {q:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} ≠ {b}")),
        _ => {}
    }
}

#[tokio::test]
async fn numbers_written_as_strings_are_taken_as_the_numbers() {
    let with_numbers = Sandbox::start(&[]);
    let with_strings = Sandbox::start(&[]);
    let expected = numeric_flow(&with_numbers.api(), Value::clone).await;
    let answers = numeric_flow(&with_strings.api(), quoted).await;
    let mut found = Vec::new();
    for ((step, a), (_, b)) in expected.iter().zip(&answers) {
        differences(a, b, step, &mut found);
    }
    assert!(found.is_empty(), "the answers differ: {found:#?}");
    // The answers carry numbers, with the amounts sent.
    let answer = |step: &str| &answers.iter().find(|(s, _)| s == step).unwrap().1;
    let loan = answer("loan read back");
    assert_eq!(loan["loanAmount"].to_string(), "1200.5");
    assert_eq!(loan["interestSettings"]["interestRate"].to_string(), "12.5");
    assert_eq!(loan["scheduleSettings"]["gracePeriod"], 0);
    assert_eq!(loan["scheduleSettings"]["repaymentInstallments"], 3);
    let fee = answer("fee");
    assert_eq!(fee["amount"].to_string(), "25.5");
    assert_eq!(fee["installmentNumber"], 3);
    assert_eq!(
        answer("schedule read back")["installments"][2]["fee"]["amount"]["expected"].to_string(),
        "25.5"
    );

    let stats = with_strings.stats().await;
    assert_eq!(stats, with_numbers.stats().await);
    assert_eq!(
        stats["transaction_amounts_by_type"],
        body(r#"{ "DISBURSEMENT": 1200.5, "FEE_APPLIED": 25.5, "REPAYMENT": 410 }"#)
    );
    assert_eq!(stats["loans_by_state"]["ACTIVE"], 1);
}

#[tokio::test]
async fn a_string_that_is_not_a_number_is_refused_as_any_non_number_is() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let (holder, loan) = active_loan(&api, "CL-S", "LN-S", "1000").await;
    let refused = |field: &str| json!({ "errors": [{ "errorCode": 4, "errorReason": "INVALID_PARAMETERS", "errorSource": field }] });
    let new_loan = |field: &str, value: Value| {
        let mut body = json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": PERSONAL_LOAN,
            "loanAmount": 1000, "interestSettings": { "interestRate": 12 }, "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 } });
        let mut at = &mut body;
        let (parents, last) = field.rsplit_once('.').unwrap_or(("", field));
        for name in parents.split('.').filter(|n| !n.is_empty()) {
            at = &mut at[name];
        }
        at[last] = value;
        body
    };
    // A non-number, as refused before strings were read as numbers.
    let today = api
        .post("/loans", new_loan("loanAmount", json!(true)))
        .await;
    assert_eq!(today.status, 400);
    assert_eq!(today.body, refused("loanAmount"));
    let fields = [
        "loanAmount",
        "interestSettings.interestRate",
        "scheduleSettings.gracePeriod",
        "scheduleSettings.repaymentInstallments",
    ];
    for field in fields {
        for value in [
            json!("12abc"),
            json!(""),
            json!("1e400"),
            json!(" 12"),
            json!("+12"),
            json!(true),
        ] {
            let answer = api.post("/loans", new_loan(field, value.clone())).await;
            assert_eq!(
                (answer.status.as_u16(), &answer.body),
                (400, &refused(field)),
                "{field}: {value}"
            );
        }
    }
    for field in [
        "scheduleSettings.gracePeriod",
        "scheduleSettings.repaymentInstallments",
    ] {
        let answer = api.post("/loans", new_loan(field, json!("3.5"))).await;
        assert_eq!(answer.body, refused(field), "a count is whole");
    }
    // A number where a string is expected stays refused.
    let named = api
        .post("/clients", json!({ "firstName": 12, "lastName": "B" }))
        .await;
    assert_eq!(named.body, refused("firstName"));

    let fee = |number: Value| json!({ "amount": 5, "installmentNumber": number });
    let today = api
        .post(&format!("/loans/{loan}/fee-transactions"), fee(json!(true)))
        .await;
    assert_eq!(today.reason(), "INVALID_REPAYMENT_NUMBER", "{today:?}");
    for number in ["3rd", "", "0", "4"] {
        let answer = api
            .post(
                &format!("/loans/{loan}/fee-transactions"),
                fee(json!(number)),
            )
            .await;
        assert_eq!(
            (answer.status, &answer.body),
            (today.status, &today.body),
            "{number:?}"
        );
    }
    for amount in ["25.50abc", "", "1e400"] {
        let answer = api
            .post(
                &format!("/loans/{loan}/repayment-transactions"),
                json!({ "amount": amount }),
            )
            .await;
        assert_eq!(answer.body, refused("amount"), "{amount:?}");
    }

    let stats = sandbox.stats().await;
    assert_eq!(stats["clients"], 1, "{stats}");
    assert_eq!(stats["loans"], 1);
    assert_eq!(stats["transactions"], 1);
}

// Schedule editing (../shared/mambu-api.md §8): each rule of PUT /loans/{id}/schedule, with the
// body Mambu answers it with.

/// Mambu's v2 error body for one refusal.
fn mambu_error(code: i64, reason: &str, source: &str) -> Value {
    json!({ "errors": [{ "errorCode": code, "errorReason": reason, "errorSource": source }] })
}

/// A client's pending loan of 900 in 3 installments (300 principal each; 9.00, 6.00 and 3.00
/// interest at 12%), expected to be disbursed on 2024-01-15 and first due on 2024-02-15.
async fn pending_loan(api: &Api, id: &str, product: &str) -> String {
    let holder = api
        .post(
            "/clients",
            json!({ "firstName": "Ada", "lastName": "Lovelace" }),
        )
        .await
        .key();
    let loan = api.post("/loans", json!({ "id": id, "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": product,
        "loanAmount": 900, "interestSettings": { "interestRate": 12 }, "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 },
        "disbursementDetails": { "expectedDisbursementDate": "2024-01-15T00:00:00+00:00", "firstRepaymentDate": "2024-02-15T00:00:00+00:00" } })).await;
    assert_eq!(loan.status, 201, "{loan:?}");
    id.to_owned()
}

/// The loan's schedule as a PUT body that changes nothing, for a test to alter.
async fn unchanged_schedule(api: &Api, loan: &str) -> Vec<Value> {
    api.get(&format!("/loans/{loan}/schedule")).await.body["installments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            json!({
                "encodedKey": i["encodedKey"],
                "dueDate": i["dueDate"],
                "principal": { "amount": { "due": i["principal"]["amount"]["due"] } },
                "interest": { "amount": { "due": i["interest"]["amount"]["due"] } },
            })
        })
        .collect()
}

/// PUT /loans/{loan}/schedule.
async fn put_schedule(api: &Api, loan: &str, installments: Vec<Value>) -> common::Answer {
    api.put(
        &format!("/loans/{loan}/schedule"),
        Value::Array(installments),
    )
    .await
}

/// A products file whose one loan product ("DATED") lets a schedule edit move due dates and
/// principal, and another ("FROZEN") allows no schedule edit.
fn edit_products(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("products.json");
    let product = |id: &str, options: &str| {
        format!(
            r#"{{"id":"{id}","encodedKey":"{id}","name":"{id} loan","type":"FIXED_TERM_LOAN",
            "loanAmountSettings":{{"loanAmount":{{"minValue":100,"maxValue":5000}}}},
            "scheduleSettings":{{"numInstallments":{{"minValue":1,"maxValue":12}}{options}}}}}"#
        )
    };
    std::fs::write(
        &path,
        format!(
            r#"{{"loanProducts":[{},{}],"depositProducts":[]}}"#,
            product(
                "DATED",
                r#","repaymentScheduleEditOptions":["ADJUST_PAYMENT_DATES","ADJUST_PRINCIPAL_PAYMENT_SCHEDULE"]"#
            ),
            product("FROZEN", "")
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn a_schedule_edit_changes_only_what_the_products_edit_options_allow() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let products = api.get("/loanproducts/PL-STD").await;
    assert_eq!(
        products.body["scheduleSettings"]["repaymentScheduleEditOptions"],
        json!([
            "ADJUST_PRINCIPAL_PAYMENT_SCHEDULE",
            "ADJUST_INTEREST_PAYMENT_SCHEDULE"
        ])
    );
    let loan = pending_loan(&api, "LN-OPT", PERSONAL_LOAN).await;
    let mut moved = unchanged_schedule(&api, &loan).await;
    moved[1]["dueDate"] = json!("2024-03-20T00:00:00+00:00");
    let refused = put_schedule(&api, &loan, moved).await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.body,
        mambu_error(
            3625,
            "EDITING_REPAYMENTS_NOT_ALLOWED",
            "installments[1].dueDate: the product's repaymentScheduleEditOptions lack ADJUST_PAYMENT_DATES"
        )
    );
    let mut fewer = unchanged_schedule(&api, &loan).await;
    fewer.pop();
    fewer[0]["principal"]["amount"]["due"] = json!(600);
    assert_eq!(
        put_schedule(&api, &loan, fewer).await.body,
        mambu_error(
            3625,
            "EDITING_REPAYMENTS_NOT_ALLOWED",
            "installments: the product's repaymentScheduleEditOptions lack ADJUST_NUMBER_OF_INSTALLMENTS"
        )
    );
    let mut reshaped = unchanged_schedule(&api, &loan).await;
    reshaped[0]["principal"]["amount"]["due"] = json!(250);
    reshaped[2]["principal"]["amount"]["due"] = json!(350);
    reshaped[2]["interest"]["amount"]["due"] = json!(2.5);
    let done = put_schedule(&api, &loan, reshaped).await;
    assert_eq!(done.status, 200, "{done:?}");

    // A product without the option allows no edit, not even one that changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(&["--products", edit_products(dir.path()).to_str().unwrap()]);
    let api = sandbox.api();
    let loan = pending_loan(&api, "LN-FROZEN", "FROZEN").await;
    let same = unchanged_schedule(&api, &loan).await;
    assert_eq!(
        put_schedule(&api, &loan, same).await.body,
        mambu_error(
            3625,
            "EDITING_REPAYMENTS_NOT_ALLOWED",
            "repaymentScheduleEditOptions: the product allows no schedule edit"
        )
    );
}

#[tokio::test]
async fn a_locked_account_s_schedule_is_not_edited() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let (_, loan) = active_loan(&api, "CL-LOCK", "LN-LOCK", "900").await;
    let locked = api
        .post(
            &format!("/loans/{loan}/lock-transactions"),
            json!({ "notes": "collections dispute" }),
        )
        .await;
    assert_eq!(locked.status, 201, "{locked:?}");
    let types: Vec<&str> = locked.body["loanTransactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["INTEREST_LOCKED", "FEE_LOCKED", "PENALTY_LOCKED"]);
    assert_eq!(
        api.get(&format!("/loans/{loan}")).await.body["accountSubState"],
        "LOCKED"
    );
    let same = unchanged_schedule(&api, &loan).await;
    let refused = put_schedule(&api, &loan, same.clone()).await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.body,
        mambu_error(3630, "ACCOUNT_IS_LOCKED", "accountSubState")
    );
    let again = api
        .post(&format!("/loans/{loan}/lock-transactions"), json!({}))
        .await;
    assert_eq!(
        again.body,
        mambu_error(3631, "ACCOUNT_ALREADY_LOCKED", "accountSubState")
    );
    let unlocked = api
        .post(&format!("/loans/{loan}/unlock-transactions"), json!({}))
        .await;
    assert_eq!(unlocked.status, 201, "{unlocked:?}");
    assert_eq!(put_schedule(&api, &loan, same).await.status, 200);
}

#[tokio::test]
async fn a_paid_installment_is_not_edited() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    // Disbursed on 2024-01-15; 309 pays the first installment: 9 interest, 300 principal.
    let (_, loan) = active_loan(&api, "CL-PAID", "LN-PAID", "900").await;
    let paid = api
        .post(
            &format!("/loans/{loan}/repayment-transactions"),
            json!({ "amount": 309, "valueDate": "2024-02-15T00:00:00+00:00" }),
        )
        .await;
    assert_eq!(paid.status, 201, "{paid:?}");
    let mut edited = unchanged_schedule(&api, &loan).await;
    edited[0]["interest"]["amount"]["due"] = json!(1);
    let refused = put_schedule(&api, &loan, edited).await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.body,
        mambu_error(3626, "INSTALLMENT_ALREADY_PAID", "installments[0]")
    );
    let mut dropped = unchanged_schedule(&api, &loan).await;
    dropped.remove(0);
    assert_eq!(
        put_schedule(&api, &loan, dropped).await.body,
        mambu_error(
            3623,
            "PAID_OR_PURE_GRACE_INSTALLMENT_CANNOT_BE_DELETED",
            "installments"
        )
    );
    let same = unchanged_schedule(&api, &loan).await;
    assert_eq!(put_schedule(&api, &loan, same).await.status, 200);
}

#[tokio::test]
async fn an_installment_with_interest_applied_is_not_edited() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    // Disbursed on 2024-01-15: every due date (2024-02-15 on) is past, its interest applied.
    let (_, loan) = active_loan(&api, "CL-APPLIED", "LN-APPLIED", "900").await;
    let mut edited = unchanged_schedule(&api, &loan).await;
    edited[1]["interest"]["amount"]["due"] = json!(5);
    let refused = put_schedule(&api, &loan, edited).await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.body,
        mambu_error(
            3627,
            "INSTALLMENT_WITH_INTEREST_APPLIED_CANNOT_BE_EDITED",
            "installments[1]"
        )
    );
    // Before the disbursement no interest is applied: the same edit passes.
    let pending = pending_loan(&api, "LN-NOT-YET", PERSONAL_LOAN).await;
    let mut edited = unchanged_schedule(&api, &pending).await;
    edited[1]["interest"]["amount"]["due"] = json!(5);
    assert_eq!(put_schedule(&api, &pending, edited).await.status, 200);
}

#[tokio::test]
async fn a_fixed_term_loan_s_total_interest_only_decreases() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let loan = pending_loan(&api, "LN-FIXED", PERSONAL_LOAN).await;
    let mut more = unchanged_schedule(&api, &loan).await;
    more[2]["interest"]["amount"]["due"] = json!(3.5);
    let refused = put_schedule(&api, &loan, more).await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.body,
        mambu_error(
            3610,
            "INVALID_INSTALLMENTS",
            "installments.interest: a fixed-term loan's total interest may only decrease: 18.50 is more than the 18.00 its rate charges on this schedule"
        )
    );
    let mut less = unchanged_schedule(&api, &loan).await;
    less[2]["interest"]["amount"]["due"] = json!(2.5);
    assert_eq!(put_schedule(&api, &loan, less).await.status, 200);
    // A dynamic-term loan's interest is Mambu's to recompute: not capped.
    let dynamic = pending_loan(&api, "LN-DYN-INT", MICRO_LOAN).await;
    let mut more = unchanged_schedule(&api, &dynamic).await;
    more[2]["interest"]["amount"]["due"] = json!(3.5);
    assert_eq!(put_schedule(&api, &dynamic, more).await.status, 200);
}

#[tokio::test]
async fn a_dynamic_term_loan_s_schedule_is_edited_before_approval_not_after() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let loan = pending_loan(&api, "LN-DYN", MICRO_LOAN).await;
    let mut edited = unchanged_schedule(&api, &loan).await;
    edited[0]["principal"]["amount"]["due"] = json!(400);
    edited[2]["principal"]["amount"]["due"] = json!(200);
    assert_eq!(
        put_schedule(&api, &loan, edited.clone()).await.status,
        200,
        "PENDING_APPROVAL"
    );
    let approved = api
        .post(
            &format!("/loans/{loan}:changeState"),
            json!({ "action": "APPROVE" }),
        )
        .await;
    assert_eq!(approved.status, 200, "{approved:?}");
    let refused = put_schedule(&api, &loan, edited.clone()).await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.body,
        mambu_error(
            3619,
            "LOAN_ACCOUNT_SCHEDULE_EDITING_NOT_ALLOWED",
            "accountState"
        )
    );
    // Once disbursed it can be edited again.
    let disbursed = api
        .post(
            &format!("/loans/{loan}/disbursement-transactions"),
            json!({ "valueDate": "2024-01-15T00:00:00+00:00" }),
        )
        .await;
    assert_eq!(disbursed.status, 201, "{disbursed:?}");
    assert_eq!(put_schedule(&api, &loan, edited).await.status, 200);
}

#[tokio::test]
async fn due_dates_ascend_and_begin_after_the_disbursement() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(&["--products", edit_products(dir.path()).to_str().unwrap()]);
    let api = sandbox.api();
    let loan = pending_loan(&api, "LN-DUES", "DATED").await;
    let with_dues = |dues: [&'static str; 3]| {
        let api = api.clone();
        let loan = loan.clone();
        async move {
            let mut body = unchanged_schedule(&api, &loan).await;
            for (item, due) in body.iter_mut().zip(dues) {
                item["dueDate"] = json!(format!("{due}T00:00:00+00:00"));
            }
            put_schedule(&api, &loan, body).await
        }
    };
    let swapped = with_dues(["2024-02-15", "2024-04-15", "2024-03-15"]).await;
    assert_eq!(swapped.status, 400);
    assert_eq!(
        swapped.body,
        mambu_error(
            3624,
            "DUE_DATES_NOT_IN_ASCENDING_ORDER",
            "installments.dueDate"
        )
    );
    assert_eq!(
        with_dues(["2024-02-15", "2024-03-15", "2024-03-15"])
            .await
            .body,
        mambu_error(3628, "DUE_DATES_NOT_UNIQUE", "installments.dueDate")
    );
    assert_eq!(
        with_dues(["2024-01-10", "2024-02-15", "2024-03-15"])
            .await
            .body,
        mambu_error(
            3618,
            "FIRST_REPAYMENT_DATE_BEFORE_EXPECTED_DISBURSEMENT_DATE",
            "installments[0].dueDate"
        )
    );
    let moved = with_dues(["2024-02-20", "2024-03-20", "2024-04-20"]).await;
    assert_eq!(moved.status, 200, "{moved:?}");
    assert_eq!(
        moved.body["installments"][2]["dueDate"],
        "2024-04-20T00:00:00+00:00"
    );
}

/// `PATCH /clients/{id}` (a catch-up's update): Mambu's PatchOperation list answered 204; a
/// read-only field, a REPLACE of a field the client lacks, an unknown op or a body that is not a
/// list are INVALID_PARAMETERS naming where; a patched client must still pass the create checks
/// (a required name removed is refused) and then nothing changes; an unknown client is
/// INVALID_CLIENT_ID; the user needs EDIT_CLIENT (strict tenant's auditor lacks it).
#[tokio::test]
async fn a_client_is_patched_by_mambus_operations_or_refused_whole() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let created = api
        .post(
            "/clients",
            body(r#"{"id": "CL-P", "firstName": "Ana", "lastName": "Lima", "mobilePhone": "1"}"#),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let patch = |ops: &str| {
        let ops = body(ops);
        let api = &api;
        async move {
            api.send(reqwest::Method::PATCH, "/clients/CL-P", Some(&ops), None)
                .await
                .unwrap()
        }
    };
    let ok = patch(r#"[{"op": "REPLACE", "path": "/mobilePhone", "value": "2"}, {"op": "ADD", "path": "emailAddress", "value": "a@b.example"}]"#).await;
    assert_eq!(ok.status, 204, "{:?}", ok.body);
    let client = api.get("/clients/CL-P").await.body;
    assert_eq!(
        (
            client["mobilePhone"].clone(),
            client["emailAddress"].clone()
        ),
        (json!("2"), json!("a@b.example"))
    );
    for (ops, source) in [
        (
            r#"[{"op": "REPLACE", "path": "/id", "value": "X"}]"#,
            "[0].path",
        ),
        (
            r#"[{"op": "REPLACE", "path": "/homePhone", "value": "3"}]"#,
            "[0].path",
        ),
        (
            r#"[{"op": "COPY", "path": "/mobilePhone", "value": "3"}]"#,
            "[0].op",
        ),
        (r#"{"op": "REPLACE"}"#, "body: a list of patch operations"),
        (
            r#"[{"op": "REPLACE", "path": "/mobilePhone", "value": "9"}, {"op": "REMOVE", "path": "/lastName"}]"#,
            "lastName: must not be blank",
        ),
    ] {
        let refused = patch(ops).await;
        assert_eq!(refused.status, 400, "{ops}");
        assert_eq!(refused.reason(), "INVALID_PARAMETERS", "{ops}");
        assert_eq!(refused.body["errors"][0]["errorSource"], source, "{ops}");
    }
    // Refused whole: the first operation of the last list was not applied.
    assert_eq!(api.get("/clients/CL-P").await.body["mobilePhone"], "2");
    let unknown = api
        .send(
            reqwest::Method::PATCH,
            "/clients/NOPE",
            Some(&body("[]")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(unknown.reason(), "INVALID_CLIENT_ID");

    let strict = Sandbox::strict(&[]);
    let auditor = strict.api().with_basic("auditor", "auditor-password");
    let denied = auditor
        .send(
            reqwest::Method::PATCH,
            "/clients/CL-P",
            Some(&body("[]")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(denied.status, 403);
    assert_eq!(denied.reason(), "INVALID_PERMISSIONS");
}
