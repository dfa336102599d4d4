//! Which invocation of `run` this is on its run directory (an *attempt*): a fresh run, a resume,
//! or a reload of fixed failed rows; which file feeds each source; and whether a resume may go
//! on with those files.
//!
//! Every attempt is recorded in the checkpoint with its files (path and SHA-256) before a
//! source is read, so `--resume` alone continues whatever the last attempt was doing, a reload
//! included, without the `--source` flags being typed again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::checkpoint::{AttemptKind, AttemptState, Resume, SourceFile};
use crate::plan::check::Plan;

/// This attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub n: i64,
    pub kind: AttemptKind,
    /// For a reload: the attempt that began it (this one, or the reload it resumes).
    pub reload_start: Option<i64>,
}

impl Chosen {
    /// Whether a unit that failed in attempt `failed_in` is tried again by this attempt.
    pub fn retries(&self, failed_in: i64) -> bool {
        self.reload_start.is_some_and(|start| failed_in < start)
    }
}

/// The files a resume reads, as `--source` overrides: those of the last attempt, then the
/// `--reload` folder's `<source>.csv` where it has one, then the command line's. A checkpoint
/// older than attempts names none: the plan's files, as before.
pub fn resume_overrides(
    resume: &Resume,
    sources: &[String],
    reload: Option<&Path>,
    cli: &[(String, PathBuf)],
) -> Vec<(String, PathBuf)> {
    let mut chosen: HashMap<&str, PathBuf> = HashMap::new();
    if let Some(last) = resume.attempts.last() {
        for file in &last.sources {
            chosen.insert(&file.name, PathBuf::from(&file.path));
        }
    }
    if let Some(dir) = reload {
        for name in sources {
            let path = dir.join(format!("{name}.csv"));
            if path.is_file() {
                chosen.insert(name, path);
            }
        }
    }
    for (name, path) in cli {
        chosen.insert(name, path.clone());
    }
    sources
        .iter()
        .filter_map(|name| Some((name.clone(), chosen.remove(name.as_str())?)))
        .collect()
}

/// Every source's file, made absolute, with its SHA-256.
pub fn source_files(plan: &Plan) -> anyhow::Result<Vec<SourceFile>> {
    plan.sources
        .iter()
        .map(|def| {
            let path = std::fs::canonicalize(&def.file).unwrap_or_else(|_| def.file.clone());
            Ok(SourceFile {
                name: def.name.clone(),
                sha256: crate::files::sha256_file(&path)?,
                path: path.display().to_string(),
            })
        })
        .collect()
}

/// The next attempt's number: past every attempt recorded and every `failed/<n>/` folder.
pub fn next_number(resume: &Resume, run_dir: &Path) -> i64 {
    let recorded = resume.attempts.last().map_or(0, |a| a.n);
    recorded.max(super::failed::highest_folder(&run_dir.join("failed"))) + 1
}

/// How a resume with the files `now` goes on, or why it may not (the message to print: it
/// names only files that exist, and the command to type).
pub fn classify(
    resume: &Resume,
    now: &[SourceFile],
    run_dir: &Path,
    n: i64,
    retry_command: &str,
) -> Result<Chosen, String> {
    let failed_dir = std::fs::canonicalize(run_dir.join("failed")).ok();
    let in_failed = |path: &str| {
        failed_dir
            .as_ref()
            .is_some_and(|dir| Path::new(path).starts_with(dir))
    };
    // The data every earlier attempt read, source by source (a checkpoint older than attempts
    // has the first attempt's in its meta).
    let known = |name: &str, sha256: &str| {
        resume.attempts.iter().any(|a| {
            a.sources
                .iter()
                .any(|f| f.name == name && f.sha256 == sha256)
        }) || resume
            .meta
            .get(&format!("source:{name}"))
            .and_then(|v| crate::checkpoint::split_fingerprint(v))
            .is_some_and(|(_, hash)| hash == sha256)
    };
    let mut reload = false;
    for file in now {
        if in_failed(&file.path) {
            reload = true;
        } else if !known(&file.name, &file.sha256) {
            let latest = run_dir.join("failed").join("latest");
            let fix_file = latest.join(format!("{}.csv", file.name));
            let fix_in = if fix_file.exists() {
                Some(fix_file)
            } else {
                latest.exists().then_some(latest)
            };
            let fix = fix_in.map_or(String::new(), |place| {
                format!(
                    "\nTo reload fixed rows of the failed units instead, edit them in {} and run:\n  {retry_command}",
                    place.display()
                )
            });
            return Err(format!(
                "{} changed since this run began: {} is not the data any attempt of this run read. Resume refuses changed data, which would mix two extracts: to migrate this extract, start a new --run-dir.{fix}",
                file.name, file.path
            ));
        }
    }
    if !reload {
        return Ok(Chosen {
            n,
            kind: AttemptKind::Resume,
            reload_start: None,
        });
    }
    // The resume of a reload that did not finish goes on with it: the units it already tried
    // again are not tried a third time.
    let continued = resume.attempts.last().and_then(|last| {
        let same_files = last.sources.len() == now.len()
            && last
                .sources
                .iter()
                .zip(now)
                .all(|(a, b)| a.name == b.name && a.path == b.path);
        (last.kind == AttemptKind::Reload && last.state != AttemptState::Finished && same_files)
            .then_some(last.reload_start)
            .flatten()
    });
    Ok(Chosen {
        n,
        kind: AttemptKind::Reload,
        reload_start: Some(continued.unwrap_or(n)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Attempt;

    fn file(name: &str, path: &Path, sha256: &str) -> SourceFile {
        SourceFile {
            name: name.into(),
            path: path.display().to_string(),
            sha256: sha256.into(),
        }
    }

    fn attempt(
        n: i64,
        kind: AttemptKind,
        reload_start: Option<i64>,
        state: AttemptState,
        sources: Vec<SourceFile>,
    ) -> Attempt {
        Attempt {
            n,
            kind,
            reload_start,
            state,
            sources,
            failed_dir: None,
        }
    }

    #[test]
    fn a_resume_goes_on_with_the_last_attempts_files_then_the_reload_folder_then_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let fix = dir.path().join("failed/1");
        std::fs::create_dir_all(&fix).unwrap();
        std::fs::write(fix.join("loans.csv"), "loan_id\n").unwrap();
        let resume = Resume {
            attempts: vec![attempt(
                1,
                AttemptKind::Fresh,
                None,
                AttemptState::Finished,
                vec![
                    file("clients", Path::new("/x/clients.csv"), "a"),
                    file("loans", Path::new("/x/loans.csv"), "b"),
                ],
            )],
            ..Resume::default()
        };
        let names = ["clients".to_owned(), "loans".to_owned()];
        assert_eq!(
            resume_overrides(&resume, &names, None, &[]),
            vec![
                ("clients".into(), PathBuf::from("/x/clients.csv")),
                ("loans".into(), PathBuf::from("/x/loans.csv"))
            ]
        );
        assert_eq!(
            resume_overrides(
                &resume,
                &names,
                Some(&fix),
                &[("clients".into(), PathBuf::from("c.csv"))]
            ),
            vec![
                ("clients".into(), PathBuf::from("c.csv")),
                ("loans".into(), fix.join("loans.csv"))
            ]
        );
        assert!(resume_overrides(&Resume::default(), &names, None, &[]).is_empty());
    }

    #[test]
    fn changed_data_is_refused_fixed_rows_reload_and_a_killed_reload_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path();
        std::fs::create_dir_all(run_dir.join("failed/1")).unwrap();
        let failed = std::fs::canonicalize(run_dir.join("failed/1")).unwrap();
        let extract = file("loans", Path::new("/x/loans.csv"), "b");
        let mut resume = Resume {
            attempts: vec![attempt(
                1,
                AttemptKind::Fresh,
                None,
                AttemptState::Finished,
                vec![extract.clone()],
            )],
            ..Resume::default()
        };
        let cmd = "mambu-migrate run p.yaml --run-dir r --reload";
        // The same data: a resume.
        let chosen = classify(&resume, std::slice::from_ref(&extract), run_dir, 2, cmd).unwrap();
        assert_eq!(
            (chosen.kind, chosen.reload_start),
            (AttemptKind::Resume, None)
        );
        assert!(!chosen.retries(1));
        // Another extract: refused, naming only what exists.
        let other = file("loans", Path::new("/x/loans-v2.csv"), "c");
        let refused = classify(&resume, &[other], run_dir, 2, cmd).unwrap_err();
        assert!(
            refused.contains("loans changed since this run began"),
            "{refused}"
        );
        assert!(
            !refused.contains("failed/latest"),
            "no latest folder yet: {refused}"
        );
        // Fixed rows: a reload that retries what failed before it.
        let fixed = file("loans", &failed.join("loans.csv"), "d");
        let chosen = classify(&resume, std::slice::from_ref(&fixed), run_dir, 2, cmd).unwrap();
        assert_eq!(
            (chosen.kind, chosen.reload_start),
            (AttemptKind::Reload, Some(2))
        );
        assert!(chosen.retries(1) && !chosen.retries(2));
        // That reload killed (still `running`), then resumed: the same reload goes on.
        resume.attempts.push(attempt(
            2,
            AttemptKind::Reload,
            Some(2),
            AttemptState::Running,
            vec![fixed.clone()],
        ));
        let chosen = classify(&resume, std::slice::from_ref(&fixed), run_dir, 3, cmd).unwrap();
        assert_eq!(
            (chosen.kind, chosen.reload_start),
            (AttemptKind::Reload, Some(2))
        );
        assert!(
            !chosen.retries(2),
            "failed again in this reload: not a third time"
        );
        // Once it finished, the same files again are a new reload.
        resume.attempts[1].state = AttemptState::Finished;
        let chosen = classify(&resume, &[fixed], run_dir, 3, cmd).unwrap();
        assert_eq!(chosen.reload_start, Some(3));
        // Back to the original extract after reloads: a resume.
        let chosen = classify(&resume, &[extract], run_dir, 3, cmd).unwrap();
        assert_eq!(chosen.kind, AttemptKind::Resume);
    }
}
