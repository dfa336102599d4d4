//! The dashboard page, from a [`Board`]: served live by `run --dashboard` and `status --serve`
//! (a script swaps in a fresh `#board` every few seconds), and written frozen as report.html
//! at the end of every run (no script runs; the same markup).
//!
//! Every count a person checks carries `data-figure="<path in report.json>"`, so a test can
//! read the page's numbers beside report.json's. The board's JSON is embedded too
//! (`#board-data`), for tools and for the frozen page.

use std::fmt::Write as _;

use super::board::Board;
use super::html::{self, BarRow, Series};
use super::render::{escape, percent, thousands};
use super::stats;
use super::summary::StateCount;

/// How often the live page asks for fresh figures, in milliseconds.
pub const REFRESH_MS: u64 = 2000;

/// Live: the page polls `board` (beside it) and swaps it in. Frozen: written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Frozen,
}

/// The whole page.
pub fn render(board: &Board, mode: Mode) -> String {
    let title = format!(
        "Migration {}",
        board
            .summary
            .run
            .plan_name
            .as_deref()
            .unwrap_or("(unnamed plan)")
    );
    let tail = match mode {
        Mode::Live => format!(
            "<script>const REFRESH_MS={REFRESH_MS};\n{}</script>\n",
            include_str!("live.js")
        ),
        Mode::Frozen => String::new(),
    };
    html::page(
        &title,
        &format!("<div id=\"board\">{}</div>", board_html(board, mode)),
        &tail,
    )
}

/// The inside of `#board`: header band, banners, figures, charts, tables, and the board's JSON.
pub fn board_html(board: &Board, mode: Mode) -> String {
    let s = &board.summary;
    let l = &board.live;
    let run = &s.run;
    let mut out = String::new();
    let name = run.plan_name.as_deref().unwrap_or("(unnamed plan)");

    // Header.
    let mut sub = Vec::new();
    if let Some(t) = &run.target {
        sub.push(format!("into {}", escape(t)));
    }
    if let Some(p) = &run.plan_file {
        sub.push(format!("plan {}", escape(p)));
    }
    sub.push(format!("run directory {}", escape(&run.run_dir)));
    let mut aside = Vec::new();
    if let Some(at) = &run.started_at {
        aside.push(format!("started {}", escape(&at.replace('T', " "))));
    }
    if let Some(d) = run.duration_seconds {
        let label = match run.state.as_str() {
            "running" => "running for",
            "stopped" => "stopped after",
            _ => "took",
        };
        aside.push(format!("{label} {}", stats::duration(d)));
    }
    let as_of = match mode {
        Mode::Live => format!(
            "<span id=\"as-of\">figures of {}</span>",
            escape(&l.as_of.replace('T', " "))
        ),
        Mode::Frozen => format!("report written {}", escape(&l.as_of.replace('T', " "))),
    };
    let title = format!(
        "Migration {} <span class=\"badge {}\" id=\"state\">{}</span>",
        escape(name),
        escape(&run.state),
        escape(&run.state)
    );
    out.push_str(&html::header(
        &title,
        &sub.join(" · "),
        &format!("{}<br>{as_of}", aside.join(" · ")),
    ));
    out.push_str("<main>\n<div id=\"lost\"></div>\n");

    banners(&mut out, board);
    tiles(&mut out, board);
    progress(&mut out, board);
    phases(&mut out, board);

    out.push_str("<div class=\"grid2\">");
    throughput(&mut out, board);
    latency(&mut out, board);
    out.push_str("</div>\n");
    failures(&mut out, board, mode);
    records(&mut out, board);
    steps(&mut out, board);
    history(&mut out, board);

    let _ = writeln!(
        out,
        "<footer>mambu-migrate {} · read from the run's checkpoint.db (report.json holds the same figures) · {}</footer>",
        env!("CARGO_PKG_VERSION"),
        match mode {
            Mode::Live => format!(
                "refreshed every {} s while this page is open",
                REFRESH_MS / 1000
            ),
            Mode::Frozen => "written at the end of the run".to_owned(),
        }
    );
    let json = serde_json::to_string(board)
        .unwrap_or_default()
        .replace('<', "\\u003c");
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"board-data\">{json}</script>\n</main>"
    );
    out
}

fn banners(out: &mut String, board: &Board) {
    let s = &board.summary;
    let l = &board.live;
    if let Some(o) = &l.outage {
        let _ = writeln!(
            out,
            "<div class=\"banner bad\" id=\"outage\"><strong>Mambu is out of reach</strong> since {} (for {}): {}.<br>Calls wait and try again; no unit fails for it. The run stops, resumably, if it lasts past the plan's outage wait.</div>",
            escape(&o.since.replace('T', " ")),
            stats::duration(o.seconds),
            escape(&o.reason)
        );
    }
    match s.run.state.as_str() {
        "stopped" => {
            let _ = write!(
                out,
                "<div class=\"banner warn\" id=\"stopped\"><strong>Stopped</strong>: {}. Nothing was lost: resume it with",
                escape(s.run.stop_reason.as_deref().unwrap_or("no reason recorded"))
            );
            if let Some(cmd) = &s.run.resume_command {
                let _ = write!(out, "<pre>{}</pre>", escape(cmd));
            }
            out.push_str("</div>\n");
        }
        "finished" => {
            let _ = write!(
                out,
                "<div class=\"banner {}\" id=\"finished\"><strong>Finished</strong>: {} units migrated, {} failed.",
                if s.units.failed > 0 { "warn" } else { "ok" },
                thousands(s.units.done),
                thousands(s.units.failed)
            );
            if let Some(cmd) = &s.failures.reload_command {
                let _ = write!(
                    out,
                    " Their rows are in {} with errors.csv saying why; fix them there, then reload them:<pre>{}</pre>",
                    escape(&s.failures.failed_dir),
                    escape(cmd)
                );
            }
            out.push_str("</div>\n");
        }
        _ => {
            if let Some(cmd) = &l.process_gone_resume {
                let _ = writeln!(
                    out,
                    "<div class=\"banner bad\" id=\"gone\"><strong>No process is running this run</strong> (killed, or the machine restarted). Resume it with<pre>{}</pre></div>",
                    escape(cmd)
                );
            }
        }
    }
    if let Some(w) = &l.window
        && w.fits == Some(false)
    {
        let _ = writeln!(
            out,
            "<div class=\"banner warn\" id=\"late\"><strong>At this pace the run ends after the deadline</strong> ({}): no unit starts after it, and the run stops there, resumably.</div>",
            escape(&w.end.replace('T', " "))
        );
    }
}

fn tile(out: &mut String, class: &str, key: &str, value: &str, figure: &str, sub: &str) {
    let figure = if figure.is_empty() {
        String::new()
    } else {
        format!(" data-figure=\"{figure}\"")
    };
    let _ = write!(
        out,
        "<div class=\"tile {class}\"><div class=\"k\">{key}</div><div class=\"v\"{figure}>{value}</div><div class=\"s\">{sub}</div></div>"
    );
}

fn tiles(out: &mut String, board: &Board) {
    let s = &board.summary;
    let l = &board.live;
    let u = &s.units;
    out.push_str("<div class=\"tiles\">");
    let of = match u.total {
        Some(t) => format!(
            "of <span data-figure=\"units.total\">{}</span> · {}",
            thousands(t),
            percent(stats::ratio(u.done + u.failed, t))
        ),
        None => "total not known yet".into(),
    };
    tile(
        out,
        "ok",
        "units done",
        &thousands(u.done),
        "units.done",
        &of,
    );
    tile(
        out,
        if u.failed > 0 { "bad" } else { "" },
        "units failed",
        &thousands(u.failed),
        "units.failed",
        "see failures below",
    );
    let in_flight = if s.run.state == "running" {
        "in flight"
    } else {
        "started, not finished"
    };
    tile(
        out,
        "",
        "units pending",
        &thousands(u.not_started.unwrap_or(0) + u.running),
        "",
        &format!(
            "<span data-figure=\"units.running\">{}</span> {in_flight} · <span data-figure=\"units.not_started\">{}</span> not started",
            thousands(u.running),
            u.not_started.map_or("?".into(), thousands)
        ),
    );
    tile(
        out,
        "",
        "calls",
        &thousands(s.calls.total),
        "calls.total",
        &format!(
            "{} overall",
            s.calls.per_second.map_or("–".into(), stats::per_second)
        ),
    );
    let rate = s
        .run
        .rate
        .map(|r| format!("configured {}", stats::per_second(r)))
        .unwrap_or_default();
    tile(
        out,
        "",
        "calls/s, last minute",
        &l.recent_calls_per_second
            .map_or("–".into(), |r| format!("{r:.1}")),
        "",
        &rate,
    );
    tile(
        out,
        if s.calls.throttled > 0 { "warn" } else { "" },
        "throttled (429)",
        &thousands(s.calls.throttled),
        "calls.throttled",
        &format!(
            "{} of calls · <span data-figure=\"calls.retried\">{}</span> retried",
            percent(s.calls.throttle_rate),
            thousands(s.calls.retried)
        ),
    );
    match &l.eta {
        Some(eta) => {
            let (value, sub) = match (&eta.seconds, &eta.finish_at) {
                (Some(secs), Some(at)) => (
                    stats::duration(*secs),
                    format!(
                        "ends about {} UTC{}",
                        escape(at.get(11..19).unwrap_or(at)),
                        eta.units_per_second
                            .map(|r| format!(" · {r:.2} units/s"))
                            .unwrap_or_default()
                    ),
                ),
                _ => ("–".to_owned(), escape(&eta.text)),
            };
            tile(out, "", "ETA", &value, "", &sub);
        }
        None => tile(
            out,
            "",
            "duration",
            &s.run.duration_seconds.map_or("–".into(), stats::duration),
            "",
            &escape(&s.run.state),
        ),
    }
    if let Some(d) = &l.deadline {
        let class = match l.window.as_ref().and_then(|w| w.fits) {
            Some(false) => "bad",
            Some(true) => "ok",
            None => "",
        };
        let left = l
            .window
            .as_ref()
            .map(|w| {
                format!(
                    "{} of the window left",
                    stats::duration(w.seconds - w.elapsed_seconds)
                )
            })
            .unwrap_or_default();
        tile(
            out,
            class,
            "deadline",
            &escape(d.get(11..16).unwrap_or(d)),
            "",
            &format!("{} UTC · {left}", escape(d.get(..10).unwrap_or(""))),
        );
    }
    out.push_str("</div>\n");
}

/// A stacked bar of `(class, share, title)`.
fn bar(out: &mut String, parts: &[(&str, f64, String)], mark: Option<(f64, &str)>) {
    out.push_str("<div class=\"bar\">");
    for (class, share, title) in parts {
        if *share > 0.0 {
            let _ = write!(
                out,
                "<span class=\"{class}\" style=\"width:{:.3}%\" title=\"{}\"></span>",
                share * 100.0,
                escape(title)
            );
        }
    }
    if let Some((at, title)) = mark {
        let _ = write!(
            out,
            "<i class=\"mark\" style=\"left:calc({:.3}% - 1px)\" title=\"{}\"></i>",
            at.clamp(0.0, 1.0) * 100.0,
            escape(title)
        );
    }
    out.push_str("</div>");
}

fn progress(out: &mut String, board: &Board) {
    let u = &board.summary.units;
    let total = u.total.unwrap_or(u.done + u.failed + u.running).max(1) as f64;
    out.push_str("<section id=\"progress\"><h2>Progress</h2>");
    let not_started = u.not_started.unwrap_or(0);
    let in_flight = if board.summary.run.state == "running" {
        "in flight"
    } else {
        "started, not finished"
    };
    bar(
        out,
        &[
            ("c-done", u.done as f64 / total, format!("{} done", u.done)),
            (
                "c-failed",
                u.failed as f64 / total,
                format!("{} failed", u.failed),
            ),
            (
                "c-running",
                u.running as f64 / total,
                format!("{} {in_flight}", u.running),
            ),
            (
                "c-idle",
                not_started as f64 / total,
                format!("{not_started} not started"),
            ),
        ],
        None,
    );
    let _ = write!(
        out,
        "<div class=\"legend\"><i class=\"c-done\"></i>done {} <i class=\"c-failed\"></i>failed {} <i class=\"c-running\"></i>{in_flight} {} <i class=\"c-idle\"></i>not started {}</div>",
        thousands(u.done),
        thousands(u.failed),
        thousands(u.running),
        u.not_started.map_or("?".into(), thousands)
    );
    if let Some(w) = &board.live.window {
        let span = w.seconds.max(1.0);
        let _ = write!(
            out,
            "<h3>The window: {} to the deadline {}</h3>",
            escape(&w.start.replace('T', " ")),
            escape(&w.end.replace('T', " "))
        );
        let running = board.summary.run.state == "running";
        let mark = w
            .finish_seconds
            .filter(|_| running)
            .map(|f| (f / span, "the ETA at this pace"));
        bar(
            out,
            &[(
                "c-running",
                w.elapsed_seconds / span,
                format!("{} elapsed", stats::duration(w.elapsed_seconds)),
            )],
            mark,
        );
        let eta = match (w.finish_seconds, w.fits, running) {
            (Some(f), Some(true), true) => format!(
                "the last unit should finish {} before the deadline",
                stats::duration(w.seconds - f)
            ),
            (Some(f), Some(false), true) => format!(
                "at this pace the run needs {} more than the window",
                stats::duration(f - w.seconds)
            ),
            (Some(f), Some(true), false) => format!(
                "it ended {} before the deadline",
                stats::duration(w.seconds - f)
            ),
            (Some(_), Some(false), false) => "it ended at the deadline".into(),
            _ => "ETA not known yet".into(),
        };
        let _ = write!(
            out,
            "<div class=\"legend\"><i class=\"c-running\"></i>elapsed {} of {} <i class=\"c-rate\"></i>{eta}</div>",
            stats::duration(w.elapsed_seconds),
            stats::duration(w.seconds)
        );
    }
    out.push_str("</section>\n");
}

fn throughput(out: &mut String, board: &Board) {
    let s = &board.summary;
    let t = &s.throughput;
    let width = f64::from(t.bucket_seconds.max(1));
    out.push_str("<section id=\"throughput\"><h2>Calls per second</h2>");
    if t.buckets.is_empty() {
        out.push_str("<p class=\"muted\">No call yet.</p></section>\n");
        return;
    }
    // The last bucket may be cut short (still filling, or the run ended in it): its rate is
    // over the part of it the run lasted.
    let per_second = |offset: i64, n: i64| {
        let gone = s
            .run
            .duration_seconds
            .map_or(width, |d| (d - offset as f64).clamp(1.0, width));
        (offset as f64, n as f64 / gone)
    };
    let calls: Vec<(f64, f64)> = t
        .buckets
        .iter()
        .map(|b| per_second(b.offset_seconds, b.calls))
        .collect();
    let throttled: Vec<(f64, f64)> = t
        .buckets
        .iter()
        .map(|b| per_second(b.offset_seconds, b.throttled))
        .collect();
    let limit = s
        .run
        .rate
        .map(|r| (r, format!("configured {}", stats::per_second(r))));
    out.push_str(&html::line_chart(
        &[
            Series {
                points: &throttled,
                color: "#c0392b",
                bars: true,
            },
            Series {
                points: &calls,
                color: "#2f6fdb",
                bars: false,
            },
        ],
        s.run.duration_seconds,
        limit.as_ref().map(|(r, l)| (*r, l.as_str())),
        |x| stats::offset(x.round() as i64),
        "calls per second over the run, against the configured rate",
    ));
    let _ = write!(
        out,
        "<div class=\"legend\"><i class=\"c-running\"></i>achieved calls/s ({} s buckets) <i class=\"c-throttled\"></i>throttled (429)/s <i class=\"c-rate\"></i>configured rate</div>",
        t.bucket_seconds
    );
    let c = &s.calls;
    let _ = writeln!(
        out,
        "<p class=\"small\"><span data-figure=\"calls.ok\">{}</span> answered · <span data-figure=\"calls.adopted\">{}</span> adopted (already there) · {} throttled ({}) · {} retried ({}) · <span data-figure=\"calls.failed\">{}</span> refused</p></section>",
        thousands(c.ok),
        thousands(c.adopted),
        thousands(c.throttled),
        percent(c.throttle_rate),
        thousands(c.retried),
        percent(c.retry_rate),
        thousands(c.failed)
    );
}

fn latency(out: &mut String, board: &Board) {
    out.push_str("<section id=\"latency\"><h2>Latency per step (ms)</h2>");
    let rows: Vec<BarRow> = board
        .summary
        .steps
        .iter()
        .filter(|s| s.latency_ms.samples > 0 && !s.step.starts_with("lookups."))
        .map(|s| BarRow {
            label: s.step.clone(),
            values: vec![
                s.latency_ms.p50.unwrap_or(0.0),
                s.latency_ms.p95.unwrap_or(0.0),
            ],
            text: format!(
                "p50 {} · p95 {}",
                stats::ms(s.latency_ms.p50),
                stats::ms(s.latency_ms.p95)
            ),
        })
        .collect();
    if rows.is_empty() {
        out.push_str("<p class=\"muted\">No answer yet.</p></section>\n");
        return;
    }
    out.push_str(&html::hbars(
        &rows,
        &["#2f6fdb", "#a9c3ef"],
        "latency per step, p50 and p95",
    ));
    out.push_str("<div class=\"legend\"><i class=\"c-p50\"></i>p50 <i class=\"c-p95\"></i>p95, of the answers used (ok or adopted)</div></section>\n");
}

fn failures(out: &mut String, board: &Board, mode: Mode) {
    let s = &board.summary;
    let _ = write!(
        out,
        "<section id=\"failures\"><h2>Failures by reason: <span data-figure=\"failures.units\">{}</span> units</h2>",
        thousands(s.failures.units)
    );
    let link = match mode {
        Mode::Live => {
            "<a href=\"errors.csv\" class=\"tok\" download>Download errors.csv</a> (one row per failed unit, with Mambu's answer)"
        }
        Mode::Frozen => {
            "<a href=\"errors.csv\">errors.csv</a> beside this page (one row per failed unit, with Mambu's answer)"
        }
    };
    if board.live.failures.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"muted\">No unit has failed.</p><p class=\"small\">{link}</p></section>"
        );
        return;
    }
    out.push_str("<div class=\"scroll\"><table><tr><th>reason</th><th class=\"n\">units</th><th>at step</th><th>units</th></tr>");
    for f in &board.live.failures {
        let more = f.units - f.keys.len() as i64;
        let keys = f
            .keys
            .iter()
            .map(|k| escape(k))
            .collect::<Vec<_>>()
            .join(", ");
        let more = if more > 0 {
            format!(" and {} more", thousands(more))
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\" data-figure=\"failures.reason.{}\">{}</td><td>{}</td><td class=\"keys\">{keys}{more}</td></tr>",
            escape(&f.reason),
            escape(&f.reason),
            thousands(f.units),
            escape(&f.steps.join(", "))
        );
    }
    out.push_str("</table></div>");
    let _ = writeln!(out, "<p class=\"small\">{link}</p></section>");
}

fn state_rows(out: &mut String, noun: &str, figure: &str, states: &[StateCount]) {
    let total: i64 = states.iter().map(|s| s.count).sum();
    for s in states {
        let _ = write!(
            out,
            "<tr><td>{noun}</td><td>{}</td><td class=\"n\" data-figure=\"{figure}.{}\">{}</td></tr>",
            escape(&s.state),
            escape(&s.state),
            thousands(s.count)
        );
    }
    if states.len() > 1 {
        let _ = write!(
            out,
            "<tr class=\"total\"><td>{noun}</td><td>all</td><td class=\"n\">{}</td></tr>",
            thousands(total)
        );
    }
}

fn records(out: &mut String, board: &Board) {
    let s = &board.summary;
    let l = &board.live;
    out.push_str("<section id=\"records\"><h2>Records by state</h2><div class=\"grid2\"><div><h3>What Mambu answered during the run</h3><div class=\"scroll\"><table><tr><th>record</th><th>state</th><th class=\"n\">count</th></tr>");
    for c in &l.created {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>created or adopted</td><td class=\"n\" data-figure=\"created.{}\">{}</td></tr>",
            escape(&c.kind),
            escape(&c.kind),
            thousands(c.count)
        );
    }
    state_rows(out, "loans", "loan_states", &s.loan_states);
    state_rows(out, "deposits", "deposit_states", &s.deposit_states);
    out.push_str("</table></div></div><div>");
    match &l.verify {
        Some(v) => {
            let _ = write!(
                out,
                "<h3>Expected beside found (verify{})</h3>",
                v.at.as_deref()
                    .map(|at| format!(", {}", escape(&at.replace('T', " "))))
                    .unwrap_or_default()
            );
            out.push_str(&html::totals_table(
                v.totals
                    .iter()
                    .map(|t| [t.name.as_str(), &t.expected, &t.found, &t.difference]),
            ));
            let _ = write!(
                out,
                "<p class=\"small\">{} mismatches{}; verify.html has them.</p>",
                v.mismatches,
                v.units_verified
                    .map(|n| format!(" in {} units verified", thousands(n)))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = write!(
                out,
                "<h3>Expected beside found</h3><p class=\"small muted\">Once the run has ended, <code>mambu-migrate verify {}</code> reads every migrated record back from Mambu and counts clients, loans and deposits by state, expected (from the source) beside found; its totals show here.</p>",
                escape(&stats::shell_word(&s.run.run_dir))
            );
        }
    }
    out.push_str("</div></div></section>\n");
}

fn steps(out: &mut String, board: &Board) {
    let s = &board.summary;
    if s.steps.is_empty() {
        return;
    }
    out.push_str("<section id=\"steps\"><h2>Steps</h2><div class=\"scroll\"><table><tr><th>step</th><th class=\"n\">done</th><th class=\"n\">adopted</th><th class=\"n\">skipped</th><th class=\"n\">failed</th><th class=\"n\">calls</th><th class=\"n\">p50 ms</th><th class=\"n\">p95 ms</th><th class=\"n\">p99 ms</th></tr>");
    for (i, st) in s.steps.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\" data-figure=\"steps.{i}.done\">{}</td><td class=\"n\" data-figure=\"steps.{i}.adopted\">{}</td><td class=\"n\" data-figure=\"steps.{i}.skipped\">{}</td><td class=\"n\" data-figure=\"steps.{i}.failed\">{}</td><td class=\"n\" data-figure=\"steps.{i}.calls\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&st.step),
            thousands(st.done),
            thousands(st.adopted),
            thousands(st.skipped),
            thousands(st.failed),
            thousands(st.calls),
            stats::ms(st.latency_ms.p50),
            stats::ms(st.latency_ms.p95),
            stats::ms(st.latency_ms.p99)
        );
    }
    out.push_str("</table></div></section>\n");
}

/// The migration and each catch-up after it (`run --catch-up`), once there is one: what each
/// comparison found and the calls each phase made.
fn phases(out: &mut String, board: &Board) {
    let phases = &board.summary.phases;
    if phases.is_empty() {
        return;
    }
    out.push_str("<section id=\"phases\"><h2>Phases</h2><div class=\"scroll\"><table><tr><th>phase</th><th>kind</th><th>started (UTC)</th><th class=\"n\">calls</th><th class=\"n\">new units</th><th class=\"n\">changed</th><th class=\"n\">unchanged (no call)</th><th class=\"n\">rows added</th><th class=\"n\">drift applied</th><th class=\"n\">drift left</th></tr>");
    for p in phases {
        let counts = match &p.compared {
            Some(c) => [
                c.units_new,
                c.units_changed,
                c.units_unchanged,
                c.rows_added,
                c.drift_applied,
                c.drift_left,
            ]
            .iter()
            .map(|n| format!("<td class=\"n\">{}</td>", thousands(*n as i64)))
            .collect::<String>(),
            None => "<td class=\"n\" colspan=\"6\">—</td>".to_owned(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"t\">{}</td><td class=\"n\">{}</td>{counts}</tr>",
            p.phase,
            escape(&p.kind),
            escape(&p.started_at.as_deref().unwrap_or("—").replace('T', " ")),
            thousands(p.calls)
        );
    }
    out.push_str("</table></div><p>Every change to a row already migrated is in the run directory's drift.csv, with what was done with it (personal values masked).</p></section>\n");
}

/// The newest events shown.
const HISTORY_SHOWN: usize = 30;

fn history(out: &mut String, board: &Board) {
    let h = &board.summary.history;
    if h.is_empty() {
        return;
    }
    out.push_str("<section id=\"history\"><h2>History</h2><div class=\"scroll\"><table><tr><th>at (UTC)</th><th>event</th><th>detail</th></tr>");
    for e in h.iter().rev().take(HISTORY_SHOWN) {
        let _ = write!(
            out,
            "<tr><td class=\"t\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&e.at.replace('T', " ")),
            escape(&e.kind),
            escape(&e.detail)
        );
    }
    out.push_str("</table></div></section>\n");
}
