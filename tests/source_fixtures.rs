//! The source module on the committed sample data (fixtures/sample) and on the data with one of
//! each problem (fixtures/invalid).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mambu_migrate::source::{
    CellType, ColumnSpec, GroupOptions, SourceDef, Sources, Unit, Value, count, group,
};
use rust_decimal::Decimal;

fn fixtures(set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(set)
}

fn personal(ty: CellType) -> ColumnSpec {
    ColumnSpec::personal(ty)
}

fn typed(ty: CellType) -> ColumnSpec {
    ColumnSpec::new(ty)
}

fn clients(dir: &Path) -> SourceDef {
    let mut def = SourceDef::new("clients", dir.join("clients.csv"), "client_id")
        .with_column("birth_date", personal(CellType::date()));
    for c in ["first_name", "last_name", "email"] {
        def = def.with_column(c, personal(CellType::Text));
    }
    def
}

fn loans(dir: &Path) -> SourceDef {
    SourceDef::new("loans", dir.join("loans.csv"), "loan_id")
        .with_parent("clients", "client_id")
        .with_column("amount", typed(CellType::Decimal))
        .with_column("interest_rate", typed(CellType::Decimal))
        .with_column("installments", typed(CellType::Int))
        .with_column("disbursed_on", typed(CellType::date()))
        .with_column("custom_schedule", typed(CellType::Bool))
}

fn transactions(dir: &Path) -> SourceDef {
    SourceDef::new("transactions", dir.join("transactions.csv"), "txn_id")
        .with_parent("loans", "loan_id")
        .with_order_by(&["value_date"])
        .with_column("amount", typed(CellType::Decimal))
        .with_column("value_date", typed(CellType::date()))
        .with_column("installment_number", typed(CellType::Int))
        .with_column("notes", personal(CellType::Text))
}

fn sample_sources() -> Sources {
    let dir = fixtures("sample");
    let defs = vec![
        clients(&dir)
            .with_column("joined_on", typed(CellType::date()))
            .with_column("address", personal(CellType::Text)),
        SourceDef::new("deposits", dir.join("deposits.csv"), "deposit_id")
            .with_parent("clients", "client_id")
            .with_column("opened_on", typed(CellType::date())),
        loans(&dir).with_column("first_repayment_on", typed(CellType::date())),
        SourceDef::new("schedules", dir.join("schedules.csv"), "schedule_id")
            .with_parent("loans", "loan_id")
            .with_order_by(&["installment_number"])
            .with_column("installment_number", typed(CellType::Int))
            .with_column("due_date", typed(CellType::date()))
            .with_column("principal_due", typed(CellType::Decimal))
            .with_column("interest_due", typed(CellType::Decimal)),
        transactions(&dir),
    ];
    Sources::new(defs, "clients").expect("valid definitions")
}

fn decimal(v: Option<Result<Value<'_>, mambu_migrate::source::CellError>>) -> Decimal {
    match v {
        Some(Ok(Value::Decimal(d))) => d,
        other => panic!("not a decimal: {other:?}"),
    }
}

fn keys(units: &[Unit]) -> Vec<Vec<(String, Vec<String>)>> {
    let names = ["deposits", "loans", "schedules", "transactions"];
    units
        .iter()
        .map(|u| {
            let mut v = vec![("clients".to_string(), vec![u.key().to_string()])];
            for n in names {
                v.push((
                    n.to_string(),
                    u.rows(n)
                        .unwrap()
                        .iter()
                        .map(|r| r.key().to_string())
                        .collect(),
                ));
            }
            v
        })
        .collect()
}

#[test]
fn sample_groups_into_250_units_with_every_row() {
    let sources = sample_sources();
    let mut grouping = group(&sources, &GroupOptions::default());
    let units: Vec<Unit> = grouping.by_ref().collect();
    let report = grouping.finish();
    assert_eq!(report.problems, vec![], "{:#?}", report.problems);
    assert_eq!(report.units, 250);
    assert_eq!(report.spilled_runs, 0);
    let grouped: HashMap<&str, (u64, u64)> = report
        .sources
        .iter()
        .map(|s| (s.name.as_str(), (s.rows_read, s.rows_grouped)))
        .collect();
    for (name, rows) in [
        ("clients", 250),
        ("deposits", 99),
        ("loans", 416),
        ("schedules", 1152),
        ("transactions", 4677),
    ] {
        assert_eq!(grouped[name], (rows, rows), "{name}");
    }

    let mut custom = 0;
    let mut longest = 0;
    for unit in &units {
        let root = unit.root();
        for loan in unit.rows("loans").unwrap().iter() {
            assert_eq!(loan.parent_key(), Some(unit.key()));
            // A custom schedule: exactly `installments` rows, numbered 1..n, adding up exactly
            // to the amount.
            let schedule = unit.children("schedules", &loan);
            if let Some(Ok(Value::Bool(true))) = loan.value("custom_schedule") {
                custom += 1;
                let n = match loan.value("installments") {
                    Some(Ok(Value::Int(n))) => n,
                    other => panic!("{other:?}"),
                };
                assert_eq!(schedule.len() as i64, n);
                let numbers: Vec<String> = schedule
                    .iter()
                    .map(|s| s.get("installment_number").unwrap().to_string())
                    .collect();
                let want: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
                assert_eq!(numbers, want, "numeric order, not text order");
                let principal: Decimal = schedule
                    .iter()
                    .map(|s| decimal(s.value("principal_due")))
                    .sum();
                assert_eq!(principal, decimal(loan.value("amount")), "{}", loan.key());
            } else {
                assert!(schedule.is_empty());
            }
            // Transactions of a loan come in value-date order.
            let txns = unit.children("transactions", &loan);
            longest = longest.max(txns.len());
            let dates: Vec<&str> = txns.iter().map(|t| t.get("value_date").unwrap()).collect();
            assert!(dates.is_sorted(), "{}: {dates:?}", loan.key());
        }
        for deposit in unit.rows("deposits").unwrap().iter() {
            assert_eq!(deposit.get("client_id"), root.get("client_id"));
        }
    }
    assert_eq!(custom, 50);
    assert!(longest >= 200, "the long tail: {longest}");

    let counted = count(&sources);
    assert_eq!(counted.problems, vec![]);
    assert_eq!(counted.units, 250);
    let rows: Vec<(&str, u64)> = counted
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.rows))
        .collect();
    assert_eq!(
        rows,
        [
            ("clients", 250),
            ("deposits", 99),
            ("loans", 416),
            ("schedules", 1152),
            ("transactions", 4677)
        ]
    );

    // Spilling to disk and sampling give the same units.
    let tmp = tempfile::tempdir().unwrap();
    let tiny = GroupOptions {
        chunk_rows: 100,
        temp_dir: Some(tmp.path().to_path_buf()),
        ..GroupOptions::default()
    };
    let mut spilled = group(&sources, &tiny);
    let spilled_units: Vec<Unit> = spilled.by_ref().collect();
    assert!(spilled.finish().spilled_runs > 0);
    assert_eq!(keys(&spilled_units), keys(&units));
    let sample = GroupOptions {
        sample: Some(10),
        ..tiny
    };
    let sampled: Vec<Unit> = group(&sources, &sample).collect();
    assert_eq!(keys(&sampled), keys(&units[..10]));
}

#[test]
fn invalid_data_problems_are_located() {
    let dir = fixtures("invalid");
    let sources = Sources::new(
        vec![clients(&dir), loans(&dir), transactions(&dir)],
        "clients",
    )
    .expect("valid definitions");
    let mut grouping = group(&sources, &GroupOptions::default());
    let units: Vec<String> = grouping.by_ref().map(|u| u.key().to_string()).collect();
    assert_eq!(units, ["CL-1", "CL-2", "CL-3", "CL-4"]);
    let problems: Vec<String> = grouping
        .finish()
        .problems
        .iter()
        .map(|p| {
            let file = p
                .file
                .as_ref()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            let text = p.to_string();
            let (_, rest) = text.split_once(".csv:").unwrap();
            format!("{file}:{rest}")
        })
        .collect();
    assert_eq!(
        problems,
        [
            "clients.csv:4: clients: duplicate key \"CL-2\" (first at line 3)",
            "clients.csv:6: clients: column \"birth_date\": not a date in format %Y-%m-%d (shape \"99/99/9999\"; value withheld: personal data)",
            "loans.csv:4: loans: column \"installments\": not an integer: \"twelve\"",
            "loans.csv:5: loans: no clients row with key \"CL-9\" (from column \"client_id\"): missing, or left out above",
            "transactions.csv:3: transactions: column \"amount\": not a decimal number: \"1O0.00\"",
            "transactions.csv:5: transactions: no loans row with key \"LN-7\" (from column \"loan_id\"): missing, or left out above",
        ]
    );
}
