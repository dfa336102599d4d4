//! A loan's repayment schedule: generating it from the loan's terms, its JSON, and editing it
//! (`PUT /loans/{id}/schedule`, a custom schedule).

use std::num::NonZeroU32;

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::json::{datetime, decimal, format_datetime, money};
use super::{Answer, Installment, Key, Loan, Money, Tenant, Terms, Zone};
use crate::sandbox::error::ApiError;
use crate::sandbox::products::ScheduleEditOption;

impl Tenant {
    /// Equal principal per installment (the last absorbs rounding), interest on the declining
    /// balance at rate/12 per month, monthly due dates from the first repayment date.
    pub(super) fn generate_schedule(
        &mut self,
        terms: Terms,
        start: DateTime<FixedOffset>,
    ) -> Schedule {
        let n = Decimal::from(terms.installments);
        let base = (terms.amount / n).round_dp(2);
        let first_due = terms
            .first_repayment
            .unwrap_or_else(|| self.zone.add_months(start, 1));
        let mut remaining = terms.amount;
        let installments = (0..terms.installments)
            .map(|i| {
                let principal = if i + 1 == terms.installments {
                    remaining
                } else {
                    base.min(remaining)
                };
                let interest = monthly_interest(remaining, terms.interest_rate);
                remaining -= principal;
                Installment {
                    encoded_key: Some(self.next_key()),
                    due: self.zone.add_months(first_due, i),
                    principal,
                    interest,
                    fee: Decimal::ZERO,
                    principal_paid: Decimal::ZERO,
                    interest_paid: Decimal::ZERO,
                    fee_paid: Decimal::ZERO,
                    repaid: None,
                }
            })
            .collect();
        Schedule::new(self.zone, installments)
    }

    pub fn get_schedule(&self, id_or_key: &str) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        Ok(self.schedule_json(index))
    }

    fn schedule_json(&self, index: usize) -> Value {
        let l = &self.loans[index];
        let currency = &self.products.loan_products[l.product].currency;
        let today = self.zone.today();
        let installments: Vec<Value> = l
            .schedule
            .iter()
            .enumerate()
            .map(|(i, inst)| {
                let state = if inst.is_paid() {
                    "PAID"
                } else if inst.principal_paid + inst.interest_paid + inst.fee_paid > Decimal::ZERO {
                    "PARTIALLY_PAID"
                } else if l.disbursed.is_some() && inst.due < today {
                    "LATE"
                } else {
                    "PENDING"
                };
                let amount = |due: Decimal, paid: Decimal| json!({ "expected": money(due), "paid": money(paid), "due": money(due - paid) });
                let mut v = json!({
                    "encodedKey": inst.encoded_key,
                    "parentAccountKey": l.encoded_key,
                    "number": (i + 1).to_string(),
                    "dueDate": format_datetime(inst.due),
                    "state": state,
                    "principal": { "amount": amount(inst.principal, inst.principal_paid) },
                    "interest": { "amount": amount(inst.interest, inst.interest_paid), "tax": amount(Decimal::ZERO, Decimal::ZERO) },
                    "fee": { "amount": amount(inst.fee, inst.fee_paid), "tax": amount(Decimal::ZERO, Decimal::ZERO) },
                    "penalty": { "amount": amount(Decimal::ZERO, Decimal::ZERO), "tax": amount(Decimal::ZERO, Decimal::ZERO) },
                    "isPaymentHoliday": false,
                });
                if let Some(at) = inst.repaid {
                    v["repaidDate"] = json!(format_datetime(at));
                }
                v
            })
            .collect();
        json!({ "currency": { "code": currency }, "installments": installments })
    }

    /// PUT /loans/{id}/schedule: the body's installments replace the schedule. An installment
    /// carrying an existing `encodedKey` keeps its identity (and what was paid on it).
    ///
    /// Mambu's schedule-editing rules (https://support.mambu.com/docs/editing-customizing-repayment-schedules,
    /// ../shared/mambu-api.md §8), in the order they are checked: the account's state and lock;
    /// what the product's `repaymentScheduleEditOptions` allow; paid and interest-applied
    /// installments stay as they are; due dates ascend, after the disbursement; the principal
    /// adds up to the loan amount; a fixed-term loan's interest is never raised.
    pub fn edit_schedule(&mut self, id_or_key: &str, body: &Value) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        let items = body
            .as_array()
            .ok_or_else(|| ApiError::invalid_parameters("installments"))?;
        if items.is_empty() {
            return Err(ApiError::invalid_installments());
        }
        self.check_editable(index)?;
        let edits = self.read_edits(index, items)?;
        self.check_changes(index, &edits)?;
        let schedule: Vec<Installment> = edits.into_iter().map(|e| e.after).collect();
        self.check_due_dates(index, &schedule)?;
        if schedule.iter().map(|i| i.principal).sum::<Decimal>() != self.loans[index].amount {
            return Err(ApiError::inconsistent_schedule_principal());
        }
        self.check_interest(index, &schedule)?;
        self.save_schedule(index, schedule);
        Ok(self.schedule_json(index))
    }

    /// Whether the account's schedule may be edited at all: its state, its lock, its product.
    fn check_editable(&self, index: usize) -> Result<(), ApiError> {
        let loan = &self.loans[index];
        let product = &self.products.loan_products[loan.product];
        let editable = if product.is_dynamic_term() {
            // Mambu: "You can't edit the schedule of a loan in the Approved loan account state".
            // Stricter reading: a dynamic account is edited while PENDING_APPROVAL or once
            // disbursed, as the record says, and not as a PARTIAL_APPLICATION either.
            matches!(
                loan.state,
                "PENDING_APPROVAL" | "ACTIVE" | "ACTIVE_IN_ARREARS"
            )
        } else {
            matches!(
                loan.state,
                "PARTIAL_APPLICATION"
                    | "PENDING_APPROVAL"
                    | "APPROVED"
                    | "ACTIVE"
                    | "ACTIVE_IN_ARREARS"
            )
        };
        if !editable {
            return Err(ApiError::schedule_editing_not_allowed());
        }
        if loan.sub_state == Some("LOCKED") {
            return Err(ApiError::account_is_locked());
        }
        // Stricter reading: a product that allows no schedule edit refuses every PUT, even one
        // that changes nothing (Mambu offers "Edit Schedule" only where the product allows it).
        if product
            .schedule_settings
            .repayment_schedule_edit_options
            .is_empty()
        {
            return Err(ApiError::editing_repayments_not_allowed(
                "repaymentScheduleEditOptions: the product allows no schedule edit",
            ));
        }
        Ok(())
    }

    /// The body's installments, each with the one it replaces (by `encodedKey`); what the body
    /// leaves out of an existing installment stays as it is.
    fn read_edits(&self, index: usize, items: &[Value]) -> Result<Vec<Edit>, ApiError> {
        let mut edits: Vec<Edit> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = |field: &str| format!("installments[{i}].{field}");
            let item = item
                .as_object()
                .ok_or_else(|| ApiError::invalid_parameters(format!("installments[{i}]")))?;
            let before = match item.get("encodedKey").and_then(Value::as_str) {
                Some(key) => {
                    // A key the tenant could not have made names no installment.
                    let key = Key::parse(key);
                    if edits.iter().any(|e| {
                        e.before
                            .as_ref()
                            .is_some_and(|b| key.is_some() && b.encoded_key == key)
                    }) {
                        return Err(ApiError::new(
                            axum::http::StatusCode::BAD_REQUEST,
                            3633,
                            "INSTALLMENT_DUPLICATED",
                        )
                        .at(at("encodedKey")));
                    }
                    Some(
                        self.loans[index]
                            .schedule
                            .iter()
                            .find(|inst| key.is_some() && inst.encoded_key == key)
                            .ok_or_else(|| {
                                ApiError::new(
                                    axum::http::StatusCode::BAD_REQUEST,
                                    3621,
                                    "INSTALLMENT_NOT_FOUND",
                                )
                                .at(at("encodedKey"))
                            })?,
                    )
                }
                None => None,
            };
            let due = match item.get("dueDate") {
                Some(v) => datetime(v, &at("dueDate"), self.zone)?,
                None => before
                    .as_ref()
                    .map(|e| e.due)
                    .ok_or_else(|| ApiError::missing(&at("dueDate")))?,
            };
            let part = |name: &str, current: Option<Decimal>| -> Result<Decimal, ApiError> {
                match item
                    .get(name)
                    .and_then(|p| p.get("amount"))
                    .and_then(|a| a.get("due"))
                {
                    Some(v) => decimal(v).ok_or_else(|| {
                        ApiError::invalid_parameters(at(&format!("{name}.amount.due")))
                    }),
                    None => Ok(current.unwrap_or(Decimal::ZERO)),
                }
            };
            let principal_due = part(
                "principal",
                before.as_ref().map(|e| e.principal - e.principal_paid),
            )?;
            let interest_due = part(
                "interest",
                before.as_ref().map(|e| e.interest - e.interest_paid),
            )?;
            let fee_due = part("fee", before.as_ref().map(|e| e.fee - e.fee_paid))?;
            if principal_due < Decimal::ZERO
                || interest_due < Decimal::ZERO
                || fee_due < Decimal::ZERO
            {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    3622,
                    "NEGATIVE_PRINCIPAL_FOR_INSTALLMENT",
                )
                .at(at("principal")));
            }
            let mut after = before.unwrap_or(Installment {
                encoded_key: None,
                due,
                principal: Decimal::ZERO,
                interest: Decimal::ZERO,
                fee: Decimal::ZERO,
                principal_paid: Decimal::ZERO,
                interest_paid: Decimal::ZERO,
                fee_paid: Decimal::ZERO,
                repaid: None,
            });
            after.due = due;
            after.principal = after.principal_paid + principal_due;
            after.interest = after.interest_paid + interest_due;
            after.fee = after.fee_paid + fee_due;
            edits.push(Edit { before, after });
        }
        Ok(edits)
    }

    /// What each installment changes, against what may change: not a paid installment, not one
    /// with interest applied, and only what the product's edit options allow (adding or
    /// removing installments included).
    fn check_changes(&self, index: usize, edits: &[Edit]) -> Result<(), ApiError> {
        let loan = &self.loans[index];
        let product = &self.products.loan_products[loan.product];
        let today = self.zone.today();
        let require = |option: ScheduleEditOption, source: String| {
            if product.allows(option) {
                Ok(())
            } else {
                Err(ApiError::editing_repayments_not_allowed(format!(
                    "{source}: the product's repaymentScheduleEditOptions lack {option}"
                )))
            }
        };
        for (i, edit) in edits.iter().enumerate() {
            let Some(before) = &edit.before else {
                require(
                    ScheduleEditOption::AdjustNumberOfInstallments,
                    format!("installments[{i}]"),
                )?;
                continue;
            };
            let after = &edit.after;
            let changed = [
                (
                    before.due != after.due,
                    ScheduleEditOption::AdjustPaymentDates,
                    "dueDate",
                ),
                (
                    before.principal != after.principal,
                    ScheduleEditOption::AdjustPrincipalPaymentSchedule,
                    "principal",
                ),
                (
                    before.interest != after.interest,
                    ScheduleEditOption::AdjustInterestPaymentSchedule,
                    "interest",
                ),
                (
                    before.fee != after.fee,
                    ScheduleEditOption::AdjustFeePaymentSchedule,
                    "fee",
                ),
            ];
            if !changed.iter().any(|(c, _, _)| *c) {
                continue;
            }
            if before.is_paid() {
                return Err(ApiError::installment_already_paid(format!(
                    "installments[{i}]"
                )));
            }
            if interest_applied(loan, before, today) {
                return Err(ApiError::interest_applied_installment(format!(
                    "installments[{i}]"
                )));
            }
            for (_, option, field) in changed.iter().filter(|(c, _, _)| *c) {
                require(*option, format!("installments[{i}].{field}"))?;
            }
        }
        let kept = |inst: &Installment| {
            edits.iter().any(|e| {
                e.before
                    .as_ref()
                    .is_some_and(|b| b.encoded_key == inst.encoded_key)
            })
        };
        for removed in loan.schedule.iter().filter(|inst| !kept(inst)) {
            if removed.is_paid() {
                return Err(ApiError::paid_installment_deleted());
            }
            if interest_applied(loan, &removed, today) {
                return Err(ApiError::interest_applied_installment("installments"));
            }
            require(
                ScheduleEditOption::AdjustNumberOfInstallments,
                "installments".into(),
            )?;
        }
        Ok(())
    }

    /// Due dates ascend, one installment a day at most, and begin after the disbursement (the
    /// expected one until the loan is disbursed).
    fn check_due_dates(&self, index: usize, schedule: &[Installment]) -> Result<(), ApiError> {
        for w in schedule.windows(2) {
            if w[1].due == w[0].due {
                return Err(ApiError::due_dates_not_unique());
            }
            if w[1].due < w[0].due {
                return Err(ApiError::due_dates_not_ascending());
            }
        }
        let loan = &self.loans[index];
        let first = schedule[0].due;
        match (loan.disbursed, loan.expected_disbursement) {
            (Some(disbursed), _) if first <= disbursed => Err(
                // Closest reason: none of Mambu's names a due date moved before the disbursement.
                ApiError::invalid_first_repayment_due_date("installments[0].dueDate"),
            ),
            (None, Some(expected)) if first <= expected => Err(
                ApiError::first_repayment_before_expected_disbursement("installments[0].dueDate"),
            ),
            _ => Ok(()),
        }
    }

    /// A fixed-term loan's total interest may only decrease (Mambu: "You cannot increase the
    /// total interest, only decrease it"): never above what the loan's rate charges on the
    /// declining principal of the schedule being saved, the interest Mambu would compute.
    ///
    /// Reading: the record does not say against what an increase is measured. The sandbox
    /// measures it against the loan's own terms on the edited principal, so a schedule that
    /// repays principal later may carry the interest that later repayment costs at the loan's
    /// rate. The stricter reading (never above the schedule's total before the edit, whatever
    /// the principal) would refuse legacy schedules priced at the contract rate whose principal
    /// is back-loaded, which `fixtures/sample/` holds.
    fn check_interest(&self, index: usize, schedule: &[Installment]) -> Result<(), ApiError> {
        let loan = &self.loans[index];
        if !self.products.loan_products[loan.product].is_fixed_term() {
            return Ok(());
        }
        let mut balance = loan.amount;
        let mut terms = Decimal::ZERO;
        for inst in schedule {
            terms += monthly_interest(balance, loan.interest_rate);
            balance -= inst.principal;
        }
        let total: Decimal = schedule.iter().map(|i| i.interest).sum();
        if total > terms {
            return Err(ApiError::interest_increased(format!(
                "installments.interest: a fixed-term loan's total interest may only decrease: {total:.2} is more than the {terms:.2} its rate charges on this schedule"
            )));
        }
        Ok(())
    }

    /// Stores an edited schedule: installments without a key of this loan get a new one.
    fn save_schedule(&mut self, index: usize, mut schedule: Vec<Installment>) {
        let old: Vec<Key> = self.loans[index]
            .schedule
            .iter()
            .filter_map(|i| i.encoded_key)
            .collect();
        for inst in &mut schedule {
            if !inst.encoded_key.is_some_and(|k| old.contains(&k)) {
                inst.encoded_key = Some(self.next_key());
            }
        }
        let loan = &mut self.loans[index];
        loan.installments = u32::try_from(schedule.len()).unwrap_or(u32::MAX);
        loan.schedule = Schedule::new(self.zone, schedule);
        self.entities.loan_state(loan, -1);
        loan.custom_schedule = true;
        self.entities.loan_state(loan, 1);
        loan.modified = self.zone.now();
    }
}

/// A loan's installments, kept compactly (issue 21): an [`Installment`] takes 136 bytes, a
/// [`Packed`] one 64. Exactness first: a schedule is packed only when every value of every
/// installment packs and reads back exactly (amounts of at most four decimals, date-times to
/// the second between 1970 and 2106 with the offset the tenant's zone has then); otherwise the
/// loan keeps its installments as they are, in the exact form, until a change lets them pack
/// again. The rules read installments by value ([`Schedule::iter`], [`Schedule::at`]) and
/// change them through [`Schedule::edit`], which repacks.
#[derive(Debug, Clone)]
pub(super) struct Schedule {
    /// The zone the dates are packed in (the tenant's).
    zone: Zone,
    form: Form,
}

#[derive(Debug, Clone)]
enum Form {
    Packed(Vec<Packed>),
    Exact(Vec<Installment>),
}

/// An installment in 64 bytes: its key, its six amounts as [`Money`], its dates as [`Stamp`]s.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packed {
    encoded_key: Option<Key>,
    /// Principal, interest, fee, then what was paid of each.
    amounts: [Money; 6],
    due: Stamp,
    repaid: Option<Stamp>,
}

/// A date-time to the second from 1970 to 2106, in the tenant's zone, in 4 bytes: the seconds
/// since 1970-01-01T00:00:00Z, plus one (so that an `Option<Stamp>` takes 4 bytes too). The
/// offset is the one the zone has at that instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(NonZeroU32);

impl Stamp {
    /// `at` exactly, if it is to the second, in range, and carries the zone's offset.
    fn of(at: DateTime<FixedOffset>, zone: Zone) -> Option<Stamp> {
        if at.timestamp_subsec_nanos() != 0 {
            return None;
        }
        let n = u32::try_from(at.timestamp().checked_add(1)?).ok()?;
        let stamp = Stamp(NonZeroU32::new(n)?);
        let back = stamp.get(zone)?;
        (back == at && back.offset() == at.offset()).then_some(stamp)
    }

    fn get(self, zone: Zone) -> Option<DateTime<FixedOffset>> {
        zone.at_timestamp(i64::from(self.0.get()) - 1)
    }
}

impl Packed {
    fn of(inst: &Installment, zone: Zone) -> Option<Packed> {
        let mut amounts = [Money::default(); 6];
        for (packed, amount) in amounts.iter_mut().zip(inst.amounts()) {
            *packed = Money::of(amount)?;
        }
        Some(Packed {
            encoded_key: inst.encoded_key,
            amounts,
            due: Stamp::of(inst.due, zone)?,
            repaid: match inst.repaid {
                Some(at) => Some(Stamp::of(at, zone)?),
                None => None,
            },
        })
    }

    fn get(&self, zone: Zone) -> Installment {
        // In the order of `Installment::amounts`.
        let [p, i, f, p_paid, i_paid, f_paid] = self.amounts.map(Money::get);
        // A stamp is made only where it reads back (see `Stamp::of`).
        let date = |s: Stamp| s.get(zone).unwrap_or_default();
        Installment {
            encoded_key: self.encoded_key,
            due: date(self.due),
            principal: p,
            interest: i,
            fee: f,
            principal_paid: p_paid,
            interest_paid: i_paid,
            fee_paid: f_paid,
            repaid: self.repaid.map(date),
        }
    }
}

impl Installment {
    /// Principal, interest, fee, then what was paid of each.
    fn amounts(&self) -> [Decimal; 6] {
        [
            self.principal,
            self.interest,
            self.fee,
            self.principal_paid,
            self.interest_paid,
            self.fee_paid,
        ]
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::new(Zone::default(), Vec::new())
    }
}

impl Schedule {
    /// `installments`, packed in `zone` if they all pack exactly.
    pub(super) fn new(zone: Zone, installments: Vec<Installment>) -> Self {
        let packed: Option<Vec<Packed>> =
            installments.iter().map(|i| Packed::of(i, zone)).collect();
        let form = match packed {
            Some(packed) => Form::Packed(packed),
            None => Form::Exact(installments),
        };
        Schedule { zone, form }
    }

    pub(super) fn len(&self) -> usize {
        match &self.form {
            Form::Packed(p) => p.len(),
            Form::Exact(e) => e.len(),
        }
    }

    /// The installments, in order, by value.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = Installment> + '_ {
        (0..self.len()).map(|i| self.at(i))
    }

    /// The installment at `i` (counted from 0); panics beyond the last, as indexing does.
    pub(super) fn at(&self, i: usize) -> Installment {
        match &self.form {
            Form::Packed(p) => p[i].get(self.zone),
            Form::Exact(e) => e[i],
        }
    }

    pub(super) fn first(&self) -> Option<Installment> {
        (self.len() > 0).then(|| self.at(0))
    }

    /// Changes the installments through `f`, then keeps them packed if they all pack.
    pub(super) fn edit<R>(&mut self, f: impl FnOnce(&mut [Installment]) -> R) -> R {
        let mut installments: Vec<Installment> = self.iter().collect();
        let out = f(&mut installments);
        *self = Schedule::new(self.zone, installments);
        out
    }

    /// Whether the installments are kept exact, not packed.
    #[cfg(test)]
    fn is_exact(&self) -> bool {
        matches!(self.form, Form::Exact(_))
    }
}

/// One installment of a schedule edit: the one it replaces (none for an added installment) and
/// what it becomes.
struct Edit {
    before: Option<Installment>,
    after: Installment,
}

/// A month's interest on `balance` at the yearly `rate` (percent), to the cent (the monthly
/// rate first, as the legacy schedules of `fixtures/sample/` are computed).
fn monthly_interest(balance: Decimal, rate: Decimal) -> Decimal {
    (balance * (rate / Decimal::from(1200))).round_dp(2)
}

/// Whether Mambu has applied interest to the installment: interest is applied on each due date
/// by the end-of-day job once the loan is disbursed, and a repayment that pays interest
/// applies it. Stricter reading: a backdated disbursement applies it at once for every due
/// date already past, and the due date's own day counts (as if its end of day had run).
fn interest_applied(loan: &Loan, inst: &Installment, today: DateTime<FixedOffset>) -> bool {
    loan.disbursed.is_some() && (inst.due <= today || inst.interest_paid > Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{approved_loan, client, loan, tenant};
    use super::super::{TransactionKind, Zone};
    use super::*;
    use crate::sandbox::products::Products;

    const PERSONAL: &str = "8a19c0de00000000000000000000a001";
    const MICRO: &str = "8a19c0de00000000000000000000a003";

    /// The loan's schedule as a PUT body that changes nothing, for a test to alter.
    fn unchanged(t: &Tenant, id: &str) -> Vec<Value> {
        t.get_schedule(id).unwrap()["installments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                json!({
                    "encodedKey": i["encodedKey"],
                    "dueDate": i["dueDate"],
                    "principal": { "amount": { "due": i["principal"]["amount"]["due"] } },
                    "interest": { "amount": { "due": i["interest"]["amount"]["due"] } },
                })
            })
            .collect()
    }

    /// What the edit is refused with: its reason and errorSource.
    fn refused(t: &mut Tenant, id: &str, body: Vec<Value>) -> (&'static str, String) {
        let err = t.edit_schedule(id, &Value::Array(body)).unwrap_err();
        (err.reason, err.source.unwrap_or_default())
    }

    /// A loan of 900 in 3 installments (300 principal each; 9.00, 6.00, 3.00 interest at 12%)
    /// of `product`, expected to be disbursed on 2024-01-15, first due 2024-02-15.
    fn dated_loan(t: &mut Tenant, product: &str) -> String {
        let holder = client(t);
        let body = json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": product,
            "loanAmount": 900, "interestSettings": { "interestRate": 12 }, "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 },
            "disbursementDetails": { "expectedDisbursementDate": "2024-01-15T00:00:00+00:00", "firstRepaymentDate": "2024-02-15T00:00:00+00:00" } });
        t.create_loan(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn approve(t: &mut Tenant, id: &str) {
        t.change_loan_state(id, &json!({ "action": "APPROVE" }))
            .unwrap();
    }

    fn disburse(t: &mut Tenant, id: &str, on: &str) {
        t.post_transaction(
            id,
            TransactionKind::Disbursement,
            &json!({ "valueDate": on }),
        )
        .unwrap();
    }

    /// A loan of 900 in 3 installments, disbursed today; its id.
    fn disbursed_today(t: &mut Tenant) -> String {
        let today = t.zone.today();
        let id = approved_loan(t, "900");
        disburse(t, &id, &format_datetime(today));
        id
    }

    #[test]
    fn a_schedule_packs_only_what_reads_back_exactly() {
        let zone = Zone::new(chrono_tz::Europe::Lisbon);
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap();
        let inst = Installment {
            encoded_key: None,
            due: at("2024-07-15T00:00:00+01:00"),
            principal: Decimal::new(33333, 2),
            interest: Decimal::new(900, 2),
            fee: Decimal::ZERO,
            principal_paid: Decimal::ZERO,
            interest_paid: Decimal::ZERO,
            fee_paid: Decimal::ZERO,
            repaid: Some(at("2024-12-01T10:11:12+00:00")),
        };
        let schedule = Schedule::new(zone, vec![inst]);
        assert!(!schedule.is_exact());
        let back = schedule.at(0);
        assert_eq!(format_datetime(back.due), "2024-07-15T00:00:00+01:00");
        assert_eq!(
            back.repaid.map(format_datetime).as_deref(),
            Some("2024-12-01T10:11:12+00:00")
        );
        assert_eq!(
            (back.principal, back.interest),
            (inst.principal, inst.interest)
        );
        // What does not pack keeps the loan's installments exact, and packed again once it
        // is gone.
        let mut schedule = Schedule::new(zone, vec![inst]);
        schedule.edit(|s| s[0].principal_paid = Decimal::new(1012345, 5));
        assert!(schedule.is_exact());
        assert_eq!(schedule.at(0).principal_paid.to_string(), "10.12345");
        schedule.edit(|s| s[0].principal_paid = Decimal::ZERO);
        assert!(!schedule.is_exact());
        for due in [
            "2024-07-15T00:00:00.5+01:00",
            "2024-07-15T00:00:00+00:00",
            "1969-12-31T00:00:00+01:00",
            "2107-01-01T00:00:00+00:00",
        ] {
            let odd = Installment {
                due: at(due),
                ..inst
            };
            let schedule = Schedule::new(zone, vec![odd]);
            assert!(schedule.is_exact(), "{due}");
            let back = schedule.at(0).due;
            assert_eq!((back, back.offset()), (odd.due, odd.due.offset()), "{due}");
        }
    }

    #[test]
    fn a_repayment_of_more_decimals_than_four_is_kept_exactly() {
        let mut t = tenant();
        let id = disbursed_today(&mut t);
        t.post_transaction(
            &id,
            TransactionKind::Repayment,
            &json!({ "amount": 10.12345 }),
        )
        .unwrap();
        let schedule = t.get_schedule(&id).unwrap();
        let first = &schedule["installments"][0];
        assert_eq!(first["principal"]["amount"]["paid"].to_string(), "1.12345");
        assert_eq!(first["principal"]["amount"]["due"].to_string(), "298.87655");
        let index = t.loan_index(&id).unwrap();
        assert!(t.loans[index].schedule.is_exact());
    }

    #[test]
    fn generated_schedule_sums_to_the_loan_amount() {
        let mut t = tenant();
        let holder = client(&mut t);
        let l = loan(&mut t, &holder, "1000.00");
        let schedule = t.get_schedule(l["id"].as_str().unwrap()).unwrap();
        let total: Decimal = schedule["installments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| decimal(&i["principal"]["amount"]["expected"]).unwrap())
            .sum();
        assert_eq!(total, Decimal::from(1000));
        assert_eq!(
            schedule["installments"][0]["principal"]["amount"]["due"].to_string(),
            "333.33"
        );
        assert_eq!(
            schedule["installments"][2]["principal"]["amount"]["due"].to_string(),
            "333.34"
        );
    }

    #[test]
    fn only_what_the_products_edit_options_allow_changes() {
        let mut t = tenant();
        let id = dated_loan(&mut t, PERSONAL);
        let mut moved = unchanged(&t, &id);
        moved[2]["dueDate"] = json!("2024-04-20T00:00:00+00:00");
        assert_eq!(
            refused(&mut t, &id, moved),
            (
                "EDITING_REPAYMENTS_NOT_ALLOWED",
                "installments[2].dueDate: the product's repaymentScheduleEditOptions lack ADJUST_PAYMENT_DATES".into()
            )
        );
        let mut fewer = unchanged(&t, &id);
        fewer.pop();
        fewer[1]["principal"]["amount"]["due"] = json!(600);
        assert_eq!(
            refused(&mut t, &id, fewer),
            (
                "EDITING_REPAYMENTS_NOT_ALLOWED",
                "installments: the product's repaymentScheduleEditOptions lack ADJUST_NUMBER_OF_INSTALLMENTS".into()
            )
        );
        let mut twice = unchanged(&t, &id);
        twice[1]["encodedKey"] = twice[0]["encodedKey"].clone();
        assert_eq!(
            refused(&mut t, &id, twice),
            (
                "INSTALLMENT_DUPLICATED",
                "installments[1].encodedKey".into()
            )
        );
        let mut reshaped = unchanged(&t, &id);
        reshaped[0]["principal"]["amount"]["due"] = json!(200);
        reshaped[2]["principal"]["amount"]["due"] = json!(400);
        reshaped[0]["interest"]["amount"]["due"] = json!(8);
        t.edit_schedule(&id, &Value::Array(reshaped)).unwrap();

        // A product that lists no option allows no edit, not even one that changes nothing.
        let mut products = Products::default_set();
        products.loan_products[0]
            .schedule_settings
            .repayment_schedule_edit_options
            .clear();
        let mut t = Tenant::new(products, Zone::default(), Default::default());
        let id = dated_loan(&mut t, PERSONAL);
        let same = unchanged(&t, &id);
        assert_eq!(
            refused(&mut t, &id, same),
            (
                "EDITING_REPAYMENTS_NOT_ALLOWED",
                "repaymentScheduleEditOptions: the product allows no schedule edit".into()
            )
        );
    }

    #[test]
    fn a_locked_account_is_not_edited() {
        let mut t = tenant();
        let id = dated_loan(&mut t, PERSONAL);
        approve(&mut t, &id);
        disburse(&mut t, &id, "2024-01-15T00:00:00+00:00");
        t.lock_loan(&id, &json!({})).unwrap();
        let same = unchanged(&t, &id);
        assert_eq!(
            refused(&mut t, &id, same.clone()),
            ("ACCOUNT_IS_LOCKED", "accountSubState".into())
        );
        t.unlock_loan(&id, &json!({})).unwrap();
        t.edit_schedule(&id, &Value::Array(same)).unwrap();
    }

    #[test]
    fn paid_and_interest_applied_installments_stay_as_they_are() {
        let mut t = tenant();
        let today = t.zone.today();
        // Every due date is ahead, no interest is applied yet.
        let id = disbursed_today(&mut t);
        let mut later = unchanged(&t, &id);
        later[2]["interest"]["amount"]["due"] = json!(2);
        t.edit_schedule(&id, &Value::Array(later)).unwrap();
        // 309 pays the first installment (9 interest, 300 principal); 1 more pays interest of
        // the second.
        t.post_transaction(&id, TransactionKind::Repayment, &json!({ "amount": 310 }))
            .unwrap();
        let mut paid = unchanged(&t, &id);
        paid[0]["dueDate"] = json!(format_datetime(today + chrono::Duration::days(1)));
        assert_eq!(
            refused(&mut t, &id, paid),
            ("INSTALLMENT_ALREADY_PAID", "installments[0]".into())
        );
        let mut applied = unchanged(&t, &id);
        applied[1]["interest"]["amount"]["due"] = json!(1);
        assert_eq!(
            refused(&mut t, &id, applied),
            (
                "INSTALLMENT_WITH_INTEREST_APPLIED_CANNOT_BE_EDITED",
                "installments[1]".into()
            )
        );
        let mut dropped = unchanged(&t, &id);
        dropped.remove(0);
        assert_eq!(
            refused(&mut t, &id, dropped),
            (
                "PAID_OR_PURE_GRACE_INSTALLMENT_CANNOT_BE_DELETED",
                "installments".into()
            )
        );
        // Unchanged, they pass: the PUT of the schedule as it is succeeds.
        let same = unchanged(&t, &id);
        t.edit_schedule(&id, &Value::Array(same)).unwrap();

        // A backdated disbursement: the installments already due have interest applied.
        let id = dated_loan(&mut t, PERSONAL);
        approve(&mut t, &id);
        disburse(&mut t, &id, "2024-01-15T00:00:00+00:00");
        let mut past = unchanged(&t, &id);
        past[0]["interest"]["amount"]["due"] = json!(8);
        assert_eq!(
            refused(&mut t, &id, past),
            (
                "INSTALLMENT_WITH_INTEREST_APPLIED_CANNOT_BE_EDITED",
                "installments[0]".into()
            )
        );
    }

    #[test]
    fn a_fixed_term_loans_interest_only_decreases() {
        let mut t = tenant();
        let id = dated_loan(&mut t, PERSONAL);
        let mut more = unchanged(&t, &id);
        more[2]["interest"]["amount"]["due"] = json!(3.01);
        assert_eq!(
            refused(&mut t, &id, more),
            (
                "INVALID_INSTALLMENTS",
                "installments.interest: a fixed-term loan's total interest may only decrease: 18.01 is more than the 18.00 its rate charges on this schedule".into()
            )
        );
        // Principal repaid later costs the interest the rate charges on it, no more.
        let mut later = unchanged(&t, &id);
        for (i, (principal, interest)) in [(100, 9), (300, 8), (500, 5)].iter().enumerate() {
            later[i]["principal"]["amount"]["due"] = json!(principal);
            later[i]["interest"]["amount"]["due"] = json!(interest);
        }
        t.edit_schedule(&id, &Value::Array(later.clone())).unwrap();
        later[2]["interest"]["amount"]["due"] = json!(5.01);
        assert_eq!(refused(&mut t, &id, later).0, "INVALID_INSTALLMENTS");
        let mut less = unchanged(&t, &id);
        less[0]["interest"]["amount"]["due"] = json!(0);
        t.edit_schedule(&id, &Value::Array(less)).unwrap();

        // A dynamic-term loan's interest is recomputed by Mambu, not capped here.
        let id = dated_loan(&mut t, MICRO);
        let mut more = unchanged(&t, &id);
        more[2]["interest"]["amount"]["due"] = json!(30);
        t.edit_schedule(&id, &Value::Array(more)).unwrap();
    }

    #[test]
    fn a_dynamic_term_loan_is_not_edited_while_approved() {
        let mut t = tenant();
        let id = dated_loan(&mut t, MICRO);
        let same = unchanged(&t, &id);
        t.edit_schedule(&id, &Value::Array(same.clone())).unwrap();
        approve(&mut t, &id);
        assert_eq!(
            refused(&mut t, &id, same.clone()),
            (
                "LOAN_ACCOUNT_SCHEDULE_EDITING_NOT_ALLOWED",
                "accountState".into()
            )
        );
        disburse(&mut t, &id, "2024-01-15T00:00:00+00:00");
        t.edit_schedule(&id, &Value::Array(same)).unwrap();
        // Nor as a partial application (stricter reading).
        let holder = client(&mut t);
        let partial = t.create_loan(&json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "productTypeKey": MICRO,
            "loanAmount": 900, "accountState": "PARTIAL_APPLICATION", "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 } }))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let same = unchanged(&t, &partial);
        assert_eq!(
            refused(&mut t, &partial, same).0,
            "LOAN_ACCOUNT_SCHEDULE_EDITING_NOT_ALLOWED"
        );
        // A fixed-term loan is edited while approved.
        let id = dated_loan(&mut t, PERSONAL);
        approve(&mut t, &id);
        let same = unchanged(&t, &id);
        t.edit_schedule(&id, &Value::Array(same)).unwrap();
    }

    #[test]
    fn due_dates_ascend_after_the_disbursement() {
        let mut products = Products::default_set();
        for p in &mut products.loan_products {
            p.schedule_settings
                .repayment_schedule_edit_options
                .push(ScheduleEditOption::AdjustPaymentDates);
        }
        let mut t = Tenant::new(products, Zone::default(), Default::default());
        let id = dated_loan(&mut t, MICRO);
        let with_dues = |t: &Tenant, dues: [&str; 3]| {
            let mut body = unchanged(t, &id);
            for (item, due) in body.iter_mut().zip(dues) {
                item["dueDate"] = json!(format!("{due}T00:00:00+00:00"));
            }
            body
        };
        let swapped = with_dues(&t, ["2024-02-15", "2024-04-15", "2024-03-15"]);
        assert_eq!(
            refused(&mut t, &id, swapped),
            (
                "DUE_DATES_NOT_IN_ASCENDING_ORDER",
                "installments.dueDate".into()
            )
        );
        let twice = with_dues(&t, ["2024-02-15", "2024-02-15", "2024-03-15"]);
        assert_eq!(
            refused(&mut t, &id, twice),
            ("DUE_DATES_NOT_UNIQUE", "installments.dueDate".into())
        );
        let early = with_dues(&t, ["2024-01-15", "2024-02-15", "2024-03-15"]);
        assert_eq!(
            refused(&mut t, &id, early),
            (
                "FIRST_REPAYMENT_DATE_BEFORE_EXPECTED_DISBURSEMENT_DATE",
                "installments[0].dueDate".into()
            )
        );
        let later = with_dues(&t, ["2024-02-20", "2024-03-20", "2024-04-20"]);
        t.edit_schedule(&id, &Value::Array(later)).unwrap();

        // Once disbursed, not on or before the disbursement.
        let id = approved_loan(&mut t, "900");
        let today = t.zone.today();
        disburse(&mut t, &id, &format_datetime(today));
        let mut before = unchanged(&t, &id);
        before[0]["dueDate"] = json!(format_datetime(today));
        assert_eq!(
            refused(&mut t, &id, before),
            (
                "INVALID_FIRST_REPAYMENT_DUE_DATE",
                "installments[0].dueDate".into()
            )
        );
    }
}
