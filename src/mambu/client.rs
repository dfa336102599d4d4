//! The HTTP client: the only code that sees reqwest.
//!
//! It speaks v2 (the `application/vnd.mambu.v2+json` Accept header) and, for the settlement
//! link, v1; it authenticates with the `apiKey` header or basic auth; credentials come from the
//! environment and are redacted from every `Debug`. Plain http is refused except to loopback.

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

pub const V2_MEDIA_TYPE: &str = "application/vnd.mambu.v2+json";

/// How to authenticate.
#[derive(Clone)]
pub enum Credentials {
    ApiKey(String),
    Basic { username: String, password: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}:<redacted>)"),
        }
    }
}

impl Credentials {
    /// From the environment: the API key variable if set, else the username and password ones.
    pub fn from_env(
        api_key_env: &str,
        username_env: &str,
        password_env: &str,
    ) -> Result<Self, ClientError> {
        // `NAME`, or the file named by `NAME_FILE` (how secret managers hand secrets over).
        let get = |name: &str| {
            std::env::var(name)
                .ok()
                .or_else(|| {
                    std::fs::read_to_string(std::env::var(format!("{name}_FILE")).ok()?).ok()
                })
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(key) = get(api_key_env) {
            return Ok(Credentials::ApiKey(key));
        }
        match (get(username_env), get(password_env)) {
            (Some(username), Some(password)) => Ok(Credentials::Basic { username, password }),
            _ => Err(ClientError::NoCredentials {
                api_key_env: api_key_env.to_owned(),
                username_env: username_env.to_owned(),
                password_env: password_env.to_owned(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no credentials: set {api_key_env}, or {username_env} and {password_env} (or the same names with _FILE naming a file that holds the secret)"
    )]
    NoCredentials {
        api_key_env: String,
        username_env: String,
        password_env: String,
    },
    #[error("`{0}` is not a usable base URL: {1}")]
    BadUrl(String, String),
    #[error("plain http is refused except to loopback (`{0}`): use https")]
    PlainHttp(String),
    #[error("building the HTTP client: {0}")]
    Build(String),
    #[error("{method} {path}: {message}")]
    Transport {
        method: String,
        path: String,
        message: String,
    },
    /// The request cannot be sent as it is (nothing was sent): trying again cannot help.
    #[error("{method} {path}: {message}")]
    Unsendable {
        method: String,
        path: String,
        message: String,
    },
}

/// A Mambu tenant (or the sandbox) to call.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The headers of every v2 and every v1 request, credentials included (built once; the
    /// credential values are marked sensitive, so `Debug` never shows them).
    v2_headers: HeaderMap,
    v1_headers: HeaderMap,
}

/// Accept (v2 only), Content-Type and the credentials: the `apiKey` header, or basic auth
/// (`Authorization: Basic base64(username:password)`, as reqwest's `basic_auth` writes it).
fn headers(credentials: &Credentials, v2: bool) -> HeaderMap {
    use base64::Engine as _;
    let mut headers = HeaderMap::new();
    if v2 {
        headers.insert(ACCEPT, HeaderValue::from_static(V2_MEDIA_TYPE));
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (name, value) = match credentials {
        Credentials::ApiKey(key) => (HeaderName::from_static("apikey"), key.clone()),
        Credentials::Basic { username, password } => (
            AUTHORIZATION,
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
        ),
    };
    if let Ok(mut value) = HeaderValue::from_str(&value) {
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    headers
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Client {
    /// A client for `base_url` (e.g. `https://acme.mambu.com/api`).
    pub fn new(
        base_url: &str,
        credentials: Credentials,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let url = reqwest::Url::parse(base_url)
            .map_err(|e| ClientError::BadUrl(base_url.to_owned(), e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => return Err(ClientError::PlainHttp(base_url.to_owned())),
            other => {
                return Err(ClientError::BadUrl(
                    base_url.to_owned(),
                    format!("unsupported scheme {other}"),
                ));
            }
        }
        let host = url.host_str().map(str::to_owned);
        // Never follow a redirect to another host: it would carry the credentials away.
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.url().host_str() == host.as_deref() && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(policy)
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            v2_headers: headers(&credentials, true),
            v1_headers: headers(&credentials, false),
        })
    }

    fn headers(&self, v2: bool) -> HeaderMap {
        if v2 {
            self.v2_headers.clone()
        } else {
            self.v1_headers.clone()
        }
    }
}

/// One request to send.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'static str,
    /// Under the base URL.
    pub path: &'a str,
    /// The JSON body, serialized once by the caller (it also hashes it for the idempotency key).
    pub body: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    /// API v1 (no v2 Accept header).
    pub v1: bool,
    /// What of an answer's top-level object the caller uses.
    pub keep: Keep<'a>,
}

/// What of a JSON object answer to keep in [`Answer::body`]. Lists and other answers are always
/// kept whole. The whole answer is still read and checked as JSON either way; fields not kept
/// are skipped without being built (a loan answer is mostly fields the executor never reads,
/// a schedule answer mostly installments it does not read after an edit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep<'a> {
    All,
    Fields {
        /// Top-level fields kept whole, besides Mambu's refusal fields (`errors`, `returnCode`,
        /// `returnStatus`, `errorSource`), always kept so that a refusal reads as with
        /// [`Keep::All`].
        whole: &'a [&'a str],
        /// Top-level fields of which only whether they are a list is read: a list is kept as an
        /// empty list, anything else as null.
        lists: &'a [&'a str],
    },
}

/// The fields a refusal is read from ([`Refusal::from_body`]).
const REFUSAL_FIELDS: [&str; 4] = ["errors", "returnCode", "returnStatus", "errorSource"];

/// An answer, read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// The JSON body; `Value::Null` when empty, a string holding the text's size when not JSON.
    pub body: Value,
    pub json: bool,
    pub retry_after: Option<Duration>,
    /// A list's `items-total` header (with `paginationDetails=ON`): how many items in all.
    pub items_total: Option<u64>,
    /// The `Location` header: where a bulk's status is read (`../shared/mambu-api.md` §6).
    pub location: Option<String>,
}

/// Answers bigger than this are not read whole: a Mambu answer is a few kilobytes.
const MAX_BODY: usize = 32 << 20;

impl Client {
    /// Sends one request, once. Transport failures (connect, timeout, a dropped connection, a
    /// truncated body) are errors: the outcome of the call is unknown.
    pub async fn send(&self, request: &Request<'_>) -> Result<Answer, ClientError> {
        // Never a silent GET for a method that is not one.
        let method = match request.method {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            "DELETE" => reqwest::Method::DELETE,
            other => {
                return Err(ClientError::Unsendable {
                    method: other.to_owned(),
                    path: request.path.to_owned(),
                    message: "not an HTTP method Mambu's API takes (GET, POST, PUT, PATCH, DELETE)"
                        .into(),
                });
            }
        };
        let mut builder = self
            .http
            .request(method, format!("{}{}", self.base, request.path))
            .headers(self.headers(!request.v1));
        if let Some(key) = request.idempotency_key {
            builder = builder.header("Idempotency-Key", key);
        }
        if let Some(body) = request.body {
            builder = builder.body(body.to_owned());
        }
        let fail = |message: String| ClientError::Transport {
            method: request.method.into(),
            path: request.path.to_owned(),
            message,
        };
        let mut response = builder
            .send()
            .await
            .map_err(|e| fail(transport_message(&e)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let items_total = response
            .headers()
            .get("items-total")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(transport_message(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(fail(format!("the answer is over {} MiB", MAX_BODY >> 20)));
            }
            bytes.extend_from_slice(&chunk);
        }
        let (body, json) = if bytes.is_empty() {
            (Value::Null, true)
        } else {
            match parse(&bytes, request.keep) {
                Ok(v) => (v, true),
                Err(_) => (
                    Value::String(format!("{} bytes of non-JSON", bytes.len())),
                    false,
                ),
            }
        };
        Ok(Answer {
            status,
            body,
            json,
            retry_after,
            items_total,
            location,
        })
    }
}

/// An answer as JSON: whole, or for an object with [`Keep::Fields`] only what it says (the rest
/// is checked and skipped). Errors exactly when `serde_json::from_slice::<Value>` would.
fn parse(bytes: &[u8], keep: Keep<'_>) -> Result<Value, serde_json::Error> {
    let kept = match keep {
        Keep::Fields { whole, lists } if bytes.trim_ascii_start().first() == Some(&b'{') => {
            Fields { whole, lists }
        }
        _ => return serde_json::from_slice(bytes),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde::Deserializer::deserialize_map(&mut de, kept)?;
    de.end()?;
    Ok(value)
}

/// Builds an object of the kept fields of a JSON object.
#[derive(Clone, Copy)]
struct Fields<'a> {
    whole: &'a [&'a str],
    lists: &'a [&'a str],
}

/// What becomes of one field.
enum Kept {
    Whole(String),
    List(String),
    Skipped,
}

impl<'de> serde::de::Visitor<'de> for Fields<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        // A repeated key: the last one wins, as with a whole parse.
        while let Some(key) = map.next_key_seed(self)? {
            match key {
                Kept::Whole(key) => {
                    out.insert(key, map.next_value::<Value>()?);
                }
                Kept::List(key) => {
                    out.insert(key, map.next_value_seed(ListOrNot)?);
                }
                Kept::Skipped => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Fields<'_> {
    type Value = Kept;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Kept, D::Error> {
        d.deserialize_str(KeyVisitor(self))
    }
}

struct KeyVisitor<'a>(Fields<'a>);

impl<'de> serde::de::Visitor<'de> for KeyVisitor<'_> {
    type Value = Kept;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Kept, E> {
        Ok(
            if self.0.whole.contains(&key) || REFUSAL_FIELDS.contains(&key) {
                Kept::Whole(key.to_owned())
            } else if self.0.lists.contains(&key) {
                Kept::List(key.to_owned())
            } else {
                Kept::Skipped
            },
        )
    }
}

/// A value read only for whether it is a list: `[]` if it is, null if not; its content is
/// checked and skipped.
struct ListOrNot;

impl<'de> serde::de::DeserializeSeed<'de> for ListOrNot {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ListOrNot {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Value::Array(Vec::new()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // Objects, and numbers (serde_json's arbitrary precision hands them over as a map).
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

fn transport_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "the connection failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Mambu's reasons for refusing, from a v2 `{"errors":[...]}` or a v1 `{"returnCode",...}` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    pub code: Option<i64>,
    pub reason: Option<String>,
    pub source: Option<String>,
}

impl Refusal {
    pub fn from_body(body: &Value) -> Self {
        // v2: the first of `errors`; v1: the fields at the top.
        let (at, code, reason) = match body.get("errors").and_then(|e| e.get(0)) {
            Some(first) => (first, "errorCode", "errorReason"),
            None => (body, "returnCode", "returnStatus"),
        };
        let text = |key: &str| at.get(key).and_then(Value::as_str).map(str::to_owned);
        Refusal {
            code: at.get(code).and_then(Value::as_i64),
            reason: text(reason),
            source: text("errorSource"),
        }
    }

    pub fn is(&self, reason: &str) -> bool {
        self.reason.as_deref() == Some(reason)
    }
}

/// What to do about an answer (`../shared/DESIGN.md`, "How a call's outcome is classified").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Transient: send again with the same key, after `retry_after` if the server said.
    Retry {
        throttled: bool,
        retry_after: Option<Duration>,
    },
    /// A refusal for this record: fail the unit (or adopt what exists).
    Refused(Refusal),
    /// The credentials are refused: stop the run.
    Stop(Refusal),
}

/// The one place that decides retry / refuse / stop.
pub fn classify(answer: &Answer) -> Verdict {
    match answer.status {
        200..=299 => Verdict::Success,
        102 | 409 | 500..=599 => Verdict::Retry {
            throttled: false,
            retry_after: answer.retry_after,
        },
        429 => Verdict::Retry {
            throttled: true,
            retry_after: answer.retry_after,
        },
        401 | 403 => Verdict::Stop(Refusal::from_body(&answer.body)),
        _ => Verdict::Refused(Refusal::from_body(&answer.body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_never_show_in_debug() {
        let key = format!("{:?}", Credentials::ApiKey("s3cr3t".into()));
        let basic = format!(
            "{:?}",
            Credentials::Basic {
                username: "u".into(),
                password: "s3cr3t".into()
            }
        );
        assert!(!key.contains("s3cr3t") && !basic.contains("s3cr3t"));
        let client = Client::new(
            "http://127.0.0.1:1/api",
            Credentials::ApiKey("s3cr3t".into()),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{client:?}").contains("s3cr3t"));
    }

    #[tokio::test]
    async fn an_unknown_method_is_refused_never_sent_as_a_get() {
        let client = Client::new(
            "http://127.0.0.1:1/api",
            Credentials::ApiKey("k".into()),
            Duration::from_secs(1),
        )
        .unwrap();
        let request = Request {
            method: "FETCH",
            path: "/clients",
            body: None,
            idempotency_key: None,
            v1: false,
            keep: Keep::All,
        };
        let err = client.send(&request).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Unsendable { .. })
                && err.to_string().contains("FETCH /clients"),
            "{err}"
        );
    }

    #[test]
    fn classifies_as_the_design_says() {
        let answer = |status, body: Value| Answer {
            status,
            body,
            json: true,
            retry_after: None,
            items_total: None,
            location: None,
        };
        assert_eq!(classify(&answer(201, Value::Null)), Verdict::Success);
        for status in [102, 409, 500, 502, 503, 504] {
            assert!(
                matches!(
                    classify(&answer(status, Value::Null)),
                    Verdict::Retry {
                        throttled: false,
                        ..
                    }
                ),
                "{status}"
            );
        }
        assert!(matches!(
            classify(&answer(429, Value::Null)),
            Verdict::Retry {
                throttled: true,
                ..
            }
        ));
        let refused = classify(&answer(
            400,
            serde_json::json!({ "errors": [{ "errorCode": 316, "errorReason": "CLIENT_ID_ALREADY_IN_USE", "errorSource": "id" }] }),
        ));
        assert_eq!(
            refused,
            Verdict::Refused(Refusal {
                code: Some(316),
                reason: Some("CLIENT_ID_ALREADY_IN_USE".into()),
                source: Some("id".into())
            })
        );
        let v1 = Refusal::from_body(
            &serde_json::json!({ "returnCode": 1931, "returnStatus": "ACCOUNT_ALREADY_LINKED" }),
        );
        assert!(v1.is("ACCOUNT_ALREADY_LINKED"));
        assert!(matches!(
            classify(&answer(401, Value::Null)),
            Verdict::Stop(_)
        ));
    }

    #[test]
    fn a_secret_can_come_from_a_file_named_by_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        // Names of this test's own, so that no other test sees them.
        unsafe { std::env::set_var("MM_TEST_KEY_FILE", &path) };
        let credentials =
            Credentials::from_env("MM_TEST_KEY", "MM_TEST_USER", "MM_TEST_PASSWORD").unwrap();
        assert!(matches!(credentials, Credentials::ApiKey(ref k) if k == "s3cr3t"));
        let missing =
            Credentials::from_env("MM_TEST_NONE", "MM_TEST_USER", "MM_TEST_PASSWORD").unwrap_err();
        assert!(
            missing.to_string().contains("MM_TEST_NONE") && !missing.to_string().contains("s3cr3t")
        );
    }

    #[test]
    fn a_partial_parse_keeps_what_it_is_asked_for_and_fails_as_a_whole_one() {
        let keep = Keep::Fields {
            whole: &["id", "encodedKey", "accountState"],
            lists: &["installments"],
        };
        let loan = r#"{"id":"L1","encodedKey":"k","accountState":"APPROVED","loanAmount":1000.50,
            "balances":{"principalBalance":5},"installments":[{"number":1},{"number":2}],"id":"L2"}"#;
        assert_eq!(
            parse(loan.as_bytes(), keep).unwrap(),
            json!({ "id": "L2", "encodedKey": "k", "accountState": "APPROVED", "installments": [] })
        );
        // Anything but a list under a list field is not one.
        for not_a_list in [r#"{}"#, "12.5", r#""x""#, "null", "true"] {
            let body = format!(r#"{{"installments":{not_a_list}}}"#);
            assert_eq!(
                parse(body.as_bytes(), keep).unwrap(),
                json!({ "installments": null })
            );
        }
        // Refusals are read as from a whole parse.
        let refusal = r#"{"errors":[{"errorCode":316,"errorReason":"CLIENT_ID_ALREADY_IN_USE","errorSource":"id"}]}"#;
        assert_eq!(
            Refusal::from_body(&parse(refusal.as_bytes(), keep).unwrap()),
            Refusal::from_body(&serde_json::from_slice(refusal.as_bytes()).unwrap())
        );
        let v1 = r#"{"returnCode":1931,"returnStatus":"ACCOUNT_ALREADY_LINKED"}"#;
        assert_eq!(
            parse(v1.as_bytes(), keep).unwrap(),
            serde_json::from_slice::<Value>(v1.as_bytes()).unwrap()
        );
        // Lists and other answers are whole.
        for whole in [r#" [{"externalId":"T1","amount":5}]"#, "12", r#""text""#] {
            assert_eq!(
                parse(whole.as_bytes(), keep).unwrap(),
                serde_json::from_slice::<Value>(whole.as_bytes()).unwrap()
            );
        }
        // Whatever a whole parse refuses, a partial one refuses: cut off, trailing text,
        // broken skipped fields.
        for broken in [
            r#"{"encodedKey":"8a5b0000000000000000"#,
            r#"{"id":"L1"} x"#,
            r#"{"id":"L1","balances":{"a":}}"#,
            r#"{"id":"L1","installments":[1,}"#,
            "<html><body>Service temporarily degraded</body></html>",
        ] {
            assert!(serde_json::from_slice::<Value>(broken.as_bytes()).is_err());
            assert!(parse(broken.as_bytes(), keep).is_err(), "{broken}");
        }
        assert_eq!(
            parse(loan.as_bytes(), Keep::All).unwrap(),
            serde_json::from_slice::<Value>(loan.as_bytes()).unwrap()
        );
    }

    #[test]
    fn credentials_go_in_the_headers_as_reqwest_would_put_them() {
        let basic = headers(
            &Credentials::Basic {
                username: "u".into(),
                password: "p".into(),
            },
            true,
        );
        assert_eq!(basic[AUTHORIZATION], "Basic dTpw");
        assert!(basic[AUTHORIZATION].is_sensitive());
        assert_eq!(basic[ACCEPT], V2_MEDIA_TYPE);
        let key = headers(&Credentials::ApiKey("k".into()), false);
        assert_eq!(key["apiKey"], "k");
        assert!(key["apiKey"].is_sensitive() && !key.contains_key(ACCEPT));
        assert_eq!(key[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let creds = || Credentials::ApiKey("k".into());
        assert!(Client::new("http://localhost:8080/api", creds(), Duration::from_secs(1)).is_ok());
        assert!(matches!(
            Client::new("http://acme.mambu.com/api", creds(), Duration::from_secs(1)),
            Err(ClientError::PlainHttp(_))
        ));
        assert!(
            Client::new(
                "https://acme.mambu.com/api",
                creds(),
                Duration::from_secs(1)
            )
            .is_ok()
        );
    }
}
