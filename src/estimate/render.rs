//! The estimate as Markdown (for people and for Mambu's onboarding team), JSON (for tools) and a
//! self-contained HTML page (charts).

use std::fmt::Write as _;

use super::Estimate;
use super::timing::format_duration;
use crate::report::html::{self, BarRow};
use crate::report::render::{Align, Table, escape, percent, thousands};

use Align::{Left, Right};

/// Milliseconds: whole above 10 ms, else with two decimals.
fn ms(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// What a catch-up's comparison found, line by line (`--catch-up`).
fn catch_up_rows(c: &super::CatchUpEstimate) -> [(&'static str, u64); 10] {
    [
        ("units unchanged (no call)", c.counts.units_unchanged),
        ("units new (migrated in full)", c.counts.units_new),
        ("units changed", c.counts.units_changed),
        ("rows added to migrated units", c.counts.rows_added),
        (
            "units failed before and unchanged (left failed)",
            c.counts.units_failed_unchanged,
        ),
        ("units removed from the extract", c.counts.units_removed),
        (
            "drift applied by an update (`on_change`)",
            c.counts.drift_applied,
        ),
        (
            "drift in columns the plan does not send",
            c.counts.drift_not_sent,
        ),
        ("drift left for a person (drift.csv)", c.counts.drift_left),
        ("calls of units", c.unit_calls),
    ]
}

pub fn markdown(e: &Estimate) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Migration estimate: {}\n", e.plan_name);
    let _ = writeln!(
        w,
        "Plan `{}`: {} units, {} API calls, projected {} at {} calls/s and {} units at once.\n",
        e.plan,
        thousands(e.units),
        thousands(e.total_calls),
        format_duration(e.timing.projection.seconds),
        e.timing.rate,
        e.timing.concurrency
    );

    if let Some(c) = &e.catch_up {
        let _ = writeln!(
            w,
            "## Catch-up of {} (phase {})\n\nEvery figure below counts only what the catch-up sends: the units it runs, and in each only the steps the run has not made.\n",
            c.run_dir, c.phase
        );
        let mut table = Table::new(
            w,
            &[
                ("compared with the extract migrated before", Left),
                ("count", Right),
            ],
        );
        for (what, n) in catch_up_rows(c) {
            table.row(&[what, &thousands(n)]);
        }
        let _ = writeln!(w);
    }

    let _ = writeln!(w, "## Volumes\n");
    let mut table = Table::new(w, &[("source", Left), ("rows", Right), ("file", Left)]);
    for s in &e.sources {
        table.row(&[&s.source, &thousands(s.rows), &s.file]);
    }
    let _ = writeln!(
        w,
        "\nUnits (one per row of the unit source): **{}**.",
        thousands(e.units)
    );
    if e.data_problems > 0 {
        let _ = writeln!(
            w,
            "Data problems leaving rows out: {} (`plan validate` lists them).",
            e.data_problems
        );
    }
    let _ = writeln!(
        w,
        "\nLargest units (most calls; each is a chain of sequential calls):\n"
    );
    let mut table = Table::new(w, &[("unit", Left), ("calls", Right)]);
    for u in &e.largest_units {
        table.row(&[&u.unit, &thousands(u.calls)]);
    }

    let _ = writeln!(w, "\n## Steps and calls\n");
    let mut table = Table::new(
        w,
        &[
            ("step", Left),
            ("action", Left),
            ("per", Left),
            ("when", Left),
            ("runs", Right),
            ("skipped", Right),
            ("calls each", Right),
            ("calls", Right),
            ("endpoint", Left),
        ],
    );
    if e.lookup_calls > 0 {
        let calls = e.lookup_calls.to_string();
        table.row(&[
            "(tenant, lookups)",
            "GET",
            "plan",
            "",
            &calls,
            "0",
            "1",
            &calls,
            "read once before the first unit",
        ]);
    }
    for s in &e.steps {
        let when = s
            .when
            .as_deref()
            .map(|c| format!("`{c}`"))
            .unwrap_or_default();
        let skipped = if s.unevaluated > 0 {
            format!("{} (+{} unevaluated)", thousands(s.skipped), s.unevaluated)
        } else {
            thousands(s.skipped)
        };
        let endpoints = s
            .endpoints
            .iter()
            .map(|e| format!("`{e}`"))
            .collect::<Vec<_>>()
            .join(" + ");
        table.row(&[
            &s.id,
            &s.action,
            &s.per,
            &when,
            &thousands(s.instances),
            &skipped,
            &s.calls_each.to_string(),
            &thousands(s.calls),
            &endpoints,
        ]);
    }
    let total = format!("**{}**", thousands(e.total_calls));
    table.row(&["**total**", "", "", "", "", "", "", &total, ""]);
    let _ = writeln!(w, "\nCalls per endpoint:\n");
    let mut table = Table::new(
        w,
        &[
            ("method", Left),
            ("endpoint", Left),
            ("calls", Right),
            ("latency (ms)", Right),
        ],
    );
    for p in &e.endpoints {
        table.row(&[
            &p.method,
            &format!("`{}`", p.endpoint),
            &thousands(p.calls),
            &ms(p.latency_ms),
        ]);
    }
    let _ = writeln!(w, "\ntotal_calls: **{}**", thousands(e.total_calls));
    for b in &e.bulks {
        let _ = writeln!(
            w,
            "\nbulk deposits: {} items in {} calls instead of {} ({} saved): step `{}`, bulks of {} (a POST and at least one poll each)",
            thousands(b.items),
            thousands(b.calls),
            thousands(b.items),
            thousands(b.saved),
            b.step,
            b.size
        );
    }

    let _ = writeln!(w, "\n## Sample API calls\n");
    let _ = writeln!(
        w,
        "The first request of each step, from the first row it runs for. Credentials are never shown; personal data is masked.\n"
    );
    for s in &e.samples {
        let _ = writeln!(w, "### {} ({})\n", s.step, s.action);
        let _ = writeln!(w, "From `{}`.", s.instance);
        if let Some(note) = &s.note {
            let _ = writeln!(w, "Note: {note}.");
        }
        let _ = writeln!(w, "\n```http");
        for (i, r) in s.requests.iter().enumerate() {
            if i > 0 {
                let _ = writeln!(w);
            }
            let _ = writeln!(w, "{} {}", r.method, r.url);
            for (name, value) in &r.headers {
                let _ = writeln!(w, "{name}: {value}");
            }
            if let Some(body) = &r.body {
                let _ = writeln!(
                    w,
                    "\n{}",
                    serde_json::to_string_pretty(body).unwrap_or_default()
                );
            }
        }
        let _ = writeln!(w, "```\n");
    }

    let t = &e.timing;
    let p = &t.projection;
    let _ = writeln!(w, "## Timing\n");
    let _ = writeln!(
        w,
        "Projected duration: **{}** (bound by {}).\n",
        format_duration(p.seconds),
        p.binding.describe()
    );
    let mut table = Table::new(w, &[("bound", Left), ("duration", Right)]);
    let attempts = thousands(t.attempts.round() as u64);
    table.row(&[
        &format!("rate: {attempts} attempts ÷ {} calls/s", t.rate),
        &format_duration(p.rate_bound_seconds),
    ]);
    table.row(&[
        &format!(
            "concurrency: {attempts} attempts × {} ms ÷ {}",
            ms(t.mean_latency_ms),
            t.concurrency
        ),
        &format_duration(p.concurrency_bound_seconds),
    ]);
    table.row(&[
        &format!(
            "longest unit: {} calls one after another",
            e.largest_units.first().map_or(0, |u| u.calls)
        ),
        &format_duration(p.critical_path_seconds),
    ]);
    if let Some(s) = p.schedule_seconds {
        table.row(&[
            &format!(
                "schedule: units in run order on {} slots, after the lookups",
                t.concurrency
            ),
            &format_duration(s),
        ]);
    }
    if let Some(m) = &t.measured {
        let _ = writeln!(
            w,
            "\nMeasured in the sample run `{}`: {} units ({} finished), {} call attempts, mean latency {} ms, retries {} and throttled {} extra attempts per call.",
            m.run_dir,
            m.units,
            m.units_finished,
            thousands(m.attempts),
            ms(m.mean_latency_ms.unwrap_or(0.0)),
            percent(m.retry_rate),
            percent(m.throttle_rate)
        );
        if let Some(sp) = &t.sample_projection {
            let took = m
                .duration_seconds
                .map(|d| format!("; the sample took {}", format_duration(d)))
                .unwrap_or_default();
            let _ = writeln!(
                w,
                "The model on the sample's own {} units projects {}{took}.",
                m.units,
                format_duration(sp.seconds)
            );
        }
    }
    if let Some(f) = &t.window {
        let _ = writeln!(w);
        if f.fits {
            let _ = writeln!(
                w,
                "Window {}: **fits**, with {} to spare.",
                format_duration(f.window_seconds),
                format_duration(f.margin_seconds)
            );
        } else {
            let _ = writeln!(
                w,
                "Window {}: **does not fit**, {} short.",
                format_duration(f.window_seconds),
                format_duration(-f.margin_seconds)
            );
            if let Some(r) = f.rate_needed {
                let _ = writeln!(w, "- a rate of at least {r} calls/s (agree it with Mambu)");
            }
            if let Some(c) = f.concurrency_needed {
                let _ = writeln!(w, "- a concurrency of at least {c} units at once");
            }
            if !e.savings.is_empty() {
                let saved: u64 = e.savings.iter().map(|s| s.calls).sum();
                let _ = writeln!(
                    w,
                    "- fewer calls: {} could be saved with another flow (below)",
                    thousands(saved)
                );
            }
            if f.critical_path_too_long {
                let _ = writeln!(
                    w,
                    "- the longest unit alone takes longer than the window: no rate or concurrency makes it fit; split the run or move that unit's history to a later load"
                );
            }
        }
    }

    if !e.savings.is_empty() {
        let _ = writeln!(w, "\n### Calls that could be saved\n");
        let mut table = Table::new(
            w,
            &[
                ("step", Left),
                ("calls", Right),
                ("instead", Left),
                ("projected without them", Right),
                ("first", Left),
            ],
        );
        for s in &e.savings {
            table.row(&[
                &format!("{} ({})", s.step, s.action),
                &thousands(s.calls),
                &s.instead,
                &format_duration(s.projected_seconds),
                &s.caveat,
            ]);
        }
    }

    let _ = writeln!(w, "\n## Assumptions\n");
    for a in &e.assumptions {
        let _ = writeln!(w, "- {a}");
    }
    out
}

pub fn json(e: &Estimate) -> String {
    serde_json::to_string_pretty(e).unwrap_or_default()
}

/// A self-contained page: the Markdown's figures, a bar chart of calls per step and the
/// projected progress curve, as inline SVG.
pub fn html(e: &Estimate) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "<section><p>{} units, <strong>{}</strong> API calls, projected <strong>{}</strong> at {} calls/s and {} units at once.</p></section>",
        thousands(e.units),
        thousands(e.total_calls),
        format_duration(e.timing.projection.seconds),
        e.timing.rate,
        e.timing.concurrency
    );
    if let Some(c) = &e.catch_up {
        let _ = writeln!(
            w,
            "<section><h2>Catch-up of {} (phase {})</h2><p>Every figure on this page counts only what the catch-up sends.</p><div class=\"scroll\"><table>",
            escape(&c.run_dir),
            c.phase
        );
        for (what, n) in catch_up_rows(c) {
            let _ = writeln!(
                w,
                "<tr><td>{}</td><td class=n>{}</td></tr>",
                escape(what),
                thousands(n)
            );
        }
        let _ = writeln!(w, "</table></div></section>");
    }
    let _ = writeln!(
        w,
        "<section><h2>Volumes</h2><div class=\"scroll\"><table><tr><th>source</th><th class=\"n\">rows</th></tr>"
    );
    for s in &e.sources {
        let _ = writeln!(
            w,
            "<tr><td>{}</td><td class=n>{}</td></tr>",
            escape(&s.source),
            thousands(s.rows)
        );
    }
    let _ = writeln!(w, "</table></div></section>");

    // Bar chart: calls per step.
    let _ = writeln!(w, "<section><h2>Steps and calls</h2>");
    let bars: Vec<BarRow> = e
        .steps
        .iter()
        .map(|s| BarRow {
            label: s.id.clone(),
            values: vec![s.calls as f64],
            text: thousands(s.calls),
        })
        .collect();
    let _ = writeln!(w, "{}", html::hbars(&bars, &["#2f6fdb"], "calls per step"));
    let _ = writeln!(
        w,
        "<div class=\"scroll\"><table><tr><th>step</th><th>action</th><th>when</th><th class=\"n\">runs</th><th class=\"n\">calls</th><th>endpoint</th></tr>"
    );
    for s in &e.steps {
        let _ = writeln!(
            w,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=n>{}</td><td class=n>{}</td><td><code>{}</code></td></tr>",
            escape(&s.id),
            escape(&s.action),
            escape(s.when.as_deref().unwrap_or("")),
            thousands(s.instances),
            thousands(s.calls),
            escape(&s.endpoints.join(" + "))
        );
    }
    let _ = writeln!(
        w,
        "<tr class=\"total\"><td colspan=4>total (lookups included)</td><td class=n>{}</td><td></td></tr></table></div></section>",
        thousands(e.total_calls)
    );

    // Progress curve: calls done over time, at the projected throughput.
    let t = &e.timing;
    let seconds = t.projection.seconds.max(1e-9);
    let _ = writeln!(w, "<section><h2>Timing</h2>");
    let _ = writeln!(
        w,
        "<p>Projected duration <strong>{}</strong>, bound by {}.</p>",
        format_duration(t.projection.seconds),
        escape(t.projection.binding.describe())
    );
    let (cw, ch) = (560.0, 220.0);
    let _ = writeln!(
        w,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"projected progress\">",
        cw + 90.0,
        ch + 40.0
    );
    let _ = writeln!(
        w,
        "<line x1=\"60\" y1=\"{ch}\" x2=\"{}\" y2=\"{ch}\" stroke=\"#888\"/><line x1=\"60\" y1=\"10\" x2=\"60\" y2=\"{ch}\" stroke=\"#888\"/>",
        60.0 + cw
    );
    let window_x = t.window.as_ref().map(|f| f.window_seconds);
    let span = window_x.map_or(seconds, |wx| wx.max(seconds));
    let end_x = 60.0 + cw * seconds / span;
    let _ = writeln!(
        w,
        "<polyline fill=\"none\" stroke=\"#3b7dd8\" stroke-width=\"2\" points=\"60,{ch} {end_x:.1},10\"/>"
    );
    if let Some(wx) = window_x {
        let x = 60.0 + cw * wx / span;
        let _ = writeln!(
            w,
            "<line x1=\"{x:.1}\" y1=\"10\" x2=\"{x:.1}\" y2=\"{ch}\" stroke=\"#d83b3b\" stroke-dasharray=\"4\"/><text x=\"{x:.1}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">window</text>",
            ch + 30.0
        );
    }
    let _ = writeln!(
        w,
        "<text x=\"55\" y=\"16\" font-size=\"12\" text-anchor=\"end\">{}</text><text x=\"55\" y=\"{ch}\" font-size=\"12\" text-anchor=\"end\">0</text><text x=\"{end_x:.1}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text></svg>",
        thousands(e.total_calls),
        ch + 15.0,
        format_duration(t.projection.seconds)
    );

    let _ = writeln!(w, "</section>\n<section><h2>Sample API calls</h2>");
    for s in &e.samples {
        let _ = writeln!(
            w,
            "<h3>{} ({})</h3><pre>",
            escape(&s.step),
            escape(&s.action)
        );
        for r in &s.requests {
            let _ = writeln!(w, "{} {}", escape(&r.method), escape(&r.url));
            for (name, value) in &r.headers {
                let _ = writeln!(w, "{}: {}", escape(name), escape(value));
            }
            if let Some(body) = &r.body {
                let _ = writeln!(
                    w,
                    "\n{}",
                    escape(&serde_json::to_string_pretty(body).unwrap_or_default())
                );
            }
            let _ = writeln!(w);
        }
        let _ = writeln!(w, "</pre>");
    }
    if !e.savings.is_empty() {
        let _ = writeln!(
            w,
            "<h3>Calls that could be saved</h3><div class=\"scroll\"><table><tr><th>step</th><th>calls</th><th>instead</th><th>projected without them</th><th>first</th></tr>"
        );
        for s in &e.savings {
            let _ = writeln!(
                w,
                "<tr><td>{} ({})</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(&s.step),
                escape(&s.action),
                thousands(s.calls),
                escape(&s.instead),
                format_duration(s.projected_seconds),
                escape(&s.caveat)
            );
        }
        let _ = writeln!(w, "</table></div>");
    }
    let _ = writeln!(w, "</section>\n<section><h2>Assumptions</h2><ul>");
    for a in &e.assumptions {
        let _ = writeln!(w, "<li>{}</li>", escape(a));
    }
    let _ = writeln!(w, "</ul></section>");
    let title = format!("Migration estimate: {}", e.plan_name);
    let header = html::header(
        &escape(&title),
        &format!("plan {}", escape(&e.plan)),
        "for Mambu's onboarding team",
    );
    html::page(&title, &format!("{header}<main>\n{out}</main>"), "")
}
