//! `mambu-migrate status`: where a run stands, from its checkpoint, in a few terminal lines.
//! Reads only counts (no latency sort), so it stays quick on a run of millions of calls.

use std::fmt::Write;
use std::path::Path;

use super::render::{percent, thousands};
use super::stats;
use super::summary;
use crate::checkpoint::SESSION_EVENTS;
use crate::checkpoint::{AttemptState, Reader};

/// The window of "calls/s over the last minute".
const WINDOW_SECONDS: f64 = 60.0;
/// A running run with nothing recorded for this long may be gone (killed, crashed).
const STALE_SECONDS: f64 = 120.0;

/// The status text of the run in `run_dir`, as of `now` (unix seconds).
pub fn render(reader: &Reader, run_dir: &Path, now: f64) -> rusqlite::Result<String> {
    let meta = reader.meta_all()?;
    let events = reader.events()?;
    let (state, reason) = summary::state(reader.run_state()?, &meta, &events);
    let times = summary::times(reader, &meta, &events, state, now)?;
    let units = summary::unit_totals(reader, &meta)?;
    let calls = summary::call_outcomes(&reader.call_counts()?);
    let running = state == AttemptState::Running;
    let mut out = String::new();

    let name = meta
        .get("plan_name")
        .map_or("(unnamed plan)", String::as_str);
    let target = meta
        .get("target")
        .map(|t| format!(" against {t}"))
        .unwrap_or_default();
    let why = match (&reason, state) {
        (Some(reason), _) => format!(" ({reason})"),
        (None, AttemptState::Finished) if units.failed > 0 => {
            format!(" ({} failed)", plural(units.failed, "unit"))
        }
        _ => String::new(),
    };
    let _ = writeln!(out, "Run {name}{target}: {}{why}", state.as_str());

    let elapsed = times.started.zip(times.end).map(|(s, e)| (e - s).max(0.0));
    if let Some(started) = times.started {
        let took = match (elapsed, state) {
            (Some(d), AttemptState::Running) => format!(" · running for {}", stats::duration(d)),
            (Some(d), AttemptState::Finished) => format!(" · took {}", stats::duration(d)),
            (Some(d), AttemptState::Stopped) => format!(" · stopped after {}", stats::duration(d)),
            (None, _) => String::new(),
        };
        let _ = writeln!(out, "  started    {}{took}", stats::date(started));
    }

    let mut line = format!(
        "  units      {} done · {} failed",
        thousands(units.done),
        thousands(units.failed)
    );
    if running || units.running > 0 {
        let in_flight = if running { "running" } else { "unfinished" };
        let _ = write!(line, " · {} {in_flight}", thousands(units.running));
    }
    if let Some(n) = units.not_started {
        let _ = write!(line, " · {} not started", thousands(n));
    }
    match units.total {
        Some(total) => {
            let _ = write!(
                line,
                " · of {} ({} finished)",
                thousands(total),
                percent(stats::ratio(units.done + units.failed, total))
            );
        }
        None => line.push_str(" · total not known yet"),
    }
    let _ = writeln!(out, "{line}");

    let mut line = format!("  calls      {}", thousands(calls.total));
    if let Some(rate) = recent_rate(reader, times.started, running, now)? {
        let _ = write!(line, " · {} over the last minute", stats::per_second(rate));
    }
    if let Some(d) = elapsed.filter(|d| *d > 0.0) {
        let _ = write!(
            line,
            " · {} overall",
            stats::per_second(calls.total as f64 / d)
        );
    }
    let _ = writeln!(out, "{line}");
    let _ = writeln!(
        out,
        "  throttled  {} (429, {} of calls) · retried {} ({})",
        thousands(calls.throttled),
        percent(stats::ratio(calls.throttled, calls.total)),
        thousands(calls.retried),
        percent(stats::ratio(calls.retried, calls.total))
    );

    for p in summary::phases(reader)? {
        let found = match &p.compared {
            Some(c) => format!(
                ": {} new units, {} changed ({} rows added), {} unchanged without a call; drift {} ({} applied, {} not sent, {} left: drift.csv)",
                thousands(c.units_new as i64),
                thousands(c.units_changed as i64),
                thousands(c.rows_added as i64),
                thousands(c.units_unchanged as i64),
                thousands(c.drift as i64),
                thousands(c.drift_applied as i64),
                thousands(c.drift_not_sent as i64),
                thousands(c.drift_left as i64)
            ),
            None if p.kind == "catch-up" => ": comparing the extracts".to_owned(),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  phase {}    {} · {} calls{found}",
            p.phase,
            p.kind,
            thousands(p.calls)
        );
    }

    let resume = summary::resume_command(&meta, run_dir);
    if running {
        let eta = eta(reader, &events, &units, times.started, now)?;
        let _ = writeln!(out, "  ETA        {}", eta.text());
        if let Some((since, reason)) = outage(&events) {
            let _ = writeln!(
                out,
                "  outage     calls waiting for Mambu since {} (for {}): {reason}",
                stats::date(since),
                stats::duration((now - since).max(0.0))
            );
        }
        if run_process_alive(run_dir) == Some(false) {
            let _ = writeln!(
                out,
                "  note       no process is running it (killed, or the machine restarted): resume it:"
            );
            let _ = writeln!(out, "             {resume}");
        } else if let Some(last) = reader
            .last_activity()?
            .filter(|last| now - last > STALE_SECONDS)
        {
            let _ = writeln!(
                out,
                "  note       nothing recorded for {}: if the run's process is gone, resume it:",
                stats::duration(now - last)
            );
            let _ = writeln!(out, "             {resume}");
        }
    } else if state == AttemptState::Stopped {
        let _ = writeln!(out, "  resume     {resume}");
    }
    let rollbacks = reader.rollbacks()?;
    if !rollbacks.is_empty() {
        let _ = writeln!(
            out,
            "  rollbacks  {} rolled back · {} partly undone · {} undo calls done, {} refused",
            plural(rollbacks.rolled_back.len() as i64, "unit"),
            thousands(rollbacks.partly.len() as i64),
            thousands(rollbacks.calls_done),
            thousands(rollbacks.calls_refused)
        );
        for p in rollbacks.partly.iter().take(5) {
            let why = match (&p.refused, &p.reason) {
                (Some(call), Some(reason)) => format!("{call} refused: {reason}"),
                _ => "stopped before its end".to_owned(),
            };
            let _ = writeln!(out, "             {}: {why}", p.unit);
        }
        if rollbacks.partly.len() > 5 {
            let _ = writeln!(
                out,
                "             …and {} more (report.md)",
                rollbacks.partly.len() - 5
            );
        }
    }
    if !running {
        let report = run_dir.join("report.md");
        if report.exists() {
            let _ = writeln!(out, "  report     {}", report.display());
        }
        let errors = run_dir.join("errors.csv");
        if units.failed > 0 && errors.exists() {
            let _ = writeln!(out, "  failures   {}", errors.display());
        }
        if units.failed > 0
            && let Some((n, reload)) = summary::reload_of_failed(reader, &meta, run_dir)?
        {
            let _ = writeln!(
                out,
                "  fix        the rows in {} (with errors.csv), then reload them:\n             {reload}",
                run_dir.join(format!("failed/{n}")).display(),
            );
        }
    }
    Ok(out)
}

/// Calls per second over the last minute (of the run so far, when shorter) up to `now`, or up
/// to the last call of a run that is not running; `None` before the first call.
pub(crate) fn recent_rate(
    reader: &Reader,
    started: Option<f64>,
    running: bool,
    now: f64,
) -> rusqlite::Result<Option<f64>> {
    let Some((_, last)) = reader.call_span()? else {
        return Ok(None);
    };
    let end = if running { now } else { last };
    let window = started.map_or(WINDOW_SECONDS, |s| (end - s).clamp(1.0, WINDOW_SECONDS));
    let recent = reader.calls_between(end - window, end)?;
    Ok(Some(recent as f64 / window))
}

/// Whether a process holds the run directory's `run.lock` (every run does while it lives);
/// `None` when that cannot be told (no lock file: a run from before it).
pub(crate) fn run_process_alive(run_dir: &Path) -> Option<bool> {
    let file = std::fs::File::open(run_dir.join("run.lock")).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Some(false)
        }
        Err(std::fs::TryLockError::WouldBlock) => Some(true),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// The outage going on (its start and first reason): an `outage` event with no `outage over`
/// or new session after it.
pub(crate) fn outage(events: &[(f64, String, String)]) -> Option<(f64, &str)> {
    let last = events.iter().rev().find(|(_, kind, _)| {
        matches!(kind.as_str(), "outage" | "outage over") || SESSION_EVENTS.contains(&kind.as_str())
    })?;
    (last.1 == "outage").then_some((last.0, last.2.as_str()))
}

/// When a running run will have run every unit, at the rate measured in its current session
/// (since it started, resumed or reloaded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Eta {
    /// The total of units is not known yet.
    NoTotal,
    /// No session has begun.
    NoSession,
    /// Every unit has run.
    Now,
    /// No unit has finished in this session.
    NoRate,
    /// `seconds` from now, at `units_per_second`.
    In { seconds: f64, units_per_second: f64 },
}

impl Eta {
    pub(crate) fn text(self) -> String {
        match self {
            Eta::NoTotal => "not known (the total of units is not known yet)".to_owned(),
            Eta::NoSession => "not known yet".to_owned(),
            Eta::Now => "any moment (every unit has run)".to_owned(),
            Eta::NoRate => "not known yet (no unit has finished)".to_owned(),
            Eta::In {
                seconds,
                units_per_second,
            } => format!(
                "{} at {units_per_second:.2} units/s",
                stats::duration(seconds)
            ),
        }
    }
}

/// The [`Eta`] of the run as of `now`.
pub(crate) fn eta(
    reader: &Reader,
    events: &[(f64, String, String)],
    units: &summary::UnitTotals,
    started: Option<f64>,
    now: f64,
) -> rusqlite::Result<Eta> {
    let session = session_start(events).or(started);
    Ok(match (units.total, session) {
        (Some(total), Some(since)) => eta_at(
            (total - units.done - units.failed).max(0),
            reader.units_finished_since(since)?,
            now - since,
        ),
        (None, _) => Eta::NoTotal,
        (Some(_), None) => Eta::NoSession,
    })
}

/// When the current session (started, resumed or reloaded) began.
pub(crate) fn session_start(events: &[(f64, String, String)]) -> Option<f64> {
    events
        .iter()
        .rev()
        .find(|(_, kind, _)| SESSION_EVENTS.contains(&kind.as_str()))
        .map(|e| e.0)
}

/// The ETA of `remaining` units at the rate measured in this session: `finished` units in
/// `elapsed` seconds.
fn eta_at(remaining: i64, finished: i64, elapsed: f64) -> Eta {
    let rate = finished as f64 / elapsed.max(1.0);
    if remaining == 0 {
        Eta::Now
    } else if finished == 0 {
        Eta::NoRate
    } else {
        Eta::In {
            seconds: remaining as f64 / rate,
            units_per_second: rate,
        }
    }
}

fn plural(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", thousands(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, Record};

    #[test]
    fn an_outage_is_going_on_until_it_is_over_or_a_new_session_begins() {
        let e = |at: f64, kind: &str, detail: &str| (at, kind.to_owned(), detail.to_owned());
        let started = e(1.0, "started", "rate 10/s");
        let out = e(
            5.0,
            "outage",
            "Mambu unreachable (4 attempts over 1 s: refused)",
        );
        assert_eq!(outage(std::slice::from_ref(&started)), None);
        assert_eq!(
            outage(&[started.clone(), out.clone()]),
            Some((5.0, "Mambu unreachable (4 attempts over 1 s: refused)"))
        );
        assert_eq!(
            outage(&[started.clone(), out.clone(), e(9.0, "outage over", "")]),
            None
        );
        // Other events do not end it; a resumed session does.
        assert!(outage(&[started.clone(), out.clone(), e(6.0, "note", "")]).is_some());
        assert_eq!(outage(&[started, out, e(20.0, "resumed", "")]), None);
    }

    #[test]
    fn eta_from_the_measured_rate() {
        let eta = |r, f, e| eta_at(r, f, e).text();
        assert_eq!(eta(100, 50, 100.0), "3m 20s at 0.50 units/s");
        assert_eq!(eta(0, 50, 100.0), "any moment (every unit has run)");
        assert_eq!(eta(10, 0, 100.0), "not known yet (no unit has finished)");
        assert_eq!(
            eta(3, 3, 0.2),
            "1s at 3.00 units/s",
            "the first second counts as one"
        );
    }

    #[test]
    fn a_silent_running_run_may_be_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        let cp = Checkpoint::open(&path).unwrap();
        let meta = |key: &str, value: &str| Record::Meta {
            key: key.into(),
            value: value.into(),
        };
        for (k, v) in [
            ("plan_name", "p"),
            ("plan_file", "plans/my plan.yaml"),
            ("state", "running"),
            ("started_at", "1000"),
        ] {
            cp.record(meta(k, v));
        }
        cp.record(Record::Event {
            kind: "started".into(),
            detail: String::new(),
        });
        cp.close().unwrap();
        let reader = Reader::open(&path).unwrap();
        let last = reader.last_activity().unwrap().unwrap();
        let text = render(&reader, Path::new("runs/p"), last + 30.0).unwrap();
        assert!(!text.contains("note"), "{text}");
        assert!(
            text.contains("units      0 done · 0 failed · 0 running · total not known yet"),
            "{text}"
        );
        assert!(
            text.contains("ETA        not known (the total of units is not known yet)"),
            "{text}"
        );
        let text = render(&reader, Path::new("runs/p"), last + 600.0).unwrap();
        assert!(text.contains("  note       nothing recorded for 10m 00s: if the run's process is gone, resume it:\n             mambu-migrate run 'plans/my plan.yaml' --run-dir runs/p --resume\n"), "{text}");
    }
}
