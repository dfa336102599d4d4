//! The cutover dashboard: a run's page served over HTTP (axum), live, from its run directory.
//! `run --dashboard [ADDR]` serves it inside the run's process, `status RUN_DIR --serve
//! [ADDR]` from another terminal until Ctrl-C; both read the checkpoint read-only, as
//! `status` does, so the page can never change the run.
//!
//! - `GET /`: the page ([`crate::report::page`]); its script fetches `GET /board` (the page's
//!   figures as HTML) every two seconds and swaps it in.
//! - `GET /api/board`: the same figures as JSON ([`Board`]: report.json's [`Summary`] and the
//!   live figures).
//! - `GET /errors.csv`: one row per failed unit so far, with Mambu's answer.
//!
//! Loopback by default. On any other address every request needs the token printed once on
//! stderr when the server starts (`?token=`, or an `X-Dashboard-Token` or `Authorization:
//! Bearer` header): without it, 401. The token is never logged. The page shows keys, step ids,
//! Mambu's reasons and counts only, as the reports do; errors.csv is the file a run writes
//! anyway (Mambu's messages may quote client data: it is for the operator).
//!
//! The figures are read at most every [`MIN_REFRESH`] (longer when reading them takes long: a
//! run of millions of calls), however many pages are open: viewers share one reading.
//!
//! [`Summary`]: crate::report::Summary

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::report::board::Board;
use crate::report::page::{self, Mode};

/// Where the dashboard listens unless told: loopback, a port an SSH tunnel can name.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8765";
/// The port of an address given without one.
const DEFAULT_PORT: u16 = 8765;
/// The figures are read again at most this often.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// `ADDR` of `--dashboard` and `--serve`: `HOST:PORT`, a port alone (on loopback), or an IP
/// address alone (on the default port). Port 0 picks a free one.
pub fn parse_addr(text: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs as _;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| {
            format!("`{text}` is not an address to listen on: write HOST:PORT (127.0.0.1:8765), a port (8765), or an IP address (0.0.0.0)")
        })
}

/// A dashboard's listening socket, bound before the run sends anything (a port in use is
/// found before the first call), and its access token when off loopback.
#[derive(Clone)]
pub struct Bound {
    listener: Arc<Mutex<Option<std::net::TcpListener>>>,
    addr: SocketAddr,
    token: Option<Arc<str>>,
}

/// Never shows the token.
impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Bound {
    /// Binds `addr`; a token is drawn unless it is a loopback address.
    pub fn bind(addr: SocketAddr) -> anyhow::Result<Bound> {
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!("the dashboard cannot listen on {addr} (in use? give another ADDR, or port 0 for a free one)")
        })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let token = (!addr.ip().is_loopback())
            .then(|| Arc::from(uuid::Uuid::new_v4().simple().to_string().as_str()));
        Ok(Bound {
            listener: Arc::new(Mutex::new(Some(listener))),
            addr,
            token,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's address, with its token: printed once, on stderr, never logged.
    pub fn announce(&self, what: &str) {
        match &self.token {
            None => eprintln!("dashboard of {what}: http://{}/", self.addr),
            Some(token) => eprintln!(
                "dashboard of {what}: http://{}/?token={token}\n  (it listens beyond loopback: the token is needed and is shown only here; from another machine, put this machine's name for {})",
                self.addr,
                self.addr.ip()
            ),
        }
    }

    /// Serves the run directory's dashboard until `shutdown` resolves.
    pub async fn serve(
        self,
        run_dir: PathBuf,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .context("the dashboard is served once")?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let state = Arc::new(Served {
            run_dir,
            token: self.token.clone(),
            cache: tokio::sync::Mutex::new(None),
        });
        let app = Router::new()
            .route("/", get(index))
            .route("/board", get(board_fragment))
            .route("/api/board", get(board_json))
            .route("/errors.csv", get(errors_csv))
            .layer(middleware::from_fn_with_state(state.clone(), guard))
            .with_state(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving the dashboard")
    }

    /// Serves it in the background of the current runtime, for as long as the runtime runs
    /// (the run's process).
    pub fn spawn(self, run_dir: PathBuf) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if let Err(e) = self.serve(run_dir, std::future::pending()).await {
                eprintln!("warning: the dashboard stopped: {e:#}");
            }
        })
    }
}

/// What the handlers share.
struct Served {
    run_dir: PathBuf,
    token: Option<Arc<str>>,
    /// The last figures read, when, and how long reading them took.
    cache: tokio::sync::Mutex<Option<Reading>>,
}

struct Reading {
    at: Instant,
    took: Duration,
    board: Arc<Board>,
}

impl Served {
    /// The figures, read again when the last reading is older than [`MIN_REFRESH`] or five
    /// times what it took.
    async fn board(&self) -> Result<Arc<Board>, Response> {
        let mut cache = self.cache.lock().await;
        if let Some(r) = cache.as_ref()
            && r.at.elapsed() < MIN_REFRESH.max(r.took * 5)
        {
            return Ok(r.board.clone());
        }
        let run_dir = self.run_dir.clone();
        let started = Instant::now();
        let read = tokio::task::spawn_blocking(move || {
            let (reader, path) = crate::report::open(&run_dir)?;
            Board::read(&reader, &run_dir, crate::report::now())
                .with_context(|| format!("reading {}", path.display()))
        })
        .await;
        match read {
            Ok(Ok(board)) => {
                let board = Arc::new(board);
                *cache = Some(Reading {
                    at: Instant::now(),
                    took: started.elapsed(),
                    board: board.clone(),
                });
                Ok(board)
            }
            Ok(Err(e)) => Err(unavailable(format!("{e:#}"))),
            Err(e) => Err(unavailable(e.to_string())),
        }
    }
}

fn unavailable(why: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the run's figures cannot be read now: {why}\n"),
    )
        .into_response()
}

/// The token, when one is needed, from `?token=`, `X-Dashboard-Token` or `Authorization:
/// Bearer`; and the headers every answer carries: nothing cached, nothing fetched from
/// elsewhere, no referrer (the token is in the page's address).
async fn guard(State(state): State<Arc<Served>>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token
        && !presented(&request)
            .into_iter()
            .any(|given| same(given.as_bytes(), token.as_bytes()))
    {
        return (
            StatusCode::UNAUTHORIZED,
            "this dashboard needs its token: open the address printed where it was started (…/?token=…)\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The tokens a request presents.
fn presented(request: &Request) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(query) = request.uri().query() {
        out.extend(
            url::form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned()),
        );
    }
    let headers: &HeaderMap = request.headers();
    if let Some(v) = headers
        .get("x-dashboard-token")
        .and_then(|v| v.to_str().ok())
    {
        out.push(v.to_owned());
    }
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        out.push(v.trim().to_owned());
    }
    out
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn index(State(state): State<Arc<Served>>) -> Response {
    match state.board().await {
        Ok(board) => html(page::render(&board, Mode::Live)),
        Err(e) => e,
    }
}

async fn board_fragment(State(state): State<Arc<Served>>) -> Response {
    match state.board().await {
        Ok(board) => html(page::board_html(&board, Mode::Live)),
        Err(e) => e,
    }
}

async fn board_json(State(state): State<Arc<Served>>) -> Response {
    match state.board().await {
        Ok(board) => axum::Json(board.as_ref().clone()).into_response(),
        Err(e) => e,
    }
}

/// errors.csv as of now, from the checkpoint (the file itself is written when the run ends).
async fn errors_csv(State(state): State<Arc<Served>>) -> Response {
    let run_dir = state.run_dir.clone();
    let csv = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let (reader, _) = crate::report::open(&run_dir)?;
        crate::report::errors::render(&reader.failed_units()?)
    })
    .await;
    match csv {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"errors.csv\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => unavailable(format!("{e:#}")),
        Err(e) => unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_an_operator_writes_them() {
        assert_eq!(
            parse_addr("9000").unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0").unwrap(),
            "0.0.0.0:8765".parse().unwrap()
        );
        assert_eq!(
            parse_addr("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:81").unwrap(), "[::1]:81".parse().unwrap());
        assert_eq!(parse_addr(DEFAULT_ADDR).unwrap().port(), DEFAULT_PORT);
        assert!(parse_addr("not an address").is_err());
    }

    #[test]
    fn a_token_only_off_loopback_and_never_in_debug() {
        let local = Bound::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(local.token.is_none());
        let wide = Bound::bind("0.0.0.0:0".parse().unwrap()).unwrap();
        let token = wide.token.clone().unwrap();
        assert_eq!(token.len(), 32);
        assert!(!format!("{wide:?}").contains(&*token));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
