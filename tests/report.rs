//! The run's reports and `status`, read from a checkpoint filled here through its public API:
//! a small run with units done, failed, in flight and not started, adopted and skipped steps,
//! a 429, retries and a refusal. Figures are checked exactly; report.md and the status text
//! are under snapshot (dates, the temporary run directory and the ETA filtered out).

use std::path::Path;

use assert_cmd::Command;
use mambu_migrate::checkpoint::{
    Attempt, AttemptKind, AttemptState, CallRecord, Checkpoint, Record, StepRecord, StepStatus,
    UnitError,
};
use mambu_migrate::mambu::CallOutcome as Outcome;
use mambu_migrate::report::{self, Summary};
use serde_json::{Value, json};

/// Writes a checkpoint the way the executor does.
struct Fill(Checkpoint);

impl Fill {
    fn meta(&self, key: &str, value: impl ToString) {
        self.0.record(Record::Meta {
            key: key.into(),
            value: value.to_string(),
        });
    }
    fn event(&self, kind: &str, detail: &str) {
        self.0.record(Record::Event {
            kind: kind.into(),
            detail: detail.into(),
        });
    }
    fn start(&self, unit: &str, ordinal: i64) {
        self.0.record(Record::UnitStarted {
            key: unit.into(),
            ordinal,
        });
    }
    fn step(
        &self,
        unit: &str,
        instance: &str,
        step_id: &str,
        action: &str,
        status: StepStatus,
        outputs: Value,
    ) {
        self.0.record(Record::Step(Box::new(StepRecord {
            unit: unit.into(),
            instance: format!("{instance}#{step_id}"),
            step_id: step_id.into(),
            action: action.into(),
            status,
            idempotency_key: None,
            http_status: None,
            outputs,
            attempts: 1,
            latency_ms: 1.0,
        })));
    }
    /// `call` is `METHOD /endpoint/{template}`.
    fn call(
        &self,
        unit: &str,
        step_id: &str,
        call: &'static str,
        status: u16,
        outcome: Outcome,
        latency_ms: f64,
    ) {
        let (method, endpoint) = call.split_once(' ').unwrap();
        self.0.record(Record::Call(Box::new(CallRecord {
            unit: unit.into(),
            step_id: step_id.into(),
            method,
            endpoint: endpoint.into(),
            status: Some(status),
            outcome,
            latency_ms,
        })));
    }
    fn finish(&self, unit: &str, error: Option<UnitError>, calls: i64) {
        self.0.record(Record::UnitFinished {
            key: unit.into(),
            error: error.map(Box::new),
            calls,
            attempt: 1,
            rows: Vec::new(),
        });
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Fills a checkpoint whose run began 100 s ago (returned: its start, in Unix seconds);
/// `stopped` after 130 s, or still `running`.
fn fill(dir: &Path, stopped: bool) -> i64 {
    let cp = Fill(Checkpoint::open(&dir.join("checkpoint.db")).unwrap());
    let t0 = now() - 100;
    for (k, v) in [
        ("plan_name", "acme-core-migration"),
        ("plan_file", "plans/sample.yaml"),
        ("plan_hash", "abc123"),
        ("target", "sandbox"),
        ("rate", "20"),
        ("concurrency", "4"),
        ("units_total", "6"),
    ] {
        cp.meta(k, v);
    }
    cp.meta("started_at", t0);
    cp.meta("state", "running");

    // CL-1: done; the loan is created after a 429, disbursed after a 503.
    cp.start("CL-1", 1);
    cp.call("CL-1", "client", "POST /clients", 201, Outcome::Ok, 100.0);
    cp.step(
        "CL-1",
        "clients/CL-1",
        "client",
        "create_client",
        StepStatus::Done,
        json!({ "id": "CL-1", "encodedKey": "k1" }),
    );
    cp.call("CL-1", "loan", "POST /loans", 429, Outcome::Throttled, 5.0);
    cp.call("CL-1", "loan", "POST /loans", 201, Outcome::Ok, 200.0);
    cp.step(
        "CL-1",
        "clients/CL-1/loans/LN-1",
        "loan",
        "create_loan",
        StepStatus::Done,
        json!({ "id": "LN-1", "accountState": "PENDING_APPROVAL" }),
    );
    cp.call(
        "CL-1",
        "approve",
        "POST /loans/{loanId}:changeState",
        200,
        Outcome::Ok,
        50.0,
    );
    cp.step(
        "CL-1",
        "clients/CL-1/loans/LN-1",
        "approve",
        "approve_loan",
        StepStatus::Done,
        json!({ "accountState": "APPROVED" }),
    );
    cp.call(
        "CL-1",
        "disburse",
        "POST /loans/{loanId}/disbursement-transactions",
        503,
        Outcome::Retried,
        30.0,
    );
    cp.call(
        "CL-1",
        "disburse",
        "POST /loans/{loanId}/disbursement-transactions",
        201,
        Outcome::Ok,
        80.0,
    );
    cp.step(
        "CL-1",
        "clients/CL-1/loans/LN-1",
        "disburse",
        "disburse_loan",
        StepStatus::Done,
        json!({ "accountState": "ACTIVE" }),
    );
    cp.call(
        "CL-1",
        "repayment",
        "POST /loans/{loanId}/repayment-transactions",
        201,
        Outcome::Ok,
        40.0,
    );
    cp.step(
        "CL-1",
        "clients/CL-1/loans/LN-1/transactions/TX-1",
        "repayment",
        "post_repayment",
        StepStatus::Done,
        json!({ "id": "TX-1" }),
    );
    cp.finish("CL-1", None, 7);

    // CL-2: done; the client existed already (adopted), the loan is not disbursed (skipped).
    cp.start("CL-2", 2);
    cp.call(
        "CL-2",
        "client",
        "POST /clients",
        400,
        Outcome::Adopted,
        20.0,
    );
    cp.call(
        "CL-2",
        "client",
        "GET /clients/{clientId}",
        200,
        Outcome::Ok,
        10.0,
    );
    cp.step(
        "CL-2",
        "clients/CL-2",
        "client",
        "create_client",
        StepStatus::Adopted,
        json!({ "id": "CL-2" }),
    );
    cp.call("CL-2", "loan", "POST /loans", 201, Outcome::Ok, 150.0);
    cp.step(
        "CL-2",
        "clients/CL-2/loans/LN-2",
        "loan",
        "create_loan",
        StepStatus::Done,
        json!({ "accountState": "PENDING_APPROVAL" }),
    );
    cp.call(
        "CL-2",
        "approve",
        "POST /loans/{loanId}:changeState",
        200,
        Outcome::Ok,
        70.0,
    );
    cp.step(
        "CL-2",
        "clients/CL-2/loans/LN-2",
        "approve",
        "approve_loan",
        StepStatus::Done,
        json!({ "accountState": "APPROVED" }),
    );
    cp.step(
        "CL-2",
        "clients/CL-2/loans/LN-2",
        "disburse",
        "disburse_loan",
        StepStatus::Skipped,
        json!({}),
    );
    cp.finish("CL-2", None, 4);

    // CL-3: fails at its loan (refused).
    cp.start("CL-3", 3);
    cp.call("CL-3", "client", "POST /clients", 201, Outcome::Ok, 120.0);
    cp.step(
        "CL-3",
        "clients/CL-3",
        "client",
        "create_client",
        StepStatus::Done,
        json!({ "id": "CL-3" }),
    );
    cp.call("CL-3", "loan", "POST /loans", 400, Outcome::Failed, 60.0);
    cp.step(
        "CL-3",
        "clients/CL-3/loans/LN-3",
        "loan",
        "create_loan",
        StepStatus::Failed,
        Value::Null,
    );
    let refused = UnitError {
        step: "loan".into(),
        http_status: Some(400),
        error_code: Some(4),
        error_reason: Some("INVALID_PARAMETERS".into()),
        error_source: Some("loanAmount".into()),
        message: "Mambu refused: INVALID_PARAMETERS".into(),
        attempts: 1,
    };
    cp.finish("CL-3", Some(refused), 2);

    // CL-4: fails at its client after three 500s.
    cp.start("CL-4", 4);
    for latency in [300.0, 310.0, 320.0] {
        cp.call(
            "CL-4",
            "client",
            "POST /clients",
            500,
            Outcome::Retried,
            latency,
        );
    }
    cp.step(
        "CL-4",
        "clients/CL-4",
        "client",
        "create_client",
        StepStatus::Failed,
        Value::Null,
    );
    cp.finish(
        "CL-4",
        Some(UnitError {
            step: "client".into(),
            http_status: Some(500),
            message: "HTTP 500".into(),
            attempts: 3,
            ..Default::default()
        }),
        3,
    );

    // CL-5: in flight when the run stopped. CL-6: not started.
    cp.start("CL-5", 5);
    cp.call("CL-5", "client", "POST /clients", 201, Outcome::Ok, 90.0);
    cp.step(
        "CL-5",
        "clients/CL-5",
        "client",
        "create_client",
        StepStatus::Done,
        json!({ "id": "CL-5" }),
    );

    if stopped {
        cp.meta("state", "stopped");
        cp.meta("stop_reason", "interrupted");
        cp.meta("finished_at", t0 + 130);
        cp.event("stopped", "interrupted");
        // The attempt wrote its failed rows to failed/1/.
        cp.0.record(Record::AttemptStarted(Box::new(Attempt {
            n: 1,
            kind: AttemptKind::Fresh,
            reload_start: None,
            state: AttemptState::Running,
            sources: Vec::new(),
            failed_dir: None,
        })));
        cp.0.record(Record::AttemptEnded {
            n: 1,
            state: AttemptState::Stopped,
            failed_dir: Some(dir.join("failed/1").display().to_string()),
        });
    }
    cp.0.close().unwrap();
    t0
}

fn filtered(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "[RUN_DIR]")
}

macro_rules! snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({ filters => vec![
            (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(Z| UTC)", "[DATE]"),
            (r"ETA        .* at [0-9.]+ units/s", "ETA        [ETA]"),
            (r"running for \d+m \d{2}s", "running for [DURATION]"),
        ] }, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_stopped_run_is_reported_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let _ = fill(dir.path(), true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(dir.path().join("report.md"), "old").unwrap();
        std::fs::set_permissions(
            dir.path().join("report.md"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }

    let summary = report::write_all(dir.path()).unwrap();
    let json: Summary =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json, summary, "report.json is the summary");

    let run = &summary.run;
    assert_eq!(
        (
            run.plan_name.as_deref(),
            run.target.as_deref(),
            run.state.as_str()
        ),
        (Some("acme-core-migration"), Some("sandbox"), "stopped")
    );
    assert_eq!(
        (run.rate, run.concurrency, run.sample),
        (Some(20.0), Some(4), None)
    );
    assert_eq!(run.stop_reason.as_deref(), Some("interrupted"));
    assert_eq!(run.duration_seconds, Some(130.0));
    assert_eq!(
        run.resume_command.as_deref(),
        Some(
            format!(
                "mambu-migrate run plans/sample.yaml --run-dir {} --resume",
                dir.path().display()
            )
            .as_str()
        )
    );

    let u = &summary.units;
    assert_eq!(
        (u.total, u.done, u.failed, u.running, u.not_started),
        (Some(6), 2, 2, 1, Some(1))
    );

    let c = &summary.calls;
    assert_eq!(
        (c.total, c.ok, c.retried, c.throttled, c.adopted, c.failed),
        (17, 10, 4, 1, 1, 1)
    );
    assert_eq!(
        (c.retry_rate, c.throttle_rate, c.per_second),
        (0.2353, 0.0588, Some(0.13))
    );

    let steps: Vec<_> = summary
        .steps
        .iter()
        .map(|s| {
            (
                s.step.as_str(),
                s.action.as_str(),
                s.done,
                s.adopted,
                s.skipped,
                s.failed,
                s.calls,
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("client", "create_client", 3, 1, 0, 1, 8),
            ("loan", "create_loan", 2, 0, 0, 1, 4),
            ("approve", "approve_loan", 2, 0, 0, 0, 2),
            ("disburse", "disburse_loan", 1, 0, 1, 0, 2),
            ("repayment", "post_repayment", 1, 0, 0, 0, 1),
        ]
    );
    let latency: Vec<_> = summary
        .steps
        .iter()
        .map(|s| {
            (
                s.latency_ms.samples,
                s.latency_ms.p50,
                s.latency_ms.p95,
                s.latency_ms.p99,
            )
        })
        .collect();
    assert_eq!(
        latency,
        vec![
            // ok and adopted answers only: 10, 20, 90, 100, 120 (the 500s are left out).
            (5, Some(90.0), Some(120.0), Some(120.0)),
            (2, Some(150.0), Some(200.0), Some(200.0)),
            (2, Some(50.0), Some(70.0), Some(70.0)),
            (1, Some(80.0), Some(80.0), Some(80.0)),
            (1, Some(40.0), Some(40.0), Some(40.0)),
        ]
    );

    let endpoints: Vec<_> = summary
        .endpoints
        .iter()
        .map(|e| {
            (
                e.method.as_str(),
                e.endpoint.as_str(),
                e.calls,
                e.ok,
                e.retried,
                e.throttled,
                e.adopted,
                e.failed,
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        vec![
            ("POST", "/clients", 7, 3, 3, 0, 1, 0),
            ("POST", "/loans", 4, 2, 0, 1, 0, 1),
            ("POST", "/loans/{loanId}:changeState", 2, 2, 0, 0, 0, 0),
            (
                "POST",
                "/loans/{loanId}/disbursement-transactions",
                2,
                1,
                1,
                0,
                0,
                0
            ),
            (
                "POST",
                "/loans/{loanId}/repayment-transactions",
                1,
                1,
                0,
                0,
                0,
                0
            ),
            ("GET", "/clients/{clientId}", 1, 1, 0, 0, 0, 0),
        ]
    );

    // Every call was recorded about 100 s after the start: one 10-second bucket at +1:40.
    assert_eq!(summary.throughput.bucket_seconds, 10);
    let buckets: Vec<_> = summary
        .throughput
        .buckets
        .iter()
        .map(|b| (b.offset_seconds, b.calls, b.throttled))
        .collect();
    assert_eq!(buckets, vec![(100, 17, 1)]);

    let loans: Vec<_> = summary
        .loan_states
        .iter()
        .map(|s| (s.state.as_str(), s.count))
        .collect();
    assert_eq!(
        loans,
        vec![("ACTIVE", 1), ("APPROVED", 1)],
        "LN-1 was disbursed, LN-2 only approved"
    );
    assert!(summary.deposit_states.is_empty());

    let reasons: Vec<_> = summary
        .failures
        .top_reasons
        .iter()
        .map(|r| (r.reason.as_str(), r.units))
        .collect();
    assert_eq!(reasons, vec![("HTTP 500", 1), ("INVALID_PARAMETERS", 1)]);
    assert_eq!(summary.failures.units, 2);
    let history: Vec<_> = summary
        .history
        .iter()
        .map(|e| (e.kind.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(history, vec![("stopped", "interrupted")]);

    assert_eq!(
        std::fs::read_to_string(dir.path().join("errors.csv")).unwrap(),
        "unit,step,http_status,error_code,error_reason,error_source,message,attempts\n\
         CL-3,loan,400,4,INVALID_PARAMETERS,loanAmount,Mambu refused: INVALID_PARAMETERS,1\n\
         CL-4,client,500,,,,HTTP 500,3\n"
    );
    // report.html: the dashboard's page, frozen: its figures, no script to run, nothing
    // from elsewhere, and none of Mambu's messages (errors.csv has them).
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("data-figure=\"failures.reason.INVALID_PARAMETERS\">1<"));
    assert!(
        html.contains("<td class=\"keys\">CL-3</td>"),
        "the failed unit"
    );
    assert!(!html.contains("Mambu refused"), "no message on the page");
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the board's data: {html}"
    );
    assert!(html.contains("<script type=\"application/json\" id=\"board-data\">"));
    assert!(!html.contains("https://") && !html.contains("src=\"http"));
    #[cfg(unix)]
    for name in ["report.md", "report.json", "report.html", "errors.csv"] {
        assert_eq!(
            mode(&dir.path().join(name)),
            0o600,
            "{name} is the owner's only"
        );
    }
    assert!(!dir.path().join(".report.md.tmp").exists());

    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    snapshot!("stopped_report_md", filtered(&md, dir.path()));
    let json = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    snapshot!("stopped_report_json", filtered(&json, dir.path()));

    let status = report::status(dir.path()).unwrap();
    snapshot!("stopped_status", filtered(&status, dir.path()));

    // Written again: the same files, replaced.
    let again = report::write_all(dir.path()).unwrap();
    assert_eq!(again, summary);
}

#[test]
fn a_running_run_shows_its_progress_and_eta() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = fill(dir.path(), false);
    // Measured at a fixed 104 s after the start, whatever the time the test takes: the calls
    // were recorded at about 100 s (now, by the wall clock), so all are in the last minute.
    let status = report::status_at(dir.path(), (t0 + 104) as f64).unwrap();
    assert!(
        status.contains(
            "units      2 done · 2 failed · 1 running · 1 not started · of 6 (66.7% finished)"
        ),
        "{status}"
    );
    assert!(
        !status.contains("resume "),
        "a running run needs no resume command:\n{status}"
    );
    assert!(
        status.contains("ETA        52s at 0.04 units/s"),
        "2 units left at 4 units in 104 s:\n{status}"
    );
    snapshot!("running_status", filtered(&status, dir.path()));

    let summary = report::write_all(dir.path()).unwrap();
    assert_eq!(summary.run.state, "running");
    assert_eq!(summary.run.resume_command, None);
    assert!(summary.run.finished_at.is_none());
    assert!(summary.run.duration_seconds.unwrap() >= 100.0);
}

#[test]
fn status_tells_a_running_run_whose_process_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = fill(dir.path(), false);
    let at = (t0 + 104) as f64;
    let gone = "no process is running it (killed, or the machine restarted): resume it:";
    // No lock file (a run from before it): not known, nothing said.
    assert!(!report::status_at(dir.path(), at).unwrap().contains(gone));
    // The lock held, as by the run's process: alive.
    let lock = std::fs::File::create(dir.path().join("run.lock")).unwrap();
    lock.lock().unwrap();
    assert!(!report::status_at(dir.path(), at).unwrap().contains(gone));
    // Released, as when the process dies however it dies: gone, and how to resume.
    drop(lock);
    let status = report::status_at(dir.path(), at).unwrap();
    assert!(
        status.contains(gone) && status.contains("--resume"),
        "{status}"
    );
}

#[test]
fn status_reads_a_checkpoint_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Fill(Checkpoint::open(&dir.path().join("checkpoint.db")).unwrap());
    cp.meta("plan_name", "live");
    cp.meta("state", "running");
    cp.meta("units_total", 2);
    cp.start("CL-1", 1);
    cp.call("CL-1", "client", "POST /clients", 201, Outcome::Ok, 10.0);
    cp.0.flush().unwrap();
    let status = report::status(dir.path()).unwrap();
    assert!(
        status.contains(
            "units      0 done · 0 failed · 1 running · 1 not started · of 2 (0.0% finished)"
        ),
        "{status}"
    );
    cp.finish("CL-1", None, 1);
    cp.0.flush().unwrap();
    let status = report::status(dir.path()).unwrap();
    assert!(
        status.contains(
            "units      1 done · 0 failed · 0 running · 1 not started · of 2 (50.0% finished)"
        ),
        "{status}"
    );
    assert_eq!(report::write_all(dir.path()).unwrap().units.done, 1);
    cp.0.close().unwrap();
}

#[test]
fn status_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let _ = fill(dir.path(), true);
    let out = Command::cargo_bin("mambu-migrate")
        .unwrap()
        .arg("status")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("Run acme-core-migration against sandbox: stopped (interrupted)\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "resume     mambu-migrate run plans/sample.yaml --run-dir {} --resume",
            dir.path().display()
        )),
        "{text}"
    );

    let out = Command::cargo_bin("mambu-migrate")
        .unwrap()
        .arg("status")
        .arg(dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("does not exist"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("mambu-migrate")
        .unwrap()
        .arg("status")
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("holds no checkpoint.db") && err.contains("mambu-migrate run PLAN --run-dir"),
        "{err}"
    );
}

/// The rollbacks made on the run directory (issue 19), recorded through the rollback's own
/// record: CL-1 wholly undone (its run records cleared), CL-3 partly (an adjustment made, then
/// its client's DELETE refused with Mambu's reason), CL-4 stopped before its end. report.md's
/// section, report.json's and `status` show them; a run without rollbacks shows none.
#[test]
fn the_rollbacks_made_on_a_run_are_reported() {
    use mambu_migrate::checkpoint::{UndoLog, UndoStatus};
    let dir = tempfile::tempdir().unwrap();
    let t0 = fill(dir.path(), true);
    let plain = report::write_all(dir.path()).unwrap();
    assert!(plain.rollbacks.is_empty());
    let json = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    assert!(!json.contains("rollbacks"), "left out when none");
    assert!(
        !std::fs::read_to_string(dir.path().join("report.md"))
            .unwrap()
            .contains("## Rollbacks")
    );

    let log = UndoLog::open(&dir.path().join("checkpoint.db")).unwrap();
    log.record(
        "CL-1",
        0,
        "POST /loans/LN-1:changeState",
        UndoStatus::Done,
        None,
    )
    .unwrap();
    log.record("CL-1", 1, "DELETE /loans/LN-1", UndoStatus::Done, None)
        .unwrap();
    log.record("CL-1", 2, "DELETE /clients/k1", UndoStatus::Done, None)
        .unwrap();
    log.clear_unit("CL-1").unwrap();
    log.record(
        "CL-3",
        0,
        "POST /loans/transactions/k9:adjust",
        UndoStatus::Done,
        None,
    )
    .unwrap();
    log.record(
        "CL-3",
        1,
        "edit_schedule clients/CL-3/loans/LN-3#schedule",
        UndoStatus::Skipped,
        Some("the schedule goes with its loan"),
    )
    .unwrap();
    log.record(
        "CL-3",
        2,
        "DELETE /clients/k3",
        UndoStatus::Refused,
        Some("CLIENT_HAS_ACCOUNTS (clientId)"),
    )
    .unwrap();
    log.record("CL-4", 0, "DELETE /clients/k4", UndoStatus::Done, None)
        .unwrap();
    drop(log);

    let summary = report::write_all(dir.path()).unwrap();
    let r = &summary.rollbacks;
    assert_eq!(r.rolled_back.len(), 1);
    assert_eq!((r.calls_done, r.calls_refused, r.steps_skipped), (5, 1, 1));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    snapshot!(
        "rollbacks_report_json",
        serde_json::to_string_pretty(&json["rollbacks"]).unwrap()
    );
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    let section = md
        .split("\n## ")
        .find(|s| s.starts_with("Rollbacks"))
        .unwrap();
    snapshot!("rollbacks_report_md", section);
    let status = report::status_at(dir.path(), (t0 + 130) as f64).unwrap();
    let lines: Vec<&str> = status
        .lines()
        .skip_while(|l| !l.starts_with("  rollbacks"))
        .take_while(|l| l.starts_with("  rollbacks") || l.starts_with("             CL"))
        .collect();
    snapshot!("rollbacks_status", filtered(&lines.join("\n"), dir.path()));
}
