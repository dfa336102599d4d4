//! Loan securities (issue 18): guarantors and collateral assets on loan creation, allowed only
//! where the product's `securitySettings` allow them, and the securities percentage an approval
//! needs; in the sandbox over HTTP with Mambu's error bodies, through a plan run under faults
//! and lost replies read back by `verify` (and a tampered security caught), and as findings of
//! `plan validate --target`.

mod common;

use common::{Answer, Api, Sandbox, binary};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const PERSONAL: &str = "8a19c0de00000000000000000000a001";
const MICRO: &str = "8a19c0de00000000000000000000a003";
/// SME-TRANCHE: on the strict profile, securities worth 50% of the loan amount to be approved.
const TRANCHED: &str = "8a19c0de00000000000000000000a004";
const CURRENT_ACCOUNT: &str = "8a19c0de00000000000000000000d001";

/// The strict profile (its custom fields optional: tests/custom_fields.rs has them required),
/// SME-TRANCHE needing securities worth 50% of the loan amount.
fn strict() -> Sandbox {
    let profile = common::strict_profile().replace("required: true", "required: false");
    let tranche = "    securitySettings: { isGuarantorsEnabled: true, isCollateralEnabled: true } # none required: the sample's tranched loans carry none";
    assert!(profile.contains(tranche));
    Sandbox::tenant(
        &profile.replace(
            tranche,
            "    securitySettings: { isGuarantorsEnabled: true, isCollateralEnabled: true, requiredGuaranties: 50 }",
        ),
        &[],
    )
}

fn number(v: &Value) -> Decimal {
    v.to_string().trim_matches('"').parse().unwrap()
}

/// Asserts a v2 refusal: status 400, code, reason, errorSource.
fn refused(answer: &Answer, code: i64, reason: &str, source: &str) {
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({ "errors": [{ "errorCode": code, "errorReason": reason, "errorSource": source }] }),
        "{answer:?}"
    );
}

async fn client(api: &Api, id: &str, last: &str) -> String {
    let made = api
        .post(
            "/clients",
            json!({
                "id": id, "firstName": "Ana", "lastName": last, "birthDate": "1970-01-01",
                "idDocuments": [{ "documentId": format!("DOC-{id}"), "documentType": "National ID" }],
            }),
        )
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    made.key()
}

async fn deposit(api: &Api, id: &str, holder: &str) -> String {
    let made = api
        .post(
            "/deposits",
            json!({ "id": id, "accountHolderKey": holder, "accountHolderType": "CLIENT",
                    "name": "Current", "productTypeKey": CURRENT_ACCOUNT }),
        )
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    made.key()
}

/// POST /loans of `product` for `holder` with `extra` fields (securities, tranches).
async fn loan(api: &Api, holder: &str, product: &str, amount: u32, extra: Value) -> Answer {
    let mut body = json!({
        "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": product,
        "loanAmount": amount, "interestSettings": { "interestRate": 12 },
        "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 6 },
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    api.post("/loans", body).await
}

async fn approve(api: &Api, loan: &str) -> Answer {
    api.post(
        &format!("/loans/{loan}:changeState"),
        json!({ "action": "APPROVE" }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn securities_are_taken_where_the_product_allows_them_and_checked() {
    let sandbox = strict();
    let api = sandbox.api();
    let holder = client(&api, "CL-1", "Holder").await;
    let guarantor = client(&api, "CL-2", "Guarantor").await;
    let holders_deposit = deposit(&api, "DP-1", &holder).await;
    let guarantors_deposit = deposit(&api, "DP-2", &guarantor).await;

    // The products say what they take, as Mambu's securitySettings.
    let products = api.get("/loanproducts").await.body;
    let settings = |id: &str| {
        products
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()["securitySettings"]
            .clone()
    };
    assert_eq!(
        settings("PL-STD"),
        json!({ "isGuarantorsEnabled": true, "isCollateralEnabled": true })
    );
    assert_eq!(
        settings("MICRO"),
        json!({ "isGuarantorsEnabled": false, "isCollateralEnabled": false })
    );
    assert_eq!(settings("SME-TRANCHE")["requiredGuaranties"], 50);

    // A guarantor with a deposit of theirs and an asset, amounts sent as strings and numbers.
    let guarantee = json!({ "guarantorKey": guarantor, "guarantorType": "CLIENT",
                            "depositAccountKey": guarantors_deposit, "amount": "400.50" });
    let car = json!({ "assetName": "Car AA-00-01", "amount": 300 });
    let made = loan(
        &api,
        &holder,
        PERSONAL,
        1000,
        json!({ "guarantors": [guarantee], "assets": [car] }),
    )
    .await;
    assert_eq!(made.status, 201, "{made:?}");
    let id = made.body["id"].as_str().unwrap().to_owned();
    let basic = api.get(&format!("/loans/{id}")).await.body;
    assert!(
        basic.get("guarantors").is_none() && basic.get("assets").is_none(),
        "a BASIC read leaves them out: {basic}"
    );
    let full = api
        .get(&format!("/loans/{id}?detailsLevel=FULL"))
        .await
        .body;
    let held = &full["guarantors"][0];
    assert_eq!(held["guarantorKey"], guarantor.as_str());
    assert_eq!(held["depositAccountKey"], guarantors_deposit.as_str());
    assert_eq!(number(&held["amount"]), Decimal::new(4005, 1));
    assert!(held["amount"].is_number(), "{full}");
    assert!(held["encodedKey"].is_string(), "{full}");
    assert_eq!(full["assets"][0]["assetName"], "Car AA-00-01");
    assert!(full["assets"][0]["encodedKey"].is_string(), "{full}");
    // The holder may guarantee with their own deposit.
    let own = json!({ "guarantorKey": holder, "guarantorType": "CLIENT",
                      "depositAccountKey": holders_deposit, "amount": 500 });
    let made = loan(
        &api,
        &holder,
        PERSONAL,
        1000,
        json!({ "guarantors": [own] }),
    )
    .await;
    assert_eq!(made.status, 201, "{made:?}");

    // Refused per product (codes inferred, see src/sandbox/error.rs).
    let on_micro = loan(
        &api,
        &holder,
        MICRO,
        1000,
        json!({ "guarantors": [own.clone()] }),
    )
    .await;
    refused(
        &on_micro,
        221,
        "GUARANTOR_NOT_ALLOWED_BY_PRODUCT",
        "guarantors",
    );
    let collateral = loan(&api, &holder, MICRO, 1000, json!({ "assets": [car] })).await;
    refused(
        &collateral,
        222,
        "COLLATERAL_NOT_ALLOWED_BY_PRODUCT",
        "assets",
    );
    // An empty list is no security.
    let empty = loan(&api, &holder, MICRO, 1000, json!({ "guarantors": [] })).await;
    assert_eq!(empty.status, 201, "{empty:?}");

    // The guarantor must exist, as the type says; the deposit must be the guarantor's.
    let with = |changes: Value| {
        let mut g = own.clone();
        g.as_object_mut()
            .unwrap()
            .extend(changes.as_object().unwrap().clone());
        json!({ "guarantors": [g] })
    };
    for changes in [
        json!({ "guarantorKey": "8a5b0000000000000000000000ffffff" }),
        json!({ "guarantorKey": "CL-1" }),
        json!({ "guarantorType": "GROUP" }),
    ] {
        let unknown = loan(&api, &holder, PERSONAL, 1000, with(changes)).await;
        refused(
            &unknown,
            155,
            "INVALID_GUARANTOR_KEY",
            "guarantors[0].guarantorKey",
        );
    }
    let wrong_deposit = loan(
        &api,
        &holder,
        PERSONAL,
        1000,
        with(json!({ "depositAccountKey": guarantors_deposit })),
    )
    .await;
    refused(
        &wrong_deposit,
        156,
        "INVALID_SAVINGS_ACCOUNT_KEY",
        "guarantors[0].depositAccountKey",
    );
    let zero = loan(
        &api,
        &holder,
        PERSONAL,
        1000,
        with(json!({ "amount": "0" })),
    )
    .await;
    refused(&zero, 906, "INVALID_AMOUNT", "guarantors[0].amount");
    let unnamed = loan(
        &api,
        &holder,
        PERSONAL,
        1000,
        json!({ "assets": [{ "amount": 10 }] }),
    )
    .await;
    refused(&unnamed, 152, "INVALID_ASSET_NAME", "assets[0].assetName");
    let twice = loan(
        &api,
        &holder,
        PERSONAL,
        1000,
        json!({ "assets": [car, car] }),
    )
    .await;
    refused(&twice, 162, "DUPLICATED_ASSET", "assets[1].assetName");

    // SME-TRANCHE needs 50% of the loan amount in securities before approval.
    let tranched = |extra: Value| {
        let mut extra = extra;
        extra["tranches"] = json!([{ "amount": 20000,
            "disbursementDetails": { "expectedDisbursementDate": "2024-01-15T00:00:00+00:00" } }]);
        loan(&api, &holder, TRANCHED, 20000, extra)
    };
    let short = tranched(json!({ "assets": [{ "assetName": "Van", "amount": 9999.99 }] })).await;
    assert_eq!(short.status, 201, "{short:?}");
    let short = short.body["id"].as_str().unwrap().to_owned();
    refused(
        &approve(&api, &short).await,
        138,
        "INSUFFICIENT_GUARANTEES",
        "securitySettings.requiredGuaranties: securities of 10000 needed, 9999.99 held",
    );
    let bare = tranched(json!({})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        approve(&api, &bare).await.reason(),
        "INSUFFICIENT_GUARANTEES"
    );
    let enough = tranched(json!({
        "guarantors": [own],
        "assets": [{ "assetName": "Van", "amount": "9500" }],
    }))
    .await;
    let enough = enough.body["id"].as_str().unwrap().to_owned();
    let approved = approve(&api, &enough).await;
    assert_eq!(approved.status, 200, "{approved:?}");
    assert_eq!(approved.body["accountState"], "APPROVED");

    let stats = sandbox.stats().await;
    assert_eq!(stats["loan_guarantors"], 3, "{stats}");
    assert_eq!(stats["loan_assets"], 3, "{stats}");
}

const PLAN: &str = r#"version: 1
name: securities
target: sandbox
timezone: "+00:00"
limits:
  requests_per_second: 2000
  concurrency: 6
  retry: { max_attempts: 12, initial_backoff_ms: 5, max_backoff_ms: 40 }
sources:
  clients: { file: clients.csv, key: client_id }
  deposits: { file: deposits.csv, key: deposit_id, parent: clients.client_id }
  loans: { file: loans.csv, key: loan_id, parent: clients.client_id }
  securities: { file: securities.csv, key: security_id, parent: loans.loan_id, order_by: [seq] }
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
          name: Current account
          productTypeKey: 8a19c0de00000000000000000000d001
      - id: approve_deposit
        action: approve_deposit
  - for_each: loans
    steps:
      # The guarantee's deposit, by its id in the securities row: its encodedKey for the item.
      - for_each: securities
        when: "securities.kind == 'GUARANTEE'"
        steps:
          - id: guarantee_account
            action: request
            method: GET
            path: "/deposits/{{ securities.deposit_id }}"
      - id: loan
        action: create_loan
        body:
          id: "{{ loans.loan_id }}"
          accountHolderKey: "{{ steps.client.encodedKey }}"
          accountHolderType: CLIENT
          productTypeKey: "{{ loans.product_key }}"
          loanAmount: "{{ loans.amount | decimal }}"
          interestSettings: { interestRate: 12 }
          scheduleSettings: { gracePeriod: 0, repaymentInstallments: 6 }
          guarantors:
            for_each: securities
            when: "securities.kind == 'GUARANTEE'"
            item:
              guarantorKey: "{{ steps.client.encodedKey }}"
              guarantorType: CLIENT
              depositAccountKey: "{{ steps.guarantee_account.encodedKey }}"
              amount: "{{ securities.amount | decimal }}"
          assets:
            for_each: securities
            when: "securities.kind == 'ASSET'"
            item:
              assetName: "{{ securities.asset_name }}"
              amount: "{{ securities.amount | decimal }}"
      - id: approve
        action: approve_loan
"#;

/// 40 clients, each with a current account and one or two PL-STD loans; each loan with a
/// guarantee of the holder's own deposit (most of them) and zero to two assets. The loans'
/// (guarantors, assets) counts.
fn write_plan(dir: &std::path::Path, product: &str) -> Vec<(String, usize, usize)> {
    let mut clients = String::from("client_id,first_name,last_name\n");
    let mut deposits = String::from("deposit_id,client_id\n");
    let mut loans = String::from("loan_id,client_id,product_key,amount\n");
    let mut securities =
        String::from("security_id,loan_id,seq,kind,asset_name,deposit_id,amount\n");
    let mut expected = Vec::new();
    let mut n = 0usize;
    for c in 1..=40 {
        clients.push_str(&format!("CL-{c:02},Ana,Owner {c}\n"));
        deposits.push_str(&format!("DP-{c:02},CL-{c:02}\n"));
        for l in 0..(1 + c % 2) {
            n += 1;
            let loan = format!("LN-{c:02}-{l}");
            loans.push_str(&format!(
                "{loan},CL-{c:02},{product},{}.00\n",
                1000 + n * 10
            ));
            let guarantee = !n.is_multiple_of(5);
            let assets = n % 3;
            let mut seq = 0;
            if guarantee {
                securities.push_str(&format!(
                    "S-{loan}-{seq},{loan},{seq},GUARANTEE,,DP-{c:02},{}.25\n",
                    100 + n
                ));
                seq += 1;
            }
            for a in 0..assets {
                securities.push_str(&format!(
                    "S-{loan}-{seq},{loan},{seq},ASSET,Asset {a} of {loan},,{}\n",
                    50 + a * 10
                ));
                seq += 1;
            }
            expected.push((loan, usize::from(guarantee), assets));
        }
    }
    std::fs::write(dir.join("clients.csv"), clients).unwrap();
    std::fs::write(dir.join("deposits.csv"), deposits).unwrap();
    std::fs::write(dir.join("loans.csv"), loans).unwrap();
    std::fs::write(dir.join("securities.csv"), securities).unwrap();
    std::fs::write(dir.join("plan.yaml"), PLAN).unwrap();
    expected
}

fn total<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no total {name}: {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn securities_migrate_once_under_faults_and_verify_catches_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_plan(dir.path(), PERSONAL);
    let plan = dir.path().join("plan.yaml");
    let plan = plan.to_str().unwrap();
    let guarantors: usize = expected.iter().map(|(_, g, _)| g).sum();
    let assets: usize = expected.iter().map(|(_, _, a)| a).sum();
    assert!(guarantors > 20 && assets > 20);
    let calls = common::validated_step_calls(plan);
    assert_eq!(calls["loan"], expected.len() as u64);

    let run_dir = dir.path().join("run");
    let (sandbox, stats) = common::run_under_faults(plan, &run_dir, "11").await;
    assert_eq!(stats["loans"], expected.len() as u64, "{stats}");
    assert_eq!(stats["loan_guarantors"], guarantors as u64, "{stats}");
    assert_eq!(stats["loan_assets"], assets as u64, "{stats}");
    let api = sandbox.api();
    for (loan, g, a) in &expected {
        let read = api
            .get(&format!("/loans/{loan}?detailsLevel=FULL"))
            .await
            .body;
        let count = |list: &str| read.get(list).and_then(Value::as_array).map_or(0, Vec::len);
        assert_eq!((count("guarantors"), count("assets")), (*g, *a), "{read}");
        if *g == 1 {
            // The holder, guaranteeing with their own deposit.
            let deposit = api.get(&format!("/deposits/DP-{}", &loan[3..5])).await.body;
            assert_eq!(
                read["guarantors"][0]["guarantorKey"],
                read["accountHolderKey"]
            );
            assert_eq!(
                read["guarantors"][0]["depositAccountKey"],
                deposit["encodedKey"]
            );
        }
    }

    let (code, report) = common::verify(&run_dir);
    assert_eq!(code, 0, "{}", report["mismatches"]);
    for (name, count) in [("loan guarantors", guarantors), ("loan assets", assets)] {
        let t = total(&report, name);
        assert_eq!(t["expected"], count.to_string(), "{report}");
        assert_eq!(t["found"], count.to_string(), "{report}");
    }
    assert_eq!(total(&report, "loan guarantee amounts")["difference"], "0");

    // Changed behind the tool's back: a guarantee's amount and an asset's name.
    let (guaranteed, _, _) = expected.iter().find(|(_, g, a)| *g == 1 && *a > 0).unwrap();
    let http = reqwest::Client::new();
    for change in [
        json!({ "action": "set_security", "loan": guaranteed, "list": "guarantors",
                "field": "amount", "value": 1 }),
        json!({ "action": "set_security", "loan": guaranteed, "list": "assets",
                "field": "assetName", "value": "Swapped" }),
    ] {
        let answer = http
            .post(format!("{}/_sandbox/tamper", sandbox.origin))
            .json(&change)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{change}");
    }
    let (code, report) = common::verify(&run_dir);
    assert_eq!(code, 1, "{report}");
    let found = common::mismatches(&report);
    let entity = format!("loan {guaranteed}");
    assert_eq!(
        found,
        vec![
            (entity.clone(), "guarantors[0].amount".into(), "1".into()),
            (entity, "assets[0].assetName".into(), "Swapped".into()),
        ],
        "{report}"
    );
}

/// The test plan's loans on `product`, in the strict tenant's zone, through `plan validate
/// --target`: its exit code and report.
fn validate_on(sandbox: &Sandbox, dir: &std::path::Path, product: &str) -> (Option<i32>, String) {
    write_plan(dir, product);
    let plan = dir.join("plan.yaml");
    let text = std::fs::read_to_string(&plan)
        .unwrap()
        .replace("timezone: \"+00:00\"", "timezone: Europe/Lisbon");
    std::fs::write(&plan, text).unwrap();
    let output = binary()
        .args(["plan", "validate"])
        .arg(&plan)
        .args(["--target", &format!("{}/api", sandbox.origin)])
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

#[test]
fn validate_locates_securities_the_product_refuses_or_that_fall_short() {
    let sandbox = strict();
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = validate_on(&sandbox, dir.path(), MICRO);
    assert_eq!(code, Some(2), "{report}");
    // LN-01-0 (loans.csv line 2): a guarantee, and one asset (n = 1).
    let line = report
        .lines()
        .find(|l| l.contains("GUARANTOR_NOT_ALLOWED_BY_PRODUCT"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        line.contains("loans.csv:2") && line.contains("unit CL-01") && line.contains("`loan`"),
        "{line}"
    );
    assert!(line.contains("product MICRO takes no guarantors"), "{line}");
    assert!(
        report.contains("COLLATERAL_NOT_ALLOWED_BY_PRODUCT"),
        "{report}"
    );

    // On SME-TRANCHE (50% required) the same securities fall short of the approval.
    let (_, report) = validate_on(&sandbox, dir.path(), TRANCHED);
    let line = report
        .lines()
        .find(|l| l.contains("INSUFFICIENT_GUARANTEES"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        line.contains("loans.csv:2") && line.contains("`approve`"),
        "{line}"
    );
    assert!(
        !report.contains("GUARANTOR_NOT_ALLOWED_BY_PRODUCT"),
        "{report}"
    );
}
