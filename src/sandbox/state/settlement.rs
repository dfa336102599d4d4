//! The v1 settlement link: a loan tied to the deposit account its disbursement is paid into.

use super::Tenant;
use crate::sandbox::error::ApiError;

impl Tenant {
    pub fn link_settlement(&mut self, loan_id: &str, deposit_id: &str) -> Result<(), ApiError> {
        let index = self
            .loan_index(loan_id)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        let deposit = self
            .deposit_index(deposit_id)
            .ok_or_else(ApiError::invalid_settlement_account_key)?;
        let product = &self.products.loan_products[self.loans[index].product];
        if !product.account_link_settings.enabled {
            return Err(ApiError::product_does_not_allow_linking());
        }
        if let Some(allowed) = &product.account_link_settings.linkable_deposit_product_key
            && *allowed != self.deposits[deposit].product_key
        {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                1935,
                "UNLINKABLE_DEPOSIT_PRODUCT",
            ));
        }
        if self.loans[index].settlement_key.is_some() {
            return Err(ApiError::account_already_linked());
        }
        if !matches!(self.deposits[deposit].state, "APPROVED" | "ACTIVE") {
            return Err(ApiError::invalid_settlement_account_state());
        }
        let deposit_key = self.deposits[deposit].encoded_key;
        let loan_key = self.loans[index].encoded_key;
        self.deposits[deposit].linked_loans.push(loan_key);
        let loan = &mut self.loans[index];
        self.entities.loan_state(loan, -1);
        loan.settlement_key = Some(deposit_key);
        self.entities.loan_state(loan, 1);
        loan.modified = self.zone.now();
        Ok(())
    }
}
