//! Contract test against Mambu's own specs: the sandbox sits behind Stoplight Prism in
//! `proxy --errors` mode, loaded with Mambu's v2 Swagger (tests/contract/). Every request the
//! test sends and every answer the sandbox gives must pass it; and a body the spec rejects for a
//! missing required field is rejected by the sandbox too.
//!
//! Prism comes from the npm registry: `PRISM_BIN` names an installed one; otherwise it is
//! installed once into cargo's target tmp dir (about 15 s).

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::{Answer, Api, CURRENT_ACCOUNT, PERSONAL_LOAN, Sandbox, body};
use serde_json::{Value, json};

const PRISM_PACKAGE: &str = "@stoplight/prism-cli@5.14";

fn prism_bin() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(path) = std::env::var("PRISM_BIN") {
        return PathBuf::from(path);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prism");
    let bin = dir.join("node_modules/.bin/prism");
    if !bin.exists() {
        common::npm_install(&dir, PRISM_PACKAGE, "for the contract test");
    }
    bin
}

/// Prism in proxy mode; its log lines are collected for the violation check.
struct Prism {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    origin: String,
}

impl Prism {
    fn start(upstream: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/contract/mambu-v2-contract.swagger2.json");
        let mut child = Command::new(prism_bin())
            .arg("proxy")
            .arg(&spec)
            .arg(upstream)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--errors"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting prism");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let ready = ready_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("Prism is listening") {
                        let _ = ready.send(());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        if ready_rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = child.kill();
            panic!("prism did not start:\n{}", log.lock().unwrap().join("\n"));
        }
        Self {
            child,
            log,
            origin: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Log lines that report a request or an answer breaking the spec.
    fn violations(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("Violation") || l.contains("terminated with error"))
            .cloned()
            .collect()
    }
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks one exchange's status and that Prism let it through, and keeps it.
fn record(
    exchanges: &mut Vec<(String, Answer)>,
    what: &str,
    answer: Answer,
    status: u16,
) -> Answer {
    assert_passed(what, &answer);
    assert_eq!(answer.status.as_u16(), status, "{what}: {answer:?}");
    exchanges.push((what.to_owned(), answer.clone()));
    answer
}

fn assert_passed(what: &str, answer: &Answer) {
    let problem = answer
        .headers
        .get("content-type")
        .is_some_and(|c| c.to_str().unwrap_or("").contains("problem+json"));
    if problem || answer.status == 422 {
        let problems: Vec<String> = answer.body["validation"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                format!(
                    "{} {}",
                    v["location"],
                    v["message"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(200)
                        .collect::<String>()
                )
            })
            .collect();
        panic!(
            "{what}: Prism refused the exchange ({}):\n{}",
            answer.status,
            problems.join("\n")
        );
    }
}

#[tokio::test]
async fn sandbox_traffic_passes_mambus_spec_and_required_fields_are_enforced_alike() {
    let sandbox = Sandbox::start(&[]);
    let prism = Prism::start(&format!("{}/api", sandbox.origin));
    // Prism serves the spec's paths without the /api base path; its spec knows basic auth only.
    let api = Api::new(prism.origin.clone()).with_basic("sandbox", "sandbox");
    let direct = sandbox.api();

    let mut exchanges: Vec<(String, Answer)> = Vec::new();
    let holder = record(&mut exchanges, "create client", api.post("/clients", json!({ "id": "CL-1", "firstName": "Zoë", "lastName": "Nguyễn", "birthDate": "1980-02-29", "gender": "FEMALE", "emailAddress": "zoe@example.com" })).await, 201).key();
    record(
        &mut exchanges,
        "get client by id",
        api.get("/clients/CL-1").await,
        200,
    );
    record(
        &mut exchanges,
        "get client by key",
        api.get(&format!("/clients/{holder}")).await,
        200,
    );
    record(
        &mut exchanges,
        "duplicate client id",
        api.post(
            "/clients",
            json!({ "id": "CL-1", "firstName": "A", "lastName": "B" }),
        )
        .await,
        400,
    );
    record(
        &mut exchanges,
        "unknown client",
        api.get("/clients/nope").await,
        404,
    );
    record(
        &mut exchanges,
        "wrong password",
        api.clone()
            .with_basic("sandbox", "wrong")
            .get("/clients/CL-1")
            .await,
        401,
    );

    let deposit = record(&mut exchanges, "create deposit", api.post("/deposits", json!({ "id": "DP-1", "accountHolderKey": holder, "accountHolderType": "CLIENT", "name": "Current account", "productTypeKey": CURRENT_ACCOUNT })).await, 201).key();
    record(
        &mut exchanges,
        "approve deposit",
        api.post("/deposits/DP-1:changeState", json!({ "action": "APPROVE" }))
            .await,
        200,
    );
    record(
        &mut exchanges,
        "get deposit",
        api.get(&format!("/deposits/{deposit}")).await,
        200,
    );

    let loan = body(&format!(
        r#"{{"id":"LN-1","accountHolderKey":"{holder}","accountHolderType":"CLIENT","productTypeKey":"{PERSONAL_LOAN}","loanAmount":2400.00,
            "interestSettings":{{"interestRate":9.5}},"scheduleSettings":{{"gracePeriod":0,"repaymentInstallments":4}},
            "disbursementDetails":{{"expectedDisbursementDate":"2024-01-15T00:00:00+00:00","firstRepaymentDate":"2024-02-15T00:00:00+00:00"}}}}"#
    ));
    record(
        &mut exchanges,
        "create loan",
        api.post("/loans", loan.clone()).await,
        201,
    );
    record(
        &mut exchanges,
        "duplicate loan id",
        api.post("/loans", loan).await,
        400,
    );
    record(
        &mut exchanges,
        "get loan",
        api.get("/loans/LN-1").await,
        200,
    );
    record(
        &mut exchanges,
        "approve loan",
        api.post_keyed(
            "/loans/LN-1:changeState",
            json!({ "action": "APPROVE", "notes": "migration" }),
            "6c1f7a3e-2c1b-4a51-9f0e-3b2a1c0d9e88",
        )
        .await,
        200,
    );
    record(
        &mut exchanges,
        "approve loan, replayed key",
        api.post_keyed(
            "/loans/LN-1:changeState",
            json!({ "action": "APPROVE", "notes": "migration" }),
            "6c1f7a3e-2c1b-4a51-9f0e-3b2a1c0d9e88",
        )
        .await,
        200,
    );
    record(
        &mut exchanges,
        "approve loan again",
        api.post("/loans/LN-1:changeState", json!({ "action": "APPROVE" }))
            .await,
        400,
    );
    record(
        &mut exchanges,
        "link settlement account (v1)",
        api.link("LN-1", "DP-1").await,
        200,
    );
    record(
        &mut exchanges,
        "link again (v1)",
        api.link("LN-1", "DP-1").await,
        400,
    );

    let schedule = record(
        &mut exchanges,
        "get schedule",
        api.get("/loans/LN-1/schedule").await,
        200,
    )
    .body;
    let edited: Vec<Value> = schedule["installments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| body(&format!(r#"{{"encodedKey":"{}","dueDate":"{}","principal":{{"amount":{{"due":600.00}}}},"interest":{{"amount":{{"due":11.50}}}}}}"#, i["encodedKey"].as_str().unwrap(), i["dueDate"].as_str().unwrap())))
        .collect();
    record(
        &mut exchanges,
        "edit schedule",
        api.put("/loans/LN-1/schedule", Value::Array(edited.clone()))
            .await,
        200,
    );

    record(&mut exchanges, "disburse", api.post("/loans/LN-1/disbursement-transactions", json!({ "valueDate": "2024-01-15T00:00:00+00:00", "externalId": "DISB-1", "transferDetails": { "linkedAccountId": "DP-1" }, "notes": "migrated" })).await, 201);
    record(&mut exchanges, "fee", api.post("/loans/LN-1/fee-transactions", json!({ "amount": 25.5, "installmentNumber": 4, "valueDate": "2024-01-20T00:00:00+00:00", "externalId": "FEE-1" })).await, 201);
    let repayment = body(
        r#"{"amount":611.50,"valueDate":"2024-02-15T00:00:00+00:00","externalId":"PAY-1","transactionDetails":{"transactionChannelId":"bank"}}"#,
    );
    record(
        &mut exchanges,
        "repayment",
        api.post_keyed(
            "/loans/LN-1/repayment-transactions",
            repayment.clone(),
            "1d7f0e2a-9b8c-4d3e-8f1a-2b3c4d5e6f70",
        )
        .await,
        201,
    );
    record(
        &mut exchanges,
        "repayment, replayed key",
        api.post_keyed(
            "/loans/LN-1/repayment-transactions",
            repayment.clone(),
            "1d7f0e2a-9b8c-4d3e-8f1a-2b3c4d5e6f70",
        )
        .await,
        201,
    );
    record(
        &mut exchanges,
        "repayment, duplicate externalId",
        api.post("/loans/LN-1/repayment-transactions", repayment)
            .await,
        400,
    );
    record(
        &mut exchanges,
        "over-repayment",
        api.post(
            "/loans/LN-1/repayment-transactions",
            json!({ "amount": 999999 }),
        )
        .await,
        400,
    );
    record(
        &mut exchanges,
        "lock",
        api.post(
            "/loans/LN-1/lock-transactions",
            json!({ "lockedOperations": ["APPLY_INTEREST", "APPLY_FEES"], "notes": "dispute" }),
        )
        .await,
        201,
    );
    record(
        &mut exchanges,
        "lock again",
        api.post("/loans/LN-1/lock-transactions", json!({})).await,
        400,
    );
    record(
        &mut exchanges,
        "edit schedule, locked",
        api.put("/loans/LN-1/schedule", Value::Array(edited.clone()))
            .await,
        400,
    );
    record(
        &mut exchanges,
        "unlock",
        api.post(
            "/loans/LN-1/unlock-transactions",
            json!({ "notes": "settled" }),
        )
        .await,
        201,
    );
    record(
        &mut exchanges,
        "list transactions",
        api.get("/loans/LN-1/transactions").await,
        200,
    );
    record(
        &mut exchanges,
        "unknown loan",
        api.get("/loans/nope").await,
        404,
    );

    let forwarded = prism
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("Received forward response"))
        .count();
    assert_eq!(
        forwarded,
        exchanges.len(),
        "every exchange went through Prism to the sandbox"
    );
    let violations = prism.violations();
    assert!(
        violations.is_empty(),
        "Prism found violations in {} exchanges:\n{}",
        exchanges.len(),
        violations.join("\n")
    );

    // Required fields: Prism refuses what the spec refuses; the sandbox must refuse it too.
    let client_body = json!({ "firstName": "A", "lastName": "B" });
    let deposit_body = json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "name": "Savings", "productTypeKey": CURRENT_ACCOUNT });
    let loan_body = json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": PERSONAL_LOAN, "loanAmount": 1000, "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 } });
    let cases: Vec<(&str, Value, &[&str])> = vec![
        ("/clients", client_body, &["firstName", "lastName"]),
        (
            "/deposits",
            deposit_body,
            &[
                "accountHolderKey",
                "accountHolderType",
                "name",
                "productTypeKey",
            ],
        ),
        (
            "/deposits/DP-1:changeState",
            json!({ "action": "LOCK" }),
            &["action"],
        ),
        (
            "/loans",
            loan_body,
            &[
                "accountHolderKey",
                "accountHolderType",
                "loanAmount",
                "productTypeKey",
                "scheduleSettings",
                "scheduleSettings.gracePeriod",
            ],
        ),
        (
            "/loans/LN-1:changeState",
            json!({ "action": "APPROVE" }),
            &["action"],
        ),
        (
            "/loans/LN-1/repayment-transactions",
            json!({ "amount": 1 }),
            &["amount"],
        ),
    ];
    let mut checked = 0;
    for (path, valid, fields) in cases {
        for field in fields {
            let mut broken = valid.clone();
            match field.split_once('.') {
                Some((outer, inner)) => broken[outer].as_object_mut().unwrap().remove(inner),
                None => broken.as_object_mut().unwrap().remove(*field),
            };
            let through_prism = api.post(path, broken.clone()).await;
            assert_eq!(
                through_prism.status, 422,
                "Prism should refuse POST {path} without {field}: {through_prism:?}"
            );
            let to_sandbox = direct.post(path, broken).await;
            assert_eq!(
                to_sandbox.status, 400,
                "the sandbox should refuse POST {path} without {field}: {to_sandbox:?}"
            );
            assert_eq!(
                to_sandbox.reason(),
                "INVALID_PARAMETERS",
                "POST {path} without {field}"
            );
            assert!(
                to_sandbox.body["errors"][0]["errorSource"]
                    .as_str()
                    .unwrap()
                    .contains(field.rsplit('.').next().unwrap()),
                "POST {path} without {field}: {to_sandbox:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 15);
    let empty_schedule = api.put("/loans/LN-1/schedule", json!([])).await;
    assert_eq!(
        empty_schedule.status, 422,
        "the spec wants at least one installment"
    );
    assert_eq!(
        direct.put("/loans/LN-1/schedule", json!([])).await.status,
        400
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_migration_through_prism_has_no_contract_violations() {
    let sandbox = Sandbox::strict(&[]);
    let prism = Prism::start(&format!("{}/api", sandbox.origin));
    let dir = tempfile::tempdir().unwrap();
    // The 2021 spec set has no deposit transactions (POST /deposits/{id}/deposit-transactions,
    // /withdrawal-transactions): Prism answers 404. The sample's savings histories and current
    // account balances are left out here until the contract spec has them.
    let plan = common::sample_plan_with(
        dir.path(),
        &[
            (
                "when: \"deposit_transactions.kind == 'DEPOSIT'\"",
                "when: \"deposit_transactions.kind == 'not in the contract spec'\"",
            ),
            (
                "when: \"deposit_transactions.kind == 'WITHDRAWAL'\"",
                "when: \"deposit_transactions.kind == 'not in the contract spec'\"",
            ),
            (
                "when: \"deposit_balances.balance != '0.00'\"",
                "when: \"deposit_balances.balance == 'not in the contract spec'\"",
            ),
        ],
    );
    // Basic auth, the only scheme in Mambu's spec files; Prism serves the paths without /api.
    let output = Command::new(env!("CARGO_BIN_EXE_mambu-migrate"))
        .args(["run"])
        .arg(&plan)
        .args(["--target", &prism.origin, "--run-dir"])
        .arg(dir.path().join("run"))
        .args(["--rate", "1000", "--concurrency", "16", "--no-progress"])
        .env_remove("MAMBU_API_KEY")
        .env("MAMBU_USERNAME", "migration")
        .env("MAMBU_PASSWORD", "migration-password")
        .env("MAMBU_APPROVER_USERNAME", "approver")
        .env("MAMBU_APPROVER_PASSWORD", "approver-password")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let forwarded = prism
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("Received forward response"))
        .count();
    assert!(
        forwarded > 6000,
        "the migration's calls went through Prism: {forwarded}"
    );
    // The custom field definitions a run reads to record the tenant (`GET /customfieldsets`,
    // `GET /customfields/{id}`) are in none of Mambu's spec files (../shared/mambu-api.md §8
    // "Custom fields"): Prism has no route for them, which is no violation of ours.
    let violations: Vec<String> = prism
        .violations()
        .into_iter()
        .filter(|v| {
            !(v.contains("NO_PATH_MATCHED_ERROR")
                && (v.contains("get /customfieldsets") || v.contains("get /customfields/")))
        })
        .collect();
    assert!(
        violations.is_empty(),
        "Prism found {} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert_eq!(sandbox.stats().await["clients"], 250);
}
