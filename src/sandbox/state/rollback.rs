//! Taking back what a migration made (issue 19): adjusting loan and deposit transactions
//! (`POST /loans/transactions/{id}:adjust`, `POST /deposits/transactions/{id}:adjust`) and
//! deleting loans, deposits and clients (`DELETE /loans/{id}`, `/deposits/{id}`,
//! `/clients/{id}`), with Mambu's state rules (`../shared/mambu-api.md` §8; the reasons are
//! the 2021 spec's, see [`ApiError::not_adjusted_transaction_logged_after`]).
//!
//! A deleted entity keeps its place in the tenant's lists (indexes stay valid) with the state
//! `DELETED`, and leaves every index a lookup uses: it answers 404 from then on, its id may be
//! taken again, and the stats do not count it.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::json::{now, object, optional_str};
use super::{Account, Answer, EntityRef, Holder, Key, Tenant};
use crate::sandbox::error::ApiError;

/// The state a deleted client, loan or deposit keeps in the sandbox's lists.
pub(super) const DELETED: &str = "DELETED";

impl Tenant {
    /// The transaction an id (`"12"`) or encodedKey names, if it is on an account of the kind
    /// `loan` says and not removed.
    fn transaction_index(&self, id_or_key: &str, loan: bool) -> Option<usize> {
        let index = id_or_key
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|i| *i < self.transactions.len())
            .or_else(|| {
                let key = Key::parse(id_or_key)?;
                // The transactions are in ascending order of key: `record_transaction` is the
                // only place that makes one, and it takes the tenant's next key and pushes it
                // (keys come from one increasing sequence); none is ever removed or reordered
                // (a tamper only marks one deleted).
                self.transactions
                    .binary_search_by_key(&key.0, |t| t.encoded_key.0)
                    .ok()
            })?;
        let t = &self.transactions[index];
        let kind_fits = matches!(
            (t.account(), loan),
            (Account::Loan(_), true) | (Account::Deposit(_), false)
        );
        (kind_fits && !t.deleted).then_some(index)
    }

    pub(super) fn adjusted(&self, t_index: usize) -> bool {
        self.transactions[t_index].adjusted
    }

    /// Refuses adjusting `t_index` when it is adjusted already or a later transaction of
    /// the same account is not.
    fn check_adjustable(&self, t_index: usize, account: &[u32]) -> Result<(), ApiError> {
        if self.adjusted(t_index) {
            return Err(ApiError::transaction_already_adjusted());
        }
        let later = account
            .iter()
            .map(|&t| t as usize)
            .skip_while(|t| *t != t_index)
            .skip(1)
            .any(|t| !self.transactions[t].deleted && !self.adjusted(t));
        if later {
            return Err(ApiError::not_adjusted_transaction_logged_after());
        }
        Ok(())
    }

    /// Marks `t_index` adjusted (`notes` from the body) and answers it.
    fn mark_adjusted(&mut self, t_index: usize, body: &Value) -> Answer {
        let notes = optional_str(object(body)?, "notes")?.map(str::to_owned);
        let key = self.new_key();
        let at = now(self.zone);
        self.tally.adjusted(&self.transactions[t_index]);
        self.transactions[t_index].adjusted = true;
        self.edit_transaction_rest(t_index, |doc| {
            doc.insert("adjustmentTransactionKey".into(), json!(key));
            doc.insert("adjustmentDate".into(), json!(at));
            if let Some(notes) = notes {
                doc.insert("adjustmentNotes".into(), json!(notes));
            }
        });
        Ok(self.transaction_json(t_index))
    }

    /// `POST /loans/transactions/{id}:adjust`: the transaction's effect reversed (a repayment's
    /// allocation taken back newest installment first, a fee taken off its installment, a
    /// disbursement taking the loan back to APPROVED when no other disbursement stands).
    pub fn adjust_loan_transaction(&mut self, id_or_key: &str, body: &Value) -> Answer {
        let t_index = self
            .transaction_index(id_or_key, true)
            .ok_or_else(ApiError::invalid_transaction_id)?;
        let Account::Loan(index) = self.transactions[t_index].account() else {
            return Err(ApiError::invalid_transaction_id());
        };
        self.check_adjustable(t_index, &self.loans[index].transactions)?;
        let doc = self.transaction_json(t_index);
        let affected = |field: &str| {
            doc.get("affectedAmounts")
                .and_then(|a| a.get(field))
                .and_then(super::decimal)
                .unwrap_or_default()
        };
        let (principal, interest, fees) = (
            affected("principalAmount"),
            affected("interestAmount"),
            affected("feesAmount"),
        );
        let installment = doc
            .get("installmentNumber")
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        match self.transactions[t_index].kind() {
            "REPAYMENT" => {
                let loan = &mut self.loans[index];
                let (mut p, mut i, mut f) = (principal, interest, fees);
                loan.schedule.edit(|schedule| {
                    for inst in schedule.iter_mut().rev() {
                        for (left, paid) in [
                            (&mut p, &mut inst.principal_paid),
                            (&mut i, &mut inst.interest_paid),
                            (&mut f, &mut inst.fee_paid),
                        ] {
                            let back = (*left).min(*paid).max(Decimal::ZERO);
                            *paid -= back;
                            *left -= back;
                        }
                        if !inst.is_paid() {
                            inst.repaid = None;
                        }
                    }
                });
                if loan.state == "CLOSED" && loan.sub_state == Some("REPAID") {
                    self.entities.loan_state(loan, -1);
                    loan.state = "ACTIVE";
                    loan.sub_state = None;
                    self.entities.loan_state(loan, 1);
                    loan.closed_on = None;
                }
            }
            "FEE_APPLIED" => {
                let loan = &mut self.loans[index];
                let position = installment
                    .and_then(|n| n.checked_sub(1))
                    .or_else(|| loan.schedule.iter().position(|i| i.fee >= fees));
                loan.schedule.edit(|schedule| {
                    if let Some(inst) = position.and_then(|p| schedule.get_mut(p)) {
                        inst.fee -= fees.min(inst.fee);
                    }
                });
            }
            "DISBURSEMENT" => {
                self.undisburse_tranche(index, t_index);
                let others = self.loans[index].transactions.iter().any(|&o| {
                    let o = o as usize;
                    o != t_index
                        && !self.transactions[o].deleted
                        && self.transactions[o].kind() == "DISBURSEMENT"
                        && !self.adjusted(o)
                });
                if !others {
                    let loan = &mut self.loans[index];
                    self.entities.loan_state(loan, -1);
                    loan.state = "APPROVED";
                    loan.sub_state = None;
                    self.entities.loan_state(loan, 1);
                    loan.disbursed = None;
                }
            }
            _ => return Err(ApiError::transaction_type_does_not_allow_adjustment()),
        }
        self.loans[index].modified = self.zone.now();
        self.mark_adjusted(t_index, body)
    }

    /// The tranche a disbursement adjusted had disbursed is undisbursed again (its
    /// `disbursementTransactionKey` gone, so that the next disbursement is its), and what a
    /// later tranche added to the schedule taken off. Nothing for an untranched loan.
    fn undisburse_tranche(&mut self, index: usize, t_index: usize) {
        let t = &self.transactions[t_index];
        let (amount, [value_date, _]) = (self.transaction_amount(t), self.transaction_dates(t));
        let key = Some(json!(t.encoded_key));
        let tranches = self.loans[index].doc.get("tranches");
        let Some(tranches) = tranches.as_ref().and_then(Value::as_array) else {
            return;
        };
        let Some(tranche) = tranches.iter().position(|tr| {
            tr.get("disbursementDetails")
                .and_then(|d| d.get("disbursementTransactionKey"))
                == key.as_ref()
        }) else {
            return;
        };
        if tranche > 0 {
            let added = self.tranche_addition(index, amount, value_date);
            let loan = &mut self.loans[index];
            loan.schedule.edit(|schedule| {
                for (i, (principal, interest)) in added {
                    schedule[i].principal -= principal;
                    schedule[i].interest -= interest;
                }
            });
        }
        self.set_tranche_transaction(index, tranche, None);
    }

    /// `POST /deposits/transactions/{id}:adjust`: a deposit's amount taken off the balance (not
    /// below zero), a withdrawal's put back.
    pub fn adjust_deposit_transaction(&mut self, id_or_key: &str, body: &Value) -> Answer {
        let t_index = self
            .transaction_index(id_or_key, false)
            .ok_or_else(ApiError::invalid_transaction_id)?;
        let Account::Deposit(index) = self.transactions[t_index].account() else {
            return Err(ApiError::invalid_transaction_id());
        };
        self.check_adjustable(t_index, &self.deposits[index].transactions)?;
        let t = &self.transactions[t_index];
        let (amount, kind) = (self.transaction_amount(t), t.kind());
        let deposit = &mut self.deposits[index];
        match kind {
            "DEPOSIT" => {
                if amount > deposit.balance {
                    return Err(ApiError::balance_below_zero());
                }
                self.entities.deposit_state(deposit, -1);
                deposit.balance -= amount;
                self.entities.deposit_state(deposit, 1);
            }
            "WITHDRAWAL" => {
                self.entities.deposit_state(deposit, -1);
                deposit.balance += amount;
                self.entities.deposit_state(deposit, 1);
            }
            _ => return Err(ApiError::transaction_type_does_not_allow_adjustment()),
        }
        self.mark_adjusted(t_index, body)
    }

    /// `DELETE /loans/{id}`: only a loan never disbursed, or whose disbursements are all
    /// adjusted (PENDING_APPROVAL, PARTIAL_APPLICATION, APPROVED, CLOSED REJECTED or WITHDRAWN);
    /// any other state is INVALID_ACCOUNT_STATE. The stricter reading: Mambu's documentation
    /// names the states in which the delete button shows, not the API's rule.
    pub fn delete_loan(&mut self, id_or_key: &str) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        let loan = &self.loans[index];
        let deletable = matches!(
            (loan.state, loan.sub_state),
            ("PENDING_APPROVAL" | "PARTIAL_APPLICATION" | "APPROVED", _)
                | ("CLOSED", Some("REJECTED" | "WITHDRAWN"))
        );
        if !deletable {
            return Err(ApiError::invalid_account_state("accountState"));
        }
        let (key, id) = (loan.encoded_key, loan.id.clone());
        let transactions = loan.transactions.clone();
        self.tally_entity(EntityRef::Loan(index), -1);
        self.loans[index].state = DELETED;
        self.loans[index].sub_state = None;
        self.forget_transactions(&transactions);
        self.forget(key, &id, &EntityRef::Loan(index));
        Ok(Value::Null)
    }

    /// `DELETE /deposits/{id}`: only with no transaction left that is not adjusted and a zero
    /// balance (ACCOUNT_HAS_TRANSACTIONS), and not a loan's settlement account.
    pub fn delete_deposit(&mut self, id_or_key: &str) -> Answer {
        let index = self
            .deposit_index(id_or_key)
            .ok_or_else(ApiError::invalid_deposit_account_id)?;
        let deposit = &self.deposits[index];
        let live = deposit
            .transactions
            .iter()
            .any(|&t| !self.transactions[t as usize].deleted && !self.adjusted(t as usize));
        if live || !deposit.balance.is_zero() {
            return Err(ApiError::account_has_transactions());
        }
        let key = deposit.encoded_key;
        if self
            .loans
            .iter()
            .any(|l| l.state != DELETED && l.settlement_key == Some(key))
        {
            return Err(ApiError::invalid_account_state(
                "linkedSettlementAccountKeys",
            ));
        }
        let id = deposit.id.clone();
        let transactions = deposit.transactions.clone();
        self.tally_entity(EntityRef::Deposit(index), -1);
        self.deposits[index].state = DELETED;
        self.tally_entity(EntityRef::Deposit(index), 1);
        self.forget_transactions(&transactions);
        self.forget(key, &id, &EntityRef::Deposit(index));
        Ok(Value::Null)
    }

    /// `DELETE /groups/{id}`: only a group that holds no loan or deposit (GROUP_HAS_ACCOUNTS;
    /// the stricter reading: a closed one counts too, as for a client). Its members stay
    /// clients, in no group from then on.
    pub fn delete_group(&mut self, id_or_key: &str) -> Answer {
        let index = self
            .group_index(id_or_key)
            .ok_or_else(ApiError::invalid_group_id)?;
        if self.holds_accounts(Holder::Group(index)) {
            return Err(ApiError::group_has_accounts());
        }
        let group = &mut self.groups[index];
        self.entities.group(group, -1);
        group.deleted = true;
        group.members.clear();
        let (key, id) = (group.encoded_key, group.id.clone());
        self.group_ids.remove(&self.fingerprint.of(&id));
        self.keys.remove(&key);
        Ok(Value::Null)
    }

    /// Whether `holder` holds a loan or deposit not deleted.
    fn holds_accounts(&self, holder: Holder) -> bool {
        self.loans
            .iter()
            .any(|l| l.holder == holder && l.state != DELETED)
            || self
                .deposits
                .iter()
                .any(|d| d.holder == holder && d.state != DELETED)
    }

    /// `DELETE /clients/{id}`: only a client that holds no loan or deposit (CLIENT_HAS_ACCOUNTS)
    /// and is a member of no group (CLIENT_IS_MEMBER_OF_A_GROUP).
    pub fn delete_client(&mut self, id_or_key: &str) -> Answer {
        let index = self
            .client_index(id_or_key)
            .ok_or_else(ApiError::invalid_client_id)?;
        if self.holds_accounts(Holder::Client(index)) {
            return Err(ApiError::client_has_accounts());
        }
        if self.groups.iter().any(|g| g.members.contains(&index)) {
            return Err(ApiError::client_is_member_of_a_group());
        }
        // The duplicate-client check forgets it: the unit migrated again creates it again.
        let doc = self.clients[index].doc.map();
        let documents = self.id_documents(&doc).unwrap_or_default();
        for (_, key) in self.match_keys(&doc, &documents) {
            self.client_matches.remove(&key);
        }
        let client = &mut self.clients[index];
        self.entities.client(client, -1);
        client.state = DELETED;
        let (key, id) = (client.encoded_key, client.id.clone());
        self.client_ids.remove(&self.fingerprint.of(&id));
        self.keys.remove(&key);
        Ok(Value::Null)
    }

    /// Removes a deleted account's transactions from the counts, and frees their externalIds
    /// (a unit migrated again posts them again).
    fn forget_transactions(&mut self, transactions: &[u32]) {
        for &t in transactions {
            let t = t as usize;
            let amount = self.transaction_amount(&self.transactions[t]);
            self.tally.deleted(&self.transactions[t], amount);
            self.transactions[t].deleted = true;
        }
        self.external_ids.retain(|_, t| !transactions.contains(t));
    }

    /// Removes a deleted account from the lookups: its key, and its id when it still names it.
    fn forget(&mut self, key: Key, id: &str, entity: &EntityRef) {
        self.keys.remove(&key);
        let id = self.fingerprint.of(id);
        if self.account_ids.get(&id) == Some(entity) {
            self.account_ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::*;

    /// Transactions are found by their encodedKey (a binary search: their keys ascend), and
    /// another entity's key finds none.
    #[test]
    fn a_transaction_is_found_by_its_key() {
        use super::super::DepositTransactionKind::Deposit;
        let mut t = tenant();
        let mut keys = Vec::new();
        for _ in 0..3 {
            // Other entities take keys between the transactions'.
            let id = approved_deposit(&mut t);
            let posted = t.post_deposit_transaction(&id, Deposit, &json!({"amount": 10}));
            let posted = posted.unwrap();
            keys.push(posted["encodedKey"].as_str().unwrap().to_owned());
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(t.transaction_index(key, false), Some(i));
            assert_eq!(t.transaction_index(key, true), None);
        }
        let client = t.clients[0].encoded_key.to_string();
        assert_eq!(t.transaction_index(&client, false), None);
    }

    #[test]
    fn a_deleted_client_can_be_created_again_under_the_duplicate_check() {
        use crate::sandbox::tenant::{DuplicateAction, DuplicateField};
        let mut t = tenant();
        t.client_rules.duplicate_client_check.action = DuplicateAction::Error;
        t.client_rules.duplicate_client_check.fields = vec![DuplicateField::LastNameAndDateOfBirth];
        let body = json!({ "id": "C-1", "firstName": "Ada", "lastName": "Lovelace", "birthDate": "1815-12-10" });
        t.create_client(&body).unwrap();
        let twin = json!({ "id": "C-2", "firstName": "Ada", "lastName": "Lovelace", "birthDate": "1815-12-10" });
        assert!(t.create_client(&twin).is_err(), "the check is on");
        t.delete_client("C-1").unwrap();
        // Migrated again (a rollback, then `run --resume`): neither its id nor its match stays.
        t.create_client(&body).unwrap();
    }

    #[test]
    fn newest_first_then_the_loan_and_the_client_go() {
        let mut t = tenant();
        let loan = approved_loan(&mut t, "1000");
        let client = t.get_loan(&loan).unwrap()["accountHolderKey"]
            .as_str()
            .unwrap()
            .to_owned();
        t.post_transaction(
            &loan,
            super::super::TransactionKind::Disbursement,
            &json!({}),
        )
        .unwrap();
        let repayment = t
            .post_transaction(
                &loan,
                super::super::TransactionKind::Repayment,
                &json!({"amount": 10}),
            )
            .unwrap();
        let disbursement = t.loan_transactions(&loan).unwrap()[0].clone();
        let d_id = disbursement["id"].as_str().unwrap().to_owned();
        let r_id = repayment["id"].as_str().unwrap().to_owned();
        let err = t.adjust_loan_transaction(&d_id, &json!({})).unwrap_err();
        assert_eq!(
            err.reason,
            "NOT_ADJUSTED_TRANSACTION_LOGGED_AFTER_CURRENT_ONE"
        );
        assert_eq!(
            t.delete_loan(&loan).unwrap_err().reason,
            "INVALID_ACCOUNT_STATE"
        );
        assert_eq!(
            t.delete_client(&client).unwrap_err().reason,
            "CLIENT_HAS_ACCOUNTS"
        );
        t.adjust_loan_transaction(&r_id, &json!({"notes": "rollback"}))
            .unwrap();
        assert_eq!(
            t.adjust_loan_transaction(&r_id, &json!({}))
                .unwrap_err()
                .reason,
            "TRANSACTION_ALREADY_ADJUSTED"
        );
        t.adjust_loan_transaction(&d_id, &json!({})).unwrap();
        assert_eq!(t.get_loan(&loan).unwrap()["accountState"], "APPROVED");
        t.change_loan_state(&loan, &json!({"action": "UNDO_APPROVE"}))
            .unwrap();
        t.delete_loan(&loan).unwrap();
        assert_eq!(
            t.get_loan(&loan).unwrap_err().reason,
            "INVALID_LOAN_ACCOUNT_ID"
        );
        t.delete_client(&client).unwrap();
        assert_eq!(
            t.get_client(&client).unwrap_err().reason,
            "INVALID_CLIENT_ID"
        );
        let stats = t.stats();
        assert_eq!(stats["clients"], 0);
        assert_eq!(stats["loans"], 0);
        assert_eq!(stats["transactions"], 0);
    }
}

#[cfg(test)]
mod write_off_tests {
    use serde_json::json;

    use super::super::TransactionKind;
    use super::super::test_support::*;

    #[test]
    fn a_write_off_is_undone_on_its_day_only() {
        let mut t = tenant();
        let loan = approved_loan(&mut t, "900");
        t.post_transaction(&loan, TransactionKind::Disbursement, &json!({}))
            .unwrap();
        let state = |t: &super::super::Tenant| t.get_loan(&loan).unwrap()["accountState"].clone();
        assert_eq!(
            t.undo_write_off_loan(&loan, &json!({})).unwrap_err().reason,
            "INVALID_STATE_TRANSITION",
            "not written off"
        );
        t.write_off_loan(&loan, &json!({ "notes": "gone" }))
            .unwrap();
        assert_eq!(state(&t), "CLOSED");
        assert_eq!(
            t.undo_write_off_loan(&loan, &json!({ "notes": 5 }))
                .unwrap_err()
                .reason,
            "INVALID_PARAMETERS"
        );
        t.undo_write_off_loan(&loan, &json!({ "notes": "back" }))
            .unwrap();
        assert_eq!(state(&t), "ACTIVE");
        assert_eq!(
            t.get_loan(&loan).unwrap()["balances"]["principalBalance"],
            json!(900)
        );
        // Written off again, and an end of day runs: it is final.
        t.write_off_loan(&loan, &serde_json::Value::Null).unwrap();
        t.tamper(&json!({ "action": "age_closure", "loan": loan }))
            .unwrap();
        let err = t.undo_write_off_loan(&loan, &json!({})).unwrap_err();
        assert_eq!(err.reason, "NON_REVERSIBLE_WRITE_OFF");
        assert_eq!(state(&t), "CLOSED");
    }
}

#[cfg(test)]
mod deposit_tests {
    use rust_decimal::Decimal;
    use serde_json::json;

    use super::super::DepositTransactionKind;
    use super::super::test_support::*;

    #[test]
    fn a_deposit_goes_once_its_transactions_are_adjusted() {
        let mut t = tenant();
        let id = approved_deposit(&mut t);
        let first = t
            .post_deposit_transaction(
                &id,
                DepositTransactionKind::Deposit,
                &json!({"amount": 100, "externalId": "d-1"}),
            )
            .unwrap();
        let second = t
            .post_deposit_transaction(
                &id,
                DepositTransactionKind::Withdrawal,
                &json!({"amount": 40}),
            )
            .unwrap();
        assert_eq!(
            t.delete_deposit(&id).unwrap_err().reason,
            "ACCOUNT_HAS_TRANSACTIONS"
        );
        let first = first["encodedKey"].as_str().unwrap();
        let second = second["id"].as_str().unwrap();
        assert_eq!(
            t.adjust_deposit_transaction(first, &json!({}))
                .unwrap_err()
                .reason,
            "NOT_ADJUSTED_TRANSACTION_LOGGED_AFTER_CURRENT_ONE"
        );
        t.adjust_deposit_transaction(second, &json!({})).unwrap();
        t.adjust_deposit_transaction(first, &json!({})).unwrap();
        assert_eq!(t.deposits[0].balance, Decimal::ZERO);
        t.delete_deposit(&id).unwrap();
        assert_eq!(
            t.get_deposit(&id).unwrap_err().reason,
            "INVALID_DEPOSIT_ACCOUNT_ID"
        );
        assert_eq!(t.delete_deposit(&id).unwrap_err().status.as_u16(), 404);
        // The externalId is free again for the unit migrated anew.
        assert!(!t.external_ids.contains_key(&t.fingerprint.of("d-1")));
    }
}
