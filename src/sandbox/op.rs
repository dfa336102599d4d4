//! Every change to the tenant as data: what it is, the path parameters and caller it needs,
//! and the one dispatcher ([`Op::run`]) that applies it, with the parsed body, to a
//! [`Tenant`]. The HTTP handlers build an `Op` and run it; a durable sandbox (`sandbox
//! --state`, see `journal`) writes the same `Op` to its log and, on start, runs it again: live
//! and replay go through the same `match`, so they cannot decide differently.
//!
//! The log keeps ops at this boundary, not the entities they make: it does not depend on how
//! `state` stores them.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::ApiError;
use super::state::{DepositTransactionKind, Tenant, TransactionKind};

/// A change to the tenant. Users are the caller's user name (four-eyes compares them); ids are
/// as the path gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateClient,
    PatchClient {
        id: String,
    },
    CreateGroup,
    CreateDeposit,
    CreateLoan {
        user: String,
    },
    DepositState {
        id: String,
    },
    LoanState {
        id: String,
        user: String,
    },
    AdjustLoanTransaction {
        id: String,
    },
    AdjustDepositTransaction {
        id: String,
    },
    DeleteLoan {
        id: String,
    },
    DeleteDeposit {
        id: String,
    },
    DeleteClient {
        id: String,
    },
    DeleteGroup {
        id: String,
    },
    WriteOff {
        id: String,
    },
    UndoWriteOff {
        id: String,
    },
    EditSchedule {
        id: String,
    },
    Disburse {
        id: String,
    },
    ApplyFee {
        id: String,
    },
    Repay {
        id: String,
    },
    Deposit {
        id: String,
    },
    Withdraw {
        id: String,
    },
    LockLoan {
        id: String,
    },
    UnlockLoan {
        id: String,
    },
    LinkSettlement {
        loan: String,
        deposit: String,
    },
    /// `POST /deposits/deposit-transactions:bulk`: answers the bulk's key (a JSON string).
    QueueBulk,
    /// The bulk timer picks a queued bulk up, then processes it.
    StartBulk {
        key: String,
    },
    ProcessBulk {
        key: String,
    },
    /// `POST /_sandbox/tamper`; its refusal is a 400 with Mambu's error's message.
    Tamper,
}

impl Op {
    /// Applies the op to `t` with the request's parsed `body` (`null` when it had none).
    pub fn run(&self, t: &mut Tenant, body: &Value) -> Result<Value, ApiError> {
        match self {
            Op::CreateClient => t.create_client(body),
            Op::PatchClient { id } => t.patch_client(id, body),
            Op::CreateGroup => t.create_group(body),
            Op::CreateDeposit => t.create_deposit(body),
            Op::CreateLoan { user } => t.create_loan_by(body, user),
            Op::DepositState { id } => t.change_deposit_state(id, body),
            Op::LoanState { id, user } => t.change_loan_state_by(id, body, user),
            Op::AdjustLoanTransaction { id } => t.adjust_loan_transaction(id, body),
            Op::AdjustDepositTransaction { id } => t.adjust_deposit_transaction(id, body),
            Op::DeleteLoan { id } => t.delete_loan(id),
            Op::DeleteDeposit { id } => t.delete_deposit(id),
            Op::DeleteClient { id } => t.delete_client(id),
            Op::DeleteGroup { id } => t.delete_group(id),
            Op::WriteOff { id } => t.write_off_loan(id, body),
            Op::UndoWriteOff { id } => t.undo_write_off_loan(id, body),
            Op::EditSchedule { id } => t.edit_schedule(id, body),
            Op::Disburse { id } => t.post_transaction(id, TransactionKind::Disbursement, body),
            Op::ApplyFee { id } => t.post_transaction(id, TransactionKind::Fee, body),
            Op::Repay { id } => t.post_transaction(id, TransactionKind::Repayment, body),
            Op::Deposit { id } => {
                t.post_deposit_transaction(id, DepositTransactionKind::Deposit, body)
            }
            Op::Withdraw { id } => {
                t.post_deposit_transaction(id, DepositTransactionKind::Withdrawal, body)
            }
            Op::LockLoan { id } => t.lock_loan(id, body),
            Op::UnlockLoan { id } => t.unlock_loan(id, body),
            Op::LinkSettlement { loan, deposit } => t
                .link_settlement(loan, deposit)
                .map(|()| json!({ "returnCode": 0, "returnStatus": "SUCCESS" })),
            Op::QueueBulk => t.queue_bulk_deposits(body).map(Value::String),
            Op::StartBulk { key } => {
                t.start_bulk(key);
                Ok(Value::Null)
            }
            Op::ProcessBulk { key } => {
                t.process_bulk(key);
                Ok(Value::Null)
            }
            Op::Tamper => t.tamper(body).map_err(ApiError::invalid_parameters),
        }
    }
}
