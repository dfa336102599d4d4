//! What a client, deposit, loan (or group) carries beyond its own fields, compared with what a
//! `detailsLevel=FULL` read of it answers: custom field values, addresses, identification
//! documents and group members (issue 17). Mambu leaves all of them out of a BASIC read.
//!
//! Only what the plan sends is compared: the create step's rendered body, in Mambu's form
//! (`crate::plan::custom_fields`: values as strings, empty ones left out). Mambu may answer more
//! (fields of a set filled with defaults, a grouped entry's `_index`, an address's `encodedKey`,
//! `parentKey` and `indexInList`): none of that is a mismatch. A value the plan sends that Mambu
//! lacks is one (found `(none)`), and so is an entry (grouped set entry, address, document,
//! member) Mambu holds beyond those the plan sent: entries are compared by position.
//!
//! - custom field values: every field of every set (`_Set.field`, a grouped set's entries
//!   `_Set[i].field`), compared as text; two numbers are equal when their values are
//!   (`"2500.5"` and `"2500.50"`).
//! - addresses: every field the plan sends of each address, by position (`addresses[0].city`).
//! - tranches: each tranche's amount, by position (`tranches[1].amount`).
//! - identification documents: `documentType` and `documentId` of each, by position.
//! - group members: each member's `clientKey`, by position.
//!
//! Personal data: an address's fields and a document's number are always masked in what a
//! mismatch shows (expected and found alike, the first character of each word, the rest `*`,
//! as the `mask` filter does); a custom field value is masked when its template reads a personal
//! column of the plan (declared `personal`, or detected by name) or when the field's own id
//! looks personal (`tax_number`). Values are masked here, before a mismatch exists, so no report
//! and no log can show them whole.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::estimate::sample::Personal;
use crate::plan::check::personal_by_name;
use crate::plan::custom_fields::is_set;
use crate::plan::template::mask_text;

/// The custom fields whose values are personal, as `(set, field)`; `(set, "*")`: all of a set's.
pub(super) type PersonalFields = BTreeSet<(String, String)>;

/// The custom fields of a create step's body template that hold personal data: their template
/// reads a personal column, or their id looks personal.
pub(super) fn personal_fields(template: Option<&Value>, personal: &Personal) -> PersonalFields {
    let mut out = PersonalFields::new();
    let Some(Value::Object(body)) = template else {
        return out;
    };
    for (set, value) in body.iter().filter(|(k, _)| is_set(k)) {
        // A grouped set: a field is personal if any entry's template for it is (an entry left
        // out as empty shifts the rendered positions).
        let templates: Vec<&Value> = match value {
            Value::Array(entries) => entries.iter().collect(),
            other => vec![other],
        };
        for template in templates {
            match template {
                Value::Object(fields) => {
                    for (field, template) in fields {
                        if personal_by_name(field) || reads_personal(template, personal) {
                            out.insert((set.clone(), field.clone()));
                        }
                    }
                }
                other if reads_personal(other, personal) => {
                    out.insert((set.clone(), "*".into()));
                }
                _ => {}
            }
        }
    }
    out
}

/// Whether any template text in `template` reads a personal column.
fn reads_personal(template: &Value, personal: &Personal) -> bool {
    match template {
        Value::String(text) => personal.template_is_personal(text),
        Value::Array(items) => items.iter().any(|t| reads_personal(t, personal)),
        Value::Object(map) => map.values().any(|t| reads_personal(t, personal)),
        _ => false,
    }
}

/// One difference: field, expected, found (masked where personal).
pub(super) type Difference = (String, String, String);

/// What comparing one entity's details found: its differences, and the control totals (name,
/// expected, found).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Compared {
    pub(super) differences: Vec<Difference>,
    pub(super) totals: Vec<(String, Decimal, Decimal)>,
}

impl Compared {
    pub(super) fn count(&mut self, name: String, expected: usize, found: usize) {
        self.totals
            .push((name, Decimal::from(expected), Decimal::from(found)));
    }

    /// A value compared: a difference when the texts differ, masked when `masked`.
    pub(super) fn value(
        &mut self,
        field: String,
        expected: Option<&Value>,
        found: Option<&Value>,
        masked: bool,
    ) {
        let (expected, found) = (text(expected), text(found));
        if !same(expected.as_deref(), found.as_deref()) {
            let show = |v: Option<String>| match v {
                None => "(none)".to_owned(),
                Some(v) if masked => mask_text(&v),
                Some(v) => v,
            };
            self.differences.push((field, show(expected), show(found)));
        }
    }

    /// Entries Mambu holds beyond those the plan sent.
    pub(super) fn extra(&mut self, field: &str, what: &str, expected: usize, found: usize) {
        if found > expected {
            self.differences.push((
                field.to_owned(),
                format!("{expected} {what}"),
                format!("{found} {what}"),
            ));
        }
    }
}

/// A value as text: `None` when absent, null or empty (Mambu leaves an empty value out).
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Equal texts, or two numbers of equal value.
fn same(expected: Option<&str>, found: Option<&str>) -> bool {
    expected == found
        || matches!((expected, found), (Some(e), Some(f))
            if matches!((e.parse::<Decimal>(), f.parse::<Decimal>()), (Ok(a), Ok(b)) if a == b))
}

/// The entries of a list field (`addresses`), `[]` when absent.
pub(super) fn entries<'a>(entity: &'a Value, key: &str) -> &'a [Value] {
    entity
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Compares what `body` (the create step's rendered body) carries beyond the entity's own
/// fields with what Mambu answered (`found`, read with `detailsLevel=FULL`).
pub(super) fn compare(body: &Value, found: &Value, personal: &PersonalFields) -> Compared {
    let mut out = Compared::default();
    let Value::Object(sent) = body else {
        return out;
    };
    for (set, value) in sent.iter().filter(|(k, _)| is_set(k)) {
        let masked = |field: &str| {
            personal.contains(&(set.clone(), field.to_owned()))
                || personal.contains(&(set.clone(), "*".to_owned()))
        };
        // (where, sent, held): the set's map, or each entry of a grouped set's list.
        let mut compared: Vec<(String, &Value, Option<&Value>)> = Vec::new();
        let mut lengths = None;
        match value {
            Value::Array(sent_entries) => {
                let held = entries(found, set);
                for (i, entry) in sent_entries.iter().enumerate() {
                    compared.push((format!("{set}[{i}]"), entry, held.get(i)));
                }
                lengths = Some((sent_entries.len(), held.len()));
            }
            other => compared.push((set.clone(), other, found.get(set))),
        }
        let (mut expected, mut there) = (0, 0);
        for (at, sent, held) in compared {
            match sent {
                Value::Object(fields) => {
                    for (field, value) in fields {
                        let held = held.and_then(|h| h.get(field));
                        expected += 1;
                        there += usize::from(text(held).is_some());
                        out.value(format!("{at}.{field}"), Some(value), held, masked(field));
                    }
                }
                // No set's value (validate reports it): compared whole.
                other => {
                    expected += 1;
                    there += usize::from(text(held).is_some());
                    out.value(at, Some(other), held, masked("*"));
                }
            }
        }
        if let Some((sent, held)) = lengths {
            out.extra(set, "entries", sent, held);
        }
        out.count(format!("custom field values of {set}"), expected, there);
    }
    if let Some(Value::Array(addresses)) = sent.get("addresses") {
        let held = entries(found, "addresses");
        for (i, address) in addresses.iter().enumerate() {
            let Value::Object(address) = address else {
                continue;
            };
            for (field, value) in address.iter().filter(|(_, v)| !v.is_null()) {
                out.value(
                    format!("addresses[{i}].{field}"),
                    Some(value),
                    held.get(i).and_then(|h| h.get(field)),
                    true,
                );
            }
        }
        out.extra("addresses", "addresses", addresses.len(), held.len());
        out.count("addresses".into(), addresses.len(), held.len());
    }
    if let Some(Value::Array(documents)) = sent.get("idDocuments") {
        let held = entries(found, "idDocuments");
        for (i, document) in documents.iter().enumerate() {
            for (field, masked) in [("documentType", false), ("documentId", true)] {
                out.value(
                    format!("idDocuments[{i}].{field}"),
                    document.get(field),
                    held.get(i).and_then(|h| h.get(field)),
                    masked,
                );
            }
        }
        out.extra("idDocuments", "documents", documents.len(), held.len());
        out.count(
            "identification documents".into(),
            documents.len(),
            held.len(),
        );
    }
    if let Some(Value::Array(tranches)) = sent.get("tranches") {
        // A tranched loan's tranches, by position: each amount as the plan sent it.
        let held = entries(found, "tranches");
        for (i, tranche) in tranches.iter().enumerate() {
            out.value(
                format!("tranches[{i}].amount"),
                tranche.get("amount"),
                held.get(i).and_then(|h| h.get("amount")),
                false,
            );
        }
        out.extra("tranches", "tranches", tranches.len(), held.len());
        out.count("loan tranches".into(), tranches.len(), held.len());
    }
    if let Some(Value::Array(members)) = sent.get("groupMembers") {
        let held = entries(found, "groupMembers");
        for (i, member) in members.iter().enumerate() {
            out.value(
                format!("groupMembers[{i}].clientKey"),
                member.get("clientKey"),
                held.get(i).and_then(|h| h.get("clientKey")),
                false,
            );
        }
        out.extra("groupMembers", "members", members.len(), held.len());
        out.count("group members".into(), members.len(), held.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn differences(body: Value, found: Value, personal: &[(&str, &str)]) -> Vec<Difference> {
        let personal = personal
            .iter()
            .map(|(s, f)| ((*s).to_owned(), (*f).to_owned()))
            .collect();
        compare(&body, &found, &personal).differences
    }

    fn d(field: &str, expected: &str, found: &str) -> Difference {
        (field.into(), expected.into(), found.into())
    }

    #[test]
    fn only_the_fields_the_plan_sends_are_compared() {
        let body = json!({
            "firstName": "Ana",
            "_Client_Details": { "employment_status": "EMPLOYED", "income": "2500.5" },
            "_References": [{ "name": "Rui" }, { "name": "Inês" }],
            "addresses": [{ "line1": "Rua Augusta 1", "city": "Lisboa", "line2": null }],
            "idDocuments": [{ "documentType": "National ID", "documentId": "135535093" }]
        });
        let found = json!({
            "firstName": "Someone else",
            "_Client_Details": { "employment_status": "EMPLOYED", "income": "2500.50",
                                 "default_field": "X" },
            "_Other": { "a": "b" },
            "_References": [{ "_index": "0", "name": "Rui" }, { "_index": "1", "name": "Inês" }],
            "addresses": [{ "line1": "Rua Augusta 1", "city": "Lisboa", "encodedKey": "k",
                            "parentKey": "p", "indexInList": 0 }],
            "idDocuments": [{ "documentType": "National ID", "documentId": "135535093",
                              "encodedKey": "k", "clientKey": "p", "indexInList": 0 }]
        });
        let compared = compare(&body, &found, &PersonalFields::new());
        assert_eq!(compared.differences, vec![]);
        let one = Decimal::ONE;
        let two = Decimal::from(2);
        assert_eq!(
            compared.totals,
            vec![
                ("custom field values of _Client_Details".into(), two, two),
                ("custom field values of _References".into(), two, two),
                ("addresses".into(), one, one),
                ("identification documents".into(), one, one),
            ]
        );
    }

    #[test]
    fn a_value_mambu_lacks_or_holds_otherwise_is_a_mismatch_masked_where_personal() {
        let body = json!({
            "_Client_Details": { "employment_status": "EMPLOYED", "tax_ref": "PT 123" },
            "_References": [{ "name": "Rui" }]
        });
        let found = json!({
            "_Client_Details": { "employment_status": "RETIRED" },
            "_References": [{ "name": "Rui Costa" }, { "name": "Extra" }]
        });
        assert_eq!(
            differences(
                body,
                found,
                &[("_Client_Details", "tax_ref"), ("_References", "*")]
            ),
            vec![
                d("_Client_Details.employment_status", "EMPLOYED", "RETIRED"),
                d("_Client_Details.tax_ref", "P* 1**", "(none)"),
                d("_References[0].name", "R**", "R** C****"),
                d("_References", "1 entries", "2 entries"),
            ]
        );
    }

    #[test]
    fn tranche_amounts_are_compared_by_position() {
        let body = json!({ "tranches": [{ "amount": 30000 }, { "amount": 20000 }] });
        let found =
            json!({ "tranches": [{ "amount": 30000.0 }, { "amount": 25000 }, { "amount": 1 }] });
        let compared = compare(&body, &found, &PersonalFields::default());
        assert_eq!(
            compared.differences,
            vec![
                (
                    "tranches[1].amount".to_owned(),
                    "20000".to_owned(),
                    "25000".to_owned()
                ),
                (
                    "tranches".to_owned(),
                    "2 tranches".to_owned(),
                    "3 tranches".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn addresses_and_document_numbers_are_always_masked() {
        let body = json!({
            "addresses": [{ "line1": "Alameda Santos, 88", "city": "Porto", "country": "PT" }],
            "idDocuments": [{ "documentType": "National ID", "documentId": "609.226.828-01" }]
        });
        let found = json!({
            "addresses": [{ "line1": "Rua Falsa, 1", "city": "Porto" }],
            "idDocuments": [{ "documentType": "Passport", "documentId": "X 99" },
                            { "documentType": "Passport", "documentId": "Y" }]
        });
        let got = differences(body, found, &[]);
        assert_eq!(
            got,
            vec![
                d("addresses[0].country", "P*", "(none)"),
                d("addresses[0].line1", "A****** S****** 8*", "R** F***** 1"),
                d("idDocuments[0].documentType", "National ID", "Passport"),
                d("idDocuments[0].documentId", "6*************", "X 9*"),
                d("idDocuments", "1 documents", "2 documents"),
            ]
        );
        for (_, expected, found) in &got {
            for secret in ["Alameda", "Falsa", "609", "99"] {
                assert!(!expected.contains(secret) && !found.contains(secret));
            }
        }
    }

    #[test]
    fn group_members_are_compared_by_client_key() {
        let body = json!({ "groupMembers": [{ "clientKey": "a" }, { "clientKey": "b" }] });
        let found = json!({ "groupMembers": [{ "clientKey": "a" }, { "clientKey": "c" }] });
        let compared = compare(&body, &found, &PersonalFields::new());
        assert_eq!(
            compared.differences,
            vec![d("groupMembers[1].clientKey", "b", "c")]
        );
        assert_eq!(
            compared.totals,
            vec![("group members".into(), Decimal::from(2), Decimal::from(2))]
        );
    }
}
