//! Custom fields and addresses over HTTP (issue 17), against the real binary's sandbox
//! (`mambu-migrate sandbox --port 0 --tenant FILE`): the tenant's definitions
//! (`GET /customfieldsets`, paged and filtered, `GET /customfields/{id}`), each rule a client,
//! loan or deposit body's custom field values must pass with Mambu's error body, client
//! addresses, what `detailsLevel` BASIC and FULL answer, and the stats.

mod common;

use common::{Answer, CURRENT_ACCOUNT, PERSONAL_LOAN, Sandbox, strict_profile};
use serde_json::{Value, json};

/// The strict profile's approver: no VIEW_CUSTOM_FIELD.
const APPROVER: &str = "strict-approver-api-key";
/// The strict profile's auditor: VIEW_CUSTOM_FIELD.
const AUDITOR: &str = "strict-auditor-api-key";

/// fixtures/tenants/strict.yaml (the migration user on [`API_KEY`]; `employment_status`
/// required) and three more sets: a client set of each other type, a grouped client set with a
/// required field, and a deposit set.
fn profile() -> String {
    let mut text = strict_profile();
    assert!(
        text.contains("required: true\n        default: true"),
        "strict.yaml's employment_status is required"
    );
    assert!(
        text.trim_end().ends_with("type: DATE, required: false }"),
        "customFieldSets come last"
    );
    text.push_str(
        r#"
  - id: _Client_Profile
    name: Client profile
    availableFor: CLIENT
    fieldSetType: STANDARD
    customFields:
      - { id: monthly_income, type: NUMBER }
      - { id: politically_exposed, type: CHECKBOX }
      - { id: tax_reference, type: FREE_TEXT, validationPattern: "PT-#########" }
  - id: _References
    name: References
    availableFor: CLIENT
    fieldSetType: GROUPED
    customFields:
      - { id: reference_name, type: FREE_TEXT, required: true }
      - { id: reference_phone, type: FREE_TEXT }
  - id: _Deposit_Origin
    name: Deposit origin
    availableFor: DEPOSIT_ACCOUNT
    fieldSetType: STANDARD
    customFields:
      - { id: legacy_deposit_number, type: FREE_TEXT }
"#,
    );
    text
}

fn start() -> Sandbox {
    Sandbox::tenant(&profile(), &[])
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

/// A client the profile accepts (its own document, last name and birth date, for the
/// duplicate-client check), with `changes` set on top (a null removes a key).
fn client(n: u32, changes: Value) -> Value {
    let mut body = json!({
        "id": format!("CL-{n}"), "firstName": "Ana", "lastName": format!("Silva{n}"),
        "birthDate": "1970-01-01",
        "idDocuments": [{ "documentId": format!("NID-{n}"), "documentType": "National ID" }],
        "_Client_Details": { "employment_status": "EMPLOYED" },
        "_References": [{ "reference_name": "Rui" }],
    });
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value.clone();
        }
    }
    body
}

/// A client with these `_Client_Details` values besides its employment status.
fn client_details(n: u32, values: Value) -> Value {
    let mut details = json!({ "employment_status": "EMPLOYED" });
    for (key, value) in values.as_object().unwrap() {
        details[key] = value.clone();
    }
    client(n, json!({ "_Client_Details": details }))
}

fn loan(id: &str, holder: &str, extra: Value) -> Value {
    let mut body = json!({
        "id": id, "accountHolderKey": holder, "accountHolderType": "CLIENT",
        "productTypeKey": PERSONAL_LOAN, "loanAmount": "1000",
        "interestSettings": { "interestRate": "12" },
        "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 },
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn deposit(id: &str, holder: &str, extra: Value) -> Value {
    let mut body = json!({
        "id": id, "accountHolderKey": holder, "accountHolderType": "CLIENT",
        "name": "Current", "productTypeKey": CURRENT_ACCOUNT,
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn ids(answer: &Answer) -> Vec<&str> {
    answer
        .body
        .as_array()
        .unwrap_or_else(|| panic!("a list: {answer:?}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_definitions_answer_mambus_shapes_paged_and_filtered() {
    let sandbox = start();
    let api = sandbox.api();

    let all = api.get("/customfieldsets").await;
    assert_eq!(all.status, 200, "{all:?}");
    assert_eq!(
        ids(&all),
        [
            "_Client_Details",
            "_Loan_Origination",
            "_Client_Profile",
            "_References",
            "_Deposit_Origin"
        ]
    );
    let clients = api.get("/customfieldsets?availableFor=client").await;
    assert_eq!(
        ids(&clients),
        ["_Client_Details", "_Client_Profile", "_References"]
    );
    let details = &clients.body[0];
    assert_eq!(details["availableFor"], "CLIENT");
    assert_eq!(details["fieldSetType"], "STANDARD");
    assert_eq!(details["displaySettings"]["displayName"], "Client details");
    assert_eq!(details["customFields"][0]["id"], "employment_status");
    assert_eq!(
        details["customFields"][0]["encodedKey"]
            .as_str()
            .unwrap()
            .len(),
        32
    );
    assert_eq!(clients.body[2]["fieldSetType"], "GROUPED");
    for (entity, expected) in [
        ("loan_account", &["_Loan_Origination"][..]),
        ("deposit_account", &["_Deposit_Origin"][..]),
        ("group", &[][..]),
    ] {
        let sets = api
            .get(&format!("/customfieldsets?availableFor={entity}"))
            .await;
        assert_eq!(ids(&sets), expected, "{entity}");
    }
    // Stricter reading: the documented lower-case names only.
    refused(
        &api.get("/customfieldsets?availableFor=LOAN_ACCOUNT").await,
        400,
        4,
        "INVALID_PARAMETERS",
        "availableFor: `LOAN_ACCOUNT` is not one of client, group, loan_account, \
         deposit_account, ...",
    );

    // Paged as every list.
    let page = api
        .get("/customfieldsets?offset=1&limit=2&paginationDetails=ON")
        .await;
    assert_eq!(ids(&page), ["_Loan_Origination", "_Client_Profile"]);
    assert_eq!(page.headers["items-total"], "5");
    assert_eq!(page.headers["items-offset"], "1");
    assert_eq!(page.headers["items-limit"], "2");
    refused(
        &api.get("/customfieldsets?limit=1001").await,
        400,
        4,
        "INVALID_PARAMETERS",
        "limit",
    );

    let field = api.get("/customfields/employment_status").await;
    assert_eq!(field.status, 200, "{field:?}");
    assert_eq!(field.body["id"], "employment_status");
    assert_eq!(field.body["type"], "SELECTION");
    assert_eq!(field.body["state"], "ACTIVE");
    assert_eq!(field.body["availableFor"], "CLIENT");
    assert_eq!(
        field.body["displaySettings"]["displayName"],
        "Employment status"
    );
    assert_eq!(
        field.body["usage"],
        json!([{ "required": true, "default": true }])
    );
    let options: Vec<&str> = field.body["selectionOptions"][0]["availableOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        options,
        [
            "EMPLOYED",
            "SELF_EMPLOYED",
            "RETIRED",
            "STUDENT",
            "UNEMPLOYED"
        ]
    );
    let by_key = api
        .get(&format!(
            "/customfields/{}",
            field.body["encodedKey"].as_str().unwrap()
        ))
        .await;
    assert_eq!(by_key.body, field.body);
    let pattern = api.get("/customfields/tax_reference").await;
    assert_eq!(
        pattern.body["valueValidationSettings"]["validationPattern"],
        "PT-#########"
    );
    let date = api.get("/customfields/original_disbursement_date").await;
    assert_eq!(date.body["type"], "DATE");
    assert_eq!(date.body["availableFor"], "LOAN_ACCOUNT");
    refused(
        &api.get("/customfields/nickname").await,
        404,
        903,
        "INVALID_CUSTOM_FIELD_ID",
        "customfieldId",
    );

    // VIEW_CUSTOM_FIELD: the auditor holds it, the approver does not.
    let auditor = api.clone().with_api_key(AUDITOR);
    assert_eq!(auditor.get("/customfieldsets").await.status, 200);
    assert_eq!(
        auditor.get("/customfields/employment_status").await.status,
        200
    );
    let approver = api.clone().with_api_key(APPROVER);
    for path in ["/customfieldsets", "/customfields/employment_status"] {
        refused(
            &approver.get(path).await,
            403,
            15,
            "INVALID_PERMISSIONS",
            "VIEW_CUSTOM_FIELD",
        );
    }
}

#[tokio::test]
async fn accepted_values_and_addresses_are_answered_with_full_details_only() {
    let sandbox = start();
    let api = sandbox.api();
    let created = api
        .post(
            "/clients",
            client(
                1,
                json!({
                    "_Client_Details": { "employment_status": "RETIRED" },
                    "_Client_Profile": { "monthly_income": "2500.50", "politically_exposed": "FALSE",
                                         "tax_reference": "PT-123456789" },
                    "_References": [{ "reference_name": "Rui", "reference_phone": "+351 21 000 0000" },
                                    { "_index": "1", "reference_name": "Inês" }],
                    "addresses": [{ "line1": "Rua Augusta 1", "city": "Lisboa", "postcode": "1100-048",
                                    "country": "PT", "latitude": 38.71, "longitude": -9.13 },
                                  { "line1": "Rua do Ouro 2", "city": "Porto", "indexInList": 1 }],
                }),
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let key = created.key();

    for query in ["", "?detailsLevel=BASIC"] {
        let basic = api.get(&format!("/clients/CL-1{query}")).await;
        assert_eq!(basic.status, 200, "{basic:?}");
        assert_eq!(basic.body["lastName"], "Silva1");
        let fields = basic.body.as_object().unwrap();
        assert!(
            fields
                .keys()
                .all(|k| !k.starts_with('_') && k != "addresses"),
            "{query}: {fields:?}"
        );
    }
    let full = api.get("/clients/CL-1?detailsLevel=FULL").await;
    assert_eq!(full.status, 200, "{full:?}");
    assert_eq!(
        full.body["_Client_Details"],
        json!({ "employment_status": "RETIRED" })
    );
    assert_eq!(
        full.body["_Client_Profile"],
        json!({ "monthly_income": "2500.50", "politically_exposed": "FALSE",
                "tax_reference": "PT-123456789" })
    );
    assert_eq!(
        full.body["_References"],
        json!([{ "_index": "0", "reference_name": "Rui", "reference_phone": "+351 21 000 0000" },
               { "_index": "1", "reference_name": "Inês" }])
    );
    let addresses = full.body["addresses"].as_array().unwrap();
    assert_eq!(addresses.len(), 2);
    for (i, address) in addresses.iter().enumerate() {
        assert_eq!(address["indexInList"], i);
        assert_eq!(address["parentKey"], key.as_str());
        assert_eq!(address["encodedKey"].as_str().unwrap().len(), 32);
    }
    assert_eq!(addresses[0]["city"], "Lisboa");
    assert_eq!(addresses[1]["line1"], "Rua do Ouro 2");

    // A loan and a deposit carry their own sets.
    let created = api
        .post(
            "/loans",
            loan(
                "LN-1",
                &key,
                json!({ "_Loan_Origination": { "legacy_account_number": "PT50-0001",
                                               "original_disbursement_date": "2019-03-31" } }),
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let created = api
        .post(
            "/deposits",
            deposit(
                "DP-1",
                &key,
                json!({ "_Deposit_Origin": { "legacy_deposit_number": "D-1" } }),
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    for (path, set, value) in [
        (
            "/loans/LN-1",
            "_Loan_Origination",
            json!({ "legacy_account_number": "PT50-0001",
                    "original_disbursement_date": "2019-03-31" }),
        ),
        (
            "/deposits/DP-1",
            "_Deposit_Origin",
            json!({ "legacy_deposit_number": "D-1" }),
        ),
    ] {
        assert!(api.get(path).await.body.get(set).is_none(), "{path} BASIC");
        let full = api.get(&format!("{path}?detailsLevel=FULL")).await;
        assert_eq!(full.body[set], value, "{path} FULL");
    }

    // Bodies without custom fields still pass where nothing is required of them (a deposit);
    // a loan needs its required legacy account number.
    let plain = api.post("/loans", loan("LN-2", &key, json!({}))).await;
    assert_eq!(plain.status, 400, "{plain:?}");
    assert_eq!(plain.reason(), "REQUIRED_CUSTOM_FIELD_MISSING");

    let stats = sandbox.stats().await;
    assert_eq!(
        stats["custom_field_values"],
        json!({ "_Client_Details": 1, "_Client_Profile": 3, "_References": 3,
                "_Loan_Origination": 2, "_Deposit_Origin": 1 })
    );
    assert_eq!(stats["custom_field_values_total"], 10);
    assert_eq!(stats["addresses"], 2);
}

#[tokio::test]
async fn a_set_or_field_the_tenant_does_not_define_for_the_entity_is_refused() {
    let sandbox = start();
    let api = sandbox.api();
    refused(
        &api.post(
            "/clients",
            client(1, json!({ "_Personal": { "nickname": "Ana" } })),
        )
        .await,
        400,
        953,
        "INVALID_CUSTOM_FIELD_SET_ID",
        "_Personal",
    );
    refused(
        &api.post(
            "/clients",
            client(
                1,
                json!({ "_Loan_Origination": { "legacy_account_number": "L-1" } }),
            ),
        )
        .await,
        400,
        910,
        "CUSTOM_FIELD_NOT_AVAILABLE_FOR_ENTITY",
        "_Loan_Origination: a set for LOAN_ACCOUNT, not CLIENT",
    );
    refused(
        &api.post("/clients", client_details(1, json!({ "nickname": "Ana" })))
            .await,
        400,
        903,
        "INVALID_CUSTOM_FIELD_ID",
        "_Client_Details.nickname",
    );
    refused(
        &api.post(
            "/clients",
            client(
                1,
                json!({ "_References": [{ "reference_name": "Rui", "relation": "son" }] }),
            ),
        )
        .await,
        400,
        903,
        "INVALID_CUSTOM_FIELD_ID",
        "_References[0].relation",
    );

    let holder = api.post("/clients", client(1, json!({}))).await;
    assert_eq!(holder.status, 201, "{holder:?}");
    let holder = holder.key();
    refused(
        &api.post(
            "/loans",
            loan(
                "LN-1",
                &holder,
                json!({ "_Client_Details": { "employment_status": "EMPLOYED" } }),
            ),
        )
        .await,
        400,
        910,
        "CUSTOM_FIELD_NOT_AVAILABLE_FOR_ENTITY",
        "_Client_Details: a set for CLIENT, not LOAN_ACCOUNT",
    );
    refused(
        &api.post(
            "/deposits",
            deposit(
                "DP-1",
                &holder,
                json!({ "_Loan_Origination": { "legacy_account_number": "L-1" } }),
            ),
        )
        .await,
        400,
        910,
        "CUSTOM_FIELD_NOT_AVAILABLE_FOR_ENTITY",
        "_Loan_Origination: a set for LOAN_ACCOUNT, not DEPOSIT_ACCOUNT",
    );
    // Nothing refused was created.
    let stats = sandbox.stats().await;
    assert_eq!(
        (stats["clients"].as_u64(), stats["loans"].as_u64()),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn a_required_field_missing_is_refused_naming_set_and_field() {
    let sandbox = start();
    let api = sandbox.api();
    let missing = "_Client_Details.employment_status";
    for body in [
        client(1, json!({ "_Client_Details": null })),
        client(1, json!({ "_Client_Details": {} })),
        client(1, json!({ "_Client_Details": { "employment_status": "" } })),
        client(
            1,
            json!({ "_Client_Details": { "employment_status": null } }),
        ),
    ] {
        refused(
            &api.post("/clients", body).await,
            400,
            902,
            "REQUIRED_CUSTOM_FIELD_MISSING",
            missing,
        );
    }
    refused(
        &api.post(
            "/clients",
            client(
                1,
                json!({ "_References": [{ "reference_name": "Rui" }, { "reference_phone": "1" }] }),
            ),
        )
        .await,
        400,
        902,
        "REQUIRED_CUSTOM_FIELD_MISSING",
        "_References[1].reference_name",
    );
    // Stricter reading: a grouped set with a required field needs a group.
    for references in [json!([]), Value::Null] {
        refused(
            &api.post("/clients", client(1, json!({ "_References": references })))
                .await,
            400,
            902,
            "REQUIRED_CUSTOM_FIELD_MISSING",
            "_References.reference_name",
        );
    }
}

#[tokio::test]
async fn values_are_non_empty_strings_each_type_takes() {
    let sandbox = start();
    let api = sandbox.api();
    let inconsistent = |answer: &Answer, source: &str| {
        refused(
            answer,
            400,
            901,
            "INCONSISTENT_VALUE_WITH_CUSTOM_FIELD_TYPE",
            source,
        )
    };
    // Strings whatever the type (stricter reading: a JSON number or boolean is refused).
    for value in [json!(2500), json!(2500.5)] {
        inconsistent(
            &api.post(
                "/clients",
                client(1, json!({ "_Client_Profile": { "monthly_income": value } })),
            )
            .await,
            "_Client_Profile.monthly_income: a custom field value is a JSON string, whatever \
             the field's type (NUMBER)",
        );
    }
    inconsistent(
        &api.post(
            "/clients",
            client(
                1,
                json!({ "_Client_Profile": { "politically_exposed": true } }),
            ),
        )
        .await,
        "_Client_Profile.politically_exposed: a custom field value is a JSON string, whatever \
         the field's type (CHECKBOX)",
    );
    // Never empty or null, even where not required.
    for value in [json!(""), json!(null)] {
        inconsistent(
            &api.post(
                "/clients",
                client(1, json!({ "_Client_Profile": { "monthly_income": value } })),
            )
            .await,
            "_Client_Profile.monthly_income: empty; leave the field out instead",
        );
    }
    for (field, value, takes) in [
        (
            "monthly_income",
            "2.500,50",
            "a NUMBER field takes a decimal number (\"46290\", \"-12.5\")",
        ),
        (
            "monthly_income",
            "1e3",
            "a NUMBER field takes a decimal number (\"46290\", \"-12.5\")",
        ),
        (
            "politically_exposed",
            "true",
            "a CHECKBOX field takes TRUE or FALSE",
        ),
        (
            "politically_exposed",
            "YES",
            "a CHECKBOX field takes TRUE or FALSE",
        ),
    ] {
        inconsistent(
            &api.post(
                "/clients",
                client(1, json!({ "_Client_Profile": { field: value } })),
            )
            .await,
            &format!("_Client_Profile.{field}: {takes}"),
        );
    }
    inconsistent(
        &api.post(
            "/clients",
            client_details(1, json!({ "employment_status": "MANAGER" })),
        )
        .await,
        "_Client_Details.employment_status: a SELECTION field takes one of EMPLOYED, \
         SELF_EMPLOYED, RETIRED, STUDENT, UNEMPLOYED",
    );
    refused(
        &api.post(
            "/clients",
            client(
                1,
                json!({ "_Client_Profile": { "tax_reference": "PT-12345" } }),
            ),
        )
        .await,
        400,
        917,
        "INCONSISTENT_CUSTOM_FIELD_VALUE_WITH_PATTERN",
        "_Client_Profile.tax_reference: does not match PT-#########",
    );
    refused(
        &api.post(
            "/clients",
            client(
                1,
                json!({ "_Client_Profile": { "tax_reference": "x".repeat(256) } }),
            ),
        )
        .await,
        400,
        904,
        "MAX_CUSTOM_FIELD_VALUE_LENGTH_EXCEEDED",
        "_Client_Profile.tax_reference: more than 255 characters",
    );
    // The set's shape: an object for STANDARD, a list of objects for GROUPED.
    refused(
        &api.post(
            "/clients",
            client(
                1,
                json!({ "_Client_Details": [{ "employment_status": "EMPLOYED" }] }),
            ),
        )
        .await,
        400,
        913,
        "INCONSISTENT_VALUE_WITH_SET_TYPE",
        "_Client_Details: a STANDARD set takes an object of field values",
    );
    refused(
        &api.post(
            "/clients",
            client(1, json!({ "_References": { "reference_name": "Rui" } })),
        )
        .await,
        400,
        913,
        "INCONSISTENT_VALUE_WITH_SET_TYPE",
        "_References: a GROUPED set takes a list of objects of field values",
    );
    refused(
        &api.post(
            "/clients",
            client(
                1,
                json!({ "_References": [{ "_index": "3", "reference_name": "Rui" }] }),
            ),
        )
        .await,
        400,
        916,
        "INVALID_CUSTOM_FIELD_GROUP_INDEX",
        "_References[0]._index: \"0\" expected",
    );

    // A DATE, on a loan.
    let holder = api.post("/clients", client(1, json!({}))).await;
    assert_eq!(holder.status, 201, "{holder:?}");
    for date in [
        "2019-02-29",
        "31/03/2019",
        "2019-3-31",
        "2019-03-31T00:00:00+00:00",
    ] {
        inconsistent(
            &api.post(
                "/loans",
                loan(
                    "LN-1",
                    &holder.key(),
                    json!({ "_Loan_Origination": { "original_disbursement_date": date } }),
                ),
            )
            .await,
            "_Loan_Origination.original_disbursement_date: a DATE field takes a date, YYYY-MM-DD",
        );
    }
    assert_eq!(sandbox.stats().await["loans"], 0);
}

#[tokio::test]
async fn addresses_are_checked_as_mambus_address() {
    let sandbox = start();
    let api = sandbox.api();
    for (addresses, code, reason, source) in [
        (
            json!({ "city": "Lisboa" }),
            961,
            "INVALID_ADDRESS",
            "addresses: a list of addresses",
        ),
        (
            json!([{ "city": "Lisboa", "street": "Rua Augusta" }]),
            961,
            "INVALID_ADDRESS",
            "addresses[0].street: not a field of an address",
        ),
        (
            json!([{ "indexInList": 0 }]),
            961,
            "INVALID_ADDRESS",
            "addresses[0]: no line1, line2, city, region, postcode or country",
        ),
        (
            json!([{ "city": "Lisboa" }, { "city": "Porto", "indexInList": 0 }]),
            961,
            "INVALID_ADDRESS",
            "addresses[1].indexInList: 1 expected",
        ),
        (
            json!([{ "city": "Lisboa", "latitude": 95 }]),
            961,
            "INVALID_ADDRESS",
            "addresses[0].latitude: a number from -90 to 90",
        ),
        (
            json!([{ "line1": "", "city": "Lisboa" }]),
            964,
            "INVALID_ADDRESS_LINE1",
            "addresses[0].line1",
        ),
        (
            json!([{ "line1": "Rua Augusta 1", "line2": null }]),
            965,
            "INVALID_ADDRESS_LINE2",
            "addresses[0].line2",
        ),
        (
            json!([{ "city": "Lisboa", "postcode": 1100 }]),
            968,
            "INVALID_POSTCODE",
            "addresses[0].postcode",
        ),
        (
            json!([{ "city": "x".repeat(256) }]),
            1263,
            "ADDRESS_FIELD_LENGTH",
            "addresses[0].city: more than 255 characters",
        ),
    ] {
        refused(
            &api.post("/clients", client(1, json!({ "addresses": addresses })))
                .await,
            400,
            code,
            reason,
            source,
        );
    }
    assert_eq!(sandbox.stats().await["clients"], 0);
}

#[tokio::test]
async fn the_lenient_tenant_requires_no_custom_field_and_refuses_a_set_it_does_not_define() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let sets = api.get("/customfieldsets").await;
    assert_eq!(ids(&sets), ["_Client_Details", "_Loan_Origination"]);
    let plain = api
        .post(
            "/clients",
            json!({ "firstName": "Ada", "lastName": "Lovelace",
                    "addresses": [{ "city": "London" }] }),
        )
        .await;
    assert_eq!(plain.status, 201, "{plain:?}");
    refused(
        &api.post(
            "/clients",
            json!({ "firstName": "Ada", "lastName": "Byron", "_Personal": { "nickname": "Ada" } }),
        )
        .await,
        400,
        953,
        "INVALID_CUSTOM_FIELD_SET_ID",
        "_Personal",
    );
}

#[tokio::test]
async fn the_shipped_strict_profile_serves_its_sets_and_requires_what_the_sample_maps() {
    let sandbox = Sandbox::strict(&[]);
    let api = sandbox.api();
    let sets = api.get("/customfieldsets?availableFor=client").await;
    assert_eq!(ids(&sets), ["_Client_Details"]);
    let status = api.get("/customfields/employment_status").await;
    assert_eq!(
        status.body["usage"],
        json!([{ "required": true, "default": true }]),
        "plans/sample.yaml maps it"
    );
    let loans = api.get("/customfieldsets?availableFor=loan_account").await;
    assert_eq!(ids(&loans), ["_Loan_Origination"]);
    let fields: Vec<&str> = loans.body[0]["customFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["legacy_account_number", "original_disbursement_date"]
    );
}
