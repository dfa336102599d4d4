//! The one retry policy: after every attempt, [`decide`] says what to do next and why (use the
//! answer, retry after a delay, wait out an outage, give up, stop), as vector's `retry_action`
//! does. It is pure: the attempt, what came before and the settings in, the decision out; the
//! [`Session`](super::Session) carries it out.

use std::time::Duration;

use serde_json::Value;

use super::client::{Answer, Refusal, Verdict, classify};

/// How a call is retried (the plan's `limits.retry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts per call, the first included, before the call gives up (or, when Mambu is out
    /// of reach, waits it out).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a call with no answer, or only 502, 503, 504 or 429, goes on trying (every
    /// `max_backoff`) from its first attempt before the run stops resumably.
    pub outage_wait: Duration,
}

impl RetrySettings {
    /// The delays between attempts: exponential with jitter, `max_attempts - 1` of them.
    pub fn backoff(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        use backon::BackoffBuilder as _;
        backon::ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build()
    }
}

/// The shape a successful answer must have to be used; one that does not is a spoiled answer
/// (a proxy's HTML, JSON cut off, fields of the wrong type) and is asked for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any JSON (or nothing).
    Any,
    /// An entity with an encodedKey: creations, and the reads that adopt them.
    Entity,
    /// A schedule: an object with a list of installments.
    Schedule,
    /// A list (a page of one).
    List,
    /// A bulk accepted: its process key in the `Location` header (`../shared/mambu-api.md` §6).
    Accepted,
    /// A bulk's status: an object with a `status`.
    BulkStatus,
}

impl Expect {
    /// Whether a successful answer can be used.
    pub fn usable(self, answer: &Answer) -> bool {
        answer.json
            && match self {
                // An answer is never an entity whose keys are of the wrong type (a spoiled
                // one's `{"encodedKey":12345,"id":null}`): later steps would read them.
                Expect::Any => answer.body.as_object().is_none_or(|o| {
                    o.get("encodedKey").is_none_or(Value::is_string)
                        && o.get("id")
                            .is_none_or(|id| id.is_string() || id.is_number())
                }),
                Expect::Entity => answer.body.get("encodedKey").is_some_and(Value::is_string),
                Expect::Schedule => answer.body.get("installments").is_some_and(Value::is_array),
                Expect::List => answer.body.is_array(),
                Expect::Accepted => answer
                    .location
                    .as_deref()
                    .is_some_and(|l| l.rsplit('/').next().is_some_and(|key| !key.is_empty())),
                Expect::BulkStatus => answer.body.get("status").is_some_and(Value::is_string),
            }
    }

    fn missing(self) -> &'static str {
        match self {
            Expect::Any => "not JSON",
            Expect::Entity => "no encodedKey",
            Expect::Schedule => "no installments",
            Expect::List => "not a list",
            Expect::Accepted => "no bulk process key in Location",
            Expect::BulkStatus => "no bulk status",
        }
    }
}

/// What one attempt brought.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    Answer(&'a Answer),
    /// No answer (connect, timeout, a dropped connection): the call's outcome is unknown.
    NoAnswer(&'a str),
}

/// Where the call stands: attempts so far (this one included), time since the first, and the
/// next delay of its backoff (`None`: the attempts are spent).
#[derive(Debug, Clone, Copy)]
pub struct Tries {
    pub attempts: u32,
    pub elapsed: Duration,
    pub next_backoff: Option<Duration>,
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// A usable success.
    Use,
    /// Mambu refused this request: the caller adopts what exists or fails the record.
    Refused(Refusal),
    /// The credentials are refused: stop the run.
    StopCredentials(String),
    /// Send again after `delay` (the same request: the same Idempotency-Key).
    Retry { delay: Duration, throttled: bool },
    /// The attempts are spent and Mambu is out of reach: go on trying after `delay` until the
    /// outage wait is over.
    WaitOutage { delay: Duration, reason: String },
    /// Mambu out of reach past the outage wait: stop the run, resumably.
    StopOutage(String),
    /// The attempts are spent on something that is not an outage: fail the record.
    GiveUp { message: String },
}

crate::stored_as_text! {
    /// What one attempt of a call came to, as the checkpoint records it and the reports count
    /// it. [`outcome`] says it of every attempt; the caller settles a refusal as `Adopted` or
    /// `Failed` once it knows whether what the request makes exists.
    pub enum CallOutcome: "call outcome" {
        /// A usable success.
        Ok = "ok",
        /// Sent again, or given up on: a transient failure of the call (5xx, 409, no answer, a
        /// spoiled answer), not a fault of the record.
        Retried = "retried",
        /// Answered 429 Too Many Requests.
        Throttled = "throttled",
        /// Refused as already existing, and what exists adopted ([`adopt`](super::adopt)).
        Adopted = "adopted",
        /// Refused: the record fails (or the credentials were refused).
        Failed = "failed",
    }
}

/// An attempt's outcome: `Ok` (a usable success), `Throttled` (429), `Failed` (a refusal, the
/// credentials refused), `Retried` (anything sent again, or given up on). Never `Adopted`: the
/// caller settles a refusal as that.
pub fn outcome(attempt: Attempt<'_>, expect: Expect) -> CallOutcome {
    match attempt {
        Attempt::Answer(answer) if answer.status < 300 => {
            if expect.usable(answer) {
                CallOutcome::Ok
            } else {
                CallOutcome::Retried
            }
        }
        Attempt::Answer(answer) => match classify(answer) {
            Verdict::Retry {
                throttled: true, ..
            } => CallOutcome::Throttled,
            Verdict::Retry { .. } | Verdict::Success => CallOutcome::Retried,
            Verdict::Refused(_) | Verdict::Stop(_) => CallOutcome::Failed,
        },
        Attempt::NoAnswer(_) => CallOutcome::Retried,
    }
}

/// How the reason of a stop for a missing permission begins (the run adds the step to it).
pub const PERMISSION_REFUSED: &str = "permission refused";

/// Why a 401 or 403 stops the run. A 403 names the permission Mambu says is missing (its
/// `errorSource`), so the consultant can ask the tenant's administrator for exactly that.
fn stop_message(status: u16, refusal: &Refusal) -> String {
    let reason = refusal
        .reason
        .as_deref()
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    match (status, refusal.source.as_deref()) {
        (403, Some(permission)) if !permission.is_empty() => format!(
            "{PERMISSION_REFUSED} (HTTP 403{reason}): the API user lacks `{permission}`; have \
             the tenant's administrator grant it to the user's role, then resume"
        ),
        (403, _) => format!(
            "{PERMISSION_REFUSED} (HTTP 403{reason}): the API user's role lacks a permission \
             this call needs; have the tenant's administrator check it, then resume"
        ),
        _ => format!("credentials refused (HTTP {status}{reason})"),
    }
}

/// The decision after an attempt (`../shared/DESIGN.md`, "How a call's outcome is classified"): a usable
/// 2xx is used; a 2xx that cannot be used, a 409, 5xx, 429 or no answer is sent again after
/// the backoff (or the server's Retry-After, whichever is longer); 401 and 403 stop the run;
/// any other status is a refusal of this request. When the attempts are spent, a call that
/// never reached Mambu, or only its gateway's "unavailable" (502, 503, 504) or throttling,
/// waits the outage out for `outage_wait` and then stops the run; anything else gives up.
pub fn decide(
    attempt: Attempt<'_>,
    expect: Expect,
    tries: Tries,
    settings: &RetrySettings,
) -> Next {
    let (status, retry_after, throttled, message) = match attempt {
        Attempt::Answer(answer) if answer.status < 300 => {
            if expect.usable(answer) {
                return Next::Use;
            }
            (
                Some(answer.status),
                None,
                false,
                Some(format!(
                    "HTTP {} with an answer that is not usable ({})",
                    answer.status,
                    if answer.json {
                        expect.missing()
                    } else {
                        "not JSON"
                    }
                )),
            )
        }
        Attempt::Answer(answer) => match classify(answer) {
            Verdict::Refused(refusal) => return Next::Refused(refusal),
            Verdict::Stop(refusal) => {
                return Next::StopCredentials(stop_message(answer.status, &refusal));
            }
            Verdict::Retry {
                throttled,
                retry_after,
            } => (Some(answer.status), retry_after, throttled, None),
            Verdict::Success => unreachable!("a status under 300 is handled above"),
        },
        Attempt::NoAnswer(message) => (None, None, false, Some(message.to_owned())),
    };
    let at_least_retry_after = |delay: Duration| retry_after.map_or(delay, |r| r.max(delay));
    if let Some(delay) = tries.next_backoff {
        return Next::Retry {
            delay: at_least_retry_after(delay),
            throttled,
        };
    }
    let over = format!(
        "{} attempts over {:.0} s",
        tries.attempts,
        tries.elapsed.as_secs_f64()
    );
    match unavailable(status, &over, message.as_deref()) {
        Some(reason) if tries.elapsed < settings.outage_wait => Next::WaitOutage {
            delay: at_least_retry_after(settings.max_backoff),
            reason,
        },
        Some(reason) => Next::StopOutage(reason),
        None => Next::GiveUp {
            message: format!(
                "gave up after {} attempts: {}",
                tries.attempts,
                message.unwrap_or_else(|| format!("HTTP {}", status.unwrap_or(0)))
            ),
        },
    }
}

/// Why a call that spent its attempts means Mambu is out of reach, if it does: no answer at
/// all, or the gateway's "unavailable" (502, 503, 504) or throttling, attempt after attempt. A
/// 500 may come from the data: it is no outage. `over`: how many attempts over how long.
fn unavailable(status: Option<u16>, over: &str, message: Option<&str>) -> Option<String> {
    match status {
        None => Some(format!(
            "Mambu unreachable ({over}: {})",
            message.unwrap_or("no answer")
        )),
        Some(code @ (429 | 502 | 503 | 504)) => {
            Some(format!("Mambu unavailable (HTTP {code} through {over})"))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body,
            json: true,
            retry_after: None,
            items_total: None,
            location: None,
        }
    }

    fn settings() -> RetrySettings {
        RetrySettings {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            outage_wait: Duration::from_secs(60),
        }
    }

    fn tries(attempts: u32, elapsed: u64, next: Option<u64>) -> Tries {
        Tries {
            attempts,
            elapsed: Duration::from_secs(elapsed),
            next_backoff: next.map(Duration::from_millis),
        }
    }

    #[test]
    fn a_usable_success_is_used_and_a_spoiled_one_asked_again() {
        let s = settings();
        let entity = answer(201, json!({ "encodedKey": "k" }));
        assert_eq!(
            decide(
                Attempt::Answer(&entity),
                Expect::Entity,
                tries(1, 0, Some(100)),
                &s
            ),
            Next::Use
        );
        // The sandbox's spoiled answers: an entity with fields of the wrong type, where a
        // list was asked for, is read again, never taken for "not found".
        let spoiled = answer(
            200,
            json!({ "encodedKey": 12345, "accountState": ["ACTIVE"] }),
        );
        // (An answer to any other call, a `request` read whose outputs later steps take,
        // too.)
        for expect in [Expect::Entity, Expect::List, Expect::Any] {
            let next = decide(
                Attempt::Answer(&spoiled),
                expect,
                tries(1, 0, Some(100)),
                &s,
            );
            assert_eq!(
                next,
                Next::Retry {
                    delay: Duration::from_millis(100),
                    throttled: false
                },
                "{expect:?}"
            );
        }
        let list = answer(200, json!([]));
        assert_eq!(
            decide(Attempt::Answer(&list), Expect::List, tries(1, 0, None), &s),
            Next::Use
        );
        let html = Answer {
            json: false,
            ..answer(200, json!("52 bytes of non-JSON"))
        };
        let next = decide(Attempt::Answer(&html), Expect::Any, tries(3, 1, None), &s);
        assert_eq!(
            next,
            Next::GiveUp {
                message: "gave up after 3 attempts: HTTP 200 with an answer that is not usable (not JSON)".into()
            }
        );
    }

    #[test]
    fn refusals_stops_and_retries_follow_the_status() {
        let s = settings();
        let refused = answer(
            400,
            json!({ "errors": [{ "errorCode": 4, "errorReason": "INVALID_PARAMETERS" }] }),
        );
        assert!(matches!(
            decide(Attempt::Answer(&refused), Expect::Entity, tries(1, 0, Some(100)), &s),
            Next::Refused(r) if r.is("INVALID_PARAMETERS")
        ));
        let denied = answer(
            401,
            json!({ "errors": [{ "errorReason": "INVALID_API_KEY" }] }),
        );
        assert_eq!(
            decide(
                Attempt::Answer(&denied),
                Expect::Any,
                tries(1, 0, Some(100)),
                &s
            ),
            Next::StopCredentials("credentials refused (HTTP 401 INVALID_API_KEY)".into())
        );
        // A 429's Retry-After beats a shorter backoff.
        let throttled = Answer {
            retry_after: Some(Duration::from_secs(3)),
            ..answer(429, Value::Null)
        };
        let next = decide(
            Attempt::Answer(&throttled),
            Expect::Any,
            tries(1, 0, Some(100)),
            &s,
        );
        assert_eq!(
            next,
            Next::Retry {
                delay: Duration::from_secs(3),
                throttled: true
            }
        );
        assert_eq!(
            outcome(Attempt::Answer(&throttled), Expect::Any),
            CallOutcome::Throttled
        );
        assert_eq!(
            outcome(Attempt::Answer(&refused), Expect::Any),
            CallOutcome::Failed
        );
    }

    #[test]
    fn spent_attempts_wait_out_an_outage_then_stop_and_a_500_gives_up() {
        let s = settings();
        let waited = decide(
            Attempt::NoAnswer("connection refused"),
            Expect::Any,
            tries(3, 5, None),
            &s,
        );
        assert_eq!(
            waited,
            Next::WaitOutage {
                delay: Duration::from_secs(2),
                reason: "Mambu unreachable (3 attempts over 5 s: connection refused)".into()
            }
        );
        assert_eq!(
            outcome(Attempt::NoAnswer("connection refused"), Expect::Any),
            CallOutcome::Retried
        );
        let gateway = answer(503, Value::Null);
        assert_eq!(
            decide(
                Attempt::Answer(&gateway),
                Expect::Any,
                tries(9, 61, None),
                &s
            ),
            Next::StopOutage("Mambu unavailable (HTTP 503 through 9 attempts over 61 s)".into())
        );
        let error = answer(500, Value::Null);
        assert_eq!(
            decide(Attempt::Answer(&error), Expect::Any, tries(3, 5, None), &s),
            Next::GiveUp {
                message: "gave up after 3 attempts: HTTP 500".into()
            }
        );
    }

    #[test]
    fn a_403_names_the_missing_permission_and_a_401_the_credentials() {
        let refusal = |body| Refusal::from_body(&body);
        let named = stop_message(
            403,
            &refusal(
                json!({"errors":[{"errorCode":15,"errorReason":"INVALID_PERMISSIONS","errorSource":"APPROVE_LOANS"}]}),
            ),
        );
        assert!(
            named.contains("lacks `APPROVE_LOANS`") && named.contains("INVALID_PERMISSIONS"),
            "{named}"
        );
        let unnamed = stop_message(403, &refusal(Value::Null));
        assert!(
            unnamed.starts_with("permission refused (HTTP 403)"),
            "{unnamed}"
        );
        let credentials = stop_message(
            401,
            &refusal(json!({"errors":[{"errorCode":2,"errorReason":"INVALID_CREDENTIALS"}]})),
        );
        assert_eq!(
            credentials,
            "credentials refused (HTTP 401 INVALID_CREDENTIALS)"
        );
    }
}
