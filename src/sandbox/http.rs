//! The sandbox's HTTP side: routes, the gate every API request passes (latency, throttle,
//! auth, injected faults, Accept header), idempotency and lost replies around every change, and
//! a connection loop that can drop a connection without answering.

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
use super::state::{Tenant, TransactionKind, Zone};
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
}

/// The first answer given under an Idempotency-Key.
struct Stored {
    fingerprint: [u8; 32],
    status: StatusCode,
    /// The answer as sent (text: a tenth of the memory of a parsed value).
    body: Box<str>,
}

/// Idempotency keys are kept for this many requests, oldest forgotten first. Mambu does not
/// publish how long it keeps them; a bound keeps a long rehearsal's memory flat, and the tool
/// must not rely on keys alone anyway (ids and externalIds are the second line).
const KEPT_KEYS: usize = 200_000;

/// The keys and their answers, in the order they came.
#[derive(Default)]
struct KeyStore {
    answers: HashMap<String, Stored>,
    order: std::collections::VecDeque<String>,
}

impl KeyStore {
    fn get(&self, key: &str) -> Option<&Stored> {
        self.answers.get(key)
    }

    fn insert(&mut self, key: String, stored: Stored) {
        if self.answers.insert(key.clone(), stored).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > KEPT_KEYS {
            if let Some(old) = self.order.pop_front() {
                self.answers.remove(&old);
            }
        }
    }
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
    pub fn new(config: SandboxConfig) -> Self {
        let bucket = config
            .faults
            .throttle_rps
            .map(|rps| Bucket::new(rps, config.faults.throttle_burst));
        Self {
            tenant: Mutex::new(Tenant::new(
                config.tenant.products(),
                Zone::new(config.tenant.zone().unwrap_or(chrono_tz::Tz::UTC)),
                config.tenant.client_rules.clone(),
            )),
            idempotency: Mutex::new(KeyStore::default()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed)),
            bucket: Mutex::new(bucket),
            faults: Mutex::new(config.faults),
            traffic: Mutex::new(Traffic::default()),
            profile: config.tenant,
        }
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
    let media = if api == Api::V2 {
        V2_MEDIA_TYPE
    } else {
        "application/json"
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
        body.to_string(),
    )
        .into_response()
}

/// Lets a handler drop its connection without answering (a lost reply).
#[derive(Clone)]
pub struct ConnHandle(Arc<Notify>);

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/clients", post(create_client))
        .route("/clients/{id}", get(get_client))
        .route("/deposits", post(create_deposit))
        .route("/deposits/{id}", get(get_deposit).post(deposit_action))
        .route("/loans", post(create_loan))
        .route("/loans/{id}", get(get_loan).post(loan_action))
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
    shared: &'a Shared,
    headers: &'a HeaderMap,
    conn: &'a ConnHandle,
    api: Api,
    idempotent: bool,
    success: StatusCode,
    route: String,
}

impl Change<'_> {
    async fn apply(
        self,
        body: &Bytes,
        op: impl FnOnce(&mut Tenant, &Value) -> Result<Value, ApiError>,
    ) -> Response {
        let parsed: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
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
            if let Some(stored) = key.as_ref().and_then(|k| keys.get(k)) {
                let mut traffic = lock(&self.shared.traffic);
                if stored.fingerprint == fingerprint {
                    traffic.idempotent_replays += 1;
                    let media = if self.api == Api::V2 {
                        V2_MEDIA_TYPE
                    } else {
                        "application/json"
                    };
                    return (
                        stored.status,
                        [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
                        stored.body.to_string(),
                    )
                        .into_response();
                }
                traffic.idempotency_conflicts += 1;
                return error_response(self.api, &ApiError::idempotency_key_reused());
            }
            let result = op(&mut lock(&self.shared.tenant), &parsed);
            if let (Ok(body), Some(key)) = (&result, key) {
                keys.insert(
                    key,
                    Stored {
                        fingerprint,
                        status: self.success,
                        body: body.to_string().into_boxed_str(),
                    },
                );
            }
            result
        };
        match outcome {
            Err(err) => error_response(self.api, &err),
            Ok(body) => {
                let lost_rate = lock(&self.shared.faults).lost_reply_rate;
                if self.shared.chance(lost_rate) {
                    return self.lose_reply().await;
                }
                json_response(self.success, self.api, &body)
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
    shared: &'a Shared,
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

/// A POST that creates an entity (v2, with an Idempotency-Key, 201 on success).
async fn create(
    s: &Shared,
    c: &ConnHandle,
    h: &HeaderMap,
    body: &Bytes,
    route: &str,
    op: fn(&mut Tenant, &Value) -> Result<Value, ApiError>,
) -> Response {
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
    h: HeaderMap,
    body: Bytes,
) -> Response {
    create(&s, &c, &h, &body, "POST /clients", Tenant::create_client).await
}

async fn create_deposit(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    create(&s, &c, &h, &body, "POST /deposits", Tenant::create_deposit).await
}

async fn create_loan(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    create(&s, &c, &h, &body, "POST /loans", Tenant::create_loan).await
}

/// A change to the account a path names: its id or key, and the body.
type AccountOp = fn(&mut Tenant, &str, &Value) -> Result<Value, ApiError>;

/// `POST /{accounts}/{id}:changeState`: axum sees `{id}:changeState` as one path segment.
async fn change_state(
    s: Arc<Shared>,
    c: ConnHandle,
    h: HeaderMap,
    segment: String,
    body: Bytes,
    accounts: &'static str,
    op: AccountOp,
) -> Response {
    match segment.split_once(':') {
        Some((id, "changeState")) => {
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
            .apply(&body, |t, b| op(t, &id, b))
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
    Path(segment): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    change_state(
        s,
        c,
        h,
        segment,
        body,
        "deposits",
        Tenant::change_deposit_state,
    )
    .await
}

async fn loan_action(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Path(segment): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    change_state(s, c, h, segment, body, "loans", Tenant::change_loan_state).await
}

async fn edit_schedule(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    change(
        &s,
        &h,
        &c,
        Api::V2,
        false,
        StatusCode::OK,
        format!("PUT /loans/{id}/schedule"),
    )
    .apply(&body, |t, b| t.edit_schedule(&id, b))
    .await
}

async fn post_transaction(
    s: Arc<Shared>,
    c: ConnHandle,
    h: HeaderMap,
    id: String,
    kind: TransactionKind,
    body: Bytes,
) -> Response {
    let route = format!("POST /loans/{id}/{kind:?}");
    change(&s, &h, &c, Api::V2, true, StatusCode::CREATED, route)
        .apply(&body, |t, b| t.post_transaction(&id, kind, b))
        .await
}

async fn disburse(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    post_transaction(s, c, h, id, TransactionKind::Disbursement, body).await
}

async fn apply_fee(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    post_transaction(s, c, h, id, TransactionKind::Fee, body).await
}

async fn repay(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    post_transaction(s, c, h, id, TransactionKind::Repayment, body).await
}

/// `POST /loans/{id}/lock-transactions`, or `/unlock-transactions` when `UNLOCK` (v2, with an
/// Idempotency-Key, 201).
async fn lock_change<const UNLOCK: bool>(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let (kind, op): (&str, AccountOp) = if UNLOCK {
        ("unlock", Tenant::unlock_loan)
    } else {
        ("lock", Tenant::lock_loan)
    };
    let route = format!("POST /loans/{id}/{kind}-transactions");
    change(&s, &h, &c, Api::V2, true, StatusCode::CREATED, route)
        .apply(&body, |t, b| op(t, &id, b))
        .await
}

async fn link_settlement(
    State(s): State<Arc<Shared>>,
    Extension(c): Extension<ConnHandle>,
    Path((loan, deposit)): Path<(String, String)>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let route = format!("POST /loans/{loan}/settlementAccounts/{deposit}");
    change(&s, &h, &c, Api::V1, false, StatusCode::OK, route)
        .apply(&body, |t, _| {
            t.link_settlement(&loan, &deposit)
                .map(|()| json!({ "returnCode": 0, "returnStatus": "SUCCESS" }))
        })
        .await
}

fn read(shared: &Shared, op: impl FnOnce(&Tenant) -> Result<Value, ApiError>) -> Response {
    match op(&lock(&shared.tenant)) {
        Ok(body) => json_response(StatusCode::OK, Api::V2, &body),
        Err(err) => error_response(Api::V2, &err),
    }
}

async fn get_client(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    read(&s, |t| t.get_client(&id))
}

async fn get_deposit(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    read(&s, |t| t.get_deposit(&id))
}

async fn get_loan(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    read(&s, |t| t.get_loan(&id))
}

async fn get_schedule(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    read(&s, |t| t.get_schedule(&id))
}

async fn loan_transactions(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&s, &q, |t| t.loan_transactions(&id))
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
    q: &HashMap<String, String>,
    op: impl FnOnce(&Tenant) -> Result<Vec<Value>, ApiError>,
) -> Response {
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
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&s, &q, |t| listing(&t.products().loan_products))
}

async fn loan_product(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    read(&s, |t| one(t.products().loan_product(&id)))
}

async fn deposit_products(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&s, &q, |t| listing(&t.products().deposit_products))
}

async fn deposit_product(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    read(&s, |t| one(t.products().deposit_product(&id)))
}

async fn branches(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(&s, &q, |t| listing(&t.products().branches))
}

async fn branch(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    read(&s, |t| one(t.products().branch(&id)))
}

async fn organization_setup(State(s): State<Arc<Shared>>) -> Response {
    read(&s, |t| Ok(t.organization_setup()))
}

/// Test-only: change the tenant behind the API's back (see [`Tenant::tamper`]).
async fn tamper(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")).into_response(),
    };
    match lock(&s.tenant).tamper(&parsed) {
        Ok(done) => axum::Json(done).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
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
    fn v1_routes_are_recognised() {
        assert_eq!(api_of("/api/loans/L1/settlementAccounts/D1"), Api::V1);
        assert_eq!(api_of("/api/loans/L1"), Api::V2);
    }
}
