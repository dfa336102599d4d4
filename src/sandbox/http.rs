//! The sandbox's HTTP side: routes, the gate every API request passes (latency, throttle,
//! auth, injected faults, Accept header), idempotency and lost replies around every change, and
//! a connection loop that can drop a connection without answering. Every change runs as an
//! [`Op`] under the tenant's lock and, in a durable sandbox, is logged before it is answered.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::ApiError;
use super::idempotency::{KeyStore, Stored};
use super::journal::{Entry, Journal, JournalError, parse_body};
use super::op::Op;
use super::state::{self, Tenant, TransactionKind, Zone};
use super::tenant::TenantProfile;
use super::{Faults, IdempotencyMode, SandboxConfig};

const V2_MEDIA_TYPE: &str = "application/vnd.mambu.v2+json";

/// State shared by every request.
pub struct Shared {
    tenant: Mutex<Tenant>,
    idempotency: Mutex<KeyStore>,
    faults: Mutex<Faults>,
    rng: Mutex<ChaCha8Rng>,
    bucket: Mutex<Option<Bucket>>,
    traffic: Mutex<Traffic>,
    /// The users who may call, their credentials and permissions.
    profile: TenantProfile,
    /// The state file every change is logged to (`sandbox --state`); none: memory only.
    journal: Option<Mutex<Journal>>,
}

/// What a start on an existing state file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Operations run again.
    pub ops: u64,
    /// Idempotency keys still within their retention.
    pub keys: usize,
    /// Bulks queued and not yet processed when the file was last written: their timers are
    /// started again.
    pub pending_bulks: Vec<String>,
}

#[derive(Default)]
struct Traffic {
    by_status: BTreeMap<u16, u64>,
    total: u64,
    throttled: u64,
    injected_faults: u64,
    lost_replies: u64,
    dropped_connections: u64,
    /// Requests whose connection was closed unanswered during an outage.
    outage_drops: u64,
    idempotent_replays: u64,
    idempotency_conflicts: u64,
    malformed: u64,
}

/// A token bucket: `rate` tokens a second, at most `capacity`.
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: Option<u32>) -> Self {
        let capacity = burst.map(f64::from).unwrap_or(rate.ceil()).max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            at: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is free.
    fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate)
            .min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data behind (every update is a single
    // assignment or push), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// A sandbox held in memory only.
    pub fn new(config: SandboxConfig) -> Self {
        let tenant = Self::fresh_tenant(&config.tenant);
        let keys = KeyStore::new(Self::retention(&config.tenant));
        Self::with(config, tenant, keys, None)
    }

    /// A durable sandbox on the state file `path`: what the file holds is replayed first, each
    /// op at the instant it first ran.
    pub fn durable(
        config: SandboxConfig,
        path: &std::path::Path,
    ) -> Result<(Self, Replayed), JournalError> {
        let mut tenant = Self::fresh_tenant(&config.tenant);
        let (mut queued, mut processed) = (Vec::new(), std::collections::HashSet::new());
        let (mut journal, replay) = Journal::open(path, &config.tenant, |at, op, body| {
            let outcome = state::at(at, || op.run(&mut tenant, body));
            match (op, outcome) {
                (Op::QueueBulk, Ok(Value::String(key))) => queued.push(key),
                (Op::ProcessBulk { key }, _) => {
                    processed.insert(key.clone());
                }
                _ => {}
            }
        })?;
        let mut keys = KeyStore::new(Self::retention(&config.tenant));
        let now = Utc::now();
        let mut forgotten = Vec::new();
        for (key, stored) in replay.keys {
            if now - stored.at <= keys.retention() {
                forgotten.extend(keys.insert(key, stored));
            } else {
                forgotten.push(key);
            }
        }
        journal.forget(&forgotten)?;
        queued.retain(|key| !processed.contains(key));
        let replayed = Replayed {
            ops: replay.ops,
            keys: keys.len(),
            pending_bulks: queued,
        };
        Ok((Self::with(config, tenant, keys, Some(journal)), replayed))
    }

    fn fresh_tenant(profile: &TenantProfile) -> Tenant {
        Tenant::new(
            profile.products(),
            Zone::new(profile.zone().unwrap_or(chrono_tz::Tz::UTC)),
            profile.client_rules.clone(),
        )
        .with_custom_field_sets(profile.custom_field_sets.clone())
    }

    /// The profile's key retention (a profile is checked on load; a bad one here is the default).
    fn retention(profile: &TenantProfile) -> chrono::TimeDelta {
        profile
            .key_retention()
            .unwrap_or(super::idempotency::DEFAULT_RETENTION)
    }

    fn with(
        config: SandboxConfig,
        tenant: Tenant,
        keys: KeyStore,
        journal: Option<Journal>,
    ) -> Self {
        let bucket = config
            .faults
            .throttle_rps
            .map(|rps| Bucket::new(rps, config.faults.throttle_burst));
        Self {
            tenant: Mutex::new(tenant),
            idempotency: Mutex::new(keys),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed)),
            bucket: Mutex::new(bucket),
            faults: Mutex::new(config.faults),
            traffic: Mutex::new(Traffic::default()),
            profile: config.tenant,
            journal: journal.map(Mutex::new),
        }
    }

    /// Runs `op` on `tenant` (locked by the caller) at the wall clock's now; returns its
    /// outcome and that instant.
    fn run(
        tenant: &mut Tenant,
        op: &Op,
        parsed: &Value,
    ) -> (Result<Value, ApiError>, DateTime<Utc>) {
        let at = Utc::now();
        (state::at(at, || op.run(tenant, parsed)), at)
    }

    /// Logs a change that ran (durable only), with the idempotency key it stored and the keys
    /// forgotten meanwhile, before anything is answered: the caller still holds the tenant's
    /// lock. A log that cannot be written stops the sandbox at once: the file then holds every
    /// change answered, and a restart on it goes on from there (the change in hand was never
    /// answered, so its client retries).
    fn log(&self, entry: &Entry<'_>, stored: Option<(&str, &Stored)>, forgotten: &[String]) {
        if let Some(journal) = &self.journal
            && let Err(e) = lock(journal).record(entry, stored, forgotten)
        {
            eprintln!("sandbox: {e}; stopping, the state file holds every change answered");
            std::process::exit(1);
        }
    }

    /// Runs and logs a change that stores no idempotency key (the bulk timer, the tamper
    /// endpoint).
    fn run_unkeyed(&self, op: &Op, body: &[u8]) -> Result<Value, ApiError> {
        let parsed =
            parse_body(body).map_err(|e| ApiError::invalid_parameters(format!("body: {e}")))?;
        let mut tenant = lock(&self.tenant);
        let (outcome, at) = Self::run(&mut tenant, op, &parsed);
        self.log(&Entry { at, op, body }, None, &[]);
        outcome
    }

    /// Starts a queued bulk's timer: picked up (IN_PROGRESS) half the fault settings'
    /// `bulk_delay_ms` from now, processed (COMPLETE) at its end.
    pub fn schedule_bulk(self: &Arc<Self>, key: String) {
        let delay = Duration::from_millis(lock(&self.faults).bulk_delay_ms);
        let shared = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay / 2).await;
            let _ = shared.run_unkeyed(&Op::StartBulk { key: key.clone() }, b"");
            tokio::time::sleep(delay - delay / 2).await;
            let _ = shared.run_unkeyed(&Op::ProcessBulk { key }, b"");
        });
    }

    pub fn stats(&self) -> Value {
        let mut stats = lock(&self.tenant).stats();
        let t = lock(&self.traffic);
        stats["requests"] = json!({
            "total": t.total,
            "by_status": t.by_status.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "throttled": t.throttled,
            "injected_faults": t.injected_faults,
            "lost_replies": t.lost_replies,
            "dropped_connections": t.dropped_connections,
            "outage_drops": t.outage_drops,
            "idempotent_replays": t.idempotent_replays,
            "idempotency_conflicts": t.idempotency_conflicts,
            "malformed_answers": t.malformed,
        });
        stats
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).random_bool(p.min(1.0))
    }

    /// The user the request's credentials name (the `apiKey` header, or basic auth), if any.
    fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let user = if let Some(key) = headers.get("apikey") {
            self.profile.user_by_api_key(key.as_bytes())
        } else {
            let basic = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(basic.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (username, password) = text.split_once(':')?;
            self.profile.user_by_password(username, password)
        }?;
        Some(Caller(user.username.clone()))
    }
}

/// Who is calling: the user name of the profile's user the credentials name. Handlers find it
/// in the request's extensions (for four-eyes and permissions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Which API generation a route belongs to: it decides the error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    V2,
}

fn api_of(path: &str) -> Api {
    if path.contains("/settlementAccounts/") {
        Api::V1
    } else {
        Api::V2
    }
}

fn error_response(api: Api, err: &ApiError) -> Response {
    match api {
        Api::V2 => json_response(err.status, Api::V2, &err.v2_body()),
        Api::V1 => json_response(err.status, Api::V1, &err.v1_body()),
    }
}

fn json_response(status: StatusCode, api: Api, body: &Value) -> Response {
    stored_response(status, api, body.to_string())
}

/// A change's answer as first given and as replayed under its Idempotency-Key: `body` is the
/// JSON text the change answered. A 204 has no body; a 202 (a bulk, `../shared/mambu-api.md`
/// §6) answers its bulk process key (the body, a JSON string) in the `Location` header.
/// Stricter reading: §6 names only the header, so a 202 has no body at all.
fn stored_response(status: StatusCode, api: Api, body: String) -> Response {
    if status == StatusCode::ACCEPTED {
        let key: String = serde_json::from_str(&body).unwrap_or_default();
        let location = HeaderValue::from_str(&format!("/api/bulks/{key}"))
            .unwrap_or_else(|_| HeaderValue::from_static("/api/bulks/"));
        return (status, [(header::LOCATION, location)]).into_response();
    }
    let media = if api == Api::V2 {
        V2_MEDIA_TYPE
    } else {
        "application/json"
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
        if status == StatusCode::NO_CONTENT {
            String::new()
        } else {
            body
        },
    )
        .into_response()
}

/// Lets a handler drop its connection without answering (a lost reply).
#[derive(Clone)]
pub struct ConnHandle(Arc<Notify>);

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/clients", post(create_client))
        .route(
            "/clients/{id}",
            get(get_client)
                .patch(patch_client)
                .delete(delete::<CLIENTS>),
        )
        .route("/groups", post(create_group))
        .route("/groups/{id}", get(get_group).delete(delete::<GROUPS>))
        .route("/deposits", post(create_deposit))
        .route("/deposits/deposit-transactions:bulk", post(bulk_deposits))
        .route(
            "/deposits/{id}",
            get(get_deposit)
                .post(deposit_action)
                .delete(delete::<DEPOSITS>),
        )
        .route("/deposits/transactions/{id}", post(adjust::<DEPOSITS>))
        .route("/deposits/{id}/transactions", get(deposit_transactions))
        .route(
            "/deposits/{id}/deposit-transactions",
            post(deposit_transaction::<false>),
        )
        .route(
            "/deposits/{id}/withdrawal-transactions",
            post(deposit_transaction::<true>),
        )
        .route("/bulks/{key}", get(get_bulk))
        .route("/loans", post(create_loan))
        .route(
            "/loans/{id}",
            get(get_loan).post(loan_action).delete(delete::<LOANS>),
        )
        .route("/loans/transactions/{id}", post(adjust::<LOANS>))
        .route("/loans/{id}/schedule", get(get_schedule).put(edit_schedule))
        .route("/loans/{id}/transactions", get(loan_transactions))
        .route("/loans/{id}/disbursement-transactions", post(disburse))
        .route("/loans/{id}/fee-transactions", post(apply_fee))
        .route("/loans/{id}/repayment-transactions", post(repay))
        .route("/loans/{id}/lock-transactions", post(lock_change::<false>))
        .route("/loans/{id}/unlock-transactions", post(lock_change::<true>))
        .route(
            "/loans/{id}/settlementAccounts/{deposit}",
            post(link_settlement),
        )
        .route("/loanproducts", get(loan_products))
        .route("/loanproducts/{id}", get(loan_product))
        .route("/depositproducts", get(deposit_products))
        .route("/depositproducts/{id}", get(deposit_product))
        .route("/branches", get(branches))
        .route("/branches/{id}", get(branch))
        .route("/setup/organization", get(organization_setup))
        .route("/customfieldsets", get(custom_field_sets))
        .route("/customfields/{id}", get(custom_field))
        .fallback(unknown_operation)
        .layer(middleware::from_fn_with_state(shared.clone(), gate));
    Router::new()
        .nest("/api", api)
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/faults", get(get_faults).put(put_faults))
        .route("/_sandbox/tamper", post(tamper))
        .with_state(shared)
}

/// Serves connections until `shutdown`, then lets each finish its request in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let drop_signal = Arc::new(Notify::new());
            let handle = ConnHandle(drop_signal.clone());
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(handle.clone());
                    let app = app.clone();
                    async move { tower::ServiceExt::oneshot(app, req.map(Body::new)).await }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Dropping the connection future closes the socket with no answer written.
                () = drop_signal.notified() => {}
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Every API request passes here first: latency, throttle, auth, injected faults, Accept.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let api = api_of(request.uri().path());
    let faults = lock(&shared.faults).clone();
    if faults.outage {
        lock(&shared.traffic).outage_drops += 1;
        if let Some(conn) = request.extensions().get::<ConnHandle>() {
            conn.0.notify_one();
        }
        // Never answered: the connection is gone.
        return std::future::pending().await;
    }
    let delay = faults.latency_ms
        + if faults.jitter_ms > 0 {
            lock(&shared.rng).random_range(0..=faults.jitter_ms)
        } else {
            0
        };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut request = request;
    let mut response = match admit(&shared, &faults, api, &mut request) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    };
    if response.status().is_success() && shared.chance(faults.malformed_rate) {
        response = malformed(&shared, response);
    }
    let mut traffic = lock(&shared.traffic);
    traffic.total += 1;
    *traffic
        .by_status
        .entry(response.status().as_u16())
        .or_default() += 1;
    response
}

/// The answer that stops a request before its handler, if any.
fn admit(shared: &Shared, faults: &Faults, api: Api, request: &mut Request) -> Option<Response> {
    if let Some(bucket) = lock(&shared.bucket).as_mut()
        && let Err(wait) = bucket.take()
    {
        lock(&shared.traffic).throttled += 1;
        // Mambu does not publish its 429 body; clients must act on the status alone.
        let err =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, 429, "TOO_MANY_REQUESTS").at("rate limit");
        let mut response = error_response(api, &err);
        if faults.retry_after {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        return Some(response);
    }
    let Some(caller) = shared.caller(request.headers()) else {
        return Some(error_response(api, &ApiError::invalid_credentials()));
    };
    request.extensions_mut().insert(caller);
    if shared.chance(faults.fault_rate) {
        lock(&shared.traffic).injected_faults += 1;
        let pick = lock(&shared.rng).random_range(0..5);
        return Some(match pick {
            0 => error_response(api, &ApiError::internal_error()),
            1 => gateway_error(StatusCode::BAD_GATEWAY),
            2 => gateway_error(StatusCode::SERVICE_UNAVAILABLE),
            3 => gateway_error(StatusCode::GATEWAY_TIMEOUT),
            _ => error_response(api, &ApiError::resource_locked()),
        });
    }
    let accepts_v2 = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains(V2_MEDIA_TYPE)));
    if api == Api::V2 && !accepts_v2 {
        // Without the v2 media type Mambu treats the call as API v1, which this sandbox serves
        // only for the settlement link.
        let err = ApiError::new(StatusCode::BAD_REQUEST, 3, "INVALID_API_OPERATION")
            .at(format!("Accept: send {V2_MEDIA_TYPE} for API v2"));
        return Some(error_response(Api::V1, &err));
    }
    None
}

/// A successful answer spoiled: HTML instead of JSON, JSON cut off, or an entity whose
/// fields have the wrong types. Whatever the request changed stays changed.
fn malformed(shared: &Shared, response: Response) -> Response {
    lock(&shared.traffic).malformed += 1;
    let status = response.status();
    let (text, media) = match lock(&shared.rng).random_range(0..3) {
        0 => (
            "<html><body>Service temporarily degraded</body></html>".to_owned(),
            "text/html",
        ),
        1 => (
            r#"{"encodedKey":"8a5b0000000000000000"#.to_owned(),
            V2_MEDIA_TYPE,
        ),
        _ => (
            r#"{"encodedKey":12345,"id":null,"accountState":["ACTIVE"]}"#.to_owned(),
            V2_MEDIA_TYPE,
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
        text,
    )
        .into_response()
}

/// What a load balancer in front of Mambu answers: HTML, not JSON.
fn gateway_error(status: StatusCode) -> Response {
    let text = format!("<html><body><h1>{status}</h1></body></html>");
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))],
        text,
    )
        .into_response()
}

async fn unknown_operation(request: Request) -> Response {
    error_response(
        api_of(request.uri().path()),
        &ApiError::invalid_api_operation(request.uri().path().to_owned()),
    )
}

/// A change to the tenant: parse the body, honour the Idempotency-Key, apply, maybe lose the
/// reply. `idempotent` is false where Mambu offers no key (PUT, the v1 link).
struct Change<'a> {
    shared: &'a Arc<Shared>,
    headers: &'a HeaderMap,
    conn: &'a ConnHandle,
    api: Api,
    idempotent: bool,
    success: StatusCode,
    route: String,
}

impl Change<'_> {
    async fn apply(self, body: &Bytes, op: Op) -> Response {
        let parsed = match parse_body(body) {
            Ok(v) => v,
            Err(e) => {
                return error_response(
                    self.api,
                    &ApiError::invalid_parameters(format!(
                        "body: malformed JSON at line {} column {}",
                        e.line(),
                        e.column()
                    )),
                );
            }
        };
        let mode = lock(&self.shared.faults).idempotency;
        let key = match self.headers.get("idempotency-key") {
            Some(v) if self.idempotent && mode == IdempotencyMode::Honour => {
                match v.to_str().ok().and_then(|s| uuid::Uuid::parse_str(s).ok()) {
                    Some(uuid) => Some(uuid.to_string()),
                    None => {
                        return error_response(
                            self.api,
                            &ApiError::invalid_parameters("Idempotency-Key: must be a valid UUID"),
                        );
                    }
                }
            }
            _ => None,
        };
        let fingerprint: [u8; 32] = Sha256::new()
            .chain_update(self.route.as_bytes())
            .chain_update(parsed.to_string().as_bytes())
            .finalize()
            .into();
        let outcome = {
            let mut keys = lock(&self.shared.idempotency);
            if let Some(stored) = key.as_ref().and_then(|k| keys.get(k, Utc::now())) {
                let mut traffic = lock(&self.shared.traffic);
                if stored.fingerprint == fingerprint {
                    traffic.idempotent_replays += 1;
                    return stored_response(stored.status, self.api, stored.body.to_string());
                }
                traffic.idempotency_conflicts += 1;
                return error_response(self.api, &ApiError::idempotency_key_reused());
            }
            let mut tenant = lock(&self.shared.tenant);
            let (result, at) = Shared::run(&mut tenant, &op, &parsed);
            let (key, forgotten) = match (&result, key) {
                (Ok(answer), Some(key)) => {
                    let stored = Stored {
                        fingerprint,
                        status: self.success,
                        body: answer.to_string().into_boxed_str(),
                        at,
                    };
                    let forgotten = keys.insert(key.clone(), stored);
                    (Some(key), forgotten)
                }
                _ => (None, Vec::new()),
            };
            let stored = key.as_deref().and_then(|k| Some((k, keys.peek(k)?)));
            self.shared
                .log(&Entry { at, op: &op, body }, stored, &forgotten);
            result
        };
        match outcome {
            Err(err) => error_response(self.api, &err),
            Ok(body) => {
                if let (Op::QueueBulk, Value::String(key)) = (&op, &body) {
                    self.shared.schedule_bulk(key.clone());
                }
                let lost_rate = lock(&self.shared.faults).lost_reply_rate;
                if self.shared.chance(lost_rate) {
                    return self.lose_reply().await;
                }
                stored_response(self.success, self.api, body.to_string())
            }
        }
    }

    /// The change is applied; now the answer never arrives: the connection drops, or a 500.
    async fn lose_reply(self) -> Response {
        let drop_connection = self.shared.chance(0.5);
        {
            let mut traffic = lock(&self.shared.traffic);
            traffic.lost_replies += 1;
            traffic.dropped_connections += u64::from(drop_connection);
        }
        if drop_connection {
            self.conn.0.notify_one();
            std::future::pending::<()>().await;
        }
        error_response(self.api, &ApiError::internal_error())
    }
}

fn change<'a>(
    shared: &'a Arc<Shared>,
    headers: &'a HeaderMap,
    conn: &'a ConnHandle,
    api: Api,
    idempotent: bool,
    success: StatusCode,
    route: String,
) -> Change<'a> {
    Change {
        shared,
        headers,
        conn,
        api,
        idempotent,
        success,
        route,
    }
}

/// A call the sandbox serves, as its permission check sees it: a `:changeState` call carries
/// its body's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call<'a> {
    ReadClient,
    CreateClient,
    /// `PATCH /clients/{id}` (a catch-up's update).
    EditClient,
    ReadGroup,
    CreateGroup,
    ReadDeposit,
    CreateDeposit,
    DepositState(&'a str),
    /// A deposit transaction (issue 18): `POST /deposits/{id}/deposit-transactions`.
    MakeDeposit,
    /// `POST /deposits/{id}/withdrawal-transactions`.
    MakeWithdrawal,
    /// A deposit or withdrawal whose valueDate is before the tenant's today, on top of its
    /// own permission.
    BackdateSavings,
    /// A loan, its schedule or its transactions.
    ReadLoan,
    CreateLoan,
    LoanState(&'a str),
    EditSchedule,
    Disburse,
    ApplyFee,
    Repay,
    /// A disbursement, fee or repayment whose valueDate is before the tenant's today, on top
    /// of the transaction's own permission.
    Backdate,
    /// Locking or unlocking a loan.
    Lock,
    /// `POST /loans/{id}:writeOff` (issue 18).
    WriteOff,
    /// `POST /loans/{id}:undoWriteOff` (issue 19).
    UndoWriteOff,
    LinkSettlement,
    ReadLoanProducts,
    ReadDepositProducts,
    ReadBranches,
    ReadOrganization,
    /// Custom field sets and definitions.
    ReadCustomFields,
    /// `POST /loans/transactions/{id}:adjust` (issue 19).
    AdjustLoanTransaction,
    /// `POST /deposits/transactions/{id}:adjust` (issue 19).
    AdjustDepositTransaction,
    /// `DELETE /loans/{id}`, `/deposits/{id}`, `/clients/{id}` (issue 19).
    DeleteLoan,
    DeleteDeposit,
    DeleteClient,
    /// `DELETE /groups/{id}` (issue 19).
    DeleteGroup,
}

/// The permission each call needs: the sandbox's one table of access rules. The names are
/// Mambu's (`access.permissions`, skyleague/mambu-sdk `src/users/rest.zod.ts`; `DIBURSE_LOANS`
/// is Mambu's spelling) and all appear in [`crate::sandbox::tenant::PERMISSIONS`].
/// Administrators hold them all; a missing one is a 403 `INVALID_PERMISSIONS` naming it
/// (`../shared/mambu-api.md` §8, "Repayments and backdating", names the backdating, linking
/// and fee permissions and the 403; which `VIEW_*` permission each read needs is the stricter
/// reading: the record does not say).
fn required_permission(call: Call<'_>) -> &'static str {
    match call {
        Call::ReadClient => "VIEW_CLIENT_DETAILS",
        Call::CreateClient => "CREATE_CLIENT",
        Call::EditClient => "EDIT_CLIENT",
        Call::ReadGroup => "VIEW_GROUP_DETAILS",
        Call::CreateGroup => "CREATE_GROUP",
        Call::ReadDeposit => "VIEW_SAVINGS_ACCOUNT_DETAILS",
        Call::CreateDeposit => "CREATE_SAVINGS_ACCOUNT",
        Call::DepositState("APPROVE" | "UNDO_APPROVE") => "APPROVE_SAVINGS",
        Call::DepositState("LOCK" | "UNLOCK") => "EDIT_SAVINGS_ACCOUNT",
        Call::DepositState("CLOSE" | "CLOSE_WITHDRAW" | "CLOSE_REJECT" | "CLOSE_WRITE_OFF") => {
            "CLOSE_SAVINGS_ACCOUNTS"
        }
        // An action Mambu does not have is refused (INVALID_PARAMETERS) to whoever may see the
        // account: no more is learnt than a read gives.
        Call::DepositState(_) => "VIEW_SAVINGS_ACCOUNT_DETAILS",
        Call::MakeDeposit => "MAKE_DEPOSIT",
        Call::MakeWithdrawal => "MAKE_WITHDRAWAL",
        Call::BackdateSavings => "BACKDATE_SAVINGS_TRANSACTIONS",
        Call::ReadLoan => "VIEW_LOAN_ACCOUNT_DETAILS",
        Call::CreateLoan => "CREATE_LOAN_ACCOUNT",
        Call::LoanState("APPROVE" | "UNDO_APPROVE") => "APPROVE_LOANS",
        Call::LoanState("REQUEST_APPROVAL") => "REQUEST_LOAN_APPROVAL",
        Call::LoanState("SET_INCOMPLETE") => "EDIT_LOAN_ACCOUNT",
        Call::LoanState("REJECT" | "UNDO_REJECT") => "REJECT_LOANS",
        Call::LoanState("WITHDRAW" | "UNDO_WITHDRAW") => "WITHDRAW_LOAN_ACCOUNTS",
        Call::LoanState("CLOSE" | "UNDO_CLOSE") => "CLOSE_LOAN_ACCOUNTS",
        Call::LoanState(_) => "VIEW_LOAN_ACCOUNT_DETAILS",
        Call::EditSchedule => "EDIT_REPAYMENT_SCHEDULE",
        Call::Disburse => "DIBURSE_LOANS",
        Call::ApplyFee => "APPLY_LOAN_FEES",
        Call::Repay => "ENTER_REPAYMENT",
        Call::Backdate => "BACKDATE_LOAN_TRANSACTIONS",
        Call::Lock => "LOCK_LOAN_ACCOUNTS",
        Call::WriteOff => "WRITE_OFF_LOAN_ACCOUNTS",
        Call::UndoWriteOff => "REVERSE_LOAN_ACCOUNT_WRITE_OFF",
        Call::LinkSettlement => "LINK_ACCOUNTS",
        Call::ReadLoanProducts => "VIEW_LOAN_PRODUCT_DETAILS",
        Call::ReadDepositProducts => "VIEW_SAVINGS_PRODUCT_DETAILS",
        Call::ReadBranches => "VIEW_BRANCH_DETAILS",
        Call::ReadOrganization => "VIEW_ORGANIZATION_DETAILS",
        Call::ReadCustomFields => "VIEW_CUSTOM_FIELD",
        Call::AdjustLoanTransaction => "APPLY_LOAN_ADJUSTMENTS",
        Call::AdjustDepositTransaction => "APPLY_SAVINGS_ADJUSTMENTS",
        Call::DeleteLoan => "DELETE_LOAN_ACCOUNT",
        Call::DeleteDeposit => "DELETE_SAVINGS_ACCOUNT",
        Call::DeleteClient => "DELETE_CLIENTS",
        Call::DeleteGroup => "DELETE_GROUP",
    }
}

impl Shared {
    /// Refuses the caller the first of `calls` whose permission its user lacks.
    fn permit(&self, caller: &Caller, calls: &[Call<'_>]) -> Result<(), ApiError> {
        let user = self.profile.user(&caller.0);
        for &call in calls {
            let permission = required_permission(call);
            if !user.is_some_and(|u| u.may(permission)) {
                return Err(ApiError::invalid_permissions(permission));
            }
        }
        Ok(())
    }

    /// Whether a transaction body's `valueDate` falls on a day before the tenant's today (on
    /// its zone's calendar). An absent or unreadable one does not: the state refuses what it
    /// cannot read, and an absent one means now.
    fn backdated(&self, body: &Bytes) -> bool {
        let Ok(zone) = self.profile.zone() else {
            return false;
        };
        let today = chrono::Utc::now().with_timezone(&zone).date_naive();
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|b| chrono::DateTime::parse_from_rfc3339(b.get("valueDate")?.as_str()?).ok())
            .is_some_and(|at| at.with_timezone(&zone).date_naive() < today)
    }
}

/// The answer that stops a call whose caller lacks a permission, before anything is changed
/// or looked up (and before an Idempotency-Key is read: a refusal is never stored under it).
fn forbidden(s: &Shared, caller: &Caller, api: Api, calls: &[Call<'_>]) -> Option<Response> {
    s.permit(caller, calls)
        .err()
        .map(|err| error_response(api, &err))
}

/// The `action` of a `:changeState` body, for its permission ("" when there is none: the
/// state refuses that body).
fn action_of(body: &Bytes) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b.get("action")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A POST that creates an entity (v2, with an Idempotency-Key, 201 on success).
#[allow(clippy::too_many_arguments)]
async fn create(
    s: &Arc<Shared>,
    c: &ConnHandle,
    h: &HeaderMap,
    caller: &Caller,
    body: &Bytes,
    route: &str,
    call: Call<'_>,
    op: Op,
) -> Response {
    if let Some(refusal) = forbidden(s, caller, Api::V2, &[call]) {
        return refusal;
    }
    change(
        s,
        h,
        c,
        Api::V2,
        true,
        StatusCode::CREATED,
        route.to_owned(),
    )
    .apply(body, op)
    .await
}

async fn create_client(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let op = Op::CreateClient;
    create(
        &s,
        &c,
        &h,
        &caller,
        &body,
        "POST /clients",
        Call::CreateClient,
        op,
    )
    .await
}

/// `PATCH /clients/{id}`: 204 without a body. No Idempotency-Key (Mambu offers none on
/// PATCH): replaying the same operations leaves the same client.
async fn patch_client(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = forbidden(&s, &caller, Api::V2, &[Call::EditClient]) {
        return refusal;
    }
    let route = format!("PATCH /clients/{id}");
    change(&s, &h, &c, Api::V2, false, StatusCode::NO_CONTENT, route)
        .apply(&body, Op::PatchClient { id })
        .await
}

async fn create_group(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let op = Op::CreateGroup;
    create(
        &s,
        &c,
        &h,
        &caller,
        &body,
        "POST /groups",
        Call::CreateGroup,
        op,
    )
    .await
}

async fn create_deposit(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let op = Op::CreateDeposit;
    create(
        &s,
        &c,
        &h,
        &caller,
        &body,
        "POST /deposits",
        Call::CreateDeposit,
        op,
    )
    .await
}

async fn create_loan(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let op = Op::CreateLoan {
        user: caller.0.clone(),
    };
    create(
        &s,
        &c,
        &h,
        &caller,
        &body,
        "POST /loans",
        Call::CreateLoan,
        op,
    )
    .await
}

/// The op of a change to the account a path names (its id or key).
type AccountOp = fn(String) -> Op;

/// The op of a state change of the account a path names, as the calling user: its id or key,
/// the user name.
type StateOp = fn(String, String) -> Op;

/// `POST /{accounts}/{id}:changeState`: axum sees `{id}:changeState` as one path segment.
#[allow(clippy::too_many_arguments)]
async fn change_state(
    s: Arc<Shared>,
    c: ConnHandle,
    h: HeaderMap,
    caller: Caller,
    segment: String,
    body: Bytes,
    accounts: &'static str,
    call: for<'a> fn(&'a str) -> Call<'a>,
    op: StateOp,
) -> Response {
    match segment.split_once(':') {
        Some((id, "changeState")) => {
            if let Some(refusal) = forbidden(&s, &caller, Api::V2, &[call(&action_of(&body))]) {
                return refusal;
            }
            let id = id.to_owned();
            change(
                &s,
                &h,
                &c,
                Api::V2,
                true,
                StatusCode::OK,
                format!("POST /{accounts}/{id}:changeState"),
            )
            .apply(&body, op(id, caller.0.clone()))
            .await
        }
        _ => error_response(
            Api::V2,
            &ApiError::invalid_api_operation(format!("/{accounts}/{segment}")),
        ),
    }
}

async fn deposit_action(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(segment): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    change_state(
        s,
        c,
        h,
        caller,
        segment,
        body,
        "deposits",
        |action| Call::DepositState(action),
        |id, _| Op::DepositState { id },
    )
    .await
}

async fn loan_action(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(segment): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(id) = segment.strip_suffix(":writeOff") {
        return write_off(&s, &c, &h, &caller, id, &body, false).await;
    }
    if let Some(id) = segment.strip_suffix(":undoWriteOff") {
        return write_off(&s, &c, &h, &caller, id, &body, true).await;
    }
    change_state(
        s,
        c,
        h,
        caller,
        segment,
        body,
        "loans",
        |action| Call::LoanState(action),
        |id, user| Op::LoanState { id, user },
    )
    .await
}

/// `POST /{loans|deposits}/transactions/{id}:adjust` (issue 19): 200 with the transaction as
/// adjusted, an Idempotency-Key honoured. `KIND` is [`LOANS`] or [`DEPOSITS`].
async fn adjust<const KIND: u8>(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(segment): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let (accounts, call, op): (&str, Call, AccountOp) = match KIND {
        LOANS => ("loans", Call::AdjustLoanTransaction, |id| {
            Op::AdjustLoanTransaction { id }
        }),
        _ => ("deposits", Call::AdjustDepositTransaction, |id| {
            Op::AdjustDepositTransaction { id }
        }),
    };
    let Some(id) = segment.strip_suffix(":adjust") else {
        return error_response(
            Api::V2,
            &ApiError::invalid_api_operation(format!("/{accounts}/transactions/{segment}")),
        );
    };
    if let Some(refusal) = forbidden(&s, &caller, Api::V2, &[call]) {
        return refusal;
    }
    let route = format!("POST /{accounts}/transactions/{id}:adjust");
    change(&s, &h, &c, Api::V2, true, StatusCode::OK, route)
        .apply(&body, op(id.to_owned()))
        .await
}

/// What `DELETE /{entities}/{id}` removes (issue 19), as the const parameter of [`delete`].
const LOANS: u8 = 0;
const DEPOSITS: u8 = 1;
const CLIENTS: u8 = 2;
const GROUPS: u8 = 3;

/// `DELETE /{entities}/{id}` (issue 19): 204. No Idempotency-Key (Mambu offers none on DELETE);
/// a second DELETE answers 404, which a caller takes as done. A reply may still be lost.
async fn delete<const KIND: u8>(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Response {
    let (entities, call, op): (&str, Call, AccountOp) = match KIND {
        LOANS => ("loans", Call::DeleteLoan, |id| Op::DeleteLoan { id }),
        DEPOSITS => ("deposits", Call::DeleteDeposit, |id| Op::DeleteDeposit {
            id,
        }),
        GROUPS => ("groups", Call::DeleteGroup, |id| Op::DeleteGroup { id }),
        _ => ("clients", Call::DeleteClient, |id| Op::DeleteClient { id }),
    };
    if let Some(refusal) = forbidden(&s, &caller, Api::V2, &[call]) {
        return refusal;
    }
    let route = format!("DELETE /{entities}/{id}");
    change(&s, &h, &c, Api::V2, false, StatusCode::NO_CONTENT, route)
        .apply(&Bytes::new(), op(id))
        .await
}

/// `POST /loans/{id}:writeOff` (issue 18) and, `undo`, `POST /loans/{id}:undoWriteOff` (issue
/// 19): 204 without a body, an Idempotency-Key honoured.
async fn write_off(
    s: &Arc<Shared>,
    c: &ConnHandle,
    h: &HeaderMap,
    caller: &Caller,
    id: &str,
    body: &Bytes,
    undo: bool,
) -> Response {
    let (call, action, op): (Call, &str, AccountOp) = if undo {
        (Call::UndoWriteOff, "undoWriteOff", |id| Op::UndoWriteOff {
            id,
        })
    } else {
        (Call::WriteOff, "writeOff", |id| Op::WriteOff { id })
    };
    if let Some(refusal) = forbidden(s, caller, Api::V2, &[call]) {
        return refusal;
    }
    change(
        s,
        h,
        c,
        Api::V2,
        true,
        StatusCode::NO_CONTENT,
        format!("POST /loans/{id}:{action}"),
    )
    .apply(body, op(id.to_owned()))
    .await
}

async fn edit_schedule(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = forbidden(&s, &caller, Api::V2, &[Call::EditSchedule]) {
        return refusal;
    }
    change(
        &s,
        &h,
        &c,
        Api::V2,
        false,
        StatusCode::OK,
        format!("PUT /loans/{id}/schedule"),
    )
    .apply(&body, Op::EditSchedule { id })
    .await
}

async fn post_transaction(
    s: Arc<Shared>,
    c: ConnHandle,
    h: HeaderMap,
    caller: Caller,
    id: String,
    kind: TransactionKind,
    body: Bytes,
) -> Response {
    let own = match kind {
        TransactionKind::Disbursement => Call::Disburse,
        TransactionKind::Fee => Call::ApplyFee,
        TransactionKind::Repayment => Call::Repay,
    };
    if let Some(refusal) = forbidden_transaction(&s, &caller, &body, own, Call::Backdate) {
        return refusal;
    }
    let route = format!("POST /loans/{id}/{kind:?}");
    let op = match kind {
        TransactionKind::Disbursement => Op::Disburse { id },
        TransactionKind::Fee => Op::ApplyFee { id },
        TransactionKind::Repayment => Op::Repay { id },
    };
    change(&s, &h, &c, Api::V2, true, StatusCode::CREATED, route)
        .apply(&body, op)
        .await
}

async fn disburse(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    post_transaction(s, c, h, caller, id, TransactionKind::Disbursement, body).await
}

async fn apply_fee(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    post_transaction(s, c, h, caller, id, TransactionKind::Fee, body).await
}

async fn repay(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    post_transaction(s, c, h, caller, id, TransactionKind::Repayment, body).await
}

/// `POST /deposits/{id}/deposit-transactions`, or `/withdrawal-transactions` when `WITHDRAWAL`
/// (v2, with an Idempotency-Key, 201): MAKE_DEPOSIT or MAKE_WITHDRAWAL, and
/// BACKDATE_SAVINGS_TRANSACTIONS for a value date before the tenant's today.
async fn deposit_transaction<const WITHDRAWAL: bool>(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let (op, own, path): (AccountOp, _, _) = if WITHDRAWAL {
        (
            |id| Op::Withdraw { id },
            Call::MakeWithdrawal,
            "withdrawal-transactions",
        )
    } else {
        (
            |id| Op::Deposit { id },
            Call::MakeDeposit,
            "deposit-transactions",
        )
    };
    if let Some(refusal) = forbidden_transaction(&s, &caller, &body, own, Call::BackdateSavings) {
        return refusal;
    }
    let route = format!("POST /deposits/{id}/{path}");
    change(&s, &h, &c, Api::V2, true, StatusCode::CREATED, route)
        .apply(&body, op(id))
        .await
}

/// A transaction's permissions: its own, and `backdate` too when its valueDate is before the
/// tenant's today (Mambu's BACKDATE_LOAN_TRANSACTIONS / BACKDATE_SAVINGS_TRANSACTIONS).
fn forbidden_transaction(
    s: &Shared,
    caller: &Caller,
    body: &Bytes,
    own: Call,
    backdate: Call,
) -> Option<Response> {
    let calls: &[Call] = if s.backdated(body) {
        &[own, backdate]
    } else {
        &[own]
    };
    forbidden(s, caller, Api::V2, calls)
}

/// `POST /deposits/deposit-transactions:bulk` (v2, with an Idempotency-Key): 202 before any
/// item is posted, the bulk process key in `Location`. The bulk is picked up (IN_PROGRESS) half
/// the fault settings' `bulk_delay_ms` later and processed (COMPLETE) at its end. It needs
/// MAKE_DEPOSIT, as each of its items would alone. Under an Idempotency-Key its replay answers
/// the same key and queues nothing; with keys ignored a retry is a new bulk whose items the
/// first one posted fail as duplicates of their externalIds.
async fn bulk_deposits(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = forbidden(&s, &caller, Api::V2, &[Call::MakeDeposit]) {
        return refusal;
    }
    let route = "POST /deposits/deposit-transactions:bulk".to_owned();
    change(&s, &h, &c, Api::V2, true, StatusCode::ACCEPTED, route)
        .apply(&body, Op::QueueBulk)
        .await
}

/// `GET /bulks/{bulkProcessKey}`: the bulk's status and, once COMPLETE, each item's outcome.
/// Stricter reading: the record does not say which permission reads it; whoever may see
/// deposit accounts may (VIEW_SAVINGS_ACCOUNT_DETAILS).
async fn get_bulk(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Response {
    read(&s, &caller, Call::ReadDeposit, |t| t.bulk_status(&key))
}

/// `POST /loans/{id}/lock-transactions`, or `/unlock-transactions` when `UNLOCK` (v2, with an
/// Idempotency-Key, 201).
async fn lock_change<const UNLOCK: bool>(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = forbidden(&s, &caller, Api::V2, &[Call::Lock]) {
        return refusal;
    }
    let (kind, op): (&str, AccountOp) = if UNLOCK {
        ("unlock", |id| Op::UnlockLoan { id })
    } else {
        ("lock", |id| Op::LockLoan { id })
    };
    let route = format!("POST /loans/{id}/{kind}-transactions");
    change(&s, &h, &c, Api::V2, true, StatusCode::CREATED, route)
        .apply(&body, op(id))
        .await
}

async fn link_settlement(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Extension(caller): Extension<Caller>,
    Path((loan, deposit)): Path<(String, String)>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = forbidden(&s, &caller, Api::V1, &[Call::LinkSettlement]) {
        return refusal;
    }
    let route = format!("POST /loans/{loan}/settlementAccounts/{deposit}");
    change(&s, &h, &c, Api::V1, false, StatusCode::OK, route)
        .apply(&body, Op::LinkSettlement { loan, deposit })
        .await
}

/// Answers a read of one entity, when the caller may make it.
fn read(
    shared: &Shared,
    caller: &Caller,
    call: Call<'_>,
    op: impl FnOnce(&Tenant) -> Result<Value, ApiError>,
) -> Response {
    if let Some(refusal) = forbidden(shared, caller, Api::V2, &[call]) {
        return refusal;
    }
    match op(&lock(&shared.tenant)) {
        Ok(body) => json_response(StatusCode::OK, Api::V2, &body),
        Err(err) => error_response(Api::V2, &err),
    }
}

/// How much of an entity a GET answers (`detailsLevel`, `../shared/mambu-api.md` §8
/// "Pagination"): BASIC, the default, leaves out addresses, ID documents, custom field values
/// (the `_Set_Id` keys) and a loan's guarantors and assets (related objects, as addresses are:
/// the stricter reading); FULL keeps them. Another value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Details {
    Basic,
    Full,
}

impl Details {
    fn of(q: &HashMap<String, String>) -> Result<Self, ApiError> {
        match q.get("detailsLevel").map(String::as_str) {
            None | Some("BASIC") => Ok(Details::Basic),
            Some("FULL") => Ok(Details::Full),
            Some(_) => Err(ApiError::invalid_parameters("detailsLevel")),
        }
    }

    fn apply(self, mut entity: Value) -> Value {
        if let (Details::Basic, Value::Object(fields)) = (self, &mut entity) {
            fields.retain(|k, _| {
                !matches!(
                    k.as_str(),
                    "addresses" | "idDocuments" | "guarantors" | "assets"
                ) && !k.starts_with('_')
            });
        }
        entity
    }
}

/// A read of one client, deposit or loan, at the query's `detailsLevel`.
fn read_entity(
    shared: &Shared,
    caller: &Caller,
    call: Call<'_>,
    q: &HashMap<String, String>,
    op: impl FnOnce(&Tenant) -> Result<Value, ApiError>,
) -> Response {
    read(shared, caller, call, |t| {
        let details = Details::of(q)?;
        op(t).map(|entity| details.apply(entity))
    })
}

async fn get_client(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    read_entity(&s, &caller, Call::ReadClient, &q, |t| t.get_client(&id))
}

/// A group at the query's `detailsLevel`: BASIC also leaves out `groupMembers` (stricter
/// reading: Mambu's FULL adds "any other related objects"; a reader that compares members asks
/// for FULL).
async fn get_group(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    read_entity(&s, &caller, Call::ReadGroup, &q, |t| {
        let mut group = t.get_group(&id)?;
        if Details::of(&q)? == Details::Basic
            && let Value::Object(fields) = &mut group
        {
            fields.remove("groupMembers");
        }
        Ok(group)
    })
}

async fn get_deposit(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    read_entity(&s, &caller, Call::ReadDeposit, &q, |t| t.get_deposit(&id))
}

async fn get_loan(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    read_entity(&s, &caller, Call::ReadLoan, &q, |t| t.get_loan(&id))
}

async fn get_schedule(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    read(&s, &caller, Call::ReadLoan, |t| t.get_schedule(&id))
}

async fn loan_transactions(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&s, &caller, Call::ReadLoan, &q, |t| {
        t.loan_transactions(&id)
    })
}

async fn deposit_transactions(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&s, &caller, Call::ReadDeposit, &q, |t| {
        t.deposit_transactions(&id)
    })
}

/// A list endpoint's page, as Mambu reads it (`../shared/mambu-api.md` §8, "Pagination"):
/// `offset` (0), `limit` (50 when absent: a reader that takes one page loses the rest), and
/// `paginationDetails=ON` for the `Items-Offset`, `Items-Limit` and `Items-Total` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Page {
    offset: usize,
    limit: usize,
    details: bool,
}

/// Mambu's default page size and its maximum.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

impl Page {
    /// The page a query asks for. A limit above 1,000, or an offset or limit that is not a
    /// number, is refused (stricter reading: the record gives the maximum, not what happens
    /// past it).
    fn of(q: &HashMap<String, String>) -> Result<Self, ApiError> {
        let number = |name: &str, default: usize| match q.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| ApiError::invalid_parameters(name)),
        };
        let limit = number("limit", DEFAULT_LIMIT)?;
        // Stricter reading: the record gives 1,000 as the maximum, not what a larger limit
        // gets; refused here rather than silently cut.
        if limit > MAX_LIMIT {
            return Err(ApiError::invalid_parameters("limit"));
        }
        Ok(Page {
            offset: number("offset", 0)?,
            limit,
            details: q
                .get("paginationDetails")
                .is_some_and(|v| v.eq_ignore_ascii_case("ON")),
        })
    }
}

/// Answers one page of the list `op` gives.
fn list(
    shared: &Shared,
    caller: &Caller,
    call: Call<'_>,
    q: &HashMap<String, String>,
    op: impl FnOnce(&Tenant) -> Result<Vec<Value>, ApiError>,
) -> Response {
    if let Some(refusal) = forbidden(shared, caller, Api::V2, &[call]) {
        return refusal;
    }
    let page = match Page::of(q) {
        Ok(page) => page,
        Err(err) => return error_response(Api::V2, &err),
    };
    let items = match op(&lock(&shared.tenant)) {
        Ok(items) => items,
        Err(err) => return error_response(Api::V2, &err),
    };
    let total = items.len();
    let body = Value::Array(
        items
            .into_iter()
            .skip(page.offset)
            .take(page.limit)
            .collect(),
    );
    let mut response = json_response(StatusCode::OK, Api::V2, &body);
    if page.details {
        let headers = response.headers_mut();
        for (name, value) in [
            ("items-offset", page.offset),
            ("items-limit", page.limit),
            ("items-total", total),
        ] {
            headers.insert(name, HeaderValue::from(value));
        }
    }
    response
}

fn listing<T: serde::Serialize>(items: &[T]) -> Result<Vec<Value>, ApiError> {
    items
        .iter()
        .map(|item| serde_json::to_value(item).map_err(|_| ApiError::internal_error()))
        .collect()
}

fn one<T: serde::Serialize>(item: Option<&T>) -> Result<Value, ApiError> {
    let item =
        item.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, 3, "INVALID_PRODUCT_ID").at("id"))?;
    serde_json::to_value(item).map_err(|_| ApiError::internal_error())
}

async fn loan_products(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&s, &caller, Call::ReadLoanProducts, &q, |t| {
        listing(&t.products().loan_products)
    })
}

async fn loan_product(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    read(&s, &caller, Call::ReadLoanProducts, |t| {
        one(t.products().loan_product(&id))
    })
}

async fn deposit_products(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&s, &caller, Call::ReadDepositProducts, &q, |t| {
        listing(&t.products().deposit_products)
    })
}

async fn deposit_product(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    read(&s, &caller, Call::ReadDepositProducts, |t| {
        one(t.products().deposit_product(&id))
    })
}

async fn branches(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&s, &caller, Call::ReadBranches, &q, |t| {
        listing(&t.products().branches)
    })
}

async fn branch(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    read(&s, &caller, Call::ReadBranches, |t| {
        one(t.products().branch(&id))
    })
}

/// The organization's setup: the tenant's zone, the profile's name and currency.
async fn organization_setup(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    read(&s, &caller, Call::ReadOrganization, |t| {
        Ok(t.organization_setup(&s.profile.name, &s.profile.currency))
    })
}

/// `GET /customfieldsets[?availableFor=client|group|loan_account|deposit_account|...]`, paged.
async fn custom_field_sets(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&s, &caller, Call::ReadCustomFields, &q, |t| {
        t.custom_field_sets(q.get("availableFor").map(String::as_str))
    })
}

/// `GET /customfields/{id}`: one custom field definition.
async fn custom_field(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    read(&s, &caller, Call::ReadCustomFields, |t| t.custom_field(&id))
}

/// Test-only: change the tenant behind the API's back (see [`Tenant::tamper`]).
async fn tamper(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Err(e) = parse_body(&body) {
        return (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")).into_response();
    }
    match s.run_unkeyed(&Op::Tamper, &body) {
        Ok(done) => axum::Json(done).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.source.unwrap_or_default()).into_response(),
    }
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(s.stats()).into_response()
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(lock(&s.faults).clone()).into_response()
}

/// Replaces the faults at runtime, so a test can turn throttling on in the middle of a run.
async fn put_faults(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            *lock(&s.bucket) = faults
                .throttle_rps
                .map(|rps| Bucket::new(rps, faults.throttle_burst));
            *lock(&s.faults) = faults.clone();
            axum::Json(faults).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid faults: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_past_its_burst_and_says_when_to_retry() {
        let mut bucket = Bucket::new(2.0, Some(2));
        assert!(bucket.take().is_ok());
        assert!(bucket.take().is_ok());
        let wait = bucket.take().unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
    }

    #[test]
    fn every_permission_the_table_asks_for_is_one_a_profile_may_grant() {
        let calls = [
            Call::ReadClient,
            Call::CreateClient,
            Call::ReadGroup,
            Call::CreateGroup,
            Call::ReadDeposit,
            Call::CreateDeposit,
            Call::ReadLoan,
            Call::CreateLoan,
            Call::EditSchedule,
            Call::Disburse,
            Call::ApplyFee,
            Call::Repay,
            Call::Backdate,
            Call::Lock,
            Call::WriteOff,
            Call::UndoWriteOff,
            Call::DeleteGroup,
            Call::LinkSettlement,
            Call::ReadLoanProducts,
            Call::ReadDepositProducts,
            Call::ReadBranches,
            Call::ReadOrganization,
            Call::ReadCustomFields,
        ];
        let actions = [
            "APPROVE",
            "UNDO_APPROVE",
            "REQUEST_APPROVAL",
            "SET_INCOMPLETE",
            "REJECT",
            "UNDO_REJECT",
            "WITHDRAW",
            "UNDO_WITHDRAW",
            "CLOSE",
            "UNDO_CLOSE",
            "LOCK",
            "UNLOCK",
            "CLOSE_WITHDRAW",
            "CLOSE_REJECT",
            "CLOSE_WRITE_OFF",
            "NO_SUCH_ACTION",
        ];
        let states = actions
            .iter()
            .flat_map(|a| [Call::LoanState(a), Call::DepositState(a)]);
        for call in calls.into_iter().chain(states) {
            let permission = required_permission(call);
            assert!(
                crate::sandbox::tenant::PERMISSIONS.contains(&permission),
                "{call:?} needs {permission}"
            );
        }
        assert_eq!(
            required_permission(Call::LoanState("APPROVE")),
            "APPROVE_LOANS"
        );
        assert_eq!(
            required_permission(Call::DepositState("APPROVE")),
            "APPROVE_SAVINGS"
        );
    }

    #[test]
    fn basic_details_leave_out_addresses_documents_and_custom_fields() {
        let entity =
            json!({ "id": "C1", "addresses": [{}], "idDocuments": [{}], "_Set": { "f": "v" } });
        assert_eq!(Details::Basic.apply(entity.clone()), json!({ "id": "C1" }));
        assert_eq!(Details::Full.apply(entity.clone()), entity);
        let q = |v: &str| HashMap::from([("detailsLevel".to_owned(), v.to_owned())]);
        assert_eq!(Details::of(&HashMap::new()), Ok(Details::Basic));
        assert_eq!(Details::of(&q("FULL")), Ok(Details::Full));
        assert_eq!(
            Details::of(&q("ALL")),
            Err(ApiError::invalid_parameters("detailsLevel"))
        );
    }

    #[test]
    fn v1_routes_are_recognised() {
        assert_eq!(api_of("/api/loans/L1/settlementAccounts/D1"), Api::V1);
        assert_eq!(api_of("/api/loans/L1"), Api::V2);
    }
}
