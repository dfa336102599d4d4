#!/usr/bin/env python3
"""Builds the contract-test spec from Mambu's own specs in ../shared/mambu-openapi/.

Input: the 2021 merged Swagger 2.0 file (clients, loans, loan transactions, deposits) and the
hand-typed 2026 excerpt of PUT /loans/{id}/schedule (OAS 3.0.1). Output: one Swagger 2.0 file
that Prism loads, with
  - PUT /loans/{loanAccountId}/schedule added from the excerpt (its schemas prefixed `Edit`, so
    they do not clash with the 2021 `Installment`);
  - a stub for the v1 POST /loans/{loanAccountId}/settlementAccounts/{depositAccountId}, which
    no v2 spec has, so Prism lets it through (its answer checked only for shape);
  - stubs for GET /loanproducts, /depositproducts and /branches (the plan's lookups), the loan
    products' settings the tool reads (fees, prepayments, four-eyes, schedule editing) typed
    from skyleague/mambu-sdk, src/loan-products/rest.zod.ts;
  - GET /setup/organization (the tenant's time zone), not in the 2021 set: its OrganizationSetup
    schema typed from skyleague/mambu-sdk, src/organization-details/rest.zod.ts.
Run: python3 tests/contract/build_spec.py ../shared/mambu-openapi tests/contract/mambu-v2-contract.swagger2.json
"""
import json
import sys

src, out = sys.argv[1], sys.argv[2]
spec = json.load(open(f"{src}/mambu_v2_2021_merged.swagger2.json"))
excerpt = json.load(open(f"{src}/loans_schedule_v2_EXCERPT.oas3.json"))


def rewrite(node):
    """OAS3 component refs -> Swagger 2 definitions, prefixed."""
    if isinstance(node, dict):
        return {k: (("#/definitions/Edit" + v.rsplit("/", 1)[1]) if k == "$ref" else rewrite(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite(v) for v in node]
    return node


for name, schema in excerpt["components"]["schemas"].items():
    spec["definitions"]["Edit" + name] = rewrite(schema)

put = excerpt["paths"]["/loans/{loanAccountId}/schedule"]["put"]
body_schema = rewrite(put["requestBody"]["content"]["application/json"]["schema"])
spec["paths"]["/loans/{loanAccountId}/schedule"]["put"] = {
    "operationId": "editSchedule",
    "consumes": ["application/json"],
    "produces": ["application/vnd.mambu.v2+json"],
    "parameters": [
        {"name": "loanAccountId", "in": "path", "required": True, "type": "string"},
        {"name": "body", "in": "body", "required": True, "schema": body_schema},
    ],
    "responses": {
        code: {"description": r["description"], "schema": rewrite(r["content"]["application/vnd.mambu.v2+json"]["schema"])}
        for code, r in put["responses"].items()
    },
    "security": [{"basic": []}],
}

spec["paths"]["/loans/{loanAccountId}/settlementAccounts/{depositAccountId}"] = {
    "post": {
        "operationId": "linkSettlementAccountV1",
        "description": "API v1 (no v2 spec exists): stub so that Prism forwards it.",
        "produces": ["application/json"],
        "parameters": [
            {"name": "loanAccountId", "in": "path", "required": True, "type": "string"},
            {"name": "depositAccountId", "in": "path", "required": True, "type": "string"},
        ],
        "responses": {
            "200": {
                "description": "linked",
                "schema": {
                    "type": "object",
                    "required": ["returnCode", "returnStatus"],
                    "properties": {"returnCode": {"type": "integer"}, "returnStatus": {"type": "string"}},
                },
            },
            "400": {
                "description": "refused (v1 error body)",
                "schema": {
                    "type": "object",
                    "required": ["returnCode", "returnStatus"],
                    "properties": {"returnCode": {"type": "integer"}, "returnStatus": {"type": "string"}, "errorSource": {"type": "string"}},
                },
            },
        },
        "security": [{"basic": []}],
    }
}

# The tenant configuration reads (lookups): their specs (loanproducts, depositproducts,
# branches) are not in the 2021 set; stubs let Prism forward them, checking only the shape.
for path in ["/loanproducts", "/depositproducts", "/branches"]:
    spec["paths"][path] = {
        "get": {
            "operationId": "list" + path.strip("/"),
            "description": "Not in the 2021 set: stub so that Prism forwards it.",
            "produces": ["application/vnd.mambu.v2+json"],
            "parameters": [
                {"name": "offset", "in": "query", "required": False, "type": "integer"},
                {"name": "limit", "in": "query", "required": False, "type": "integer"},
            ],
            "responses": {"200": {"description": "list", "schema": {"type": "array", "items": {"type": "object", "required": ["encodedKey", "id"]}}}},
            "security": [{"basic": []}],
        }
    }

# The loan product settings `plan validate --target` reads (fees, prepayments, four-eyes, schedule
# editing): typed as skyleague/mambu-sdk (Mambu's 2025 spec, src/loan-products/rest.zod.ts)
# declares them, the fields the tool reads only.
spec["definitions"]["LoanProductSettings"] = {
    "type": "object",
    "required": ["encodedKey", "id", "name", "type"],
    "properties": {
        "encodedKey": {"type": "string"},
        "id": {"type": "string"},
        "name": {"type": "string"},
        "type": {"type": "string", "enum": ["FIXED_TERM_LOAN", "DYNAMIC_TERM_LOAN", "INTEREST_FREE_LOAN", "TRANCHED_LOAN", "REVOLVING_CREDIT", "INTEREST_ONLY_EQUAL_INSTALLMENTS", "DYNAMIC_MORTGAGE"]},
        "feesSettings": {
            "type": "object",
            "properties": {
                "allowArbitraryFees": {"type": "boolean"},
                "fees": {"type": "array", "items": {
                    "type": "object",
                    "required": ["state", "trigger"],
                    "properties": {
                        "amount": {"type": "number"},
                        "encodedKey": {"type": "string"},
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "state": {"type": "string", "enum": ["ACTIVE", "INACTIVE"]},
                        "trigger": {"type": "string", "enum": ["MANUAL", "MANUAL_PLANNED", "DISBURSEMENT", "CAPITALIZED_DISBURSEMENT", "UPFRONT_DISBURSEMENT", "LATE_REPAYMENT", "PAYMENT_DUE", "PAYMENT_DUE_APPLIED_ON_DUE_DATES", "ARBITRARY", "IOF", "EARLY_REPAYMENT_CHARGE", "FEE_INCLUDED_IN_PMT"]},
                    },
                }},
            },
        },
        "paymentSettings": {
            "type": "object",
            "properties": {
                "prepaymentSettings": {
                    "type": "object",
                    "required": ["futurePaymentsAcceptance"],
                    "properties": {
                        "futurePaymentsAcceptance": {"type": "string", "enum": ["NO_FUTURE_PAYMENTS", "ACCEPT_FUTURE_PAYMENTS", "ACCEPT_OVERPAYMENTS"]},
                        "prepaymentAcceptance": {"type": "string", "enum": ["ACCEPT_PREPAYMENTS", "NO_PREPAYMENTS"]},
                    },
                },
            },
        },
        "fourEyesPrinciple": {"type": "object", "properties": {"activeForLoanApproval": {"type": "boolean"}}},
        "scheduleSettings": {
            "type": "object",
            "properties": {
                "repaymentScheduleEditOptions": {"type": "array", "items": {"type": "string", "enum": ["ADJUST_PAYMENT_DATES", "ADJUST_PRINCIPAL_PAYMENT_SCHEDULE", "ADJUST_INTEREST_PAYMENT_SCHEDULE", "ADJUST_FEE_PAYMENT_SCHEDULE", "ADJUST_PENALTY_PAYMENT_SCHEDULE", "ADJUST_NUMBER_OF_INSTALLMENTS", "ADJUST_PAYMENT_HOLIDAYS"]}},
            },
        },
    },
}
spec["paths"]["/loanproducts"]["get"]["responses"]["200"]["schema"]["items"] = {"$ref": "#/definitions/LoanProductSettings"}
spec["paths"]["/loanproducts"]["get"]["description"] = "Not in the 2021 set: the settings the tool reads, typed from skyleague/mambu-sdk src/loan-products/."

# The organization setup (the tenant's time zone): not in the 2021 set. Required fields and types
# as skyleague/mambu-sdk (generated from Mambu's 2025 spec) declares them.
spec["definitions"]["OrganizationSetup"] = {
    "description": "Response representation of the organization setup details",
    "type": "object",
    "required": ["dateFormat", "dateTimeFormat", "decimalSeparator", "institutionName"],
    "properties": {
        "creationDate": {"type": "string", "format": "date-time"},
        "currency": {"type": "string"},
        "dateFormat": {"type": "string"},
        "dateTimeFormat": {"type": "string"},
        "decimalSeparator": {"type": "string", "enum": ["COMMA", "POINT"]},
        "emailAddress": {"type": "string"},
        "institutionName": {"type": "string"},
        "lastModifiedDate": {"type": "string", "format": "date-time"},
        "phoneNumber": {"type": "string"},
        "timeZoneID": {"type": "string"},
    },
}
spec["paths"]["/setup/organization"] = {
    "get": {
        "operationId": "getOrganizationSetup",
        "description": "Not in the 2021 set: typed from skyleague/mambu-sdk src/organization-details/.",
        "produces": ["application/vnd.mambu.v2+json"],
        "responses": {
            "200": {"description": "Organization setup returned.", "schema": {"$ref": "#/definitions/OrganizationSetup"}},
            "401": {"description": "UNAUTHORIZED", "schema": {"$ref": "#/definitions/ErrorResponse"}},
        },
        "security": [{"basic": []}],
    }
}

with open(out, "w") as f:
    json.dump(spec, f, indent=1, sort_keys=True)
    f.write("\n")
