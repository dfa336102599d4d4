//! `plan estimate`: the volume and timing pack Mambu's onboarding team asks for, from the plan
//! and the real extract, without a single call to Mambu (unless `--target` asks for the
//! tenant's lookups).
//!
//! One pass over the units: every step's `when` evaluated on the real rows, calls counted per
//! step and endpoint, the first instance of each step rendered as its sample call (personal
//! data masked), the largest units kept. Counts are held, never rows. Then the timing model
//! ([`timing`]), with assumptions or with what a sample run measured ([`measured`]).

mod fast;
pub mod measured;
pub mod render;
pub mod sample;
mod tenant;
pub mod timing;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::plan::action::{Action, BULK_DEPOSITS, BULK_STATUS};
use crate::plan::check::{ActionStep, Plan, check};
use crate::plan::compiled::Compiled;
use crate::plan::load::load;
use crate::report::render::{Format, thousands};
use crate::source::{self, GroupOptions, Sources};
use measured::Measured;
use sample::{Personal, SampleCall};
use timing::{Projection, TimingInput, WindowFit};

/// Default per-call latency, ms, when nothing was measured.
pub const DEFAULT_LATENCY_MS: f64 = 150.0;
/// Units listed as the largest.
const LARGEST: usize = 10;

/// What `run` reads of the tenant before its lookups: its time zone, checked against the plan's.
const TENANT_READS: [&str; 1] = [crate::target::ORGANIZATION_SETUP];
/// The endpoint line of the reads that record the tenant before a run (`validate::drift`).
const RECORD_READS: &str = "(the tenant's configuration: what the plan uses, recorded)";

/// What to estimate.
#[derive(Debug, Clone)]
pub struct Options {
    pub plan: PathBuf,
    pub sources: Vec<(String, PathBuf)>,
    /// `sandbox` or a base URL: read the lookups from it (sample calls show real keys).
    pub target: Option<String>,
    pub rate: Option<f64>,
    pub concurrency: Option<u32>,
    pub latency_ms: f64,
    pub from_run: Option<PathBuf>,
    /// Seconds.
    pub window: Option<f64>,
    /// Show a progress bar while reading the extract (on a terminal).
    pub progress: bool,
    /// `--catch-up RUN_DIR`: count only what a catch-up of that run with this extract sends.
    pub catch_up: Option<PathBuf>,
}

/// What a catch-up of a run with the extract would find and send (`--catch-up RUN_DIR`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatchUpEstimate {
    pub run_dir: String,
    /// The phase it would open.
    pub phase: i64,
    #[serde(flatten)]
    pub counts: crate::checkpoint::PhaseCounts,
    /// Calls of units (the tenant's reads and lookups aside).
    pub unit_calls: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceVolume {
    pub source: String,
    pub file: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepVolume {
    pub id: String,
    pub action: String,
    /// The source whose rows the step runs for.
    pub per: String,
    pub when: Option<String>,
    /// Instances whose `when` holds: each makes `calls_each` calls.
    pub instances: u64,
    /// Instances whose `when` is false (no call).
    pub skipped: u64,
    /// Instances whose `when` could not be evaluated without the tenant (counted as no call).
    pub unevaluated: u64,
    pub calls_each: u64,
    pub calls: u64,
    /// `METHOD /path` of each call.
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointVolume {
    pub method: String,
    pub endpoint: String,
    pub calls: u64,
    /// The latency the timing model uses for it, ms.
    pub latency_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitCalls {
    pub unit: String,
    pub calls: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    pub rate: f64,
    pub concurrency: u32,
    /// Mean latency over all calls, ms.
    pub mean_latency_ms: f64,
    /// Extra attempts per call (retries and throttling), 0 without `--from-run`.
    pub extra_attempts_per_call: f64,
    /// Attempts the run is expected to make (calls × (1 + extra)).
    pub attempts: f64,
    pub projection: Projection,
    pub window: Option<WindowFit>,
    /// With `--from-run`: what was measured, and the model applied to the sample's own units.
    pub measured: Option<Measured>,
    pub sample_projection: Option<Projection>,
}

/// The whole estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub plan: String,
    pub plan_name: String,
    pub base_url: String,
    pub sources: Vec<SourceVolume>,
    pub units: u64,
    /// Rows left out by data problems (orphans, duplicates, unreadable rows).
    pub data_problems: u64,
    /// GET calls reading the tenant before the first unit: its time zone and the lookups.
    pub lookup_calls: u64,
    pub steps: Vec<StepVolume>,
    pub endpoints: Vec<EndpointVolume>,
    pub total_calls: u64,
    pub largest_units: Vec<UnitCalls>,
    pub samples: Vec<SampleCall>,
    pub timing: Timing,
    /// Calls a different flow could save, for the conversation with Mambu's onboarding team.
    pub savings: Vec<Saving>,
    /// The calls the plan's bulk deposit steps save (issue 18).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bulks: Vec<BulkCalls>,
    /// With `--catch-up`: the delta's figures (every other figure counts only the delta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUpEstimate>,
    pub assumptions: Vec<String>,
}

/// A deposit step posted through the bulk endpoint: its items go in bulks of `size`, each one
/// POST and at least one poll (`GET /bulks/{key}`), instead of one call per item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BulkCalls {
    pub step: String,
    pub size: u64,
    pub items: u64,
    /// POSTs and polls (one each per bulk: a poll more per second a bulk takes).
    pub calls: u64,
    /// `items - calls`: what single deposits would have cost more.
    pub saved: u64,
}

impl BulkCalls {
    /// The calls of `items` items in bulks of `size`: a POST and a poll per bulk.
    fn of(step: &str, size: u64, items: u64) -> Self {
        let calls = 2 * items.div_ceil(size.max(1));
        Self {
            step: step.to_owned(),
            size,
            items,
            calls,
            saved: items.saturating_sub(calls),
        }
    }
}

/// Calls of one step that another flow could save.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Saving {
    pub step: String,
    pub action: String,
    pub calls: u64,
    /// What to do instead.
    pub instead: String,
    /// What to confirm first.
    pub caveat: String,
    /// The projected duration if they were saved, seconds.
    pub projected_seconds: f64,
}

/// Actions whose calls another flow could save: what to do instead, what to check first.
const SAVINGS: &[(Action, &str, &str)] = &[(
    Action::LinkSettlementAccount,
    "pass the deposit's encodedKey as `settlementAccountKey` in the create_loan body, instead of the v1 link call",
    "Mambu's 2025 spec lists LoanAccount.settlementAccountKey, but whether it is writable on create is not documented: try it on a sandbox tenant and ask Mambu's onboarding team",
)];

/// The savings [`SAVINGS`] finds among the plan's steps, each with the projection without its
/// calls (rate and concurrency bounds shrink in proportion; the critical path is kept).
fn savings(steps: &[StepVolume], projection: &Projection, total_calls: u64) -> Vec<Saving> {
    steps
        .iter()
        .filter(|s| s.calls > 0)
        .filter_map(|s| {
            let (_, instead, caveat) = SAVINGS.iter().find(|(a, ..)| a.name() == s.action)?;
            let share = 1.0 - s.calls as f64 / total_calls.max(1) as f64;
            Some(Saving {
                step: s.id.clone(),
                action: s.action.clone(),
                calls: s.calls,
                instead: (*instead).to_owned(),
                caveat: (*caveat).to_owned(),
                projected_seconds: (projection.seconds * share)
                    .max(projection.critical_path_seconds),
            })
        })
        .collect()
}

/// Why no estimate could be made: the problems, one a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub Vec<String>);

/// Running totals of one stretch of units, for the timing model.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    calls: u64,
    work_ms: f64,
    critical_ms: f64,
}

pub fn estimate(options: &Options) -> anyhow::Result<Result<Estimate, Refused>> {
    let plan = match load(&options.plan).and_then(|loaded| check(&loaded, &options.sources)) {
        Ok(plan) => plan,
        Err(problems) => {
            return Ok(Err(Refused(
                problems.iter().map(|p| p.to_string()).collect(),
            )));
        }
    };
    let sources = match Sources::new(plan.sources.clone(), &plan.unit) {
        Ok(s) => s,
        Err(problems) => {
            return Ok(Err(Refused(
                problems.iter().map(|p| p.to_string()).collect(),
            )));
        }
    };
    let measured = options
        .from_run
        .as_deref()
        .map(measured::read)
        .transpose()?;
    let lookups = options
        .target
        .as_deref()
        .map(|t| tenant::read_lookups(&plan, t))
        .transpose()?;
    // What a run reads to record the tenant (`validate::drift`): counted on the target, or on
    // the plan's embedded sandbox (local); a plan's real tenant is not called without --target.
    let record_target = match (options.target.as_deref(), &plan.target) {
        (Some(t), _) => Some(crate::target::Where::parse(t)),
        (None, crate::plan::check::Target::Sandbox { .. }) => Some(crate::target::Where::Embedded),
        (None, _) => None,
    };
    let record = crate::validate::drift::record_reads(&plan, record_target.as_ref());
    let catch_up = match &options.catch_up {
        None => None,
        Some(run_dir) => match catch_up_baseline(&options.plan, run_dir)? {
            Ok(baseline) => Some(baseline),
            Err(problems) => return Ok(Err(problems)),
        },
    };
    Ok(Ok(estimate_plan(
        &plan, &sources, options, measured, lookups, record, catch_up,
    )?))
}

/// A run to catch up with: its checkpoint, the phase a catch-up would open, and the extract
/// its latest phase migrated (grouped again to compare with).
struct Baseline {
    run_dir: PathBuf,
    reader: crate::checkpoint::Reader,
    phase: i64,
    sources: Sources,
}

fn catch_up_baseline(
    plan_file: &std::path::Path,
    run_dir: &std::path::Path,
) -> anyhow::Result<Result<Baseline, Refused>> {
    use anyhow::Context as _;
    let db = run_dir.join("checkpoint.db");
    anyhow::ensure!(
        db.exists(),
        "--catch-up {}: there is no run there (no checkpoint.db)",
        run_dir.display()
    );
    let reader = crate::checkpoint::Reader::open(&db)?;
    let last = reader
        .phases()
        .with_context(|| format!("reading {}", db.display()))?
        .pop()
        .with_context(|| format!("{}: the run records no phase", run_dir.display()))?;
    let files: Vec<(String, PathBuf)> = last
        .sources
        .iter()
        .map(|f| (f.name.clone(), PathBuf::from(&f.path)))
        .collect();
    for (name, path) in &files {
        anyhow::ensure!(
            path.exists(),
            "{name} of phase {} was read from {}, which is not there: a catch-up compares with it",
            last.n,
            path.display()
        );
    }
    let plan = match load(plan_file).and_then(|loaded| check(&loaded, &files)) {
        Ok(plan) => plan,
        Err(problems) => {
            return Ok(Err(Refused(
                problems.iter().map(|p| p.to_string()).collect(),
            )));
        }
    };
    Ok(Ok(Baseline {
        run_dir: run_dir.to_owned(),
        reader,
        phase: last.n + 1,
        sources: plan.source_tree()?,
    }))
}

/// Units in run order, folded into what the timing model needs.
struct Accumulator {
    all: Tally,
    sample: Tally,
    sample_units: Option<u64>,
    schedule: timing::Schedule,
    sample_schedule: timing::Schedule,
    largest: Vec<UnitCalls>,
    ordinal: u64,
}

impl Accumulator {
    fn new(concurrency: u32, sample_concurrency: u32, sample_units: Option<u64>) -> Self {
        Accumulator {
            all: Tally::default(),
            sample: Tally::default(),
            sample_units,
            schedule: timing::Schedule::new(concurrency),
            sample_schedule: timing::Schedule::new(sample_concurrency),
            largest: Vec::new(),
            ordinal: 0,
        }
    }

    /// The next unit in run order.
    fn push(&mut self, key: &str, calls: u64, work_ms: f64) {
        self.ordinal += 1;
        let in_sample = self.sample_units.is_some_and(|n| self.ordinal <= n);
        for tally in std::iter::once(&mut self.all).chain(in_sample.then_some(&mut self.sample)) {
            tally.calls += calls;
            tally.work_ms += work_ms;
            tally.critical_ms = tally.critical_ms.max(work_ms);
        }
        self.schedule.push(work_ms);
        if in_sample {
            self.sample_schedule.push(work_ms);
        }
        if self.largest.len() < LARGEST || self.largest.last().is_some_and(|u| calls > u.calls) {
            self.largest.push(UnitCalls {
                unit: key.to_owned(),
                calls,
            });
            self.largest.sort_by_key(|u| std::cmp::Reverse(u.calls));
            self.largest.truncate(LARGEST);
        }
    }
}

/// Walks one unit through the plan: counts its step instances and renders the sample call of
/// every step that has none yet.
struct Walker<'a> {
    compiled: &'a Compiled,
    outputs: &'a HashMap<String, Value>,
    lookups: Option<&'a Value>,
    step_calls: &'a [StepCalls],
    lookup_refs: &'a [(String, String, String)],
    tables: &'a [(String, Vec<String>)],
    base: &'a str,
    personal: &'a Personal,
}

impl Walker<'_> {
    fn unit(
        &self,
        unit: &source::Unit,
        steps: &mut [StepVolume],
        samples: &mut [Option<SampleCall>],
    ) -> Tally {
        self.planned(unit, self.compiled.expand(unit), steps, samples)
    }

    /// [`unit`](Self::unit) over the step instances `planned` of the unit.
    fn planned(
        &self,
        unit: &source::Unit,
        planned: Vec<crate::plan::compiled::Planned<'_>>,
        steps: &mut [StepVolume],
        samples: &mut [Option<SampleCall>],
    ) -> Tally {
        let mut tally = Tally::default();
        for planned in planned {
            let i = planned.step;
            match self.compiled.when(&planned, self.outputs, self.lookups) {
                Ok(true) => {}
                Ok(false) => {
                    steps[i].skipped += 1;
                    continue;
                }
                Err(_) => {
                    steps[i].unevaluated += 1;
                    continue;
                }
            }
            steps[i].instances += 1;
            for (_, _, l) in &self.step_calls[i] {
                tally.calls += 1;
                tally.work_ms += l;
            }
            if samples[i].is_none() {
                let table = match self.lookups {
                    Some(v) => v.clone(),
                    None => sample::placeholder_lookups(self.lookup_refs, &planned, self.tables),
                };
                samples[i] = Some(sample::render(
                    self.compiled,
                    unit,
                    &planned,
                    self.outputs,
                    &table,
                    self.base,
                    self.personal,
                ));
            }
        }
        tally
    }
}

fn base_url(plan: &Plan, target: Option<&str>) -> String {
    match crate::target::Where::of(plan, target) {
        crate::target::Where::Embedded => "http://127.0.0.1:<port>/api".to_owned(),
        crate::target::Where::Url(url) => url.trim_end_matches('/').to_owned(),
    }
}

/// The estimate of a checked plan: the steps' calls, the extract read once, the calls counted,
/// what the figures assume, and the timing model over them.
fn estimate_plan(
    plan: &Plan,
    sources: &Sources,
    options: &Options,
    measured: Option<Measured>,
    lookups: Option<Value>,
    record: (u64, bool),
    catch_up: Option<Baseline>,
) -> anyhow::Result<Estimate> {
    let estimator = Estimator {
        plan,
        options,
        measured,
        record,
    };
    let action_steps = plan.action_steps();
    let base = base_url(plan, options.target.as_deref());
    // The tenant's time zone, its record, then each lookup: read once before the first unit.
    let lookup_calls = TENANT_READS.len() as u64 + record.0 + plan.settings.lookups.len() as u64;
    let step_calls = estimator.step_calls(&action_steps);
    let mut steps = step_volumes(&action_steps, &step_calls);
    let mut reading = estimator.read_units(
        sources,
        lookups.as_ref(),
        (&base, &step_calls),
        &mut steps,
        catch_up.as_ref(),
    )?;
    let (endpoints, bulks) = estimator.count_calls(&step_calls, &mut steps, &mut reading.acc);
    let assumptions = estimator.assumptions(&reading, &steps, lookup_calls, lookups.is_some());
    let timing = estimator.project_timing(&reading.acc);
    let total_calls = reading.acc.all.calls;
    let unit_calls = total_calls.saturating_sub(lookup_calls + bulk_calls(&steps));
    let savings = savings(&steps, &timing.projection, total_calls);
    Ok(Estimate {
        plan: options.plan.display().to_string(),
        plan_name: plan.name.clone(),
        base_url: base,
        sources: source_volumes(plan, reading.source_rows),
        units: reading.units,
        data_problems: reading.data_problems,
        lookup_calls,
        steps,
        endpoints,
        total_calls,
        largest_units: reading.acc.largest,
        samples: reading.samples.into_iter().flatten().collect(),
        timing,
        savings,
        bulks,
        catch_up: catch_up.map(|b| CatchUpEstimate {
            run_dir: b.run_dir.display().to_string(),
            phase: b.phase,
            counts: reading.catch_up.clone().unwrap_or_default(),
            unit_calls,
        }),
        assumptions,
    })
}

/// The calls of the bulk steps (counted per bulk, outside the units' tallies).
fn bulk_calls(steps: &[StepVolume]) -> u64 {
    steps
        .iter()
        .filter(|s| s.endpoints.iter().any(|e| e.ends_with(BULK_DEPOSITS.1)))
        .map(|s| s.calls)
        .sum()
}

/// A step's calls: (method, endpoint, latency in ms).
type StepCalls = Vec<(String, String, f64)>;

/// What [`estimate_plan`]'s stages share: the plan, the options, and what a sample run
/// measured (`--from-run`).
struct Estimator<'a> {
    plan: &'a Plan,
    options: &'a Options,
    measured: Option<Measured>,
    /// The calls that record the tenant, and whether they were counted on it.
    record: (u64, bool),
}

impl Estimator<'_> {
    /// The latency of `METHOD /path`, ms: as measured, else the sample run's mean, else
    /// `--latency-ms`.
    fn latency(&self, key: &str) -> f64 {
        self.measured
            .as_ref()
            .and_then(|m| m.latency_ms.get(key).copied().or(m.mean_latency_ms))
            .unwrap_or(self.options.latency_ms)
    }

    /// Calls per second: `--rate`, else the plan's limit.
    fn rate(&self) -> f64 {
        self.options
            .rate
            .unwrap_or(self.plan.settings.limits.requests_per_second)
    }

    /// Units at once: `--concurrency`, else the plan's limit; at least 1.
    fn concurrency(&self) -> u32 {
        self.options
            .concurrency
            .unwrap_or(self.plan.settings.limits.concurrency)
            .max(1)
    }

    /// Each step's calls with their latencies: a request step's own, another action's from
    /// its definition.
    fn step_calls(&self, action_steps: &[&ActionStep]) -> Vec<StepCalls> {
        action_steps
            .iter()
            .map(|s| {
                let calls: Vec<(String, String)> = match s.action {
                    Action::Request => vec![(
                        s.method.clone().unwrap_or_else(|| "GET".into()),
                        s.request_path.clone().unwrap_or_default(),
                    )],
                    a => a
                        .calls()
                        .iter()
                        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
                        .collect(),
                };
                calls
                    .into_iter()
                    .map(|(m, p)| {
                        let l = self.latency(&format!("{m} {p}"));
                        (m, p, l)
                    })
                    .collect()
            })
            .collect()
    }

    /// Reads the extract once: counts every step's instances, folds the units in run order
    /// into the timing model's tallies, and renders each step's sample call.
    fn read_units(
        &self,
        sources: &Sources,
        lookups: Option<&Value>,
        (base, step_calls): (&str, &[StepCalls]),
        steps: &mut [StepVolume],
        catch_up: Option<&Baseline>,
    ) -> anyhow::Result<Reading> {
        let plan = self.plan;
        let compiled = Compiled::new(plan);
        let outputs = compiled.placeholder_outputs();
        let personal = Personal::new(plan);
        let lookup_refs = sample::lookup_references(plan);
        let tables = crate::plan::refs::lookup_tables(plan);
        let walker = Walker {
            compiled: &compiled,
            outputs: &outputs,
            lookups,
            step_calls,
            lookup_refs: &lookup_refs,
            tables: &tables,
            base,
            personal: &personal,
        };
        let concurrency = self.concurrency();
        let acc = Accumulator::new(
            concurrency,
            self.measured
                .as_ref()
                .and_then(|m| m.concurrency)
                .unwrap_or(concurrency),
            self.measured.as_ref().map(|m| m.units),
        );
        let mut reading = Reading::new(step_calls.len(), acc);
        let step_work: Vec<(u32, f64)> = step_calls
            .iter()
            .map(|c| (c.len() as u32, c.iter().map(|(_, _, l)| l).sum()))
            .collect();
        if let Some(baseline) = catch_up {
            reading.count_catch_up(plan, baseline, sources, &walker, steps)?;
            return Ok(reading);
        }
        match fast::Analysis::new(plan, sources, &step_work) {
            Some(analysis) => {
                reading.count_in_one_pass(plan, &analysis, &walker, steps, self.options.progress)?
            }
            None => reading.count_by_grouping(sources, &walker, steps),
        }
        Ok(reading)
    }

    /// Adds the tenant's reads (one GET each, before the first unit) to the tallies, and counts the
    /// calls of every step and endpoint; the endpoints most called first.
    fn count_calls(
        &self,
        step_calls: &[StepCalls],
        steps: &mut [StepVolume],
        acc: &mut Accumulator,
    ) -> (Vec<EndpointVolume>, Vec<BulkCalls>) {
        let mut endpoints: BTreeMap<(String, String), (u64, f64)> = BTreeMap::new();
        let mut bulks = Vec::new();
        let reads = TENANT_READS
            .iter()
            .map(|p| p.to_string())
            .chain(self.plan.settings.lookups.values().map(|l| l.path.clone()));
        for path in reads {
            let l = self.latency(&format!("GET {path}"));
            let e = endpoints.entry(("GET".into(), path)).or_insert((0, l));
            e.0 += 1;
            for t in [&mut acc.all, &mut acc.sample] {
                t.calls += 1;
                t.work_ms += l;
            }
        }
        // The tenant's record (`validate::drift`): several endpoints, counted as one line.
        let (record, _) = self.record;
        if record > 0 {
            let l = self.latency(&format!("GET {}", crate::target::ORGANIZATION_SETUP));
            endpoints
                .entry(("GET".into(), RECORD_READS.into()))
                .or_insert((0, l))
                .0 += record;
            for t in [&mut acc.all, &mut acc.sample] {
                t.calls += record;
                t.work_ms += l * record as f64;
            }
        }
        let action_steps = self.plan.action_steps();
        for ((step, calls), action) in steps.iter_mut().zip(step_calls).zip(&action_steps) {
            if let Some(size) = action.bulk {
                // Its items go in bulks: a POST and a poll per bulk, not a call per item.
                let bulk = BulkCalls::of(&step.id, size as u64, step.instances);
                for (m, p) in [BULK_DEPOSITS, BULK_STATUS] {
                    let l = self.latency(&format!("{m} {p}"));
                    let e = endpoints.entry((m.into(), p.into())).or_insert((0, l));
                    e.0 += bulk.calls / 2;
                }
                acc.all.calls = acc.all.calls.saturating_sub(bulk.saved);
                step.calls = bulk.calls;
                // The step's endpoints are the bulk's, not the single deposit's.
                step.endpoints = [BULK_DEPOSITS, BULK_STATUS]
                    .iter()
                    .map(|(m, p)| format!("{m} {p}"))
                    .collect();
                bulks.push(bulk);
                continue;
            }
            step.calls = step.instances * step.calls_each;
            if step.instances == 0 && !action.on_change.is_empty() {
                // A catch-up's update that runs in no migration: no endpoint line of 0 calls.
                continue;
            }
            for (m, p, l) in calls {
                endpoints.entry((m.clone(), p.clone())).or_insert((0, *l)).0 += step.instances;
            }
        }
        let mut endpoints: Vec<EndpointVolume> = endpoints
            .into_iter()
            .map(|((method, endpoint), (calls, latency_ms))| EndpointVolume {
                method,
                endpoint,
                calls,
                latency_ms,
            })
            .collect();
        endpoints.sort_by_key(|p| std::cmp::Reverse(p.calls));
        (endpoints, bulks)
    }

    /// What the figures assume, said in the report beside them.
    fn assumptions(
        &self,
        reading: &Reading,
        steps: &[StepVolume],
        lookup_calls: u64,
        tenant_lookups: bool,
    ) -> Vec<String> {
        let (plan, options) = (self.plan, self.options);
        let (rate, concurrency) = (self.rate(), self.concurrency());
        let mut assumptions = vec![
            "A run without faults: every call succeeds on its first attempt, no unit fails (a failed unit skips its remaining steps, so faults make fewer calls, retries more).".to_owned(),
            format!("The tenant is read once before the first unit (its time zone, its configuration for the record of what the plan uses, then the lookups, a page of up to 1,000 items each): {lookup_calls} GET calls{}.", if self.record.1 { "" } else { ", the custom fields' definitions (one GET each) not counted: give --target to count them" }),
            "`when` conditions are evaluated on the real rows with placeholder outputs of earlier steps; a condition on a step's answer (steps.*) is therefore estimated, not known.".to_owned(),
            format!(
                "Duration = max(calls ÷ rate, calls × latency ÷ concurrency, the longest unit's calls × latency, the units laid out in run order on the concurrency slots after the lookups), at {rate} calls/s and {concurrency} units at once."
            ),
        ];
        match &self.measured {
            Some(m) => assumptions.push(format!(
                "Latency per endpoint, retry and throttle rates as measured in the sample run {} ({} units, {} attempts); endpoints it did not call use {:.0} ms.",
                m.run_dir,
                m.units,
                m.attempts,
                m.mean_latency_ms.unwrap_or(options.latency_ms)
            )),
            None => assumptions.push(format!(
                "Latency {:.0} ms per call (--latency-ms), no retries or throttling: measure them with a sample run and --from-run.",
                options.latency_ms
            )),
        }
        if plan
            .action_steps()
            .iter()
            .any(|s| s.action == crate::plan::action::Action::CloseLoan)
        {
            assumptions.push("close_loan counts one call; Mambu closes a loan repaid in full by itself, so a close after its payoff is refused and adopted by reading the loan: one more call per such loan.".into());
        }
        if tenant_lookups {
            assumptions.push("Sample calls use the tenant's lookups (--target).".into());
        } else if !plan.settings.lookups.is_empty() {
            assumptions.push("Sample calls show `<lookups.table[key]>` where the tenant's lookup value (an encodedKey) goes: give --target to read them.".into());
        }
        assumptions.push(reading.how_counted.to_owned());
        assumptions.push("Personal data (columns marked personal in the plan, or named like names, birth dates, email, phone, addresses, document ids) is masked in the sample calls: the first character of each word, the rest `*`.".into());
        let data_problems = reading.data_problems;
        if data_problems > 0 {
            assumptions.push(format!(
                "{data_problems} data problems left rows out (orphans, duplicates, unreadable rows): `mambu-migrate plan validate` lists them; the counts leave those rows out, as a run would."
            ));
        }
        if steps.iter().any(|s| s.unevaluated > 0) {
            assumptions.push("Some `when` conditions could not be evaluated without the tenant's lookups (column \"unevaluated\"): they are counted as no call; give --target.".into());
        }
        assumptions
    }

    /// The timing model ([`timing`]) over the tallies, with retries and throttling as
    /// measured; with `--from-run`, also applied to the sample's own units, to compare with
    /// what it took.
    fn project_timing(self, acc: &Accumulator) -> Timing {
        let (plan, options) = (self.plan, self.options);
        let (rate, concurrency) = (self.rate(), self.concurrency());
        let extra = self.measured.as_ref().map_or(0.0, Measured::extra_per_call);
        // Lookups run one after another before the first unit.
        let lookup_seconds: f64 = plan
            .settings
            .lookups
            .values()
            .map(|l| self.latency(&format!("GET {}", l.path)) / 1000.0)
            .sum();
        let input_of = |t: &Tally, s: &timing::Schedule| TimingInput {
            calls: t.calls as f64 * (1.0 + extra),
            work_ms: t.work_ms * (1.0 + extra),
            critical_ms: t.critical_ms * (1.0 + extra),
            rate,
            concurrency,
            schedule_seconds: Some((s.seconds() + lookup_seconds) * (1.0 + extra)),
        };
        let input = input_of(&acc.all, &acc.schedule);
        let projection = timing::project(&input);
        let window = options.window.map(|w| timing::fit(&input, &projection, w));
        let sample_projection = self.measured.as_ref().map(|m| {
            // The sample ran at its own rate and concurrency.
            let mut i = input_of(&acc.sample, &acc.sample_schedule);
            i.rate = m.rate.unwrap_or(rate);
            i.concurrency = m.concurrency.unwrap_or(concurrency);
            timing::project(&i)
        });
        let mean_latency_ms = if acc.all.calls > 0 {
            acc.all.work_ms / acc.all.calls as f64
        } else {
            options.latency_ms
        };
        Timing {
            rate,
            concurrency,
            mean_latency_ms,
            extra_attempts_per_call: extra,
            attempts: input.calls,
            projection,
            window,
            measured: self.measured,
            sample_projection,
        }
    }
}

/// Each step's volume row, before counting: what it calls, and for which source's rows.
fn step_volumes(action_steps: &[&ActionStep], step_calls: &[StepCalls]) -> Vec<StepVolume> {
    action_steps
        .iter()
        .zip(step_calls)
        .map(|(s, calls)| StepVolume {
            id: s.id.clone(),
            action: s.action.name().to_owned(),
            per: s.scope.last().cloned().unwrap_or_default(),
            // A catch-up's update runs when its columns changed.
            when: match (&s.when, s.on_change.is_empty()) {
                (when, true) => when.clone(),
                (None, false) => Some(format!("on_change: {}", s.on_change.join(", "))),
                (Some(when), false) => {
                    Some(format!("on_change: {}; {when}", s.on_change.join(", ")))
                }
            },
            instances: 0,
            skipped: 0,
            unevaluated: 0,
            calls_each: calls.len() as u64,
            calls: 0,
            endpoints: calls.iter().map(|(m, p, _)| format!("{m} {p}")).collect(),
        })
        .collect()
}

/// The rows read per source, with the file each was read from.
fn source_volumes(plan: &Plan, source_rows: Vec<(String, u64)>) -> Vec<SourceVolume> {
    let files: HashMap<&str, String> = plan
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.file.display().to_string()))
        .collect();
    source_rows
        .into_iter()
        .map(|(name, rows)| SourceVolume {
            file: files.get(name.as_str()).cloned().unwrap_or_default(),
            source: name,
            rows,
        })
        .collect()
}

/// What reading the extract found, beside the steps' counts.
struct Reading {
    /// (source, rows read), in the plan's order.
    source_rows: Vec<(String, u64)>,
    units: u64,
    data_problems: u64,
    /// How the units were counted, for the assumptions.
    how_counted: &'static str,
    /// Each step's sample call, from its first instance.
    samples: Vec<Option<SampleCall>>,
    acc: Accumulator,
    /// A catch-up's comparison.
    catch_up: Option<crate::checkpoint::PhaseCounts>,
}

impl Reading {
    fn new(steps: usize, acc: Accumulator) -> Self {
        Reading {
            source_rows: Vec::new(),
            units: 0,
            data_problems: 0,
            how_counted: "",
            samples: vec![None; steps],
            acc,
            catch_up: None,
        }
    }

    /// The fast count ([`fast`]): one pass over the files, without sorting them; the sample
    /// calls from the small extract of each step's first instance.
    fn count_in_one_pass(
        &mut self,
        plan: &Plan,
        analysis: &fast::Analysis,
        walker: &Walker,
        steps: &mut [StepVolume],
        progress: bool,
    ) -> anyhow::Result<()> {
        self.how_counted = "Counted in one pass over the files, without sorting them; the rows of sources that make no call (read only by `installments.from`) are counted, not checked: `plan validate` checks them.";
        let counted = fast::count(analysis, walker.outputs, walker.lookups, progress)?;
        for ((step, c), action) in steps
            .iter_mut()
            .zip(&counted.steps)
            .zip(plan.action_steps())
        {
            // A catch-up's update runs in no migration (`plan estimate --catch-up` counts it).
            let n = if action.on_change.is_empty() { 1 } else { 0 };
            step.instances = c[0] * n;
            step.skipped = c[1] * n;
            step.unevaluated = c[2] * n;
        }
        for &u in &counted.run_order {
            let i = u as usize;
            self.acc.push(
                counted.unit_key(u),
                u64::from(counted.unit_calls[i]),
                counted.unit_work[i],
            );
        }
        // The sample calls, from the small extract of each step's first instance.
        if let Some(mini) = counted
            .sample_dir
            .as_ref()
            .and_then(|_| Sources::new(counted.sample_sources.clone(), &plan.unit).ok())
        {
            let mut ignored = steps.to_vec();
            for unit in source::group(&mini, &GroupOptions::default()) {
                walker.unit(&unit, &mut ignored, &mut self.samples);
            }
        }
        self.source_rows = plan
            .sources
            .iter()
            .zip(&counted.rows)
            .map(|(s, r)| (s.name.clone(), *r))
            .collect();
        self.units = counted.units;
        self.data_problems = counted.data_problems;
        Ok(())
    }

    /// The catch-up's count: both extracts grouped and compared as the catch-up compares them
    /// ([`crate::catchup`]); only the units it sends are folded in, each with only the step
    /// instances it sends (not those the run's checkpoint holds, not held rows', updates only
    /// for rows whose columns changed).
    fn count_catch_up(
        &mut self,
        plan: &Plan,
        baseline: &Baseline,
        sources: &Sources,
        walker: &Walker,
        steps: &mut [StepVolume],
    ) -> anyhow::Result<()> {
        use crate::catchup::{Decision, Drift, Migrated, Verdict};
        use crate::checkpoint::StepStatus;
        self.how_counted = "Counted as a catch-up of the run: both extracts grouped and compared unit by unit, as `run --catch-up` compares them; a step the run's checkpoint holds is not counted.";
        let drift = Drift::new(plan);
        let mut counts = crate::checkpoint::PhaseCounts::default();
        let mut old = source::group(&baseline.sources, &GroupOptions::default());
        let mut new = source::group(sources, &GroupOptions::default());
        for compared in crate::catchup::diff::Merge::new(&mut old, &mut new) {
            // One read of the checkpoint per unit: no set of every unit in memory.
            let migrated = match baseline.reader.unit_status(&compared.key)?.as_deref() {
                Some("done") => Migrated::Done,
                Some("failed") => Migrated::Failed,
                _ => Migrated::No,
            };
            let units = (compared.old.as_ref(), compared.new.as_ref());
            let Verdict::Send(delta, _) =
                drift.classify(baseline.phase, &compared.key, units, migrated, &mut counts)
            else {
                continue;
            };
            let Some(unit) = compared.new else { continue };
            let saved = baseline.reader.unit_steps(&compared.key)?;
            let compiled = walker.compiled;
            let planned = compiled
                .expand_with(&unit, true)
                .into_iter()
                .filter(|p| {
                    let instance = crate::plan::ids::instance_id(compiled, p);
                    let instance = match delta.decide(compiled, p, &instance) {
                        Decision::Run => instance,
                        Decision::Update(update) => update,
                        Decision::Pass => return false,
                    };
                    saved
                        .get(&instance)
                        .is_none_or(|(status, _)| *status == StepStatus::Failed)
                })
                .collect();
            let t = walker.planned(&unit, planned, steps, &mut self.samples);
            self.acc.push(unit.key(), t.calls, t.work_ms);
            self.units += 1;
        }
        drop(old);
        let report = new.finish();
        self.source_rows = report
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.rows_read))
            .collect();
        self.data_problems = report.problems.len() as u64;
        self.catch_up = Some(counts);
        Ok(())
    }

    /// The slow count, for a `when` the fast one does not follow: every row grouped into its
    /// unit, as a run does.
    fn count_by_grouping(&mut self, sources: &Sources, walker: &Walker, steps: &mut [StepVolume]) {
        self.how_counted = "Counted by grouping every row into its unit, as a run does (a `when` reads two sources, a grandparent or `unit.key`, which the one-pass count does not follow): slower on a large extract.";
        let mut grouping = source::group(sources, &GroupOptions::default());
        for unit in grouping.by_ref() {
            let t = walker.unit(&unit, steps, &mut self.samples);
            self.acc.push(unit.key(), t.calls, t.work_ms);
        }
        let report = grouping.finish();
        self.source_rows = report
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.rows_read))
            .collect();
        self.units = report.units;
        self.data_problems = report.problems.len() as u64;
    }
}

/// Runs `plan estimate` and writes the report to stdout or `output` (owner-only).
pub fn run(
    options: &Options,
    format: Format,
    output: Option<&std::path::Path>,
) -> anyhow::Result<crate::ExitStatus> {
    let estimate = match estimate(options)? {
        Ok(e) => e,
        Err(Refused(problems)) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            eprintln!(
                "the plan has {} problems: `mambu-migrate plan validate {}` lists them with the data's",
                problems.len(),
                options.plan.display()
            );
            return Ok(crate::ExitStatus::InvalidInput);
        }
    };
    let text = match format {
        Format::Md => render::markdown(&estimate),
        Format::Json => render::json(&estimate) + "\n",
        Format::Html => render::html(&estimate),
    };
    match output {
        None => print!("{text}"),
        Some(path) => {
            crate::files::write_private(path, text.as_bytes())?;
            eprintln!(
                "wrote {} ({} calls, projected {})",
                path.display(),
                thousands(estimate.total_calls),
                timing::format_duration(estimate.timing.projection.seconds)
            );
        }
    }
    Ok(crate::ExitStatus::Success)
}
