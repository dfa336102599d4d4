//! The sandbox's own view of the tenant, behind Mambu's API: the counts of `GET /_sandbox/stats`
//! (custom field values per set and addresses among them)
//! and the test-only changes of `POST /_sandbox/tamper`.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::json::{decimal, money};
use super::rollback::DELETED;
use super::{Account, EntityRef, Tenant};

impl Tenant {
    /// Counts for `GET /_sandbox/stats`.
    pub fn stats(&self) -> Value {
        let mut loans_by_state: HashMap<&str, u64> = HashMap::new();
        // `CLOSED/REPAID`, `CLOSED/WRITTEN_OFF`…: only loans with a sub-state.
        let mut loans_by_sub_state: HashMap<String, u64> = HashMap::new();
        for l in self.loans.iter().filter(|l| l.state != DELETED) {
            *loans_by_state.entry(l.state).or_default() += 1;
            if let Some(sub) = l.sub_state {
                *loans_by_sub_state
                    .entry(format!("{}/{sub}", l.state))
                    .or_default() += 1;
            }
        }
        let mut deposits_by_state: HashMap<&str, u64> = HashMap::new();
        for d in self.deposits.iter().filter(|d| d.state != DELETED) {
            *deposits_by_state.entry(d.state).or_default() += 1;
        }
        let mut transactions_by_type: HashMap<&str, u64> = HashMap::new();
        let mut amounts_by_type: HashMap<&str, Decimal> = HashMap::new();
        for t in self.transactions.iter().filter(|t| !t.deleted) {
            *transactions_by_type.entry(t.kind()).or_default() += 1;
            *amounts_by_type.entry(t.kind()).or_default() += self.transaction_amount(t);
        }
        let c = &self.counters;
        let custom = self.custom_field_stats();
        json!({
            "clients": self.clients.iter().filter(|c| c.state != DELETED).count(),
            "groups": self.groups.iter().filter(|g| !g.deleted).count(),
            "group_members": self.group_memberships(),
            "deposits": self.deposits.iter().filter(|d| d.state != DELETED).count(),
            "deposits_by_state": deposits_by_state,
            "deposit_transactions": self.transactions.iter().filter(|t| !t.deleted && matches!(t.account(), Account::Deposit(_))).count(),
            "deposit_balances_total": money(self.deposits.iter().map(|d| d.balance).sum()),
            "loans": self.loans.iter().filter(|l| l.state != DELETED).count(),
            "loans_by_state": loans_by_state,
            "loans_by_sub_state": loans_by_sub_state,
            // ACTIVE loans answered ACTIVE_IN_ARREARS (computed on read, as `GET /loans` does).
            "loans_in_arrears": self.loans.iter().filter(|l| self.loan_state(l) == "ACTIVE_IN_ARREARS").count(),
            "settlement_links": self.loans.iter().filter(|l| l.state != DELETED && l.settlement_key.is_some()).count(),
            "custom_schedules": self.loans.iter().filter(|l| l.state != DELETED && l.custom_schedule).count(),
            "loan_guarantors": self.loan_entries("guarantors"),
            "loan_assets": self.loan_entries("assets"),
            "transactions": self.transactions.iter().filter(|t| !t.deleted).count(),
            // Adjusted (issue 19), those of accounts deleted since too: each adjustment once.
            "adjusted_transactions": self.transactions.iter().filter(|t| t.adjusted).count(),
            "transactions_by_type": transactions_by_type,
            "transaction_amounts_by_type": amounts_by_type.into_iter().map(|(k, v)| (k, money(v))).collect::<HashMap<_, _>>(),
            "duplicates": {
                "clients": c.duplicate_clients,
                "groups": c.duplicate_groups,
                "deposits": c.duplicate_deposits,
                "loans": c.duplicate_loans,
                "transactions": c.duplicate_transactions,
                "total": c.duplicate_clients + c.duplicate_groups + c.duplicate_deposits + c.duplicate_loans + c.duplicate_transactions,
            },
            "custom_field_values": custom["custom_field_values"],
            "custom_field_values_total": custom["custom_field_values_total"],
            "addresses": custom["addresses"],
            "bulks": self.bulk_stats(),
            "refused_duplicates": {
                "client_id": c.refused_client_ids,
                "group_id": c.refused_group_ids,
                "account_id": c.refused_account_ids,
                "external_id": c.refused_external_ids,
            },
        })
    }

    /// How many entries the loans' `list` (guarantors, assets) hold, all loans together (not
    /// those deleted).
    fn loan_entries(&self, list: &str) -> usize {
        self.loans
            .iter()
            .filter(|l| l.state != DELETED)
            .filter_map(|l| l.doc.get(list).and_then(Value::as_array))
            .map(Vec::len)
            .sum()
    }

    /// Test-only changes made behind the API's back (`POST /_sandbox/tamper`), so that a
    /// reconciliation can be shown to catch them: `{"action": "delete_transaction",
    /// "externalId": ...}`, `{"action": "set_loan_amount", "loan": <id or key>, "amount": n}`,
    /// `{"action": "set_custom_field", "client"|"loan"|"deposit": <id or key>, "set": "_Set",
    /// "field": "f", "value": "v"}` (a grouped set's entry `"index": n`, 0 by default; a null
    /// value removes the field) or `{"action": "set_address", "client": <id or key>, "index": n,
    /// "field": "line1", "value": "v"}` or `{"action": "set_security", "loan": <id or key>,
    /// "list": "guarantors"|"assets", "index": n, "field": "amount", "value": v}` or
    /// `{"action": "set_deposit_balance", "deposit": <id or key>, "balance": n}` (the balance
    /// alone, no transaction behind it); and the tenant's configuration: `set_product_setting`
    /// (below) and `{"action": "remove_branch", "branch": <id or key>}`; `{"action":
    /// "age_closure", "loan": <id or key>}` dates a loan's close or write-off a day earlier.
    pub fn tamper(&mut self, body: &Value) -> Result<Value, String> {
        match body.get("action").and_then(Value::as_str) {
            Some("delete_transaction") => {
                let external = body
                    .get("externalId")
                    .and_then(Value::as_str)
                    .ok_or("externalId is needed")?;
                let fingerprint = self.fingerprint.of(external);
                let index = *self
                    .external_ids
                    .get(&fingerprint)
                    .ok_or("no transaction has this externalId")?;
                self.transactions[index].deleted = true;
                match self.transactions[index].account() {
                    Account::Loan(loan) => self.loans[loan].transactions.retain(|t| *t != index),
                    Account::Deposit(deposit) => {
                        self.deposits[deposit].transactions.retain(|t| *t != index);
                    }
                }
                self.external_ids.remove(&fingerprint);
                Ok(json!({ "deleted": external }))
            }
            Some("age_closure") => {
                // An end of day has run since the loan was closed or written off (issue 19):
                // it is final.
                let loan = text(body, "loan")?;
                let index = self.loan_index(loan).ok_or("no such loan")?;
                let day = self.loans[index]
                    .closed_on
                    .as_mut()
                    .ok_or("the loan is not closed")?;
                *day -= chrono::Duration::days(1);
                Ok(json!({ "loan": loan, "closedOn": day.to_rfc3339() }))
            }
            Some("set_loan_amount") => {
                let loan = body
                    .get("loan")
                    .and_then(Value::as_str)
                    .ok_or("loan is needed")?;
                let amount = body
                    .get("amount")
                    .and_then(decimal)
                    .ok_or("amount must be a number")?;
                let index = self.loan_index(loan).ok_or("no such loan")?;
                self.loans[index].amount = amount;
                Ok(json!({ "loan": loan, "loanAmount": money(amount) }))
            }
            Some("set_deposit_balance") => {
                let deposit = text(body, "deposit")?;
                let balance = body
                    .get("balance")
                    .and_then(decimal)
                    .ok_or("balance must be a number")?;
                let index = self.deposit_index(deposit).ok_or("no such deposit")?;
                self.deposits[index].balance = balance;
                Ok(json!({ "deposit": deposit, "totalBalance": money(balance) }))
            }
            Some("set_custom_field") => {
                let set = text(body, "set")?;
                let field = text(body, "field")?;
                let index = body.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let value = body.get("value").cloned().unwrap_or(Value::Null);
                let fields = match self.tampered(body)?.entry(set).or_insert_with(|| json!({})) {
                    Value::Object(fields) => fields,
                    Value::Array(groups) => groups
                        .get_mut(index)
                        .and_then(Value::as_object_mut)
                        .ok_or("no such entry of the grouped set")?,
                    _ => return Err("the set holds no values".into()),
                };
                set_or_remove(fields, field, value);
                Ok(json!({ "set": set, "field": field }))
            }
            Some("set_address") => self.set_entry_field(body, "addresses", "address"),
            Some("set_security") => {
                let list = text(body, "list")?;
                if !super::securities::LISTS.contains(&list) {
                    return Err("list must be guarantors or assets".into());
                }
                self.set_entry_field(body, list, "security")
            }
            Some("set_product_setting") => self.set_product_setting(body),
            Some("remove_branch") => {
                let id = text(body, "branch")?;
                let branches = &mut self.products.branches;
                let before = branches.len();
                branches.retain(|b| b.id != id && b.encoded_key != id);
                if branches.len() == before {
                    return Err("no such branch".into());
                }
                Ok(json!({ "removed": id }))
            }
            _ => Err("action must be delete_transaction, set_loan_amount, set_deposit_balance, set_custom_field, set_address, set_security, set_product_setting or remove_branch".into()),
        }
    }

    /// `{"action": "set_product_setting", "product": <id>, "path": "/loanAmountSettings/
    /// loanAmount/maxValue", "value": v}`: a loan or deposit product's setting edited in its
    /// Mambu JSON (a JSON pointer; a missing last key is added), as a tenant's administrator
    /// edits it between a rehearsal and the cutover. Refused when the product would no longer
    /// read as one.
    fn set_product_setting(&mut self, body: &Value) -> Result<Value, String> {
        let id = text(body, "product")?;
        let path = text(body, "path")?;
        let value = body.get("value").cloned().unwrap_or(Value::Null);
        fn edit<T: serde::Serialize + serde::de::DeserializeOwned>(
            product: &mut T,
            path: &str,
            value: Value,
        ) -> Result<(), String> {
            let mut doc = serde_json::to_value(&*product).map_err(|e| e.to_string())?;
            let (parent, last) = path.rsplit_once('/').ok_or("path must be a JSON pointer")?;
            let at = doc
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .ok_or("no such setting")?;
            at.insert(last.to_owned(), value);
            *product = serde_json::from_value(doc).map_err(|e| e.to_string())?;
            Ok(())
        }
        let products = &mut self.products;
        if let Some(p) = products.loan_products.iter_mut().find(|p| p.id == id) {
            edit(p, path, value)?;
        } else if let Some(p) = products.deposit_products.iter_mut().find(|p| p.id == id) {
            edit(p, path, value)?;
        } else {
            return Err("no such product".into());
        }
        Ok(json!({ "product": id, "path": path }))
    }

    /// Sets (or with a null value removes) `field` of the entry `index` (0 by default) of the
    /// list `list` of the entity the tamper names: an address, a guarantor, an asset.
    fn set_entry_field(&mut self, body: &Value, list: &str, what: &str) -> Result<Value, String> {
        let field = text(body, "field")?;
        let index = body.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        let value = body.get("value").cloned().unwrap_or(Value::Null);
        let entry = self
            .tampered(body)?
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .and_then(|a| a.get_mut(index))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("no such {what}"))?;
        set_or_remove(entry, field, value);
        Ok(json!({ what: index, "field": field }))
    }

    /// The stored document of the client, loan or deposit a tamper names.
    fn tampered(&mut self, body: &Value) -> Result<&mut Map<String, Value>, String> {
        if let Ok(id) = text(body, "client") {
            let index = match self.keys.get(id) {
                Some(EntityRef::Client(i)) => Some(*i),
                _ => self.client_ids.get(id).copied(),
            };
            return Ok(&mut self.clients[index.ok_or("no such client")?].doc);
        }
        if let Ok(id) = text(body, "loan") {
            let index = self.loan_index(id).ok_or("no such loan")?;
            return Ok(&mut self.loans[index].doc);
        }
        let id = text(body, "deposit").map_err(|_| "client, loan or deposit is needed")?;
        let index = self.deposit_index(id).ok_or("no such deposit")?;
        Ok(&mut self.deposits[index].doc)
    }
}

/// A tamper's text parameter.
fn text<'a>(body: &'a Value, key: &str) -> Result<&'a str, String> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{key} is needed"))
}

/// Sets a field, or removes it when `value` is null.
fn set_or_remove(fields: &mut Map<String, Value>, field: &str, value: Value) {
    if value.is_null() {
        fields.remove(field);
    } else {
        fields.insert(field.to_owned(), value);
    }
}
