//! `verify`: reconcile what Mambu holds against the source, through the plan's own mappings,
//! and leave a cutover evidence pack in the run directory.
//!
//! For every unit the run says is migrated (or a seeded sample of them), the entities are read
//! back through the same client: each client, deposit and loan (id, amount, product, state,
//! settlement account) and every loan's transactions (matched by externalId: present, type,
//! amount; none unexpected). Expected values are the run's own rendered bodies, re-rendered from
//! the source rows with the outputs the checkpoint saved. Control totals put the figures from the
//! CSVs beside those found in Mambu. The evidence pack is verify.md, verify.json, verify.html and
//! manifest.sha256 (hashes of the plan, every source, the checkpoint and the reports).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use crate::ExitStatus;
use crate::checkpoint::Reader;
use crate::mambu::{Expect, Keep, Quiet, Session};
use crate::plan::action::Action;
use crate::plan::check::check;
use crate::plan::compiled::Compiled;
use crate::plan::load::load;
use crate::source::{self, GroupOptions};

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
}

/// Sums and counts, expected and found, keyed by a total's name.
#[derive(Default)]
struct Tally {
    expected: BTreeMap<String, Decimal>,
    found: BTreeMap<String, Decimal>,
}

impl Tally {
    fn add(side: &mut BTreeMap<String, Decimal>, name: String, value: Decimal) {
        *side.entry(name).or_default() += value;
    }
    fn expect(&mut self, name: impl Into<String>, value: Decimal) {
        Self::add(&mut self.expected, name.into(), value);
    }
    fn find(&mut self, name: impl Into<String>, value: Decimal) {
        Self::add(&mut self.found, name.into(), value);
    }
    fn merge(&mut self, other: Tally) {
        for (name, value) in other.expected {
            Self::add(&mut self.expected, name, value);
        }
        for (name, value) in other.found {
            Self::add(&mut self.found, name, value);
        }
    }
}

fn number(v: Option<&Value>) -> Option<Decimal> {
    match v? {
        Value::Number(n) => n.to_string().parse().ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn show(v: Option<Decimal>) -> String {
    v.map(|d| d.normalize().to_string())
        .unwrap_or_else(|| "(none)".into())
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
    for attempt in attempts.iter().filter(|a| a.kind == "reload") {
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
    let plan_file = PathBuf::from(
        meta.get("plan_file")
            .context("the checkpoint does not name its plan")?,
    );
    let overrides: Vec<(String, PathBuf)> = meta
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix("source:")?.to_owned(),
                PathBuf::from(v.rsplit_once('|')?.0),
            ))
        })
        .collect();
    let problems = |p: Vec<crate::plan::load::PlanProblem>| {
        anyhow::anyhow!(
            "the run's plan {} has problems now: {}",
            plan_file.display(),
            p.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    let loaded = load(&plan_file).map_err(problems)?;
    let plan = check(&loaded, &overrides).map_err(problems)?;
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
    let target = options
        .target
        .clone()
        .or_else(|| meta.get("target").cloned())
        .unwrap_or_else(|| "sandbox".into());
    anyhow::ensure!(
        target != "sandbox",
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = runtime.block_on(async {
        let connection = crate::target::connect(
            &plan,
            &target,
            Duration::from_secs_f64(plan.settings.limits.timeout_seconds),
        )
        .await?;
        let session = Arc::new(connection.reader(&plan, Some(rate)));
        let lookups = Arc::new(crate::target::read_lookups(&session, &plan).await?);
        // Product encodedKeys shown as their ids, from the lookups.
        let names: Arc<HashMap<String, String>> = Arc::new(
            lookups
                .as_object()
                .into_iter()
                .flat_map(|tables| tables.values())
                .filter_map(Value::as_object)
                .flat_map(|t| {
                    t.iter()
                        .filter_map(|(k, v)| Some((v.as_str()?.to_owned(), k.clone())))
                })
                .collect(),
        );
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
            let checker = Checker::new(names.clone(), session.clone(), unit.key());
            let (lookups, plan_name) = (lookups.clone(), plan.name.clone());
            tasks.spawn(async move {
                let found = checker
                    .unit(&compiled, &unit, &saved, &lookups, &plan_name)
                    .await;
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
        let totals = tally
            .expected
            .keys()
            .chain(tally.found.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|name| {
                let (e, f) = (
                    tally.expected.get(name).copied().unwrap_or_default(),
                    tally.found.get(name).copied().unwrap_or_default(),
                );
                Total {
                    name: name.clone(),
                    expected: e.normalize().to_string(),
                    found: f.normalize().to_string(),
                    difference: (f - e).normalize().to_string(),
                }
            })
            .collect();
        anyhow::Ok(Report {
            run_dir: options.run_dir.display().to_string(),
            plan: plan_file.display().to_string(),
            target: target.clone(),
            units_migrated: migrated.len(),
            units_verified: verified,
            sample_seed: options
                .sample
                .filter(|n| *n < migrated.len())
                .map(|_| options.seed),
            totals,
            mismatches,
            manifest: Vec::new(),
            calls: session.attempts(),
        })
    })?;
    write_pack(
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

/// Checks one unit against what Mambu holds; many run at once, sharing the session.
struct Checker {
    names: Arc<HashMap<String, String>>,
    session: Arc<Session>,
    unit: String,
    mismatches: Vec<Mismatch>,
    tally: Tally,
}

/// What the check of one unit found.
struct Checked {
    mismatches: Vec<Mismatch>,
    tally: Tally,
}

/// What a unit's transactions on one loan should be: externalId → (type, amount).
type Expected = BTreeMap<String, (&'static str, Decimal)>;

/// One loan of a unit, as the run made it.
struct LoanCheck {
    key: String,
    entity: String,
    body: Value,
    state: &'static str,
    /// The settlement deposit's id or key, when linked.
    settlement: Option<String>,
    transactions: Expected,
}

impl Checker {
    fn new(names: Arc<HashMap<String, String>>, session: Arc<Session>, unit: &str) -> Self {
        Self {
            names,
            session,
            unit: unit.to_owned(),
            mismatches: Vec::new(),
            tally: Tally::default(),
        }
    }

    /// Reads `path` back through the session's policy: `None` when Mambu says it does not
    /// exist; one that cannot be read is a mismatch of its own (never taken for "missing").
    async fn get(&mut self, path: &str) -> Option<Value> {
        match self
            .session
            .read(path, Expect::Any, Keep::All, &mut Quiet)
            .await
        {
            Ok(found) => found.map(|answer| answer.body),
            Err(e) => {
                let unit = self.unit.clone();
                self.mismatch(&unit, path, "readable", "an answer", e);
                None
            }
        }
    }

    /// Every item of the list at `path`, page by page.
    async fn list(&mut self, path: &str) -> Vec<Value> {
        match self.session.list(path, &mut Quiet).await {
            Ok(items) => items,
            Err(e) => {
                let unit = self.unit.clone();
                self.mismatch(&unit, path, "readable", "an answer", e);
                Vec::new()
            }
        }
    }

    fn product_name(&self, body: &Value) -> String {
        let key = body
            .get("productTypeKey")
            .and_then(Value::as_str)
            .unwrap_or("");
        self.names
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_owned())
    }

    fn branch_name(&self, key: Option<&Value>) -> Option<String> {
        let key = key?.as_str()?;
        Some(
            self.names
                .get(key)
                .cloned()
                .unwrap_or_else(|| key.to_owned()),
        )
    }

    fn mismatch(
        &mut self,
        unit: &str,
        entity: &str,
        field: &str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.mismatches.push(Mismatch {
            unit: unit.to_owned(),
            entity: entity.to_owned(),
            field: field.to_owned(),
            expected: expected.into(),
            found: found.into(),
        });
    }

    async fn unit(
        mut self,
        compiled: &Compiled,
        unit: &source::Unit,
        saved: &HashMap<String, (String, Value)>,
        lookups: &Value,
        plan_name: &str,
    ) -> Checked {
        let key = unit.key().to_owned();
        let mut outputs: HashMap<String, Value> = HashMap::new();
        let mut loans: Vec<LoanCheck> = Vec::new();
        for planned in compiled.expand(unit) {
            let step = compiled.step(planned.step);
            let instance = format!("{}#{}", planned.instance(), step.id);
            let Some((status, out)) = saved.get(&instance) else {
                continue;
            };
            if status == "skipped" {
                continue;
            }
            outputs.insert(step.id.clone(), out.clone());
            let Ok(call) = compiled.render(unit, &planned, &outputs, Some(lookups)) else {
                continue;
            };
            let row = planned.row();
            let entity = format!(
                "{} {}",
                row.schema().name().trim_end_matches('s'),
                row.key()
            );
            let encoded = out
                .get("encodedKey")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let body = call.body.clone().unwrap_or(Value::Null);
            match step.action {
                Action::CreateClient => {
                    self.tally.expect("clients", Decimal::ONE);
                    let branch = self.branch_name(body.get("assignedBranchKey"));
                    if let Some(branch) = &branch {
                        self.tally
                            .expect(format!("clients of branch {branch}"), Decimal::ONE);
                    }
                    match self.get(&format!("/clients/{encoded}")).await {
                        None => self.mismatch(&key, &entity, "exists", "yes", "no"),
                        Some(found) => {
                            self.tally.find("clients", Decimal::ONE);
                            if let Some(branch) = self.branch_name(found.get("assignedBranchKey")) {
                                self.tally
                                    .find(format!("clients of branch {branch}"), Decimal::ONE);
                            }
                            if let Some(id) = body.get("id").and_then(Value::as_str)
                                && found.get("id").and_then(Value::as_str) != Some(id)
                            {
                                self.mismatch(
                                    &key,
                                    &entity,
                                    "id",
                                    id,
                                    found.get("id").and_then(Value::as_str).unwrap_or("(none)"),
                                );
                            }
                        }
                    }
                }
                Action::CreateDeposit => {
                    self.tally.expect("deposits", Decimal::ONE);
                    match self.get(&format!("/deposits/{encoded}")).await {
                        None => self.mismatch(&key, &entity, "exists", "yes", "no"),
                        Some(_) => self.tally.find("deposits", Decimal::ONE),
                    }
                }
                Action::CreateLoan => {
                    let amount = number(body.get("loanAmount")).unwrap_or_default();
                    let product = self.product_name(&body);
                    self.tally.expect("loans", Decimal::ONE);
                    self.tally.expect("loan amounts", amount);
                    self.tally
                        .expect(format!("loans of product {product}"), Decimal::ONE);
                    self.tally
                        .expect(format!("loan amounts of product {product}"), amount);
                    loans.push(LoanCheck {
                        key: encoded.clone(),
                        entity: entity.clone(),
                        body: body.clone(),
                        state: "PENDING_APPROVAL",
                        settlement: None,
                        transactions: Expected::new(),
                    });
                }
                Action::ApproveLoan => {
                    if let Some(loan) = loans.iter_mut().find(|l| l.key == encoded_of(&call.path)) {
                        loan.state = "APPROVED";
                    }
                }
                Action::LinkSettlementAccount => {
                    if let Some(loan) = loans.iter_mut().find(|l| l.key == encoded_of(&call.path)) {
                        loan.settlement = call.path.rsplit('/').next().map(str::to_owned);
                    }
                }
                Action::DisburseLoan | Action::ApplyFee | Action::PostRepayment => {
                    let loan_key = encoded_of(&call.path);
                    let external = body
                        .get("externalId")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| crate::run::external_id(plan_name, &key, &instance));
                    let (kind, total) = match step.action {
                        Action::DisburseLoan => ("DISBURSEMENT", "disbursed amounts"),
                        Action::ApplyFee => ("FEE_APPLIED", "fee amounts"),
                        _ => ("REPAYMENT", "repayment amounts"),
                    };
                    if let Some(loan) = loans.iter_mut().find(|l| l.key == loan_key) {
                        let amount = number(body.get("amount"))
                            .or_else(|| {
                                (kind == "DISBURSEMENT")
                                    .then(|| number(loan.body.get("loanAmount")))
                                    .flatten()
                            })
                            .unwrap_or_default();
                        loan.transactions.insert(external, (kind, amount));
                        if kind == "DISBURSEMENT" {
                            loan.state = "ACTIVE";
                        }
                        self.tally.expect(total, amount);
                        self.tally.expect(
                            format!("{} transactions", kind.to_lowercase()),
                            Decimal::ONE,
                        );
                    }
                }
                _ => {}
            }
        }
        for LoanCheck {
            key: encoded,
            entity,
            body,
            state,
            settlement,
            transactions: expected,
        } in loans
        {
            let Some(found) = self.get(&format!("/loans/{encoded}")).await else {
                self.mismatch(&key, &entity, "exists", "yes", "no");
                continue;
            };
            let product = self.product_name(&body);
            let amount = number(found.get("loanAmount"));
            self.tally.find("loans", Decimal::ONE);
            self.tally.find("loan amounts", amount.unwrap_or_default());
            self.tally
                .find(format!("loans of product {product}"), Decimal::ONE);
            self.tally.find(
                format!("loan amounts of product {product}"),
                amount.unwrap_or_default(),
            );
            if amount != number(body.get("loanAmount")) {
                self.mismatch(
                    &key,
                    &entity,
                    "loanAmount",
                    show(number(body.get("loanAmount"))),
                    show(amount),
                );
            }
            let found_state = found
                .get("accountState")
                .and_then(Value::as_str)
                .unwrap_or("(none)")
                .to_owned();
            // A disbursed loan may since have been repaid in full.
            let group = |s: &str| {
                if matches!(s, "ACTIVE" | "ACTIVE_IN_ARREARS" | "CLOSED") {
                    "loans disbursed (ACTIVE or CLOSED)".to_owned()
                } else {
                    format!("loans {s}")
                }
            };
            self.tally.expect(group(state), Decimal::ONE);
            self.tally.find(group(&found_state), Decimal::ONE);
            let state_ok = if state == "ACTIVE" {
                matches!(
                    found_state.as_str(),
                    "ACTIVE" | "ACTIVE_IN_ARREARS" | "CLOSED"
                )
            } else {
                found_state == state
            };
            if !state_ok {
                self.mismatch(&key, &entity, "accountState", state, found_state);
            }
            if let Some(deposit) = settlement
                && let Some(d) = self.get(&format!("/deposits/{deposit}")).await
                && found.get("settlementAccountKey") != d.get("encodedKey")
            {
                self.mismatch(
                    &key,
                    &entity,
                    "settlementAccountKey",
                    d.get("encodedKey").and_then(Value::as_str).unwrap_or(""),
                    found
                        .get("settlementAccountKey")
                        .and_then(Value::as_str)
                        .unwrap_or("(none)"),
                );
            }
            let transactions = self.list(&format!("/loans/{encoded}/transactions")).await;
            let mut seen = HashSet::new();
            for t in &transactions {
                let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
                let amount = number(t.get("amount")).unwrap_or_default();
                let total = match kind {
                    "DISBURSEMENT" => "disbursed amounts",
                    "FEE_APPLIED" => "fee amounts",
                    "REPAYMENT" => "repayment amounts",
                    _ => continue,
                };
                self.tally.find(total, amount);
                self.tally.find(
                    format!("{} transactions", kind.to_lowercase()),
                    Decimal::ONE,
                );
                let external = t
                    .get("externalId")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                match expected.get(&external) {
                    Some((want_kind, want_amount)) => {
                        seen.insert(external.clone());
                        if *want_kind != kind {
                            self.mismatch(
                                &key,
                                &format!("transaction {external}"),
                                "type",
                                *want_kind,
                                kind,
                            );
                        }
                        if *want_amount != amount {
                            self.mismatch(
                                &key,
                                &format!("transaction {external}"),
                                "amount",
                                show(Some(*want_amount)),
                                show(Some(amount)),
                            );
                        }
                    }
                    None => self.mismatch(
                        &key,
                        &format!(
                            "transaction {}",
                            if external.is_empty() {
                                "(no externalId)"
                            } else {
                                &external
                            }
                        ),
                        "exists",
                        "no (not in the source)",
                        format!("{kind} {}", show(Some(amount))),
                    ),
                }
            }
            for (external, (kind, amount)) in &expected {
                if !seen.contains(external) {
                    self.mismatch(
                        &key,
                        &format!("transaction {external}"),
                        "exists",
                        format!("{kind} {}", show(Some(*amount))),
                        "no",
                    );
                }
            }
        }
        Checked {
            mismatches: self.mismatches,
            tally: self.tally,
        }
    }
}

/// The loan (or deposit) id in a call's path: `/loans/{key}/...` or `/loans/{key}:changeState`.
fn encoded_of(path: &str) -> String {
    let segment = path.split('/').nth(2).unwrap_or("");
    segment.split(':').next().unwrap_or(segment).to_owned()
}

/// manifest.sha256 (the plan, every source, the checkpoint, the run's reports, then the
/// verification's own files) and verify.md, verify.json, verify.html.
fn write_pack(
    run_dir: &Path,
    plan: &Path,
    sources: &[PathBuf],
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut inputs: Vec<PathBuf> = vec![plan.to_owned()];
    inputs.extend(sources.iter().cloned());
    for name in ["checkpoint.db", "report.md", "report.json", "errors.csv"] {
        inputs.push(run_dir.join(name));
    }
    for file in inputs.iter().filter(|f| f.exists()) {
        report
            .manifest
            .push((file.display().to_string(), crate::files::sha256_file(file)?));
    }
    crate::files::write_private(&run_dir.join("verify.md"), render_md(report).as_bytes())?;
    crate::files::write_private(
        &run_dir.join("verify.json"),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    crate::files::write_private(&run_dir.join("verify.html"), render_html(report).as_bytes())?;
    let mut manifest = String::new();
    for (file, hash) in &report.manifest {
        let _ = writeln!(manifest, "{hash}  {file}");
    }
    for name in ["verify.md", "verify.json", "verify.html"] {
        let path = run_dir.join(name);
        let _ = writeln!(
            manifest,
            "{}  {}",
            crate::files::sha256_file(&path)?,
            path.display()
        );
    }
    crate::files::write_private(&run_dir.join("manifest.sha256"), manifest.as_bytes())
}

/// The Markdown evidence.
pub fn render_md(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Verification of {}\n", report.run_dir);
    let _ = writeln!(out, "Plan `{}`, target `{}`.", report.plan, report.target);
    let _ = writeln!(
        out,
        "{} units migrated; {} verified{}; {} read calls.\n",
        report.units_migrated,
        report.units_verified,
        report
            .sample_seed
            .map(|s| format!(" (a random sample, seed {s})"))
            .unwrap_or_default(),
        report.calls
    );
    let _ = writeln!(
        out,
        "**{}**\n",
        if report.mismatches.is_empty() {
            "Everything matches.".to_owned()
        } else {
            format!("{} mismatches.", report.mismatches.len())
        }
    );
    let _ = writeln!(
        out,
        "## Control totals\n\n| total | expected (source) | found (Mambu) | difference |\n|---|---:|---:|---:|"
    );
    for t in &report.totals {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            t.name, t.expected, t.found, t.difference
        );
    }
    let _ = writeln!(out, "\n## Mismatches\n");
    if report.mismatches.is_empty() {
        let _ = writeln!(out, "None.");
    } else {
        let _ = writeln!(
            out,
            "| unit | entity | field | expected | found |\n|---|---|---|---|---|"
        );
        for m in &report.mismatches {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                m.unit, m.entity, m.field, m.expected, m.found
            );
        }
    }
    let _ = writeln!(
        out,
        "\n## Evidence\n\nSHA-256 of every file this verification covers (also in manifest.sha256):\n"
    );
    for (file, hash) in &report.manifest {
        let _ = writeln!(out, "- `{hash}` {file}");
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn render_html(report: &Report) -> String {
    let rows = |cells: &[&str]| {
        cells
            .iter()
            .map(|c| format!("<td>{}</td>", escape(c)))
            .collect::<String>()
    };
    let totals: String = report
        .totals
        .iter()
        .map(|t| {
            format!(
                "<tr>{}</tr>",
                rows(&[&t.name, &t.expected, &t.found, &t.difference])
            )
        })
        .collect();
    let mismatches: String = report
        .mismatches
        .iter()
        .map(|m| {
            format!(
                "<tr>{}</tr>",
                rows(&[&m.unit, &m.entity, &m.field, &m.expected, &m.found])
            )
        })
        .collect();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Verification</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}.ok{{color:#060}}.bad{{color:#a00}}</style></head><body><h1>Verification of {}</h1><p>{} units migrated, {} verified.</p><p class=\"{}\"><b>{}</b></p><h2>Control totals</h2><table><tr><th>total</th><th>expected</th><th>found</th><th>difference</th></tr>{totals}</table><h2>Mismatches</h2><table><tr><th>unit</th><th>entity</th><th>field</th><th>expected</th><th>found</th></tr>{mismatches}</table></body></html>\n",
        escape(&report.run_dir),
        report.units_migrated,
        report.units_verified,
        if report.mismatches.is_empty() {
            "ok"
        } else {
            "bad"
        },
        if report.mismatches.is_empty() {
            "Everything matches.".to_owned()
        } else {
            format!("{} mismatches.", report.mismatches.len())
        }
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_out_of_paths() {
        assert_eq!(encoded_of("/loans/abc:changeState"), "abc");
        assert_eq!(encoded_of("/loans/abc/repayment-transactions"), "abc");
        assert_eq!(encoded_of("/loans/abc/settlementAccounts/d1"), "abc");
    }
}
