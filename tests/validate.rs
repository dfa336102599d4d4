//! `plan validate` as a consultant runs it: the real binary on the sample plan (clean) and on
//! broken plans and data (every problem, located), with the report's wording under snapshot.

mod common;

use assert_cmd::Command;
use serde_json::Value;

fn validate(args: &[&str]) -> (i32, String) {
    let output = Command::cargo_bin("mambu-migrate")
        .unwrap()
        .env(common::TENANT_RECORDS, common::own_records())
        .args(["plan", "validate"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    (output.status.code().unwrap_or(-1), stdout)
}

fn assert_reports(report: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            report.lines().any(|l| l.starts_with(line)),
            "missing `{line}` in:\n{report}"
        );
    }
}

#[test]
fn the_sample_plan_validates_clean() {
    let (code, report) = validate(&["plans/sample.yaml"]);
    assert_eq!(code, 0, "{report}");
    insta::assert_snapshot!("sample", report);
    let (code, report) = validate(&["plans/sample.yaml", "--target", "sandbox"]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("0 against the tenant"));
}

#[test]
fn every_data_problem_is_reported_with_its_place() {
    let (code, report) = validate(&["fixtures/invalid/plan.yaml", "--target", "sandbox"]);
    assert_eq!(code, 2);
    assert_reports(
        &report,
        &[
            "error[data] fixtures/invalid/clients.csv:4: clients: duplicate key \"CL-2\" (first at line 3)",
            "error[data] fixtures/invalid/clients.csv:5, column last_name: a required value is empty",
            "error[data] fixtures/invalid/clients.csv:6: clients: column \"birth_date\": not a date",
            "error[data] fixtures/invalid/loans.csv:3, column amount: the amount is zero or negative",
            "error[data] fixtures/invalid/loans.csv:4: loans: column \"installments\": not an integer",
            "error[data] fixtures/invalid/loans.csv:5: loans: no clients row with key \"CL-9\"",
            "error[data] fixtures/invalid/transactions.csv:3: transactions: column \"amount\": not a decimal number",
            "error[data] fixtures/invalid/transactions.csv:4, column amount: the amount is zero or negative",
            "error[data] fixtures/invalid/transactions.csv:5: transactions: no loans row with key \"LN-7\"",
            "error[tenant] fixtures/invalid/clients.csv:6, column branch_id: `BR-XXX` is not in the tenant's branches",
            "error[tenant] fixtures/invalid/loans.csv:6, column product_id: `PL-GOLD` is not in the tenant's loan_products",
            "error[tenant] fixtures/invalid/loans.csv:7: loanAmount 9000.00 is outside product MICRO's limits (100 to 5000)",
        ],
    );
    assert!(
        !report.contains("31/02/1918"),
        "a personal column's value is never shown"
    );
    insta::assert_snapshot!("invalid_data", report);

    let (code, report) = validate(&["fixtures/invalid/plan.yaml"]);
    assert_eq!(code, 2);
    assert!(
        report.contains("0 against the tenant") && !report.contains("error[tenant]"),
        "without --target the tenant is not read:\n{report}"
    );
}

#[test]
fn missing_files_and_columns_are_reported() {
    let (code, report) = validate(&["fixtures/invalid/missing.yaml"]);
    assert_eq!(code, 2);
    assert_reports(
        &report,
        &[
            "error[data] fixtures/invalid/deposits.csv: deposits: cannot open the file",
            "error[data] fixtures/invalid/loans.csv:1: loans: order_by column \"disbursed_date\" is not in the header (did you mean \"disbursed_on\"?)",
        ],
    );
    insta::assert_snapshot!("missing_files", report);
}

#[test]
fn every_plan_problem_is_reported_with_line_and_column() {
    let (code, report) = validate(&["fixtures/invalid/broken-plan.yaml"]);
    assert_eq!(code, 2);
    assert_reports(
        &report,
        &[
            "error[plan] fixtures/invalid/broken-plan.yaml:4:11: must be above 0 (at limits.requests_per_second)",
            "error[plan] fixtures/invalid/broken-plan.yaml:4:35: unknown key `concurency` (at limits.concurency)",
            "error[plan] fixtures/invalid/broken-plan.yaml:12:5: unknown action `create_clients` (at steps[0].action)",
            "error[plan] fixtures/invalid/broken-plan.yaml:14:5: for_each `transactions` is not a child of `clients`",
            "error[plan] fixtures/invalid/broken-plan.yaml:23:9: create_loan needs `scheduleSettings.gracePeriod` in its body",
            "error[plan] fixtures/invalid/broken-plan.yaml:24:11: `steps.clinet` is not a step before this one",
            "error[plan] fixtures/invalid/broken-plan.yaml:26:11: `loans.product`: loans has no column `product`",
            "error[plan] fixtures/invalid/broken-plan.yaml:29:9: link_settlement_account needs a deposit",
        ],
    );
    assert!(
        report.contains("help: did you mean `concurrency`?")
            && report.contains("help: did you mean `create_client`?")
            && report.contains("help: did you mean `product_id`?")
    );
    insta::assert_snapshot!("broken_plan", report);
}

#[test]
fn yaml_syntax_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: x\nsources:\n  clients: { file: c.csv, key: id\nunit: clients\n",
    )
    .unwrap();
    let (code, report) = validate(&[plan.to_str().unwrap()]);
    assert_eq!(code, 2);
    let first = report
        .lines()
        .next()
        .unwrap()
        .replace(plan.to_str().unwrap(), "plan.yaml");
    assert!(
        first.starts_with("error[plan] plan.yaml:5:") && first.contains("not valid YAML"),
        "{report}"
    );
}

#[test]
fn a_source_override_validates_another_extract_with_the_same_plan() {
    let (code, report) = validate(&[
        "plans/sample.yaml",
        "--source",
        "transactions=fixtures/invalid/transactions.csv",
    ]);
    assert_eq!(code, 2);
    assert!(
        report
            .lines()
            .any(|l| l.trim_start().starts_with("transactions")
                && l.ends_with(" 4  fixtures/invalid/transactions.csv")),
        "{report}"
    );
    assert!(
        report.contains("no loans row with key \"LN-1\""),
        "{report}"
    );
    let (code, report) = validate(&["plans/sample.yaml", "--source", "payments=x.csv"]);
    assert_eq!(code, 2);
    assert!(
        report.contains("--source names `payments`, which the plan does not define"),
        "{report}"
    );
}

#[test]
fn the_json_report_carries_every_finding() {
    let (code, report) = validate(&["fixtures/invalid/plan.yaml", "--format", "json"]);
    assert_eq!(code, 2);
    let json: Value = serde_json::from_str(&report).unwrap();
    let findings = json["findings"].as_array().unwrap();
    let required = findings
        .iter()
        .find(|f| f["message"] == "a required value is empty")
        .unwrap();
    assert_eq!(required["file"], "fixtures/invalid/clients.csv");
    assert_eq!(required["line"], 5);
    assert_eq!(required["field"], "last_name");
    assert_eq!(json["units"], 4);
}

#[test]
fn the_plan_schema_describes_every_key() {
    let output = Command::cargo_bin("mambu-migrate")
        .unwrap()
        .args(["plan", "schema"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let schema: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    for key in [
        "version",
        "name",
        "target",
        "limits",
        "error_budget",
        "lookups",
        "sources",
        "unit",
        "steps",
    ] {
        assert!(
            schema["properties"].get(key).is_some(),
            "{key} missing from the schema"
        );
    }
    let step = &schema["$defs"]["StepFile"]["properties"];
    for key in [
        "id",
        "action",
        "for_each",
        "when",
        "body",
        "save",
        "installments",
    ] {
        assert!(
            step.get(key).is_some(),
            "StepFile.{key} missing from the schema"
        );
    }
}

#[test]
fn the_reference_plan_documents_a_valid_plan() {
    let (code, report) = validate(&["plans/reference.yaml"]);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn a_tenant_that_cannot_be_read_is_a_problem_never_a_skipped_check() {
    // Every answer spoiled: the loan products cannot be read, so the loans' limits cannot be
    // checked; validate says so (and exits 2) instead of passing them.
    let sandbox = common::Sandbox::start(&["--malformed-rate", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let plan = common::sample_plan_with(
        dir.path(),
        &[(
            "retry: { max_attempts: 8, initial_backoff_ms: 250, max_backoff_ms: 30000 }",
            "retry: { max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 20 }",
        )],
    );
    let output = Command::cargo_bin("mambu-migrate")
        .unwrap()
        .args(["plan", "validate"])
        .arg(&plan)
        .arg("--target")
        .arg(format!("{}/api", sandbox.origin))
        .env("MAMBU_API_KEY", common::API_KEY)
        .output()
        .unwrap();
    let report = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(2), "{report}");
    assert!(
        report.contains("GET /loanproducts")
            && report.contains(
                "the loans' amounts, installments and interest rates were not checked against their products"
            ),
        "{report}"
    );
}

#[test]
fn a_time_the_tenants_clocks_skip_is_reported_where_it_is() {
    // A Lisbon tenant: the extract's 01:30 on the last Sunday of March does not exist there.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    copy_sample_but_transactions(&data);
    let transactions = std::fs::read_to_string("fixtures/sample/transactions.csv")
        .unwrap()
        .replacen(
            "TX-00000001,LN-000001,REPAYMENT,553.00,2025-01-31,",
            "TX-00000001,LN-000001,REPAYMENT,553.00,2025-03-30 01:30:00,",
            1,
        );
    std::fs::write(data.join("transactions.csv"), transactions).unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        std::fs::read_to_string("plans/sample.yaml")
            .unwrap()
            .replace("../fixtures/sample/", "data/")
            .replace("timezone: \"+00:00\"", "timezone: Europe/Lisbon")
            // The extract gives times of day for its transactions.
            .replace(
                "value_date: { type: date, required: true }",
                "value_date: { type: text, required: true }",
            ),
    )
    .unwrap();
    let (code, report) = validate(&[plan.to_str().unwrap()]);
    assert_eq!(code, 2, "{report}");
    let line = report
        .lines()
        .find(|l| l.contains("does not exist in Europe/Lisbon"))
        .unwrap_or_else(|| panic!("the gap is reported:\n{report}"));
    assert!(
        line.contains("transactions.csv:2") && line.contains("2025-03-30 01:30"),
        "located: {line}"
    );
    // Every other date is fine in Lisbon: winter +00:00, summer +01:00.
    assert_eq!(
        report
            .lines()
            .filter(|l| l.contains("does not exist"))
            .count(),
        1,
        "{report}"
    );
}

#[test]
fn validate_compares_the_plans_time_zone_with_the_tenants() {
    let sandbox = common::Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let fixed = common::sample_plan_with(
        dir.path(),
        &[("timezone: Europe/Lisbon", "timezone: \"+00:00\"")],
    );
    let (code, report) = validate_against(&fixed, &sandbox);
    assert_eq!(code, 2, "{report}");
    assert!(
        report.contains("the plan's fixed offset +00:00 is not always the tenant's (Europe/Lisbon"),
        "{report}"
    );
    let (code, report) = validate_against(std::path::Path::new("plans/sample.yaml"), &sandbox);
    assert_eq!(code, 0, "{report}");
}

/// The sample's schedule step and its approval, in the sample's order (edit, then approve).
const SCHEDULE: &str = "      - id: schedule
        action: edit_schedule
        when: \"loans.custom_schedule == 'Y'\"
        installments:
          from: schedules
          dueDate: \"{{ schedules.due_date | datetime }}\"
          principal: \"{{ schedules.principal_due | decimal }}\"
          interest: \"{{ schedules.interest_due | decimal }}\"
";
const APPROVE: &str = "      - id: approve
        action: approve_loan
";

#[test]
fn a_schedule_edit_after_approving_a_dynamic_term_loan_is_reported_with_the_fix() {
    // The sample as it was: the schedule edited after `approve`. The tenant's MICRO product is
    // dynamic-term, whose schedule Mambu refuses to edit once approved.
    let (schedule, approve) = (SCHEDULE, APPROVE);
    let sample = std::fs::read_to_string("plans/sample.yaml").unwrap();
    assert!(
        sample.contains(&format!("{schedule}{approve}")),
        "the sample edits first"
    );
    let dir = tempfile::tempdir().unwrap();
    let plan = common::sample_plan_with(
        dir.path(),
        &[(
            &format!("{schedule}{approve}"),
            &format!("{approve}{schedule}"),
        )],
    );
    let (code, report) = validate(&[plan.to_str().unwrap(), "--target", "sandbox"]);
    assert_eq!(code, 2, "{report}");
    let found: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("whose schedule Mambu refuses to edit once the loan is APPROVED"))
        .collect();
    assert!(!found.is_empty(), "{report}");
    for line in &found {
        assert!(
            line.contains("loans.csv:"),
            "located at the loan's row: {line}"
        );
    }
    assert!(
        report.contains("move `schedule` above the approve_loan step"),
        "{report}"
    );
    // In the sample's order, nothing to say (the_sample_plan_validates_clean).
}

/// `plan validate PLAN --target URL` as the strict profile's users (`migration` calls,
/// `approver` approves).
fn validate_against(plan: &std::path::Path, sandbox: &common::Sandbox) -> (i32, String) {
    let output = common::binary()
        .args(["plan", "validate"])
        .arg(plan)
        .args(["--target", &format!("{}/api", sandbox.origin)])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
    )
}

/// The sample reading its data from `data` (relative to `dir`, or absolute) with each `(from,
/// to)` of `edits` applied.
fn strict_sample(dir: &std::path::Path, data: &str, edits: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string("plans/sample.yaml")
        .unwrap()
        .replace("../fixtures/sample/", data)
        .replace(
            "../fixtures/",
            &format!("{}/fixtures/", env!("CARGO_MANIFEST_DIR")),
        );
    for (from, to) in edits {
        assert!(
            text.contains(from),
            "plans/sample.yaml no longer has `{from}`"
        );
        text = text.replace(from, to);
    }
    let plan = dir.join("plan.yaml");
    std::fs::write(&plan, text).unwrap();
    plan
}

/// The sample as it was before the strict tenant: the schedule edited after `approve`,
/// amount-only fees, a fixed `+00:00`, no approving user.
fn old_sample(dir: &std::path::Path) -> std::path::PathBuf {
    let data = format!("{}/fixtures/sample/", env!("CARGO_MANIFEST_DIR"));
    let (edit_first, approve_first) = (
        format!("{SCHEDULE}{APPROVE}"),
        format!("{APPROVE}{SCHEDULE}"),
    );
    strict_sample(
        dir,
        &data,
        &[
            (edit_first.as_str(), approve_first.as_str()),
            (
                "              predefinedFeeKey: \"{{ lookups.loan_fees[loans.product_id]['LEGACY-FEE'] }}\"\n",
                "",
            ),
            ("timezone: Europe/Lisbon", "timezone: \"+00:00\""),
            ("  approver: approver\n", ""),
        ],
    )
}

/// Every file of fixtures/sample the sample plan reads, but transactions.csv, copied into
/// `data`.
fn copy_sample_but_transactions(data: &std::path::Path) {
    for file in [
        "clients",
        "deposits",
        "loans",
        "schedules",
        "deposit_transactions",
        "deposit_balances",
        "tranches",
        "loan_closures",
        "securities",
    ] {
        std::fs::copy(
            format!("fixtures/sample/{file}.csv"),
            data.join(format!("{file}.csv")),
        )
        .unwrap();
    }
}

/// fixtures/sample copied into `dir/data`, transactions.csv with `change(txn_id, column)`
/// applied to its cells.
fn sample_data_with(dir: &std::path::Path, change: &dyn Fn(&str, &str, &str) -> Option<String>) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    copy_sample_but_transactions(&data);
    let mut reader = csv::Reader::from_path("fixtures/sample/transactions.csv").unwrap();
    let headers = reader.headers().unwrap().clone();
    let mut out = csv::Writer::from_path(data.join("transactions.csv")).unwrap();
    out.write_record(&headers).unwrap();
    for record in reader.records() {
        let record = record.unwrap();
        let row: Vec<String> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| change(&record[0], h, v).unwrap_or_else(|| v.to_owned()))
            .collect();
        out.write_record(&row).unwrap();
    }
    out.flush().unwrap();
}

fn lines_with<'r>(report: &'r str, needle: &str) -> Vec<&'r str> {
    report.lines().filter(|l| l.contains(needle)).collect()
}

/// The sample in its old form against the strict tenant: every new check at work, located
/// (a snapshot); the sample as shipped has nothing to say.
#[test]
fn the_strict_tenant_refuses_the_old_samples_order_fees_zone_and_approvals_by_the_creator() {
    let sandbox = common::Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = validate_against(&old_sample(dir.path()), &sandbox);
    assert_eq!(code, 2, "{report}");
    let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
    let report = report
        .replace(&root, "")
        .replace(&dir.path().display().to_string(), "<dir>")
        .replace(&format!("{}/api", sandbox.origin), "<tenant>");
    // Every amount-only fee at its row, with the product's predefined fee as the fix; 50 listed.
    assert_reports(
        &report,
        &[
            "error[tenant] fixtures/sample/transactions.csv:3: step `fee` (apply_fee) on loans LN-000001, unit CL-000001: an amount-only fee, and product MICRO allows no arbitrary fee (ARBITRARY_FEE_NOT_ALLOWED)",
            "  help: send predefinedFeeKey of LEGACY-FEE (Migrated fee): its encodedKey 8a19c0de00000000000000000000f003",
        ],
    );
    let fees = common::rows("fixtures/sample/transactions.csv")
        .iter()
        .filter(|t| t["kind"] == "FEE")
        .count();
    assert_eq!(
        lines_with(&report, "an amount-only fee").len(),
        50,
        "capped"
    );
    assert!(
        report.contains(&format!("... and {} more like these", fees - 50)),
        "{report}"
    );
    // Four-eyes: one finding for the approve step, counting the loans.
    let four_eyes_loans = common::rows("fixtures/sample/loans.csv")
        .iter()
        .filter(|l| l["product_id"] == "PL-STD" || l["product_id"] == "SME-TERM")
        .count();
    let approvals = lines_with(&report, "four-eyes approval");
    assert_eq!(approvals.len(), 1, "{report}");
    assert!(
        approvals[0].contains(&format!(
            "step `approve` (approve_loan): {four_eyes_loans} loans"
        )),
        "{}",
        approvals[0]
    );
    assert!(
        report.contains("the plan's fixed offset +00:00 is not always the tenant's (Europe/Lisbon")
            && report.contains("whose schedule Mambu refuses to edit once the loan is APPROVED"),
        "{report}"
    );
    insta::assert_snapshot!("old_sample_against_the_strict_tenant", report);

    // As shipped: nothing to say.
    let (code, report) = validate_against(std::path::Path::new("plans/sample.yaml"), &sandbox);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("0 against the tenant"), "{report}");
}

#[test]
fn future_backdated_and_pre_disbursement_transactions_are_reported_at_their_rows() {
    let sandbox = common::Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    // LN-000001 (disbursed 2024-12-29): TX-3 moved before TX-2's fee, TX-5 (its last) into 2099.
    // LN-000002 (disbursed 2022-01-12): TX-6 a week before the disbursement.
    sample_data_with(dir.path(), &|txn, column, _| match (txn, column) {
        ("TX-00000003", "value_date") => Some("2025-01-15".into()),
        ("TX-00000005", "value_date") => Some("2099-04-01".into()),
        ("TX-00000006", "value_date") => Some("2022-01-05".into()),
        _ => None,
    });
    // Rows in the file's order: the extract's order is what the run would send.
    let plan = strict_sample(
        dir.path(),
        "data/",
        &[(
            "    order_by: [value_date]\n    columns:\n      kind:",
            "    columns:\n      kind:",
        )],
    );
    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 2, "{report}");
    let data = dir.path().join("data").display().to_string();
    assert_reports(
        &report,
        &[
            &format!(
                "error[tenant] {data}/transactions.csv:4: step `repayment` (post_repayment) on loans LN-000001, unit CL-000001: valueDate 2025-01-15T00:00:00+00:00 precedes the loan's transaction of 2025-02-09T00:00:00+00:00 (step `fee`, {data}/transactions.csv:3): Mambu refuses a transaction backdated before a later one (BACKDATE_BEFORE_OTHER_OPERATION)"
            ),
            &format!(
                "error[tenant] {data}/transactions.csv:6: step `repayment` (post_repayment) on loans LN-000001, unit CL-000001: valueDate 2099-04-01 is after today ("
            ),
            &format!(
                "error[tenant] {data}/transactions.csv:7: step `repayment` (post_repayment) on loans LN-000002, unit CL-000002: valueDate 2022-01-05T00:00:00+00:00 precedes the loan's disbursement on 2022-01-12T00:00:00+00:00 (step `disburse`, {data}/loans.csv:3): Mambu refuses a transaction before the loan's activation (BACKDATE_BEFORE_ACTIVATION)"
            ),
        ],
    );
    assert!(
        report.contains(
            "and product PL-STD takes no future payments (FUTURE_PAYMENT_NOT_ALLOWED_ERROR)"
        ) || report.contains(
            "and product MICRO takes no future payments (FUTURE_PAYMENT_NOT_ALLOWED_ERROR)"
        ),
        "{report}"
    );
    // TX-3 and TX-6, moved before their loans' first due dates, also pay ahead: MICRO takes no
    // prepayments.
    for prepaid in [
        "unit CL-000001: this repayment takes the loan's repayments to 1106.80 by 2025-01-15",
        "unit CL-000002: this repayment takes the loan's repayments to 70.14 by 2022-01-05",
    ] {
        assert!(report.contains(prepaid), "{report}");
    }
    // Nothing else: the rest of the extract is in order and in the past.
    assert_eq!(
        report.lines().filter(|l| l.starts_with("error[")).count(),
        5,
        "{report}"
    );
}

#[test]
fn prepayments_are_reported_where_the_product_takes_none() {
    // The strict tenant, its products taking no prepayments.
    let dir = tempfile::tempdir().unwrap();
    let strict = common::strict_profile();
    assert!(strict.contains("prepaymentAcceptance: ACCEPT_PREPAYMENTS"));
    let sandbox = common::Sandbox::tenant(
        &strict.replace(
            "prepaymentAcceptance: ACCEPT_PREPAYMENTS",
            "prepaymentAcceptance: NO_PREPAYMENTS",
        ),
        &[],
    );
    // LN-000006 has an edited schedule: 213.24 due by 2024-05-28; TX-23 pays 500.00 on 05-30.
    sample_data_with(dir.path(), &|txn, column, _| {
        (txn == "TX-00000023" && column == "amount").then(|| "500.00".into())
    });
    let plan = strict_sample(dir.path(), "data/", &[]);
    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 2, "{report}");
    let data = dir.path().join("data").display().to_string();
    assert_reports(
        &report,
        &[
            // On the plan's schedule, exactly.
            &format!(
                "error[tenant] {data}/transactions.csv:24: step `repayment` (post_repayment) on loans LN-000006, unit CL-000003: this repayment takes the loan's repayments to 500.00 by 2024-05-30, more than the 213.24 that can be due by then (the plan's edited schedule, with 0.00 of fees), and product PL-STD takes no prepayments (PREPAYMENT_NOT_ALLOWED_ERROR)"
            ),
            // Without it, weekly repayments before the first due date (LN-000049's is 2021-02-28).
            &format!(
                "error[tenant] {data}/transactions.csv:422: step `repayment` (post_repayment) on loans LN-000049, unit CL-000032: this repayment takes the loan's repayments to 346.27 by 2021-02-06, more than the 0.00 that can be due by then (without the plan's schedule, only fees (0.00): no installment is due before the first repayment date 2021-02-28)"
            ),
        ],
    );
    // The sample's repayments on or after their loans' first due dates, without an edited
    // schedule, are never taken for prepayments (the bound is conservative).
    for line in lines_with(&report, "PREPAYMENT_NOT_ALLOWED_ERROR") {
        assert!(
            line.contains("the plan's edited schedule")
                || line.contains("before the first repayment date"),
            "{line}"
        );
    }
}

/// `text` with the first `from` after `after` replaced by `to`.
fn replace_after(text: &str, after: &str, from: &str, to: &str) -> String {
    let start = text.find(after).unwrap_or_else(|| panic!("no `{after}`"));
    let at = start
        + text[start..]
            .find(from)
            .unwrap_or_else(|| panic!("no `{from}`"));
    format!("{}{to}{}", &text[..at], &text[at + from.len()..])
}

#[test]
fn a_schedule_edit_the_product_forbids_is_reported_at_the_loan_and_refused_by_the_sandbox() {
    // The strict tenant with MICRO allowing no schedule edit; PL-STD already lacks
    // ADJUST_PAYMENT_DATES, and LN-000006's (PL-STD) legacy schedule is moved a day.
    let options = "repaymentScheduleEditOptions: [ADJUST_PRINCIPAL_PAYMENT_SCHEDULE, ADJUST_INTEREST_PAYMENT_SCHEDULE]";
    let profile = replace_after(
        &common::strict_profile(),
        "  - id: MICRO\n",
        options,
        "repaymentScheduleEditOptions: []",
    );
    let sandbox = common::Sandbox::tenant(&profile, &[]);
    let dir = tempfile::tempdir().unwrap();
    sample_data_with(dir.path(), &|_, _, _| None);
    let schedules = dir.path().join("data/schedules.csv");
    let moved = "SC-0000018,LN-000006,1,2024-05-29,";
    let text = std::fs::read_to_string(&schedules).unwrap().replacen(
        "SC-0000018,LN-000006,1,2024-05-28,",
        moved,
        1,
    );
    assert!(text.contains(moved));
    std::fs::write(&schedules, text).unwrap();
    let plan = strict_sample(dir.path(), "data/", &[]);

    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 2, "{report}");
    let data = dir.path().join("data").display().to_string();
    let loans = common::rows("fixtures/sample/loans.csv");
    let micro: Vec<(usize, &String, &String)> = loans
        .iter()
        .enumerate()
        .filter(|(_, l)| l["product_id"] == "MICRO" && l["custom_schedule"] == "Y")
        .map(|(i, l)| (i + 2, &l["loan_id"], &l["client_id"]))
        .collect();
    assert_eq!(micro.len(), 12);
    for (line, loan, client) in &micro {
        assert_reports(
            &report,
            &[&format!(
                "error[tenant] {data}/loans.csv:{line}: step `schedule` (edit_schedule) on loans {loan}, unit {client}: product MICRO allows no schedule edit (its repaymentScheduleEditOptions are empty): Mambu refuses to edit the schedule of its loans (EDITING_REPAYMENTS_NOT_ALLOWED)"
            )],
        );
    }
    assert!(report.contains("  help: the product MICRO does not allow editing schedules: ask the tenant's administrator to add the options the edit needs"), "{report}");
    assert_reports(
        &report,
        &[
            &format!(
                "error[tenant] {data}/loans.csv:7: step `schedule` (edit_schedule) on loans LN-000006, unit CL-000003: the edit's first installment is due 2024-05-29, Mambu's on the loan's firstRepaymentDate 2024-05-28, and product PL-STD's repaymentScheduleEditOptions lack ADJUST_PAYMENT_DATES: Mambu refuses to move a due date (EDITING_REPAYMENTS_NOT_ALLOWED)"
            ),
            "  help: the product PL-STD does not allow ADJUST_PAYMENT_DATES: ask the tenant's administrator to add it to the product's schedule edit options, or send the loan's installments as Mambu generates them (the first due on 2024-05-28)",
        ],
    );
    let findings = lines_with(&report, "error[tenant]");
    assert_eq!(findings.len(), 13, "{report}");
    let reported: std::collections::BTreeSet<(String, String)> = findings
        .iter()
        .map(|l| {
            let (_, rest) = l.split_once(" on loans ").unwrap();
            let (loan, rest) = rest.split_once(", unit ").unwrap();
            (rest[..rest.find(':').unwrap()].to_owned(), loan.to_owned())
        })
        .collect();

    // The proof: a real run against that sandbox. The edits it refuses are exactly the
    // reported ones: their loans keep Mambu's schedule (hasCustomSchedule false), every other
    // edited loan has the plan's.
    let run_dir = dir.path().join("run");
    let output = common::run(
        &sandbox,
        plan.to_str().unwrap(),
        &run_dir,
        &["--rate", "3000"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", common::stderr(&output));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = sandbox.api();
    let mut refused = std::collections::BTreeSet::new();
    for loan in loans.iter().filter(|l| l["custom_schedule"] == "Y") {
        let answer = runtime.block_on(api.get(&format!("/loans/{}", loan["loan_id"])));
        assert!(
            answer.status.is_success(),
            "{}: {:?}",
            loan["loan_id"],
            answer.body
        );
        if answer.body["scheduleSettings"]["hasCustomSchedule"] != true {
            refused.insert((loan["client_id"].clone(), loan["loan_id"].clone()));
        }
    }
    assert_eq!(reported, refused);
    // The run fails the units whose edit changes Mambu's schedule, at the schedule, with the
    // reason validate named; an edit refused where the plan's schedule already is Mambu's
    // (MICRO's legacy schedules computed as Mambu computes them) is adopted.
    let errors = common::rows(run_dir.join("failed/latest/errors.csv").to_str().unwrap());
    assert!(!errors.is_empty());
    for error in &errors {
        assert_eq!(
            (error["step"].as_str(), error["error_reason"].as_str()),
            ("schedule", "EDITING_REPAYMENTS_NOT_ALLOWED"),
            "{error:?}"
        );
        assert!(
            reported.iter().any(|(unit, _)| *unit == error["unit"]),
            "{error:?}"
        );
    }
}

/// The sample's create_loan body ends here.
const LOAN_BODY_END: &str =
    "            firstRepaymentDate: \"{{ loans.first_repayment_on | datetime }}\"\n";

/// The sample's own custom field sets: taken out, for a test to map its own.
const SAMPLE_CLIENT_SETS: &str = "      # A custom field set, as Mambu's JSON has it (values sent as strings, empty ones left out).
      _Client_Details:
        employment_status: \"{{ clients.employment_status }}\"
";
const SAMPLE_LOAN_SETS: &str = "          _Loan_Origination:
            legacy_account_number: \"{{ loans.loan_id }}\"
            original_disbursement_date: \"{{ loans.disbursed_on | date }}\"
";

/// The sample (reading fixtures/sample) without its own custom field sets, `client` and `loan`
/// added at the end of the create_client and create_loan bodies instead; the plan's text
/// besides.
fn sample_with_custom_fields(
    dir: &std::path::Path,
    client: &str,
    loan: &str,
) -> (std::path::PathBuf, String) {
    let data = format!("{}/fixtures/sample/", env!("CARGO_MANIFEST_DIR"));
    let plan = strict_sample(
        dir,
        &data,
        &[
            (SAMPLE_CLIENT_SETS, client),
            (
                &format!("{LOAN_BODY_END}{SAMPLE_LOAN_SETS}"),
                &format!("{LOAN_BODY_END}{loan}"),
            ),
        ],
    );
    let text = std::fs::read_to_string(&plan).unwrap();
    (plan, text)
}

/// `plan:line:column` of the first `needle` in the plan's text (past its leading spaces).
fn plan_at(plan: &std::path::Path, text: &str, needle: &str) -> String {
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
        .map(|(line, column)| (line, column + needle.len() - needle.trim_start().len()))
        .unwrap_or_else(|| panic!("no `{needle}` in the plan"));
    format!("{}:{line}:{column}", plan.display())
}

/// The strict profile (`_Client_Details.employment_status` required), its legacy account
/// number optional.
fn employment_required() -> String {
    let strict = common::strict_profile();
    let required = "type: FREE_TEXT, required: true }";
    assert!(
        strict.contains(required),
        "strict.yaml's legacy_account_number"
    );
    strict.replacen(required, "type: FREE_TEXT, required: false }", 1)
}

/// 1-based CSV lines (the header is line 1) of `file`'s rows matching `keep`.
fn lines_where(
    file: &str,
    keep: impl Fn(&std::collections::HashMap<String, String>) -> bool,
) -> Vec<usize> {
    common::rows(file)
        .iter()
        .enumerate()
        .filter(|(_, r)| keep(r))
        .map(|(i, _)| i + 2)
        .collect()
}

#[test]
fn custom_field_values_off_the_fields_options_are_reported_at_their_cell() {
    let sandbox = common::Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    // Genders are no employment status; the women's lower-case option differs only in case.
    let (plan, _) = sample_with_custom_fields(
        dir.path(),
        "      _Client_Details:\n        employment_status: \"{{ clients.gender }}\"\n",
        "",
    );
    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 2, "{report}");
    let clients = format!("{}/fixtures/sample/clients.csv", env!("CARGO_MANIFEST_DIR"));
    let first = &common::rows(&clients)[0];
    assert_reports(
        &report,
        &[
            &format!(
                "error[tenant] {clients}:2, column gender: step `client` (create_client), unit CL-000001: custom field _Client_Details.employment_status `{}` is not one of the SELECTION field's options (EMPLOYED, SELF_EMPLOYED, RETIRED, STUDENT, UNEMPLOYED) (INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE)",
                first["gender"]
            ),
            "  help: correct gender of clients CL-000001, or the step's template",
        ],
    );
    // Every client: 50 listed, the rest counted.
    assert_eq!(
        lines_with(&report, "is not one of the SELECTION field's options").len(),
        50
    );
    assert!(
        report.contains(
            "error[tenant custom field client _Client_Details.employment_status option] ... and 200 more like these"
        ),
        "{report}"
    );

    // Only the case differs: the hint says so.
    let (plan, _) = sample_with_custom_fields(
        dir.path(),
        "      _Client_Details:\n        employment_status: \"{{ 'employed' if clients.gender == 'FEMALE' else 'RETIRED' }}\"\n",
        "",
    );
    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 2, "{report}");
    let women = lines_where(&clients, |c| c["gender"] == "FEMALE");
    let found = lines_with(
        &report,
        "`employed` is not one of the SELECTION field's options",
    );
    assert_eq!(found.len(), women.len().min(50), "{report}");
    assert!(
        found[0].starts_with(&format!(
            "error[tenant] {clients}:{}, column gender:",
            women[0]
        )),
        "{}",
        found[0]
    );
    assert!(
        report.contains("  help: the option is `EMPLOYED`: Mambu matches options exactly, case included (`| upper` in the template?); correct gender of clients"),
        "{report}"
    );
}

#[test]
fn a_required_custom_field_is_reported_unmapped_at_the_step_and_empty_at_its_row() {
    let sandbox = common::Sandbox::tenant(&employment_required(), &[]);
    let dir = tempfile::tempdir().unwrap();
    // The sample maps no custom field: one finding, at the step.
    let (plan, text) = sample_with_custom_fields(dir.path(), "", "");
    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 2, "{report}");
    let found = lines_with(&report, "REQUIRED_CUSTOM_FIELD_MISSING");
    assert_eq!(found.len(), 1, "{report}");
    assert_eq!(
        found[0],
        format!(
            "error[tenant] {}: step `client` (create_client): the tenant requires custom field _Client_Details.employment_status on every client, and the step's body does not map it (REQUIRED_CUSTOM_FIELD_MISSING)",
            plan_at(&plan, &text, "id: client")
        )
    );
    assert!(
        report.contains(
            "  help: add to the body: `_Client_Details: { employment_status: \"{{ … }}\" }`"
        ),
        "{report}"
    );

    // Mapped from a column some rows leave empty: each such row, at its cell.
    let (plan, _) = sample_with_custom_fields(
        dir.path(),
        "      _Client_Details:\n        employment_status: \"{{ 'EMPLOYED' if clients.email else '' }}\"\n",
        "",
    );
    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 2, "{report}");
    let clients = format!("{}/fixtures/sample/clients.csv", env!("CARGO_MANIFEST_DIR"));
    let empty = lines_where(&clients, |c| c["email"].is_empty());
    assert!(!empty.is_empty() && empty.len() < 50);
    let found = lines_with(&report, "REQUIRED_CUSTOM_FIELD_MISSING");
    assert_eq!(found.len(), empty.len(), "{report}");
    for (line, finding) in empty.iter().zip(&found) {
        assert!(
            finding.starts_with(&format!("error[tenant] {clients}:{line}, column email: step `client` (create_client), unit CL-"))
                && finding.ends_with(": custom field _Client_Details.employment_status is required by the tenant, and this row gives it no value (an empty value leaves the field out): Mambu refuses the client (REQUIRED_CUSTOM_FIELD_MISSING)"),
            "{finding}"
        );
    }
    assert!(
        report.contains("  help: fill email in clients CL-"),
        "{report}"
    );
}

#[test]
fn unknown_sets_and_fields_and_a_set_in_the_wrong_shape_are_reported_at_their_place_in_the_plan() {
    // The strict tenant with no field required: what is said is about names and shapes only.
    let sandbox = common::Sandbox::tenant(
        &common::strict_profile().replace("required: true", "required: false"),
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let (plan, text) = sample_with_custom_fields(
        dir.path(),
        "      _Client_Detials:\n        employment_status: EMPLOYED\n      _Loan_Origination:\n        legacy_account_number: \"{{ clients.client_id }}\"\n",
        "          _Loan_Origination:\n            - legacy_account_number: \"{{ loans.loan_id }}\"\n              legacy_number: \"{{ loans.loan_id }}\"\n",
    );
    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 2, "{report}");
    assert_reports(
        &report,
        &[
            &format!(
                "error[tenant] {}: step `client` (create_client): the tenant has no custom field set `_Client_Detials` for CLIENT (INVALID_CUSTOM_FIELD_SET_ID)",
                plan_at(&plan, &text, "_Client_Detials:")
            ),
            "  help: did you mean `_Client_Details`?",
            &format!(
                "error[tenant] {}: step `client` (create_client): the tenant has no custom field set `_Loan_Origination` for CLIENT (INVALID_CUSTOM_FIELD_SET_ID)",
                plan_at(&plan, &text, "      _Loan_Origination:")
            ),
            "  help: `_Loan_Origination` is a set for LOAN_ACCOUNT: Mambu refuses it on a client (CUSTOM_FIELD_NOT_AVAILABLE_FOR_ENTITY)",
            &format!(
                "error[tenant] {}: step `loan` (create_loan): `_Loan_Origination` is a single set (STANDARD): Mambu takes one map of field values, and the plan writes a list (INCONSISTENT_VALUE_WITH_SET_TYPE)",
                plan_at(&plan, &text, "          _Loan_Origination:")
            ),
            "  help: write it as one map: `_Loan_Origination: { field: … }`",
        ],
    );
    // Said once each, not per row.
    assert_eq!(
        report.lines().filter(|l| l.starts_with("error[")).count(),
        3,
        "{report}"
    );

    // In the right shape, the unknown field.
    let (plan, text) = sample_with_custom_fields(
        dir.path(),
        "",
        "          _Loan_Origination:\n            legacy_number: \"{{ loans.loan_id }}\"\n",
    );
    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 2, "{report}");
    assert_reports(
        &report,
        &[
            &format!(
                "error[tenant] {}: step `loan` (create_loan): set `_Loan_Origination` has no field `legacy_number` (INVALID_CUSTOM_FIELD_ID)",
                plan_at(&plan, &text, "legacy_number:")
            ),
            "  help: did you mean `legacy_account_number`?",
        ],
    );
    assert_eq!(
        report.lines().filter(|l| l.starts_with("error[")).count(),
        1,
        "{report}"
    );
}

#[test]
fn a_date_field_from_a_column_that_is_no_date_is_reported_at_its_cell_and_a_right_mapping_passes() {
    let sandbox = common::Sandbox::tenant(&employment_required(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let employment = "      _Client_Details:\n        employment_status: \"{{ 'RETIRED' if clients.gender == 'MALE' else 'EMPLOYED' }}\"\n";
    let (plan, _) = sample_with_custom_fields(
        dir.path(),
        employment,
        "          _Loan_Origination:\n            original_disbursement_date: \"{{ loans.product_id }}\"\n",
    );
    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 2, "{report}");
    let loans = format!("{}/fixtures/sample/loans.csv", env!("CARGO_MANIFEST_DIR"));
    let first = &common::rows(&loans)[0];
    assert_reports(
        &report,
        &[
            &format!(
                "error[tenant] {loans}:2, column product_id: step `loan` (create_loan), unit {}: custom field _Loan_Origination.original_disbursement_date `{}` is not a date as a DATE field takes it: YYYY-MM-DD (INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE)",
                first["client_id"], first["product_id"]
            ),
            &format!(
                "  help: correct product_id of loans {}, or the step's template (`| date` writes YYYY-MM-DD)",
                first["loan_id"]
            ),
        ],
    );
    let all = common::rows(&loans).len();
    assert!(
        report.contains(&format!(
            "error[tenant custom field loan _Loan_Origination.original_disbursement_date date] ... and {} more like these",
            all - 50
        )),
        "{report}"
    );
    assert_eq!(
        lines_with(&report, "error[tenant]").len(),
        50,
        "nothing else: {report}"
    );

    // The right columns: nothing to say.
    let (plan, _) = sample_with_custom_fields(
        dir.path(),
        employment,
        "          _Loan_Origination:\n            legacy_account_number: \"{{ loans.loan_id }}\"\n            original_disbursement_date: \"{{ loans.disbursed_on | date }}\"\n",
    );
    let (code, report) = validate_against(&plan, &sandbox);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("0 against the tenant"), "{report}");
}

#[test]
fn a_custom_field_set_or_value_of_the_wrong_kind_is_reported_from_the_plan_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, text) = sample_with_custom_fields(
        dir.path(),
        "      _Client_Details: EMPLOYED\n",
        "          _Loan_Origination:\n            legacy_account_number: { number: \"{{ loans.loan_id }}\" }\n",
    );
    let (code, report) = validate(&[plan.to_str().unwrap()]);
    assert_eq!(code, 2, "{report}");
    assert_reports(
        &report,
        &[
            &format!(
                "error[plan] {}: step `client`: custom field set `_Client_Details` is neither a map of field values nor a list of such maps (a grouped set) (at steps[0].body._Client_Details)",
                plan_at(&plan, &text, "_Client_Details:")
            ),
            &format!(
                "error[plan] {}: step `loan`: custom field `_Loan_Origination.legacy_account_number` is a map: a field's value is one value (text, a number, TRUE or FALSE, a date) (at steps[2].steps[1].body._Loan_Origination.legacy_account_number)",
                plan_at(&plan, &text, "legacy_account_number:")
            ),
        ],
    );
    assert!(
        report.contains("2 in the plan, 0 in the data, 0 against the tenant"),
        "{report}"
    );
}
