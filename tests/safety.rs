//! Credentials and personal data stay out of what a run writes, and what it writes is private.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::Sandbox;

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_run_writes_no_credential_no_personal_data_in_logs_and_reports_and_only_private_files() {
    // A value that appears nowhere else, so that finding it anywhere is a leak.
    let key = common::API_KEY;
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    // Some units fail (a loan above its product's limit), so errors.csv and failed/ are written too.
    let (plan, _) = common::broken_sample(dir.path(), &["LN-000001"]);
    let output = Command::new(env!("CARGO_BIN_EXE_mambu-migrate"))
        .args([
            "run",
            plan.to_str().unwrap(),
            "--target",
            &format!("{}/api", sandbox.origin),
            "--run-dir",
        ])
        .arg(&run_dir)
        .args(["--rate", "3000", "--no-progress"])
        .env("MAMBU_API_KEY", key)
        .env("MAMBU_APPROVER_API_KEY", common::APPROVER_KEY)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let terminal = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The credential: nowhere, not even in the checkpoint.
    assert!(!terminal.contains(key));
    let files = files_under(&run_dir);
    assert!(
        files.iter().any(|f| f.ends_with("errors.csv"))
            && files.iter().any(|f| f.ends_with("failed/1/clients.csv")),
        "{files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(key),
            "the API key is in {}",
            file.display()
        );
    }

    // Personal data: never in the terminal, run.log or the reports (failed/ holds the rows, on purpose).
    let mut reader = csv::Reader::from_path("fixtures/sample/clients.csv").unwrap();
    let headers = reader.headers().unwrap().clone();
    let clients: Vec<HashMap<String, String>> = reader
        .records()
        .map(|r| {
            headers
                .iter()
                .zip(r.unwrap().iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect();
    let private: Vec<&str> = clients
        .iter()
        .flat_map(|c| {
            ["last_name", "email", "phone", "national_id", "birth_date"].map(|k| c[k].as_str())
        })
        .filter(|v| v.chars().count() >= 6)
        .collect();
    for (name, text) in [("terminal".to_string(), terminal.clone())]
        .into_iter()
        .chain(
            ["run.log", "report.md", "report.json", "errors.csv"]
                .iter()
                .map(|f| {
                    (
                        f.to_string(),
                        std::fs::read_to_string(run_dir.join(f)).unwrap(),
                    )
                }),
        )
    {
        for value in &private {
            assert!(!text.contains(value), "a personal value is in {name}");
        }
    }

    // Owner-only: the run directory and every file in it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&run_dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(run_dir.join("failed"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        for file in &files {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", file.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_renders_every_call_and_sends_none() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mambu-migrate"))
        .args([
            "run",
            "plans/sample.yaml",
            "--dry-run",
            "--target",
            &format!("{}/api", sandbox.origin),
            "--run-dir",
        ])
        .arg(dir.path())
        .env("MAMBU_API_KEY", common::API_KEY)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats = sandbox.stats().await;
    assert_eq!(stats["requests"]["total"], 0, "nothing was sent: {stats}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("dry-run.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 9,522 calls of a real run (6,509 before the rest of the book, then 2,855 deposits and
    // withdrawals, 65 balances, 46 tranche disbursements for 13 loan disbursements, 22 payoffs,
    // 22 closes, 16 write-offs, 3 reads of guaranteeing deposits), less 3 lookups, less the 50
    // schedule GETs (a PUT line each); the bulk step's items a line each.
    assert_eq!(lines.len(), 9472);
    assert!(lines.iter().all(|l| l.get("error").is_none()));
    assert_eq!(lines[0]["step"], "client");
    assert_eq!(lines[0]["path"], "/clients");
}

/// The sample plan, but failing fast when the tenant cannot be reached.
fn impatient_plan(dir: &Path) -> std::path::PathBuf {
    common::sample_plan_with(
        dir,
        &[
            ("  timeout_seconds: 30", "  timeout_seconds: 2"),
            ("max_attempts: 8", "max_attempts: 1, outage_wait_seconds: 0"),
        ],
    )
}

#[test]
fn a_production_tenant_needs_its_name_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let plan = impatient_plan(dir.path());
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mambu-migrate"))
            .args([
                "run",
                plan.to_str().unwrap(),
                "--target",
                "https://acme.mambu.com/api",
                "--no-progress",
                "--run-dir",
            ])
            .arg(dir.path().join("run"))
            .args(extra)
            .env("MAMBU_API_KEY", "not-a-real-key")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let refused = run(&[]);
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("PRODUCTION tenant `acme`")
            && err.contains("250 units")
            && err.contains("--confirm-production acme"),
        "{err}"
    );
    assert!(
        !dir.path().join("run/checkpoint.db").exists(),
        "nothing started"
    );

    let wrong = run(&["--confirm-production", "acme-test"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&wrong.stderr)
            .contains("names `acme-test`, but the target is tenant `acme`")
    );

    // Confirmed: the run goes on (and, with no network here, stops when the tenant is unreachable).
    let confirmed = run(&["--confirm-production", "acme"]);
    let err = String::from_utf8_lossy(&confirmed.stderr).into_owned();
    assert_eq!(confirmed.status.code(), Some(3), "{err}");
    assert!(!err.contains("pass --confirm-production"), "{err}");
    assert!(dir.path().join("run/checkpoint.db").exists());
}
