//! `plan validate`: every problem in the plan, its data and (with `--target`) against the
//! tenant's configuration, found before a single call changes anything, each located.
//!
//! Plan problems come from [`crate::plan`], data problems from [`crate::source`] plus the
//! plan's column rules, tenant problems from reading the plan's lookups and products through
//! the API.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use crate::plan::action::Action;
use crate::plan::check::{Plan, check_all};
use crate::plan::compiled::Compiled;
use crate::plan::load::{PlanProblem, load_lenient};
use crate::plan::refs;
use crate::plan::template::Memo;
use crate::source::{self, GroupOptions, Sources};

mod custom_fields;
pub mod drift;
mod tenant;

use tenant::{At, Book, FourEyes, Tenant, read_tenant};

/// What to validate.
#[derive(Debug, Clone)]
pub struct Options {
    pub plan: PathBuf,
    /// `--source NAME=PATH` overrides.
    pub sources: Vec<(String, PathBuf)>,
    /// `--target sandbox|URL`: also check against the tenant's configuration.
    pub target: Option<String>,
    /// `--tenant-record FILE`: where the tenant's record is (see [`drift`]).
    pub tenant_record: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Plan,
    Data,
    Tenant,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plan => "plan",
            Kind::Data => "data",
            Kind::Tenant => "tenant",
        }
    }
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    /// The plan or the CSV file (or the tenant's URL).
    pub file: String,
    /// 1-based; in a CSV file, the line where the record starts (the header is line 1).
    pub line: Option<u64>,
    /// In the plan file, 1-based.
    pub column: Option<u64>,
    /// In a CSV file, the column's name.
    pub field: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    /// Said, but not a problem: `plan validate` passes with it (a tenant changed since its
    /// record, [`drift`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
}

impl Finding {
    fn new(
        kind: Kind,
        file: impl Into<String>,
        line: Option<u64>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        Finding {
            kind,
            file: file.into(),
            line,
            column: None,
            field: None,
            message: message.into(),
            hint,
            warning: false,
        }
    }

    fn in_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }

    /// `file:line:column` in the plan, `file:line, column name` in data.
    pub fn location(&self) -> String {
        let mut out = self.file.clone();
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
        }
        if let Some(column) = self.column {
            out.push_str(&format!(":{column}"));
        }
        if let Some(field) = &self.field {
            out.push_str(&format!(", column {field}"));
        }
        out
    }
}

/// Rows read from one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRows {
    pub source: String,
    pub file: String,
    pub rows: u64,
}

/// The whole answer of `plan validate`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub plan: String,
    pub findings: Vec<Finding>,
    pub sources: Vec<SourceRows>,
    pub units: u64,
    /// Findings of one kind beyond the listing cap, counted only.
    pub unlisted: BTreeMap<String, u64>,
}

/// Findings listed per (kind, source, column, rule); the rest are counted.
const LISTED_PER_RULE: u64 = 50;

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.iter().all(|f| f.warning) && self.unlisted.values().all(|n| *n == 0)
    }

    fn count(&self, kind: Kind) -> u64 {
        self.findings
            .iter()
            .filter(|f| f.kind == kind && !f.warning)
            .count() as u64
            + self
                .unlisted
                .iter()
                .filter(|(k, _)| k.starts_with(kind.name()))
                .map(|(_, n)| n)
                .sum::<u64>()
    }

    /// The terminal report: every finding, then a one-screen summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{}[{}] {}: {}",
                if f.warning { "warning" } else { "error" },
                f.kind.name(),
                f.location(),
                f.message
            );
            if let Some(hint) = &f.hint {
                let _ = writeln!(out, "  help: {hint}");
            }
        }
        for (what, n) in &self.unlisted {
            if *n > 0 {
                let _ = writeln!(out, "error[{}] ... and {n} more like these", what);
            }
        }
        if !self.findings.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "Summary of {}", self.plan);
        let width = self
            .sources
            .iter()
            .map(|s| s.source.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(out, "  {:<width$}  {:>10}  file", "source", "rows");
        for s in &self.sources {
            let _ = writeln!(out, "  {:<width$}  {:>10}  {}", s.source, s.rows, s.file);
        }
        let _ = writeln!(out, "  units: {}", self.units);
        let (plan, data, tenant) = (
            self.count(Kind::Plan),
            self.count(Kind::Data),
            self.count(Kind::Tenant),
        );
        let _ = writeln!(
            out,
            "  problems: {plan} in the plan, {data} in the data, {tenant} against the tenant"
        );
        let warnings = self.findings.iter().filter(|f| f.warning).count();
        if warnings > 0 {
            let _ = writeln!(
                out,
                "  warnings: {warnings} (the tenant changed since it was recorded)"
            );
        }
        if self.is_clean() {
            let _ = writeln!(out, "OK: no problem found.");
        } else {
            let _ = writeln!(
                out,
                "FAILED: {} problems. Fix them and run `plan validate` again.",
                plan + data + tenant
            );
        }
        out
    }
}

fn plan_finding(p: &PlanProblem) -> Finding {
    let path = if p.path.is_empty() {
        String::new()
    } else {
        format!(" (at {})", p.path)
    };
    Finding {
        kind: Kind::Plan,
        file: p.file.display().to_string(),
        line: Some(p.at.line as u64),
        column: Some(p.at.column as u64),
        field: None,
        message: format!("{}{path}", p.message),
        hint: p.hint.clone(),
        warning: false,
    }
}

/// Collects findings, capping repeats of one rule.
#[derive(Default)]
struct Findings {
    list: Vec<Finding>,
    per_rule: HashMap<String, u64>,
    unlisted: BTreeMap<String, u64>,
}

impl Findings {
    fn push_capped(&mut self, rule: String, finding: Finding) {
        let n = self.per_rule.entry(rule.clone()).or_default();
        *n += 1;
        if *n <= LISTED_PER_RULE {
            self.list.push(finding);
        } else {
            *self.unlisted.entry(rule).or_default() += 1;
        }
    }
}

/// Runs every check.
pub fn validate(options: &Options) -> Report {
    let mut findings = Findings::default();
    let plan_name = options.plan.display().to_string();
    let (loaded, problems) = load_lenient(&options.plan);
    findings.list.extend(problems.iter().map(plan_finding));
    let Some(loaded) = loaded else {
        return Report {
            plan: plan_name,
            findings: findings.list,
            sources: Vec::new(),
            units: 0,
            unlisted: BTreeMap::new(),
        };
    };
    let (plan, problems) = check_all(&loaded, &options.sources);
    findings.list.extend(problems.iter().map(plan_finding));
    // Request POSTs a lost reply could make twice (an error: a cutover is not retried by hand),
    // and bulk deposits that could not be found again or carry dates the endpoint refuses.
    for (path, message, hint) in plan
        .unsafe_requests()
        .into_iter()
        .chain(plan.bulk_problems())
    {
        findings
            .list
            .push(plan_finding(&loaded.problem(&path, message, Some(hint))));
    }
    findings
        .list
        .extend(custom_fields::plan_problems(&plan, &loaded));

    let sources = match Sources::new(plan.sources.clone(), &plan.unit) {
        Ok(s) => s,
        Err(problems) => {
            findings.list.extend(problems.iter().map(|p| {
                Finding::new(
                    Kind::Plan,
                    loaded.file.display().to_string(),
                    None,
                    p.to_string(),
                    None,
                )
            }));
            return Report {
                plan: plan_name,
                findings: findings.list,
                sources: Vec::new(),
                units: 0,
                unlisted: findings.unlisted,
            };
        }
    };
    let tenant = options
        .target
        .as_deref()
        .map(|t| read_tenant(&plan, t, &mut findings));
    if let Some(tenant) = &tenant {
        findings.list.extend(drift::validate(
            &plan,
            tenant,
            options.tenant_record.as_deref(),
        ));
    }
    let lookup_refs = refs::lookup_references(&plan);
    let mapped = custom_fields::Mapped::new(&plan);
    if let Some(definitions) = tenant.as_ref().and_then(|t| t.custom_fields.as_ref()) {
        findings
            .list
            .extend(mapped.tenant_problems(&plan, &loaded, definitions));
    }

    let mut grouping = source::group(&sources, &GroupOptions::default());
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for def in &plan.sources {
        if let Some(schema) = grouping.schema(&def.name) {
            headers.insert(def.name.clone(), schema.header().names().to_vec());
        }
    }
    for p in refs::check_references(&plan, &headers) {
        findings
            .list
            .push(plan_finding(&loaded.problem(&p.path, p.message, p.hint)));
    }

    let mut compiled = Compiled::new(&plan);
    if tenant.is_some() {
        // The tenant's checks read these fields of the calls: only these are rendered.
        compiled.keep_fields(&[tenant::FIELDS, custom_fields::FIELDS].concat());
    }
    // Bad cells are all found while the files are read, before the first unit.
    let mut bad_cells: HashMap<String, HashSet<u64>> = HashMap::new();
    for p in grouping.problems() {
        if let (source::ProblemKind::BadCell { .. }, Some(line)) = (&p.kind, p.line) {
            bad_cells.entry(p.source.clone()).or_default().insert(line);
        }
    }
    let placeholders = compiled.placeholder_outputs();
    let lookups = tenant.as_ref().map(Tenant::lookups_value);
    let units = UnitCheck {
        plan: &plan,
        compiled: &compiled,
        lookup_refs: &lookup_refs,
        tenant: tenant.as_ref(),
        placeholders: &placeholders,
        lookups: lookups.as_ref(),
        bad_cells: &bad_cells,
        mapped: &mapped,
    };
    // Reading and sorting on one thread, rendering on the others; findings are taken in unit
    // order, so the report is the same as with one thread.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Units go in batches: one handover per unit cost more than rendering a small unit.
    const BATCH: usize = 64;
    let (unit_tx, unit_rx) = std::sync::mpsc::sync_channel::<(u64, Vec<source::Unit>)>(8);
    let unit_rx = std::sync::Mutex::new(unit_rx);
    let (found_tx, found_rx) = std::sync::mpsc::sync_channel::<(u64, Found)>(8);
    let mut four_eyes: BTreeMap<String, FourEyes> = BTreeMap::new();
    std::thread::scope(|scope| {
        let grouping = &mut grouping;
        scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let mut ordinal = 0u64;
            for unit in grouping.by_ref() {
                batch.push(unit);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if unit_tx.send((ordinal, full)).is_err() {
                        return;
                    }
                    ordinal += 1;
                }
            }
            if !batch.is_empty() {
                let _ = unit_tx.send((ordinal, batch));
            }
        });
        for _ in 0..workers {
            let (unit_rx, found_tx, units) = (&unit_rx, found_tx.clone(), &units);
            scope.spawn(move || {
                // Each thread remembers template outcomes by the cells they read.
                let mut memo = Memo::new();
                loop {
                    let next = unit_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((ordinal, batch))) = next else {
                        break;
                    };
                    let mut found = Found::default();
                    for unit in &batch {
                        check_unit(units, unit, &mut found, &mut memo);
                    }
                    if found_tx.send((ordinal, found)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(found_tx);
        let mut waiting: BTreeMap<u64, Found> = BTreeMap::new();
        let mut next = 0u64;
        for (ordinal, found) in found_rx {
            waiting.insert(ordinal, found);
            while let Some(found) = waiting.remove(&next) {
                for (rule, finding) in found.list {
                    findings.push_capped(rule, finding);
                }
                for (step, later) in found.four_eyes {
                    match four_eyes.get_mut(&step) {
                        Some(first) => first.merge(later),
                        None => {
                            four_eyes.insert(step, later);
                        }
                    }
                }
                next += 1;
            }
        }
    });
    // One finding per approve_loan step, at the step in the plan.
    for (step, approvals) in &four_eyes {
        let at = loaded.problem(&approvals.path, "", None).at;
        findings.list.push(approvals.finding(
            step,
            (
                loaded.file.display().to_string(),
                at.line as u64,
                at.column as u64,
            ),
        ));
    }
    let report = grouping.finish();
    for p in &report.problems {
        let message = p.to_string();
        let message = message
            .split_once(&format!("{}: ", p.source))
            .map(|(_, m)| m.to_owned())
            .unwrap_or(message);
        let finding = match &p.file {
            Some(f) => Finding::new(
                Kind::Data,
                f.display().to_string(),
                p.line,
                format!("{}: {message}", p.source),
                None,
            ),
            None => Finding::new(
                Kind::Plan,
                loaded.file.display().to_string(),
                None,
                format!("source {}: {message}", p.source),
                None,
            ),
        };
        findings.list.push(finding);
    }
    // The plan's problems first, in file order; then the others found at a place in the plan
    // file; then the data's, file by file, line by line. (Where the plan file sits on disk does
    // not change the order: its findings come first wherever it is.)
    let plan_file = loaded.file.display().to_string();
    findings.list.sort_by(|a, b| {
        (
            a.kind != Kind::Plan,
            a.file != plan_file,
            &a.file,
            a.line,
            a.column,
        )
            .cmp(&(
                b.kind != Kind::Plan,
                b.file != plan_file,
                &b.file,
                b.line,
                b.column,
            ))
    });
    let files: HashMap<&str, &Path> = plan
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.file.as_path()))
        .collect();
    Report {
        plan: plan_name,
        findings: findings.list,
        sources: report
            .sources
            .iter()
            .map(|s| SourceRows {
                source: s.name.clone(),
                file: files
                    .get(s.name.as_str())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                rows: s.rows_read,
            })
            .collect(),
        units: report.units,
        unlisted: findings.unlisted,
    }
}

/// Findings of one unit (or batch), with the rule each counts against; and what is reported
/// once per step rather than per row, counted.
#[derive(Default)]
struct Found {
    list: Vec<(String, Finding)>,
    /// Per approve_loan step id.
    four_eyes: BTreeMap<String, FourEyes>,
}

impl Found {
    fn push(&mut self, rule: String, finding: Finding) {
        self.list.push((rule, finding));
    }
}

/// What checking a unit needs, shared by the rendering threads.
struct UnitCheck<'a> {
    plan: &'a Plan,
    compiled: &'a Compiled,
    lookup_refs: &'a BTreeSet<(String, String, String)>,
    tenant: Option<&'a Tenant>,
    placeholders: &'a HashMap<String, Value>,
    lookups: Option<&'a Value>,
    /// Rows whose cells were reported while the files were read.
    bad_cells: &'a HashMap<String, HashSet<u64>>,
    /// The create steps' custom field sets, for the tenant's definitions.
    mapped: &'a custom_fields::Mapped,
}

/// The rules on every row of the unit, then every call rendered.
fn check_unit(units: &UnitCheck<'_>, unit: &source::Unit, out: &mut Found, memo: &mut Memo) {
    let UnitCheck {
        plan,
        lookup_refs,
        tenant,
        bad_cells,
        ..
    } = *units;
    // Rows already reported: rendering them would say the same again.
    let mut flagged: HashSet<(String, u64)> = HashSet::new();
    for def in &plan.sources {
        let Some(records) = unit.rows(&def.name) else {
            continue;
        };
        let rules = plan.rules.get(&def.name);
        let refs: Vec<&(String, String, String)> = lookup_refs
            .iter()
            .filter(|(_, s, _)| *s == def.name)
            .collect();
        if rules.is_none() && (refs.is_empty() || tenant.is_none()) {
            continue;
        }
        // Columns found once per source, not once per row.
        let header = records.schema().header();
        let rules: Vec<_> = rules
            .into_iter()
            .flatten()
            .filter_map(|(column, rule)| Some((column, rule, header.position(column)?)))
            .collect();
        for record in records.iter() {
            let file = || record.schema().file().display().to_string();
            for &(column, rule, index) in &rules {
                let Some(raw) = record.row().get(index) else {
                    continue;
                };
                if rule.required && raw.trim().is_empty() {
                    flagged.insert((def.name.clone(), record.line()));
                    out.push(
                        format!("data {} {column} required", def.name),
                        Finding::new(
                            Kind::Data,
                            file(),
                            Some(record.line()),
                            "a required value is empty",
                            Some(format!(
                                "fill {column} in {} {}, or mark the column not required",
                                def.name,
                                record.key()
                            )),
                        )
                        .in_field(column),
                    );
                }
                if rule.positive {
                    let below = match record.value(column) {
                        Some(Ok(source::Value::Decimal(d))) => d <= Decimal::ZERO,
                        Some(Ok(source::Value::Int(i))) => i <= 0,
                        _ => false,
                    };
                    if below {
                        flagged.insert((def.name.clone(), record.line()));
                        out.push(
                            format!("data {} {column} positive", def.name),
                            Finding::new(
                                Kind::Data,
                                file(),
                                Some(record.line()),
                                "the amount is zero or negative: Mambu refuses it",
                                Some(format!("correct {column} of {} {}", def.name, record.key())),
                            )
                            .in_field(column),
                        );
                    }
                }
            }
            if let Some(tenant) = &tenant {
                for (lookup, _, column) in &refs {
                    let Some(table) = tenant.lookups.get(lookup).and_then(Value::as_object) else {
                        continue;
                    };
                    let Some(raw) = record.get(column) else {
                        continue;
                    };
                    if !raw.is_empty() && !table.contains_key(raw) {
                        flagged.insert((def.name.clone(), record.line()));
                        let mut known: Vec<&str> = table.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        out.push(
                            format!("tenant {} {column} {lookup}", def.name),
                            Finding::new(
                                Kind::Tenant,
                                file(),
                                Some(record.line()),
                                format!("`{raw}` is not in the tenant's {lookup}"),
                                Some(format!("the tenant has: {}", known.join(", "))),
                            )
                            .in_field(column),
                        );
                    }
                }
            }
        }
    }
    render_unit(
        units,
        unit,
        &|source: &str, line: u64| {
            bad_cells.get(source).is_some_and(|l| l.contains(&line))
                || (!flagged.is_empty() && flagged.contains(&(source.to_owned(), line)))
        },
        out,
        memo,
    );
}

/// Renders every call of the unit, as a run would (with placeholder outputs of earlier steps):
/// a row whose call cannot be rendered would fail its unit on the night.
fn render_unit(
    units: &UnitCheck<'_>,
    unit: &source::Unit,
    skip: &dyn Fn(&str, u64) -> bool,
    out: &mut Found,
    memo: &mut Memo,
) {
    let UnitCheck {
        plan,
        compiled,
        placeholders: outputs,
        lookups,
        tenant,
        mapped,
        ..
    } = *units;
    let definitions = tenant.and_then(|t| t.custom_fields.as_ref());
    // The unit's loans, call by call, against their products' settings.
    let mut book = tenant.map(|t| Book::new(t, plan.target.has_approver()));
    // Per loan (its rows' path): whether its product is dynamic-term, and whether it has been
    // approved by an earlier step: Mambu refuses to edit such a loan's schedule once approved.
    let mut dynamic_loans: HashSet<String> = HashSet::new();
    let mut approved_loans: HashSet<String> = HashSet::new();
    let root = unit.root();
    let unit_key = root.key();
    // A catch-up's updates too: rendered for every row, as a catch-up would for a changed one.
    for planned in compiled.expand_with(unit, true) {
        let step = compiled.step(planned.step);
        let row = planned.row();
        if let (Some(book), Action::CreateLoan) = (&mut book, step.action) {
            // Until this instance is rendered, the step's output names no loan the book knows.
            book.forget(&step.id);
        }
        if (compiled.uses_lookups(planned.step) && lookups.is_none())
            || skip(row.schema().name(), row.line())
        {
            continue;
        }
        let file = || row.schema().file().display().to_string();
        let fail = |out: &mut Found, what: &str, message: String| {
            out.push(
                format!("data render {} {what}", step.id),
                Finding::new(
                    Kind::Data,
                    file(),
                    Some(row.line()),
                    format!("step `{}` ({}): {message}", step.id, step.action.name()),
                    Some(format!(
                        "fix the row ({} {}) or the step's template",
                        row.schema().name(),
                        row.key()
                    )),
                ),
            );
        };
        match compiled.when_memo(&planned, outputs, lookups, memo) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                fail(out, "when", e.to_string());
                continue;
            }
        }
        if tenant.is_some() {
            match step.action {
                Action::ApproveLoan => {
                    approved_loans.insert(planned.instance());
                }
                Action::EditSchedule
                    if approved_loans.contains(&planned.instance())
                        && dynamic_loans.contains(&planned.instance()) =>
                {
                    out.push(
                        format!("tenant schedule order {}", step.id),
                        Finding::new(
                            Kind::Tenant,
                            file(),
                            Some(row.line()),
                            format!(
                                "step `{}` (edit_schedule): {} {} is of a dynamic-term product, whose schedule Mambu refuses to edit once the loan is APPROVED (LOAN_ACCOUNT_SCHEDULE_EDITING_NOT_ALLOWED)",
                                step.id,
                                row.schema().name(),
                                row.key()
                            ),
                            Some(format!(
                                "edit the schedule before the loan is approved: move `{}` above the approve_loan step in the plan",
                                step.id
                            )),
                        ),
                    );
                }
                _ => {}
            }
        }
        // Only the tenant's checks need the rendered call; otherwise its outcome is enough.
        let for_book = book.as_ref().is_some_and(|b| b.wants(step.action));
        let for_fields = definitions.filter(|d| mapped.wants(step, d));
        if !for_book && for_fields.is_none() {
            if let Err(e) = compiled.check(unit, &planned, outputs, lookups, memo) {
                fail(out, "render", e.to_string());
            }
            continue;
        }
        // The whole call is checked as a plain validate checks it (outcomes remembered by the
        // cells they read); only the fields the checks read are rendered.
        if let Err(e) = compiled.check(unit, &planned, outputs, lookups, memo) {
            fail(out, "render", e.to_string());
            continue;
        }
        match compiled.render_fields(unit, &planned, outputs, lookups, memo) {
            Err(e) => fail(out, "render", e.to_string()),
            Ok(call) => {
                if let (Some(definitions), Some(body)) = (for_fields, &call.body) {
                    mapped.check_call(definitions, step, &planned, unit_key, body, out);
                }
                if !for_book {
                    continue;
                }
                if let Some(book) = &mut book {
                    let at = At {
                        step,
                        file: file(),
                        line: row.line(),
                        row: format!("{} {}", row.schema().name(), row.key()),
                        unit: unit_key,
                    };
                    book.call(&at, &call, out);
                }
                if let (Some(tenant), Action::CreateLoan, Some(body)) =
                    (tenant, call.action, &call.body)
                {
                    if tenant.product_type(body) == Some("DYNAMIC_TERM_LOAN") {
                        dynamic_loans.insert(planned.instance());
                    }
                    for (field, problem) in tenant.loan_limits(body) {
                        out.push(
                            format!("tenant limits {} {field}", step.id),
                            Finding::new(
                                Kind::Tenant,
                                file(),
                                Some(row.line()),
                                problem,
                                Some(format!(
                                    "correct {} {} or choose another product",
                                    row.schema().name(),
                                    row.key()
                                )),
                            ),
                        );
                    }
                }
            }
        }
    }
}
