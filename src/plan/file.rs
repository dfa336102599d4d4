//! What the user typed: the plan file's serde types (`deny_unknown_fields` everywhere, no
//! `flatten`), also the source of the plan's JSON Schema (`mambu-migrate plan schema`).
//!
//! [`super::check`] turns a [`PlanFile`] into a checked [`super::check::Plan`], collecting every
//! problem with its line and column.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A migration plan.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// The plan language version: 1.
    pub version: u32,
    /// Names the run (default run directory `runs/<name>/`) and seeds idempotency keys: keep it
    /// stable between a run and its resume.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `sandbox` (the embedded simulator) or a tenant. Credentials come from the environment,
    /// never from this file.
    #[serde(default)]
    pub target: TargetFile,
    /// The tenant's time zone, an IANA name (`Europe/Lisbon`: each date gets the offset in force
    /// on it, daylight saving included, as Mambu requires), or a fixed UTC offset (`+01:00`):
    /// what the `datetime` filter gives dates without an offset.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub error_budget: ErrorBudgetFile,
    /// Tables read from the tenant before the first unit, addressed in templates as
    /// `lookups.<name>[<key>]`, e.g. product ids to their encodedKeys.
    #[serde(default)]
    pub lookups: BTreeMap<String, LookupFile>,
    /// The CSV files, by name.
    pub sources: BTreeMap<String, SourceFile>,
    /// The root source: one unit per row (its children hang under it).
    pub unit: String,
    /// The steps each unit goes through, in order.
    pub steps: Vec<StepFile>,
}

fn default_timezone() -> String {
    "+00:00".to_owned()
}

/// `sandbox`, the embedded sandbox serving a tenant profile, or a tenant's base URL with where
/// to find its credentials.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum TargetFile {
    /// `sandbox`: the embedded sandbox serving the built-in lenient tenant.
    Name(String),
    Tenant(TenantFile),
    Sandbox(SandboxTargetFile),
}

/// The embedded sandbox serving a tenant profile (`fixtures/tenants/strict.yaml`), calling as
/// the profile's users.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SandboxTargetFile {
    /// The tenant profile, relative to the plan file.
    pub sandbox: PathBuf,
    /// The profile's user that makes the calls; default: its first user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The profile's user that approves loans (four-eyes: not the one that created them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
}

impl Default for TargetFile {
    fn default() -> Self {
        TargetFile::Name("sandbox".to_owned())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    /// e.g. `https://acme.sandbox.mambu.com/api`.
    pub base_url: String,
    #[serde(default)]
    pub auth: AuthFile,
    /// A second user's credentials, used for the approval steps of products with four-eyes
    /// approval (the user who approves must not be the one who created the account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<ApproverAuthFile>,
}

/// Names of environment variables holding the approving user's credentials (never the
/// credentials). `approver: {}` takes the defaults.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApproverAuthFile {
    #[serde(default = "default_approver_api_key_env")]
    pub api_key_env: String,
    #[serde(default = "default_approver_username_env")]
    pub username_env: String,
    #[serde(default = "default_approver_password_env")]
    pub password_env: String,
}

fn default_approver_api_key_env() -> String {
    "MAMBU_APPROVER_API_KEY".to_owned()
}
fn default_approver_username_env() -> String {
    "MAMBU_APPROVER_USERNAME".to_owned()
}
fn default_approver_password_env() -> String {
    "MAMBU_APPROVER_PASSWORD".to_owned()
}

/// Names of environment variables holding the credentials (never the credentials).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    #[serde(default = "default_api_key_env")]
    pub api_key_env: String,
    #[serde(default = "default_username_env")]
    pub username_env: String,
    #[serde(default = "default_password_env")]
    pub password_env: String,
}

impl Default for AuthFile {
    fn default() -> Self {
        Self {
            api_key_env: default_api_key_env(),
            username_env: default_username_env(),
            password_env: default_password_env(),
        }
    }
}

fn default_api_key_env() -> String {
    "MAMBU_API_KEY".to_owned()
}
fn default_username_env() -> String {
    "MAMBU_USERNAME".to_owned()
}
fn default_password_env() -> String {
    "MAMBU_PASSWORD".to_owned()
}

/// How hard the tenant may be driven.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Calls per second across all units (the tenant's agreed rate).
    #[serde(default = "default_rps")]
    pub requests_per_second: f64,
    /// Calls allowed at once above the rate; default: one second's worth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Units in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Per call, from sending to the last byte of the answer.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    #[serde(default)]
    pub retry: RetryFile,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            requests_per_second: default_rps(),
            burst: None,
            concurrency: default_concurrency(),
            timeout_seconds: default_timeout(),
            retry: RetryFile::default(),
        }
    }
}

fn default_rps() -> f64 {
    10.0
}
fn default_concurrency() -> u32 {
    8
}
fn default_timeout() -> f64 {
    30.0
}

/// Retries of transient failures (connection errors, timeouts, 429, 5xx, 409).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    /// Attempts per call, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    /// When a call gets no answer, or only 502, 503, 504 or 429, through all its attempts
    /// (Mambu or the network is down), it goes on trying every `max_backoff_ms` for up to this
    /// long from its first attempt before the run stops (resumably): a short outage in the
    /// night costs its minutes, not the rest of the window. 0: stop at once.
    #[serde(default = "default_outage_wait")]
    pub outage_wait_seconds: u64,
}

impl Default for RetryFile {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            initial_backoff_ms: default_initial_backoff(),
            max_backoff_ms: default_max_backoff(),
            outage_wait_seconds: default_outage_wait(),
        }
    }
}

fn default_attempts() -> u32 {
    8
}
fn default_initial_backoff() -> u64 {
    250
}
fn default_max_backoff() -> u64 {
    30_000
}
fn default_outage_wait() -> u64 {
    600
}

/// When to stop the run (resumably) because too much is failing.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErrorBudgetFile {
    /// Share of failed units, checked once `min_units` have finished.
    #[serde(default = "default_error_rate")]
    pub max_error_rate: f64,
    #[serde(default = "default_min_units")]
    pub min_units: u64,
    /// Units failing in a row.
    #[serde(default = "default_consecutive")]
    pub max_consecutive_failures: u64,
}

impl Default for ErrorBudgetFile {
    fn default() -> Self {
        Self {
            max_error_rate: default_error_rate(),
            min_units: default_min_units(),
            max_consecutive_failures: default_consecutive(),
        }
    }
}

fn default_error_rate() -> f64 {
    0.10
}
fn default_min_units() -> u64 {
    50
}
fn default_consecutive() -> u64 {
    10
}

/// A table read once from the tenant: `GET path`, a list of objects, `key` field → `value` field.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LookupFile {
    /// e.g. `/loanproducts`.
    pub path: String,
    #[serde(default = "default_lookup_key")]
    pub key: String,
    #[serde(default = "default_lookup_value")]
    pub value: String,
    /// A list inside each item (a dotted path, e.g. `feesSettings.fees` of a loan product):
    /// the table then maps each item's `key` to a table of that list's items, their `key` to
    /// their `value`, read as `lookups.fees[loans.product_id]['LEGACY-FEE']`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<String>,
}

fn default_lookup_key() -> String {
    "id".to_owned()
}
fn default_lookup_value() -> String {
    "encodedKey".to_owned()
}

/// One CSV file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Relative to the plan file; `--source NAME=PATH` overrides it.
    pub file: PathBuf,
    /// The column that identifies a row (unique in the file).
    pub key: String,
    /// `source.column`: the parent source, and the column of this file that holds the parent's
    /// key (e.g. `loans.loan_id` when this file's `loan_id` column names a loan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Rows of one parent are taken in this order (typed columns compare as their type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_by: Vec<String>,
    /// One character: `,` (default), `;`, `|` or a tab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// Columns holding personal data, beyond those detected by name (name, birth, email,
    /// phone, address, document ids): never shown in logs, reports or the terminal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub personal: Vec<String>,
    /// Declared types and rules of columns; undeclared columns are text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, ColumnFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColumnFile {
    #[serde(rename = "type", default)]
    pub kind: ColumnKind,
    /// chrono format of a date or datetime column, e.g. `%d/%m/%Y`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// An empty cell is a problem.
    #[serde(default)]
    pub required: bool,
    /// A number must be above zero (Mambu refuses zero or negative amounts).
    #[serde(default)]
    pub positive: bool,
    /// Override the detection of personal data by column name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    #[default]
    Text,
    Decimal,
    Int,
    Date,
    Datetime,
    Bool,
}

/// A step: either an `action` (one API call, or a few for compound actions), or a `for_each`
/// group of steps run once per child row.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// Names the step: its outputs are `steps.<id>.<field>` in later templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A built-in action (create_client, create_group, create_deposit, approve_deposit, create_loan,
    /// approve_loan, link_settlement_account, edit_schedule, disburse_loan, apply_fee,
    /// post_repayment) or `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// A child source: the nested `steps` run once per row of it under the current row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepFile>>,
    /// An expression; the step (or group) runs only when it is true, e.g.
    /// `loans.settlement_deposit_id != ''`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The request body: a template whose whole-`{{ }}` values render to typed JSON. A field
    /// may be a list built from child rows: `{ for_each: SOURCE, when: COND, item: { ... } }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub body: Option<Value>,
    /// The loan the action works on (id or encodedKey); default: the last `create_loan` step's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loan: Option<String>,
    /// The deposit: the settlement account to link, or the deposit `approve_deposit` approves;
    /// default for approve_deposit: the last `create_deposit` step's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit: Option<String>,
    /// edit_schedule: the source whose rows are the installments, and how each renders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installments: Option<InstallmentsFile>,
    /// request: the HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// request: the path under the API base, a template (e.g. `/clients/{{ steps.client.id }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// request: how to adopt what already exists when Mambu refuses the call because of it (a
    /// replay after a lost reply, a resume): on one of these errorReasons, GET this path and
    /// take the step's outputs from what it answers. A request POST without it is flagged by
    /// `plan validate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<AdoptFile>,
    /// Outputs to keep from the answer: name → dotted field path (e.g. `accountState`).
    /// `id` and `encodedKey` are always kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub save: BTreeMap<String, String>,
    /// deposit: post through Mambu's bulk endpoint (`POST /deposits/deposit-transactions:bulk`)
    /// in bulks of `size` items gathered across units, instead of one call per deposit. A bulk
    /// item takes no valueDate or bookingDate (it posts at the tenant's current date): for
    /// opening balances as of the cutover, not for a backdated history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk: Option<BulkFile>,
    /// An update for catch-up runs (`run --catch-up`): the step runs only there, once for each
    /// row of its source (the innermost for_each's, else the unit's) in which one of these
    /// columns changed since the extract the run last migrated (e.g. a `request` PATCHing the
    /// client's contact details when `phone` or `email` changed). A first migration never runs
    /// it; a change no update names is left for a person in `drift.csv`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_change: Vec<String>,
}

/// A deposit step's `bulk`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BulkFile {
    /// Items per bulk (1 to 1,000; default 500). The last bulk takes what remains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
}

/// A request step's adoption: which refusals say "it already exists", and where to read it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdoptFile {
    /// The errorReasons Mambu answers when what the call makes exists already, e.g.
    /// `[CLIENT_ID_ALREADY_IN_USE]` or `[EXTERNAL_ID_ALREADY_EXISTS]`; any other refusal stands.
    pub on: Vec<String>,
    /// The path to GET what exists, under the API base: a template rendered like the step's
    /// `path` (e.g. `/clients/{{ clients.client_id }}`).
    pub get: String,
    /// Where the entity is in the GET's answer: dotted fields and `[index]`es, e.g. `[0]` (a
    /// list's first item); default: the answer itself. Not found (404, an empty list, no such
    /// field): the refusal stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<String>,
}

/// edit_schedule's installments: one per row of `from`, in its order, paired by position with
/// the schedule Mambu generated.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstallmentsFile {
    pub from: String,
    #[serde(rename = "dueDate")]
    pub due_date: String,
    pub principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
}

/// The plan's JSON Schema, for editors with a YAML language server.
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(PlanFile)).unwrap_or(Value::Null)
}
