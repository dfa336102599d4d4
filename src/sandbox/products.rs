//! The tenant's configuration the sandbox enforces: loan and deposit products and branches.
//!
//! The JSON shape follows Mambu's v2 product resources (`loanAmountSettings.loanAmount`,
//! `scheduleSettings.numInstallments`, `scheduleSettings.repaymentScheduleEditOptions`,
//! `interestSettings.interestRateSettings`, `accountLinkSettings`), so a file exported from a
//! real tenant's `GET /loanproducts` can be trimmed into a `--products` file.
//!
//! A loan product's `scheduleSettings.repaymentScheduleEditOptions` lists what
//! `PUT /loans/{id}/schedule` may change on its accounts (skyleague/mambu-sdk,
//! `src/loan-products/rest.zod.ts`): `ADJUST_PAYMENT_DATES` (due dates),
//! `ADJUST_PRINCIPAL_PAYMENT_SCHEDULE`, `ADJUST_INTEREST_PAYMENT_SCHEDULE`,
//! `ADJUST_FEE_PAYMENT_SCHEDULE` (the amounts), `ADJUST_NUMBER_OF_INSTALLMENTS` (adding or
//! removing installments), `ADJUST_PENALTY_PAYMENT_SCHEDULE`, `ADJUST_PAYMENT_HOLIDAYS`. Left
//! out, the list is empty: the product's schedules cannot be edited at all.

use std::fmt;
use std::path::Path;

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Everything `--products FILE` may set.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Products {
    pub loan_products: Vec<LoanProduct>,
    pub deposit_products: Vec<DepositProduct>,
    #[serde(default)]
    pub branches: Vec<Branch>,
    /// The tenant's group role names (a tenant profile's `groupRoleNames`): what a group
    /// member's `roles[].groupRoleNameKey` may name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_role_names: Vec<GroupRoleName>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoanProduct {
    pub id: String,
    pub encoded_key: String,
    pub name: String,
    /// FIXED_TERM_LOAN, DYNAMIC_TERM_LOAN, ...: fixed-term accounts need `installmentNumber` on fees.
    #[serde(rename = "type")]
    pub product_type: String,
    #[serde(default = "default_currency")]
    pub currency: String,
    pub loan_amount_settings: LoanAmountSettings,
    pub schedule_settings: ProductScheduleSettings,
    #[serde(default)]
    pub interest_settings: Option<ProductInterestSettings>,
    #[serde(default)]
    pub account_link_settings: AccountLinkSettings,
    /// Arbitrary fees allowed or not, and the predefined fees. Absent: no arbitrary fees and no
    /// predefined ones (the stricter reading: Mambu allows arbitrary fees "only if true").
    #[serde(default)]
    pub fees_settings: FeesSettings,
    /// Prepayments and future payments. Absent: neither is accepted (the stricter reading).
    #[serde(default)]
    pub payment_settings: PaymentSettings,
    /// Four-eyes approval. Absent: off (Mambu's default).
    #[serde(default)]
    pub four_eyes_principle: FourEyesPrinciple,
    /// Who may hold its accounts. Absent: individuals only (the stricter reading).
    #[serde(default)]
    pub availability_settings: AvailabilitySettings,
    /// Mambu's `trancheSettings` (skyleague/mambu-sdk `src/loan-products/rest.zod.ts`,
    /// `TrancheSettings`): how many tranches an account of a TRANCHED_LOAN product may have.
    /// Absent: no limit beyond the tranches summing to the loan amount (issue 18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tranche_settings: Option<TrancheSettings>,
    /// Mambu's `securitySettings` (skyleague/mambu-sdk `src/loan-products/rest.zod.ts`,
    /// `SecuritySettings`): whether its accounts may carry guarantors and collateral assets,
    /// and the securities percentage of the loan amount an account needs to be approved.
    /// Absent: neither guarantors nor assets accepted, none required (the stricter reading:
    /// Mambu's fields are optional and a product is never assumed to accept securities).
    #[serde(default)]
    pub security_settings: SecuritySettings,
}

/// Mambu's `securitySettings` of a loan product (issue 18).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecuritySettings {
    /// `guarantors[]` (clients or groups guaranteeing, with or without a deposit account of
    /// theirs) accepted on its accounts (GUARANTOR_NOT_ALLOWED_BY_PRODUCT otherwise). Absent:
    /// false.
    #[serde(default)]
    pub is_guarantors_enabled: bool,
    /// `assets[]` (collateral) accepted on its accounts (COLLATERAL_NOT_ALLOWED_BY_PRODUCT
    /// otherwise). Absent: false.
    #[serde(default)]
    pub is_collateral_enabled: bool,
    /// The securities percentage of the loan amount (guarantees plus assets) an account needs
    /// to be approved (INSUFFICIENT_GUARANTEES otherwise). Absent: none required.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "as_number"
    )]
    #[schemars(with = "Option<f64>")]
    pub required_guaranties: Option<Decimal>,
}

impl SecuritySettings {
    /// The securities an account of `amount` needs to be approved, when the product requires
    /// any: `requiredGuaranties` percent of it.
    pub fn required_for(&self, amount: Decimal) -> Option<Decimal> {
        self.required_guaranties
            .filter(|p| *p > Decimal::ZERO)
            .map(|percent| amount * percent / Decimal::ONE_HUNDRED)
    }
}

/// Mambu's `trancheSettings` of a loan product.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrancheSettings {
    /// The number of tranches an account may have (MORE_TRANCHES_THAN_ALLOWED beyond it).
    #[serde(default)]
    pub max_number_of_tranches: Option<u32>,
}

/// Mambu's `availabilitySettings` of a loan or deposit product (skyleague/mambu-sdk
/// `src/loan-products/rest.zod.ts`, `ProductAvailabilitySettings`): the holders its accounts
/// may have. A loan or deposit whose `accountHolderType` the list does not cover is refused
/// (`INVALID_PARAMATERS_FOR_PRODUCT`, Mambu's spelling).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AvailabilitySettings {
    /// Absent: `[INDIVIDUALS]` (stricter reading: Mambu's schema leaves it optional and does
    /// not say what an absent list allows; a product is never assumed open to groups).
    #[serde(default = "individuals")]
    pub available_for: Vec<HolderKind>,
}

impl Default for AvailabilitySettings {
    fn default() -> Self {
        Self {
            available_for: individuals(),
        }
    }
}

fn individuals() -> Vec<HolderKind> {
    vec![HolderKind::Individuals]
}

/// One of Mambu's `availableFor` values (deposit products know only the first two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HolderKind {
    /// Accounts held by a client (`accountHolderType: CLIENT`).
    Individuals,
    /// Accounts held by a group (`accountHolderType: GROUP`).
    PureGroups,
    /// Solidarity group loans: a group's loan split among its members. The sandbox does not
    /// model the split, so this alone does not open a product to `accountHolderType: GROUP`
    /// (stricter reading).
    SolidarityGroups,
}

impl AvailabilitySettings {
    /// Whether an account of this product may have a holder of `accountHolderType` `kind`
    /// (`CLIENT` or `GROUP`).
    pub fn allows(&self, kind: &str) -> bool {
        let needed = match kind {
            "CLIENT" => HolderKind::Individuals,
            "GROUP" => HolderKind::PureGroups,
            _ => return false,
        };
        self.available_for.contains(&needed)
    }

    /// The list as Mambu writes it, for a refusal's errorSource.
    pub fn describe(&self) -> String {
        self.available_for
            .iter()
            .map(|a| match a {
                HolderKind::Individuals => "INDIVIDUALS",
                HolderKind::PureGroups => "PURE_GROUPS",
                HolderKind::SolidarityGroups => "SOLIDARITY_GROUPS",
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Mambu's `feesSettings` of a loan product.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeesSettings {
    /// A fee with an amount and no `predefinedFeeKey` (an arbitrary fee) is accepted only when
    /// true (`ARBITRARY_FEE_NOT_ALLOWED`).
    #[serde(default)]
    pub allow_arbitrary_fees: bool,
    #[serde(default)]
    pub fees: Vec<PredefinedFee>,
}

/// One of a product's predefined fees (Mambu's `PredefinedFee`, trimmed).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredefinedFee {
    pub id: String,
    pub encoded_key: String,
    pub name: String,
    /// The fee's fixed amount; absent: the amount comes with each fee transaction.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "as_number"
    )]
    #[schemars(with = "Option<f64>")]
    pub amount: Option<Decimal>,
    /// `MANUAL` fees are the ones `POST /loans/{id}/fee-transactions` applies.
    #[serde(default = "manual")]
    pub trigger: String,
    #[serde(default = "active")]
    pub state: String,
}

fn manual() -> String {
    "MANUAL".to_owned()
}
fn active() -> String {
    "ACTIVE".to_owned()
}

/// Mambu's `paymentSettings` of a loan product (what a migration meets of it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentSettings {
    #[serde(default)]
    pub prepayment_settings: PrepaymentSettings,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrepaymentSettings {
    /// Whether a repayment may pay more than is due at its value date (`PREPAYMENT_NOT_ALLOWED_ERROR`).
    #[serde(default)]
    pub prepayment_acceptance: PrepaymentAcceptance,
    /// Whether a repayment may carry a value date after today (`FUTURE_PAYMENT_NOT_ALLOWED_ERROR`).
    #[serde(default)]
    pub future_payments_acceptance: FuturePaymentsAcceptance,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PrepaymentAcceptance {
    AcceptPrepayments,
    #[default]
    NoPrepayments,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FuturePaymentsAcceptance {
    #[default]
    NoFuturePayments,
    AcceptFuturePayments,
    AcceptOverpayments,
}

/// Mambu's `fourEyesPrinciple` of a loan product.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FourEyesPrinciple {
    /// The user who approves an account must not be the one who created it.
    #[serde(default)]
    pub active_for_loan_approval: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoanAmountSettings {
    pub loan_amount: Limits<Decimal>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductScheduleSettings {
    pub num_installments: Limits<u32>,
    /// What a schedule edit may change; empty: nothing (the product does not allow editing).
    #[serde(default)]
    pub repayment_schedule_edit_options: Vec<ScheduleEditOption>,
}

/// One of Mambu's `repaymentScheduleEditOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScheduleEditOption {
    AdjustPaymentDates,
    AdjustPrincipalPaymentSchedule,
    AdjustInterestPaymentSchedule,
    AdjustFeePaymentSchedule,
    AdjustPenaltyPaymentSchedule,
    AdjustNumberOfInstallments,
    AdjustPaymentHolidays,
}

/// Its name in Mambu's JSON, as serde writes it.
impl fmt::Display for ScheduleEditOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => Err(fmt::Error),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductInterestSettings {
    pub interest_rate_settings: Vec<InterestRateSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterestRateSettings {
    pub interest_rate: Limits<Decimal>,
}

/// A product's bounds on a value; an absent bound does not constrain. Written as JSON numbers.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits<T> {
    #[serde(default)]
    pub min_value: Option<T>,
    #[serde(default)]
    pub max_value: Option<T>,
    #[serde(default)]
    pub default_value: Option<T>,
}

impl LoanProduct {
    /// Whether a schedule edit may change what `option` names.
    pub fn allows(&self, option: ScheduleEditOption) -> bool {
        self.schedule_settings
            .repayment_schedule_edit_options
            .contains(&option)
    }

    /// A fixed-term product: its accounts' schedules are computed once (installment numbers on
    /// fees; a schedule edit may only lower the total interest). A TRANCHED_LOAN product's
    /// accounts have a fixed term too (Mambu's tranched loans are fixed-term loans disbursed
    /// in parts).
    pub fn is_fixed_term(&self) -> bool {
        matches!(
            self.product_type.as_str(),
            "FIXED_TERM_LOAN" | "TRANCHED_LOAN"
        )
    }

    /// A TRANCHED_LOAN product: its accounts are created with `tranches[]` and disbursed one
    /// tranche at a time (issue 18).
    pub fn is_tranched(&self) -> bool {
        self.product_type == "TRANCHED_LOAN"
    }

    /// A dynamic-term product: its accounts' schedules are recomputed as they go (a schedule
    /// edit is refused while the account is APPROVED).
    pub fn is_dynamic_term(&self) -> bool {
        matches!(
            self.product_type.as_str(),
            "DYNAMIC_TERM_LOAN" | "DYNAMIC_MORTGAGE"
        )
    }
}

impl<T: fmt::Display> Serialize for Limits<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in [
            ("minValue", &self.min_value),
            ("maxValue", &self.max_value),
            ("defaultValue", &self.default_value),
        ] {
            if let Some(value) = value {
                map.serialize_entry(key, &Number(value.to_string()))?;
            }
        }
        map.end()
    }
}

/// A decimal's text written as a number (an integer when it is one), in JSON and YAML alike.
struct Number(String);

impl Serialize for Number {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Ok(n) = self.0.parse::<i64>() {
            serializer.serialize_i64(n)
        } else {
            let n: f64 = self.0.parse().map_err(serde::ser::Error::custom)?;
            serializer.serialize_f64(n)
        }
    }
}

impl<T: PartialOrd + Copy> Limits<T> {
    pub fn contains(&self, value: T) -> bool {
        self.min_value.is_none_or(|min| value >= min)
            && self.max_value.is_none_or(|max| value <= max)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountLinkSettings {
    pub enabled: bool,
    /// Only deposits of this product may settle the loan, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linkable_deposit_product_key: Option<String>,
    #[serde(default)]
    pub linked_account_options: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DepositProduct {
    pub id: String,
    pub encoded_key: String,
    pub name: String,
    /// CURRENT_ACCOUNT, REGULAR_SAVINGS, ...
    #[serde(rename = "type")]
    pub product_type: String,
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Who may hold its accounts (`INDIVIDUALS`, `PURE_GROUPS`). Absent: individuals only (the
    /// stricter reading).
    #[serde(default)]
    pub availability_settings: AvailabilitySettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Branch {
    pub id: String,
    pub encoded_key: String,
    pub name: String,
}

/// One of the tenant's group role names (Mambu's group role names configuration,
/// `GET /configuration/grouprolenames.yaml`: an id, a key and a name, e.g. `Treasurer`). A group
/// member's role names it by `groupRoleNameKey` (its encodedKey).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupRoleName {
    pub id: String,
    pub encoded_key: String,
    pub name: String,
}

/// A JSON number, as Mambu writes amounts and limits (an exact decimal is written with its
/// digits; `rust_decimal` alone would write a string).
fn as_number<S: serde::Serializer, T: fmt::Display>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => serializer.serialize_some(&Number(v.to_string())),
        None => serializer.serialize_none(),
    }
}

fn default_currency() -> String {
    "EUR".to_owned()
}

impl Products {
    /// Reads a products file (JSON, the shape of [`Products`]).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let products: Products = serde_json::from_str(&text)?;
        Ok(products)
    }

    /// The products a fresh sandbox tenant has: the built-in tenant's
    /// (`fixtures/tenants/lenient.yaml`), the ones `fixtures/sample/` refers to.
    pub fn default_set() -> Self {
        super::tenant::TenantProfile::lenient().products()
    }

    /// A loan product by encodedKey (what `productTypeKey` holds) or id.
    pub fn loan_product(&self, key_or_id: &str) -> Option<&LoanProduct> {
        self.loan_products
            .iter()
            .find(|p| p.encoded_key == key_or_id || p.id == key_or_id)
    }

    pub fn deposit_product(&self, key_or_id: &str) -> Option<&DepositProduct> {
        self.deposit_products
            .iter()
            .find(|p| p.encoded_key == key_or_id || p.id == key_or_id)
    }

    /// A group role name by encodedKey (what `groupRoleNameKey` holds).
    pub fn group_role_name(&self, key: &str) -> Option<&GroupRoleName> {
        self.group_role_names.iter().find(|r| r.encoded_key == key)
    }

    pub fn branch(&self, key_or_id: &str) -> Option<&Branch> {
        self.branches
            .iter()
            .find(|b| b.encoded_key == key_or_id || b.id == key_or_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_round_trips_through_the_file_format() {
        let text = serde_json::to_string_pretty(&Products::default_set()).unwrap();
        let back: Products = serde_json::from_str(&text).unwrap();
        assert_eq!(back.loan_products.len(), 4);
        let tranched = back.loan_product("SME-TRANCHE").unwrap();
        assert!(tranched.is_tranched() && tranched.is_fixed_term());
        let security = &tranched.security_settings;
        assert!(security.is_guarantors_enabled && security.is_collateral_enabled);
        assert_eq!(security.required_for(Decimal::from(1000)), None);
        let json = serde_json::to_value(tranched).unwrap();
        assert_eq!(
            json["securitySettings"],
            serde_json::json!({ "isGuarantorsEnabled": true, "isCollateralEnabled": true })
        );
        assert_eq!(
            tranched
                .tranche_settings
                .as_ref()
                .and_then(|t| t.max_number_of_tranches),
            Some(5)
        );
        assert_eq!(
            back.loan_product("PL-STD")
                .unwrap()
                .schedule_settings
                .num_installments
                .max_value,
            Some(60)
        );
        assert!(
            back.loan_product("MICRO")
                .unwrap()
                .allows(ScheduleEditOption::AdjustPrincipalPaymentSchedule)
        );
        assert!(
            !back
                .loan_product("MICRO")
                .unwrap()
                .allows(ScheduleEditOption::AdjustPaymentDates)
        );
    }

    #[test]
    fn securities_are_refused_and_not_required_when_the_settings_are_absent() {
        let absent: SecuritySettings = serde_json::from_str("{}").unwrap();
        assert!(!absent.is_guarantors_enabled && !absent.is_collateral_enabled);
        assert_eq!(absent.required_for(Decimal::from(1000)), None);
        let half: SecuritySettings =
            serde_json::from_str(r#"{"isCollateralEnabled":true,"requiredGuaranties":50}"#)
                .unwrap();
        assert_eq!(
            half.required_for(Decimal::from(1000)),
            Some(Decimal::from(500))
        );
    }

    #[test]
    fn edit_options_are_named_as_in_the_json() {
        assert_eq!(
            ScheduleEditOption::AdjustNumberOfInstallments.to_string(),
            "ADJUST_NUMBER_OF_INSTALLMENTS"
        );
        let unknown = serde_json::from_str::<ScheduleEditOption>(r#""ADJUST_EVERYTHING""#);
        assert!(unknown.is_err());
    }

    #[test]
    fn limits_are_inclusive_and_open_when_absent() {
        let l = Limits {
            min_value: Some(Decimal::from(500)),
            max_value: Some(Decimal::from(50_000)),
            default_value: None,
        };
        assert!(l.contains(Decimal::from(500)) && l.contains(Decimal::from(50_000)));
        assert!(!l.contains(Decimal::new(49999, 2)));
        let open: Limits<u32> = Limits {
            min_value: None,
            max_value: Some(3),
            default_value: None,
        };
        assert!(open.contains(0) && !open.contains(4));
    }
}
