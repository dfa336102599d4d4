//! The sandbox's own view of the tenant, behind Mambu's API: the counts of `GET /_sandbox/stats`
//! (custom field values per set and addresses among them), kept running as the tenant changes
//! (issue 21: a call read them, it no longer walks the tenant; only the loans in arrears, which
//! the date makes, are still counted on the call), and the test-only changes of
//! `POST /_sandbox/tamper`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::custom_fields::stored_values;
use super::json::{JsonText, decimal, money};
use super::rollback::DELETED;
use super::{Account, Client, Deposit, EntityRef, Group, Loan, Tenant, Transaction};

/// The entities' part of `GET /_sandbox/stats` (issue 21), kept as they are created and
/// changed: each change takes the entity's share out of the counts and puts it back after
/// (`Tenant::changing`), so that a call reads the counts instead of walking every client,
/// loan and deposit and their documents. A count falls out of its map at zero, as the walk it
/// replaces never saw it. A debug build checks it against a recount on every call, and a
/// test-build [`Tenant`] when it is dropped.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct EntityTally {
    counts: BTreeMap<Count, i64>,
    /// Of every deposit, deleted or not.
    deposit_balances: Decimal,
}

/// What [`EntityTally`] counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Count {
    Clients,
    Groups,
    GroupMembers,
    Deposits,
    DepositsIn(&'static str),
    Loans,
    LoansIn(&'static str),
    LoansInSub(&'static str, &'static str),
    SettlementLinks,
    CustomSchedules,
    Guarantors,
    Assets,
    Addresses,
    /// The documents holding the custom field set (values or not).
    SetHeld(String),
    SetValues(String),
}

impl EntityTally {
    fn bump(&mut self, count: Count, by: i64) {
        if by == 0 {
            return;
        }
        let n = self.counts.entry(count.clone()).or_default();
        *n += by;
        if *n == 0 {
            self.counts.remove(&count);
        }
    }

    fn get(&self, count: &Count) -> i64 {
        self.counts.get(count).copied().unwrap_or_default()
    }

    /// A client's, loan's or deposit's document: its custom field values and addresses.
    fn doc(&mut self, doc: &Map<String, Value>, sign: i64) {
        for (key, value) in doc.iter().filter(|(k, _)| k.starts_with('_')) {
            self.bump(Count::SetHeld(key.clone()), sign);
            self.bump(
                Count::SetValues(key.clone()),
                sign * stored_values(value) as i64,
            );
        }
        self.bump(Count::Addresses, sign * list_len(doc, "addresses"));
    }

    /// Puts a client's share in (`sign` 1) or takes it out (-1).
    pub(super) fn client(&mut self, c: &Client, sign: i64) {
        if c.state != DELETED {
            self.bump(Count::Clients, sign);
            self.doc(&c.doc.map(), sign);
        }
    }

    pub(super) fn group(&mut self, g: &Group, sign: i64) {
        if !g.deleted {
            self.bump(Count::Groups, sign);
        }
        self.bump(Count::GroupMembers, sign * g.members.len() as i64);
    }

    pub(super) fn deposit(&mut self, d: &Deposit, sign: i64) {
        self.deposit_state(d, sign);
        if d.state != DELETED {
            self.doc(&d.doc.map(), sign);
        }
    }

    /// A deposit's share but its document's: what a balance or a state change (not a deletion)
    /// moves, without parsing the document on every deposit transaction.
    pub(super) fn deposit_state(&mut self, d: &Deposit, sign: i64) {
        self.deposit_balances += d.balance * Decimal::from(sign);
        if d.state != DELETED {
            self.bump(Count::Deposits, sign);
            self.bump(Count::DepositsIn(d.state), sign);
        }
    }

    pub(super) fn loan(&mut self, l: &Loan, sign: i64) {
        if l.state == DELETED {
            return;
        }
        self.loan_state(l, sign);
        let doc = l.doc.map();
        self.bump(Count::Guarantors, sign * list_len(&doc, "guarantors"));
        self.bump(Count::Assets, sign * list_len(&doc, "assets"));
        self.doc(&doc, sign);
    }

    /// A loan's share but its document's: what a state, schedule or link change (not a
    /// deletion) moves, without parsing the document on every transaction.
    pub(super) fn loan_state(&mut self, l: &Loan, sign: i64) {
        if l.state == DELETED {
            return;
        }
        self.bump(Count::Loans, sign);
        self.bump(Count::LoansIn(l.state), sign);
        if let Some(sub) = l.sub_state {
            self.bump(Count::LoansInSub(l.state, sub), sign);
        }
        self.bump(
            Count::SettlementLinks,
            sign * i64::from(l.settlement_key.is_some()),
        );
        self.bump(Count::CustomSchedules, sign * i64::from(l.custom_schedule));
    }
}

/// How many entries a document's list holds (0 without one).
fn list_len(doc: &Map<String, Value>, list: &str) -> i64 {
    doc.get(list)
        .and_then(Value::as_array)
        .map_or(0, |a| a.len() as i64)
}

/// The transactions' part of `GET /_sandbox/stats`, kept as they are posted, adjusted and
/// deleted (issue 21: a call walked every transaction, 30 million of them at a million
/// clients). Deleted transactions (behind the API's back, or with their account) leave the
/// counts; an adjusted one stays in `adjusted` even once deleted, as an adjustment is counted
/// once. A debug build checks it against a recount on every call, and a test-build [`Tenant`]
/// when it is dropped.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct TransactionTally {
    /// Not deleted.
    live: u64,
    /// Not deleted, on a deposit.
    on_deposits: u64,
    adjusted: u64,
    /// Not deleted, by type: how many, and their amounts' sum. A type none is left of is
    /// removed, as the walk it replaces never saw it.
    by_type: BTreeMap<&'static str, (u64, Decimal)>,
}

impl TransactionTally {
    /// Counts a transaction posted.
    /// Counts a transaction posted, of this amount ([`Tenant::transaction_amount`]).
    pub(super) fn posted(&mut self, t: &Transaction, amount: Decimal) {
        self.live += 1;
        if matches!(t.account(), Account::Deposit(_)) {
            self.on_deposits += 1;
        }
        let (count, sum) = self.by_type.entry(t.kind()).or_default();
        *count += 1;
        *sum += amount;
    }

    /// Takes a transaction being deleted out of the counts (its `deleted` not yet set).
    pub(super) fn deleted(&mut self, t: &Transaction, amount: Decimal) {
        if t.deleted {
            return;
        }
        self.live -= 1;
        if matches!(t.account(), Account::Deposit(_)) {
            self.on_deposits -= 1;
        }
        if let Some((count, sum)) = self.by_type.get_mut(t.kind()) {
            *count -= 1;
            *sum -= amount;
            if *count == 0 {
                self.by_type.remove(t.kind());
            }
        }
    }

    /// Counts a transaction being adjusted (its `adjusted` not yet set).
    pub(super) fn adjusted(&mut self, t: &Transaction) {
        if !t.adjusted {
            self.adjusted += 1;
        }
    }

    /// The same counts, walked from every transaction: what the running ones must equal
    /// (called by debug and test builds only).
    pub(super) fn recount(tenant: &Tenant) -> Self {
        let mut tally = Self::default();
        for t in &tenant.transactions {
            if t.adjusted {
                tally.adjusted += 1;
            }
            if !t.deleted {
                tally.posted(t, tenant.transaction_amount(t));
            }
        }
        tally
    }
}

/// A test-build tenant's running counts must equal a recount when it is dropped: every unit
/// test that changes a tenant checks that each change kept them (a missed update fails it).
#[cfg(test)]
impl Drop for Tenant {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(
                self.tally,
                TransactionTally::recount(self),
                "the running transaction counts differ from a recount"
            );
            assert_eq!(
                self.entities,
                self.recount_entities(),
                "the running entity counts differ from a recount"
            );
        }
    }
}

impl Tenant {
    /// Counts for `GET /_sandbox/stats`.
    pub fn stats(&self) -> Value {
        let e = &self.entities;
        debug_assert_eq!(
            *e,
            self.recount_entities(),
            "the running entity counts differ from a recount"
        );
        let mut loans_by_state: BTreeMap<&str, i64> = BTreeMap::new();
        // `CLOSED/REPAID`, `CLOSED/WRITTEN_OFF`…: only loans with a sub-state.
        let mut loans_by_sub_state: BTreeMap<String, i64> = BTreeMap::new();
        let mut deposits_by_state: BTreeMap<&str, i64> = BTreeMap::new();
        let mut custom_values: BTreeMap<&str, i64> = BTreeMap::new();
        for (count, n) in &e.counts {
            match count {
                Count::LoansIn(state) => _ = loans_by_state.insert(state, *n),
                Count::LoansInSub(state, sub) => {
                    _ = loans_by_sub_state.insert(format!("{state}/{sub}"), *n);
                }
                Count::DepositsIn(state) => _ = deposits_by_state.insert(state, *n),
                Count::SetHeld(set) => {
                    _ = custom_values.insert(set, e.get(&Count::SetValues(set.clone())));
                }
                _ => {}
            }
        }
        let tally = &self.tally;
        debug_assert_eq!(
            *tally,
            TransactionTally::recount(self),
            "the running transaction counts differ from a recount"
        );
        let transactions_by_type: BTreeMap<&str, u64> =
            tally.by_type.iter().map(|(k, (n, _))| (*k, *n)).collect();
        let amounts_by_type: BTreeMap<&str, Value> = tally
            .by_type
            .iter()
            .map(|(k, (_, amount))| (*k, money(*amount)))
            .collect();
        let c = &self.counters;
        json!({
            "clients": e.get(&Count::Clients),
            "groups": e.get(&Count::Groups),
            "group_members": e.get(&Count::GroupMembers),
            "deposits": e.get(&Count::Deposits),
            "deposits_by_state": deposits_by_state,
            "deposit_transactions": tally.on_deposits,
            "deposit_balances_total": money(e.deposit_balances),
            "loans": e.get(&Count::Loans),
            "loans_by_state": loans_by_state,
            "loans_by_sub_state": loans_by_sub_state,
            // ACTIVE loans answered ACTIVE_IN_ARREARS (computed on read, as `GET /loans` does).
            "loans_in_arrears": self.loans.iter().filter(|l| self.loan_state(l) == "ACTIVE_IN_ARREARS").count(),
            "settlement_links": e.get(&Count::SettlementLinks),
            "custom_schedules": e.get(&Count::CustomSchedules),
            "loan_guarantors": e.get(&Count::Guarantors),
            "loan_assets": e.get(&Count::Assets),
            "transactions": tally.live,
            // Adjusted (issue 19), those of accounts deleted since too: each adjustment once.
            "adjusted_transactions": tally.adjusted,
            "transactions_by_type": transactions_by_type,
            "transaction_amounts_by_type": amounts_by_type,
            "duplicates": {
                "clients": c.duplicate_clients,
                "groups": c.duplicate_groups,
                "deposits": c.duplicate_deposits,
                "loans": c.duplicate_loans,
                "transactions": c.duplicate_transactions,
                "total": c.duplicate_clients + c.duplicate_groups + c.duplicate_deposits + c.duplicate_loans + c.duplicate_transactions,
            },
            "custom_field_values_total": custom_values.values().sum::<i64>(),
            "custom_field_values": custom_values,
            "addresses": e.get(&Count::Addresses),
            "bulks": self.bulk_stats(),
            "refused_duplicates": {
                "client_id": c.refused_client_ids,
                "group_id": c.refused_group_ids,
                "account_id": c.refused_account_ids,
                "external_id": c.refused_external_ids,
            },
        })
    }

    /// The entities' counts walked from every client, group, deposit and loan: what the
    /// running ones must equal (called by debug and test builds only).
    pub(super) fn recount_entities(&self) -> EntityTally {
        let mut tally = EntityTally::default();
        self.clients.iter().for_each(|c| tally.client(c, 1));
        self.groups.iter().for_each(|g| tally.group(g, 1));
        self.deposits.iter().for_each(|d| tally.deposit(d, 1));
        self.loans.iter().for_each(|l| tally.loan(l, 1));
        tally
    }

    /// Puts an entity's share of the stats' counts in (`sign` 1) or takes it out (-1).
    pub(super) fn tally_entity(&mut self, entity: EntityRef, sign: i64) {
        let e = &mut self.entities;
        match entity {
            EntityRef::Client(i) => e.client(&self.clients[i], sign),
            EntityRef::Group(i) => e.group(&self.groups[i], sign),
            EntityRef::Deposit(i) => e.deposit(&self.deposits[i], sign),
            EntityRef::Loan(i) => e.loan(&self.loans[i], sign),
        }
    }

    /// Applies `change`, which may change `entities` (and no other client, group, loan or
    /// deposit), keeping the stats' counts: their shares are taken out before and put back
    /// after, whatever `change` answers.
    pub(super) fn changing<R>(
        &mut self,
        entities: &[EntityRef],
        change: impl FnOnce(&mut Self) -> R,
    ) -> R {
        for entity in entities {
            self.tally_entity(*entity, -1);
        }
        let answer = change(self);
        for entity in entities {
            self.tally_entity(*entity, 1);
        }
        answer
    }

    /// Counts a new entity (the last of its kind).
    pub(super) fn created(&mut self, entity: EntityRef) {
        self.tally_entity(entity, 1);
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
                    .ok_or("no transaction has this externalId")? as usize;
                let amount = self.transaction_amount(&self.transactions[index]);
                self.tally.deleted(&self.transactions[index], amount);
                self.transactions[index].deleted = true;
                match self.transactions[index].account() {
                    Account::Loan(loan) => self.loans[loan].transactions.retain(|&t| t as usize != index),
                    Account::Deposit(deposit) => {
                        self.deposits[deposit].transactions.retain(|&t| t as usize != index);
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
                self.changing(&[EntityRef::Deposit(index)], |t| {
                    t.deposits[index].balance = balance;
                });
                Ok(json!({ "deposit": deposit, "totalBalance": money(balance) }))
            }
            Some("set_custom_field") => {
                let entity = self.tampered_entity(body)?;
                self.changing(&[entity], |t| t.set_custom_field(body))
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

    /// `set_custom_field` (see [`Tenant::tamper`]).
    fn set_custom_field(&mut self, body: &Value) -> Result<Value, String> {
        let set = text(body, "set")?;
        let field = text(body, "field")?;
        let index = body.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        let value = body.get("value").cloned().unwrap_or(Value::Null);
        self.tampered(body, |doc| {
            let fields = match doc.entry(set).or_insert_with(|| json!({})) {
                Value::Object(fields) => fields,
                Value::Array(groups) => groups
                    .get_mut(index)
                    .and_then(Value::as_object_mut)
                    .ok_or("no such entry of the grouped set")?,
                _ => return Err("the set holds no values".into()),
            };
            set_or_remove(fields, field, value);
            Ok(json!({ "set": set, "field": field }))
        })
    }

    /// Sets (or with a null value removes) `field` of the entry `index` (0 by default) of the
    /// list `list` of the entity the tamper names: an address, a guarantor, an asset.
    fn set_entry_field(&mut self, body: &Value, list: &str, what: &str) -> Result<Value, String> {
        let entity = self.tampered_entity(body)?;
        self.changing(&[entity], |t| t.set_entry_field_of(body, list, what))
    }

    fn set_entry_field_of(
        &mut self,
        body: &Value,
        list: &str,
        what: &str,
    ) -> Result<Value, String> {
        let field = text(body, "field")?;
        let index = body.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        let value = body.get("value").cloned().unwrap_or(Value::Null);
        self.tampered(body, |doc| {
            let entry = doc
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .and_then(|a| a.get_mut(index))
                .and_then(Value::as_object_mut)
                .ok_or_else(|| format!("no such {what}"))?;
            set_or_remove(entry, field, value);
            Ok(json!({ what: index, "field": field }))
        })
    }

    /// The client, loan or deposit a tamper names.
    fn tampered_entity(&self, body: &Value) -> Result<EntityRef, String> {
        if let Ok(id) = text(body, "client") {
            let index = match self.entity(id) {
                Some(EntityRef::Client(i)) => Some(i),
                _ => self.client_index(id),
            };
            return Ok(EntityRef::Client(index.ok_or("no such client")?));
        }
        if let Ok(id) = text(body, "loan") {
            return Ok(EntityRef::Loan(self.loan_index(id).ok_or("no such loan")?));
        }
        let id = text(body, "deposit").map_err(|_| "client, loan or deposit is needed")?;
        let index = self.deposit_index(id).ok_or("no such deposit")?;
        Ok(EntityRef::Deposit(index))
    }

    /// Changes the stored document of the client, loan or deposit a tamper names; kept
    /// unchanged when `change` refuses.
    fn tampered(
        &mut self,
        body: &Value,
        change: impl FnOnce(&mut Map<String, Value>) -> Result<Value, String>,
    ) -> Result<Value, String> {
        let doc = match self.tampered_entity(body)? {
            EntityRef::Client(i) => &mut self.clients[i].doc,
            EntityRef::Loan(i) => &mut self.loans[i].doc,
            EntityRef::Deposit(i) => &mut self.deposits[i].doc,
            EntityRef::Group(i) => &mut self.groups[i].doc,
        };
        let mut edited = doc.map();
        let answer = change(&mut edited)?;
        *doc = JsonText::new(&edited);
        Ok(answer)
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
