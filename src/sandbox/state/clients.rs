//! Clients: creation (ids, natural-key duplicates, branch), lookup by id or encodedKey, their
//! JSON, activation on a first approval or disbursement, and the holder an account names.

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::json::{now, object, optional_str, required_str, writable};
use super::{Answer, Client, EntityRef, Tenant};
use crate::sandbox::error::ApiError;

impl Tenant {
    pub fn create_client(&mut self, body: &Value) -> Answer {
        let doc = object(body)?;
        let first = required_str(doc, "firstName")?;
        let last = required_str(doc, "lastName")?;
        let birth = optional_str(doc, "birthDate")?;
        if let Some(birth) = birth {
            NaiveDate::parse_from_str(birth, "%Y-%m-%d")
                .map_err(|_| ApiError::invalid_parameters("birthDate"))?;
        }
        if let Some(branch) = optional_str(doc, "assignedBranchKey")?
            && self
                .products
                .branch(branch)
                .is_none_or(|b| b.encoded_key != branch)
        {
            return Err(ApiError::invalid_branch_key());
        }
        let id = match optional_str(doc, "id")? {
            Some(id) => {
                if self.client_ids.contains_key(id) {
                    self.counters.refused_client_ids += 1;
                    return Err(ApiError::client_id_in_use());
                }
                id.to_owned()
            }
            None => {
                let natural = format!("client|{first}|{last}|{}", birth.unwrap_or(""));
                if self.seen_before(natural) {
                    self.counters.duplicate_clients += 1;
                }
                format!("{:09}", 100_000_000 + self.seq + 1)
            }
        };
        let encoded_key = self.new_key();
        let index = self.clients.len();
        self.client_ids.insert(id.clone(), index);
        self.keys
            .insert(encoded_key.clone(), EntityRef::Client(index));
        let mut doc = writable(
            doc,
            &[
                "encodedKey",
                "state",
                "creationDate",
                "lastModifiedDate",
                "activationDate",
                "approvedDate",
                "closedDate",
            ],
        );
        doc.remove("id");
        self.clients.push(Client {
            encoded_key,
            id,
            doc,
            state: "INACTIVE",
            created: now(self.zone),
            activated: None,
        });
        Ok(self.client_json(index))
    }

    pub fn get_client(&self, id_or_key: &str) -> Answer {
        let index = self
            .client_index(id_or_key)
            .ok_or_else(ApiError::invalid_client_id)?;
        Ok(self.client_json(index))
    }

    fn client_index(&self, id_or_key: &str) -> Option<usize> {
        match self.keys.get(id_or_key) {
            Some(EntityRef::Client(i)) => Some(*i),
            _ => self.client_ids.get(id_or_key).copied(),
        }
    }

    fn client_json(&self, index: usize) -> Value {
        let c = &self.clients[index];
        let mut out = c.doc.clone();
        out.insert("encodedKey".into(), json!(c.encoded_key));
        out.insert("id".into(), json!(c.id));
        out.insert("state".into(), json!(c.state));
        out.insert("creationDate".into(), json!(c.created));
        out.insert(
            "lastModifiedDate".into(),
            json!(c.activated.as_ref().unwrap_or(&c.created)),
        );
        if let Some(at) = &c.activated {
            out.insert("activationDate".into(), json!(at));
        }
        Value::Object(out)
    }

    pub(super) fn activate_client(&mut self, index: usize) {
        let client = &mut self.clients[index];
        if client.state == "INACTIVE" {
            client.state = "ACTIVE";
            client.activated = Some(now(self.zone));
        }
    }

    /// The holder named by `accountHolderKey` (an encodedKey, as Mambu requires).
    pub(super) fn holder(&self, doc: &Map<String, Value>) -> Result<usize, ApiError> {
        let key = required_str(doc, "accountHolderKey")?;
        let kind = required_str(doc, "accountHolderType")?;
        if !matches!(kind, "CLIENT" | "GROUP") {
            return Err(ApiError::invalid_parameters("accountHolderType"));
        }
        match (kind, self.keys.get(key)) {
            ("CLIENT", Some(EntityRef::Client(i))) => Ok(*i),
            _ => Err(ApiError::account_holder_not_found()),
        }
    }
}
