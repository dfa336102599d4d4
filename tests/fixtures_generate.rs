//! `mambu-migrate fixtures generate`, run as a user runs it: the real binary, a scratch directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use rust_decimal::Decimal;

const FILES: [(&str, &str); 13] = [
    (
        "clients.csv",
        "client_id,first_name,last_name,birth_date,gender,email,phone,national_id,branch_id,address,city,country,joined_on,employment_status",
    ),
    (
        "deposits.csv",
        "deposit_id,client_id,product_id,name,opened_on",
    ),
    (
        "loans.csv",
        "loan_id,client_id,product_id,amount,interest_rate,installments,disbursed_on,first_repayment_on,settlement_deposit_id,custom_schedule",
    ),
    (
        "schedules.csv",
        "schedule_id,loan_id,installment_number,due_date,principal_due,interest_due",
    ),
    (
        "transactions.csv",
        "txn_id,loan_id,kind,amount,value_date,installment_number,notes",
    ),
    (
        "deposit_transactions.csv",
        "txn_id,deposit_id,kind,amount,value_date,notes",
    ),
    ("deposit_balances.csv", "deposit_id,balance,as_of"),
    (
        "tranches.csv",
        "tranche_id,loan_id,tranche_number,amount,disbursed_on",
    ),
    (
        "loan_closures.csv",
        "loan_id,final_state,closed_on,payoff_amount,notes",
    ),
    (
        "securities.csv",
        "security_id,loan_id,kind,deposit_id,asset_name,amount",
    ),
    ("groups.csv", "group_id,name,branch_id,formed_on"),
    (
        "group_members.csv",
        "client_id,first_name,last_name,birth_date,gender,email,phone,national_id,branch_id,address,city,country,joined_on,employment_status,group_id,role",
    ),
    (
        "group_loans.csv",
        "loan_id,group_id,product_id,amount,interest_rate,installments,disbursed_on,first_repayment_on",
    ),
];

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample")
}

/// Runs `fixtures generate` with `args` and returns its stdout.
fn generate(args: &[&str]) -> String {
    let output = Command::cargo_bin("mambu-migrate")
        .unwrap()
        .args(["fixtures", "generate"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fixtures generate {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name))
        .unwrap_or_else(|err| panic!("{}: {err}", dir.join(name).display()))
}

#[test]
fn writes_every_file_and_summarises_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set");
    let summary = generate(&[
        "--clients",
        "40",
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(summary.starts_with("wrote 13 files to "), "{summary}");
    assert!(summary.contains("clients 40, seed 5"), "{summary}");

    for (name, header) in FILES {
        let bytes = read(&out, name);
        let text = String::from_utf8(bytes.clone()).expect("UTF-8");
        assert!(text.starts_with(&format!("{header}\n")), "{name} header");
        assert!(!text.contains('\r') && !text.starts_with('\u{feff}'));
        let mut rows = 0;
        for record in csv::Reader::from_reader(bytes.as_slice()).records() {
            record.expect("well-formed CSV");
            rows += 1;
        }
        if name == "clients.csv" {
            assert_eq!(rows, 40);
        }
        let line = summary
            .lines()
            .find(|line| line.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from the summary:\n{summary}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[1..3], [rows.to_string().as_str(), "rows"], "{line}");
        assert_eq!(words[3], bytes.len().to_string(), "{line}");
    }

    // The same seed again gives the same bytes; another seed other data.
    let again = dir.path().join("again");
    generate(&[
        "--clients",
        "40",
        "--seed",
        "5",
        "--out",
        again.to_str().unwrap(),
    ]);
    let other = dir.path().join("other");
    generate(&[
        "--clients",
        "40",
        "--seed",
        "6",
        "--out",
        other.to_str().unwrap(),
    ]);
    for (name, _) in FILES {
        assert!(
            read(&out, name) == read(&again, name),
            "{name} differs for the same seed"
        );
    }
    assert_ne!(read(&out, "clients.csv"), read(&other, "clients.csv"));
}

/// The command in fixtures/sample/README.md reproduces the committed files byte for byte.
#[test]
fn the_documented_command_reproduces_the_sample() {
    let readme = std::fs::read_to_string(sample_dir().join("README.md")).unwrap();
    let command = readme
        .lines()
        .find(|line| line.starts_with("cargo run --release -- fixtures generate "))
        .expect("README.md gives the command");
    let args: Vec<&str> = command
        .trim_start_matches("cargo run --release -- fixtures generate ")
        .split_whitespace()
        .collect();
    let out_at = args.iter().position(|arg| *arg == "--out").expect("--out");
    assert_eq!(args[out_at + 1], "fixtures/sample");

    let dir = tempfile::tempdir().unwrap();
    let mut args = args.clone();
    let out = dir.path().to_str().unwrap().to_owned();
    args[out_at + 1] = &out;
    generate(&args);
    for (name, _) in FILES {
        let committed = read(&sample_dir(), name);
        let regenerated = read(dir.path(), name);
        assert!(
            committed == regenerated,
            "fixtures/sample/{name} is not what `{command}` writes: regenerate it"
        );
    }
}

/// What the sample promises its readers: the awkward cases are in it.
#[test]
fn the_sample_holds_the_awkward_cases() {
    let column = |name: &str, column: &str| -> Vec<String> {
        let mut reader = csv::Reader::from_path(sample_dir().join(name)).unwrap();
        let at = reader
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == column)
            .unwrap();
        reader
            .records()
            .map(|r| r.unwrap()[at].to_owned())
            .collect()
    };
    let clients = column("clients.csv", "client_id");
    let loans = column("loans.csv", "loan_id");
    let txns = column("transactions.csv", "kind");
    assert!(clients.len() >= 200 && loans.len() >= 300 && txns.len() >= 3000);
    assert!(txns.iter().any(|kind| kind == "FEE"));
    assert!(
        column("loans.csv", "settlement_deposit_id")
            .iter()
            .any(|id| !id.is_empty())
    );
    assert!(
        column("loans.csv", "custom_schedule")
            .iter()
            .any(|flag| flag == "Y")
    );
    assert!(
        column("loans.csv", "amount")
            .iter()
            .any(|a| !a.ends_with(".00"))
    );

    let last_names = column("clients.csv", "last_name");
    let first_names = column("clients.csv", "first_name");
    let names: Vec<String> = first_names.iter().chain(&last_names).cloned().collect();
    assert!(last_names.iter().any(|n| n == "O'Brien"));
    assert!(names.iter().any(|n| n.contains(',')), "a name with a comma");
    assert!(
        names.iter().any(|n| n.contains('"')),
        "a name with a double quote"
    );
    assert!(
        names
            .iter()
            .any(|n| n.chars().any(|c| "ëéçãłşøõ".contains(c))),
        "accents"
    );
    for (script, range) in [
        ("Han", '\u{4e00}'..='\u{9fff}'),
        ("Cyrillic", '\u{0400}'..='\u{04ff}'),
        ("Arabic", '\u{0600}'..='\u{06ff}'),
        ("Greek", '\u{0370}'..='\u{03ff}'),
    ] {
        assert!(
            names.iter().any(|n| n.chars().any(|c| range.contains(&c))),
            "{script} names"
        );
    }
    let addresses = column("clients.csv", "address");
    assert!(addresses.iter().any(|a| a.contains(',')));
    assert!(addresses.iter().any(|a| a.contains('"')));

    let mut per_loan = std::collections::HashMap::<String, usize>::new();
    for loan in column("transactions.csv", "loan_id") {
        *per_loan.entry(loan).or_default() += 1;
    }
    assert!(per_loan.values().any(|&n| n >= 200), "a long-tail loan");
}

/// A committed file's rows, cells by column name.
fn sample_rows(name: &str) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(sample_dir().join(name)).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

fn money(text: &str) -> Decimal {
    text.parse().unwrap_or_else(|_| panic!("not money: {text}"))
}

/// The rest of the book in the sample (issue 18): the savings balances are their histories'
/// sums, the tranches sum to their loans' amounts, the payoffs leave nothing owed, and the
/// shares are a bank's.
#[test]
fn the_sample_holds_the_rest_of_the_book() {
    let deposits = sample_rows("deposits.csv");
    let loans = sample_rows("loans.csv");
    let product: HashMap<&str, &str> = deposits
        .iter()
        .map(|d| (d["deposit_id"].as_str(), d["product_id"].as_str()))
        .collect();

    let mut sums: HashMap<String, Decimal> = HashMap::new();
    let history = sample_rows("deposit_transactions.csv");
    for t in &history {
        let sign = if t["kind"] == "WITHDRAWAL" { -1 } else { 1 };
        *sums.entry(t["deposit_id"].clone()).or_default() +=
            money(&t["amount"]) * Decimal::from(sign);
        assert!(t["value_date"].as_str() <= "2026-10-31", "{t:?}");
    }
    let balances = sample_rows("deposit_balances.csv");
    assert_eq!(balances.len(), deposits.len());
    for b in &balances {
        assert_eq!(b["as_of"], "2026-10-31");
        let balance = money(&b["balance"]);
        match product[b["deposit_id"].as_str()] {
            "SAV-STD" => assert_eq!(balance, sums[&b["deposit_id"]], "{b:?}"),
            _ => assert!(
                balance >= Decimal::ZERO && !sums.contains_key(&b["deposit_id"]),
                "{b:?}"
            ),
        }
    }
    assert!(history.len() > 1000 && history.iter().any(|t| t["kind"] == "WITHDRAWAL"));

    let mut tranched: HashMap<String, Decimal> = HashMap::new();
    for t in sample_rows("tranches.csv") {
        *tranched.entry(t["loan_id"].clone()).or_default() += money(&t["amount"]);
    }
    let amount: HashMap<&str, Decimal> = loans
        .iter()
        .map(|l| (l["loan_id"].as_str(), money(&l["amount"])))
        .collect();
    for l in loans.iter().filter(|l| l["product_id"] == "SME-TRANCHE") {
        assert_eq!(
            tranched.remove(&l["loan_id"]),
            Some(amount[l["loan_id"].as_str()])
        );
    }
    assert!(tranched.is_empty(), "tranches of SME-TRANCHE loans only");

    let closures = sample_rows("loan_closures.csv");
    let count = |state: &str| {
        closures
            .iter()
            .filter(|c| c["final_state"] == state)
            .count()
    };
    for c in closures.iter().filter(|c| c["final_state"] == "CLOSED") {
        assert!(money(&c["payoff_amount"]) > Decimal::ZERO, "{c:?}");
    }
    let securities = sample_rows("securities.csv");
    let sme = loans
        .iter()
        .filter(|l| l["product_id"].starts_with("SME-"))
        .count();
    let tranched_loans = loans
        .iter()
        .filter(|l| l["product_id"] == "SME-TRANCHE")
        .count();
    let share = |part: usize, whole: usize| part * 100 / whole;
    assert!(
        (15..=35).contains(&share(tranched_loans, sme)),
        "SME loans tranched"
    );
    assert!(
        (3..=8).contains(&share(count("CLOSED"), loans.len())),
        "paid off"
    );
    assert!(
        (2..=7).contains(&share(count("WRITTEN_OFF"), loans.len())),
        "written off"
    );
    assert!(
        (5..=20).contains(&share(securities.len(), loans.len())),
        "secured"
    );
    assert!(securities.iter().any(|s| s["kind"] == "GUARANTEE"));
    assert!(securities.iter().any(|s| s["kind"] == "ASSET"));
}

#[test]
fn an_out_path_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, "x").unwrap();
    Command::cargo_bin("mambu-migrate")
        .unwrap()
        .args(["fixtures", "generate", "--clients", "3", "--out"])
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("generating fixtures into"));
}
