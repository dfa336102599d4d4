//! `plan validate` as a consultant runs it: the real binary on the sample plan (clean) and on
//! broken plans and data (every problem, located), with the report's wording under snapshot.

mod common;

use assert_cmd::Command;
use serde_json::Value;

fn validate(args: &[&str]) -> (i32, String) {
    let output = Command::cargo_bin("mambu-migrate")
        .unwrap()
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
    for file in ["clients", "deposits", "loans", "schedules"] {
        std::fs::copy(
            format!("fixtures/sample/{file}.csv"),
            data.join(format!("{file}.csv")),
        )
        .unwrap();
    }
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
    let sandbox = common::Sandbox::start(&["--timezone", "Europe/Lisbon"]);
    let check = |plan: &std::path::Path| {
        let output = Command::cargo_bin("mambu-migrate")
            .unwrap()
            .args(["plan", "validate"])
            .arg(plan)
            .arg("--target")
            .arg(format!("{}/api", sandbox.origin))
            .env("MAMBU_API_KEY", common::API_KEY)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
        )
    };
    let (code, report) = check(std::path::Path::new("plans/sample.yaml"));
    assert_eq!(code, Some(2), "{report}");
    assert!(
        report.contains("the plan's fixed offset +00:00 is not always the tenant's (Europe/Lisbon"),
        "{report}"
    );
    let dir = tempfile::tempdir().unwrap();
    let plan = common::sample_plan_with(
        dir.path(),
        &[("timezone: \"+00:00\"", "timezone: Europe/Lisbon")],
    );
    let (code, report) = check(&plan);
    assert_eq!(code, Some(0), "{report}");
}

#[test]
fn a_schedule_edit_after_approving_a_dynamic_term_loan_is_reported_with_the_fix() {
    // The sample as it was: the schedule edited after `approve`. The tenant's MICRO product is
    // dynamic-term, whose schedule Mambu refuses to edit once approved.
    let schedule = "      - id: schedule
        action: edit_schedule
        when: \"loans.custom_schedule == 'Y'\"
        installments:
          from: schedules
          dueDate: \"{{ schedules.due_date | datetime }}\"
          principal: \"{{ schedules.principal_due | decimal }}\"
          interest: \"{{ schedules.interest_due | decimal }}\"
";
    let approve = "      - id: approve
        action: approve_loan
";
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
