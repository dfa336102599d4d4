//! Criterion benchmarks of the in-process parts on the path of every call or every row, each
//! beside the floor it is measured against in the same run (issue 8):
//!
//! - `render`: one call of the sample plan rendered from its unit's rows (what `run` does before
//!   each call), and checked the way `plan validate` checks it (through the memo); the floor is
//!   `serde_json::to_vec` of the rendered body (the least any client must do to send it).
//! - `read transactions.csv`: the field scan `plan estimate` counts with, on a generated file,
//!   beside `memchr` counting its line breaks (what `wc -l` does) and the `csv` crate reading
//!   every record.
//! - `checkpoint`: one call's records (the attempt and the step) queued and committed by the
//!   checkpoint's writer, durable (WAL, `synchronous=NORMAL`), beside SQLite inserting the same
//!   two rows into the same tables with one prepared statement each in one transaction.
//!
//! `cargo bench --bench inprocess` (figures in BENCHMARKS.md);
//! `cargo bench --bench inprocess -- render` runs one group.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mambu_migrate::checkpoint::{CallRecord, Checkpoint, Record, StepRecord, StepStatus};
use mambu_migrate::fixtures::{GenerateOptions, generate};
use mambu_migrate::mambu::CallOutcome;
use mambu_migrate::plan::check::check;
use mambu_migrate::plan::compiled::Compiled;
use mambu_migrate::plan::load::load;
use mambu_migrate::plan::template::Memo;
use mambu_migrate::source::scan::{ScanSpec, Scanned, scan};
use mambu_migrate::source::{GroupOptions, Sources, Unit, group};
use serde_json::{Value, json};

/// The binary's allocator (src/main.rs), so the figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sample plan over fixtures/sample, its units, and every call instance of them.
fn sample() -> (Compiled, Vec<Unit>) {
    let loaded = load(&root().join("plans/sample.yaml")).expect("the sample plan loads");
    let plan = check(&loaded, &[]).expect("the sample plan checks");
    let sources = Sources::new(plan.sources.clone(), &plan.unit).expect("the sample's sources");
    let units: Vec<Unit> = group(&sources, &GroupOptions::default()).collect();
    (Compiled::new(&plan), units)
}

fn render(c: &mut Criterion) {
    let (compiled, units) = sample();
    let outputs = compiled.placeholder_outputs();
    let calls: usize = units.iter().map(|u| compiled.expand(u).len()).sum();
    let mut g = c.benchmark_group("render");
    g.throughput(Throughput::Elements(calls as u64));
    g.bench_function("every call of the sample (run)", |b| {
        b.iter(|| {
            for unit in &units {
                for planned in compiled.expand(unit) {
                    black_box(compiled.render(unit, &planned, &outputs, None).ok());
                }
            }
        })
    });
    g.bench_function("every call of the sample (validate's check)", |b| {
        b.iter_batched_ref(
            Memo::new,
            |memo| {
                for unit in &units {
                    for planned in compiled.expand(unit) {
                        black_box(compiled.check(unit, &planned, &outputs, None, memo).ok());
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    let bodies: Vec<Value> = units
        .iter()
        .flat_map(|unit| {
            compiled
                .expand(unit)
                .into_iter()
                .filter_map(|planned| compiled.render(unit, &planned, &outputs, None).ok())
                .filter_map(|call| call.body)
                .collect::<Vec<_>>()
        })
        .collect();
    g.throughput(Throughput::Elements(bodies.len() as u64));
    g.bench_function("floor: serde_json::to_vec of every body", |b| {
        b.iter(|| {
            for body in &bodies {
                black_box(serde_json::to_vec(body).expect("JSON"));
            }
        })
    });
    g.finish();
}

/// A generated transactions file (10,000 clients: about 10 MB, 175 k rows, more than the
/// cache holds), made once.
fn transactions(dir: &Path) -> PathBuf {
    generate(&GenerateOptions {
        clients: 10_000,
        seed: 7,
        out: dir.to_path_buf(),
    })
    .expect("fixtures generate");
    dir.join("transactions.csv")
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = transactions(dir.path());
    let bytes = std::fs::read(&path).expect("the generated file");
    let header = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let width = header.split(|&b| b == b',').count();
    let mut g = c.benchmark_group("read transactions.csv");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("floor: memchr line breaks (wc -l)", |b| {
        b.iter(|| memchr::memchr_iter(b'\n', black_box(&bytes)).count())
    });
    g.bench_function("floor: csv crate, every record", |b| {
        b.iter(|| {
            let mut reader = csv::ReaderBuilder::new().from_reader(black_box(&bytes[..]));
            let mut record = csv::ByteRecord::new();
            let mut n = 0u64;
            while reader.read_byte_record(&mut record).expect("CSV") {
                n += 1;
            }
            n
        })
    });
    // The cells estimate wants of transactions: the key, the parent and the kind.
    let spec = ScanSpec {
        threads: 1,
        ..ScanSpec::new(b',', width, vec![0, 1, 2])
    };
    g.bench_function("field scan, one thread (estimate)", |b| {
        b.iter(|| {
            let progress = AtomicU64::new(0);
            let (states, totals) = scan(
                &path,
                &spec,
                &progress,
                || 0u64,
                |n: &mut u64, row| {
                    if let Scanned::Row { cells, .. } = row {
                        *n += cells[2].len() as u64;
                    }
                },
            )
            .expect("scan");
            (states, totals)
        })
    });
    g.finish();
}

fn call_records(i: u64) -> [Record; 2] {
    let unit = format!("CL-{i:07}");
    [
        Record::Call(Box::new(CallRecord {
            unit: unit.clone(),
            step_id: "repayment".into(),
            method: "POST",
            endpoint: "/loans/{loan}/repayment-transactions".into(),
            status: Some(201),
            outcome: CallOutcome::Ok,
            latency_ms: 42.0,
        })),
        Record::Step(Box::new(StepRecord {
            unit,
            instance: format!("transactions/TX-{i}#repayment"),
            step_id: "repayment".into(),
            action: "post_repayment".into(),
            status: StepStatus::Done,
            idempotency_key: Some(format!("k-{i:032x}")),
            http_status: Some(201),
            outputs: json!({ "encodedKey": format!("8a19c0de{i:024x}") }),
            attempts: 1,
            latency_ms: 42.0,
        })),
    ]
}

const CALLS_PER_BATCH: u64 = 1_000;

fn checkpoint(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut g = c.benchmark_group("checkpoint");
    g.throughput(Throughput::Elements(CALLS_PER_BATCH));
    let cp = Checkpoint::open(&dir.path().join("checkpoint.db")).expect("a checkpoint");
    let mut next = 0u64;
    g.bench_function("1,000 calls recorded and committed", |b| {
        b.iter(|| {
            for _ in 0..CALLS_PER_BATCH {
                next += 1;
                for record in call_records(next) {
                    cp.record(record);
                }
            }
            cp.flush().expect("committed");
        })
    });
    cp.close().expect("closed");

    let conn = rusqlite::Connection::open(dir.path().join("floor.db")).expect("SQLite");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE steps (
             unit TEXT NOT NULL, instance TEXT NOT NULL, step_id TEXT NOT NULL,
             action TEXT NOT NULL, status TEXT NOT NULL, idempotency_key TEXT,
             http_status INTEGER, outputs TEXT, attempts INTEGER NOT NULL, latency_ms REAL,
             finished_at REAL NOT NULL, PRIMARY KEY (unit, instance));
         CREATE TABLE calls (
             id INTEGER PRIMARY KEY, unit TEXT NOT NULL, step_id TEXT NOT NULL,
             method TEXT NOT NULL, endpoint TEXT NOT NULL, status INTEGER,
             outcome TEXT NOT NULL, latency_ms REAL NOT NULL, at REAL NOT NULL);",
    )
    .expect("the floor's tables");
    let mut n = 0u64;
    g.bench_function(
        "floor: SQLite, the same two rows a call, one transaction",
        |b| {
            b.iter(|| {
                let tx = conn.unchecked_transaction().expect("a transaction");
                {
                    let mut call = tx
                        .prepare_cached(concat!(
                            "INSERT INTO calls (unit, step_id, method, endpoint, status, ",
                            "outcome, latency_ms, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                        ))
                        .expect("prepared");
                    let mut step = tx
                        .prepare_cached(
                            "INSERT INTO steps VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                        )
                        .expect("prepared");
                    for _ in 0..CALLS_PER_BATCH {
                        n += 1;
                        let unit = format!("CL-{n:07}");
                        call.execute(rusqlite::params![
                            unit,
                            "repayment",
                            "POST",
                            "/loans/{loan}/repayment-transactions",
                            201,
                            CallOutcome::Ok.as_str(),
                            42.0,
                            0.0
                        ])
                        .expect("inserted");
                        step.execute(rusqlite::params![
                            unit,
                            format!("transactions/TX-{n}#repayment"),
                            "repayment",
                            "post_repayment",
                            StepStatus::Done.as_str(),
                            format!("k-{n:032x}"),
                            201,
                            json!({ "encodedKey": format!("8a19c0de{n:024x}") }).to_string(),
                            1,
                            42.0,
                            0.0
                        ])
                        .expect("inserted");
                    }
                }
                tx.commit().expect("committed");
            })
        },
    );
    g.finish();
}

criterion_group!(benches, render, read, checkpoint);
criterion_main!(benches);
