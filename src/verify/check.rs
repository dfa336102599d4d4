//! The check of one unit: what the steps the run saved say Mambu should hold, read back and
//! compared, with the control totals of both sides.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::Value;

use super::details::{self, PersonalFields};
use super::ledger::{self, Ledger, Posted};
use super::states::{self, LoanState};
use super::{Mismatch, Total};
use crate::checkpoint::StepStatus;
use crate::estimate::sample::Personal;
use crate::mambu::{Expect, Keep, Quiet, Session};
use crate::plan::action::Action;
use crate::plan::check::Plan;
use crate::plan::compiled::Compiled;
use crate::source;

/// Sums and counts, expected and found, keyed by a total's name.
#[derive(Default)]
pub(super) struct Tally {
    expected: BTreeMap<String, Decimal>,
    found: BTreeMap<String, Decimal>,
}

impl Tally {
    fn add(side: &mut BTreeMap<String, Decimal>, name: String, value: Decimal) {
        *side.entry(name).or_default() += value;
    }
    fn expect(&mut self, name: impl Into<String>, value: Decimal) {
        Self::add(&mut self.expected, name.into(), value);
    }
    fn find(&mut self, name: impl Into<String>, value: Decimal) {
        Self::add(&mut self.found, name.into(), value);
    }
    pub(super) fn merge(&mut self, other: Tally) {
        for (name, value) in other.expected {
            Self::add(&mut self.expected, name, value);
        }
        for (name, value) in other.found {
            Self::add(&mut self.found, name, value);
        }
    }

    /// Every total either side has, by name: expected beside found.
    pub(super) fn totals(&self) -> Vec<Total> {
        self.expected
            .keys()
            .chain(self.found.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|name| {
                let (e, f) = (
                    self.expected.get(name).copied().unwrap_or_default(),
                    self.found.get(name).copied().unwrap_or_default(),
                );
                Total {
                    name: name.clone(),
                    expected: e.normalize().to_string(),
                    found: f.normalize().to_string(),
                    difference: (f - e).normalize().to_string(),
                }
            })
            .collect()
    }
}

/// A JSON number, or a string holding one, as a decimal.
pub(super) fn number(v: Option<&Value>) -> Option<Decimal> {
    match v? {
        Value::Number(n) => n.to_string().parse().ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A decimal as a mismatch shows it: `(none)` when absent.
pub(super) fn show(v: Option<Decimal>) -> String {
    v.map(|d| d.normalize().to_string())
        .unwrap_or_else(|| "(none)".into())
}

/// The loan (or deposit) id in a call's path: `/loans/{key}/...` or `/loans/{key}:changeState`.
fn encoded_of(path: &str) -> String {
    let segment = path.split('/').nth(2).unwrap_or("");
    segment.split(':').next().unwrap_or(segment).to_owned()
}

/// What a GET asks for so that Mambu answers custom field values, addresses, identification
/// documents and group members (a BASIC read, the default, leaves them out).
const FULL: &str = "?detailsLevel=FULL";

/// What the checks of every unit share.
pub(super) struct Shared {
    session: Arc<Session>,
    /// The tenant's lookups, as the run's templates read them.
    lookups: Value,
    /// Product and branch encodedKeys shown as their ids, from the lookups.
    names: HashMap<String, String>,
    plan_name: String,
    /// Which source columns hold personal data (masked in what a mismatch shows).
    personal: Personal,
}

impl Shared {
    pub(super) fn new(session: Arc<Session>, lookups: Value, plan: &Plan) -> Self {
        let names = lookups
            .as_object()
            .into_iter()
            .flat_map(|tables| tables.values())
            .filter_map(Value::as_object)
            .flat_map(|t| {
                t.iter()
                    .filter_map(|(k, v)| Some((v.as_str()?.to_owned(), k.clone())))
            })
            .collect();
        Self {
            session,
            lookups,
            names,
            plan_name: plan.name.clone(),
            personal: Personal::new(plan),
        }
    }
}

/// Checks one unit against what Mambu holds; many run at once, sharing the session.
pub(super) struct Checker {
    shared: Arc<Shared>,
    unit: String,
    mismatches: Vec<Mismatch>,
    tally: Tally,
}

/// What the check of one unit found.
pub(super) struct Checked {
    pub(super) mismatches: Vec<Mismatch>,
    pub(super) tally: Tally,
}

/// What a unit's transactions on one loan should be: externalId → (type, amount).
type Transactions = BTreeMap<String, (&'static str, Decimal)>;

/// What a create step makes, besides loans (checked with their transactions): where Mambu
/// has it and the name of its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    path: &'static str,
    total: &'static str,
}

const CLIENT: Kind = Kind {
    path: "/clients",
    total: "clients",
};

const DEPOSIT: Kind = Kind {
    path: "/deposits",
    total: "deposits",
};

impl Kind {
    /// The kind a step's action creates, if one of these (a group's members are compared by
    /// [`details::compare`]).
    fn of(action: Action) -> Option<Kind> {
        Some(match action {
            Action::CreateClient => CLIENT,
            Action::CreateGroup => Kind {
                path: "/groups",
                total: "groups",
            },
            Action::CreateDeposit => DEPOSIT,
            _ => return None,
        })
    }
}

/// A client or a deposit the unit's steps created.
struct Account {
    kind: Kind,
    entity: String,
    encoded: String,
    body: Value,
    /// The custom fields of its body that hold personal data.
    personal: PersonalFields,
    /// A deposit's transactions the run posted on it.
    ledger: Ledger,
}

/// One loan of a unit, as the run made it.
struct LoanCheck {
    key: String,
    entity: String,
    body: Value,
    /// The custom fields of its body that hold personal data.
    personal: PersonalFields,
    state: LoanState,
    /// The settlement deposit's id or key, when linked.
    settlement: Option<String>,
    transactions: Transactions,
}

/// What a unit should hold in Mambu, from the steps the run saved, in the order they ran.
#[derive(Default)]
struct Expected {
    /// Clients and deposits.
    accounts: Vec<Account>,
    /// Loans, each with its final state, settlement account and transactions.
    loans: Vec<LoanCheck>,
    /// Transactions posted on deposits some other unit made, by the deposit's id or key as
    /// the call's path had it.
    foreign: BTreeMap<String, Ledger>,
}

impl Checker {
    /// The checker of the unit keyed `unit`.
    pub(super) fn new(shared: Arc<Shared>, unit: &str) -> Self {
        Self {
            shared,
            unit: unit.to_owned(),
            mismatches: Vec::new(),
            tally: Tally::default(),
        }
    }

    /// Checks the unit in stages: what its saved steps say it should hold, then each client
    /// and deposit in the order the steps made them, then each loan with its settlement
    /// account and transactions. Mismatches come out in that order.
    pub(super) async fn unit(
        mut self,
        compiled: &Compiled,
        unit: &source::Unit,
        saved: &HashMap<String, (StepStatus, Value)>,
    ) -> Checked {
        let expected = self.expected(compiled, unit, saved);
        for account in expected.accounts {
            self.account(account).await;
        }
        for (deposit, ledger) in expected.foreign {
            let found = self
                .list(&format!("/deposits/{deposit}/transactions"))
                .await;
            self.ledger_transactions(&ledger, &found, false);
        }
        for loan in expected.loans {
            self.loan(loan).await;
        }
        Checked {
            mismatches: self.mismatches,
            tally: self.tally,
        }
    }

    /// What the unit should hold: every step the run saved (not skipped), re-rendered with the
    /// outputs saved before it, with the totals it expects. Reads nothing from Mambu.
    fn expected(
        &mut self,
        compiled: &Compiled,
        unit: &source::Unit,
        saved: &HashMap<String, (StepStatus, Value)>,
    ) -> Expected {
        let mut expected = Expected::default();
        let mut outputs: HashMap<String, Value> = HashMap::new();
        for planned in compiled.expand(unit) {
            let step = compiled.step(planned.step);
            let instance = crate::plan::ids::instance_id(compiled, &planned);
            let Some((status, out)) = saved.get(&instance) else {
                continue;
            };
            if *status == StepStatus::Skipped {
                continue;
            }
            outputs.insert(step.id.clone(), out.clone());
            if compiled.keeps_row_output(planned.step) {
                // A later step's list reads it for this row, as the run did.
                outputs.insert(instance.clone(), out.clone());
            }
            let Ok(call) = compiled.render(unit, &planned, &outputs, Some(&self.shared.lookups))
            else {
                continue;
            };
            let row = planned.row();
            let entity = format!(
                "{} {}",
                row.schema().name().trim_end_matches('s'),
                row.key()
            );
            let encoded = out
                .get("encodedKey")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let body = call.body.clone().unwrap_or(Value::Null);
            let personal = || details::personal_fields(step.body.as_ref(), &self.shared.personal);
            if let Some(kind) = Kind::of(step.action) {
                self.tally.expect(kind.total, Decimal::ONE);
                if kind == CLIENT
                    && let Some(branch) = self.branch_name(body.get("assignedBranchKey"))
                {
                    self.tally
                        .expect(format!("clients of branch {branch}"), Decimal::ONE);
                }
                expected.accounts.push(Account {
                    kind,
                    entity,
                    encoded,
                    personal: personal(),
                    body,
                    ledger: Ledger::default(),
                });
                continue;
            }
            let loans = &mut expected.loans;
            match step.action {
                Action::CreateLoan => {
                    let amount = number(body.get("loanAmount")).unwrap_or_default();
                    let product = self.product_name(&body);
                    self.tally.expect("loans", Decimal::ONE);
                    self.tally.expect("loan amounts", amount);
                    self.tally
                        .expect(format!("loans of product {product}"), Decimal::ONE);
                    self.tally
                        .expect(format!("loan amounts of product {product}"), amount);
                    loans.push(LoanCheck {
                        key: encoded,
                        entity,
                        personal: personal(),
                        body,
                        state: LoanState::PendingApproval,
                        settlement: None,
                        transactions: Transactions::new(),
                    });
                }
                Action::ApproveLoan
                | Action::CloseLoan
                | Action::WriteOffLoan
                | Action::RejectLoan
                | Action::WithdrawLoan => {
                    if let Some(loan) = loans.iter_mut().find(|l| l.key == encoded_of(&call.path))
                        && let Some(state) = loan.state.after(step.action)
                    {
                        loan.state = state;
                    }
                }
                Action::LinkSettlementAccount => {
                    if let Some(loan) = loans.iter_mut().find(|l| l.key == encoded_of(&call.path)) {
                        loan.settlement = call.path.rsplit('/').next().map(str::to_owned);
                    }
                }
                Action::MakeDeposit | Action::MakeWithdrawal => {
                    let deposit = encoded_of(&call.path);
                    let posted = Posted {
                        kind: if step.action == Action::MakeDeposit {
                            "DEPOSIT"
                        } else {
                            "WITHDRAWAL"
                        },
                        amount: number(body.get("amount")).unwrap_or_default(),
                        value_date: body
                            .get("valueDate")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    };
                    for (name, value) in Ledger::expected_totals(&posted) {
                        self.tally.expect(name, value);
                    }
                    let external = self.external_id(&body, &instance);
                    // The unit's own deposit (by the key or the id the path names), or one
                    // another unit made.
                    let own = expected.accounts.iter_mut().find(|a| {
                        a.kind == DEPOSIT
                            && (a.encoded == deposit
                                || a.body.get("id").and_then(Value::as_str) == Some(&deposit))
                    });
                    match own {
                        Some(account) => account.ledger.post(external, posted),
                        None => expected
                            .foreign
                            .entry(deposit)
                            .or_default()
                            .post(external, posted),
                    }
                }
                Action::DisburseLoan | Action::ApplyFee | Action::PostRepayment => {
                    let loan_key = encoded_of(&call.path);
                    let external = self.external_id(&body, &instance);
                    let (kind, total) = match step.action {
                        Action::DisburseLoan => ("DISBURSEMENT", "disbursed amounts"),
                        Action::ApplyFee => ("FEE_APPLIED", "fee amounts"),
                        _ => ("REPAYMENT", "repayment amounts"),
                    };
                    if let Some(loan) = loans.iter_mut().find(|l| l.key == loan_key) {
                        // A disbursement without an amount disburses the loan's amount, or on a
                        // tranched loan its next tranche.
                        let disbursed = loan
                            .transactions
                            .values()
                            .filter(|(k, _)| *k == "DISBURSEMENT")
                            .count();
                        let amount = number(body.get("amount"))
                            .or_else(|| {
                                (kind == "DISBURSEMENT")
                                    .then(|| match loan.body.get("tranches") {
                                        Some(Value::Array(tranches)) => tranches
                                            .get(disbursed)
                                            .and_then(|t| number(t.get("amount"))),
                                        _ => number(loan.body.get("loanAmount")),
                                    })
                                    .flatten()
                            })
                            .unwrap_or_default();
                        loan.transactions.insert(external, (kind, amount));
                        if let Some(state) = loan.state.after(step.action) {
                            loan.state = state;
                        }
                        self.tally.expect(total, amount);
                        self.tally.expect(
                            format!("{} transactions", kind.to_lowercase()),
                            Decimal::ONE,
                        );
                    }
                }
                _ => {}
            }
        }
        expected
    }

    /// A client or deposit: there, with its id and what its body carries beyond its own
    /// fields (custom field values, addresses, documents); a client counted by branch.
    async fn account(&mut self, account: Account) {
        let Account {
            kind,
            entity,
            encoded,
            body,
            personal,
            ledger,
        } = account;
        if !ledger.is_empty() {
            // Expected whether or not the deposit is there.
            self.tally.expect(ledger::BALANCES, ledger.net());
        }
        let Some(found) = self.get(&format!("{}/{encoded}{FULL}", kind.path)).await else {
            self.mismatch(&entity, "exists", "yes", "no");
            return;
        };
        self.tally.find(kind.total, Decimal::ONE);
        if kind == CLIENT
            && let Some(branch) = self.branch_name(found.get("assignedBranchKey"))
        {
            self.tally
                .find(format!("clients of branch {branch}"), Decimal::ONE);
        }
        if let Some(id) = body.get("id").and_then(Value::as_str)
            && found.get("id").and_then(Value::as_str) != Some(id)
        {
            self.mismatch(
                &entity,
                "id",
                id,
                found.get("id").and_then(Value::as_str).unwrap_or("(none)"),
            );
        }
        self.details(&entity, &body, &found, &personal);
        if !ledger.is_empty() {
            let (balance, difference) = ledger.compare_balance(&found);
            self.tally.find(ledger::BALANCES, balance);
            if let Some((expected, held)) = difference {
                self.mismatch(&entity, "balances.totalBalance", expected, held);
            }
            let transactions = self
                .list(&format!("/deposits/{encoded}/transactions"))
                .await;
            self.ledger_transactions(&ledger, &transactions, true);
        }
    }

    /// A deposit's transactions against those the run posted on it ([`Ledger`]); `own`: the
    /// unit made the deposit.
    fn ledger_transactions(&mut self, ledger: &Ledger, found: &[Value], own: bool) {
        let compared = ledger.compare_transactions(found, own);
        for (name, value) in compared.found {
            self.tally.find(name, value);
        }
        for (entity, field, expected, held) in compared.differences {
            self.mismatch(&entity, &field, expected, held);
        }
    }

    /// A transaction's externalId: the body's, or the one the run generated for it.
    fn external_id(&self, body: &Value, instance: &str) -> String {
        body.get("externalId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                crate::plan::ids::external_id(&self.shared.plan_name, &self.unit, instance)
            })
    }

    /// What `body` carries beyond the entity's own fields, against what Mambu holds
    /// ([`details::compare`]): mismatches masked where personal, and the counts.
    fn details(&mut self, entity: &str, body: &Value, found: &Value, personal: &PersonalFields) {
        let mut compared = details::compare(body, found, personal);
        super::securities::compare(body, found, &mut compared);
        for (name, expected, found) in compared.totals {
            self.tally.expect(name.clone(), expected);
            self.tally.find(name, found);
        }
        for (field, expected, found) in compared.differences {
            self.mismatch(entity, &field, expected, found);
        }
    }

    /// A loan: there, with its amount, a state its steps lead to, its settlement account, then
    /// its transactions.
    async fn loan(&mut self, loan: LoanCheck) {
        let LoanCheck {
            key: encoded,
            entity,
            body,
            personal,
            state,
            settlement,
            transactions,
        } = loan;
        let Some(found) = self.get(&format!("/loans/{encoded}{FULL}")).await else {
            self.mismatch(&entity, "exists", "yes", "no");
            return;
        };
        let product = self.product_name(&body);
        let amount = number(found.get("loanAmount"));
        self.tally.find("loans", Decimal::ONE);
        self.tally.find("loan amounts", amount.unwrap_or_default());
        self.tally
            .find(format!("loans of product {product}"), Decimal::ONE);
        self.tally.find(
            format!("loan amounts of product {product}"),
            amount.unwrap_or_default(),
        );
        if amount != number(body.get("loanAmount")) {
            self.mismatch(
                &entity,
                "loanAmount",
                show(number(body.get("loanAmount"))),
                show(amount),
            );
        }
        // Counted by the state its steps leave it in (`states`), expected beside found.
        let text = |field| found.get(field).and_then(Value::as_str);
        let (found_state, found_sub) = (
            text("accountState").unwrap_or("(none)"),
            text("accountSubState"),
        );
        self.tally.expect(state.total(), Decimal::ONE);
        if state.accepts(found_state, found_sub) {
            self.tally.find(state.total(), Decimal::ONE);
        } else {
            self.tally
                .find(states::found_total(found_state, found_sub), Decimal::ONE);
            self.mismatch(
                &entity,
                "accountState",
                state.expected(),
                states::found(found_state, found_sub),
            );
        }
        if let Some(deposit) = settlement
            && let Some(d) = self.get(&format!("/deposits/{deposit}")).await
            && found.get("settlementAccountKey") != d.get("encodedKey")
        {
            self.mismatch(
                &entity,
                "settlementAccountKey",
                d.get("encodedKey").and_then(Value::as_str).unwrap_or(""),
                found
                    .get("settlementAccountKey")
                    .and_then(Value::as_str)
                    .unwrap_or("(none)"),
            );
        }
        self.details(&entity, &body, &found, &personal);
        self.transactions(&encoded, &transactions).await;
    }

    /// A loan's transactions, matched by externalId: each expected one there with its type and
    /// amount, none Mambu holds that the source does not.
    async fn transactions(&mut self, encoded: &str, expected: &Transactions) {
        let transactions = self.list(&format!("/loans/{encoded}/transactions")).await;
        let mut seen = HashSet::new();
        for t in &transactions {
            let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
            let amount = number(t.get("amount")).unwrap_or_default();
            let total = match kind {
                "DISBURSEMENT" => "disbursed amounts",
                "FEE_APPLIED" => "fee amounts",
                "REPAYMENT" => "repayment amounts",
                _ => continue,
            };
            self.tally.find(total, amount);
            self.tally.find(
                format!("{} transactions", kind.to_lowercase()),
                Decimal::ONE,
            );
            let external = t
                .get("externalId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            match expected.get(&external) {
                Some((want_kind, want_amount)) => {
                    seen.insert(external.clone());
                    let entity = format!("transaction {external}");
                    if *want_kind != kind {
                        self.mismatch(&entity, "type", *want_kind, kind);
                    }
                    if *want_amount != amount {
                        self.mismatch(
                            &entity,
                            "amount",
                            show(Some(*want_amount)),
                            show(Some(amount)),
                        );
                    }
                }
                None => self.mismatch(
                    &format!(
                        "transaction {}",
                        if external.is_empty() {
                            "(no externalId)"
                        } else {
                            &external
                        }
                    ),
                    "exists",
                    "no (not in the source)",
                    format!("{kind} {}", show(Some(amount))),
                ),
            }
        }
        for (external, (kind, amount)) in expected {
            if !seen.contains(external) {
                self.mismatch(
                    &format!("transaction {external}"),
                    "exists",
                    format!("{kind} {}", show(Some(*amount))),
                    "no",
                );
            }
        }
    }

    /// Reads `path` back through the session's policy: `None` when Mambu says it does not
    /// exist; one that cannot be read is a mismatch of its own (never taken for "missing").
    async fn get(&mut self, path: &str) -> Option<Value> {
        match self
            .shared
            .session
            .read(path, Expect::Any, Keep::All, &mut Quiet)
            .await
        {
            Ok(found) => found.map(|answer| answer.body),
            Err(e) => {
                self.mismatch(path, "readable", "an answer", e);
                None
            }
        }
    }

    /// Every item of the list at `path`, page by page.
    async fn list(&mut self, path: &str) -> Vec<Value> {
        match self.shared.session.list(path, &mut Quiet).await {
            Ok(items) => items,
            Err(e) => {
                self.mismatch(path, "readable", "an answer", e);
                Vec::new()
            }
        }
    }

    fn product_name(&self, body: &Value) -> String {
        let key = body
            .get("productTypeKey")
            .and_then(Value::as_str)
            .unwrap_or("");
        self.shared
            .names
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_owned())
    }

    fn branch_name(&self, key: Option<&Value>) -> Option<String> {
        let key = key?.as_str()?;
        Some(
            self.shared
                .names
                .get(key)
                .cloned()
                .unwrap_or_else(|| key.to_owned()),
        )
    }

    /// A difference in this unit.
    fn mismatch(
        &mut self,
        entity: &str,
        field: &str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.mismatches.push(Mismatch {
            unit: self.unit.clone(),
            entity: entity.to_owned(),
            field: field.to_owned(),
            expected: expected.into(),
            found: found.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_out_of_paths() {
        assert_eq!(encoded_of("/loans/abc:changeState"), "abc");
        assert_eq!(encoded_of("/loans/abc/repayment-transactions"), "abc");
        assert_eq!(encoded_of("/loans/abc/settlementAccounts/d1"), "abc");
    }
}
