//! Sample API calls: the first request of each step, rendered from the first matching row, with
//! credentials redacted and personal data masked.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::plan::action::Action;
use crate::plan::check::{ActionStep, Plan, personal_by_name};
use crate::plan::compiled::{Call, Compiled, Planned};
use crate::plan::refs;
use crate::source::Unit;

/// Installments shown in an edit_schedule sample.
const SCHEDULE_SHOWN: usize = 2;

/// One HTTP request of a sample call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleRequest {
    pub method: String,
    /// Base URL + path.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

/// The sample call of one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleCall {
    pub step: String,
    pub action: String,
    /// Which row it was rendered from (`clients/CL-000001/loans/LN-000001`).
    pub instance: String,
    pub requests: Vec<SampleRequest>,
    /// Why the body is shown as its template, or what was filled in.
    pub note: Option<String>,
}

/// Whether a column of a source holds personal data: as the plan declares it, else by its name.
pub struct Personal {
    columns: HashMap<String, HashMap<String, bool>>,
}

impl Personal {
    pub fn new(plan: &Plan) -> Self {
        Personal {
            columns: plan
                .sources
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        s.columns
                            .iter()
                            .map(|(c, spec)| (c.clone(), spec.personal))
                            .collect(),
                    )
                })
                .collect(),
        }
    }

    pub fn is_personal(&self, source: &str, column: &str) -> bool {
        self.columns
            .get(source)
            .and_then(|c| c.get(column).copied())
            .unwrap_or_else(|| personal_by_name(column))
    }

    /// Whether a template text reads a personal column (`clients.first_name`).
    pub fn template_is_personal(&self, text: &str) -> bool {
        source_columns(text)
            .iter()
            .any(|(s, c)| self.columns.contains_key(s) && self.is_personal(s, c))
    }
}

/// `(source, column)` for every dotted `a.b` name in a template text.
pub(crate) fn source_columns(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    for token in text.split(|c: char| !is_ident(c)) {
        let mut parts = token.split('.');
        if let (Some(source), Some(column)) = (parts.next(), parts.next())
            && !source.is_empty()
            && !column.is_empty()
        {
            out.push((source.to_owned(), column.to_owned()));
        }
    }
    out
}

pub use crate::plan::template::mask_text;

fn mask_value(value: &mut Value) {
    match value {
        Value::Null => {}
        Value::String(s) => *s = mask_text(s),
        Value::Number(n) => *value = Value::String(mask_text(&n.to_string())),
        Value::Bool(b) => *value = Value::String(mask_text(&b.to_string())),
        Value::Array(items) => items.iter_mut().for_each(mask_value),
        Value::Object(map) => map.values_mut().for_each(mask_value),
    }
}

/// Masks every rendered field whose template reads a personal column.
pub fn mask_by_template(template: &Value, rendered: &mut Value, personal: &Personal) {
    match (template, rendered) {
        (Value::String(t), rendered) if personal.template_is_personal(t) => mask_value(rendered),
        (Value::Object(t), Value::Object(r)) => {
            for (key, sub) in t {
                if let Some(value) = r.get_mut(key) {
                    mask_by_template(sub, value, personal);
                }
            }
        }
        (Value::Array(t), Value::Array(r)) => {
            for (sub, value) in t.iter().zip(r.iter_mut()) {
                mask_by_template(sub, value, personal);
            }
        }
        _ => {}
    }
}

/// `(lookup, source, column)` for every `lookups.<lookup>[<source>.<column>]` of the plan.
pub fn lookup_references(plan: &Plan) -> Vec<(String, String, String)> {
    refs::lookup_references(plan).into_iter().collect()
}

pub use crate::plan::refs::placeholder_lookups;

fn headers(v1: bool, idempotent: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !v1 {
        out.push(("Accept".into(), "application/vnd.mambu.v2+json".into()));
    }
    out.push(("Content-Type".into(), "application/json".into()));
    out.push(("apiKey".into(), "<redacted>".into()));
    if idempotent {
        out.push((
            "Idempotency-Key".into(),
            "<UUIDv5 of plan, unit, step instance and body: the same on every retry>".into(),
        ));
    }
    out
}

/// Renders the sample call of one step instance (its `when` already true).
pub fn render(
    compiled: &Compiled,
    unit: &Unit,
    planned: &Planned<'_>,
    outputs: &HashMap<String, Value>,
    lookups: &Value,
    base_url: &str,
    personal: &Personal,
) -> SampleCall {
    let step: &ActionStep = compiled.step(planned.step);
    let mut note = None;
    let call = match compiled.render(unit, planned, outputs, Some(lookups)) {
        Ok(call) => call,
        Err(e) => {
            // Shown as its template: the row would fail its unit on the night.
            note = Some(format!(
                "could not be rendered from this row ({e}); the template is shown"
            ));
            Call {
                action: step.action,
                method: step.action.calls().last().map(|(m, _)| *m).unwrap_or(
                    match step.method.as_deref() {
                        Some("POST") => "POST",
                        Some("PUT") => "PUT",
                        Some("PATCH") => "PATCH",
                        Some("DELETE") => "DELETE",
                        _ => "GET",
                    },
                ),
                path: step
                    .action
                    .calls()
                    .last()
                    .map(|(_, p)| (*p).to_owned())
                    .or_else(|| step.request_path.clone())
                    .unwrap_or_default(),
                body: step.body.clone(),
                installments: Vec::new(),
            }
        }
    };
    // Placeholders of earlier steps' outputs read better unencoded.
    let url = format!("{base_url}{}", call.path)
        .replace("%3C", "<")
        .replace("%3E", ">");
    let v1 = call.action.is_v1();
    let mut body = call.body.clone();
    if note.is_none()
        && let (Some(template), Some(rendered)) = (&step.body, body.as_mut())
    {
        mask_by_template(template, rendered, personal);
    }
    if call.action.is_transaction()
        && let Some(Value::Object(map)) = body.as_mut()
        && !map.contains_key("externalId")
    {
        map.insert(
            "externalId".into(),
            json!("<UUIDv5 of plan, unit and step instance>"),
        );
        note = note.or(Some("externalId generated by the run".into()));
    }
    let requests = if call.action == Action::EditSchedule {
        let mut installments = call.installments.clone();
        if installments.len() > SCHEDULE_SHOWN {
            note = note.or(Some(format!(
                "the PUT sends all {} installments of the loan; the first {SCHEDULE_SHOWN} are shown",
                installments.len()
            )));
            installments.truncate(SCHEDULE_SHOWN);
        }
        let personal_schedule = step.installments.as_ref().is_some_and(|i| {
            [
                Some(&i.due_date),
                Some(&i.principal),
                i.interest.as_ref(),
                i.fee.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|t| personal.template_is_personal(t))
        });
        for item in &mut installments {
            if personal_schedule {
                mask_value(item);
            }
            if let Value::Object(map) = item {
                map.insert(
                    "encodedKey".into(),
                    json!("<the installment's encodedKey, from the GET>"),
                );
            }
        }
        vec![
            SampleRequest {
                method: "GET".into(),
                url: url.clone(),
                headers: headers(false, false),
                body: None,
            },
            SampleRequest {
                method: "PUT".into(),
                url,
                headers: headers(false, false),
                body: Some(Value::Array(installments)),
            },
        ]
    } else {
        vec![SampleRequest {
            method: call.method.to_owned(),
            url,
            headers: headers(v1, call.takes_idempotency_key()),
            body,
        }]
    };
    SampleCall {
        step: step.id.clone(),
        action: step.action.name().to_owned(),
        instance: planned.instance(),
        requests,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_the_filter() {
        assert_eq!(mask_text("Ana Clara"), "A** C****");
        assert_eq!(mask_text("1972-04-14"), "1*********");
        assert_eq!(mask_text(""), "");
    }

    #[test]
    fn finds_source_columns_in_templates() {
        assert_eq!(
            source_columns("{{ clients.first_name | trim }} {{steps.client.id}}"),
            vec![
                ("clients".to_owned(), "first_name".to_owned()),
                ("steps".to_owned(), "client".to_owned())
            ]
        );
    }
}
