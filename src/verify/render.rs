//! The evidence pack: verify.md, verify.json and verify.html from a [`Report`], and
//! manifest.sha256 with the hash of every file the verification covers; and report.html
//! written again, to show the control totals beside the run's figures.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::Report;
use crate::report::html;
use crate::report::render::{Align, Table, escape};

use Align::{Left, Right};

/// manifest.sha256 (the plan, every source, the checkpoint, the run's reports, then the
/// verification's own files) and verify.md, verify.json, verify.html.
pub(super) fn write_pack(
    run_dir: &Path,
    plan: &Path,
    sources: &[PathBuf],
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut inputs: Vec<PathBuf> = vec![plan.to_owned()];
    inputs.extend(sources.iter().cloned());
    for name in ["checkpoint.db", "report.md", "report.json", "errors.csv"] {
        inputs.push(run_dir.join(name));
    }
    for file in inputs.iter().filter(|f| f.exists()) {
        report
            .manifest
            .push((file.display().to_string(), crate::files::sha256_file(file)?));
    }
    crate::files::write_private(&run_dir.join("verify.md"), render_md(report).as_bytes())?;
    crate::files::write_private(
        &run_dir.join("verify.json"),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    crate::files::write_private(&run_dir.join("verify.html"), render_html(report).as_bytes())?;
    // The run's page, frozen, shows verify's totals beside its own figures.
    crate::report::write_page(run_dir)?;
    let mut manifest = String::new();
    for (file, hash) in &report.manifest {
        let _ = writeln!(manifest, "{hash}  {file}");
    }
    for name in ["verify.md", "verify.json", "verify.html"] {
        let path = run_dir.join(name);
        let _ = writeln!(
            manifest,
            "{}  {}",
            crate::files::sha256_file(&path)?,
            path.display()
        );
    }
    crate::files::write_private(&run_dir.join("manifest.sha256"), manifest.as_bytes())
}

/// The verdict in a line.
fn verdict(report: &Report) -> String {
    if report.mismatches.is_empty() {
        "Everything matches.".to_owned()
    } else {
        format!("{} mismatches.", report.mismatches.len())
    }
}

/// The Markdown evidence.
pub fn render_md(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Verification of {}\n", report.run_dir);
    let _ = writeln!(out, "Plan `{}`, target `{}`.", report.plan, report.target);
    let _ = writeln!(
        out,
        "{} units migrated; {} verified{}; {} read calls.\n",
        report.units_migrated,
        report.units_verified,
        report
            .sample_seed
            .map(|s| format!(" (a random sample, seed {s})"))
            .unwrap_or_default(),
        report.calls
    );
    if let Some(phase) = &report.extract_phase {
        let _ = writeln!(
            out,
            "Compared with the extract of {phase}, the run's newest: what a catch-up left for a person (drift.csv) shows here as mismatches.\n"
        );
    }
    let _ = writeln!(out, "**{}**\n", verdict(report));
    let _ = writeln!(out, "## Control totals\n");
    let mut table = Table::new(
        &mut out,
        &[
            ("total", Left),
            ("expected (source)", Right),
            ("found (Mambu)", Right),
            ("difference", Right),
        ],
    );
    for t in &report.totals {
        table.row(&[&t.name, &t.expected, &t.found, &t.difference]);
    }
    let _ = writeln!(out, "\n## Mismatches\n");
    if report.mismatches.is_empty() {
        let _ = writeln!(out, "None.");
    } else {
        let mut table = Table::new(
            &mut out,
            &[
                ("unit", Left),
                ("entity", Left),
                ("field", Left),
                ("expected", Left),
                ("found", Left),
            ],
        );
        for m in &report.mismatches {
            table.row(&[&m.unit, &m.entity, &m.field, &m.expected, &m.found]);
        }
    }
    let _ = writeln!(
        out,
        "\n## Evidence\n\nSHA-256 of every file this verification covers (also in manifest.sha256):\n"
    );
    for (file, hash) in &report.manifest {
        let _ = writeln!(out, "- `{hash}` {file}");
    }
    out
}

/// The HTML evidence: one self-contained page.
fn render_html(report: &Report) -> String {
    let rows = |cells: &[&str]| {
        cells
            .iter()
            .map(|c| format!("<td>{}</td>", escape(c)))
            .collect::<String>()
    };
    let totals = html::totals_table(
        report
            .totals
            .iter()
            .map(|t| [t.name.as_str(), &t.expected, &t.found, &t.difference]),
    );
    let mismatches: String = report
        .mismatches
        .iter()
        .map(|m| {
            format!(
                "<tr>{}</tr>",
                rows(&[&m.unit, &m.entity, &m.field, &m.expected, &m.found])
            )
        })
        .collect();
    let ok = report.mismatches.is_empty();
    let body = format!(
        "<section><p>{} units migrated, {} verified{}; {} read calls.</p><div class=\"banner {}\"><strong>{}</strong></div></section>\n\
<section><h2>Control totals</h2>{totals}</section>\n\
<section><h2>Mismatches</h2><div class=\"scroll\"><table><tr><th>unit</th><th>entity</th><th>field</th><th>expected</th><th>found</th></tr>{mismatches}</table></div></section>\n",
        report.units_migrated,
        report.units_verified,
        report
            .sample_seed
            .map(|s| format!(" (a random sample, seed {s})"))
            .unwrap_or_default(),
        report.calls,
        if ok { "ok" } else { "bad" },
        verdict(report)
    );
    let title = format!("Verification of {}", report.run_dir);
    let header = html::header(
        &escape(&title),
        &format!(
            "plan {} · target {}",
            escape(&report.plan),
            escape(&report.target)
        ),
        "expected (source) beside found (Mambu)",
    );
    html::page(&title, &format!("{header}<main>\n{body}</main>"), "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Mismatch, Total};

    fn report() -> Report {
        Report {
            run_dir: "runs/<acme>".into(),
            plan: "plans/acme.yaml".into(),
            target: "https://acme.sandbox.mambu.com".into(),
            units_migrated: 2,
            units_verified: 2,
            sample_seed: None,
            totals: vec![Total {
                name: "loans of product A|B".into(),
                expected: "2".into(),
                found: "1".into(),
                difference: "-1".into(),
            }],
            mismatches: vec![Mismatch {
                unit: "C1".into(),
                entity: "loan L|1".into(),
                field: "accountState".into(),
                expected: "ACTIVE".into(),
                found: "a \"quoted\"\nstate".into(),
            }],
            manifest: Vec::new(),
            calls: 7,
            extract_phase: None,
        }
    }

    #[test]
    fn a_pipe_in_a_value_stays_in_its_cell() {
        let md = render_md(&report());
        assert!(
            md.contains("| loans of product A\\|B | 2 | 1 | -1 |\n"),
            "{md}"
        );
        assert!(
            md.contains("| C1 | loan L\\|1 | accountState | ACTIVE | a \"quoted\" state |\n"),
            "{md}"
        );
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let html = render_html(&report());
        assert!(html.contains("<h1>Verification of runs/&lt;acme&gt;</h1>"));
        assert!(html.contains("<style>") && !html.contains("<script"));
        assert!(
            html.contains("<td>a &quot;quoted&quot;\nstate</td>"),
            "{html}"
        );
        assert!(html.contains("<div class=\"banner bad\"><strong>1 mismatches.</strong></div>"));
    }
}
