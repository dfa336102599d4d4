//! The money rules a tenant's loan products set (../shared/mambu-api.md §8, "Fees",
//! "Repayments and backdating"), over HTTP against the real binary's sandbox: predefined and
//! arbitrary fees, backdating, prepayments and future payments. Each refusal is checked with
//! its status and Mambu's v2 error body; each allowed case is accepted. Profiles that differ
//! from the shipped ones are written into a temp dir from fixtures/tenants/lenient.yaml (or
//! strict.yaml) with the settings changed, and served with `sandbox --tenant`.

mod common;

use common::{API_KEY, Answer, Api, MICRO_LOAN, Sandbox, active_loan, body};
use mambu_migrate::sandbox::TenantProfile;
use mambu_migrate::sandbox::products::{
    FuturePaymentsAcceptance, LoanProduct, PredefinedFee, PrepaymentAcceptance,
};
use serde_json::{Value, json};

/// A sandbox serving `profile`, its first user's API key made common's `API_KEY`.
fn serve(mut profile: TenantProfile) -> Sandbox {
    profile.users[0].api_key = Some(API_KEY.into());
    Sandbox::tenant(&serde_yaml_ng::to_string(&profile).unwrap(), &[])
}

/// fixtures/tenants/lenient.yaml with `change` applied to its PL-STD product.
fn lenient_with(change: impl FnOnce(&mut LoanProduct)) -> TenantProfile {
    let mut profile = TenantProfile::load("fixtures/tenants/lenient.yaml".as_ref()).unwrap();
    change(product(&mut profile, "PL-STD"));
    profile
}

fn product<'a>(profile: &'a mut TenantProfile, id: &str) -> &'a mut LoanProduct {
    profile
        .loan_products
        .iter_mut()
        .find(|p| p.id == id)
        .unwrap()
}

fn fee(id: &str, key: &str, amount: Option<&str>, trigger: &str, state: &str) -> PredefinedFee {
    PredefinedFee {
        id: id.into(),
        encoded_key: key.into(),
        name: id.into(),
        amount: amount.map(|a| a.parse().unwrap()),
        trigger: trigger.into(),
        state: state.into(),
    }
}

/// Asserts a refusal: the status and the whole v2 error body.
#[track_caller]
fn refused(answer: &Answer, status: u16, code: i64, reason: &str, source: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({ "errors": [{ "errorCode": code, "errorReason": reason, "errorSource": source }] }),
        "{answer:?}"
    );
}

#[track_caller]
fn accepted(answer: &Answer) -> &Value {
    assert_eq!(answer.status, 201, "{answer:?}");
    &answer.body
}

async fn fee_of(api: &Api, loan: &str, body: Value) -> Answer {
    api.post(&format!("/loans/{loan}/fee-transactions"), body)
        .await
}

async fn repay(api: &Api, loan: &str, amount: &str, value_date: &str) -> Answer {
    api.post(
        &format!("/loans/{loan}/repayment-transactions"),
        common::body(&format!(
            r#"{{"amount":{amount},"valueDate":"{value_date}"}}"#
        )),
    )
    .await
}

/// What installment `n` (from 1) of the loan still owes, and its due date.
async fn installment(api: &Api, loan: &str, n: usize) -> (rust_decimal::Decimal, String) {
    let schedule = api.get(&format!("/loans/{loan}/schedule")).await;
    assert_eq!(schedule.status, 200, "{schedule:?}");
    let inst = &schedule.body["installments"][n - 1];
    let owed = ["principal", "interest", "fee"]
        .iter()
        .map(|part| mambu_migrate::sandbox::state::decimal(&inst[part]["amount"]["due"]).unwrap())
        .sum();
    (owed, inst["dueDate"].as_str().unwrap().to_owned())
}

const FIXED_FEE: &str = "8a19c0de00000000000000000000f101";
const OPEN_FEE: &str = "8a19c0de00000000000000000000f102";
const INACTIVE_FEE: &str = "8a19c0de00000000000000000000f103";
const AUTOMATIC_FEE: &str = "8a19c0de00000000000000000000f104";
const MICRO_FEE: &str = "8a19c0de00000000000000000000f105";
const AT: &str = "2024-01-20T00:00:00+00:00";

#[tokio::test]
async fn a_predefined_fee_is_an_active_manual_fee_of_the_product_and_arbitrary_ones_need_the_product()
 {
    let mut profile = lenient_with(|p| {
        p.fees_settings.allow_arbitrary_fees = false;
        p.fees_settings.fees = vec![
            fee("FIXED", FIXED_FEE, Some("25"), "MANUAL", "ACTIVE"),
            fee("OPEN", OPEN_FEE, None, "MANUAL", "ACTIVE"),
            fee("RETIRED", INACTIVE_FEE, None, "MANUAL", "INACTIVE"),
            fee(
                "LATE",
                AUTOMATIC_FEE,
                Some("10"),
                "LATE_REPAYMENT",
                "ACTIVE",
            ),
        ];
    });
    product(&mut profile, "MICRO").fees_settings.fees =
        vec![fee("MICRO-FEE", MICRO_FEE, None, "MANUAL", "ACTIVE")];
    let tenant = serve(profile);
    let api = &tenant.api();
    let (_, loan) = active_loan(api, "CL-FEE", "LN-FEE", "600").await;
    let with = |key: &str, amount: Option<&str>| {
        let mut b = json!({ "predefinedFeeKey": key, "installmentNumber": 2, "valueDate": AT });
        if let Some(amount) = amount {
            b["amount"] = body(amount);
        }
        b
    };

    // Refused: an amount and no predefined fee; a key of no fee of this product (another
    // product's, or none at all); an inactive fee; a fee Mambu applies itself; an amount other
    // than the fee's fixed one; no amount for a fee that has none.
    let arbitrary = json!({ "amount": 5, "installmentNumber": 2, "valueDate": AT });
    let cases = [
        (
            arbitrary,
            174,
            "ARBITRARY_FEE_NOT_ALLOWED",
            "predefinedFeeKey",
        ),
        (
            with(MICRO_FEE, Some("5")),
            251,
            "INVALID_FEE_KEY",
            "predefinedFeeKey",
        ),
        (
            with("NO-SUCH-FEE", Some("5")),
            251,
            "INVALID_FEE_KEY",
            "predefinedFeeKey",
        ),
        (
            with(INACTIVE_FEE, Some("5")),
            255,
            "FEE_NOT_ACTIVE",
            "predefinedFeeKey",
        ),
        (
            with(AUTOMATIC_FEE, None),
            256,
            "FEE_NOT_ALLOWED",
            "predefinedFeeKey",
        ),
        (
            with(FIXED_FEE, Some("30")),
            252,
            "INCONSISTENT_FEE_AMOUNT_WITH_PRODUCT_FEE",
            "amount",
        ),
        (with(OPEN_FEE, None), 3652, "MANDATORY_FEE_AMOUNT", "amount"),
    ];
    for (b, code, reason, source) in cases {
        refused(&fee_of(api, &loan, b).await, 400, code, reason, source);
    }
    // The installment-number rules hold for predefined fees too.
    refused(
        &fee_of(
            api,
            &loan,
            json!({ "predefinedFeeKey": OPEN_FEE, "amount": 5, "valueDate": AT }),
        )
        .await,
        400,
        3752,
        "INSTALLMENT_NUMBER_MANDATORY_FOR_FIXED_ACCOUNTS",
        "installmentNumber",
    );
    let (before, _) = installment(api, &loan, 2).await;

    // Accepted: the fixed fee without an amount or with its own; the open fee with the body's
    // amount; a fee named by its id.
    for (b, amount) in [
        (with(FIXED_FEE, None), "25"),
        (with(FIXED_FEE, Some("25.00")), "25"),
        (with(OPEN_FEE, Some("12.5")), "12.5"),
        (with("OPEN", Some("\"7.25\"")), "7.25"),
    ] {
        let answer = fee_of(api, &loan, b).await;
        assert_eq!(accepted(&answer)["amount"].to_string(), amount);
        assert_eq!(answer.body["type"], "FEE_APPLIED");
    }
    let (after, _) = installment(api, &loan, 2).await;
    assert_eq!(after - before, "69.75".parse().unwrap());

    // The lenient tenant's products allow arbitrary fees: an amount alone is still taken.
    let sandbox = Sandbox::start(&[]);
    let lenient = sandbox.api();
    let (_, loan) = active_loan(&lenient, "CL-FEE", "LN-FEE", "600").await;
    let answer = fee_of(
        &lenient,
        &loan,
        json!({ "amount": 5, "installmentNumber": 2, "valueDate": AT }),
    )
    .await;
    accepted(&answer);
}

#[tokio::test]
async fn a_fee_or_repayment_may_not_precede_a_later_transaction_of_the_account() {
    // A rule of every tenant: the lenient one enforces it too.
    let sandbox = Sandbox::start(&[]);
    let api = &sandbox.api();
    let (_, loan) = active_loan(api, "CL-BD", "LN-BD", "600").await;
    accepted(&repay(api, &loan, "10", "2024-03-01T00:00:00+00:00").await);

    let early_fee =
        json!({ "amount": 5, "installmentNumber": 3, "valueDate": "2024-02-20T00:00:00+00:00" });
    refused(
        &fee_of(api, &loan, early_fee).await,
        400,
        326,
        "BACKDATE_BEFORE_OTHER_OPERATION",
        "valueDate",
    );
    refused(
        &repay(api, &loan, "10", "2024-02-29T23:59:59+00:00").await,
        400,
        326,
        "BACKDATE_BEFORE_OTHER_OPERATION",
        "valueDate",
    );
    // Before the disbursement (2024-01-15) is before the account's activation.
    refused(
        &repay(api, &loan, "10", "2024-01-10T00:00:00+00:00").await,
        400,
        3615,
        "BACKDATE_BEFORE_ACTIVATION",
        "valueDate",
    );
    // The same value date is not before it, and later ones follow.
    accepted(&repay(api, &loan, "10", "2024-03-01T00:00:00+00:00").await);
    let later_fee =
        json!({ "amount": 5, "installmentNumber": 3, "valueDate": "2024-03-02T00:00:00+00:00" });
    accepted(&fee_of(api, &loan, later_fee).await);
    refused(
        &repay(api, &loan, "10", "2024-03-01T00:00:00+00:00").await,
        400,
        326,
        "BACKDATE_BEFORE_OTHER_OPERATION",
        "valueDate",
    );
    let listed = api.get(&format!("/loans/{loan}/transactions")).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 4, "{listed:?}");
}

#[tokio::test]
async fn no_prepayments_lets_a_repayment_pay_only_what_is_due_by_its_value_date() {
    let tenant = serve(lenient_with(|p| {
        p.payment_settings.prepayment_settings.prepayment_acceptance =
            PrepaymentAcceptance::NoPrepayments;
    }));
    let api = &tenant.api();
    let (_, loan) = active_loan(api, "CL-PP", "LN-PP", "600").await;
    let (first, first_due) = installment(api, &loan, 1).await;

    // Nothing is due before the first due date: any repayment then pays ahead.
    refused(
        &repay(api, &loan, "1", "2024-02-01T00:00:00+00:00").await,
        400,
        123,
        "PREPAYMENT_NOT_ALLOWED_ERROR",
        "amount",
    );
    // A fee on the first installment is due with it.
    let fee =
        json!({ "amount": 5, "installmentNumber": 1, "valueDate": "2024-02-01T00:00:00+00:00" });
    accepted(&fee_of(api, &loan, fee).await);
    let due = first + rust_decimal::Decimal::from(5);
    let cent = rust_decimal::Decimal::new(1, 2);
    refused(
        &repay(api, &loan, &(due + cent).to_string(), &first_due).await,
        400,
        123,
        "PREPAYMENT_NOT_ALLOWED_ERROR",
        "amount",
    );
    // What is due on the first due date, fee, interest and principal: accepted.
    let paid = repay(api, &loan, &due.to_string(), &first_due).await;
    assert_eq!(accepted(&paid)["affectedAmounts"]["feesAmount"], 5);
    // Once it is paid, nothing more is due until the second due date.
    refused(
        &repay(api, &loan, "1", &first_due).await,
        400,
        123,
        "PREPAYMENT_NOT_ALLOWED_ERROR",
        "amount",
    );
    let (second, second_due) = installment(api, &loan, 2).await;
    accepted(&repay(api, &loan, &(second - cent).to_string(), &second_due).await);
    accepted(&repay(api, &loan, &cent.to_string(), &second_due).await);

    // The lenient tenant's products accept prepayments.
    let sandbox = Sandbox::start(&[]);
    let lenient = sandbox.api();
    let (_, loan) = active_loan(&lenient, "CL-PP", "LN-PP", "600").await;
    accepted(&repay(&lenient, &loan, "100", "2024-02-01T00:00:00+00:00").await);
}

#[tokio::test]
async fn no_future_payments_refuses_a_repayment_dated_after_now() {
    const FUTURE: &str = "2099-01-05T00:00:00+00:00";
    let tenant = serve(lenient_with(|p| {
        p.payment_settings
            .prepayment_settings
            .future_payments_acceptance = FuturePaymentsAcceptance::NoFuturePayments;
    }));
    let api = &tenant.api();
    let (_, loan) = active_loan(api, "CL-FP", "LN-FP", "600").await;
    refused(
        &repay(api, &loan, "10", FUTURE).await,
        400,
        141,
        "FUTURE_PAYMENT_NOT_ALLOWED_ERROR",
        "valueDate",
    );
    // Dated today (no valueDate: the sandbox's now) is not in the future.
    let today = api
        .post(
            &format!("/loans/{loan}/repayment-transactions"),
            json!({ "amount": 10 }),
        )
        .await;
    accepted(&today);

    // ACCEPT_FUTURE_PAYMENTS (the lenient tenant): a future-dated repayment is taken; a fee
    // dated after now is still refused (the setting concerns repayments).
    let sandbox = Sandbox::start(&[]);
    let lenient = sandbox.api();
    let (_, loan) = active_loan(&lenient, "CL-FP", "LN-FP", "600").await;
    let future_fee = json!({ "amount": 5, "installmentNumber": 3, "valueDate": FUTURE });
    refused(
        &fee_of(&lenient, &loan, future_fee).await,
        400,
        3616,
        "REPAYMENT_DATE_IN_THE_FUTURE_ERROR",
        "valueDate",
    );
    accepted(&repay(&lenient, &loan, "10", FUTURE).await);
}

#[tokio::test]
async fn accept_overpayments_still_refuses_paying_more_than_the_balance() {
    // The sandbox keeps no overpayment balance: paying more than is owed stays refused under
    // every setting (src/sandbox/state/transactions.rs), and paying all of it is taken.
    let tenant = serve(lenient_with(|p| {
        p.payment_settings
            .prepayment_settings
            .future_payments_acceptance = FuturePaymentsAcceptance::AcceptOverpayments;
    }));
    let api = &tenant.api();
    let (_, loan) = active_loan(api, "CL-OP", "LN-OP", "600").await;
    let mut owed = rust_decimal::Decimal::ZERO;
    for n in 1..=3 {
        owed += installment(api, &loan, n).await.0;
    }
    let at = "2024-02-01T00:00:00+00:00";
    let over = (owed + rust_decimal::Decimal::new(1, 2)).to_string();
    refused(
        &repay(api, &loan, &over, at).await,
        400,
        110,
        "EXCESS_REPAYMENT_ERROR",
        "amount",
    );
    accepted(&repay(api, &loan, &owed.to_string(), at).await);
    assert_eq!(
        api.get(&format!("/loans/{loan}")).await.body["accountState"],
        "CLOSED"
    );
}

#[tokio::test]
async fn the_strict_products_take_the_legacy_fee_and_refuse_micro_prepayments() {
    // fixtures/tenants/strict.yaml's products as they are (Lisbon, LEGACY-FEE, no arbitrary
    // fees, no future payments, no prepayments on MICRO), without its client rules, custom
    // fields and four-eyes, which other tests show.
    let mut profile = TenantProfile::load("fixtures/tenants/strict.yaml".as_ref()).unwrap();
    profile.client_rules = Default::default();
    profile.custom_field_sets.clear();
    for p in &mut profile.loan_products {
        p.four_eyes_principle.active_for_loan_approval = false;
    }
    let tenant = serve(profile);
    let api = &tenant.api();
    // January in Lisbon is +00:00, as active_loan's dates are.
    let (holder, loan) = active_loan(api, "CL-ST", "LN-ST", "6000").await;
    refused(
        &fee_of(
            api,
            &loan,
            json!({ "amount": 18.99, "installmentNumber": 1, "valueDate": AT }),
        )
        .await,
        400,
        174,
        "ARBITRARY_FEE_NOT_ALLOWED",
        "predefinedFeeKey",
    );
    let legacy = json!({ "predefinedFeeKey": "8a19c0de00000000000000000000f001", "amount": 18.99, "installmentNumber": 1, "valueDate": AT });
    accepted(&fee_of(api, &loan, legacy).await);
    // PL-STD accepts prepayments (the sample makes some), not future payments.
    accepted(&repay(api, &loan, "50", "2024-01-25T00:00:00+00:00").await);
    refused(
        &repay(api, &loan, "50", "2099-01-05T00:00:00+00:00").await,
        400,
        141,
        "FUTURE_PAYMENT_NOT_ALLOWED_ERROR",
        "valueDate",
    );

    let micro = api
        .post(
            "/loans",
            body(&format!(
                r#"{{"id":"LN-MC","accountHolderKey":"{holder}","accountHolderType":"CLIENT","productTypeKey":"{MICRO_LOAN}","loanAmount":1000,"interestSettings":{{"interestRate":20}},"scheduleSettings":{{"gracePeriod":0,"repaymentInstallments":3}}}}"#
            )),
        )
        .await;
    accepted(&micro);
    let approved = api
        .post("/loans/LN-MC:changeState", json!({ "action": "APPROVE" }))
        .await;
    assert_eq!(approved.status, 200, "{approved:?}");
    let disbursed = api
        .post(
            "/loans/LN-MC/disbursement-transactions",
            json!({ "valueDate": "2024-01-15T00:00:00+00:00" }),
        )
        .await;
    accepted(&disbursed);
    refused(
        &repay(api, "LN-MC", "50", "2024-01-25T00:00:00+00:00").await,
        400,
        123,
        "PREPAYMENT_NOT_ALLOWED_ERROR",
        "amount",
    );
    let (first, first_due) = installment(api, "LN-MC", 1).await;
    accepted(&repay(api, "LN-MC", &first.to_string(), &first_due).await);
}
