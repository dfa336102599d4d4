//! The run's SQLite store (WAL): the only module that sees rusqlite.
//!
//! The executor sends [`Record`]s; a writer thread commits them in batches every 100 ms, so
//! recording costs the executor a channel push (the writer is not woken for it). A crash may
//! lose the last batch: that is safe because every step is safe to replay (ids, externalIds,
//! idempotency keys), and the tests kill -9 a run to prove it.
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
//! - `failed_rows(unit, attempt, source, header, rows)`: the source rows of a unit that failed,
//!   committed with its failure, so `failed/<attempt>/` can always be written again from here.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

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

/// A finished step instance.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub unit: String,
    pub instance: String,
    pub step_id: String,
    pub action: String,
    /// `done`, `adopted`, `skipped` or `failed`.
    pub status: &'static str,
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
    /// `ok`, `retried`, `throttled`, `adopted`, `failed`.
    pub outcome: &'static str,
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
    /// An invocation ended (`finished` or `stopped`), and where its failed rows were written.
    AttemptEnded {
        n: i64,
        state: String,
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
    /// `fresh`, `resume` or `reload`.
    pub kind: String,
    /// For a reload (or the resume of one): the attempt that began it. Units that failed at or
    /// after it were already retried by this reload.
    pub reload_start: Option<i64>,
    /// `running` until it ends `finished` or `stopped` (a killed attempt stays `running`).
    pub state: String,
    pub sources: Vec<SourceFile>,
    pub failed_dir: Option<String>,
}

enum Message {
    Record(Record),
    /// Answered `true` once everything before it is committed, `false` if that failed.
    Flush(mpsc::Sender<bool>),
}

/// What an earlier run left: how to resume.
#[derive(Debug, Default)]
pub struct Resume {
    pub meta: HashMap<String, String>,
    /// Units done.
    pub done: HashSet<String>,
    /// Units that failed, with the step they failed at and the attempt they failed in (0 for a
    /// checkpoint older than attempts).
    pub failed: HashMap<String, (String, i64)>,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<Attempt>,
    /// Outputs of finished steps of units not done: unit → instance → (status, outputs).
    pub steps: HashMap<String, HashMap<String, (String, Value)>>,
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

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The open checkpoint of a run directory.
pub struct Checkpoint {
    tx: mpsc::Sender<Message>,
    writer: Option<JoinHandle<Result<(), rusqlite::Error>>>,
    path: String,
    /// The first commit that failed, if one did.
    failure: Arc<OnceLock<String>>,
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

fn attempts_of(conn: &Connection) -> Result<Vec<Attempt>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT n, kind, reload_start, state, sources, failed_dir FROM attempts ORDER BY n",
    )?;
    let rows = stmt.query_map([], |r| {
        let sources: String = r.get(4)?;
        Ok(Attempt {
            n: r.get(0)?,
            kind: r.get(1)?,
            reload_start: r.get(2)?,
            state: r.get(3)?,
            sources: serde_json::from_str(&sources).unwrap_or_default(),
            failed_dir: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// Reads what an earlier run left (empty if the file is new).
pub fn read_resume(path: &Path) -> Result<Resume, CheckpointError> {
    let wrap = |source| CheckpointError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let conn = open_connection(path)?;
    let mut resume = Resume::default();
    let mut stmt = conn.prepare("SELECT key, value FROM meta").map_err(wrap)?;
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(wrap)?
    {
        let (k, v) = row.map_err(wrap)?;
        resume.meta.insert(k, v);
    }
    let mut stmt = conn
        .prepare("SELECT key, status, failed_step, attempt FROM units")
        .map_err(wrap)?;
    for row in stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })
        .map_err(wrap)?
    {
        let (key, status, step, attempt) = row.map_err(wrap)?;
        match status.as_str() {
            "done" => {
                resume.done.insert(key);
            }
            "failed" => {
                resume
                    .failed
                    .insert(key, (step.unwrap_or_default(), attempt.unwrap_or(0)));
            }
            _ => {}
        }
    }
    let mut stmt = conn.prepare("SELECT s.unit, s.instance, s.status, s.outputs FROM steps s JOIN units u ON u.key = s.unit WHERE u.status != 'done'").map_err(wrap)?;
    for row in stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .map_err(wrap)?
    {
        let (unit, instance, status, outputs) = row.map_err(wrap)?;
        let outputs = outputs
            .and_then(|o| serde_json::from_str(&o).ok())
            .unwrap_or(Value::Null);
        resume
            .steps
            .entry(unit)
            .or_default()
            .insert(instance, (status, outputs));
    }
    resume.attempts = attempts_of(&conn).map_err(wrap)?;
    Ok(resume)
}

impl Checkpoint {
    /// Opens (creating if need be) the checkpoint and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let conn = open_connection(path)?;
        let (tx, rx) = mpsc::channel();
        let failure = Arc::new(OnceLock::new());
        let failed = failure.clone();
        let writer = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || write_loop(conn, rx, &failed))
            .map_err(|e| CheckpointError::Sqlite {
                path: path.display().to_string(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok(Self {
            tx,
            writer: Some(writer),
            path: path.display().to_string(),
            failure,
        })
    }

    /// Why a commit failed, once one has: the run must stop taking new work (what it records
    /// is held in memory until a commit goes through).
    pub fn failure(&self) -> Option<CheckpointError> {
        self.failure
            .get()
            .map(|message| CheckpointError::Unwritable {
                path: self.path.clone(),
                message: message.clone(),
            })
    }

    /// Queues a record; it is committed within 100 ms.
    pub fn record(&self, record: Record) {
        let _ = self.tx.send(Message::Record(record));
    }

    /// Waits until everything queued so far is committed; an error if it could not be.
    pub fn flush(&self) -> Result<(), CheckpointError> {
        let (done_tx, done_rx) = mpsc::channel();
        self.tx
            .send(Message::Flush(done_tx))
            .map_err(|_| CheckpointError::Closed)?;
        self.wake();
        match done_rx.recv() {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.failure().unwrap_or(CheckpointError::Closed)),
            Err(_) => Err(CheckpointError::Closed),
        }
    }

    /// Wakes the writer before its next commit is due.
    fn wake(&self) {
        if let Some(writer) = &self.writer {
            writer.thread().unpark();
        }
    }

    /// Commits everything and stops the writer.
    pub fn close(mut self) -> Result<(), CheckpointError> {
        self.flush()?;
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        self.wake();
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(source))) => Err(CheckpointError::Sqlite {
                path: self.path.clone(),
                source,
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// How often the writer commits what was recorded.
const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Commits every [`COMMIT_EVERY`]. Between commits the thread sleeps: a record is a push onto
/// the channel that wakes nobody (waking the writer for every record cost the executor a futex
/// call and a context switch per record). Only [`Checkpoint::flush`] and closing wake it early.
/// A failed commit is noted in `failure` (once) and its records kept for the next one; closing
/// with a commit still failing returns its error.
fn write_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Message>,
    failure: &OnceLock<String>,
) -> Result<(), rusqlite::Error> {
    let mut batch: Vec<Record> = Vec::new();
    let mut waiting: Vec<mpsc::Sender<bool>> = Vec::new();
    let mut next = Instant::now() + COMMIT_EVERY;
    loop {
        let now = Instant::now();
        if now < next {
            std::thread::park_timeout(next - now);
        }
        let mut closed = false;
        loop {
            match rx.try_recv() {
                Ok(Message::Record(r)) => batch.push(r),
                Ok(Message::Flush(done)) => waiting.push(done),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let due = Instant::now() >= next;
        let mut committed = true;
        if !batch.is_empty() && (due || !waiting.is_empty() || closed) {
            match commit(&mut conn, &batch) {
                Ok(()) => batch.clear(),
                Err(e) => {
                    let _ = failure.set(e.to_string());
                    if closed {
                        return Err(e);
                    }
                    committed = false;
                }
            }
        }
        if due {
            next = Instant::now() + COMMIT_EVERY;
        }
        for done in waiting.drain(..) {
            let _ = done.send(committed);
        }
        if closed {
            return Ok(());
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Record]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    let at = now();
    // The statements of nearly every record, looked up once per batch rather than per record.
    let mut insert_step = tx.prepare_cached("INSERT OR REPLACE INTO steps (unit, instance, step_id, action, status, idempotency_key, http_status, outputs, attempts, latency_ms, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")?;
    let mut insert_call = tx.prepare_cached("INSERT INTO calls (unit, step_id, method, endpoint, status, outcome, latency_ms, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
    for record in batch {
        match record {
            Record::UnitStarted { key, ordinal } => {
                tx.prepare_cached("INSERT INTO units (key, ordinal, status, started_at) VALUES (?1, ?2, 'running', ?3) ON CONFLICT(key) DO UPDATE SET status = 'running', started_at = ?3")?.execute(params![key, ordinal, at])?;
            }
            Record::Step(s) => {
                insert_step.execute(params![
                    s.unit,
                    s.instance,
                    s.step_id,
                    s.action,
                    s.status,
                    s.idempotency_key,
                    s.http_status,
                    s.outputs.to_string(),
                    s.attempts,
                    s.latency_ms,
                    at
                ])?;
            }
            Record::Call(c) => {
                insert_call.execute(params![
                    c.unit,
                    c.step_id,
                    c.method,
                    c.endpoint,
                    c.status,
                    c.outcome,
                    c.latency_ms,
                    at
                ])?;
            }
            Record::UnitFinished {
                key,
                error,
                calls,
                attempt,
                rows,
            } => {
                let e = error.as_deref();
                for source in rows {
                    tx.prepare_cached("INSERT OR REPLACE INTO failed_rows (unit, attempt, source, header, rows) VALUES (?1, ?2, ?3, ?4, ?5)")?
                        .execute(params![
                            key,
                            attempt,
                            source.source,
                            serde_json::to_string(&source.header).unwrap_or_default(),
                            serde_json::to_string(&source.rows).unwrap_or_default()
                        ])?;
                }
                tx.prepare_cached(
                    "UPDATE units SET status = ?2, failed_step = ?3, http_status = ?4, error_code = ?5, error_reason = ?6, error_source = ?7, message = ?8, attempts = ?9, finished_at = ?10, calls = calls + ?11, attempt = ?12 WHERE key = ?1",
                )?
                .execute(params![
                    key,
                    if e.is_some() { "failed" } else { "done" },
                    e.map(|e| &e.step),
                    e.and_then(|e| e.http_status),
                    e.and_then(|e| e.error_code),
                    e.and_then(|e| e.error_reason.as_ref()),
                    e.and_then(|e| e.error_source.as_ref()),
                    e.map(|e| &e.message),
                    e.map(|e| e.attempts),
                    at,
                    calls,
                    attempt
                ])?;
            }
            Record::AttemptStarted(a) => {
                tx.prepare_cached("INSERT OR REPLACE INTO attempts (n, kind, reload_start, started_at, state, sources) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
                    .execute(params![a.n, a.kind, a.reload_start, at, a.state, serde_json::to_string(&a.sources).unwrap_or_default()])?;
            }
            Record::AttemptEnded {
                n,
                state,
                failed_dir,
            } => {
                tx.prepare_cached("UPDATE attempts SET state = ?2, ended_at = ?3, failed_dir = COALESCE(?4, failed_dir) WHERE n = ?1")?
                    .execute(params![n, state, at, failed_dir])?;
            }
            Record::Event { kind, detail } => {
                tx.prepare_cached("INSERT INTO events (at, kind, detail) VALUES (?1, ?2, ?3)")?
                    .execute(params![at, kind, detail])?;
            }
            Record::Meta { key, value } => {
                tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                    .execute(params![key, value])?;
            }
        }
    }
    drop((insert_step, insert_call));
    tx.commit()
}

/// Read access for reports and `status`: the checkpoint opened read-only.
pub struct Reader {
    conn: Connection,
}

/// A unit that failed, for errors.csv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedUnit {
    pub key: String,
    pub error: UnitError,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let wrap = |source| CheckpointError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(wrap)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(wrap)?;
        Ok(Self { conn })
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, rusqlite::Error> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    }

    /// Units by status.
    pub fn unit_counts(&self) -> Result<HashMap<String, i64>, rusqlite::Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT status, COUNT(*) FROM units GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.collect()
    }

    /// Failed units in the order they ran.
    pub fn failed_units(&self) -> Result<Vec<FailedUnit>, rusqlite::Error> {
        let mut stmt = self.conn.prepare("SELECT key, failed_step, http_status, error_code, error_reason, error_source, message, attempts FROM units WHERE status = 'failed' ORDER BY ordinal")?;
        let rows = stmt.query_map([], |r| {
            Ok(FailedUnit {
                key: r.get(0)?,
                error: UnitError {
                    step: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    http_status: r.get(2)?,
                    error_code: r.get(3)?,
                    error_reason: r.get(4)?,
                    error_source: r.get(5)?,
                    message: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                    attempts: r.get::<_, Option<u32>>(7)?.unwrap_or_default(),
                },
            })
        })?;
        rows.collect()
    }

    /// Step instances by (step id, status).
    pub fn step_counts(&self) -> Result<Vec<(String, String, String, i64)>, rusqlite::Error> {
        let mut stmt = self.conn.prepare("SELECT step_id, action, status, COUNT(*) FROM steps GROUP BY step_id, action, status ORDER BY MIN(rowid)")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect()
    }

    /// Every call attempt: (step id, method, endpoint, status, outcome, latency ms, at).
    pub fn calls(&self) -> Result<Vec<CallRow>, rusqlite::Error> {
        let mut stmt = self.conn.prepare("SELECT step_id, method, endpoint, status, outcome, latency_ms, at FROM calls ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(CallRow {
                step_id: r.get(0)?,
                method: r.get(1)?,
                endpoint: r.get(2)?,
                status: r.get(3)?,
                outcome: r.get(4)?,
                latency_ms: r.get(5)?,
                at: r.get(6)?,
            })
        })?;
        rows.collect()
    }

    /// Events in order: (at, kind, detail).
    pub fn events(&self) -> Result<Vec<(f64, String, String)>, rusqlite::Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT at, kind, detail FROM events ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Outputs saved by steps of one action (e.g. every loan's final state), for reports.
    pub fn outputs_of(&self, action: &str) -> Result<Vec<Value>, rusqlite::Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT outputs FROM steps WHERE action = ?1 AND outputs IS NOT NULL")?;
        let rows = stmt.query_map([action], |r| r.get::<_, String>(0))?;
        rows.map(|r| r.map(|s| serde_json::from_str(&s).unwrap_or(Value::Null)))
            .collect()
    }

    /// Every attempt, oldest first (none in a checkpoint older than attempts).
    pub fn attempts(&self) -> Result<Vec<Attempt>, rusqlite::Error> {
        if !self.has_table("attempts")? {
            return Ok(Vec::new());
        }
        attempts_of(&self.conn)
    }

    /// The units failed now, in the order they ran, each with the source rows it failed with
    /// (those of the attempt it last failed in).
    pub fn failed_rows(&self) -> Result<Vec<(String, Vec<SourceRows>)>, rusqlite::Error> {
        if !self.has_table("failed_rows")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT u.key, r.source, r.header, r.rows FROM units u JOIN failed_rows r ON r.unit = u.key AND r.attempt = u.attempt WHERE u.status = 'failed' ORDER BY u.ordinal, u.key, r.rowid",
        )?;
        let mut out: Vec<(String, Vec<SourceRows>)> = Vec::new();
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (unit, source, header, rows) = row?;
            fn parse<T: serde::de::DeserializeOwned>(
                text: &str,
                column: usize,
            ) -> Result<T, rusqlite::Error> {
                serde_json::from_str(text).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        column,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })
            }
            let rows = SourceRows {
                source,
                header: parse(&header, 2)?,
                rows: parse(&rows, 3)?,
            };
            match out.last_mut() {
                Some((key, sources)) if *key == unit => sources.push(rows),
                _ => out.push((unit, vec![rows])),
            }
        }
        Ok(out)
    }

    fn has_table(&self, name: &str) -> Result<bool, rusqlite::Error> {
        self.conn.query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )
    }

    /// Every meta key and its value.
    pub fn meta_all(&self) -> Result<HashMap<String, String>, rusqlite::Error> {
        let mut stmt = self.conn.prepare("SELECT key, value FROM meta")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Call attempts counted by (step id, method, endpoint, outcome), in order of first use.
    #[allow(clippy::type_complexity)]
    pub fn call_counts(
        &self,
    ) -> Result<Vec<(String, String, String, String, i64)>, rusqlite::Error> {
        let mut stmt = self.conn.prepare("SELECT step_id, method, endpoint, outcome, COUNT(*) FROM calls GROUP BY step_id, method, endpoint, outcome ORDER BY MIN(id)")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        rows.collect()
    }

    /// Latency percentiles of the answers used (ok, or adopted with a latency), per step:
    /// (step, samples, one value per asked percentile, nearest rank). Streams the sorted rows:
    /// memory does not grow with the number of calls.
    pub fn latency_percentiles(
        &self,
        percentiles: &[f64],
    ) -> Result<Vec<StepLatencies>, rusqlite::Error> {
        const USED: &str = "outcome = 'ok' OR (outcome = 'adopted' AND latency_ms > 0)";
        let mut counts: Vec<(String, i64)> = Vec::new();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT step_id, COUNT(*) FROM calls WHERE {USED} GROUP BY step_id ORDER BY step_id"
        ))?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            counts.push(row?);
        }
        let mut out: Vec<StepLatencies> = counts
            .iter()
            .map(|(s, n)| (s.clone(), *n, vec![None; percentiles.len()]))
            .collect();
        let ranks = |n: i64| -> Vec<i64> {
            percentiles
                .iter()
                .map(|p| nearest_rank(*p, n as usize) as i64)
                .collect()
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT step_id, latency_ms FROM calls WHERE {USED} ORDER BY step_id, latency_ms"
        ))?;
        let mut rows = stmt.query([])?;
        let (mut current, mut index, mut wanted) = (usize::MAX, 0i64, Vec::new());
        while let Some(row) = rows.next()? {
            let step: String = row.get(0)?;
            if current == usize::MAX || out[current].0 != step {
                current = out.iter().position(|(s, _, _)| *s == step).unwrap_or(0);
                index = 0;
                wanted = ranks(out[current].1);
            }
            index += 1;
            let latency: f64 = row.get(1)?;
            for (slot, rank) in wanted.iter().enumerate() {
                if *rank == index {
                    out[current].2[slot] = Some(latency);
                }
            }
        }
        Ok(out)
    }

    /// Call attempts per time bucket: (index, calls, throttled), the index being
    /// `(at - origin) / width` rounded down; `origin` must not be after the first call.
    pub fn call_buckets(
        &self,
        origin: f64,
        width: f64,
    ) -> Result<Vec<(i64, i64, i64)>, rusqlite::Error> {
        let mut stmt = self.conn.prepare("SELECT CAST((at - ?1) / ?2 AS INTEGER) AS b, COUNT(*), SUM(outcome = 'throttled') FROM calls GROUP BY b ORDER BY b")?;
        let rows = stmt.query_map(params![origin, width], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        rows.collect()
    }

    /// Call attempts recorded between `from` and `to` (unix seconds, both included).
    pub fn calls_between(&self, from: f64, to: f64) -> Result<i64, rusqlite::Error> {
        self.conn.query_row(
            "SELECT COUNT(*) FROM calls WHERE at >= ?1 AND at <= ?2",
            params![from, to],
            |r| r.get(0),
        )
    }

    /// When the first and the last call attempts were recorded, if any was.
    pub fn call_span(&self) -> Result<Option<(f64, f64)>, rusqlite::Error> {
        self.conn
            .query_row("SELECT MIN(at), MAX(at) FROM calls", [], |r| {
                Ok(r.get::<_, Option<f64>>(0)?.zip(r.get::<_, Option<f64>>(1)?))
            })
    }

    /// Units that finished (done or failed) at or after `since` (unix seconds).
    pub fn units_finished_since(&self, since: f64) -> Result<i64, rusqlite::Error> {
        self.conn.query_row(
            "SELECT COUNT(*) FROM units WHERE status IN ('done', 'failed') AND finished_at >= ?1",
            [since],
            |r| r.get(0),
        )
    }

    /// When anything (call, step, unit, event) was last recorded, if anything was.
    pub fn last_activity(&self) -> Result<Option<f64>, rusqlite::Error> {
        self.conn.query_row(
            "SELECT MAX(t) FROM (SELECT MAX(at) AS t FROM calls UNION ALL SELECT MAX(finished_at) FROM steps UNION ALL SELECT MAX(COALESCE(finished_at, started_at)) FROM units UNION ALL SELECT MAX(at) FROM events)",
            [],
            |r| r.get(0),
        )
    }

    /// The `accountState`s saved in the outputs of steps of these actions: (unit, instance,
    /// step id, state), oldest first (by finished_at, then record order), so that the last
    /// one of an account is its last known state.
    pub fn account_states(
        &self,
        actions: &[&str],
        mut each: impl FnMut(String, String, String, String),
    ) -> Result<(), rusqlite::Error> {
        if actions.is_empty() {
            return Ok(());
        }
        let marks = (1..=actions.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT unit, instance, step_id, state FROM (SELECT unit, instance, step_id, finished_at, rowid AS r, \
             CAST(CASE WHEN json_valid(outputs) THEN json_extract(outputs, '$.accountState') END AS TEXT) AS state \
             FROM steps WHERE action IN ({marks})) WHERE state IS NOT NULL ORDER BY finished_at, r"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        // Streamed: a large run has a row for every step on every account.
        let mut rows = stmt.query(rusqlite::params_from_iter(actions))?;
        while let Some(r) = rows.next()? {
            each(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        }
        Ok(())
    }

    /// Units that finished done, in the order they ran.
    pub fn done_units(&self) -> Result<Vec<String>, rusqlite::Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT key FROM units WHERE status = 'done' ORDER BY ordinal, key")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// The attempt each done unit finished in (0 when the checkpoint predates attempts).
    pub fn done_unit_attempts(&self) -> Result<HashMap<String, i64>, rusqlite::Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, attempt FROM units WHERE status = 'done'")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0)))
        })?;
        rows.collect()
    }

    /// Every finished step of one unit: instance → (status, outputs).
    pub fn unit_steps(
        &self,
        unit: &str,
    ) -> Result<HashMap<String, (String, Value)>, rusqlite::Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT instance, status, outputs FROM steps WHERE unit = ?1")?;
        let rows = stmt.query_map([unit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        rows.map(|r| {
            r.map(|(i, s, o)| {
                (
                    i,
                    (
                        s,
                        o.and_then(|o| serde_json::from_str(&o).ok())
                            .unwrap_or(Value::Null),
                    ),
                )
            })
        })
        .collect()
    }
}

/// (step, samples, one latency per asked percentile).
pub type StepLatencies = (String, i64, Vec<Option<f64>>);

/// The 1-based rank of the `p`th percentile among `n` sorted values (nearest rank).
pub fn nearest_rank(p: f64, n: usize) -> usize {
    ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n.max(1))
}

/// One call attempt as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub step_id: String,
    pub method: String,
    pub endpoint: String,
    pub status: Option<u16>,
    pub outcome: String,
    pub latency_ms: f64,
    pub at: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_are_committed_on_the_writers_tick_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        let cp = Checkpoint::open(&path).unwrap();
        let reader = Reader::open(&path).unwrap();
        for round in 0..3 {
            let value = format!("v{round}");
            cp.record(Record::Meta {
                key: "state".into(),
                value: value.clone(),
            });
            let started = Instant::now();
            while reader.meta("state").unwrap().as_deref() != Some(value.as_str()) {
                assert!(started.elapsed() < Duration::from_secs(5), "not committed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // A flush returns once what was recorded before it is committed.
        cp.record(Record::Meta {
            key: "state".into(),
            value: "flushed".into(),
        });
        cp.flush().unwrap();
        assert_eq!(reader.meta("state").unwrap().as_deref(), Some("flushed"));
        cp.close().unwrap();
    }

    #[test]
    fn records_survive_and_resume_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        let cp = Checkpoint::open(&path).unwrap();
        cp.record(Record::Meta {
            key: "plan_hash".into(),
            value: "abc".into(),
        });
        for (key, fail) in [("CL-1", false), ("CL-2", true), ("CL-3", false)] {
            cp.record(Record::UnitStarted {
                key: key.into(),
                ordinal: 1,
            });
            cp.record(Record::Step(Box::new(StepRecord {
                unit: key.into(),
                instance: "client".into(),
                step_id: "client".into(),
                action: "create_client".into(),
                status: "done",
                idempotency_key: None,
                http_status: Some(201),
                outputs: json!({ "encodedKey": format!("k-{key}") }),
                attempts: 1,
                latency_ms: 3.0,
            })));
            if key != "CL-3" {
                let error = fail.then(|| {
                    Box::new(UnitError {
                        step: "loan".into(),
                        message: "refused".into(),
                        ..Default::default()
                    })
                });
                let rows = if fail {
                    vec![SourceRows {
                        source: "loans".into(),
                        header: vec!["loan_id".into(), "client_id".into()],
                        rows: vec![vec!["L-2".into(), key.into()]],
                    }]
                } else {
                    Vec::new()
                };
                cp.record(Record::UnitFinished {
                    key: key.into(),
                    error,
                    calls: 1,
                    attempt: 1,
                    rows,
                });
            }
        }
        cp.close().unwrap();
        let resume = read_resume(&path).unwrap();
        assert_eq!(resume.meta["plan_hash"], "abc");
        assert!(resume.done.contains("CL-1"));
        assert_eq!(resume.failed["CL-2"], ("loan".to_owned(), 1));
        assert_eq!(
            resume.steps["CL-3"]["client"].1["encodedKey"], "k-CL-3",
            "an unfinished unit's outputs are kept"
        );
        assert!(
            !resume.steps.contains_key("CL-1"),
            "done units need no outputs"
        );
        let reader = Reader::open(&path).unwrap();
        assert_eq!(reader.failed_units().unwrap()[0].error.message, "refused");
        assert_eq!(reader.unit_counts().unwrap()["running"], 1);
        let failed = reader.failed_rows().unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "CL-2");
        assert_eq!(failed[0].1[0].rows, vec![vec!["L-2", "CL-2"]]);
    }

    #[test]
    fn attempts_are_recorded_and_a_checkpoint_without_them_gains_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        {
            // A checkpoint written before attempts existed.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE units (key TEXT PRIMARY KEY, ordinal INTEGER NOT NULL, status TEXT NOT NULL, failed_step TEXT, http_status INTEGER, error_code INTEGER, error_reason TEXT, error_source TEXT, message TEXT, attempts INTEGER, started_at REAL, finished_at REAL, calls INTEGER NOT NULL DEFAULT 0); INSERT INTO units (key, ordinal, status, failed_step) VALUES ('CL-9', 1, 'failed', 'loan');").unwrap();
        }
        assert!(Reader::open(&path).unwrap().attempts().unwrap().is_empty());
        let cp = Checkpoint::open(&path).unwrap();
        let sources = vec![SourceFile {
            name: "clients".into(),
            path: "failed/1/clients.csv".into(),
            sha256: "ab".into(),
        }];
        cp.record(Record::AttemptStarted(Box::new(Attempt {
            n: 2,
            kind: "reload".into(),
            reload_start: Some(2),
            state: "running".into(),
            sources: sources.clone(),
            failed_dir: None,
        })));
        cp.record(Record::AttemptEnded {
            n: 2,
            state: "finished".into(),
            failed_dir: Some("failed/2".into()),
        });
        cp.close().unwrap();
        let resume = read_resume(&path).unwrap();
        assert_eq!(resume.failed["CL-9"], ("loan".to_owned(), 0));
        assert_eq!(resume.attempts.len(), 1);
        let a = &resume.attempts[0];
        assert_eq!(
            (a.n, a.kind.as_str(), a.reload_start),
            (2, "reload", Some(2))
        );
        assert_eq!(
            (a.state.as_str(), a.failed_dir.as_deref()),
            ("finished", Some("failed/2"))
        );
        assert_eq!(a.sources, sources);
    }
}
