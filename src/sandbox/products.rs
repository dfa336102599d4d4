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
use serde::{Deserialize, Serialize};

/// Everything `--products FILE` may set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Products {
    pub loan_products: Vec<LoanProduct>,
    pub deposit_products: Vec<DepositProduct>,
    #[serde(default)]
    pub branches: Vec<Branch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoanAmountSettings {
    pub loan_amount: Limits<Decimal>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductScheduleSettings {
    pub num_installments: Limits<u32>,
    /// What a schedule edit may change; empty: nothing (the product does not allow editing).
    #[serde(default)]
    pub repayment_schedule_edit_options: Vec<ScheduleEditOption>,
}

/// One of Mambu's `repaymentScheduleEditOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductInterestSettings {
    pub interest_rate_settings: Vec<InterestRateSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterestRateSettings {
    pub interest_rate: Limits<Decimal>,
}

/// A product's bounds on a value; an absent bound does not constrain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits<T> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_value: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// fees; a schedule edit may only lower the total interest).
    pub fn is_fixed_term(&self) -> bool {
        self.product_type == "FIXED_TERM_LOAN"
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

impl<T: PartialOrd + Copy> Limits<T> {
    pub fn contains(&self, value: T) -> bool {
        self.min_value.is_none_or(|min| value >= min)
            && self.max_value.is_none_or(|max| value <= max)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountLinkSettings {
    pub enabled: bool,
    /// Only deposits of this product may settle the loan, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linkable_deposit_product_key: Option<String>,
    #[serde(default)]
    pub linked_account_options: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Branch {
    pub id: String,
    pub encoded_key: String,
    pub name: String,
}

fn default_currency() -> String {
    "EUR".to_owned()
}

fn limits<T>(min: T, max: T) -> Limits<T> {
    Limits {
        min_value: Some(min),
        max_value: Some(max),
        default_value: None,
    }
}

const CURRENT_ACCOUNT_KEY: &str = "8a19c0de00000000000000000000d001";

/// What the built-in loan products let a schedule edit change: what `fixtures/sample/`'s custom
/// schedules change (principal and interest per installment, on Mambu's own due dates), no more.
const SAMPLE_EDITS: [ScheduleEditOption; 2] = [
    ScheduleEditOption::AdjustPrincipalPaymentSchedule,
    ScheduleEditOption::AdjustInterestPaymentSchedule,
];

impl Products {
    /// Reads a products file (JSON, the shape of [`Products`]).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let products: Products = serde_json::from_str(&text)?;
        Ok(products)
    }

    /// The products a fresh sandbox tenant has: the ones `fixtures/sample/` refers to.
    pub fn default_set() -> Self {
        let loan = |id: &str,
                    key: &str,
                    name: &str,
                    kind: &str,
                    amount: (i64, i64),
                    installments: (u32, u32),
                    rate: (i64, i64),
                    link: bool| LoanProduct {
            id: id.to_owned(),
            encoded_key: key.to_owned(),
            name: name.to_owned(),
            product_type: kind.to_owned(),
            currency: default_currency(),
            loan_amount_settings: LoanAmountSettings {
                loan_amount: limits(Decimal::from(amount.0), Decimal::from(amount.1)),
            },
            schedule_settings: ProductScheduleSettings {
                num_installments: limits(installments.0, installments.1),
                repayment_schedule_edit_options: SAMPLE_EDITS.to_vec(),
            },
            interest_settings: Some(ProductInterestSettings {
                interest_rate_settings: vec![InterestRateSettings {
                    interest_rate: limits(Decimal::from(rate.0), Decimal::from(rate.1)),
                }],
            }),
            account_link_settings: AccountLinkSettings {
                enabled: link,
                linkable_deposit_product_key: link.then(|| CURRENT_ACCOUNT_KEY.to_owned()),
                linked_account_options: Vec::new(),
            },
        };
        let deposit = |id: &str, key: &str, name: &str, kind: &str| DepositProduct {
            id: id.to_owned(),
            encoded_key: key.to_owned(),
            name: name.to_owned(),
            product_type: kind.to_owned(),
            currency: default_currency(),
        };
        let branch = |id: &str, key: &str, name: &str| Branch {
            id: id.to_owned(),
            encoded_key: key.to_owned(),
            name: name.to_owned(),
        };
        Products {
            loan_products: vec![
                loan(
                    "PL-STD",
                    "8a19c0de00000000000000000000a001",
                    "Personal Loan",
                    "FIXED_TERM_LOAN",
                    (500, 50_000),
                    (3, 60),
                    (4, 24),
                    true,
                ),
                loan(
                    "SME-TERM",
                    "8a19c0de00000000000000000000a002",
                    "SME Term Loan",
                    "FIXED_TERM_LOAN",
                    (5_000, 250_000),
                    (6, 120),
                    (3, 18),
                    true,
                ),
                loan(
                    "MICRO",
                    "8a19c0de00000000000000000000a003",
                    "Micro Loan",
                    "DYNAMIC_TERM_LOAN",
                    (100, 5_000),
                    (1, 24),
                    (10, 36),
                    false,
                ),
            ],
            deposit_products: vec![
                deposit(
                    "CA-STD",
                    CURRENT_ACCOUNT_KEY,
                    "Current Account",
                    "CURRENT_ACCOUNT",
                ),
                deposit(
                    "SAV-STD",
                    "8a19c0de00000000000000000000d002",
                    "Savings Account",
                    "REGULAR_SAVINGS",
                ),
            ],
            branches: vec![
                branch("BR-LIS", "8a19c0de00000000000000000000b001", "Lisbon"),
                branch("BR-BER", "8a19c0de00000000000000000000b002", "Berlin"),
                branch("BR-NBO", "8a19c0de00000000000000000000b003", "Nairobi"),
                branch("BR-SAO", "8a19c0de00000000000000000000b004", "São Paulo"),
            ],
        }
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
        assert_eq!(back.loan_products.len(), 3);
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
        let l = limits(Decimal::from(500), Decimal::from(50_000));
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
