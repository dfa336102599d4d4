//! report.md: the [`Summary`] for people.

use std::fmt::Write;

use super::render::{Align, Table, cell, percent, thousands};
use super::stats::{self, ms};
use super::summary::{StateCount, Summary};
use crate::checkpoint::AttemptState;

use Align::{Left, Right};

/// At most this many rows in the throughput table; longer runs merge buckets for it.
const MAX_THROUGHPUT_ROWS: usize = 60;

fn states_table(out: &mut String, title: &str, noun: &str, states: &[StateCount]) {
    if states.is_empty() {
        return;
    }
    let total: i64 = states.iter().map(|s| s.count).sum();
    let _ = writeln!(out, "## {title}\n");
    let mut table = Table::new(out, &[("state", Left), (noun, Right)]);
    for s in states {
        table.row(&[&s.state, &thousands(s.count)]);
    }
    table.row(&["**total**", &format!("**{}**", thousands(total))]);
    out.push('\n');
}

/// At most this many units are named in the rollbacks section (report.json has them all).
const MAX_ROLLBACK_ROWS: usize = 50;

/// The rollbacks made on the run directory (issue 19): units wholly undone, units partly undone
/// with the refused call and Mambu's reason, the undo calls.
fn rollbacks(out: &mut String, r: &crate::checkpoint::Rollbacks) {
    if r.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Rollbacks\n\nUnits rolled back (undone in Mambu, migrated again by `run --resume`): {}. Partly undone: {}. \
         Undo calls: {} done, {} refused; steps with nothing to undo: {}.\n",
        thousands(r.rolled_back.len() as i64),
        thousands(r.partly.len() as i64),
        thousands(r.calls_done),
        thousands(r.calls_refused),
        thousands(r.steps_skipped),
    );
    let more = |out: &mut String, n: usize| {
        if n > MAX_ROLLBACK_ROWS {
            let _ = writeln!(
                out,
                "\n…and {} more (report.json lists them all).",
                thousands((n - MAX_ROLLBACK_ROWS) as i64)
            );
        }
    };
    if !r.partly.is_empty() {
        let _ = writeln!(
            out,
            "Partly undone: the calls before the refusal are made, the rest not sent; `rollback` again once the cause is dealt with.\n"
        );
        let mut table = Table::new(
            out,
            &[
                ("unit", Left),
                ("undo calls done", Right),
                ("refused", Left),
                ("reason", Left),
            ],
        );
        for p in r.partly.iter().take(MAX_ROLLBACK_ROWS) {
            let refused = p
                .refused
                .as_deref()
                .map_or_else(|| "–".to_owned(), |c| format!("`{c}`"));
            let reason = p
                .reason
                .as_deref()
                .unwrap_or("stopped before the unit's end (rollback again)");
            table.row(&[&p.unit, &thousands(p.calls_done), &refused, reason]);
        }
        more(out, r.partly.len());
        out.push('\n');
    }
    if !r.rolled_back.is_empty() {
        let mut table = Table::new(out, &[("rolled back", Left), ("times", Right)]);
        for u in r.rolled_back.iter().take(MAX_ROLLBACK_ROWS) {
            table.row(&[&u.unit, &thousands(u.times)]);
        }
        more(out, r.rolled_back.len());
    }
}

/// Renders report.md.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let run = &summary.run;
    let name = run.plan_name.as_deref().unwrap_or("(unnamed plan)");
    let _ = writeln!(out, "# Migration report: {}\n", cell(name));

    // Identity.
    let state = match (&run.state[..], &run.stop_reason) {
        (s, Some(reason)) => format!("**{s}**: {reason}"),
        (s, None) => format!("**{s}**"),
    };
    let mut table = Table::new(&mut out, &[("", Left), ("", Left)]);
    table.row(&["State", &state]);
    if let Some(plan) = &run.plan_file {
        table.row(&["Plan", &format!("`{plan}`")]);
    }
    if let Some(target) = &run.target {
        table.row(&["Target", target]);
    }
    let mut settings = Vec::new();
    if let Some(rate) = run.rate {
        settings.push(format!("{rate} calls/s"));
    }
    if let Some(c) = run.concurrency {
        settings.push(format!("concurrency {c}"));
    }
    if let Some(n) = run.sample {
        settings.push(format!("sample of {} units", thousands(n)));
    }
    if !settings.is_empty() {
        table.row(&["Settings", &settings.join(", ")]);
    }
    if let Some(at) = &run.started_at {
        table.row(&["Started", at]);
    }
    if let Some(at) = &run.finished_at {
        table.row(&["Finished", at]);
    }
    if let Some(d) = run.duration_seconds {
        let label = if run.state == AttemptState::Running.as_str() {
            "Running for"
        } else {
            "Duration"
        };
        table.row(&[label, &stats::duration(d)]);
    }
    out.push('\n');
    if let Some(cmd) = &run.resume_command {
        let _ = writeln!(out, "Resume it with:\n\n```sh\n{cmd}\n```\n");
    }

    // Units.
    let u = &summary.units;
    let _ = writeln!(out, "## Units\n");
    let mut table = Table::new(&mut out, &[("status", Left), ("units", Right)]);
    table.row(&["done", &thousands(u.done)]);
    table.row(&["failed", &thousands(u.failed)]);
    if u.running > 0 {
        table.row(&["started, not finished", &thousands(u.running)]);
    }
    if let Some(n) = u.not_started {
        table.row(&["not started", &thousands(n)]);
    }
    match u.total {
        Some(total) => table.row(&["**total**", &format!("**{}**", thousands(total))]),
        None => table.row(&["**total**", "not known"]),
    }
    out.push('\n');

    // Steps.
    if !summary.steps.is_empty() {
        let _ = writeln!(
            out,
            "## Steps\n\nInstances by outcome, calls (every attempt), and latency of the answers used (ok or adopted).\n"
        );
        let mut table = Table::new(
            &mut out,
            &[
                ("step", Left),
                ("action", Left),
                ("done", Right),
                ("adopted", Right),
                ("skipped", Right),
                ("failed", Right),
                ("calls", Right),
                ("p50 ms", Right),
                ("p95 ms", Right),
                ("p99 ms", Right),
            ],
        );
        for s in &summary.steps {
            let l = &s.latency_ms;
            table.row(&[
                &s.step,
                if s.action.is_empty() {
                    "–"
                } else {
                    &s.action
                },
                &thousands(s.done),
                &thousands(s.adopted),
                &thousands(s.skipped),
                &thousands(s.failed),
                &thousands(s.calls),
                &ms(l.p50),
                &ms(l.p95),
                &ms(l.p99),
            ]);
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
    let _ = writeln!(out, "{} calls{rate}.", thousands(c.total));
    let _ = writeln!(
        out,
        "Retried after a transient error: {} ({}). Throttled (429): {} ({}).\n",
        thousands(c.retried),
        percent(c.retry_rate),
        thousands(c.throttled),
        percent(c.throttle_rate)
    );
    if !summary.endpoints.is_empty() {
        let mut table = Table::new(
            &mut out,
            &[
                ("method", Left),
                ("endpoint", Left),
                ("calls", Right),
                ("ok", Right),
                ("retried", Right),
                ("throttled", Right),
                ("adopted", Right),
                ("failed", Right),
            ],
        );
        for e in &summary.endpoints {
            table.row(&[
                &e.method,
                &format!("`{}`", e.endpoint),
                &thousands(e.calls),
                &thousands(e.ok),
                &thousands(e.retried),
                &thousands(e.throttled),
                &thousands(e.adopted),
                &thousands(e.failed),
            ]);
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
            "## Throughput\n\nCalls per {unit}, from the start of the run{note}.\n"
        );
        let mut table = Table::new(
            &mut out,
            &[
                ("from", Left),
                ("calls", Right),
                ("calls/s", Right),
                ("throttled", Right),
            ],
        );
        for (i, b) in rows.iter().enumerate() {
            if i > 0 && b.offset_seconds - rows[i - 1].offset_seconds > width as i64 {
                let gap = b.offset_seconds - rows[i - 1].offset_seconds - width as i64;
                let gap = format!("no calls for {}", stats::duration(gap as f64));
                table.row(&["…", &gap, "", ""]);
            }
            table.row(&[
                &stats::offset(b.offset_seconds),
                &thousands(b.calls),
                &format!("{:.1}", b.calls as f64 / width as f64),
                &thousands(b.throttled),
            ]);
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
            "{} units failed. Most frequent reasons:\n",
            thousands(f.units)
        );
        let mut table = Table::new(&mut out, &[("reason", Left), ("units", Right)]);
        for r in &f.top_reasons {
            table.row(&[&r.reason, &thousands(r.units)]);
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

    // Phases: the migration, then each catch-up.
    if !summary.phases.is_empty() {
        let _ = writeln!(
            out,
            "\n## Phases\n\n| phase | kind | started | attempts | calls | new units | changed | unchanged (no call) | failed, unchanged | removed | rows added | drift: applied | not sent | left for a person |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for p in &summary.phases {
            let attempts: Vec<String> = p.attempts.iter().map(ToString::to_string).collect();
            let counts = match &p.compared {
                Some(c) => [
                    c.units_new,
                    c.units_changed,
                    c.units_unchanged,
                    c.units_failed_unchanged,
                    c.units_removed,
                    c.rows_added,
                    c.drift_applied,
                    c.drift_not_sent,
                    c.drift_left,
                ]
                .map(|n| thousands(n as i64))
                .join(" | "),
                None if p.kind == "migration" => ["—"; 9].join(" | "),
                None => ["(comparison not complete)"; 9].join(" | "),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {counts} |",
                p.phase,
                p.kind,
                p.started_at.as_deref().unwrap_or("—"),
                attempts.join(", "),
                thousands(p.calls),
            );
        }
        if summary.phases.iter().any(|p| {
            p.compared
                .as_ref()
                .is_some_and(|c| c.drift_left + c.drift_not_sent + c.drift_applied > 0)
        }) {
            let _ = writeln!(
                out,
                "\nEvery change to a row already migrated is in `drift.csv` (beside this report): unit, source, key, column, old and new value (personal values masked), and what was done with it."
            );
        }
    }
    rollbacks(&mut out, &summary.rollbacks);

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
