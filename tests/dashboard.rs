//! The cutover dashboard in a real browser: headless Chromium (Debian's `chromium`, driven by
//! playwright-core from the npm registry; `.ci/run` installs both) loads the live page of a
//! sample run against the real sandbox binary, through an outage, a stop and a resume, then
//! the final report.html and the page `status --serve` gives. The numbers on each page must be
//! those of report.json (or of the board embedded in the live page, at the same moment), with
//! no console error, nothing fetched from elsewhere, no personal data, and a layout that fits a
//! phone's width. Screenshots at 1280×800 and 390×844 go to `target/dashboard/` for a person.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Sandbox;
use serde_json::{Value, json};

/// The playwright-core release the browser script is written for.
const PLAYWRIGHT: &str = "playwright-core@1.55.1";

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "Chromium is not installed at {path}: this test needs a real browser. Install Debian's \
         package (`apt-get install -y --no-install-recommends chromium`, as .ci/run does), or \
         set CHROMIUM to a Chromium binary."
    );
    path
}

/// `target/<name>/`, created.
fn in_target(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where the screenshots go: `target/dashboard/`.
fn shots() -> PathBuf {
    in_target("dashboard")
}

/// playwright-core's node_modules, installed into `target/browser/` on first use (.ci/run
/// installs it there first).
fn node_modules() -> PathBuf {
    let prefix = in_target("browser");
    let modules = prefix.join("node_modules");
    if !modules.join("playwright-core").exists() {
        common::npm_install(&prefix, PLAYWRIGHT, "to drive the browser");
    }
    modules
}

/// Visits pages in Chromium (tests/browser/visit.js): one result per visit.
fn visit(visits: Value) -> Vec<Value> {
    let chromium = chromium();
    let output = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/visit.js"
        ))
        .arg(json!({ "visits": visits }).to_string())
        .env("NODE_PATH", node_modules())
        .env("CHROMIUM", chromium)
        .output()
        .expect("running node");
    assert!(
        output.status.success(),
        "the browser script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A page at the desktop and the phone size, each saved as `target/dashboard/<name>-<w>.png`.
fn both_sizes(name: &str, url: &str, wait_ms: u64) -> Vec<Value> {
    let dir = shots();
    let visits: Vec<Value> = [(1280, 800), (390, 844)]
        .iter()
        .map(|(w, h)| {
            json!({
                "name": format!("{name} at {w}px"),
                "url": url,
                "width": w,
                "height": h,
                "waitMs": wait_ms,
                "screenshot": dir.join(format!("{name}-{w}.png")),
            })
        })
        .collect();
    visit(Value::Array(visits))
}

/// The number a page shows, without its thousands separators.
fn number(text: &str) -> f64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a number"))
}

/// The value `figure` (`units.done`, `steps.3.calls`, `loan_states.ACTIVE`,
/// `failures.reason.X`, `created.clients`) names in a board's JSON.
fn resolve(board: &Value, figure: &str) -> Value {
    let summary = &board["summary"];
    let find = |list: &Value, key: &str, name: &str, field: &str| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e[key] == name)
            .map(|e| e[field].clone())
            .unwrap_or(Value::Null)
    };
    let parts: Vec<&str> = figure.splitn(3, '.').collect();
    match parts.as_slice() {
        ["loan_states" | "deposit_states", state] => {
            find(&summary[parts[0]], "state", state, "count")
        }
        ["failures", "reason", reason] => {
            find(&board["live"]["failures"], "reason", reason, "units")
        }
        ["created", kind] => find(&board["live"]["created"], "kind", kind, "count"),
        ["steps", i, field] => summary["steps"][i.parse::<usize>().unwrap()][*field].clone(),
        [a, b] => summary[*a][*b].clone(),
        _ => panic!("unknown figure {figure}"),
    }
}

/// Every figure on the page is the board's; the page had no console error, fetched nothing
/// from elsewhere, shows no personal data and fits its width.
fn check_page(page: &Value, board: &Value) {
    let name = page["name"].as_str().unwrap();
    assert_eq!(page["errors"], json!([]), "{name}: errors in the browser");
    let figures = page["figures"].as_object().unwrap();
    for wanted in [
        "units.done",
        "units.failed",
        "units.running",
        "units.total",
        "calls.total",
        "calls.throttled",
        "calls.retried",
        "failures.units",
        "steps.0.calls",
    ] {
        assert!(
            figures.contains_key(wanted),
            "{name}: no {wanted} on the page"
        );
    }
    for (figure, text) in figures {
        let expected = resolve(board, figure);
        assert_eq!(
            number(text.as_str().unwrap()),
            expected.as_f64().unwrap_or(f64::NAN),
            "{name}: {figure} shows {text}, the figures say {expected}"
        );
    }
    for external in page["externals"].as_array().unwrap() {
        let external = external.as_str().unwrap();
        assert!(
            !external.contains("://"),
            "{name}: the page loads {external}"
        );
    }
    assert_eq!(
        page["overflow"], false,
        "{name}: the page is wider than the screen"
    );
    let text = page["text"].as_str().unwrap();
    for client in common::rows("fixtures/sample/clients.csv") {
        for column in ["email", "national_id", "phone"] {
            let value = &client[column];
            assert!(
                value.is_empty() || !text.contains(value),
                "{name}: the page shows a client's {column}: {value}"
            );
        }
    }
}

/// A `mambu-migrate` process whose stderr is read line by line in the background.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Process {
    fn start(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting mambu-migrate");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line that starts with `prefix`, the rest of it.
    fn line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => panic!("no line `{prefix}…` on stderr; got {:#?}", self.seen),
            }
        }
    }

    /// The page's address, as `run --dashboard` and `status --serve` print it.
    fn dashboard(&mut self) -> String {
        let line = self.line("dashboard of ");
        line[line.find("http://").expect("an address")..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }

    fn interrupt(&self) {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    fn wait(mut self) -> (i32, String) {
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        self.seen.extend(self.lines.try_iter());
        (code, self.seen.join("\n"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn board(url: &str) -> Value {
    reqwest::get(format!("{url}api/board"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the dashboard's JSON until `ready` holds (60 s at most).
async fn board_when(url: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let b = board(url).await;
        if ready(&b) {
            return b;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never {what}: {}",
            b["summary"]["units"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `a` and `b` hold the same values (numbers compared as numbers: the page's JSON went through
/// JavaScript, where 11.0 is 11).
fn assert_same(a: &Value, b: &Value, what: &str) {
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }
    assert!(same(a, b), "{what} differ:\n{a}\n{b}");
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The page's embedded board (`#board-data`).
fn embedded(page: &Value) -> &Value {
    assert!(page["board"].is_object(), "{}: no board data", page["name"]);
    &page["board"]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_a_run_through_an_outage_a_stop_and_a_resume() {
    chromium();
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    // Two loans too large for their product: two units fail, with Mambu's reason. Short
    // retries, so that an outage of a second or two is recorded as one.
    let (plan, _) = common::broken_sample(dir.path(), &["LN-000001", "LN-000002"]);
    let text = std::fs::read_to_string(&plan).unwrap();
    let retry = "retry: { max_attempts: 8, initial_backoff_ms: 250, max_backoff_ms: 30000 }";
    assert!(text.contains(retry), "plans/sample.yaml's retry changed");
    std::fs::write(
        &plan,
        text.replace(
            retry,
            "retry: { max_attempts: 3, initial_backoff_ms: 50, max_backoff_ms: 300, outage_wait_seconds: 120 }",
        ),
    )
    .unwrap();
    let plan = plan.display().to_string();
    let run_dir = dir.path().join("run");
    let deadline = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    // The resume goes slower: it must outlast the browser's visit (a dashboard ends with its run).
    let run_args = |extra: &[&str], rate: &str| {
        let mut args = common::run_args(&sandbox, &plan, &run_dir, extra);
        args.extend(
            [
                "--sample",
                "40",
                "--rate",
                rate,
                "--deadline",
                &deadline,
                "--dashboard",
                "127.0.0.1:0",
            ]
            .map(String::from),
        );
        args
    };

    // 1. The live page while Mambu is out of reach.
    let mut first = Process::start(common::binary().args(run_args(&[], "150")));
    let url = first.dashboard();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.contains("token"),
        "{url}"
    );
    board_when(&url, "under way", |b| {
        b["summary"]["units"]["done"].as_i64() >= Some(3)
    })
    .await;
    sandbox.set_faults(r#"{"outage": true}"#).await;
    board_when(&url, "in an outage", |b| b["live"]["outage"].is_object()).await;
    let pages = tokio::task::spawn_blocking({
        let url = url.clone();
        move || both_sizes("1-live-outage", &url, 2500)
    })
    .await
    .unwrap();
    for page in &pages {
        check_page(page, embedded(page));
        assert_eq!(page["state"], "running");
        assert!(
            page["banners"]
                .as_array()
                .unwrap()
                .contains(&json!("outage")),
            "{}: no outage banner: {}",
            page["name"],
            page["banners"]
        );
        let window = &embedded(page)["live"]["window"];
        assert_eq!(window["fits"], true, "{window}");
    }
    // errors.csv, live.
    let csv = reqwest::get(format!("{url}errors.csv")).await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.text()
            .await
            .unwrap()
            .starts_with("unit,step,http_status")
    );

    // 2. Mambu back; then Ctrl-C: stopped, resumable.
    sandbox.set_faults("{}").await;
    let before = board(&url).await["summary"]["units"]["done"]
        .as_i64()
        .unwrap();
    board_when(&url, "going again", |b| {
        b["live"]["outage"].is_null() && b["summary"]["units"]["done"].as_i64() > Some(before + 1)
    })
    .await;
    first.interrupt();
    let (code, stderr) = first.wait();
    assert_eq!(code, 3, "{stderr}");
    let report = json_file(&run_dir.join("report.json"));
    assert_eq!(report["run"]["state"], "stopped");
    let report_html = format!("file://{}", run_dir.join("report.html").display());
    let pages = tokio::task::spawn_blocking({
        let url = report_html.clone();
        move || both_sizes("2-stopped-report", &url, 0)
    })
    .await
    .unwrap();
    for page in &pages {
        assert_same(
            &embedded(page)["summary"],
            &report,
            "report.html's data and report.json",
        );
        check_page(page, embedded(page));
        assert_eq!(page["state"], "stopped");
        assert!(
            page["banners"]
                .as_array()
                .unwrap()
                .contains(&json!("stopped"))
        );
        assert!(
            page["text"].as_str().unwrap().contains("--resume"),
            "the resume command is shown"
        );
    }

    // 3. The resume, live, to its end.
    let mut second = Process::start(common::binary().args(run_args(&["--resume"], "60")));
    let url = second.dashboard();
    board_when(&url, "resumed", |b| {
        b["summary"]["run"]["state"] == "running"
            && b["summary"]["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "resumed")
    })
    .await;
    let pages = tokio::task::spawn_blocking({
        let url = url.clone();
        move || both_sizes("3-live-resumed", &url, 2500)
    })
    .await
    .unwrap();
    for page in &pages {
        check_page(page, embedded(page));
    }
    let (code, stderr) = second.wait();
    assert_eq!(code, 1, "two units fail: {stderr}");

    // 4. The final report.html: report.json's numbers, failures by reason with their units.
    let report = json_file(&run_dir.join("report.json"));
    assert_eq!(report["run"]["state"], "finished");
    assert_eq!(report["units"]["failed"], 2);
    let pages = tokio::task::spawn_blocking(move || both_sizes("4-final-report", &report_html, 0))
        .await
        .unwrap();
    for page in &pages {
        let board = embedded(page);
        assert_same(
            &board["summary"],
            &report,
            "report.html's data and report.json",
        );
        check_page(page, board);
        assert_eq!(page["state"], "finished");
        let failures = board["live"]["failures"].as_array().unwrap();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0]["keys"], json!(["CL-000001", "CL-000002"]));
        let text = page["text"].as_str().unwrap();
        assert!(
            text.contains("CL-000001, CL-000002"),
            "the failed units are listed"
        );
        assert!(text.contains(failures[0]["reason"].as_str().unwrap()));
    }

    // 5. `status --serve`: the same page from another terminal, loopback, no token.
    let mut status = Process::start(
        common::binary()
            .args(["status"])
            .arg(&run_dir)
            .args(["--serve", "127.0.0.1:0"]),
    );
    let url = status.dashboard();
    let pages = visit(json!([{
        "name": "status --serve",
        "url": url,
        "width": 1280,
        "height": 800,
        "waitMs": 2500,
        "screenshot": shots().join("5-status-serve-1280.png"),
    }]));
    let board = embedded(&pages[0]);
    assert_same(
        &board["summary"],
        &report,
        "status --serve's figures and report.json",
    );
    check_page(&pages[0], board);
    status.interrupt();
    assert_eq!(status.wait().0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn off_loopback_the_dashboard_needs_its_token_and_never_logs_it() {
    let sandbox = Sandbox::strict(&[]);
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let output = common::run(
        &sandbox,
        "plans/sample.yaml",
        &run_dir,
        &["--sample", "2", "--rate", "1000"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));

    let mut served = Process::start(
        common::binary()
            .args(["status"])
            .arg(&run_dir)
            .args(["--serve", "0.0.0.0:0"]),
    );
    let printed = served.dashboard();
    let (address, token) = printed.split_once("?token=").expect("a token");
    assert_eq!(token.len(), 32);
    // Reached over loopback here (the token is asked of every client of a wide address).
    let port = address.trim_end_matches('/').rsplit(':').next().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    // The token with its first character changed (a token may begin with 0 itself).
    let wrong_token = format!(
        "{}{}",
        if token.starts_with('0') { '1' } else { '0' },
        &token[1..]
    );
    for path in ["/", "/board", "/api/board", "/errors.csv"] {
        let refused = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(refused.status(), 401, "{path} without the token");
        let wrong = reqwest::get(format!("{base}{path}?token={wrong_token}"))
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
        let ok = reqwest::get(format!("{base}{path}?token={token}"))
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{path} with the token");
    }
    let header = reqwest::Client::new()
        .get(format!("{base}/api/board"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 200);
    served.interrupt();
    let (code, stderr) = served.wait();
    assert_eq!(code, 0);
    assert_eq!(stderr.matches(token).count(), 1, "printed once: {stderr}");
    for file in ["run.log", "report.md", "report.json", "report.html"] {
        let text = std::fs::read_to_string(run_dir.join(file)).unwrap();
        assert!(!text.contains(token), "{file} holds the token");
    }
}
