//! Shared test harness: the real `mambu-migrate sandbox` binary on a free loopback port, and a
//! small Mambu API caller over reqwest.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const API_KEY: &str = "test-key-5c1f0b7e";
pub const V2: &str = "application/vnd.mambu.v2+json";
/// The default products' encodedKeys (see src/sandbox/products.rs).
pub const PERSONAL_LOAN: &str = "8a19c0de00000000000000000000a001";
pub const MICRO_LOAN: &str = "8a19c0de00000000000000000000a003";
pub const CURRENT_ACCOUNT: &str = "8a19c0de00000000000000000000d001";

/// The approving user's API key in the sample's tenant (fixtures/tenants/strict.yaml), which
/// [`binary`] puts in `MAMBU_APPROVER_API_KEY`.
pub const APPROVER_KEY: &str = "strict-approver-api-key";

/// fixtures/tenants/strict.yaml with its `migration` user's API key replaced by [`API_KEY`].
pub fn strict_profile() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/tenants/strict.yaml"
    ))
    .unwrap();
    assert!(text.contains("apiKey: strict-migration-api-key"));
    text.replace(
        "apiKey: strict-migration-api-key",
        &format!("apiKey: {API_KEY}"),
    )
}

/// A sandbox process; killed when dropped.
pub struct Sandbox {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    /// The tenant profile written for it, if any.
    _profile: Option<tempfile::TempDir>,
}

impl Sandbox {
    /// Starts `mambu-migrate sandbox --port 0 --api-key API_KEY <extra>` (the built-in lenient
    /// tenant) and waits for its `listening on` line.
    pub fn start(extra: &[&str]) -> Self {
        let mut args = vec!["--api-key", API_KEY];
        args.extend_from_slice(extra);
        Self::spawn(&args, None)
    }

    /// Starts the sample's tenant, fixtures/tenants/strict.yaml (Lisbon, 60 branches, four-eyes,
    /// predefined fees, ID documents), its `migration` user taking API_KEY and its `approver`
    /// [`APPROVER_KEY`], with `extra` arguments.
    pub fn strict(extra: &[&str]) -> Self {
        Self::tenant(&strict_profile(), extra)
    }

    /// Starts a sandbox serving the tenant profile `text` (YAML), with `extra` arguments.
    pub fn tenant(text: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("tenant.yaml");
        std::fs::write(&profile, text).unwrap();
        let mut args = vec!["--tenant", profile.to_str().unwrap()];
        args.extend_from_slice(extra);
        Self::spawn(&args, Some(dir))
    }

    fn spawn(args: &[&str], profile: Option<tempfile::TempDir>) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mambu-migrate"))
            .args(["sandbox", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the sandbox binary");
        let (stdout, origin) = listening(&mut child);
        Self {
            child,
            _stdout: stdout,
            origin,
            _profile: profile,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        self.child.wait().expect("waiting for the sandbox")
    }

    pub fn api(&self) -> Api {
        Api::new(format!("{}/api", self.origin))
    }

    /// Replaces the sandbox's faults (`PUT /_sandbox/faults`, the JSON of `Faults`).
    pub async fn set_faults(&self, body: &'static str) {
        let answer = reqwest::Client::new()
            .put(format!("{}/_sandbox/faults", self.origin))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }

    /// Changes the tenant behind the API's back (`POST /_sandbox/tamper`); panics if refused.
    pub async fn tamper(&self, body: Value) -> Value {
        let answer = reqwest::Client::new()
            .post(format!("{}/_sandbox/tamper", self.origin))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "tamper {body}: {answer:?}");
        answer.json().await.unwrap()
    }

    pub async fn stats(&self) -> Value {
        reqwest::get(format!("{}/_sandbox/stats", self.origin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A sandbox process's stdout, and the origin its first line (`listening on …`) names.
pub fn listening(child: &mut Child) -> (BufReader<ChildStdout>, String) {
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("reading the sandbox's first line");
    let origin = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    (stdout, origin)
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The first v2 error's reason, or the v1 returnStatus.
    pub fn reason(&self) -> &str {
        self.body["errors"][0]["errorReason"]
            .as_str()
            .or_else(|| self.body["returnStatus"].as_str())
            .unwrap_or("")
    }
    pub fn code(&self) -> i64 {
        self.body["errors"][0]["errorCode"]
            .as_i64()
            .or_else(|| self.body["returnCode"].as_i64())
            .unwrap_or(-1)
    }
    pub fn key(&self) -> String {
        self.body["encodedKey"]
            .as_str()
            .unwrap_or_else(|| panic!("no encodedKey in {self:?}"))
            .to_owned()
    }
}

/// Calls the Mambu API with the v2 Accept header and the API key (or basic auth).
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub basic: Option<(String, String)>,
    pub api_key: Option<String>,
    pub accept_v2: bool,
}

impl Api {
    pub fn new(base: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base,
            basic: None,
            api_key: Some(API_KEY.into()),
            accept_v2: true,
        }
    }

    pub fn with_basic(mut self, user: &str, password: &str) -> Self {
        self.basic = Some((user.into(), password.into()));
        self.api_key = None;
        self
    }

    pub fn without_accept(mut self) -> Self {
        self.accept_v2 = false;
        self
    }

    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.into());
        self
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if self.accept_v2 {
            request = request.header("Accept", V2);
        }
        if let Some(key) = &self.api_key {
            request = request.header("apiKey", key);
        }
        if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(&body), None)
            .await
            .expect("POST")
    }

    pub async fn post_keyed(&self, path: &str, body: Value, key: &str) -> Answer {
        self.send(reqwest::Method::POST, path, Some(&body), Some(key))
            .await
            .expect("POST")
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::PUT, path, Some(&body), None)
            .await
            .expect("PUT")
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None, None)
            .await
            .expect("GET")
    }

    /// The v1 settlement link: no v2 Accept header, no body.
    pub async fn link(&self, loan: &str, deposit: &str) -> Answer {
        let v1 = Api {
            accept_v2: false,
            ..self.clone()
        };
        v1.send(
            reqwest::Method::POST,
            &format!("/loans/{loan}/settlementAccounts/{deposit}"),
            None,
            None,
        )
        .await
        .expect("link")
    }
}

/// A JSON body from text, so that decimals keep their digits.
pub fn body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad test body {text}: {e}"))
}

/// Creates a client, an approved and disbursed personal loan of 3 installments, and returns
/// (client key, loan id).
pub async fn active_loan(
    api: &Api,
    client_id: &str,
    loan_id: &str,
    amount: &str,
) -> (String, String) {
    let client = api
        .post(
            "/clients",
            serde_json::json!({ "id": client_id, "firstName": "Ada", "lastName": "Lovelace" }),
        )
        .await;
    assert_eq!(client.status, 201, "{client:?}");
    let holder = client.key();
    let loan = api
        .post(
            "/loans",
            body(&format!(
                r#"{{"id":"{loan_id}","accountHolderKey":"{holder}","accountHolderType":"CLIENT","productTypeKey":"{PERSONAL_LOAN}","loanAmount":{amount},"interestSettings":{{"interestRate":12}},"scheduleSettings":{{"gracePeriod":0,"repaymentInstallments":3}}}}"#
            )),
        )
        .await;
    assert_eq!(loan.status, 201, "{loan:?}");
    let approved = api
        .post(
            &format!("/loans/{loan_id}:changeState"),
            serde_json::json!({ "action": "APPROVE" }),
        )
        .await;
    assert_eq!(approved.status, 200, "{approved:?}");
    let disbursed = api
        .post(
            &format!("/loans/{loan_id}/disbursement-transactions"),
            serde_json::json!({ "valueDate": "2024-01-15T00:00:00+00:00" }),
        )
        .await;
    assert_eq!(disbursed.status, 201, "{disbursed:?}");
    (holder, loan_id.to_owned())
}

/// The rows of a CSV file as maps from column to cell.
pub fn rows(path: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            headers
                .iter()
                .zip(r.unwrap().iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// plans/sample.yaml written into `dir` with its fixtures' paths made absolute and each
/// `(from, to)` replaced (each `from` must be there); returns the new plan's path.
pub fn sample_plan_with(dir: &std::path::Path, replace: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string("plans/sample.yaml")
        .unwrap()
        .replace(
            "../fixtures/",
            &format!("{}/fixtures/", env!("CARGO_MANIFEST_DIR")),
        );
    for (from, to) in replace {
        assert!(
            text.contains(from),
            "plans/sample.yaml no longer has `{from}`"
        );
        text = text.replace(from, to);
    }
    let plan = dir.join("plan.yaml");
    std::fs::write(&plan, text).unwrap();
    plan
}

/// The folder of tenant records (`MAMBU_MIGRATE_TENANT_RECORDS`) [`binary`] gives each
/// command: its own, so that tests sharing a plan's name and a tenant's never compare with each
/// other's records (tests/tenant_drift.rs removes it to use the records beside the runs).
pub const TENANT_RECORDS: &str = "MAMBU_MIGRATE_TENANT_RECORDS";

pub fn own_records() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("tenant-records")
        .join(format!("{}-{n}", std::process::id()))
}

/// `mambu-migrate` with the sandbox's API key (and the strict tenant's approver's) in its
/// environment, and a tenant records folder of its own.
pub fn binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mambu-migrate"));
    command
        .env(TENANT_RECORDS, own_records())
        .env("MAMBU_API_KEY", API_KEY)
        .env("MAMBU_APPROVER_API_KEY", APPROVER_KEY)
        .env_remove("MAMBU_USERNAME")
        .env_remove("MAMBU_PASSWORD");
    command
}

pub fn run_args(
    sandbox: &Sandbox,
    plan: &str,
    run_dir: &std::path::Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "run".into(),
        plan.into(),
        "--target".into(),
        format!("{}/api", sandbox.origin),
        "--run-dir".into(),
        run_dir.display().to_string(),
        "--no-progress".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

pub fn run(
    sandbox: &Sandbox,
    plan: &str,
    run_dir: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    binary()
        .args(run_args(sandbox, plan, run_dir, extra))
        .output()
        .expect("running mambu-migrate")
}

pub fn spawn(
    sandbox: &Sandbox,
    plan: &str,
    run_dir: &std::path::Path,
    extra: &[&str],
) -> std::process::Child {
    binary()
        .args(run_args(sandbox, plan, run_dir, extra))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting mambu-migrate")
}

pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An amount above every product's maximum.
pub const TOO_MUCH: &str = "9999999.00";

/// fixtures/sample copied into `dir/data` with the `broken` loans' amounts above their
/// product's limit, and the sample plan reading it at `dir/plan.yaml`. Returns the plan and the
/// broken loans' true amounts.
pub fn broken_sample(
    dir: &std::path::Path,
    broken: &[&str],
) -> (
    std::path::PathBuf,
    std::collections::HashMap<String, String>,
) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for file in [
        "clients",
        "deposits",
        "schedules",
        "transactions",
        "deposit_transactions",
        "deposit_balances",
        "tranches",
        "loan_closures",
        "securities",
    ] {
        std::fs::copy(
            format!("fixtures/sample/{file}.csv"),
            data.join(format!("{file}.csv")),
        )
        .unwrap();
    }
    let original: std::collections::HashMap<String, String> = rows("fixtures/sample/loans.csv")
        .into_iter()
        .filter(|l| broken.contains(&l["loan_id"].as_str()))
        .map(|l| {
            assert_eq!(
                l["custom_schedule"], "N",
                "{} must not have a custom schedule",
                l["loan_id"]
            );
            (l["loan_id"].clone(), l["amount"].clone())
        })
        .collect();
    let mut loans = csv::Reader::from_path("fixtures/sample/loans.csv").unwrap();
    let headers = loans.headers().unwrap().clone();
    let amount = headers.iter().position(|h| h == "amount").unwrap();
    let mut out = csv::Writer::from_path(data.join("loans.csv")).unwrap();
    out.write_record(&headers).unwrap();
    for record in loans.records() {
        let mut record: Vec<String> = record.unwrap().iter().map(str::to_owned).collect();
        if broken.contains(&record[0].as_str()) {
            record[amount] = TOO_MUCH.into();
        }
        out.write_record(&record).unwrap();
    }
    out.flush().unwrap();
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        std::fs::read_to_string("plans/sample.yaml")
            .unwrap()
            .replace("../fixtures/sample/", "data/")
            .replace(
                "../fixtures/",
                &format!("{}/fixtures/", env!("CARGO_MANIFEST_DIR")),
            ),
    )
    .unwrap();
    (plan, original)
}

/// A plan migrating clients with their deposit accounts and each account's history of
/// deposits and withdrawals (`deposit`, `withdrawal` actions), over the CSVs
/// [`deposit_history_plan`] writes beside it.
pub const DEPOSIT_PLAN: &str = r#"version: 1
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

/// One expected deposit transaction: (deposit id, kind, amount).
pub type DepositRow = (String, &'static str, rust_decimal::Decimal);

/// 30 clients, one or two deposits each; each deposit an opening deposit at its opening date
/// and a history of deposits and withdrawals, never below zero, half of them with an
/// externalId (the others get the run's). Writes clients.csv, deposits.csv,
/// deposit_transactions.csv and plan.yaml into `dir`; returns the plan's path and the
/// transactions.
pub fn deposit_history_plan(dir: &std::path::Path) -> (std::path::PathBuf, Vec<DepositRow>) {
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
            let mut balance = rust_decimal::Decimal::ZERO;
            for i in 0..(3 + (c + d) % 4) {
                n += 1;
                let opening = i == 0;
                let kind = if opening || i % 3 != 2 {
                    "DEPOSIT"
                } else {
                    "WITHDRAWAL"
                };
                let amount = if kind == "DEPOSIT" {
                    rust_decimal::Decimal::new(i64::from(10_000 + 137 * n), 2)
                } else {
                    (balance / rust_decimal::Decimal::from(3)).round_dp(2)
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
    std::fs::write(&plan, DEPOSIT_PLAN).unwrap();
    (plan, expected)
}

/// Runs `plan` into `run_dir` and kills it (SIGKILL) after each of `waits_ms` in turn, each run
/// after the first resuming (`extra` then `--resume`); stops early once a run ends by itself.
/// The caller then resumes it to its end.
pub async fn kill_at_moments(
    sandbox: &Sandbox,
    plan: &str,
    run_dir: &std::path::Path,
    extra: &[&str],
    waits_ms: &[u64],
) {
    for (i, wait_ms) in waits_ms.iter().enumerate() {
        let mut args = extra.to_vec();
        if i > 0 {
            args.push("--resume");
        }
        let mut child = spawn(sandbox, plan, run_dir, &args);
        tokio::time::sleep(std::time::Duration::from_millis(*wait_ms)).await;
        // A first run killed before it made its checkpoint leaves nothing to resume: on a slow
        // machine, wait for the checkpoint before the first kill.
        while !run_dir.join("checkpoint.db").exists() && child.try_wait().unwrap().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
    }
}

/// `plan validate PLAN` passes, and `plan estimate PLAN` counts each step's calls: step id →
/// calls.
pub fn validated_step_calls(plan: &str) -> std::collections::HashMap<String, u64> {
    let checked = binary().args(["plan", "validate", plan]).output().unwrap();
    assert_eq!(checked.status.code(), Some(0), "{}", stderr(&checked));
    let estimated = binary()
        .args(["plan", "estimate", plan, "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(estimated.status.code(), Some(0), "{}", stderr(&estimated));
    let estimate: Value = serde_json::from_slice(&estimated.stdout).unwrap();
    estimate["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["calls"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Runs `plan` into `run_dir` against the built-in tenant with 5% faults, 2% lost replies and
/// Idempotency-Keys ignored (`seed`): it must finish (exit 0) with faults injected, replies lost
/// and nothing created twice. Returns the sandbox, its faults cleared for reading back, and its
/// stats.
pub async fn run_under_faults(
    plan: &str,
    run_dir: &std::path::Path,
    seed: &str,
) -> (Sandbox, Value) {
    finish_under_faults(Sandbox::start(&faults(seed)), plan, run_dir, seed).await
}

/// [`run_under_faults`] against the sample's strict tenant ([`Sandbox::strict`]).
pub async fn run_strict_under_faults(
    plan: &str,
    run_dir: &std::path::Path,
    seed: &str,
) -> (Sandbox, Value) {
    finish_under_faults(Sandbox::strict(&faults(seed)), plan, run_dir, seed).await
}

/// A sandbox's arguments for 5% faults, 2% lost replies and Idempotency-Keys ignored.
fn faults(seed: &str) -> [&str; 8] {
    [
        "--fault-rate",
        "0.05",
        "--lost-reply-rate",
        "0.02",
        "--seed",
        seed,
        "--idempotency",
        "ignore",
    ]
}

async fn finish_under_faults(
    sandbox: Sandbox,
    plan: &str,
    run_dir: &std::path::Path,
    seed: &str,
) -> (Sandbox, Value) {
    let output = run(&sandbox, plan, run_dir, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "seed {seed}: {}\n{}",
        stderr(&output),
        std::fs::read_to_string(run_dir.join("errors.csv")).unwrap_or_default()
    );
    sandbox.set_faults("{}").await;
    let stats = sandbox.stats().await;
    assert!(
        stats["requests"]["lost_replies"].as_u64().unwrap() > 0
            && stats["requests"]["injected_faults"].as_u64().unwrap() > 0,
        "seed {seed}: faults were injected: {stats}"
    );
    assert_eq!(stats["duplicates"]["total"], 0, "seed {seed}: {stats}");
    (sandbox, stats)
}

/// `verify RUN_DIR --format json`: its exit code and report.
#[allow(dead_code)]
pub fn verify(run_dir: &std::path::Path) -> (i32, Value) {
    let output = binary()
        .arg("verify")
        .arg(run_dir)
        .args(["--format", "json", "--no-progress"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", stderr(&output)));
    (output.status.code().unwrap(), report)
}

/// A verify report's control total: (expected, found), as written.
#[allow(dead_code)]
pub fn total(report: &Value, name: &str) -> (String, String) {
    let t = report["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no total {name}: {report}"));
    (
        t["expected"].as_str().unwrap().to_owned(),
        t["found"].as_str().unwrap().to_owned(),
    )
}

/// A verify report's mismatches as (entity, field, found), in the report's order.
#[allow(dead_code)]
pub fn mismatches(report: &Value) -> Vec<(String, String, String)> {
    report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["entity"].as_str().unwrap().to_owned(),
                m["field"].as_str().unwrap().to_owned(),
                m["found"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `mambu-migrate verify RUN_DIR`: it must find nothing amiss (exit 0, no mismatch). Returns
/// verify.json.
#[allow(dead_code)]
pub fn verified(run_dir: &std::path::Path) -> Value {
    let (code, report) = verify(run_dir);
    assert_eq!(code, 0, "{}", report["mismatches"]);
    assert_eq!(report["mismatches"], serde_json::json!([]), "{report}");
    report
}

/// `rollback RUN_DIR …`; panics, saying what it printed, unless it exits with `code`.
#[allow(dead_code)]
pub fn rollback(run_dir: &std::path::Path, extra: &[&str], code: i32) -> std::process::Output {
    let out = binary()
        .arg("rollback")
        .arg(run_dir)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

#[allow(dead_code)]
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The strict tenant (fixtures/tenants/strict.yaml, [`strict_profile`]) with its `migration`
/// user also allowed what a rollback sends (issue 19): adjustments, deletes, undoing a
/// write-off.
#[allow(dead_code)]
pub fn strict_profile_for_rollback() -> String {
    let text = strict_profile();
    let last = "REJECT_LOANS, WITHDRAW_LOAN_ACCOUNTS]";
    assert!(text.contains(last));
    text.replace(
        last,
        "REJECT_LOANS, WITHDRAW_LOAN_ACCOUNTS, APPLY_LOAN_ADJUSTMENTS, APPLY_SAVINGS_ADJUSTMENTS, DELETE_LOAN_ACCOUNT, DELETE_SAVINGS_ACCOUNT, DELETE_CLIENTS, DELETE_GROUP, REVERSE_LOAN_ACCOUNT_WRITE_OFF]",
    )
}

/// `npm install PACKAGE` into `prefix` (its `node_modules/`), from the npm registry; `why`
/// says what needs it when npm is missing.
pub fn npm_install(prefix: &std::path::Path, package: &str, why: &str) {
    std::fs::create_dir_all(prefix).unwrap();
    let status = std::process::Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel",
            "error",
            "--prefix",
        ])
        .arg(prefix)
        .arg(package)
        .status()
        .unwrap_or_else(|e| panic!("running npm ({e}): Node.js with npm is needed {why}"));
    assert!(status.success(), "npm install {package} failed");
}
