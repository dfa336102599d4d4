//! Custom field values (issue 17, `../shared/mambu-api.md` §8 "Custom fields"): the sets a
//! create step's body writes under `_Set_Id` keys, checked against the tenant's definitions
//! (`GET /customfieldsets?availableFor=…`, `GET /customfields/{id}`, read by
//! [`super::tenant::read_tenant`]) as Mambu will check them.
//!
//! What the plan alone shows is checked once, at its place in the plan: a set's value that is
//! neither a map nor a list of maps, a field's value that is a map or a list ([`plan_problems`]);
//! with the tenant's definitions, a set or field the tenant does not define for the entity, a
//! set in the wrong shape, a required field the body does not map, a literal value the field
//! refuses ([`Mapped::tenant_problems`]). What depends on the rows is checked on every rendered
//! call, at the row (and the column, when the value is one cell): a required field left empty,
//! a value its type or its options refuse ([`Mapped::check_call`]).
//!
//! The rules are those the sandbox enforces (`src/sandbox/state/custom_fields.rs`), read from
//! Mambu's definitions: nothing of the sandbox is used here, so the checks hold against a real
//! tenant.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::{Finding, Found, Kind, plan_finding};
use crate::plan::action::Action;
use crate::plan::check::{ActionStep, Plan, personal_by_name};
use crate::plan::compiled::Planned;
use crate::plan::custom_fields::is_set;
use crate::plan::load::{LoadedPlan, did_you_mean};
use crate::plan::template::Engine;

/// The fields of the calls' bodies these checks read: every top-level key starting with `_`
/// (see [`crate::plan::compiled::Compiled::keep_fields`]).
pub(super) const FIELDS: &[&str] = &["/_*"];

/// The longest value taken: the sandbox's reading (Mambu's usual text column; the public record
/// gives MAX_CUSTOM_FIELD_VALUE_LENGTH_EXCEEDED and no number).
const MAX_VALUE_LENGTH: usize = 255;

/// The entity an action creates, as `GET /customfieldsets?availableFor=` names it.
pub(super) fn entity(action: Action) -> Option<&'static str> {
    match action.name() {
        "create_client" => Some("client"),
        "create_group" => Some("group"),
        "create_loan" => Some("loan_account"),
        "create_deposit" => Some("deposit_account"),
        _ => None,
    }
}

/// The entities the plan creates, each once.
pub(super) fn entities(plan: &Plan) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = plan
        .action_steps()
        .iter()
        .filter_map(|s| entity(s.action))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// What Mambu refuses, in words: `the client`, `the loan`.
fn noun(entity: &str) -> &'static str {
    match entity {
        "client" => "client",
        "group" => "group",
        "loan_account" => "loan",
        _ => "deposit",
    }
}

/// Mambu's `availableFor` for an entity's query name (`LOAN_ACCOUNT`).
fn available_for(entity: &str) -> String {
    entity.to_ascii_uppercase()
}

/// One field's definition, as `GET /customfields/{id}` answers it (Mambu's `CustomFieldMeta`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FieldDef {
    pub(super) id: String,
    /// `FREE_TEXT`, `SELECTION`, `NUMBER`, `CHECKBOX`, `DATE`, … (others are taken as text).
    pub(super) kind: String,
    pub(super) required: bool,
    /// A SELECTION field's option values.
    pub(super) options: Vec<String>,
    pub(super) pattern: Option<String>,
}

impl FieldDef {
    /// From Mambu's `CustomFieldMeta`. Required when every `usage` says so (a field required
    /// for some record types only is not reported: which one a row is is not known here).
    pub(super) fn from_meta(meta: &Value) -> Option<FieldDef> {
        let id = meta.get("id")?.as_str()?.to_owned();
        let usage = meta
            .get("usage")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let required = !usage.is_empty()
            && usage
                .iter()
                .all(|u| u.get("required").and_then(Value::as_bool) == Some(true));
        // Dependent selections list options per parent value: any of them is taken here.
        let mut options: Vec<String> = meta
            .get("selectionOptions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("availableOptions").and_then(Value::as_array))
            .flatten()
            .filter_map(|o| o.get("value").and_then(Value::as_str).map(str::to_owned))
            .collect();
        options.dedup();
        Some(FieldDef {
            id,
            kind: meta
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("FREE_TEXT")
                .to_owned(),
            required,
            options,
            pattern: meta
                .pointer("/valueValidationSettings/validationPattern")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        })
    }
}

/// One set's definition (Mambu's `CustomFieldSetMeta`, its fields read one by one).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SetDef {
    pub(super) id: String,
    /// `CLIENT`, `LOAN_ACCOUNT`, …
    pub(super) available_for: String,
    /// `fieldSetType` GROUPED: a list of maps; STANDARD: one map.
    pub(super) grouped: bool,
    pub(super) fields: Vec<FieldDef>,
}

impl SetDef {
    /// From Mambu's `CustomFieldSetMeta` and its fields' definitions.
    pub(super) fn from_meta(meta: &Value, fields: Vec<FieldDef>) -> Option<SetDef> {
        Some(SetDef {
            id: meta.get("id")?.as_str()?.to_owned(),
            available_for: meta
                .get("availableFor")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            grouped: meta.get("fieldSetType").and_then(Value::as_str) == Some("GROUPED"),
            fields,
        })
    }

    /// The ids of the fields a set's meta lists (`customFields[].id`, or their encodedKey).
    pub(super) fn field_ids(meta: &Value) -> Vec<String> {
        meta.get("customFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| {
                f.get("id")
                    .or_else(|| f.get("encodedKey"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect()
    }

    fn field(&self, id: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.id == id)
    }

    fn shape(&self) -> &'static str {
        if self.grouped {
            "a grouped set (GROUPED): Mambu takes a list of maps of field values, one per group"
        } else {
            "a single set (STANDARD): Mambu takes one map of field values"
        }
    }
}

/// The tenant's sets, per entity read (`client`, `loan_account`, …).
#[derive(Debug, Clone, Default)]
pub(super) struct Definitions {
    pub(super) by_entity: BTreeMap<&'static str, Vec<SetDef>>,
}

impl Definitions {
    fn sets(&self, entity: &str) -> &[SetDef] {
        self.by_entity
            .get(entity)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn set(&self, entity: &str, id: &str) -> Option<&SetDef> {
        self.sets(entity).iter().find(|s| s.id == id)
    }

    /// A set of this id the tenant defines for another entity read.
    fn elsewhere(&self, entity: &str, id: &str) -> Option<&SetDef> {
        self.by_entity
            .iter()
            .filter(|(e, _)| **e != entity)
            .flat_map(|(_, sets)| sets)
            .find(|s| s.id == id)
    }
}

/// Why Mambu refuses one value of a field.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Refusal {
    /// A map or a list (`"a map"`, `"a list"`).
    NotAValue(&'static str),
    /// Longer than [`MAX_VALUE_LENGTH`] characters: how long.
    TooLong(usize),
    NotNumber,
    NotCheckbox,
    NotDate,
    /// Not among the options; the hint (did you mean, or the case), when there is one.
    NotOption(Option<String>),
    /// Off the field's validation pattern.
    Pattern(String),
}

impl Refusal {
    /// The words after the value; `shown` is the value, or its shape for personal data.
    fn says(&self, field: &FieldDef, shown: &str) -> String {
        match self {
            Refusal::NotAValue(what) => format!(
                "renders to {what}, not a value: Mambu takes one text per field (INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE)"
            ),
            Refusal::TooLong(n) => format!(
                "is {n} characters long, more than the {MAX_VALUE_LENGTH} a custom field value may have (MAX_CUSTOM_FIELD_VALUE_LENGTH_EXCEEDED)"
            ),
            Refusal::NotNumber => format!(
                "{shown} is not a number as a NUMBER field takes it: digits, an optional `-` and `.` fraction (INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE)"
            ),
            Refusal::NotCheckbox => format!(
                "{shown} is not TRUE or FALSE, as a CHECKBOX field takes it (INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE)"
            ),
            Refusal::NotDate => format!(
                "{shown} is not a date as a DATE field takes it: YYYY-MM-DD (INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE)"
            ),
            Refusal::NotOption(_) => format!(
                "{shown} is not one of the SELECTION field's options ({}) (INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE)",
                listed(&field.options)
            ),
            Refusal::Pattern(p) => format!(
                "{shown} does not match the field's validation pattern `{p}` (`#` a digit, `@` a letter, `$` either, anything else itself) (INCONSISTENT_CUSTOM_FIELD_VALUE_WITH_PATTERN)"
            ),
        }
    }

    /// A short name, for the listing cap's rule.
    fn kind(&self) -> &'static str {
        match self {
            Refusal::NotAValue(_) => "value",
            Refusal::TooLong(_) => "length",
            Refusal::NotNumber => "number",
            Refusal::NotCheckbox => "checkbox",
            Refusal::NotDate => "date",
            Refusal::NotOption(_) => "option",
            Refusal::Pattern(_) => "pattern",
        }
    }

    /// What to do, for a value read from `cell` (`column of source key`) or from the template.
    fn hint(&self, fix: &str) -> String {
        match self {
            Refusal::NotOption(Some(hint)) => format!("{hint}; {fix}"),
            Refusal::NotNumber => format!("{fix} (`| decimal` reads a number)"),
            Refusal::NotDate => format!("{fix} (`| date` writes YYYY-MM-DD)"),
            _ => fix.to_owned(),
        }
    }
}

/// A value in Mambu's form, as [`crate::plan::custom_fields::to_mambu_form`] leaves it: text,
/// or `None` when the field is left out (null or blank).
fn as_text(value: &Value) -> Option<Result<String, &'static str>> {
    match value {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(Ok(s.clone())),
        Value::Number(n) => Some(Ok(n.to_string())),
        Value::Bool(b) => Some(Ok(if *b { "TRUE" } else { "FALSE" }.to_owned())),
        Value::Object(_) => Some(Err("a map")),
        Value::Array(_) => Some(Err("a list")),
    }
}

/// Whether Mambu takes `value` for `field`, as the sandbox checks it: at most
/// [`MAX_VALUE_LENGTH`] characters; NUMBER a decimal number (`-12.5`, no `+`, exponent or
/// separators); CHECKBOX `TRUE` or `FALSE`; DATE `YYYY-MM-DD`; SELECTION one of the options,
/// exactly; the validation pattern, when there is one ([`matches_pattern`]).
pub(super) fn check_value(field: &FieldDef, value: &str) -> Option<Refusal> {
    let length = value.chars().count();
    if length > MAX_VALUE_LENGTH {
        return Some(Refusal::TooLong(length));
    }
    let refusal = match field.kind.as_str() {
        "NUMBER" => (!is_number(value)).then_some(Refusal::NotNumber),
        "CHECKBOX" => (value != "TRUE" && value != "FALSE").then_some(Refusal::NotCheckbox),
        "DATE" => (!is_date(value)).then_some(Refusal::NotDate),
        "SELECTION" if !field.options.iter().any(|o| o == value) => {
            let options: Vec<&str> = field.options.iter().map(String::as_str).collect();
            let hint = match options.iter().find(|o| o.eq_ignore_ascii_case(value)) {
                Some(o) => Some(format!(
                    "the option is `{o}`: Mambu matches options exactly, case included (`| upper` in the template?)"
                )),
                None => did_you_mean(value, &options).map(|o| format!("did you mean `{o}`?")),
            };
            Some(Refusal::NotOption(hint))
        }
        _ => None,
    };
    if refusal.is_some() {
        return refusal;
    }
    match &field.pattern {
        Some(pattern) if !matches_pattern(pattern, value) => {
            Some(Refusal::Pattern(pattern.clone()))
        }
        _ => None,
    }
}

/// The known id `word` most likely means: [`did_you_mean`], or the only one that begins with
/// it (or it with one), or holds each of its words (`legacy_number`: `legacy_account_number`),
/// whatever the case.
fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    did_you_mean(word, known).or_else(|| {
        let word = word.to_lowercase();
        let words: Vec<&str> = word.split('_').filter(|w| !w.is_empty()).collect();
        let mut like = known.iter().filter(|k| {
            let k = k.to_lowercase();
            k.starts_with(&word)
                || word.starts_with(&k)
                || (!words.is_empty() && words.iter().all(|w| k.split('_').any(|p| p == *w)))
        });
        match (like.next(), like.next()) {
            (Some(one), None) => Some(*one),
            _ => None,
        }
    })
}

/// Up to 10 options, for a message.
fn listed(options: &[String]) -> String {
    let mut out = options
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if options.len() > 10 {
        out.push_str(&format!(", … ({} in all)", options.len()));
    }
    out
}

/// A decimal number as a NUMBER field takes it: an optional `-`, digits, an optional fraction.
fn is_number(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    match unsigned.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => digits(unsigned),
    }
}

/// `YYYY-MM-DD`, a day of the calendar.
fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

/// A validation pattern's match, the whole value one character each: `#` a digit, `@` a
/// letter, `$` a letter or digit, any other character itself.
fn matches_pattern(pattern: &str, text: &str) -> bool {
    pattern.chars().count() == text.chars().count()
        && pattern.chars().zip(text.chars()).all(|(p, c)| match p {
            '#' => c.is_ascii_digit(),
            '@' => c.is_alphabetic(),
            '$' => c.is_alphanumeric(),
            _ => p == c,
        })
}

/// One field a step's body maps.
#[derive(Debug, Clone)]
struct MappedField {
    id: String,
    /// Its place in the plan (`steps[0].body._Set.field`).
    path: String,
    /// The template or literal, as the plan writes it.
    value: Value,
    /// The one cell its value comes from (source, column), when it is one.
    cell: Option<(String, String)>,
    /// Whether its value may show personal data (read from a personal column, or a whole row).
    personal: bool,
    /// No template: the same value on every row.
    literal: bool,
}

/// How a step's body writes a set.
#[derive(Debug, Clone)]
enum Shape {
    Map(Vec<MappedField>),
    /// One entry per group.
    List(Vec<Vec<MappedField>>),
    /// A template (or something that is no set, reported by [`plan_problems`]).
    Other,
}

#[derive(Debug, Clone)]
struct MappedSet {
    id: String,
    path: String,
    shape: Shape,
}

/// A create step's custom field sets, as its body maps them.
#[derive(Debug, Clone)]
struct StepSets {
    entity: &'static str,
    /// The step's place in the plan.
    path: String,
    sets: Vec<MappedSet>,
}

/// Every create step's custom field sets, by the step's place in the plan.
pub(super) struct Mapped {
    steps: HashMap<String, StepSets>,
}

fn is_template(value: &Value) -> bool {
    matches!(value, Value::String(s) if s.contains("{{") || s.contains("{%"))
}

impl Mapped {
    /// Reads the sets of every step that creates an entity.
    pub(super) fn new(plan: &Plan) -> Mapped {
        let engine = Engine::new();
        let mut steps = HashMap::new();
        for step in plan.action_steps() {
            let Some(entity) = entity(step.action) else {
                continue;
            };
            let mut sets = Vec::new();
            if let Some(Value::Object(body)) = &step.body {
                for (id, value) in body.iter().filter(|(k, _)| is_set(k)) {
                    let path = format!("{}.body.{id}", step.path);
                    let fields = |map: &Map<String, Value>, at: &str| -> Vec<MappedField> {
                        map.iter()
                            .map(|(field, value)| {
                                mapped_field(&engine, plan, step, field, value, at)
                            })
                            .collect()
                    };
                    let shape = match value {
                        Value::Object(map) => Shape::Map(fields(map, &path)),
                        Value::Array(list) if list.iter().all(Value::is_object) => Shape::List(
                            list.iter()
                                .enumerate()
                                .map(|(i, entry)| {
                                    let map = entry.as_object().expect("a map");
                                    fields(map, &format!("{path}[{i}]"))
                                })
                                .collect(),
                        ),
                        _ => Shape::Other,
                    };
                    sets.push(MappedSet {
                        id: id.clone(),
                        path,
                        shape,
                    });
                }
            }
            steps.insert(
                step.path.clone(),
                StepSets {
                    entity,
                    path: step.path.clone(),
                    sets,
                },
            );
        }
        Mapped { steps }
    }

    /// Whether the step's rendered calls are checked (it creates an entity whose definitions
    /// were read).
    pub(super) fn wants(&self, step: &ActionStep, definitions: &Definitions) -> bool {
        self.steps
            .get(&step.path)
            .is_some_and(|s| definitions.by_entity.contains_key(s.entity) && !s.sets.is_empty())
    }

    /// What the plan shows against the definitions, once per step, at its place in the plan:
    /// sets and fields the tenant does not define, sets in the wrong shape, required fields
    /// not mapped, literal values refused.
    pub(super) fn tenant_problems(
        &self,
        plan: &Plan,
        loaded: &LoadedPlan,
        definitions: &Definitions,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        for step in plan.action_steps() {
            let Some(mapped) = self.steps.get(&step.path) else {
                continue;
            };
            let Some(sets) = definitions.by_entity.get(mapped.entity) else {
                continue;
            };
            let at = |path: &str, message: String, hint: String| {
                let mut f = plan_finding(&loaded.problem(path, "", None));
                f.kind = Kind::Tenant;
                f.message = format!("step `{}` ({}): {message}", step.id, step.action.name());
                f.hint = Some(hint);
                f
            };
            let entity = mapped.entity;
            for set in &mapped.sets {
                let Some(def) = definitions.set(entity, &set.id) else {
                    let known: Vec<&str> = sets.iter().map(|s| s.id.as_str()).collect();
                    let hint = match (
                        definitions.elsewhere(entity, &set.id),
                        suggest(&set.id, &known),
                    ) {
                        (Some(other), _) => format!(
                            "`{}` is a set for {}: Mambu refuses it on a {} (CUSTOM_FIELD_NOT_AVAILABLE_FOR_ENTITY)",
                            other.id,
                            other.available_for,
                            noun(entity)
                        ),
                        (None, Some(s)) => format!("did you mean `{s}`?"),
                        (None, None) if known.is_empty() => format!(
                            "the tenant defines no custom field set for {}",
                            available_for(entity)
                        ),
                        (None, None) => format!(
                            "the tenant's sets for {}: {}",
                            available_for(entity),
                            known.join(", ")
                        ),
                    };
                    out.push(at(
                        &set.path,
                        format!(
                            "the tenant has no custom field set `{}` for {} (INVALID_CUSTOM_FIELD_SET_ID)",
                            set.id,
                            available_for(entity)
                        ),
                        hint,
                    ));
                    continue;
                };
                let entries: Vec<&Vec<MappedField>> = match (&set.shape, def.grouped) {
                    (Shape::Map(fields), false) => vec![fields],
                    (Shape::List(entries), true) => entries.iter().collect(),
                    (Shape::Map(_), true) | (Shape::List(_), false) => {
                        let written = if def.grouped { "a map" } else { "a list" };
                        out.push(at(
                            &set.path,
                            format!(
                                "`{}` is {}, and the plan writes {written} (INCONSISTENT_VALUE_WITH_SET_TYPE)",
                                set.id,
                                def.shape()
                            ),
                            if def.grouped {
                                format!("write it as a list: `{}: [ {{ field: … }}, … ]`", set.id)
                            } else {
                                format!("write it as one map: `{}: {{ field: … }}`", set.id)
                            },
                        ));
                        continue;
                    }
                    (Shape::Other, _) => continue,
                };
                let known: Vec<&str> = def.fields.iter().map(|f| f.id.as_str()).collect();
                for fields in &entries {
                    for field in fields.iter() {
                        let Some(field_def) = def.field(&field.id) else {
                            out.push(at(
                                &field.path,
                                format!(
                                    "set `{}` has no field `{}` (INVALID_CUSTOM_FIELD_ID)",
                                    set.id, field.id
                                ),
                                match suggest(&field.id, &known) {
                                    Some(s) => format!("did you mean `{s}`?"),
                                    None => format!("its fields: {}", known.join(", ")),
                                },
                            ));
                            continue;
                        };
                        if !field.literal {
                            continue;
                        }
                        match as_text(&field.value) {
                            None if field_def.required => out.push(at(
                                &field.path,
                                format!(
                                    "{}.{} is required by the tenant, and the plan gives it no value (REQUIRED_CUSTOM_FIELD_MISSING)",
                                    set.id, field.id
                                ),
                                "give it a value, or a template reading a column".into(),
                            )),
                            None | Some(Err(_)) => {}
                            Some(Ok(text)) => {
                                if let Some(refusal) = check_value(field_def, &text) {
                                    out.push(at(
                                        &field.path,
                                        format!(
                                            "custom field {}.{}: {}",
                                            set.id,
                                            field.id,
                                            refusal.says(field_def, &format!("`{text}`"))
                                        ),
                                        refusal.hint("correct the value in the plan"),
                                    ));
                                }
                            }
                        }
                    }
                }
                // Required fields every group (or the one map) must map.
                for required in def.fields.iter().filter(|f| f.required) {
                    let missing = entries.is_empty()
                        || entries
                            .iter()
                            .any(|fields| !fields.iter().any(|f| f.id == required.id));
                    if missing {
                        out.push(at(
                            &set.path,
                            format!(
                                "the tenant requires {}.{} on every {}, and the step's body does not map it (REQUIRED_CUSTOM_FIELD_MISSING)",
                                set.id,
                                required.id,
                                noun(entity)
                            ),
                            format!("map it: `{}: {{ {}: \"{{{{ … }}}}\" }}`", set.id, required.id),
                        ));
                    }
                }
            }
            // Required fields of sets the body does not write at all.
            for def in sets {
                if mapped.sets.iter().any(|s| s.id == def.id) {
                    continue;
                }
                for required in def.fields.iter().filter(|f| f.required) {
                    out.push(at(
                        &mapped.path,
                        format!(
                            "the tenant requires custom field {}.{} on every {}, and the step's body does not map it (REQUIRED_CUSTOM_FIELD_MISSING)",
                            def.id,
                            required.id,
                            noun(entity)
                        ),
                        if def.grouped {
                            format!(
                                "add to the body: `{}: [ {{ {}: \"{{{{ … }}}}\" }} ]`",
                                def.id, required.id
                            )
                        } else {
                            format!(
                                "add to the body: `{}: {{ {}: \"{{{{ … }}}}\" }}`",
                                def.id, required.id
                            )
                        },
                    ));
                }
            }
        }
        out
    }

    /// Checks one rendered call of a create step, at its row: required fields the row leaves
    /// empty, values their fields refuse (what the plan shows was said by
    /// [`tenant_problems`](Self::tenant_problems)).
    pub(super) fn check_call(
        &self,
        definitions: &Definitions,
        step: &ActionStep,
        planned: &Planned<'_>,
        unit: &str,
        body: &Value,
        out: &mut Found,
    ) {
        let Some(mapped) = self.steps.get(&step.path) else {
            return;
        };
        let entity = mapped.entity;
        let empty = Map::new();
        // A finding at the row the value comes from (the cell's, or the step's), with the
        // column when it is one cell. `hint` takes the column and the row (`source key`).
        let report = |out: &mut Found,
                      field: Option<&MappedField>,
                      at: String,
                      what: &str,
                      message: String,
                      hint: &dyn Fn(Option<&str>, &str) -> String| {
            let cell = field.and_then(|f| f.cell.as_ref());
            let row = cell
                .and_then(|(source, _)| {
                    planned
                        .rows
                        .iter()
                        .rev()
                        .find(|(name, _)| name == source)
                        .map(|(_, r)| r)
                })
                .unwrap_or_else(|| planned.row());
            let label = format!("{} {}", row.schema().name(), row.key());
            let column = cell.map(|(_, c)| c.as_str());
            let mut finding = Finding::new(
                Kind::Tenant,
                row.schema().file().display().to_string(),
                Some(row.line()),
                format!(
                    "step `{}` ({}), unit {unit}: custom field {at} {message}",
                    step.id,
                    step.action.name()
                ),
                Some(hint(column, &label)),
            );
            if let Some(column) = column {
                finding = finding.in_field(column);
            }
            // `_Set[2].field` counts as `_Set.field`.
            let place = match at.split_once('[') {
                Some((set, rest)) => {
                    format!("{set}{}", rest.split_once(']').map_or("", |(_, r)| r))
                }
                None => at.clone(),
            };
            out.push(
                format!("tenant custom field {} {place} {what}", step.id),
                finding,
            );
        };
        let fix = |column: Option<&str>, label: &str| match column {
            Some(c) => format!("correct {c} of {label}, or the step's template"),
            None => format!("correct the row ({label}) or the step's template"),
        };
        let fill = |column: Option<&str>, label: &str| match column {
            Some(c) => format!("fill {c} in {label}, or give the template a default"),
            None => format!("give {label} a value for it, or the template a default"),
        };
        for set in &mapped.sets {
            let Some(def) = definitions.set(entity, &set.id) else {
                continue;
            };
            let rendered = body.get(&set.id);
            // One map of values against the definitions (`fields`: the plan's entry, when the
            // values pair with it), and the required fields present.
            let check_entry = |out: &mut Found,
                               values: &Map<String, Value>,
                               fields: Option<&[MappedField]>,
                               at: &str| {
                for (id, value) in values {
                    let Some(field_def) = def.field(id) else {
                        if fields.is_none() {
                            // A set rendered whole by a template: its fields are known only here.
                            let known: Vec<&str> =
                                def.fields.iter().map(|f| f.id.as_str()).collect();
                            let hint = match suggest(id, &known) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => format!("its fields: {}", known.join(", ")),
                            };
                            report(
                                out,
                                None,
                                format!("{at}.{id}"),
                                "unknown",
                                format!(
                                    "is not a field of set `{}` (INVALID_CUSTOM_FIELD_ID)",
                                    set.id
                                ),
                                &|_, _| hint.clone(),
                            );
                        }
                        continue;
                    };
                    let field = fields.and_then(|m| m.iter().find(|f| f.id == *id));
                    if field.is_some_and(|f| f.literal) {
                        // The same on every row: said once, for the step.
                        continue;
                    }
                    let (refusal, shown) = match as_text(value) {
                        None => continue,
                        Some(Err(what)) => (Refusal::NotAValue(what), String::new()),
                        Some(Ok(text)) => match check_value(field_def, &text) {
                            None => continue,
                            // Shown unless it may be personal data.
                            Some(r) if field.is_none_or(|f| f.personal) => (
                                r,
                                format!(
                                    "(shape {:?}; value withheld: personal data)",
                                    crate::source::shape(&text)
                                ),
                            ),
                            Some(r) => (r, format!("`{text}`")),
                        },
                    };
                    report(
                        out,
                        field,
                        format!("{at}.{id}"),
                        refusal.kind(),
                        refusal.says(field_def, &shown),
                        &|column, label| refusal.hint(&fix(column, label)),
                    );
                }
                for required in def.fields.iter().filter(|f| f.required) {
                    if values.contains_key(&required.id) {
                        continue;
                    }
                    // Unmapped required fields, and literal ones, were said once, for the step.
                    let field = match fields {
                        Some(m) => match m.iter().find(|f| f.id == required.id) {
                            Some(f) if !f.literal => Some(f),
                            _ => continue,
                        },
                        None => None,
                    };
                    report(
                        out,
                        field,
                        format!("{at}.{}", required.id),
                        "required",
                        format!(
                            "is required by the tenant, and this row gives it no value (an empty value leaves the field out): Mambu refuses the {} (REQUIRED_CUSTOM_FIELD_MISSING)",
                            noun(entity)
                        ),
                        &fill,
                    );
                }
            };
            match (&set.shape, def.grouped) {
                (Shape::Map(fields), false) => {
                    let values = rendered.and_then(Value::as_object).unwrap_or(&empty);
                    check_entry(out, values, Some(fields), &set.id);
                }
                (Shape::List(entries), true) => {
                    let groups: Vec<&Map<String, Value>> = rendered
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_object)
                        .collect();
                    if groups.len() == entries.len() {
                        for (i, (values, fields)) in groups.iter().zip(entries).enumerate() {
                            check_entry(out, values, Some(fields), &format!("{}[{i}]", set.id));
                        }
                    } else {
                        // Groups left empty were left out: the rest no longer pair with the
                        // plan's entries by position.
                        for (i, values) in groups.iter().enumerate() {
                            check_entry(out, values, None, &format!("{}[{i}]", set.id));
                        }
                        if groups.is_empty()
                            && let Some(required) = def.fields.iter().find(|f| f.required)
                        {
                            report(
                                out,
                                None,
                                format!("{}.{}", set.id, required.id),
                                "required",
                                format!(
                                    "is required by the tenant, and every group of `{}` is empty for this row: Mambu refuses the {} (REQUIRED_CUSTOM_FIELD_MISSING)",
                                    set.id,
                                    noun(entity)
                                ),
                                &fill,
                            );
                        }
                    }
                }
                (Shape::Other, _) => match (rendered, def.grouped) {
                    (None, _) => {}
                    (Some(Value::Object(values)), false) => check_entry(out, values, None, &set.id),
                    (Some(Value::Array(groups)), true) if groups.iter().all(Value::is_object) => {
                        for (i, values) in groups.iter().filter_map(Value::as_object).enumerate() {
                            check_entry(out, values, None, &format!("{}[{i}]", set.id));
                        }
                    }
                    (Some(_), _) => report(
                        out,
                        None,
                        set.id.clone(),
                        "shape",
                        format!(
                            "is {}, and this row renders it to something else (INCONSISTENT_VALUE_WITH_SET_TYPE)",
                            def.shape()
                        ),
                        &fix,
                    ),
                },
                // The wrong shape in the plan: said once, for the step.
                _ => {}
            }
        }
    }
}

/// One field as the plan maps it: the one cell it reads, if it is one, and whether its value
/// may be personal data.
fn mapped_field(
    engine: &Engine,
    plan: &Plan,
    step: &ActionStep,
    id: &str,
    value: &Value,
    at: &str,
) -> MappedField {
    let path = format!("{at}.{id}");
    let mut cell = None;
    let mut personal = false;
    let literal = !is_template(value);
    if !literal && let Ok(tree) = engine.compile(&path, value) {
        let variables = tree.variables();
        let cells: Vec<(&str, &str)> = variables
            .iter()
            .filter_map(|v| {
                let (source, rest) = v.split_once('.').unwrap_or((v, ""));
                step.scope
                    .iter()
                    .any(|s| s == source)
                    .then_some((source, rest))
            })
            .collect();
        personal = cells.iter().any(|(source, column)| {
            column.is_empty()
                || column.contains('.')
                || match plan.source(source).and_then(|s| s.columns.get(*column)) {
                    Some(spec) => spec.personal,
                    None => personal_by_name(column),
                }
        });
        if let [(source, column)] = cells.as_slice()
            && variables.len() == 1
            && !column.is_empty()
            && !column.contains('.')
        {
            cell = Some(((*source).to_owned(), (*column).to_owned()));
        }
    }
    MappedField {
        id: id.to_owned(),
        path,
        value: value.clone(),
        cell,
        personal,
        literal,
    }
}

/// What the plan alone shows of its custom fields, at their place in the plan: a set's value
/// that is neither a map nor a list of maps; a field's value that is a map or a list.
pub(super) fn plan_problems(plan: &Plan, loaded: &LoadedPlan) -> Vec<Finding> {
    let mut out = Vec::new();
    for step in plan.action_steps() {
        let Some(Value::Object(body)) = &step.body else {
            continue;
        };
        for (id, value) in body.iter().filter(|(k, _)| is_set(k)) {
            let path = format!("{}.body.{id}", step.path);
            let mut problem = |path: &str, message: String, hint: &str| {
                out.push(plan_finding(&loaded.problem(
                    path,
                    format!("step `{}`: {message}", step.id),
                    Some(hint.to_owned()),
                )));
            };
            let fields = |map: &Map<String, Value>,
                          at: &str,
                          problem: &mut dyn FnMut(&str, String, &str)| {
                for (field, value) in map {
                    let what = match value {
                        Value::Object(_) => "a map",
                        Value::Array(_) => "a list",
                        _ => continue,
                    };
                    problem(
                        &format!("{at}.{field}"),
                        format!(
                            "custom field `{id}.{field}` is {what}: a field's value is one value (text, a number, TRUE or FALSE, a date)"
                        ),
                        "write one value, or a template giving one",
                    );
                }
            };
            match value {
                Value::Object(map) => fields(map, &path, &mut problem),
                Value::Array(list) => {
                    for (i, entry) in list.iter().enumerate() {
                        match entry {
                            Value::Object(map) => {
                                fields(map, &format!("{path}[{i}]"), &mut problem)
                            }
                            v if is_template(v) => {}
                            _ => problem(
                                &format!("{path}[{i}]"),
                                format!(
                                    "group {i} of custom field set `{id}` is not a map of field values"
                                ),
                                "write each group as a map: `- { field: … }`",
                            ),
                        }
                    }
                }
                v if is_template(v) => {}
                _ => problem(
                    &path,
                    format!(
                        "custom field set `{id}` is neither a map of field values nor a list of such maps (a grouped set)"
                    ),
                    "write `_Set: { field: … }`, or `_Set: [ { field: … } ]` for a grouped set",
                ),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(kind: &str) -> FieldDef {
        FieldDef {
            id: "f".into(),
            kind: kind.into(),
            required: false,
            options: if kind == "SELECTION" {
                vec!["EMPLOYED".into(), "SELF_EMPLOYED".into(), "RETIRED".into()]
            } else {
                Vec::new()
            },
            pattern: None,
        }
    }

    #[test]
    fn each_type_takes_what_the_sandbox_takes() {
        for (kind, good, bad, refusal) in [
            ("NUMBER", "-12.50", "12,5", Refusal::NotNumber),
            ("NUMBER", "46290", "1e3", Refusal::NotNumber),
            ("NUMBER", "0.5", ".5", Refusal::NotNumber),
            ("NUMBER", "7", "+7", Refusal::NotNumber),
            ("CHECKBOX", "TRUE", "true", Refusal::NotCheckbox),
            ("CHECKBOX", "FALSE", "YES", Refusal::NotCheckbox),
            ("DATE", "2020-02-29", "2021-02-29", Refusal::NotDate),
            ("DATE", "1999-12-31", "31/12/1999", Refusal::NotDate),
            ("DATE", "2000-01-05", "2000-1-5", Refusal::NotDate),
        ] {
            assert_eq!(check_value(&field(kind), good), None, "{kind} {good}");
            assert_eq!(
                check_value(&field(kind), bad),
                Some(refusal),
                "{kind} {bad}"
            );
        }
        assert_eq!(check_value(&field("FREE_TEXT"), "anything at all"), None);
        assert_eq!(
            check_value(&field("DATE_TIME"), "whatever"),
            None,
            "taken as text"
        );
    }

    #[test]
    fn a_selection_value_is_one_of_the_options_exactly_with_a_hint() {
        let selection = field("SELECTION");
        assert_eq!(check_value(&selection, "RETIRED"), None);
        let hint = |value: &str| match check_value(&selection, value) {
            Some(Refusal::NotOption(hint)) => hint,
            other => panic!("{value}: {other:?}"),
        };
        assert_eq!(
            hint("employed").as_deref(),
            Some(
                "the option is `EMPLOYED`: Mambu matches options exactly, case included (`| upper` in the template?)"
            )
        );
        assert_eq!(hint("RETIRD").as_deref(), Some("did you mean `RETIRED`?"));
        assert_eq!(hint("FEMALE"), None);
        let refusal = check_value(&selection, "FEMALE").unwrap();
        assert_eq!(
            refusal.says(&selection, "`FEMALE`"),
            "`FEMALE` is not one of the SELECTION field's options (EMPLOYED, SELF_EMPLOYED, RETIRED) (INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE)"
        );
        assert_eq!(refusal.hint("fix it"), "fix it");
        let many: Vec<String> = (1..=12).map(|i| format!("O{i}")).collect();
        assert_eq!(
            listed(&many),
            "O1, O2, O3, O4, O5, O6, O7, O8, O9, O10, … (12 in all)"
        );
    }

    #[test]
    fn a_value_too_long_or_off_its_pattern_is_refused() {
        let text = field("FREE_TEXT");
        assert_eq!(
            check_value(&text, &"é".repeat(255)),
            None,
            "characters, not bytes"
        );
        assert_eq!(
            check_value(&text, &"x".repeat(256)),
            Some(Refusal::TooLong(256))
        );
        let tax = FieldDef {
            pattern: Some("PT-###".into()),
            ..field("FREE_TEXT")
        };
        assert_eq!(check_value(&tax, "PT-123"), None);
        for bad in ["PT-12", "PT-1234", "PT-12a", "pt-123"] {
            assert_eq!(
                check_value(&tax, bad),
                Some(Refusal::Pattern("PT-###".into())),
                "{bad}"
            );
        }
        assert!(matches_pattern("@$-#", "aZ-9") && !matches_pattern("@", "1"));
    }

    #[test]
    fn values_are_read_in_mambus_form() {
        assert_eq!(as_text(&json!(46290.5)), Some(Ok("46290.5".into())));
        assert_eq!(as_text(&json!(true)), Some(Ok("TRUE".into())));
        assert_eq!(as_text(&json!("  ")), None);
        assert_eq!(as_text(&json!(null)), None);
        assert_eq!(as_text(&json!({ "a": 1 })), Some(Err("a map")));
        assert_eq!(as_text(&json!([1])), Some(Err("a list")));
    }

    #[test]
    fn definitions_are_read_from_mambus_answers() {
        let meta = json!({
            "id": "employment_status", "type": "SELECTION",
            "usage": [{ "required": true, "default": true }],
            "selectionOptions": [
                { "availableOptions": [{ "value": "EMPLOYED" }, { "value": "RETIRED" }] },
                { "forValue": "X", "availableOptions": [{ "value": "STUDENT" }] }
            ],
            "valueValidationSettings": { "validationPattern": "", "unique": false }
        });
        let field = FieldDef::from_meta(&meta).unwrap();
        assert_eq!(
            field,
            FieldDef {
                id: "employment_status".into(),
                kind: "SELECTION".into(),
                required: true,
                options: vec!["EMPLOYED".into(), "RETIRED".into(), "STUDENT".into()],
                pattern: None,
            }
        );
        // Required for some record types only, or with no usage: not reported as required.
        let partly = json!({ "id": "f", "usage": [{ "required": true }, { "required": false }] });
        assert!(!FieldDef::from_meta(&partly).unwrap().required);
        let bare = FieldDef::from_meta(&json!({ "id": "f" })).unwrap();
        assert_eq!((bare.kind.as_str(), bare.required), ("FREE_TEXT", false));
        let set = json!({ "id": "_Refs", "availableFor": "CLIENT", "fieldSetType": "GROUPED",
            "customFields": [{ "encodedKey": "k1", "id": "name" }, { "encodedKey": "k2" }] });
        assert_eq!(SetDef::field_ids(&set), ["name", "k2"]);
        let set = SetDef::from_meta(&set, vec![bare]).unwrap();
        assert!(set.grouped && set.available_for == "CLIENT" && set.field("f").is_some());
    }

    #[test]
    fn suggestions_take_typos_prefixes_and_words() {
        let known = [
            "_Client_Details",
            "legacy_account_number",
            "employment_status",
        ];
        assert_eq!(suggest("_Client_Detials", &known), Some("_Client_Details"));
        assert_eq!(suggest("employment", &known), Some("employment_status"));
        assert_eq!(
            suggest("legacy_number", &known),
            Some("legacy_account_number")
        );
        assert_eq!(suggest("nickname", &known), None);
    }

    #[test]
    fn entities_are_those_the_create_actions_make() {
        assert_eq!(entity(Action::CreateClient), Some("client"));
        assert_eq!(entity(Action::CreateLoan), Some("loan_account"));
        assert_eq!(entity(Action::CreateDeposit), Some("deposit_account"));
        assert_eq!(entity(Action::ApproveLoan), None);
    }
}
