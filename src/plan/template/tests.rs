use serde_json::json;

use super::*;

const LOAN_HEADERS: [&str; 8] = [
    "loan_id",
    "amount",
    "installments",
    "deposit_id",
    "disbursed_on",
    "notes",
    "rate",
    "name",
];

fn loan_row() -> Vec<String> {
    [
        "L-1",
        "12500.50",
        "12",
        "",
        "15/01/2024",
        "",
        "0.1",
        "Ada Lovelace",
    ]
    .map(String::from)
    .to_vec()
}

fn render_with(
    engine: &Engine,
    tree: serde_json::Value,
    ctx: &Context<'_>,
) -> Result<serde_json::Value, TemplateError> {
    engine.compile("body", &tree).unwrap().render(ctx)
}

/// Renders `template` as a whole string against one `loans` row where `column` holds `cell`.
fn one(template: &str, column: &str, cell: &str) -> Result<serde_json::Value, TemplateError> {
    let engine = Engine::new();
    let headers = [column];
    let row = [cell];
    render_with(
        &engine,
        json!(template),
        &Context::new().source("loans", &headers, &row),
    )
}

fn text(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn whole_expressions_are_typed() {
    let engine = Engine::new();
    let row = loan_row();
    let client = json!({"encodedKey": "8a8e", "id": 7, "active": true, "tags": ["a", "b"]});
    let ctx = Context::new()
        .source("loans", &LOAN_HEADERS, &row)
        .step("client", &client)
        .unit_key("C-9")
        .plan_name("acme");
    let out = render_with(
        &engine,
        json!({
            "id": "{{ loans.loan_id }}",
            "installments": " {{ loans.installments | int }} ",
            "amount": "{{ loans.amount | decimal }}",
            "holder": "{{ steps.client.encodedKey }}",
            "holderId": "{{ steps.client.id }}",
            "active": "{{ steps.client.active }}",
            "flag": "{{ loans.deposit_id == '' }}",
            "tags": "{{ steps.client.tags }}",
            "map": "{{ {'k': loans.installments | int} }}",
            "unit": "{{ unit.key }}",
            "plan": "{{ plan.name }}",
            "type": "CLIENT",
            "grace": 0,
            "nested": [{"x": "{{ loans.installments | int }}"}, null, true],
        }),
        &ctx,
    )
    .unwrap();
    // With `arbitrary_precision`, numbers compare by their text: `json!(12500.50)` would be
    // the float's `12500.5`, so the expectation is parsed from text.
    let expected: serde_json::Value = serde_json::from_str(
        r#"{"id": "L-1", "installments": 12, "amount": 12500.50, "holder": "8a8e", "holderId": 7,
            "active": true, "flag": true, "tags": ["a", "b"], "map": {"k": 12}, "unit": "C-9",
            "plan": "acme", "type": "CLIENT", "grace": 0, "nested": [{"x": 12}, null, true]}"#,
    )
    .unwrap();
    assert_eq!(out, expected);
    assert!(text(&out).contains("\"amount\":12500.50"));
}

#[test]
fn interpolation_makes_strings() {
    let engine = Engine::new();
    let row = loan_row();
    let ctx = Context::new().source("loans", &LOAN_HEADERS, &row);
    let out = render_with(
        &engine,
        json!([
            "Loan {{ loans.loan_id }} of {{ loans.amount | decimal }}",
            "{{ loans.installments | int }}{{ loans.loan_id }}",
            "[{{ loans.deposit_id | decimal }}] {{ loans.deposit_id == '' }}",
            "no template } here {",
            "a  {{- loans.loan_id -}}  b",
        ]),
        &ctx,
    )
    .unwrap();
    assert_eq!(
        out,
        json!([
            "Loan L-1 of 12500.50",
            "12L-1",
            "[] true",
            "no template } here {",
            "aL-1b"
        ])
    );
}

#[test]
fn money_keeps_its_digits() {
    for (cell, json_text) in [
        ("0.1", "0.1"),
        ("12345678901234.56", "12345678901234.56"),
        ("937.50", "937.50"),
        ("-0.10", "-0.10"),
    ] {
        let out = one("{{ loans.amount | decimal }}", "amount", cell).unwrap();
        assert_eq!(text(&out), json_text, "{cell}");
    }
    let out = one("{{ loans.amount | decimal(places=2) }}", "amount", "2.675").unwrap();
    assert_eq!(text(&out), "2.68");
    let out = one("{{ loans.amount | decimal(places=2) }}", "amount", "12.5").unwrap();
    assert_eq!(text(&out), "12.50");
    let out = one("{{ loans.amount | decimal(places=0) }}", "amount", "-2.5").unwrap();
    assert_eq!(text(&out), "-3");
    // A saved JSON decimal goes through exactly too.
    let engine = Engine::new();
    let saved: serde_json::Value =
        serde_json::from_str(r#"{"loanAmount": 937.50, "big": 123456789012345678901234}"#).unwrap();
    let ctx = Context::new().step("loan", &saved);
    let out = render_with(
        &engine,
        json!({"a": "{{ steps.loan.loanAmount }}", "b": "{{ steps.loan.big }}"}),
        &ctx,
    )
    .unwrap();
    assert_eq!(text(&out), r#"{"a":937.50,"b":123456789012345678901234}"#);
}

#[test]
fn decimal_formats_and_refusals() {
    let d = |t: &str, cell: &str| one(t, "amount", cell).map(|v| text(&v));
    assert_eq!(
        d("{{ loans.amount | decimal(comma=true) }}", "12,5").unwrap(),
        "12.5"
    );
    assert_eq!(
        d(
            "{{ loans.amount | decimal(thousands=true) }}",
            "1,234,567.89"
        )
        .unwrap(),
        "1234567.89"
    );
    assert_eq!(
        d(
            "{{ loans.amount | decimal(comma=true, thousands=true) }}",
            "1.234,5"
        )
        .unwrap(),
        "1234.5"
    );
    assert_eq!(d("{{ loans.amount | decimal }}", " +7 ").unwrap(), "7");
    assert_eq!(d("{{ loans.amount | decimal }}", "").unwrap(), "null");
    for bad in [
        "1,234.56", "abc", "1e5", "12.", ".5", "1 000", "--1", "12,5",
    ] {
        let err = d("{{ loans.amount | decimal }}", bad).unwrap_err();
        match &err {
            TemplateError::Filter {
                filter,
                problem,
                path,
                ..
            } => {
                assert_eq!(filter, "decimal");
                assert_eq!(path, "body");
                assert!(
                    problem.starts_with("not a decimal number"),
                    "{bad}: {problem}"
                );
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(d("{{ loans.amount | decimal(thousands=true) }}", "12,34.5").is_err());
    assert!(d("{{ loans.amount | decimal(comma=true) }}", "12.5").is_err());
    // The message shows the shape, never the value.
    let err = d("{{ loans.amount | decimal }}", "Lovelace 12")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("11 characters, shape \"Aaaaaaaa 99\""),
        "{err}"
    );
    assert!(!err.contains("Lovelace"), "{err}");
    let err = d("{{ loans.amount | decimal }}", "1,234.56")
        .unwrap_err()
        .to_string();
    assert!(err.contains("decimal(thousands=true)"), "{err}");
    assert!(d("{{ loans.amount | decimal(bogus=1) }}", "1").is_err());
}

#[test]
fn int_is_whole_numbers_only() {
    assert_eq!(one("{{ loans.n | int }}", "n", "12").unwrap(), json!(12));
    assert_eq!(one("{{ loans.n | int }}", "n", "-3").unwrap(), json!(-3));
    assert_eq!(one("{{ loans.n | int }}", "n", "").unwrap(), json!(null));
    for bad in ["12.0", "abc", "1,000", "99999999999999999999"] {
        assert!(
            matches!(one("{{ loans.n | int }}", "n", bad), Err(TemplateError::Filter { ref filter, .. }) if filter == "int"),
            "{bad}"
        );
    }
}

#[test]
fn dates() {
    let t = |template: &str, cell: &str| one(template, "d", cell);
    assert_eq!(
        t("{{ loans.d | date('%d/%m/%Y') }}", "15/01/2024").unwrap(),
        json!("2024-01-15")
    );
    assert_eq!(
        t("{{ loans.d | date('%Y%m%d') }}", "20240115").unwrap(),
        json!("2024-01-15")
    );
    assert_eq!(
        t("{{ loans.d | date }}", "2024-01-15").unwrap(),
        json!("2024-01-15")
    );
    assert_eq!(
        t("{{ loans.d | date }}", "2024-01-15T23:30:00-05:00").unwrap(),
        json!("2024-01-15")
    );
    assert_eq!(t("{{ loans.d | date }}", "").unwrap(), json!(null));
    assert_eq!(
        t("{{ 20240115 | date('%Y%m%d') }}", "").unwrap(),
        json!("2024-01-15")
    );
    for bad in ["31/02/2024", "2024-13-01", "yesterday"] {
        let err = t("{{ loans.d | date('%d/%m/%Y') }}", bad).unwrap_err();
        assert!(
            matches!(&err, TemplateError::Filter { filter, .. } if filter == "date"),
            "{bad}: {err}"
        );
    }
    let err = t("{{ loans.d | date }}", "15/01/2024")
        .unwrap_err()
        .to_string();
    assert!(err.contains("shape \"99/99/9999\""), "{err}");
}

#[test]
fn datetimes_with_offsets() {
    let t = |template: &str, cell: &str| one(template, "d", cell);
    assert_eq!(
        t("{{ loans.d | datetime }}", "2024-01-15").unwrap(),
        json!("2024-01-15T00:00:00+00:00")
    );
    assert_eq!(
        t(
            "{{ loans.d | datetime(tz='+02:00') }}",
            "2024-01-15 08:30:00"
        )
        .unwrap(),
        json!("2024-01-15T08:30:00+02:00")
    );
    assert_eq!(
        t(
            "{{ loans.d | datetime('%d/%m/%Y %H:%M', tz='-05:30') }}",
            "15/01/2024 08:30"
        )
        .unwrap(),
        json!("2024-01-15T08:30:00-05:30")
    );
    // An offset in the input is kept, or converted to an explicit tz.
    assert_eq!(
        t("{{ loans.d | datetime }}", "2024-01-15T08:30:00Z").unwrap(),
        json!("2024-01-15T08:30:00+00:00")
    );
    assert_eq!(
        t(
            "{{ loans.d | datetime(tz='+01:00') }}",
            "2024-01-15T08:30:00.250Z"
        )
        .unwrap(),
        json!("2024-01-15T09:30:00+01:00")
    );
    assert_eq!(
        t("{{ loans.d | datetime('%d/%m/%Y') }}", "15/01/2024").unwrap(),
        json!("2024-01-15T00:00:00+00:00")
    );
    assert_eq!(t("{{ loans.d | datetime }}", "").unwrap(), json!(null));
    assert!(t("{{ loans.d | datetime(tz='Paris') }}", "2024-01-15").is_err());
    assert!(t("{{ loans.d | datetime }}", "15/01/2024").is_err());
    // The engine's default offset.
    let engine = Engine::with_default_offset(parse_offset("+03:00").unwrap());
    let headers = ["d"];
    let row = ["2024-01-15"];
    let out = render_with(
        &engine,
        json!("{{ loans.d | datetime }}"),
        &Context::new().source("loans", &headers, &row),
    );
    assert_eq!(out.unwrap(), json!("2024-01-15T00:00:00+03:00"));
    assert_eq!(parse_offset("Z").unwrap().local_minus_utc(), 0);
    assert_eq!(parse_offset("-0530").unwrap().local_minus_utc(), -19800);
    assert!(matches!(
        parse_offset("CET"),
        Err(TemplateError::InvalidOffset { .. })
    ));
}

#[test]
fn a_named_zone_gives_each_date_the_offset_in_force_then() {
    let engine = Engine::with_zone(Zone::parse("Europe/Lisbon").unwrap());
    let headers = ["d"];
    let lisbon = |template: &str, cell: &str| {
        let row = [cell];
        render_with(
            &engine,
            json!(template),
            &Context::new().source("loans", &headers, &row),
        )
    };
    // Winter: Lisbon is at +00:00; summer: +01:00 (a backdated value takes its own date's).
    assert_eq!(
        lisbon("{{ loans.d | datetime }}", "2024-01-15").unwrap(),
        json!("2024-01-15T00:00:00+00:00")
    );
    assert_eq!(
        lisbon("{{ loans.d | datetime }}", "2024-07-15").unwrap(),
        json!("2024-07-15T00:00:00+01:00")
    );
    // The hour the clocks skip does not exist: said, never shifted silently.
    let gap = lisbon("{{ loans.d | datetime }}", "2024-03-31 01:30:00")
        .unwrap_err()
        .to_string();
    assert!(
        gap.contains("2024-03-31 01:30 does not exist in Europe/Lisbon"),
        "{gap}"
    );
    // The hour the clocks repeat: the first one.
    assert_eq!(
        lisbon("{{ loans.d | datetime }}", "2024-10-27 01:30:00").unwrap(),
        json!("2024-10-27T01:30:00+01:00")
    );
    // tz= takes a zone too; a value with an offset is shown in it.
    assert_eq!(
        lisbon(
            "{{ loans.d | datetime(tz='Europe/Berlin') }}",
            "2024-07-15T10:00:00Z"
        )
        .unwrap(),
        json!("2024-07-15T12:00:00+02:00")
    );
    assert_eq!(
        Zone::parse("+02:00"),
        Some(Zone::Fixed(parse_offset("+02:00").unwrap()))
    );
    assert_eq!(Zone::parse("Europe/Lisbn"), None);
}

#[test]
fn the_plans_zone_must_be_the_tenants() {
    let lisbon: chrono_tz::Tz = "Europe/Lisbon".parse().unwrap();
    assert_eq!(
        Zone::parse("Europe/Lisbon").unwrap().agrees_with(lisbon),
        Ok(())
    );
    let fixed = Zone::parse("+00:00")
        .unwrap()
        .agrees_with(lisbon)
        .unwrap_err();
    assert!(
        fixed.contains("whose offset changes with the date")
            && fixed.ends_with("set the plan's `timezone: Europe/Lisbon`"),
        "{fixed}"
    );
    let berlin = Zone::parse("Europe/Berlin")
        .unwrap()
        .agrees_with(lisbon)
        .unwrap_err();
    assert!(
        berlin.contains("Europe/Berlin is not the tenant's (Europe/Lisbon)"),
        "{berlin}"
    );
    // A tenant in UTC takes +00:00, Z or UTC; Kolkata never changes its offset.
    for plan in ["+00:00", "Z", "UTC"] {
        assert_eq!(
            Zone::parse(plan).unwrap().agrees_with(chrono_tz::UTC),
            Ok(()),
            "{plan}"
        );
    }
    let kolkata: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
    assert_eq!(Zone::parse("+05:30").unwrap().agrees_with(kolkata), Ok(()));
}

#[test]
fn default_replaces_empty_and_undefined() {
    assert_eq!(
        one("{{ loans.x | default('n/a') }}", "x", "").unwrap(),
        json!("n/a")
    );
    assert_eq!(
        one("{{ loans.x | default('n/a') }}", "x", "v").unwrap(),
        json!("v")
    );
    assert_eq!(
        one("{{ loans.nope | default('n/a') }}", "x", "v").unwrap(),
        json!("n/a")
    );
    assert_eq!(
        one("{{ loans.x | decimal | default(0) }}", "x", "").unwrap(),
        json!(0)
    );
    assert_eq!(
        one("{{ loans.x | default(none) }}", "x", "").unwrap(),
        json!(null)
    );
}

#[test]
fn text_filters() {
    assert_eq!(
        one("{{ loans.n | mask }}", "n", "Ada Lovelace").unwrap(),
        json!("A** L*******")
    );
    assert_eq!(
        one("{{ loans.n | mask }}", "n", "Jean-Luc  Picard").unwrap(),
        json!("J*******  P*****")
    );
    assert_eq!(one("{{ loans.n | mask }}", "n", "").unwrap(), json!(""));
    assert_eq!(
        one("{{ loans.n | trim }}", "n", "  a b  ").unwrap(),
        json!("a b")
    );
    assert_eq!(
        one("{{ loans.n | upper }}", "n", "éa").unwrap(),
        json!("ÉA")
    );
    assert_eq!(
        one("{{ loans.n | lower }}", "n", "AbC").unwrap(),
        json!("abc")
    );
    assert_eq!(
        one("{{ loans.n | trim | upper }}", "n", "").unwrap(),
        json!("")
    );
    assert_eq!(
        one("{{ loans.n | decimal | upper }}", "n", "").unwrap(),
        json!(null)
    );
    // Built-ins are still there.
    assert_eq!(
        one("{{ loans.n | replace('-', '') | length }}", "n", "a-b").unwrap(),
        json!(2)
    );
}

#[test]
fn null_entries_are_left_out() {
    let engine = Engine::new();
    let row = loan_row();
    let ctx = Context::new().source("loans", &LOAN_HEADERS, &row);
    let out = render_with(
        &engine,
        json!({
            "notes": "{{ loans.notes | default(none) }}",
            "deposit": "{{ loans.deposit_id | decimal }}",
            "keptNull": null,
            "text": "{{ loans.notes }}",
            "list": ["{{ loans.notes | default(none) }}"],
            "inner": {"gone": "{{ loans.deposit_id | int }}"},
        }),
        &ctx,
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"keptNull": null, "text": "", "list": [null], "inner": {}})
    );
}

#[test]
fn conditions() {
    let engine = Engine::new();
    let kinds = ["kind", "amount", "deposit_id"];
    let fee = ["FEE", "0.10", ""];
    let repayment = ["REPAYMENT", "-3", "D-1"];
    let is_fee = engine
        .condition("when", "transactions.kind == 'FEE'")
        .unwrap();
    let has_deposit = engine
        .condition("when", "transactions.deposit_id != ''")
        .unwrap();
    let positive = engine
        .condition("when", "transactions.amount | decimal > 0")
        .unwrap();
    let braces = engine
        .condition("when", " {{ transactions.amount | decimal == 0.1 }} ")
        .unwrap();
    let ctx_fee = Context::new().source("transactions", &kinds, &fee);
    let ctx_rep = Context::new().source("transactions", &kinds, &repayment);
    assert!(is_fee.eval(&ctx_fee).unwrap());
    assert!(!is_fee.eval(&ctx_rep).unwrap());
    assert!(!has_deposit.eval(&ctx_fee).unwrap());
    assert!(has_deposit.eval(&ctx_rep).unwrap());
    assert!(positive.eval(&ctx_fee).unwrap());
    assert!(!positive.eval(&ctx_rep).unwrap());
    assert!(braces.eval(&ctx_fee).unwrap());
    assert_eq!(is_fee.variables(), ["transactions.kind"]);
    assert_eq!(is_fee.source(), "transactions.kind == 'FEE'");

    let not_bool = engine
        .condition("steps[3].when", "transactions.kind")
        .unwrap();
    let err = not_bool.eval(&ctx_fee).unwrap_err();
    assert!(
        matches!(&err, TemplateError::NotBool { kind, .. } if kind == "string"),
        "{err}"
    );
    let undefined = engine
        .condition("when", "transactions.knd == 'FEE'")
        .unwrap();
    assert!(
        matches!(undefined.eval(&ctx_fee), Err(TemplateError::Undefined { names, .. }) if names == ["transactions.knd"])
    );
    let err = engine
        .condition("steps[3].when", "transactions.kind ==")
        .unwrap_err();
    assert!(
        matches!(&err, TemplateError::Syntax { path, .. } if path == "steps[3].when"),
        "{err}"
    );
}

#[test]
fn undefined_is_an_error_naming_the_variable() {
    let engine = Engine::new();
    let row = loan_row();
    let client = json!({"encodedKey": "k"});
    let ctx = Context::new()
        .source("loans", &LOAN_HEADERS, &row)
        .step("client", &client);
    let cases = [
        ("{{ loans.nope }}", vec!["loans.nope"]),
        ("x {{ loans.nope }}", vec!["loans.nope"]),
        ("{{ loans.nope | decimal }}", vec!["loans.nope"]),
        ("{{ loans.nope | upper }}", vec!["loans.nope"]),
        ("{{ [loans.nope] }}", vec!["loans.nope"]),
        ("{{ steps.client.id }}", vec!["steps.client.id"]),
        ("{{ steps.loan.encodedKey }}", vec!["steps.loan.encodedKey"]),
        (
            "{{ clients.client_id ~ loans.loan_id }}",
            vec!["clients.client_id"],
        ),
        ("{{ unit.key }}", vec!["unit.key"]),
        ("{{ loans.amount.x }}", vec!["loans.amount.x"]),
    ];
    for (template, names) in cases {
        let err = render_with(&engine, json!({"f": template}), &ctx).unwrap_err();
        match &err {
            TemplateError::Undefined {
                names: got, path, ..
            } => {
                assert_eq!(got, &names, "{template}");
                assert_eq!(path, "body.f");
            }
            other => panic!("{template}: {other:?}"),
        }
        assert!(
            err.to_string().contains(&format!("`{}`", names[0])),
            "{err}"
        );
    }
}

#[test]
fn references_are_listed() {
    let engine = Engine::new();
    let tree = engine
        .compile(
            "steps[1].body",
            &json!({
                "id": "{{ loans.loan_id }}",
                "holder": "{{ steps.client.encodedKey }}",
                "n": "{{ range(3) | length if loans.x else dict(a=1) }}",
                "r": "{{ loans['amount'] }}",
                "s": {"t": ["{{ unit.key }}-{{ plan.name | lower }}"]},
                "plain": "text",
            }),
        )
        .unwrap();
    assert_eq!(
        tree.variables().into_iter().collect::<Vec<_>>(),
        [
            "loans",
            "loans.loan_id",
            "loans.x",
            "plan.name",
            "steps.client.encodedKey",
            "unit.key"
        ]
    );
    let at = |path: &str| {
        tree.references()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.variable.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(at("steps[1].body.holder"), ["steps.client.encodedKey"]);
    assert_eq!(at("steps[1].body.s.t[0]"), ["unit.key", "plan.name"]);
    assert!(!tree.is_static());
    assert!(
        engine
            .compile("body", &json!({"a": [1, "x"]}))
            .unwrap()
            .is_static()
    );
}

#[test]
fn whole_rows_and_lists_reach_the_template() {
    let engine = Engine::new();
    let row = loan_row();
    let out = json!({"loans": {"items": [{"a": 1}, {"a": 2}]}});
    let ctx = Context::new()
        .source("loans", &LOAN_HEADERS, &row)
        .step("x", &out);
    let got = render_with(
        &engine,
        json!({
            "n": "{{ loans | length }}",
            "amount": "{{ loans['amount'] }}",
            "first": "{{ steps.x.loans.items[0].a }}",
            "all": "{{ steps.x.loans.items | map(attribute='a') | list }}",
        }),
        &ctx,
    )
    .unwrap();
    assert_eq!(
        got,
        json!({"n": 8, "amount": "12500.50", "first": 1, "all": [1, 2]})
    );
}

#[test]
fn syntax_errors_say_where() {
    let engine = Engine::new();
    let err = engine
        .compile(
            "body",
            &json!({
                "scheduleSettings": {"repaymentInstallments": "{{ loans.installments | }}"},
                "ok": "{{ loans.loan_id }}",
                "amount": "{{ loans.amount | decmal }}",
                "odd key": ["{{ loans.x is nosuchtest }}", "{% if x %}y{% endif %}", "a {{ b"],
            }),
        )
        .unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(TemplateError::path).collect();
    assert_eq!(
        paths,
        [
            "body.amount",
            "body[\"odd key\"][0]",
            "body[\"odd key\"][1]",
            "body[\"odd key\"][2]",
            "body.scheduleSettings.repaymentInstallments",
        ]
    );
    let messages = err.to_string();
    assert!(messages.contains("unknown filter `decmal`"), "{messages}");
    assert!(messages.contains("unknown test `nosuchtest`"), "{messages}");
    assert!(messages.contains("`{%` is not supported"), "{messages}");
    assert!(messages.contains("not closed"), "{messages}");
    assert!(
        messages.contains(
            "body.scheduleSettings.repaymentInstallments: unexpected end of input, expected a filter name (at character"
        ) || messages.contains("body.scheduleSettings.repaymentInstallments: "),
        "{messages}"
    );
    let syntax = err.0.last().unwrap();
    assert!(
        matches!(syntax, TemplateError::Syntax { template, .. } if template == "{{ loans.installments | }}")
    );
}

#[test]
fn other_errors_are_reported_without_values() {
    let engine = Engine::new();
    let headers = ["a"];
    let row = ["secret"];
    let ctx = Context::new().source("loans", &headers, &row);
    let err = render_with(&engine, json!("{{ loans.a - 1 }}"), &ctx).unwrap_err();
    assert!(matches!(err, TemplateError::Eval { .. }), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    let err = render_with(&engine, json!("{{ range }}"), &ctx).unwrap_err();
    assert!(matches!(err, TemplateError::NotJson { .. }), "{err}");
    let err = render_with(&engine, json!("{{ loans.a | int }}"), &ctx).unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn context_accepts_common_row_types() {
    let engine = Engine::new();
    let tree = engine
        .compile_str("path", "/loans/{{ loans.id }}/{{ clients.id }}")
        .unwrap();
    let headers = vec!["id".to_string()];
    let row = vec!["L1".to_string()];
    let record = csv::StringRecord::from(vec!["C1"]);
    let record_headers = csv::StringRecord::from(vec!["id"]);
    let ctx =
        Context::new()
            .source("loans", &headers, &row)
            .source("clients", &record_headers, &record);
    assert_eq!(tree.render(&ctx).unwrap(), json!("/loans/L1/C1"));
    let map: std::collections::HashMap<String, String> =
        [("id".to_string(), "C2".to_string())].into();
    let ctx = Context::new()
        .source("loans", &headers, &row)
        .source_row("clients", &map);
    assert_eq!(tree.render(&ctx).unwrap(), json!("/loans/L1/C2"));
    let outputs: std::collections::BTreeMap<String, serde_json::Value> =
        [("c".to_string(), json!({"k": 1}))].into();
    let ctx = Context::new().steps(&outputs);
    assert_eq!(
        engine
            .compile_str("x", "{{ steps.c.k }}")
            .unwrap()
            .render(&ctx)
            .unwrap(),
        json!(1)
    );
}

#[test]
fn compiled_once_rendered_many_times() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let engine = Engine::new().leak();
    let tree: Tree<'static> = engine
        .compile(
            "body",
            &json!({
                "id": "{{ loans.loan_id }}",
                "amount": "{{ loans.amount | decimal }}",
                "n": "{{ loans.installments | int }}",
                "label": "Loan {{ loans.loan_id }}",
                "type": "CLIENT",
            }),
        )
        .unwrap();
    let when = engine.condition("when", "loans.deposit_id != ''").unwrap();
    assert_send_sync(&tree);
    assert_send_sync(&when);
    let mut row = loan_row();
    let mut total = 0u64;
    for i in 0..100_000u64 {
        row[0] = format!("L-{i}");
        let ctx = Context::new().source("loans", &LOAN_HEADERS, &row);
        let out = tree.render(&ctx).unwrap();
        assert!(!when.eval(&ctx).unwrap());
        total += out["n"].as_u64().unwrap();
        if i == 99_999 {
            assert_eq!(out["label"], json!("Loan L-99999"));
        }
    }
    assert_eq!(total, 1_200_000);
}

#[test]
fn checking_with_a_memo_answers_what_rendering_does() {
    let engine = Engine::new();
    let tree = engine
        .compile(
            "body",
            &json!({
                "id": "{{ loans.loan_id }}",
                "amount": "{{ loans.amount | decimal }}",
                "when": "{{ loans.disbursed_on | date('%d/%m/%Y') }}",
                "text": "n={{ loans.installments | int }} {{ unit.key }}",
                "nested": ["{{ loans.rate | decimal(places=2) }}", "{{ steps.client.id }}"],
                "whole": "{{ loans | length }}",
                "missing": "{{ loans.nope | default('x') }}",
            }),
        )
        .unwrap();
    let condition = engine
        .condition("when", "loans.amount | decimal > 100")
        .unwrap();
    let undefined = engine.compile_str("path", "{{ loans.nope }}").unwrap();
    let output = json!({ "id": "C-1" });
    let headers: Vec<&str> = LOAN_HEADERS.to_vec();
    let cells = [
        ["L-1", "12500.50", "12", "", "15/01/2024", "", "0.1", "x"],
        ["L-2", "abc", "12", "", "15/01/2024", "", "0.1", "x"],
        ["L-3", "1.5", "1.5", "", "15/01/2024", "", "0.1", "x"],
        ["L-4", "12500.50", "12", "", "2024-01-15", "", "0.1", "x"],
        ["L-5", "99", "12", "", "15/01/2024", "", "zz", "x"],
    ];
    let mut memo = Memo::new();
    // Twice over: the second time, every outcome comes from the memo.
    for _ in 0..2 {
        for row in &cells {
            let row: Vec<&str> = row.to_vec();
            let ctx = Context::new()
                .source("loans", &headers, &row)
                .step("client", &output)
                .unit_key("C-1");
            let value = tree.render(&ctx);
            let rendered = value.clone().map(|_| ());
            assert_eq!(tree.check(&ctx, &mut memo), rendered, "{row:?}");
            // Rendering through the memo: the same values, the same errors.
            assert_eq!(tree.render_memo(&ctx, &mut memo), value, "{row:?}");
            assert_eq!(
                undefined.render_memo(&ctx, &mut memo),
                undefined.render(&ctx)
            );
            assert_eq!(condition.eval_memo(&ctx, &mut memo), condition.eval(&ctx));
            assert_eq!(
                undefined.check(&ctx, &mut memo),
                undefined.render(&ctx).map(|_| ())
            );
        }
    }
}

#[test]
fn filter_chains_called_directly_answer_what_the_engine_does() {
    let engine = Engine::with_default_offset(parse_offset("+01:00").unwrap());
    let chains = [
        "decimal",
        "decimal()",
        "decimal(comma=true)",
        "decimal(thousands=true, places=2)",
        "decimal(comma=true, thousands=true)",
        "decimal(places=0)",
        "decimal(places=30)",
        "int",
        "date",
        "date('%d/%m/%Y')",
        "datetime",
        "datetime(\"%d/%m/%Y\")",
        "datetime(tz='+02:00')",
        "datetime('%d/%m/%Y %H:%M', tz=\"Z\")",
        "datetime(tz='bad')",
        "trim | upper",
        "lower",
        "decimal | int",
        "int | decimal(places=1)",
        "date | datetime",
        "decimal | trim",
    ];
    let cells = [
        "12500.50",
        "",
        "  ",
        "-",
        "12,x",
        "1,234.5",
        "1.234,5",
        "12",
        " -7 ",
        "+3",
        "1e5",
        "12.0",
        "2024-13-45",
        "2024-01-15",
        "15/01/2024",
        "15/01/2024 10:30",
        "2024-01-15T10:00:00+05:00",
        "2024-01-15 10:00:00",
        "99999999999999999999999999999",
        "99999999999999999999",
        "Ada Lovelace",
        " x ",
    ];
    let headers = ["amount"];
    for chain in chains {
        for template in [
            format!("{{{{ loans.amount | {chain} }}}}"),
            format!("a {{{{loans.amount|{chain}}}}}"),
        ] {
            let tree = engine.compile_str("body", &template).unwrap();
            let expr = match &tree.root {
                Node::Typed(expr) => expr,
                Node::Interpolated(parts) => match &parts[1] {
                    Part::Expr(expr) => expr,
                    Part::Text(_) => unreachable!(),
                },
                _ => unreachable!(),
            };
            let direct = expr.chain.as_ref().expect(&template);
            for cell in cells {
                let row = [cell];
                let ctx = Context::new().source("loans", &headers, &row);
                let engine_value = expr.eval(&expr.needs.build(&ctx, Mode::Value), &ctx);
                let direct_value = expr.eval_chain(direct, cell, &ctx);
                let shown = |v: Result<Value, TemplateError>| {
                    v.map(|v| {
                        (
                            value_to_json(&v).ok(),
                            value_to_text(&v).ok().map(|t| t.to_string()),
                        )
                    })
                };
                assert_eq!(
                    shown(direct_value),
                    shown(engine_value),
                    "{template} on {cell:?}"
                );
                assert_eq!(
                    tree.check(&ctx, &mut Memo::new()),
                    tree.render(&ctx).map(|_| ()),
                    "{template} on {cell:?}"
                );
            }
        }
    }
    // Anything else is left to the engine.
    for template in [
        "{{ loans.amount }}",
        "{{ loans.amount | decimal(2) }}",
        "{{ loans.amount | decimal(places=-1) }}",
        "{{ loans.amount | decimal(comma=True) }}",
        "{{ loans.amount | default('x') }}",
        "{{ loans.amount | date(format='%d') }}",
        "{{ loans.amount | date('%d\\n') }}",
        "{{ loans.amount | int(1) }}",
        "{{ loans.amount | trim('x') }}",
        "{{ loans.amount | length }}",
        "{{ loans.amount ~ 'x' }}",
        "{{ loans.amount[0] | int }}",
        "{{ unit.key | int }}",
        "{{ steps.client.id | int }}",
    ] {
        let tree = engine.compile_str("body", template).unwrap();
        let Node::Typed(expr) = &tree.root else {
            unreachable!()
        };
        assert!(expr.chain.is_none(), "{template}");
    }
}
