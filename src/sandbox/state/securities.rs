//! A loan's securities (issue 18): `guarantors[]` (clients or groups of the tenant guaranteeing
//! the loan, each with or without a deposit account of theirs) and `assets[]` (collateral),
//! Mambu's `Guarantor` and `Asset` (skyleague/mambu-sdk, `src/loan-accounts/rest.zod.ts`).
//!
//! Taken on creation only where the loan product's `securitySettings` allows them
//! (`isGuarantorsEnabled`, `isCollateralEnabled`); stored with an encodedKey each, amounts as
//! the numbers they spell (a JSON number or a string, as for `loanAmount`); answered by a
//! `detailsLevel=FULL` read (a BASIC one leaves them out, as it leaves out addresses: the
//! stricter reading of "FULL includes any other related objects"). The approval of a loan
//! whose product sets `requiredGuaranties` needs guarantees and assets summing to at least that
//! percentage of the loan amount (INSUFFICIENT_GUARANTEES).
//!
//! `../shared/mambu-api.md` says nothing of securities: the fields are the generated schemas',
//! the reasons the 2021 spec's error enum (`../shared/mambu-openapi/mambu_v2_2021_merged.
//! swagger2.json`, codes inferred and marked in `src/sandbox/error.rs`), and every rule the
//! record leaves open (who may guarantee, an id instead of a key, when the percentage counts)
//! takes the stricter reading.
//!
//! Not modelled: a guarantee's hold on the deposit's balance (Mambu's
//! INSUFFICIENT_SAVINGS_ACCOUNT_BALANCE), the guarantor's state, `originalAmount` and
//! `originalCurrency` conversions (stored and answered as sent).

use std::collections::HashSet;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::json::{decimal, entry_with_amount, money, optional_str};
use super::{EntityRef, Holder, Loan, Tenant};
use crate::sandbox::error::ApiError;
use crate::sandbox::products::LoanProduct;

/// The two lists of securities a loan body may carry.
pub(super) const LISTS: [&str; 2] = ["guarantors", "assets"];

/// A new loan's securities as read: each list's name and its entries, amounts as numbers.
pub(super) type Securities = Vec<(&'static str, Vec<Map<String, Value>>)>;

impl Tenant {
    /// A new loan's `guarantors[]` and `assets[]`, checked against the product and the tenant,
    /// as they are stored (amounts as JSON numbers), without their encodedKeys
    /// ([`Tenant::store_securities`] gives them). An absent, null or empty list gives nothing.
    pub(super) fn read_securities(
        &self,
        product: &LoanProduct,
        doc: &Map<String, Value>,
    ) -> Result<Securities, ApiError> {
        let settings = &product.security_settings;
        let mut out = Vec::new();
        let mut deposits_seen = HashSet::new();
        let mut guarantors_seen = HashSet::new();
        let mut assets_seen = HashSet::new();
        for list in LISTS {
            let items = match doc.get(list) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(items)) if items.is_empty() => continue,
                Some(Value::Array(items)) => items,
                Some(_) => return Err(ApiError::invalid_parameters(list)),
            };
            let asset = list == "assets";
            if asset && !settings.is_collateral_enabled {
                return Err(ApiError::collateral_not_allowed_by_product());
            }
            if !asset && !settings.is_guarantors_enabled {
                return Err(ApiError::guarantor_not_allowed_by_product());
            }
            let mut stored = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{list}[{i}]");
                let (security, amount) = entry_with_amount(item, &at)?;
                if amount <= Decimal::ZERO {
                    return Err(ApiError::invalid_amount(&format!("{at}.amount")));
                }
                let guarantor = self.guarantor(security, &at, asset)?;
                let deposit = optional_str(security, "depositAccountKey")
                    .map_err(|e| e.at(format!("{at}.depositAccountKey")))?;
                if let Some(deposit) = deposit {
                    let source = format!("{at}.depositAccountKey");
                    let held = match self.entity(deposit) {
                        Some(EntityRef::Deposit(d)) => Some(self.deposits[d].holder),
                        _ => None,
                    };
                    if guarantor.is_none() || held != guarantor {
                        return Err(ApiError::invalid_savings_account_key(source));
                    }
                    if !deposits_seen.insert(deposit.to_owned()) {
                        return Err(ApiError::duplicated_savings_account(source));
                    }
                } else if let Some(holder) = guarantor
                    && !asset
                    && !guarantors_seen.insert(holder)
                {
                    return Err(ApiError::duplicated_guarantor_without_savings_account(
                        format!("{at}.guarantorKey"),
                    ));
                }
                if asset {
                    let name = optional_str(security, "assetName")
                        .map_err(|e| e.at(format!("{at}.assetName")))?
                        .filter(|n| !n.trim().is_empty())
                        .ok_or_else(|| ApiError::invalid_asset_name(format!("{at}.assetName")))?;
                    if !assets_seen.insert(name.to_owned()) {
                        return Err(ApiError::duplicated_asset(format!("{at}.assetName")));
                    }
                }
                let mut kept = security.clone();
                kept.insert("amount".into(), money(amount));
                if let Some(original) = security.get("originalAmount").filter(|v| !v.is_null()) {
                    let original = decimal(original).ok_or_else(|| {
                        ApiError::invalid_parameters(format!("{at}.originalAmount"))
                    })?;
                    kept.insert("originalAmount".into(), money(original));
                }
                stored.push(kept);
            }
            out.push((list, stored));
        }
        Ok(out)
    }

    /// Puts a created loan's securities ([`Tenant::read_securities`]) into its stored
    /// document, each with a new encodedKey; a list the body sent empty is left out.
    pub(super) fn store_securities(
        &mut self,
        doc: &mut Map<String, Value>,
        securities: Securities,
    ) {
        for list in LISTS {
            doc.remove(list);
        }
        for (list, items) in securities {
            let items = items
                .into_iter()
                .map(|mut item| {
                    item.insert("encodedKey".into(), json!(self.new_key()));
                    Value::Object(item)
                })
                .collect();
            doc.insert(list.into(), Value::Array(items));
        }
    }

    /// The guarantor a security names (`guarantorKey`, of `guarantorType` CLIENT or GROUP):
    /// required on a guarantor, optional on an asset. Keys only: Mambu's `guarantorKey` is an
    /// encodedKey (an id is refused: the stricter reading).
    fn guarantor(
        &self,
        security: &Map<String, Value>,
        at: &str,
        asset: bool,
    ) -> Result<Option<Holder>, ApiError> {
        let source = format!("{at}.guarantorKey");
        let key = optional_str(security, "guarantorKey").map_err(|e| e.at(source.clone()))?;
        let Some(key) = key.filter(|k| !k.trim().is_empty()) else {
            return if asset {
                Ok(None)
            } else {
                Err(ApiError::missing(&source))
            };
        };
        let kind = match optional_str(security, "guarantorType") {
            Ok(Some(kind @ ("CLIENT" | "GROUP"))) => kind,
            Ok(None) if asset => "CLIENT",
            Ok(None) => return Err(ApiError::missing(&format!("{at}.guarantorType"))),
            _ => {
                return Err(ApiError::invalid_parameters(format!("{at}.guarantorType")));
            }
        };
        match (kind, self.entity(key)) {
            ("CLIENT", Some(EntityRef::Client(c))) => Ok(Some(Holder::Client(c))),
            ("GROUP", Some(EntityRef::Group(g))) => Ok(Some(Holder::Group(g))),
            _ => Err(ApiError::invalid_guarantor_key(source)),
        }
    }

    /// The approval of `loan` under its product's `requiredGuaranties`: refused when its
    /// guarantees and assets sum to less than that percentage of its amount.
    pub(super) fn check_required_securities(&self, loan: &Loan) -> Result<(), ApiError> {
        let product = &self.products.loan_products[loan.product];
        let Some(required) = product.security_settings.required_for(loan.amount) else {
            return Ok(());
        };
        let held = securities_total(&loan.doc.map());
        if held < required {
            return Err(ApiError::insufficient_guarantees(
                &required.normalize().to_string(),
                &held.normalize().to_string(),
            ));
        }
        Ok(())
    }
}

/// The amounts of a stored loan's guarantors and assets, summed.
fn securities_total(doc: &Map<String, Value>) -> Decimal {
    LISTS
        .iter()
        .filter_map(|list| doc.get(*list).and_then(Value::as_array))
        .flatten()
        .filter_map(|s| s.get("amount").and_then(decimal))
        .sum()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{client, tenant};

    #[test]
    fn securities_are_stored_with_keys_and_their_amounts_as_numbers() {
        let mut t = tenant();
        let holder = client(&mut t);
        let body = json!({
            "accountHolderKey": holder, "accountHolderType": "CLIENT",
            "productTypeKey": "8a19c0de00000000000000000000a001", "loanAmount": 1000,
            "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 },
            "guarantors": [{ "guarantorKey": holder, "guarantorType": "CLIENT", "amount": "400.50" }],
            "assets": [{ "assetName": "Car", "amount": 300 }]
        });
        let loan = t.create_loan(&body).unwrap();
        assert_eq!(loan["guarantors"][0]["amount"], json!(400.5));
        assert!(loan["guarantors"][0]["encodedKey"].is_string());
        assert_eq!(loan["assets"][0]["assetName"], "Car");
        assert!(loan["assets"][0]["encodedKey"].is_string());
    }
}
