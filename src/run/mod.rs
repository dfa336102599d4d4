//! `run`: the executor. The one place that joins the parts: the checked plan, the units from the
//! sources, the Mambu session, the checkpoint and the reports.
//!
//! Every invocation is an attempt (`attempt.rs`), recorded with the files it reads before it
//! reads them; when it ends, its failed units' rows go to `failed/<attempt>/` (`failed.rs`).
//! Units run concurrently up to `concurrency`, steps within a unit in order, every call through
//! the one [`Session`] (its shared rate limit and retry policy). A unit is recorded step by
//! step, so `--resume` skips what is done and renders later steps from saved outputs. The run
//! stops cleanly (exit 3, resumable) on SIGINT/SIGTERM, at the deadline, when the error budget
//! is spent, or when the credentials are refused.

mod attempt;
mod bulk;
mod catch_up;
mod failed;
pub mod guard;
mod progress;
mod unit;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ExitStatus;
use crate::checkpoint::{self, AttemptKind, AttemptState, Checkpoint, Record, Resume, SourceFile};
use crate::mambu::{CallOutcome, Limiter, Observer, Session};
use crate::plan::check::{Plan, check};
use crate::plan::compiled::Compiled;
use crate::plan::file::PlanFile;
use crate::plan::load::load;
use crate::source::{self, GroupOptions, Sources};
use crate::target::Where;
use attempt::Chosen;
use progress::Progress;
use unit::{UnitEnd, run_unit};

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub plan: PathBuf,
    /// `sandbox` or a base URL; default: the plan's target.
    pub target: Option<String>,
    pub sources: Vec<(String, PathBuf)>,
    pub run_dir: Option<PathBuf>,
    pub resume: bool,
    pub sample: Option<u64>,
    pub deadline: Option<chrono::DateTime<chrono::Local>>,
    pub rate: Option<f64>,
    pub concurrency: Option<u32>,
    pub progress: bool,
    /// Render every call and write them to dry-run.jsonl; send nothing.
    pub dry_run: bool,
    /// `--reload [ATTEMPT]`: resume, reading each source from that `failed/` folder where it
    /// has the source's file (`latest`, a number, or a path).
    pub reload: Option<String>,
    /// The production tenant's name, confirming a run against it without a terminal.
    pub confirm_production: Option<String>,
    /// Go on although the tenant changed since it was recorded (`crate::validate::drift`).
    pub accept_tenant_changes: bool,
    /// `--tenant-record FILE`: the rehearsal's tenant record, instead of the default.
    pub tenant_record: Option<PathBuf>,
    /// `--catch-up`: a new phase on a finished run, migrating only what changed in the
    /// extract since the previous phase (`crate::catchup`).
    pub catch_up: bool,
    /// `--baseline NAME=PATH`: where the previous phase's file of a source is now.
    pub baseline: Vec<(String, PathBuf)>,
    /// `--dashboard`: served from the run directory once the attempt is recorded.
    pub dashboard: Option<crate::dashboard::Bound>,
}

/// A unit for the executor: in a catch-up, with its saved steps and what changed in it.
pub(crate) struct Feed {
    pub ordinal: u64,
    pub unit: source::Unit,
    pub catch_up: Option<Box<(unit::Saved, crate::catchup::UnitDelta)>>,
}

/// What every unit task shares.
pub(crate) struct Shared {
    pub checkpoint: Checkpoint,
    pub compiled: Compiled,
    /// The conversation with Mambu: the client, the shared rate limit, the retry policy.
    pub session: Session,
    /// Read once before the first unit.
    pub lookups: std::sync::OnceLock<Value>,
    pub plan_name: String,
    pub reason: Mutex<Option<String>>,
    pub progress: Progress,
    /// This invocation's number: units end in it, and its failed rows go to `failed/<n>/`.
    pub attempt: i64,
    /// The plan's sources, in its order.
    pub source_names: Vec<String>,
    /// Items of bulk deposit steps, gathered across units ([`bulk`]).
    pub bulks: bulk::Bulks,
    /// Units `rollback` took back, with how many times (`meta` `rolled_back:UNIT`): their
    /// Idempotency-Keys carry it, so that their calls are new to Mambu.
    pub rolled_back: std::collections::HashMap<String, String>,
}

impl Shared {
    /// Cancelled to stop after the current step: interrupt, error budget, credentials (the
    /// session's, so calls waiting to retry stop waiting too).
    pub fn halt(&self) -> &CancellationToken {
        self.session.halt()
    }

    /// Cancelled at `--deadline`: no unit starts after it, and no call waits out an outage.
    pub fn deadline(&self) -> &CancellationToken {
        self.session.deadline()
    }

    /// Stops the run (resumably) for `reason`; the first reason wins.
    pub fn stop(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            tracing::warn!(reason = %reason, "stopping");
            *slot = Some(reason);
        }
        self.halt().cancel();
    }

    fn stop_reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Runs the plan; the exit status says how it ended.
pub fn run(mut options: RunOptions) -> anyhow::Result<ExitStatus> {
    let loaded = match load(&options.plan) {
        Ok(loaded) => loaded,
        Err(problems) => return Ok(plan_problems(&problems, &options.plan)),
    };
    let mut plan = match check(&loaded, &options.sources) {
        Ok(plan) => plan,
        Err(problems) => return Ok(plan_problems(&problems, &options.plan)),
    };
    let run_dir = options
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&plan.name));
    if options.dry_run {
        return guard::dry_run(&plan, &run_dir, options.sample);
    }
    let resuming = options.resume || options.reload.is_some();
    // A catch-up goes on with the run, as a resume does.
    let continuing = resuming || options.catch_up;
    if continuing && options.target.is_none() {
        // A resume goes on against the Mambu the run began with.
        options.target = recorded_target(&run_dir);
    }
    let target = Where::of(&plan, options.target.as_deref());
    if let Some(tenant) = guard::production_tenant(&target) {
        let units = Sources::new(plan.sources.clone(), &plan.unit)
            .map(|s| source::count(&s).units)
            .unwrap_or(0);
        if !guard::confirm_production(
            &tenant,
            &target,
            &plan,
            units,
            options.confirm_production.as_deref(),
        )? {
            return Ok(ExitStatus::InvalidInput);
        }
    }
    crate::files::create_private_dir(&run_dir)?;
    // Held until the run ends: a second run in the same directory would send the same units
    // twice as fast and interleave its records with this one's.
    let Some(_lock) = lock_run_dir(&run_dir)? else {
        return Ok(ExitStatus::InvalidInput);
    };
    let db = run_dir.join("checkpoint.db");
    let embedded = target.is_embedded();
    if embedded && continuing {
        let what = if options.catch_up {
            "catch up with"
        } else {
            "resume against"
        };
        eprintln!(
            "error: the embedded sandbox forgets everything when a run ends, so there is nothing to {what}. Run again without --resume (it starts over), or rehearse against `mambu-migrate sandbox` with --target http://127.0.0.1:PORT/api."
        );
        return Ok(ExitStatus::InvalidInput);
    }
    if embedded && db.exists() {
        // Its Mambu was the embedded sandbox, gone with that process: start over. Its failed/
        // folders stay (they may hold edits); this run's attempts are numbered past them.
        eprintln!(
            "note: replacing the earlier rehearsal in {} (the embedded sandbox it ran against is gone)",
            run_dir.display()
        );
        for name in [
            "checkpoint.db",
            "checkpoint.db-wal",
            "checkpoint.db-shm",
            "run.log",
            "report.md",
            "report.json",
            "report.html",
            "errors.csv",
        ] {
            let path = run_dir.join(name);
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    let exists = db.exists();
    if exists && !continuing {
        eprintln!(
            "error: {} already holds a run. Pass --resume to continue it (--catch-up to migrate what a newer extract changed, once it has finished), or choose another --run-dir.",
            run_dir.display()
        );
        return Ok(ExitStatus::InvalidInput);
    }
    if !exists && continuing {
        eprintln!(
            "error: there is no run to {} in {} (no checkpoint.db).",
            if options.catch_up {
                "catch up"
            } else {
                "resume"
            },
            run_dir.display()
        );
        return Ok(ExitStatus::InvalidInput);
    }
    // A fresh run creates nothing until it has passed every check (the tenant's zone included).
    let resume = if exists {
        checkpoint::read_resume(&db)?
    } else {
        Resume::default()
    };
    let n = attempt::next_number(&resume, &run_dir);
    let (chosen, files) = if options.catch_up {
        let files = attempt::source_files(&plan)?;
        let phase = match catch_up::open(
            &resume,
            &files,
            &options.baseline,
            n,
            &resume_command(&options.plan, &run_dir),
        ) {
            Ok(phase) => phase,
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitStatus::InvalidInput);
            }
        };
        if catch_up::unchanged(&phase) {
            eprintln!(
                "nothing to catch up: the extract is the one phase {} migrated (give the newer files with --source NAME=PATH)",
                phase.n - 1
            );
            return Ok(ExitStatus::Success);
        }
        let chosen = Chosen {
            n,
            kind: AttemptKind::CatchUp,
            reload_start: None,
        };
        let runtime = crate::runtime()?;
        return runtime.block_on(execute(
            options,
            plan,
            run_dir,
            resume,
            chosen,
            files,
            Some((phase, loaded)),
        ));
    } else if resuming && !resume.meta.contains_key("plan") {
        // Stopped (killed) before its first commit: nothing of it was recorded, so resuming
        // it is starting it over, in the same directory.
        eprintln!(
            "note: the run in {} stopped before it recorded anything; starting it over",
            run_dir.display()
        );
        (
            Chosen {
                n,
                kind: AttemptKind::Fresh,
                reload_start: None,
            },
            attempt::source_files(&plan)?,
        )
    } else if resuming {
        let reload = options
            .reload
            .as_deref()
            .map(|value| failed::reload_dir(&run_dir, value))
            .transpose()?;
        let names: Vec<String> = plan.sources.iter().map(|s| s.name.clone()).collect();
        let overrides =
            attempt::resume_overrides(&resume, &names, reload.as_deref(), &options.sources);
        if let Some((name, path)) = overrides.iter().find(|(_, p)| !p.exists()) {
            eprintln!(
                "error: the run's last attempt read {name} from {}, which no longer exists: put it back, or give --source {name}=PATH",
                path.display()
            );
            return Ok(ExitStatus::InvalidInput);
        }
        plan = match check(&loaded, &overrides) {
            Ok(plan) => plan,
            Err(problems) => return Ok(plan_problems(&problems, &options.plan)),
        };
        let plan_hash = crate::files::sha256_file(&plan.file)?;
        if resume
            .meta
            .get("plan")
            .and_then(|v| checkpoint::split_fingerprint(v))
            .map(|(_, hash)| hash)
            != Some(plan_hash.as_str())
        {
            eprintln!(
                "error: the plan changed since this run began ({}). Resuming would mix two plans: start a new --run-dir.",
                plan.file.display()
            );
            return Ok(ExitStatus::InvalidInput);
        }
        let retry = retry_command(&options.plan, &run_dir, None);
        let files = attempt::source_files(&plan)?;
        match attempt::classify(&resume, &files, &run_dir, n, &retry) {
            Ok(chosen) => (chosen, files),
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitStatus::InvalidInput);
            }
        }
    } else {
        (
            Chosen {
                n,
                kind: AttemptKind::Fresh,
                reload_start: None,
            },
            attempt::source_files(&plan)?,
        )
    };
    // A resume of a catch-up goes on comparing the same two extracts.
    let phase = catch_up::resumed_phase(&resume, chosen.kind).map(|p| (p, loaded));
    let runtime = crate::runtime()?;
    runtime.block_on(execute(
        options, plan, run_dir, resume, chosen, files, phase,
    ))
}

/// The target recorded in the run directory's checkpoint, if it holds one.
fn recorded_target(run_dir: &Path) -> Option<String> {
    let db = run_dir.join("checkpoint.db");
    if !db.exists() {
        return None;
    }
    checkpoint::Reader::open(&db).ok()?.meta("target").ok()?
}

/// Prints the plan's problems; exit 2.
fn plan_problems(problems: &[crate::plan::load::PlanProblem], plan: &Path) -> ExitStatus {
    for p in problems {
        eprintln!("error: {p}");
    }
    eprintln!(
        "the plan has {} problems: `mambu-migrate plan validate {}` lists them with the data's",
        problems.len(),
        plan.display()
    );
    ExitStatus::InvalidInput
}

/// The command that reloads fixed rows: of attempt `n`'s folder, or of `failed/latest`.
fn retry_command(plan: &Path, run_dir: &Path, n: Option<i64>) -> String {
    let flags = match n {
        Some(n) => format!("--reload {n}"),
        None => "--reload".to_owned(),
    };
    crate::report::summary::run_command(&plan.display().to_string(), run_dir, &flags)
}

/// The command that resumes the run.
fn resume_command(plan: &Path, run_dir: &Path) -> String {
    crate::report::summary::run_command(&plan.display().to_string(), run_dir, "--resume")
}

/// A meta record of the checkpoint.
fn meta(key: &str, value: String) -> Record {
    Record::Meta {
        key: key.to_owned(),
        value,
    }
}

/// Now, in Unix seconds, as the checkpoint's meta keeps times.
fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

/// Locks `run_dir/run.lock` for as long as the returned file lives (the lock goes with the
/// process, however it ends). `None`, said why, when another process holds it.
fn lock_run_dir(run_dir: &Path) -> anyhow::Result<Option<std::fs::File>> {
    use std::io::{Read, Write};
    let path = run_dir.join("run.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    crate::files::make_private(&path)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            eprintln!(
                "error: another mambu-migrate run (pid {}) is using {}: wait for it to end, or stop it (Ctrl-C) before resuming",
                pid.trim(),
                run_dir.display()
            );
            Ok(None)
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

fn init_log(run_dir: &Path) -> anyhow::Result<()> {
    let path = run_dir.join("run.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    crate::files::make_private(&path)?;
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(Mutex::new(file))
        .with_target(false)
        .try_init();
    Ok(())
}

/// Opens the checkpoint and records this attempt (its files, settings and the event that opens
/// it), committed before a source is read and before the first call.
#[allow(clippy::too_many_arguments)]
fn open_attempt(
    options: &RunOptions,
    plan: &Plan,
    run_dir: &Path,
    chosen: &Chosen,
    files: &[SourceFile],
    target: &Where,
    (rate, concurrency): (f64, usize),
    phase: Option<&checkpoint::Phase>,
) -> anyhow::Result<Checkpoint> {
    let checkpoint = Checkpoint::open(&run_dir.join("checkpoint.db"))?;
    for suffix in ["", "-wal", "-shm"] {
        let path = run_dir.join(format!("checkpoint.db{suffix}"));
        if path.exists() {
            crate::files::make_private(&path)?;
        }
    }
    let plan_hash = crate::files::sha256_file(&plan.file)?;
    if chosen.kind == AttemptKind::Fresh {
        checkpoint.record(meta("started_at", now()));
    }
    // The phase it opens: the migration, or a catch-up (whose plan may have gained updates
    // since: steps already done are never sent again, whatever their template now says).
    let opens = match chosen.kind {
        AttemptKind::Fresh => Some(checkpoint::Phase {
            n: 1,
            kind: checkpoint::PhaseKind::Migration,
            first_attempt: chosen.n,
            baseline: Vec::new(),
            sources: files.to_vec(),
            started_at: 0.0,
            counts: None,
        }),
        AttemptKind::CatchUp => phase.cloned(),
        _ => None,
    };
    if let Some(phase) = opens {
        checkpoint.record(meta(
            "plan",
            checkpoint::fingerprint(&plan.file.display().to_string(), &plan_hash),
        ));
        // The extract of the newest phase: what `verify` compares Mambu with.
        for file in files {
            checkpoint.record(meta(
                &format!("source:{}", file.name),
                checkpoint::fingerprint(&file.path, &file.sha256),
            ));
        }
        checkpoint.record(Record::PhaseStarted(Box::new(phase)));
    }
    checkpoint.record(Record::AttemptStarted(Box::new(checkpoint::Attempt {
        n: chosen.n,
        kind: chosen.kind,
        reload_start: chosen.reload_start,
        state: AttemptState::Running,
        sources: files.to_vec(),
        failed_dir: None,
    })));
    for (key, value) in [
        ("plan_name", plan.name.clone()),
        ("plan_file", options.plan.display().to_string()),
        ("plan_hash", plan_hash),
        ("target", target.to_string()),
        ("rate", rate.to_string()),
        ("concurrency", concurrency.to_string()),
        ("state", AttemptState::Running.as_str().into()),
        ("run_dir", run_dir.display().to_string()),
        ("attempt", chosen.n.to_string()),
    ] {
        checkpoint.record(meta(key, value));
    }
    if let Some(n) = options.sample {
        checkpoint.record(meta("sample", n.to_string()));
    }
    checkpoint.record(Record::Event {
        kind: chosen.kind.event().into(),
        detail: format!(
            "attempt {}, rate {rate}/s, concurrency {concurrency}",
            chosen.n
        ),
    });
    // Committed before a source is read and before the first call, so a run killed at any
    // moment after it is resumed with the same files, without being told them again.
    if let Err(e) = checkpoint.flush() {
        // Nothing was sent; a resume starts this attempt again.
        return Err(crate::Error::Stopped {
            reason: e.to_string(),
            resume: resume_command(&options.plan, run_dir),
        }
        .into());
    }
    Ok(checkpoint)
}

/// The units the sources hold (at most `sample`), counted on a blocking thread.
async fn count_units(sources: &Sources, sample: Option<u64>) -> u64 {
    let total_units = {
        let sources = sources.clone();
        tokio::task::spawn_blocking(move || source::count(&sources).units)
            .await
            .unwrap_or(0)
    };
    sample.map_or(total_units, |n| n.min(total_units))
}

/// How a run groups its sources: it holds sorted rows in memory up to a few chunks, smaller
/// chunks than the validator's, which keep an overnight run's footprint flat (spilling costs a
/// little disk).
pub(super) fn group_options(sample: Option<u64>) -> GroupOptions {
    GroupOptions {
        sample,
        chunk_rows: 150_000,
        chunk_bytes: 32 << 20,
        ..GroupOptions::default()
    }
}

/// Streams the units from a blocking thread that reads and groups the sources; returns once
/// every file is open. The handle gives the grouping's report.
async fn stream_units(
    sources: Sources,
    sample: Option<u64>,
    concurrency: usize,
) -> (
    tokio::sync::mpsc::Receiver<Feed>,
    tokio::task::JoinHandle<source::GroupReport>,
) {
    let (unit_tx, unit_rx) = tokio::sync::mpsc::channel(concurrency * 2);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let group_options = group_options(sample);
    let grouping = tokio::task::spawn_blocking(move || {
        let mut grouping = source::group(&sources, &group_options);
        let _ = ready_tx.send(());
        for (i, unit) in grouping.by_ref().enumerate() {
            let feed = Feed {
                ordinal: i as u64 + 1,
                unit,
                catch_up: None,
            };
            if unit_tx.blocking_send(feed).is_err() {
                break;
            }
        }
        grouping.finish()
    });
    let _ = ready_rx.await;
    (unit_rx, grouping)
}

async fn execute(
    options: RunOptions,
    plan: Plan,
    run_dir: PathBuf,
    resume: Resume,
    chosen: Chosen,
    files: Vec<SourceFile>,
    phase: Option<(checkpoint::Phase, crate::plan::load::LoadedPlan)>,
) -> anyhow::Result<ExitStatus> {
    init_log(&run_dir)?;
    // A catch-up: the extract the previous phase migrated, read through the same plan.
    let catch_up = match phase {
        None => None,
        Some((phase, loaded)) => {
            let files: Vec<(String, PathBuf)> = phase
                .baseline
                .iter()
                .map(|f| (f.name.clone(), PathBuf::from(&f.path)))
                .collect();
            let before = match check(&loaded, &files) {
                Ok(before) => before,
                Err(problems) => return Ok(plan_problems(&problems, &options.plan)),
            };
            Some(catch_up::CatchUp {
                baseline: before.source_tree()?,
                drift: crate::catchup::Drift::new(&plan),
                phase,
            })
        }
    };
    let settings = plan.settings.clone();
    let rate = options.rate.unwrap_or(settings.limits.requests_per_second);
    let concurrency = options
        .concurrency
        .unwrap_or(settings.limits.concurrency)
        .max(1) as usize;
    anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be above 0");
    let timeout = Duration::from_secs_f64(settings.limits.timeout_seconds);

    // The target: the embedded sandbox in-process, or a tenant.
    let target = Where::of(&plan, options.target.as_deref());
    let connection = crate::target::connect(&plan, &target, timeout).await?;
    let client = connection.client.clone();
    // The tenant's time zone, before anything is recorded: a plan whose dates Mambu would
    // refuse is invalid input, fixed in the plan and run again.
    match crate::target::check_zone(&connection.reader(&plan, Some(rate)), &plan).await {
        Ok(()) => {}
        Err(crate::target::ZoneProblem::Mismatch(message)) => {
            eprintln!("error: {message}");
            connection.close().await;
            return Ok(ExitStatus::InvalidInput);
        }
        Err(crate::target::ZoneProblem::Unread(why)) => eprintln!(
            "warning: the tenant's time zone cannot be read ({why}): the plan's `timezone` is not checked against it"
        ),
    }
    // What the plan uses of the tenant, against what the rehearsal (or this run) recorded.
    let drift = crate::validate::drift::RunCheck {
        plan: &plan,
        place: &target,
        run_dir: &run_dir,
        resuming: chosen.kind != AttemptKind::Fresh,
        accept: options.accept_tenant_changes,
        record: options.tenant_record.as_deref(),
        recorded_by: format!("run {} (attempt {})", run_dir.display(), chosen.n),
    };
    if !crate::validate::drift::check_run(&connection.reader(&plan, Some(rate)), drift).await? {
        connection.close().await;
        return Ok(ExitStatus::InvalidInput);
    }

    let sources = plan.source_tree()?;
    let checkpoint = open_attempt(
        &options,
        &plan,
        &run_dir,
        &chosen,
        &files,
        &target,
        (rate, concurrency),
        catch_up.as_ref().map(|c| &c.phase),
    )?;
    let event = chosen.kind.event();
    // The deadline, for the dashboard's window (none: this attempt has none).
    checkpoint.record(meta(
        "deadline",
        options
            .deadline
            .map_or_else(String::new, |at| at.timestamp().to_string()),
    ));
    let _dashboard = options
        .dashboard
        .clone()
        .map(|bound| bound.spawn(run_dir.clone()));

    let total_units = count_units(&sources, options.sample).await;
    if chosen.kind != AttemptKind::Reload {
        // A reload reads only the failed units: the run's total stays the extract's.
        checkpoint.record(meta("units_total", total_units.to_string()));
    }
    tracing::info!(event, attempt = chosen.n, plan = %plan.name, units = total_units, rate, concurrency, "run");

    let burst = settings.limits.burst.unwrap_or_else(|| rate.ceil() as u32);
    let session = Session::new(
        client,
        Limiter::new(rate, burst),
        crate::target::retry_settings(&plan),
    )
    .with_approver(connection.approver.clone());
    let (bulks, bulk_queue) = bulk::Bulks::new();
    let shared = Arc::new(Shared {
        checkpoint,
        compiled: Compiled::new(&plan),
        session,
        lookups: std::sync::OnceLock::new(),
        plan_name: plan.name.clone(),
        reason: Mutex::new(None),
        progress: Progress::new(total_units, options.progress),
        attempt: chosen.n,
        source_names: plan.sources.iter().map(|s| s.name.clone()).collect(),
        bulks,
        rolled_back: resume
            .meta
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("rolled_back:")?.to_owned(), v.clone())))
            .collect(),
    });

    // Sources: read and sorted (a catch-up's two extracts compared) on a blocking thread;
    // units stream through a channel.
    let mut resume = resume;
    let (unit_rx, grouping) = match catch_up {
        None => stream_units(sources, options.sample, concurrency).await,
        Some(catch_up) => catch_up::stream(
            shared.clone(),
            catch_up,
            sources,
            run_dir.join("checkpoint.db"),
            concurrency,
            std::mem::take(&mut resume.done),
            std::mem::take(&mut resume.failed),
        ),
    };

    // Signals: the first drains (no new unit, in-flight units finish their step), the second
    // stops waiting for calls in flight.
    let signals = {
        let shared = shared.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            shared.stop("interrupted".into());
            eprintln!(
                "\nstopping: units in flight finish their current step (Ctrl-C again to stop now)"
            );
            wait_for_signal().await;
            eprintln!("stopping now: the calls in flight will be checked on resume");
            std::process::abort();
        })
    };
    let deadline = shared.deadline().clone();
    if let Some(at) = options.deadline {
        let deadline = deadline.clone();
        let wait = (at - chrono::Local::now()).to_std().unwrap_or_default();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            deadline.cancel();
        });
    }
    let ticker = shared.progress.start(shared.clone());

    // Lookups, read once before the first unit (counted as calls).
    match read_lookups(&shared, &settings).await {
        Ok(v) => {
            let _ = shared.lookups.set(v);
        }
        Err(reason) => shared.stop(reason),
    }

    // Bulks an earlier attempt left unsettled, before any unit looks for its items' outcome.
    bulk::recover(&shared, std::mem::take(&mut resume.bulks)).await;
    let batcher = tokio::spawn(bulk::batch(shared.clone(), bulk_queue));

    let (tally, not_started_by_deadline) = drive(
        &shared,
        unit_rx,
        resume,
        &chosen,
        &settings.error_budget,
        concurrency,
    )
    .await;
    shared.bulks.close();
    if batcher.await.is_err() {
        shared.stop("the bulk batcher panicked".into());
    }
    let report = grouping.await.ok();
    ticker.abort();
    signals.abort();
    let _ = ticker.await;
    let _ = signals.await;

    let stop = shared
        .stop_reason()
        .or_else(|| not_started_by_deadline.then(|| "deadline".to_owned()))
        .or_else(|| sources_unread(report.as_ref()));
    let shared = match Arc::try_unwrap(shared) {
        Ok(s) => s,
        // Cannot happen (every task was joined); if it did, the checkpoint is dropped (and
        // flushed) with the last handle.
        Err(shared) => {
            let reason = "unit tasks outlived the run".to_owned();
            shared
                .checkpoint
                .record(meta("state", AttemptState::Stopped.as_str().into()));
            shared
                .checkpoint
                .record(meta("stop_reason", reason.clone()));
            let _ = shared.checkpoint.flush();
            return Err(crate::Error::Stopped {
                reason,
                resume: resume_command(&options.plan, &run_dir),
            }
            .into());
        }
    };
    Ok(conclude(
        shared,
        connection,
        report.as_ref(),
        stop,
        &chosen,
        &options,
        &run_dir,
        tally.failed,
    )
    .await)
}

/// Ends the attempt: writes its failed rows to `failed/<n>/`, records how it ended, writes the
/// reports, and says so (with the command to resume or to reload). Anything that cannot be
/// written stops the run resumably (exit 3): nothing recorded is lost.
#[allow(clippy::too_many_arguments)]
async fn conclude(
    shared: Shared,
    connection: crate::target::Connection,
    report: Option<&source::GroupReport>,
    mut stop: Option<String>,
    chosen: &Chosen,
    options: &RunOptions,
    run_dir: &Path,
    failed_now: u64,
) -> ExitStatus {
    shared.progress.finish();
    // A reload reads only the failed units' rows of some sources: the other sources' rows of
    // units not reloaded are orphans by design.
    let data_problems = report
        .map(|r| {
            r.problems
                .iter()
                .filter(|p| {
                    !(chosen.kind == AttemptKind::Reload
                        && matches!(
                            p.kind,
                            source::ProblemKind::Orphan { .. }
                                | source::ProblemKind::More { code: "orphan", .. }
                        ))
                })
                .count()
        })
        .unwrap_or(0);
    if data_problems > 0 {
        shared
            .checkpoint
            .record(meta("data_problems", data_problems.to_string()));
    }

    // failed/<n>/, from the failed units' rows committed with their failures.
    let mut exported = None;
    match shared.checkpoint.flush() {
        Err(e) => {
            // What was done since the last commit is checked again on resume: adopted from
            // Mambu, never sent twice.
            stop.get_or_insert_with(|| {
                format!("{e}: the last calls of this run are not recorded; they will be checked against Mambu on resume")
            });
        }
        Ok(()) => match failed::export(run_dir, chosen.n, &shared.source_names) {
            Ok(e) => exported = Some(e),
            Err(e) => {
                stop.get_or_insert_with(|| {
                    format!("the failed rows cannot be written: {e:#} (a full disk? free space, then resume: they are kept in the checkpoint)")
                });
            }
        },
    }
    let end = |checkpoint: &Checkpoint, stop: &Option<String>| {
        let state = if stop.is_some() {
            AttemptState::Stopped
        } else {
            AttemptState::Finished
        };
        checkpoint.record(meta("state", state.as_str().into()));
        checkpoint.record(meta("finished_at", now()));
        match stop {
            Some(reason) => {
                checkpoint.record(meta("stop_reason", reason.clone()));
                checkpoint.record(Record::Event {
                    kind: "stopped".into(),
                    detail: reason.clone(),
                });
            }
            None => checkpoint.record(Record::Event {
                kind: "finished".into(),
                detail: String::new(),
            }),
        }
        checkpoint.record(Record::AttemptEnded {
            n: chosen.n,
            state,
            failed_dir: exported
                .as_ref()
                .map(|e: &failed::Exported| e.dir.display().to_string()),
        });
        checkpoint.flush()
    };
    if let Err(e) = end(&shared.checkpoint, &stop) {
        stop.get_or_insert_with(|| format!("{e}: the end of this run is not recorded"));
    } else if let Err(e) = crate::report::write_all(run_dir) {
        // The reports are read from the checkpoint: a resume writes them.
        let reason = format!(
            "the reports could not be written: {e:#} (a full disk? free space, then resume: it writes them)"
        );
        if stop.is_none() {
            let _ = end(&shared.checkpoint, &Some(reason.clone()));
        }
        stop.get_or_insert(reason);
    }
    if let Err(e) = shared.checkpoint.close() {
        stop.get_or_insert_with(|| e.to_string());
    }
    connection.close().await;
    for name in ["report.md", "report.json", "report.html", "errors.csv"] {
        let path = run_dir.join(name);
        if path.exists()
            && let Err(e) = crate::files::make_private(&path)
        {
            stop.get_or_insert_with(|| format!("{e:#}"));
        }
    }

    let p = &shared.progress;
    let (done, failed, skipped) = (
        p.units_done.load(Ordering::Relaxed),
        p.units_failed.load(Ordering::Relaxed),
        p.units_skipped.load(Ordering::Relaxed),
    );
    eprintln!(
        "{}: {done} units migrated, {failed} failed, {skipped} already done before; {} calls ({} retried, {} throttled) in {:.1}s",
        if stop.is_some() {
            "stopped"
        } else {
            "finished"
        },
        p.calls.load(Ordering::Relaxed),
        p.retried.load(Ordering::Relaxed),
        p.throttled.load(Ordering::Relaxed),
        p.elapsed().as_secs_f64()
    );
    if data_problems > 0 {
        eprintln!(
            "warning: {data_problems} data problems left rows out of the run (orphans, duplicates, unreadable rows): `mambu-migrate plan validate` lists them"
        );
    }
    if let Some(line) = catch_up_line(run_dir, chosen.n) {
        eprintln!("{line}");
    }
    eprintln!(
        "run directory: {} (report.html, report.md, errors.csv{}, failed/)",
        run_dir.display(),
        if run_dir.join("drift.csv").exists() {
            ", drift.csv"
        } else {
            ""
        }
    );
    if let Some(e) = &exported
        && e.units > 0
    {
        eprintln!(
            "{} failed: their rows are in {}/ with errors.csv saying why. Fix them there, then reload them:\n  {}",
            if e.units == 1 {
                "1 unit".to_owned()
            } else {
                format!("{} units", e.units)
            },
            e.dir.display(),
            retry_command(&options.plan, run_dir, Some(chosen.n))
        );
        if e.without_rows > 0 {
            eprintln!(
                "note: {} units failed before this version kept failed rows in the checkpoint: their rows are in {}",
                e.without_rows,
                run_dir.join("failed").display()
            );
        }
    }
    if let Some(reason) = stop {
        eprintln!(
            "stopped ({reason}). Resume with:\n  {}",
            resume_command(&options.plan, run_dir)
        );
        return ExitStatus::Stopped;
    }
    if failed > 0 || failed_now > 0 {
        ExitStatus::SomeFailed
    } else {
        ExitStatus::Success
    }
}

/// What the catch-up attempt `n` belongs to found, for the terminal.
fn catch_up_line(run_dir: &Path, n: i64) -> Option<String> {
    let reader = checkpoint::Reader::open(&run_dir.join("checkpoint.db")).ok()?;
    let phase = reader.phases().ok()?.into_iter().last()?;
    if phase.kind != checkpoint::PhaseKind::CatchUp || phase.first_attempt > n {
        return None;
    }
    Some(match phase.counts {
        Some(c) => format!(
            "catch-up (phase {}): {} new units, {} changed ({} new rows), {} unchanged (no call), {} removed; drift: {} applied, {} not sent by the plan, {} left for a person (drift.csv)",
            phase.n,
            c.units_new,
            c.units_changed,
            c.rows_added,
            c.units_unchanged,
            c.units_removed,
            c.drift_applied,
            c.drift_not_sent,
            c.drift_left
        ),
        None => format!(
            "catch-up (phase {}): the extracts were not compared to their end; resume to finish",
            phase.n
        ),
    })
}

/// Starts every unit not done yet (at most `concurrency` at once), skipping what is done and
/// what failed before unless this attempt retries it, until the units run out, the run is
/// halted or the deadline passes; then waits for the units in flight. Returns the tally of
/// units finished by this invocation and whether the deadline left units unstarted.
async fn drive(
    shared: &Arc<Shared>,
    mut unit_rx: tokio::sync::mpsc::Receiver<Feed>,
    mut resume: Resume,
    chosen: &Chosen,
    budget: &crate::plan::file::ErrorBudgetFile,
    concurrency: usize,
) -> (Tally, bool) {
    let deadline = shared.deadline().clone();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks: JoinSet<(String, UnitEnd)> = JoinSet::new();
    let mut tally = Tally::default();
    let mut not_started_by_deadline = false;
    'units: while let Some(feed) = tokio::select! {
        next = unit_rx.recv() => next,
        () = shared.halt().cancelled() => None,
    } {
        if deadline.is_cancelled() {
            not_started_by_deadline = true;
            break;
        }
        let Feed {
            ordinal,
            unit,
            catch_up,
        } = feed;
        let key = unit.key().to_owned();
        // A catch-up's stream decided already (and counted what it skips).
        let (saved, delta) = match catch_up {
            Some(c) => (c.0, Some(c.1)),
            None => {
                if resume.done.contains(&key) {
                    shared
                        .progress
                        .units_skipped
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if let Some((_, failed_in)) = resume.failed.get(&key)
                    && !chosen.retries(*failed_in)
                {
                    shared.progress.units_failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                (resume.steps.remove(&key).unwrap_or_default(), None)
            }
        };
        let permit = loop {
            tokio::select! {
                permit = semaphore.clone().acquire_owned() => break permit.expect("the semaphore is never closed"),
                Some(done) = tasks.join_next() => tally.account(done, shared, budget),
                () = shared.halt().cancelled() => break 'units,
                () = deadline.cancelled() => { not_started_by_deadline = true; break 'units }
            }
        };
        let task_shared = shared.clone();
        shared.bulks.starting();
        tasks.spawn(async move {
            // The permit goes back once the unit has run its steps, before it waits for its
            // bulk items: a bulk fills from more units than the concurrency.
            let end = run_unit(task_shared, unit, ordinal, saved, delta, permit).await;
            (key, end)
        });
        while let Some(done) = tasks.try_join_next() {
            tally.account(done, shared, budget);
        }
    }
    drop(unit_rx);
    // No unit starts any more: the bulks' remainders go once the units running have queued.
    shared.bulks.close();
    while let Some(done) = tasks.join_next().await {
        tally.account(done, shared, budget);
    }
    (tally, not_started_by_deadline)
}

/// Why the sources were not read to their end, if they were not: a file that failed midway, or
/// a temporary file of the sort that could not be written (a full disk). The units not read
/// were never started, so the run stops resumably rather than finishing without them.
fn sources_unread(report: Option<&source::GroupReport>) -> Option<String> {
    let Some(report) = report else {
        return Some("reading the sources failed (the reading thread stopped)".into());
    };
    let problem = report.problems.iter().find(|p| {
        matches!(
            p.kind,
            source::ProblemKind::TempIo { .. } | source::ProblemKind::Unreadable { .. }
        )
    })?;
    Some(format!(
        "reading the sources failed: {problem} (a full disk? free space, then resume)"
    ))
}

/// Units finished in this invocation, for the error budget.
#[derive(Default)]
struct Tally {
    finished: u64,
    failed: u64,
    consecutive: u64,
}

impl Tally {
    fn account(
        &mut self,
        joined: Result<(String, UnitEnd), tokio::task::JoinError>,
        shared: &Shared,
        budget: &crate::plan::file::ErrorBudgetFile,
    ) {
        let Ok((key, end)) = joined else {
            shared.stop("a unit task panicked".into());
            return;
        };
        match end {
            UnitEnd::Done => {
                self.finished += 1;
                self.consecutive = 0;
                shared.progress.units_done.fetch_add(1, Ordering::Relaxed);
            }
            UnitEnd::Failed(_) => {
                self.finished += 1;
                self.failed += 1;
                self.consecutive += 1;
                shared.progress.units_failed.fetch_add(1, Ordering::Relaxed);
            }
            UnitEnd::Interrupted => {
                // Only a stop interrupts a unit; one interrupted otherwise (an item its bulk
                // never settled) must not let the run say it finished: it stops, resumably.
                if !shared.halt().is_cancelled() {
                    shared.stop(format!(
                        "unit {key} was left unfinished (a bulk item not settled): resume to finish it"
                    ));
                }
                return;
            }
        }
        if self.consecutive >= budget.max_consecutive_failures {
            shared.stop(format!(
                "error budget: {} units failed in a row",
                self.consecutive
            ));
        } else if self.finished >= budget.min_units
            && (self.failed as f64 / self.finished as f64) > budget.max_error_rate
        {
            shared.stop(format!(
                "error budget: {} of {} units failed ({:.1}% > {:.1}%)",
                self.failed,
                self.finished,
                100.0 * self.failed as f64 / self.finished as f64,
                100.0 * budget.max_error_rate
            ));
        }
    }
}

/// Reads the plan's lookups, every page: `{ table: { key: value } }`. Each attempt is counted
/// and recorded as a call of the step `lookups.<name>`.
async fn read_lookups(shared: &Shared, settings: &PlanFile) -> Result<Value, String> {
    let mut tables = serde_json::Map::new();
    for (name, lookup) in &settings.lookups {
        let step_id = format!("lookups.{name}");
        let mut observer = RunCalls::new(shared, &step_id, ("GET", &lookup.path));
        let items = shared
            .session
            .list(&lookup.path, &mut observer)
            .await
            .map_err(|e| format!("lookups.{name}: {e}"))?;
        tables.insert(
            name.clone(),
            Value::Object(crate::target::lookup_table(&items, lookup)),
        );
    }
    Ok(Value::Object(tables))
}

/// Records the calls of no unit (the lookups', the bulks') in the checkpoint and the progress
/// line, under a step id and an endpoint.
pub(crate) struct RunCalls<'a> {
    shared: &'a Shared,
    step_id: String,
    method: &'static str,
    endpoint: String,
    /// Attempts so far.
    pub attempts: u32,
}

impl<'a> RunCalls<'a> {
    pub fn new(
        shared: &'a Shared,
        step_id: &str,
        (method, endpoint): (&'static str, &str),
    ) -> Self {
        Self {
            shared,
            step_id: step_id.to_owned(),
            method,
            endpoint: endpoint.to_owned(),
            attempts: 0,
        }
    }
}

impl Observer for RunCalls<'_> {
    fn attempt(&mut self, status: Option<u16>, outcome: CallOutcome, latency_ms: f64, _: bool) {
        self.attempts += 1;
        self.shared.progress.count_call(outcome);
        self.shared
            .checkpoint
            .record(Record::Call(Box::new(checkpoint::CallRecord {
                unit: String::new(),
                step_id: self.step_id.clone(),
                method: self.method,
                endpoint: self.endpoint.clone(),
                status,
                outcome,
                latency_ms,
            })));
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `HH:MM` (today, or tomorrow if already past) or RFC 3339.
pub fn parse_deadline(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Local>> {
    use chrono::TimeZone;
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&chrono::Local));
    }
    let time = chrono::NaiveTime::parse_from_str(text, "%H:%M").with_context(|| {
        format!("--deadline {text:?}: write HH:MM (local time) or an RFC 3339 date-time")
    })?;
    let now = chrono::Local::now();
    let mut day = now.date_naive();
    if time <= now.time() {
        day = day.succ_opt().unwrap_or(day);
    }
    chrono::Local
        .from_local_datetime(&day.and_time(time))
        .earliest()
        .context("--deadline falls in a daylight-saving gap")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{GroupReport, Problem, ProblemKind};

    fn report(kinds: Vec<ProblemKind>) -> GroupReport {
        GroupReport {
            problems: kinds
                .into_iter()
                .map(|kind| Problem {
                    source: "loans".into(),
                    file: Some("loans.csv".into()),
                    line: Some(7),
                    kind,
                })
                .collect(),
            sources: Vec::new(),
            units: 3,
            spilled_bytes: 0,
            spilled_runs: 0,
        }
    }

    #[test]
    fn sources_not_read_to_their_end_stop_the_run_and_bad_rows_do_not() {
        assert_eq!(sources_unread(Some(&report(Vec::new()))), None);
        let bad_rows = report(vec![ProblemKind::RowWidth {
            expected: 3,
            found: 2,
        }]);
        assert_eq!(sources_unread(Some(&bad_rows)), None, "a bad row is data");
        let full_disk = report(vec![ProblemKind::TempIo {
            error: "No space left on device".into(),
        }]);
        let reason = sources_unread(Some(&full_disk)).unwrap();
        assert!(
            reason.contains("No space left on device") && reason.contains("then resume"),
            "{reason}"
        );
        assert!(sources_unread(None).is_some());
    }
}
