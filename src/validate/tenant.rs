//! What `plan validate --target` reads of the tenant, and the checks that need it beyond the
//! loans' limits: fees, repayments, transaction order and approval against the settings of each
//! loan's product (`../shared/mambu-api.md` §8).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate};
use rust_decimal::Decimal;
use serde_json::Value;

use super::{Finding, Findings, Found, Kind};
use crate::plan::action::Action;
use crate::plan::check::{ActionStep, Plan};
use crate::plan::compiled::Call;

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
    zone: Option<chrono_tz::Tz>,
    /// Today in the tenant's zone: a repayment dated later is a future payment. When the zone
    /// cannot be read, today where it is latest on Earth (UTC+14), so that no payment is taken
    /// for a future one that is not.
    today: NaiveDate,
}

pub(super) fn read_tenant(plan: &Plan, target: &str, findings: &mut Findings) -> Tenant {
    let mut tenant = Tenant {
        lookups: Value::Null,
        loan_products: None,
        zone: None,
        today: (chrono::Utc::now() + chrono::Duration::hours(14)).date_naive(),
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
        match crate::target::read_lookups(&session, plan).await {
            Ok(lookups) => tenant.lookups = lookups,
            Err(e) => findings.list.push(Finding::new(
                Kind::Tenant,
                target,
                None,
                format!("{e:#}"),
                Some("check the lookup's path and the credentials".into()),
            )),
        }
        // The zone is read once: for the plan's offsets, and for "today" (future payments).
        match crate::target::tenant_zone(&session).await {
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
        connection.close().await;
    });
    tenant
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

    /// Whether the checks need this action's rendered call.
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
            self.create(at, call);
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
                if four_eyes && !has_approver {
                    let entry = out.four_eyes.entry(at.step.id.clone()).or_insert_with(|| {
                        FourEyes {
                            path: at.step.path.clone(),
                            first: (at.place(), loan.label.clone()),
                            ..FourEyes::default()
                        }
                    });
                    entry.loans += 1;
                    entry.products.insert(product_id.to_owned());
                }
            }
            Action::EditSchedule => {
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

    fn create(&mut self, at: &At<'_>, call: &Call) {
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

/// A transaction backdated before the loan's disbursement or before an earlier transaction of
/// the loan: Mambu refuses both.
fn order(at: &At<'_>, loan: &mut Loan<'_>, date: DateTime<FixedOffset>, out: &mut Found) {
    let id = &at.step.id;
    if let Some(d) = loan.disbursed.as_ref().filter(|d| date < d.at) {
        out.push(
            format!("tenant activation {id}"),
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
            format!("tenant order {id}"),
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
    format!("send predefinedFeeKey of {}", named.join(", or of "))
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
                    format!("tenant fee {id}"),
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
    let settings = |key: &str, stricter: &'static str| -> String {
        product
            .pointer(&format!("/paymentSettings/prepaymentSettings/{key}"))
            .and_then(Value::as_str)
            .unwrap_or(stricter)
            .to_owned()
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
            format!("tenant future {id}"),
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
                    loan.repaid, due
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
                format!("the plan's edited schedule, with {fees} of fees"),
            ))
        }
        Schedule::Generated => {
            let first = loan.first_repayment.filter(|first| day < *first)?;
            Some((
                fees,
                format!(
                    "no installment is due before the first repayment date {first}; fees {fees}"
                ),
            ))
        }
        Schedule::Unknown => None,
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
