//! Bad input never panics: the plan loader and the CSV reader and grouping, fed arbitrary and
//! mutated input for a bounded number of cases (proptest; raise PROPTEST_CASES to search longer).

use std::path::Path;

use mambu_migrate::plan::load::load_str;
use mambu_migrate::source::scan::{ScanSpec, Scanned, scan};
use mambu_migrate::source::{GroupOptions, RowReader, SourceDef, Sources, group};
use proptest::prelude::*;

const PLAN: &str = include_str!("../plans/sample.yaml");
const CLIENTS: &str =
    "client_id,first_name,last_name\nC1,Ada,\"Love, lace\"\nC2,Zoë,\"O\"\"Brien\"\n";
const LOANS: &str = "loan_id,client_id,amount\nL1,C1,10.50\nL2,C2,7\nL3,C9,1\n";

/// A plan with a span of its text replaced by arbitrary text.
fn mutated(text: &str, at: usize, len: usize, insert: &str) -> String {
    let mut cut_at = at % (text.len() + 1);
    while !text.is_char_boundary(cut_at) {
        cut_at -= 1;
    }
    let mut end = (cut_at + len).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    format!("{}{insert}{}", &text[..cut_at], &text[end..])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200), ..ProptestConfig::default() })]

    #[test]
    fn the_plan_loader_never_panics_on_arbitrary_text(text in ".{0,400}") {
        let _ = load_str(Path::new("fuzz.yaml"), &text);
    }

    #[test]
    fn the_plan_loader_never_panics_on_a_mutated_plan(at in 0usize..6000, len in 0usize..40, insert in "[ -~\\n\\t:{}\\[\\]\"'-]{0,30}") {
        let text = mutated(PLAN, at, len, &insert);
        if let Ok(loaded) = load_str(Path::new("fuzz.yaml"), &text) {
            let _ = mambu_migrate::plan::check::check_all(&loaded, &[]);
        }
    }

    #[test]
    fn the_csv_reader_and_grouping_never_panic_on_mutated_files(at in 0usize..120, len in 0usize..10, insert in proptest::collection::vec(any::<u8>(), 0..12), root_at in 0usize..80) {
        let dir = tempfile::tempdir().unwrap();
        let mut loans = LOANS.as_bytes().to_vec();
        let at = at % (loans.len() + 1);
        let end = (at + len).min(loans.len());
        loans.splice(at..end, insert.iter().copied());
        let mut clients = CLIENTS.as_bytes().to_vec();
        let root_at = root_at % (clients.len() + 1);
        clients.splice(root_at..root_at, insert.iter().copied());
        std::fs::write(dir.path().join("clients.csv"), &clients).unwrap();
        std::fs::write(dir.path().join("loans.csv"), &loans).unwrap();
        let defs = vec![
            SourceDef::new("clients", dir.path().join("clients.csv"), "client_id"),
            SourceDef::new("loans", dir.path().join("loans.csv"), "loan_id").with_parent("clients", "client_id"),
        ];
        if let Ok(reader) = RowReader::open(&defs[1]) {
            for row in reader {
                let _ = row;
            }
        }
        if let Ok(sources) = Sources::new(defs, "clients") {
            let mut grouping = group(&sources, &GroupOptions { chunk_rows: 2, ..GroupOptions::default() });
            for unit in grouping.by_ref() {
                let _ = unit.row_count();
            }
            let _ = grouping.finish();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300), ..ProptestConfig::default() })]

    /// The field scan `plan estimate` counts with reads a mutated file record for record as the
    /// reader a run uses: the same rows with the same cells, the same rows left out.
    #[test]
    fn the_field_scan_reads_what_the_reader_reads(
        edits in proptest::collection::vec((0usize..400, 0usize..6, proptest::collection::vec(prop_oneof![Just(b'"'), Just(b','), Just(b'\n'), Just(b'\r'), Just(0xC3u8), Just(0xA9u8), any::<u8>()], 0..6)), 0..6),
        threads in 1usize..4,
    ) {
        let mut text = b"loan_id,client_id,amount\n".to_vec();
        for i in 0..40 {
            text.extend_from_slice(format!("L{i},\"C{}, x\",{i}.50\r\n", i % 7).as_bytes());
            text.extend_from_slice(format!("M{i},C{},7\n", i % 5).as_bytes());
        }
        let header = 25;
        for (at, len, insert) in edits {
            let at = header + at % (text.len() - header + 1);
            let end = (at + len).min(text.len());
            text.splice(at..end, insert);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loans.csv");
        std::fs::write(&path, &text).unwrap();
        let expected: Vec<Option<(String, String)>> = RowReader::open(&SourceDef::new("loans", &path, "loan_id"))
            .unwrap()
            .map(|r| r.ok().map(|row| (row.get(0).unwrap().to_owned(), row.get(1).unwrap().to_owned())))
            .collect();
        let spec = ScanSpec { threads, window: 128 << 10, ..ScanSpec::new(b',', 3, vec![0, 1]) };
        let progress = std::sync::atomic::AtomicU64::new(0);
        let (chunks, totals) = scan(&path, &spec, &progress, Vec::new, |v: &mut Vec<Option<(String, String)>>, s| {
            v.push(match s {
                Scanned::Row { cells, .. } => Some((
                    String::from_utf8(cells[0].to_vec()).unwrap(),
                    String::from_utf8(cells[1].to_vec()).unwrap(),
                )),
                Scanned::Problem { .. } => None,
            })
        }).unwrap();
        let scanned: Vec<_> = chunks.into_iter().flatten().collect();
        prop_assert_eq!(totals.records as usize, scanned.len());
        prop_assert_eq!(scanned, expected);
    }
}

/// Found by the fuzzer: `\xC2,\x80` is valid UTF-8 joined, not cell by cell.
#[test]
fn a_character_split_by_a_delimiter_is_invalid_utf8_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loans.csv");
    std::fs::write(
        &path,
        [
            b"loan_id,amount\n".as_slice(),
            &[0xC2, b',', 0x80, b'\n'],
            b"L2,7\n",
        ]
        .concat(),
    )
    .unwrap();
    let reader = RowReader::open(&SourceDef::new("loans", &path, "loan_id")).unwrap();
    let rows: Vec<_> = reader.collect();
    assert_eq!(rows.len(), 2);
    let problem = rows[0].as_ref().unwrap_err();
    assert_eq!(problem.kind.code(), "invalid_utf8");
    assert_eq!(problem.line, Some(2));
    assert_eq!(rows[1].as_ref().unwrap().get(0), Some("L2"));
}
