//! A tenant profile: one YAML file that describes a Mambu tenant as a migration meets it (its
//! time zone, branches, users and their permissions, loan and deposit products with the
//! settings that decide what a migration may do, and the client rules), served by
//! `mambu-migrate sandbox --tenant FILE` and by the embedded sandbox a plan names
//! (`target: { sandbox: FILE }`).
//!
//! Keys follow Mambu's v2 JSON (camelCase; a product is trimmed from `GET /loanproducts`), so a
//! consultant can fill a profile from a real tenant's configuration. `mambu-migrate tenant
//! schema` prints its JSON Schema. Shipped profiles: `fixtures/tenants/lenient.yaml` (the
//! built-in tenant) and `fixtures/tenants/strict.yaml` (Lisbon, more than 50 branches, four-eyes,
//! predefined fees only, no prepayments, the duplicate-client check and ID documents).
//!
//! Where a setting is absent, the profile takes the stricter reading (marked `stricter reading`
//! below): a tenant whose configuration is unknown must not be assumed to allow more than Mambu's
//! defaults do.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::products::{Branch, DepositProduct, GroupRoleName, HolderKind, LoanProduct, Products};

/// The built-in tenant: what `mambu-migrate sandbox` serves without `--tenant`, and what a
/// plan's `target: sandbox` starts.
const LENIENT: &str = include_str!("../../fixtures/tenants/lenient.yaml");

/// A tenant, as the sandbox serves it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantProfile {
    /// What the profile stands for, e.g. `Strict Lisbon bank`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The organization's time zone, an IANA id (`Europe/Lisbon`): every v2 date-time must carry
    /// its offset at that instant; `GET /setup/organization` answers it as `timeZoneID`.
    pub time_zone: String,
    /// The organization's base currency.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Who may call the API, and what each may do. At least one.
    pub users: Vec<User>,
    pub branches: Vec<Branch>,
    pub loan_products: Vec<LoanProduct>,
    pub deposit_products: Vec<DepositProduct>,
    /// The group role names a group member's role may name (Mambu's group role names
    /// configuration: `[{id, encodedKey, name}]`). Absent: none, and a member with a role is
    /// refused (`INVALID_GROUP_ROLE_NAME_KEY`).
    #[serde(default)]
    pub group_role_names: Vec<GroupRoleName>,
    #[serde(default)]
    pub client_rules: ClientRules,
    /// The tenant's custom field sets and their fields (`GET /customfieldsets`,
    /// `GET /customfields/{id}`): the only `_Set_Id` keys a client, group, loan or deposit body
    /// may carry. Absent: none (a body with custom field values is refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_field_sets: Vec<CustomFieldSet>,
    /// How long an `Idempotency-Key` is kept, a duration like `24h`, `90m` or `2s`: a retry
    /// under a key older than this is a new request (`../shared/mambu-api.md` §3), and only ids
    /// and externalIds catch its duplicate. Absent: 24 hours, an assumed value (the record does
    /// not say how long Mambu keeps keys). A short one (`2s`) rehearses keys that expired
    /// overnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key_retention: Option<String>,
}

fn default_currency() -> String {
    "EUR".to_owned()
}

/// An API user: its credentials (throwaway ones: this is a simulator's file) and its access.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    pub username: String,
    /// Basic auth password; without one the user can only use its API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The `apiKey` header's value; without one the user can only use basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    pub access: Access,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("access", &self.access)
            .finish()
    }
}

/// Mambu's `access` of a user: administrators may do everything; others only what
/// `permissions` lists (Mambu's permission names, e.g. `APPROVE_LOANS`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Access {
    #[serde(default)]
    pub administrator_access: bool,
    #[serde(default)]
    pub permissions: BTreeSet<String>,
}

impl User {
    /// Whether the user holds `permission` (administrators hold all).
    pub fn may(&self, permission: &str) -> bool {
        self.access.administrator_access || self.access.permissions.contains(permission)
    }
}

/// The rules a client must pass on creation (Mambu's client type, duplicate client fields and
/// internal controls: `../shared/mambu-api.md` §8, "Client rules").
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientRules {
    #[serde(default)]
    pub duplicate_client_check: DuplicateClientCheck,
    /// How many identification documents a new client must carry (`idDocuments[]`); 0: none.
    /// Fewer is refused with `REQUIRED_ID_DOCUMENT_MISSING`.
    #[serde(default)]
    pub required_id_documents: u32,
    /// The `documentType` values the tenant's ID document templates define; empty: any.
    #[serde(default)]
    pub id_document_types: Vec<String>,
    /// The most loan accounts one client may hold (an internal control); absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_loans_per_client: Option<u32>,
    /// What a new group must pass (`POST /groups`).
    #[serde(default)]
    pub group_rules: GroupRules,
}

/// The rules a group must pass on creation. The names of the first four are Mambu's general
/// setup's (internal controls: skyleague/mambu-sdk `src/general-setup/rest.zod.ts`);
/// `membersSameBranch` is ours.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupRules {
    /// What a group outside the size limits meets: `HARD` refuses it (`INVALID_GROUP_SIZE`),
    /// `WARNING` and `NONE` accept it. Absent: `HARD` (stricter reading: a limit set is a limit
    /// kept).
    #[serde(default)]
    pub group_size_limit_type: GroupSizeLimitType,
    /// The fewest members a group may have; absent: no minimum (Mambu: "a null value means the
    /// limit is ignored").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_group_size_limit: Option<u32>,
    /// The most members a group may have; absent: no maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_group_size_limit: Option<u32>,
    /// `UNLIMITED` (the default): a client may belong to several groups; `ONE_GROUP`: a client
    /// already in a group is refused in another (`MULTIPLE_GROUP_MEMBERSHIP`).
    #[serde(default)]
    pub multiple_group_memberships: MultipleGroupMemberships,
    /// Every member must be assigned to the group's branch (a client without one does not
    /// match a group with one; nor the reverse). Absent: not checked.
    #[serde(default)]
    pub members_same_branch: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GroupSizeLimitType {
    #[default]
    Hard,
    Warning,
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MultipleGroupMemberships {
    #[default]
    Unlimited,
    OneGroup,
}

/// Mambu's duplicate client check: which fields make two clients the same, and what happens
/// when a new client matches one (`NONE`, `WARNING`: accepted, `ERROR`: refused with
/// `DUPLICATE_CLIENT`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DuplicateClientCheck {
    #[serde(default)]
    pub action: DuplicateAction,
    #[serde(default)]
    pub fields: Vec<DuplicateField>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DuplicateAction {
    #[default]
    None,
    Warning,
    Error,
}

/// The field combinations Mambu's "Duplicate Client Fields" configuration offers (the names are
/// ours: the public record names them only in its user interface's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DuplicateField {
    /// An identification document with the same `documentId` and `documentType`.
    DocumentIdAndType,
    HomePhone,
    MobilePhone,
    EmailAddress,
    FirstNameAndLastName,
    LastNameAndDateOfBirth,
}

/// A custom field set: Mambu's `CustomFieldSetMeta` (skyleague/mambu-sdk
/// `src/custom-field-sets/rest.zod.ts`), trimmed, with its fields inline.
///
/// ```yaml
/// customFieldSets:
///   - id: _Client_Details
///     name: Client details
///     availableFor: CLIENT
///     fieldSetType: STANDARD
///     customFields:
///       - { id: employment_status, type: SELECTION, required: true,
///           availableOptions: [{ value: EMPLOYED }, { value: RETIRED }] }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomFieldSet {
    /// Mambu's set id: starts with `_` (`_Client_Details`), unique in the tenant. Values sit
    /// under it in a body: `"_Client_Details": {"employment_status": "RETIRED"}`.
    pub id: String,
    /// Its display name (Mambu's `displaySettings.displayName`).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The entity whose bodies carry it.
    pub available_for: AvailableFor,
    /// STANDARD: one value per field (`"_Set": {...}`); GROUPED: a list of groups
    /// (`"_Set": [{...}, {...}]`), e.g. several references. Required, as Mambu requires it
    /// (`CUSTOM_FIELD_SET_TYPE_REQUIRED`).
    pub field_set_type: FieldSetType,
    /// Its fields, at least one.
    pub custom_fields: Vec<CustomFieldDefinition>,
}

/// Mambu's `availableFor` of a custom field set or definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AvailableFor {
    Client,
    Group,
    CreditArrangement,
    LoanAccount,
    Guarantor,
    Asset,
    DepositAccount,
    DepositProduct,
    TransactionChannel,
    TransactionType,
    Branch,
    Centre,
    User,
}

impl AvailableFor {
    pub const ALL: [AvailableFor; 13] = [
        AvailableFor::Client,
        AvailableFor::Group,
        AvailableFor::CreditArrangement,
        AvailableFor::LoanAccount,
        AvailableFor::Guarantor,
        AvailableFor::Asset,
        AvailableFor::DepositAccount,
        AvailableFor::DepositProduct,
        AvailableFor::TransactionChannel,
        AvailableFor::TransactionType,
        AvailableFor::Branch,
        AvailableFor::Centre,
        AvailableFor::User,
    ];

    /// The name Mambu's JSON gives it (`LOAN_ACCOUNT`).
    pub fn name(self) -> &'static str {
        match self {
            AvailableFor::Client => "CLIENT",
            AvailableFor::Group => "GROUP",
            AvailableFor::CreditArrangement => "CREDIT_ARRANGEMENT",
            AvailableFor::LoanAccount => "LOAN_ACCOUNT",
            AvailableFor::Guarantor => "GUARANTOR",
            AvailableFor::Asset => "ASSET",
            AvailableFor::DepositAccount => "DEPOSIT_ACCOUNT",
            AvailableFor::DepositProduct => "DEPOSIT_PRODUCT",
            AvailableFor::TransactionChannel => "TRANSACTION_CHANNEL",
            AvailableFor::TransactionType => "TRANSACTION_TYPE",
            AvailableFor::Branch => "BRANCH",
            AvailableFor::Centre => "CENTRE",
            AvailableFor::User => "USER",
        }
    }
}

/// Mambu's `fieldSetType`: how a set's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FieldSetType {
    Standard,
    Grouped,
}

/// A custom field definition: Mambu's `CustomFieldMeta` (skyleague/mambu-sdk
/// `src/custom-fields/rest.zod.ts`), trimmed. Its `availableFor` is its set's.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomFieldDefinition {
    /// Mambu's field id, unique in the tenant (across sets); it does not start with `_`.
    pub id: String,
    /// Its display name (`displaySettings.displayName`); the id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub field_type: CustomFieldType,
    /// Mambu's `usage[].required`: a body without a value is refused
    /// (`REQUIRED_CUSTOM_FIELD_MISSING`).
    #[serde(default)]
    pub required: bool,
    /// Mambu's `usage[].default`: shown by default on the create and edit pages (it gives no
    /// value: Mambu's definitions carry no default value).
    #[serde(default)]
    pub default: bool,
    /// The options of a SELECTION field (Mambu's `selectionOptions[].availableOptions`): a
    /// value must be one of their `value`s. Only for SELECTION, and at least one there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub available_options: Vec<SelectionOption>,
    /// Mambu's `valueValidationSettings.validationPattern`, FREE_TEXT only: `#` a digit, `@` a
    /// letter, `$` a digit or letter, anything else itself (e.g. `PT-######`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_pattern: Option<String>,
}

/// Mambu's custom field `type`s the sandbox checks values of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CustomFieldType {
    /// Any text.
    FreeText,
    /// A decimal number, written as a string (`"46290"`, `"-12.5"`).
    Number,
    /// `"TRUE"` or `"FALSE"`.
    Checkbox,
    /// `YYYY-MM-DD`.
    Date,
    /// One of the field's `availableOptions` values.
    Selection,
}

impl CustomFieldType {
    pub fn name(self) -> &'static str {
        match self {
            CustomFieldType::FreeText => "FREE_TEXT",
            CustomFieldType::Number => "NUMBER",
            CustomFieldType::Checkbox => "CHECKBOX",
            CustomFieldType::Date => "DATE",
            CustomFieldType::Selection => "SELECTION",
        }
    }
}

/// One option of a SELECTION field (Mambu's `CustomFieldAvailableOption`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectionOption {
    /// The value a body sends (`EMPLOYED`).
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// What serde cannot check in the custom field sets: Mambu's id rules (set ids start with `_`,
/// ids unique: sets among sets, fields across the tenant), a field in every set, options for
/// SELECTION fields only (non-empty, unique), patterns for FREE_TEXT only.
fn check_custom_field_sets(sets: &[CustomFieldSet]) -> Result<(), String> {
    unique("customFieldSets", sets.iter().map(|s| s.id.as_str()))?;
    unique(
        "customFields",
        sets.iter()
            .flat_map(|s| s.custom_fields.iter())
            .map(|f| f.id.as_str()),
    )?;
    for set in sets {
        let at = format!("customFieldSets: `{}`", set.id);
        if set.id.len() < 2 || !set.id.starts_with('_') {
            return Err(format!(
                "{at}: a set id starts with `_` and names the set (`_Client_Details`)"
            ));
        }
        if set.custom_fields.is_empty() {
            return Err(format!("{at}: has no customFields"));
        }
        for field in &set.custom_fields {
            let at = format!("{at}, field `{}`", field.id);
            if field.id.is_empty() || field.id.starts_with('_') {
                return Err(format!(
                    "{at}: a field id is not empty and does not start with `_` (which names sets)"
                ));
            }
            let selection = field.field_type == CustomFieldType::Selection;
            if selection && field.available_options.is_empty() {
                return Err(format!("{at}: a SELECTION field needs availableOptions"));
            }
            if !selection && !field.available_options.is_empty() {
                return Err(format!(
                    "{at}: only a SELECTION field has availableOptions (this one is {})",
                    field.field_type.name()
                ));
            }
            if field
                .available_options
                .iter()
                .any(|o| o.value.trim().is_empty())
            {
                return Err(format!("{at}: an option's value is empty"));
            }
            unique(
                &format!("{at}: availableOptions"),
                field.available_options.iter().map(|o| o.value.as_str()),
            )?;
            if field.validation_pattern.is_some() && field.field_type != CustomFieldType::FreeText {
                return Err(format!(
                    "{at}: only a FREE_TEXT field has a validationPattern"
                ));
            }
            if field.validation_pattern.as_deref() == Some("") {
                return Err(format!("{at}: the validationPattern is empty"));
            }
        }
    }
    Ok(())
}

impl TenantProfile {
    /// The built-in tenant (`fixtures/tenants/lenient.yaml`).
    pub fn lenient() -> Self {
        Self::parse(LENIENT, "fixtures/tenants/lenient.yaml")
            .expect("the built-in tenant profile is valid (tested)")
    }

    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the tenant profile {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a profile; errors name `origin` and, for YAML, the line and column.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let profile: TenantProfile = serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            anyhow::anyhow!("{origin}{at}: {e}")
        })?;
        profile
            .check()
            .map_err(|problem| anyhow::anyhow!("{origin}: {problem}"))?;
        Ok(profile)
    }

    /// What serde cannot check: the zone, unique names and keys, credentials.
    fn check(&self) -> Result<(), String> {
        self.zone()?;
        self.key_retention()?;
        if self.users.is_empty() {
            return Err("users: at least one user is needed to call the API".into());
        }
        unique("users", self.users.iter().map(|u| u.username.as_str()))?;
        for user in &self.users {
            if user.password.is_none() && user.api_key.is_none() {
                return Err(format!(
                    "users: `{}` has neither a password nor an apiKey",
                    user.username
                ));
            }
            for permission in &user.access.permissions {
                if !PERMISSIONS.contains(&permission.as_str()) {
                    return Err(format!(
                        "users: `{}` holds `{permission}`, which is not a Mambu permission the \
                         sandbox knows (see PERMISSIONS in src/sandbox/tenant.rs)",
                        user.username
                    ));
                }
            }
        }
        unique(
            "api keys",
            self.users.iter().filter_map(|u| u.api_key.as_deref()),
        )?;
        unique("branches", self.branches.iter().map(|b| b.id.as_str()))?;
        unique(
            "loanProducts",
            self.loan_products.iter().map(|p| p.id.as_str()),
        )?;
        unique(
            "depositProducts",
            self.deposit_products.iter().map(|p| p.id.as_str()),
        )?;
        unique(
            "encodedKeys",
            self.branches
                .iter()
                .map(|b| b.encoded_key.as_str())
                .chain(self.loan_products.iter().map(|p| p.encoded_key.as_str()))
                .chain(self.deposit_products.iter().map(|p| p.encoded_key.as_str()))
                .chain(
                    self.loan_products
                        .iter()
                        .flat_map(|p| p.fees_settings.fees.iter())
                        .map(|f| f.encoded_key.as_str()),
                )
                .chain(self.group_role_names.iter().map(|r| r.encoded_key.as_str())),
        )?;
        unique(
            "groupRoleNames",
            self.group_role_names.iter().map(|r| r.id.as_str()),
        )?;
        for product in &self.deposit_products {
            if product
                .availability_settings
                .available_for
                .contains(&HolderKind::SolidarityGroups)
            {
                return Err(format!(
                    "depositProducts: `{}` is available for SOLIDARITY_GROUPS, which only loan \
                     products offer (INDIVIDUALS, PURE_GROUPS)",
                    product.id
                ));
            }
        }
        for product in &self.loan_products {
            let security = &product.security_settings;
            if let Some(percent) = security.required_guaranties {
                if percent < Decimal::ZERO || percent > Decimal::ONE_HUNDRED {
                    return Err(format!(
                        "loanProducts: `{}` requires {percent}% of securities                          (securitySettings.requiredGuaranties is a percentage, 0 to 100)",
                        product.id
                    ));
                }
                if percent > Decimal::ZERO
                    && !security.is_guarantors_enabled
                    && !security.is_collateral_enabled
                {
                    return Err(format!(
                        "loanProducts: `{}` requires {percent}% of securities but accepts                          neither guarantors nor collateral: no account of it could be approved                          (set securitySettings.isGuarantorsEnabled or isCollateralEnabled)",
                        product.id
                    ));
                }
            }
        }
        let rules = &self.client_rules.group_rules;
        if let (Some(min), Some(max)) = (rules.min_group_size_limit, rules.max_group_size_limit)
            && min > max
        {
            return Err(format!(
                "clientRules.groupRules: minGroupSizeLimit {min} is above maxGroupSizeLimit {max}"
            ));
        }
        check_custom_field_sets(&self.custom_field_sets)?;
        Ok(())
    }

    /// The time zone, parsed.
    /// How long an idempotency key is kept (`idempotencyKeyRetention`, or 24 hours).
    pub fn key_retention(&self) -> Result<chrono::TimeDelta, String> {
        let Some(text) = &self.idempotency_key_retention else {
            return Ok(super::idempotency::DEFAULT_RETENTION);
        };
        let seconds = crate::estimate::timing::parse_duration(text)
            .map_err(|e| format!("idempotencyKeyRetention: {e}"))?;
        chrono::TimeDelta::try_milliseconds((seconds * 1000.0).round() as i64)
            .ok_or_else(|| format!("idempotencyKeyRetention: `{text}` is too long"))
    }

    pub fn zone(&self) -> Result<chrono_tz::Tz, String> {
        self.time_zone.parse().map_err(|_| {
            format!(
                "timeZone: `{}` is not an IANA time zone (e.g. Europe/Lisbon, UTC)",
                self.time_zone
            )
        })
    }

    /// Its products and branches, as the sandbox's state holds them.
    pub fn products(&self) -> Products {
        Products {
            loan_products: self.loan_products.clone(),
            deposit_products: self.deposit_products.clone(),
            branches: self.branches.clone(),
            group_role_names: self.group_role_names.clone(),
        }
    }

    /// The user these credentials name: an API key, or a basic-auth user name and password.
    pub fn user_by_api_key(&self, key: &[u8]) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.api_key.as_deref().is_some_and(|k| k.as_bytes() == key))
    }

    pub fn user_by_password(&self, username: &str, password: &str) -> Option<&User> {
        self.users.iter().find(|u| {
            u.username == username && u.password.as_deref().is_some_and(|p| p == password)
        })
    }

    pub fn user(&self, username: &str) -> Option<&User> {
        self.users.iter().find(|u| u.username == username)
    }

    /// The JSON Schema of a profile file.
    pub fn schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(TenantProfile))
            .expect("a JSON Schema serialises")
    }
}

fn unique<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(format!("{what}: `{name}` appears twice"));
        }
    }
    Ok(())
}

/// The Mambu permissions a profile may grant (the names of Mambu's `access.permissions`,
/// skyleague/mambu-sdk `src/users/rest.zod.ts`; `DIBURSE_LOANS` is Mambu's own spelling). The
/// sandbox checks those of the calls it serves ([`required_permission`] in the HTTP layer);
/// the others are accepted so that a real user's list can be pasted in.
pub const PERMISSIONS: &[&str] = &[
    "VIEW_CLIENT_DETAILS",
    "CREATE_CLIENT",
    "EDIT_CLIENT",
    "DELETE_CLIENT",
    "VIEW_GROUP_DETAILS",
    "CREATE_GROUP",
    "EDIT_GROUP",
    "VIEW_LOAN_PRODUCT_DETAILS",
    "VIEW_SAVINGS_PRODUCT_DETAILS",
    "VIEW_BRANCH_DETAILS",
    "VIEW_LOAN_ACCOUNT_DETAILS",
    "CREATE_LOAN_ACCOUNT",
    "EDIT_LOAN_ACCOUNT",
    "DELETE_LOAN_ACCOUNT",
    // Rollback (issue 19).
    "DELETE_CLIENTS",
    "DELETE_SAVINGS_ACCOUNT",
    "APPLY_LOAN_ADJUSTMENTS",
    "APPLY_SAVINGS_ADJUSTMENTS",
    "REVERSE_LOAN_ACCOUNT_WRITE_OFF",
    "DELETE_GROUP",
    "ENTER_REPAYMENT",
    "EDIT_REPAYMENT_SCHEDULE",
    "APPROVE_LOANS",
    "REQUEST_LOAN_APPROVAL",
    "DIBURSE_LOANS",
    "WITHDRAW_LOAN_ACCOUNTS",
    "REJECT_LOANS",
    "CLOSE_LOAN_ACCOUNTS",
    "WRITE_OFF_LOAN_ACCOUNTS",
    "APPLY_LOAN_FEES",
    "BACKDATE_LOAN_TRANSACTIONS",
    "LINK_ACCOUNTS",
    "LOCK_LOAN_ACCOUNTS",
    "EDIT_LOAN_TRANCHES",
    "VIEW_SAVINGS_ACCOUNT_DETAILS",
    "CREATE_SAVINGS_ACCOUNT",
    "EDIT_SAVINGS_ACCOUNT",
    "MAKE_DEPOSIT",
    "MAKE_BULK_DEPOSITS",
    "MAKE_WITHDRAWAL",
    "APPROVE_SAVINGS",
    "CLOSE_SAVINGS_ACCOUNTS",
    "APPLY_SAVINGS_FEES",
    "BACKDATE_SAVINGS_TRANSACTIONS",
    "VIEW_ORGANIZATION_DETAILS",
    "VIEW_CUSTOM_FIELD",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_profiles_load() {
        let lenient = TenantProfile::lenient();
        assert_eq!(lenient.zone().unwrap(), chrono_tz::Tz::UTC);
        let strict = TenantProfile::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tenants/strict.yaml"),
        )
        .unwrap();
        assert_eq!(strict.zone().unwrap(), chrono_tz::Europe::Lisbon);
        assert!(strict.branches.len() > 50, "more than one page of branches");
        assert!(strict.users.len() >= 2, "a creator and an approver");
    }

    #[test]
    fn a_bad_profile_is_refused_saying_where() {
        let lenient = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tenants/lenient.yaml"),
        )
        .unwrap();
        let zone = lenient.replace("timeZone: UTC", "timeZone: Lisbon");
        let err = TenantProfile::parse(&zone, "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.yaml") && err.contains("`Lisbon`"), "{err}");

        let typo = lenient.replace("timeZone:", "timezone:");
        let err = TenantProfile::parse(&typo, "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t.yaml:") && err.contains("timezone"),
            "{err}"
        );

        let permission = lenient.replace("administratorAccess: true", "permissions: [APPROVE]");
        let err = TenantProfile::parse(&permission, "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`APPROVE`"), "{err}");
    }

    #[test]
    fn group_settings_load_and_inconsistent_ones_are_refused() {
        let strict = TenantProfile::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tenants/strict.yaml"),
        )
        .unwrap();
        let rules = &strict.client_rules.group_rules;
        assert_eq!(rules.group_size_limit_type, GroupSizeLimitType::Hard);
        assert_eq!(
            (rules.min_group_size_limit, rules.max_group_size_limit),
            (Some(3), Some(30))
        );
        assert_eq!(
            rules.multiple_group_memberships,
            MultipleGroupMemberships::OneGroup
        );
        assert_eq!(strict.group_role_names.len(), 4);
        let products = strict.products();
        assert!(
            products
                .loan_product("MICRO")
                .unwrap()
                .availability_settings
                .allows("GROUP")
        );
        assert!(
            !products
                .loan_product("PL-STD")
                .unwrap()
                .availability_settings
                .allows("GROUP")
        );
        let lenient = TenantProfile::lenient();
        assert_eq!(lenient.client_rules.group_rules.min_group_size_limit, None);
        assert_eq!(
            lenient.client_rules.group_rules.multiple_group_memberships,
            MultipleGroupMemberships::Unlimited
        );

        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tenants/strict.yaml"),
        )
        .unwrap();
        let limits = text.replace("minGroupSizeLimit: 3", "minGroupSizeLimit: 31");
        let err = TenantProfile::parse(&limits, "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("minGroupSizeLimit 31"), "{err}");
        let solidarity = text.replace(
            "type: REGULAR_SAVINGS,\n      availabilitySettings: { availableFor: [INDIVIDUALS, PURE_GROUPS] }",
            "type: REGULAR_SAVINGS,\n      availabilitySettings: { availableFor: [SOLIDARITY_GROUPS] }",
        );
        assert_ne!(solidarity, text);
        let err = TenantProfile::parse(&solidarity, "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`SAV-STD`"), "{err}");
        let role = text.replace("id: MEMBER,", "id: LEADER,");
        let err = TenantProfile::parse(&role, "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("groupRoleNames: `LEADER`"), "{err}");
    }

    #[test]
    fn custom_field_sets_are_checked_on_load() {
        let strict = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tenants/strict.yaml"),
        )
        .unwrap();
        let profile = TenantProfile::parse(&strict, "s.yaml").unwrap();
        let ids: Vec<&str> = profile
            .custom_field_sets
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(ids, ["_Client_Details", "_Loan_Origination"]);
        let required: Vec<&str> = profile
            .custom_field_sets
            .iter()
            .flat_map(|s| &s.custom_fields)
            .filter(|f| f.required)
            .map(|f| f.id.as_str())
            .collect();
        assert_eq!(
            required,
            ["employment_status", "legacy_account_number"],
            "what plans/sample.yaml maps"
        );
        for (from, to, says) in [
            (
                "id: _Loan_Origination",
                "id: _Client_Details",
                "`_Client_Details` appears twice",
            ),
            (
                "id: _Loan_Origination",
                "id: Loan_Origination",
                "starts with `_`",
            ),
            (
                "id: legacy_account_number",
                "id: employment_status",
                "`employment_status` appears twice",
            ),
            (
                "type: SELECTION",
                "type: FREE_TEXT",
                "only a SELECTION field has availableOptions",
            ),
            (
                "{ value: STUDENT }",
                "{ value: RETIRED }",
                "`RETIRED` appears twice",
            ),
            ("availableFor: LOAN_ACCOUNT", "availableFor: LOANS", "LOANS"),
            (
                "fieldSetType: STANDARD\n    customFields:\n      - { id: legacy",
                "customFields:\n      - { id: legacy",
                "fieldSetType",
            ),
            (
                "type: DATE, required",
                "type: DATE, validationPattern: '##', required",
                "only a FREE_TEXT field has a validationPattern",
            ),
        ] {
            assert!(strict.contains(from), "{from}");
            let err = TenantProfile::parse(&strict.replacen(from, to, 1), "s.yaml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{from} -> {to}: {err}");
        }
        let options = strict.find("        availableOptions:").unwrap();
        let end = strict[options..].find("  - id: _Loan_Origination").unwrap() + options;
        let no_options = format!("{}{}", &strict[..options], &strict[end..]);
        let err = TenantProfile::parse(&no_options, "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a SELECTION field needs availableOptions"),
            "{err}"
        );
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let text = format!("{:?}", TenantProfile::lenient());
        assert!(!text.contains("sandbox-api-key"), "{text}");
    }
}
