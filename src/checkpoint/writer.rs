//! The writer side: [`Checkpoint`] queues [`Record`]s and a writer thread commits them in
//! batches every 100 ms.

use std::path::Path;
use std::sync::{Arc, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use super::{CheckpointError, Record, open_connection};

enum Message {
    Record(Record),
    /// Answered `true` once everything before it is committed, `false` if that failed.
    Flush(mpsc::Sender<bool>),
}

pub(super) fn now() -> f64 {
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
                    s.status.as_str(),
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
                    c.outcome.as_str(),
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
                    .execute(params![a.n, a.kind.as_str(), a.reload_start, at, a.state.as_str(), serde_json::to_string(&a.sources).unwrap_or_default()])?;
            }
            Record::AttemptEnded {
                n,
                state,
                failed_dir,
            } => {
                tx.prepare_cached("UPDATE attempts SET state = ?2, ended_at = ?3, failed_dir = COALESCE(?4, failed_dir) WHERE n = ?1")?
                    .execute(params![n, state.as_str(), at, failed_dir])?;
            }
            Record::Event { kind, detail } => {
                tx.prepare_cached("INSERT INTO events (at, kind, detail) VALUES (?1, ?2, ?3)")?
                    .execute(params![at, kind, detail])?;
            }
            Record::BulkBatch(b) => {
                tx.prepare_cached("INSERT OR IGNORE INTO bulks (idempotency_key, step_id, items, at) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![b.idempotency_key, b.step_id, serde_json::to_string(&b.items).unwrap_or_default(), at])?;
            }
            Record::BulkKey {
                idempotency_key,
                bulk_key,
            } => {
                tx.prepare_cached("UPDATE bulks SET bulk_key = ?2 WHERE idempotency_key = ?1")?
                    .execute(params![idempotency_key, bulk_key])?;
            }
            Record::BulkSettled { idempotency_key } => {
                tx.prepare_cached("UPDATE bulks SET settled = 1 WHERE idempotency_key = ?1")?
                    .execute(params![idempotency_key])?;
            }
            Record::PhaseStarted(p) => {
                tx.prepare_cached("INSERT OR REPLACE INTO phases (n, kind, first_attempt, baseline, sources, started_at, counts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)")?
                    .execute(params![p.n, p.kind.as_str(), p.first_attempt, serde_json::to_string(&p.baseline).unwrap_or_default(), serde_json::to_string(&p.sources).unwrap_or_default(), at])?;
            }
            Record::PhaseCounts { n, counts } => {
                tx.prepare_cached("UPDATE phases SET counts = ?2 WHERE n = ?1")?
                    .execute(params![
                        n,
                        serde_json::to_string(counts).unwrap_or_default()
                    ])?;
            }
            Record::Drift(d) => {
                tx.prepare_cached("INSERT OR REPLACE INTO drift (phase, unit, source, row_key, col, change, old, new, action) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?
                    .execute(params![d.phase, d.unit, d.source, d.row_key, d.column, d.change, d.old, d.new, d.action])?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Reader;

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
}
