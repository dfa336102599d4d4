//! What changed between two tenant snapshots, item by item, as JSON paths with their old and
//! new values. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// How one item changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// The tenant has it now, not then.
    Added,
    /// The tenant had it then, not now.
    Removed,
    /// Its values at these paths: (path, then, now); `None` where the path was absent.
    Changed(Vec<(String, Option<Value>, Option<Value>)>),
}

/// One item that differs (`loan product PL-STD`, `time zone`).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub item: String,
    pub edit: Edit,
}

/// The items that differ between `then` and `now`, in the items' order.
pub fn diff(then: &BTreeMap<String, Value>, now: &BTreeMap<String, Value>) -> Vec<Change> {
    let mut names: Vec<&String> = then.keys().chain(now.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|item| {
            let edit = match (then.get(item), now.get(item)) {
                (Some(_), None) => Edit::Removed,
                (None, Some(_)) => Edit::Added,
                (Some(a), Some(b)) if a != b => {
                    let mut paths = Vec::new();
                    paths_between("", Some(a), Some(b), &mut paths);
                    Edit::Changed(paths)
                }
                _ => return None,
            };
            Some(Change {
                item: item.clone(),
                edit,
            })
        })
        .collect()
}

/// The paths where `a` and `b` differ, in key order: maps key by key, lists of the same length
/// entry by entry; anything else (a list that grew or shrank, a value whose type changed) as a
/// whole.
fn paths_between(
    at: &str,
    a: Option<&Value>,
    b: Option<&Value>,
    out: &mut Vec<(String, Option<Value>, Option<Value>)>,
) {
    if a == b {
        return;
    }
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                paths_between(&path, x.get(key), y.get(key), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y)))
            if x.len() == y.len() && x.iter().chain(y).any(|v| v.is_object()) =>
        {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                paths_between(&format!("{at}[{i}]"), Some(p), Some(q), out);
            }
        }
        _ => out.push((at.to_owned(), a.cloned(), b.cloned())),
    }
}

/// A value as a change line shows it: text as it is, anything else as compact JSON, an absent
/// value as `(none)`.
pub fn shown(value: Option<&Value>) -> String {
    match value {
        None => "(none)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// The change's lines, one per path: `loan product PL-STD: loanAmountSettings.loanAmount.maxValue
/// 50000 → 30000`, `branch BR-OLD: removed`, `time zone: Europe/Lisbon → Europe/Berlin`.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.edit {
            Edit::Added => write!(f, "{}: added", self.item),
            Edit::Removed => write!(f, "{}: removed", self.item),
            Edit::Changed(paths) => {
                for (i, (path, then, now)) in paths.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    let space = if path.is_empty() { "" } else { " " };
                    write!(
                        f,
                        "{}: {path}{space}{} → {}",
                        self.item,
                        shown(then.as_ref()),
                        shown(now.as_ref())
                    )?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn lines(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .flat_map(|c| c.to_string().lines().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn nothing_changed_is_no_change() {
        let a = items(&[
            ("time zone", json!("Europe/Lisbon")),
            ("branch B", json!({"encodedKey": "k"})),
        ]);
        assert!(diff(&a, &a.clone()).is_empty());
    }

    #[test]
    fn each_change_is_a_path_with_its_old_and_new_value() {
        let then = items(&[
            (
                "loan product PL-STD",
                json!({"loanAmountSettings": {"loanAmount": {"minValue": 500, "maxValue": 50000}},
                       "scheduleSettings": {"repaymentScheduleEditOptions": ["ADJUST_PAYMENT_DATES"]},
                       "feesSettings": {"fees": [{"id": "LEGACY-FEE", "amount": 5}]}}),
            ),
            ("branch BR-OLD", json!({"encodedKey": "b1"})),
            (
                "custom field _Client_Details.employment_status",
                json!({"required": false, "type": "SELECTION"}),
            ),
            ("time zone", json!("Europe/Lisbon")),
        ]);
        let now = items(&[
            (
                "loan product PL-STD",
                json!({"loanAmountSettings": {"loanAmount": {"minValue": 500, "maxValue": 30000}},
                       "scheduleSettings": {"repaymentScheduleEditOptions": []},
                       "feesSettings": {"fees": [{"id": "LEGACY-FEE", "amount": 7}]},
                       "fourEyesPrinciple": {"activeForLoanApproval": true}}),
            ),
            ("branch BR-NEW", json!({"encodedKey": "b2"})),
            (
                "custom field _Client_Details.employment_status",
                json!({"required": true, "type": "SELECTION"}),
            ),
            ("time zone", json!("Europe/Berlin")),
        ]);
        assert_eq!(
            lines(&diff(&then, &now)),
            [
                "branch BR-NEW: added",
                "branch BR-OLD: removed",
                "custom field _Client_Details.employment_status: required false → true",
                "loan product PL-STD: feesSettings.fees[0].amount 5 → 7",
                "loan product PL-STD: fourEyesPrinciple (none) → {\"activeForLoanApproval\":true}",
                "loan product PL-STD: loanAmountSettings.loanAmount.maxValue 50000 → 30000",
                "loan product PL-STD: scheduleSettings.repaymentScheduleEditOptions [\"ADJUST_PAYMENT_DATES\"] → []",
                "time zone: Europe/Lisbon → Europe/Berlin",
            ]
        );
    }

    #[test]
    fn a_list_that_grew_is_shown_whole() {
        let then = items(&[("p", json!({"fees": [{"id": "A"}]}))]);
        let now = items(&[("p", json!({"fees": [{"id": "A"}, {"id": "B"}]}))]);
        assert_eq!(
            lines(&diff(&then, &now)),
            ["p: fees [{\"id\":\"A\"}] → [{\"id\":\"A\"},{\"id\":\"B\"}]"]
        );
    }
}
