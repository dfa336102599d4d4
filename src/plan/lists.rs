//! Lists built from child rows in a body: a field whose value is a map with `for_each` renders
//! one item per row of that child source of the step's current row, in the source's order
//! (`order_by` respected), as `installments.from` does for edit_schedule:
//!
//! ```yaml
//! body:
//!   idDocuments:
//!     for_each: documents            # a child source of the step's current source
//!     when: "documents.type != ''"   # optional: rows for which it is false give no item
//!     item:                          # the item's template: a map
//!       documentType: "{{ documents.type }}"
//!       documentId: "{{ documents.number }}"
//! ```
//!
//! Inside `item` (and `when`) the child source has a current row, besides everything the
//! step sees; an item may hold lists of its own (from a child of the child). A list with no
//! item leaves its field out, as a field rendering to null is left out.
//!
//! `steps.<id>` inside an item reads, for a step that runs once per row of the same source
//! (an action under `for_each: <source>` at the step's level, earlier in the unit), the output
//! of that step's instance for the item's row: a group's `groupMembers` take each member's
//! `{{ steps.member.encodedKey }}` from the `create_client` that made that member
//! ([`super::compiled::Compiled::keeps_row_output`]).
//!
//! A list is a field's value (of the body, or of a map inside it), not an item of a list
//! written in the plan.

use serde_json::Value;

use super::load::did_you_mean;

/// The keys of a list built with `for_each`.
pub const KEYS: [&str; 3] = ["for_each", "when", "item"];

/// One list built from child rows, found in a body (or in an item).
#[derive(Debug, Clone, PartialEq)]
pub struct BodyList {
    /// The keys from the value it was found in (the body, or the enclosing item) to its field.
    pub field: Vec<String>,
    /// Its key path in the plan, `steps[3].body.groupMembers`; its item's templates are named
    /// under `<path>.item`, its condition `<path>.when`.
    pub path: String,
    pub source: String,
    pub when: Option<String>,
    /// The item's template, its own lists taken out.
    pub item: Value,
    /// The item's own lists (from a child of `source`).
    pub lists: Vec<BodyList>,
}

impl BodyList {
    /// Where the item's templates are named: `<path>.item`.
    pub fn item_path(&self) -> String {
        format!("{}.item", self.path)
    }

    /// Whether a template path (`steps[3].body.groupMembers.item.clientKey`) lies in the item.
    pub fn holds(&self, template_path: &str) -> bool {
        let item = self.item_path();
        template_path
            .strip_prefix(&item)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    }
}

/// Something wrong with a list's shape, at a key path of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListProblem {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

/// `value` (a body, at key path `path`) with its lists taken out, the lists, and what is wrong
/// with their shapes (a list that is not well formed is left out of both).
pub fn split(value: &Value, path: &str) -> (Value, Vec<BodyList>, Vec<ListProblem>) {
    let mut out = value.clone();
    let mut lists = Vec::new();
    let mut problems = Vec::new();
    if let Value::Object(map) = value
        && map.contains_key("for_each")
    {
        problems.push(ListProblem {
            path: format!("{path}.for_each"),
            message: "a list built with for_each is a field's value, not the whole body".into(),
            hint: Some("write it under a field: `idDocuments: { for_each: …, item: … }`".into()),
        });
    }
    walk(
        &mut out,
        path,
        &mut Vec::new(),
        false,
        &mut lists,
        &mut problems,
    );
    (out, lists, problems)
}

fn walk(
    value: &mut Value,
    path: &str,
    keys: &mut Vec<String>,
    in_list: bool,
    lists: &mut Vec<BodyList>,
    problems: &mut Vec<ListProblem>,
) {
    match value {
        Value::Object(map) => {
            let names: Vec<String> = map.keys().cloned().collect();
            for name in names {
                let at = format!("{path}.{name}");
                let is_list =
                    matches!(map.get(&name), Some(Value::Object(m)) if m.contains_key("for_each"));
                if is_list && in_list {
                    problems.push(ListProblem {
                        path: at,
                        message:
                            "a list built with for_each cannot be inside a list written in the plan"
                                .into(),
                        hint: Some(
                            "build the outer list with for_each too, or write the items out".into(),
                        ),
                    });
                    map.remove(&name);
                } else if is_list {
                    let Some(Value::Object(spec)) = map.remove(&name) else {
                        continue;
                    };
                    keys.push(name);
                    if let Some(list) = parse(&spec, &at, keys.clone(), problems) {
                        lists.push(list);
                    }
                    keys.pop();
                } else if let Some(child) = map.get_mut(&name) {
                    keys.push(name);
                    walk(child, &at, keys, in_list, lists, problems);
                    keys.pop();
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let at = format!("{path}[{i}]");
                if matches!(item, Value::Object(m) if m.contains_key("for_each")) {
                    problems.push(ListProblem {
                        path: format!("{at}.for_each"),
                        message: "a list built with for_each is a field's value, not an item of a list"
                            .into(),
                        hint: Some(
                            "write `field: { for_each: SOURCE, item: { … } }` instead of `field: [ { for_each: … } ]`"
                                .into(),
                        ),
                    });
                    *item = Value::Null;
                    continue;
                }
                walk(item, &at, &mut Vec::new(), true, lists, problems);
            }
        }
        _ => {}
    }
}

/// One `{ for_each, when, item }` map at `path`.
fn parse(
    spec: &serde_json::Map<String, Value>,
    path: &str,
    field: Vec<String>,
    problems: &mut Vec<ListProblem>,
) -> Option<BodyList> {
    let mut problem = |at: String, message: String, hint: Option<String>| {
        problems.push(ListProblem {
            path: at,
            message,
            hint,
        })
    };
    let mut ok = true;
    for key in spec.keys() {
        if !KEYS.contains(&key.as_str()) {
            let hint = did_you_mean(key, &KEYS)
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("a list built with for_each has {}", KEYS.join(", ")));
            problem(
                format!("{path}.{key}"),
                format!("unknown key `{key}` in a list built with for_each"),
                Some(hint),
            );
            ok = false;
        }
    }
    let source = match spec.get("for_each") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => {
            problem(
                format!("{path}.for_each"),
                "for_each names a child source".into(),
                Some("e.g. `for_each: documents`".into()),
            );
            ok = false;
            String::new()
        }
    };
    let when = match spec.get("when") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problem(
                format!("{path}.when"),
                "`when` is a condition, e.g. \"documents.type != ''\"".into(),
                None,
            );
            ok = false;
            None
        }
    };
    let (item, lists) = match spec.get("item") {
        Some(Value::Object(_)) => {
            let item_path = format!("{path}.item");
            let mut item = spec["item"].clone();
            let mut lists = Vec::new();
            walk(
                &mut item,
                &item_path,
                &mut Vec::new(),
                false,
                &mut lists,
                problems,
            );
            (item, lists)
        }
        Some(_) => {
            problem(
                format!("{path}.item"),
                "the item must be a map of fields".into(),
                Some("e.g. `item: { documentType: \"{{ documents.type }}\" }`".into()),
            );
            return None;
        }
        None => {
            problem(
                path.to_owned(),
                format!("the list built with for_each `{source}` has no `item`"),
                Some("add `item:`, the map each row renders".into()),
            );
            return None;
        }
    };
    ok.then(|| BodyList {
        field,
        path: path.to_owned(),
        source,
        when,
        item,
        lists,
    })
}

/// Puts `items` at `field` of `target` (creating the maps on the way); no item leaves the
/// field out.
pub fn insert(target: &mut Value, field: &[String], items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    let Some((last, parents)) = field.split_last() else {
        return;
    };
    let mut at = target;
    for key in parents {
        let Value::Object(map) = at else { return };
        at = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    if let Value::Object(map) = at {
        map.insert(last.clone(), Value::Array(items));
    }
}

/// Every list of `lists` and of their items, depth first, with the sources each one's item
/// has in scope beyond the step's (its own source last).
pub fn flatten(lists: &[BodyList]) -> Vec<(&BodyList, Vec<&str>)> {
    fn visit<'l>(
        lists: &'l [BodyList],
        above: &[&'l str],
        out: &mut Vec<(&'l BodyList, Vec<&'l str>)>,
    ) {
        for list in lists {
            let mut scope = above.to_vec();
            scope.push(list.source.as_str());
            out.push((list, scope.clone()));
            visit(&list.lists, &scope, out);
        }
    }
    let mut out = Vec::new();
    visit(lists, &[], &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_are_taken_out_with_their_fields_and_paths() {
        let body = json!({
            "groupName": "{{ groups.name }}",
            "groupMembers": {
                "for_each": "members",
                "item": {
                    "clientKey": "{{ steps.member.encodedKey }}",
                    "roles": { "for_each": "roles", "item": { "groupRoleNameKey": "{{ roles.key }}" } },
                },
            },
            "nested": { "docs": { "for_each": "documents", "when": "documents.type != ''", "item": { "t": 1 } } },
        });
        let (plain, lists, problems) = split(&body, "steps[1].body");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            plain,
            json!({ "groupName": "{{ groups.name }}", "nested": {} })
        );
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[0].field, ["groupMembers"]);
        assert_eq!(lists[0].path, "steps[1].body.groupMembers");
        assert_eq!(
            lists[0].item,
            json!({ "clientKey": "{{ steps.member.encodedKey }}" })
        );
        assert_eq!(lists[0].lists[0].field, ["roles"]);
        assert_eq!(
            lists[0].lists[0].path,
            "steps[1].body.groupMembers.item.roles"
        );
        assert_eq!(lists[1].field, ["nested", "docs"]);
        assert_eq!(lists[1].when.as_deref(), Some("documents.type != ''"));
        assert!(lists[0].holds("steps[1].body.groupMembers.item.clientKey"));
        assert!(lists[0].holds("steps[1].body.groupMembers.item.roles.item.x"));
        assert!(!lists[0].holds("steps[1].body.groupMembers.items"));
        let flat: Vec<_> = flatten(&lists)
            .into_iter()
            .map(|(l, scope)| (l.source.clone(), scope.join(",")))
            .collect();
        assert_eq!(
            flat,
            [
                ("members".to_owned(), "members".to_owned()),
                ("roles".to_owned(), "members,roles".to_owned()),
                ("documents".to_owned(), "documents".to_owned()),
            ]
        );
    }

    #[test]
    fn malformed_lists_are_reported_where_they_are() {
        let body = json!({
            "a": { "for_each": "docs", "item": "{{ docs.x }}" },
            "b": { "for_each": "docs" },
            "c": { "for_each": "docs", "itme": {}, "item": {} },
            "d": [ { "for_each": "docs", "item": {} } ],
            "e": { "for_each": 3, "item": {} },
            "f": [ { "x": { "for_each": "docs", "item": {} } } ],
        });
        let (_, lists, problems) = split(&body, "body");
        assert!(lists.is_empty(), "{lists:?}");
        let got: Vec<(String, String, Option<String>)> = problems
            .into_iter()
            .map(|p| (p.path, p.message, p.hint))
            .collect();
        assert_eq!(got[0].0, "body.a.item");
        assert_eq!(got[0].1, "the item must be a map of fields");
        assert_eq!(got[1].0, "body.b");
        assert_eq!(
            got[1].1,
            "the list built with for_each `docs` has no `item`"
        );
        assert_eq!(got[2].0, "body.c.itme");
        assert_eq!(got[2].2.as_deref(), Some("did you mean `item`?"));
        assert_eq!(got[3].0, "body.d[0].for_each");
        assert_eq!(got[4].0, "body.e.for_each");
        assert_eq!(got[5].0, "body.f[0].x");
        assert_eq!(got.len(), 6);
    }

    #[test]
    fn items_go_where_the_field_was_and_none_leaves_it_out() {
        let mut body = json!({ "a": 1 });
        insert(&mut body, &["x".into(), "y".into()], vec![json!(1)]);
        insert(&mut body, &["z".into()], vec![]);
        assert_eq!(body, json!({ "a": 1, "x": { "y": [1] } }));
    }
}
