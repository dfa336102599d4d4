//! Fix and reload, as a consultant does it every night: the real binary against the real
//! sandbox. Failed units' rows land in `failed/<attempt>/`; a reload reads them and never
//! deletes, truncates or rewrites a file it was given; a reload killed at any moment is resumed
//! by the command the tool gives, and every fixed unit lands exactly once.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Sandbox, TOO_MUCH, binary, broken_sample, rows, run, stderr};
use mambu_migrate::checkpoint::{AttemptState, Reader};
use serde_json::Value;

/// Three loans (without custom schedules) whose amounts are set above their product's maximum:
/// Mambu refuses them, and their units fail at the `loan` step.
const BROKEN: [&str; 3] = ["LN-000001", "LN-000002", "LN-000004"];

/// Fixes the amounts of `ids` in a failed loans file, in place, as a consultant would.
fn fix(loans: &Path, ids: &[&str], original: &HashMap<String, String>) {
    let text = std::fs::read_to_string(loans).unwrap();
    let fixed: String = text
        .lines()
        .map(|line| match ids.iter().find(|id| line.starts_with(**id)) {
            Some(id) => line.replace(TOO_MUCH, &original[*id]),
            None => line.to_owned(),
        })
        .map(|line| line + "\n")
        .collect();
    std::fs::write(loans, fixed).unwrap();
}

/// Every regular file under `dir` (symbolic links left out) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.insert(entry.path(), std::fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

/// Every file of `before` is still there, byte for byte.
fn assert_kept(before: &BTreeMap<PathBuf, Vec<u8>>, when: &str) {
    for (path, bytes) in before {
        let now = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{when}: {} is gone: {e}", path.display()));
        assert!(&now == bytes, "{when}: {} was rewritten", path.display());
    }
}

/// The last `mambu-migrate run … <flag>…` command in `text`, as arguments.
fn command_in(text: &str, flag: &str) -> Option<Vec<String>> {
    let line = text.lines().rev().find_map(|l| {
        let at = l.find("mambu-migrate run ")?;
        l[at..]
            .split_whitespace()
            .any(|w| w == flag)
            .then(|| &l[at..])
    })?;
    Some(line.split_whitespace().skip(1).map(str::to_owned).collect())
}

/// The keys of the units in a failed folder's clients.csv.
fn clients_in(folder: &Path) -> Vec<String> {
    let mut keys: Vec<String> = rows(folder.join("clients.csv").to_str().unwrap())
        .into_iter()
        .map(|r| r["client_id"].clone())
        .collect();
    keys.sort();
    keys
}

/// The first run: exit 1, the broken units' rows in failed/1/ (failed/latest), and the
/// command to reload them.
async fn first_run(sandbox: &Sandbox, plan: &Path, run_dir: &Path, broken: &[&str]) -> Vec<String> {
    let output = run(
        sandbox,
        plan.to_str().unwrap(),
        run_dir,
        &["--rate", "3000"],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "some units failed: {}",
        stderr(&output)
    );
    let text = stderr(&output);
    let reload =
        command_in(&text, "--reload").unwrap_or_else(|| panic!("no reload command: {text}"));
    assert_eq!(reload[reload.len() - 2..], ["--reload", "1"], "{text}");
    let latest = run_dir.join("failed/latest");
    assert_eq!(
        std::fs::canonicalize(&latest).unwrap(),
        std::fs::canonicalize(run_dir.join("failed/1")).unwrap()
    );
    let failed_loans = std::fs::read_to_string(latest.join("loans.csv")).unwrap();
    for id in broken {
        assert!(
            failed_loans.contains(id),
            "{id} in failed/1/loans.csv:\n{failed_loans}"
        );
    }
    let errors = rows(latest.join("errors.csv").to_str().unwrap());
    assert_eq!(
        errors.len(),
        clients_in(&latest).len(),
        "one error per failed unit: {errors:?}"
    );
    for error in &errors {
        assert_eq!(error["step"], "loan");
        assert_eq!(
            error["error_reason"],
            "PARAMS_INCONSISTENT_WITH_PRODUCT_RULES"
        );
    }
    assert_eq!(sandbox.stats().await["clients"], 250);
    reload
}

fn assert_everything_once(stats: &Value) {
    assert_eq!(stats["clients"], 250, "{stats}");
    assert_eq!(stats["loans"], 416, "{stats}");
    assert_eq!(
        stats["refused_duplicates"]["client_id"], 0,
        "reloads resume at the failed step, not from scratch: {stats}"
    );
    assert_eq!(stats["duplicates"]["total"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fixed_failed_units_reload_from_their_failed_step() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (plan, original) = broken_sample(dir.path(), &BROKEN);
    let run_dir = dir.path().join("run");
    first_run(&sandbox, &plan, &run_dir, &BROKEN).await;

    // Fix the failed rows where they are, and reload them into the same run with the
    // `--source` flags (the long form of `--reload`).
    let failed = |s: &str| {
        run_dir
            .join(format!("failed/1/{s}.csv"))
            .display()
            .to_string()
    };
    fix(Path::new(&failed("loans")), &BROKEN, &original);
    let before = snapshot(&run_dir.join("failed"));
    let output = run(
        &sandbox,
        plan.to_str().unwrap(),
        &run_dir,
        &[
            "--rate",
            "3000",
            "--resume",
            "--source",
            &format!("clients={}", failed("clients")),
            "--source",
            &format!("loans={}", failed("loans")),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_everything_once(&sandbox.stats().await);
    assert_kept(&before, "after the reload");
    // The reload's own folder: nothing failed.
    let second = run_dir.join("failed/2");
    assert!(!second.join("clients.csv").exists(), "no unit failed");
    assert_eq!(rows(second.join("errors.csv").to_str().unwrap()).len(), 0);
    assert_eq!(
        std::fs::canonicalize(run_dir.join("failed/latest")).unwrap(),
        std::fs::canonicalize(&second).unwrap()
    );

    // The run's total is the extract's, not the reload's.
    let status = binary().arg("status").arg(&run_dir).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("250 done · 0 failed · 0 not started · of 250"),
        "{status}"
    );

    // Verify compares the reloaded units with the fixed rows they were migrated from, and
    // every other unit with the extract: nothing differs.
    let output = binary()
        .arg("verify")
        .arg(&run_dir)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", stderr(&output)));
    assert_eq!(report["mismatches"], serde_json::json!([]), "{report}");
    assert_eq!(report["units_verified"], 250);
    assert_eq!(output.status.code(), Some(0));
}

/// Where to kill a reload.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Right after it starts: perhaps before it recorded anything.
    AtOnce,
    /// Once its attempt is recorded, before or while its sources are read.
    Recorded,
    /// Once it has created a loan.
    MidWay,
    /// Once every unit it retried has ended: while it writes failed/ and its reports.
    Finishing,
}

fn newest_attempt(run_dir: &Path) -> (i64, Option<AttemptState>) {
    Reader::open(&run_dir.join("checkpoint.db"))
        .map(|r| r.attempts().unwrap_or_default())
        .ok()
        .and_then(|a| a.last().map(|a| (a.n, Some(a.state))))
        .unwrap_or((0, None))
}

async fn wait_for(moment: Moment, sandbox: &Sandbox, run_dir: &Path, attempt_before: i64) {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{moment:?} never came"
        );
        let reached = match moment {
            Moment::AtOnce => true,
            Moment::Recorded => newest_attempt(run_dir).0 > attempt_before,
            Moment::MidWay => sandbox.stats().await["loans"].as_u64().unwrap() > 413,
            Moment::Finishing => {
                let counts = Reader::open(&run_dir.join("checkpoint.db"))
                    .unwrap()
                    .unit_counts()
                    .unwrap();
                counts.get("running").copied().unwrap_or(0) == 0
                    && counts.get("failed").copied().unwrap_or(0) == 0
            }
        };
        if reached {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_killed_at_any_moment_is_resumed_as_the_tool_says_and_loses_nothing() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (plan, original) = broken_sample(dir.path(), &BROKEN);
    let run_dir = dir.path().join("run");
    let mut command = first_run(&sandbox, &plan, &run_dir, &BROKEN).await;
    fix(&run_dir.join("failed/latest/loans.csv"), &BROKEN, &original);
    let before = snapshot(&run_dir.join("failed"));

    // The reload the first run printed, slowed down so that it can be killed mid-way; each
    // kill -9 is followed by the command `status` gives (or, when nothing was recorded, the
    // same command again, which is all the user has).
    for moment in [
        Moment::AtOnce,
        Moment::Recorded,
        Moment::MidWay,
        Moment::Finishing,
    ] {
        let attempt_before = newest_attempt(&run_dir).0;
        let mut child = binary()
            .args(&command)
            .args(["--target", &format!("{}/api", sandbox.origin)])
            .args(["--no-progress", "--rate", "5"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for(moment, &sandbox, &run_dir, attempt_before).await;
        child.kill().unwrap();
        child.wait().unwrap();
        assert_kept(&before, &format!("killed {moment:?}"));
        let status = binary().arg("status").arg(&run_dir).output().unwrap();
        let text = String::from_utf8_lossy(&status.stdout).into_owned();
        if let Some(resume) = command_in(&text, "--resume") {
            command = resume;
        }
    }
    // Then to the end.
    let output = binary()
        .args(&command)
        .args(["--no-progress", "--rate", "3000"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_everything_once(&sandbox.stats().await);
    assert_kept(&before, "at the end");
    let (n, state) = newest_attempt(&run_dir);
    assert_eq!(state, Some(AttemptState::Finished));
    assert!(
        n >= 5,
        "the first run, three killed attempts that recorded themselves and the last: {n}"
    );
    let last = std::fs::canonicalize(run_dir.join("failed/latest")).unwrap();
    assert_eq!(
        last,
        std::fs::canonicalize(run_dir.join(format!("failed/{n}"))).unwrap()
    );
    assert_eq!(rows(last.join("errors.csv").to_str().unwrap()).len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_reloads_in_a_row_leave_three_complete_attempts() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (plan, original) = broken_sample(dir.path(), &BROKEN);
    let run_dir = dir.path().join("run");
    first_run(&sandbox, &plan, &run_dir, &BROKEN).await;
    let units = |n: u32| clients_in(&run_dir.join(format!("failed/{n}")));
    let all = units(1);
    assert!(all.len() >= 2, "{all:?}");

    // Fix one loan per reload; the others fail again.
    let mut folders = Vec::new();
    for (round, id) in BROKEN.iter().enumerate() {
        let latest = run_dir.join("failed/latest");
        fix(&latest.join("loans.csv"), &[id], &original);
        folders.push(snapshot(&std::fs::canonicalize(&latest).unwrap()));
        let output = run(
            &sandbox,
            plan.to_str().unwrap(),
            &run_dir,
            &["--rate", "3000", "--reload"],
        );
        let still_broken = &BROKEN[round + 1..];
        assert_eq!(
            output.status.code(),
            Some(if still_broken.is_empty() { 0 } else { 1 }),
            "{}",
            stderr(&output)
        );
        let n = round as u32 + 2;
        let folder = run_dir.join(format!("failed/{n}"));
        let loans = std::fs::read_to_string(folder.join("loans.csv")).unwrap_or_default();
        for id in &BROKEN[..=round] {
            assert!(!loans.contains(id), "{id} was fixed: failed/{n}:\n{loans}");
        }
        for id in still_broken {
            assert!(loans.contains(id), "{id} still fails: failed/{n}:\n{loans}");
        }
        let errors = rows(folder.join("errors.csv").to_str().unwrap());
        let clients = if folder.join("clients.csv").exists() {
            units(n)
        } else {
            Vec::new()
        };
        assert_eq!(errors.len(), clients.len(), "failed/{n} is whole");
        // Every earlier folder as it was when its reload read it.
        for (i, folder) in folders.iter().enumerate() {
            assert_kept(
                folder,
                &format!("failed/{} after reload {}", i + 1, round + 1),
            );
        }
    }
    assert_eq!(
        units(1),
        all,
        "failed/1 still holds every unit of the first run"
    );
    assert_everything_once(&sandbox.stats().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_rows_that_cannot_be_written_stop_the_run_and_resume_writes_them() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (plan, _) = broken_sample(dir.path(), &BROKEN);
    let run_dir = dir.path().join("run");
    // A file where the failed/ folder must go: nothing can be written under it.
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("failed"), "in the way").unwrap();
    let output = run(
        &sandbox,
        plan.to_str().unwrap(),
        &run_dir,
        &["--rate", "3000"],
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains("the failed rows cannot be written"), "{text}");
    let resume =
        command_in(&text, "--resume").unwrap_or_else(|| panic!("no resume command: {text}"));

    std::fs::remove_file(run_dir.join("failed")).unwrap();
    let output = binary()
        .args(&resume)
        .args(["--no-progress"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let loans = std::fs::read_to_string(run_dir.join("failed/latest/loans.csv")).unwrap();
    for id in BROKEN {
        assert!(
            loans.contains(id),
            "{id} in failed/latest/loans.csv:\n{loans}"
        );
    }
    let stats = sandbox.stats().await;
    assert_eq!(stats["duplicates"]["total"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_after_the_first_call_exits_3_and_prints_the_resume_command() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    // A folder where report.md must go: the reports cannot be written once the run ends.
    std::fs::create_dir_all(run_dir.join("report.md/in-the-way")).unwrap();
    let output = run(&sandbox, "plans/sample.yaml", &run_dir, &["--rate", "3000"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains("the reports could not be written"), "{text}");
    let resume =
        command_in(&text, "--resume").unwrap_or_else(|| panic!("no resume command: {text}"));
    assert_eq!(
        resume,
        [
            "run",
            "plans/sample.yaml",
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--resume"
        ]
    );
    // `status` says the same.
    let status = binary().arg("status").arg(&run_dir).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(
        command_in(&status, "--resume").as_ref(),
        Some(&resume),
        "{status}"
    );

    std::fs::remove_dir_all(run_dir.join("report.md")).unwrap();
    // The resume goes back to the tenant the run used without being told it.
    let output = binary()
        .args(&resume)
        .args(["--no-progress"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(run_dir.join("report.md").is_file());
    let stats = sandbox.stats().await;
    assert_eq!(stats["duplicates"]["total"], 0, "{stats}");
    assert_eq!(stats["clients"], 250, "{stats}");
}
