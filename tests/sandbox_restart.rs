//! A durable sandbox (`mambu-migrate sandbox --state FILE`), as a rehearsal meets it: the real
//! binary on a loopback port, killed with SIGKILL and started again on the same file and port.
//! What it answers after the restart is what it answered before, byte for byte; its
//! Idempotency-Keys survive, and expire after the profile's retention; and a run of the sample
//! through a kill waits out the restart and migrates every record once.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::{API_KEY, Api, binary, stderr};
use serde_json::{Value, json};

/// A durable sandbox process on a fixed port; killed (SIGKILL) when dropped.
struct Durable {
    child: Child,
    origin: String,
    /// Its `sandbox: state …` line.
    replayed: String,
    /// Kept open: the sandbox writes to both.
    _pipes: (BufReader<ChildStdout>, BufReader<ChildStderr>),
}

impl Durable {
    /// `mambu-migrate sandbox --port PORT --tenant PROFILE --state STATE` (port 0: a free one).
    fn start(profile: &Path, state: &Path, port: u16) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mambu-migrate"))
            .args(["sandbox", "--port", &port.to_string(), "--tenant"])
            .arg(profile)
            .arg("--state")
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the sandbox binary");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut replayed = String::new();
        err.read_line(&mut replayed).unwrap();
        let (out, origin) = common::listening(&mut child);
        Self {
            child,
            origin,
            replayed,
            _pipes: (out, err),
        }
    }

    fn port(&self) -> u16 {
        self.origin.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn api(&self) -> Api {
        Api::new(format!("{}/api", self.origin))
    }

    /// `GET /_sandbox/stats` without the counters of this process's traffic.
    async fn stats(&self) -> Value {
        let mut stats: Value = reqwest::get(format!("{}/_sandbox/stats", self.origin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats.as_object_mut().unwrap().remove("requests");
        stats["bulks"].as_object_mut().unwrap().remove("polls");
        stats
    }

    /// SIGKILL, and waits for it to be gone.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The built-in tenant (fixtures/tenants/lenient.yaml), its user taking API_KEY, with
/// `extra` YAML appended; written into `dir`.
fn lenient(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/tenants/lenient.yaml"
    ))
    .unwrap()
    .replace("apiKey: sandbox-api-key", &format!("apiKey: {API_KEY}"));
    let path = dir.join("tenant.yaml");
    std::fs::write(&path, format!("{text}\n{extra}\n")).unwrap();
    path
}

/// Every answer of `paths`, byte for byte as sent.
async fn answers(api: &Api, paths: &[String]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for path in paths {
        let answer = api
            .http
            .get(format!("{}{path}", api.base))
            .header("apiKey", API_KEY)
            .header("Accept", common::V2)
            .send()
            .await
            .unwrap();
        out.push((answer.status().as_u16(), answer.text().await.unwrap()));
    }
    out
}

const KEY: &str = "0b6c1e52-6f0e-4d8e-9d43-5c2f1a7e9b10";

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_sandbox_answers_after_its_restart_what_it_answered_before() {
    let dir = tempfile::tempdir().unwrap();
    let profile = lenient(dir.path(), "");
    let state = dir.path().join("tenant.db");
    let sandbox = Durable::start(&profile, &state, 0);
    assert!(
        sandbox.replayed.contains(" 0 operations replayed"),
        "{}",
        sandbox.replayed
    );
    let api = sandbox.api();
    let (holder, loan) = common::active_loan(&api, "C-1", "L-1", "1200.00").await;
    let repaid = api
        .post(
            &format!("/loans/{loan}/repayment-transactions"),
            json!({ "amount": 100, "valueDate": "2024-02-15T00:00:00+00:00", "externalId": "R-1" }),
        )
        .await;
    assert_eq!(repaid.status, 201, "{repaid:?}");
    // An error moves nothing an answer shows, but is logged all the same.
    let refused = api
        .post(
            "/clients",
            json!({ "id": "C-1", "firstName": "A", "lastName": "B" }),
        )
        .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    let keyed = api
        .post_keyed(
            "/clients",
            json!({ "id": "C-2", "firstName": "Grace", "lastName": "Hopper" }),
            KEY,
        )
        .await;
    assert_eq!(keyed.status, 201, "{keyed:?}");
    let paths = [
        "/clients/C-1".to_owned(),
        format!("/clients/{holder}?detailsLevel=FULL"),
        "/clients/C-2".to_owned(),
        format!("/loans/{loan}?detailsLevel=FULL"),
        format!("/loans/{loan}/schedule"),
        format!("/loans/{loan}/transactions"),
    ];
    let before = answers(&api, &paths).await;
    let stats = sandbox.stats().await;
    let port = sandbox.port();
    sandbox.kill();

    let sandbox = Durable::start(&profile, &state, port);
    assert!(
        sandbox.replayed.contains(" 7 operations replayed")
            && sandbox.replayed.contains(" 1 idempotency keys kept"),
        "{}",
        sandbox.replayed
    );
    let api = sandbox.api();
    assert_eq!(answers(&api, &paths).await, before);
    assert_eq!(sandbox.stats().await, stats);
    // The key's answer survives: its replay answers it again and creates nothing.
    let replayed = api
        .post_keyed(
            "/clients",
            json!({ "id": "C-2", "firstName": "Grace", "lastName": "Hopper" }),
            KEY,
        )
        .await;
    assert_eq!(
        (replayed.status, &replayed.body),
        (keyed.status, &keyed.body)
    );
    assert_eq!(sandbox.stats().await, stats);
    // The next key and id go on from where the killed sandbox was.
    let next = api
        .post(
            "/clients",
            json!({ "firstName": "Alan", "lastName": "Turing" }),
        )
        .await;
    assert_eq!(next.status, 201, "{next:?}");
    assert!(next.key() > keyed.key(), "{next:?} after {keyed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_older_than_the_retention_is_a_new_request_before_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let profile = lenient(dir.path(), "idempotencyKeyRetention: 2s");
    let state = dir.path().join("tenant.db");
    let sandbox = Durable::start(&profile, &state, 0);
    let api = sandbox.api();
    let client = json!({ "id": "C-1", "firstName": "Grace", "lastName": "Hopper" });
    let first = api.post_keyed("/clients", client.clone(), KEY).await;
    assert_eq!(first.status, 201, "{first:?}");
    let again = api.post_keyed("/clients", client.clone(), KEY).await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Expired: a new request, which the id in use catches.
    let expired = api.post_keyed("/clients", client.clone(), KEY).await;
    assert_eq!(
        (expired.status.as_u16(), expired.reason()),
        (400, "CLIENT_ID_ALREADY_IN_USE"),
        "{expired:?}"
    );
    // Stored again under the same key, then aged past the retention while the sandbox is down.
    let other = json!({ "id": "C-2", "firstName": "Alan", "lastName": "Turing" });
    let second = api.post_keyed("/clients", other.clone(), KEY).await;
    assert_eq!(second.status, 201, "{second:?}");
    let port = sandbox.port();
    sandbox.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let sandbox = Durable::start(&profile, &state, port);
    assert!(
        sandbox.replayed.contains(" 0 idempotency keys kept"),
        "{}",
        sandbox.replayed
    );
    let after = sandbox.api().post_keyed("/clients", other, KEY).await;
    assert_eq!(after.reason(), "CLIENT_ID_ALREADY_IN_USE", "{after:?}");
    assert_eq!(sandbox.stats().await["clients"], 2);
}

#[test]
fn a_state_file_of_another_profile_or_not_ours_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let profile = lenient(dir.path(), "");
    let state = dir.path().join("tenant.db");
    drop(Durable::start(&profile, &state, 0));
    let strict = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tenants/strict.yaml");
    let not_ours = dir.path().join("notes.txt");
    std::fs::write(&not_ours, "a bank's notes, not a database\n".repeat(200)).unwrap();
    for (profile, state, says) in [
        (
            Path::new(strict),
            &state,
            "was written for another tenant profile",
        ),
        (profile.as_path(), &not_ours, "is not a sandbox state file"),
    ] {
        let output = binary()
            .args(["sandbox", "--port", "0", "--tenant"])
            .arg(profile)
            .arg("--state")
            .arg(state)
            .output()
            .unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    // Refused files are left as they were.
    assert_eq!(
        std::fs::read_to_string(&not_ours).unwrap(),
        "a bank's notes, not a database\n".repeat(200)
    );
}

/// The sample plan (its strict tenant, the migration user's key API_KEY) with calls that wait
/// out an outage for up to two minutes.
fn sample_plan(dir: &Path) -> String {
    common::sample_plan_with(
        dir,
        &[(
            "max_attempts: 8, initial_backoff_ms: 250, max_backoff_ms: 30000",
            "max_attempts: 4, initial_backoff_ms: 50, max_backoff_ms: 200, \
             outage_wait_seconds: 120",
        )],
    )
    .display()
    .to_string()
}

/// What a migrated tenant holds, without what depends on timing (how items were batched
/// into bulks).
fn holdings(stats: &Value) -> Value {
    let mut held = stats.clone();
    held.as_object_mut().unwrap().remove("bulks");
    held
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_through_a_killed_sandbox_migrates_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("strict.yaml");
    std::fs::write(&profile, common::strict_profile()).unwrap();
    let plan = sample_plan(dir.path());

    // The sample without a kill, for what it must hold.
    let reference = common::Sandbox::strict(&[]);
    let reference_run = dir.path().join("reference");
    let output = common::run(&reference, &plan, &reference_run, &["--rate", "1000"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let mut expected = reference.stats().await;
    expected.as_object_mut().unwrap().remove("requests");
    drop(reference);

    let state = dir.path().join("tenant.db");
    let sandbox = Durable::start(&profile, &state, 0);
    let port = sandbox.port();
    let run_dir = dir.path().join("run");
    let run = binary()
        .args(["run", &plan, "--target", &format!("{}/api", sandbox.origin)])
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--no-progress", "--rate", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = std::time::Instant::now();
    while sandbox.stats().await["clients"].as_u64().unwrap() < 60 {
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sandbox.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sandbox = Durable::start(&profile, &state, port);
    assert!(
        !sandbox.replayed.contains(" 0 operations"),
        "{}",
        sandbox.replayed
    );
    let output = run.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(err.contains(" 0 failed"), "{err}");
    // The kill was met mid-run, as an outage the run waited out.
    let report = std::fs::read_to_string(run_dir.join("report.json")).unwrap();
    let report: Value = serde_json::from_str(&report).unwrap();
    let kinds: Vec<&str> = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"outage") && kinds.contains(&"outage over"),
        "{kinds:?}"
    );
    let stats = sandbox.stats().await;
    assert_eq!(stats["duplicates"]["total"], 0, "{stats}");
    assert_eq!(holdings(&stats), holdings(&expected));
    common::verified(&run_dir);
}
