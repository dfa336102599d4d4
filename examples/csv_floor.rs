//! A floor for reading CSV extracts: every record of every file read by the `csv` crate (the
//! parser most Rust tools use), one thread per file, and nothing else done with it. What a tool
//! that reads the records at all cannot go under without its own parser; `benches/extract.sh`
//! prints it beside `wc -l` and `plan estimate`.
//!
//! `cargo run --release --example csv_floor -- FILE...` prints the records read and the seconds.

use std::time::Instant;

fn records(path: &str) -> Result<u64, csv::Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)?;
    let mut record = csv::ByteRecord::new();
    let mut n = 0;
    while reader.read_byte_record(&mut record)? {
        n += 1;
    }
    Ok(n)
}

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: csv_floor FILE...");
        std::process::exit(2);
    }
    let started = Instant::now();
    let counts: Vec<Result<u64, csv::Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|f| scope.spawn(move || records(f)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut total = 0;
    for (file, count) in files.iter().zip(counts) {
        match count {
            Ok(n) => total += n,
            Err(e) => {
                eprintln!("{file}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("{total} records in {seconds:.3} s");
}
