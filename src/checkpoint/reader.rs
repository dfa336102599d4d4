//! The reading side: [`read_resume`], what a resume needs, and [`Reader`], the checkpoint
//! opened read-only for reports, `status` and `verify`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::{
    Attempt, AttemptState, BulkBatch, CheckpointError, DriftRow, Phase, PhaseKind, SourceFile,
    SourceRows, StepStatus, UnitError, open_connection,
};
use crate::UnknownText;
use crate::mambu::CallOutcome;

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
    pub steps: HashMap<String, HashMap<String, (StepStatus, Value)>>,
    /// Bulks recorded and not settled, oldest first: POSTed again (no process key) or polled.
    pub bulks: Vec<BulkBatch>,
    /// The migration and the catch-ups after it, oldest first.
    pub phases: Vec<Phase>,
}

/// Column `index` of `row`, text stored as a `T`: one this version does not know is an error
/// that says what it is and where (`column`, as `table.column`), never a panic.
fn stored<T: FromStr<Err = UnknownText>>(
    row: &Row<'_>,
    index: usize,
    column: &'static str,
) -> Result<T, rusqlite::Error> {
    parse_stored(&row.get::<_, String>(index)?, index, column)
}

/// [`stored`], of text already read (`index`: its column in the query).
fn parse_stored<T: FromStr<Err = UnknownText>>(
    text: &str,
    index: usize,
    column: &'static str,
) -> Result<T, rusqlite::Error> {
    text.parse().map_err(|e: UnknownText| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("{column}: {e}").into(),
        )
    })
}

/// A finished step as saved: its status (column `index`) and outputs (the next column).
fn saved_step(row: &Row<'_>, index: usize) -> Result<(StepStatus, Value), rusqlite::Error> {
    let outputs = row
        .get::<_, Option<String>>(index + 1)?
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or(Value::Null);
    Ok((stored(row, index, "steps.status")?, outputs))
}

fn attempts_of(conn: &Connection) -> Result<Vec<Attempt>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT n, kind, reload_start, state, sources, failed_dir FROM attempts ORDER BY n",
    )?;
    let rows = stmt.query_map([], |r| {
        let sources: String = r.get(4)?;
        Ok(Attempt {
            n: r.get(0)?,
            kind: stored(r, 1, "attempts.kind")?,
            reload_start: r.get(2)?,
            state: stored(r, 3, "attempts.state")?,
            sources: serde_json::from_str(&sources).unwrap_or_default(),
            failed_dir: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// The phases, oldest first; a checkpoint without any recorded (written before phases, or by
/// a run killed before its first commit) has the migration, from its first attempt.
pub(super) fn phases_of(conn: &Connection) -> Result<Vec<Phase>, rusqlite::Error> {
    let has_table: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'phases'",
        [],
        |r| r.get(0),
    )?;
    let mut phases = Vec::new();
    if has_table {
        let mut stmt = conn.prepare("SELECT n, kind, first_attempt, baseline, sources, started_at, counts FROM phases ORDER BY n")?;
        let rows = stmt.query_map([], |r| {
            let files = |i: usize| -> Result<Vec<SourceFile>, rusqlite::Error> {
                Ok(serde_json::from_str(&r.get::<_, String>(i)?).unwrap_or_default())
            };
            Ok(Phase {
                n: r.get(0)?,
                kind: stored(r, 1, "phases.kind")?,
                first_attempt: r.get(2)?,
                baseline: files(3)?,
                sources: files(4)?,
                started_at: r.get(5)?,
                counts: r
                    .get::<_, Option<String>>(6)?
                    .and_then(|c| serde_json::from_str(&c).ok()),
            })
        })?;
        phases = rows.collect::<Result<Vec<_>, _>>()?;
    }
    if phases.is_empty()
        && let Some(first) = attempts_of(conn)?.into_iter().next()
    {
        phases.push(Phase {
            n: 1,
            kind: PhaseKind::Migration,
            first_attempt: first.n,
            baseline: Vec::new(),
            sources: first.sources,
            started_at: 0.0,
            counts: None,
        });
    }
    Ok(phases)
}

/// The bulks recorded and not settled, in the order recorded.
fn open_bulks(conn: &Connection) -> Result<Vec<BulkBatch>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT idempotency_key, step_id, items, bulk_key FROM bulks WHERE settled = 0 ORDER BY at, rowid",
    )?;
    let rows = stmt.query_map([], |r| {
        let items: String = r.get(2)?;
        Ok(BulkBatch {
            idempotency_key: r.get(0)?,
            step_id: r.get(1)?,
            items: serde_json::from_str(&items).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    format!("bulks.items: {e}").into(),
                )
            })?,
            bulk_key: r.get(3)?,
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
                saved_step(r, 2)?,
            ))
        })
        .map_err(wrap)?
    {
        let (unit, instance, saved) = row.map_err(wrap)?;
        resume
            .steps
            .entry(unit)
            .or_default()
            .insert(instance, saved);
    }
    resume.attempts = attempts_of(&conn).map_err(wrap)?;
    resume.bulks = open_bulks(&conn).map_err(wrap)?;
    resume.phases = phases_of(&conn).map_err(wrap)?;
    Ok(resume)
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

    /// The rollbacks made on the run (`mambu-migrate rollback`, issue 19).
    pub fn rollbacks(&self) -> Result<super::Rollbacks, rusqlite::Error> {
        super::Rollbacks::read(&self.conn)
    }

    /// The run's state: that of its last attempt (`None` before the run recorded one).
    pub fn run_state(&self) -> Result<Option<AttemptState>, rusqlite::Error> {
        self.meta("state")?
            .map(|state| parse_stored(&state, 0, "meta.state"))
            .transpose()
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

    /// Step instances by (step id, action, status).
    pub fn step_counts(&self) -> Result<Vec<(String, String, StepStatus, i64)>, rusqlite::Error> {
        let mut stmt = self.conn.prepare("SELECT step_id, action, status, COUNT(*) FROM steps GROUP BY step_id, action, status ORDER BY MIN(rowid)")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                stored(r, 2, "steps.status")?,
                r.get(3)?,
            ))
        })?;
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
                outcome: stored(r, 4, "calls.outcome")?,
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
    ) -> Result<Vec<(String, String, String, CallOutcome, i64)>, rusqlite::Error> {
        let mut stmt = self.conn.prepare("SELECT step_id, method, endpoint, outcome, COUNT(*) FROM calls GROUP BY step_id, method, endpoint, outcome ORDER BY MIN(id)")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                stored(r, 3, "calls.outcome")?,
                r.get(4)?,
            ))
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
        const USED: &str = "outcome = ?1 OR (outcome = ?2 AND latency_ms > 0)";
        let used = [CallOutcome::Ok.as_str(), CallOutcome::Adopted.as_str()];
        let mut counts: Vec<(String, i64)> = Vec::new();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT step_id, COUNT(*) FROM calls WHERE {USED} GROUP BY step_id ORDER BY step_id"
        ))?;
        for row in stmt.query_map(used, |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
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
        let mut rows = stmt.query(used)?;
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
        let mut stmt = self.conn.prepare("SELECT CAST((at - ?1) / ?2 AS INTEGER) AS b, COUNT(*), SUM(outcome = ?3) FROM calls GROUP BY b ORDER BY b")?;
        let throttled = CallOutcome::Throttled.as_str();
        let rows = stmt.query_map(params![origin, width, throttled], |r| {
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
        // A checkpoint written before attempts, read without a run having migrated it.
        let has_attempt: bool = self.conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('units') WHERE name = 'attempt'",
            [],
            |r| r.get(0),
        )?;
        let column = if has_attempt { "attempt" } else { "NULL" };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT key, {column} FROM units WHERE status = 'done'"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0)))
        })?;
        rows.collect()
    }

    /// The run's phases, oldest first. A checkpoint written before phases has one: the
    /// migration, opened by its first attempt with the extract it read.
    pub fn phases(&self) -> Result<Vec<Phase>, rusqlite::Error> {
        phases_of(&self.conn)
    }

    /// Every drift row, by phase, unit, source, row and column.
    pub fn drift(&self) -> Result<Vec<DriftRow>, rusqlite::Error> {
        let mut stmt = self.conn.prepare("SELECT phase, unit, source, row_key, col, change, old, new, action FROM drift ORDER BY phase, unit, source, row_key, col")?;
        let rows = stmt.query_map([], |r| {
            Ok(DriftRow {
                phase: r.get(0)?,
                unit: r.get(1)?,
                source: r.get(2)?,
                row_key: r.get(3)?,
                column: r.get(4)?,
                change: r.get(5)?,
                old: r.get(6)?,
                new: r.get(7)?,
                action: r.get(8)?,
            })
        })?;
        rows.collect()
    }

    /// The attempt a unit finished done in (0 before attempts were recorded); `None` when it
    /// is not done.
    pub fn done_unit_attempt(&self, unit: &str) -> Result<Option<i64>, rusqlite::Error> {
        self.conn
            .prepare_cached("SELECT attempt FROM units WHERE key = ?1 AND status = 'done'")?
            .query_row([unit], |r| Ok(r.get::<_, Option<i64>>(0)?.unwrap_or(0)))
            .optional()
    }

    /// A unit's status (`running`, `done`, `failed`), if it ever started.
    pub fn unit_status(&self, unit: &str) -> Result<Option<String>, rusqlite::Error> {
        self.conn
            .prepare_cached("SELECT status FROM units WHERE key = ?1")?
            .query_row([unit], |r| r.get(0))
            .optional()
    }

    /// Every finished step of one unit: instance → (status, outputs).
    pub fn unit_steps(
        &self,
        unit: &str,
    ) -> Result<HashMap<String, (StepStatus, Value)>, rusqlite::Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT instance, status, outputs FROM steps WHERE unit = ?1")?;
        let rows = stmt.query_map([unit], |r| Ok((r.get::<_, String>(0)?, saved_step(r, 1)?)))?;
        rows.collect()
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
    pub outcome: CallOutcome,
    pub latency_ms: f64,
    pub at: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, Record, StepRecord};
    use serde_json::json;

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
                status: StepStatus::Done,
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
}
