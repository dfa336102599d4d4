//! [`Board`]: what the cutover dashboard and report.html show. report.json's figures
//! ([`Summary`], read by the same code) and what only a live page needs: the ETA against the
//! deadline, the calls/s of the last minute, an outage going on, whether the run's process
//! lives, each failure reason with its units, the records created, and verify's control totals
//! when `verify` has written them.
//!
//! Like the reports, it holds keys, step ids, Mambu's reasons and counts: never a cell value,
//! never a message (Mambu's messages may quote client data; errors.csv has them).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::stats;
use super::status::{self, Eta};
use super::summary::{self, Summary};
use crate::checkpoint::{AttemptState, Reader, StepStatus};

/// The unit keys shown per failure reason (the count says how many more there are).
pub const KEYS_PER_REASON: usize = 50;

/// Everything the dashboard shows at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Board {
    /// report.json's figures, as of the same moment.
    pub summary: Summary,
    pub live: Live,
}

/// The figures of a run in progress (and what report.json does not hold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Live {
    /// When these figures were read (UTC, RFC 3339).
    pub as_of: String,
    /// Whether a process is running the run (it holds run.lock); `None` when that cannot be
    /// told.
    pub process_alive: Option<bool>,
    /// The command that resumes a run recorded as running that no process runs (killed, or
    /// the machine restarted).
    pub process_gone_resume: Option<String>,
    /// Calls per second over the last minute.
    pub recent_calls_per_second: Option<f64>,
    /// While running: when every unit will have run, at this session's pace.
    pub eta: Option<EtaFigures>,
    /// `--deadline` (UTC, RFC 3339): no unit starts after it.
    pub deadline: Option<String>,
    /// The window: from this session's start to the deadline, and where the run stands in it.
    pub window: Option<Window>,
    /// Calls are waiting for Mambu to answer (it is out of reach).
    pub outage: Option<Outage>,
    /// Every failure reason, most units first, with the units.
    pub failures: Vec<ReasonUnits>,
    /// Records the run created or adopted, by kind (clients, groups, loans, deposits).
    pub created: Vec<Created>,
    /// verify.json's control totals, when `verify` has run on this directory.
    pub verify: Option<Verified>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtaFigures {
    pub text: String,
    pub seconds: Option<f64>,
    /// When the last unit should finish (UTC, RFC 3339).
    pub finish_at: Option<String>,
    pub units_per_second: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start: String,
    pub end: String,
    pub seconds: f64,
    pub elapsed_seconds: f64,
    /// Seconds from the window's start to the ETA (to the end, once the run has ended).
    pub finish_seconds: Option<f64>,
    /// The ETA (the end) falls inside the window.
    pub fits: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    pub since: String,
    pub seconds: f64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonUnits {
    pub reason: String,
    pub units: i64,
    /// The steps they failed at.
    pub steps: Vec<String>,
    /// The first [`KEYS_PER_REASON`] units' keys, in run order.
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub kind: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    /// When verify.json was written (UTC, RFC 3339).
    pub at: Option<String>,
    pub units_verified: Option<i64>,
    pub mismatches: usize,
    pub totals: Vec<VerifiedTotal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedTotal {
    pub name: String,
    pub expected: String,
    pub found: String,
    pub difference: String,
}

/// The create actions counted in [`Live::created`], and what they create.
const CREATES: &[(&str, &str)] = &[
    ("create_client", "clients"),
    ("create_group", "groups"),
    ("create_loan", "loans"),
    ("create_deposit", "deposits"),
];

impl Board {
    /// Reads the board of the run in `run_dir` as of `now` (unix seconds).
    pub fn read(reader: &Reader, run_dir: &Path, now: f64) -> rusqlite::Result<Board> {
        let summary = Summary::read(reader, run_dir, now)?;
        let meta = reader.meta_all()?;
        let events = reader.events()?;
        let (state, _) = summary::state(reader.run_state()?, &meta, &events);
        let times = summary::times(reader, &meta, &events, state, now)?;
        let running = state == AttemptState::Running;

        let eta = if running {
            let eta = status::eta(reader, &events, &summary.units, times.started, now)?;
            let (seconds, units_per_second) = match eta {
                Eta::In {
                    seconds,
                    units_per_second,
                } => (Some(seconds), Some(units_per_second)),
                Eta::Now => (Some(0.0), None),
                _ => (None, None),
            };
            Some(EtaFigures {
                text: eta.text(),
                seconds: seconds.map(|s| stats::round(s, 0)),
                finish_at: seconds.map(|s| stats::rfc3339(now + s)),
                units_per_second: units_per_second.map(|r| stats::round(r, 3)),
            })
        } else {
            None
        };
        let deadline = summary::number::<f64>(&meta, "deadline");
        let window = deadline
            .zip(status::session_start(&events).or(times.started))
            .map(|(end, start)| {
                let seconds = (end - start).max(0.0);
                // Running: when the ETA says it ends; ended: when it ended.
                let finish = if running {
                    eta.as_ref()
                        .and_then(|e| e.seconds)
                        .map(|s| now + s - start)
                } else {
                    times.end.map(|end| end - start)
                };
                Window {
                    start: stats::rfc3339(start),
                    end: stats::rfc3339(end),
                    seconds,
                    elapsed_seconds: stats::round(
                        (times.end.unwrap_or(now) - start).clamp(0.0, seconds.max(0.0)),
                        0,
                    ),
                    finish_seconds: finish.map(|f| stats::round(f, 0)),
                    fits: finish.map(|f| f <= seconds),
                }
            });
        let outage = if running {
            status::outage(&events).map(|(since, reason)| Outage {
                since: stats::rfc3339(since),
                seconds: stats::round((now - since).max(0.0), 0),
                reason: reason.to_owned(),
            })
        } else {
            None
        };

        let process_alive = status::run_process_alive(run_dir);
        let mut failures: Vec<ReasonUnits> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for unit in reader.failed_units()? {
            let reason = summary::reason_of(&unit.error);
            let i = *index.entry(reason.clone()).or_insert_with(|| {
                failures.push(ReasonUnits {
                    reason,
                    units: 0,
                    steps: Vec::new(),
                    keys: Vec::new(),
                });
                failures.len() - 1
            });
            let f = &mut failures[i];
            f.units += 1;
            if !f.steps.contains(&unit.error.step) {
                f.steps.push(unit.error.step.clone());
            }
            if f.keys.len() < KEYS_PER_REASON {
                f.keys.push(unit.key);
            }
        }
        failures.sort_by(|a, b| b.units.cmp(&a.units).then_with(|| a.reason.cmp(&b.reason)));

        let mut created: Vec<Created> = Vec::new();
        for (_, action, status, n) in reader.step_counts()? {
            let Some((_, kind)) = CREATES.iter().find(|(a, _)| *a == action) else {
                continue;
            };
            if !matches!(status, StepStatus::Done | StepStatus::Adopted) {
                continue;
            }
            match created.iter_mut().find(|c| c.kind == *kind) {
                Some(c) => c.count += n,
                None => created.push(Created {
                    kind: (*kind).to_owned(),
                    count: n,
                }),
            }
        }
        created.sort_by_key(|c| CREATES.iter().position(|(_, k)| *k == c.kind));

        Ok(Board {
            live: Live {
                as_of: stats::rfc3339(now),
                process_alive,
                process_gone_resume: (running && process_alive == Some(false))
                    .then(|| summary::resume_command(&meta, run_dir)),
                recent_calls_per_second: status::recent_rate(reader, times.started, running, now)?
                    .map(|r| stats::round(r, 2)),
                eta,
                deadline: deadline.map(stats::rfc3339),
                window,
                outage,
                failures,
                created,
                verify: verified(run_dir),
            },
            summary,
        })
    }
}

/// verify.json's control totals, if `verify` wrote it in `run_dir` (a file that does not read
/// as one is left out).
fn verified(run_dir: &Path) -> Option<Verified> {
    let path = run_dir.join("verify.json");
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let totals = serde_json::from_value(json.get("totals")?.clone()).ok()?;
    let at = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| stats::rfc3339(d.as_secs_f64()));
    Some(Verified {
        at,
        units_verified: json.get("units_verified").and_then(|v| v.as_i64()),
        mismatches: json
            .get("mismatches")
            .and_then(|m| m.as_array())
            .map_or(0, Vec::len),
        totals,
    })
}
