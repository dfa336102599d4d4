//! The run's SQLite store (WAL): the only module that sees rusqlite.
//!
//! The executor sends [`Record`]s; a writer thread commits them in batches every 100 ms, so
//! recording costs the executor a channel push (the writer is not woken for it). A crash may
//! lose the last batch: that is safe because every step is safe to replay (ids, externalIds,
//! idempotency keys), and the tests kill -9 a run to prove it.
//!
//! Submodules:
//! - this module: the schema (`SCHEMA`) and its column migration (`ADDED_COLUMNS`, applied by
//!   `open_connection`, which both sides use); the records the executor sends ([`Record`],
//!   [`StepRecord`], [`CallRecord`], [`UnitError`], [`SourceRows`], [`Attempt`],
//!   [`SourceFile`]); the values they store as text ([`StepStatus`], [`AttemptKind`],
//!   [`AttemptState`]; a call's [`CallOutcome`] is the policy's, in `mambu`, which knows
//!   nothing of the checkpoint); [`CheckpointError`].
//! - `writer`: [`Checkpoint`] and its writer thread, which commits the records in batches.
//! - `reader`: [`read_resume`] (what a resume needs, read once at the start of a run) and
//!   [`Reader`], the checkpoint opened read-only for reports, `status` and `verify`, with the
//!   rows and figures it returns ([`FailedUnit`], [`CallRow`], [`StepLatencies`],
//!   [`nearest_rank`]).
//!
//! Every type is re-exported here: callers name `checkpoint::X`, never a submodule.
//!
//! Tables:
//! - `meta(key, value)`: plan and source hashes, settings, the run's state.
//! - `units(key, ordinal, status, failed_step, http_status, error_code, error_reason,
//!   error_source, message, attempts, started_at, finished_at, calls)`: status is `running`,
//!   `done` or `failed`.
//! - `steps(unit, instance, step_id, action, status, idempotency_key, http_status, outputs,
//!   attempts, latency_ms, finished_at)`: every step instance that finished (`done`,
//!   `adopted`, `skipped`, `failed`), with its outputs (JSON: ids, encodedKeys, saved fields).
//! - `calls(unit, step_id, method, endpoint, status, outcome, latency_ms, at)`: every HTTP
//!   attempt, for latency percentiles, retry and throttle rates (`plan estimate --from-run`).
//! - `events(at, kind, detail)`: started, resumed, stopped (and why), finished.
//! - `attempts(n, kind, reload_start, started_at, ended_at, state, sources, failed_dir)`: every
//!   invocation of `run` on the directory, with the file (path and SHA-256) that fed each
//!   source, so a reload killed at any moment is resumed from the same files.
//! - `bulks(idempotency_key, step_id, items, bulk_key, settled, at)`: every bulk of deposit
//!   transactions, committed before it is POSTed: its items (the unit, step instance and item
//!   of each, JSON), then Mambu's bulk process key once answered, then settled once every
//!   item's step is recorded. A resume POSTs again, with the same key and items, a bulk without
//!   a process key, and polls one with.
//! - `phases(n, kind, first_attempt, baseline, sources, started_at, counts)`: the migration
//!   (phase 1) and every catch-up after it (`run --catch-up`): the attempt that opened it, the
//!   extract it compared with (`baseline`) and the one it read (path and SHA-256 of each
//!   source), and what the comparison found (`counts`, JSON [`PhaseCounts`]).
//! - `drift(phase, unit, source, row_key, col, change, old, new, action)`: every change a
//!   catch-up found in rows already migrated, personal values masked, and what was done with it
//!   (`drift.csv`).
//! - `failed_rows(unit, attempt, source, header, rows)`: the source rows of a unit that failed,
//!   committed with its failure, so `failed/<attempt>/` can always be written again from here.

mod reader;
mod undo;
mod writer;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::Value;

use crate::mambu::CallOutcome;

pub use reader::{CallRow, FailedUnit, Reader, Resume, StepLatencies, nearest_rank, read_resume};
pub use undo::{PartlyUndone, Rollbacks, RolledBack, UndoLog, UndoStatus};
pub use writer::Checkpoint;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    key TEXT PRIMARY KEY, ordinal INTEGER NOT NULL, status TEXT NOT NULL,
    failed_step TEXT, http_status INTEGER, error_code INTEGER, error_reason TEXT,
    error_source TEXT, message TEXT, attempts INTEGER,
    started_at REAL, finished_at REAL, calls INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS steps (
    unit TEXT NOT NULL, instance TEXT NOT NULL, step_id TEXT NOT NULL, action TEXT NOT NULL,
    status TEXT NOT NULL, idempotency_key TEXT, http_status INTEGER, outputs TEXT,
    attempts INTEGER NOT NULL, latency_ms REAL, finished_at REAL NOT NULL,
    PRIMARY KEY (unit, instance));
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY, unit TEXT NOT NULL, step_id TEXT NOT NULL, method TEXT NOT NULL,
    endpoint TEXT NOT NULL, status INTEGER, outcome TEXT NOT NULL, latency_ms REAL NOT NULL,
    at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (at REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    n INTEGER PRIMARY KEY, kind TEXT NOT NULL, reload_start INTEGER, started_at REAL NOT NULL,
    ended_at REAL, state TEXT NOT NULL, sources TEXT NOT NULL, failed_dir TEXT);
CREATE TABLE IF NOT EXISTS bulks (
    idempotency_key TEXT PRIMARY KEY, step_id TEXT NOT NULL, items TEXT NOT NULL,
    bulk_key TEXT, settled INTEGER NOT NULL DEFAULT 0, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS phases (
    n INTEGER PRIMARY KEY, kind TEXT NOT NULL, first_attempt INTEGER NOT NULL,
    baseline TEXT NOT NULL, sources TEXT NOT NULL, started_at REAL NOT NULL, counts TEXT);
CREATE TABLE IF NOT EXISTS drift (
    phase INTEGER NOT NULL, unit TEXT NOT NULL, source TEXT NOT NULL, row_key TEXT NOT NULL,
    col TEXT NOT NULL, change TEXT NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL,
    action TEXT NOT NULL, PRIMARY KEY (phase, unit, source, row_key, col));
CREATE TABLE IF NOT EXISTS failed_rows (
    unit TEXT NOT NULL, attempt INTEGER NOT NULL, source TEXT NOT NULL, header TEXT NOT NULL,
    rows TEXT NOT NULL, PRIMARY KEY (unit, attempt, source));
";

/// Columns added since the first release, for checkpoints written before them.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("units", "attempt", "INTEGER")];

/// Why a unit failed, as Mambu said it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitError {
    pub step: String,
    pub http_status: Option<u16>,
    pub error_code: Option<i64>,
    pub error_reason: Option<String>,
    pub error_source: Option<String>,
    pub message: String,
    pub attempts: u32,
}

crate::stored_as_text! {
    /// How a step instance finished.
    pub enum StepStatus: "step status" {
        /// Its call succeeded.
        Done = "done",
        /// Mambu said what it makes exists, and that was adopted.
        Adopted = "adopted",
        /// Its `when` was false: nothing sent.
        Skipped = "skipped",
        /// It failed (the unit failed with it).
        Failed = "failed",
    }
}

crate::stored_as_text! {
    /// Which invocation of `run` on its run directory an attempt is.
    pub enum AttemptKind: "attempt kind" {
        Fresh = "fresh",
        /// Goes on with the same data: units that failed stay failed.
        Resume = "resume",
        /// Some sources are fixed failed rows (files under the run's `failed/`): the units that
        /// failed before this reload began are tried again from the step they failed at.
        Reload = "reload",
        /// Opens a catch-up phase: a newer extract, compared with the one migrated before.
        CatchUp = "catch-up",
    }
}

/// The events that open an attempt (a session of `run`), one per [`AttemptKind`].
pub const SESSION_EVENTS: [&str; 4] = ["started", "resumed", "reloaded", "catch-up"];

impl AttemptKind {
    /// The event that opens the attempt in the run's history (one of [`SESSION_EVENTS`]).
    pub fn event(self) -> &'static str {
        match self {
            AttemptKind::Fresh => "started",
            AttemptKind::Resume => "resumed",
            AttemptKind::Reload => "reloaded",
            AttemptKind::CatchUp => "catch-up",
        }
    }
}

crate::stored_as_text! {
    /// Where an attempt stands, and so the run (its meta `state`: that of its last attempt).
    pub enum AttemptState: "attempt state" {
        /// Going on, or killed (an attempt killed is never ended).
        Running = "running",
        Finished = "finished",
        /// Stopped before the end (interrupt, error budget, deadline, outage): resumable.
        Stopped = "stopped",
    }
}

crate::stored_as_text! {
    /// What a phase of the run is.
    pub enum PhaseKind: "phase kind" {
        /// The migration of the whole extract (phase 1).
        Migration = "migration",
        /// Only what changed since the extract migrated before (`run --catch-up`).
        CatchUp = "catch-up",
    }
}

/// What a catch-up's comparison of two extracts found, unit by unit and row by row.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PhaseCounts {
    /// Units not migrated before (new in the extract, or never run): migrated in full.
    pub units_new: u64,
    /// Units migrated before with rows added, changed or removed.
    pub units_changed: u64,
    /// Units whose rows did not change: skipped without a call.
    pub units_unchanged: u64,
    /// Units that failed before and did not change: left failed (fix and reload them).
    pub units_failed_unchanged: u64,
    /// Units of the earlier extract no longer in this one.
    pub units_removed: u64,
    /// New rows of units migrated before (their steps run).
    pub rows_added: u64,
    /// Drift: changed cells, removed rows and units, rows dated before rows already migrated.
    pub drift: u64,
    /// Drift applied by an update the plan declares (`on_change`).
    pub drift_applied: u64,
    /// Drift in columns the plan does not send.
    pub drift_not_sent: u64,
    /// Drift left for a person.
    pub drift_left: u64,
}

/// A phase of the run: the migration, or a catch-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub n: i64,
    pub kind: PhaseKind,
    /// The attempt that opened it; later attempts up to the next phase's belong to it.
    pub first_attempt: i64,
    /// The extract it compared with (a catch-up's: the previous phase's `sources`).
    pub baseline: Vec<SourceFile>,
    pub sources: Vec<SourceFile>,
    pub started_at: f64,
    /// A catch-up's comparison, once made.
    pub counts: Option<PhaseCounts>,
}

/// A change a catch-up found in a row already migrated (a line of `drift.csv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRow {
    pub phase: i64,
    pub unit: String,
    pub source: String,
    pub row_key: String,
    /// The column, or empty for a change of the whole row or unit.
    pub column: String,
    /// `changed`, `removed`, `unit removed`, `added before migrated rows`.
    pub change: String,
    /// Masked when the column holds personal data.
    pub old: String,
    pub new: String,
    /// What was done: `update <step>`, `not sent by the plan`, `left for a person: …`.
    pub action: String,
}

/// A finished step instance.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub unit: String,
    pub instance: String,
    pub step_id: String,
    pub action: String,
    pub status: StepStatus,
    pub idempotency_key: Option<String>,
    pub http_status: Option<u16>,
    pub outputs: Value,
    pub attempts: u32,
    pub latency_ms: f64,
}

/// One HTTP attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub unit: String,
    pub step_id: String,
    pub method: &'static str,
    /// The path template, e.g. `/loans/{loan}/repayment-transactions`.
    pub endpoint: String,
    pub status: Option<u16>,
    pub outcome: CallOutcome,
    pub latency_ms: f64,
}

/// What the executor records.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    UnitStarted {
        key: String,
        ordinal: i64,
    },
    Step(Box<StepRecord>),
    Call(Box<CallRecord>),
    /// A unit ended in `attempt`: done, or failed with its source rows (committed with the
    /// failure, in one transaction).
    UnitFinished {
        key: String,
        error: Option<Box<UnitError>>,
        calls: i64,
        attempt: i64,
        rows: Vec<SourceRows>,
    },
    /// An invocation of `run` began: committed before its sources are read.
    AttemptStarted(Box<Attempt>),
    /// An invocation ended (finished or stopped), and where its failed rows were written.
    AttemptEnded {
        n: i64,
        state: AttemptState,
        failed_dir: Option<String>,
    },
    Event {
        kind: String,
        detail: String,
    },
    Meta {
        key: String,
        value: String,
    },
    /// A bulk about to be POSTed: committed (flushed) before it is.
    BulkBatch(Box<BulkBatch>),
    /// Mambu accepted the bulk: its process key.
    BulkKey {
        idempotency_key: String,
        bulk_key: String,
    },
    /// Every item's step of the bulk is recorded.
    BulkSettled {
        idempotency_key: String,
    },
    /// A phase began (committed with the attempt that opens it).
    PhaseStarted(Box<Phase>),
    /// A catch-up's comparison is complete.
    PhaseCounts {
        n: i64,
        counts: PhaseCounts,
    },
    Drift(Box<DriftRow>),
}

/// One item of a bulk: the unit and step instance it settles, and what is sent for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BulkItem {
    pub unit: String,
    pub instance: String,
    pub item: Value,
}

/// A bulk of deposit transactions as recorded: sent under `idempotency_key` with `items` in
/// their order; `bulk_key` once Mambu accepted it.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkBatch {
    pub idempotency_key: String,
    pub step_id: String,
    pub items: Vec<BulkItem>,
    pub bulk_key: Option<String>,
}

/// A file's fingerprint as the checkpoint's meta keeps it (`plan`, `source:<name>`):
/// `path|sha256`, written and read here only.
pub fn fingerprint(path: &str, sha256: &str) -> String {
    format!("{path}|{sha256}")
}

/// The path and SHA-256 of a [`fingerprint`].
pub fn split_fingerprint(value: &str) -> Option<(&str, &str)> {
    value.rsplit_once('|')
}

/// The rows one source held for a failed unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceRows {
    pub source: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The file that fed a source in an attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub path: String,
    pub sha256: String,
}

/// One invocation of `run` on a run directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// 1, 2, …: names its `failed/<n>/` folder.
    pub n: i64,
    pub kind: AttemptKind,
    /// For a reload (or the resume of one): the attempt that began it. Units that failed at or
    /// after it were already retried by this reload.
    pub reload_start: Option<i64>,
    /// Running until it ends finished or stopped (a killed attempt stays running).
    pub state: AttemptState,
    pub sources: Vec<SourceFile>,
    pub failed_dir: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("checkpoint writer stopped")]
    Closed,
    /// A commit failed (a full disk, an I/O error): what was recorded since the last commit is
    /// held and committed again every 100 ms until it goes through or the checkpoint closes.
    #[error(
        "checkpoint {path} cannot be written: {message} (a full disk? free space, then resume)"
    )]
    Unwritable { path: String, message: String },
}

fn open_connection(path: &Path) -> Result<Connection, CheckpointError> {
    let wrap = |source| CheckpointError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(wrap)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(wrap)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(wrap)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(wrap)?;
    conn.execute_batch(SCHEMA).map_err(wrap)?;
    for (table, column, kind) in ADDED_COLUMNS {
        let present: bool = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get::<_, i64>(0),
            )
            .map_err(wrap)?
            > 0;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))
                .map_err(wrap)?;
        }
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_stored_as_earlier_checkpoints_hold_them_and_unknown_text_is_an_error() {
        // The texts checkpoints already hold: they never change.
        assert_eq!(
            CallOutcome::TEXTS,
            ["ok", "retried", "throttled", "adopted", "failed"]
        );
        assert_eq!(StepStatus::TEXTS, ["done", "adopted", "skipped", "failed"]);
        assert_eq!(
            AttemptKind::TEXTS,
            ["fresh", "resume", "reload", "catch-up"]
        );
        assert_eq!(PhaseKind::TEXTS, ["migration", "catch-up"]);
        assert_eq!(AttemptState::TEXTS, ["running", "finished", "stopped"]);
        // Each text reads back as the value stored as it.
        fn reads_back<T: std::str::FromStr>(texts: &[&str], as_str: fn(T) -> &'static str) -> bool {
            texts.iter().all(|t| t.parse().ok().map(as_str) == Some(*t))
        }
        assert!(reads_back(CallOutcome::TEXTS, CallOutcome::as_str));
        assert!(reads_back(StepStatus::TEXTS, StepStatus::as_str));
        assert!(reads_back(AttemptKind::TEXTS, AttemptKind::as_str));
        assert!(reads_back(PhaseKind::TEXTS, PhaseKind::as_str));
        let events: Vec<&str> = AttemptKind::TEXTS
            .iter()
            .map(|t| t.parse::<AttemptKind>().unwrap().event())
            .collect();
        assert_eq!(events, SESSION_EVENTS);
        assert!(reads_back(AttemptState::TEXTS, AttemptState::as_str));

        // A checkpoint holding values this version does not know (a newer one wrote them).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        Checkpoint::open(&path).unwrap().close().unwrap();
        Connection::open(&path).unwrap().execute_batch("INSERT INTO units (key, ordinal, status) VALUES ('CL-1', 1, 'running'); INSERT INTO steps (unit, instance, step_id, action, status, attempts, finished_at) VALUES ('CL-1', 'clients/CL-1', 'client', 'create_client', 'replayed', 1, 0); INSERT INTO calls (unit, step_id, method, endpoint, outcome, latency_ms, at) VALUES ('CL-1', 'client', 'POST', '/clients', 'deferred', 1, 0); INSERT INTO meta (key, value) VALUES ('state', 'paused');").unwrap();
        let error = read_resume(&path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("checkpoint {}: ", path.display()))
                && error.ends_with(
                    "steps.status: unknown step status \"replayed\" (known: done, adopted, skipped, failed)"
                ),
            "{error}"
        );
        let reader = Reader::open(&path).unwrap();
        let error = reader.call_counts().unwrap_err().to_string();
        assert!(
            error.ends_with("calls.outcome: unknown call outcome \"deferred\" (known: ok, retried, throttled, adopted, failed)"),
            "{error}"
        );
        let error = reader.run_state().unwrap_err().to_string();
        assert!(
            error.ends_with(
                "meta.state: unknown attempt state \"paused\" (known: running, finished, stopped)"
            ),
            "{error}"
        );
    }

    #[test]
    fn bulks_are_read_back_until_settled_with_their_items_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        let cp = Checkpoint::open(&path).unwrap();
        let batch = |key: &str| BulkBatch {
            idempotency_key: key.into(),
            step_id: "opening".into(),
            items: vec![BulkItem {
                unit: "CL-1".into(),
                instance: "clients/CL-1#opening".into(),
                item: serde_json::json!({ "accountId": "DP-1", "amount": 5, "externalId": "O-1" }),
            }],
            bulk_key: None,
        };
        for key in ["k1", "k2", "k3"] {
            cp.record(Record::BulkBatch(Box::new(batch(key))));
        }
        // Recorded again (a resume re-sending it): the first record stands.
        cp.record(Record::BulkBatch(Box::new(batch("k1"))));
        cp.record(Record::BulkKey {
            idempotency_key: "k2".into(),
            bulk_key: "8a5b01".into(),
        });
        cp.record(Record::BulkSettled {
            idempotency_key: "k3".into(),
        });
        cp.close().unwrap();
        let open = read_resume(&path).unwrap().bulks;
        assert_eq!(open.len(), 2);
        assert_eq!(open[0], batch("k1"));
        assert_eq!(open[1].bulk_key.as_deref(), Some("8a5b01"));
        assert_eq!(open[1].items, batch("k2").items);
    }

    #[test]
    fn attempts_are_recorded_and_a_checkpoint_without_them_gains_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        {
            // A checkpoint written before attempts existed.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE units (key TEXT PRIMARY KEY, ordinal INTEGER NOT NULL, status TEXT NOT NULL, failed_step TEXT, http_status INTEGER, error_code INTEGER, error_reason TEXT, error_source TEXT, message TEXT, attempts INTEGER, started_at REAL, finished_at REAL, calls INTEGER NOT NULL DEFAULT 0); INSERT INTO units (key, ordinal, status, failed_step) VALUES ('CL-9', 1, 'failed', 'loan'), ('CL-8', 2, 'done', NULL);").unwrap();
        }
        // Read as it is (verify, status), before any run has added the columns.
        let old = Reader::open(&path).unwrap();
        assert!(old.attempts().unwrap().is_empty());
        assert!(old.failed_rows().unwrap().is_empty());
        assert_eq!(old.done_unit_attempts().unwrap()["CL-8"], 0);
        drop(old);
        let cp = Checkpoint::open(&path).unwrap();
        let sources = vec![SourceFile {
            name: "clients".into(),
            path: "failed/1/clients.csv".into(),
            sha256: "ab".into(),
        }];
        cp.record(Record::AttemptStarted(Box::new(Attempt {
            n: 2,
            kind: AttemptKind::Reload,
            reload_start: Some(2),
            state: AttemptState::Running,
            sources: sources.clone(),
            failed_dir: None,
        })));
        cp.record(Record::AttemptEnded {
            n: 2,
            state: AttemptState::Finished,
            failed_dir: Some("failed/2".into()),
        });
        cp.close().unwrap();
        let resume = read_resume(&path).unwrap();
        assert_eq!(resume.failed["CL-9"], ("loan".to_owned(), 0));
        assert_eq!(resume.attempts.len(), 1);
        let a = &resume.attempts[0];
        assert_eq!(
            (a.n, a.kind, a.reload_start),
            (2, AttemptKind::Reload, Some(2))
        );
        assert_eq!(
            (a.state, a.failed_dir.as_deref()),
            (AttemptState::Finished, Some("failed/2"))
        );
        assert_eq!(a.sources, sources);
    }
}
