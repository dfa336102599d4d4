//! report.md: the [`Summary`] for people.

use std::fmt::Write;

use super::stats::{self, int, ms, percent};
use super::summary::{StateCount, Summary};

/// At most this many rows in the throughput table; longer runs merge buckets for it.
const MAX_THROUGHPUT_ROWS: usize = 60;

/// Escapes what would break a table cell.
fn cell(text: &str) -> String {
    text.replace('|', r"\|").replace(['\n', '\r'], " ")
}

fn states_table(out: &mut String, title: &str, noun: &str, states: &[StateCount]) {
    if states.is_empty() {
        return;
    }
    let total: i64 = states.iter().map(|s| s.count).sum();
    let _ = writeln!(out, "## {title}\n\n| state | {noun} |\n|---|---:|");
    for s in states {
        let _ = writeln!(out, "| {} | {} |", cell(&s.state), int(s.count));
    }
    let _ = writeln!(out, "| **total** | **{}** |\n", int(total));
}

/// Renders report.md.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let run = &summary.run;
    let name = run.plan_name.as_deref().unwrap_or("(unnamed plan)");
    let _ = writeln!(out, "# Migration report: {}\n", cell(name));

    // Identity.
    let state = match (&run.state[..], &run.stop_reason) {
        (s, Some(reason)) => format!("**{s}**: {}", cell(reason)),
        (s, None) => format!("**{s}**"),
    };
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| State | {state} |");
    if let Some(plan) = &run.plan_file {
        let _ = writeln!(out, "| Plan | `{}` |", cell(plan));
    }
    if let Some(target) = &run.target {
        let _ = writeln!(out, "| Target | {} |", cell(target));
    }
    let mut settings = Vec::new();
    if let Some(rate) = run.rate {
        settings.push(format!("{rate} calls/s"));
    }
    if let Some(c) = run.concurrency {
        settings.push(format!("concurrency {c}"));
    }
    if let Some(n) = run.sample {
        settings.push(format!("sample of {} units", int(n as i64)));
    }
    if !settings.is_empty() {
        let _ = writeln!(out, "| Settings | {} |", settings.join(", "));
    }
    if let Some(at) = &run.started_at {
        let _ = writeln!(out, "| Started | {at} |");
    }
    if let Some(at) = &run.finished_at {
        let _ = writeln!(out, "| Finished | {at} |");
    }
    if let Some(d) = run.duration_seconds {
        let label = if run.state == "running" {
            "Running for"
        } else {
            "Duration"
        };
        let _ = writeln!(out, "| {label} | {} |", stats::duration(d));
    }
    out.push('\n');
    if let Some(cmd) = &run.resume_command {
        let _ = writeln!(out, "Resume it with:\n\n```sh\n{cmd}\n```\n");
    }

    // Units.
    let u = &summary.units;
    let _ = writeln!(out, "## Units\n\n| status | units |\n|---|---:|");
    let _ = writeln!(out, "| done | {} |", int(u.done));
    let _ = writeln!(out, "| failed | {} |", int(u.failed));
    if u.running > 0 {
        let _ = writeln!(out, "| started, not finished | {} |", int(u.running));
    }
    if let Some(n) = u.not_started {
        let _ = writeln!(out, "| not started | {} |", int(n));
    }
    match u.total {
        Some(total) => {
            let _ = writeln!(out, "| **total** | **{}** |\n", int(total));
        }
        None => {
            let _ = writeln!(out, "| **total** | not known |\n");
        }
    }

    // Steps.
    if !summary.steps.is_empty() {
        let _ = writeln!(
            out,
            "## Steps\n\nInstances by outcome, calls (every attempt), and latency of the answers used (ok or adopted).\n\n\
             | step | action | done | adopted | skipped | failed | calls | p50 ms | p95 ms | p99 ms |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in &summary.steps {
            let l = &s.latency_ms;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&s.step),
                if s.action.is_empty() {
                    "–".to_owned()
                } else {
                    cell(&s.action)
                },
                int(s.done),
                int(s.adopted),
                int(s.skipped),
                int(s.failed),
                int(s.calls),
                ms(l.p50),
                ms(l.p95),
                ms(l.p99)
            );
        }
        out.push('\n');
    }

    // Calls.
    let c = &summary.calls;
    let _ = writeln!(out, "## Calls\n");
    let rate = c
        .per_second
        .map(|r| format!(", {} overall", stats::per_second(r)))
        .unwrap_or_default();
    let _ = writeln!(out, "{} calls{rate}.", int(c.total));
    let _ = writeln!(
        out,
        "Retried after a transient error: {} ({}). Throttled (429): {} ({}).\n",
        int(c.retried),
        percent(c.retry_rate),
        int(c.throttled),
        percent(c.throttle_rate)
    );
    if !summary.endpoints.is_empty() {
        let _ = writeln!(
            out,
            "| method | endpoint | calls | ok | retried | throttled | adopted | failed |\n|---|---|---:|---:|---:|---:|---:|---:|"
        );
        for e in &summary.endpoints {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} | {} | {} |",
                cell(&e.method),
                cell(&e.endpoint),
                int(e.calls),
                int(e.ok),
                int(e.retried),
                int(e.throttled),
                int(e.adopted),
                int(e.failed)
            );
        }
        out.push('\n');
    }

    // Throughput.
    let t = &summary.throughput;
    if !t.buckets.is_empty() {
        let k = t.buckets.len().div_ceil(MAX_THROUGHPUT_ROWS);
        let rows = stats::merge_buckets(&t.buckets, k);
        let width = t.bucket_seconds as usize * k;
        let unit = if width.is_multiple_of(60) {
            format!("{} min", width / 60)
        } else {
            format!("{width} s")
        };
        let note = if k > 1 {
            format!(" (report.json has every {} s)", t.bucket_seconds)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "## Throughput\n\nCalls per {unit}, from the start of the run{note}.\n\n| from | calls | calls/s | throttled |\n|---|---:|---:|---:|"
        );
        for (i, b) in rows.iter().enumerate() {
            if i > 0 && b.offset_seconds - rows[i - 1].offset_seconds > width as i64 {
                let gap = b.offset_seconds - rows[i - 1].offset_seconds - width as i64;
                let _ = writeln!(
                    out,
                    "| … | no calls for {} | | |",
                    stats::duration(gap as f64)
                );
            }
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} |",
                stats::offset(b.offset_seconds),
                int(b.calls),
                b.calls as f64 / width as f64,
                int(b.throttled)
            );
        }
        out.push('\n');
    }

    states_table(&mut out, "Final loan states", "loans", &summary.loan_states);
    states_table(
        &mut out,
        "Final deposit states",
        "deposits",
        &summary.deposit_states,
    );

    // Failures.
    let f = &summary.failures;
    let _ = writeln!(out, "## Failures\n");
    if f.units == 0 {
        let _ = writeln!(out, "No unit failed.");
    } else {
        let _ = writeln!(
            out,
            "{} units failed. Most frequent reasons:\n\n| reason | units |\n|---|---:|",
            int(f.units)
        );
        for r in &f.top_reasons {
            let _ = writeln!(out, "| {} | {} |", cell(&r.reason), int(r.units));
        }
        let _ = writeln!(
            out,
            "\nEvery failed unit is in `{}` (beside this report) with Mambu's answer: HTTP status, errorCode, errorReason, errorSource, message. \
             Their source rows are in `{}<source>.csv`, with the input's header (and `errors.csv` beside them): fix them there, then reload them{}",
            f.errors_csv,
            f.failed_dir,
            match &f.reload_command {
                Some(cmd) => format!(":\n\n```sh\n{cmd}\n```"),
                None => " with `--reload`.".to_owned(),
            }
        );
    }

    // History.
    if !summary.history.is_empty() {
        let _ = writeln!(out, "\n## History\n");
        for e in &summary.history {
            let detail = if e.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", cell(&e.detail))
            };
            let _ = writeln!(out, "- {} {}{detail}", e.at, e.kind);
        }
    }
    out
}
