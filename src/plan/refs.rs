//! Checks what the plan's templates refer to: sources in scope and their columns, earlier
//! steps, lookups. Run once the files' headers are known.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::check::{ActionStep, Plan};
use super::lists::{BodyList, flatten};
use super::load::did_you_mean;
use super::template::Engine;

/// A reference problem, at a key path of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefProblem {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Every template of a step, with its key path: (path, tree).
pub fn templates(step: &ActionStep) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let at = |field: &str| format!("{}.{field}", step.path);
    if let Some(body) = &step.body {
        out.push((at("body"), body.clone()));
    }
    for (field, value) in [
        ("loan", &step.loan),
        ("deposit", &step.deposit),
        ("path", &step.request_path),
    ] {
        if let Some(v) = value {
            out.push((at(field), Value::String(v.clone())));
        }
    }
    if let Some(adopt) = &step.adopt {
        out.push((at("adopt.get"), Value::String(adopt.get.clone())));
    }
    if let Some(i) = &step.installments {
        for (field, value) in [
            ("dueDate", Some(&i.due_date)),
            ("principal", Some(&i.principal)),
            ("interest", i.interest.as_ref()),
            ("fee", i.fee.as_ref()),
        ] {
            if let Some(v) = value {
                out.push((
                    format!("{}.installments.{field}", step.path),
                    Value::String(v.clone()),
                ));
            }
        }
    }
    out
}

/// The template strings of a step (its `when` included), for scanning.
pub fn template_strings(step: &ActionStep) -> Vec<String> {
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
            Value::Object(map) => map.values().for_each(|i| strings(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (_, tree) in templates(step) {
        strings(&tree, &mut out);
    }
    out.extend(step.when.clone());
    out
}

/// Checks every template of the plan. `headers` are the columns of each source whose file
/// could be read (a source missing from it is not checked column by column).
pub fn check_references(plan: &Plan, headers: &BTreeMap<String, Vec<String>>) -> Vec<RefProblem> {
    let engine = Engine::new();
    let mut problems = Vec::new();
    // Steps seen so far: id → the scope it ran in.
    let mut seen: BTreeMap<&str, &[String]> = BTreeMap::new();
    let lookups: Vec<&str> = plan.settings.lookups.keys().map(String::as_str).collect();
    let source_names: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
    for step in plan.action_steps() {
        // The body's lists built from child rows: each one's item (and `when`) sees its rows.
        let (_, lists) = step.split_body();
        let lists: Vec<(&BodyList, Vec<String>)> = flatten(&lists)
            .into_iter()
            .map(|(list, sources)| {
                let mut scope = step.scope.clone();
                scope.extend(sources.iter().map(|s| (*s).to_owned()));
                (list, scope)
            })
            .collect();
        // The scope a template at `path` sees: the innermost list holding it, else the step's.
        let scope_at = |path: &str| -> Vec<String> {
            lists
                .iter()
                .filter(|(list, _)| list.holds(path))
                .map(|(_, scope)| scope)
                .max_by_key(|scope| scope.len())
                .unwrap_or(&step.scope)
                .clone()
        };
        let mut variables: Vec<(String, String, Vec<String>)> = Vec::new();
        for (path, tree) in templates(step) {
            match engine.compile(&path, &tree) {
                Ok(compiled) => variables.extend(
                    compiled
                        .references()
                        .iter()
                        .map(|r| (r.path.clone(), r.variable.clone(), scope_at(&r.path))),
                ),
                Err(errors) => problems.extend(errors.0.iter().map(|e| RefProblem {
                    path: e.path().to_owned(),
                    message: e.to_string(),
                    hint: None,
                })),
            }
        }
        let whens = lists.iter().filter_map(|(list, scope)| {
            Some((
                format!("{}.when", list.path),
                list.when.as_ref()?,
                scope.clone(),
            ))
        });
        let step_when = step
            .when
            .as_ref()
            .map(|w| (format!("{}.when", step.path), w, step.scope.clone()));
        for (path, when, scope) in step_when.into_iter().chain(whens) {
            match engine.condition(&path, when) {
                Ok(c) => variables.extend(
                    c.variables()
                        .iter()
                        .map(|v| (path.clone(), v.clone(), scope.clone())),
                ),
                Err(e) => problems.push(RefProblem {
                    path,
                    message: e.to_string(),
                    hint: None,
                }),
            }
        }
        for (path, variable, scope) in variables {
            let mut parts = variable.split('.');
            let head = parts.next().unwrap_or("");
            let second = parts.next();
            let problem = |message: String, hint: Option<String>| RefProblem {
                path: path.clone(),
                message,
                hint,
            };
            match head {
                "unit" | "plan" => {}
                "lookups" => {
                    if let Some(name) = second
                        && !lookups.contains(&name)
                    {
                        let hint = did_you_mean(name, &lookups)
                            .map(|s| format!("did you mean `{s}`?"))
                            .unwrap_or_else(|| "define it under `lookups:`".into());
                        problems.push(problem(
                            format!("`lookups.{name}` is not defined"),
                            Some(hint),
                        ));
                    }
                }
                "steps" => {
                    let Some(id) = second else { continue };
                    match seen.get(id) {
                        Some(ran) if scope.starts_with(ran) => {}
                        Some(_) => problems.push(problem(format!("`steps.{id}` ran for another row: it is not in scope here"), Some("a step can use steps before it, in its own or an enclosing for_each (in a list built with for_each, also those that ran for the item's row)".into()))),
                        None => {
                            let later = plan.action_steps().iter().any(|s| s.id == id);
                            let ids: Vec<&str> = seen.keys().copied().collect();
                            let hint = if later { "it runs after this step: move this step after it".to_owned() } else { did_you_mean(id, &ids).map(|s| format!("did you mean `{s}`?")).unwrap_or_else(|| format!("steps before this one: {}", ids.join(", "))) };
                            problems.push(problem(format!("`steps.{id}` is not a step before this one"), Some(hint)));
                        }
                    }
                }
                source if source_names.contains(&source) => {
                    let installment_row = path.contains(".installments.")
                        && step.installments.as_ref().is_some_and(|i| i.from == source);
                    if !installment_row && !scope.iter().any(|s| s == source) {
                        problems.push(problem(
                            format!("`{source}` has no current row here"),
                            Some(format!("in scope: {}", scope.join(", "))),
                        ));
                    } else if let (Some(column), Some(header)) = (second, headers.get(source))
                        && !header.iter().any(|h| h == column)
                    {
                        let names: Vec<&str> = header.iter().map(String::as_str).collect();
                        let hint = did_you_mean(column, &names)
                            .map(|s| format!("did you mean `{s}`?"))
                            .unwrap_or_else(|| format!("{source}'s columns: {}", names.join(", ")));
                        problems.push(problem(
                            format!("`{source}.{column}`: {source} has no column `{column}`"),
                            Some(hint),
                        ));
                    }
                }
                other => {
                    let mut known: Vec<&str> = scope.iter().map(String::as_str).collect();
                    known.extend(["steps", "lookups", "unit", "plan"]);
                    let hint = did_you_mean(other, &known)
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("known here: {}", known.join(", ")));
                    problems.push(problem(
                        format!("unknown variable `{variable}`"),
                        Some(hint),
                    ));
                }
            }
        }
        // A catch-up update's columns are its row's source's.
        if let Some(source) = step.scope.last()
            && let Some(header) = headers.get(source)
        {
            for (i, column) in step.on_change.iter().enumerate() {
                if !header.iter().any(|h| h == column) {
                    let names: Vec<&str> = header.iter().map(String::as_str).collect();
                    let hint = did_you_mean(column, &names)
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("{source}'s columns: {}", names.join(", ")));
                    problems.push(RefProblem {
                        path: format!("{}.on_change[{i}]", step.path),
                        message: format!(
                            "`on_change` names `{column}`: {source} has no column `{column}`"
                        ),
                        hint: Some(hint),
                    });
                }
            }
        }
        seen.insert(step.id.as_str(), step.scope.as_slice());
    }
    problems
}

/// `(lookup, source, column)` for every `lookups.<lookup>[<source>.<column>]` in the plan's
/// templates.
pub fn lookup_references(plan: &Plan) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for step in plan.action_steps() {
        for text in template_strings(step) {
            let mut rest = text.as_str();
            while let Some(at) = rest.find("lookups.") {
                rest = &rest[at + "lookups.".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let after = rest[name.len()..].trim_start();
                if let Some(inner) = after
                    .strip_prefix('[')
                    .and_then(|a| a.split_once(']'))
                    .map(|(i, _)| i.trim())
                    && let Some((source, column)) = inner.split_once('.')
                    && plan.source(source).is_some()
                {
                    out.insert((name.clone(), source.to_owned(), column.trim().to_owned()));
                }
            }
        }
    }
    out
}

/// The plan's lookup tables for placeholders: each name, and for a table read through `each`
/// (product id -> fee id -> key) the inner keys its templates index with a literal
/// (`lookups.loan_fees[loans.product_id]['LEGACY-FEE']` gives `LEGACY-FEE`).
pub fn lookup_tables(plan: &Plan) -> Vec<(String, Vec<String>)> {
    let texts: Vec<String> = plan
        .action_steps()
        .into_iter()
        .flat_map(template_strings)
        .collect();
    plan.settings
        .lookups
        .iter()
        .map(|(name, lookup)| {
            let mut inner = BTreeSet::new();
            if lookup.each.is_some() {
                let opening = format!("lookups.{name}[");
                for text in &texts {
                    for (at, _) in text.match_indices(&opening) {
                        let rest = &text[at + opening.len()..];
                        let Some((_, after)) = rest.split_once(']') else {
                            continue;
                        };
                        let after = after.trim_start();
                        let literal = after
                            .strip_prefix("['")
                            .and_then(|a| a.split_once("']"))
                            .or_else(|| after.strip_prefix("[\"").and_then(|a| a.split_once("\"]")))
                            .map(|(key, _)| key.to_owned())
                            .or_else(|| {
                                let field: String = after
                                    .strip_prefix('.')?
                                    .chars()
                                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                    .collect();
                                (!field.is_empty()).then_some(field)
                            });
                        inner.extend(literal);
                    }
                }
            }
            (name.clone(), inner.into_iter().collect())
        })
        .collect()
}

/// Lookups for rendering one instance without the tenant: every table maps the keys this
/// instance's rows give to a placeholder `<lookups.table[key]>` (for a table read through
/// `each`, to a table of its inner keys' placeholders).
pub fn placeholder_lookups(
    refs: &[(String, String, String)],
    planned: &super::compiled::Planned<'_>,
    tables: &[(String, Vec<String>)],
) -> Value {
    let mut out: serde_json::Map<String, Value> = tables
        .iter()
        .map(|(t, _)| (t.clone(), Value::Object(serde_json::Map::new())))
        .collect();
    for (lookup, source, column) in refs {
        let Some((_, row)) = planned.rows.iter().find(|(s, _)| *s == source.as_str()) else {
            continue;
        };
        let Some(key) = row.get(column) else { continue };
        let inner = tables
            .iter()
            .find(|(t, _)| t == lookup)
            .map_or(&[][..], |(_, inner)| inner.as_slice());
        let placeholder = if inner.is_empty() {
            serde_json::json!(format!("<lookups.{lookup}[{key}]>"))
        } else {
            Value::Object(
                inner
                    .iter()
                    .map(|i| {
                        (
                            i.clone(),
                            serde_json::json!(format!("<lookups.{lookup}[{key}][{i}]>")),
                        )
                    })
                    .collect(),
            )
        };
        if let Some(Value::Object(table)) = out.get_mut(lookup) {
            table.insert(key.to_owned(), placeholder);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn problems(steps: &str) -> Vec<String> {
        let text = format!(
            "version: 1\nname: t\nsources:\n  groups: {{ file: g.csv, key: id }}\n  members: {{ file: m.csv, key: id, parent: groups.group_id }}\n  docs: {{ file: d.csv, key: id, parent: members.member_id }}\n  loans: {{ file: l.csv, key: id, parent: groups.group_id }}\nunit: groups\nsteps:\n{steps}"
        );
        let loaded = crate::plan::load::load_str(Path::new("p.yaml"), &text).unwrap();
        let (plan, structural) = crate::plan::check::check_all(&loaded, &[]);
        assert!(structural.is_empty(), "{structural:?}");
        let headers: BTreeMap<String, Vec<String>> = [
            ("groups", "id,name"),
            ("members", "id,group_id,member_id,role"),
            ("docs", "id,member_id,type,number"),
            ("loans", "id,group_id,amount"),
        ]
        .into_iter()
        .map(|(s, h)| (s.to_owned(), h.split(',').map(str::to_owned).collect()))
        .collect();
        let mut out: Vec<String> = check_references(&plan, &headers)
            .into_iter()
            .map(|p| format!("{} {} | {}", p.path, p.message, p.hint.unwrap_or_default()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn an_items_templates_see_its_row_and_the_steps_that_ran_for_it() {
        let members = "  - for_each: members\n    steps:\n      - id: member\n        action: create_client\n        body: { firstName: a, lastName: b }\n  - for_each: loans\n    steps:\n      - id: loan\n        action: request\n        method: GET\n        path: /x\n";
        let ok = format!(
            "{members}  - id: group\n    action: create_group\n    body:\n      groupName: \"{{{{ groups.name }}}}\"\n      groupMembers:\n        for_each: members\n        when: \"members.role != ''\"\n        item:\n          clientKey: \"{{{{ steps.member.encodedKey }}}}\"\n          roles: {{ for_each: docs, item: {{ groupRoleNameKey: \"{{{{ docs.number }}}} {{{{ members.role }}}} {{{{ steps.member.id }}}}\" }} }}\n"
        );
        assert_eq!(problems(&ok), Vec::<String>::new());
        let bad = format!(
            "{members}  - id: group\n    action: create_group\n    body:\n      groupName: \"{{{{ members.role }}}} {{{{ steps.member.id }}}}\"\n      groupMembers:\n        for_each: members\n        when: \"members.rol != ''\"\n        item:\n          clientKey: \"{{{{ steps.loan.id }}}} {{{{ member.id }}}} {{{{ docs.type }}}}\"\n"
        );
        assert_eq!(
            problems(&bad),
            [
                "steps[2].body.groupMembers.item.clientKey `docs` has no current row here | in scope: groups, members",
                "steps[2].body.groupMembers.item.clientKey `steps.loan` ran for another row: it is not in scope here | a step can use steps before it, in its own or an enclosing for_each (in a list built with for_each, also those that ran for the item's row)",
                "steps[2].body.groupMembers.item.clientKey unknown variable `member.id` | did you mean `members`?",
                "steps[2].body.groupMembers.when `members.rol`: members has no column `rol` | did you mean `role`?",
                "steps[2].body.groupName `members` has no current row here | in scope: groups",
                "steps[2].body.groupName `steps.member` ran for another row: it is not in scope here | a step can use steps before it, in its own or an enclosing for_each (in a list built with for_each, also those that ran for the item's row)",
            ]
        );
    }

    #[test]
    fn a_table_read_through_each_lists_the_inner_keys_its_templates_use() {
        let text = "version: 1\nname: t\nlookups:\n  products: { path: /loanproducts }\n  fees: { path: /loanproducts, each: feesSettings.fees }\nsources:\n  loans: { file: l.csv, key: id }\nunit: loans\nsteps:\n  - id: fee\n    action: create_client\n    body:\n      a: \"{{ lookups.fees[loans.product]['LEGACY-FEE'] }}\"\n      b: \"{{ lookups.fees[loans.product].LATE }}\"\n      c: \"{{ lookups.products[loans.product] }}\"\n";
        let loaded = crate::plan::load::load_str(Path::new("p.yaml"), text).unwrap();
        let (plan, _) = crate::plan::check::check_all(&loaded, &[]);
        assert_eq!(
            lookup_tables(&plan),
            vec![
                (
                    "fees".to_owned(),
                    vec!["LATE".to_owned(), "LEGACY-FEE".to_owned()]
                ),
                ("products".to_owned(), vec![]),
            ]
        );
    }
}
