//! The built-in actions: the call each makes, what its body must hold (the required fields of
//! Mambu's spec), and what makes a replay of it safe (`../shared/DESIGN.md`, "Built-in steps").
//!
//! This is plain data: the plan checks bodies against it, the estimate counts calls with it, the
//! executor sends what it describes.

use serde_json::{Value, json};

/// The most items the tool puts in one bulk deposit. Stricter reading: Mambu publishes no
/// maximum (`../shared/mambu-api.md` §6 and open question 4); 1,000, its largest page, is
/// taken.
pub const BULK_MAX_ITEMS: usize = 1000;

/// Items per bulk when a deposit step's `bulk` gives no `size`.
pub const BULK_DEFAULT_SIZE: usize = 500;

/// The bulk deposit endpoint (`../shared/mambu-api.md` §6): a POST answered 202 with the bulk
/// process key in `Location`, and the bulk's status read at `BULK_STATUS/{key}`.
pub const BULK_DEPOSITS: (&str, &str) = ("POST", "/deposits/deposit-transactions:bulk");
pub const BULK_STATUS: (&str, &str) = ("GET", "/bulks/{bulkProcessKey}");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    CreateClient,
    /// A group of clients created earlier (`groupMembers[].clientKey`), with their roles.
    CreateGroup,
    CreateDeposit,
    ApproveDeposit,
    CreateLoan,
    ApproveLoan,
    LinkSettlementAccount,
    EditSchedule,
    DisburseLoan,
    ApplyFee,
    PostRepayment,
    /// Any method and path the plan declares.
    Request,
    /// A deposit into a deposit account (issue 18): `POST /deposits/{id}/deposit-transactions`.
    MakeDeposit,
    /// A withdrawal from a deposit account: `POST /deposits/{id}/withdrawal-transactions`.
    MakeWithdrawal,
    /// Closing a repaid loan (issue 18): `POST /loans/{id}:changeState` CLOSE. Mambu closes a
    /// loan by itself at its last repayment: the refusal of a loan already CLOSED is adopted.
    CloseLoan,
    /// Writing off what a loan still owes: `POST /loans/{id}:writeOff` (204, no body).
    WriteOffLoan,
    /// Rejecting a loan application: changeState REJECT.
    RejectLoan,
    /// Withdrawing a loan application: changeState WITHDRAW.
    WithdrawLoan,
}

/// The accounts an action's path names besides the base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountsNeeded {
    None,
    Loan,
    Deposit,
    LoanAndDeposit,
}

impl Action {
    pub const ALL: [Action; 18] = [
        Action::CreateClient,
        Action::CreateGroup,
        Action::CreateDeposit,
        Action::ApproveDeposit,
        Action::CreateLoan,
        Action::ApproveLoan,
        Action::LinkSettlementAccount,
        Action::EditSchedule,
        Action::DisburseLoan,
        Action::ApplyFee,
        Action::PostRepayment,
        Action::Request,
        Action::MakeDeposit,
        Action::MakeWithdrawal,
        Action::CloseLoan,
        Action::WriteOffLoan,
        Action::RejectLoan,
        Action::WithdrawLoan,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::CreateClient => "create_client",
            Action::CreateGroup => "create_group",
            Action::CreateDeposit => "create_deposit",
            Action::ApproveDeposit => "approve_deposit",
            Action::CreateLoan => "create_loan",
            Action::ApproveLoan => "approve_loan",
            Action::LinkSettlementAccount => "link_settlement_account",
            Action::EditSchedule => "edit_schedule",
            Action::DisburseLoan => "disburse_loan",
            Action::ApplyFee => "apply_fee",
            Action::PostRepayment => "post_repayment",
            Action::Request => "request",
            Action::MakeDeposit => "deposit",
            Action::MakeWithdrawal => "withdrawal",
            Action::CloseLoan => "close_loan",
            Action::WriteOffLoan => "write_off_loan",
            Action::RejectLoan => "reject_loan",
            Action::WithdrawLoan => "withdraw_loan",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn names() -> Vec<&'static str> {
        Action::ALL.iter().map(|a| a.name()).collect()
    }

    /// The HTTP calls it makes, in order: (method, path with `{loan}`/`{deposit}` holes).
    pub fn calls(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Action::CreateClient => &[("POST", "/clients")],
            Action::CreateGroup => &[("POST", "/groups")],
            Action::CreateDeposit => &[("POST", "/deposits")],
            Action::ApproveDeposit => &[("POST", "/deposits/{deposit}:changeState")],
            Action::CreateLoan => &[("POST", "/loans")],
            Action::ApproveLoan => &[("POST", "/loans/{loan}:changeState")],
            Action::LinkSettlementAccount => {
                &[("POST", "/loans/{loan}/settlementAccounts/{deposit}")]
            }
            Action::EditSchedule => &[
                ("GET", "/loans/{loan}/schedule"),
                ("PUT", "/loans/{loan}/schedule"),
            ],
            Action::DisburseLoan => &[("POST", "/loans/{loan}/disbursement-transactions")],
            Action::ApplyFee => &[("POST", "/loans/{loan}/fee-transactions")],
            Action::PostRepayment => &[("POST", "/loans/{loan}/repayment-transactions")],
            Action::Request => &[],
            Action::MakeDeposit => &[("POST", "/deposits/{deposit}/deposit-transactions")],
            Action::MakeWithdrawal => &[("POST", "/deposits/{deposit}/withdrawal-transactions")],
            Action::CloseLoan | Action::RejectLoan | Action::WithdrawLoan => {
                &[("POST", "/loans/{loan}:changeState")]
            }
            Action::WriteOffLoan => &[("POST", "/loans/{loan}:writeOff")],
        }
    }

    pub fn accounts(self) -> AccountsNeeded {
        match self {
            Action::CreateClient
            | Action::CreateGroup
            | Action::CreateDeposit
            | Action::CreateLoan
            | Action::Request => AccountsNeeded::None,
            Action::ApproveDeposit | Action::MakeDeposit | Action::MakeWithdrawal => {
                AccountsNeeded::Deposit
            }
            Action::LinkSettlementAccount => AccountsNeeded::LoanAndDeposit,
            Action::ApproveLoan
            | Action::EditSchedule
            | Action::DisburseLoan
            | Action::ApplyFee
            | Action::PostRepayment
            | Action::CloseLoan
            | Action::WriteOffLoan
            | Action::RejectLoan
            | Action::WithdrawLoan => AccountsNeeded::Loan,
        }
    }

    /// API v1 (no v2 Accept header, v1 error bodies).
    pub fn is_v1(self) -> bool {
        self == Action::LinkSettlementAccount
    }

    /// Whether Mambu takes an Idempotency-Key on it (every POST but the v1 link).
    pub fn takes_idempotency_key(self) -> bool {
        !matches!(
            self,
            Action::LinkSettlementAccount | Action::EditSchedule | Action::Request
        )
    }

    /// Whether the plan writes its body (edit_schedule takes `installments`, the link nothing).
    pub fn takes_body(self) -> bool {
        !matches!(self, Action::LinkSettlementAccount | Action::EditSchedule)
    }

    /// The body used when the plan gives none (or merged under the plan's).
    pub fn default_body(self) -> Option<Value> {
        match self {
            Action::ApproveLoan | Action::ApproveDeposit => {
                Some(json!({ "action": "APPROVE", "notes": "migrated" }))
            }
            Action::DisburseLoan => Some(json!({})),
            Action::CloseLoan => Some(json!({ "action": "CLOSE", "notes": "migrated" })),
            Action::RejectLoan => Some(json!({ "action": "REJECT", "notes": "migrated" })),
            Action::WithdrawLoan => Some(json!({ "action": "WITHDRAW", "notes": "migrated" })),
            Action::WriteOffLoan => Some(json!({ "notes": "migrated" })),
            _ => None,
        }
    }

    /// Body fields Mambu's spec requires (dotted for nested ones).
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            Action::CreateClient => &["firstName", "lastName"],
            Action::CreateGroup => &["groupName"],
            Action::CreateDeposit => &[
                "accountHolderKey",
                "accountHolderType",
                "name",
                "productTypeKey",
            ],
            Action::CreateLoan => &[
                "accountHolderKey",
                "accountHolderType",
                "loanAmount",
                "productTypeKey",
                "scheduleSettings",
                "scheduleSettings.gracePeriod",
            ],
            Action::ApproveLoan
            | Action::ApproveDeposit
            | Action::CloseLoan
            | Action::RejectLoan
            | Action::WithdrawLoan => &["action"],
            Action::PostRepayment
            | Action::ApplyFee
            | Action::MakeDeposit
            | Action::MakeWithdrawal => &["amount"],
            _ => &[],
        }
    }

    /// The Mambu entity it creates, whose `id`/`encodedKey` later steps use.
    pub fn creates(self) -> Option<&'static str> {
        match self {
            Action::CreateClient => Some("client"),
            Action::CreateGroup => Some("group"),
            Action::CreateDeposit => Some("deposit"),
            Action::CreateLoan => Some("loan"),
            Action::DisburseLoan
            | Action::ApplyFee
            | Action::PostRepayment
            | Action::MakeDeposit
            | Action::MakeWithdrawal => Some("transaction"),
            _ => None,
        }
    }

    /// A loan's closing state change (close, write-off, reject, withdraw): the loan ends CLOSED
    /// with this `accountSubState`; a replay refused because it is already there is adopted.
    pub fn closes_loan(self) -> Option<&'static str> {
        match self {
            Action::CloseLoan => Some("REPAID"),
            Action::WriteOffLoan => Some("WRITTEN_OFF"),
            Action::RejectLoan => Some("REJECTED"),
            Action::WithdrawLoan => Some("WITHDRAWN"),
            _ => None,
        }
    }

    /// A transaction: replays are made safe by an `externalId`.
    pub fn is_transaction(self) -> bool {
        matches!(
            self,
            Action::DisburseLoan
                | Action::ApplyFee
                | Action::PostRepayment
                | Action::MakeDeposit
                | Action::MakeWithdrawal
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.name()), Some(action));
        }
        assert_eq!(Action::parse("create_clients"), None);
    }

    #[test]
    fn compound_steps_count_all_their_calls() {
        assert_eq!(Action::EditSchedule.calls().len(), 2);
        assert!(Action::LinkSettlementAccount.is_v1());
        assert!(!Action::EditSchedule.takes_idempotency_key());
        assert!(Action::CreateGroup.takes_idempotency_key());
        assert_eq!(Action::CreateGroup.calls(), &[("POST", "/groups")]);
        assert_eq!(Action::CreateGroup.creates(), Some("group"));
    }

    #[test]
    fn deposit_transactions_are_transactions_on_the_deposit() {
        for (action, name, path) in [
            (
                Action::MakeDeposit,
                "deposit",
                "/deposits/{deposit}/deposit-transactions",
            ),
            (
                Action::MakeWithdrawal,
                "withdrawal",
                "/deposits/{deposit}/withdrawal-transactions",
            ),
        ] {
            assert_eq!(Action::parse(name), Some(action));
            assert_eq!(action.calls(), &[("POST", path)]);
            assert_eq!(action.accounts(), AccountsNeeded::Deposit);
            assert!(action.is_transaction() && action.takes_idempotency_key());
            assert_eq!(action.required_fields(), &["amount"]);
        }
    }

    #[test]
    fn closing_actions_change_the_loan_state() {
        for (action, name, path, body, sub) in [
            (
                Action::CloseLoan,
                "close_loan",
                "/loans/{loan}:changeState",
                Some("CLOSE"),
                "REPAID",
            ),
            (
                Action::WriteOffLoan,
                "write_off_loan",
                "/loans/{loan}:writeOff",
                None,
                "WRITTEN_OFF",
            ),
            (
                Action::RejectLoan,
                "reject_loan",
                "/loans/{loan}:changeState",
                Some("REJECT"),
                "REJECTED",
            ),
            (
                Action::WithdrawLoan,
                "withdraw_loan",
                "/loans/{loan}:changeState",
                Some("WITHDRAW"),
                "WITHDRAWN",
            ),
        ] {
            assert_eq!(Action::parse(name), Some(action));
            assert_eq!(action.calls(), &[("POST", path)]);
            assert_eq!(action.accounts(), AccountsNeeded::Loan);
            assert!(action.takes_idempotency_key() && action.takes_body());
            assert!(!action.is_transaction() && action.creates().is_none());
            assert_eq!(action.closes_loan(), Some(sub));
            let default = action.default_body().unwrap();
            assert_eq!(default.get("action").and_then(Value::as_str), body);
        }
    }
}
