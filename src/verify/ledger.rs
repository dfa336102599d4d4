//! A deposit account's ledger as the run posted it (issue 18), against what Mambu holds: its
//! deposit and withdrawal transactions, matched by externalId (type, amount, value date as the
//! plan rendered it), and its balance (`balances.totalBalance`) against the plan's deposits
//! minus its withdrawals.
//!
//! Pure: the checker reads the account and its transactions and hands them here.
//!
//! - Every posted transaction must be there; on an account the unit made, every DEPOSIT or
//!   WITHDRAWAL Mambu holds must be one the run posted. Mambu's own transactions of other types
//!   (interest applied, fees) are neither compared nor counted; what they do to the balance is,
//!   through the balance.
//! - On an account some other unit made (a plan may post on a deposit it did not create), only
//!   the transactions this unit posted are looked for: the others, and the balance, are that
//!   account's own unit's to answer for.
//! - A balance is compared only on an account the run posted transactions on: one the run only
//!   opened holds whatever Mambu says.
//! - Value dates are compared as instants when both parse as RFC 3339 (Mambu may write the same
//!   instant with another offset or with milliseconds), as text otherwise.

use std::collections::BTreeMap;

use chrono::DateTime;
use rust_decimal::Decimal;
use serde_json::Value;

use super::check::{number, show};

/// One transaction the run posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Posted {
    /// `DEPOSIT` or `WITHDRAWAL`.
    pub(super) kind: &'static str,
    pub(super) amount: Decimal,
    /// The value date the plan rendered; `None`: Mambu's (now), not compared.
    pub(super) value_date: Option<String>,
}

/// The transactions the run posted on one deposit account, by externalId.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Ledger {
    pub(super) posted: BTreeMap<String, Posted>,
}

/// The names of the control totals.
pub(super) fn count_total(kind: &str) -> String {
    format!("deposit transactions of type {kind}")
}
pub(super) fn amount_total(kind: &str) -> String {
    format!("deposit transaction amounts of type {kind}")
}
pub(super) const BALANCES: &str = "deposit balances (accounts with transactions)";

/// One difference: entity, field, expected, found.
pub(super) type Difference = (String, String, String, String);

/// What a comparison found: differences and the found side of the control totals.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Compared {
    pub(super) differences: Vec<Difference>,
    pub(super) found: Vec<(String, Decimal)>,
}

impl Ledger {
    pub(super) fn is_empty(&self) -> bool {
        self.posted.is_empty()
    }

    pub(super) fn post(&mut self, external: String, posted: Posted) {
        self.posted.insert(external, posted);
    }

    /// Deposits minus withdrawals: the balance the run leaves.
    pub(super) fn net(&self) -> Decimal {
        self.posted
            .values()
            .map(|p| match p.kind {
                "WITHDRAWAL" => -p.amount,
                _ => p.amount,
            })
            .sum()
    }

    /// The expected side of the control totals for this one transaction.
    pub(super) fn expected_totals(posted: &Posted) -> [(String, Decimal); 2] {
        [
            (count_total(posted.kind), Decimal::ONE),
            (amount_total(posted.kind), posted.amount),
        ]
    }

    /// The account's transactions as Mambu lists them (`found`) against those posted; with
    /// `own`, the account is the unit's and a DEPOSIT or WITHDRAWAL the run did not post is a
    /// difference (and counted), otherwise it is left alone.
    pub(super) fn compare_transactions(&self, found: &[Value], own: bool) -> Compared {
        let mut out = Compared::default();
        let mut seen = std::collections::HashSet::new();
        for t in found {
            let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
            if !matches!(kind, "DEPOSIT" | "WITHDRAWAL") {
                continue;
            }
            let amount = number(t.get("amount")).unwrap_or_default();
            let external = t.get("externalId").and_then(Value::as_str).unwrap_or("");
            let Some(want) = self.posted.get(external) else {
                if own {
                    out.found.push((count_total(kind), Decimal::ONE));
                    out.found.push((amount_total(kind), amount));
                    let entity = if external.is_empty() {
                        "transaction (no externalId)".to_owned()
                    } else {
                        format!("transaction {external}")
                    };
                    let date = t.get("valueDate").and_then(Value::as_str).unwrap_or("");
                    out.differences.push((
                        entity,
                        "exists".into(),
                        "no (not posted by the run)".into(),
                        format!("{kind} {} {date}", show(Some(amount)))
                            .trim_end()
                            .to_owned(),
                    ));
                }
                continue;
            };
            if !seen.insert(external.to_owned()) {
                // Twice under one externalId (Mambu refuses it; a tenant may not).
                out.found.push((count_total(kind), Decimal::ONE));
                out.found.push((amount_total(kind), amount));
                out.differences.push((
                    format!("transaction {external}"),
                    "exists".into(),
                    "once".into(),
                    "more than once".into(),
                ));
                continue;
            }
            out.found.push((count_total(kind), Decimal::ONE));
            out.found.push((amount_total(kind), amount));
            let entity = format!("transaction {external}");
            if want.kind != kind {
                out.differences.push((
                    entity.clone(),
                    "type".into(),
                    want.kind.into(),
                    kind.into(),
                ));
            }
            if want.amount != amount {
                out.differences.push((
                    entity.clone(),
                    "amount".into(),
                    show(Some(want.amount)),
                    show(Some(amount)),
                ));
            }
            if let Some(date) = &want.value_date {
                let held = t.get("valueDate").and_then(Value::as_str);
                if !same_instant(date, held) {
                    out.differences.push((
                        entity,
                        "valueDate".into(),
                        date.clone(),
                        held.unwrap_or("(none)").to_owned(),
                    ));
                }
            }
        }
        for (external, want) in &self.posted {
            if !seen.contains(external) {
                out.differences.push((
                    format!("transaction {external}"),
                    "exists".into(),
                    format!("{} {}", want.kind, show(Some(want.amount))),
                    "no".into(),
                ));
            }
        }
        out
    }

    /// The account's balance (`deposit`, as Mambu answers it) against the net of what was
    /// posted: the found total and the difference, if any (field, expected, found).
    pub(super) fn compare_balance(&self, deposit: &Value) -> (Decimal, Option<(String, String)>) {
        let held = number(deposit.get("balances").and_then(|b| b.get("totalBalance")));
        let net = self.net();
        let difference = (held != Some(net)).then(|| (show(Some(net)), show(held)));
        (held.unwrap_or_default(), difference)
    }
}

/// The same instant (both RFC 3339), or the same text.
fn same_instant(expected: &str, found: Option<&str>) -> bool {
    let Some(found) = found else {
        return false;
    };
    match (
        DateTime::parse_from_rfc3339(expected),
        DateTime::parse_from_rfc3339(found),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => expected == found,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn d(n: &str) -> Decimal {
        n.parse().unwrap()
    }

    fn ledger() -> Ledger {
        let mut l = Ledger::default();
        for (ext, kind, amount, date) in [
            ("E1", "DEPOSIT", "100.50", Some("2024-01-01T00:00:00+00:00")),
            (
                "E2",
                "WITHDRAWAL",
                "20.25",
                Some("2024-01-04T00:00:00+00:00"),
            ),
            ("E3", "DEPOSIT", "7", None),
        ] {
            l.post(
                ext.into(),
                Posted {
                    kind,
                    amount: d(amount),
                    value_date: date.map(str::to_owned),
                },
            );
        }
        l
    }

    fn held() -> Vec<Value> {
        vec![
            json!({ "type": "DEPOSIT", "externalId": "E1", "amount": 100.5,
                    "valueDate": "2024-01-01T01:00:00+01:00" }),
            json!({ "type": "INTEREST_APPLIED", "amount": 0.01 }),
            json!({ "type": "WITHDRAWAL", "externalId": "E2", "amount": "20.250",
                    "valueDate": "2024-01-04T00:00:00.000Z" }),
            json!({ "type": "DEPOSIT", "externalId": "E3", "amount": 7,
                    "valueDate": "2099-01-01T00:00:00+00:00" }),
        ]
    }

    fn diff(entity: &str, field: &str, expected: &str, found: &str) -> Difference {
        (entity.into(), field.into(), expected.into(), found.into())
    }

    #[test]
    fn what_was_posted_matches_by_external_id_and_instant() {
        let compared = ledger().compare_transactions(&held(), true);
        assert_eq!(compared.differences, vec![]);
        let sum = |name: String| -> Decimal {
            compared
                .found
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .sum()
        };
        assert_eq!(sum(count_total("DEPOSIT")), d("2"));
        assert_eq!(sum(amount_total("DEPOSIT")), d("107.5"));
        assert_eq!(sum(amount_total("WITHDRAWAL")), d("20.25"));
        assert_eq!(ledger().net(), d("87.25"));
    }

    #[test]
    fn a_missing_an_altered_and_an_unposted_transaction_are_differences() {
        let mut found = held();
        found.remove(0);
        found[1]["amount"] = json!(20);
        found[1]["valueDate"] = json!("2024-01-05T00:00:00+00:00");
        found[2]["type"] = json!("WITHDRAWAL");
        found.push(
            json!({ "type": "WITHDRAWAL", "amount": 5, "valueDate": "2024-02-01T00:00:00+00:00" }),
        );
        let compared = ledger().compare_transactions(&found, true);
        assert_eq!(
            compared.differences,
            vec![
                diff("transaction E2", "amount", "20.25", "20"),
                diff(
                    "transaction E2",
                    "valueDate",
                    "2024-01-04T00:00:00+00:00",
                    "2024-01-05T00:00:00+00:00"
                ),
                diff("transaction E3", "type", "DEPOSIT", "WITHDRAWAL"),
                diff(
                    "transaction (no externalId)",
                    "exists",
                    "no (not posted by the run)",
                    "WITHDRAWAL 5 2024-02-01T00:00:00+00:00"
                ),
                diff("transaction E1", "exists", "DEPOSIT 100.5", "no"),
            ]
        );
        // On another unit's account, only what this unit posted is looked for.
        let theirs = ledger().compare_transactions(&found, false);
        assert_eq!(theirs.differences.len(), 4);
        assert!(!theirs.found.iter().any(|(_, v)| *v == d("5")));
    }

    #[test]
    fn the_balance_is_the_deposits_minus_the_withdrawals() {
        let l = ledger();
        let right = json!({ "balances": { "totalBalance": 87.25 } });
        assert_eq!(l.compare_balance(&right), (d("87.25"), None));
        let wrong = json!({ "balances": { "totalBalance": "80" } });
        assert_eq!(
            l.compare_balance(&wrong),
            (d("80"), Some(("87.25".into(), "80".into())))
        );
        assert_eq!(
            l.compare_balance(&json!({})),
            (Decimal::ZERO, Some(("87.25".into(), "(none)".into())))
        );
    }
}
