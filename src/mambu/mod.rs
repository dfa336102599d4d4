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
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
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
    #[error("no credentials: set {api_key_env}, or {username_env} and {password_env}")]
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
