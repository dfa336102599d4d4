//! The rollback's own record (issue 19): each undo call of a unit, its order and how it ended,
//! in the run's checkpoint (`rollback_steps`), so that a killed rollback resumes where it
//! stopped and never sends an undo twice; and, once a unit is wholly undone, its run records
//! cleared so that `run --resume` migrates it again.
//!
//! Written synchronously, one row per call as it ends: a rollback is a few calls per unit, and
//! its record must be on disk before the next undo goes. A unit wholly undone keeps its undo
//! calls in `rollback_history` (its round: the how-manieth rollback of it), for the reports
//! ([`Rollbacks`]).

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{CheckpointError, open_connection};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rollback_steps (
    unit TEXT NOT NULL, seq INTEGER NOT NULL, call TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT, at REAL NOT NULL, PRIMARY KEY (unit, seq));
CREATE TABLE IF NOT EXISTS rollback_history (
    unit TEXT NOT NULL, round INTEGER NOT NULL, seq INTEGER NOT NULL, call TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT, at REAL NOT NULL);
";

crate::stored_as_text! {
    pub enum UndoStatus: "undo status" {
        /// Mambu did it (or it was gone already: a 404 on a DELETE).
        Done = "done",
        /// Mambu refused it: the reason is kept, the unit is left partly undone.
        Refused = "refused",
        /// Nothing to send for this step (a schedule edit, a link gone with its loan).
        Skipped = "skipped",
    }
}

/// The rollback's record in a run's checkpoint.
pub struct UndoLog {
    conn: Connection,
    path: String,
}

impl UndoLog {
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let conn = open_connection(path)?;
        conn.execute_batch(SCHEMA)
            .map_err(|source| CheckpointError::Sqlite {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            conn,
            path: path.display().to_string(),
        })
    }

    fn wrap(&self) -> impl Fn(rusqlite::Error) -> CheckpointError + '_ {
        |source| CheckpointError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// What the undo calls of `unit` so far ended as: seq → (status, reason).
    pub fn recorded(
        &self,
        unit: &str,
    ) -> Result<HashMap<i64, (UndoStatus, Option<String>)>, CheckpointError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, status, reason FROM rollback_steps WHERE unit = ?1")
            .map_err(self.wrap())?;
        let rows = stmt
            .query_map([unit], |r| {
                let status: String = r.get(1)?;
                Ok((r.get::<_, i64>(0)?, status, r.get::<_, Option<String>>(2)?))
            })
            .map_err(self.wrap())?;
        let mut out = HashMap::new();
        for row in rows {
            let (seq, status, reason) = row.map_err(self.wrap())?;
            let status = status
                .parse::<UndoStatus>()
                .map_err(|e| CheckpointError::Sqlite {
                    path: self.path.clone(),
                    source: rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        format!("rollback_steps.status: {e}").into(),
                    ),
                })?;
            out.insert(seq, (status, reason));
        }
        Ok(out)
    }

    /// Records how undo call `seq` of `unit` ended (a refusal recorded again once it went
    /// through is replaced).
    pub fn record(
        &self,
        unit: &str,
        seq: i64,
        call: &str,
        status: UndoStatus,
        reason: Option<&str>,
    ) -> Result<(), CheckpointError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO rollback_steps (unit, seq, call, status, reason, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![unit, seq, call, status.as_str(), reason, super::writer::now()],
            )
            .map_err(self.wrap())?;
        Ok(())
    }

    /// A unit wholly undone: its run records (unit, steps, failed rows) and its undo records go,
    /// so that `run --resume` takes it as never migrated; `meta` `rolled_back:UNIT` counts its
    /// rollbacks, so that the run's Idempotency-Keys for it differ from the keys of what was
    /// undone (Mambu would answer those with the stored replies, creating nothing).
    pub fn clear_unit(&self, unit: &str) -> Result<(), CheckpointError> {
        let tx = self.conn.unchecked_transaction().map_err(self.wrap())?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('rolled_back:' || ?1, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            [unit],
        )
        .map_err(self.wrap())?;
        tx.execute(
            "INSERT INTO rollback_history (unit, round, seq, call, status, reason, at) SELECT unit, (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'rolled_back:' || ?1), seq, call, status, reason, at FROM rollback_steps WHERE unit = ?1",
            [unit],
        )
        .map_err(self.wrap())?;
        for sql in [
            "DELETE FROM steps WHERE unit = ?1",
            "DELETE FROM units WHERE key = ?1",
            "DELETE FROM failed_rows WHERE unit = ?1",
            "DELETE FROM rollback_steps WHERE unit = ?1",
        ] {
            tx.execute(sql, [unit]).map_err(self.wrap())?;
        }
        tx.commit().map_err(self.wrap())
    }

    /// Every step a unit's run finished, in the order they finished: (instance, action,
    /// outputs).
    pub fn unit_steps_in_order(
        &self,
        unit: &str,
    ) -> Result<Vec<(String, String, serde_json::Value)>, CheckpointError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT instance, action, outputs FROM steps WHERE unit = ?1 AND status IN ('done', 'adopted') ORDER BY finished_at, rowid",
            )
            .map_err(self.wrap())?;
        let rows = stmt
            .query_map([unit], |r| {
                let outputs = r
                    .get::<_, Option<String>>(2)?
                    .and_then(|o| serde_json::from_str(&o).ok())
                    .unwrap_or(serde_json::Value::Null);
                Ok((r.get(0)?, r.get(1)?, outputs))
            })
            .map_err(self.wrap())?;
        rows.collect::<Result<_, _>>().map_err(self.wrap())
    }

    /// The steps of `unit` whose every call was a GET (a plan's `request` that only read).
    pub fn read_only_steps(
        &self,
        unit: &str,
    ) -> Result<std::collections::HashSet<String>, CheckpointError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT step_id FROM calls WHERE unit = ?1 GROUP BY step_id HAVING SUM(method != 'GET') = 0",
            )
            .map_err(self.wrap())?;
        let rows = stmt.query_map([unit], |r| r.get(0)).map_err(self.wrap())?;
        rows.collect::<Result<_, _>>().map_err(self.wrap())
    }

    /// What was sent for the step `instance` of `unit` in the bulk Mambu keyed `bulk_key` (a
    /// `deposit` step with `bulk`): its item (`accountId`, `externalId`…), if recorded.
    pub fn bulk_item(
        &self,
        bulk_key: &str,
        unit: &str,
        instance: &str,
    ) -> Result<Option<serde_json::Value>, CheckpointError> {
        let items: Option<String> = self
            .conn
            .query_row(
                "SELECT items FROM bulks WHERE bulk_key = ?1",
                [bulk_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.wrap())?;
        let items: Vec<super::BulkItem> = items
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        Ok(items
            .into_iter()
            .find(|i| i.unit == unit && i.instance == instance)
            .map(|i| i.item))
    }

    /// Units by status (`done`, `failed`…) as the run recorded them.
    pub fn units_with_status(&self, status: Option<&str>) -> Result<Vec<String>, CheckpointError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key FROM units WHERE ?1 IS NULL OR status = ?1 ORDER BY ordinal",
            )
            .map_err(self.wrap())?;
        let rows = stmt
            .query_map([status], |r| r.get(0))
            .map_err(self.wrap())?;
        rows.collect::<Result<_, _>>().map_err(self.wrap())
    }
}

/// The rollbacks made on a run directory, for report.json, report.md and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollbacks {
    /// Units wholly undone (their run records cleared), in the order they were, each with
    /// how many times.
    pub rolled_back: Vec<RolledBack>,
    /// Units partly undone: undo calls made, then a refusal (or the rollback stopped).
    pub partly: Vec<PartlyUndone>,
    /// Undo calls Mambu took (a 404 on a DELETE, an adjustment made already, counted too).
    pub calls_done: i64,
    /// Undo calls Mambu refused (each step's last answer).
    pub calls_refused: i64,
    /// Steps with nothing to undo (a schedule edit, a link: gone with their account).
    pub steps_skipped: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    pub unit: String,
    pub times: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartlyUndone {
    pub unit: String,
    /// The refused call (`DELETE /clients/8a…`) or step the tool cannot undo; none when the
    /// rollback stopped before the unit's end (interrupted, an outage).
    pub refused: Option<String>,
    /// Mambu's reason (errorReason and errorSource), or why the tool cannot undo the step.
    pub reason: Option<String>,
    /// Undo calls of the unit made so far.
    pub calls_done: i64,
}

impl Rollbacks {
    pub fn is_empty(&self) -> bool {
        self.rolled_back.is_empty() && self.partly.is_empty()
    }

    /// Reads them from a checkpoint (empty when no rollback ever ran on it).
    pub fn read(conn: &Connection) -> Result<Self, rusqlite::Error> {
        let exists: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'rollback_history'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            return Ok(Self::default());
        }
        let mut out = Self::default();
        let mut stmt = conn.prepare(
            "SELECT unit, MAX(round) FROM rollback_history GROUP BY unit ORDER BY MIN(at), unit",
        )?;
        out.rolled_back = stmt
            .query_map([], |r| {
                Ok(RolledBack {
                    unit: r.get(0)?,
                    times: r.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT unit, SUM(status = 'done'), MAX(CASE WHEN status = 'refused' THEN seq END) FROM rollback_steps GROUP BY unit ORDER BY MIN(at), unit",
        )?;
        let units: Vec<(String, i64, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (unit, calls_done, refused_seq) in units {
            let (refused, reason) = match refused_seq {
                Some(seq) => conn.query_row(
                    "SELECT call, reason FROM rollback_steps WHERE unit = ?1 AND seq = ?2",
                    params![unit, seq],
                    |r| Ok((Some(r.get(0)?), r.get(1)?)),
                )?,
                None => (None, None),
            };
            out.partly.push(PartlyUndone {
                unit,
                refused,
                reason,
                calls_done,
            });
        }
        for (status, field) in [
            ("done", &mut out.calls_done),
            ("skipped", &mut out.steps_skipped),
        ] {
            *field = conn.query_row(
                "SELECT (SELECT COUNT(*) FROM rollback_history WHERE status = ?1) + (SELECT COUNT(*) FROM rollback_steps WHERE status = ?1)",
                [status],
                |r| r.get(0),
            )?;
        }
        // A step the tool cannot undo is recorded refused under its step's name: no call went.
        out.calls_refused = conn.query_row(
            "SELECT COUNT(*) FROM rollback_steps WHERE status = 'refused' AND (call LIKE 'POST %' OR call LIKE 'DELETE %')",
            [],
            |r| r.get(0),
        )?;
        Ok(out)
    }
}
