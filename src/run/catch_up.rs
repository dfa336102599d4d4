//! `run --catch-up`: a new phase on a finished run, fed by a newer extract (see
//! [`crate::catchup`]). Here: whether a catch-up may open ([`open`]), and the stream of the units
//! it runs ([`stream`]): both extracts grouped and compared on a blocking thread, drift recorded
//! as it is found, unchanged units counted and skipped without a call.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Feed, Shared};
use crate::catchup::diff::Merge;
use crate::catchup::{Drift, Migrated, Verdict};
use crate::checkpoint::{
    AttemptKind, AttemptState, Phase, PhaseCounts, PhaseKind, Reader, Record, Resume, SourceFile,
};
use crate::source::{self, GroupReport, Sources};

/// A catch-up phase as the run executes it.
pub(super) struct CatchUp {
    pub phase: Phase,
    /// The extract the previous phase migrated, grouped again to compare with.
    pub baseline: Sources,
    pub drift: Drift,
}

/// The phase a `--catch-up` opens on `resume`'s run, reading `files`, or why it may not (the
/// message to print). `baseline` replaces the previous phase's files where given (`--baseline
/// NAME=PATH`: the same data, moved).
pub(super) fn open(
    resume: &Resume,
    files: &[SourceFile],
    baseline: &[(String, PathBuf)],
    n: i64,
    resume_command: &str,
) -> Result<Phase, String> {
    let last = resume.attempts.last();
    if last.map(|a| a.state) != Some(AttemptState::Finished) {
        return Err(format!(
            "the run has not finished (its last attempt {}): a catch-up compares the new extract with a phase that is over. Resume it first:\n  {resume_command}",
            last.map_or("is unknown", |a| match a.state {
                AttemptState::Stopped => "stopped",
                _ => "is running or was killed",
            })
        ));
    }
    let Some(previous) = resume.phases.last() else {
        return Err("the checkpoint records no phase to catch up with".into());
    };
    let mut before = Vec::new();
    for file in &previous.sources {
        let path = baseline
            .iter()
            .find(|(name, _)| *name == file.name)
            .map_or_else(|| PathBuf::from(&file.path), |(_, p)| p.clone());
        let sha = crate::files::sha256_file(&path).ok();
        if sha.as_deref() != Some(file.sha256.as_str()) {
            let found = match sha {
                None => "is not there",
                Some(_) => "holds other data now",
            };
            return Err(format!(
                "{} of phase {} was read from {}, which {found}: a catch-up compares the new extract with the one migrated before. Put that file back, or give its copy with --baseline {}=PATH",
                file.name,
                previous.n,
                path.display(),
                file.name
            ));
        }
        before.push(SourceFile {
            path: std::fs::canonicalize(&path)
                .unwrap_or(path)
                .display()
                .to_string(),
            ..file.clone()
        });
    }
    Ok(Phase {
        n: previous.n + 1,
        kind: PhaseKind::CatchUp,
        first_attempt: n,
        baseline: before,
        sources: files.to_vec(),
        started_at: 0.0,
        counts: None,
    })
}

/// Whether the newer extract is the very data the previous phase migrated.
pub(super) fn unchanged(phase: &Phase) -> bool {
    phase.baseline.len() == phase.sources.len()
        && phase.baseline.iter().all(|b| {
            phase
                .sources
                .iter()
                .any(|s| s.name == b.name && s.sha256 == b.sha256)
        })
}

/// The phase an attempt continues, when it continues a catch-up: a resume (of a resume…) of
/// the attempt that opened the run's latest phase, a catch-up. A reload is not one: it runs
/// only the failed units, from their fixed rows.
pub(super) fn resumed_phase(resume: &Resume, kind: AttemptKind) -> Option<Phase> {
    let phase = resume.phases.last()?;
    if phase.kind != PhaseKind::CatchUp || kind != AttemptKind::Resume {
        return None;
    }
    let opened_by_resumes = resume
        .attempts
        .iter()
        .filter(|a| a.n > phase.first_attempt)
        .all(|a| a.kind == AttemptKind::Resume);
    opened_by_resumes.then(|| phase.clone())
}

/// Streams the units the catch-up runs, comparing both extracts on a blocking thread: new and
/// changed units with their saved steps and delta; unchanged ones counted (skipped, or still
/// failed), never sent. Drift goes to the checkpoint as found; the phase's counts once the
/// comparison is complete. The handle gives the newer extract's grouping report.
pub(super) fn stream(
    shared: Arc<Shared>,
    catch_up: CatchUp,
    new: Sources,
    db: PathBuf,
    concurrency: usize,
    done: HashSet<String>,
    failed: HashMap<String, (String, i64)>,
) -> (
    tokio::sync::mpsc::Receiver<Feed>,
    tokio::task::JoinHandle<GroupReport>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(concurrency * 2);
    let handle = tokio::task::spawn_blocking(move || {
        let options = super::group_options(None);
        let mut old = source::group(&catch_up.baseline, &options);
        let mut grouping = source::group(&new, &options);
        let complete = compare(
            &shared,
            &catch_up,
            &db,
            &tx,
            (&mut old, &mut grouping),
            (&done, &failed),
        );
        let report = grouping.finish();
        match complete {
            Ok(counts) if super::sources_unread(Some(&report)).is_none() => {
                shared.checkpoint.record(Record::PhaseCounts {
                    n: catch_up.phase.n,
                    counts,
                });
            }
            Ok(_) | Err(None) => {}
            Err(Some(why)) => shared.stop(why),
        }
        report
    });
    (rx, handle)
}

/// Walks both extracts: what the comparison found, or `Err(None)` when the run stopped taking
/// units, `Err(Some(why))` when the checkpoint cannot be read.
fn compare(
    shared: &Shared,
    catch_up: &CatchUp,
    db: &Path,
    tx: &tokio::sync::mpsc::Sender<Feed>,
    (old, new): (&mut source::Grouping, &mut source::Grouping),
    (done, failed): (&HashSet<String>, &HashMap<String, (String, i64)>),
) -> Result<PhaseCounts, Option<String>> {
    let reader = Reader::open(db).map_err(|e| Some(e.to_string()))?;
    let read = |e: rusqlite::Error| Some(format!("checkpoint {}: {e}", db.display()));
    let phase = &catch_up.phase;
    let mut counts = PhaseCounts::default();
    let mut ordinal = 0u64;
    let done_in_phase = |key: &str| -> Result<bool, Option<String>> {
        Ok(reader
            .done_unit_attempt(key)
            .map_err(read)?
            .is_some_and(|attempt| attempt >= phase.first_attempt))
    };
    for compared in Merge::new(old, new) {
        let migrated = if done.contains(&compared.key) {
            Migrated::Done
        } else if failed.contains_key(&compared.key) {
            Migrated::Failed
        } else {
            Migrated::No
        };
        let units = (compared.old.as_ref(), compared.new.as_ref());
        let verdict = catch_up
            .drift
            .classify(phase.n, &compared.key, units, migrated, &mut counts);
        let (delta, rows) = match verdict {
            Verdict::Removed(row) => {
                shared.checkpoint.record(Record::Drift(Box::new(row)));
                continue;
            }
            Verdict::Unchanged => {
                ordinal += 1;
                let progress = &shared.progress;
                match migrated {
                    Migrated::Failed => progress.units_failed.fetch_add(1, Ordering::Relaxed),
                    _ => progress.units_skipped.fetch_add(1, Ordering::Relaxed),
                };
                continue;
            }
            Verdict::Send(delta, rows) => (delta, rows),
        };
        ordinal += 1;
        for row in rows {
            shared.checkpoint.record(Record::Drift(Box::new(row)));
        }
        let Some(unit) = compared.new else { continue };
        let key = compared.key;
        if done_in_phase(&key)? {
            shared
                .progress
                .units_skipped
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let saved = reader.unit_steps(&key).map_err(read)?;
        let feed = Feed {
            ordinal,
            unit,
            catch_up: Some(Box::new((saved, delta))),
        };
        if tx.blocking_send(feed).is_err() {
            return Err(None);
        }
    }
    Ok(counts)
}
