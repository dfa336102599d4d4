//! The tenant profile's access and client rules over HTTP, against the real binary's sandbox
//! (`mambu-migrate sandbox --port 0 --tenant FILE`): each user's permissions (a missing one is
//! a 403 naming it), backdating, four-eyes approval, ID documents, the duplicate-client check,
//! loans per client, `detailsLevel`, and the organization setup, each with its accepted case.

mod common;

use std::path::{Path, PathBuf};

use common::{Answer, Api, CURRENT_ACCOUNT, MICRO_LOAN, PERSONAL_LOAN, Sandbox, body};
use serde_json::{Value, json};

/// The strict profile's users (`fixtures/tenants/strict.yaml`) by their API keys.
const MIGRATION: &str = "strict-migration-api-key";
const APPROVER: &str = "strict-approver-api-key";
const AUDITOR: &str = "strict-auditor-api-key";
/// The lenient profile's administrator.
const ADMIN: &str = "sandbox-api-key";

fn profile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tenants")
        .join(name)
}

/// A sandbox serving a shipped profile (`mambu-migrate sandbox --port 0 --tenant FILE`).
struct Tenant(Sandbox);

impl Tenant {
    fn strict() -> Self {
        Self::edited("strict.yaml", &[])
    }

    /// A shipped profile with each `(from, to)` replaced (each `from` must be there), its
    /// custom fields made optional (tests/custom_fields.rs shows them required).
    fn edited(base: &str, replace: &[(&str, &str)]) -> Self {
        let mut text = std::fs::read_to_string(profile(base))
            .unwrap()
            .replace("required: true", "required: false");
        for (from, to) in replace {
            assert!(text.contains(from), "{base} no longer has `{from}`");
            text = text.replace(from, to);
        }
        Tenant(Sandbox::tenant(&text, &[]))
    }

    /// The API as the user with this API key.
    fn as_user(&self, api_key: &str) -> Api {
        self.0.api().with_api_key(api_key)
    }

    async fn stats(&self) -> Value {
        self.0.stats().await
    }
}

/// Asserts a v2 refusal: status, code, reason, and the errorSource (exactly).
fn refused(answer: &Answer, status: u16, code: i64, reason: &str, source: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({ "errors": [{ "errorCode": code, "errorReason": reason, "errorSource": source }] }),
        "{answer:?}"
    );
}

/// Asserts Mambu's 403 naming the permission the caller lacks.
fn forbidden(answer: &Answer, permission: &str) {
    refused(answer, 403, 15, "INVALID_PERMISSIONS", permission);
}

/// A client the strict profile accepts: one National ID.
fn strict_client(id: &str, last: &str, document: &str) -> Value {
    json!({
        "id": id, "firstName": "Ana", "lastName": last, "birthDate": "1970-01-01",
        "idDocuments": [{ "documentId": document, "documentType": "National ID" }],
    })
}

fn loan_body(id: &str, holder: &str, product: &str) -> Value {
    body(&format!(
        r#"{{"id":"{id}","accountHolderKey":"{holder}","accountHolderType":"CLIENT","productTypeKey":"{product}","loanAmount":1000,"interestSettings":{{"interestRate":12}},"scheduleSettings":{{"gracePeriod":0,"repaymentInstallments":3}}}}"#
    ))
}

async fn approve(api: &Api, loan: &str) -> Answer {
    api.post(
        &format!("/loans/{loan}:changeState"),
        json!({ "action": "APPROVE" }),
    )
    .await
}

#[tokio::test]
async fn each_user_is_refused_what_it_lacks_with_the_permission_named() {
    let tenant = Tenant::strict();
    let auditor = tenant.as_user(AUDITOR);
    let approver = tenant.as_user(APPROVER);
    let migration = tenant.as_user(MIGRATION);

    // The auditor reads, and is refused every change, before anything happens; a refusal is
    // not stored under its Idempotency-Key.
    let key = "6f1c1f43-5d7e-4a8e-9a43-3c5e5f7d2a10";
    let client = strict_client("CL-1", "Silva", "NID-1");
    forbidden(
        &auditor.post_keyed("/clients", client.clone(), key).await,
        "CREATE_CLIENT",
    );
    let created = migration.post_keyed("/clients", client, key).await;
    assert_eq!(created.status, 201, "{created:?}");
    let holder = created.key();
    assert_eq!(auditor.get("/clients/CL-1").await.status, 200);
    forbidden(
        &auditor
            .post("/loans", loan_body("LN-1", &holder, PERSONAL_LOAN))
            .await,
        "CREATE_LOAN_ACCOUNT",
    );
    forbidden(
        &auditor
            .post("/deposits", json!({ "accountHolderKey": holder, "accountHolderType": "CLIENT", "name": "Current", "productTypeKey": CURRENT_ACCOUNT }))
            .await,
        "CREATE_SAVINGS_ACCOUNT",
    );

    // The approver sees loans and products, not clients or branches.
    forbidden(&approver.get("/clients/CL-1").await, "VIEW_CLIENT_DETAILS");
    forbidden(&approver.get("/branches").await, "VIEW_BRANCH_DETAILS");
    assert_eq!(approver.get("/loanproducts").await.status, 200);
    assert_eq!(approver.get("/setup/organization").await.status, 200);

    let loan = migration
        .post("/loans", loan_body("LN-1", &holder, PERSONAL_LOAN))
        .await;
    assert_eq!(loan.status, 201, "{loan:?}");
    assert_eq!(auditor.get("/loans/LN-1").await.status, 200);
    forbidden(&approve(&auditor, "LN-1").await, "APPROVE_LOANS");
    forbidden(
        &approver
            .post("/loans/LN-1:changeState", json!({ "action": "REJECT" }))
            .await,
        "REJECT_LOANS",
    );
    forbidden(
        &auditor
            .post("/loans/LN-1/lock-transactions", json!({}))
            .await,
        "LOCK_LOAN_ACCOUNTS",
    );
    forbidden(
        &auditor
            .put("/loans/LN-1/schedule", json!({ "installments": [] }))
            .await,
        "EDIT_REPAYMENT_SCHEDULE",
    );

    // Nothing the refusals touched changed, and no 403 is an injected fault.
    let stats = tenant.stats().await;
    assert_eq!(stats["requests"]["injected_faults"], 0, "{stats}");
    assert_eq!(stats["requests"]["idempotent_replays"], 0, "{stats}");
    assert_eq!(stats["requests"]["by_status"]["403"], 9, "{stats}");
    assert_eq!(
        migration.get("/loans/LN-1").await.body["accountState"],
        "PENDING_APPROVAL"
    );
}

#[tokio::test]
async fn the_settlement_link_is_refused_in_v1s_body() {
    let tenant = Tenant::strict();
    let answer = tenant.as_user(APPROVER).link("LN-1", "DP-1").await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({ "returnCode": 15, "returnStatus": "INVALID_PERMISSIONS", "errorSource": "LINK_ACCOUNTS" })
    );
}

#[tokio::test]
async fn four_eyes_refuses_the_creators_approval_and_takes_another_users() {
    let tenant = Tenant::strict();
    let migration = tenant.as_user(MIGRATION);
    let approver = tenant.as_user(APPROVER);
    let holder = migration
        .post("/clients", strict_client("CL-1", "Silva", "NID-1"))
        .await
        .key();
    let loan = migration
        .post("/loans", loan_body("LN-1", &holder, PERSONAL_LOAN))
        .await;
    assert_eq!(loan.status, 201, "{loan:?}");

    // PL-STD has fourEyesPrinciple.activeForLoanApproval: its creator may not approve it,
    // though it holds APPROVE_LOANS.
    refused(
        &approve(&migration, "LN-1").await,
        400,
        206,
        "INVALID_USER_WHO_APPROVED_THE_LOAN_CANNOT_DISBURSE_IT",
        "fourEyesPrinciple.activeForLoanApproval: `migration` created the loan and cannot approve it",
    );
    assert_eq!(
        migration.get("/loans/LN-1").await.body["accountState"],
        "PENDING_APPROVAL"
    );
    let approved = approve(&approver, "LN-1").await;
    assert_eq!(approved.status, 200, "{approved:?}");
    assert_eq!(approved.body["accountState"], "APPROVED");

    // The creator disburses (backdated: it holds BACKDATE_LOAN_TRANSACTIONS).
    let disbursed = migration
        .post(
            "/loans/LN-1/disbursement-transactions",
            json!({ "valueDate": "2024-01-15T00:00:00+00:00" }),
        )
        .await;
    assert_eq!(disbursed.status, 201, "{disbursed:?}");

    // MICRO has no four-eyes: its creator approves it.
    let micro = migration
        .post("/loans", loan_body("LN-2", &holder, MICRO_LOAN))
        .await;
    assert_eq!(micro.status, 201, "{micro:?}");
    assert_eq!(approve(&migration, "LN-2").await.status, 200);
}

#[tokio::test]
async fn a_backdated_transaction_needs_the_backdating_permission() {
    let tenant = Tenant::edited(
        "strict.yaml",
        &[(
            "ENTER_REPAYMENT, BACKDATE_LOAN_TRANSACTIONS,",
            "ENTER_REPAYMENT,",
        )],
    );
    let migration = tenant.as_user(MIGRATION);
    let holder = migration
        .post("/clients", strict_client("CL-1", "Silva", "NID-1"))
        .await
        .key();
    assert_eq!(
        migration
            .post("/loans", loan_body("LN-1", &holder, PERSONAL_LOAN))
            .await
            .status,
        201
    );
    assert_eq!(approve(&tenant.as_user(APPROVER), "LN-1").await.status, 200);

    let path = "/loans/LN-1/disbursement-transactions";
    forbidden(
        &migration
            .post(path, json!({ "valueDate": "2024-01-15T00:00:00+00:00" }))
            .await,
        "BACKDATE_LOAN_TRANSACTIONS",
    );
    assert_eq!(
        migration.get("/loans/LN-1").await.body["accountState"],
        "APPROVED"
    );
    // Today (no valueDate) needs only DIBURSE_LOANS; a backdated repayment is refused too.
    let disbursed = migration.post(path, json!({})).await;
    assert_eq!(disbursed.status, 201, "{disbursed:?}");
    forbidden(
        &migration
            .post(
                "/loans/LN-1/repayment-transactions",
                json!({ "amount": 10, "valueDate": "2024-01-20T00:00:00+00:00" }),
            )
            .await,
        "BACKDATE_LOAN_TRANSACTIONS",
    );
    // The transaction's own permission is named first.
    forbidden(
        &tenant
            .as_user(AUDITOR)
            .post(
                "/loans/LN-1/fee-transactions",
                json!({ "amount": 10, "valueDate": "2024-01-20T00:00:00+00:00" }),
            )
            .await,
        "APPLY_LOAN_FEES",
    );
}

#[tokio::test]
async fn an_administrator_passes_every_permission() {
    let tenant = Tenant::edited(
        "strict.yaml",
        &[(
            "apiKey: strict-auditor-api-key\n    access:\n",
            "apiKey: strict-auditor-api-key\n    access:\n      administratorAccess: true\n",
        )],
    );
    let admin = tenant.as_user(AUDITOR);
    let created = admin
        .post("/clients", strict_client("CL-1", "Silva", "NID-1"))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(admin.get("/branches").await.status, 200);
}

#[tokio::test]
async fn a_client_needs_the_id_documents_the_tenant_requires() {
    let tenant = Tenant::strict();
    let migration = tenant.as_user(MIGRATION);
    let client = |documents: Value| json!({ "firstName": "Ana", "lastName": "Silva", "birthDate": "1970-01-01", "idDocuments": documents });
    refused(
        &migration
            .post(
                "/clients",
                json!({ "firstName": "Ana", "lastName": "Silva" }),
            )
            .await,
        400,
        1651,
        "REQUIRED_ID_DOCUMENT_MISSING",
        "idDocuments",
    );
    refused(
        &migration.post("/clients", client(json!([]))).await,
        400,
        1651,
        "REQUIRED_ID_DOCUMENT_MISSING",
        "idDocuments",
    );
    refused(
        &migration
            .post(
                "/clients",
                client(json!([{ "documentId": "D-1", "documentType": "Driving licence" }])),
            )
            .await,
        400,
        1650,
        "INVALID_ID_DOCUMENT",
        "idDocuments[0].documentType: `Driving licence` is not one of National ID, Passport",
    );
    refused(
        &migration
            .post("/clients", client(json!([{ "documentType": "Passport" }])))
            .await,
        400,
        4,
        "INVALID_PARAMETERS",
        "idDocuments[0].documentId: must not be blank",
    );
    assert_eq!(tenant.stats().await["clients"], 0);

    let created = migration
        .post(
            "/clients",
            json!({ "id": "CL-1", "firstName": "Ana", "lastName": "Silva",
                    "idDocuments": [{ "documentId": "P-1", "documentType": "Passport", "issuingAuthority": "SEF" }] }),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let key = created.key();

    // Kept, and answered with detailsLevel=FULL only.
    assert!(
        migration
            .get("/clients/CL-1")
            .await
            .body
            .get("idDocuments")
            .is_none()
    );
    let full = migration.get("/clients/CL-1?detailsLevel=FULL").await;
    let document = &full.body["idDocuments"][0];
    assert_eq!(document["documentId"], "P-1");
    assert_eq!(document["documentType"], "Passport");
    assert_eq!(document["issuingAuthority"], "SEF");
    assert_eq!(document["clientKey"], key.as_str());
    assert_eq!(document["indexInList"], 0);
    assert_eq!(document["encodedKey"].as_str().map(str::len), Some(32));
}

#[tokio::test]
async fn the_duplicate_client_check_refuses_a_match_on_its_fields() {
    let tenant = Tenant::strict();
    let migration = tenant.as_user(MIGRATION);
    let first = migration
        .post("/clients", strict_client("CL-1", "Silva", "NID-1"))
        .await;
    assert_eq!(first.status, 201, "{first:?}");

    // Same document (type and id, whatever the case), another person.
    refused(
        &migration
            .post(
                "/clients",
                json!({ "id": "CL-2", "firstName": "Rui", "lastName": "Costa",
                        "idDocuments": [{ "documentId": "nid-1", "documentType": "National ID" }] }),
            )
            .await,
        400,
        310,
        "DUPLICATE_CLIENT",
        "idDocuments: documentId and documentType",
    );
    // Same last name and birth date, another document.
    refused(
        &migration
            .post("/clients", strict_client("CL-3", "Silva", "NID-3"))
            .await,
        400,
        310,
        "DUPLICATE_CLIENT",
        "lastName and birthDate",
    );
    // A replay of the first keeps its CLIENT_ID_ALREADY_IN_USE.
    refused(
        &migration
            .post("/clients", strict_client("CL-1", "Silva", "NID-1"))
            .await,
        400,
        316,
        "CLIENT_ID_ALREADY_IN_USE",
        "id",
    );
    // The same document id of another type, and another birth date, is another client.
    let other = migration
        .post(
            "/clients",
            json!({ "id": "CL-4", "firstName": "Ana", "lastName": "Silva", "birthDate": "1971-01-01",
                    "idDocuments": [{ "documentId": "NID-1", "documentType": "Passport" }] }),
        )
        .await;
    assert_eq!(other.status, 201, "{other:?}");
    assert_eq!(tenant.stats().await["clients"], 2);
}

#[tokio::test]
async fn a_duplicate_check_that_warns_accepts_the_match() {
    let tenant = Tenant::edited("strict.yaml", &[("action: ERROR", "action: WARNING")]);
    let migration = tenant.as_user(MIGRATION);
    for id in ["CL-1", "CL-2"] {
        let created = migration
            .post("/clients", strict_client(id, "Silva", "NID-1"))
            .await;
        assert_eq!(created.status, 201, "{created:?}");
    }
}

#[tokio::test]
async fn a_client_holds_no_more_loans_than_the_rules_allow() {
    let tenant = Tenant::edited(
        "lenient.yaml",
        &[(
            "\nbranches:",
            "\nclientRules: { maxLoansPerClient: 1 }\n\nbranches:",
        )],
    );
    let admin = tenant.as_user(ADMIN);
    let first = admin
        .post(
            "/clients",
            json!({ "firstName": "Ada", "lastName": "Lovelace" }),
        )
        .await
        .key();
    let second = admin
        .post(
            "/clients",
            json!({ "firstName": "Ada", "lastName": "Byron" }),
        )
        .await
        .key();
    assert_eq!(
        admin
            .post("/loans", loan_body("LN-1", &first, PERSONAL_LOAN))
            .await
            .status,
        201
    );
    refused(
        &admin
            .post("/loans", loan_body("LN-2", &first, PERSONAL_LOAN))
            .await,
        400,
        117,
        "NUMBER_OF_LOANS_EXCEEDED",
        "accountHolderKey",
    );
    // A replay of the first keeps its ACCOUNT_ID_ALREADY_IN_USE.
    refused(
        &admin
            .post("/loans", loan_body("LN-1", &first, PERSONAL_LOAN))
            .await,
        400,
        411,
        "ACCOUNT_ID_ALREADY_IN_USE",
        "id",
    );
    assert_eq!(
        admin
            .post("/loans", loan_body("LN-2", &second, PERSONAL_LOAN))
            .await
            .status,
        201
    );
    // A closed loan no longer counts.
    let withdrawn = admin
        .post("/loans/LN-1:changeState", json!({ "action": "WITHDRAW" }))
        .await;
    assert_eq!(withdrawn.status, 200, "{withdrawn:?}");
    assert_eq!(
        admin
            .post("/loans", loan_body("LN-3", &first, PERSONAL_LOAN))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn details_level_basic_leaves_out_addresses_documents_and_custom_fields() {
    let tenant = Tenant::edited("lenient.yaml", &[]);
    let admin = tenant.as_user(ADMIN);
    let client = admin
        .post(
            "/clients",
            json!({ "id": "CL-1", "firstName": "Ada", "lastName": "Lovelace",
                    "addresses": [{ "city": "London" }],
                    "idDocuments": [{ "documentId": "P-1", "documentType": "Passport" }] }),
        )
        .await;
    assert_eq!(client.status, 201, "{client:?}");
    let holder = client.key();
    let loan = loan_body("LN-1", &holder, PERSONAL_LOAN);
    assert_eq!(admin.post("/loans", loan).await.status, 201);
    let deposit = admin
        .post(
            "/deposits",
            json!({ "id": "DP-1", "accountHolderKey": holder, "accountHolderType": "CLIENT", "name": "Current",
                    "productTypeKey": CURRENT_ACCOUNT }),
        )
        .await;
    assert_eq!(deposit.status, 201, "{deposit:?}");

    for (path, left_out) in [
        ("/clients/CL-1", &["addresses", "idDocuments"][..]),
        // Custom field values: tests/custom_fields.rs (the lenient tenant defines no sets).
        ("/loans/LN-1", &[][..]),
        ("/deposits/DP-1", &[][..]),
    ] {
        for query in ["", "?detailsLevel=BASIC"] {
            let basic = admin.get(&format!("{path}{query}")).await;
            assert_eq!(basic.status, 200, "{basic:?}");
            assert!(basic.body.get("id").is_some());
            for field in left_out {
                assert!(basic.body.get(field).is_none(), "{path}{query}: {field}");
            }
        }
        let full = admin.get(&format!("{path}?detailsLevel=FULL")).await;
        for field in left_out {
            assert!(full.body.get(field).is_some(), "{path} FULL: {field}");
        }
        refused(
            &admin.get(&format!("{path}?detailsLevel=ALL")).await,
            400,
            4,
            "INVALID_PARAMETERS",
            "detailsLevel",
        );
    }
}

#[tokio::test]
async fn the_organization_setup_answers_the_profiles_name_and_currency() {
    let strict = Tenant::strict();
    let setup = strict.as_user(AUDITOR).get("/setup/organization").await;
    assert_eq!(setup.status, 200, "{setup:?}");
    assert_eq!(setup.body["institutionName"], "Strict Lisbon bank");
    assert_eq!(setup.body["currency"], "EUR");
    assert_eq!(setup.body["timeZoneID"], "Europe/Lisbon");

    let kenyan = Tenant::edited(
        "lenient.yaml",
        &[
            ("name: Lenient sandbox tenant", "name: Nairobi Savings"),
            ("currency: EUR", "currency: KES"),
        ],
    );
    let setup = kenyan.as_user(ADMIN).get("/setup/organization").await;
    assert_eq!(setup.body["institutionName"], "Nairobi Savings");
    assert_eq!(setup.body["currency"], "KES");
}
