//! Deposit accounts: creation against a deposit product, lookup, state changes, their JSON;
//! deposit and withdrawal transactions and the deposit's transaction list.

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::json::{
    JsonText, money, object, optional_datetime, required_decimal, required_str, stamp,
    store_numbers, writable,
};
use super::{Account, Answer, Deposit, DepositTransactionKind, EntityRef, Tenant, index_u32};
use crate::sandbox::error::ApiError;
use crate::sandbox::tenant::AvailableFor;

impl Tenant {
    pub fn create_deposit(&mut self, body: &Value) -> Answer {
        let doc = object(body)?;
        let holder = self.holder(doc)?;
        let name = required_str(doc, "name")?;
        let product_key = required_str(doc, "productTypeKey")?;
        let product = self
            .products
            .deposit_products
            .iter()
            .find(|p| p.encoded_key == product_key)
            .ok_or_else(|| ApiError::invalid_product("productTypeKey"))?;
        let holder_type = required_str(doc, "accountHolderType")?;
        if !product.availability_settings.allows(holder_type) {
            return Err(ApiError::product_not_available_for(
                holder_type,
                &product.id,
                &product.availability_settings.describe(),
            ));
        }
        let product = product.encoded_key.clone();
        let custom = self.custom_field_values(AvailableFor::DepositAccount, doc)?;
        let natural = format!("deposit|{holder}|{product}|{name}");
        let id = self.claim_account_id(doc, natural)?;
        let encoded_key = self.next_key();
        let index = self.deposits.len();
        self.account_ids
            .insert(self.fingerprint.of(&id), EntityRef::Deposit(index));
        self.keys.insert(encoded_key, EntityRef::Deposit(index));
        let mut doc = writable(
            doc,
            &[
                "encodedKey",
                "accountState",
                "creationDate",
                "lastModifiedDate",
                "approvedDate",
                "activationDate",
                "balances",
                "linkedSettlementAccountKeys",
                "currencyCode",
            ],
        );
        doc.remove("id");
        doc.extend(custom);
        self.deposits.push(Deposit {
            encoded_key,
            id,
            doc: JsonText::new(&doc),
            holder,
            product_key: product,
            state: "PENDING_APPROVAL",
            balance: Decimal::ZERO,
            linked_loans: Vec::new(),
            created: self.zone.now(),
            approved: None,
            activated: None,
            transactions: Vec::new(),
        });
        self.created(EntityRef::Deposit(index));
        Ok(self.deposit_json(index))
    }

    pub fn get_deposit(&self, id_or_key: &str) -> Answer {
        let index = self
            .deposit_index(id_or_key)
            .ok_or_else(ApiError::invalid_deposit_account_id)?;
        Ok(self.deposit_json(index))
    }

    pub(super) fn deposit_index(&self, id_or_key: &str) -> Option<usize> {
        match self
            .entity(id_or_key)
            .or_else(|| self.account_by_id(id_or_key))
        {
            Some(EntityRef::Deposit(i)) => Some(i),
            _ => None,
        }
    }

    pub fn change_deposit_state(&mut self, id_or_key: &str, body: &Value) -> Answer {
        let index = self
            .deposit_index(id_or_key)
            .ok_or_else(ApiError::invalid_deposit_account_id)?;
        let action = required_str(object(body)?, "action")?;
        let deposit = &mut self.deposits[index];
        let next = match (action, deposit.state) {
            ("APPROVE", "PENDING_APPROVAL") => "APPROVED",
            ("UNDO_APPROVE", "APPROVED") => "PENDING_APPROVAL",
            ("LOCK", "ACTIVE" | "APPROVED") => "LOCKED",
            ("UNLOCK", "LOCKED") => "ACTIVE",
            ("CLOSE", "ACTIVE" | "APPROVED") if deposit.balance.is_zero() => "CLOSED",
            ("CLOSE_WITHDRAW", "PENDING_APPROVAL" | "APPROVED") => "WITHDRAWN",
            ("CLOSE_REJECT", "PENDING_APPROVAL") => "CLOSED_REJECTED",
            (
                "APPROVE" | "UNDO_APPROVE" | "LOCK" | "UNLOCK" | "CLOSE" | "CLOSE_WITHDRAW"
                | "CLOSE_REJECT" | "CLOSE_WRITE_OFF",
                _,
            ) => {
                return Err(ApiError::invalid_state_transition("action"));
            }
            _ => return Err(ApiError::invalid_parameters("action")),
        };
        if next == "APPROVED" {
            deposit.approved = Some(self.zone.now());
        }
        self.entities.deposit_state(deposit, -1);
        deposit.state = next;
        self.entities.deposit_state(deposit, 1);
        let holder = deposit.holder;
        if next == "APPROVED" {
            self.activate_client(holder);
        }
        Ok(self.deposit_json(index))
    }

    fn deposit_json(&self, index: usize) -> Value {
        let d = &self.deposits[index];
        let mut out = d.doc.map();
        out.insert("encodedKey".into(), json!(d.encoded_key));
        out.insert("id".into(), json!(d.id));
        out.insert("accountState".into(), json!(d.state));
        out.insert("creationDate".into(), stamp(d.created));
        out.insert(
            "lastModifiedDate".into(),
            stamp(d.approved.unwrap_or(d.created)),
        );
        if let Some(at) = d.approved {
            out.insert("approvedDate".into(), stamp(at));
        }
        if let Some(at) = d.activated {
            out.insert("activationDate".into(), stamp(at));
        }
        if let Some(p) = self.products.deposit_product(&d.product_key) {
            out.insert("accountType".into(), json!(p.product_type));
            out.insert("currencyCode".into(), json!(p.currency));
        }
        out.insert(
            "balances".into(),
            json!({ "totalBalance": money(d.balance), "availableBalance": money(d.balance) }),
        );
        out.insert("linkedSettlementAccountKeys".into(), json!(d.linked_loans));
        Value::Object(out)
    }
}

impl Tenant {
    /// `POST /deposits/{id}/deposit-transactions` or `/withdrawal-transactions` (Mambu's
    /// `DepositTransactionInput`, `WithdrawalDepositTransactionInput`: `amount` required;
    /// `valueDate`, `bookingDate`, `externalId`, `notes`, `transactionDetails`,
    /// `paymentDetails`, `paymentOrderId` optional), answered as Mambu's DepositTransaction.
    /// Rules: an unused externalId (EXTERNAL_ID_ALREADY_EXISTS, shared with loans'
    /// transactions); date-times with the zone's offset; a positive amount; no value date
    /// after now; an APPROVED or ACTIVE account (a deposit on an APPROVED one activates it, as
    /// Mambu does); not backdated before a later transaction of the account
    /// (`../shared/mambu-api.md` §8, "Repayments and backdating": BACKDATE_BEFORE_OTHER_OPERATION
    /// and the BACKDATE_SAVINGS_TRANSACTIONS permission); a withdrawal never beyond the balance
    /// (the stricter reading: the profile has no overdraft settings, so none is allowed).
    pub fn post_deposit_transaction(
        &mut self,
        id_or_key: &str,
        kind: DepositTransactionKind,
        body: &Value,
    ) -> Answer {
        let index = self
            .deposit_index(id_or_key)
            .ok_or_else(ApiError::invalid_deposit_account_id)?;
        let doc = object(body)?;
        let external_id = self.unused_external_id(doc)?;
        let value_date = optional_datetime(Some(body), "valueDate", self.zone)?
            .unwrap_or_else(|| self.zone.now());
        optional_datetime(Some(body), "bookingDate", self.zone)?;
        let amount = required_decimal(doc, "amount")?;
        if amount <= Decimal::ZERO {
            return Err(ApiError::invalid_deposit_amount());
        }
        if value_date > self.zone.now() {
            return Err(ApiError::backdate_set_in_the_future());
        }
        if !matches!(self.deposits[index].state, "APPROVED" | "ACTIVE") {
            return Err(ApiError::invalid_deposit_account_state());
        }
        self.refuse_backdating_before(&self.deposits[index].transactions, value_date)?;
        let deposit = &mut self.deposits[index];
        let type_name = match kind {
            DepositTransactionKind::Deposit => {
                self.entities.deposit_state(deposit, -1);
                deposit.balance += amount;
                if deposit.state == "APPROVED" {
                    deposit.state = "ACTIVE";
                    deposit.activated = Some(self.zone.now());
                }
                self.entities.deposit_state(deposit, 1);
                "DEPOSIT"
            }
            DepositTransactionKind::Withdrawal => {
                if amount > deposit.balance {
                    return Err(ApiError::balance_below_zero());
                }
                self.entities.deposit_state(deposit, -1);
                deposit.balance -= amount;
                self.entities.deposit_state(deposit, 1);
                "WITHDRAWAL"
            }
        };
        let account = deposit.encoded_key.to_string();
        self.note_transaction(&account, type_name, amount, value_date, external_id);
        let mut out = writable(
            doc,
            &[
                "encodedKey",
                "id",
                "type",
                "creationDate",
                "accountBalances",
                "affectedAmounts",
                "parentAccountKey",
                "currencyCode",
                "branchKey",
                "centreKey",
                "fees",
                "taxes",
            ],
        );
        store_numbers(&mut out, &["amount"]);
        let t_index = self.book_deposit(index, type_name, amount, value_date, out);
        Ok(self.transaction_json(t_index))
    }

    /// Records a transaction of the deposit with the fields Mambu sets and the balance after
    /// it; its index.
    fn book_deposit(
        &mut self,
        index: usize,
        type_name: &'static str,
        amount: Decimal,
        value_date: DateTime<FixedOffset>,
        mut out: Map<String, Value>,
    ) -> usize {
        let currency = self
            .products
            .deposit_product(&self.deposits[index].product_key)
            .map(|p| p.currency.clone());
        if let Some(currency) = currency {
            out.insert("currencyCode".into(), json!(currency));
        }
        out.insert("affectedAmounts".into(), deposit_affected_amounts(amount));
        out.insert(
            "accountBalances".into(),
            json!({ "totalBalance": money(self.deposits[index].balance) }),
        );
        let t_index =
            self.record_transaction(Account::Deposit(index), type_name, amount, value_date, out);
        self.deposits[index].transactions.push(index_u32(t_index));
        t_index
    }

    /// Every transaction of a deposit, oldest first (the HTTP layer pages them).
    pub fn deposit_transactions(&self, id_or_key: &str) -> Result<Vec<Value>, ApiError> {
        let index = self
            .deposit_index(id_or_key)
            .ok_or_else(ApiError::invalid_deposit_account_id)?;
        Ok(self.deposits[index]
            .transactions
            .iter()
            .map(|&t| self.transaction_json(t as usize))
            .collect())
    }
}

/// A deposit transaction's `affectedAmounts`: its amount moves the funds, nothing else.
pub(super) fn deposit_affected_amounts(amount: Decimal) -> Value {
    json!({
        "fundsAmount": money(amount),
        "interestAmount": 0,
        "feesAmount": 0,
        "overdraftAmount": 0,
        "overdraftInterestAmount": 0,
        "overdraftFeesAmount": 0,
        "technicalOverdraftAmount": 0,
        "technicalOverdraftInterestAmount": 0,
        "fractionAmount": 0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{approved_deposit, pending_deposit, tenant};
    use super::*;

    #[test]
    fn a_first_deposit_activates_and_withdrawals_stay_within_the_balance() {
        let mut t = tenant();
        let id = approved_deposit(&mut t);
        let err = t
            .post_deposit_transaction(
                &id,
                DepositTransactionKind::Withdrawal,
                &json!({ "amount": 1 }),
            )
            .unwrap_err();
        assert_eq!(err.reason, "BALANCE_BELOW_ZERO");
        let done = t
            .post_deposit_transaction(
                &id,
                DepositTransactionKind::Deposit,
                &json!({ "amount": "100.50", "valueDate": "2024-01-02T00:00:00+00:00", "externalId": "D-1" }),
            )
            .unwrap();
        assert_eq!(done["type"], "DEPOSIT");
        assert_eq!(done["accountBalances"]["totalBalance"].to_string(), "100.5");
        assert_eq!(t.get_deposit(&id).unwrap()["accountState"], "ACTIVE");
        let err = t
            .post_deposit_transaction(
                &id,
                DepositTransactionKind::Withdrawal,
                &json!({ "amount": 10, "valueDate": "2024-01-01T00:00:00+00:00" }),
            )
            .unwrap_err();
        assert_eq!(err.reason, "BACKDATE_BEFORE_OTHER_OPERATION");
        let err = t
            .post_deposit_transaction(
                &id,
                DepositTransactionKind::Withdrawal,
                &json!({ "amount": "100.51", "valueDate": "2024-01-02T00:00:00+00:00" }),
            )
            .unwrap_err();
        assert_eq!((err.code, err.reason), (401, "BALANCE_BELOW_ZERO"));
        let left = t
            .post_deposit_transaction(
                &id,
                DepositTransactionKind::Withdrawal,
                &json!({ "amount": "0.50", "valueDate": "2024-01-03T00:00:00+00:00" }),
            )
            .unwrap();
        assert_eq!(left["accountBalances"]["totalBalance"].to_string(), "100");
        assert_eq!(
            t.get_deposit(&id).unwrap()["balances"]["totalBalance"].to_string(),
            "100"
        );
        assert_eq!(t.deposit_transactions(&id).unwrap().len(), 2);
    }

    #[test]
    fn pending_accounts_future_dates_and_bad_amounts_are_refused() {
        let mut t = tenant();
        let pending = pending_deposit(&mut t);
        let deposit = DepositTransactionKind::Deposit;
        let reason = |t: &mut Tenant, id: &str, body: Value| {
            t.post_deposit_transaction(id, deposit, &body)
                .unwrap_err()
                .reason
        };
        assert_eq!(
            reason(&mut t, &pending, json!({ "amount": 5 })),
            "INVALID_DEPOSIT_ACCOUNT_STATE"
        );
        let id = approved_deposit(&mut t);
        assert_eq!(
            reason(&mut t, &id, json!({ "amount": 0 })),
            "INVALID_DEPOSIT_AMOUNT"
        );
        assert_eq!(reason(&mut t, &id, json!({})), "INVALID_PARAMETERS");
        assert_eq!(
            reason(
                &mut t,
                &id,
                json!({ "amount": 5, "valueDate": "2999-01-01T00:00:00+00:00" })
            ),
            "BACKDATE_SET_IN_THE_FUTURE"
        );
        assert_eq!(
            reason(&mut t, "nope", json!({ "amount": 5 })),
            "INVALID_DEPOSIT_ACCOUNT_ID"
        );
    }

    #[test]
    fn an_amount_with_more_decimals_than_money_holds_is_answered_exactly() {
        let mut t = tenant();
        let id = approved_deposit(&mut t);
        let mut post = |body: Value| {
            t.post_deposit_transaction(&id, DepositTransactionKind::Deposit, &body)
                .unwrap()
        };
        let tiny = post(json!({ "amount": "100.123456", "bookingDate": null, "notes": "n" }));
        let big = "9999999999999999.5";
        let huge = post(serde_json::from_str(&format!(r#"{{"amount": {big}}}"#)).unwrap());
        assert_eq!(tiny["amount"].to_string(), "100.123456");
        assert_eq!(
            tiny["affectedAmounts"]["fundsAmount"].to_string(),
            "100.123456"
        );
        assert_eq!(
            tiny["accountBalances"]["totalBalance"].to_string(),
            "100.123456"
        );
        assert_eq!(
            (&tiny["bookingDate"], &tiny["notes"]),
            (&Value::Null, &json!("n"))
        );
        assert_eq!(huge["amount"].to_string(), big);
        assert_eq!(
            huge["accountBalances"]["totalBalance"].to_string(),
            "10000000000000099.623456"
        );
        let listed = t.deposit_transactions(&id).unwrap();
        assert_eq!((&listed[0], &listed[1]), (&tiny, &huge));
        t.adjust_deposit_transaction(huge["id"].as_str().unwrap(), &json!({}))
            .unwrap();
        assert_eq!(
            t.get_deposit(&id).unwrap()["balances"]["totalBalance"].to_string(),
            "100.123456"
        );
    }

    #[test]
    fn duplicates_without_external_id_are_counted_and_external_ids_are_unique() {
        let mut t = tenant();
        let id = approved_deposit(&mut t);
        let body = json!({ "amount": 5, "valueDate": "2024-01-02T00:00:00+00:00" });
        for _ in 0..2 {
            t.post_deposit_transaction(&id, DepositTransactionKind::Deposit, &body)
                .unwrap();
        }
        assert_eq!(t.counters.duplicate_transactions, 1);
        let with_ext =
            json!({ "amount": 5, "externalId": "X", "valueDate": "2024-01-02T00:00:00+00:00" });
        t.post_deposit_transaction(&id, DepositTransactionKind::Deposit, &with_ext)
            .unwrap();
        let err = t
            .post_deposit_transaction(&id, DepositTransactionKind::Deposit, &with_ext)
            .unwrap_err();
        assert_eq!(err.reason, "EXTERNAL_ID_ALREADY_EXISTS");
        assert_eq!(t.counters.duplicate_transactions, 1);
        assert_eq!(t.counters.refused_external_ids, 1);
    }
}
