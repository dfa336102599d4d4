//! The sandbox's own view of the tenant, behind Mambu's API: the counts of `GET /_sandbox/stats`
//! (custom field values per set and addresses among them)
//! and the test-only changes of `POST /_sandbox/tamper`.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::Tenant;
use super::json::{decimal, money};

impl Tenant {
    /// Counts for `GET /_sandbox/stats`.
    pub fn stats(&self) -> Value {
        let mut loans_by_state: HashMap<&str, u64> = HashMap::new();
        for l in &self.loans {
            *loans_by_state.entry(l.state).or_default() += 1;
        }
        let mut deposits_by_state: HashMap<&str, u64> = HashMap::new();
        for d in &self.deposits {
            *deposits_by_state.entry(d.state).or_default() += 1;
        }
        let mut transactions_by_type: HashMap<&str, u64> = HashMap::new();
        let mut amounts_by_type: HashMap<&str, Decimal> = HashMap::new();
        for t in self.transactions.iter().filter(|t| !t.deleted) {
            *transactions_by_type.entry(t.kind).or_default() += 1;
            *amounts_by_type.entry(t.kind).or_default() +=
                t.doc.get("amount").and_then(decimal).unwrap_or_default();
        }
        let c = &self.counters;
        let custom = self.custom_field_stats();
        json!({
            "clients": self.clients.len(),
            "groups": self.groups.len(),
            "group_members": self.group_memberships(),
            "deposits": self.deposits.len(),
            "deposits_by_state": deposits_by_state,
            "loans": self.loans.len(),
            "loans_by_state": loans_by_state,
            "settlement_links": self.loans.iter().filter(|l| l.settlement_key.is_some()).count(),
            "custom_schedules": self.loans.iter().filter(|l| l.custom_schedule).count(),
            "transactions": self.transactions.iter().filter(|t| !t.deleted).count(),
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
            "refused_duplicates": {
                "client_id": c.refused_client_ids,
                "group_id": c.refused_group_ids,
                "account_id": c.refused_account_ids,
                "external_id": c.refused_external_ids,
            },
        })
    }

    /// Test-only changes made behind the API's back (`POST /_sandbox/tamper`), so that a
    /// reconciliation can be shown to catch them: `{"action": "delete_transaction",
    /// "externalId": ...}` or `{"action": "set_loan_amount", "loan": <id or key>, "amount": n}`.
    pub fn tamper(&mut self, body: &Value) -> Result<Value, String> {
        match body.get("action").and_then(Value::as_str) {
            Some("delete_transaction") => {
                let external = body
                    .get("externalId")
                    .and_then(Value::as_str)
                    .ok_or("externalId is needed")?;
                let index = *self
                    .external_ids
                    .get(external)
                    .ok_or("no transaction has this externalId")?;
                let loan = self.transactions[index].loan;
                self.transactions[index].deleted = true;
                self.loans[loan].transactions.retain(|t| *t != index);
                self.external_ids.remove(external);
                Ok(json!({ "deleted": external }))
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
            _ => Err("action must be delete_transaction or set_loan_amount".into()),
        }
    }
}
