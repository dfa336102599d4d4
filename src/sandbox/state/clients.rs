//! Clients: creation (ids, natural-key duplicates, branch, the tenant's client rules: ID
//! documents and the duplicate-client check; addresses and custom field values, checked in
//! `custom_fields`), lookup by id or encodedKey, their JSON,
//! activation on a first approval or disbursement, and the holder an account names.

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::custom_fields::check_addresses;
use super::json::{JsonText, object, optional_str, required_str, stamp, writable};
use super::{Answer, Client, EntityRef, Holder, Print, Tenant, index_u32};
use crate::sandbox::error::ApiError;
use crate::sandbox::tenant::{AvailableFor, DuplicateAction, DuplicateField};

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
        let documents = self.id_documents(doc)?;
        check_addresses(doc)?;
        let custom = self.custom_field_values(AvailableFor::Client, doc)?;
        let given_id = optional_str(doc, "id")?;
        if let Some(id) = given_id
            && self.by_id(&self.client_ids, id).is_some()
        {
            self.counters.refused_client_ids += 1;
            return Err(ApiError::client_id_in_use());
        }
        // After the id: a replay of a client already created keeps its CLIENT_ID_ALREADY_IN_USE,
        // which a migration reads as "done before"; a duplicate under another id is refused.
        let matches = self.match_keys(doc, &documents);
        if self.client_rules.duplicate_client_check.action == DuplicateAction::Error
            && let Some((field, _)) = matches
                .iter()
                .find(|(_, key)| self.client_matches.contains(key))
        {
            return Err(ApiError::duplicate_client(match_source(*field)));
        }
        let id = match given_id {
            Some(id) => id.to_owned(),
            None => {
                let natural = format!("client|{first}|{last}|{}", birth.unwrap_or(""));
                if self.seen_before(natural) {
                    self.counters.duplicate_clients += 1;
                }
                format!("{:09}", 100_000_000 + self.seq + 1)
            }
        };
        let encoded_key = self.next_key();
        let index = self.clients.len();
        self.client_ids
            .insert(self.fingerprint.of(&id), index_u32(index));
        self.keys.insert(encoded_key, EntityRef::Client(index));
        self.client_matches
            .extend(matches.into_iter().map(|(_, key)| key));
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
        doc.extend(custom);
        if let Some(Value::Array(stored)) = doc.get_mut("addresses") {
            // As Mambu answers them: each with its own key, its owner's, and its place.
            for (i, address) in stored.iter_mut().enumerate() {
                if let Value::Object(address) = address {
                    address.insert("encodedKey".into(), json!(self.new_key()));
                    address.insert("parentKey".into(), json!(encoded_key));
                    address.insert("indexInList".into(), json!(i));
                }
            }
        }
        if let Some(Value::Array(stored)) = doc.get_mut("idDocuments") {
            // As Mambu answers them: each with its own key, its client's, and its place.
            for (i, document) in stored.iter_mut().enumerate() {
                if let Value::Object(document) = document {
                    document.insert("encodedKey".into(), json!(self.new_key()));
                    document.insert("clientKey".into(), json!(encoded_key));
                    document.insert("indexInList".into(), json!(i));
                }
            }
        }
        self.clients.push(Client {
            encoded_key,
            id,
            doc: JsonText::new(&doc),
            state: "INACTIVE",
            created: self.zone.now(),
            activated: None,
        });
        self.created(EntityRef::Client(index));
        Ok(self.client_json(index))
    }

    /// The body's `idDocuments`, checked: each names its `documentId` and `documentType` (the
    /// spec requires both), a type the tenant's ID document templates define (when it lists
    /// any), and there are at least as many as the client rules require.
    pub(super) fn id_documents<'a>(
        &self,
        doc: &'a Map<String, Value>,
    ) -> Result<Vec<&'a Map<String, Value>>, ApiError> {
        let documents = match doc.get("idDocuments") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_object()
                        .ok_or_else(|| ApiError::invalid_parameters(format!("idDocuments[{i}]")))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::invalid_parameters("idDocuments")),
        };
        let types = &self.client_rules.id_document_types;
        for (i, document) in documents.iter().enumerate() {
            let text = |field: &str| {
                document
                    .get(field)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| ApiError::missing(&format!("idDocuments[{i}].{field}")))
            };
            text("documentId")?;
            let kind = text("documentType")?;
            if !types.is_empty() && !types.iter().any(|t| t == kind) {
                return Err(ApiError::invalid_id_document(format!(
                    "idDocuments[{i}].documentType: `{kind}` is not one of {}",
                    types.join(", ")
                )));
            }
        }
        if documents.len() < self.client_rules.required_id_documents as usize {
            return Err(ApiError::required_id_document_missing());
        }
        Ok(documents)
    }

    /// What the duplicate-client check compares, for each configured field combination the
    /// client fills: (the combination, a key equal for two matching clients). Text is compared
    /// trimmed and without case.
    pub(super) fn match_keys(
        &self,
        doc: &Map<String, Value>,
        documents: &[&Map<String, Value>],
    ) -> Vec<(DuplicateField, Print)> {
        let text = |map: &Map<String, Value>, field: &str| {
            map.get(field)
                .and_then(Value::as_str)
                .map(|v| v.trim().to_lowercase())
                .filter(|v| !v.is_empty())
        };
        let mut keys = Vec::new();
        for &field in &self.client_rules.duplicate_client_check.fields {
            let mut add = |parts: &[Option<String>]| {
                if let Some(parts) = parts.iter().cloned().collect::<Option<Vec<_>>>() {
                    let key = format!("{field:?}|{}", parts.join("|"));
                    keys.push((field, self.fingerprint.of(&key)));
                }
            };
            match field {
                DuplicateField::DocumentIdAndType => {
                    for document in documents {
                        add(&[text(document, "documentType"), text(document, "documentId")]);
                    }
                }
                DuplicateField::HomePhone => add(&[text(doc, "homePhone")]),
                DuplicateField::MobilePhone => add(&[text(doc, "mobilePhone")]),
                DuplicateField::EmailAddress => add(&[text(doc, "emailAddress")]),
                DuplicateField::FirstNameAndLastName => {
                    add(&[text(doc, "firstName"), text(doc, "lastName")]);
                }
                DuplicateField::LastNameAndDateOfBirth => {
                    add(&[text(doc, "lastName"), text(doc, "birthDate")]);
                }
            }
        }
        keys
    }

    /// `PATCH /clients/{id}` (`../shared/mambu-openapi/clients_v2_swagger.json`, operation
    /// `patch`: a list of `PatchOperation`, 204 "Client updated", 400 and 404; the record says
    /// nothing more, `../shared/mambu-api.md` §3 only that PATCH takes no Idempotency-Key):
    /// Mambu's patch operations (`op` ADD, REPLACE,
    /// REMOVE or MOVE, `path`, `value`, `from`), applied in order to a copy of the client that
    /// must then pass the checks of a create (names, birth date, ID documents, addresses,
    /// custom field values), or nothing is changed. A path names a field (`/mobilePhone`) or a
    /// custom field (`/_Client_Details/employment_status`); with or without the leading slash
    /// (the record is silent). The id, encodedKey, state and dates are not writable, a REPLACE
    /// of a field the client lacks is refused as JSON Patch refuses it, and a failed list changes
    /// nothing (stricter readings: the record is silent); the duplicate-client check is not run
    /// again (the record is silent; a patch names no new client). Errors are INVALID_PARAMETERS
    /// naming the operation (`[0].path`), as the sandbox's other field errors are.
    pub fn patch_client(&mut self, id_or_key: &str, body: &Value) -> Answer {
        let index = self
            .client_index(id_or_key)
            .ok_or_else(ApiError::invalid_client_id)?;
        let Value::Array(operations) = body else {
            return Err(ApiError::invalid_parameters(
                "body: a list of patch operations",
            ));
        };
        let mut doc = self.clients[index].doc.map();
        for (i, operation) in operations.iter().enumerate() {
            let operation = object(operation)?;
            let at = |what: &str| ApiError::invalid_parameters(format!("[{i}].{what}"));
            let op = optional_str(operation, "op")?.ok_or_else(|| at("op"))?;
            let path = optional_str(operation, "path")?.ok_or_else(|| at("path"))?;
            let segments = pointer(path).ok_or_else(|| at("path"))?;
            match op {
                "ADD" | "REPLACE" => {
                    let value = operation.get("value").cloned().unwrap_or(Value::Null);
                    if op == "REPLACE" && lookup(&doc, &segments).is_none() {
                        return Err(at("path"));
                    }
                    put(&mut doc, &segments, value);
                }
                "REMOVE" => {
                    take(&mut doc, &segments).ok_or_else(|| at("path"))?;
                }
                "MOVE" => {
                    let from = optional_str(operation, "from")?
                        .and_then(pointer)
                        .ok_or_else(|| at("from"))?;
                    let value = take(&mut doc, &from).ok_or_else(|| at("from"))?;
                    put(&mut doc, &segments, value);
                }
                _ => return Err(at("op")),
            }
        }
        required_str(&doc, "firstName")?;
        required_str(&doc, "lastName")?;
        if let Some(birth) = optional_str(&doc, "birthDate")? {
            NaiveDate::parse_from_str(birth, "%Y-%m-%d")
                .map_err(|_| ApiError::invalid_parameters("birthDate"))?;
        }
        self.id_documents(&doc)?;
        check_addresses(&doc)?;
        self.custom_field_values(AvailableFor::Client, &doc)?;
        let doc = JsonText::new(&doc);
        self.changing(&[EntityRef::Client(index)], |t| t.clients[index].doc = doc);
        Ok(Value::Null)
    }

    pub fn get_client(&self, id_or_key: &str) -> Answer {
        let index = self
            .client_index(id_or_key)
            .ok_or_else(ApiError::invalid_client_id)?;
        Ok(self.client_json(index))
    }

    pub(super) fn client_index(&self, id_or_key: &str) -> Option<usize> {
        match self.entity(id_or_key) {
            Some(EntityRef::Client(i)) => Some(i),
            _ => self.by_id(&self.client_ids, id_or_key),
        }
    }

    fn client_json(&self, index: usize) -> Value {
        let c = &self.clients[index];
        let mut out = c.doc.map();
        out.insert("encodedKey".into(), json!(c.encoded_key));
        out.insert("id".into(), json!(c.id));
        out.insert("state".into(), json!(c.state));
        out.insert("creationDate".into(), stamp(c.created));
        out.insert(
            "lastModifiedDate".into(),
            stamp(c.activated.unwrap_or(c.created)),
        );
        if let Some(at) = c.activated {
            out.insert("activationDate".into(), stamp(at));
        }
        Value::Object(out)
    }

    /// A first approval or disbursement activates a client holder; a group has no state in
    /// API v2's Group (skyleague/mambu-sdk `src/groups/rest.zod.ts`), so nothing changes.
    pub(super) fn activate_client(&mut self, holder: Holder) {
        let Holder::Client(index) = holder else {
            return;
        };
        let client = &mut self.clients[index];
        if client.state == "INACTIVE" {
            client.state = "ACTIVE";
            client.activated = Some(self.zone.now());
        }
    }

    /// The holder named by `accountHolderKey` (an encodedKey, as Mambu requires): a client for
    /// `accountHolderType: CLIENT`, a group for `GROUP` (the other kind's key is not found).
    pub(super) fn holder(&self, doc: &Map<String, Value>) -> Result<Holder, ApiError> {
        let key = required_str(doc, "accountHolderKey")?;
        let kind = required_str(doc, "accountHolderType")?;
        if !matches!(kind, "CLIENT" | "GROUP") {
            return Err(ApiError::invalid_parameters("accountHolderType"));
        }
        match (kind, self.entity(key)) {
            ("CLIENT", Some(EntityRef::Client(i))) => Ok(Holder::Client(i)),
            ("GROUP", Some(EntityRef::Group(i))) => Ok(Holder::Group(i)),
            _ => Err(ApiError::account_holder_not_found()),
        }
    }

    /// The `assignedBranchKey` of an account's holder, if it has one.
    pub(super) fn holder_branch(&self, holder: Holder) -> Option<Value> {
        match holder {
            Holder::Client(i) => self.clients[i].doc.get("assignedBranchKey"),
            Holder::Group(i) => self.groups[i].doc.get("assignedBranchKey"),
        }
    }
}

/// The fields a duplicate-client refusal names (`errorSource`).
fn match_source(field: DuplicateField) -> &'static str {
    match field {
        DuplicateField::DocumentIdAndType => "idDocuments: documentId and documentType",
        DuplicateField::HomePhone => "homePhone",
        DuplicateField::MobilePhone => "mobilePhone",
        DuplicateField::EmailAddress => "emailAddress",
        DuplicateField::FirstNameAndLastName => "firstName and lastName",
        DuplicateField::LastNameAndDateOfBirth => "lastName and birthDate",
    }
}

/// Fields a patch may not write: Mambu sets them.
const READ_ONLY: [&str; 6] = [
    "id",
    "encodedKey",
    "state",
    "creationDate",
    "lastModifiedDate",
    "activationDate",
];

/// A patch path's segments: one field, or a custom field set and its field; `None` for
/// anything else (deeper paths, a read-only field).
fn pointer(path: &str) -> Option<Vec<String>> {
    let segments: Vec<String> = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(str::to_owned)
        .collect();
    let ok = match segments.as_slice() {
        [field] => !field.is_empty() && !READ_ONLY.contains(&field.as_str()),
        [set, field] => set.starts_with('_') && !field.is_empty(),
        _ => false,
    };
    ok.then_some(segments)
}

fn lookup<'a>(doc: &'a Map<String, Value>, segments: &[String]) -> Option<&'a Value> {
    match segments {
        [field] => doc.get(field),
        [set, field] => doc.get(set)?.as_object()?.get(field),
        _ => None,
    }
}

fn put(doc: &mut Map<String, Value>, segments: &[String], value: Value) {
    match segments {
        [field] => {
            doc.insert(field.clone(), value);
        }
        [set, field] => {
            let entry = doc
                .entry(set.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Some(set) = entry.as_object_mut() {
                set.insert(field.clone(), value);
            }
        }
        _ => {}
    }
}

fn take(doc: &mut Map<String, Value>, segments: &[String]) -> Option<Value> {
    match segments {
        [field] => doc.remove(field),
        [set, field] => doc.get_mut(set)?.as_object_mut()?.remove(field),
        _ => None,
    }
}
