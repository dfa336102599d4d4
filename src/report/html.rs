//! The look every HTML page of the crate shares (the dashboard and report.html, estimate.html,
//! verify.html): one stylesheet built into the binary, one page shell, and the charts, drawn as
//! inline SVG. No script, font or stylesheet is fetched from anywhere: a page works offline,
//! from a file or through an SSH tunnel.
//!
//! Hand-drawn SVG rather than a vendored charting library: the pages need two kinds of chart (a
//! rate over time against a limit, and bars per step), both a few dozen lines here, and a page
//! written once (report.html) must show them without running a script.

use std::fmt::Write as _;

use super::render::{escape, thousands};

/// The shared stylesheet.
pub const CSS: &str = include_str!("page.css");

/// A whole page: `body` (the markup inside `<body>`, usually a [`header`] then `<main>`), then
/// `tail` (scripts) at its end.
pub fn page(title: &str, body: &str, tail: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\">\
<title>{}</title>\n<style>{CSS}</style></head>\n<body>\n{body}\n{tail}</body></html>\n",
        escape(title),
    )
}

/// The header band: a `title`, a `subtitle` line under it and an `aside` on the right (all
/// HTML, escaped by the caller).
pub fn header(title: &str, subtitle: &str, aside: &str) -> String {
    format!(
        "<header class=\"top\"><div><h1>{title}</h1><div class=\"sub\">{subtitle}</div></div><div class=\"when\">{aside}</div></header>\n"
    )
}

/// A table of control totals, expected beside found (verify's, on verify.html and the
/// dashboard): each `(name, expected, found, difference)`, a row whose difference is not zero
/// marked.
pub fn totals_table<'a>(totals: impl IntoIterator<Item = [&'a str; 4]>) -> String {
    let mut out = String::from(
        "<div class=\"scroll\"><table><tr><th>total</th><th class=\"n\">expected</th><th class=\"n\">found</th><th class=\"n\">difference</th></tr>",
    );
    for [name, expected, found, difference] in totals {
        let zero = difference
            .trim_start_matches(['-', '+'])
            .trim_start_matches(['0', '.'])
            .is_empty();
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            if zero { "" } else { " class=\"bad\"" },
            escape(name),
            escape(&thousands(expected)),
            escape(&thousands(found)),
            escape(difference)
        );
    }
    out.push_str("</table></div>");
    out
}

/// One row of [`hbars`]: a label, values drawn over each other from the same origin (the
/// largest first, so each stays visible), and the text written after the bars.
pub struct BarRow {
    pub label: String,
    pub values: Vec<f64>,
    pub text: String,
}

/// Horizontal bars, one row per item, each label above its bar (readable on a phone); value
/// `i` of every row takes `colors[i]`.
pub fn hbars(rows: &[BarRow], colors: &[&str], aria: &str) -> String {
    const WIDTH: f64 = 420.0;
    const ROW: f64 = 36.0;
    let max = rows
        .iter()
        .flat_map(|r| r.values.iter().copied())
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let text_room = 130.0;
    let scale = (WIDTH - text_room) / max;
    let height = ROW * rows.len() as f64 + 4.0;
    let mut out = format!(
        "<svg class=\"chart-bars\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\" font-size=\"13\">",
        escape(aria)
    );
    for (i, row) in rows.iter().enumerate() {
        let y = i as f64 * ROW;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{:.0}\">{}</text>",
            y + 13.0,
            escape(&row.label)
        );
        let mut order: Vec<usize> = (0..row.values.len()).collect();
        order.sort_by(|a, b| row.values[*b].total_cmp(&row.values[*a]));
        for v in order {
            let w = (row.values[v].max(0.0) * scale).max(1.0);
            let _ = write!(
                out,
                "<rect x=\"0\" y=\"{:.0}\" width=\"{w:.1}\" height=\"14\" rx=\"2\" fill=\"{}\"/>",
                y + 18.0,
                colors.get(v).copied().unwrap_or("#2f6fdb")
            );
        }
        let longest = row.values.iter().copied().fold(0.0, f64::max) * scale;
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.0}\" font-size=\"12\">{}</text>",
            longest.max(1.0) + 6.0,
            y + 30.0,
            escape(&row.text)
        );
    }
    out.push_str("</svg>");
    out
}

/// A series of [`line_chart`].
pub struct Series<'a> {
    pub points: &'a [(f64, f64)],
    pub color: &'a str,
    /// Drawn as bars from the axis instead of a line.
    pub bars: bool,
}

/// Values over time: x in seconds from the start (the axis runs to `x_end`, or the last
/// point); `limit` draws a dashed horizontal line (the configured rate) with its label.
/// `x_text` writes an x tick.
pub fn line_chart(
    series: &[Series<'_>],
    x_end: Option<f64>,
    limit: Option<(f64, &str)>,
    x_text: impl Fn(f64) -> String,
    aria: &str,
) -> String {
    const W: f64 = 560.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 44.0;
    const BOTTOM: f64 = 26.0;
    const TOP: f64 = 10.0;
    let (plot_w, plot_h) = (W - LEFT - 8.0, H - BOTTOM - TOP);
    let all = series.iter().flat_map(|s| s.points.iter());
    let x_max = all
        .clone()
        .map(|p| p.0)
        .chain(x_end)
        .fold(0.0, f64::max)
        .max(1.0);
    let y_max = all
        .map(|p| p.1)
        .chain(limit.map(|l| l.0))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let x = |v: f64| LEFT + v / x_max * plot_w;
    let y = |v: f64| TOP + plot_h - v / y_max * plot_h;
    let mut out = format!(
        "<svg class=\"chart-line\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\" font-size=\"14\">",
        escape(aria)
    );
    // Grid and y ticks: 0, half, top.
    for f in [0.0, 0.5, 1.0] {
        let v = y_max / 1.1 * f;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#dde2ea\"/><text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            y(v),
            y(v),
            LEFT - 5.0,
            y(v) + 4.0,
            short_number(v)
        );
    }
    for f in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let v = x_max * f;
        let anchor = if f == 0.0 {
            "start"
        } else if f == 1.0 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.0}\" text-anchor=\"{anchor}\">{}</text>",
            x(v),
            H - 6.0,
            escape(&x_text(v))
        );
    }
    for s in series {
        if s.bars {
            let width = (plot_w / s.points.len().max(1) as f64 * 0.8).clamp(1.0, 12.0);
            for &(px, py) in s.points.iter().filter(|p| p.1 > 0.0) {
                let _ = write!(
                    out,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"{}\" opacity=\"0.75\"/>",
                    x(px),
                    y(py),
                    y(0.0) - y(py),
                    s.color
                );
            }
        } else if let [(px, py)] = s.points {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                x(*px),
                y(*py),
                s.color
            );
        } else {
            let points: Vec<String> = s
                .points
                .iter()
                .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
                .collect();
            let _ = write!(
                out,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"{}\"/>",
                s.color,
                points.join(" ")
            );
        }
    }
    if let Some((v, label)) = limit {
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1d2330\" stroke-dasharray=\"6 4\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            y(v),
            y(v),
            LEFT + plot_w,
            y(v) - 4.0,
            escape(label)
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#8a93a3\"/><line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#8a93a3\"/></svg>",
        y(0.0),
        LEFT + plot_w,
        y(0.0),
        y(0.0)
    );
    out
}

/// `950`, `1.2k`, `12k`, `3.4M`: an axis tick.
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_their_labels() {
        let bars = hbars(
            &[BarRow {
                label: "<step>".into(),
                values: vec![3.0, 1.0],
                text: "3 & 1".into(),
            }],
            &["#000", "#111"],
            "a \"chart\"",
        );
        assert!(bars.contains("&lt;step&gt;") && bars.contains("3 &amp; 1"));
        assert!(bars.contains("aria-label=\"a &quot;chart&quot;\""));
        let line = line_chart(
            &[Series {
                points: &[(0.0, 1.0), (10.0, 2.0)],
                color: "#000",
                bars: false,
            }],
            None,
            Some((5.0, "rate <5>")),
            |s| format!("{s}s"),
            "x",
        );
        assert!(line.contains("rate &lt;5&gt;"));
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(2.5), "2.5");
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(25000.0), "25k");
    }
}
