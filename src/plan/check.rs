//! From what the user typed to a checked [`Plan`]: semantic checks of the plan's structure,
//! every problem collected and located by line and column.
//!
//! Checks needing the data (columns named by templates) run later, in
//! [`super::refs::check_references`], once the files' headers are known.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::action::{AccountsNeeded, Action, BULK_DEFAULT_SIZE, BULK_MAX_ITEMS};
use super::file::{
    AdoptFile, ColumnFile, ColumnKind, InstallmentsFile, PlanFile, SourceFile, StepFile, TargetFile,
};
use super::lists::BodyList;
use super::load::{LoadedPlan, PlanProblem, did_you_mean};
use crate::source::{CellType, ColumnSpec, SourceDef};

/// Where the plan sends its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The embedded sandbox, started in-process.
    Sandbox {
        /// The tenant profile it serves (resolved against the plan's folder); none: the
        /// built-in lenient tenant.
        profile: Option<PathBuf>,
        /// The profile's users that call, and that approve (four-eyes).
        user: Option<String>,
        approver: Option<String>,
    },
    /// A tenant: its API base URL and the environment variables holding its credentials.
    Tenant {
        base_url: String,
        auth: EnvCredentials,
        /// The approving user's, for four-eyes products.
        approver: Option<EnvCredentials>,
    },
}

/// The environment variables holding one user's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvCredentials {
    pub api_key_env: String,
    pub username_env: String,
    pub password_env: String,
}

impl Target {
    /// The embedded sandbox serving the built-in tenant.
    pub const BUILT_IN: Target = Target::Sandbox {
        profile: None,
        user: None,
        approver: None,
    };

    /// Whether the plan names an approving user (four-eyes).
    pub fn has_approver(&self) -> bool {
        match self {
            Target::Sandbox { approver, .. } => approver.is_some(),
            Target::Tenant { approver, .. } => approver.is_some(),
        }
    }
}

/// A column's rules beyond its type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColumnRule {
    pub required: bool,
    pub positive: bool,
}

/// A checked plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// The plan file, and the folder source paths are relative to.
    pub file: PathBuf,
    pub target: Target,
    /// Settings as typed (limits, error budget, lookups, timezone).
    pub settings: PlanFile,
    /// Sources with their files resolved (overrides applied), in the plan's order.
    pub sources: Vec<SourceDef>,
    /// Rules per source and column.
    pub rules: BTreeMap<String, BTreeMap<String, ColumnRule>>,
    pub unit: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Action(Box<ActionStep>),
    ForEach(Group),
}

/// Steps run once per row of a child source.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Key path in the plan file, e.g. `steps[2]`.
    pub path: String,
    pub source: String,
    pub when: Option<String>,
    pub steps: Vec<Step>,
}

/// One action step, with its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionStep {
    pub path: String,
    pub id: String,
    pub action: Action,
    pub when: Option<String>,
    /// The body template (the action's default body merged under the plan's).
    pub body: Option<Value>,
    /// Template of the loan's id or encodedKey, for actions on a loan.
    pub loan: Option<String>,
    /// Template of the deposit's id or encodedKey, for actions on a deposit.
    pub deposit: Option<String>,
    pub installments: Option<InstallmentsFile>,
    /// request: method and path template.
    pub method: Option<String>,
    pub request_path: Option<String>,
    /// request: how to adopt what exists after a refusal that says it does.
    pub adopt: Option<AdoptFile>,
    pub save: BTreeMap<String, String>,
    /// deposit through the bulk endpoint: items per bulk. Such a step has no outputs.
    pub bulk: Option<usize>,
    /// The sources whose current rows are in scope (unit source first).
    pub scope: Vec<String>,
    /// A catch-up update: the columns of its row whose change it applies (empty: an ordinary
    /// step, which a catch-up runs only for rows it never ran for).
    pub on_change: Vec<String>,
}

/// Words in a column's name that say it holds personal data.
const PERSONAL_WORDS: [&str; 14] = [
    "name", "birth", "email", "mail", "phone", "mobile", "address", "street", "postcode", "zip",
    "national", "passport", "document", "tax",
];

/// Whether a column holds personal data, by its name.
pub fn personal_by_name(column: &str) -> bool {
    let lower = column.to_ascii_lowercase();
    PERSONAL_WORDS.iter().any(|w| lower.contains(w))
        || lower.ends_with("_id_number")
        || lower == "ssn"
}

/// Checks a loaded plan. `overrides` replace source files (`--source NAME=PATH`).
pub fn check(
    loaded: &LoadedPlan,
    overrides: &[(String, PathBuf)],
) -> Result<Plan, Vec<PlanProblem>> {
    let (plan, problems) = check_all(loaded, overrides);
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// Like [`check`], but gives back the plan as far as it could be built along with every
/// problem, so that `plan validate` can go on to check the data.
pub fn check_all(loaded: &LoadedPlan, overrides: &[(String, PathBuf)]) -> (Plan, Vec<PlanProblem>) {
    let file = &loaded.plan;
    let mut checker = Checker::new(loaded);
    checker.check_version_and_name();
    let target = checker.check_target();
    checker.check_timezone();
    checker.check_limits();
    checker.check_error_budget();
    checker.check_overrides(overrides);
    let (sources, rules) = checker.check_sources(overrides);
    checker.check_unit();
    checker.check_lookups();
    let steps = checker.check_steps();
    let mut problems = checker.problems;
    // A stable sort: problems at one place keep the order they were found in.
    problems.sort_by_key(|p| (p.at.line, p.at.column));
    (
        Plan {
            name: file.name.clone(),
            file: loaded.file.clone(),
            target,
            settings: file.clone(),
            sources,
            rules,
            unit: file.unit.clone(),
            steps,
        },
        problems,
    )
}

/// Rules per source and column, as [`Plan::rules`] holds them.
type Rules = BTreeMap<String, BTreeMap<String, ColumnRule>>;

/// What [`check_all`]'s stages share: the plan as loaded, its source names (for hints), and
/// the problems found so far.
struct Checker<'a> {
    loaded: &'a LoadedPlan,
    file: &'a PlanFile,
    names: Vec<&'a str>,
    problems: Vec<PlanProblem>,
}

impl<'a> Checker<'a> {
    fn new(loaded: &'a LoadedPlan) -> Self {
        let file = &loaded.plan;
        Checker {
            loaded,
            file,
            names: file.sources.keys().map(String::as_str).collect(),
            problems: Vec::new(),
        }
    }

    fn report(&mut self, path: &str, message: String, hint: Option<String>) {
        self.problems.push(self.loaded.problem(path, message, hint));
    }

    /// The plan must be in a version this tool reads, and its name must serve as the run
    /// directory's name.
    fn check_version_and_name(&mut self) {
        let file = self.file;
        if file.version != 1 {
            self.report(
                "version",
                format!("unsupported plan version {}", file.version),
                Some("this tool reads version 1".into()),
            );
        }
        if file.name.trim().is_empty() || file.name.contains(['/', '\\']) {
            self.report(
                "name",
                "the plan's name must be non-empty and must not contain a slash".into(),
                Some("it names the run directory runs/<name>/".into()),
            );
        }
    }

    /// Where the calls go: the sandbox, or a tenant reached over https (plain http only to
    /// loopback), with the variables holding its credentials.
    fn check_target(&mut self) -> Target {
        match &self.file.target {
            TargetFile::Name(name) if name == "sandbox" => Target::BUILT_IN,
            TargetFile::Name(other) => {
                self.report(
                    "target",
                    format!("unknown target `{other}`"),
                    Some(
                        "write `sandbox`, a map with `sandbox: PROFILE.yaml`, or a map with \
                         base_url and auth"
                            .into(),
                    ),
                );
                Target::BUILT_IN
            }
            TargetFile::Tenant(t) => {
                match reqwest::Url::parse(&t.base_url) {
                    Ok(url) if url.scheme() == "https" => {}
                    Ok(url)
                        if url.scheme() == "http"
                            && matches!(
                                url.host_str(),
                                Some("localhost" | "127.0.0.1" | "[::1]")
                            ) => {}
                    Ok(_) => self.report(
                        "target.base_url",
                        "plain http is refused except to loopback".into(),
                        Some("use the tenant's https:// URL".into()),
                    ),
                    Err(e) => self.report(
                        "target.base_url",
                        format!("not a URL: {e}"),
                        Some("e.g. https://acme.sandbox.mambu.com/api".into()),
                    ),
                }
                Target::Tenant {
                    base_url: t.base_url.trim_end_matches('/').to_owned(),
                    auth: EnvCredentials {
                        api_key_env: t.auth.api_key_env.clone(),
                        username_env: t.auth.username_env.clone(),
                        password_env: t.auth.password_env.clone(),
                    },
                    approver: t.approver.as_ref().map(|a| EnvCredentials {
                        api_key_env: a.api_key_env.clone(),
                        username_env: a.username_env.clone(),
                        password_env: a.password_env.clone(),
                    }),
                }
            }
            TargetFile::Sandbox(s) => {
                let path = self
                    .loaded
                    .file
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
                    .join(&s.sandbox);
                match crate::sandbox::TenantProfile::load(&path) {
                    Ok(profile) => {
                        for (key, name) in
                            [("target.user", &s.user), ("target.approver", &s.approver)]
                        {
                            if let Some(name) = name
                                && profile.user(name).is_none()
                            {
                                let names: Vec<&str> =
                                    profile.users.iter().map(|u| u.username.as_str()).collect();
                                self.report(
                                    key,
                                    format!("the profile has no user `{name}`"),
                                    Some(format!("its users: {}", names.join(", "))),
                                );
                            }
                        }
                    }
                    Err(e) => self.report(
                        "target.sandbox",
                        format!("{e:#}"),
                        Some("name a tenant profile, e.g. ../fixtures/tenants/strict.yaml".into()),
                    ),
                }
                Target::Sandbox {
                    profile: Some(path),
                    user: s.user.clone(),
                    approver: s.approver.clone(),
                }
            }
        }
    }

    /// Dates without an offset are read in the plan's timezone, so it must be a UTC offset.
    fn check_timezone(&mut self) {
        let timezone = &self.file.timezone;
        if crate::plan::template::Zone::parse(timezone).is_none() {
            let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
            let hint = match did_you_mean(timezone, &names) {
                Some(name) => format!("did you mean `{name}`? Or write an offset: +01:00, -05:00"),
                None => "write the tenant's time zone (Europe/Lisbon) or an offset (+01:00)".into(),
            };
            self.report(
                "timezone",
                format!("`{timezone}` is neither a time zone nor a UTC offset"),
                Some(hint),
            );
        }
    }

    /// The rate, concurrency, timeout and retry limits must let a run make progress.
    fn check_limits(&mut self) {
        let limits = &self.file.limits;
        if !(limits.requests_per_second > 0.0 && limits.requests_per_second.is_finite()) {
            self.report("limits.requests_per_second", "must be above 0".into(), None);
        }
        if limits.concurrency == 0 {
            self.report("limits.concurrency", "must be at least 1".into(), None);
        }
        if limits.timeout_seconds.is_nan() || limits.timeout_seconds <= 0.0 {
            self.report("limits.timeout_seconds", "must be above 0".into(), None);
        }
        if limits.retry.max_attempts == 0 {
            self.report(
                "limits.retry.max_attempts",
                "must be at least 1 (the first attempt counts)".into(),
                None,
            );
        }
        if limits.retry.initial_backoff_ms > limits.retry.max_backoff_ms {
            self.report(
                "limits.retry",
                "initial_backoff_ms is above max_backoff_ms".into(),
                None,
            );
        }
    }

    /// The error budget is a share of the units, above 0 and at most 1.
    fn check_error_budget(&mut self) {
        let rate = self.file.error_budget.max_error_rate;
        if !(rate > 0.0 && rate <= 1.0) {
            self.report(
                "error_budget.max_error_rate",
                "must be above 0 and at most 1".into(),
                Some("0.10 stops the run when more than one unit in ten fails".into()),
            );
        }
    }

    /// `--source NAME=PATH` can only replace the file of a source the plan defines.
    fn check_overrides(&mut self, overrides: &[(String, PathBuf)]) {
        for (name, _) in overrides {
            self.check_defined(
                name,
                "sources",
                format!("--source names `{name}`, which the plan does not define"),
            );
        }
    }

    /// `message` at `path` when `source` is not one of the plan's sources, with the nearest.
    fn check_defined(&mut self, source: &str, path: &str, message: String) {
        if !self.file.sources.contains_key(source) {
            let hint = hint_among(source, &self.names, "the plan's sources");
            self.report(path, message, Some(hint));
        }
    }

    /// Each source as the reader takes it, in the plan's order, with its columns' rules; its
    /// file is the override's, or the plan's relative to the plan file.
    fn check_sources(&mut self, overrides: &[(String, PathBuf)]) -> (Vec<SourceDef>, Rules) {
        let file = self.file;
        let plan_dir = self
            .loaded
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut sources = Vec::new();
        let mut rules = Rules::new();
        for (name, source) in &file.sources {
            let path = overrides
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| normalize(&plan_dir.join(&source.file)));
            let def = self.check_source_layout(name, source, path);
            sources.push(self.check_columns(name, source, def, &mut rules));
        }
        (sources, rules)
    }

    /// How a source's file is laid out: its parent (`source.column`), the order of its rows,
    /// and its delimiter (one ASCII character).
    fn check_source_layout(&mut self, name: &str, source: &SourceFile, path: PathBuf) -> SourceDef {
        let at = format!("sources.{name}");
        let mut def = SourceDef::new(name, path, &source.key);
        if let Some(parent) = &source.parent {
            match parent.split_once('.') {
                Some((p, column)) if !p.is_empty() && !column.is_empty() => {
                    def = def.with_parent(p, column)
                }
                _ => self.report(
                    &format!("{at}.parent"),
                    format!("`{parent}` is not `source.column`"),
                    Some(
                        "e.g. `clients.client_id`: the parent source, and this file's column \
                         holding the parent's key"
                            .into(),
                    ),
                ),
            }
        }
        def = def.with_order_by(&source.order_by);
        if let Some(delimiter) = &source.delimiter {
            let d = if delimiter == "\\t" || delimiter == "tab" {
                "\t"
            } else {
                delimiter.as_str()
            };
            match d.as_bytes() {
                [b] if b.is_ascii() && *b != b'"' && *b != b'\n' => def = def.with_delimiter(*b),
                _ => self.report(
                    &format!("{at}.delimiter"),
                    format!("`{delimiter}` is not one ASCII character"),
                    Some("use `,`, `;`, `|` or `\\t`".into()),
                ),
            }
        }
        def
    }

    /// A source's columns (declared, or listed as personal) with their types, whether they
    /// hold personal data, and the rules they declare (which must suit their type).
    fn check_columns(
        &mut self,
        name: &str,
        source: &SourceFile,
        mut def: SourceDef,
        rules: &mut Rules,
    ) -> SourceDef {
        let at = format!("sources.{name}");
        let mut columns: BTreeSet<&str> = source.columns.keys().map(String::as_str).collect();
        columns.extend(source.personal.iter().map(String::as_str));
        for column in columns {
            let declared = source.columns.get(column);
            let cell_type = cell_type(declared);
            if let Some(c) = declared {
                if c.format.is_some() && !matches!(c.kind, ColumnKind::Date | ColumnKind::Datetime)
                {
                    self.report(
                        &format!("{at}.columns.{column}.format"),
                        "a format applies to date and datetime columns only".into(),
                        None,
                    );
                }
                if c.positive && !matches!(c.kind, ColumnKind::Decimal | ColumnKind::Int) {
                    self.report(
                        &format!("{at}.columns.{column}.positive"),
                        "`positive` applies to decimal and int columns only".into(),
                        None,
                    );
                }
                rules.entry(name.to_owned()).or_default().insert(
                    column.to_owned(),
                    ColumnRule {
                        required: c.required,
                        positive: c.positive,
                    },
                );
            }
            let personal = declared.and_then(|c| c.personal).unwrap_or_else(|| {
                source.personal.iter().any(|p| p == column) || personal_by_name(column)
            });
            def = def.with_column(
                column,
                if personal {
                    ColumnSpec::personal(cell_type)
                } else {
                    ColumnSpec::new(cell_type)
                },
            );
        }
        def
    }

    /// Every unit is one row of the unit source, so the plan must define it.
    fn check_unit(&mut self) {
        let unit = &self.file.unit;
        self.check_defined(
            unit,
            "unit",
            format!("the unit source `{unit}` is not defined"),
        );
    }

    /// A lookup reads a path under the API base.
    fn check_lookups(&mut self) {
        for (name, lookup) in &self.file.lookups {
            if !lookup.path.starts_with('/') {
                self.report(
                    &format!("lookups.{name}.path"),
                    format!("`{}` must start with /", lookup.path),
                    Some("a path under the API base, e.g. /loanproducts".into()),
                );
            }
        }
    }

    /// The steps, walked from the unit source down through the for_each groups; a plan
    /// without steps would migrate nothing.
    fn check_steps(&mut self) -> Vec<Step> {
        let (loaded, file) = (self.loaded, self.file);
        let parents: BTreeMap<&str, &str> = file
            .sources
            .iter()
            .filter_map(|(n, s)| Some((n.as_str(), s.parent.as_deref()?.split_once('.')?.0)))
            .collect();
        let mut walker = StepWalker {
            loaded,
            parents: &parents,
            sources: &self.names,
            ids: BTreeMap::new(),
            problems: Vec::new(),
        };
        let steps = walker.walk(
            &file.steps,
            "steps",
            std::slice::from_ref(&file.unit),
            &Defaults::default(),
        );
        if file.steps.is_empty() {
            walker.problems.push(loaded.problem(
                "steps",
                "the plan has no steps",
                Some("add at least a create_client step".into()),
            ));
        }
        let mut problems = walker.problems;
        for (path, message, hint) in bulk_references(&action_steps(&steps)) {
            problems.push(loaded.problem(&path, message, Some(hint)));
        }
        self.problems.extend(problems);
        steps
    }
}

/// A column's type as declared; an undeclared column is text.
fn cell_type(declared: Option<&ColumnFile>) -> CellType {
    match declared {
        None => CellType::Text,
        Some(c) => match (c.kind, &c.format) {
            (ColumnKind::Text, _) => CellType::Text,
            (ColumnKind::Decimal, _) => CellType::Decimal,
            (ColumnKind::Int, _) => CellType::Int,
            (ColumnKind::Bool, _) => CellType::Bool,
            (ColumnKind::Date, None) => CellType::date(),
            (ColumnKind::Date, Some(f)) => CellType::date_in(f),
            (ColumnKind::Datetime, None) => CellType::datetime(),
            (ColumnKind::Datetime, Some(f)) => CellType::datetime_in(f),
        },
    }
}

/// The hint for a name that is not among `known`: the near miss, else `listed: ` and all of
/// them.
fn hint_among(word: &str, known: &[&str], listed: &str) -> String {
    did_you_mean(word, known)
        .map(|s| format!("did you mean `{s}`?"))
        .unwrap_or_else(|| format!("{listed}: {}", known.join(", ")))
}

/// `a/b/../c` as `a/c`, without touching the disk (the file may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(
                    out.components().next_back(),
                    Some(std::path::Component::Normal(_))
                ) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The steps a loan or deposit action works on when it does not say.
#[derive(Debug, Clone, Default)]
struct Defaults {
    loan: Option<String>,
    deposit: Option<String>,
}

struct StepWalker<'a> {
    loaded: &'a LoadedPlan,
    parents: &'a BTreeMap<&'a str, &'a str>,
    sources: &'a [&'a str],
    ids: BTreeMap<String, String>,
    problems: Vec<PlanProblem>,
}

impl StepWalker<'_> {
    fn report(&mut self, path: &str, message: String, hint: Option<String>) {
        self.problems.push(self.loaded.problem(path, message, hint));
    }

    fn walk(
        &mut self,
        steps: &[StepFile],
        at: &str,
        scope: &[String],
        inherited: &Defaults,
    ) -> Vec<Step> {
        let mut defaults = inherited.clone();
        let mut out = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let path = format!("{at}[{i}]");
            match (&step.action, &step.for_each) {
                (Some(_), Some(_)) => self.report(
                    &path,
                    "a step has either `action` or `for_each`, not both".into(),
                    Some("put the action in the for_each's `steps`".into()),
                ),
                (None, None) => self.report(
                    &path,
                    "a step needs `action` (one call) or `for_each` (steps per child row)".into(),
                    None,
                ),
                (None, Some(source)) => {
                    if let Some(group) = self.group(step, source, &path, scope, &defaults) {
                        out.push(Step::ForEach(group));
                    }
                }
                (Some(name), None) => {
                    if let Some(action) = self.action(step, name, &path, scope, &defaults) {
                        match action.action {
                            Action::CreateLoan => defaults.loan = Some(action.id.clone()),
                            Action::CreateDeposit => defaults.deposit = Some(action.id.clone()),
                            _ => {}
                        }
                        out.push(Step::Action(Box::new(action)));
                    }
                }
            }
        }
        out
    }

    fn group(
        &mut self,
        step: &StepFile,
        source: &str,
        path: &str,
        scope: &[String],
        defaults: &Defaults,
    ) -> Option<Group> {
        for (field, present) in [
            ("id", step.id.is_some()),
            ("body", step.body.is_some()),
            ("installments", step.installments.is_some()),
            ("method", step.method.is_some()),
            ("path", step.path.is_some()),
            ("loan", step.loan.is_some()),
            ("deposit", step.deposit.is_some()),
            ("adopt", step.adopt.is_some()),
            ("save", !step.save.is_empty()),
            ("bulk", step.bulk.is_some()),
            ("on_change", !step.on_change.is_empty()),
        ] {
            if present {
                self.report(
                    &format!("{path}.{field}"),
                    format!("`{field}` belongs to an action step, not to a for_each"),
                    None,
                );
            }
        }
        let current = scope.last().map(String::as_str).unwrap_or("");
        self.check_child(source, current, &format!("{path}.for_each"), "for_each");
        let Some(steps) = &step.steps else {
            self.report(
                path,
                format!("for_each `{source}` has no `steps`"),
                Some("list the steps to run for each row".into()),
            );
            return None;
        };
        let mut inner_scope = scope.to_vec();
        inner_scope.push(source.to_owned());
        let steps = self.walk(steps, &format!("{path}.steps"), &inner_scope, defaults);
        Some(Group {
            path: path.to_owned(),
            source: source.to_owned(),
            when: step.when.clone(),
            steps,
        })
    }

    /// `source` must be a child of `current`.
    fn check_child(&mut self, source: &str, current: &str, path: &str, what: &str) {
        if !self.sources.contains(&source) {
            let hint = hint_among(source, self.sources, "the plan's sources");
            self.report(
                path,
                format!("{what} names `{source}`, which is not a source"),
                Some(hint),
            );
        } else if self.parents.get(source) != Some(&current) {
            let children: Vec<&str> = self
                .parents
                .iter()
                .filter(|(_, p)| **p == current)
                .map(|(c, _)| *c)
                .collect();
            self.report(
                path,
                format!("{what} `{source}` is not a child of `{current}`"),
                Some(if children.is_empty() {
                    format!("`{current}` has no child sources here")
                } else {
                    format!("children of `{current}`: {}", children.join(", "))
                }),
            );
        }
    }

    /// One action step, checked and built: its action, id, body, the accounts it works on, its
    /// installments or request call, and what it saves.
    fn action(
        &mut self,
        step: &StepFile,
        name: &str,
        path: &str,
        scope: &[String],
        defaults: &Defaults,
    ) -> Option<ActionStep> {
        let action = self.known_action(name, path)?;
        let mut check = ActionCheck {
            walker: self,
            step,
            action,
            name,
            path,
        };
        check.check_no_nested_steps();
        let id = check.unique_id();
        let body = check.body();
        check.check_required_fields(body.as_ref());
        check.check_lists(body.as_ref(), scope);
        let loan = check.loan(defaults);
        let deposit = check.deposit(defaults);
        let installments = check.installments(scope);
        let (method, request_path) = check.request_call();
        let adopt = check.adopt(method.as_deref());
        check.check_save();
        let bulk = check.bulk();
        let on_change = check.on_change(bulk.is_some());
        Some(ActionStep {
            path: path.to_owned(),
            id,
            action,
            when: step.when.clone(),
            body,
            loan,
            deposit,
            installments,
            method,
            request_path,
            adopt,
            save: step.save.clone(),
            bulk,
            scope: scope.to_vec(),
            on_change,
        })
    }

    /// The action the step names; an unknown name is reported with the nearest one.
    fn known_action(&mut self, name: &str, path: &str) -> Option<Action> {
        let action = Action::parse(name);
        if action.is_none() {
            let hint = hint_among(name, &Action::names(), "the actions");
            self.report(
                &format!("{path}.action"),
                format!("unknown action `{name}`"),
                Some(hint),
            );
        }
        action
    }
}

/// What the stages of [`StepWalker::action`] share: the walker (its reports and the step ids
/// taken so far) and the step being checked.
struct ActionCheck<'w, 'a> {
    walker: &'w mut StepWalker<'a>,
    step: &'w StepFile,
    action: Action,
    /// The action as the plan names it.
    name: &'w str,
    path: &'w str,
}

impl ActionCheck<'_, '_> {
    fn report(&mut self, path: &str, message: String, hint: Option<String>) {
        self.walker.report(path, message, hint);
    }

    /// An action step is one call: steps nest under a for_each only.
    fn check_no_nested_steps(&mut self) {
        if self.step.steps.is_some() {
            self.report(
                &format!("{}.steps", self.path),
                "an action step has no nested `steps`".into(),
                Some("nest steps under a for_each".into()),
            );
        }
    }

    /// The step's id, which later steps' templates use as `steps.<id>`: a valid name, not
    /// taken by another step.
    fn unique_id(&mut self) -> String {
        let (step, name, path) = (self.step, self.name, self.path);
        let id = match &step.id {
            Some(id)
                if !id.is_empty()
                    && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !id.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                id.clone()
            }
            Some(id) => {
                self.report(
                    &format!("{path}.id"),
                    format!("`{id}` is not a valid step id"),
                    Some("letters, digits and _; it is used as steps.<id> in templates".into()),
                );
                id.clone()
            }
            None => {
                self.report(
                    path,
                    format!("this {name} step has no `id`"),
                    Some(
                        "name it, e.g. `id: loan`; later steps use its outputs as steps.<id>"
                            .into(),
                    ),
                );
                name.to_owned()
            }
        };
        if let Some(first) = self.walker.ids.insert(id.clone(), path.to_owned()) {
            self.report(
                &format!("{path}.id"),
                format!("step id `{id}` is used twice (first at {first})"),
                Some("give each step its own id".into()),
            );
        }
        id
    }

    /// The body template: the plan's fields over the action's default body; refused for an
    /// action that takes none.
    fn body(&mut self) -> Option<Value> {
        let (step, action, name, path) = (self.step, self.action, self.name, self.path);
        match (action.takes_body(), &step.body, action.default_body()) {
            (false, Some(_), _) => {
                self.report(
                    &format!("{path}.body"),
                    format!("{name} takes no body"),
                    Some(if action == Action::EditSchedule {
                        "edit_schedule takes `installments`".into()
                    } else {
                        "remove it".into()
                    }),
                );
                None
            }
            (_, Some(Value::Object(given)), Some(Value::Object(mut default))) => {
                default.extend(given.clone());
                Some(Value::Object(default))
            }
            (_, Some(given), _) => Some(given.clone()),
            (_, None, default) => default,
        }
    }

    /// The body must be a map holding every field Mambu's API requires for the action.
    fn check_required_fields(&mut self, body: Option<&Value>) {
        let (action, name, path) = (self.action, self.name, self.path);
        if !action.takes_body() || action == Action::Request {
            return;
        }
        match body {
            Some(Value::Object(map)) => {
                for field in action.required_fields() {
                    // A nested field is checked when its parent is a literal map (a missing
                    // parent is reported itself; a template is checked when rendered).
                    let missing = match field.split_once('.') {
                        Some((outer, inner)) => {
                            matches!(map.get(outer), Some(Value::Object(o)) if !o.contains_key(inner))
                        }
                        None => !map.contains_key(*field),
                    };
                    if missing {
                        self.report(
                            &format!("{path}.body"),
                            format!("{name} needs `{field}` in its body: Mambu's API requires it"),
                            Some(format!("add `{field}` to the body")),
                        );
                    }
                }
            }
            Some(_) => self.report(
                &format!("{path}.body"),
                "the body must be a map of fields".into(),
                None,
            ),
            None if !action.required_fields().is_empty() => {
                self.report(
                    path,
                    format!(
                        "{name} needs a body with {}",
                        action.required_fields().join(", ")
                    ),
                    Some("Mambu's API requires these fields".into()),
                );
            }
            None => {}
        }
    }

    /// The loan an action on a loan works on: as the step says, else the latest create_loan
    /// step's; refused on an action that works on none.
    fn loan(&mut self, defaults: &Defaults) -> Option<String> {
        let (step, name, path) = (self.step, self.name, self.path);
        let needs_loan = matches!(
            self.action.accounts(),
            AccountsNeeded::Loan | AccountsNeeded::LoanAndDeposit
        );
        match (&step.loan, needs_loan, &defaults.loan) {
            (Some(t), true, _) => Some(t.clone()),
            (None, true, Some(id)) => Some(format!("{{{{ steps.{id}.encodedKey }}}}")),
            (None, true, None) => {
                self.report(
                    path,
                    format!("{name} needs a loan: no create_loan step comes before it"),
                    Some("add a create_loan step before it, or say `loan: \"{{ ... }}\"`".into()),
                );
                None
            }
            (Some(_), false, _) => {
                self.report(
                    &format!("{path}.loan"),
                    format!("{name} does not work on a loan"),
                    None,
                );
                None
            }
            (None, false, _) => None,
        }
    }

    /// The deposit an action on a deposit works on: as the step says (approve_deposit, deposit
    /// and withdrawal default to the latest create_deposit step's); refused on an action that
    /// works on none.
    fn deposit(&mut self, defaults: &Defaults) -> Option<String> {
        let (step, action, name, path) = (self.step, self.action, self.name, self.path);
        let needs_deposit = matches!(
            action.accounts(),
            AccountsNeeded::Deposit | AccountsNeeded::LoanAndDeposit
        );
        match (&step.deposit, needs_deposit) {
            (Some(t), true) => Some(t.clone()),
            (None, true)
                if matches!(
                    action,
                    Action::ApproveDeposit | Action::MakeDeposit | Action::MakeWithdrawal
                ) && defaults.deposit.is_some() =>
            {
                defaults
                    .deposit
                    .as_ref()
                    .map(|id| format!("{{{{ steps.{id}.encodedKey }}}}"))
            }
            (None, true) => {
                let hint = if action == Action::LinkSettlementAccount {
                    "say which: `deposit: \"{{ loans.settlement_deposit_id }}\"`"
                } else {
                    "add a create_deposit step before it, or say `deposit: \"{{ ... }}\"`"
                };
                self.report(path, format!("{name} needs a deposit"), Some(hint.into()));
                None
            }
            (Some(_), false) => {
                self.report(
                    &format!("{path}.deposit"),
                    format!("{name} does not work on a deposit"),
                    None,
                );
                None
            }
            (None, false) => None,
        }
    }

    /// The body's lists built from child rows: well formed, each from a child of the source
    /// whose row it is under (the step's current source, or the enclosing list's).
    fn check_lists(&mut self, body: Option<&Value>, scope: &[String]) {
        let Some(body) = body else {
            return;
        };
        let (_, lists, problems) = super::lists::split(body, &format!("{}.body", self.path));
        for p in problems {
            self.report(&p.path, p.message, p.hint);
        }
        fn children(walker: &mut StepWalker<'_>, lists: &[BodyList], current: &str) {
            for list in lists {
                walker.check_child(
                    &list.source,
                    current,
                    &format!("{}.for_each", list.path),
                    "for_each",
                );
                children(walker, &list.lists, &list.source);
            }
        }
        let current = scope.last().map(String::as_str).unwrap_or("");
        children(self.walker, &lists, current);
    }

    /// edit_schedule's installments, read from a child source of the current one; no other
    /// action takes them.
    fn installments(&mut self, scope: &[String]) -> Option<InstallmentsFile> {
        let (step, path) = (self.step, self.path);
        match (&step.installments, self.action) {
            (Some(i), Action::EditSchedule) => {
                let current = scope.last().map(String::as_str).unwrap_or("");
                self.walker.check_child(
                    &i.from,
                    current,
                    &format!("{path}.installments.from"),
                    "installments.from",
                );
                Some(i.clone())
            }
            (None, Action::EditSchedule) => {
                self.report(
                    path,
                    "edit_schedule needs `installments`".into(),
                    Some(
                        "from: <schedule source>, dueDate:, principal: (and interest:, fee:) \
                         templates"
                            .into(),
                    ),
                );
                None
            }
            (Some(_), _) => {
                self.report(
                    &format!("{path}.installments"),
                    "only edit_schedule takes `installments`".into(),
                    None,
                );
                None
            }
            (None, _) => None,
        }
    }

    /// A request step's method and path; every other action knows its call, and takes
    /// neither.
    fn request_call(&mut self) -> (Option<String>, Option<String>) {
        let (step, name, path) = (self.step, self.name, self.path);
        if self.action != Action::Request {
            for (field, present) in [
                ("method", step.method.is_some()),
                ("path", step.path.is_some()),
            ] {
                if present {
                    self.report(
                        &format!("{path}.{field}"),
                        format!("`{field}` is for request steps; {name} knows its call"),
                        None,
                    );
                }
            }
            return (None, None);
        }
        let method = step.method.clone().map(|m| m.to_ascii_uppercase());
        match method.as_deref() {
            Some("GET" | "POST" | "PUT" | "PATCH" | "DELETE") => {}
            Some(other) => self.report(
                &format!("{path}.method"),
                format!("unknown HTTP method `{other}`"),
                Some("GET, POST, PUT, PATCH or DELETE".into()),
            ),
            None => self.report(path, "a request step needs `method`".into(), None),
        }
        match &step.path {
            Some(p) if p.starts_with('/') => {}
            Some(p) => self.report(
                &format!("{path}.path"),
                format!("`{p}` must start with /"),
                Some("a path under the API base, e.g. /clients/{{ steps.client.id }}".into()),
            ),
            None => self.report(path, "a request step needs `path`".into(), None),
        }
        (method, step.path.clone())
    }

    /// A request step's `adopt`: the refusals that say "it exists" (errorReasons as Mambu
    /// writes them), a path to GET it and where it is in the answer. Built-in actions adopt by
    /// themselves, and a GET makes nothing to adopt.
    fn adopt(&mut self, method: Option<&str>) -> Option<AdoptFile> {
        let (step, name, path) = (self.step, self.name, self.path);
        let adopt = step.adopt.as_ref()?;
        let at = format!("{path}.adopt");
        if self.action != Action::Request {
            self.report(
                &at,
                format!("`adopt` is for request steps; {name} adopts what exists by itself"),
                Some("remove it".into()),
            );
            return None;
        }
        if method == Some("GET") {
            self.report(
                &at,
                "a GET makes nothing: there is nothing to adopt".into(),
                Some("remove it, or give the step the method that makes something".into()),
            );
        }
        if adopt.on.is_empty() {
            self.report(
                &format!("{at}.on"),
                "`on` lists no errorReason: no refusal would be adopted".into(),
                Some(
                    "list the errorReasons Mambu answers for a duplicate, e.g. \
                     [CLIENT_ID_ALREADY_IN_USE] or [EXTERNAL_ID_ALREADY_EXISTS]"
                        .into(),
                ),
            );
        }
        let known = crate::mambu::adopt::DUPLICATE_REASONS;
        for (i, reason) in adopt.on.iter().enumerate() {
            let item = format!("{at}.on[{i}]");
            let well_formed = !reason.is_empty()
                && reason
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            // A near miss of a known reason is a typo: Mambu would never answer it.
            let near = known
                .iter()
                .find(|k| **k != reason.as_str() && strsim::damerau_levenshtein(reason, k) <= 2);
            if !well_formed {
                self.report(
                    &item,
                    format!("`{reason}` is not an errorReason"),
                    Some(
                        match near
                            .copied()
                            .or_else(|| did_you_mean(&reason.to_ascii_uppercase(), &known))
                        {
                            Some(k) => format!("did you mean `{k}`?"),
                            None => {
                                "an errorReason as Mambu writes it, e.g. CLIENT_ID_ALREADY_IN_USE"
                                    .into()
                            }
                        },
                    ),
                );
            } else if let Some(k) = near {
                self.report(
                    &item,
                    format!("`{reason}` is not an errorReason Mambu answers"),
                    Some(format!("did you mean `{k}`?")),
                );
            }
        }
        if !adopt.get.starts_with('/') {
            self.report(
                &format!("{at}.get"),
                format!("`{}` must start with /", adopt.get),
                Some("a path under the API base, e.g. /clients/{{ clients.client_id }}".into()),
            );
        }
        if let Some(pick) = &adopt.pick
            && crate::mambu::adopt::pick_path(pick).is_none()
        {
            self.report(
                &format!("{at}.pick"),
                format!("`{pick}` is not a path into the answer"),
                Some(
                    "dotted fields and [index]es: `[0]` (a list's first item), `content[0]`, \
                     `data.client`"
                        .into(),
                ),
            );
        }
        Some(adopt.clone())
    }

    /// Each output the step saves names a field of the answer.
    fn check_save(&mut self) {
        let (step, path) = (self.step, self.path);
        for (name, field) in &step.save {
            if field.trim().is_empty() {
                self.report(
                    &format!("{path}.save.{name}"),
                    "an empty field path".into(),
                    Some("e.g. `accountState` or `balances.principalBalance`".into()),
                );
            }
        }
    }
}

impl ActionCheck<'_, '_> {
    /// A catch-up update's columns: each named once; not on a bulk deposit (an update is one
    /// call for one changed row). Whether the source has them is checked with its header.
    fn on_change(&mut self, bulk: bool) -> Vec<String> {
        let (step, path) = (self.step, self.path);
        let at = format!("{path}.on_change");
        if bulk && !step.on_change.is_empty() {
            self.report(
                &at,
                "a bulk deposit cannot be a catch-up update".into(),
                Some("remove `on_change`, or `bulk`".into()),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, column) in step.on_change.iter().enumerate() {
            if column.trim().is_empty() || !seen.insert(column.as_str()) {
                self.report(
                    &format!("{at}[{i}]"),
                    format!("`on_change` names {column:?} twice or empty"),
                    Some("name each column of the step's source once".into()),
                );
            }
        }
        step.on_change.clone()
    }

    /// A deposit's `bulk`: its size within 1 to [`BULK_MAX_ITEMS`]; on no other action, and
    /// with nothing saved (its outcome comes after the unit's later steps have run).
    fn bulk(&mut self) -> Option<usize> {
        let (step, action, name, path) = (self.step, self.action, self.name, self.path);
        let bulk = step.bulk.as_ref()?;
        let at = format!("{path}.bulk");
        if action != Action::MakeDeposit {
            self.report(
                &at,
                format!("{name} has no bulk endpoint: only `deposit` does"),
                Some("remove `bulk`".into()),
            );
            return None;
        }
        if !step.save.is_empty() {
            self.report(
                &format!("{path}.save"),
                "a bulk deposit has no answer to save from: its outcome comes later".into(),
                Some("remove `save`, or post this deposit without `bulk`".into()),
            );
        }
        let size = bulk.size.unwrap_or(BULK_DEFAULT_SIZE);
        if !(1..=BULK_MAX_ITEMS).contains(&size) {
            self.report(
                &format!("{at}.size"),
                format!("a bulk of {size} items: a bulk takes 1 to {BULK_MAX_ITEMS}"),
                Some(format!(
                    "Mambu publishes no maximum; {BULK_MAX_ITEMS} is the tool's stricter reading"
                )),
            );
            return None;
        }
        Some(size)
    }
}

/// Every action step of `steps`, depth first, in the order a unit runs them.
fn action_steps(steps: &[Step]) -> Vec<&ActionStep> {
    fn visit<'a>(steps: &'a [Step], out: &mut Vec<&'a ActionStep>) {
        for step in steps {
            match step {
                Step::Action(a) => out.push(a),
                Step::ForEach(g) => visit(&g.steps, out),
            }
        }
    }
    let mut out = Vec::new();
    visit(steps, &mut out);
    out
}

/// Later steps that use a bulk step's outputs, as (key path, message, hint): a bulk step has
/// none (its outcome is known only once its bulk is processed, after the unit's later steps).
fn bulk_references(steps: &[&ActionStep]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (i, bulk) in steps.iter().enumerate().filter(|(_, s)| s.bulk.is_some()) {
        let name = format!("steps.{}", bulk.id);
        for later in &steps[i + 1..] {
            let uses = super::refs::template_strings(later).iter().any(|t| {
                t.match_indices(&name).any(|(at, _)| {
                    let before = t[..at].chars().next_back();
                    let after = t[at + name.len()..].chars().next();
                    !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                        && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            });
            if uses {
                out.push((
                    later.path.clone(),
                    format!(
                        "step `{}` uses `{name}`, a bulk deposit: it has no outputs",
                        later.id
                    ),
                    format!(
                        "its outcome is known only once its bulk is processed; post `{}` without `bulk` if later steps need it",
                        bulk.id
                    ),
                ));
            }
        }
    }
    out
}

impl ActionStep {
    /// The body (`None`: no body) with its lists built from child rows taken out, and those
    /// lists ([`super::lists`]); malformed ones were reported by `check` and are left out.
    pub fn split_body(&self) -> (Option<Value>, Vec<BodyList>) {
        match &self.body {
            Some(body) => {
                let (plain, lists, _) = super::lists::split(body, &format!("{}.body", self.path));
                (Some(plain), lists)
            }
            None => (None, Vec::new()),
        }
    }
}

impl Plan {
    /// Every action step, depth first, in the order a unit runs them.
    pub fn action_steps(&self) -> Vec<&ActionStep> {
        action_steps(&self.steps)
    }

    /// The plan's sources as one tree under the unit source; an error naming every problem
    /// (`plan validate` reports them one by one).
    pub fn source_tree(&self) -> anyhow::Result<crate::source::Sources> {
        crate::source::Sources::new(self.sources.clone(), &self.unit).map_err(|problems| {
            anyhow::anyhow!(
                "the sources do not form one tree: {}",
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
    }

    /// The request POSTs a lost reply could make twice: those without `adopt`. Mambu takes
    /// their Idempotency-Key, but how long it keeps one is not documented
    /// (`../shared/mambu-api.md` §3): a retry or resume after that makes a duplicate unless the
    /// run can read back what the first attempt made. Each as (key path, message, hint).
    pub fn unsafe_requests(&self) -> Vec<(String, String, String)> {
        self.action_steps()
            .into_iter()
            .filter(|s| {
                s.action == Action::Request && s.method.as_deref() == Some("POST") && s.adopt.is_none()
            })
            .map(|s| {
                let unique = matches!(&s.body, Some(Value::Object(map))
                    if map.contains_key("id") || map.contains_key("externalId"));
                let message = format!(
                    "step `{}` POSTs {} with no `adopt`: a lost reply makes a duplicate, the \
                     Idempotency-Key alone protects a retry only while Mambu keeps the key, and \
                     Mambu does not document for how long",
                    s.id,
                    s.request_path.as_deref().unwrap_or("?")
                );
                let mut hint = "declare `adopt:` (on: the errorReason Mambu answers for a \
                                duplicate, get: where to read what exists, e.g. \
                                `adopt: { on: [EXTERNAL_ID_ALREADY_EXISTS], get: \"/…?externalId=…\", pick: \"[0]\" }`)"
                    .to_owned();
                if !unique {
                    hint.push_str(
                        "; and give the body a unique `id` or `externalId`: without one Mambu \
                         cannot tell a replay from a new record",
                    );
                }
                (s.path.clone(), message, hint)
            })
            .collect()
    }

    /// What makes a bulk deposit unsafe or wrong, as (key path, message, hint): an item with
    /// no `externalId` of its own (after a lost reply the run finds what a bulk posted by its
    /// externalId; the one the run would make up depends on the plan's name and the step's
    /// place, so a renamed plan or a moved step would post it again), and an item with a
    /// `valueDate` or `bookingDate`, which the bulk endpoint does not take.
    pub fn bulk_problems(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for step in self.action_steps().into_iter().filter(|s| s.bulk.is_some()) {
            let body = step.body.as_ref().and_then(Value::as_object);
            if !body.is_some_and(|b| b.contains_key("externalId")) {
                out.push((
                    if body.is_some() { format!("{}.body", step.path) } else { step.path.clone() },
                    format!(
                        "bulk deposit `{}` has no `externalId`: after a lost reply or a kill, what a bulk posted is found again by its items' externalIds",
                        step.id
                    ),
                    "give each item a unique `externalId` from the source, e.g. `externalId: \"OPEN-{{ deposits.deposit_id }}\"`".into(),
                ));
            }
            for field in ["valueDate", "bookingDate"] {
                if body.is_some_and(|b| b.contains_key(field)) {
                    out.push((
                        format!("{}.body.{field}", step.path),
                        format!(
                            "bulk deposit `{}` gives a `{field}`: Mambu's bulk endpoint takes none (its items post at the tenant's current date)",
                            step.id
                        ),
                        "remove it (an opening balance as of the cutover), or post a backdated history without `bulk`, one deposit per call".into(),
                    ));
                }
            }
        }
        out
    }

    /// The source definition by name.
    pub fn source(&self, name: &str) -> Option<&SourceDef> {
        self.sources.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::load::load_str;

    fn checked(text: &str) -> Result<Plan, Vec<String>> {
        let loaded = load_str(Path::new("p.yaml"), text)
            .map_err(|p| p.iter().map(|p| p.to_string()).collect::<Vec<_>>())?;
        check(&loaded, &[]).map_err(|p| {
            p.iter()
                .map(|p| {
                    format!(
                        "{}:{} {} | {}",
                        p.at.line,
                        p.at.column,
                        p.message,
                        p.hint.clone().unwrap_or_default()
                    )
                })
                .collect()
        })
    }

    const SOURCES: &str = "version: 1\nname: t\nsources:\n  clients: { file: c.csv, key: id }\n  loans: { file: l.csv, key: id, parent: clients.client_id }\n  txns: { file: t.csv, key: id, parent: loans.loan_id }\nunit: clients\n";

    #[test]
    fn defaults_fill_the_loan_of_later_steps() {
        let plan = checked(&format!(
            "{SOURCES}steps:\n  - id: client\n    action: create_client\n    body: {{ firstName: a, lastName: b }}\n  - for_each: loans\n    steps:\n      - id: loan\n        action: create_loan\n        body: {{ accountHolderKey: k, accountHolderType: CLIENT, loanAmount: 1, productTypeKey: p, scheduleSettings: {{ gracePeriod: 0 }} }}\n      - id: approve\n        action: approve_loan\n"
        ))
        .unwrap();
        let steps = plan.action_steps();
        assert_eq!(steps.len(), 3);
        assert_eq!(
            steps[2].loan.as_deref(),
            Some("{{ steps.loan.encodedKey }}")
        );
        assert_eq!(steps[2].body.as_ref().unwrap()["action"], "APPROVE");
        assert_eq!(steps[2].scope, ["clients", "loans"]);
    }

    #[test]
    fn structural_problems_are_all_reported_in_order() {
        let problems = checked(&format!(
            "{SOURCES}steps:\n  - id: client\n    action: create_clients\n  - for_each: txns\n    steps:\n      - id: loan\n        action: create_loan\n        body: {{ accountHolderType: CLIENT }}\n  - id: approve\n    action: approve_loan\n"
        ))
        .unwrap_err();
        assert_eq!(
            problems,
            [
                "10:5 unknown action `create_clients` | did you mean `create_client`?",
                "11:5 for_each `txns` is not a child of `clients` | children of `clients`: loans",
                "15:9 create_loan needs `accountHolderKey` in its body: Mambu's API requires it | add `accountHolderKey` to the body",
                "15:9 create_loan needs `loanAmount` in its body: Mambu's API requires it | add `loanAmount` to the body",
                "15:9 create_loan needs `productTypeKey` in its body: Mambu's API requires it | add `productTypeKey` to the body",
                "15:9 create_loan needs `scheduleSettings` in its body: Mambu's API requires it | add `scheduleSettings` to the body",
                "16:5 approve_loan needs a loan: no create_loan step comes before it | add a create_loan step before it, or say `loan: \"{{ ... }}\"`",
            ]
        );
    }

    #[test]
    fn body_lists_are_checked_where_they_are() {
        let problems = checked(&format!(
            "{SOURCES}steps:\n  - id: client\n    action: create_client\n    body:\n      firstName: a\n      lastName: b\n      idDocuments:\n        for_each: lons\n        item: {{ documentId: x }}\n      addresses:\n        for_each: txns\n        item: {{ line1: x }}\n      other:\n        for_each: loans\n        item: \"{{{{ loans.id }}}}\"\n      more:\n        for_each: loans\n        items: {{ a: 1 }}\n"
        ))
        .unwrap_err();
        assert_eq!(
            problems,
            [
                "15:9 for_each names `lons`, which is not a source | did you mean `loans`?",
                "18:9 for_each `txns` is not a child of `clients` | children of `clients`: loans",
                "22:9 the item must be a map of fields | e.g. `item: { documentType: \"{{ documents.type }}\" }`",
                "23:7 the list built with for_each `loans` has no `item` | add `item:`, the map each row renders",
                "25:9 unknown key `items` in a list built with for_each | did you mean `item`?",
            ]
        );
        // A nested list's source is a child of its enclosing list's; the loader lets the keys in.
        let plan = checked(&format!(
            "{SOURCES}steps:\n  - id: client\n    action: create_client\n    body:\n      firstName: a\n      lastName: b\n      loans:\n        for_each: loans\n        item:\n          txns: {{ for_each: txns, when: \"txns.id != ''\", item: {{ id: \"{{{{ txns.id }}}}\" }} }}\n"
        ))
        .unwrap();
        let (plain, lists) = plan.action_steps()[0].split_body();
        assert_eq!(
            plain.unwrap(),
            serde_json::json!({ "firstName": "a", "lastName": "b" })
        );
        assert_eq!(lists[0].lists[0].source, "txns");
        let problems = checked(&format!(
            "{SOURCES}steps:\n  - id: client\n    action: create_client\n    body:\n      firstName: a\n      lastName: b\n      loans:\n        for_each: loans\n        item:\n          x: {{ for_each: loans, item: {{ id: 1 }} }}\n"
        ))
        .unwrap_err();
        assert_eq!(
            problems,
            ["17:16 for_each `loans` is not a child of `loans` | children of `loans`: txns"]
        );
    }

    #[test]
    fn adopt_is_checked_where_it_is() {
        let problems = checked(&format!(
            "{SOURCES}steps:\n  - id: client\n    action: create_client\n    body: {{ firstName: a, lastName: b }}\n    adopt: {{ on: [X], get: /x }}\n  - id: guarantee\n    action: request\n    method: POST\n    path: /g\n    adopt:\n      on: [CLIENT_ID_ALREADY_INUSE, not a reason, EXTERNAL_ID_ALREADY_EXISTS]\n      get: clients/x\n      pick: \"[0\"\n  - id: look\n    action: request\n    method: GET\n    path: /g\n    adopt: {{ on: [], get: /g }}\n"
        ))
        .unwrap_err();
        assert_eq!(
            problems,
            [
                "12:5 `adopt` is for request steps; create_client adopts what exists by itself | remove it",
                "18:12 `CLIENT_ID_ALREADY_INUSE` is not an errorReason Mambu answers | did you mean `CLIENT_ID_ALREADY_IN_USE`?",
                "18:37 `not a reason` is not an errorReason | an errorReason as Mambu writes it, e.g. CLIENT_ID_ALREADY_IN_USE",
                "19:7 `clients/x` must start with / | a path under the API base, e.g. /clients/{{ clients.client_id }}",
                "20:7 `[0` is not a path into the answer | dotted fields and [index]es: `[0]` (a list's first item), `content[0]`, `data.client`",
                "25:5 a GET makes nothing: there is nothing to adopt | remove it, or give the step the method that makes something",
                "25:14 `on` lists no errorReason: no refusal would be adopted | list the errorReasons Mambu answers for a duplicate, e.g. [CLIENT_ID_ALREADY_IN_USE] or [EXTERNAL_ID_ALREADY_EXISTS]",
            ]
        );
        // An unknown key under `adopt` is the loader's, with a suggestion.
        let text = format!(
            "{SOURCES}steps:\n  - id: g\n    action: request\n    method: POST\n    path: /g\n    adopt: {{ on: [A], get: /g, pik: \"[0]\" }}\n"
        );
        let problems = load_str(Path::new("p.yaml"), &text).unwrap_err();
        assert_eq!(problems[0].message, "unknown key `pik`");
        assert_eq!(problems[0].hint.as_deref(), Some("did you mean `pick`?"));
        assert_eq!((problems[0].at.line, problems[0].at.column), (13, 32));
    }

    #[test]
    fn request_posts_without_adopt_are_unsafe() {
        let plan = checked(&format!(
            "{SOURCES}steps:\n  - id: a\n    action: request\n    method: post\n    path: /a\n    body: {{ id: x }}\n  - id: b\n    action: request\n    method: POST\n    path: /b\n    body: {{ name: x }}\n  - id: c\n    action: request\n    method: POST\n    path: /c\n    adopt: {{ on: [EXTERNAL_ID_ALREADY_EXISTS], get: \"/c?externalId={{{{ clients.id }}}}\", pick: \"[0]\" }}\n  - id: d\n    action: request\n    method: PUT\n    path: /d\n"
        ))
        .unwrap();
        let found = plan.unsafe_requests();
        let paths: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(paths, ["steps[0]", "steps[1]"]);
        assert!(
            found[0]
                .1
                .starts_with("step `a` POSTs /a with no `adopt`: a lost reply makes a duplicate"),
            "{}",
            found[0].1
        );
        assert!(!found[0].2.contains("unique `id`"));
        assert!(
            found[1]
                .2
                .contains("give the body a unique `id` or `externalId`")
        );
        let adopt = plan.action_steps()[2].adopt.clone().unwrap();
        assert_eq!(adopt.pick.as_deref(), Some("[0]"));
    }

    #[test]
    fn names_personal_columns() {
        assert!(
            personal_by_name("first_name")
                && personal_by_name("birth_date")
                && personal_by_name("Email")
                && personal_by_name("national_id")
        );
        assert!(!personal_by_name("amount") && !personal_by_name("loan_id"));
    }
}
