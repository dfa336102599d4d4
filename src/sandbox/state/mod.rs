//! The tenant's in-memory state and Mambu's rules over it: entities, ids, account states,
//! schedules and balances. Pure logic, no HTTP: every operation takes a parsed JSON body and
//! returns the answer's JSON or an [`ApiError`].
//!
//! This file holds the data: [`Tenant`] and its [`Counters`], the entity structs every
//! operation reads (clients, deposits, loans, installments, transactions), and the id, key and
//! sequence helpers (encodedKeys, natural keys for duplicates, the shared account id space).
//! Each operation lives with the entity it concerns, as its own `impl Tenant`:
//! - `clients`: create, get, activate; the account holder a loan or deposit names.
//! - `groups`: create (members, their roles, the tenant's group rules), get.
//! - `custom_fields`: the custom field values a client, loan or deposit carries, checked
//!   against the tenant's custom field sets; the definitions' answers; a client's addresses.
//! - `deposits`: create, get, state changes, the deposit's JSON; deposit and withdrawal
//!   transactions (the balance, backdating, duplicates) and a deposit's transaction list.
//! - `loans`: create (checked against the product's terms), get, state changes, the loan's
//!   JSON and balances.
//! - `securities`: a loan's guarantors and collateral assets (checked against the product's
//!   `securitySettings` and the tenant's clients, groups and deposits) and the securities its
//!   approval needs.
//! - `schedule`: the generated repayment schedule, reading it, editing it (custom schedule)
//!   under Mambu's schedule-editing rules (the product's edit options, the account's state and
//!   lock, paid and interest-applied installments, fixed-term interest, due dates).
//! - `locks`: locking and unlocking a loan's income sources (lock- and unlock-transactions).
//! - `settlement`: the v1 link between a loan and its settlement deposit.
//! - `transactions`: posting disbursements, fees and repayments (allocation, duplicates,
//!   externalIds), and a loan's transaction list.
//! - `bulks`: bulk deposit transactions: queued, then processed item by item under the single
//!   deposit transaction's rules, their status and per-item outcomes.
//! - `backdoor`: what the sandbox's own endpoints see and change behind Mambu's API:
//!   `GET /_sandbox/stats` and `POST /_sandbox/tamper`.
//! - `json`: reading request bodies and writing answers: fields, numbers (also written as JSON
//!   strings), exact decimals, dates.
//! - `zone`: the tenant's time zone: the offset every v2 date-time must carry, now and today,
//!   and the organization setup that names the zone.

mod backdoor;
mod bulks;
mod clients;
mod custom_fields;
mod deposits;
mod groups;
mod json;
mod loans;
mod locks;
mod rollback;
mod schedule;
mod securities;
mod settlement;
mod squeeze;
mod transactions;
mod varint;
mod zone;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::num::NonZeroU64;

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::products::Products;
use super::tenant::{ClientRules, CustomFieldSet};

pub use bulks::MAX_BULK_ITEMS;
use json::{JsonText, Texts, optional_str};
pub use json::{decimal, money};
use schedule::Schedule;
use zone::Stamp;
pub use zone::{Zone, at};

/// Everything the sandbox tenant holds.
#[derive(Debug)]
pub struct Tenant {
    products: Products,
    /// What a new client must pass (duplicate check, ID documents, loans per client).
    client_rules: ClientRules,
    /// The only `_Set_Id` keys a body may carry (see `custom_fields`).
    custom_field_sets: Vec<CustomFieldSet>,
    /// Every date-time it reads must carry this zone's offset; every one it writes does.
    zone: Zone,
    seq: u64,
    clients: Vec<Client>,
    groups: Vec<Group>,
    deposits: Vec<Deposit>,
    loans: Vec<Loan>,
    transactions: Vec<Transaction>,
    /// The text of what transactions do not hold typed (see [`Transaction`]).
    texts: Texts,
    /// The value and creation dates of the transactions whose dates are no [`Stamp`]s, by key.
    exact_dates: HashMap<Key, [DateTime<FixedOffset>; 2]>,
    /// encodedKey → entity, for every entity kind (a key the tenant could not have made is
    /// not in it: see [`Tenant::entity`]).
    keys: HashMap<Key, EntityRef>,
    /// A client's id, by its [`Fingerprint`] → the client.
    client_ids: Prints<u32>,
    /// Groups have their own id space (GROUP_ID_ALREADY_IN_USE).
    group_ids: Prints<u32>,
    /// Loans and deposits share one id space, as Mambu's ACCOUNT_ID_ALREADY_IN_USE implies.
    account_ids: Prints<EntityRef>,
    /// A transaction's externalId, by its [`Fingerprint`] → the transaction.
    external_ids: Prints<u32>,
    /// Clients', groups', loans' and deposits' natural keys, by their [`Fingerprint`] → how
    /// often each was created.
    natural_keys: Prints<u32>,
    /// Transactions' natural keys (see [`Tenant::note_transaction`]), by their
    /// [`Fingerprint`] → how often each was posted.
    transaction_keys: Prints<u32>,
    fingerprint: Fingerprint,
    /// What the duplicate-client check compares: one key per configured field combination of
    /// every client created (see `Tenant::create_client`), by its [`Fingerprint`].
    client_matches: HashSet<Print, BuildHasherDefault<PrintHasher>>,
    /// Bulk deposit transactions, in the order queued.
    bulks: Vec<bulks::Bulk>,
    pub counters: Counters,
    /// The transactions' counts of `GET /_sandbox/stats`, kept as they change.
    tally: backdoor::TransactionTally,
    /// The clients', groups', loans' and deposits' counts of `GET /_sandbox/stats`, kept as
    /// they change.
    entities: backdoor::EntityTally,
}

/// What the stats endpoint reports beyond entity counts.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Entities or transactions created again for the same natural key (see [`Tenant::stats`]).
    pub duplicate_clients: u64,
    pub duplicate_groups: u64,
    pub duplicate_deposits: u64,
    pub duplicate_loans: u64,
    pub duplicate_transactions: u64,
    /// Creations refused because the id or externalId was taken: replays caught by Mambu's rules.
    pub refused_client_ids: u64,
    pub refused_group_ids: u64,
    pub refused_account_ids: u64,
    pub refused_external_ids: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntityRef {
    Client(usize),
    Group(usize),
    Deposit(usize),
    Loan(usize),
}

#[derive(Debug)]
struct Client {
    encoded_key: Key,
    id: String,
    doc: JsonText,
    state: &'static str,
    created: DateTime<FixedOffset>,
    activated: Option<DateTime<FixedOffset>>,
}

/// A group: its members are clients (by index), each with its roles as answered.
#[derive(Debug)]
struct Group {
    encoded_key: Key,
    id: String,
    /// The body as stored, `groupMembers` as answered (roles completed).
    doc: JsonText,
    members: Vec<usize>,
    created: DateTime<FixedOffset>,
    /// Deleted (`DELETE /groups/{id}`, issue 19): out of the lookups, its members freed.
    deleted: bool,
}

/// The holder of a loan or deposit (`accountHolderType` and `accountHolderKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Holder {
    Client(usize),
    Group(usize),
}

/// A holder in natural keys: `client#3`, `group#0`.
impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Client(i) => write!(f, "client#{i}"),
            Holder::Group(i) => write!(f, "group#{i}"),
        }
    }
}

#[derive(Debug)]
struct Deposit {
    encoded_key: Key,
    id: String,
    doc: JsonText,
    holder: Holder,
    product_key: String,
    state: &'static str,
    balance: Decimal,
    linked_loans: Vec<Key>,
    created: DateTime<FixedOffset>,
    approved: Option<DateTime<FixedOffset>>,
    /// When its first deposit made it ACTIVE.
    activated: Option<DateTime<FixedOffset>>,
    /// Its transactions (indexes into `Tenant::transactions`), in the order posted.
    /// Its transactions' indexes, oldest first.
    transactions: Vec<u32>,
}

#[derive(Debug)]
struct Loan {
    encoded_key: Key,
    id: String,
    doc: JsonText,
    holder: Holder,
    product: usize,
    amount: Decimal,
    interest_rate: Decimal,
    installments: u32,
    state: &'static str,
    sub_state: Option<&'static str>,
    schedule: Schedule,
    custom_schedule: bool,
    settlement_key: Option<Key>,
    first_repayment: Option<DateTime<FixedOffset>>,
    /// `disbursementDetails.expectedDisbursementDate`, when the loan was created with one.
    expected_disbursement: Option<DateTime<FixedOffset>>,
    disbursed: Option<DateTime<FixedOffset>>,
    /// The start of the tenant's day the loan was closed (repaid, closed, written off; issue 19:
    /// a close or a write-off is undone on that day only).
    closed_on: Option<DateTime<FixedOffset>>,
    created: DateTime<FixedOffset>,
    approved: Option<DateTime<FixedOffset>>,
    modified: DateTime<FixedOffset>,
    /// Its transactions' indexes, oldest first.
    transactions: Vec<u32>,
    /// The user who created it (four-eyes: not the one who may approve it); none when created
    /// without a caller.
    created_by: Option<String>,
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

/// An installment as the rules read and change it; a loan keeps its installments compactly
/// (see [`Schedule`]) and hands them out as this.
#[derive(Debug, Clone, Copy)]
struct Installment {
    /// None until an edited schedule's new installment is stored.
    encoded_key: Option<Key>,
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
    fn outstanding(self) -> Decimal {
        self.principal + self.interest + self.fee
            - self.principal_paid
            - self.interest_paid
            - self.fee_paid
    }
    fn is_paid(self) -> bool {
        self.outstanding() <= Decimal::ZERO
            && self.principal + self.interest + self.fee > Decimal::ZERO
    }
}

/// An encodedKey the tenant made, kept as the sequence number it is written from (`8a5b` and
/// 28 hex digits): 8 bytes where its `String` takes 56, for the kinds there are hundreds of
/// thousands of (installments, transactions) and for clients, groups, loans and deposits (their
/// own key, the lookup by key, a loan's settlement deposit and a deposit's loans). The sequence starts at 1, so an `Option<Key>`
/// (an installment's) takes 8 bytes too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key(NonZeroU64);

impl Key {
    /// The key `text` spells, if the tenant could have made it (exactly as it writes them).
    fn parse(text: &str) -> Option<Key> {
        let digits = text.strip_prefix("8a5b")?;
        let n = u64::from_str_radix(digits, 16).ok()?;
        let n = NonZeroU64::new(n)?;
        (format!("{n:028x}") == digits).then_some(Key(n))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "8a5b{:028x}", self.0)
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An amount of money kept exactly in 8 bytes (issue 21): a whole number of ten-thousandths.
/// A [`Decimal`] takes 16. An amount with more decimals than four, or beyond ±922 billion,
/// has no `Money`: where one is kept, its exact value is kept another way (see
/// [`Transaction`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Money(i64);

impl Money {
    const SCALE: u32 = 4;

    /// `d` exactly, if it fits.
    fn of(d: Decimal) -> Option<Money> {
        let d = d.normalize();
        let up = Self::SCALE.checked_sub(d.scale())?;
        let units = d.mantissa().checked_mul(10i128.pow(up))?;
        i64::try_from(units).ok().map(Money)
    }

    fn get(self) -> Decimal {
        Decimal::new(self.0, Self::SCALE).normalize()
    }
}

/// A 128-bit fingerprint of a text, for the lookups keyed by texts there are millions of
/// (transactions' externalIds and natural keys, the entities' ids and natural keys, the
/// duplicate-client check): 16 bytes where a `String` takes 24 and its text. Two SipHash-1-3
/// of the text under keys drawn at random when the tenant starts (so no caller can aim at a
/// collision): among a billion texts, the odds that two share a fingerprint are about 1 in
/// 10^21.
#[derive(Debug, Default)]
struct Fingerprint(RandomState, RandomState);

impl Fingerprint {
    fn of(&self, text: &str) -> Print {
        let (a, b) = (self.0.hash_one(text), self.1.hash_one(text));
        // Halves of u64s: `Print` is aligned to 4, so an entry of it and a `u32` takes 20 bytes.
        Print([(a >> 32) as u32, a as u32, (b >> 32) as u32, b as u32])
    }
}

/// A text's [`Fingerprint`]. Already uniformly random, so a map keyed by it hashes it as it is
/// ([`Prints`]): no second SipHash per lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Print([u32; 4]);

impl Hash for Print {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(self.0[0]) << 32) | u64::from(self.0[1]));
    }
}

/// The hasher of [`Prints`]: a [`Print`]'s first 64 bits as they are.
#[derive(Debug, Default)]
struct PrintHasher(u64);

impl Hasher for PrintHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is called (see `Print`'s `Hash`); any other input is folded in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// An index of the tenant's entities or transactions as the `u32` its lookups keep (4 billion
/// of each: a tenant that outgrows it is far beyond what a sandbox holds in memory).
fn index_u32(index: usize) -> u32 {
    u32::try_from(index).expect("fewer than 4 billion entities of a kind")
}

/// A map keyed by [`Print`]s (issue 21: 20 bytes an entry with a `u32`, where a `String` key
/// took 24 bytes and its text's allocation).
type Prints<V> = HashMap<Print, V, BuildHasherDefault<PrintHasher>>;

/// A transaction, in 72 bytes (issue 21: as a parsed map it cost about 4 KB, as its JSON text
/// about 500 bytes). What the tenant's rules and the stats read is typed (kind, account,
/// encodedKey, amount, value date, adjusted, deleted), and so is what the answer carries for
/// every transaction of its kind (the affected amounts, the balances after it, the creation
/// date; the currency comes from the account's product, the booking date by default from the
/// value date): [`Tenant::transaction_json`] writes them. What is left (the body's externalId,
/// notes and any other field it gave, an adjustment's fields, and any field the typed ones do
/// not write exactly as it was) is kept as text in [`Tenant::texts`] and written over the
/// typed fields.
#[derive(Debug)]
struct Transaction {
    encoded_key: Key,
    /// Where the rest is in [`Tenant::texts`] (when `REST` is set).
    rest: u64,
    /// The amount (when `AMOUNT_IN_REST` is not set).
    amount: Money,
    /// A loan transaction's `affectedAmounts.principalAmount` and `.interestAmount` (the fees
    /// are the rest of its amount).
    affected: [Money; 2],
    /// A loan transaction's `accountBalances.principalBalance` and `.totalBalance`; a deposit
    /// transaction's `.totalBalance` first.
    balances: [Money; 2],
    /// Its value date and creation date-time (the latter to the second: the answer writes no
    /// more), unless `EXACT_DATES` says they are in [`Tenant::exact_dates`].
    value_date: Stamp,
    created: Stamp,
    /// The index of the loan or deposit it is on (`DEPOSIT` says which).
    account: u32,
    /// Its type, as an index in [`TRANSACTION_TYPES`].
    kind: u8,
    /// `DEPOSIT`, `REST`, `AMOUNT_IN_REST`, `VERBATIM`.
    flags: u8,
    /// `adjustmentTransactionKey` is set (issue 19).
    adjusted: bool,
    /// Removed behind the API's back (`POST /_sandbox/tamper`).
    deleted: bool,
}

/// The types of transaction the tenant posts; [`Transaction`] keeps its type's index.
const TRANSACTION_TYPES: [&str; 11] = [
    "DISBURSEMENT",
    "FEE_APPLIED",
    "REPAYMENT",
    "DEPOSIT",
    "WITHDRAWAL",
    "INTEREST_LOCKED",
    "FEE_LOCKED",
    "PENALTY_LOCKED",
    "INTEREST_UNLOCKED",
    "FEE_UNLOCKED",
    "PENALTY_UNLOCKED",
];

impl Transaction {
    /// On a deposit (else on a loan).
    const DEPOSIT: u8 = 1;
    /// Has a rest in [`Tenant::texts`].
    const REST: u8 = 2;
    /// Its amount has no [`Money`]: the rest holds it.
    const AMOUNT_IN_REST: u8 = 4;
    /// The typed fields of its kind do not write its answer: the rest holds them all.
    const VERBATIM: u8 = 8;
    /// Its dates do not fit a [`Stamp`] (a value date to the fraction of a second, or with an
    /// offset that is not the zone's, which only a lenient tenant takes): they are kept exactly
    /// in [`Tenant::exact_dates`].
    const EXACT_DATES: u8 = 16;

    fn kind(&self) -> &'static str {
        TRANSACTION_TYPES
            .get(usize::from(self.kind))
            .copied()
            .unwrap_or("UNKNOWN")
    }

    fn account(&self) -> Account {
        let index = self.account as usize;
        if self.flags & Self::DEPOSIT != 0 {
            Account::Deposit(index)
        } else {
            Account::Loan(index)
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The account a transaction is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Account {
    Loan(usize),
    Deposit(usize),
}

/// The kinds of deposit transaction the migration posts
/// (`POST /deposits/{id}/deposit-transactions`, `/withdrawal-transactions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepositTransactionKind {
    Deposit,
    Withdrawal,
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
    pub fn new(products: Products, zone: Zone, client_rules: ClientRules) -> Self {
        Self {
            products,
            client_rules,
            custom_field_sets: Vec::new(),
            zone,
            seq: 0,
            clients: Vec::new(),
            groups: Vec::new(),
            deposits: Vec::new(),
            loans: Vec::new(),
            transactions: Vec::new(),
            keys: HashMap::new(),
            client_ids: Prints::default(),
            group_ids: Prints::default(),
            account_ids: Prints::default(),
            external_ids: Prints::default(),
            natural_keys: Prints::default(),
            transaction_keys: Prints::default(),
            fingerprint: Fingerprint::default(),
            texts: Texts::default(),
            exact_dates: HashMap::new(),
            client_matches: HashSet::default(),
            bulks: Vec::new(),
            counters: Counters::default(),
            tally: Default::default(),
            entities: Default::default(),
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
        self.next_key().to_string()
    }

    /// The client, group, loan or deposit an encodedKey names; `None` for any other text.
    fn entity(&self, key: &str) -> Option<EntityRef> {
        Key::parse(key).and_then(|key| self.keys.get(&key).copied())
    }

    /// A new encodedKey kept as its number (see [`Key`]).
    fn next_key(&mut self) -> Key {
        // The sequence starts at 1.
        Key(NonZeroU64::MIN.saturating_add(self.next_seq() - 1))
    }

    /// The client or group an id names in `ids` (their own id spaces).
    fn by_id(&self, ids: &Prints<u32>, id: &str) -> Option<usize> {
        ids.get(&self.fingerprint.of(id)).map(|&i| i as usize)
    }

    /// The loan or deposit an id names.
    fn account_by_id(&self, id: &str) -> Option<EntityRef> {
        self.account_ids.get(&self.fingerprint.of(id)).copied()
    }

    /// Counts a creation again under a natural key; true when it was seen before.
    fn seen_before(&mut self, natural_key: String) -> bool {
        let count = self
            .natural_keys
            .entry(self.fingerprint.of(&natural_key))
            .or_insert(0);
        *count += 1;
        *count > 1
    }

    fn claim_account_id(
        &mut self,
        doc: &Map<String, Value>,
        natural: String,
    ) -> Result<String, ApiError> {
        match optional_str(doc, "id")? {
            Some(id) if self.account_ids.contains_key(&self.fingerprint.of(id)) => {
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
}

#[cfg(test)]
mod test_support {
    use serde_json::{Value, json};

    use super::{ClientRules, Products, Tenant, Zone};

    pub(super) fn tenant() -> Tenant {
        Tenant::new(
            Products::default_set(),
            Zone::default(),
            ClientRules::default(),
        )
    }

    pub(super) fn client(t: &mut Tenant) -> String {
        t.create_client(&json!({ "firstName": "Ada", "lastName": "Lovelace" }))
            .unwrap()["encodedKey"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(super) fn loan(t: &mut Tenant, holder: &str, amount: &str) -> Value {
        let body: Value = serde_json::from_str(&format!(
            r#"{{"accountHolderKey":"{holder}","accountHolderType":"CLIENT","productTypeKey":"8a19c0de00000000000000000000a001","loanAmount":{amount},"interestSettings":{{"interestRate":12}},"scheduleSettings":{{"gracePeriod":0,"repaymentInstallments":3}}}}"#
        ))
        .unwrap();
        t.create_loan(&body).unwrap()
    }

    /// A PENDING_APPROVAL deposit of a new client; its id.
    pub(super) fn pending_deposit(t: &mut Tenant) -> String {
        let holder = client(t);
        let product = t.products.deposit_products[0].encoded_key.clone();
        t.create_deposit(&json!({
            "accountHolderKey": holder, "accountHolderType": "CLIENT",
            "name": "Savings", "productTypeKey": product,
        }))
        .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// An APPROVED deposit of a new client; its id.
    pub(super) fn approved_deposit(t: &mut Tenant) -> String {
        let id = pending_deposit(t);
        t.change_deposit_state(&id, &json!({ "action": "APPROVE" }))
            .unwrap();
        id
    }

    /// A client's approved loan of `amount`, not yet disbursed; its id.
    pub(super) fn approved_loan(t: &mut Tenant, amount: &str) -> String {
        let holder = client(t);
        let id = loan(t, &holder, amount)["id"].as_str().unwrap().to_owned();
        t.change_loan_state(&id, &json!({ "action": "APPROVE" }))
            .unwrap();
        id
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use std::num::NonZeroU64;

    use super::{Key, Money, TRANSACTION_TYPES, Transaction};

    #[test]
    fn money_holds_four_decimals_exactly_or_nothing() {
        for text in ["0", "25.5", "25.50", "-3.1416", "922337203685477.5807"] {
            let d = Decimal::from_str(text).unwrap();
            assert_eq!(Money::of(d).map(Money::get), Some(d), "{text}");
        }
        for text in ["0.00001", "922337203685477.5808", "1e20"] {
            let d = Decimal::from_str(text)
                .or_else(|_| Decimal::from_scientific(text))
                .unwrap();
            assert_eq!(Money::of(d), None, "{text}");
        }
    }

    /// What a transaction and an installment take (BENCHMARKS.md, "The sandbox's memory").
    #[test]
    fn a_transaction_stays_compact() {
        assert_eq!(std::mem::size_of::<Transaction>(), 72);
        // An installment as the rules read it; a loan keeps it in a few bytes (`Schedule`).
        assert_eq!(std::mem::size_of::<super::Installment>(), 136);
        assert!(TRANSACTION_TYPES.len() < usize::from(u8::MAX));
    }

    #[test]
    fn a_transactions_dates_are_stamps_or_kept_exactly() {
        use super::{Account, test_support};
        let mut t = test_support::tenant();
        let id = test_support::approved_deposit(&mut t);
        let deposit = Account::Deposit(t.deposit_index(&id).unwrap());
        let post = |t: &mut super::Tenant, at: chrono::DateTime<chrono::FixedOffset>| {
            let i = t.record_transaction(deposit, "DEPOSIT", Decimal::TEN, at, Default::default());
            t.transaction_dates(&t.transactions[i])
        };
        // To the second, in the zone: a stamp, nothing kept aside.
        let even = t.zone.at_timestamp(1_741_083_072).unwrap();
        let [value_date, created] = post(&mut t, even);
        assert_eq!((value_date, value_date.offset()), (even, even.offset()));
        assert_eq!(created.timestamp_subsec_nanos(), 0);
        assert!(t.exact_dates.is_empty());
        // A fraction of a second, or another offset (a lenient tenant's): kept as it came.
        for text in ["2025-03-04T10:11:12.5+00:00", "2025-03-04T10:11:12+05:00"] {
            let odd = chrono::DateTime::parse_from_rfc3339(text).unwrap();
            let [value_date, _] = post(&mut t, odd);
            assert_eq!((value_date, value_date.offset()), (odd, odd.offset()));
        }
        assert_eq!(t.exact_dates.len(), 2);
    }

    #[test]
    fn a_key_reads_back_only_as_the_tenant_writes_it() {
        let key = Key(NonZeroU64::new(42).unwrap());
        assert_eq!(key.to_string(), "8a5b000000000000000000000000002a");
        assert_eq!(Key::parse(&key.to_string()), Some(key));
        for other in [
            "8A5B000000000000000000000000002a",
            "8a5b00000000000000000000000002A",
            "8a5b2a",
            "8a5b0000000000000000000000000000",
            "8a5b+00000000000000000000000002a",
            "",
        ] {
            assert_eq!(Key::parse(other), None, "{other}");
        }
    }
}
