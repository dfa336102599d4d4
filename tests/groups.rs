//! Groups and group loans over HTTP (issue 17), against the real binary's sandbox: a group of
//! existing clients with roles among the tenant's group role names, read at each details level
//! and replayed under its Idempotency-Key; each refusal with Mambu's error body (unknown member,
//! unknown role, duplicate id, too few or too many members, a member of another branch or
//! another group, an unknown branch, a missing permission); a group loan approved, disbursed and
//! repaid; a product that refuses group holders; duplicates in the stats.

mod common;

use std::str::FromStr;

use common::{Answer, Api, CURRENT_ACCOUNT, MICRO_LOAN, PERSONAL_LOAN, Sandbox, strict_profile};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// The strict profile's other users (`fixtures/tenants/strict.yaml`) by their API keys.
const APPROVER: &str = "strict-approver-api-key";
const AUDITOR: &str = "strict-auditor-api-key";
/// Branches both shipped profiles have.
const LISBON: &str = "8a19c0de00000000000000000000b001";
const BERLIN: &str = "8a19c0de00000000000000000000b002";
/// The shipped profiles' group role names.
const LEADER: &str = "8a19c0de0000000000000000000e0001";
const TREASURER: &str = "8a19c0de0000000000000000000e0002";
const MEMBER: &str = "8a19c0de0000000000000000000e0004";
const SAVINGS: &str = "8a19c0de00000000000000000000d002";

/// Asserts a v2 refusal: status, code, reason, and the errorSource (exactly).
fn refused(answer: &Answer, status: u16, code: i64, reason: &str, source: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({ "errors": [{ "errorCode": code, "errorReason": reason, "errorSource": source }] }),
        "{answer:?}"
    );
}

/// The strict profile (its `migration` user takes common::API_KEY) with each `(from, to)`
/// replaced.
fn strict_with(replace: &[(&str, &str)]) -> Sandbox {
    let mut text = strict_profile();
    for (from, to) in replace {
        assert!(text.contains(from), "strict.yaml no longer has `{from}`");
        text = text.replace(from, to);
    }
    Sandbox::tenant(&text, &[])
}

/// Creates `n` clients the strict profile accepts (one National ID each, distinct last names),
/// assigned to `branch`; their encodedKeys.
async fn clients(api: &Api, prefix: &str, n: usize, branch: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..n {
        let created = api
            .post(
                "/clients",
                json!({
                    "id": format!("{prefix}-{i}"), "firstName": "Ana",
                    "lastName": format!("{prefix} {i}"), "birthDate": "1980-05-01",
                    "assignedBranchKey": branch,
                    "idDocuments": [{ "documentId": format!("{prefix}-NID-{i}"), "documentType": "National ID" }],
                    "_Client_Details": { "employment_status": "SELF_EMPLOYED" },
                }),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        keys.push(created.key());
    }
    keys
}

/// A group body: each member with the role `MEMBER`.
fn group(id: &str, branch: &str, members: &[String]) -> Value {
    json!({
        "id": id, "groupName": format!("Group {id}"), "assignedBranchKey": branch,
        "groupMembers": members.iter().map(|m| json!({ "clientKey": m, "roles": [{ "groupRoleNameKey": MEMBER }] })).collect::<Vec<_>>(),
    })
}

fn group_loan(id: &str, holder: &str, product: &str) -> Value {
    json!({
        "id": id, "accountHolderKey": holder, "accountHolderType": "GROUP", "productTypeKey": product,
        "loanAmount": 1200, "interestSettings": { "interestRate": 20 },
        "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 },
        "_Loan_Origination": { "legacy_account_number": format!("LEGACY-{id}") },
    })
}

#[tokio::test]
async fn a_group_of_existing_clients_is_created_with_roles_and_read_at_each_details_level() {
    let sandbox = Sandbox::strict(&[]);
    let api = sandbox.api();
    let members = clients(&api, "Costa", 3, LISBON).await;
    let body = json!({
        "id": "GRP-1", "groupName": "Mulheres de Alfama", "assignedBranchKey": LISBON,
        "notes": "migrated", "addresses": [{ "city": "Lisboa" }],
        "groupMembers": [
            { "clientKey": members[0], "roles": [{ "groupRoleNameKey": LEADER }] },
            { "clientKey": members[1], "roles": [{ "groupRoleNameKey": TREASURER, "roleName": "Treasurer" }, { "groupRoleNameKey": MEMBER }] },
            { "clientKey": members[2] },
        ],
    });
    let key = "0b4f3c1e-2d5a-4c6b-8e7f-9a0b1c2d3e4f";
    let created = api.post_keyed("/groups", body.clone(), key).await;
    assert_eq!(created.status, 201, "{created:?}");
    let group = &created.body;
    assert_eq!(group["id"], "GRP-1");
    assert_eq!(group["groupName"], "Mulheres de Alfama");
    assert_eq!(group["assignedBranchKey"], LISBON);
    assert_eq!(group["notes"], "migrated");
    assert!(group["creationDate"].as_str().is_some(), "{group}");
    let roles = &group["groupMembers"][1]["roles"];
    assert_eq!(roles[0]["groupRoleNameKey"], TREASURER);
    assert_eq!(roles[0]["roleName"], "Treasurer");
    assert_eq!(roles[0]["roleNameId"], "TREASURER");
    assert_eq!(roles[1]["roleName"], "Member");
    assert_eq!(group["groupMembers"][0]["roles"][0]["roleName"], "Leader");
    assert_eq!(group["groupMembers"][2]["clientKey"], members[2].as_str());

    // The key replays the first answer; nothing is created twice.
    let replay = api.post_keyed("/groups", body, key).await;
    assert_eq!((replay.status, &replay.body), (created.status, group));

    // BASIC (the default) leaves out the members and addresses; FULL has them. By id or key.
    let basic = api.get("/groups/GRP-1").await;
    assert_eq!(basic.status, 200, "{basic:?}");
    assert!(basic.body.get("groupMembers").is_none(), "{basic:?}");
    assert!(basic.body.get("addresses").is_none(), "{basic:?}");
    assert_eq!(basic.body["groupName"], "Mulheres de Alfama");
    let full = api
        .get(&format!("/groups/{}?detailsLevel=FULL", created.key()))
        .await;
    assert_eq!(full.body, *group);
    let bad = api.get("/groups/GRP-1?detailsLevel=ALL").await;
    refused(&bad, 400, 4, "INVALID_PARAMETERS", "detailsLevel");
    refused(
        &api.get("/groups/GRP-404").await,
        404,
        201,
        "INVALID_GROUP_ID",
        "groupId",
    );

    let stats = sandbox.stats().await;
    assert_eq!(stats["groups"], 1, "{stats}");
    assert_eq!(stats["group_members"], 3, "{stats}");
    assert_eq!(stats["requests"]["idempotent_replays"], 1, "{stats}");
}

#[tokio::test]
async fn each_group_refusal_carries_mambus_error_body() {
    // The strict rules (3 to 30 members, one group per client, the group's branch), with a
    // maximum small enough to reach.
    let sandbox = strict_with(&[("maxGroupSizeLimit: 30", "maxGroupSizeLimit: 4")]);
    let api = sandbox.api();
    let lisbon = clients(&api, "Lima", 5, LISBON).await;
    let berlin = clients(&api, "Weber", 1, BERLIN).await;

    let unknown_member = group(
        "G-1",
        LISBON,
        &[
            lisbon[0].clone(),
            "8a5b0000000000000000000000000fff".into(),
            lisbon[1].clone(),
        ],
    );
    refused(
        &api.post("/groups", unknown_member).await,
        400,
        302,
        "INVALID_CLIENT_KEY",
        "groupMembers[1].clientKey",
    );
    // A client's id is not its key.
    let by_id = group(
        "G-1",
        LISBON,
        &["Lima-0".into(), lisbon[1].clone(), lisbon[2].clone()],
    );
    assert_eq!(
        api.post("/groups", by_id).await.reason(),
        "INVALID_CLIENT_KEY"
    );

    let mut unknown_role = group("G-1", LISBON, &lisbon[..3]);
    unknown_role["groupMembers"][2]["roles"] = json!([{ "groupRoleNameKey": "CHAIR" }]);
    refused(
        &api.post("/groups", unknown_role).await,
        400,
        209,
        "INVALID_GROUP_ROLE_NAME_KEY",
        "groupMembers[2].roles[0].groupRoleNameKey",
    );

    refused(
        &api.post("/groups", group("G-1", LISBON, &lisbon[..2]))
            .await,
        400,
        207,
        "INVALID_GROUP_SIZE",
        "groupMembers: 2 members, at least 3 needed",
    );
    refused(
        &api.post("/groups", group("G-1", LISBON, &lisbon[..5]))
            .await,
        400,
        207,
        "INVALID_GROUP_SIZE",
        "groupMembers: 5 members, at most 4 allowed",
    );

    let mixed = [lisbon[0].clone(), berlin[0].clone(), lisbon[1].clone()];
    refused(
        &api.post("/groups", group("G-1", LISBON, &mixed)).await,
        400,
        1301,
        "INVALID_BRANCH_KEY",
        &format!(
            "groupMembers[1].clientKey: the client's branch `{BERLIN}` is not the group's `{LISBON}`"
        ),
    );
    refused(
        &api.post("/groups", group("G-1", "BR-LIS", &lisbon[..3]))
            .await,
        400,
        1301,
        "INVALID_BRANCH_KEY",
        "assignedBranchKey",
    );
    refused(
        &api.post("/groups", json!({ "id": "G-1" })).await,
        400,
        4,
        "INVALID_PARAMETERS",
        "groupName: must not be blank",
    );

    // Nothing refused was created; now the group is.
    assert_eq!(sandbox.stats().await["groups"], 0);
    let created = api
        .post("/groups", group("G-1", LISBON, &lisbon[..3]))
        .await;
    assert_eq!(created.status, 201, "{created:?}");

    // Its id is taken, and its members are in a group already (ONE_GROUP).
    refused(
        &api.post("/groups", group("G-1", LISBON, &lisbon[2..5]))
            .await,
        400,
        317,
        "GROUP_ID_ALREADY_IN_USE",
        "id",
    );
    refused(
        &api.post("/groups", group("G-2", LISBON, &lisbon[2..5]))
            .await,
        400,
        208,
        "MULTIPLE_GROUP_MEMBERSHIP",
        "groupMembers[0].clientKey",
    );
    let stats = sandbox.stats().await;
    assert_eq!(stats["refused_duplicates"]["group_id"], 1, "{stats}");
}

#[tokio::test]
async fn groups_need_their_permissions() {
    let sandbox = Sandbox::strict(&[]);
    let migration = sandbox.api();
    let approver = sandbox.api().with_api_key(APPROVER);
    let auditor = sandbox.api().with_api_key(AUDITOR);
    let members = clients(&migration, "Rocha", 3, LISBON).await;
    let body = group("G-1", LISBON, &members);

    // Refused before anything happens, and not stored under the key.
    let key = "5e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b";
    refused(
        &auditor.post_keyed("/groups", body.clone(), key).await,
        403,
        15,
        "INVALID_PERMISSIONS",
        "CREATE_GROUP",
    );
    refused(
        &approver.post("/groups", body.clone()).await,
        403,
        15,
        "INVALID_PERMISSIONS",
        "CREATE_GROUP",
    );
    assert_eq!(migration.post_keyed("/groups", body, key).await.status, 201);
    assert_eq!(auditor.get("/groups/G-1").await.status, 200);
    assert_eq!(migration.get("/groups/G-1").await.status, 200);
    refused(
        &approver.get("/groups/G-1").await,
        403,
        15,
        "INVALID_PERMISSIONS",
        "VIEW_GROUP_DETAILS",
    );
}

#[tokio::test]
async fn a_group_loan_is_approved_disbursed_and_repaid() {
    let sandbox = Sandbox::strict(&[]);
    let api = sandbox.api();
    let members = clients(&api, "Neves", 3, LISBON).await;
    let created = api.post("/groups", group("G-1", LISBON, &members)).await;
    assert_eq!(created.status, 201, "{created:?}");
    let holder = created.key();

    let loan = api
        .post("/loans", group_loan("GL-1", &holder, MICRO_LOAN))
        .await;
    assert_eq!(loan.status, 201, "{loan:?}");
    assert_eq!(loan.body["accountHolderType"], "GROUP");
    assert_eq!(loan.body["accountHolderKey"], holder.as_str());
    assert_eq!(loan.body["assignedBranchKey"], LISBON, "the group's branch");

    // MICRO has no four-eyes: its creator approves it.
    let approved = api
        .post("/loans/GL-1:changeState", json!({ "action": "APPROVE" }))
        .await;
    assert_eq!(approved.body["accountState"], "APPROVED", "{approved:?}");
    let disbursed = api
        .post(
            "/loans/GL-1/disbursement-transactions",
            json!({ "valueDate": "2024-01-15T00:00:00+00:00", "externalId": "GL-1-D" }),
        )
        .await;
    assert_eq!(disbursed.status, 201, "{disbursed:?}");
    let schedule = api.get("/loans/GL-1/schedule").await;
    assert_eq!(schedule.status, 200, "{schedule:?}");
    assert_eq!(schedule.body["installments"].as_array().unwrap().len(), 3);

    // Every installment is due by now: the whole balance is no prepayment.
    let active = api.get("/loans/GL-1").await;
    // Every installment past due and unpaid: in arrears, as Mambu reads it.
    assert_eq!(
        active.body["accountState"], "ACTIVE_IN_ARREARS",
        "{active:?}"
    );
    let balance = |field: &str| {
        Decimal::from_str(&active.body["balances"][field].to_string())
            .unwrap_or_else(|e| panic!("{field}: {e} in {active:?}"))
    };
    let owed = balance("principalBalance") + balance("interestBalance") + balance("feesBalance");
    assert!(owed >= Decimal::from(1200), "{owed}");
    let repaid = api
        .post(
            "/loans/GL-1/repayment-transactions",
            common::body(&format!(r#"{{"amount":{owed},"externalId":"GL-1-R"}}"#)),
        )
        .await;
    assert_eq!(repaid.status, 201, "{repaid:?}");
    let closed = api.get("/loans/GL-1").await;
    assert_eq!(closed.body["accountState"], "CLOSED", "{closed:?}");
    assert_eq!(closed.body["accountHolderType"], "GROUP");
    let stats = sandbox.stats().await;
    assert_eq!(stats["loans_by_state"]["CLOSED"], 1, "{stats}");
}

#[tokio::test]
async fn a_product_that_refuses_group_holders_refuses_their_accounts() {
    let sandbox = Sandbox::strict(&[]);
    let api = sandbox.api();
    let members = clients(&api, "Pires", 3, LISBON).await;
    let holder = api
        .post("/groups", group("G-1", LISBON, &members))
        .await
        .key();

    // PL-STD says nothing of groups: individuals only.
    refused(
        &api.post("/loans", group_loan("GL-1", &holder, PERSONAL_LOAN))
            .await,
        400,
        205,
        "INVALID_PARAMATERS_FOR_PRODUCT",
        "accountHolderType: `GROUP` holders may not hold `PL-STD`, available for INDIVIDUALS",
    );
    // A group's key under CLIENT, a client's under GROUP: no such holder.
    let mut as_client = group_loan("GL-1", &holder, MICRO_LOAN);
    as_client["accountHolderType"] = json!("CLIENT");
    assert_eq!(
        api.post("/loans", as_client).await.reason(),
        "ACCOUNT_HOLDER_NOT_FOUND"
    );
    assert_eq!(
        api.post("/loans", group_loan("GL-1", &members[0], MICRO_LOAN))
            .await
            .reason(),
        "ACCOUNT_HOLDER_NOT_FOUND"
    );

    // Deposits: the current account is for individuals, the savings account for groups too.
    let deposit = |product: &str| json!({ "accountHolderKey": holder, "accountHolderType": "GROUP", "name": "Group savings", "productTypeKey": product });
    refused(
        &api.post("/deposits", deposit(CURRENT_ACCOUNT)).await,
        400,
        205,
        "INVALID_PARAMATERS_FOR_PRODUCT",
        "accountHolderType: `GROUP` holders may not hold `CA-STD`, available for INDIVIDUALS",
    );
    let savings = api.post("/deposits", deposit(SAVINGS)).await;
    assert_eq!(savings.status, 201, "{savings:?}");
    assert_eq!(savings.body["accountHolderType"], "GROUP");
}

#[tokio::test]
async fn a_group_created_twice_without_an_id_is_counted_as_a_duplicate() {
    // The lenient tenant: no group rules, a client may be in several groups.
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let client = api
        .post(
            "/clients",
            json!({ "firstName": "Ada", "lastName": "Lovelace" }),
        )
        .await
        .key();
    let body = |branch: &str| json!({ "groupName": "Savings circle", "assignedBranchKey": branch, "groupMembers": [{ "clientKey": client }] });
    for branch in [LISBON, BERLIN, LISBON] {
        let created = api.post("/groups", body(branch)).await;
        assert_eq!(created.status, 201, "{created:?}");
    }
    let stats = sandbox.stats().await;
    assert_eq!(stats["groups"], 3, "{stats}");
    assert_eq!(stats["group_members"], 3, "{stats}");
    assert_eq!(stats["duplicates"]["groups"], 1, "{stats}");
    assert_eq!(stats["duplicates"]["total"], 1, "{stats}");
}
