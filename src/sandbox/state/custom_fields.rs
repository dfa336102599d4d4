//! Custom fields and client addresses (issue 17): the values a client, loan or deposit body
//! carries under its tenant's custom field sets, checked against the sets' definitions
//! (`../shared/mambu-api.md` §8 "Custom fields"); the definitions as `GET /customfieldsets` and
//! `GET /customfields/{id}` answer them (Mambu's `CustomFieldSetMeta` and `CustomFieldMeta`,
//! skyleague/mambu-sdk `src/custom-field-sets/`, `src/custom-fields/`); a client's `addresses`
//! (Mambu's `Address`, `src/clients/rest.zod.ts`); and the counts `GET /_sandbox/stats` gives.
//!
//! Values sit under the set's id: a STANDARD set `"_Set": {"field": "value"}`, a GROUPED set
//! `"_Set": [{"field": "value"}, ...]` (each group answered with its `_index`). Every key of a
//! body that starts with `_` names a custom field set; only the tenant's sets for that entity
//! pass.

use chrono::NaiveDate;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::json::{count, decimal};
use super::{Answer, Tenant};
use crate::sandbox::error::ApiError;
use crate::sandbox::tenant::{
    AvailableFor, CustomFieldDefinition, CustomFieldSet, CustomFieldType, FieldSetType,
};

/// The longest custom field value taken. Stricter reading: the public record gives no limit
/// (the spec has MAX_CUSTOM_FIELD_VALUE_LENGTH_EXCEEDED); 255 characters, Mambu's usual text
/// column, is assumed.
const MAX_VALUE_LENGTH: usize = 255;

/// The longest address field taken (stricter reading, as [`MAX_VALUE_LENGTH`]: the spec has
/// ADDRESS_FIELD_LENGTH and no limit).
const MAX_ADDRESS_FIELD_LENGTH: usize = 255;

/// An address's text fields (Mambu's `Address`).
const ADDRESS_TEXT: [&str; 6] = ["line1", "line2", "city", "region", "postcode", "country"];

impl Tenant {
    /// The tenant's custom field sets (the profile's `customFieldSets`).
    pub fn with_custom_field_sets(mut self, sets: Vec<CustomFieldSet>) -> Self {
        self.custom_field_sets = sets;
        self
    }

    /// The body's custom field values for `entity`, checked (see [`custom_field_values`]), as
    /// they are stored: set id → value.
    pub(super) fn custom_field_values(
        &self,
        entity: AvailableFor,
        doc: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ApiError> {
        custom_field_values(&self.custom_field_sets, entity, doc)
    }

    /// `GET /customfieldsets[?availableFor=...]`: the tenant's sets, as Mambu's
    /// `CustomFieldSetMeta`. `availableFor` takes the names Mambu's documentation gives, in
    /// lower case (`client`, `loan_account`, ...); stricter reading: another spelling (the JSON
    /// enum's `LOAN_ACCOUNT`) is refused, as the record documents only the lower-case one.
    pub fn custom_field_sets(&self, available_for: Option<&str>) -> Result<Vec<Value>, ApiError> {
        let wanted = match available_for {
            None => None,
            Some(name) => Some(available_for_query(name).ok_or_else(|| {
                ApiError::invalid_parameters(format!(
                    "availableFor: `{name}` is not one of client, group, loan_account, \
                     deposit_account, ..."
                ))
            })?),
        };
        Ok(self
            .custom_field_sets
            .iter()
            .enumerate()
            .filter(|(_, set)| wanted.is_none_or(|w| set.available_for == w))
            .map(|(position, set)| set_json(set, position))
            .collect())
    }

    /// `GET /customfields/{id}`: one field definition (by id or encodedKey), as Mambu's
    /// `CustomFieldMeta`.
    pub fn custom_field(&self, id_or_key: &str) -> Answer {
        self.custom_field_sets
            .iter()
            .find_map(|set| {
                set.custom_fields
                    .iter()
                    .position(|f| f.id == id_or_key || field_key(&f.id) == id_or_key)
                    .map(|position| field_json(set, position))
            })
            .ok_or_else(ApiError::custom_field_not_found)
    }
}

/// How many field values a stored set holds (a group's `_index` is not one).
pub(super) fn stored_values(value: &Value) -> u64 {
    match value {
        Value::Object(fields) => fields.keys().filter(|k| *k != "_index").count() as u64,
        Value::Array(groups) => groups.iter().map(stored_values).sum(),
        _ => 0,
    }
}

/// Checks the custom field values of a body for `entity` (every key starting with `_`), and
/// answers them as stored (a group gains its `_index`). Refused:
/// - a set the tenant does not define (`INVALID_CUSTOM_FIELD_SET_ID`), or defines for another
///   entity (`CUSTOM_FIELD_NOT_AVAILABLE_FOR_ENTITY`);
/// - a STANDARD set that is not an object, a GROUPED one that is not a list of objects
///   (`INCONSISTENT_VALUE_WITH_SET_TYPE`); a group's `_index` other than its place
///   (`INVALID_CUSTOM_FIELD_GROUP_INDEX`);
/// - a field its set does not define (`INVALID_CUSTOM_FIELD_ID`);
/// - a required field without a value, its set absent included (`REQUIRED_CUSTOM_FIELD_MISSING`,
///   errorSource `_Set.field`, or `_Set[i].field` in a group);
/// - a value its type refuses ([`check_value`]).
pub(super) fn custom_field_values(
    sets: &[CustomFieldSet],
    entity: AvailableFor,
    doc: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut stored = Map::new();
    for (key, value) in doc.iter().filter(|(k, _)| k.starts_with('_')) {
        let set = sets
            .iter()
            .find(|s| s.id == *key)
            .ok_or_else(|| ApiError::invalid_custom_field_set_id(key.clone()))?;
        if set.available_for != entity {
            return Err(ApiError::custom_field_not_available_for_entity(format!(
                "{key}: a set for {}, not {}",
                set.available_for.name(),
                entity.name()
            )));
        }
        let checked = match (set.field_set_type, value) {
            (FieldSetType::Standard, Value::Object(values)) => {
                Value::Object(check_group(set, values, key)?)
            }
            (FieldSetType::Grouped, Value::Array(groups)) => {
                if groups.is_empty()
                    && let Some(field) = set.custom_fields.iter().find(|f| f.required)
                {
                    // Stricter reading: a grouped set with a required field needs a group.
                    return Err(ApiError::required_custom_field_missing(format!(
                        "{key}.{}",
                        field.id
                    )));
                }
                let mut checked = Vec::with_capacity(groups.len());
                for (i, group) in groups.iter().enumerate() {
                    let at = format!("{key}[{i}]");
                    let Value::Object(group) = group else {
                        return Err(ApiError::inconsistent_value_with_set_type(format!(
                            "{at}: a group is an object of field values"
                        )));
                    };
                    let mut values = group.clone();
                    if let Some(index) = values.remove("_index") {
                        // Stricter reading: Mambu answers `_index` as the group's place (a
                        // string); a body may repeat it, not reorder with it.
                        if index.as_str() != Some(i.to_string().as_str()) {
                            return Err(ApiError::invalid_custom_field_group_index(format!(
                                "{at}._index: \"{i}\" expected"
                            )));
                        }
                    }
                    let mut group = check_group(set, &values, &at)?;
                    group.insert("_index".into(), json!(i.to_string()));
                    checked.push(Value::Object(group));
                }
                Value::Array(checked)
            }
            (kind, _) => {
                return Err(ApiError::inconsistent_value_with_set_type(format!(
                    "{key}: a {} set takes {}",
                    match kind {
                        FieldSetType::Standard => "STANDARD",
                        FieldSetType::Grouped => "GROUPED",
                    },
                    match kind {
                        FieldSetType::Standard => "an object of field values",
                        FieldSetType::Grouped => "a list of objects of field values",
                    }
                )));
            }
        };
        stored.insert(key.clone(), checked);
    }
    for set in sets
        .iter()
        .filter(|s| s.available_for == entity && !stored.contains_key(&s.id))
    {
        if let Some(field) = set.custom_fields.iter().find(|f| f.required) {
            return Err(ApiError::required_custom_field_missing(format!(
                "{}.{}",
                set.id, field.id
            )));
        }
    }
    Ok(stored)
}

/// One object of field values (a STANDARD set's, or one group of a GROUPED set's), at `at`.
fn check_group(
    set: &CustomFieldSet,
    values: &Map<String, Value>,
    at: &str,
) -> Result<Map<String, Value>, ApiError> {
    for (id, value) in values {
        let field = set
            .custom_fields
            .iter()
            .find(|f| f.id == *id)
            .ok_or_else(|| ApiError::invalid_custom_field_id(format!("{at}.{id}")))?;
        check_value(field, value, &format!("{at}.{id}"))?;
    }
    if let Some(field) = set
        .custom_fields
        .iter()
        .find(|f| f.required && !values.contains_key(&f.id))
    {
        return Err(ApiError::required_custom_field_missing(format!(
            "{at}.{}",
            field.id
        )));
    }
    Ok(values.clone())
}

/// One value of `field` (errorSource `at`, which never echoes the value: it may be personal
/// data). Values are strings whatever the type (§8): stricter reading, a JSON number or boolean
/// is refused (`"46290"`, not `46290`), although Mambu's JSON reader takes numbers written as
/// strings for its own fields. Never null or empty (leave the field out instead): a required
/// field's is REQUIRED_CUSTOM_FIELD_MISSING, another's INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE
/// (stricter reading: the record says "never empty or null", not what answers it). NUMBER: a
/// decimal number; CHECKBOX: `TRUE` or `FALSE`; DATE: `YYYY-MM-DD`; SELECTION: one of the
/// options' values, exactly (INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE: the spec's closest
/// reason; it also has CF_VALUE_SELECTION_TYPE_INVALID_ERROR, of unknown use). FREE_TEXT: its
/// validation pattern, when it has one. At most [`MAX_VALUE_LENGTH`] characters.
pub(super) fn check_value(
    field: &CustomFieldDefinition,
    value: &Value,
    at: &str,
) -> Result<(), ApiError> {
    let empty = || {
        if field.required {
            ApiError::required_custom_field_missing(at)
        } else {
            ApiError::inconsistent_custom_field_value(format!(
                "{at}: empty; leave the field out instead"
            ))
        }
    };
    let text = match value {
        Value::String(text) => text,
        Value::Null => return Err(empty()),
        _ => {
            return Err(ApiError::inconsistent_custom_field_value(format!(
                "{at}: a custom field value is a JSON string, whatever the field's type ({})",
                field.field_type.name()
            )));
        }
    };
    if text.trim().is_empty() {
        return Err(empty());
    }
    if text.chars().count() > MAX_VALUE_LENGTH {
        return Err(ApiError::custom_field_value_too_long(format!(
            "{at}: more than {MAX_VALUE_LENGTH} characters"
        )));
    }
    let expected = match field.field_type {
        CustomFieldType::FreeText => None,
        CustomFieldType::Number => {
            (!is_number(text)).then(|| "a decimal number (\"46290\", \"-12.5\")".to_owned())
        }
        CustomFieldType::Checkbox => {
            (text != "TRUE" && text != "FALSE").then(|| "TRUE or FALSE".to_owned())
        }
        CustomFieldType::Date => (!is_date(text)).then(|| "a date, YYYY-MM-DD".to_owned()),
        CustomFieldType::Selection => (!field.available_options.iter().any(|o| o.value == *text))
            .then(|| {
                let options: Vec<&str> = field
                    .available_options
                    .iter()
                    .map(|o| o.value.as_str())
                    .collect();
                format!("one of {}", options.join(", "))
            }),
    };
    if let Some(expected) = expected {
        return Err(ApiError::inconsistent_custom_field_value(format!(
            "{at}: a {} field takes {expected}",
            field.field_type.name()
        )));
    }
    if let Some(pattern) = &field.validation_pattern
        && !matches_pattern(pattern, text)
    {
        return Err(ApiError::custom_field_value_not_matching_pattern(format!(
            "{at}: does not match {pattern}"
        )));
    }
    Ok(())
}

/// A decimal number as a NUMBER field takes it: an optional `-`, digits, and an optional
/// fraction. Stricter reading: no `+`, exponent, spaces or group separators.
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
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

/// A validation pattern's match: `#` a digit, `@` a letter, `$` a digit or letter, any other
/// character itself, one character each. Our reading of Mambu's "expected format for the
/// input" (the schema says no more): the whole value, no more and no less.
fn matches_pattern(pattern: &str, text: &str) -> bool {
    pattern.chars().count() == text.chars().count()
        && pattern.chars().zip(text.chars()).all(|(p, c)| match p {
            '#' => c.is_ascii_digit(),
            '@' => c.is_alphabetic(),
            '$' => c.is_alphanumeric(),
            _ => p == c,
        })
}

/// The `availableFor` a query names, in the documented lower case (`loan_account`).
fn available_for_query(name: &str) -> Option<AvailableFor> {
    AvailableFor::ALL
        .into_iter()
        .find(|a| a.name().to_lowercase() == name)
}

/// A definition's encodedKey: stable for its id (32 hex characters, as Mambu's).
fn encoded_key(kind: &str, id: &str) -> String {
    Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update(b"|")
        .chain_update(id.as_bytes())
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn field_key(id: &str) -> String {
    encoded_key("customfield", id)
}

/// A set as Mambu's `CustomFieldSetMeta`.
fn set_json(set: &CustomFieldSet, position: usize) -> Value {
    let mut out = json!({
        "encodedKey": encoded_key("customfieldset", &set.id),
        "id": set.id,
        "availableFor": set.available_for.name(),
        "fieldSetType": match set.field_set_type {
            FieldSetType::Standard => "STANDARD",
            FieldSetType::Grouped => "GROUPED",
        },
        "displaySettings": { "displayName": set.name, "builtIn": false, "position": position },
        "customFields": set.custom_fields.iter()
            .map(|f| json!({ "encodedKey": field_key(&f.id), "id": f.id }))
            .collect::<Vec<_>>(),
    });
    if let Some(description) = &set.description {
        out["description"] = json!(description);
    }
    out
}

/// The field at `position` of `set` as Mambu's `CustomFieldMeta`. Its `usage` has one entry
/// without `objectKey` (the record type: the sandbox has no client roles or product-level
/// usages); view and edit rights are all users'.
fn field_json(set: &CustomFieldSet, position: usize) -> Value {
    let field = &set.custom_fields[position];
    let mut out = json!({
        "encodedKey": field_key(&field.id),
        "id": field.id,
        "type": field.field_type.name(),
        "state": "ACTIVE",
        "availableFor": set.available_for.name(),
        "displaySettings": {
            "displayName": field.name.as_deref().unwrap_or(&field.id),
            "fieldSize": "SHORT",
            "position": position,
        },
        "usage": [{ "required": field.required, "default": field.default }],
        "viewRights": { "allUsers": true, "roles": [] },
        "editRights": { "allUsers": true, "roles": [] },
    });
    if field.field_type == CustomFieldType::Selection {
        let options: Vec<Value> = field
            .available_options
            .iter()
            .map(|o| {
                let mut option = json!({
                    "selectionKey": encoded_key(&format!("option|{}", field.id), &o.value),
                    "value": o.value,
                });
                if let Some(score) = o.score {
                    option["score"] = json!(score);
                }
                option
            })
            .collect();
        out["selectionOptions"] = json!([{ "availableOptions": options }]);
    }
    if let Some(pattern) = &field.validation_pattern {
        out["valueValidationSettings"] = json!({ "validationPattern": pattern, "unique": false });
    }
    out
}

/// Checks a client's `addresses` (Mambu's `Address`): a list of objects with only Mambu's
/// keys; `line1`, `line2`, `city`, `region`, `postcode`, `country` non-blank strings of at most
/// [`MAX_ADDRESS_FIELD_LENGTH`] characters (INVALID_ADDRESS_LINE1, ..., INVALID_COUNTRY;
/// ADDRESS_FIELD_LENGTH); `latitude` in -90..90 and `longitude` in -180..180; `indexInList`,
/// when given, its place in the list; `encodedKey` and `parentKey` are read-only and replaced.
/// The schema requires no field; stricter readings: an address needs one of the text fields,
/// a null or blank text field is refused (leave it out), and an unknown key is refused
/// (INVALID_ADDRESS).
pub(super) fn check_addresses(doc: &Map<String, Value>) -> Result<(), ApiError> {
    let items = match doc.get("addresses") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::invalid_address("addresses: a list of addresses")),
    };
    for (i, item) in items.iter().enumerate() {
        let at = format!("addresses[{i}]");
        let Value::Object(address) = item else {
            return Err(ApiError::invalid_address(format!("{at}: an object")));
        };
        for (key, value) in address {
            let source = format!("{at}.{key}");
            match key.as_str() {
                text if ADDRESS_TEXT.contains(&text) => {
                    let value = value
                        .as_str()
                        .filter(|v| !v.trim().is_empty())
                        .ok_or_else(|| ApiError::invalid_address_field(text, source.clone()))?;
                    if value.chars().count() > MAX_ADDRESS_FIELD_LENGTH {
                        return Err(ApiError::address_field_length(format!(
                            "{source}: more than {MAX_ADDRESS_FIELD_LENGTH} characters"
                        )));
                    }
                }
                "latitude" | "longitude" => {
                    let limit = if key == "latitude" { 90 } else { 180 };
                    if decimal(value).is_none_or(|d| d.abs() > limit.into()) {
                        return Err(ApiError::invalid_address(format!(
                            "{source}: a number from -{limit} to {limit}"
                        )));
                    }
                }
                "indexInList" => {
                    if count(value) != Some(i as u64) {
                        return Err(ApiError::invalid_address(format!("{source}: {i} expected")));
                    }
                }
                "encodedKey" | "parentKey" => {}
                _ => {
                    return Err(ApiError::invalid_address(format!(
                        "{source}: not a field of an address"
                    )));
                }
            }
        }
        if !ADDRESS_TEXT.iter().any(|k| address.contains_key(*k)) {
            return Err(ApiError::invalid_address(format!(
                "{at}: no line1, line2, city, region, postcode or country"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::tenant::SelectionOption;

    fn field(id: &str, field_type: CustomFieldType, required: bool) -> CustomFieldDefinition {
        CustomFieldDefinition {
            id: id.into(),
            name: None,
            field_type,
            required,
            default: false,
            available_options: if field_type == CustomFieldType::Selection {
                ["EMPLOYED", "RETIRED"]
                    .map(|value| SelectionOption {
                        value: value.into(),
                        score: None,
                    })
                    .to_vec()
            } else {
                Vec::new()
            },
            validation_pattern: None,
        }
    }

    fn sets() -> Vec<CustomFieldSet> {
        vec![
            CustomFieldSet {
                id: "_Client_Details".into(),
                name: "Client details".into(),
                description: None,
                available_for: AvailableFor::Client,
                field_set_type: FieldSetType::Standard,
                custom_fields: vec![
                    field("employment_status", CustomFieldType::Selection, true),
                    field("income", CustomFieldType::Number, false),
                    field("pep", CustomFieldType::Checkbox, false),
                    field("since", CustomFieldType::Date, false),
                    CustomFieldDefinition {
                        validation_pattern: Some("PT-###".into()),
                        ..field("tax_ref", CustomFieldType::FreeText, false)
                    },
                ],
            },
            CustomFieldSet {
                id: "_References".into(),
                name: "References".into(),
                description: None,
                available_for: AvailableFor::Client,
                field_set_type: FieldSetType::Grouped,
                custom_fields: vec![field("reference_name", CustomFieldType::FreeText, true)],
            },
            CustomFieldSet {
                id: "_Loan_Origination".into(),
                name: "Loan origination".into(),
                description: None,
                available_for: AvailableFor::LoanAccount,
                field_set_type: FieldSetType::Standard,
                custom_fields: vec![field(
                    "legacy_account_number",
                    CustomFieldType::FreeText,
                    false,
                )],
            },
        ]
    }

    fn client(values: Value) -> Result<Map<String, Value>, ApiError> {
        let mut doc = json!({ "firstName": "Ada", "lastName": "Lovelace",
            "_Client_Details": { "employment_status": "EMPLOYED" },
            "_References": [{ "reference_name": "A" }] });
        for (k, v) in values.as_object().unwrap() {
            doc[k] = v.clone();
        }
        custom_field_values(&sets(), AvailableFor::Client, doc.as_object().unwrap())
    }

    fn details(extra: Value) -> Result<Map<String, Value>, ApiError> {
        let mut set = json!({ "employment_status": "EMPLOYED" });
        for (k, v) in extra.as_object().unwrap() {
            set[k] = v.clone();
        }
        client(json!({ "_Client_Details": set }))
    }

    fn reason(result: Result<Map<String, Value>, ApiError>) -> (&'static str, String) {
        let err = result.unwrap_err();
        (err.reason, err.source.unwrap_or_default())
    }

    #[test]
    fn defined_values_pass_and_groups_gain_their_index() {
        let stored = client(json!({
            "_Client_Details": { "employment_status": "RETIRED", "income": "-12.50",
                                 "pep": "FALSE", "since": "2020-02-29", "tax_ref": "PT-123" },
            "_References": [{ "reference_name": "A" }, { "_index": "1", "reference_name": "B" }],
        }))
        .unwrap();
        assert_eq!(stored["_Client_Details"]["income"], "-12.50");
        assert_eq!(
            stored["_References"],
            json!([{ "_index": "0", "reference_name": "A" }, { "_index": "1", "reference_name": "B" }])
        );
        // A body without custom fields, for a tenant without sets.
        let doc = json!({ "firstName": "Ada" });
        assert!(
            custom_field_values(&[], AvailableFor::Client, doc.as_object().unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_undefined_set_or_another_entitys_is_refused() {
        assert_eq!(
            reason(client(json!({ "_Personal": { "nickname": "Ada" } }))),
            ("INVALID_CUSTOM_FIELD_SET_ID", "_Personal".into())
        );
        let (why, at) = reason(client(
            json!({ "_Loan_Origination": { "legacy_account_number": "L-1" } }),
        ));
        assert_eq!(why, "CUSTOM_FIELD_NOT_AVAILABLE_FOR_ENTITY");
        assert!(
            at.starts_with("_Loan_Origination: a set for LOAN_ACCOUNT"),
            "{at}"
        );
    }

    #[test]
    fn an_undefined_field_is_refused() {
        assert_eq!(
            reason(details(json!({ "nickname": "Ada" }))),
            ("INVALID_CUSTOM_FIELD_ID", "_Client_Details.nickname".into())
        );
    }

    #[test]
    fn a_required_field_missing_is_refused_naming_set_and_field() {
        let missing = (
            "REQUIRED_CUSTOM_FIELD_MISSING",
            "_Client_Details.employment_status".into(),
        );
        assert_eq!(reason(client(json!({ "_Client_Details": {} }))), missing);
        assert_eq!(reason(details(json!({ "employment_status": "" }))), missing);
        assert_eq!(
            reason(details(json!({ "employment_status": null }))),
            missing
        );
        let doc = json!({ "firstName": "Ada" });
        let absent = custom_field_values(&sets(), AvailableFor::Client, doc.as_object().unwrap());
        assert_eq!(reason(absent), missing);
        assert_eq!(
            reason(client(
                json!({ "_References": [{ "reference_name": "A" }, {}] })
            )),
            (
                "REQUIRED_CUSTOM_FIELD_MISSING",
                "_References[1].reference_name".into()
            )
        );
        assert_eq!(
            reason(client(json!({ "_References": [] }))),
            (
                "REQUIRED_CUSTOM_FIELD_MISSING",
                "_References.reference_name".into()
            )
        );
    }

    #[test]
    fn a_value_that_is_not_a_string_or_is_empty_is_refused() {
        for value in [
            json!(46290),
            json!(true),
            json!(["1"]),
            json!(""),
            json!(null),
            json!("  "),
        ] {
            let (why, at) = reason(details(json!({ "income": value })));
            assert_eq!(why, "INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE", "{value}");
            assert!(at.starts_with("_Client_Details.income: "), "{at}");
        }
    }

    #[test]
    fn each_type_refuses_what_it_does_not_take() {
        for (field, value) in [
            ("income", "12,5"),
            ("income", "1e3"),
            ("income", "+1"),
            ("income", ".5"),
            ("pep", "true"),
            ("pep", "YES"),
            ("since", "2021-02-29"),
            ("since", "01/02/2020"),
            ("since", "2020-1-5"),
            ("employment_status", "employed"),
            ("employment_status", "STUDENT"),
        ] {
            let (why, at) = reason(details(json!({ field: value })));
            assert_eq!(
                why, "INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE",
                "{field} {value}"
            );
            assert!(
                at.starts_with(&format!("_Client_Details.{field}: a ")),
                "{at}"
            );
        }
        let ok = details(json!({ "income": "46290", "pep": "TRUE" }));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_value_off_its_pattern_or_too_long_is_refused() {
        for value in ["PT-12", "PT-1234", "PT-12a", "pt-123"] {
            assert_eq!(
                reason(details(json!({ "tax_ref": value }))).0,
                "INCONSISTENT_CUSTOM_FIELD_VALUE_WITH_PATTERN",
                "{value}"
            );
        }
        assert!(matches_pattern("@$-#", "aZ-9") && !matches_pattern("@", "1"));
        let long = "x".repeat(256);
        let mut definitions = sets();
        definitions[0].custom_fields[4].validation_pattern = None;
        let doc = json!({ "_Client_Details": { "employment_status": "EMPLOYED", "tax_ref": long },
            "_References": [{ "reference_name": "A" }] });
        let err = custom_field_values(&definitions, AvailableFor::Client, doc.as_object().unwrap())
            .unwrap_err();
        assert_eq!(err.reason, "MAX_CUSTOM_FIELD_VALUE_LENGTH_EXCEEDED");
    }

    #[test]
    fn a_set_in_the_wrong_shape_or_a_wrong_group_index_is_refused() {
        for body in [
            json!({ "_Client_Details": [{ "employment_status": "EMPLOYED" }] }),
            json!({ "_Client_Details": "EMPLOYED" }),
            json!({ "_References": { "reference_name": "A" } }),
            json!({ "_References": ["A"] }),
        ] {
            assert_eq!(
                reason(client(body.clone())).0,
                "INCONSISTENT_VALUE_WITH_SET_TYPE",
                "{body}"
            );
        }
        assert_eq!(
            reason(client(
                json!({ "_References": [{ "_index": "1", "reference_name": "A" }] })
            )),
            (
                "INVALID_CUSTOM_FIELD_GROUP_INDEX",
                "_References[0]._index: \"0\" expected".into()
            )
        );
    }

    #[test]
    fn addresses_are_checked_as_mambus_address() {
        let check = |addresses: Value| {
            let doc = json!({ "addresses": addresses });
            check_addresses(doc.as_object().unwrap()).map_err(|e| (e.reason, e.source.unwrap()))
        };
        assert!(
            check(
                json!([{ "line1": "Rua Augusta 1", "city": "Lisboa", "postcode": "1100-048",
            "country": "PT", "indexInList": 0, "latitude": 38.71, "longitude": "-9.13" }])
            )
            .is_ok()
        );
        assert!(check(json!(null)).is_ok());
        assert_eq!(
            check(json!({ "city": "Lisboa" })).unwrap_err().0,
            "INVALID_ADDRESS"
        );
        assert_eq!(
            check(json!([{ "city": "Lisboa", "street": "x" }])).unwrap_err(),
            (
                "INVALID_ADDRESS",
                "addresses[0].street: not a field of an address".into()
            )
        );
        assert_eq!(check(json!([{}])).unwrap_err().0, "INVALID_ADDRESS");
        assert_eq!(
            check(json!([{ "line1": " " }])).unwrap_err(),
            ("INVALID_ADDRESS_LINE1", "addresses[0].line1".into())
        );
        assert_eq!(
            check(json!([{ "city": "Lisboa", "postcode": 1100 }])).unwrap_err(),
            ("INVALID_POSTCODE", "addresses[0].postcode".into())
        );
        assert_eq!(
            check(json!([{ "city": "Lisboa", "country": null }]))
                .unwrap_err()
                .0,
            "INVALID_COUNTRY"
        );
        assert_eq!(
            check(json!([{ "city": "x".repeat(256) }])).unwrap_err().0,
            "ADDRESS_FIELD_LENGTH"
        );
        assert_eq!(
            check(json!([{ "city": "Lisboa", "latitude": 91 }]))
                .unwrap_err()
                .0,
            "INVALID_ADDRESS"
        );
        assert_eq!(
            check(json!([{ "city": "A" }, { "city": "B", "indexInList": 0 }])).unwrap_err(),
            (
                "INVALID_ADDRESS",
                "addresses[1].indexInList: 1 expected".into()
            )
        );
    }

    #[test]
    fn definitions_answer_mambus_shapes() {
        let tenant = super::super::test_support::tenant().with_custom_field_sets(sets());
        let all = tenant.custom_field_sets(None).unwrap();
        assert_eq!(all.len(), 3);
        let loans = tenant.custom_field_sets(Some("loan_account")).unwrap();
        assert_eq!(loans.len(), 1);
        assert_eq!(loans[0]["id"], "_Loan_Origination");
        assert_eq!(loans[0]["fieldSetType"], "STANDARD");
        assert_eq!(
            loans[0]["displaySettings"]["displayName"],
            "Loan origination"
        );
        assert_eq!(loans[0]["customFields"][0]["id"], "legacy_account_number");
        assert_eq!(
            tenant
                .custom_field_sets(Some("LOAN_ACCOUNT"))
                .unwrap_err()
                .reason,
            "INVALID_PARAMETERS"
        );
        let field = tenant.custom_field("employment_status").unwrap();
        assert_eq!(field["type"], "SELECTION");
        assert_eq!(field["availableFor"], "CLIENT");
        assert_eq!(
            field["usage"],
            json!([{ "required": true, "default": false }])
        );
        assert_eq!(
            field["selectionOptions"][0]["availableOptions"][1]["value"],
            "RETIRED"
        );
        let key = field["encodedKey"].as_str().unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(tenant.custom_field(key).unwrap()["id"], "employment_status");
        assert_eq!(
            tenant.custom_field("nope").unwrap_err(),
            ApiError::custom_field_not_found()
        );
    }
}
