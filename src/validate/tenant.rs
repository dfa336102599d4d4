//! What `plan validate --target` reads of the tenant, and the checks that need it beyond the
//! loans' limits: fees, repayments, transaction order and approval against the settings of each
//! loan's product (`../shared/mambu-api.md` §8).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate};
use rust_decimal::Decimal;
use serde_json::Value;

use super::custom_fields::{self, Definitions, FieldDef, SetDef};
use super::{Finding, Findings, Found, Kind};
use crate::plan::action::Action;
use crate::plan::check::{ActionStep, Plan};
use crate::plan::compiled::Call;

/// The fields of the calls' bodies the checks read (create_loan's; every transaction's value
/// date, amount and fee key): `--target` renders only these (and the loan's id, and an
/// edit_schedule's installments), having checked the whole call as a plain validate does.
pub(super) const FIELDS: &[&str] = &[
    "/id",
    "/productTypeKey",
    "/loanAmount",
    "/scheduleSettings/repaymentInstallments",
    "/interestSettings/interestRate",
    "/disbursementDetails/firstRepaymentDate",
    "/valueDate",
    "/amount",
    "/predefinedFeeKey",
    "/guarantors",
    "/assets",
];

/// What the tenant told us: everything `--target` reads, read here and only here.
pub(super) struct Tenant {
    /// `{ table: { key: value } }`.
    pub(super) lookups: Value,
    /// The tenant's loan products, as `GET /loanproducts` answers them (every page), settings
    /// included (`feesSettings`, `paymentSettings.prepaymentSettings`, `fourEyesPrinciple`);
    /// `None` when they could not be read (said once, as a finding, rather than as every
    /// loan's unknown product).
    loan_products: Option<Vec<Value>>,
    /// The tenant's time zone (`GET /setup/organization`), when it could be read.
    pub(super) zone: Option<chrono_tz::Tz>,
    /// Today in the tenant's zone: a repayment dated later is a future payment. When the zone
    /// cannot be read, today where it is latest on Earth (UTC+14), so that no payment is taken
    /// for a future one that is not.
    today: NaiveDate,
    /// The tenant's custom field sets for the entities the plan creates (every page of
    /// `GET /customfieldsets?availableFor=…`, each field by `GET /customfields/{id}`); `None`
    /// when they could not be read (said once, as a finding).
    pub(super) custom_fields: Option<Definitions>,
    /// The lists the lookups were read from, and who the tenant is (see [`super::drift`]):
    /// what its record is made of. `None` when they could not be read.
    pub(super) lists: Option<Vec<(String, Vec<Value>)>>,
    pub(super) identity: Option<String>,
}

pub(super) fn read_tenant(plan: &Plan, target: &str, findings: &mut Findings) -> Tenant {
    let mut tenant = Tenant {
        lookups: Value::Null,
        loan_products: None,
        zone: None,
        today: (chrono::Utc::now() + chrono::Duration::hours(14)).date_naive(),
        custom_fields: None,
        lists: None,
        identity: None,
    };
    let runtime = match crate::runtime() {
        Ok(r) => r,
        Err(e) => {
            findings.list.push(Finding::new(
                Kind::Tenant,
                target,
                None,
                format!("cannot start the async runtime: {e}"),
                None,
            ));
            return tenant;
        }
    };
    runtime.block_on(async {
        let place = crate::target::Where::parse(target);
        let connection = match crate::target::connect(plan, &place, Duration::from_secs(30)).await {
            Ok(c) => c,
            Err(e) => {
                findings.list.push(Finding::new(
                    Kind::Tenant,
                    target,
                    None,
                    format!("{e:#}"),
                    None,
                ));
                return;
            }
        };
        let session = connection.reader(plan, None);
        match crate::target::read_lookup_lists(&session, plan).await {
            Ok(lists) => {
                tenant.lookups = crate::target::lookup_tables(plan, &lists);
                tenant.lists = Some(lists);
            }
            Err(e) => findings.list.push(Finding::new(
                Kind::Tenant,
                target,
                None,
                format!("{e:#}"),
                Some("check the lookup's path and the credentials".into()),
            )),
        }
        // The zone is read once: for the plan's offsets, and for "today" (future payments).
        let organization = crate::target::organization(&session).await;
        if let Ok(organization) = &organization {
            tenant.identity = Some(super::drift::identity(&place, organization));
        }
        match organization.and_then(|o| crate::target::zone_of(&o)) {
            Ok(zone) => {
                tenant.zone = Some(zone);
                tenant.today = chrono::Utc::now().with_timezone(&zone).date_naive();
                let plan_zone = crate::plan::template::Zone::parse(&plan.settings.timezone)
                    .unwrap_or(crate::plan::template::Zone::UTC);
                if let Err(message) = plan_zone.agrees_with(zone) {
                    findings.list.push(Finding::new(
                        Kind::Tenant,
                        target,
                        None,
                        message,
                        Some("every date-time must carry the offset the tenant's zone has at that instant".into()),
                    ));
                }
            }
            Err(why) => findings.list.push(Finding::new(
                Kind::Tenant,
                target,
                None,
                format!("the tenant's time zone cannot be read: {why}"),
                Some("check the credentials' permission to read the organization setup".into()),
            )),
        }
        let unread = match session.list("/loanproducts", &mut crate::mambu::Quiet).await {
            Ok(items) => {
                tenant.loan_products = Some(items);
                None
            }
            Err(e) => Some(e),
        };
        if let Some(problem) = unread {
            findings.list.push(Finding::new(
                Kind::Tenant,
                target,
                None,
                format!(
                    "{problem}: the loans' amounts, installments and interest rates were not checked against their products"
                ),
                Some("check the credentials' permission to read loan products, then validate again".into()),
            ));
        }
        let entities = custom_fields::entities(plan);
        if !entities.is_empty() {
            match read_custom_fields(&session, &entities).await {
                Ok(definitions) => tenant.custom_fields = Some(definitions),
                Err(problem) => findings.list.push(Finding::new(
                    Kind::Tenant,
                    target,
                    None,
                    format!(
                        "{problem}: the custom field values were not checked against the tenant's definitions"
                    ),
                    Some("check the credentials' permission to read custom fields (VIEW_CUSTOM_FIELD), then validate again".into()),
                )),
            }
        }
        connection.close().await;
    });
    tenant
}

/// The custom field sets of each entity (`client`, `loan_account`, …), every page, and each
/// of their fields' definitions.
pub(super) async fn read_custom_fields(
    session: &crate::mambu::Session,
    entities: &[&'static str],
) -> Result<Definitions, String> {
    let mut definitions = Definitions::default();
    for entity in entities {
        let path = format!("/customfieldsets?availableFor={entity}");
        let mut sets = Vec::new();
        for meta in session.list(&path, &mut crate::mambu::Quiet).await? {
            let mut fields = Vec::new();
            for id in SetDef::field_ids(&meta) {
                let path = format!("/customfields/{}", encode(&id));
                let answer = session
                    .read(
                        &path,
                        crate::mambu::Expect::Any,
                        crate::mambu::client::Keep::All,
                        &mut crate::mambu::Quiet,
                    )
                    .await?
                    .ok_or_else(|| format!("GET {path}: not found (HTTP 404)"))?;
                fields.extend(FieldDef::from_meta(&answer.body));
            }
            sets.extend(SetDef::from_meta(&meta, fields));
        }
        definitions.by_entity.insert(entity, sets);
    }
    Ok(definitions)
}

impl Tenant {
    /// The lookups as one JSON value, for templates' `lookups.<table>[<key>]`.
    pub(super) fn lookups_value(&self) -> Value {
        self.lookups.clone()
    }

    /// The type (`FIXED_TERM_LOAN`, `DYNAMIC_TERM_LOAN`, …) of the product a create_loan body
    /// names, when the tenant has it.
    pub(super) fn product_type(&self, body: &Value) -> Option<&str> {
        let key = body.get("productTypeKey")?.as_str()?;
        self.loan_products
            .as_ref()?
            .iter()
            .find(|p| p.get("encodedKey").and_then(Value::as_str) == Some(key))?
            .get("type")?
            .as_str()
    }

    /// A create_loan body's amount, installments and interest rate against the limits of the
    /// product it names. Returns (field, problem) pairs.
    pub(super) fn loan_limits(&self, body: &Value) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let Some(key) = body.get("productTypeKey").and_then(Value::as_str) else {
            return out;
        };
        let Some(products) = &self.loan_products else {
            return out;
        };
        let Some(product) = products
            .iter()
            .find(|p| p.get("encodedKey").and_then(Value::as_str) == Some(key))
        else {
            out.push((
                "productTypeKey",
                format!("no loan product has encodedKey `{key}`"),
            ));
            return out;
        };
        let name = product.get("id").and_then(Value::as_str).unwrap_or(key);
        let checks = [
            (
                "loanAmount",
                body.get("loanAmount"),
                &product["loanAmountSettings"]["loanAmount"],
            ),
            (
                "repaymentInstallments",
                body.pointer("/scheduleSettings/repaymentInstallments"),
                &product["scheduleSettings"]["numInstallments"],
            ),
            (
                "interestRate",
                body.pointer("/interestSettings/interestRate"),
                &product["interestSettings"]["interestRateSettings"][0]["interestRate"],
            ),
        ];
        for (field, value, limits) in checks {
            let Some(value) = value.and_then(number) else {
                continue;
            };
            let (min, max) = (
                limits.get("minValue").and_then(number),
                limits.get("maxValue").and_then(number),
            );
            if min.is_some_and(|m| value < m) || max.is_some_and(|m| value > m) {
                let range = format!(
                    "{} to {}",
                    min.map(|m| m.to_string()).unwrap_or("-".into()),
                    max.map(|m| m.to_string()).unwrap_or("-".into())
                );
                out.push((
                    field,
                    format!("{field} {value} is outside product {name}'s limits ({range})"),
                ));
            }
        }
        out
    }
}

fn number(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => n.to_string().parse().ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Where a step instance is, for its findings: the row it runs for and its unit.
pub(super) struct At<'a> {
    pub(super) step: &'a ActionStep,
    /// The row's CSV file and line.
    pub(super) file: String,
    pub(super) line: u64,
    /// `transactions TX-00000001`: the row's source and key.
    pub(super) row: String,
    /// The unit's key (its root row's).
    pub(super) unit: &'a str,
}

impl At<'_> {
    fn place(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    fn finding(&self, loan: &str, message: String, hint: String) -> Finding {
        Finding::new(
            Kind::Tenant,
            self.file.clone(),
            Some(self.line),
            format!(
                "step `{}` ({}) on {loan}, unit {}: {message}",
                self.step.id,
                self.step.action.name(),
                self.unit
            ),
            Some(hint),
        )
    }
}

/// Approvals of four-eyes loans in a plan naming no approving user, per approve_loan step:
/// one finding per step, however many loans.
#[derive(Debug, Clone, Default)]
pub(super) struct FourEyes {
    /// The step's key path in the plan (`steps[3].steps[2]`).
    pub(super) path: String,
    pub(super) loans: u64,
    /// The first such loan: its row (`file:line`) and `source key`.
    pub(super) first: (String, String),
    pub(super) products: BTreeSet<String>,
}

impl FourEyes {
    /// Adds a later batch's count to this one (which came first).
    pub(super) fn merge(&mut self, later: FourEyes) {
        self.loans += later.loans;
        self.products.extend(later.products);
    }

    /// The finding, located at the step in the plan (`plan_at`: file, line, column).
    pub(super) fn finding(&self, step: &str, plan_at: (String, u64, u64)) -> Finding {
        let (file, line, column) = plan_at;
        let products: Vec<&str> = self.products.iter().map(String::as_str).collect();
        let mut finding = Finding::new(
            Kind::Tenant,
            file,
            Some(line),
            format!(
                "step `{step}` (approve_loan): {} loan{} (the first {}, {}) {} of a product with four-eyes approval ({}), and the plan names no approving user: Mambu refuses an approval by the user who created the loan",
                self.loans,
                if self.loans == 1 { "" } else { "s" },
                self.first.1,
                self.first.0,
                if self.loans == 1 { "is" } else { "are" },
                products.join(", ")
            ),
            Some("name an approver: target.approver (a second user's credentials)".into()),
        );
        finding.column = Some(column);
        finding
    }
}

/// The earlier step's transaction a later one must not precede.
#[derive(Debug, Clone)]
struct Moment {
    at: DateTime<FixedOffset>,
    step: String,
    /// `file:line` of its row.
    place: String,
}

/// What is known of a loan's repayment schedule, for prepayments.
#[derive(Debug, Clone, PartialEq)]
enum Schedule {
    /// Mambu's own, not known here: only its first due date (`firstRepaymentDate`) is.
    Generated,
    /// As the plan's edit_schedule step gives it: (due date, principal + interest + fee due).
    Edited(Vec<(NaiveDate, Decimal)>),
    /// Edited, but not readable here (a due date or an amount that is not one).
    Unknown,
}

/// A loan the unit creates, as its steps so far leave it.
struct Loan<'t> {
    product: Option<&'t Value>,
    /// `loans LN-000001`: its create_loan row.
    label: String,
    /// `scheduleSettings.repaymentInstallments`.
    installments: Option<Decimal>,
    /// `disbursementDetails.firstRepaymentDate`, as a date.
    first_repayment: Option<NaiveDate>,
    disbursed: Option<Moment>,
    /// The latest transaction so far (disbursement included).
    latest: Option<Moment>,
    schedule: Schedule,
    repaid: Decimal,
    /// Fees applied so far: they may be due along with the installments.
    fees: Decimal,
    /// Its guarantees and assets, summed, beside what its approval needs (the product's
    /// `securitySettings.requiredGuaranties` percent of the loan amount), when it needs any.
    securities: (Decimal, Option<Decimal>),
}

/// One unit's loans, followed step by step: what Mambu will hold of each when a call comes.
pub(super) struct Book<'t> {
    tenant: &'t Tenant,
    has_approver: bool,
    loans: Vec<Loan<'t>>,
    /// A loan's id as it appears, URL-encoded, in the calls' paths: the loan's own id, or the
    /// placeholder of its create_loan step's output (`<loan.encodedKey>`); the latest instance
    /// of a create_loan step wins, as the step's output does on the night.
    by_path: HashMap<String, usize>,
}

impl<'t> Book<'t> {
    pub(super) fn new(tenant: &'t Tenant, has_approver: bool) -> Self {
        Book {
            tenant,
            has_approver,
            loans: Vec::new(),
            by_path: HashMap::new(),
        }
    }

    /// Whether the checks need this action's rendered call ([`FIELDS`] of it). Every
    /// transaction's is rendered (its value date decides the order checks).
    pub(super) fn wants(&self, action: Action) -> bool {
        self.tenant.loan_products.is_some()
            && matches!(
                action,
                Action::CreateLoan
                    | Action::ApproveLoan
                    | Action::EditSchedule
                    | Action::DisburseLoan
                    | Action::ApplyFee
                    | Action::PostRepayment
            )
    }

    /// Takes one rendered call of the unit, in run order; reports what the loan's product
    /// refuses.
    pub(super) fn call(&mut self, at: &At<'_>, call: &Call, out: &mut Found) {
        if call.action == Action::CreateLoan {
            self.create(at, call, out);
            return;
        }
        let Some(&index) = loan_segment(&call.path).and_then(|s| self.by_path.get(s)) else {
            // A loan this unit does not create: its product and history are not known here.
            return;
        };
        let body = call.body.as_ref().unwrap_or(&Value::Null);
        let today = self.tenant.today;
        let zone = self.tenant.zone;
        let has_approver = self.has_approver;
        let loan = &mut self.loans[index];
        let Some(product) = loan.product else {
            return;
        };
        let product_id = product.get("id").and_then(Value::as_str).unwrap_or("?");
        match call.action {
            Action::ApproveLoan => {
                let four_eyes = product
                    .pointer("/fourEyesPrinciple/activeForLoanApproval")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if let (held, Some(required)) = loan.securities
                    && held < required
                {
                    out.push(
                        format!("tenant securities {}", at.step.id),
                        at.finding(
                            &loan.label,
                            format!(
                                "product {product_id} needs securities of {} ({}% of the loan amount) to approve the loan, and its guarantors and assets amount to {}: Mambu refuses the approval (INSUFFICIENT_GUARANTEES)",
                                required.normalize(),
                                product
                                    .pointer("/securitySettings/requiredGuaranties")
                                    .and_then(number)
                                    .unwrap_or_default()
                                    .normalize(),
                                held.normalize()
                            ),
                            format!(
                                "add the loan's securities to the create_loan body (guarantors: / assets: built from its securities rows), or correct the amounts of {}",
                                loan.label
                            ),
                        ),
                    );
                }
                if four_eyes && !has_approver {
                    let entry =
                        out.four_eyes
                            .entry(at.step.id.clone())
                            .or_insert_with(|| FourEyes {
                                path: at.step.path.clone(),
                                first: (at.place(), at.row.clone()),
                                ..FourEyes::default()
                            });
                    entry.loans += 1;
                    entry.products.insert(product_id.to_owned());
                }
            }
            Action::EditSchedule => {
                schedule_options(at, loan, product, &call.installments, out);
                loan.schedule = edited_schedule(&call.installments);
            }
            Action::DisburseLoan => {
                if let Some(date) = value_date(body) {
                    let moment = Moment {
                        at: date,
                        step: at.step.id.clone(),
                        place: at.place(),
                    };
                    loan.disbursed = Some(moment.clone());
                    if loan.latest.as_ref().is_none_or(|l| l.at < date) {
                        loan.latest = Some(moment);
                    }
                }
            }
            Action::ApplyFee | Action::PostRepayment => {
                let date = value_date(body);
                if let Some(date) = date {
                    order(at, loan, date, out);
                }
                if call.action == Action::ApplyFee {
                    fee(at, loan, product, body, out);
                } else {
                    repayment(at, loan, product, body, date, (today, zone), out);
                }
            }
            _ => {}
        }
    }

    /// A create_loan step's instance that is not rendered (its row reported, its `when`
    /// false): later calls naming the step's output are not taken for an earlier loan's.
    pub(super) fn forget(&mut self, step: &str) {
        for name in [format!("<{step}.id>"), format!("<{step}.encodedKey>")] {
            self.by_path.remove(&encode(&name));
        }
    }

    fn create(&mut self, at: &At<'_>, call: &Call, out: &mut Found) {
        let Some(body) = &call.body else { return };
        let product = body
            .get("productTypeKey")
            .and_then(Value::as_str)
            .and_then(|key| {
                self.tenant
                    .loan_products
                    .as_ref()?
                    .iter()
                    .find(|p| p.get("encodedKey").and_then(Value::as_str) == Some(key))
            });
        let index = self.loans.len();
        self.loans.push(Loan {
            product,
            label: at.row.clone(),
            installments: body
                .pointer("/scheduleSettings/repaymentInstallments")
                .and_then(number),
            first_repayment: body
                .pointer("/disbursementDetails/firstRepaymentDate")
                .and_then(Value::as_str)
                .and_then(parse_date),
            disbursed: None,
            latest: None,
            schedule: Schedule::Generated,
            repaid: Decimal::ZERO,
            fees: Decimal::ZERO,
            securities: product
                .map(|p| securities(at, p, body, out))
                .unwrap_or_default(),
        });
        let step = &at.step.id;
        for name in [format!("<{step}.id>"), format!("<{step}.encodedKey>")] {
            self.by_path.insert(encode(&name), index);
        }
        if let Some(id) = body.get("id").and_then(Value::as_str) {
            self.by_path.insert(encode(id), index);
        }
    }
}

/// A create_loan body's guarantors and assets against its product's `securitySettings`
/// (absent: none accepted, the stricter reading): a finding for each list the product refuses.
/// Returns the securities' amounts summed, and what the loan's approval needs (the product's
/// `requiredGuaranties` percent of the loan amount), when it needs any.
fn securities(
    at: &At<'_>,
    product: &Value,
    body: &Value,
    out: &mut Found,
) -> (Decimal, Option<Decimal>) {
    let loan = &at.row;
    let product_id = product.get("id").and_then(Value::as_str).unwrap_or("?");
    let settings = product.get("securitySettings");
    let enabled = |flag: &str| {
        settings
            .and_then(|s| s.get(flag))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let mut held = Decimal::ZERO;
    for (list, flag, what, reason) in [
        (
            "guarantors",
            "isGuarantorsEnabled",
            "guarantors",
            "GUARANTOR_NOT_ALLOWED_BY_PRODUCT",
        ),
        (
            "assets",
            "isCollateralEnabled",
            "collateral",
            "COLLATERAL_NOT_ALLOWED_BY_PRODUCT",
        ),
    ] {
        let items = match body.get(list) {
            Some(Value::Array(items)) if !items.is_empty() => items,
            _ => continue,
        };
        held += items
            .iter()
            .filter_map(|i| i.get("amount").and_then(number))
            .sum::<Decimal>();
        if !enabled(flag) {
            out.push(
                format!("tenant {list} {}", at.step.id),
                at.finding(
                    loan,
                    format!(
                        "{} {list}, and product {product_id} takes no {what} (securitySettings.{flag} is not true): Mambu refuses the loan ({reason})",
                        items.len()
                    ),
                    format!(
                        "leave {list} out of {loan}'s body (a `when:` on the list), move the loan to a product that takes {what}, or ask the tenant's administrator to enable them on {product_id}"
                    ),
                ),
            );
        }
    }
    let percent = settings
        .and_then(|s| s.get("requiredGuaranties"))
        .and_then(number)
        .filter(|p| *p > Decimal::ZERO);
    let amount = body.get("loanAmount").and_then(number);
    let required = percent
        .zip(amount)
        .map(|(p, a)| a * p / Decimal::ONE_HUNDRED);
    (held, required)
}

/// A transaction backdated before the loan's disbursement or before an earlier transaction of
/// the loan: Mambu refuses both.
fn order(at: &At<'_>, loan: &mut Loan<'_>, date: DateTime<FixedOffset>, out: &mut Found) {
    let id = &at.step.id;
    if let Some(d) = loan.disbursed.as_ref().filter(|d| date < d.at) {
        out.push(
            format!("tenant before disbursement {id}"),
            at.finding(
                &loan.label,
                format!(
                    "valueDate {} precedes the loan's disbursement on {} (step `{}`, {}): Mambu refuses a transaction before the loan's activation (BACKDATE_BEFORE_ACTIVATION)",
                    date.to_rfc3339(),
                    d.at.to_rfc3339(),
                    d.step,
                    d.place
                ),
                format!(
                    "correct the value date of {}, or disburse {} on or before it",
                    at.row, loan.label
                ),
            ),
        );
    } else if let Some(l) = loan.latest.as_ref().filter(|l| date < l.at) {
        out.push(
            format!("tenant backdated {id}"),
            at.finding(
                &loan.label,
                format!(
                    "valueDate {} precedes the loan's transaction of {} (step `{}`, {}): Mambu refuses a transaction backdated before a later one (BACKDATE_BEFORE_OTHER_OPERATION)",
                    date.to_rfc3339(),
                    l.at.to_rfc3339(),
                    l.step,
                    l.place
                ),
                format!(
                    "send the loan's transactions in value-date order (order_by: [the value date] on their source, one for_each for fees and repayments), or correct the value date of {}",
                    at.row
                ),
            ),
        );
    }
    if loan.latest.as_ref().is_none_or(|l| l.at < date) {
        loan.latest = Some(Moment {
            at: date,
            step: at.step.id.clone(),
            place: at.place(),
        });
    }
}

/// The product's predefined fees an apply_fee call may name: active, applied by hand.
fn manual_fees(product: &Value) -> Vec<&Value> {
    product
        .pointer("/feesSettings/fees")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|f| {
            f.get("trigger").and_then(Value::as_str).unwrap_or("MANUAL") == "MANUAL"
                && f.get("state").and_then(Value::as_str).unwrap_or("ACTIVE") == "ACTIVE"
        })
        .collect()
}

/// The fix for a fee the product refuses: its manual fees, by id, name and encodedKey.
fn fee_fix(product: &Value) -> String {
    let id = product.get("id").and_then(Value::as_str).unwrap_or("?");
    let fees = manual_fees(product);
    if fees.is_empty() {
        return format!(
            "product {id} has no manual predefined fee: ask the tenant's administrator for one (or to allow arbitrary fees), or leave the fee out"
        );
    }
    let named: Vec<String> = fees
        .iter()
        .map(|f| {
            let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("?");
            format!(
                "{} ({}): its encodedKey {}",
                text("id"),
                text("name"),
                text("encodedKey")
            )
        })
        .collect();
    format!(
        "send predefinedFeeKey of {} (the lookup `loan_fees: {{ path: /loanproducts, each: feesSettings.fees }}` gives it as lookups.loan_fees[product id][fee id])",
        named.join(", or of ")
    )
}

/// An amount-only fee where the product allows no arbitrary fee; a predefinedFeeKey that is not
/// one of the product's manual fees.
fn fee(at: &At<'_>, loan: &mut Loan<'_>, product: &Value, body: &Value, out: &mut Found) {
    let id = &at.step.id;
    let product_id = product.get("id").and_then(Value::as_str).unwrap_or("?");
    let mut amount = body.get("amount").and_then(number);
    match body.get("predefinedFeeKey") {
        None | Some(Value::Null) => {
            // Absent: no arbitrary fees (the stricter reading, as Mambu's "only if true").
            let allowed = product
                .pointer("/feesSettings/allowArbitraryFees")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !allowed {
                out.push(
                    format!("tenant arbitrary fee {id}"),
                    at.finding(
                        &loan.label,
                        format!(
                            "an amount-only fee, and product {product_id} allows no arbitrary fee (ARBITRARY_FEE_NOT_ALLOWED)"
                        ),
                        fee_fix(product),
                    ),
                );
            }
        }
        Some(Value::String(key)) if is_placeholder(key) => {}
        Some(key) => {
            let text = key.as_str().map(str::to_owned).unwrap_or(key.to_string());
            let fees = manual_fees(product);
            let found = fees.iter().find(|f| {
                f.get("encodedKey").and_then(Value::as_str) == Some(&text)
                    || f.get("id").and_then(Value::as_str) == Some(&text)
            });
            match found {
                Some(f) => amount = amount.or_else(|| f.get("amount").and_then(number)),
                None => out.push(
                    format!("tenant fee key {id}"),
                    at.finding(
                        &loan.label,
                        format!(
                            "predefinedFeeKey `{text}` is not one of product {product_id}'s manual fees"
                        ),
                        fee_fix(product),
                    ),
                ),
            }
        }
    }
    loan.fees += amount.unwrap_or(Decimal::ZERO);
}

/// A repayment dated after today where the product takes no future payment; one taking the
/// loan's repayments past what can be due by its date where the product takes no prepayment.
fn repayment(
    at: &At<'_>,
    loan: &mut Loan<'_>,
    product: &Value,
    body: &Value,
    date: Option<DateTime<FixedOffset>>,
    (today, zone): (NaiveDate, Option<chrono_tz::Tz>),
    out: &mut Found,
) {
    let id = &at.step.id;
    let product_id = product.get("id").and_then(Value::as_str).unwrap_or("?");
    let prepayment = product.pointer("/paymentSettings/prepaymentSettings");
    let settings = |key: &str, stricter: &'static str| -> &str {
        prepayment
            .and_then(|p| p.get(key))
            .and_then(Value::as_str)
            .unwrap_or(stricter)
    };
    let amount = body.get("amount").and_then(number).unwrap_or(Decimal::ZERO);
    loan.repaid += amount;
    let Some(date) = date else { return };
    // The date as written: a call Mambu takes carries the tenant's offset at that date, so it
    // is the tenant's calendar date.
    let day = date.date_naive();
    if settings("futurePaymentsAcceptance", "NO_FUTURE_PAYMENTS") == "NO_FUTURE_PAYMENTS"
        && day > today
    {
        let zone = zone.map(|z| format!(" in {z}")).unwrap_or_default();
        out.push(
            format!("tenant future payment {id}"),
            at.finding(
                &loan.label,
                format!(
                    "valueDate {day} is after today ({today}{zone}), and product {product_id} takes no future payments (FUTURE_PAYMENT_NOT_ALLOWED_ERROR)"
                ),
                format!(
                    "correct the value date of {}, or post it on {day} or later",
                    at.row
                ),
            ),
        );
    }
    if settings("prepaymentAcceptance", "NO_PREPAYMENTS") == "ACCEPT_PREPAYMENTS" {
        return;
    }
    let Some((due, how)) = due_by(loan, product, day) else {
        return;
    };
    if loan.repaid > due {
        out.push(
            format!("tenant prepayment {id}"),
            at.finding(
                &loan.label,
                format!(
                    "this repayment takes the loan's repayments to {} by {day}, more than the {} that can be due by then ({how}), and product {product_id} takes no prepayments (PREPAYMENT_NOT_ALLOWED_ERROR)",
                    money(loan.repaid),
                    money(due)
                ),
                format!(
                    "correct the amount or the value date of {}, or edit the loan's schedule (edit_schedule) so that it is due by then",
                    at.row
                ),
            ),
        );
    }
}

/// The most that can be due on the loan by `day` (inclusive), and how it was bounded; `None`
/// when nothing sure can be said, so that no repayment Mambu would take is reported.
///
/// - The plan edits the schedule: the installments it gives (principal, interest and fee)
///   due on or before `day`, exactly; after the last one it gives, when it gives fewer than
///   the loan has, nothing is said (Mambu keeps its own installments there).
/// - Mambu's own schedule: its amounts (interest method, rounding, days in year) are not known
///   here, but no installment is due before the first repayment date. Before it, nothing but
///   fees can be due; on and after it, nothing is said. That is the conservative bound.
///
/// Either way the fees applied so far, and the amounts of the product's automatic fees, are
/// counted as due (they may be); a product with an automatic fee of unknown amount (a
/// percentage) gives no bound.
fn due_by(loan: &Loan<'_>, product: &Value, day: NaiveDate) -> Option<(Decimal, String)> {
    let mut fees = loan.fees;
    let automatic = product
        .pointer("/feesSettings/fees")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|f| {
            f.get("trigger").and_then(Value::as_str).unwrap_or("MANUAL") != "MANUAL"
                && f.get("state").and_then(Value::as_str).unwrap_or("ACTIVE") == "ACTIVE"
        });
    for f in automatic {
        fees += f.get("amount").and_then(number)?;
    }
    match &loan.schedule {
        Schedule::Edited(installments) => {
            let last = installments.last().map(|(d, _)| *d);
            let partial = loan
                .installments
                .is_some_and(|n| Decimal::from(installments.len()) < n);
            if partial && last.is_none_or(|last| day > last) {
                return None;
            }
            let due: Decimal = installments
                .iter()
                .filter(|(d, _)| *d <= day)
                .map(|(_, amount)| *amount)
                .sum();
            Some((
                due + fees,
                format!("the plan's edited schedule, with {} of fees", money(fees)),
            ))
        }
        Schedule::Generated => {
            let first = loan.first_repayment.filter(|first| day < *first)?;
            Some((
                fees,
                format!(
                    "without the plan's schedule, only fees ({}): no installment is due before the first repayment date {first}",
                    money(fees)
                ),
            ))
        }
        Schedule::Unknown => None,
    }
}

/// A schedule edit the loan's product does not allow (its
/// `scheduleSettings.repaymentScheduleEditOptions`), as Mambu refuses it
/// (`EDITING_REPAYMENTS_NOT_ALLOWED`): any edit where the list is empty; otherwise only what
/// the edit surely changes in the schedule Mambu generates: the number of installments (the
/// loan's `repaymentInstallments`) and the first due date (its `firstRepaymentDate`).
///
/// Principal and interest amounts are not judged: whether they differ from Mambu's depends on
/// the product's amortization, interest method, day count and rounding, which are not all
/// known here (half the sample's edited schedules are the one Mambu generates, to the cent).
/// Nor are later due dates (the repayment period is not known here). An absent list says
/// nothing.
fn schedule_options(
    at: &At<'_>,
    loan: &Loan<'_>,
    product: &Value,
    installments: &[Value],
    out: &mut Found,
) {
    let Some(options) = product
        .pointer("/scheduleSettings/repaymentScheduleEditOptions")
        .and_then(Value::as_array)
    else {
        return;
    };
    let id = &at.step.id;
    let product_id = product.get("id").and_then(Value::as_str).unwrap_or("?");
    if options.is_empty() {
        out.push(
            format!("tenant schedule not editable {id}"),
            at.finding(
                &loan.label,
                format!(
                    "product {product_id} allows no schedule edit (its repaymentScheduleEditOptions are empty): Mambu refuses to edit the schedule of its loans (EDITING_REPAYMENTS_NOT_ALLOWED)"
                ),
                format!(
                    "the product {product_id} does not allow editing schedules: ask the tenant's administrator to add the options the edit needs (ADJUST_PRINCIPAL_PAYMENT_SCHEDULE, ADJUST_INTEREST_PAYMENT_SCHEDULE, …) to the product's schedule edit options, or leave {}'s schedule as Mambu generates it (a `when` on step `{id}`)",
                    loan.label
                ),
            ),
        );
        return;
    }
    let allows = |option: &str| options.iter().any(|o| o.as_str() == Some(option));
    let fix = |option: &str, generated: String| {
        format!(
            "the product {product_id} does not allow {option}: ask the tenant's administrator to add it to the product's schedule edit options, or send the loan's installments as Mambu generates them ({generated})"
        )
    };
    let given = Decimal::from(installments.len());
    if let Some(n) = loan.installments.filter(|n| *n != given)
        && !allows("ADJUST_NUMBER_OF_INSTALLMENTS")
    {
        out.push(
            format!("tenant schedule installments {id}"),
            at.finding(
                &loan.label,
                format!(
                    "the edit gives {given} installments, the loan has {n} (repaymentInstallments), and product {product_id}'s repaymentScheduleEditOptions lack ADJUST_NUMBER_OF_INSTALLMENTS: Mambu refuses to add or remove installments (EDITING_REPAYMENTS_NOT_ALLOWED)"
                ),
                fix(
                    "ADJUST_NUMBER_OF_INSTALLMENTS",
                    format!("{n} installments, as repaymentInstallments"),
                ),
            ),
        );
    }
    let first_due = installments
        .first()
        .and_then(|i| i.get("dueDate"))
        .and_then(Value::as_str)
        .and_then(parse_date);
    if let (Some(due), Some(first)) = (first_due, loan.first_repayment)
        && due != first
        && !allows("ADJUST_PAYMENT_DATES")
    {
        out.push(
            format!("tenant schedule dates {id}"),
            at.finding(
                &loan.label,
                format!(
                    "the edit's first installment is due {due}, Mambu's on the loan's firstRepaymentDate {first}, and product {product_id}'s repaymentScheduleEditOptions lack ADJUST_PAYMENT_DATES: Mambu refuses to move a due date (EDITING_REPAYMENTS_NOT_ALLOWED)"
                ),
                fix(
                    "ADJUST_PAYMENT_DATES",
                    format!("the first due on {first}"),
                ),
            ),
        );
    }
}

/// An edit_schedule call's installments as (due date, amount due).
fn edited_schedule(installments: &[Value]) -> Schedule {
    let mut out = Vec::with_capacity(installments.len());
    for installment in installments {
        let Some(date) = installment
            .get("dueDate")
            .and_then(Value::as_str)
            .and_then(parse_date)
        else {
            return Schedule::Unknown;
        };
        let mut due = Decimal::ZERO;
        for part in ["principal", "interest", "fee"] {
            match installment.get(part).map(|p| &p["amount"]["due"]) {
                None | Some(Value::Null) => {}
                Some(v) => match number(v) {
                    Some(n) => due += n,
                    None => return Schedule::Unknown,
                },
            }
        }
        out.push((date, due));
    }
    Schedule::Edited(out)
}

/// A body's `valueDate`, when it is a date-time.
fn value_date(body: &Value) -> Option<DateTime<FixedOffset>> {
    let text = body.get("valueDate")?.as_str()?;
    DateTime::parse_from_rfc3339(text).ok()
}

/// The calendar date of a date-time (as written, in its own offset) or of a date.
fn parse_date(text: &str) -> Option<NaiveDate> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.date_naive())
        .ok()
        .or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
}

/// An amount as the extract writes money: two decimals at least.
fn money(amount: Decimal) -> String {
    if amount.scale() < 2 {
        format!("{amount:.2}")
    } else {
        amount.to_string()
    }
}

/// An earlier step's output as validate renders it (`<loan.encodedKey>`): not a real value.
fn is_placeholder(text: &str) -> bool {
    text.starts_with('<') && text.ends_with('>')
}

/// The loan's id in a call's path (`/loans/{loan}/…`, `/loans/{loan}:changeState`), encoded.
fn loan_segment(path: &str) -> Option<&str> {
    path.strip_prefix("/loans/")?.split(['/', ':']).next()
}

/// As the calls' paths carry ids (see `crate::plan::compiled`).
fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn product(settings: Value) -> Value {
        let mut p = json!({
            "id": "PL-STD",
            "encodedKey": "pk",
            "type": "FIXED_TERM_LOAN",
            "feesSettings": {
                "allowArbitraryFees": false,
                "fees": [
                    { "id": "LEGACY-FEE", "encodedKey": "fk", "name": "Migrated fee", "trigger": "MANUAL", "state": "ACTIVE" },
                    { "id": "OPENING", "encodedKey": "ok", "name": "Opening fee", "amount": 10, "trigger": "DISBURSEMENT", "state": "ACTIVE" }
                ]
            },
            "paymentSettings": { "prepaymentSettings": {
                "prepaymentAcceptance": "NO_PREPAYMENTS",
                "futurePaymentsAcceptance": "NO_FUTURE_PAYMENTS"
            } },
            "fourEyesPrinciple": { "activeForLoanApproval": true }
        });
        if let (Value::Object(p), Value::Object(s)) = (&mut p, settings) {
            p.extend(s);
        }
        p
    }

    fn tenant(product: Value) -> Tenant {
        Tenant {
            lookups: Value::Null,
            loan_products: Some(vec![product]),
            zone: Some(chrono_tz::Europe::Lisbon),
            today: NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
            custom_fields: None,
            lists: None,
            identity: None,
        }
    }

    fn step(id: &str, action: Action) -> ActionStep {
        ActionStep {
            path: format!("steps[0].steps[{id}]"),
            id: id.into(),
            action,
            when: None,
            body: None,
            loan: None,
            deposit: None,
            installments: None,
            method: None,
            request_path: None,
            adopt: None,
            save: Default::default(),
            bulk: None,
            scope: vec![],
            on_change: Vec::new(),
        }
    }

    fn call(action: Action, path: &str, body: Value) -> Call {
        Call {
            action,
            method: "POST",
            path: path.into(),
            body: Some(body),
            installments: vec![],
        }
    }

    /// Runs the calls (step id, action, body; `installments` for edit_schedule) on one loan
    /// created first (rows: line 2 the loan, then one line per call); returns what was found.
    fn run(product: Value, has_approver: bool, calls: &[(&str, Action, Value)]) -> Found {
        let tenant = tenant(product);
        let mut book = Book::new(&tenant, has_approver);
        let mut out = Found::default();
        let create = step("loan", Action::CreateLoan);
        let body = json!({
            "id": "LN-1",
            "productTypeKey": "pk",
            "scheduleSettings": { "repaymentInstallments": 3 },
            "disbursementDetails": { "firstRepaymentDate": "2025-02-01T00:00:00+00:00" }
        });
        book.call(
            &at(&create, 2),
            &call(Action::CreateLoan, "/loans", body),
            &mut out,
        );
        for (i, (id, action, body)) in calls.iter().enumerate() {
            let s = step(id, *action);
            let path = match action {
                Action::ApproveLoan => "/loans/%3Cloan.encodedKey%3E:changeState".to_owned(),
                _ => "/loans/%3Cloan.encodedKey%3E/x".to_owned(),
            };
            let mut c = call(*action, &path, body.clone());
            if *action == Action::EditSchedule {
                c.installments = body.as_array().cloned().unwrap_or_default();
                c.body = None;
            }
            book.call(&at(&s, 3 + i as u64), &c, &mut out);
        }
        out
    }

    fn at(step: &ActionStep, line: u64) -> At<'_> {
        At {
            step,
            file: "loans.csv".into(),
            line,
            row: format!("rows R{line}"),
            unit: "CL-1",
        }
    }

    fn rules(found: &Found) -> Vec<&str> {
        found.list.iter().map(|(r, _)| r.as_str()).collect()
    }

    fn disburse(date: &str) -> (&'static str, Action, Value) {
        (
            "disburse",
            Action::DisburseLoan,
            json!({ "valueDate": date }),
        )
    }

    fn repay(amount: f64, date: &str) -> (&'static str, Action, Value) {
        (
            "repayment",
            Action::PostRepayment,
            json!({ "amount": amount, "valueDate": date }),
        )
    }

    fn fee(body: Value) -> (&'static str, Action, Value) {
        ("fee", Action::ApplyFee, body)
    }

    const JAN: &str = "2025-01-01T00:00:00+00:00";

    #[test]
    fn an_amount_only_fee_needs_a_product_allowing_arbitrary_fees() {
        let found = run(
            product(json!({})),
            true,
            &[
                disburse(JAN),
                fee(json!({ "amount": 5, "valueDate": "2025-01-02T00:00:00+00:00" })),
            ],
        );
        assert_eq!(rules(&found), ["tenant arbitrary fee fee"]);
        let f = &found.list[0].1;
        assert!(
            f.message.contains("product PL-STD allows no arbitrary fee"),
            "{}",
            f.message
        );
        assert!(
            f.hint.as_deref().unwrap().starts_with(
                "send predefinedFeeKey of LEGACY-FEE (Migrated fee): its encodedKey fk"
            ),
            "{f:?}"
        );
        assert!(
            !f.hint.as_deref().unwrap().contains("OPENING"),
            "only manual fees"
        );
        // Allowed: nothing to say.
        let allowed = product(json!({ "feesSettings": { "allowArbitraryFees": true } }));
        let found = run(allowed, true, &[fee(json!({ "amount": 5 }))]);
        assert!(found.list.is_empty());
        // Absent settings: the stricter reading.
        let mut bare = product(json!({}));
        bare.as_object_mut().unwrap().remove("feesSettings");
        let found = run(bare, true, &[fee(json!({ "amount": 5 }))]);
        assert_eq!(rules(&found), ["tenant arbitrary fee fee"]);
        assert!(
            found.list[0]
                .1
                .hint
                .as_deref()
                .unwrap()
                .contains("has no manual predefined fee")
        );
    }

    #[test]
    fn a_predefined_fee_key_must_be_one_of_the_products_manual_fees() {
        for (key, expected) in [
            ("fk", 0),
            ("LEGACY-FEE", 0),
            ("<fees.encodedKey>", 0),
            ("ok", 1),
            ("zz", 1),
        ] {
            let found = run(
                product(json!({})),
                true,
                &[fee(json!({ "predefinedFeeKey": key, "amount": 5 }))],
            );
            assert_eq!(found.list.len(), expected, "{key}: {:?}", rules(&found));
            if expected == 1 {
                assert!(found.list[0].1.message.contains(&format!(
                    "predefinedFeeKey `{key}` is not one of product PL-STD's manual fees"
                )));
            }
        }
    }

    #[test]
    fn a_future_repayment_is_refused_unless_the_product_accepts_it() {
        let found = run(
            product(json!({})),
            true,
            &[disburse(JAN), repay(1.0, "2026-12-08T00:00:00+00:00")],
        );
        assert_eq!(
            rules(&found),
            ["tenant future payment repayment"],
            "{:?}",
            found.list
        );
        assert!(
            found.list[0]
                .1
                .message
                .contains("valueDate 2026-12-08 is after today (2026-12-07 in Europe/Lisbon)")
        );
        // Today itself is not the future.
        let found = run(
            product(json!({})),
            true,
            &[disburse(JAN), repay(1.0, "2026-12-07T23:00:00+00:00")],
        );
        assert!(!rules(&found).contains(&"tenant future payment repayment"));
        let accepting = product(json!({ "paymentSettings": { "prepaymentSettings": {
            "prepaymentAcceptance": "ACCEPT_PREPAYMENTS", "futurePaymentsAcceptance": "ACCEPT_FUTURE_PAYMENTS" } } }));
        let found = run(
            accepting,
            true,
            &[disburse(JAN), repay(1.0, "2026-12-08T00:00:00+00:00")],
        );
        assert!(found.list.is_empty());
    }

    #[test]
    fn without_the_schedule_only_repayments_before_the_first_due_date_are_prepayments() {
        // Before 2025-02-01 only fees (and the 10.00 opening fee) can be due.
        let found = run(
            product(json!({})),
            true,
            &[
                disburse(JAN),
                fee(
                    json!({ "predefinedFeeKey": "fk", "amount": 5, "valueDate": "2025-01-05T00:00:00+00:00" }),
                ),
                repay(15.0, "2025-01-10T00:00:00+00:00"),
                repay(0.01, "2025-01-11T00:00:00+00:00"),
                // On and after the first due date nothing is said.
                repay(10_000.0, "2025-02-01T00:00:00+00:00"),
            ],
        );
        assert_eq!(
            rules(&found),
            ["tenant prepayment repayment"],
            "{:?}",
            found.list
        );
        let f = &found.list[0].1;
        assert_eq!(f.line, Some(6));
        assert!(f.message.contains("takes the loan's repayments to 15.01 by 2025-01-11, more than the 15.00 that can be due by then"), "{}", f.message);
    }

    #[test]
    fn an_edited_schedule_is_used_exactly() {
        let inst = |date: &str, p: f64, i: f64| json!({ "dueDate": date, "principal": { "amount": { "due": p } }, "interest": { "amount": { "due": i } } });
        let schedule = json!([
            inst("2025-02-01T00:00:00+00:00", 100.0, 10.0),
            inst("2025-03-01T00:00:00+00:00", 100.0, 5.0),
            inst("2025-04-01T00:00:00+00:00", 100.0, 1.0),
        ]);
        let found = run(
            product(json!({})),
            true,
            &[
                ("schedule", Action::EditSchedule, schedule.clone()),
                disburse(JAN),
                repay(110.0, "2025-02-01T00:00:00+00:00"),
                repay(115.0, "2025-03-01T00:00:00+00:00"),
                repay(1.0, "2025-03-02T00:00:00+00:00"),
            ],
        );
        // 10.00 opening fee: 110 + 105 + 10 = 225 due by March; 226 repaid.
        assert_eq!(
            rules(&found),
            ["tenant prepayment repayment"],
            "{:?}",
            found.list
        );
        assert!(
            found.list[0]
                .1
                .message
                .contains("226.00 by 2025-03-02, more than the 225.00"),
            "{}",
            found.list[0].1.message
        );
        // A partial edited schedule says nothing past its last installment.
        let partial = json!([inst("2025-02-01T00:00:00+00:00", 100.0, 10.0)]);
        let found = run(
            product(json!({})),
            true,
            &[
                ("schedule", Action::EditSchedule, partial),
                disburse(JAN),
                repay(1000.0, "2025-03-01T00:00:00+00:00"),
            ],
        );
        assert!(found.list.is_empty(), "{:?}", found.list);
    }

    #[test]
    fn a_schedule_edit_is_reported_only_where_the_product_surely_refuses_it() {
        let inst = |date: &str| json!({ "dueDate": date, "principal": { "amount": { "due": 100 } }, "interest": { "amount": { "due": 1 } } });
        let dates = |dates: &[&str]| Value::Array(dates.iter().map(|d| inst(d)).collect());
        let with = |options: Value| {
            product(json!({ "scheduleSettings": { "repaymentScheduleEditOptions": options } }))
        };
        let as_generated = dates(&[
            "2025-02-01T00:00:00+00:00",
            "2025-03-01T00:00:00+00:00",
            "2025-04-01T00:00:00+00:00",
        ]);
        let edit = |schedule: &Value| [("schedule", Action::EditSchedule, schedule.clone())];
        // No option: every edit, even one that changes nothing.
        let found = run(with(json!([])), true, &edit(&as_generated));
        assert_eq!(rules(&found), ["tenant schedule not editable schedule"]);
        let f = &found.list[0].1;
        assert_eq!(f.line, Some(3));
        assert!(f.message.starts_with("step `schedule` (edit_schedule) on rows R2, unit CL-1: product PL-STD allows no schedule edit (its repaymentScheduleEditOptions are empty): Mambu refuses to edit the schedule of its loans (EDITING_REPAYMENTS_NOT_ALLOWED)"), "{}", f.message);
        assert!(
            f.hint
                .as_deref()
                .unwrap()
                .starts_with("the product PL-STD does not allow editing schedules")
        );
        // Amounts only: whether they differ from Mambu's is not known here.
        let amounts = with(json!(["ADJUST_PRINCIPAL_PAYMENT_SCHEDULE"]));
        assert!(
            run(amounts.clone(), true, &edit(&as_generated))
                .list
                .is_empty()
        );
        // One installment more, the first one a day later.
        let moved = dates(&[
            "2025-02-02T00:00:00+00:00",
            "2025-03-01T00:00:00+00:00",
            "2025-04-01T00:00:00+00:00",
            "2025-05-01T00:00:00+00:00",
        ]);
        let found = run(amounts, true, &edit(&moved));
        assert_eq!(
            rules(&found),
            [
                "tenant schedule installments schedule",
                "tenant schedule dates schedule"
            ]
        );
        let (count, date) = (&found.list[0].1, &found.list[1].1);
        assert!(count.message.ends_with("the edit gives 4 installments, the loan has 3 (repaymentInstallments), and product PL-STD's repaymentScheduleEditOptions lack ADJUST_NUMBER_OF_INSTALLMENTS: Mambu refuses to add or remove installments (EDITING_REPAYMENTS_NOT_ALLOWED)"), "{}", count.message);
        assert_eq!(
            count.hint.as_deref(),
            Some(
                "the product PL-STD does not allow ADJUST_NUMBER_OF_INSTALLMENTS: ask the tenant's administrator to add it to the product's schedule edit options, or send the loan's installments as Mambu generates them (3 installments, as repaymentInstallments)"
            )
        );
        assert!(date.message.ends_with("the edit's first installment is due 2025-02-02, Mambu's on the loan's firstRepaymentDate 2025-02-01, and product PL-STD's repaymentScheduleEditOptions lack ADJUST_PAYMENT_DATES: Mambu refuses to move a due date (EDITING_REPAYMENTS_NOT_ALLOWED)"), "{}", date.message);
        // Allowed: nothing to say.
        let both = with(json!([
            "ADJUST_NUMBER_OF_INSTALLMENTS",
            "ADJUST_PAYMENT_DATES"
        ]));
        assert!(run(both, true, &edit(&moved)).list.is_empty());
        // No list at all: not known, nothing said.
        assert!(run(product(json!({})), true, &edit(&moved)).list.is_empty());
    }

    #[test]
    fn transactions_must_follow_the_disbursement_and_each_other() {
        let found = run(
            product(
                json!({ "paymentSettings": { "prepaymentSettings": { "prepaymentAcceptance": "ACCEPT_PREPAYMENTS" } } }),
            ),
            true,
            &[
                disburse("2025-01-10T00:00:00+00:00"),
                repay(1.0, "2025-01-09T00:00:00+00:00"),
                repay(1.0, "2025-02-10T00:00:00+00:00"),
                fee(
                    json!({ "predefinedFeeKey": "fk", "amount": 1, "valueDate": "2025-02-01T00:00:00+00:00" }),
                ),
                repay(1.0, "2025-02-10T00:00:00+00:00"),
            ],
        );
        assert_eq!(
            rules(&found),
            [
                "tenant before disbursement repayment",
                "tenant backdated fee"
            ],
            "{:?}",
            found.list
        );
        assert!(
            found.list[0]
                .1
                .message
                .contains("BACKDATE_BEFORE_ACTIVATION")
        );
        let backdated = &found.list[1].1.message;
        assert!(
            backdated.contains("precedes the loan's transaction of 2025-02-10T00:00:00+00:00 (step `repayment`, loans.csv:5)")
                && backdated.contains("BACKDATE_BEFORE_OTHER_OPERATION"),
            "{backdated}"
        );
    }

    #[test]
    fn four_eyes_approval_needs_an_approver_and_is_counted_per_step() {
        let approve = ("approve", Action::ApproveLoan, json!({}));
        let found = run(product(json!({})), false, std::slice::from_ref(&approve));
        assert!(found.list.is_empty());
        let four = &found.four_eyes["approve"];
        assert_eq!((four.loans, four.first.0.as_str()), (1, "loans.csv:3"));
        let mut merged = four.clone();
        merged.merge(four.clone());
        let f = merged.finding("approve", ("plan.yaml".into(), 9, 11));
        assert_eq!(f.location(), "plan.yaml:9:11");
        assert!(f.message.starts_with("step `approve` (approve_loan): 2 loans (the first rows R3, loans.csv:3) are of a product with four-eyes approval (PL-STD)"), "{}", f.message);
        assert_eq!(
            f.hint.as_deref(),
            Some("name an approver: target.approver (a second user's credentials)")
        );
        let found = run(product(json!({})), true, std::slice::from_ref(&approve));
        assert!(found.four_eyes.is_empty());
    }

    #[test]
    fn a_create_step_not_rendered_names_no_earlier_loan() {
        let tenant = tenant(product(json!({})));
        let mut book = Book::new(&tenant, true);
        let mut out = Found::default();
        let (create, fee) = (
            step("loan", Action::CreateLoan),
            step("fee", Action::ApplyFee),
        );
        let body = json!({ "id": "LN-1", "productTypeKey": "pk" });
        book.call(
            &at(&create, 2),
            &call(Action::CreateLoan, "/loans", body),
            &mut out,
        );
        book.forget("loan");
        let amount_only = json!({ "amount": 5 });
        let by_output = "/loans/%3Cloan.encodedKey%3E/fee-transactions";
        book.call(
            &at(&fee, 3),
            &call(Action::ApplyFee, by_output, amount_only.clone()),
            &mut out,
        );
        assert!(out.list.is_empty());
        // By its own id, the first loan is still known.
        let by_id = "/loans/LN-1/fee-transactions";
        book.call(
            &at(&fee, 4),
            &call(Action::ApplyFee, by_id, amount_only),
            &mut out,
        );
        assert_eq!(rules(&out), ["tenant arbitrary fee fee"]);
    }

    #[test]
    fn a_loan_is_found_by_its_id_or_its_create_steps_output() {
        assert_eq!(
            loan_segment("/loans/LN%201/fee-transactions"),
            Some("LN%201")
        );
        assert_eq!(loan_segment("/loans/abc:changeState"), Some("abc"));
        assert_eq!(loan_segment("/deposits/abc"), None);
        assert_eq!(encode("<loan.encodedKey>"), "%3Cloan.encodedKey%3E");
        assert_eq!(encode("LN 1"), "LN%201");
    }
}
