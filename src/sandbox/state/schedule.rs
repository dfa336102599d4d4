//! A loan's repayment schedule: generating it from the loan's terms, its JSON, and editing it
//! (`PUT /loans/{id}/schedule`, a custom schedule).

use std::num::NonZeroU64;

use chrono::{DateTime, FixedOffset, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::json::{datetime, decimal, format_datetime, money};
use super::varint;
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

/// A loan's installments, kept compactly (issue 21): an [`Installment`] takes 136 bytes, an
/// encoded one about 2 (a generated schedule's: 63 bytes for 34; see [`encode`]). Exactness
/// first: a schedule is encoded only when every value of every installment reads back exactly
/// (amounts of at most four decimals, date-times to the second with the offset the tenant's
/// zone has then); otherwise the loan keeps its installments as they are, in the exact form,
/// until a change lets them encode again. The rules read installments by value ([`Schedule::iter`], which
/// decodes them in order, [`Schedule::at`]) and change them through [`Schedule::edit`], which
/// encodes them again.
#[derive(Debug, Clone)]
pub(super) struct Schedule {
    /// The zone the dates are encoded in (the tenant's).
    zone: Zone,
    form: Form,
    /// The earliest due date of an installment with something still owed: whether the loan is
    /// in arrears on a day without decoding it ([`Schedule::owed_before`]), which
    /// `GET /_sandbox/stats` asks of every ACTIVE loan.
    first_owed: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
enum Form {
    /// `len` installments, one after the other in `bytes` (see [`encode`]), their amounts
    /// counted in units of 10^`scale` ten-thousandths (2: cents).
    Encoded {
        len: u32,
        scale: u8,
        bytes: Box<[u8]>,
    },
    Exact(Box<[Installment]>),
}

/// What the next installment is predicted to be from the ones before it; an installment is
/// encoded as what differs from its prediction. Its encodedKey follows the one before; its due
/// date is as many months after the first as its position (the generated schedules' and the
/// legacy ones'); each amount continues the line of the two before (equal principal, interest
/// on the declining balance, nothing paid: all but a cent of rounding predicted).
#[derive(Default)]
struct Prediction {
    /// The installment's position.
    index: u32,
    /// The last encodedKey's number (0 before the first).
    key: i64,
    first_due: Option<DateTime<FixedOffset>>,
    /// The amounts of the last installment and of the one before it, in units of the scale.
    last: [i64; 6],
    before: [i64; 6],
}

impl Prediction {
    fn key(&self) -> i64 {
        self.key.wrapping_add(1)
    }

    /// The due date's seconds since 1970.
    fn due(&self, zone: Zone) -> i64 {
        self.first_due
            .map_or(0, |first| zone.add_months(first, self.index).timestamp())
    }

    fn amount(&self, j: usize) -> i64 {
        self.last[j].wrapping_mul(2).wrapping_sub(self.before[j])
    }

    fn next(&mut self, key: Option<i64>, due: DateTime<FixedOffset>, amounts: [i64; 6]) {
        self.index = self.index.wrapping_add(1);
        self.key = key.unwrap_or(self.key);
        self.first_due.get_or_insert(due);
        self.before = self.last;
        self.last = amounts;
    }
}

/// The head byte of an installment: it has an encodedKey, a repaid date; its key, its due date
/// differ from their prediction; which of principal, interest and fee (from bit 4) do; and
/// whether a byte follows saying which of the paid amounts do (bits 0 to 2, [`PAID`]).
const KEY: u8 = 1;
const REPAID: u8 = 2;
const KEY_OFF: u8 = 4;
const DUE_OFF: u8 = 8;
const AMOUNT: u8 = 16;
const PAID: u8 = 128;

/// `installments` encoded, if every one reads back exactly. An installment is its head byte
/// (see [`KEY`]), the byte of its paid amounts if any differs, then as zigzag LEB128 varints
/// what differs from its prediction (see [`Prediction`]): its encodedKey's number less the
/// predicted one, its due date's seconds less the predicted ones, its repaid date's seconds
/// less its due date's (if repaid), each amount less its prediction. A generated installment
/// takes 1 or 2 bytes (its interest's rounding), the first about 15.
fn encode(zone: Zone, installments: &[Installment]) -> Option<Form> {
    let len = u32::try_from(installments.len()).ok()?;
    let units = installments
        .iter()
        .map(|inst| {
            let mut units = [0; 6];
            for (u, amount) in units.iter_mut().zip(inst.amounts()) {
                *u = Money::of(amount)?.0;
            }
            Some(units)
        })
        .collect::<Option<Vec<[i64; 6]>>>()?;
    let scale = (0..=Money::SCALE as u8)
        .rev()
        .find(|k| {
            let unit = 10i64.pow(u32::from(*k));
            units.iter().flatten().all(|u| u % unit == 0)
        })
        .unwrap_or(0);
    let unit = 10i64.pow(u32::from(scale));
    let mut bytes = Vec::new();
    let mut prediction = Prediction::default();
    for (inst, units) in installments.iter().zip(&units) {
        let amounts = units.map(|u| u / unit);
        let key = inst.encoded_key.map(|k| k.0.get() as i64);
        let key_off = key.map_or(0, |k| k.wrapping_sub(prediction.key()));
        let due = inst.due.timestamp();
        let due_off = due.wrapping_sub(prediction.due(zone));
        let differences: [i64; 6] =
            std::array::from_fn(|j| amounts[j].wrapping_sub(prediction.amount(j)));
        let mut mask = 0u8;
        for (j, d) in differences.iter().enumerate() {
            if *d != 0 {
                mask |= 1 << j;
            }
        }
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let head = flag(key.is_some(), KEY)
            | flag(inst.repaid.is_some(), REPAID)
            | flag(key_off != 0, KEY_OFF)
            | flag(due_off != 0, DUE_OFF)
            | ((mask & 7) * AMOUNT)
            | flag(mask > 7, PAID);
        bytes.push(head);
        if mask > 7 {
            bytes.push(mask >> 3);
        }
        for off in [key_off, due_off].into_iter().filter(|off| *off != 0) {
            put(&mut bytes, off);
        }
        if let Some(repaid) = inst.repaid {
            put(&mut bytes, repaid.timestamp().wrapping_sub(due));
        }
        for d in differences.into_iter().filter(|d| *d != 0) {
            put(&mut bytes, d);
        }
        prediction.next(key, inst.due, amounts);
    }
    let schedule = Schedule {
        zone,
        form: Form::Encoded {
            len,
            scale,
            bytes: bytes.into_boxed_slice(),
        },
        // Only read back here.
        first_owed: None,
    };
    let exact = schedule
        .iter()
        .zip(installments)
        .all(|(back, inst)| back.reads_as(inst));
    exact.then_some(schedule.form)
}

/// `n` zigzagged (small magnitudes, small numbers) as a LEB128 varint.
fn put(bytes: &mut Vec<u8>, n: i64) {
    varint::put(bytes, varint::zigzag(n));
}

/// Decodes an encoded schedule's installments in order.
struct Decoder<'a> {
    zone: Zone,
    unit: i64,
    bytes: &'a [u8],
    left: u32,
    prediction: Prediction,
}

impl Decoder<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.bytes.split_first().unwrap_or((&0, &[]));
        self.bytes = rest;
        *first
    }

    /// The next varint, unzigzagged (see [`put`]).
    fn take(&mut self) -> i64 {
        varint::unzigzag(varint::take(&mut self.bytes))
    }
}

impl Iterator for Decoder<'_> {
    type Item = Installment;

    fn next(&mut self) -> Option<Installment> {
        self.left = self.left.checked_sub(1)?;
        let head = self.byte();
        let paid = if head & PAID != 0 {
            self.byte() << 3
        } else {
            0
        };
        let mask = ((head / AMOUNT) & 7) | paid;
        let key_off = if head & KEY_OFF != 0 { self.take() } else { 0 };
        let due_off = if head & DUE_OFF != 0 { self.take() } else { 0 };
        let key = (head & KEY != 0).then(|| self.prediction.key().wrapping_add(key_off));
        let due = self.prediction.due(self.zone).wrapping_add(due_off);
        let repaid = (head & REPAID != 0).then(|| due.wrapping_add(self.take()));
        let mut amounts = [0; 6];
        for (j, a) in amounts.iter_mut().enumerate() {
            *a = self.prediction.amount(j);
            if mask & (1 << j) != 0 {
                *a = a.wrapping_add(self.take());
            }
        }
        // What is encoded reads back (see `encode`); a value that does not cannot be there.
        let date = |seconds: i64| self.zone.at_timestamp(seconds).unwrap_or_default();
        let due_at = date(due);
        let [p, i, f, p_paid, i_paid, f_paid] =
            amounts.map(|a| Money(a.wrapping_mul(self.unit)).get());
        let inst = Installment {
            encoded_key: key.and_then(|k| NonZeroU64::new(k as u64)).map(Key),
            due: due_at,
            principal: p,
            interest: i,
            fee: f,
            principal_paid: p_paid,
            interest_paid: i_paid,
            fee_paid: f_paid,
            repaid: repaid.map(date),
        };
        self.prediction.next(key, due_at, amounts);
        Some(inst)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// A schedule's installments in order, by value.
enum Iter<'a> {
    Encoded(Decoder<'a>),
    Exact(std::slice::Iter<'a, Installment>),
}

impl Iterator for Iter<'_> {
    type Item = Installment;

    fn next(&mut self) -> Option<Installment> {
        match self {
            Iter::Encoded(d) => d.next(),
            Iter::Exact(e) => e.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Encoded(d) => d.size_hint(),
            Iter::Exact(e) => e.size_hint(),
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

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

    /// Whether `self` (read back) is `other` exactly: its dates with their offsets too.
    fn reads_as(&self, other: &Installment) -> bool {
        let same =
            |a: DateTime<FixedOffset>, b: DateTime<FixedOffset>| a == b && a.offset() == b.offset();
        self.encoded_key == other.encoded_key
            && same(self.due, other.due)
            && match (self.repaid, other.repaid) {
                (Some(a), Some(b)) => same(a, b),
                (a, b) => a.is_none() && b.is_none(),
            }
            && self.amounts() == other.amounts()
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::new(Zone::default(), Vec::new())
    }
}

impl Schedule {
    /// `installments`, encoded in `zone` if they all read back exactly.
    pub(super) fn new(zone: Zone, installments: Vec<Installment>) -> Self {
        let first_owed = installments
            .iter()
            .filter(|i| i.outstanding() > Decimal::ZERO)
            .map(|i| i.due.to_utc())
            .min();
        let form = encode(zone, &installments)
            .unwrap_or_else(|| Form::Exact(installments.into_boxed_slice()));
        Schedule {
            zone,
            form,
            first_owed,
        }
    }

    /// Whether an installment due before `day` still has something owed.
    pub(super) fn owed_before(&self, day: DateTime<FixedOffset>) -> bool {
        self.first_owed.is_some_and(|due| due < day)
    }

    pub(super) fn len(&self) -> usize {
        match &self.form {
            Form::Encoded { len, .. } => *len as usize,
            Form::Exact(e) => e.len(),
        }
    }

    /// The installments, in order, by value (decoded one after the other).
    pub(super) fn iter(&self) -> impl ExactSizeIterator<Item = Installment> + '_ {
        match &self.form {
            Form::Encoded { len, scale, bytes } => Iter::Encoded(Decoder {
                zone: self.zone,
                unit: 10i64.pow(u32::from(*scale)),
                bytes,
                left: *len,
                prediction: Prediction::default(),
            }),
            Form::Exact(e) => Iter::Exact(e.iter()),
        }
    }

    /// The installment at `i` (counted from 0), decoding those before it; panics beyond the
    /// last, as indexing does. To read them all, [`Schedule::iter`].
    pub(super) fn at(&self, i: usize) -> Installment {
        match &self.form {
            Form::Encoded { .. } => self
                .iter()
                .nth(i)
                .unwrap_or_else(|| panic!("installment {i} of {}", self.len())),
            Form::Exact(e) => e[i],
        }
    }

    pub(super) fn first(&self) -> Option<Installment> {
        self.iter().next()
    }

    /// Changes the installments through `f`, then keeps them encoded if they all read back.
    pub(super) fn edit<R>(&mut self, f: impl FnOnce(&mut [Installment]) -> R) -> R {
        let mut installments: Vec<Installment> = self.iter().collect();
        let out = f(&mut installments);
        *self = Schedule::new(self.zone, installments);
        out
    }

    /// Whether the installments are kept exact, not encoded.
    #[cfg(test)]
    fn is_exact(&self) -> bool {
        matches!(self.form, Form::Exact(_))
    }

    /// The bytes the encoded installments take (0 when exact).
    #[cfg(test)]
    fn encoded_bytes(&self) -> usize {
        match &self.form {
            Form::Encoded { bytes, .. } => bytes.len(),
            Form::Exact(_) => 0,
        }
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
        // A fraction of a second, or an offset the zone does not have then, stays exact.
        for (due, exact) in [
            ("2024-07-15T00:00:00.5+01:00", true),
            ("2024-07-15T00:00:00+00:00", true),
            ("1969-12-31T00:00:00+01:00", false),
            ("2107-01-01T00:00:00+00:00", false),
        ] {
            let odd = Installment {
                due: at(due),
                ..inst
            };
            let schedule = Schedule::new(zone, vec![odd]);
            assert_eq!(schedule.is_exact(), exact, "{due}");
            let back = schedule.at(0).due;
            assert_eq!((back, back.offset()), (odd.due, odd.due.offset()), "{due}");
        }
    }

    /// Reads `installments` back from their schedule, in order and one at a time.
    fn round_trip(zone: Zone, installments: &[Installment]) -> Schedule {
        let schedule = Schedule::new(zone, installments.to_vec());
        assert_eq!(schedule.len(), installments.len());
        let back: Vec<Installment> = schedule.iter().collect();
        assert_eq!(back.len(), installments.len());
        for (i, inst) in installments.iter().enumerate() {
            assert!(back[i].reads_as(inst), "{i}: {:?} read {:?}", inst, back[i]);
            assert!(schedule.at(i).reads_as(inst), "{i}");
        }
        assert_eq!(
            schedule.first().map(|f| f.encoded_key),
            installments.first().map(|f| f.encoded_key)
        );
        schedule
    }

    /// A generated schedule of `n` installments of `amount` at 12%, its first due in Lisbon's
    /// winter (its dates cross summer time).
    fn generated(n: u32, amount: &str) -> (Tenant, Schedule) {
        let mut t = Tenant::new(
            Products::default_set(),
            Zone::new(chrono_tz::Europe::Lisbon),
            Default::default(),
        );
        for _ in 0..123_456 {
            t.next_key();
        }
        let terms = Terms {
            amount: amount.parse().unwrap(),
            interest_rate: Decimal::from(12),
            installments: n,
            first_repayment: None,
        };
        let start = DateTime::parse_from_rfc3339("2024-01-31T00:00:00+00:00").unwrap();
        let schedule = t.generate_schedule(terms, start);
        (t, schedule)
    }

    #[test]
    fn arrears_are_read_without_decoding_and_follow_edits() {
        let (_, mut schedule) = generated(3, "300");
        let due: Vec<_> = schedule.iter().map(|i| i.due).collect();
        let after = |d: DateTime<FixedOffset>| d + chrono::Duration::seconds(1);
        assert!(!schedule.owed_before(due[0]));
        assert!(schedule.owed_before(after(due[0])));
        // The first paid: owed from the second on.
        schedule.edit(|s| {
            s[0].principal_paid = s[0].principal;
            s[0].interest_paid = s[0].interest;
            s[0].fee_paid = s[0].fee;
        });
        assert!(!schedule.owed_before(after(due[0])));
        assert!(schedule.owed_before(after(due[1])));
        // All paid: never in arrears.
        schedule.edit(|s| {
            for i in s.iter_mut() {
                (i.principal_paid, i.interest_paid, i.fee_paid) = (i.principal, i.interest, i.fee);
            }
        });
        assert!(!schedule.owed_before(after(due[2])));
    }

    #[test]
    fn a_generated_schedule_reads_back_exactly_in_a_few_bytes() {
        let (t, schedule) = generated(34, "10000.01");
        assert!(!schedule.is_exact());
        let installments: Vec<Installment> = schedule.iter().collect();
        assert_eq!(
            installments.iter().map(|i| i.principal).sum::<Decimal>(),
            "10000.01".parse::<Decimal>().unwrap()
        );
        // Monthly from the 29th of February on the tenant's calendar, summer offsets too.
        assert_eq!(
            format_datetime(installments[0].due),
            "2024-02-29T00:00:00+00:00"
        );
        assert_eq!(
            format_datetime(installments[2].due),
            "2024-04-29T00:00:00+01:00"
        );
        round_trip(t.zone, &installments);
        // Measured: 63 bytes (64 bytes an installment before, as 34 `Packed`): the head byte
        // and, for about half, a cent of the interest's rounding; the first about 15.
        assert!(
            schedule.encoded_bytes() <= 64,
            "{} bytes",
            schedule.encoded_bytes()
        );
        // Paid installments, with their repaid dates, take a few bytes more.
        let mut paid = schedule.clone();
        paid.edit(|s| {
            for inst in &mut s[..10] {
                inst.principal_paid = inst.principal;
                inst.interest_paid = inst.interest;
                inst.repaid = t.zone.at_timestamp(inst.due.timestamp() - 2 * 86_400);
            }
        });
        assert!(!paid.is_exact());
        assert!(paid.at(9).is_paid() && !paid.at(10).is_paid());
        assert!(
            paid.encoded_bytes() <= 64 + 10 * 6,
            "{}",
            paid.encoded_bytes()
        );
        round_trip(t.zone, &paid.iter().collect::<Vec<_>>());
    }

    #[test]
    fn edge_values_read_back_exactly() {
        let zone = Zone::new(chrono_tz::Europe::Lisbon);
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap();
        let key = |n: u64| Some(Key(NonZeroU64::new(n).unwrap()));
        let d = |text: &str| text.parse::<Decimal>().unwrap();
        let base = Installment {
            encoded_key: key(7),
            due: at("2024-03-15T00:00:00Z"),
            principal: d("100"),
            interest: d("1.5"),
            fee: Decimal::ZERO,
            principal_paid: Decimal::ZERO,
            interest_paid: Decimal::ZERO,
            fee_paid: Decimal::ZERO,
            repaid: None,
        };
        let max = d("922337203685477.5807");
        let min = d("-922337203685477.5808");
        let installments = [
            base,
            Installment {
                encoded_key: None,
                principal: max,
                interest: min,
                fee: d("-0.0001"),
                ..base
            },
            Installment {
                encoded_key: key(u64::MAX),
                due: at("2024-04-15T00:00:00+01:00"),
                principal: min,
                interest: max,
                fee: max,
                principal_paid: min,
                interest_paid: d("-12.3456"),
                fee_paid: d("0.0001"),
                repaid: Some(at("2024-03-14T23:59:59Z")),
            },
            Installment {
                encoded_key: key(1),
                due: at("1980-01-01T00:00:00Z"),
                repaid: Some(at("2030-06-01T12:00:01+01:00")),
                ..base
            },
            Installment {
                encoded_key: None,
                due: at("2024-10-27T01:30:00+00:00"),
                principal: Decimal::ZERO,
                ..base
            },
            Installment {
                encoded_key: key(2),
                due: at("2024-10-27T01:30:00+01:00"),
                repaid: Some(at("2024-10-27T01:30:00+00:00")),
                ..base
            },
        ];
        assert!(!round_trip(zone, &installments).is_exact());
        // One by one, each against nothing before it.
        for inst in &installments {
            assert!(!round_trip(zone, std::slice::from_ref(inst)).is_exact());
        }
        // What does not read back keeps the whole schedule exact.
        let mut odd = installments.to_vec();
        odd[3].fee = d("0.00001");
        assert!(round_trip(zone, &odd).is_exact());
        let empty = round_trip(zone, &[]);
        assert!(!empty.is_exact() && empty.first().is_none());
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
