//! The state a loan's steps leave it in, what Mambu may answer for it, and the control total it
//! counts in (pure).
//!
//! Mambu names a loan's state with `accountState` and, once CLOSED, `accountSubState`
//! (REPAID, WRITTEN_OFF, REJECTED, WITHDRAWN). A migrated loan ends where its last step left it:
//! created PENDING_APPROVAL, approved, disbursed (ACTIVE; ACTIVE_IN_ARREARS when an installment
//! is past due and unpaid, which Mambu sets at end of day and the sandbox computes on read:
//! ../shared/mambu-api.md §8 "End of day"), closed repaid, written off, rejected or withdrawn.
//! The control totals count loans by that final state, expected beside found, the way a
//! migration ends with counts of its records by state.

use crate::plan::action::Action;

/// Where a loan's steps leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoanState {
    PendingApproval,
    Approved,
    /// Disbursed and not closed by a step: ACTIVE, or in arrears, or repaid in full since
    /// (Mambu closes a loan repaid in full by itself, CLOSED / REPAID).
    Active,
    /// CLOSED with this sub-state.
    Closed(&'static str),
}

impl LoanState {
    /// The state after `action`, from `self`; `None`: the action does not change it.
    pub(super) fn after(self, action: Action) -> Option<LoanState> {
        Some(match action {
            Action::CreateLoan => LoanState::PendingApproval,
            Action::ApproveLoan => LoanState::Approved,
            // A disbursement after the first (a later tranche) leaves an ACTIVE loan ACTIVE; a
            // closed loan takes none.
            Action::DisburseLoan if !matches!(self, LoanState::Closed(_)) => LoanState::Active,
            Action::CloseLoan => LoanState::Closed("REPAID"),
            Action::WriteOffLoan => LoanState::Closed("WRITTEN_OFF"),
            Action::RejectLoan => LoanState::Closed("REJECTED"),
            Action::WithdrawLoan => LoanState::Closed("WITHDRAWN"),
            _ => return None,
        })
    }

    /// Whether Mambu's `accountState` and `accountSubState` are this state.
    pub(super) fn accepts(self, state: &str, sub: Option<&str>) -> bool {
        match self {
            LoanState::PendingApproval => state == "PENDING_APPROVAL",
            LoanState::Approved => state == "APPROVED",
            LoanState::Active => {
                matches!(state, "ACTIVE" | "ACTIVE_IN_ARREARS")
                    || (state == "CLOSED" && sub == Some("REPAID"))
            }
            LoanState::Closed(expected) => state == "CLOSED" && sub == Some(expected),
        }
    }

    /// How the mismatch shows the expected state.
    pub(super) fn expected(self) -> String {
        match self {
            LoanState::PendingApproval => "PENDING_APPROVAL".into(),
            LoanState::Approved => "APPROVED".into(),
            LoanState::Active => "ACTIVE (or ACTIVE_IN_ARREARS, or CLOSED/REPAID)".into(),
            LoanState::Closed(sub) => format!("CLOSED/{sub}"),
        }
    }

    /// The control total the loan counts in.
    pub(super) fn total(self) -> String {
        match self {
            LoanState::PendingApproval => "loans by state: PENDING_APPROVAL".into(),
            LoanState::Approved => "loans by state: APPROVED".into(),
            LoanState::Active => "loans by state: ACTIVE or in arrears".into(),
            LoanState::Closed(sub) => format!("loans by state: CLOSED/{sub}"),
        }
    }
}

/// Mambu's answer as one word: `CLOSED/WRITTEN_OFF`, `ACTIVE_IN_ARREARS`.
pub(super) fn found(state: &str, sub: Option<&str>) -> String {
    match sub {
        Some(sub) if state == "CLOSED" => format!("{state}/{sub}"),
        _ => state.to_owned(),
    }
}

/// The control total a loan Mambu holds counts in when it is not where its steps left it.
pub(super) fn found_total(state: &str, sub: Option<&str>) -> String {
    match state {
        "ACTIVE" | "ACTIVE_IN_ARREARS" => LoanState::Active.total(),
        _ => format!("loans by state: {}", found(state, sub)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(actions: &[Action]) -> LoanState {
        actions
            .iter()
            .fold(LoanState::PendingApproval, |state, action| {
                state.after(*action).unwrap_or(state)
            })
    }

    #[test]
    fn a_loans_steps_lead_to_its_final_state() {
        use Action::*;
        assert_eq!(through(&[CreateLoan, ApproveLoan]), LoanState::Approved);
        assert_eq!(
            through(&[CreateLoan, ApproveLoan, DisburseLoan, PostRepayment]),
            LoanState::Active
        );
        assert_eq!(
            through(&[
                CreateLoan,
                ApproveLoan,
                DisburseLoan,
                PostRepayment,
                CloseLoan
            ]),
            LoanState::Closed("REPAID")
        );
        assert_eq!(
            through(&[CreateLoan, ApproveLoan, DisburseLoan, WriteOffLoan]),
            LoanState::Closed("WRITTEN_OFF")
        );
        assert_eq!(
            through(&[CreateLoan, RejectLoan]),
            LoanState::Closed("REJECTED")
        );
        assert_eq!(
            through(&[CreateLoan, ApproveLoan, WithdrawLoan]),
            LoanState::Closed("WITHDRAWN")
        );
        // A second tranche's disbursement keeps it ACTIVE; none reopens a closed loan.
        assert_eq!(
            through(&[CreateLoan, ApproveLoan, DisburseLoan, DisburseLoan]),
            LoanState::Active
        );
        assert_eq!(LoanState::Closed("WRITTEN_OFF").after(DisburseLoan), None);
    }

    #[test]
    fn what_mambu_may_answer_for_each() {
        let active = LoanState::Active;
        assert!(active.accepts("ACTIVE", None));
        assert!(active.accepts("ACTIVE_IN_ARREARS", None));
        assert!(active.accepts("CLOSED", Some("REPAID")));
        assert!(!active.accepts("CLOSED", Some("WRITTEN_OFF")));
        assert!(!active.accepts("APPROVED", None));
        let written = LoanState::Closed("WRITTEN_OFF");
        assert!(written.accepts("CLOSED", Some("WRITTEN_OFF")));
        assert!(!written.accepts("CLOSED", Some("REPAID")));
        assert!(!written.accepts("ACTIVE", None));
        assert!(!written.accepts("CLOSED", None));
        assert_eq!(found("CLOSED", Some("REJECTED")), "CLOSED/REJECTED");
        assert_eq!(found("ACTIVE", Some("LOCKED")), "ACTIVE");
        assert_eq!(found_total("ACTIVE_IN_ARREARS", None), active.total());
        assert_eq!(found_total("CLOSED", Some("WRITTEN_OFF")), written.total());
    }
}
