//! `verify`: reconcile what Mambu holds against the source, through the plan's own mappings,
//! and leave a cutover evidence pack in the run directory.
//!
//! For every unit the run says is migrated (or a seeded sample of them), the entities are read
//! back through the same client: each client, deposit and loan (id, amount, product, state,
//! settlement account; read with `detailsLevel=FULL`, its custom field values, addresses and
//! identification documents, the fields the plan sends, by position) and every loan's
//! transactions (matched by externalId: present, type, amount; none unexpected), and every
//! deposit's transactions the run posted (by externalId: type, amount, value date; none
//! unposted on the unit's own deposits) with its balance, the deposits minus the withdrawals
//! (only on a deposit the run posted on). Expected values are the run's own rendered bodies, re-rendered from
//! the source rows with the outputs the checkpoint saved. Control totals put the figures from the
//! CSVs beside those found in Mambu. The evidence pack is verify.md, verify.json, verify.html and
//! manifest.sha256 (hashes of the plan, every source, the checkpoint and the reports).
//!
//! Submodules:
//! - this one: [`verify()`] and what it returns ([`Report`], [`Mismatch`], [`Total`]), the data
//!   sets a run's units came from, the driver that checks units concurrently under the run's
//!   pace, and the pack written at the end;
//! - `check`: the `Checker` that compares one unit with what Mambu holds, stage by stage (what
//!   the saved steps expect, then clients and deposits with their transactions and balances,
//!   then loans and their transactions),
//!   and the control totals (`Tally`);
//! - `ledger`: a deposit's transactions and balance against those the run posted (pure);
//! - `details`: what a body carries beyond the entity's own fields (custom field values,
//!   addresses, identification documents, group members) against a FULL read, personal values
//!   masked before a mismatch is made of them;
//! - `securities`: a loan's guarantors and assets against a FULL read, by position;
//! - `render`: the evidence pack: verify.md, verify.json, verify.html and manifest.sha256.

mod check;
mod details;
mod ledger;
mod render;
mod securities;
mod states;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use serde::Serialize;

use crate::ExitStatus;
use crate::checkpoint::{AttemptKind, Reader};
use crate::mambu::Session;
use crate::plan::check::check;
use crate::plan::compiled::Compiled;
use crate::plan::load::load;
use crate::source::{self, GroupOptions};
use check::{Checked, Checker, Shared, Tally};
pub use render::render_md;

#[derive(Debug, Clone)]
pub struct Options {
    pub run_dir: PathBuf,
    /// Verify a seeded random sample of N migrated units instead of all.
    pub sample: Option<usize>,
    pub seed: u64,
    /// Where Mambu is, when not the run's target (an embedded sandbox is gone with its run).
    pub target: Option<String>,
    /// Calls per second; default: the run's.
    pub rate: Option<f64>,
    /// Units checked at once; default: the run's.
    pub concurrency: Option<u32>,
    /// A progress bar on a terminal (otherwise a line every 10 seconds).
    pub progress: bool,
}

/// One difference between the source and Mambu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub unit: String,
    /// e.g. `loan LN-000012`, `transaction TX-00000031`.
    pub entity: String,
    pub field: String,
    pub expected: String,
    pub found: String,
}

/// Expected beside found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Total {
    pub name: String,
    pub expected: String,
    pub found: String,
    pub difference: String,
}

/// What a verification found: verify.json is it; verify.md and verify.html show it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_dir: String,
    pub plan: String,
    pub target: String,
    pub units_migrated: usize,
    pub units_verified: usize,
    /// Set when a sample was verified.
    pub sample_seed: Option<u64>,
    pub totals: Vec<Total>,
    pub mismatches: Vec<Mismatch>,
    /// Files the evidence covers, with their SHA-256.
    pub manifest: Vec<(String, String)>,
    pub calls: u64,
    /// After a catch-up (`run --catch-up`): the phase whose extract Mambu is compared with, the
    /// run's newest (`phase 2 (catch-up)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extract_phase: Option<String>,
}

/// The files a set of migrated units was migrated from.
#[derive(Clone)]
struct DataSet {
    /// `None`: the extract the run began with (the plan's sources as the run recorded them).
    overrides: Option<Vec<(String, PathBuf)>>,
    /// The units it holds; `None`: every unit no other set holds.
    units: Option<HashSet<String>>,
    /// Units other sets hold (for the extract's set).
    elsewhere: HashSet<String>,
}

impl DataSet {
    fn holds(&self, unit: &str) -> bool {
        match &self.units {
            Some(units) => units.contains(unit),
            None => !self.elsewhere.contains(unit),
        }
    }
}

/// The extract the run began with, then one set per reload's files, each with the units that
/// finished in it.
fn data_sets(reader: &Reader) -> anyhow::Result<Vec<DataSet>> {
    let attempts = reader.attempts()?;
    let mut by_attempt: HashMap<i64, HashSet<String>> = HashMap::new();
    for (unit, n) in reader.done_unit_attempts()? {
        by_attempt.entry(n).or_default().insert(unit);
    }
    let mut reloads: Vec<DataSet> = Vec::new();
    for attempt in attempts.iter().filter(|a| a.kind == AttemptKind::Reload) {
        let Some(units) = by_attempt.remove(&attempt.n) else {
            continue;
        };
        let files: Vec<(String, PathBuf)> = attempt
            .sources
            .iter()
            .map(|f| (f.name.clone(), PathBuf::from(&f.path)))
            .collect();
        match reloads
            .iter_mut()
            .find(|s| s.overrides.as_ref() == Some(&files))
        {
            Some(set) => set.units.get_or_insert_default().extend(units),
            None => reloads.push(DataSet {
                overrides: Some(files),
                units: Some(units),
                elsewhere: HashSet::new(),
            }),
        }
    }
    let elsewhere: HashSet<String> = reloads
        .iter()
        .flat_map(|s| s.units.iter().flatten().cloned())
        .collect();
    let mut sets = vec![DataSet {
        overrides: None,
        units: None,
        elsewhere,
    }];
    sets.extend(reloads);
    Ok(sets)
}

/// The plan a run ran, as its checkpoint names it (its file and the sources it ran on).
pub struct RecordedPlan {
    pub file: PathBuf,
    pub loaded: crate::plan::load::LoadedPlan,
    pub plan: crate::plan::check::Plan,
}

impl RecordedPlan {
    /// Loads and checks the plan the checkpoint's `meta` names.
    pub fn of(meta: &HashMap<String, String>) -> anyhow::Result<Self> {
        let file = PathBuf::from(
            meta.get("plan_file")
                .context("the checkpoint does not name its plan")?,
        );
        let overrides: Vec<(String, PathBuf)> = meta
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.strip_prefix("source:")?.to_owned(),
                    PathBuf::from(crate::checkpoint::split_fingerprint(v)?.0),
                ))
            })
            .collect();
        let loaded = load(&file).map_err(|p| problems_of(&file, p))?;
        let plan = check(&loaded, &overrides).map_err(|p| problems_of(&file, p))?;
        Ok(Self { file, loaded, plan })
    }
}

/// Where a run's Mambu is: `chosen` (`--target`), else the target the run recorded.
pub fn recorded_target(
    chosen: Option<&str>,
    meta: &HashMap<String, String>,
) -> crate::target::Where {
    crate::target::Where::parse(
        chosen
            .or(meta.get("target").map(String::as_str))
            .unwrap_or("sandbox"),
    )
}

fn problems_of(file: &std::path::Path, p: Vec<crate::plan::load::PlanProblem>) -> anyhow::Error {
    anyhow::anyhow!(
        "the run's plan {} has problems now: {}",
        file.display(),
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// Verifies a run; writes the evidence pack; exit 0 when everything matches, 1 otherwise.
pub fn verify(options: &Options) -> anyhow::Result<(Report, ExitStatus)> {
    let db = options.run_dir.join("checkpoint.db");
    anyhow::ensure!(
        db.exists(),
        "{} holds no run (no checkpoint.db): give the run directory of a `mambu-migrate run`",
        options.run_dir.display()
    );
    let reader = Reader::open(&db)?;
    let meta = reader.meta_all()?;
    let phases = reader.phases()?;
    let extract_phase = phases
        .last()
        .filter(|_| phases.len() > 1)
        .map(|p| format!("phase {} ({})", p.n, p.kind.as_str()));
    let RecordedPlan {
        file: plan_file,
        loaded,
        plan,
    } = RecordedPlan::of(&meta)?;
    let problems = |p| problems_of(&plan_file, p);
    // A unit finished by a reload was migrated from that reload's (fixed) files: it is compared
    // with them, every other unit with the extract the run began with.
    let data_sets = data_sets(&reader)?;
    let plans = data_sets
        .iter()
        .map(|set| match &set.overrides {
            None => Ok(plan.clone()),
            Some(files) => check(&loaded, files).map_err(problems),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let target = recorded_target(options.target.as_deref(), &meta);
    anyhow::ensure!(
        !target.is_embedded(),
        "this run went to the embedded sandbox, which forgot everything when the run ended: verify reads Mambu back, so give it a tenant or a running `mambu-migrate sandbox` with --target URL"
    );
    let migrated = reader.done_units()?;
    let selected: HashSet<String> = match options.sample {
        Some(n) if n < migrated.len() => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
            migrated.choose_multiple(&mut rng, n).cloned().collect()
        }
        _ => migrated.iter().cloned().collect(),
    };

    // The pace the run had, unless told otherwise: verify reads as fast as the run wrote.
    let recorded = |key: &str| meta.get(key).and_then(|v| v.parse::<f64>().ok());
    let rate = options
        .rate
        .or_else(|| recorded("rate"))
        .unwrap_or(plan.settings.limits.requests_per_second);
    let concurrency = options
        .concurrency
        .or_else(|| recorded("concurrency").map(|c| c as u32))
        .unwrap_or(plan.settings.limits.concurrency)
        .max(1) as usize;
    let units_to_verify = selected.len() as u64;
    let runtime = crate::runtime()?;
    let mut report = runtime.block_on(async {
        let connection = crate::target::connect(
            &plan,
            &target,
            Duration::from_secs_f64(plan.settings.limits.timeout_seconds),
        )
        .await?;
        let session = Arc::new(connection.reader(&plan, Some(rate)));
        let lookups = crate::target::read_lookups(&session, &plan).await?;
        let shared = Arc::new(Shared::new(session.clone(), lookups, &plan));
        // Units are read and grouped on a blocking thread, each with the steps the run saved,
        // and checked concurrently under the one rate limit.
        let (unit_tx, mut unit_rx) = tokio::sync::mpsc::channel(concurrency * 2);
        let db = options.run_dir.join("checkpoint.db");
        let producer = {
            let plans = plans.clone();
            let selected = selected.clone();
            let data_sets = data_sets.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let reader = Reader::open(&db)?;
                let mut ordinal = 0usize;
                for (set, plan) in data_sets.iter().zip(&plans) {
                    let sources = plan.source_tree()?;
                    let compiled = Arc::new(Compiled::new(plan));
                    let mut grouping = source::group(&sources, &GroupOptions::default());
                    for unit in grouping.by_ref() {
                        if !selected.contains(unit.key()) || !set.holds(unit.key()) {
                            continue;
                        }
                        let saved = reader.unit_steps(unit.key())?;
                        ordinal += 1;
                        if unit_tx
                            .blocking_send((ordinal, compiled.clone(), unit, saved))
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            })
        };
        let progress = Progress::new(units_to_verify, options.progress, session.clone());
        let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks: tokio::task::JoinSet<(usize, Checked)> = tokio::task::JoinSet::new();
        let mut checked: Vec<(usize, Checked)> = Vec::new();
        while let Some((ordinal, compiled, unit, saved)) = unit_rx.recv().await {
            let permit = semaphore.clone().acquire_owned().await?;
            let checker = Checker::new(shared.clone(), unit.key());
            tasks.spawn(async move {
                let found = checker.unit(&compiled, &unit, &saved).await;
                drop(permit);
                (ordinal, found)
            });
            while let Some(done) = tasks.try_join_next() {
                checked.push(done?);
                progress.advance();
            }
        }
        while let Some(done) = tasks.join_next().await {
            checked.push(done?);
            progress.advance();
        }
        producer.await??;
        progress.finish();
        connection.close().await;
        // In the order the units were read: the same report whatever finished first.
        checked.sort_by_key(|(ordinal, _)| *ordinal);
        let verified = checked.len();
        let mut tally = Tally::default();
        let mut mismatches = Vec::new();
        for (_, unit) in checked {
            tally.merge(unit.tally);
            mismatches.extend(unit.mismatches);
        }
        anyhow::Ok(Report {
            run_dir: options.run_dir.display().to_string(),
            plan: plan_file.display().to_string(),
            target: target.to_string(),
            units_migrated: migrated.len(),
            units_verified: verified,
            sample_seed: options
                .sample
                .filter(|n| *n < migrated.len())
                .map(|_| options.seed),
            totals: tally.totals(),
            mismatches,
            manifest: Vec::new(),
            calls: session.attempts(),
            extract_phase,
        })
    })?;
    render::write_pack(
        &options.run_dir,
        &plan_file,
        // Every file a verified unit was compared with: the extract, then each reload's.
        &plans
            .iter()
            .flat_map(|p| p.sources.iter().map(|s| s.file.clone()))
            .fold(Vec::new(), |mut files, file| {
                if !files.contains(&file) {
                    files.push(file);
                }
                files
            }),
        &mut report,
    )?;
    let status = if report.mismatches.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::SomeFailed
    };
    Ok((report, status))
}

/// Verify's progress: a bar on a terminal; otherwise (or with `--no-progress`) a line every 10
/// seconds on stderr.
struct Progress {
    total: u64,
    done: Arc<std::sync::atomic::AtomicU64>,
    started: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn new(total: u64, wanted: bool, session: Arc<Session>) -> Self {
        use std::io::IsTerminal;
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let started = std::time::Instant::now();
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} units verified {msg} (ETA {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        let ticker = {
            let (bar, done) = (bar.clone(), done.clone());
            tokio::spawn(async move {
                let every = if bar.is_some() { 1 } else { 10 };
                let mut tick = tokio::time::interval(Duration::from_secs(every));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let calls = session.attempts();
                    let rate = calls as f64 / started.elapsed().as_secs_f64().max(0.001);
                    let line = format!("{calls} calls ({rate:.1}/s)");
                    match &bar {
                        Some(bar) => bar.set_message(line),
                        None => eprintln!(
                            "verify: {} of {total} units, {line}",
                            done.load(std::sync::atomic::Ordering::Relaxed)
                        ),
                    }
                }
            })
        };
        Self {
            total,
            done,
            started,
            bar,
            ticker: Some(ticker),
        }
    }

    fn advance(&self) {
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn finish(mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::debug!(
            units = self.total,
            seconds = self.started.elapsed().as_secs_f64(),
            "verified"
        );
    }
}
