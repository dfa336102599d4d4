//! The Mambu API client: the only module that sees reqwest.
//!
//! It speaks v2 (the `application/vnd.mambu.v2+json` Accept header) and, for the settlement
//! link, v1; it authenticates with the `apiKey` header or basic auth; credentials come from the
//! environment and are redacted from every `Debug`. Plain http is refused except to loopback.

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
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
    #[error("{method} {path}: HTTP {status}: {detail}")]
    Status {
        method: String,
        path: String,
        status: u16,
        detail: String,
    },
    #[error("{method} {path}: the answer is not JSON ({0} bytes)", .bytes)]
    NotJson {
        method: String,
        path: String,
        bytes: usize,
    },
}

/// A Mambu tenant (or the sandbox) to call.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
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
            credentials,
        })
    }

    fn headers(&self, v2: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if v2 {
            headers.insert(ACCEPT, HeaderValue::from_static(V2_MEDIA_TYPE));
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Credentials::ApiKey(key) = &self.credentials
            && let Ok(mut value) = HeaderValue::from_str(key)
        {
            value.set_sensitive(true);
            headers.insert("apiKey", value);
        }
        headers
    }

    /// `GET path` (v2), the answer as JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .headers(self.headers(true));
        if let Credentials::Basic { username, password } = &self.credentials {
            request = request.basic_auth(username, Some(password));
        }
        let fail = |message: String| ClientError::Transport {
            method: "GET".into(),
            path: path.to_owned(),
            message,
        };
        let response = request
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["errors"][0]["errorReason"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{} bytes", bytes.len()));
            return Err(ClientError::Status {
                method: "GET".into(),
                path: path.to_owned(),
                status: status.as_u16(),
                detail,
            });
        }
        serde_json::from_slice(&bytes).map_err(|_| ClientError::NotJson {
            method: "GET".into(),
            path: path.to_owned(),
            bytes: bytes.len(),
        })
    }
}

/// One request to send.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'static str,
    /// Under the base URL.
    pub path: &'a str,
    pub body: Option<&'a Value>,
    pub idempotency_key: Option<&'a str>,
    /// API v1 (no v2 Accept header).
    pub v1: bool,
}

/// An answer, read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// The JSON body; `Value::Null` when empty, a string holding the text's size when not JSON.
    pub body: Value,
    pub json: bool,
    pub retry_after: Option<Duration>,
}

/// Answers bigger than this are not read whole: a Mambu answer is a few kilobytes.
const MAX_BODY: usize = 32 << 20;

impl Client {
    /// Sends one request, once. Transport failures (connect, timeout, a dropped connection, a
    /// truncated body) are errors: the outcome of the call is unknown.
    pub async fn send(&self, request: &Request<'_>) -> Result<Answer, ClientError> {
        let method =
            reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut builder = self
            .http
            .request(method, format!("{}{}", self.base, request.path))
            .headers(self.headers(!request.v1));
        if let Credentials::Basic { username, password } = &self.credentials {
            builder = builder.basic_auth(username, Some(password));
        }
        if let Some(key) = request.idempotency_key {
            builder = builder.header("Idempotency-Key", key);
        }
        if let Some(body) = request.body {
            builder = builder.body(body.to_string());
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
            match serde_json::from_slice::<Value>(&bytes) {
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
        })
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
        if let Some(first) = body.get("errors").and_then(|e| e.get(0)) {
            return Refusal {
                code: first.get("errorCode").and_then(Value::as_i64),
                reason: first
                    .get("errorReason")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                source: first
                    .get("errorSource")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
        }
        Refusal {
            code: body.get("returnCode").and_then(Value::as_i64),
            reason: body
                .get("returnStatus")
                .and_then(Value::as_str)
                .map(str::to_owned),
            source: body
                .get("errorSource")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }

    pub fn is(&self, reason: &str) -> bool {
        self.reason.as_deref() == Some(reason)
    }
}

/// What to do about an answer (DESIGN.md, "How a call's outcome is classified").
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

    #[test]
    fn classifies_as_the_design_says() {
        let answer = |status, body: Value| Answer {
            status,
            body,
            json: true,
            retry_after: None,
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
