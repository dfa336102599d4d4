//! `failed/<attempt>/`: the rows of every unit failed at the end of an attempt, each source in
//! its own CSV with its header, and `errors.csv` beside them; `failed/latest` names the newest.
//!
//! A unit's rows are committed to the checkpoint with its failure (one transaction), so nothing
//! here can lose them: the folder is written from the checkpoint when an attempt ends, and a
//! folder that could not be written is written by the next attempt. Every attempt writes a
//! folder of its own and none is ever rewritten, so the files a consultant fixed and reloaded
//! stay as they were (Bango's rule: every reloaded file has a unique name).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::checkpoint::{Reader, SourceRows};
use crate::source::Unit;

/// The rows of a unit, source by source (in `sources`' order), as they are kept for its failure.
pub fn rows_of(unit: &Unit, sources: &[String]) -> Vec<SourceRows> {
    sources
        .iter()
        .filter_map(|name| {
            let records = unit.rows(name)?;
            if records.is_empty() {
                return None;
            }
            let header = records.schema().header().names().to_vec();
            let rows = records
                .iter()
                .map(|record| {
                    header
                        .iter()
                        .map(|h| record.get(h).unwrap_or("").to_owned())
                        .collect()
                })
                .collect();
            Some(SourceRows {
                source: name.clone(),
                header,
                rows,
            })
        })
        .collect()
}

/// The attempt numbers already used by folders under `failed/` (a run directory whose earlier
/// rehearsal was replaced keeps them): a new attempt is numbered past them.
pub fn highest_folder(failed_dir: &Path) -> i64 {
    std::fs::read_dir(failed_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i64>().ok())
        .max()
        .unwrap_or(0)
}

/// What [`export`] wrote.
#[derive(Debug)]
pub struct Exported {
    /// `failed/<n>`.
    pub dir: PathBuf,
    /// Units whose rows it holds.
    pub units: usize,
    /// Units failed whose rows the checkpoint does not hold (failed before this version).
    pub without_rows: usize,
}

/// Writes `run_dir/failed/<n>/` from the checkpoint: `<source>.csv` for every source with rows
/// of a unit failed now (in run order; a source's columns are those of every file it was read
/// from, in order of first appearance), and `errors.csv`; then points `failed/latest` at it.
/// The folder is assembled beside and renamed into place, so it is whole or absent.
pub fn export(run_dir: &Path, n: i64, sources: &[String]) -> anyhow::Result<Exported> {
    let reader = Reader::open(&run_dir.join("checkpoint.db"))?;
    let failed_rows = reader.failed_rows()?;
    let failed_units = reader.failed_units()?;
    let failed_dir = run_dir.join("failed");
    crate::files::create_private_dir(&failed_dir)?;
    let dir = failed_dir.join(n.to_string());
    anyhow::ensure!(
        !dir.exists(),
        "{} exists already and this attempt did not write it: move it out of the run directory, then resume",
        dir.display()
    );
    let partial = failed_dir.join(format!(".{n}.partial"));
    if partial.exists() {
        // An earlier attempt numbered `n` was killed while assembling it: nobody edited it.
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    crate::files::create_private_dir(&partial)?;
    for name in sources {
        let of_source: Vec<&SourceRows> = failed_rows
            .iter()
            .flat_map(|(_, rows)| rows.iter().filter(|r| &r.source == name))
            .collect();
        if of_source.is_empty() {
            continue;
        }
        let mut header: Vec<&str> = Vec::new();
        for rows in &of_source {
            for column in &rows.header {
                if !header.contains(&column.as_str()) {
                    header.push(column);
                }
            }
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&header)?;
        for rows in &of_source {
            let position: Vec<Option<usize>> = header
                .iter()
                .map(|h| rows.header.iter().position(|c| c == h))
                .collect();
            for row in &rows.rows {
                w.write_record(
                    position
                        .iter()
                        .map(|p| p.and_then(|i| row.get(i)).map_or("", String::as_str)),
                )?;
            }
        }
        let bytes = w
            .into_inner()
            .map_err(|e| anyhow::anyhow!("{name}.csv: {}", e.error()))?;
        crate::files::write_private(&partial.join(format!("{name}.csv")), &bytes)?;
    }
    crate::files::write_private(
        &partial.join("errors.csv"),
        &crate::report::errors::render(&failed_units)?,
    )?;
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    point_latest(&failed_dir, n)?;
    Ok(Exported {
        dir,
        units: failed_rows.len(),
        without_rows: failed_units.len().saturating_sub(failed_rows.len()),
    })
}

/// `failed/latest` → `<n>`: a relative symbolic link replaced in one rename (a file holding
/// the number where there are no symbolic links).
fn point_latest(failed_dir: &Path, n: i64) -> anyhow::Result<()> {
    let latest = failed_dir.join("latest");
    let tmp = failed_dir.join(".latest.tmp");
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    std::os::unix::fs::symlink(n.to_string(), &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    #[cfg(not(unix))]
    std::fs::write(&tmp, n.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &latest).with_context(|| format!("writing {}", latest.display()))
}

/// The folder `--reload VALUE` names: `latest` (the default), an attempt's number, or a path.
pub fn reload_dir(run_dir: &Path, value: &str) -> anyhow::Result<PathBuf> {
    let failed_dir = run_dir.join("failed");
    let dir = if value == "latest" || value.parse::<u64>().is_ok() {
        failed_dir.join(value)
    } else {
        PathBuf::from(value)
    };
    let resolved = std::fs::canonicalize(&dir).with_context(|| {
        let attempts: Vec<String> = std::fs::read_dir(&failed_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.parse::<u64>().is_ok())
            .collect();
        if attempts.is_empty() {
            format!(
                "--reload {value}: {} does not exist (no attempt of this run has failed rows)",
                dir.display()
            )
        } else {
            format!(
                "--reload {value}: {} does not exist; the attempts with failed rows are {}",
                dir.display(),
                attempts.join(", ")
            )
        }
    })?;
    anyhow::ensure!(
        resolved.is_dir(),
        "--reload {value}: {} is not a folder of failed rows",
        dir.display()
    );
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_numbered_folder_is_found_and_others_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(highest_folder(&dir.path().join("absent")), 0);
        for name in ["1", "3", "latest", ".4.partial", "notes"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        assert_eq!(highest_folder(dir.path()), 3);
    }

    #[test]
    fn reload_names_an_attempt_latest_or_a_path_and_says_which_exist() {
        let dir = tempfile::tempdir().unwrap();
        let failed = dir.path().join("failed");
        std::fs::create_dir_all(failed.join("2")).unwrap();
        point_latest(&failed, 2).unwrap();
        let two = std::fs::canonicalize(failed.join("2")).unwrap();
        assert_eq!(reload_dir(dir.path(), "latest").unwrap(), two);
        assert_eq!(reload_dir(dir.path(), "2").unwrap(), two);
        assert_eq!(
            reload_dir(dir.path(), failed.join("2").to_str().unwrap()).unwrap(),
            two
        );
        let err = reload_dir(dir.path(), "7").unwrap_err().to_string();
        assert!(err.contains("the attempts with failed rows are 2"), "{err}");
    }
}
