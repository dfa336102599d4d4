//! Deposit accounts: creation against a deposit product, lookup, state changes, their JSON.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::json::{money, now, object, required_str, writable};
use super::{Answer, Deposit, EntityRef, Tenant};
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
        let encoded_key = self.new_key();
        let index = self.deposits.len();
        self.account_ids
            .insert(id.clone(), EntityRef::Deposit(index));
        self.keys
            .insert(encoded_key.clone(), EntityRef::Deposit(index));
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
            doc,
            holder,
            product_key: product,
            state: "PENDING_APPROVAL",
            balance: Decimal::ZERO,
            linked_loans: Vec::new(),
            created: now(self.zone),
            approved: None,
        });
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
            .keys
            .get(id_or_key)
            .or_else(|| self.account_ids.get(id_or_key))
        {
            Some(EntityRef::Deposit(i)) => Some(*i),
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
            deposit.approved = Some(now(self.zone));
        }
        deposit.state = next;
        let holder = deposit.holder;
        if next == "APPROVED" {
            self.activate_client(holder);
        }
        Ok(self.deposit_json(index))
    }

    fn deposit_json(&self, index: usize) -> Value {
        let d = &self.deposits[index];
        let mut out = d.doc.clone();
        out.insert("encodedKey".into(), json!(d.encoded_key));
        out.insert("id".into(), json!(d.id));
        out.insert("accountState".into(), json!(d.state));
        out.insert("creationDate".into(), json!(d.created));
        out.insert(
            "lastModifiedDate".into(),
            json!(d.approved.as_ref().unwrap_or(&d.created)),
        );
        if let Some(at) = &d.approved {
            out.insert("approvedDate".into(), json!(at));
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
