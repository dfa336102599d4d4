//! The embedded Mambu sandbox: a stateful Mambu simulator served over real HTTP on loopback.
//!
//! It serves Mambu API v2 under `/api` (and the v1 settlement-account link), enforces Mambu's
//! contracts (required fields, v2 Accept header, apiKey or basic auth, unique ids and
//! externalIds, account states, product limits, Idempotency-Key replay, date-time offsets in the
//! tenant's time zone), injects the faults a cutover night sees (latency, 429 throttling, 5xx
//! and 409, lost replies, expired keys), and reports what it holds at `GET /_sandbox/stats`.
//!
//! - [`state`]: the tenant's entities and Mambu's rules over them (no HTTP).
//! - [`tenant`]: the tenant profile (`--tenant FILE`): time zone, users and permissions,
//!   branches, products and client rules.
//! - [`products`]: the tenant's loan and deposit products and branches, as Mambu's JSON has them.
//! - [`error`]: Mambu's v2 and v1 error bodies.
//! - `http`: routes, auth, faults, idempotency, and the connection loop that can drop a reply.
//! - `op`: every change to the tenant as data, and the one dispatcher that runs it.
//! - `idempotency`: the answers kept under Idempotency-Keys, and how long they are kept.
//! - `journal`: the state file of a durable sandbox (`sandbox --state FILE`): every op logged
//!   in SQLite before it is answered, and replayed on start.
//!
//! Only this module sees hyper, and axum only here and in `crate::dashboard` (which serves a
//! run's page); it shares no code with the client.

pub mod error;
mod http;
mod idempotency;
mod journal;
mod op;
pub mod products;
pub mod state;
pub mod tenant;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use http::Replayed;
pub use journal::JournalError;
pub use products::Products;
pub use tenant::TenantProfile;

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The tenant served: its time zone (every v2 date-time must carry its offset at that date,
    /// `../shared/mambu-api.md` §8), users, branches, products and client rules.
    pub tenant: TenantProfile,
    /// Seeds every random decision (faults, jitter), so a faulty run can be replayed.
    pub seed: u64,
    pub faults: Faults,
}

impl SandboxConfig {
    /// A fault-free sandbox serving `tenant`.
    pub fn new(tenant: TenantProfile) -> Self {
        Self {
            tenant,
            seed: 0,
            faults: Faults::default(),
        }
    }

    /// A fault-free built-in tenant (`fixtures/tenants/lenient.yaml`) whose one user takes
    /// the given API key (and basic auth `sandbox`:`sandbox`).
    pub fn with_api_key(api_key: impl Into<String>) -> Self {
        let mut tenant = TenantProfile::lenient();
        tenant.users[0].api_key = Some(api_key.into());
        Self::new(tenant)
    }
}

/// The faults to inject; all off by default. Also readable and replaceable at runtime through
/// `GET`/`PUT /_sandbox/faults` (JSON of this shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every answer.
    pub latency_ms: u64,
    /// Uniform extra latency, 0..=jitter_ms.
    pub jitter_ms: u64,
    /// Past this rate (token bucket), answer 429.
    pub throttle_rps: Option<f64>,
    /// Bucket size; default one second's worth of requests.
    pub throttle_burst: Option<u32>,
    /// Whether 429s carry a Retry-After header.
    pub retry_after: bool,
    /// Share of requests answered 500/502/503/504/409 before anything is changed.
    pub fault_rate: f64,
    /// Share of successful changes whose answer is lost (connection dropped, or a 500).
    pub lost_reply_rate: f64,
    /// Share of successful answers whose body is malformed after the fact (HTML instead of
    /// JSON, JSON cut off, or an entity with fields of the wrong type); a change is applied.
    pub malformed_rate: f64,
    pub idempotency: IdempotencyMode,
    /// The tenant unreachable (a network or Mambu outage): every API request's connection is
    /// closed before anything is done, with no answer. Set and cleared at runtime (`PUT
    /// /_sandbox/faults {"outage": true}`, then `{}`).
    pub outage: bool,
    /// Not a fault: how long a bulk deposit takes from its 202 to COMPLETE (QUEUED for the
    /// first half, IN_PROGRESS for the second), so a client really polls `GET /bulks/{key}`.
    pub bulk_delay_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            jitter_ms: 0,
            throttle_rps: None,
            throttle_burst: None,
            retry_after: true,
            fault_rate: 0.0,
            lost_reply_rate: 0.0,
            malformed_rate: 0.0,
            idempotency: IdempotencyMode::Honour,
            outage: false,
            bulk_delay_ms: 200,
        }
    }
}

/// How `Idempotency-Key` is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyMode {
    /// The same key with the same request replays the first answer; with another request it is
    /// refused.
    Honour,
    /// Keys are not honoured, as if they had expired.
    Ignore,
}

/// A running sandbox.
pub struct SandboxServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    shared: Arc<http::Shared>,
}

impl SandboxServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:8080/api`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// What `GET /_sandbox/stats` answers.
    pub fn stats(&self) -> Value {
        self.shared.stats()
    }

    /// Stops accepting, lets requests in flight finish, and waits for every connection to close.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Starts the sandbox on `addr` (port 0 picks a free port) in the current tokio runtime,
/// holding its tenant in memory only.
pub async fn start(config: SandboxConfig, addr: SocketAddr) -> std::io::Result<SandboxServer> {
    serve(Arc::new(http::Shared::new(config)), addr).await
}

/// Why a durable sandbox did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    State(#[from] JournalError),
    #[error("listening on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Starts a durable sandbox on `addr` whose tenant is kept in the state file `state`: what the
/// file holds is replayed first (blocking: call it before serving anything else), then every
/// change is logged there before it is answered. See `journal`.
pub async fn start_durable(
    config: SandboxConfig,
    addr: SocketAddr,
    state: &Path,
) -> Result<(SandboxServer, Replayed), StartError> {
    let (shared, replayed) = http::Shared::durable(config, state)?;
    let shared = Arc::new(shared);
    let server = serve(shared.clone(), addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    for key in &replayed.pending_bulks {
        shared.schedule_bulk(key.clone());
    }
    Ok((server, replayed))
}

async fn serve(shared: Arc<http::Shared>, addr: SocketAddr) -> std::io::Result<SandboxServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(http::serve(
        listener,
        http::router(shared.clone()),
        shutdown.clone(),
        tasks.clone(),
    ));
    Ok(SandboxServer {
        addr,
        shutdown,
        tasks,
        shared,
    })
}
