//! Guard rails before a run touches a tenant: the production guard (the person running it says
//! which tenant, by name), and `--dry-run` (every call rendered and written, none sent).

use crate::target::Where;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::ExitStatus;
use crate::plan::check::Plan;
use crate::plan::compiled::Compiled;
use crate::plan::refs;
use crate::source::{self, GroupOptions};

/// A production tenant's name (`acme` for `https://acme.mambu.com/api`), or None when the
/// target is the embedded sandbox, loopback, or a Mambu sandbox tenant (`*.sandbox.mambu.com`).
pub fn production_tenant(target: &Where) -> Option<String> {
    let Where::Url(target) = target else {
        return None;
    };
    let host = host(target)?;
    if is_loopback(&host) || host.ends_with(".sandbox.mambu.com") {
        return None;
    }
    Some(host.split('.').next().unwrap_or(&host).to_owned())
}

/// A base URL's host, lowercased (`acme.mambu.com`).
pub fn host(url: &str) -> Option<String> {
    Some(
        reqwest::Url::parse(url)
            .ok()?
            .host_str()?
            .to_ascii_lowercase(),
    )
}

/// Whether a host is this machine (`localhost`, 127.0.0.1, `[::1]`): a sandbox process.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Asks for the tenant's name before a production run: `confirmed` (`--confirm-production`)
/// must name it, or, on a terminal, the person types it. Returns whether to go on.
pub fn confirm_production(
    tenant: &str,
    target: &Where,
    plan: &Plan,
    units: u64,
    confirmed: Option<&str>,
) -> anyhow::Result<bool> {
    eprintln!(
        "PRODUCTION tenant `{tenant}` ({target}): plan `{}` ({}), {units} units, steps: {}.",
        plan.name,
        plan.file.display(),
        plan.action_steps()
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!("The cutover must run with nothing else writing to the tenant.");
    match confirmed {
        Some(name) if name == tenant => Ok(true),
        Some(name) => {
            eprintln!(
                "error: --confirm-production names `{name}`, but the target is tenant `{tenant}`."
            );
            Ok(false)
        }
        None if std::io::stdin().is_terminal() => {
            eprint!("Type the tenant's name (`{tenant}`) to go on: ");
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let ok = line.trim() == tenant;
            if !ok {
                eprintln!("error: that is not `{tenant}`; nothing was sent.");
            }
            Ok(ok)
        }
        None => {
            eprintln!(
                "error: this is a production tenant and there is no terminal to confirm on: pass --confirm-production {tenant}."
            );
            Ok(false)
        }
    }
}

/// `--dry-run`: renders every call of every unit (outputs of earlier steps and lookups as
/// placeholders) and writes them to `dry-run.jsonl` in the run directory. Sends nothing.
pub fn dry_run(plan: &Plan, run_dir: &Path, sample: Option<u64>) -> anyhow::Result<ExitStatus> {
    crate::files::create_private_dir(run_dir)?;
    let sources = plan.source_tree()?;
    let compiled = Compiled::new(plan);
    let outputs = compiled.placeholder_outputs();
    let references: Vec<_> = refs::lookup_references(plan).into_iter().collect();
    let tables = refs::lookup_tables(plan);
    let path = run_dir.join("dry-run.jsonl");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = std::io::BufWriter::new(
        options
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?,
    );
    crate::files::make_private(&path)?;
    let (mut calls, mut failures, mut units) = (0u64, 0u64, 0u64);
    let mut grouping = source::group(
        &sources,
        &GroupOptions {
            sample,
            ..GroupOptions::default()
        },
    );
    for unit in grouping.by_ref() {
        units += 1;
        for planned in compiled.expand(&unit) {
            let step = compiled.step(planned.step);
            let lookups = crate::plan::refs::placeholder_lookups(&references, &planned, &tables);
            let line = match compiled.when(&planned, &outputs, Some(&lookups)) {
                Ok(false) => continue,
                Err(e) => json!({ "unit": unit.key(), "step": step.id, "error": e.to_string() }),
                Ok(true) => match compiled.render(&unit, &planned, &outputs, Some(&lookups)) {
                    Ok(call) => {
                        calls += 1;
                        let body = if call.installments.is_empty() {
                            call.body
                        } else {
                            Some(Value::Array(call.installments))
                        };
                        json!({ "unit": unit.key(), "step": step.id, "method": if step.action == crate::plan::action::Action::EditSchedule { "PUT" } else { call.method }, "path": call.path, "body": body })
                    }
                    Err(e) => {
                        json!({ "unit": unit.key(), "step": step.id, "error": e.to_string() })
                    }
                },
            };
            if line.get("error").is_some() {
                failures += 1;
            }
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    let report = grouping.finish();
    eprintln!(
        "dry run: {units} units, {calls} calls rendered, {failures} could not be rendered, nothing sent; every call is in {}",
        path.display()
    );
    if !report.problems.is_empty() {
        eprintln!(
            "warning: {} data problems left rows out: `mambu-migrate plan validate` lists them",
            report.problems.len()
        );
    }
    Ok(if failures > 0 {
        ExitStatus::SomeFailed
    } else {
        ExitStatus::Success
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_is_anything_but_sandboxes_and_loopback() {
        assert_eq!(
            production_tenant(&Where::parse("https://acme.mambu.com/api")).as_deref(),
            Some("acme")
        );
        assert_eq!(
            production_tenant(&Where::parse("https://acme.sandbox.mambu.com/api")),
            None
        );
        assert_eq!(production_tenant(&Where::Embedded), None);
        assert_eq!(
            production_tenant(&Where::parse("http://127.0.0.1:8080/api")),
            None
        );
        assert_eq!(
            production_tenant(&Where::parse("http://localhost:8080/api")),
            None
        );
        assert_eq!(
            production_tenant(&Where::parse("http://[::1]:8080/api")),
            None
        );
    }
}
