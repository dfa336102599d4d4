//! Adoption: when Mambu refuses a request because what it would make already exists (a replay
//! after a lost reply, or a resume after a kill), the run reads it back and adopts it instead
//! of failing or making it twice. What "already exists" means, and how to read it back, is
//! decided here for every kind of request (`../shared/DESIGN.md`, "Built-in steps").

use serde_json::{Value, json};

use super::client::{Answer, Keep, Refusal};
use super::policy::Expect;
use super::session::{Observer, Session};

/// What a request makes, as far as adoption needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent<'a> {
    /// A client, group, loan or deposit account with the id it was given (`kind`: `clients`,
    /// `groups`, `loans` or `deposits`).
    Create { kind: &'static str, id: &'a str },
    /// An approval of the loan or deposit account at `/{kind}/{account}`.
    Approve {
        kind: &'static str,
        account: &'a str,
    },
    /// A closing state change of the loan `account` (issue 18: close, write-off, reject,
    /// withdraw): it ends CLOSED with `sub_state` as its `accountSubState`.
    Close {
        account: &'a str,
        sub_state: &'static str,
    },
    /// The settlement link of a loan to a deposit account.
    Link,
    /// A transaction with its externalId on the account at `/{kind}/{account}` (`kind`:
    /// `loans` or `deposits`).
    Transaction {
        kind: &'static str,
        account: &'a str,
        external_id: &'a str,
    },
    /// A request step's declared adoption (`adopt:` in the plan): on one of the `on`
    /// errorReasons, GET `get` (rendered) and take the entity at `pick` in its answer.
    Declared {
        on: &'a [String],
        get: &'a str,
        pick: Option<&'a str>,
    },
    /// Anything else: a refusal is a refusal.
    Other,
}

/// The errorReasons Mambu answers when what a call would make exists already (the built-in
/// actions' and the others `../shared/mambu-api.md` §5 names): a near miss of one in a plan's
/// `adopt.on` is taken for a typo.
pub const DUPLICATE_REASONS: [&str; 6] = [
    "CLIENT_ID_ALREADY_IN_USE",
    "GROUP_ID_ALREADY_IN_USE",
    "ACCOUNT_ID_ALREADY_IN_USE",
    "EXTERNAL_ID_ALREADY_EXISTS",
    "DUPLICATE_EXTERNAL_ID",
    "ACCOUNT_ALREADY_LINKED",
];

/// One step of a `pick` path: a field, or an index into a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickStep<'a> {
    Field(&'a str),
    Index(usize),
}

/// A `pick` path (`[0]`, `content[0]`, `data.client`) as its steps; `None` when it is not one.
pub fn pick_path(text: &str) -> Option<Vec<PickStep<'_>>> {
    let mut out = Vec::new();
    for part in text.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !name.is_empty() {
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            out.push(PickStep::Field(name));
        } else if rest.is_empty() {
            // `a..b`, a leading or trailing dot.
            return None;
        }
        while !rest.is_empty() {
            let close = rest.find(']')?;
            let index = rest.get(1..close)?;
            if !rest.starts_with('[') || !index.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            out.push(PickStep::Index(index.parse().ok()?));
            rest = &rest[close + 1..];
        }
    }
    Some(out)
}

/// The entity at `pick` in `answer` (the answer itself without one): a map, or `None`.
pub fn pick<'v>(answer: &'v Value, pick: Option<&str>) -> Option<&'v Value> {
    let steps = match pick {
        Some(text) => pick_path(text)?,
        None => Vec::new(),
    };
    let found = steps.iter().try_fold(answer, |node, step| match step {
        PickStep::Field(name) => node.get(*name),
        PickStep::Index(i) => node.get(*i),
    })?;
    found.is_object().then_some(found)
}

/// The refusals that say "it already exists" for `intent`.
pub fn already_exists(intent: &Intent<'_>, refusal: &Refusal) -> bool {
    match intent {
        Intent::Create {
            kind: "clients", ..
        } => refusal.code == Some(316) || refusal.is("CLIENT_ID_ALREADY_IN_USE"),
        Intent::Create { kind: "groups", .. } => {
            refusal.code == Some(317) || refusal.is("GROUP_ID_ALREADY_IN_USE")
        }
        Intent::Create { .. } => {
            refusal.code == Some(411) || refusal.is("ACCOUNT_ID_ALREADY_IN_USE")
        }
        Intent::Approve { .. } => refusal.is("INVALID_STATE_TRANSITION"),
        // A loan already closed: changeState answers INVALID_STATE_TRANSITION, a write-off
        // ACCOUNT_ALREADY_CLOSED.
        Intent::Close { .. } => {
            refusal.is("INVALID_STATE_TRANSITION") || refusal.is("ACCOUNT_ALREADY_CLOSED")
        }
        Intent::Link => refusal.is("ACCOUNT_ALREADY_LINKED"),
        Intent::Transaction { .. } => refusal.is("EXTERNAL_ID_ALREADY_EXISTS"),
        Intent::Declared { on, .. } => on.iter().any(|reason| refusal.is(reason)),
        Intent::Other => false,
    }
}

/// The states in which an approval is done (or was overtaken by later steps).
fn approved(kind: &str) -> &'static [&'static str] {
    if kind == "loans" {
        &["APPROVED", "ACTIVE", "ACTIVE_IN_ARREARS", "CLOSED"]
    } else {
        &["APPROVED", "ACTIVE", "LOCKED", "DORMANT"]
    }
}

/// A path segment, percent-encoded.
pub fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// After a refusal of `intent`, reads back what exists and returns it as the answer the request
/// would have had, or `None` when the refusal stands (it does not say "already exists", or
/// what exists is not what the request would have made, or it cannot be read). Every read goes
/// through the session's policy: a spoiled answer is read again, never taken for "not found".
pub async fn adopt(
    session: &Session,
    intent: &Intent<'_>,
    refusal: &Refusal,
    keep: Keep<'_>,
    observer: &mut dyn Observer,
) -> Option<Answer> {
    if !already_exists(intent, refusal) {
        return None;
    }
    match intent {
        Intent::Create { kind, id } => session
            .read(
                &format!("/{kind}/{}", encode(id)),
                Expect::Entity,
                keep,
                observer,
            )
            .await
            .ok()
            .flatten(),
        Intent::Approve { kind, account } => {
            let found = session
                .read(
                    &format!("/{kind}/{}", encode(account)),
                    Expect::Entity,
                    keep,
                    observer,
                )
                .await
                .ok()
                .flatten()?;
            let state = found.body.get("accountState").and_then(Value::as_str)?;
            approved(kind).contains(&state).then_some(found)
        }
        Intent::Close { account, sub_state } => {
            // Read whole: the step keeps `accountState` but not `accountSubState` (rare: a
            // replay, or a loan Mambu closed at its last repayment).
            let _ = keep;
            let found = session
                .read(
                    &format!("/loans/{}", encode(account)),
                    Expect::Entity,
                    Keep::All,
                    observer,
                )
                .await
                .ok()
                .flatten()?;
            let state = found.body.get("accountState").and_then(Value::as_str)?;
            let sub = found.body.get("accountSubState").and_then(Value::as_str);
            (state == "CLOSED" && sub == Some(*sub_state)).then_some(found)
        }
        Intent::Link => Some(Answer {
            status: 200,
            body: json!({ "returnCode": 0, "returnStatus": "SUCCESS" }),
            json: true,
            retry_after: None,
            items_total: None,
            location: None,
        }),
        Intent::Transaction {
            kind,
            account,
            external_id,
        } => {
            let items = session
                .list(
                    &format!("/{kind}/{}/transactions", encode(account)),
                    observer,
                )
                .await
                .ok()?;
            let found = items
                .into_iter()
                .find(|t| t.get("externalId").and_then(Value::as_str) == Some(external_id))?;
            Some(Answer {
                status: 200,
                body: found,
                json: true,
                retry_after: None,
                items_total: None,
                location: None,
            })
        }
        Intent::Declared { get, pick: at, .. } => {
            // Any JSON: what the plan names may be a list, or an entity of any shape.
            let found = session
                .read(get, Expect::Any, Keep::All, observer)
                .await
                .ok()
                .flatten()?;
            let entity = pick(&found.body, *at)?.clone();
            Some(Answer {
                body: entity,
                ..found
            })
        }
        Intent::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: i64, reason: &str) -> Refusal {
        Refusal::from_body(&json!({ "errors": [{ "errorCode": code, "errorReason": reason }] }))
    }

    #[test]
    fn each_intent_adopts_only_its_own_already_exists() {
        let client = Intent::Create {
            kind: "clients",
            id: "CL-1",
        };
        let loan = Intent::Create {
            kind: "loans",
            id: "LN-1",
        };
        assert!(already_exists(
            &client,
            &refusal(316, "CLIENT_ID_ALREADY_IN_USE")
        ));
        assert!(!already_exists(
            &client,
            &refusal(411, "ACCOUNT_ID_ALREADY_IN_USE")
        ));
        assert!(already_exists(
            &loan,
            &refusal(411, "ACCOUNT_ID_ALREADY_IN_USE")
        ));
        assert!(!already_exists(&loan, &refusal(4, "INVALID_PARAMETERS")));
        let group = Intent::Create {
            kind: "groups",
            id: "GR-1",
        };
        assert!(already_exists(
            &group,
            &refusal(317, "GROUP_ID_ALREADY_IN_USE")
        ));
        assert!(!already_exists(
            &group,
            &refusal(316, "CLIENT_ID_ALREADY_IN_USE")
        ));
        assert!(!already_exists(
            &client,
            &refusal(317, "GROUP_ID_ALREADY_IN_USE")
        ));
        let repayment = Intent::Transaction {
            kind: "loans",
            account: "LN-1",
            external_id: "x",
        };
        let deposit = Intent::Transaction {
            kind: "deposits",
            account: "DP-1",
            external_id: "x",
        };
        assert!(already_exists(
            &deposit,
            &refusal(0, "EXTERNAL_ID_ALREADY_EXISTS")
        ));
        assert!(already_exists(
            &repayment,
            &refusal(0, "EXTERNAL_ID_ALREADY_EXISTS")
        ));
        assert!(!already_exists(
            &Intent::Other,
            &refusal(0, "EXTERNAL_ID_ALREADY_EXISTS")
        ));
        let on = [
            "DUPLICATE_EXTERNAL_ID".to_owned(),
            "EXTERNAL_ID_ALREADY_EXISTS".to_owned(),
        ];
        let declared = Intent::Declared {
            on: &on,
            get: "/x",
            pick: None,
        };
        assert!(already_exists(
            &declared,
            &refusal(0, "EXTERNAL_ID_ALREADY_EXISTS")
        ));
        assert!(!already_exists(
            &declared,
            &refusal(316, "CLIENT_ID_ALREADY_IN_USE")
        ));
        assert_eq!(approved("loans").len(), 4);
        assert_eq!(encode("CL 1/2"), "CL%201%2F2");
    }

    #[test]
    fn pick_finds_the_entity_or_nothing() {
        assert_eq!(
            pick_path("content[0].client"),
            Some(vec![
                PickStep::Field("content"),
                PickStep::Index(0),
                PickStep::Field("client")
            ])
        );
        assert_eq!(
            pick_path("[1][0]"),
            Some(vec![PickStep::Index(1), PickStep::Index(0)])
        );
        for bad in ["", "a..b", "[x]", "a[0", "a]", ".a", "a b", "[-1]"] {
            assert_eq!(pick_path(bad), None, "{bad}");
        }
        let list = json!([{ "id": "G-1", "encodedKey": "k" }]);
        assert_eq!(pick(&list, Some("[0]")), Some(&list[0]));
        // A list is not an entity; an empty list, or a missing field, is nothing found.
        assert_eq!(pick(&list, None), None);
        assert_eq!(pick(&json!([]), Some("[0]")), None);
        let page = json!({ "content": [{ "id": "x" }] });
        assert_eq!(pick(&page, Some("content[0]")), Some(&json!({ "id": "x" })));
        assert_eq!(pick(&page, Some("items[0]")), None);
        assert_eq!(pick(&page, Some("content[0].id")), None);
        assert_eq!(pick(&page["content"][0], None), Some(&json!({ "id": "x" })));
    }
}
