//! Reading a plan file: YAML syntax and type errors with their line and column, and every
//! unknown key at once (found by walking the document against the plan's JSON Schema, since
//! serde stops at the first one), each with a "did you mean".

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::file::{PlanFile, json_schema};
use super::spans::{Location, Spans};

/// One problem in the plan file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanProblem {
    pub file: PathBuf,
    pub at: Location,
    /// The key path, e.g. `steps[2].steps[0].action`.
    pub path: String,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl std::fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.at.line,
            self.at.column,
            self.message
        )?;
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  help: {hint}")?;
        }
        Ok(())
    }
}

/// A plan file read and typed, with what is needed to locate later problems.
#[derive(Debug)]
pub struct LoadedPlan {
    pub file: PathBuf,
    pub plan: PlanFile,
    pub spans: Spans,
}

impl LoadedPlan {
    /// A problem at a key path of this plan.
    pub fn problem(
        &self,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> PlanProblem {
        PlanProblem {
            file: self.file.clone(),
            at: self.spans.locate(path),
            path: path.to_owned(),
            message: message.into(),
            hint,
        }
    }
}

/// Reads `path`; all problems found, or the typed plan.
pub fn load(path: &Path) -> Result<LoadedPlan, Vec<PlanProblem>> {
    strict(load_lenient(path))
}

/// Reads `path`: the plan as far as it could be typed (unknown keys left out), and every
/// problem found.
pub fn load_lenient(path: &Path) -> (Option<LoadedPlan>, Vec<PlanProblem>) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) => (
            None,
            vec![PlanProblem {
                file: path.to_owned(),
                at: Location { line: 1, column: 1 },
                path: String::new(),
                message: format!("cannot read the plan: {e}"),
                hint: Some("check the path to the plan file".into()),
            }],
        ),
    }
}

fn strict(
    (plan, problems): (Option<LoadedPlan>, Vec<PlanProblem>),
) -> Result<LoadedPlan, Vec<PlanProblem>> {
    match plan {
        Some(plan) if problems.is_empty() => Ok(plan),
        _ => Err(problems),
    }
}

/// Like [`load`], from text already read (`file` names it in problems).
pub fn load_str(file: &Path, text: &str) -> Result<LoadedPlan, Vec<PlanProblem>> {
    strict(parse(file, text))
}

/// Like [`load_lenient`], from text already read.
pub fn parse(file: &Path, text: &str) -> (Option<LoadedPlan>, Vec<PlanProblem>) {
    let spans = Spans::index(text);
    let mut problems = Vec::new();
    let located = |e: &serde_yaml_ng::Error| {
        e.location()
            .map(|l| Location {
                line: l.line(),
                column: l.column(),
            })
            .unwrap_or(Location { line: 1, column: 1 })
    };
    let mut document: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let problem = PlanProblem {
                file: file.to_owned(),
                at: located(&e),
                path: String::new(),
                message: format!("not valid YAML: {}", strip_location(&e.to_string())),
                hint: Some(
                    "fix the syntax at this place (indentation, a missing colon or quote)".into(),
                ),
            };
            return (None, vec![problem]);
        }
    };
    for (path, at) in &spans.duplicates {
        let key = path.rsplit('.').next().unwrap_or(path);
        problems.push(PlanProblem {
            file: file.to_owned(),
            at: *at,
            path: path.clone(),
            message: format!("`{key}` is written twice in the same map"),
            hint: Some(
                "keep one: YAML would take one of the two silently, without saying which".into(),
            ),
        });
    }
    let schema = json_schema();
    let mut unknown = Vec::new();
    unknown_keys(&document, &schema, &schema, "", &mut |path, key, known| {
        let suggestion = did_you_mean(key, known);
        unknown.push((path.to_owned(), key.to_owned()));
        problems.push(PlanProblem {
            file: file.to_owned(),
            at: spans.locate(&join(path, key)),
            path: join(path, key),
            message: format!("unknown key `{key}`"),
            hint: Some(match suggestion {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("expected one of: {}", known.join(", ")),
            }),
        });
    });
    // Reported above; left out so that the rest of the plan can still be typed and checked.
    for (path, key) in &unknown {
        if let Some(Value::Object(map)) = pointer_mut(&mut document, path) {
            map.remove(key);
        }
    }
    problems.sort_by_key(|p| (p.at.line, p.at.column));
    match serde_path_to_error::deserialize::<_, PlanFile>(&document) {
        Ok(plan) => (
            Some(LoadedPlan {
                file: file.to_owned(),
                plan,
                spans,
            }),
            problems,
        ),
        Err(e) => {
            let path = dotted(&e.path().to_string());
            problems.push(PlanProblem {
                file: file.to_owned(),
                at: spans.locate(&path),
                path: path.clone(),
                message: e.inner().to_string(),
                hint: Some("see `mambu-migrate plan schema` or plans/reference.yaml for the expected shape".into()),
            });
            problems.sort_by_key(|p| (p.at.line, p.at.column));
            (None, problems)
        }
    }
}

/// serde_path_to_error writes `steps[0].body`; a bare `.` means the document itself.
fn dotted(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_owned()
    }
}

/// The node at a dotted path with `[i]` indexes.
fn pointer_mut<'a>(root: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut node = root;
    if path.is_empty() {
        return Some(node);
    }
    for part in path.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            node = node.get_mut(name)?;
        }
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            node = node.get_mut(index.parse::<usize>().ok()?)?;
        }
    }
    Some(node)
}

/// serde_yaml_ng appends " at line L column C"; the location is shown separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message.to_owned(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The closest of `known` to `word`, when close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix("#/")
            .map(|p| p.split('/').fold(root, |node, part| &node[part]))
            .map(|s| resolve(s, root))
            .unwrap_or(schema),
        None => schema,
    }
}

fn type_matches(schema: &Value, value: &Value) -> bool {
    let kind = match value {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
    };
    match schema.get("type") {
        Some(Value::String(t)) => t == kind || (t == "integer" && kind == "number"),
        Some(Value::Array(ts)) => ts
            .iter()
            .any(|t| t == kind || (t == "integer" && kind == "number")),
        None => {
            kind != "object"
                || schema.get("properties").is_some()
                || schema.get("additionalProperties").is_some()
        }
        _ => false,
    }
}

/// Walks `value` with `schema`, calling `report(path, key, known keys)` for each key that a
/// closed object (`additionalProperties: false`) does not declare.
fn unknown_keys(
    value: &Value,
    schema: &Value,
    root: &Value,
    path: &str,
    report: &mut dyn FnMut(&str, &str, &[&str]),
) {
    let schema = resolve(schema, root);
    if let Some(alternatives) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        // Of the alternatives of the value's type, the one that knows most of its keys (the
        // first on a tie): `target: { sandbox: … }` is checked as the sandbox form.
        let known = |a: &Value| match (value, a.get("properties")) {
            (Value::Object(map), Some(Value::Object(props))) => {
                map.keys().filter(|k| props.contains_key(*k)).count()
            }
            _ => 0,
        };
        let mut fit: Option<&Value> = None;
        for a in alternatives.iter().map(|a| resolve(a, root)) {
            if type_matches(a, value) && fit.is_none_or(|f| known(a) > known(f)) {
                fit = Some(a);
            }
        }
        if let Some(fit) = fit {
            unknown_keys(value, fit, root, path, report);
        }
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in map {
                if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                    unknown_keys(child, child_schema, root, &join(path, key), report);
                } else if let Some(extra @ Value::Object(_)) = additional {
                    unknown_keys(child, extra, root, &join(path, key), report);
                } else if additional == Some(&Value::Bool(false)) {
                    let known: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    report(path, key, &known);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_keys(item, item_schema, root, &format!("{path}[{i}]"), report);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "version: 1\nname: t\nsources:\n  clients: { file: c.csv, key: id }\nunit: clients\nsteps:\n  - id: client\n    action: create_client\n    body: { firstName: a, lastName: b }\n";

    #[test]
    fn a_minimal_plan_loads() {
        let loaded = load_str(Path::new("p.yaml"), MINIMAL).unwrap();
        assert_eq!(loaded.plan.name, "t");
        assert_eq!(loaded.plan.limits.concurrency, 8);
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_place_and_a_suggestion() {
        let text = MINIMAL
            .replace("unit: clients", "unit: clients\nlimts: {}")
            .replace("    action: create_client", "    acton: create_client")
            .replace("c.csv, key: id", "c.csv, key: id, delimeter: ';'");
        let problems = load_str(Path::new("p.yaml"), &text).unwrap_err();
        let shown: Vec<String> = problems
            .iter()
            .map(|p| {
                format!(
                    "{}:{} {} {}",
                    p.at.line,
                    p.at.column,
                    p.message,
                    p.hint.clone().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                "4:36 unknown key `delimeter` did you mean `delimiter`?",
                "6:1 unknown key `limts` did you mean `limits`?",
                "9:5 unknown key `acton` did you mean `action`?",
            ]
        );
    }

    #[test]
    fn syntax_and_type_errors_are_located() {
        let problems = load_str(Path::new("p.yaml"), "version: 1\nname: [\n").unwrap_err();
        assert!(
            problems[0].message.starts_with("not valid YAML"),
            "{problems:?}"
        );
        let problems = load_str(
            Path::new("p.yaml"),
            &MINIMAL.replace("version: 1", "version: one"),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].at.line, 1, "{problems:?}");
        assert_eq!(problems[0].path, "version", "{problems:?}");
        assert!(problems[0].message.contains("expected u32"), "{problems:?}");
    }
}
