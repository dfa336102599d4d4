//! Custom field values in Mambu's form (`../shared/mambu-api.md` §8, "Custom fields").
//!
//! A plan writes custom fields as Mambu's JSON has them: under the set's id, which starts with
//! `_`, as a map for a single set and a list of maps for a grouped one:
//!
//! ```yaml
//! body:
//!   firstName: "{{ clients.first_name }}"
//!   _Client_Details:
//!     employment_status: "{{ clients.employment | upper }}"
//!     monthly_income: "{{ clients.income | decimal }}"
//!   _Guarantors:                       # a grouped set: one map per entry
//!     - name: "{{ clients.guarantor_1 }}"
//!     - name: "{{ clients.guarantor_2 }}"
//! ```
//!
//! Mambu takes every value as a string whatever the field's type (`"46290"`, `"TRUE"`, dates as
//! `YYYY-MM-DD`) and refuses an empty or null one, so the rendered body is put in that form here,
//! once, for every caller (run, dry run, estimate, validate): a number becomes its digits, a
//! boolean `TRUE` or `FALSE`; an empty or null value leaves its field out, a set (or a grouped
//! entry) left with no field is left out. What the form cannot fix (a map or list as a value, a
//! value that is not among a selection's options) is for `plan validate --target` to report
//! against the tenant's definitions.

use serde_json::{Map, Value};

/// Whether a top-level body key names a custom field set.
pub fn is_set(key: &str) -> bool {
    key.starts_with('_')
}

/// Puts every custom field set of a rendered body in Mambu's form (see the module's docs).
pub fn to_mambu_form(body: &mut Value) {
    let Value::Object(map) = body else { return };
    let sets: Vec<String> = map.keys().filter(|k| is_set(k)).cloned().collect();
    for set in sets {
        let keep = match map.get_mut(&set) {
            Some(Value::Object(fields)) => form_fields(fields),
            Some(Value::Array(entries)) => {
                entries.retain_mut(|entry| match entry {
                    Value::Object(fields) => form_fields(fields),
                    Value::Null => false,
                    _ => true,
                });
                !entries.is_empty()
            }
            Some(Value::Null) => false,
            _ => true,
        };
        if !keep {
            map.remove(&set);
        }
    }
}

/// One set's (or grouped entry's) fields in Mambu's form; whether any is left.
fn form_fields(fields: &mut Map<String, Value>) -> bool {
    fields.retain(|_, value| {
        let text = match value {
            Value::Null => return false,
            Value::String(s) if s.trim().is_empty() => return false,
            Value::String(_) => return true,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => (if *b { "TRUE" } else { "FALSE" }).to_owned(),
            // A map or a list is no field value: kept as it is, for validate to report.
            Value::Object(_) | Value::Array(_) => return true,
        };
        *value = Value::String(text);
        true
    });
    !fields.is_empty()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_become_strings_and_empty_ones_leave_their_field_out() {
        let mut body = json!({
            "firstName": "Ada",
            "loanAmount": 1000,
            "_Client_Details": {
                "income": 46290.50,
                "children": 2,
                "pep": false,
                "status": "EMPLOYED",
                "nickname": "",
                "since": null,
                "blank": "  "
            },
            "_Empty": { "a": null, "b": "" },
            "_Gone": null,
            "_Guarantors": [ { "name": "Bob" }, { "name": "" }, null ],
            "_Nobody": [ { "name": null } ]
        });
        to_mambu_form(&mut body);
        assert_eq!(
            body,
            json!({
                "firstName": "Ada",
                "loanAmount": 1000,
                "_Client_Details": {
                    "income": "46290.5",
                    "children": "2",
                    "pep": "FALSE",
                    "status": "EMPLOYED"
                },
                "_Guarantors": [ { "name": "Bob" } ]
            }),
            "numbers outside a set stay numbers"
        );
    }

    #[test]
    fn a_value_that_is_no_field_value_is_kept_for_validate_to_report() {
        let mut body = json!({ "_S": { "f": { "nested": 1 } } });
        to_mambu_form(&mut body);
        assert_eq!(body, json!({ "_S": { "f": { "nested": 1 } } }));
    }
}
