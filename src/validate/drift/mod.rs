//! Stale-tenant detection (issue 19): what a plan uses of the tenant's configuration, recorded
//! when it is validated or run against it, and compared when it runs again.
//!
//! A [`Snapshot`] holds exactly the configuration items the tool reads for the plan, each
//! named: the items of every list the plan's lookups read (`loan product PL-STD` with the
//! settings `plan validate` checks, `branch BR-LIS` with the key the plan takes, `deposit product
//! CA-STD`), the custom field definitions of the entities the plan creates (`custom field
//! _Client_Details.employment_status`, `custom field set _Client_Details`), and the `time zone`.
//! No personal data and no credentials: product settings, keys and definitions only. It is
//! read with the readers `plan validate --target` uses (the lookups' lists, the organization
//! setup, the custom field sets) and fingerprinted (SHA-256 of its items' JSON, keys sorted).
//!
//! Where it is kept (see README, "A tenant that changed since the rehearsal"):
//! - the **tenant record** `<runs>/.tenants/<plan name>@<tenant>.json`, `<runs>` being the
//!   run directory's parent (`runs/` by default, and for `plan validate`), or the folder
//!   `MAMBU_MIGRATE_TENANT_RECORDS` names, or the file `--tenant-record` names: what the plan
//!   was last rehearsed (validated or run) against. A new run compares with it.
//! - the run's own `tenant.json` in its run directory: what the run started with. `--resume`
//!   compares with it.
//!
//! The tenant is its host for a real tenant (`acme.mambu.com`), and its organization's name for
//! a sandbox (`sandbox-strict-lisbon-bank`: the embedded one, or a `mambu-migrate sandbox`
//! process on loopback, whose port changes from one start to the next).

mod diff;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use diff::{Change, Edit, diff};

use super::custom_fields::{self, Definitions};
use crate::plan::check::Plan;
use crate::plan::refs;
use crate::target::Where;

/// The environment variable naming the folder of tenant records (instead of `.tenants/`
/// beside the run directories).
pub const RECORDS_ENV: &str = "MAMBU_MIGRATE_TENANT_RECORDS";

/// The run directory's copy of the snapshot the run started with.
pub const RUN_RECORD: &str = "tenant.json";

/// A loan product's settings that the plan's checks read (`../shared/mambu-api.md` §8):
/// limits, schedule and its edit options, interest, fees, prepayments, four-eyes, account links,
/// who may hold its accounts, tranches.
const LOAN_PRODUCT_SETTINGS: &[&str] = &[
    "encodedKey",
    "type",
    "state",
    "currency",
    "loanAmountSettings",
    "scheduleSettings",
    "interestSettings",
    "feesSettings",
    "paymentSettings",
    "fourEyesPrinciple",
    "accountLinkSettings",
    "availabilitySettings",
    "trancheSettings",
];

/// A deposit product's settings a deposit's creation and transactions meet.
const DEPOSIT_PRODUCT_SETTINGS: &[&str] = &[
    "encodedKey",
    "type",
    "state",
    "currency",
    "currencySettings",
    "availabilitySettings",
    "maxWithdrawalAmount",
    "overdraftSettings",
];

/// What the plan uses of a tenant, as it was at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The plan's name.
    pub plan: String,
    /// Who the tenant is (see [`identity`]).
    pub tenant: String,
    /// `plan validate`, or `run <run dir> (attempt N)`.
    pub recorded_by: String,
    /// RFC 3339.
    pub recorded_at: String,
    /// `sha256:` and the hex digest of `items` (keys sorted).
    pub fingerprint: String,
    /// Each item by its name (`loan product PL-STD`), its JSON normalized (keys sorted).
    pub items: BTreeMap<String, Value>,
}

/// Who a tenant is: its host, or for a sandbox (the embedded one, or one on loopback) its
/// organization's name as `GET /setup/organization` gives it (`institutionName`).
pub fn identity(place: &Where, organization: &Value) -> String {
    if let Where::Url(url) = place
        && let Some(host) = crate::run::guard::host(url)
        && !crate::run::guard::is_loopback(&host)
    {
        return host;
    }
    let name = organization
        .get("institutionName")
        .and_then(Value::as_str)
        .unwrap_or("unnamed");
    format!("sandbox-{}", slug(name))
}

/// Lowercase letters, digits, dots and dashes: safe in a file name.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// What the items of a lookup's list are called: `/loanproducts` gives `loan product`.
fn kind_of(path: &str) -> String {
    let base = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    match base {
        "/loanproducts" => "loan product".to_owned(),
        "/depositproducts" => "deposit product".to_owned(),
        "/branches" => "branch".to_owned(),
        "/centres" => "centre".to_owned(),
        other => other.trim_start_matches('/').to_owned(),
    }
}

/// `value` with every map's keys in order (whatever order the reader kept).
fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), normalized(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

impl Snapshot {
    /// The snapshot of what was read: the lookups' lists (lookup name, items), the zone's IANA
    /// id, the custom field definitions of the entities the plan creates (`None`: it creates
    /// none).
    pub(super) fn build(
        plan: &Plan,
        tenant: String,
        lists: &[(String, Vec<Value>)],
        zone: &str,
        definitions: Option<&Definitions>,
    ) -> Snapshot {
        let mut items: BTreeMap<String, Value> = BTreeMap::new();
        for (name, list) in lists {
            let Some(lookup) = plan.settings.lookups.get(name) else {
                continue;
            };
            let kind = kind_of(&lookup.path);
            let settings = match kind.as_str() {
                "loan product" => Some(LOAN_PRODUCT_SETTINGS),
                "deposit product" => Some(DEPOSIT_PRODUCT_SETTINGS),
                _ => None,
            };
            for entry in list {
                let Some(key) = entry.get(&lookup.key).and_then(Value::as_str) else {
                    continue;
                };
                let item = items
                    .entry(format!("{kind} {key}"))
                    .or_insert_with(|| json!({}));
                let Value::Object(item) = item else { continue };
                let fields: Vec<&str> = match settings {
                    Some(settings) => settings.to_vec(),
                    None => vec![lookup.value.as_str(), "state"],
                };
                for field in fields {
                    if let Some(value) = entry.get(field) {
                        item.insert(field.to_owned(), value.clone());
                    }
                }
                if let Some(each) = &lookup.each
                    && settings.is_none()
                {
                    let table = crate::target::lookup_table(std::slice::from_ref(entry), lookup);
                    if let Some(inner) = table.get(key) {
                        item.insert(each.clone(), inner.clone());
                    }
                }
            }
        }
        for sets in definitions.into_iter().flat_map(|d| d.by_entity.values()) {
            for set in sets {
                let shape = if set.grouped { "GROUPED" } else { "STANDARD" };
                items.insert(
                    format!("custom field set {}", set.id),
                    json!({ "availableFor": set.available_for, "fieldSetType": shape }),
                );
                for field in &set.fields {
                    items.insert(
                        format!("custom field {}.{}", set.id, field.id),
                        json!({
                            "availableFor": set.available_for,
                            "type": field.kind,
                            "required": field.required,
                            "options": field.options,
                            "validationPattern": field.pattern,
                        }),
                    );
                }
            }
        }
        items.insert("time zone".to_owned(), Value::String(zone.to_owned()));
        let items: BTreeMap<String, Value> = items
            .into_iter()
            .map(|(k, v)| (k, normalized(&v)))
            .collect();
        let bytes = serde_json::to_vec(&items).unwrap_or_default();
        Snapshot {
            plan: plan.name.clone(),
            tenant,
            recorded_by: String::new(),
            recorded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            fingerprint: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            items,
        }
    }

    /// Reads the snapshot from the tenant, as `plan validate --target` reads each part.
    pub async fn read(
        session: &crate::mambu::Session,
        plan: &Plan,
        place: &Where,
    ) -> Result<Snapshot, String> {
        let lists = crate::target::read_lookup_lists(session, plan)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let organization = crate::target::organization(session).await?;
        let zone = crate::target::zone_of(&organization)?;
        let entities = custom_fields::entities(plan);
        let definitions = if entities.is_empty() {
            None
        } else {
            Some(super::tenant::read_custom_fields(session, &entities).await?)
        };
        Ok(Snapshot::build(
            plan,
            identity(place, &organization),
            &lists,
            zone.name(),
            definitions.as_ref(),
        ))
    }

    /// The record at `path`, if there is one.
    pub fn load(path: &Path) -> anyhow::Result<Option<Snapshot>> {
        use anyhow::Context as _;
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("reading the tenant record {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the record to `path` (owner-only), its folder made if need be.
    pub fn save(&self, path: &Path, recorded_by: &str) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::files::create_private_dir(dir)?;
        }
        let mut record = self.clone();
        record.recorded_by = recorded_by.to_owned();
        let mut text = serde_json::to_string_pretty(&record)?;
        text.push('\n');
        crate::files::write_private(path, text.as_bytes())
    }
}

/// Where the tenant record of `plan` against `tenant` is: `explicit` (`--tenant-record`), else
/// in the folder [`RECORDS_ENV`] names, else in `<runs>/.tenants/`.
pub fn record_path(explicit: Option<&Path>, runs: &Path, plan: &str, tenant: &str) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    let dir = std::env::var_os(RECORDS_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| runs.join(".tenants"));
    dir.join(format!("{}@{}.json", slug(plan), slug(tenant)))
}

/// What a change touches in the plan: its steps, and the source rows they run for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affected {
    /// Whether the plan uses the item at all: a change to an item no step reads, or that no
    /// row names, is not a reason to stop.
    pub used: bool,
    /// What it affects, in words: `steps loan, fee (lookups.loan_products); 23 rows of loans`.
    pub what: String,
}

/// A change with what it affects.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub change: Change,
    pub affected: Affected,
}

/// Finds what each change touches: the steps that read the item, and how many source rows
/// name it (the field scan `plan estimate` counts with; a file that cannot be read is not
/// counted).
pub struct Usage<'p> {
    plan: &'p Plan,
    refs: Vec<(String, String, String)>,
    /// (source, column) → rows per value.
    counted: HashMap<(String, String), HashMap<String, u64>>,
    /// source → rows.
    rows: HashMap<String, u64>,
}

impl<'p> Usage<'p> {
    pub fn new(plan: &'p Plan) -> Self {
        Usage {
            plan,
            refs: refs::lookup_references(plan).into_iter().collect(),
            counted: HashMap::new(),
            rows: HashMap::new(),
        }
    }

    /// Every change with what it affects.
    pub fn of(&mut self, changes: Vec<Change>, then: &Snapshot, now: &Snapshot) -> Vec<Found> {
        changes
            .into_iter()
            .map(|change| {
                let content = now
                    .items
                    .get(&change.item)
                    .or_else(|| then.items.get(&change.item));
                let affected = self.affected(&change.item, content);
                Found { change, affected }
            })
            .collect()
    }

    fn affected(&mut self, item: &str, content: Option<&Value>) -> Affected {
        if item == "time zone" {
            return Affected {
                used: true,
                what: format!(
                    "every date-time the plan sends (its timezone: {})",
                    self.plan.settings.timezone
                ),
            };
        }
        if item.starts_with("custom field ") {
            let entity = content
                .and_then(|c| c.get("availableFor"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_ascii_lowercase();
            let plan = self.plan;
            let steps: Vec<&crate::plan::check::ActionStep> = plan
                .action_steps()
                .into_iter()
                .filter(|s| custom_fields::entity(s.action) == Some(entity.as_str()))
                .collect();
            let mut what = steps_text(&steps, &format!("creates {entity}"));
            let mut sources: Vec<&str> = steps
                .iter()
                .filter_map(|s| s.scope.last().map(String::as_str))
                .collect();
            sources.dedup();
            for source in sources {
                if let Some(n) = self.source_rows(source) {
                    let _ = write!(what, "; {n} rows of {source}");
                }
            }
            return Affected {
                used: !steps.is_empty(),
                what,
            };
        }
        // An item of a lookup's list: `KIND KEY`.
        let tables: Vec<String> = self
            .plan
            .settings
            .lookups
            .iter()
            .filter(|(_, l)| item.starts_with(&format!("{} ", kind_of(&l.path))))
            .map(|(name, _)| name.clone())
            .collect();
        let Some(key) = tables.first().and_then(|t| {
            let kind = kind_of(&self.plan.settings.lookups[t].path);
            item.strip_prefix(&format!("{kind} "))
        }) else {
            return Affected {
                used: false,
                what: String::new(),
            };
        };
        let plan = self.plan;
        let steps: Vec<&crate::plan::check::ActionStep> = plan
            .action_steps()
            .into_iter()
            .filter(|s| {
                refs::template_strings(s)
                    .iter()
                    .any(|t| tables.iter().any(|table| names_lookup(t, table)))
            })
            .collect();
        let via: Vec<String> = tables.iter().map(|t| format!("lookups.{t}")).collect();
        let mut what = steps_text(&steps, &via.join(", "));
        // Rows that name the key, per source and column the tables are indexed with.
        let indexed: Vec<(String, String)> = {
            let mut v: Vec<(String, String)> = self
                .refs
                .iter()
                .filter(|(t, _, _)| tables.contains(t))
                .map(|(_, s, c)| (s.clone(), c.clone()))
                .collect();
            v.dedup();
            v
        };
        let mut named = 0u64;
        for (source, column) in &indexed {
            let n = self.rows_naming(source, column, key);
            if n > 0 {
                let _ = write!(what, "; {n} rows of {source} ({column} {key})");
            }
            named += n;
        }
        // Indexed by something else than a source's column (a literal key): used wherever a
        // step reads the table.
        let used = !steps.is_empty() && (indexed.is_empty() || named > 0);
        Affected { used, what }
    }

    fn source_rows(&mut self, source: &str) -> Option<u64> {
        if let Some(n) = self.rows.get(source) {
            return Some(*n);
        }
        let def = self.plan.source(source)?;
        let (records, _) = crate::source::count_records_of(&def.file, def.delimiter).ok()?;
        let n = records.saturating_sub(1);
        self.rows.insert(source.to_owned(), n);
        Some(n)
    }

    fn rows_naming(&mut self, source: &str, column: &str, key: &str) -> u64 {
        let index = (source.to_owned(), column.to_owned());
        if !self.counted.contains_key(&index) {
            let counts = self.count_values(source, column).unwrap_or_default();
            self.counted.insert(index.clone(), counts);
        }
        self.counted[&index].get(key).copied().unwrap_or(0)
    }

    /// Rows per value of a source's column, by the field scan.
    fn count_values(&self, source: &str, column: &str) -> Option<HashMap<String, u64>> {
        use crate::source::scan::{ScanSpec, Scanned, scan};
        let def = self.plan.source(source)?;
        let reader = crate::source::RowReader::open(def).ok()?;
        let header = reader.header();
        let position = header.position(column)?;
        let spec = ScanSpec::new(def.delimiter, header.len(), vec![position]);
        let progress = std::sync::atomic::AtomicU64::new(0);
        let (states, _) = scan(
            &def.file,
            &spec,
            &progress,
            HashMap::<String, u64>::new,
            |counts, scanned| {
                if let Scanned::Row { cells, .. } = scanned
                    && let Some(cell) = cells.first()
                {
                    *counts
                        .entry(String::from_utf8_lossy(cell).into_owned())
                        .or_default() += 1;
                }
            },
        )
        .ok()?;
        let mut total: HashMap<String, u64> = HashMap::new();
        for state in states {
            for (value, n) in state {
                *total.entry(value).or_default() += n;
            }
        }
        Some(total)
    }
}

/// Whether a template names `lookups.<table>` (not a longer name that starts the same).
fn names_lookup(text: &str, table: &str) -> bool {
    let needle = format!("lookups.{table}");
    text.match_indices(&needle).any(|(at, _)| {
        !text[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// `steps loan, fee (lookups.loan_products)`, or `no step` when none reads it.
fn steps_text(steps: &[&crate::plan::check::ActionStep], via: &str) -> String {
    if steps.is_empty() {
        return format!("no step ({via})");
    }
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    format!(
        "step{} {} ({via})",
        if ids.len() == 1 { "" } else { "s" },
        ids.join(", ")
    )
}

/// The comparison of a snapshot read now with a record.
pub struct Comparison {
    /// Changes to items the plan uses.
    pub used: Vec<Found>,
    /// Changes to items it does not (listed in run.log only).
    pub unused: Vec<Found>,
}

/// Compares `now` with the record `then`.
pub fn compare(plan: &Plan, then: &Snapshot, now: &Snapshot) -> Comparison {
    let changes = diff(&then.items, &now.items);
    let (used, unused) = Usage::new(plan)
        .of(changes, then, now)
        .into_iter()
        .partition(|f| f.affected.used);
    Comparison { used, unused }
}

/// The report of a run that refuses: every change, what it affects, and what to do.
pub fn render(found: &[Found], record: &Path, then: &Snapshot) -> String {
    let mut out = format!(
        "the tenant changed since {} recorded it ({}, {}): {} change{} to what the plan uses\n",
        if then.recorded_by.is_empty() {
            "the rehearsal"
        } else {
            then.recorded_by.as_str()
        },
        then.recorded_at,
        record.display(),
        found.len(),
        if found.len() == 1 { "" } else { "s" },
    );
    for f in found {
        for line in f.change.to_string().lines() {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "    affects: {}", f.affected.what);
    }
    out
}

/// What to do about a refusal.
pub const ACCEPT_HINT: &str = "nothing was sent. Check the plan against the tenant as it is now (`mambu-migrate plan validate PLAN --target TARGET`), then run again with --accept-tenant-changes to go on and record the tenant as it is";

/// How a run goes on after comparing the tenant with its records.
pub struct RunCheck<'a> {
    pub plan: &'a Plan,
    pub place: &'a Where,
    pub run_dir: &'a Path,
    /// `--resume` (or a reload) of a run that recorded something: compared with its own
    /// `tenant.json`.
    pub resuming: bool,
    pub accept: bool,
    /// `--tenant-record FILE`.
    pub record: Option<&'a Path>,
    /// `run <dir> (attempt N)`.
    pub recorded_by: String,
}

/// Reads the tenant, compares it with the run's record (resuming) or the rehearsal's (a new
/// run), and records it. `Ok(false)`: the plan's items changed and were not accepted; the
/// report is printed and nothing may be sent.
pub async fn check_run(
    session: &crate::mambu::Session,
    check: RunCheck<'_>,
) -> anyhow::Result<bool> {
    let now = match Snapshot::read(session, check.plan, check.place).await {
        Ok(now) => now,
        Err(why) => {
            eprintln!(
                "warning: the tenant's configuration cannot be read ({why}): it is neither compared with the rehearsal's nor recorded"
            );
            return Ok(true);
        }
    };
    let runs = check
        .run_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let rehearsal = record_path(check.record, runs, &check.plan.name, &now.tenant);
    let own = check.run_dir.join(RUN_RECORD);
    let baseline = if check.resuming && own.exists() {
        own.clone()
    } else {
        rehearsal.clone()
    };
    let mut changed = false;
    if let Some(then) = Snapshot::load(&baseline)?
        && then.fingerprint != now.fingerprint
    {
        let comparison = compare(check.plan, &then, &now);
        for f in &comparison.unused {
            tracing::info!(change = %f.change, "tenant change to an item the plan does not use");
        }
        changed = true;
        if !comparison.used.is_empty() {
            let report = render(&comparison.used, &baseline, &then);
            if !check.accept {
                eprintln!("error: {report}{ACCEPT_HINT}.");
                return Ok(false);
            }
            for f in &comparison.used {
                tracing::warn!(change = %f.change, affects = %f.affected.what, "tenant change accepted (--accept-tenant-changes)");
            }
            eprintln!(
                "note: {report}accepted (--accept-tenant-changes): going on, the changes are in run.log and the tenant is recorded as it is now"
            );
        }
    }
    if !check.resuming || changed || !own.exists() {
        now.save(&own, &check.recorded_by)?;
    }
    now.save(&rehearsal, &check.recorded_by)?;
    tracing::info!(record = %rehearsal.display(), fingerprint = %now.fingerprint, "tenant recorded");
    Ok(true)
}

/// The calls a run makes to record the tenant ([`Snapshot::read`]), for `plan estimate`:
/// counted by reading it when `target` is given (exact: a custom field set's fields are one GET
/// each), otherwise the least it takes, `false` (the organization, each lookup, and each entity's
/// custom field sets, the fields' definitions not counted).
pub fn record_reads(plan: &Plan, target: Option<&Where>) -> (u64, bool) {
    let least = 1 + plan.settings.lookups.len() as u64 + custom_fields::entities(plan).len() as u64;
    let Some(target) = target else {
        return (least, false);
    };
    let counted = crate::runtime().and_then(|runtime| {
        runtime.block_on(async {
            let connection =
                crate::target::connect(plan, target, std::time::Duration::from_secs(30)).await?;
            let reader = connection.reader(plan, None);
            let read = Snapshot::read(&reader, plan, target).await;
            connection.close().await;
            read.map_err(anyhow::Error::msg)?;
            Ok(reader.attempts())
        })
    });
    match counted {
        Ok(calls) => (calls, true),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "the tenant's configuration could not be read: its reads are estimated");
            (least, false)
        }
    }
}

/// `plan validate --target`: the changes since the record as warnings, and the record written
/// when there is none or nothing the plan uses changed (changes are accepted by a run, not by
/// validating).
pub(super) fn validate(
    plan: &Plan,
    tenant: &super::tenant::Tenant,
    record: Option<&Path>,
) -> Vec<super::Finding> {
    let (Some(lists), Some(zone), Some(identity)) = (&tenant.lists, tenant.zone, &tenant.identity)
    else {
        return Vec::new();
    };
    if tenant.custom_fields.is_none() && !custom_fields::entities(plan).is_empty() {
        // Unread (said as a finding): its items would look removed.
        return Vec::new();
    }
    let now = Snapshot::build(
        plan,
        identity.clone(),
        lists,
        zone.name(),
        tenant.custom_fields.as_ref(),
    );
    let path = record_path(record, Path::new("runs"), &plan.name, identity);
    let finding = |message: String, hint: Option<String>| {
        let mut f = super::Finding::new(
            super::Kind::Tenant,
            path.display().to_string(),
            None,
            message,
            hint,
        );
        f.warning = true;
        f
    };
    let then = match Snapshot::load(&path) {
        Ok(then) => then,
        Err(e) => return vec![finding(format!("{e:#}"), None)],
    };
    let mut out = Vec::new();
    if let Some(then) = then
        && then.fingerprint != now.fingerprint
    {
        let comparison = compare(plan, &then, &now);
        for f in &comparison.used {
            for line in f.change.to_string().lines() {
                out.push(finding(
                    format!(
                        "the tenant changed since {} recorded it ({}): {line}",
                        then.recorded_by, then.recorded_at
                    ),
                    Some(format!(
                        "affects {}; `run` refuses until it is told --accept-tenant-changes",
                        f.affected.what
                    )),
                ));
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
    if let Err(e) = now.save(&path, "plan validate") {
        out.push(finding(
            format!("the tenant record was not written: {e:#}"),
            None,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_tenant_is_its_host_and_a_sandbox_its_organizations_name() {
        let org = json!({ "institutionName": "Strict Lisbon bank", "timeZoneID": "Europe/Lisbon" });
        assert_eq!(
            identity(&Where::parse("https://acme.mambu.com/api"), &org),
            "acme.mambu.com"
        );
        assert_eq!(
            identity(&Where::parse("http://127.0.0.1:41234/api"), &org),
            "sandbox-strict-lisbon-bank"
        );
        assert_eq!(
            identity(&Where::Embedded, &org),
            "sandbox-strict-lisbon-bank"
        );
        assert_eq!(
            record_path(
                None,
                Path::new("runs"),
                "sample-migration",
                "acme.mambu.com"
            ),
            Path::new("runs/.tenants/sample-migration@acme.mambu.com.json")
        );
    }

    #[test]
    fn items_are_normalized_and_a_template_names_a_lookup_exactly() {
        let v = normalized(&json!({"b": 1, "a": {"d": [ {"z": 1, "y": 2} ], "c": 0}}));
        assert_eq!(v.to_string(), r#"{"a":{"c":0,"d":[{"y":2,"z":1}]},"b":1}"#);
        assert!(names_lookup(
            "{{ lookups.loan_products[loans.product_id] }}",
            "loan_products"
        ));
        assert!(!names_lookup(
            "{{ lookups.loan_products_old[x] }}",
            "loan_products"
        ));
        assert_eq!(kind_of("/branches?branchState=ACTIVE"), "branch");
        assert_eq!(slug("Strict Lisbon bank!"), "strict-lisbon-bank");
    }
}
