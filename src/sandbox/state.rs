//! The tenant's in-memory state and Mambu's rules over it: entities, ids, account states,
//! schedules and balances. Pure logic, no HTTP: every operation takes a parsed JSON body and
//! returns the answer's JSON or an [`ApiError`].

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Months, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::products::{LoanProduct, Products};

/// Everything the sandbox tenant holds.
#[derive(Debug)]
pub struct Tenant {
    products: Products,
    seq: u64,
    clients: Vec<Client>,
    deposits: Vec<Deposit>,
    loans: Vec<Loan>,
    transactions: Vec<Transaction>,
    /// encodedKey → entity, for every entity kind.
    keys: HashMap<String, EntityRef>,
    client_ids: HashMap<String, usize>,
    /// Loans and deposits share one id space, as Mambu's ACCOUNT_ID_ALREADY_IN_USE implies.
    account_ids: HashMap<String, EntityRef>,
    external_ids: HashMap<String, usize>,
    natural_keys: HashMap<String, u64>,
    pub counters: Counters,
}

/// What the stats endpoint reports beyond entity counts.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Entities or transactions created again for the same natural key (see [`Tenant::stats`]).
    pub duplicate_clients: u64,
    pub duplicate_deposits: u64,
    pub duplicate_loans: u64,
    pub duplicate_transactions: u64,
    /// Creations refused because the id or externalId was taken: replays caught by Mambu's rules.
    pub refused_client_ids: u64,
    pub refused_account_ids: u64,
    pub refused_external_ids: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntityRef {
    Client(usize),
    Deposit(usize),
    Loan(usize),
}

#[derive(Debug)]
struct Client {
    encoded_key: String,
    id: String,
    doc: Map<String, Value>,
    state: &'static str,
    created: String,
    activated: Option<String>,
}

#[derive(Debug)]
struct Deposit {
    encoded_key: String,
    id: String,
    doc: Map<String, Value>,
    holder: usize,
    product_key: String,
    state: &'static str,
    balance: Decimal,
    linked_loans: Vec<String>,
    created: String,
    approved: Option<String>,
}

#[derive(Debug)]
struct Loan {
    encoded_key: String,
    id: String,
    doc: Map<String, Value>,
    holder: usize,
    product: usize,
    amount: Decimal,
    interest_rate: Decimal,
    installments: u32,
    state: &'static str,
    sub_state: Option<&'static str>,
    schedule: Vec<Installment>,
    custom_schedule: bool,
    settlement_key: Option<String>,
    first_repayment: Option<DateTime<FixedOffset>>,
    disbursed: Option<DateTime<FixedOffset>>,
    created: String,
    approved: Option<String>,
    modified: String,
    transactions: Vec<usize>,
}

/// What a generated schedule depends on.
#[derive(Debug, Clone, Copy)]
struct Terms {
    amount: Decimal,
    interest_rate: Decimal,
    installments: u32,
    first_repayment: Option<DateTime<FixedOffset>>,
}

impl Loan {
    fn terms(&self) -> Terms {
        Terms {
            amount: self.amount,
            interest_rate: self.interest_rate,
            installments: self.installments,
            first_repayment: self.first_repayment,
        }
    }
}

#[derive(Debug, Clone)]
struct Installment {
    encoded_key: String,
    due: DateTime<FixedOffset>,
    principal: Decimal,
    interest: Decimal,
    fee: Decimal,
    principal_paid: Decimal,
    interest_paid: Decimal,
    fee_paid: Decimal,
    repaid: Option<DateTime<FixedOffset>>,
}

impl Installment {
    fn outstanding(&self) -> Decimal {
        self.principal + self.interest + self.fee
            - self.principal_paid
            - self.interest_paid
            - self.fee_paid
    }
    fn is_paid(&self) -> bool {
        self.outstanding() <= Decimal::ZERO
            && self.principal + self.interest + self.fee > Decimal::ZERO
    }
}

#[derive(Debug)]
struct Transaction {
    kind: &'static str,
    doc: Map<String, Value>,
    loan: usize,
    /// Removed behind the API's back (`POST /_sandbox/tamper`).
    deleted: bool,
}

/// The kinds of loan transaction the migration posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    Disbursement,
    Fee,
    Repayment,
}

type Answer = Result<Value, ApiError>;

impl Tenant {
    pub fn new(products: Products) -> Self {
        Self {
            products,
            seq: 0,
            clients: Vec::new(),
            deposits: Vec::new(),
            loans: Vec::new(),
            transactions: Vec::new(),
            keys: HashMap::new(),
            client_ids: HashMap::new(),
            account_ids: HashMap::new(),
            external_ids: HashMap::new(),
            natural_keys: HashMap::new(),
            counters: Counters::default(),
        }
    }

    pub fn products(&self) -> &Products {
        &self.products
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A Mambu-like encodedKey: 32 lowercase hex characters, unique in the tenant.
    fn new_key(&mut self) -> String {
        format!("8a5b{:028x}", self.next_seq())
    }

    /// Counts a creation again under a natural key; true when it was seen before.
    fn seen_before(&mut self, natural_key: String) -> bool {
        let count = self.natural_keys.entry(natural_key).or_insert(0);
        *count += 1;
        *count > 1
    }

    // ---- clients ----

    pub fn create_client(&mut self, body: &Value) -> Answer {
        let doc = object(body)?;
        let first = required_str(doc, "firstName")?;
        let last = required_str(doc, "lastName")?;
        let birth = optional_str(doc, "birthDate")?;
        if let Some(birth) = birth {
            NaiveDate::parse_from_str(birth, "%Y-%m-%d")
                .map_err(|_| ApiError::invalid_parameters("birthDate"))?;
        }
        if let Some(branch) = optional_str(doc, "assignedBranchKey")?
            && self
                .products
                .branch(branch)
                .is_none_or(|b| b.encoded_key != branch)
        {
            return Err(ApiError::invalid_branch_key());
        }
        let id = match optional_str(doc, "id")? {
            Some(id) => {
                if self.client_ids.contains_key(id) {
                    self.counters.refused_client_ids += 1;
                    return Err(ApiError::client_id_in_use());
                }
                id.to_owned()
            }
            None => {
                let natural = format!("client|{first}|{last}|{}", birth.unwrap_or(""));
                if self.seen_before(natural) {
                    self.counters.duplicate_clients += 1;
                }
                format!("{:09}", 100_000_000 + self.seq + 1)
            }
        };
        let encoded_key = self.new_key();
        let index = self.clients.len();
        self.client_ids.insert(id.clone(), index);
        self.keys
            .insert(encoded_key.clone(), EntityRef::Client(index));
        let mut doc = writable(
            doc,
            &[
                "encodedKey",
                "state",
                "creationDate",
                "lastModifiedDate",
                "activationDate",
                "approvedDate",
                "closedDate",
            ],
        );
        doc.remove("id");
        self.clients.push(Client {
            encoded_key,
            id,
            doc,
            state: "INACTIVE",
            created: now(),
            activated: None,
        });
        Ok(self.client_json(index))
    }

    pub fn get_client(&self, id_or_key: &str) -> Answer {
        let index = self
            .client_index(id_or_key)
            .ok_or_else(ApiError::invalid_client_id)?;
        Ok(self.client_json(index))
    }

    fn client_index(&self, id_or_key: &str) -> Option<usize> {
        match self.keys.get(id_or_key) {
            Some(EntityRef::Client(i)) => Some(*i),
            _ => self.client_ids.get(id_or_key).copied(),
        }
    }

    fn client_json(&self, index: usize) -> Value {
        let c = &self.clients[index];
        let mut out = c.doc.clone();
        out.insert("encodedKey".into(), json!(c.encoded_key));
        out.insert("id".into(), json!(c.id));
        out.insert("state".into(), json!(c.state));
        out.insert("creationDate".into(), json!(c.created));
        out.insert(
            "lastModifiedDate".into(),
            json!(c.activated.as_ref().unwrap_or(&c.created)),
        );
        if let Some(at) = &c.activated {
            out.insert("activationDate".into(), json!(at));
        }
        Value::Object(out)
    }

    fn activate_client(&mut self, index: usize) {
        let client = &mut self.clients[index];
        if client.state == "INACTIVE" {
            client.state = "ACTIVE";
            client.activated = Some(now());
        }
    }

    /// The holder named by `accountHolderKey` (an encodedKey, as Mambu requires).
    fn holder(&self, doc: &Map<String, Value>) -> Result<usize, ApiError> {
        let key = required_str(doc, "accountHolderKey")?;
        let kind = required_str(doc, "accountHolderType")?;
        if !matches!(kind, "CLIENT" | "GROUP") {
            return Err(ApiError::invalid_parameters("accountHolderType"));
        }
        match (kind, self.keys.get(key)) {
            ("CLIENT", Some(EntityRef::Client(i))) => Ok(*i),
            _ => Err(ApiError::account_holder_not_found()),
        }
    }

    fn claim_account_id(
        &mut self,
        doc: &Map<String, Value>,
        natural: String,
    ) -> Result<String, ApiError> {
        match optional_str(doc, "id")? {
            Some(id) if self.account_ids.contains_key(id) => {
                self.counters.refused_account_ids += 1;
                Err(ApiError::account_id_in_use())
            }
            Some(id) => Ok(id.to_owned()),
            None => {
                if self.seen_before(natural) {
                    if doc.contains_key("loanAmount") {
                        self.counters.duplicate_loans += 1;
                    } else {
                        self.counters.duplicate_deposits += 1;
                    }
                }
                Ok(format!("AUTO{:06}", self.seq + 1))
            }
        }
    }

    // ---- deposits ----

    pub fn create_deposit(&mut self, body: &Value) -> Answer {
        let doc = object(body)?;
        let holder = self.holder(doc)?;
        let name = required_str(doc, "name")?;
        let product_key = required_str(doc, "productTypeKey")?;
        let product = self
            .products
            .deposit_products
            .iter()
            .find(|p| p.encoded_key == product_key)
            .ok_or_else(|| ApiError::invalid_product("productTypeKey"))?
            .encoded_key
            .clone();
        let natural = format!("deposit|{holder}|{product}|{name}");
        let id = self.claim_account_id(doc, natural)?;
        let encoded_key = self.new_key();
        let index = self.deposits.len();
        self.account_ids
            .insert(id.clone(), EntityRef::Deposit(index));
        self.keys
            .insert(encoded_key.clone(), EntityRef::Deposit(index));
        let mut doc = writable(
            doc,
            &[
                "encodedKey",
                "accountState",
                "creationDate",
                "lastModifiedDate",
                "approvedDate",
                "activationDate",
                "balances",
                "linkedSettlementAccountKeys",
                "currencyCode",
            ],
        );
        doc.remove("id");
        self.deposits.push(Deposit {
            encoded_key,
            id,
            doc,
            holder,
            product_key: product,
            state: "PENDING_APPROVAL",
            balance: Decimal::ZERO,
            linked_loans: Vec::new(),
            created: now(),
            approved: None,
        });
        Ok(self.deposit_json(index))
    }

    pub fn get_deposit(&self, id_or_key: &str) -> Answer {
        let index = self
            .deposit_index(id_or_key)
            .ok_or_else(ApiError::invalid_deposit_account_id)?;
        Ok(self.deposit_json(index))
    }

    fn deposit_index(&self, id_or_key: &str) -> Option<usize> {
        match self
            .keys
            .get(id_or_key)
            .or_else(|| self.account_ids.get(id_or_key))
        {
            Some(EntityRef::Deposit(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn change_deposit_state(&mut self, id_or_key: &str, body: &Value) -> Answer {
        let index = self
            .deposit_index(id_or_key)
            .ok_or_else(ApiError::invalid_deposit_account_id)?;
        let action = required_str(object(body)?, "action")?;
        let deposit = &mut self.deposits[index];
        let next = match (action, deposit.state) {
            ("APPROVE", "PENDING_APPROVAL") => "APPROVED",
            ("UNDO_APPROVE", "APPROVED") => "PENDING_APPROVAL",
            ("LOCK", "ACTIVE" | "APPROVED") => "LOCKED",
            ("UNLOCK", "LOCKED") => "ACTIVE",
            ("CLOSE", "ACTIVE" | "APPROVED") if deposit.balance.is_zero() => "CLOSED",
            ("CLOSE_WITHDRAW", "PENDING_APPROVAL" | "APPROVED") => "WITHDRAWN",
            ("CLOSE_REJECT", "PENDING_APPROVAL") => "CLOSED_REJECTED",
            (
                "APPROVE" | "UNDO_APPROVE" | "LOCK" | "UNLOCK" | "CLOSE" | "CLOSE_WITHDRAW"
                | "CLOSE_REJECT" | "CLOSE_WRITE_OFF",
                _,
            ) => {
                return Err(ApiError::invalid_state_transition("action"));
            }
            _ => return Err(ApiError::invalid_parameters("action")),
        };
        if next == "APPROVED" {
            deposit.approved = Some(now());
        }
        deposit.state = next;
        let holder = deposit.holder;
        if next == "APPROVED" {
            self.activate_client(holder);
        }
        Ok(self.deposit_json(index))
    }

    fn deposit_json(&self, index: usize) -> Value {
        let d = &self.deposits[index];
        let mut out = d.doc.clone();
        out.insert("encodedKey".into(), json!(d.encoded_key));
        out.insert("id".into(), json!(d.id));
        out.insert("accountState".into(), json!(d.state));
        out.insert("creationDate".into(), json!(d.created));
        out.insert(
            "lastModifiedDate".into(),
            json!(d.approved.as_ref().unwrap_or(&d.created)),
        );
        if let Some(at) = &d.approved {
            out.insert("approvedDate".into(), json!(at));
        }
        if let Some(p) = self.products.deposit_product(&d.product_key) {
            out.insert("accountType".into(), json!(p.product_type));
            out.insert("currencyCode".into(), json!(p.currency));
        }
        out.insert(
            "balances".into(),
            json!({ "totalBalance": money(d.balance), "availableBalance": money(d.balance) }),
        );
        out.insert("linkedSettlementAccountKeys".into(), json!(d.linked_loans));
        Value::Object(out)
    }

    // ---- loans ----

    pub fn create_loan(&mut self, body: &Value) -> Answer {
        let doc = object(body)?;
        let holder = self.holder(doc)?;
        let amount = required_decimal(doc, "loanAmount")?;
        let product_key = required_str(doc, "productTypeKey")?;
        let schedule = doc
            .get("scheduleSettings")
            .ok_or_else(|| ApiError::missing("scheduleSettings"))?;
        let schedule = schedule
            .as_object()
            .ok_or_else(|| ApiError::invalid_parameters("scheduleSettings"))?;
        let grace = schedule
            .get("gracePeriod")
            .ok_or_else(|| ApiError::missing("scheduleSettings.gracePeriod"))?;
        if grace.as_u64().is_none() {
            return Err(ApiError::invalid_parameters("scheduleSettings.gracePeriod"));
        }
        let product_index = self
            .products
            .loan_products
            .iter()
            .position(|p| p.encoded_key == product_key)
            .ok_or_else(|| ApiError::invalid_product("productTypeKey"))?;
        let product = &self.products.loan_products[product_index];
        if amount <= Decimal::ZERO {
            return Err(ApiError::invalid_amount("loanAmount"));
        }
        if !product.loan_amount_settings.loan_amount.contains(amount) {
            return Err(ApiError::inconsistent_with_product("loanAmount"));
        }
        let installments = match schedule.get("repaymentInstallments") {
            None | Some(Value::Null) => product_default_installments(product),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::invalid_parameters("scheduleSettings.repaymentInstallments")
                })?,
        };
        if installments == 0
            || !product
                .schedule_settings
                .num_installments
                .contains(installments)
        {
            return Err(ApiError::inconsistent_with_product(
                "scheduleSettings.repaymentInstallments",
            ));
        }
        let rate = match doc
            .get("interestSettings")
            .and_then(|s| s.get("interestRate"))
        {
            None | Some(Value::Null) => product_default_rate(product),
            Some(v) => decimal(v)
                .ok_or_else(|| ApiError::invalid_parameters("interestSettings.interestRate"))?,
        };
        if let Some(limits) = product
            .interest_settings
            .as_ref()
            .and_then(|s| s.interest_rate_settings.first())
            && !limits.interest_rate.contains(rate)
        {
            return Err(ApiError::inconsistent_with_product(
                "interestSettings.interestRate",
            ));
        }
        let details = doc.get("disbursementDetails");
        let expected = optional_datetime(details, "expectedDisbursementDate")?;
        let first_repayment = optional_datetime(details, "firstRepaymentDate")?;
        if let (Some(e), Some(f)) = (expected, first_repayment)
            && f <= e
        {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                3618,
                "FIRST_REPAYMENT_DATE_BEFORE_EXPECTED_DISBURSEMENT_DATE",
            )
            .at("disbursementDetails.firstRepaymentDate"));
        }
        let state = match optional_str(doc, "accountState")? {
            None | Some("PENDING_APPROVAL") => "PENDING_APPROVAL",
            Some("PARTIAL_APPLICATION") => "PARTIAL_APPLICATION",
            Some(_) => return Err(ApiError::invalid_account_state("accountState")),
        };
        let natural = format!("loan|{holder}|{product_key}|{amount}");
        let id = self.claim_account_id(doc, natural)?;
        let encoded_key = self.new_key();
        let index = self.loans.len();
        self.account_ids.insert(id.clone(), EntityRef::Loan(index));
        self.keys
            .insert(encoded_key.clone(), EntityRef::Loan(index));
        let mut doc = writable(
            doc,
            &[
                "encodedKey",
                "accountState",
                "accountSubState",
                "creationDate",
                "lastModifiedDate",
                "approvedDate",
                "balances",
                "currency",
                "settlementAccountKey",
                "closedDate",
            ],
        );
        doc.remove("id");
        let created = now();
        let mut loan = Loan {
            encoded_key,
            id,
            doc,
            holder,
            product: product_index,
            amount,
            interest_rate: rate,
            installments,
            state,
            sub_state: None,
            schedule: Vec::new(),
            custom_schedule: false,
            settlement_key: None,
            first_repayment,
            disbursed: None,
            created: created.clone(),
            approved: None,
            modified: created,
            transactions: Vec::new(),
        };
        let start = expected.unwrap_or_else(today);
        loan.schedule = self.generate_schedule(loan.terms(), start);
        self.loans.push(loan);
        Ok(self.loan_json(index))
    }

    pub fn get_loan(&self, id_or_key: &str) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        Ok(self.loan_json(index))
    }

    fn loan_index(&self, id_or_key: &str) -> Option<usize> {
        match self
            .keys
            .get(id_or_key)
            .or_else(|| self.account_ids.get(id_or_key))
        {
            Some(EntityRef::Loan(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn change_loan_state(&mut self, id_or_key: &str, body: &Value) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        let action = required_str(object(body)?, "action")?;
        let loan = &mut self.loans[index];
        let owed = loan
            .schedule
            .iter()
            .map(Installment::outstanding)
            .sum::<Decimal>();
        let (state, sub) = match (action, loan.state, loan.sub_state) {
            ("REQUEST_APPROVAL", "PARTIAL_APPLICATION", _) => ("PENDING_APPROVAL", None),
            ("SET_INCOMPLETE", "PENDING_APPROVAL", _) => ("PARTIAL_APPLICATION", None),
            ("APPROVE", "PENDING_APPROVAL", _) => ("APPROVED", None),
            ("UNDO_APPROVE", "APPROVED", _) => ("PENDING_APPROVAL", None),
            ("REJECT", "PENDING_APPROVAL" | "PARTIAL_APPLICATION", _) => {
                ("CLOSED", Some("REJECTED"))
            }
            ("WITHDRAW", "PENDING_APPROVAL" | "APPROVED" | "PARTIAL_APPLICATION", _) => {
                ("CLOSED", Some("WITHDRAWN"))
            }
            ("UNDO_REJECT", "CLOSED", Some("REJECTED"))
            | ("UNDO_WITHDRAW", "CLOSED", Some("WITHDRAWN")) => ("PENDING_APPROVAL", None),
            ("CLOSE", "ACTIVE" | "ACTIVE_IN_ARREARS", _) if owed.is_zero() => {
                ("CLOSED", Some("REPAID"))
            }
            ("UNDO_CLOSE", "CLOSED", Some("REPAID")) => ("ACTIVE", None),
            (
                "REQUEST_APPROVAL" | "SET_INCOMPLETE" | "APPROVE" | "UNDO_APPROVE" | "REJECT"
                | "WITHDRAW" | "CLOSE" | "UNDO_REJECT" | "UNDO_WITHDRAW" | "UNDO_CLOSE",
                _,
                _,
            ) => {
                return Err(ApiError::invalid_state_transition("action"));
            }
            _ => return Err(ApiError::invalid_parameters("action")),
        };
        let stamp = now();
        if state == "APPROVED" {
            loan.approved = Some(stamp.clone());
        }
        loan.state = state;
        loan.sub_state = sub;
        loan.modified = stamp;
        Ok(self.loan_json(index))
    }

    fn loan_json(&self, index: usize) -> Value {
        let l = &self.loans[index];
        let product = &self.products.loan_products[l.product];
        let mut out = l.doc.clone();
        out.insert("encodedKey".into(), json!(l.encoded_key));
        out.insert("id".into(), json!(l.id));
        out.insert("accountState".into(), json!(l.state));
        if let Some(sub) = l.sub_state {
            out.insert("accountSubState".into(), json!(sub));
        }
        out.insert("loanAmount".into(), money(l.amount));
        out.insert("creationDate".into(), json!(l.created));
        out.insert("lastModifiedDate".into(), json!(l.modified));
        if let Some(at) = &l.approved {
            out.insert("approvedDate".into(), json!(at));
        }
        if !out.contains_key("assignedBranchKey")
            && let Some(branch) = self.clients[l.holder].doc.get("assignedBranchKey")
        {
            out.insert("assignedBranchKey".into(), branch.clone());
        }
        out.insert("currency".into(), json!({ "code": product.currency }));
        let mut schedule = out
            .get("scheduleSettings")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        schedule.insert("repaymentInstallments".into(), json!(l.schedule.len()));
        schedule.insert("hasCustomSchedule".into(), json!(l.custom_schedule));
        schedule
            .entry("repaymentPeriodUnit")
            .or_insert(json!("MONTHS"));
        schedule.entry("repaymentPeriodCount").or_insert(json!(1));
        out.insert("scheduleSettings".into(), Value::Object(schedule));
        let mut interest = out
            .get("interestSettings")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        interest.insert("interestRate".into(), money(l.interest_rate));
        out.insert("interestSettings".into(), Value::Object(interest));
        let mut details = out
            .get("disbursementDetails")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(at) = l.disbursed {
            details.insert("disbursementDate".into(), json!(format_datetime(at)));
        }
        if let Some(first) = l.schedule.first() {
            details.insert(
                "firstRepaymentDate".into(),
                json!(format_datetime(first.due)),
            );
        }
        out.insert("disbursementDetails".into(), Value::Object(details));
        if let Some(key) = &l.settlement_key {
            out.insert("settlementAccountKey".into(), json!(key));
        }
        out.insert("balances".into(), loan_balances(l));
        Value::Object(out)
    }

    // ---- schedule ----

    /// Equal principal per installment (the last absorbs rounding), interest on the declining
    /// balance at rate/12 per month, monthly due dates from the first repayment date.
    fn generate_schedule(
        &mut self,
        terms: Terms,
        start: DateTime<FixedOffset>,
    ) -> Vec<Installment> {
        let n = Decimal::from(terms.installments);
        let base = (terms.amount / n).round_dp(2);
        let first_due = terms
            .first_repayment
            .unwrap_or_else(|| add_months(start, 1));
        let monthly_rate = terms.interest_rate / Decimal::from(1200);
        let mut remaining = terms.amount;
        (0..terms.installments)
            .map(|i| {
                let principal = if i + 1 == terms.installments {
                    remaining
                } else {
                    base.min(remaining)
                };
                let interest = (remaining * monthly_rate).round_dp(2);
                remaining -= principal;
                Installment {
                    encoded_key: self.new_key(),
                    due: add_months(first_due, i),
                    principal,
                    interest,
                    fee: Decimal::ZERO,
                    principal_paid: Decimal::ZERO,
                    interest_paid: Decimal::ZERO,
                    fee_paid: Decimal::ZERO,
                    repaid: None,
                }
            })
            .collect()
    }

    pub fn get_schedule(&self, id_or_key: &str) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        Ok(self.schedule_json(index))
    }

    fn schedule_json(&self, index: usize) -> Value {
        let l = &self.loans[index];
        let currency = &self.products.loan_products[l.product].currency;
        let today = today();
        let installments: Vec<Value> = l
            .schedule
            .iter()
            .enumerate()
            .map(|(i, inst)| {
                let state = if inst.is_paid() {
                    "PAID"
                } else if inst.principal_paid + inst.interest_paid + inst.fee_paid > Decimal::ZERO {
                    "PARTIALLY_PAID"
                } else if l.disbursed.is_some() && inst.due < today {
                    "LATE"
                } else {
                    "PENDING"
                };
                let amount = |due: Decimal, paid: Decimal| json!({ "expected": money(due), "paid": money(paid), "due": money(due - paid) });
                let mut v = json!({
                    "encodedKey": inst.encoded_key,
                    "parentAccountKey": l.encoded_key,
                    "number": (i + 1).to_string(),
                    "dueDate": format_datetime(inst.due),
                    "state": state,
                    "principal": { "amount": amount(inst.principal, inst.principal_paid) },
                    "interest": { "amount": amount(inst.interest, inst.interest_paid), "tax": amount(Decimal::ZERO, Decimal::ZERO) },
                    "fee": { "amount": amount(inst.fee, inst.fee_paid), "tax": amount(Decimal::ZERO, Decimal::ZERO) },
                    "penalty": { "amount": amount(Decimal::ZERO, Decimal::ZERO), "tax": amount(Decimal::ZERO, Decimal::ZERO) },
                    "isPaymentHoliday": false,
                });
                if let Some(at) = inst.repaid {
                    v["repaidDate"] = json!(format_datetime(at));
                }
                v
            })
            .collect();
        json!({ "currency": { "code": currency }, "installments": installments })
    }

    /// PUT /loans/{id}/schedule: the body's installments replace the schedule. An installment
    /// carrying an existing `encodedKey` keeps its identity (and what was paid on it).
    pub fn edit_schedule(&mut self, id_or_key: &str, body: &Value) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        let items = body
            .as_array()
            .ok_or_else(|| ApiError::invalid_parameters("installments"))?;
        if items.is_empty() {
            return Err(ApiError::invalid_installments());
        }
        if !matches!(
            self.loans[index].state,
            "PARTIAL_APPLICATION"
                | "PENDING_APPROVAL"
                | "APPROVED"
                | "ACTIVE"
                | "ACTIVE_IN_ARREARS"
        ) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                3619,
                "LOAN_ACCOUNT_SCHEDULE_EDITING_NOT_ALLOWED",
            )
            .at("accountState"));
        }
        let mut schedule = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = |field: &str| format!("installments[{i}].{field}");
            let item = item
                .as_object()
                .ok_or_else(|| ApiError::invalid_parameters(format!("installments[{i}]")))?;
            let existing = match item.get("encodedKey").and_then(Value::as_str) {
                Some(key) => Some(
                    self.loans[index]
                        .schedule
                        .iter()
                        .find(|inst| inst.encoded_key == key)
                        .cloned()
                        .ok_or_else(|| {
                            ApiError::new(
                                axum::http::StatusCode::BAD_REQUEST,
                                3621,
                                "INSTALLMENT_NOT_FOUND",
                            )
                            .at(at("encodedKey"))
                        })?,
                ),
                None => None,
            };
            let due = match item.get("dueDate") {
                Some(v) => {
                    parse_datetime(v).ok_or_else(|| ApiError::invalid_parameters(at("dueDate")))?
                }
                None => existing
                    .as_ref()
                    .map(|e| e.due)
                    .ok_or_else(|| ApiError::missing(&at("dueDate")))?,
            };
            let part = |name: &str, current: Option<Decimal>| -> Result<Decimal, ApiError> {
                match item
                    .get(name)
                    .and_then(|p| p.get("amount"))
                    .and_then(|a| a.get("due"))
                {
                    Some(v) => decimal(v).ok_or_else(|| {
                        ApiError::invalid_parameters(at(&format!("{name}.amount.due")))
                    }),
                    None => Ok(current.unwrap_or(Decimal::ZERO)),
                }
            };
            let principal_due = part(
                "principal",
                existing.as_ref().map(|e| e.principal - e.principal_paid),
            )?;
            let interest_due = part(
                "interest",
                existing.as_ref().map(|e| e.interest - e.interest_paid),
            )?;
            let fee_due = part("fee", existing.as_ref().map(|e| e.fee - e.fee_paid))?;
            if principal_due < Decimal::ZERO
                || interest_due < Decimal::ZERO
                || fee_due < Decimal::ZERO
            {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    3622,
                    "NEGATIVE_PRINCIPAL_FOR_INSTALLMENT",
                )
                .at(at("principal")));
            }
            let mut inst = match existing {
                Some(e) => e,
                None => Installment {
                    encoded_key: String::new(),
                    due,
                    principal: Decimal::ZERO,
                    interest: Decimal::ZERO,
                    fee: Decimal::ZERO,
                    principal_paid: Decimal::ZERO,
                    interest_paid: Decimal::ZERO,
                    fee_paid: Decimal::ZERO,
                    repaid: None,
                },
            };
            if inst.is_paid()
                && (inst.due != due || principal_due + interest_due + fee_due > Decimal::ZERO)
            {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    3623,
                    "PAID_OR_PURE_GRACE_INSTALLMENT_CANNOT_BE_DELETED",
                )
                .at(at("encodedKey")));
            }
            inst.due = due;
            inst.principal = inst.principal_paid + principal_due;
            inst.interest = inst.interest_paid + interest_due;
            inst.fee = inst.fee_paid + fee_due;
            schedule.push(inst);
        }
        if schedule.windows(2).any(|w| w[1].due <= w[0].due) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                3624,
                "INVALID_DUE_DATE",
            )
            .at("installments.dueDate"));
        }
        if schedule.iter().map(|i| i.principal).sum::<Decimal>() != self.loans[index].amount {
            return Err(ApiError::inconsistent_schedule_principal());
        }
        let old: Vec<String> = self.loans[index]
            .schedule
            .iter()
            .map(|i| i.encoded_key.clone())
            .collect();
        if let Some(paid) = self.loans[index].schedule.iter().find(|i| i.is_paid())
            && !schedule.iter().any(|i| i.encoded_key == paid.encoded_key)
        {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                3623,
                "PAID_OR_PURE_GRACE_INSTALLMENT_CANNOT_BE_DELETED",
            )
            .at("installments"));
        }
        for inst in &mut schedule {
            if inst.encoded_key.is_empty() || !old.contains(&inst.encoded_key) {
                inst.encoded_key = self.new_key();
            }
        }
        let loan = &mut self.loans[index];
        loan.installments = u32::try_from(schedule.len()).unwrap_or(u32::MAX);
        loan.schedule = schedule;
        loan.custom_schedule = true;
        loan.modified = now();
        Ok(self.schedule_json(index))
    }

    // ---- settlement link (v1) ----

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
        let deposit_key = self.deposits[deposit].encoded_key.clone();
        let loan_key = self.loans[index].encoded_key.clone();
        self.deposits[deposit].linked_loans.push(loan_key);
        let loan = &mut self.loans[index];
        loan.settlement_key = Some(deposit_key);
        loan.modified = now();
        Ok(())
    }

    // ---- transactions ----

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
        let external_id = optional_str(doc, "externalId")?;
        if let Some(ext) = external_id
            && self.external_ids.contains_key(ext)
        {
            self.counters.refused_external_ids += 1;
            return Err(ApiError::external_id_exists());
        }
        let value_date = optional_datetime(Some(body), "valueDate")?.unwrap_or_else(today);
        if value_date > now_datetime() {
            return Err(ApiError::future_value_date());
        }
        let (type_name, amount, affected) = match kind {
            TransactionKind::Disbursement => self.disburse(index, doc, value_date)?,
            TransactionKind::Fee => self.apply_fee(index, doc, value_date)?,
            TransactionKind::Repayment => self.repay(index, doc, value_date)?,
        };
        let natural = format!(
            "txn|{}|{type_name}|{amount}|{}",
            self.loans[index].encoded_key,
            format_datetime(value_date)
        );
        if external_id.is_none() && self.seen_before(natural) {
            self.counters.duplicate_transactions += 1;
        }
        let encoded_key = self.new_key();
        let t_index = self.transactions.len();
        if let Some(ext) = external_id {
            self.external_ids.insert(ext.to_owned(), t_index);
        }
        let loan = &mut self.loans[index];
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
        out.insert("encodedKey".into(), json!(encoded_key));
        out.insert(
            "id".into(),
            json!((self.transactions.len() + 1).to_string()),
        );
        out.insert("type".into(), json!(type_name));
        out.insert("amount".into(), money(amount));
        out.insert("valueDate".into(), json!(format_datetime(value_date)));
        out.entry("bookingDate")
            .or_insert_with(|| json!(format_datetime(value_date)));
        out.insert("creationDate".into(), json!(now()));
        out.insert("parentAccountKey".into(), json!(loan.encoded_key));
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
        loan.transactions.push(t_index);
        loan.modified = now();
        self.transactions.push(Transaction {
            kind: type_name,
            doc: out,
            loan: index,
            deleted: false,
        });
        if kind == TransactionKind::Disbursement {
            let holder = self.loans[index].holder;
            self.activate_client(holder);
        }
        Ok(Value::Object(self.transactions[t_index].doc.clone()))
    }

    /// GET /loans/{id}/transactions: every transaction of the loan, oldest first.
    pub fn loan_transactions(&self, id_or_key: &str, offset: usize, limit: usize) -> Answer {
        let index = self
            .loan_index(id_or_key)
            .ok_or_else(ApiError::invalid_loan_account_id)?;
        let list: Vec<Value> = self.loans[index]
            .transactions
            .iter()
            .skip(offset)
            .take(limit)
            .map(|t| Value::Object(self.transactions[*t].doc.clone()))
            .collect();
        Ok(Value::Array(list))
    }

    fn disburse(
        &mut self,
        index: usize,
        doc: &Map<String, Value>,
        value_date: DateTime<FixedOffset>,
    ) -> Result<(&'static str, Decimal, Value), ApiError> {
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
        let first_repayment =
            optional_datetime(Some(&Value::Object(doc.clone())), "firstRepaymentDate")?;
        if let Some(first) = first_repayment
            && first <= value_date
        {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                3618,
                "FIRST_REPAYMENT_DATE_BEFORE_EXPECTED_DISBURSEMENT_DATE",
            )
            .at("firstRepaymentDate"));
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
            if self.loans[index].settlement_key.as_deref()
                != Some(self.deposits[deposit].encoded_key.as_str())
            {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    1936,
                    "LINK_BETWEEN_ACCOUNTS_DOES_NOT_EXIST",
                )
                .at("transferDetails.linkedAccountId"));
            }
            let d = &mut self.deposits[deposit];
            d.balance += amount;
            if d.state == "APPROVED" {
                d.state = "ACTIVE";
            }
        }
        let loan = &mut self.loans[index];
        loan.state = "ACTIVE";
        loan.disbursed = Some(value_date);
        Ok((
            "DISBURSEMENT",
            amount,
            json!({ "principalAmount": money(amount), "interestAmount": 0, "feesAmount": 0, "penaltyAmount": 0 }),
        ))
    }

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
        Ok(())
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
        let amount = required_decimal(doc, "amount")?;
        if amount <= Decimal::ZERO {
            return Err(ApiError::fee_amount_not_positive());
        }
        let fixed = self.products.loan_products[self.loans[index].product].product_type
            == "FIXED_TERM_LOAN";
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
                let n = v
                    .as_u64()
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
        let inst = &mut loan.schedule[position];
        if inst.is_paid() {
            return Err(ApiError::fee_on_paid_installment());
        }
        inst.fee += amount;
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
        if amount > owed {
            return Err(ApiError::excess_repayment());
        }
        let (mut fee_paid, mut interest_paid, mut principal_paid) =
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        let mut left = amount;
        for inst in loan.schedule.iter_mut() {
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
        if loan.schedule.iter().all(Installment::is_paid) {
            loan.state = "CLOSED";
            loan.sub_state = Some("REPAID");
        }
        Ok((
            "REPAYMENT",
            amount,
            json!({ "principalAmount": money(principal_paid), "interestAmount": money(interest_paid), "feesAmount": money(fee_paid), "penaltyAmount": 0 }),
        ))
    }

    /// Counts for `GET /_sandbox/stats`.
    pub fn stats(&self) -> Value {
        let mut loans_by_state: HashMap<&str, u64> = HashMap::new();
        for l in &self.loans {
            *loans_by_state.entry(l.state).or_default() += 1;
        }
        let mut deposits_by_state: HashMap<&str, u64> = HashMap::new();
        for d in &self.deposits {
            *deposits_by_state.entry(d.state).or_default() += 1;
        }
        let mut transactions_by_type: HashMap<&str, u64> = HashMap::new();
        let mut amounts_by_type: HashMap<&str, Decimal> = HashMap::new();
        for t in self.transactions.iter().filter(|t| !t.deleted) {
            *transactions_by_type.entry(t.kind).or_default() += 1;
            *amounts_by_type.entry(t.kind).or_default() +=
                t.doc.get("amount").and_then(decimal).unwrap_or_default();
        }
        let c = &self.counters;
        json!({
            "clients": self.clients.len(),
            "deposits": self.deposits.len(),
            "deposits_by_state": deposits_by_state,
            "loans": self.loans.len(),
            "loans_by_state": loans_by_state,
            "settlement_links": self.loans.iter().filter(|l| l.settlement_key.is_some()).count(),
            "custom_schedules": self.loans.iter().filter(|l| l.custom_schedule).count(),
            "transactions": self.transactions.iter().filter(|t| !t.deleted).count(),
            "transactions_by_type": transactions_by_type,
            "transaction_amounts_by_type": amounts_by_type.into_iter().map(|(k, v)| (k, money(v))).collect::<HashMap<_, _>>(),
            "duplicates": {
                "clients": c.duplicate_clients,
                "deposits": c.duplicate_deposits,
                "loans": c.duplicate_loans,
                "transactions": c.duplicate_transactions,
                "total": c.duplicate_clients + c.duplicate_deposits + c.duplicate_loans + c.duplicate_transactions,
            },
            "refused_duplicates": {
                "client_id": c.refused_client_ids,
                "account_id": c.refused_account_ids,
                "external_id": c.refused_external_ids,
            },
        })
    }

    /// Test-only changes made behind the API's back (`POST /_sandbox/tamper`), so that a
    /// reconciliation can be shown to catch them: `{"action": "delete_transaction",
    /// "externalId": ...}` or `{"action": "set_loan_amount", "loan": <id or key>, "amount": n}`.
    pub fn tamper(&mut self, body: &Value) -> Result<Value, String> {
        match body.get("action").and_then(Value::as_str) {
            Some("delete_transaction") => {
                let external = body
                    .get("externalId")
                    .and_then(Value::as_str)
                    .ok_or("externalId is needed")?;
                let index = *self
                    .external_ids
                    .get(external)
                    .ok_or("no transaction has this externalId")?;
                let loan = self.transactions[index].loan;
                self.transactions[index].deleted = true;
                self.loans[loan].transactions.retain(|t| *t != index);
                self.external_ids.remove(external);
                Ok(json!({ "deleted": external }))
            }
            Some("set_loan_amount") => {
                let loan = body
                    .get("loan")
                    .and_then(Value::as_str)
                    .ok_or("loan is needed")?;
                let amount = body
                    .get("amount")
                    .and_then(decimal)
                    .ok_or("amount must be a number")?;
                let index = self.loan_index(loan).ok_or("no such loan")?;
                self.loans[index].amount = amount;
                Ok(json!({ "loan": loan, "loanAmount": money(amount) }))
            }
            _ => Err("action must be delete_transaction or set_loan_amount".into()),
        }
    }
}

fn loan_principal_balance(loan: &Loan) -> Decimal {
    if loan.disbursed.is_none() {
        return Decimal::ZERO;
    }
    loan.schedule
        .iter()
        .map(|i| i.principal - i.principal_paid)
        .sum()
}

fn loan_balances(loan: &Loan) -> Value {
    let disbursed = loan.disbursed.is_some();
    let today = today();
    let sum = |f: &dyn Fn(&Installment) -> Decimal, due_only: bool| -> Decimal {
        if !disbursed {
            return Decimal::ZERO;
        }
        loan.schedule
            .iter()
            .filter(|i| !due_only || i.due <= today)
            .map(f)
            .sum()
    };
    let principal_paid = sum(&|i| i.principal_paid, false);
    let interest_paid = sum(&|i| i.interest_paid, false);
    let fees_paid = sum(&|i| i.fee_paid, false);
    json!({
        "principalBalance": money(loan_principal_balance(loan)),
        "principalPaid": money(principal_paid),
        "principalDue": money(sum(&|i| i.principal - i.principal_paid, true)),
        "interestBalance": money(sum(&|i| i.interest - i.interest_paid, false)),
        "interestPaid": money(interest_paid),
        "interestDue": money(sum(&|i| i.interest - i.interest_paid, true)),
        "feesBalance": money(sum(&|i| i.fee - i.fee_paid, false)),
        "feesPaid": money(fees_paid),
        "feesDue": money(sum(&|i| i.fee - i.fee_paid, true)),
        "penaltyBalance": 0, "penaltyDue": 0, "penaltyPaid": 0,
        "holdBalance": 0, "redrawBalance": 0,
    })
}

fn product_default_installments(product: &LoanProduct) -> u32 {
    let limits = &product.schedule_settings.num_installments;
    limits.default_value.or(limits.min_value).unwrap_or(1)
}

fn product_default_rate(product: &LoanProduct) -> Decimal {
    product
        .interest_settings
        .as_ref()
        .and_then(|s| s.interest_rate_settings.first())
        .and_then(|r| r.interest_rate.default_value.or(r.interest_rate.min_value))
        .unwrap_or_default()
}

// ---- JSON helpers ----

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        ApiError::new(axum::http::StatusCode::BAD_REQUEST, 4, "INVALID_PARAMETERS")
            .at("body: a JSON object is expected")
    })
}

/// The body minus fields Mambu sets itself (read-only in the spec: ignored when sent).
fn writable(doc: &Map<String, Value>, read_only: &[&str]) -> Map<String, Value> {
    doc.iter()
        .filter(|(k, _)| !read_only.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn optional_str<'a>(doc: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::invalid_parameters(field)),
    }
}

fn required_str<'a>(doc: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    match optional_str(doc, field)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ApiError::missing(field)),
    }
}

fn required_decimal(doc: &Map<String, Value>, field: &str) -> Result<Decimal, ApiError> {
    match doc.get(field) {
        None | Some(Value::Null) => Err(ApiError::missing(field)),
        Some(v) => decimal(v).ok_or_else(|| ApiError::invalid_parameters(field)),
    }
}

/// A JSON number as an exact decimal (the body is parsed with arbitrary precision, so
/// `937.50` stays `937.50`).
pub fn decimal(v: &Value) -> Option<Decimal> {
    let Value::Number(n) = v else { return None };
    let text = n.to_string();
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

/// A decimal as a JSON number, without going through a float.
pub fn money(d: Decimal) -> Value {
    serde_json::from_str(&d.normalize().to_string()).unwrap_or(Value::Null)
}

fn optional_datetime(
    doc: Option<&Value>,
    field: &str,
) -> Result<Option<DateTime<FixedOffset>>, ApiError> {
    match doc.and_then(|d| d.get(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_datetime(v).map(Some).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                4,
                "INVALID_DATE_TIME_FORMAT",
            )
            .at(field)
        }),
    }
}

fn parse_datetime(v: &Value) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(v.as_str()?).ok()
}

fn format_datetime(at: DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn now_datetime() -> DateTime<FixedOffset> {
    Utc::now().fixed_offset()
}

fn now() -> String {
    format_datetime(now_datetime())
}

fn today() -> DateTime<FixedOffset> {
    let date = Utc::now().date_naive();
    date.and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().fixed_offset())
        .unwrap_or_else(now_datetime)
}

fn add_months(at: DateTime<FixedOffset>, months: u32) -> DateTime<FixedOffset> {
    at.checked_add_months(Months::new(months)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Tenant {
        Tenant::new(Products::default_set())
    }

    fn client(t: &mut Tenant) -> String {
        t.create_client(&json!({ "firstName": "Ada", "lastName": "Lovelace" }))
            .unwrap()["encodedKey"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn loan(t: &mut Tenant, holder: &str, amount: &str) -> Value {
        let body: Value = serde_json::from_str(&format!(
            r#"{{"accountHolderKey":"{holder}","accountHolderType":"CLIENT","productTypeKey":"8a19c0de00000000000000000000a001","loanAmount":{amount},"interestSettings":{{"interestRate":12}},"scheduleSettings":{{"gracePeriod":0,"repaymentInstallments":3}}}}"#
        ))
        .unwrap();
        t.create_loan(&body).unwrap()
    }

    #[test]
    fn money_keeps_its_decimals_exactly() {
        let v: Value = serde_json::from_str("937.10").unwrap();
        assert_eq!(decimal(&v), Some(Decimal::new(93710, 2)));
        assert_eq!(
            money(Decimal::new(1, 1) + Decimal::new(2, 1)).to_string(),
            "0.3"
        );
    }

    #[test]
    fn generated_schedule_sums_to_the_loan_amount() {
        let mut t = tenant();
        let holder = client(&mut t);
        let l = loan(&mut t, &holder, "1000.00");
        let schedule = t.get_schedule(l["id"].as_str().unwrap()).unwrap();
        let total: Decimal = schedule["installments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| decimal(&i["principal"]["amount"]["expected"]).unwrap())
            .sum();
        assert_eq!(total, Decimal::from(1000));
        assert_eq!(
            schedule["installments"][0]["principal"]["amount"]["due"].to_string(),
            "333.33"
        );
        assert_eq!(
            schedule["installments"][2]["principal"]["amount"]["due"].to_string(),
            "333.34"
        );
    }

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
        let holder = client(&mut t);
        let id = loan(&mut t, &holder, "3000")["id"]
            .as_str()
            .unwrap()
            .to_owned();
        t.change_loan_state(&id, &json!({ "action": "APPROVE" }))
            .unwrap();
        t.post_transaction(&id, TransactionKind::Disbursement, &json!({}))
            .unwrap();
        let body = json!({ "amount": 5, "valueDate": format_datetime(today()) });
        t.post_transaction(&id, TransactionKind::Repayment, &body)
            .unwrap();
        t.post_transaction(&id, TransactionKind::Repayment, &body)
            .unwrap();
        assert_eq!(t.counters.duplicate_transactions, 1);
    }
}
