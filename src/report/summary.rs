//! [`Summary`]: the figures of a run, read from its checkpoint. report.json is it; report.md
//! and `status` are written from it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::stats::{self, Bucket};
use crate::checkpoint::{AttemptState, Reader, Rollbacks, StepStatus};
use crate::mambu::CallOutcome;

/// Steps acting on a loan account (their instances name the loan).
pub const LOAN_ACTIONS: &[&str] = &[
    "create_loan",
    "approve_loan",
    "link_settlement_account",
    "edit_schedule",
    "disburse_loan",
];
/// Steps acting on a deposit account.
pub const DEPOSIT_ACTIONS: &[&str] = &["create_deposit", "approve_deposit"];
/// How many failure reasons the reports list.
pub const TOP_REASONS: usize = 10;

/// The figures of a run (report.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub run: RunIdentity,
    pub units: UnitTotals,
    pub calls: CallTotals,
    /// Per step of the plan, in the order they first ran.
    pub steps: Vec<StepSummary>,
    /// Per method and endpoint template, in the order they were first called.
    pub endpoints: Vec<EndpointSummary>,
    pub throughput: Throughput,
    /// Last known Mambu state of each loan, counted by state.
    pub loan_states: Vec<StateCount>,
    /// Last known Mambu state of each deposit account, counted by state.
    pub deposit_states: Vec<StateCount>,
    pub failures: Failures,
    /// The run's events: started, resumed, stopped, finished.
    pub history: Vec<HistoryEvent>,
    /// The migration and the catch-ups after it (`run --catch-up`), once there is a catch-up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseSummary>,
    /// The rollbacks made on the run directory (`mambu-migrate rollback`); left out when none.
    #[serde(default, skip_serializing_if = "Rollbacks::is_empty")]
    pub rollbacks: Rollbacks,
}

/// A phase of the run: the migration, or a catch-up with what its comparison found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    pub phase: i64,
    /// `migration` or `catch-up`.
    pub kind: String,
    /// UTC, RFC 3339.
    pub started_at: Option<String>,
    /// Attempts of `run` that belong to it (the first opened it).
    pub attempts: Vec<i64>,
    /// HTTP calls made while it ran.
    pub calls: i64,
    /// A catch-up's comparison of the two extracts, once complete.
    pub compared: Option<crate::checkpoint::PhaseCounts>,
}

/// The phases, with their attempts and calls; empty while the run has only its migration.
pub fn phases(reader: &Reader) -> rusqlite::Result<Vec<PhaseSummary>> {
    let phases = reader.phases()?;
    if phases.len() < 2 {
        return Ok(Vec::new());
    }
    let attempts = reader.attempts()?;
    let mut out = Vec::new();
    for (i, phase) in phases.iter().enumerate() {
        let next = phases.get(i + 1);
        let mine: Vec<i64> = attempts
            .iter()
            .map(|a| a.n)
            .filter(|n| *n >= phase.first_attempt && next.is_none_or(|p| *n < p.first_attempt))
            .collect();
        let from = if i == 0 { 0.0 } else { phase.started_at };
        // A call committed with the next phase's start is the next phase's.
        let to = next.map_or(f64::MAX, |p| p.started_at - 1e-6);
        out.push(PhaseSummary {
            phase: phase.n,
            kind: phase.kind.as_str().to_owned(),
            started_at: (phase.started_at > 0.0).then(|| stats::rfc3339(phase.started_at)),
            attempts: mine,
            calls: reader.calls_between(from, to)?,
            compared: phase.counts.clone(),
        });
    }
    Ok(out)
}

/// Which run this is and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub plan_name: Option<String>,
    pub plan_file: Option<String>,
    pub plan_hash: Option<String>,
    /// `sandbox` or the tenant's base URL.
    pub target: Option<String>,
    /// Configured calls per second.
    pub rate: Option<f64>,
    pub concurrency: Option<u64>,
    /// `--sample N`, if the run was a sample migration.
    pub sample: Option<u64>,
    /// `running`, `finished` or `stopped` ([`AttemptState`]).
    pub state: String,
    pub stop_reason: Option<String>,
    /// UTC, RFC 3339: `2025-01-31T22:05:09Z`.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// From start to finish (to now while running).
    pub duration_seconds: Option<f64>,
    /// How to resume a stopped run.
    pub resume_command: Option<String>,
    /// The run directory, as given.
    pub run_dir: String,
}

/// Units by status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitTotals {
    /// Units the run is to migrate (the source's, or the sample's), when known.
    pub total: Option<i64>,
    pub done: i64,
    pub failed: i64,
    /// Started and not finished (in flight, or cut short by a crash).
    pub running: i64,
    pub not_started: Option<i64>,
}

/// Every HTTP attempt, by outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallTotals {
    pub total: i64,
    pub ok: i64,
    /// Attempts that met a transient error other than 429 and were tried again.
    pub retried: i64,
    /// Attempts answered 429 Too Many Requests.
    pub throttled: i64,
    /// "Already exists" answers: the entity was looked up and adopted.
    pub adopted: i64,
    /// Attempts whose answer failed the unit.
    pub failed: i64,
    /// retried / total.
    pub retry_rate: f64,
    /// throttled / total.
    pub throttle_rate: f64,
    /// Over the run's duration.
    pub per_second: Option<f64>,
}

/// The outcomes of one step's instances, its calls and their latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub step: String,
    pub action: String,
    pub done: i64,
    pub adopted: i64,
    pub skipped: i64,
    pub failed: i64,
    pub calls: i64,
    pub latency_ms: Latency,
}

/// Latency percentiles (nearest rank) of the attempts whose answer was used (ok, adopted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub samples: i64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// Calls to one endpoint template, by outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSummary {
    pub method: String,
    pub endpoint: String,
    pub calls: i64,
    pub ok: i64,
    pub retried: i64,
    pub throttled: i64,
    pub adopted: i64,
    pub failed: i64,
}

/// Calls per time bucket from the start of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throughput {
    /// 10 for a run under 10 minutes, 60 otherwise.
    pub bucket_seconds: u32,
    /// Buckets with calls and the short gaps between them; a long gap (the run stopped and was
    /// resumed later) is left out.
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    pub state: String,
    pub count: i64,
}

/// What failed, and where to find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    pub units: i64,
    /// Mambu's errorReason (or the HTTP status when it gave none), most frequent first.
    pub top_reasons: Vec<ReasonCount>,
    /// One row per failed unit, relative to the run directory.
    pub errors_csv: String,
    /// The failed units' source rows, one file per source, ready to fix and reload: the
    /// newest attempt's `failed/<n>/`, relative to the run directory.
    pub failed_dir: String,
    /// The command that reloads them once fixed.
    pub reload_command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    pub reason: String,
    pub units: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub at: String,
    pub kind: String,
    pub detail: String,
}

/// Times and identity as recorded, before formatting.
pub(crate) struct Times {
    pub started: Option<f64>,
    pub finished: Option<f64>,
    /// Where the run's clock stops: finished_at, now while running, else the last record.
    pub end: Option<f64>,
}

pub(crate) fn number<T: std::str::FromStr>(meta: &HashMap<String, String>, key: &str) -> Option<T> {
    meta.get(key).and_then(|v| v.trim().parse().ok())
}

/// The run's state (as recorded, running if it is not) and why it stopped (meta, else the
/// last `stopped` event).
pub(crate) fn state(
    recorded: Option<AttemptState>,
    meta: &HashMap<String, String>,
    events: &[(f64, String, String)],
) -> (AttemptState, Option<String>) {
    let state = recorded.unwrap_or(AttemptState::Running);
    let reason = meta
        .get("stop_reason")
        .filter(|r| !r.is_empty())
        .cloned()
        .or_else(|| {
            if state == AttemptState::Stopped {
                events
                    .iter()
                    .rev()
                    .find(|(_, kind, _)| kind == "stopped")
                    .map(|(_, _, detail)| detail.clone())
                    .filter(|d| !d.is_empty())
            } else {
                None
            }
        });
    (state, reason)
}

pub(crate) fn times(
    reader: &Reader,
    meta: &HashMap<String, String>,
    events: &[(f64, String, String)],
    state: AttemptState,
    now: f64,
) -> rusqlite::Result<Times> {
    let span = reader.call_span()?;
    let started = number::<f64>(meta, "started_at")
        .or_else(|| events.first().map(|e| e.0))
        .or(span.map(|s| s.0));
    let finished = if state == AttemptState::Running {
        None
    } else {
        number::<f64>(meta, "finished_at")
    };
    let end = match (finished, state) {
        (Some(f), _) => Some(f),
        (None, AttemptState::Running) => Some(now),
        (None, AttemptState::Finished | AttemptState::Stopped) => reader.last_activity()?,
    };
    Ok(Times {
        started,
        finished,
        end,
    })
}

/// The units the run is to migrate: the source's, capped by the sample.
pub(crate) fn units_total(meta: &HashMap<String, String>) -> Option<i64> {
    match (
        number::<i64>(meta, "units_total"),
        number::<i64>(meta, "sample"),
    ) {
        (Some(t), Some(s)) => Some(t.min(s)),
        (t, s) => t.or(s),
    }
}

pub(crate) fn unit_totals(
    reader: &Reader,
    meta: &HashMap<String, String>,
) -> rusqlite::Result<UnitTotals> {
    let counts = reader.unit_counts()?;
    let get = |s: &str| counts.get(s).copied().unwrap_or(0);
    let (done, failed, running) = (get("done"), get("failed"), get("running"));
    let total = units_total(meta);
    Ok(UnitTotals {
        total,
        done,
        failed,
        running,
        not_started: total.map(|t| (t - done - failed - running).max(0)),
    })
}

/// The command that resumes the run.
pub(crate) fn resume_command(meta: &HashMap<String, String>, run_dir: &Path) -> String {
    run_command(
        meta.get("plan_file").map_or("PLAN", String::as_str),
        run_dir,
        "--resume",
    )
}

/// The newest attempt that wrote its failed rows (`failed/<n>/`), and the command that
/// reloads them once fixed; `None` before any attempt wrote them.
pub(crate) fn reload_of_failed(
    reader: &Reader,
    meta: &HashMap<String, String>,
    run_dir: &Path,
) -> rusqlite::Result<Option<(i64, String)>> {
    let newest = reader
        .attempts()?
        .iter()
        .rev()
        .find(|a| a.failed_dir.is_some())
        .map(|a| a.n);
    Ok(newest.map(|n| {
        let plan = meta.get("plan_file").map_or("PLAN", String::as_str);
        (n, run_command(plan, run_dir, &format!("--reload {n}")))
    }))
}

/// `mambu-migrate run PLAN --run-dir RUN_DIR <flags>`, its words quoted for a POSIX shell.
pub fn run_command(plan: &str, run_dir: &Path, flags: &str) -> String {
    let plan = if plan == "PLAN" {
        plan.to_owned()
    } else {
        stats::shell_word(plan)
    };
    format!(
        "mambu-migrate run {plan} --run-dir {} {flags}",
        stats::shell_word(&run_dir.display().to_string())
    )
}

/// Outcome counts of a set of calls.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Outcomes {
    pub total: i64,
    pub ok: i64,
    pub retried: i64,
    pub throttled: i64,
    pub adopted: i64,
    pub failed: i64,
}

impl Outcomes {
    pub fn add(&mut self, outcome: CallOutcome, n: i64) {
        self.total += n;
        match outcome {
            CallOutcome::Ok => self.ok += n,
            CallOutcome::Retried => self.retried += n,
            CallOutcome::Throttled => self.throttled += n,
            CallOutcome::Adopted => self.adopted += n,
            CallOutcome::Failed => self.failed += n,
        }
    }

    pub fn totals(&self, seconds: Option<f64>) -> CallTotals {
        CallTotals {
            total: self.total,
            ok: self.ok,
            retried: self.retried,
            throttled: self.throttled,
            adopted: self.adopted,
            failed: self.failed,
            retry_rate: stats::round(stats::ratio(self.retried, self.total), 4),
            throttle_rate: stats::round(stats::ratio(self.throttled, self.total), 4),
            per_second: seconds
                .filter(|s| *s > 0.0)
                .map(|s| stats::round(self.total as f64 / s, 2)),
        }
    }
}

/// Every call's outcome, all together.
pub(crate) fn call_outcomes(counts: &[(String, String, String, CallOutcome, i64)]) -> Outcomes {
    let mut all = Outcomes::default();
    for (_, _, _, outcome, n) in counts {
        all.add(*outcome, *n);
    }
    all
}

/// The account a step instance acts on: the instance, less the step id if the executor
/// decorated it with one (`loans/LN-2/approve`, `approve@loans/LN-2`), so that every step on
/// one loan names the same account.
fn account_of<'a>(instance: &'a str, step_id: &str) -> &'a str {
    let row_path = |p: &str| !p.is_empty() && p.matches('/').count() % 2 == 1;
    for sep in ['/', '#', '@', ':', '.', '|'] {
        let stripped = [
            instance
                .strip_suffix(step_id)
                .and_then(|r| r.strip_suffix(sep)),
            instance
                .strip_prefix(step_id)
                .and_then(|r| r.strip_prefix(sep)),
        ];
        if let Some(account) = stripped.into_iter().flatten().find(|a| row_path(a)) {
            return account;
        }
    }
    instance
}

/// How the reports name why a unit failed: Mambu's errorReason, else the HTTP status, else
/// "no answer".
pub(crate) fn reason_of(e: &crate::checkpoint::UnitError) -> String {
    match (&e.error_reason, e.http_status) {
        (Some(r), _) if !r.is_empty() => r.clone(),
        (_, Some(status)) => format!("HTTP {status}"),
        (_, None) => "no answer".into(),
    }
}

/// Last known state of each account acted on by these actions, counted by state: most
/// frequent first.
fn final_states(reader: &Reader, actions: &[&str]) -> rusqlite::Result<Vec<StateCount>> {
    let mut last: HashMap<(String, String), String> = HashMap::new();
    // The accounts seen so far, per unit: a step on a row under one (a tranche's disbursement,
    // `…/loans/LN-2/tranches/TR-1`) acts on it. Steps run in order, so the account's own
    // steps come first.
    let mut accounts: HashMap<String, Vec<String>> = HashMap::new();
    reader.account_states(actions, |unit, instance, step_id, state| {
        let path = account_of(&instance, &step_id);
        let known = accounts.entry(unit.clone()).or_default();
        let account = match known.iter().find(|a| {
            path.strip_prefix(a.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }) {
            Some(account) => account.clone(),
            None => {
                known.push(path.to_owned());
                path.to_owned()
            }
        };
        last.insert((unit, account), state);
    })?;
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for state in last.into_values() {
        *counts.entry(state).or_default() += 1;
    }
    let mut out: Vec<StateCount> = counts
        .into_iter()
        .map(|(state, count)| StateCount { state, count })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.state.cmp(&b.state)));
    Ok(out)
}

impl Summary {
    /// Reads the figures of the run in `run_dir` from its checkpoint, as of `now` (unix seconds).
    pub fn read(reader: &Reader, run_dir: &Path, now: f64) -> rusqlite::Result<Self> {
        let meta = reader.meta_all()?;
        let events = reader.events()?;
        let (state, stop_reason) = state(reader.run_state()?, &meta, &events);
        let times = times(reader, &meta, &events, state, now)?;
        let duration = times.started.zip(times.end).map(|(s, e)| (e - s).max(0.0));

        let run = RunIdentity {
            plan_name: meta.get("plan_name").cloned(),
            plan_file: meta.get("plan_file").cloned(),
            plan_hash: meta.get("plan_hash").cloned(),
            target: meta.get("target").cloned(),
            rate: number(&meta, "rate"),
            concurrency: number(&meta, "concurrency"),
            sample: number(&meta, "sample"),
            state: state.as_str().to_owned(),
            stop_reason,
            started_at: times.started.map(stats::rfc3339),
            finished_at: times.finished.map(stats::rfc3339),
            duration_seconds: duration.map(|d| stats::round(d, 3)),
            resume_command: (state == AttemptState::Stopped)
                .then(|| resume_command(&meta, run_dir)),
            run_dir: run_dir.display().to_string(),
        };

        let call_counts = reader.call_counts()?;
        let calls = call_outcomes(&call_counts).totals(duration);

        // Per step: instances by status, then calls and latency.
        let mut steps: Vec<StepSummary> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut step_entry = |steps: &mut Vec<StepSummary>, step: &str, action: &str| -> usize {
            *index.entry(step.to_owned()).or_insert_with(|| {
                steps.push(StepSummary {
                    step: step.to_owned(),
                    action: action.to_owned(),
                    done: 0,
                    adopted: 0,
                    skipped: 0,
                    failed: 0,
                    calls: 0,
                    latency_ms: Latency {
                        samples: 0,
                        p50: None,
                        p95: None,
                        p99: None,
                    },
                });
                steps.len() - 1
            })
        };
        for (step, action, status, n) in reader.step_counts()? {
            let i = step_entry(&mut steps, &step, &action);
            let s = &mut steps[i];
            match status {
                StepStatus::Done => s.done += n,
                StepStatus::Adopted => s.adopted += n,
                StepStatus::Skipped => s.skipped += n,
                StepStatus::Failed => s.failed += n,
            }
        }
        let mut endpoints: Vec<EndpointSummary> = Vec::new();
        for (step, method, endpoint, outcome, n) in &call_counts {
            let action = if step.starts_with("lookups.") {
                "lookup"
            } else {
                ""
            };
            let i = step_entry(&mut steps, step, action);
            steps[i].calls += n;
            let e = match endpoints
                .iter()
                .position(|e| &e.method == method && &e.endpoint == endpoint)
            {
                Some(e) => e,
                None => {
                    endpoints.push(EndpointSummary {
                        method: method.clone(),
                        endpoint: endpoint.clone(),
                        calls: 0,
                        ok: 0,
                        retried: 0,
                        throttled: 0,
                        adopted: 0,
                        failed: 0,
                    });
                    endpoints.len() - 1
                }
            };
            let mut o = Outcomes::default();
            o.add(*outcome, *n);
            let e = &mut endpoints[e];
            e.calls += o.total;
            e.ok += o.ok;
            e.retried += o.retried;
            e.throttled += o.throttled;
            e.adopted += o.adopted;
            e.failed += o.failed;
        }
        for (step, samples, values) in reader.latency_percentiles(&[50.0, 95.0, 99.0])? {
            let i = step_entry(&mut steps, &step, "");
            steps[i].latency_ms = Latency {
                samples,
                p50: values[0],
                p95: values[1],
                p99: values[2],
            };
        }

        let throughput = match reader.call_span()? {
            None => Throughput {
                bucket_seconds: stats::bucket_seconds(duration.unwrap_or(0.0)),
                buckets: Vec::new(),
            },
            Some((first, last)) => {
                let origin = times.started.map_or(first, |s| s.min(first));
                let width = stats::bucket_seconds(duration.unwrap_or(last - origin));
                let sparse = reader.call_buckets(origin, f64::from(width))?;
                Throughput {
                    bucket_seconds: width,
                    buckets: stats::fill_buckets(&sparse, width),
                }
            }
        };

        let failed = reader.failed_units()?;
        let reload = reload_of_failed(reader, &meta, run_dir)?;
        let mut reasons: HashMap<String, i64> = HashMap::new();
        for unit in &failed {
            *reasons.entry(reason_of(&unit.error)).or_default() += 1;
        }
        let mut top_reasons: Vec<ReasonCount> = reasons
            .into_iter()
            .map(|(reason, units)| ReasonCount { reason, units })
            .collect();
        top_reasons.sort_by(|a, b| b.units.cmp(&a.units).then_with(|| a.reason.cmp(&b.reason)));
        top_reasons.truncate(TOP_REASONS);

        Ok(Summary {
            run,
            units: unit_totals(reader, &meta)?,
            calls,
            steps,
            endpoints,
            throughput,
            loan_states: final_states(reader, LOAN_ACTIONS)?,
            deposit_states: final_states(reader, DEPOSIT_ACTIONS)?,
            failures: Failures {
                units: failed.len() as i64,
                top_reasons,
                errors_csv: "errors.csv".into(),
                failed_dir: reload
                    .as_ref()
                    .map_or_else(|| "failed/".into(), |(n, _)| format!("failed/{n}/")),
                reload_command: reload
                    .filter(|_| !failed.is_empty())
                    .map(|(_, command)| command),
            },
            history: events
                .into_iter()
                .map(|(at, kind, detail)| HistoryEvent {
                    at: stats::rfc3339(at),
                    kind,
                    detail,
                })
                .collect(),
            phases: phases(reader)?,
            rollbacks: reader.rollbacks()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_on_a_loan_names_the_same_account() {
        assert_eq!(
            account_of("clients/CL-1/loans/LN-2", "approve"),
            "clients/CL-1/loans/LN-2"
        );
        assert_eq!(
            account_of("clients/CL-1/loans/LN-2/approve", "approve"),
            "clients/CL-1/loans/LN-2"
        );
        assert_eq!(
            account_of("clients/CL-1/loans/LN-2#approve", "approve"),
            "clients/CL-1/loans/LN-2"
        );
        assert_eq!(
            account_of("approve@clients/CL-1/loans/LN-2", "approve"),
            "clients/CL-1/loans/LN-2"
        );
        assert_eq!(
            account_of("loans/LN-2", "loans"),
            "loans/LN-2",
            "a row path is left alone"
        );
        assert_eq!(
            account_of("clients/CL-1/loans/LN-2", "LN-2"),
            "clients/CL-1/loans/LN-2"
        );
        assert_eq!(account_of("odd", "x"), "odd");
    }

    #[test]
    fn a_tranche_disbursement_counts_with_its_loan() {
        use crate::checkpoint::{Checkpoint, Record, StepRecord};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        let cp = Checkpoint::open(&path).unwrap();
        let step = |instance: &str, step_id: &str, action: &str, state: &str| {
            Record::Step(Box::new(StepRecord {
                unit: "CL-1".into(),
                instance: format!("clients/CL-1/{instance}#{step_id}"),
                step_id: step_id.into(),
                action: action.into(),
                status: StepStatus::Done,
                idempotency_key: None,
                http_status: Some(201),
                outputs: serde_json::json!({ "accountState": state }),
                attempts: 1,
                latency_ms: 1.0,
            }))
        };
        cp.record(Record::UnitStarted {
            key: "CL-1".into(),
            ordinal: 1,
        });
        cp.record(step(
            "loans/LN-1",
            "loan",
            "create_loan",
            "PENDING_APPROVAL",
        ));
        cp.record(step("loans/LN-1", "approve", "approve_loan", "APPROVED"));
        for tranche in ["TR-1", "TR-2"] {
            cp.record(step(
                &format!("loans/LN-1/tranches/{tranche}"),
                "disburse_tranche",
                "disburse_loan",
                "ACTIVE",
            ));
        }
        cp.record(step(
            "loans/LN-10",
            "loan",
            "create_loan",
            "PENDING_APPROVAL",
        ));
        cp.close().unwrap();
        let reader = Reader::open(&path).unwrap();
        let states = final_states(&reader, LOAN_ACTIONS).unwrap();
        let got: Vec<(&str, i64)> = states.iter().map(|s| (s.state.as_str(), s.count)).collect();
        assert_eq!(got, [("ACTIVE", 1), ("PENDING_APPROVAL", 1)]);
    }

    #[test]
    fn the_sample_caps_the_total() {
        let meta = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(
            units_total(&meta(&[("units_total", "1000"), ("sample", "100")])),
            Some(100)
        );
        assert_eq!(
            units_total(&meta(&[("units_total", "40"), ("sample", "100")])),
            Some(40)
        );
        assert_eq!(units_total(&meta(&[("sample", "100")])), Some(100));
        assert_eq!(units_total(&meta(&[])), None);
    }
}
