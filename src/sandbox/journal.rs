//! A durable sandbox's state file (`mambu-migrate sandbox --state FILE`): an operation log in
//! SQLite, and the idempotency keys stored beside it.
//!
//! Why a log of operations and not a snapshot of the entities: every change to the tenant is
//! already one [`Op`] run under the tenant's lock, so writing that `Op` (with its body and the
//! instant it ran) is small, the same for every entity, and independent of how `state` keeps
//! its entities; a start on an existing file builds the tenant from its profile and runs every
//! logged op again, in order, at its instant, through the same dispatcher as live. Every op run
//! is logged, an error answered included (an error can move a counter or a sequence), in the
//! same transaction as the idempotency key it stored, committed before its answer is sent. With
//! WAL and `synchronous=NORMAL` a committed transaction survives a killed process (not a power
//! cut, which a rehearsal does not need); a kill between the op and its commit is a request
//! whose answer never came, which the client retries.
//!
//! The file says whose it is: SQLite's `application_id` is [`APPLICATION_ID`], and `meta`
//! holds the format and a hash of the tenant profile it was made for. A file that is not
//! ours, of another format, or of another profile is refused before anything is served.
//!
//! Not kept: the request counters of `GET /_sandbox/stats` (`requests`, and a bulk's polls),
//! which count one process's traffic, and the fault settings, which the command line sets.
//!
//! What else could make a replay decide otherwise, checked: the tenant's clock (`Zone::now`,
//! which every date the state writes or compares reads) is set to the op's instant around it;
//! the state draws no random numbers (the seeded generator in `http` decides faults before an
//! op runs, or what becomes of its answer after); its hash maps and sets are looked up and
//! retained from, never iterated into an outcome (stats iterate them into JSON objects, which
//! sort their keys); ids and encodedKeys come from one sequence that the replay advances as the
//! first run did. A permission refusal (403) is decided before an op and changes nothing, so
//! it is not logged; nor is a replayed key's answer.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::TenantProfile;
use super::idempotency::Stored;
use super::op::Op;

/// `MMSB` (mambu-migrate sandbox), in the file's header (SQLite's `PRAGMA application_id`).
const APPLICATION_ID: i32 = 0x4d4d_5342;

/// The layout this build writes and reads; a file of another is refused.
const FORMAT: &str = "1";

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "{path} is not a sandbox state file ({why}); give --state a new file or one a sandbox \
         wrote"
    )]
    NotOurs { path: PathBuf, why: String },
    #[error(
        "{path} was written for another tenant profile (or another --products or --timezone); \
         start the sandbox with the profile it was made for, or give --state a new file"
    )]
    OtherProfile { path: PathBuf },
    #[error(
        "{path}: {what} cannot be read ({why}); the file is damaged: move it away and start \
         again on a new file"
    )]
    Damaged {
        path: PathBuf,
        what: String,
        why: String,
    },
    #[error(
        "{path} is in use by another sandbox; stop it first, or give this one another --state \
         file"
    )]
    InUse { path: PathBuf },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// An operation as logged: when it ran, what it was, the request body as received.
pub struct Entry<'a> {
    pub at: DateTime<Utc>,
    pub op: &'a Op,
    pub body: &'a [u8],
}

/// The open state file.
pub struct Journal {
    conn: Connection,
    path: PathBuf,
}

/// What a start on an existing file read back.
pub struct Replay {
    pub ops: u64,
    pub keys: Vec<(String, Stored)>,
}

/// The hash a file records of its tenant profile. The key retention is left out: replaying
/// the same ops under another retention yields the same tenant, and a rehearsal may shorten
/// it to have its keys expire.
pub fn profile_hash(profile: &TenantProfile) -> String {
    let mut profile = profile.clone();
    profile.idempotency_key_retention = None;
    let text = serde_json::to_string(&profile).unwrap_or_default();
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Journal {
    /// Opens the state file at `path` for `profile`, creating it if it does not exist, and
    /// hands every logged op, in order, to `apply`; returns the file and what it held.
    pub fn open(
        path: &Path,
        profile: &TenantProfile,
        mut apply: impl FnMut(DateTime<Utc>, &Op, &Value),
    ) -> Result<(Journal, Replay), JournalError> {
        let sqlite = |source| JournalError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let not_ours = |why: String| JournalError::NotOurs {
            path: path.to_owned(),
            why,
        };
        let fresh = std::fs::metadata(path)
            .map(|m| m.len() == 0)
            .unwrap_or(true);
        // One sandbox a file: two appending to one log would interleave two tenants' histories.
        // The exclusive locking mode keeps the lock from the first write to the close (a killed
        // process's lock goes with it), and another sandbox's first read is refused.
        let in_use =
            |e: rusqlite::Error, otherwise: &dyn Fn(rusqlite::Error) -> JournalError| match e
                .sqlite_error_code()
            {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    JournalError::InUse {
                        path: path.to_owned(),
                    }
                }
                _ => otherwise(e),
            };
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE")
            .map_err(sqlite)?;
        let id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| in_use(e, &|e| not_ours(e.to_string())))?;
        let hash = profile_hash(profile);
        if fresh {
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA journal_mode = WAL;
                 BEGIN;
                 CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE ops (seq INTEGER PRIMARY KEY, at_us INTEGER NOT NULL,
                                   op TEXT NOT NULL, body BLOB NOT NULL);
                 CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, fingerprint BLOB NOT NULL,
                                   status INTEGER NOT NULL, body TEXT NOT NULL,
                                   at_us INTEGER NOT NULL);
                 INSERT INTO meta VALUES ('format', '{FORMAT}'), ('profile', '{hash}');
                 COMMIT;"
            ))
            .map_err(sqlite)?;
        } else if id != APPLICATION_ID {
            return Err(not_ours(format!("its application id is {id:#x}")));
        }
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(sqlite)?;
        // Takes the lock now, not at the first change.
        conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")
            .map_err(|e| in_use(e, &sqlite))?;
        let meta = |name: &str| {
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map_err(|e| not_ours(e.to_string()))
        };
        match meta("format")? {
            Some(format) if format == FORMAT => {}
            Some(format) => return Err(not_ours(format!("its format is {format}, not {FORMAT}"))),
            None => return Err(not_ours("it names no format".into())),
        }
        if meta("profile")?.as_deref() != Some(hash.as_str()) {
            return Err(JournalError::OtherProfile {
                path: path.to_owned(),
            });
        }
        let journal = Journal {
            conn,
            path: path.to_owned(),
        };
        let ops = journal.replay(&mut apply)?;
        let keys = journal.keys()?;
        Ok((journal, Replay { ops, keys }))
    }

    fn damaged(&self, what: impl ToString, why: impl ToString) -> JournalError {
        JournalError::Damaged {
            path: self.path.clone(),
            what: what.to_string(),
            why: why.to_string(),
        }
    }

    fn sqlite(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn replay(
        &self,
        apply: &mut impl FnMut(DateTime<Utc>, &Op, &Value),
    ) -> Result<u64, JournalError> {
        let mut statement = self
            .conn
            .prepare("SELECT seq, at_us, op, body FROM ops ORDER BY seq")
            .map_err(|e| self.sqlite(e))?;
        let mut rows = statement.query([]).map_err(|e| self.sqlite(e))?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(|e| self.sqlite(e))? {
            let seq = format!(
                "operation {}",
                row.get::<_, i64>(0).map_err(|e| self.sqlite(e))?
            );
            let at = row
                .get::<_, i64>(1)
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(|| self.damaged(&seq, "its instant"))?;
            let op: Op = row
                .get_ref(2)
                .ok()
                .and_then(|v| v.as_str().ok())
                .ok_or_else(|| self.damaged(&seq, "its operation"))
                .and_then(|text| serde_json::from_str(text).map_err(|e| self.damaged(&seq, e)))?;
            let body = row
                .get_ref(3)
                .ok()
                .and_then(|v| v.as_blob().ok())
                .ok_or_else(|| self.damaged(&seq, "its body"))?;
            let body = parse_body(body).map_err(|e| self.damaged(&seq, e))?;
            apply(at, &op, &body);
            count += 1;
        }
        Ok(count)
    }

    /// The stored idempotency keys, oldest first.
    fn keys(&self) -> Result<Vec<(String, Stored)>, JournalError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT key, fingerprint, status, body, at_us FROM idempotency_keys \
                 ORDER BY at_us, rowid",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, u16>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        let mut keys = Vec::new();
        for row in rows {
            let (key, fingerprint, status, body, at) = row.map_err(|e| self.sqlite(e))?;
            let stored = (|| {
                Some(Stored {
                    fingerprint: fingerprint.try_into().ok()?,
                    status: StatusCode::from_u16(status).ok()?,
                    body: body.into_boxed_str(),
                    at: DateTime::from_timestamp_micros(at)?,
                })
            })()
            .ok_or_else(|| self.damaged("an idempotency key", "its answer"))?;
            keys.push((key, stored));
        }
        Ok(keys)
    }

    /// Logs one op, with the idempotency key it stored (if any) and the keys forgotten meanwhile,
    /// in one committed transaction.
    pub fn record(
        &mut self,
        entry: &Entry<'_>,
        stored: Option<(&str, &Stored)>,
        forgotten: &[String],
    ) -> Result<(), JournalError> {
        self.write(entry, stored, forgotten)
            .map_err(|e| self.sqlite(e))
    }

    fn write(
        &mut self,
        entry: &Entry<'_>,
        stored: Option<(&str, &Stored)>,
        forgotten: &[String],
    ) -> rusqlite::Result<()> {
        let op = serde_json::to_string(entry.op)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let tx = self.conn.transaction()?;
        tx.prepare_cached("INSERT INTO ops (at_us, op, body) VALUES (?1, ?2, ?3)")?
            .execute(params![entry.at.timestamp_micros(), op, entry.body])?;
        delete_keys(&tx, forgotten)?;
        if let Some((key, stored)) = stored {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO idempotency_keys (key, fingerprint, status, body, at_us) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                key,
                &stored.fingerprint[..],
                stored.status.as_u16(),
                &*stored.body,
                stored.at.timestamp_micros()
            ])?;
        }
        tx.commit()
    }

    /// Deletes keys forgotten outside a change (on start, those aged past the retention).
    pub fn forget(&mut self, keys: &[String]) -> Result<(), JournalError> {
        let tx = self.conn.transaction();
        tx.and_then(|tx| {
            delete_keys(&tx, keys)?;
            tx.commit()
        })
        .map_err(|e| self.sqlite(e))
    }
}

fn delete_keys(tx: &rusqlite::Transaction<'_>, keys: &[String]) -> rusqlite::Result<()> {
    for key in keys {
        tx.prepare_cached("DELETE FROM idempotency_keys WHERE key = ?1")?
            .execute([key])?;
    }
    Ok(())
}

/// A request body as an op reads it: `null` when empty, else its JSON. The same for a live
/// request and a replayed one.
pub fn parse_body(body: &[u8]) -> Result<Value, serde_json::Error> {
    if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path, profile: &TenantProfile) -> Result<(Journal, Vec<Op>), JournalError> {
        let mut ops = Vec::new();
        let (journal, _) = Journal::open(path, profile, |_, op, _| ops.push(op.clone()))?;
        Ok((journal, ops))
    }

    #[test]
    fn a_file_in_use_by_another_sandbox_is_refused_and_free_again_when_it_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let profile = TenantProfile::lenient();
        let (first, _) = open(&path, &profile).unwrap();
        assert!(matches!(
            open(&path, &profile),
            Err(JournalError::InUse { .. })
        ));
        drop(first);
        open(&path, &profile).unwrap();
    }

    #[test]
    fn ops_come_back_in_order_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let profile = TenantProfile::lenient();
        let (mut journal, ops) = open(&path, &profile).unwrap();
        assert!(ops.is_empty());
        let logged = [Op::CreateClient, Op::PatchClient { id: "C-1".into() }];
        for op in &logged {
            let entry = Entry {
                at: Utc::now(),
                op,
                body: b"{}",
            };
            journal.record(&entry, None, &[]).unwrap();
        }
        drop(journal);
        // Another retention is the same profile: the file still opens.
        let mut shorter = profile.clone();
        shorter.idempotency_key_retention = Some("2s".into());
        assert_eq!(open(&path, &shorter).unwrap().1, logged);
        let mut other = profile.clone();
        other.time_zone = "Europe/Lisbon".into();
        assert!(matches!(
            open(&path, &other),
            Err(JournalError::OtherProfile { .. })
        ));
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE ops SET op = '{\"op\":\"explode\"}' WHERE seq = 2",
                [],
            )
            .unwrap();
        let err = open(&path, &profile).err().unwrap().to_string();
        assert!(
            err.contains("operation 2 cannot be read") && err.contains("move it away"),
            "{err}"
        );
    }
}
