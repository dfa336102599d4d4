//! Loan transactions: posting a disbursement, a fee or a repayment (externalIds, value dates,
//! duplicates by natural key, allocation over the schedule), and a loan's transaction list.

use chrono::{DateTime, FixedOffset, Timelike};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::deposits::deposit_affected_amounts;
use super::json::{
    count, decimal, format_datetime, money, object, optional_datetime, optional_str,
    required_decimal, store_numbers, writable,
};
use super::loans::loan_principal_balance;
use super::{
    Account, Answer, Installment, Money, Schedule, Stamp, TRANSACTION_TYPES, Tenant, Terms,
    Transaction, TransactionKind, index_u32,
};
use crate::sandbox::error::ApiError;
use crate::sandbox::products::{FuturePaymentsAcceptance, PrepaymentAcceptance};

impl Tenant {
    /// A transaction's `externalId`, refused (EXTERNAL_ID_ALREADY_EXISTS) when a loan's or a
    /// deposit's transaction already has it.
    pub(super) fn unused_external_id<'a>(
        &mut self,
        doc: &'a serde_json::Map<String, Value>,
    ) -> Result<Option<&'a str>, ApiError> {
        let external_id = optional_str(doc, "externalId")?;
        if let Some(ext) = external_id
            && self.external_ids.contains_key(&self.fingerprint.of(ext))
        {
            self.counters.refused_external_ids += 1;
            return Err(ApiError::external_id_exists());
        }
        Ok(external_id)
    }

    pub fn post_transaction(
        &mut self,
        id_or_key: &str,
        kind: TransactionKind,
        body: &Value,
    ) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        let doc = object(body)?;
        let external_id = self.unused_external_id(doc)?;
        let value_date = optional_datetime(Some(body), "valueDate", self.zone)?
            .unwrap_or_else(|| self.zone.today());
        // The input's other date-times (skyleague/mambu-sdk, `*LoanTransactionInput`), checked
        // before any rule of the account, as the value date is.
        optional_datetime(Some(body), "bookingDate", self.zone)?;
        if kind != TransactionKind::Repayment {
            optional_datetime(Some(body), "firstRepaymentDate", self.zone)?;
        }
        if value_date > self.zone.now() {
            // A repayment dated after now is the product's to allow (`futurePaymentsAcceptance`:
            // "repayment transactions with entry date set in the future", the 2021 spec); any
            // other transaction dated after now is refused as before.
            let product = &self.products.loan_products[self.loans[index].product];
            let future = product
                .payment_settings
                .prepayment_settings
                .future_payments_acceptance;
            match kind {
                TransactionKind::Repayment
                    if future == FuturePaymentsAcceptance::NoFuturePayments =>
                {
                    return Err(ApiError::future_payment_not_allowed());
                }
                TransactionKind::Repayment => {}
                _ => return Err(ApiError::future_value_date()),
            }
        }
        let (type_name, amount, affected) = match kind {
            TransactionKind::Disbursement => self.disburse(index, doc, value_date)?,
            TransactionKind::Fee => self.apply_fee(index, doc, value_date)?,
            TransactionKind::Repayment => self.repay(index, doc, value_date)?,
        };
        let account = self.loans[index].encoded_key.to_string();
        self.note_transaction(&account, type_name, amount, value_date, external_id);
        let mut out = writable(
            doc,
            &[
                "encodedKey",
                "id",
                "type",
                "creationDate",
                "accountBalances",
                "affectedAmounts",
                "parentAccountKey",
                "currency",
            ],
        );
        let read: &[&str] = match kind {
            TransactionKind::Fee => &["amount", "installmentNumber"],
            TransactionKind::Disbursement | TransactionKind::Repayment => &["amount"],
        };
        store_numbers(&mut out, read);
        let t_index = self.book(index, type_name, amount, value_date, out, affected);
        if kind == TransactionKind::Disbursement {
            let holder = self.loans[index].holder;
            self.activate_client(holder);
            self.mark_tranche_disbursed(index, t_index);
        }
        Ok(self.transaction_json(t_index))
    }

    /// GET /loans/{id}/transactions: every transaction of the loan, oldest first.
    /// Every transaction of a loan, oldest first (the HTTP layer pages them).
    pub fn loan_transactions(&self, id_or_key: &str) -> Result<Vec<Value>, ApiError> {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        Ok(self.loans[index]
            .transactions
            .iter()
            .map(|&t| self.transaction_json(t as usize))
            .collect())
    }

    /// Records a transaction of the loan (`out`: what the body gave that Mambu keeps) with the
    /// fields Mambu sets and the balances after it; its index.
    pub(super) fn book(
        &mut self,
        index: usize,
        type_name: &'static str,
        amount: Decimal,
        value_date: DateTime<FixedOffset>,
        mut out: Map<String, Value>,
        affected: Value,
    ) -> usize {
        let loan = &self.loans[index];
        out.insert(
            "currency".into(),
            json!({ "code": self.products.loan_products[loan.product].currency }),
        );
        out.insert("affectedAmounts".into(), affected);
        let principal_balance = loan_principal_balance(loan);
        let total = loan
            .schedule
            .iter()
            .map(Installment::outstanding)
            .sum::<Decimal>();
        out.insert(
            "accountBalances".into(),
            json!({ "principalBalance": money(principal_balance), "totalBalance": money(total) }),
        );
        let t_index =
            self.record_transaction(Account::Loan(index), type_name, amount, value_date, out);
        let loan = &mut self.loans[index];
        loan.transactions.push(index_u32(t_index));
        loan.modified = self.zone.now();
        t_index
    }

    /// Stores a transaction of a loan or deposit (`out`: what the body gave that Mambu keeps,
    /// and what the account's kind adds); its index. What the struct holds typed, and what
    /// [`Tenant::typed_fields`] writes from it exactly as `out` has it, is not kept in its text
    /// too (see [`Transaction`]). The account's list of transactions is the caller's to extend.
    pub(super) fn record_transaction(
        &mut self,
        account: Account,
        type_name: &'static str,
        amount: Decimal,
        value_date: DateTime<FixedOffset>,
        mut out: Map<String, Value>,
    ) -> usize {
        // Keys ascend with the index (`Tenant::transaction_index` searches on it).
        let encoded_key = self.next_key();
        let t_index = self.transactions.len();
        for derived in Self::DERIVED_TRANSACTION_FIELDS {
            out.remove(*derived);
        }
        out.entry("bookingDate")
            .or_insert_with(|| json!(format_datetime(value_date)));
        // To the second, as the answer writes it.
        let created = self
            .zone
            .now()
            .with_nanosecond(0)
            .unwrap_or_else(|| self.zone.now());
        out.insert("creationDate".into(), json!(format_datetime(created)));
        let stamps = Stamp::of(value_date, self.zone).zip(Stamp::of(created, self.zone));
        let (index, mut flags) = match account {
            Account::Loan(i) => (i, 0),
            Account::Deposit(i) => (i, Transaction::DEPOSIT),
        };
        if stamps.is_none() {
            self.exact_dates.insert(encoded_key, [value_date, created]);
            flags |= Transaction::EXACT_DATES;
        }
        let (value_stamp, created_stamp) = stamps.unwrap_or((Stamp::EPOCH, Stamp::EPOCH));
        let figure = |object: &str, field: &str| {
            out.get(object)
                .and_then(|o| o.get(field))
                .and_then(decimal)
                .and_then(Money::of)
                .unwrap_or_default()
        };
        let (affected, balances) = match account {
            Account::Loan(_) => (
                [
                    figure("affectedAmounts", "principalAmount"),
                    figure("affectedAmounts", "interestAmount"),
                ],
                [
                    figure("accountBalances", "principalBalance"),
                    figure("accountBalances", "totalBalance"),
                ],
            ),
            Account::Deposit(_) => (
                [Money::default(); 2],
                [figure("accountBalances", "totalBalance"), Money::default()],
            ),
        };
        let exact = Money::of(amount);
        if exact.is_none() {
            flags |= Transaction::AMOUNT_IN_REST;
            out.insert("amount".into(), money(amount));
        }
        let mut t = Transaction {
            encoded_key,
            rest: 0,
            amount: exact.unwrap_or_default(),
            affected,
            balances,
            value_date: value_stamp,
            created: created_stamp,
            // Fewer than 4 billion accounts: each takes kilobytes.
            account: u32::try_from(index).expect("fewer than 4 billion accounts"),
            kind: TRANSACTION_TYPES
                .iter()
                .position(|k| *k == type_name)
                .and_then(|k| u8::try_from(k).ok())
                .unwrap_or(u8::MAX),
            flags,
            adjusted: false,
            deleted: false,
        };
        let typed = self.typed_fields(&t);
        if typed.keys().all(|k| out.contains_key(k)) && t.kind != u8::MAX {
            for (field, value) in typed {
                if out.get(&field) == Some(&value) {
                    out.remove(&field);
                }
            }
        } else {
            t.flags |= Transaction::VERBATIM;
            if t.kind == u8::MAX {
                out.insert("type".into(), json!(type_name));
            }
        }
        if !out.is_empty() {
            t.rest = self.texts.push(&out);
            t.flags |= Transaction::REST;
        }
        self.tally.posted(&t, amount);
        self.transactions.push(t);
        t_index
    }

    /// The fields of a transaction's answer that [`Tenant::transaction_json`] writes from the
    /// typed ones.
    const DERIVED_TRANSACTION_FIELDS: &[&str] = &[
        "encodedKey",
        "id",
        "type",
        "amount",
        "valueDate",
        "parentAccountKey",
    ];

    /// The fields every transaction of `t`'s kind has, written from what it holds typed (the
    /// currency from its account's product).
    fn typed_fields(&self, t: &Transaction) -> Map<String, Value> {
        let mut doc = Map::new();
        let amount = t.amount.get();
        match t.account() {
            Account::Loan(i) => {
                let currency = &self.products.loan_products[self.loans[i].product].currency;
                doc.insert("currency".into(), json!({ "code": currency }));
                let affected = if matches!(t.kind(), "DISBURSEMENT" | "FEE_APPLIED" | "REPAYMENT") {
                    let [principal, interest] = t.affected.map(Money::get);
                    json!({
                        "principalAmount": money(principal),
                        "interestAmount": money(interest),
                        "feesAmount": money(amount - principal - interest),
                        "penaltyAmount": 0,
                    })
                } else {
                    json!({})
                };
                doc.insert("affectedAmounts".into(), affected);
                doc.insert(
                    "accountBalances".into(),
                    json!({
                        "principalBalance": money(t.balances[0].get()),
                        "totalBalance": money(t.balances[1].get()),
                    }),
                );
            }
            Account::Deposit(i) => {
                if let Some(product) = self.products.deposit_product(&self.deposits[i].product_key)
                {
                    doc.insert("currencyCode".into(), json!(product.currency));
                }
                doc.insert("affectedAmounts".into(), deposit_affected_amounts(amount));
                doc.insert(
                    "accountBalances".into(),
                    json!({ "totalBalance": money(t.balances[0].get()) }),
                );
            }
        }
        let [value_date, created] = self.transaction_dates(t);
        doc.insert("bookingDate".into(), json!(format_datetime(value_date)));
        doc.insert("creationDate".into(), json!(format_datetime(created)));
        doc
    }

    /// A transaction's value date and creation date-time.
    pub(super) fn transaction_dates(&self, t: &Transaction) -> [DateTime<FixedOffset>; 2] {
        if t.has(Transaction::EXACT_DATES) {
            // Kept there with the flag (`record_transaction`).
            if let Some(dates) = self.exact_dates.get(&t.encoded_key) {
                return *dates;
            }
        }
        // A stamp is made only where it reads back (see `Stamp::of`).
        [t.value_date, t.created].map(|s| s.get(self.zone).unwrap_or_default())
    }

    /// The transaction's amount.
    pub(super) fn transaction_amount(&self, t: &Transaction) -> Decimal {
        if t.has(Transaction::AMOUNT_IN_REST) {
            self.transaction_rest(t)
                .get("amount")
                .and_then(decimal)
                .unwrap_or_default()
        } else {
            t.amount.get()
        }
    }

    /// What the transaction keeps as text.
    pub(super) fn transaction_rest(&self, t: &Transaction) -> Map<String, Value> {
        if t.has(Transaction::REST) {
            self.texts.map(t.rest)
        } else {
            Map::new()
        }
    }

    /// Changes what the transaction `t_index` keeps as text (an adjustment).
    pub(super) fn edit_transaction_rest(
        &mut self,
        t_index: usize,
        change: impl FnOnce(&mut Map<String, Value>),
    ) {
        let mut rest = self.transaction_rest(&self.transactions[t_index]);
        change(&mut rest);
        let at = self.texts.push(&rest);
        let t = &mut self.transactions[t_index];
        t.rest = at;
        t.flags |= Transaction::REST;
    }

    /// A transaction as Mambu answers it: the fields it holds typed, and its text over them.
    pub(super) fn transaction_json(&self, t_index: usize) -> Value {
        let t = &self.transactions[t_index];
        let parent = match t.account() {
            Account::Loan(i) => &self.loans[i].encoded_key,
            Account::Deposit(i) => &self.deposits[i].encoded_key,
        };
        let mut doc = if t.has(Transaction::VERBATIM) {
            Map::new()
        } else {
            self.typed_fields(t)
        };
        doc.extend(self.transaction_rest(t));
        doc.insert("encodedKey".into(), json!(t.encoded_key));
        doc.insert("id".into(), json!((t_index + 1).to_string()));
        if t.kind != u8::MAX {
            doc.insert("type".into(), json!(t.kind()));
        }
        doc.insert("amount".into(), money(self.transaction_amount(t)));
        doc.insert(
            "valueDate".into(),
            json!(format_datetime(self.transaction_dates(t)[0])),
        );
        doc.insert("parentAccountKey".into(), json!(parent));
        Value::Object(doc)
    }

    /// Notes the transaction about to be stored (the next in `transactions`) on the account
    /// with `account` as encodedKey: sent without an externalId, it is counted again under its
    /// natural key (account, type, amount and value date: see [`Tenant::stats`]); sent with
    /// one, the externalId is claimed. Loans' and deposits' transactions alike. Both are kept
    /// as their [`Fingerprint`](super::Fingerprint).
    pub(super) fn note_transaction(
        &mut self,
        account: &str,
        type_name: &str,
        amount: Decimal,
        value_date: DateTime<FixedOffset>,
        external_id: Option<&str>,
    ) {
        if let Some(ext) = external_id {
            self.external_ids
                .insert(self.fingerprint.of(ext), index_u32(self.transactions.len()));
            return;
        }
        let natural = format!(
            "txn|{account}|{type_name}|{amount}|{}",
            format_datetime(value_date)
        );
        let count = self
            .transaction_keys
            .entry(self.fingerprint.of(&natural))
            .or_insert(0);
        *count += 1;
        if *count > 1 {
            self.counters.duplicate_transactions += 1;
        }
    }

    fn disburse(
        &mut self,
        index: usize,
        doc: &Map<String, Value>,
        value_date: DateTime<FixedOffset>,
    ) -> Result<(&'static str, Decimal, Value), ApiError> {
        if self.products.loan_products[self.loans[index].product].is_tranched() {
            return self.disburse_tranche(index, doc, value_date);
        }
        let loan = &self.loans[index];
        match loan.state {
            "APPROVED" => {}
            "ACTIVE" | "ACTIVE_IN_ARREARS" => return Err(ApiError::account_already_disbursed()),
            _ => return Err(ApiError::invalid_account_state("accountState")),
        }
        let amount = match doc.get("amount") {
            None | Some(Value::Null) => loan.amount,
            Some(v) => decimal(v).ok_or_else(|| ApiError::invalid_parameters("amount"))?,
        };
        if amount != loan.amount {
            return Err(ApiError::invalid_amount("amount"));
        }
        let first_repayment = optional_datetime(
            Some(&Value::Object(doc.clone())),
            "firstRepaymentDate",
            self.zone,
        )?;
        if let Some(first) = first_repayment
            && first <= value_date
        {
            return Err(ApiError::first_repayment_before_expected_disbursement(
                "firstRepaymentDate",
            ));
        }
        if loan.custom_schedule {
            if loan
                .schedule
                .first()
                .is_some_and(|first| first.due <= value_date)
            {
                return Err(ApiError::invalid_disbursement_date());
            }
        } else {
            let terms = Terms {
                first_repayment: first_repayment.or(loan.first_repayment),
                ..loan.terms()
            };
            self.loans[index].schedule = self.generate_schedule(terms, value_date);
            self.loans[index].first_repayment = terms.first_repayment;
        }
        if let Some(target) = doc
            .get("transferDetails")
            .and_then(|t| {
                t.get("linkedAccountId")
                    .or_else(|| t.get("linkedAccountKey"))
            })
            .and_then(Value::as_str)
        {
            let deposit = self
                .deposit_index(target)
                .ok_or_else(ApiError::invalid_settlement_account_key)?;
            if self.loans[index].settlement_key != Some(self.deposits[deposit].encoded_key) {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    1936,
                    "LINK_BETWEEN_ACCOUNTS_DOES_NOT_EXIST",
                )
                .at("transferDetails.linkedAccountId"));
            }
            let d = &mut self.deposits[deposit];
            self.entities.deposit_state(d, -1);
            d.balance += amount;
            if d.state == "APPROVED" {
                d.state = "ACTIVE";
            }
            self.entities.deposit_state(d, 1);
        }
        let loan = &mut self.loans[index];
        self.entities.loan_state(loan, -1);
        loan.state = "ACTIVE";
        self.entities.loan_state(loan, 1);
        loan.disbursed = Some(value_date);
        Ok((
            "DISBURSEMENT",
            amount,
            json!({ "principalAmount": money(amount), "interestAmount": 0, "feesAmount": 0, "penaltyAmount": 0 }),
        ))
    }

    /// The next undisbursed tranche of a tranched loan (issue 18): its index and amount, and
    /// how much its earlier tranches disbursed; `None` when all are disbursed.
    fn next_tranche(&self, index: usize) -> Option<(usize, Decimal, Decimal)> {
        let tranches = self.loans[index].doc.get("tranches")?;
        let tranches = tranches.as_array()?;
        let mut before = Decimal::ZERO;
        for (i, t) in tranches.iter().enumerate() {
            let amount = t.get("amount").and_then(decimal).unwrap_or_default();
            let done = t
                .get("disbursementDetails")
                .and_then(|d| d.get("disbursementTransactionKey"))
                .is_some_and(|k| !k.is_null());
            if !done {
                return Some((i, amount, before));
            }
            before += amount;
        }
        None
    }

    /// A disbursement of a tranched loan disburses its next undisbursed tranche (issue 18):
    /// the body's `amount`, if any, must be the tranche's (INVALID_AMOUNT); the first makes the
    /// APPROVED loan ACTIVE, the others need it ACTIVE (in arrears or not); beyond the last,
    /// ALL_TRANCHES_ALREADY_DISBURSED. The value date is not before the tranche's expected
    /// disbursement date (INVALID_DISBURSEMENT_DATE; the stricter reading: Mambu's docs do not
    /// say whether a tranche may be disbursed early) nor before another transaction of the
    /// account (BACKDATE_BEFORE_OTHER_OPERATION).
    ///
    /// The schedule follows what is disbursed: the first tranche's amount is spread over the
    /// loan's installments from its value date as any loan's is (generate_schedule); each
    /// later tranche's amount is spread the same way over the installments due after its value
    /// date (on the last installment when none is), its principal and interest added to
    /// theirs. Principal due over the schedule is the amount disbursed so far.
    fn disburse_tranche(
        &mut self,
        index: usize,
        doc: &Map<String, Value>,
        value_date: DateTime<FixedOffset>,
    ) -> Result<(&'static str, Decimal, Value), ApiError> {
        let loan = &self.loans[index];
        let Some((tranche, amount, before)) = self.next_tranche(index) else {
            return match loan.state {
                "ACTIVE" | "ACTIVE_IN_ARREARS" => Err(ApiError::all_tranches_already_disbursed()),
                _ => Err(ApiError::invalid_account_state("accountState")),
            };
        };
        let first = tranche == 0;
        match (loan.state, first) {
            ("APPROVED", true) | ("ACTIVE" | "ACTIVE_IN_ARREARS", false) => {}
            _ => return Err(ApiError::invalid_account_state("accountState")),
        }
        match doc.get("amount") {
            None | Some(Value::Null) => {}
            Some(v) => {
                let given = decimal(v).ok_or_else(|| ApiError::invalid_parameters("amount"))?;
                if given != amount {
                    return Err(ApiError::invalid_amount("amount"));
                }
            }
        }
        let tranches = loan.doc.get("tranches").unwrap_or_default();
        let expected = tranches[tranche]["disbursementDetails"]["expectedDisbursementDate"]
            .as_str()
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok());
        if expected.is_some_and(|e| value_date < e) {
            return Err(ApiError::invalid_disbursement_date());
        }
        self.refuse_backdating_before(&loan.transactions, value_date)?;
        if first {
            let first_repayment = optional_datetime(
                Some(&Value::Object(doc.clone())),
                "firstRepaymentDate",
                self.zone,
            )?;
            if let Some(first) = first_repayment
                && first <= value_date
            {
                return Err(ApiError::first_repayment_before_expected_disbursement(
                    "firstRepaymentDate",
                ));
            }
            if !loan.custom_schedule {
                let terms = Terms {
                    amount,
                    first_repayment: first_repayment.or(loan.first_repayment),
                    ..loan.terms()
                };
                self.loans[index].schedule = self.generate_schedule(terms, value_date);
                self.loans[index].first_repayment = terms.first_repayment;
            }
            let loan = &mut self.loans[index];
            self.entities.loan_state(loan, -1);
            loan.state = "ACTIVE";
            self.entities.loan_state(loan, 1);
            loan.disbursed = Some(value_date);
        } else {
            let added = self.tranche_addition(index, amount, value_date);
            let loan = &mut self.loans[index];
            loan.schedule.edit(|schedule| {
                for (i, (principal, interest)) in added {
                    schedule[i].principal += principal;
                    schedule[i].interest += interest;
                    schedule[i].repaid = None;
                }
            });
        }
        debug_assert!(before + amount <= self.loans[index].amount);
        Ok((
            "DISBURSEMENT",
            amount,
            json!({ "principalAmount": money(amount), "interestAmount": 0, "feesAmount": 0, "penaltyAmount": 0 }),
        ))
    }

    /// What a later tranche of `amount` disbursed on `value_date` adds to the schedule: its
    /// amount spread as any loan's is over the installments due after `value_date` (the last
    /// one when none is), each as (installment, principal, interest). The same figures are
    /// taken off when its disbursement is adjusted.
    pub(super) fn tranche_addition(
        &mut self,
        index: usize,
        amount: Decimal,
        value_date: DateTime<FixedOffset>,
    ) -> Vec<(usize, (Decimal, Decimal))> {
        let loan = &self.loans[index];
        let later: Vec<usize> = loan
            .schedule
            .iter()
            .enumerate()
            .filter(|(_, inst)| inst.due > value_date)
            .map(|(i, _)| i)
            .collect();
        let later = if later.is_empty() {
            vec![loan.schedule.len().saturating_sub(1)]
        } else {
            later
        };
        let terms = Terms {
            amount,
            installments: later.len() as u32,
            first_repayment: Some(loan.schedule.at(later[0]).due),
            ..loan.terms()
        };
        let added = self.generate_schedule(terms, value_date);
        later
            .into_iter()
            .zip(added.iter().map(|a| (a.principal, a.interest)))
            .collect()
    }

    /// Records the disbursement transaction `t_index` on the tranche it disbursed
    /// (`disbursementDetails.disbursementTransactionKey`); nothing for an untranched loan.
    fn mark_tranche_disbursed(&mut self, index: usize, t_index: usize) {
        let Some((tranche, _, _)) = self.next_tranche(index) else {
            return;
        };
        let key = Some(json!(self.transactions[t_index].encoded_key));
        self.set_tranche_transaction(index, tranche, key);
    }

    /// Sets (or with `None` removes) the `disbursementDetails.disbursementTransactionKey` of
    /// the loan's tranche `tranche`; nothing when it has no such tranche.
    pub(super) fn set_tranche_transaction(
        &mut self,
        index: usize,
        tranche: usize,
        key: Option<Value>,
    ) {
        self.loans[index].doc.edit(|doc| {
            let Some(details) = doc
                .get_mut("tranches")
                .and_then(|t| t.get_mut(tranche))
                .and_then(|t| t.get_mut("disbursementDetails"))
                .and_then(Value::as_object_mut)
            else {
                return;
            };
            match key {
                Some(key) => details.insert("disbursementTransactionKey".into(), key),
                None => details.remove("disbursementTransactionKey"),
            };
        });
    }

    /// A fee or repayment's value date against the account's history: not before the
    /// disbursement (BACKDATE_BEFORE_ACTIVATION), and not before the value date of any
    /// transaction already on the account (BACKDATE_BEFORE_OTHER_OPERATION: a backdated
    /// transaction must not precede a later operation, ../shared/mambu-api.md §8). The same date
    /// is not before.
    fn require_active(
        &self,
        index: usize,
        value_date: DateTime<FixedOffset>,
    ) -> Result<(), ApiError> {
        let loan = &self.loans[index];
        if let Some(disbursed) = loan.disbursed
            && value_date < disbursed
        {
            return Err(ApiError::value_date_before_disbursement());
        }
        self.refuse_backdating_before(&loan.transactions, value_date)
    }

    /// A backdated transaction must not precede a later operation already on the account
    /// (BACKDATE_BEFORE_OTHER_OPERATION, ../shared/mambu-api.md §8): `value_date` against the
    /// latest value date among the account's `transactions` (loan or deposit). The same date is
    /// not before.
    pub(super) fn refuse_backdating_before(
        &self,
        transactions: &[u32],
        value_date: DateTime<FixedOffset>,
    ) -> Result<(), ApiError> {
        if self
            .latest_value_date(transactions)
            .is_some_and(|latest| value_date < latest)
        {
            return Err(ApiError::backdate_before_other_operation());
        }
        Ok(())
    }

    /// The latest value date among an account's transactions (those removed behind the API's
    /// back are no longer on its list; an adjusted one no longer stands: Mambu's correction is
    /// to adjust and enter again, at the date that was meant).
    fn latest_value_date(&self, transactions: &[u32]) -> Option<DateTime<FixedOffset>> {
        transactions
            .iter()
            .map(|&t| &self.transactions[t as usize])
            .filter(|t| !t.deleted && !t.adjusted)
            .map(|t| self.transaction_dates(t)[0])
            .max()
    }

    /// The fee's amount under the product's `feesSettings` (../shared/mambu-api.md §8, "Fees"):
    /// with `predefinedFeeKey`, an ACTIVE MANUAL fee of the product, whose fixed amount (if it
    /// has one) the body may only repeat, or whose amount the body gives (if it has none);
    /// without it, an arbitrary fee, which needs `allowArbitraryFees`.
    fn fee_amount(&self, index: usize, doc: &Map<String, Value>) -> Result<Decimal, ApiError> {
        let settings = &self.products.loan_products[self.loans[index].product].fees_settings;
        let body_amount = match doc.get("amount") {
            None | Some(Value::Null) => None,
            Some(v) => Some(decimal(v).ok_or_else(|| ApiError::invalid_parameters("amount"))?),
        };
        let Some(key) = optional_str(doc, "predefinedFeeKey")? else {
            let amount = required_decimal(doc, "amount")?;
            if !settings.allow_arbitrary_fees {
                return Err(ApiError::arbitrary_fee_not_allowed());
            }
            return Ok(amount);
        };
        // The fee's encodedKey, or its id: the sandbox's convention for keys (a product's
        // encodedKey or id in `productTypeKey`).
        let fee = settings
            .fees
            .iter()
            .find(|f| f.encoded_key == key || f.id == key)
            .ok_or_else(ApiError::invalid_fee_key)?;
        if fee.state != "ACTIVE" {
            return Err(ApiError::fee_not_active());
        }
        if fee.trigger != "MANUAL" {
            return Err(ApiError::fee_not_allowed());
        }
        match (fee.amount, body_amount) {
            (Some(fixed), None) => Ok(fixed),
            // Stricter reading: the body may repeat the product's fixed amount, nothing else
            // (the spec's FEE_AMOUNT_ALREADY_DEFINED_IN_PRODUCT hints that Mambu may refuse any
            // amount there; an equal one is let through).
            (Some(fixed), Some(amount)) if amount == fixed => Ok(amount),
            (Some(_), Some(_)) => Err(ApiError::inconsistent_fee_amount()),
            (None, Some(amount)) => Ok(amount),
            (None, None) => Err(ApiError::mandatory_fee_amount()),
        }
    }

    fn apply_fee(
        &mut self,
        index: usize,
        doc: &Map<String, Value>,
        value_date: DateTime<FixedOffset>,
    ) -> Result<(&'static str, Decimal, Value), ApiError> {
        if !matches!(self.loans[index].state, "ACTIVE" | "ACTIVE_IN_ARREARS") {
            return Err(ApiError::invalid_account_state("accountState"));
        }
        self.require_active(index, value_date)?;
        let amount = self.fee_amount(index, doc)?;
        if amount <= Decimal::ZERO {
            return Err(ApiError::fee_amount_not_positive());
        }
        let fixed = self.products.loan_products[self.loans[index].product].is_fixed_term();
        let loan = &mut self.loans[index];
        let position = match doc.get("installmentNumber") {
            None | Some(Value::Null) if fixed => {
                return Err(ApiError::installment_number_mandatory());
            }
            None | Some(Value::Null) => loan
                .schedule
                .iter()
                .position(|i| !i.is_paid())
                .ok_or_else(ApiError::fee_on_paid_installment)?,
            Some(v) => {
                let n = count(v)
                    .filter(|n| *n >= 1 && (*n as usize) <= loan.schedule.len())
                    .ok_or_else(|| {
                        ApiError::new(
                            axum::http::StatusCode::BAD_REQUEST,
                            3751,
                            "INVALID_REPAYMENT_NUMBER",
                        )
                        .at("installmentNumber")
                    })?;
                n as usize - 1
            }
        };
        if loan.schedule.at(position).is_paid() {
            return Err(ApiError::fee_on_paid_installment());
        }
        loan.schedule
            .edit(|schedule| schedule[position].fee += amount);
        Ok((
            "FEE_APPLIED",
            amount,
            json!({ "principalAmount": 0, "interestAmount": 0, "feesAmount": money(amount), "penaltyAmount": 0 }),
        ))
    }

    /// Allocates a repayment installment by installment, oldest first: fee, interest, principal.
    fn repay(
        &mut self,
        index: usize,
        doc: &Map<String, Value>,
        value_date: DateTime<FixedOffset>,
    ) -> Result<(&'static str, Decimal, Value), ApiError> {
        let amount = required_decimal(doc, "amount")?;
        if !matches!(self.loans[index].state, "ACTIVE" | "ACTIVE_IN_ARREARS") {
            return Err(ApiError::invalid_state_for_repayments());
        }
        self.require_active(index, value_date)?;
        if amount <= Decimal::ZERO {
            return Err(ApiError::invalid_amount("amount"));
        }
        let loan = &mut self.loans[index];
        let owed: Decimal = loan.schedule.iter().map(Installment::outstanding).sum();
        if owed.is_zero() {
            return Err(ApiError::zero_balance_repayment());
        }
        // ACCEPT_OVERPAYMENTS would let a repayment pay more than the total balance, the excess
        // kept as an overpayment; the sandbox keeps no such balance, so it refuses the excess
        // under every setting (the stricter reading: a migration has no overpayment to post).
        if amount > owed {
            return Err(ApiError::excess_repayment());
        }
        // NO_PREPAYMENTS: a repayment may pay what is due up to its value date (what is left
        // of the installments due on or before it, fees and interest included, as the
        // allocation below takes them), no more.
        let prepayment = self.products.loan_products[loan.product]
            .payment_settings
            .prepayment_settings
            .prepayment_acceptance;
        if prepayment == PrepaymentAcceptance::NoPrepayments
            && amount > due_by(&loan.schedule, value_date)
        {
            return Err(ApiError::prepayment_not_allowed());
        }
        let (mut fee_paid, mut interest_paid, mut principal_paid) =
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        let mut left = amount;
        loan.schedule.edit(|schedule| {
            for inst in schedule.iter_mut() {
                if left.is_zero() {
                    break;
                }
                for (due, paid, total) in [
                    (inst.fee, &mut inst.fee_paid, &mut fee_paid),
                    (inst.interest, &mut inst.interest_paid, &mut interest_paid),
                    (
                        inst.principal,
                        &mut inst.principal_paid,
                        &mut principal_paid,
                    ),
                ] {
                    let take = (due - *paid).min(left).max(Decimal::ZERO);
                    *paid += take;
                    *total += take;
                    left -= take;
                }
                if inst.is_paid() && inst.repaid.is_none() {
                    inst.repaid = Some(value_date);
                }
            }
        });
        if loan.schedule.iter().all(Installment::is_paid) {
            self.entities.loan_state(loan, -1);
            loan.state = "CLOSED";
            loan.sub_state = Some("REPAID");
            self.entities.loan_state(loan, 1);
            loan.closed_on = Some(self.zone.today());
        }
        Ok((
            "REPAYMENT",
            amount,
            json!({ "principalAmount": money(principal_paid), "interestAmount": money(interest_paid), "feesAmount": money(fee_paid), "penaltyAmount": 0 }),
        ))
    }
}

/// What is left to pay of the installments due on or before `at`.
fn due_by(schedule: &Schedule, at: DateTime<FixedOffset>) -> Decimal {
    schedule
        .iter()
        .filter(|i| i.due <= at)
        .map(Installment::outstanding)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{approved_loan, client, loan, tenant};
    use super::*;

    #[test]
    fn repayment_is_allocated_fee_interest_principal_and_closes_the_loan() {
        let mut t = tenant();
        let holder = client(&mut t);
        let l = loan(&mut t, &holder, "600");
        let id = l["id"].as_str().unwrap().to_owned();
        t.change_loan_state(&id, &json!({ "action": "APPROVE" }))
            .unwrap();
        t.post_transaction(&id, TransactionKind::Disbursement, &json!({}))
            .unwrap();
        t.post_transaction(
            &id,
            TransactionKind::Fee,
            &json!({ "amount": 10, "installmentNumber": 1 }),
        )
        .unwrap();
        let owed: Decimal = t.loans[0]
            .schedule
            .iter()
            .map(Installment::outstanding)
            .sum();
        let err = t
            .post_transaction(
                &id,
                TransactionKind::Repayment,
                &json!({ "amount": money(owed + Decimal::ONE) }),
            )
            .unwrap_err();
        assert_eq!(err.reason, "EXCESS_REPAYMENT_ERROR");
        let paid = t
            .post_transaction(
                &id,
                TransactionKind::Repayment,
                &json!({ "amount": money(owed) }),
            )
            .unwrap();
        assert_eq!(paid["affectedAmounts"]["feesAmount"].to_string(), "10");
        assert_eq!(t.get_loan(&id).unwrap()["accountState"], "CLOSED");
        let err = t
            .post_transaction(&id, TransactionKind::Repayment, &json!({ "amount": 1 }))
            .unwrap_err();
        assert_eq!(err.reason, "INVALID_ACCOUNT_STATE_FOR_REPAYMENTS");
    }

    #[test]
    fn duplicates_without_external_id_are_counted() {
        let mut t = tenant();
        let id = approved_loan(&mut t, "3000");
        t.post_transaction(&id, TransactionKind::Disbursement, &json!({}))
            .unwrap();
        let body = json!({ "amount": 5, "valueDate": format_datetime(t.zone.today()) });
        t.post_transaction(&id, TransactionKind::Repayment, &body)
            .unwrap();
        t.post_transaction(&id, TransactionKind::Repayment, &body)
            .unwrap();
        assert_eq!(t.counters.duplicate_transactions, 1);
    }

    #[test]
    fn every_date_time_of_a_transaction_carries_the_zones_offset() {
        let mut t = tenant();
        t.zone = super::super::Zone::new(chrono_tz::Europe::Lisbon);
        let id = approved_loan(&mut t, "3000");
        let cases = [
            (
                TransactionKind::Disbursement,
                json!({ "valueDate": "2024-06-03T09:00:00+01:00", "firstRepaymentDate": "2024-07-03T00:00:00+00:00" }),
                "Invalid date offset for value 2024-07-03T00:00:00 org offset is +01:00",
            ),
            (
                TransactionKind::Disbursement,
                json!({ "valueDate": "2024-06-03T09:00:00+01:00", "bookingDate": "2024-01-03T09:00:00+01:00" }),
                "Invalid date offset for value 2024-01-03T09:00:00 org offset is +00:00",
            ),
            (
                TransactionKind::Fee,
                json!({ "amount": 5, "installmentNumber": 1, "firstRepaymentDate": "2024-03-31T01:00:00+00:00" }),
                "Invalid date offset for value 2024-03-31T01:00:00 org offset is +01:00",
            ),
        ];
        for (kind, body, source) in cases {
            let err = t.post_transaction(&id, kind, &body).unwrap_err();
            assert_eq!((err.code, err.reason), (4, "INVALID_PARAMETERS"), "{body}");
            assert_eq!(err.source.as_deref(), Some(source));
        }
        let disbursed = t
            .post_transaction(
                &id,
                TransactionKind::Disbursement,
                &json!({ "valueDate": "2024-06-03T09:00:00+01:00", "firstRepaymentDate": "2024-07-03T00:00:00+01:00" }),
            )
            .unwrap();
        assert_eq!(disbursed["valueDate"], "2024-06-03T09:00:00+01:00");
    }
}
