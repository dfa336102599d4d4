//! A loan's securities (issue 18), compared with what a `detailsLevel=FULL` read of it answers
//! (a BASIC read leaves them out): its `guarantors[]` and `assets[]`, as the plan rendered them
//! into the create_loan body, entry by entry in the order sent (Mambu keeps it).
//!
//! - guarantors: `amount`, `guarantorKey`, `guarantorType` and `depositAccountKey` of each
//!   (`guarantors[0].depositAccountKey`);
//! - assets: `amount` and `assetName` of each, and the guarantor fields an asset sent;
//! - an entry Mambu holds beyond those sent is a mismatch (`guarantors`: 1 guarantors, found 2);
//! - control totals: the number of guarantors and assets, and their amounts.
//!
//! Only what the plan sends is compared (Mambu adds each entry's `encodedKey`). Nothing here is
//! masked: a guarantor is named by the encodedKeys of a client (or group) and of a deposit
//! account, and an asset's name is a description of collateral, not personal data. Amounts are
//! equal when their values are (`400.5` and `"400.50"`).

use rust_decimal::Decimal;
use serde_json::Value;

use super::check::number;
use super::details::{Compared, entries};

/// Each list, the fields compared on its entries, and the names of its totals.
const LISTS: [(&str, &[&str], &str, &str); 2] = [
    (
        "guarantors",
        &[
            "amount",
            "guarantorKey",
            "guarantorType",
            "depositAccountKey",
        ],
        "loan guarantors",
        "loan guarantee amounts",
    ),
    (
        "assets",
        &[
            "amount",
            "assetName",
            "guarantorKey",
            "guarantorType",
            "depositAccountKey",
        ],
        "loan assets",
        "loan asset amounts",
    ),
];

/// Compares the securities `body` (the create_loan step's rendered body) sends with those
/// Mambu answered (`found`), adding differences and totals to `out`.
pub(super) fn compare(body: &Value, found: &Value, out: &mut Compared) {
    for (list, fields, count, amounts) in LISTS {
        let Some(Value::Array(sent)) = body.get(list) else {
            continue;
        };
        let held = entries(found, list);
        for (i, entry) in sent.iter().enumerate() {
            for field in fields {
                // Only what the plan sends: an asset without a guarantor sends no guarantorKey.
                let Some(value) = entry.get(*field).filter(|v| !v.is_null()) else {
                    continue;
                };
                out.value(
                    format!("{list}[{i}].{field}"),
                    Some(value),
                    held.get(i).and_then(|h| h.get(*field)),
                    false,
                );
            }
        }
        out.extra(list, list, sent.len(), held.len());
        out.count(count.into(), sent.len(), held.len());
        let sum = |entries: &[Value]| -> Decimal {
            entries.iter().filter_map(|e| number(e.get("amount"))).sum()
        };
        out.totals.push((amounts.into(), sum(sent), sum(held)));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compared(body: Value, found: Value) -> Compared {
        let mut out = Compared::default();
        compare(&body, &found, &mut out);
        out
    }

    #[test]
    fn securities_held_as_sent_match_whatever_mambu_adds() {
        let body = json!({
            "guarantors": [{ "guarantorKey": "c1", "guarantorType": "CLIENT",
                             "depositAccountKey": "d1", "amount": "400.50" }],
            "assets": [{ "assetName": "Car", "amount": 300 }]
        });
        let found = json!({
            "guarantors": [{ "guarantorKey": "c1", "guarantorType": "CLIENT",
                             "depositAccountKey": "d1", "amount": 400.5, "encodedKey": "k1" }],
            "assets": [{ "assetName": "Car", "amount": 300, "encodedKey": "k2" }]
        });
        let out = compared(body, found);
        assert_eq!(out.differences, vec![]);
        let (one, three, amount) = (Decimal::ONE, Decimal::from(300), Decimal::new(4005, 1));
        assert_eq!(
            out.totals,
            vec![
                ("loan guarantors".into(), one, one),
                ("loan guarantee amounts".into(), amount, amount),
                ("loan assets".into(), one, one),
                ("loan asset amounts".into(), three, three),
            ]
        );
    }

    #[test]
    fn a_changed_missing_or_extra_security_is_a_mismatch() {
        let body = json!({
            "guarantors": [{ "guarantorKey": "c1", "guarantorType": "CLIENT",
                             "depositAccountKey": "d1", "amount": 400 }],
            "assets": [{ "assetName": "Car", "amount": 300 }, { "assetName": "Flat", "amount": 1 }]
        });
        let found = json!({
            "guarantors": [{ "guarantorKey": "c1", "guarantorType": "CLIENT",
                             "depositAccountKey": "d2", "amount": 40 },
                           { "guarantorKey": "c9", "guarantorType": "CLIENT", "amount": 1 }],
            "assets": [{ "assetName": "Boat", "amount": 300 }]
        });
        let d = |f: &str, e: &str, h: &str| (f.to_owned(), e.to_owned(), h.to_owned());
        assert_eq!(
            compared(body, found).differences,
            vec![
                d("guarantors[0].amount", "400", "40"),
                d("guarantors[0].depositAccountKey", "d1", "d2"),
                d("guarantors", "1 guarantors", "2 guarantors"),
                d("assets[0].assetName", "Car", "Boat"),
                d("assets[1].amount", "1", "(none)"),
                d("assets[1].assetName", "Flat", "(none)"),
            ]
        );
    }
}
