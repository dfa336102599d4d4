//! A loan's repayment schedule: generating it from the loan's terms, its JSON, and editing it
//! (`PUT /loans/{id}/schedule`, a custom schedule).

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::json::{datetime, decimal, format_datetime, money, now};
use super::{Answer, Installment, Tenant, Terms};
use crate::sandbox::error::ApiError;

impl Tenant {
    /// Equal principal per installment (the last absorbs rounding), interest on the declining
    /// balance at rate/12 per month, monthly due dates from the first repayment date.
    pub(super) fn generate_schedule(
        &mut self,
        terms: Terms,
        start: DateTime<FixedOffset>,
    ) -> Vec<Installment> {
        let n = Decimal::from(terms.installments);
        let base = (terms.amount / n).round_dp(2);
        let first_due = terms
            .first_repayment
            .unwrap_or_else(|| self.zone.add_months(start, 1));
        let monthly_rate = terms.interest_rate / Decimal::from(1200);
        let mut remaining = terms.amount;
        (0..terms.installments)
            .map(|i| {
                let principal = if i + 1 == terms.installments {
                    remaining
                } else {
                    base.min(remaining)
                };
                let interest = (remaining * monthly_rate).round_dp(2);
                remaining -= principal;
                Installment {
                    encoded_key: self.new_key(),
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
            .collect()
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
        if !matches!(
            self.loans[index].state,
            "PARTIAL_APPLICATION"
                | "PENDING_APPROVAL"
                | "APPROVED"
                | "ACTIVE"
                | "ACTIVE_IN_ARREARS"
        ) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                3619,
                "LOAN_ACCOUNT_SCHEDULE_EDITING_NOT_ALLOWED",
            )
            .at("accountState"));
        }
        let mut schedule = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = |field: &str| format!("installments[{i}].{field}");
            let item = item
                .as_object()
                .ok_or_else(|| ApiError::invalid_parameters(format!("installments[{i}]")))?;
            let existing = match item.get("encodedKey").and_then(Value::as_str) {
                Some(key) => Some(
                    self.loans[index]
                        .schedule
                        .iter()
                        .find(|inst| inst.encoded_key == key)
                        .cloned()
                        .ok_or_else(|| {
                            ApiError::new(
                                axum::http::StatusCode::BAD_REQUEST,
                                3621,
                                "INSTALLMENT_NOT_FOUND",
                            )
                            .at(at("encodedKey"))
                        })?,
                ),
                None => None,
            };
            let due = match item.get("dueDate") {
                Some(v) => datetime(v, &at("dueDate"), self.zone)?,
                None => existing
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
                existing.as_ref().map(|e| e.principal - e.principal_paid),
            )?;
            let interest_due = part(
                "interest",
                existing.as_ref().map(|e| e.interest - e.interest_paid),
            )?;
            let fee_due = part("fee", existing.as_ref().map(|e| e.fee - e.fee_paid))?;
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
            let mut inst = match existing {
                Some(e) => e,
                None => Installment {
                    encoded_key: String::new(),
                    due,
                    principal: Decimal::ZERO,
                    interest: Decimal::ZERO,
                    fee: Decimal::ZERO,
                    principal_paid: Decimal::ZERO,
                    interest_paid: Decimal::ZERO,
                    fee_paid: Decimal::ZERO,
                    repaid: None,
                },
            };
            if inst.is_paid()
                && (inst.due != due || principal_due + interest_due + fee_due > Decimal::ZERO)
            {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    3623,
                    "PAID_OR_PURE_GRACE_INSTALLMENT_CANNOT_BE_DELETED",
                )
                .at(at("encodedKey")));
            }
            inst.due = due;
            inst.principal = inst.principal_paid + principal_due;
            inst.interest = inst.interest_paid + interest_due;
            inst.fee = inst.fee_paid + fee_due;
            schedule.push(inst);
        }
        if schedule.windows(2).any(|w| w[1].due <= w[0].due) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                3624,
                "INVALID_DUE_DATE",
            )
            .at("installments.dueDate"));
        }
        if schedule.iter().map(|i| i.principal).sum::<Decimal>() != self.loans[index].amount {
            return Err(ApiError::inconsistent_schedule_principal());
        }
        let old: Vec<String> = self.loans[index]
            .schedule
            .iter()
            .map(|i| i.encoded_key.clone())
            .collect();
        if let Some(paid) = self.loans[index].schedule.iter().find(|i| i.is_paid())
            && !schedule.iter().any(|i| i.encoded_key == paid.encoded_key)
        {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                3623,
                "PAID_OR_PURE_GRACE_INSTALLMENT_CANNOT_BE_DELETED",
            )
            .at("installments"));
        }
        for inst in &mut schedule {
            if inst.encoded_key.is_empty() || !old.contains(&inst.encoded_key) {
                inst.encoded_key = self.new_key();
            }
        }
        let loan = &mut self.loans[index];
        loan.installments = u32::try_from(schedule.len()).unwrap_or(u32::MAX);
        loan.schedule = schedule;
        loan.custom_schedule = true;
        loan.modified = now(self.zone);
        Ok(self.schedule_json(index))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{client, loan, tenant};
    use super::*;

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
}
