//! A `request` POST as safe as a built-in action: the real binary creates clients through a
//! generic `request` step under lost replies with the sandbox ignoring Idempotency-Keys, the
//! step's declared `adopt` reads back each client a replay is refused for, and every client
//! lands exactly once. With keys honoured, the replays are answered by key (the step sends
//! one). Without `adopt`, `plan validate` flags the step.

mod common;

use std::path::{Path, PathBuf};

use common::{Sandbox, binary, run, stderr};
use mambu_migrate::checkpoint::{Reader, StepStatus};
use mambu_migrate::mambu::CallOutcome;
use serde_json::Value;

const CLIENTS: usize = 200;

const ADOPT: &str =
    "    adopt: { on: [CLIENT_ID_ALREADY_IN_USE], get: \"/clients/{{ clients.client_id }}\" }\n";

/// The plan (with `adopt` or without) and its clients in `dir`.
fn plan(dir: &Path, adopt: bool) -> PathBuf {
    let mut csv = String::from("client_id,first_name,last_name\n");
    for i in 1..=CLIENTS {
        csv.push_str(&format!("RQ-{i:04},Ana{i},Silva\n"));
    }
    std::fs::write(dir.join("clients.csv"), csv).unwrap();
    let text = format!(
        r#"version: 1
name: request-adopt
limits:
  requests_per_second: 2000
  concurrency: 8
  retry: {{ initial_backoff_ms: 10, max_backoff_ms: 100 }}
sources:
  clients: {{ file: clients.csv, key: client_id }}
unit: clients
steps:
  - id: client
    action: request
    method: POST
    path: /clients
    body:
      id: "{{{{ clients.client_id }}}}"
      firstName: "{{{{ clients.first_name }}}}"
      lastName: "{{{{ clients.last_name }}}}"
{}    save: {{ last: lastName }}
  - id: read_back
    action: request
    method: GET
    path: "/clients/{{{{ steps.client.encodedKey }}}}"
    save: {{ id_back: id }}
"#,
        if adopt { ADOPT } else { "" }
    );
    let plan = dir.join(if adopt { "plan.yaml" } else { "unsafe.yaml" });
    std::fs::write(&plan, text).unwrap();
    plan
}

/// Step instances counted by (step, status).
type Steps = Vec<(String, StepStatus, i64)>;

/// Step instances by (step, status), and call attempts by (step, outcome), from the checkpoint.
fn checkpoint(run_dir: &Path) -> (Steps, Vec<(String, CallOutcome)>) {
    let reader = Reader::open(&run_dir.join("checkpoint.db")).unwrap();
    let steps = reader
        .step_counts()
        .unwrap()
        .into_iter()
        .map(|(step, _, status, n)| (step, status, n))
        .collect();
    let calls = reader
        .calls()
        .unwrap()
        .into_iter()
        .map(|c| (c.step_id, c.outcome))
        .collect();
    (steps, calls)
}

fn count(steps: &[(String, StepStatus, i64)], step: &str, status: StepStatus) -> i64 {
    steps
        .iter()
        .filter(|(s, st, _)| s == step && *st == status)
        .map(|(_, _, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn request_posts_with_adopt_create_every_client_once_under_lost_replies_and_ignored_keys() {
    let sandbox = Sandbox::start(&[
        "--lost-reply-rate",
        "0.05",
        "--idempotency",
        "ignore",
        "--seed",
        "18",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), true);
    let run_dir = dir.path().join("run");
    let output = run(&sandbox, plan.to_str().unwrap(), &run_dir, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let stats = sandbox.stats().await;
    assert_eq!(stats["clients"], CLIENTS, "{stats}");
    assert_eq!(stats["duplicates"]["total"], 0, "{stats}");
    assert!(
        stats["requests"]["lost_replies"].as_u64().unwrap() > 0,
        "replies were lost: {stats}"
    );
    let refused = stats["refused_duplicates"]["client_id"].as_u64().unwrap();
    assert!(refused > 0, "replays were refused by id, not keys: {stats}");

    // Every refusal was adopted, and recorded as built-in adoption is.
    let (steps, calls) = checkpoint(&run_dir);
    let adopted = count(&steps, "client", StepStatus::Adopted);
    assert_eq!(adopted as u64, refused, "{steps:?}");
    assert_eq!(
        adopted + count(&steps, "client", StepStatus::Done),
        CLIENTS as i64,
        "{steps:?}"
    );
    assert_eq!(
        count(&steps, "read_back", StepStatus::Done),
        CLIENTS as i64,
        "the adopted clients' encodedKeys were taken from what the GET read: {steps:?}"
    );
    let adopted_calls = calls
        .iter()
        .filter(|(s, o)| s == "client" && *o == CallOutcome::Adopted)
        .count();
    assert_eq!(adopted_calls as u64, refused, "{calls:?}");
    assert!(
        !calls.iter().any(|(_, o)| *o == CallOutcome::Failed),
        "{calls:?}"
    );
    println!(
        "{CLIENTS} clients, {} lost replies, {refused} refused and adopted",
        stats["requests"]["lost_replies"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_posts_carry_an_idempotency_key() {
    // Keys honoured: a replay after a lost reply is answered by its key, never refused by id.
    let sandbox = Sandbox::start(&["--lost-reply-rate", "0.05", "--seed", "18"]);
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), true);
    let output = run(
        &sandbox,
        plan.to_str().unwrap(),
        &dir.path().join("run"),
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stats = sandbox.stats().await;
    assert_eq!(stats["clients"], CLIENTS, "{stats}");
    assert_eq!(stats["duplicates"]["total"], 0, "{stats}");
    assert!(
        stats["requests"]["idempotent_replays"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(stats["refused_duplicates"]["client_id"], 0, "{stats}");

    // The estimate's sample call shows the header on the POST, not on the GET.
    let output = binary()
        .args([
            "plan",
            "estimate",
            plan.to_str().unwrap(),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let estimate: Value = serde_json::from_slice(&output.stdout).unwrap();
    let headers = |step: &str| -> Vec<String> {
        let sample = estimate["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == step)
            .unwrap_or_else(|| panic!("no sample of {step}: {estimate}"));
        sample["requests"][0]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(headers("client").contains(&"Idempotency-Key".to_owned()));
    assert!(!headers("read_back").contains(&"Idempotency-Key".to_owned()));
}

#[test]
fn plan_validate_flags_a_request_post_without_adopt() {
    let dir = tempfile::tempdir().unwrap();
    let validate = |plan: &Path| {
        let output = binary()
            .args(["plan", "validate", plan.to_str().unwrap()])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
        )
    };
    let (code, report) = validate(&plan(dir.path(), true));
    assert_eq!(code, Some(0), "{report}");
    let unsafe_plan = plan(dir.path(), false);
    let (code, report) = validate(&unsafe_plan);
    assert_eq!(code, Some(2), "{report}");
    // At the step's line:column (line 11: `- id: client`, column 5).
    let expected = format!(
        "error[plan] {}:11:5: step `client` POSTs /clients with no `adopt`: a lost reply makes a duplicate",
        unsafe_plan.display()
    );
    assert!(report.lines().any(|l| l.starts_with(&expected)), "{report}");
    assert!(report.contains("help: declare `adopt:`"), "{report}");
    assert!(report.contains("problems: 1 in the plan"), "{report}");
}
