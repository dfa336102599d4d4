//! Locking a loan's income sources (`POST /loans/{id}/lock-transactions`) and unlocking them
//! (`/unlock-transactions`): the account stays ACTIVE with the sub-state LOCKED, and a locked
//! account's schedule cannot be edited (see `schedule`).

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::json::{object, optional_str};
use super::{Answer, Tenant};
use crate::sandbox::error::ApiError;

/// `lockedOperations` (LockLoanAccountInput) and the transaction type each one logs.
const LOCKS: [(&str, &str, &str); 3] = [
    ("APPLY_INTEREST", "INTEREST_LOCKED", "INTEREST_UNLOCKED"),
    ("APPLY_FEES", "FEE_LOCKED", "FEE_UNLOCKED"),
    ("APPLY_PENALTIES", "PENALTY_LOCKED", "PENALTY_UNLOCKED"),
];

impl Tenant {
    /// POST /loans/{id}/lock-transactions: `{lockedOperations?, notes?}`; answers
    /// `{"loanTransactions": [...]}`, one per operation locked.
    pub fn lock_loan(&mut self, id_or_key: &str, body: &Value) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        let doc = object(body)?;
        let notes = optional_str(doc, "notes")?.map(str::to_owned);
        let operations: Vec<&str> = match doc.get("lockedOperations") {
            None | Some(Value::Null) => LOCKS.iter().map(|(op, _, _)| *op).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|op| {
                    op.as_str()
                        .filter(|op| LOCKS.iter().any(|(known, _, _)| known == op))
                        .ok_or_else(|| ApiError::invalid_parameters("lockedOperations"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::invalid_parameters("lockedOperations")),
        };
        let loan = &self.loans[index];
        if loan.sub_state == Some("LOCKED") {
            return Err(ApiError::account_already_locked());
        }
        // Stricter reading: only an account that earns interest, fees and penalties (disbursed,
        // not closed) has income sources to lock.
        if !matches!(loan.state, "ACTIVE" | "ACTIVE_IN_ARREARS") {
            return Err(ApiError::invalid_account_state("accountState"));
        }
        self.entities.loan_state(&self.loans[index], -1);
        self.loans[index].sub_state = Some("LOCKED");
        self.entities.loan_state(&self.loans[index], 1);
        let types: Vec<&'static str> = LOCKS
            .iter()
            .filter(|(op, _, _)| operations.contains(op))
            .map(|(_, locked, _)| *locked)
            .collect();
        Ok(self.log_lock(index, notes, &types))
    }

    /// POST /loans/{id}/unlock-transactions: `{notes?}`; unlocks every operation.
    pub fn unlock_loan(&mut self, id_or_key: &str, body: &Value) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        let notes = optional_str(object(body)?, "notes")?.map(str::to_owned);
        if self.loans[index].sub_state != Some("LOCKED") {
            return Err(ApiError::account_already_unlocked());
        }
        self.entities.loan_state(&self.loans[index], -1);
        self.loans[index].sub_state = None;
        self.entities.loan_state(&self.loans[index], 1);
        let types: Vec<&'static str> = LOCKS.iter().map(|(_, _, unlocked)| *unlocked).collect();
        Ok(self.log_lock(index, notes, &types))
    }

    /// The lock or unlock transactions, dated now, with the body's notes.
    fn log_lock(&mut self, index: usize, notes: Option<String>, types: &[&'static str]) -> Value {
        let now = self.zone.now();
        let logged: Vec<Value> = types
            .iter()
            .map(|kind| {
                let mut out = Map::new();
                if let Some(notes) = &notes {
                    out.insert("notes".into(), json!(notes));
                }
                let t = self.book(index, kind, Decimal::ZERO, now, out, json!({}));
                self.transaction_json(t)
            })
            .collect();
        json!({ "loanTransactions": logged })
    }
}

#[cfg(test)]
mod tests {
    use super::super::TransactionKind;
    use super::super::test_support::{approved_loan, tenant};
    use super::*;

    #[test]
    fn every_lock_type_is_a_type_a_transaction_keeps() {
        for (_, locked, unlocked) in LOCKS {
            for kind in [locked, unlocked] {
                assert!(super::super::TRANSACTION_TYPES.contains(&kind), "{kind}");
            }
        }
    }

    #[test]
    fn only_an_active_loan_locks_once_and_unlocks_once() {
        let mut t = tenant();
        let id = approved_loan(&mut t, "900");
        let early = t.lock_loan(&id, &json!({})).unwrap_err();
        assert_eq!(early.reason, "INVALID_ACCOUNT_STATE");
        t.post_transaction(&id, TransactionKind::Disbursement, &json!({}))
            .unwrap();
        let bad = t
            .lock_loan(&id, &json!({ "lockedOperations": ["APPLY_TAXES"] }))
            .unwrap_err();
        assert_eq!(bad.reason, "INVALID_PARAMETERS");
        let locked = t
            .lock_loan(
                &id,
                &json!({ "lockedOperations": ["APPLY_FEES"], "notes": "dispute" }),
            )
            .unwrap();
        assert_eq!(locked["loanTransactions"][0]["type"], "FEE_LOCKED");
        assert_eq!(locked["loanTransactions"][0]["notes"], "dispute");
        assert_eq!(t.get_loan(&id).unwrap()["accountSubState"], "LOCKED");
        let again = t.lock_loan(&id, &json!({})).unwrap_err();
        assert_eq!(again.reason, "ACCOUNT_ALREADY_LOCKED");
        let unlocked = t.unlock_loan(&id, &json!({})).unwrap();
        assert_eq!(unlocked["loanTransactions"].as_array().unwrap().len(), 3);
        assert_eq!(t.get_loan(&id).unwrap()["accountState"], "ACTIVE");
        assert!(t.get_loan(&id).unwrap().get("accountSubState").is_none());
        let twice = t.unlock_loan(&id, &json!({})).unwrap_err();
        assert_eq!(twice.reason, "ACCOUNT_ALREADY_UNLOCKED");
    }
}
