//! Throughput of the source module on large files (ignored by default).
//!
//! Generate clients.csv, loans.csv (client_id → clients) and transactions.csv (loan_id → loans)
//! in a directory, then:
//! `SOURCE_BENCH_DIR=/tmp/srcbench cargo test --release --test source_bench -- --ignored --nocapture`
//! Set `SOURCE_BENCH_GROUP=0` to time only the counting pass.

use std::path::PathBuf;
use std::time::Instant;

use mambu_migrate::source::{CellType, ColumnSpec, GroupOptions, SourceDef, Sources, count, group};

fn sources(dir: &str) -> Sources {
    let dir = PathBuf::from(dir);
    let defs = vec![
        SourceDef::new("clients", dir.join("clients.csv"), "client_id")
            .with_column("birth_date", ColumnSpec::personal(CellType::date())),
        SourceDef::new("loans", dir.join("loans.csv"), "loan_id")
            .with_parent("clients", "client_id")
            .with_column("amount", ColumnSpec::new(CellType::Decimal)),
        SourceDef::new("transactions", dir.join("transactions.csv"), "txn_id")
            .with_parent("loans", "loan_id")
            .with_order_by(&["value_date"])
            .with_column("value_date", ColumnSpec::new(CellType::date_in("%d/%m/%Y")))
            .with_column("amount", ColumnSpec::new(CellType::Decimal)),
    ];
    Sources::new(defs, "clients").expect("valid definitions")
}

#[test]
#[ignore = "needs SOURCE_BENCH_DIR with large files"]
fn throughput() {
    let Ok(dir) = std::env::var("SOURCE_BENCH_DIR") else {
        eprintln!("SOURCE_BENCH_DIR not set");
        return;
    };
    let sources = sources(&dir);

    for round in 0..3 {
        let t = Instant::now();
        let report = count(&sources);
        let secs = t.elapsed().as_secs_f64();
        let bytes: u64 = report.sources.iter().map(|s| s.bytes).sum();
        let rows: Vec<(String, u64)> = report
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.rows))
            .collect();
        eprintln!(
            "count #{round}: {rows:?}, units {}, {:.3} s, {:.0} MB/s",
            report.units,
            secs,
            bytes as f64 / secs / 1e6
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    // One file at a time (no parallelism), to compare with `wc -l FILE`.
    for (name, key) in [
        ("clients", "client_id"),
        ("loans", "loan_id"),
        ("transactions", "txn_id"),
    ] {
        let one = Sources::new(
            vec![SourceDef::new(
                name,
                PathBuf::from(&dir).join(format!("{name}.csv")),
                key,
            )],
            name,
        )
        .unwrap();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let report = count(&one);
            best = best.min(t.elapsed().as_secs_f64());
            assert_eq!(report.sources.len(), 1);
        }
        eprintln!("count {name}.csv alone: best of 3 {best:.3} s");
    }

    if std::env::var("SOURCE_BENCH_GROUP").as_deref() == Ok("0") {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let options = GroupOptions {
        temp_dir: Some(temp.path().to_path_buf()),
        ..GroupOptions::default()
    };
    let t = Instant::now();
    let mut grouping = group(&sources, &options);
    let prepared = t.elapsed().as_secs_f64();
    let mut rows = 0usize;
    let mut biggest = 0usize;
    for unit in grouping.by_ref() {
        rows += unit.row_count();
        biggest = biggest.max(unit.row_count());
    }
    let report = grouping.finish();
    eprintln!(
        "group: sorted in {prepared:.1} s, merged in {:.1} s; {} units, {rows} rows (biggest unit {biggest}); \
         spilled {} runs, {:.0} MB; problems {}",
        t.elapsed().as_secs_f64() - prepared,
        report.units,
        report.spilled_runs,
        report.spilled_bytes as f64 / 1e6,
        report.problems.len()
    );
    for p in report.problems.iter().take(5) {
        eprintln!("  {p}");
    }
}
