//! What a sample run measured, read from its checkpoint: latency per endpoint, retry and throttle
//! rates, and how many units it had.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::checkpoint::Reader;
use crate::mambu::CallOutcome;

/// Measured in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    pub run_dir: String,
    /// Units the sample had (meta `units_total`, else the units table).
    pub units: u64,
    /// Units recorded as done or failed.
    pub units_finished: u64,
    /// Every call attempt recorded.
    pub attempts: u64,
    /// Mean latency of ok calls, ms, by `METHOD endpoint`.
    pub latency_ms: BTreeMap<String, f64>,
    /// Mean latency of every ok call, ms.
    pub mean_latency_ms: Option<f64>,
    /// Retried attempts per call that succeeded at last.
    pub retry_rate: f64,
    /// Throttled (429) attempts per call.
    pub throttle_rate: f64,
    /// The run's own duration (started_at to finished_at), seconds, if recorded.
    pub duration_seconds: Option<f64>,
    pub rate: Option<f64>,
    pub concurrency: Option<u32>,
}

impl Measured {
    /// Extra attempts per call.
    pub fn extra_per_call(&self) -> f64 {
        self.retry_rate + self.throttle_rate
    }
}

pub fn read(run_dir: &Path) -> anyhow::Result<Measured> {
    let db = run_dir.join("checkpoint.db");
    anyhow::ensure!(
        db.exists(),
        "--from-run {}: no checkpoint.db there (give the run directory of a sample run)",
        run_dir.display()
    );
    let reader = Reader::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let meta = reader.meta_all().context("reading the checkpoint's meta")?;
    let calls = reader.calls().context("reading the checkpoint's calls")?;
    let unit_counts = reader
        .unit_counts()
        .context("reading the checkpoint's units")?;
    let mut sums: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let (mut ok_sum, mut ok_n) = (0.0, 0u64);
    let (mut retried, mut throttled) = (0u64, 0u64);
    for call in &calls {
        match call.outcome {
            CallOutcome::Retried => retried += 1,
            CallOutcome::Throttled => throttled += 1,
            CallOutcome::Ok => {
                let entry = sums
                    .entry(format!("{} {}", call.method, call.endpoint))
                    .or_default();
                entry.0 += call.latency_ms;
                entry.1 += 1;
                ok_sum += call.latency_ms;
                ok_n += 1;
            }
            CallOutcome::Adopted | CallOutcome::Failed => {}
        }
    }
    let logical = (calls.len() as u64)
        .saturating_sub(retried + throttled)
        .max(1) as f64;
    let finished: i64 = unit_counts
        .iter()
        .filter(|(s, _)| s.as_str() != "running")
        .map(|(_, n)| *n)
        .sum();
    let units = meta
        .get("units_total")
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| unit_counts.values().sum::<i64>().max(0) as u64);
    let at = |key: &str| meta.get(key).and_then(|v| v.parse::<f64>().ok());
    // The events' times are precise (the meta's are whole seconds): first start to last end.
    let events = reader.events().unwrap_or_default();
    let first = events
        .iter()
        .find(|(_, kind, _)| kind == "started")
        .map(|(t, _, _)| *t);
    let last = events
        .iter()
        .rev()
        .find(|(_, kind, _)| kind == "finished" || kind == "stopped")
        .map(|(t, _, _)| *t);
    Ok(Measured {
        run_dir: run_dir.display().to_string(),
        units,
        units_finished: finished.max(0) as u64,
        attempts: calls.len() as u64,
        latency_ms: sums
            .into_iter()
            .map(|(k, (sum, n))| (k, sum / n as f64))
            .collect(),
        mean_latency_ms: (ok_n > 0).then(|| ok_sum / ok_n as f64),
        retry_rate: retried as f64 / logical,
        throttle_rate: throttled as f64 / logical,
        duration_seconds: match (first, last, at("started_at"), at("finished_at")) {
            (Some(s), Some(f), _, _) | (_, _, Some(s), Some(f)) if f >= s => Some(f - s),
            _ => None,
        },
        rate: at("rate"),
        concurrency: meta.get("concurrency").and_then(|c| c.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CallRecord, Checkpoint, Record};

    #[test]
    fn reads_latency_retries_and_units() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = Checkpoint::open(&dir.path().join("checkpoint.db")).unwrap();
        checkpoint.record(Record::Meta {
            key: "units_total".into(),
            value: "4".into(),
        });
        let call = |endpoint: &str, outcome: CallOutcome, latency_ms: f64| {
            Record::Call(Box::new(CallRecord {
                unit: "CL-1".into(),
                step_id: "s".into(),
                method: "POST",
                endpoint: endpoint.into(),
                status: Some(200),
                outcome,
                latency_ms,
            }))
        };
        checkpoint.record(call("/clients", CallOutcome::Ok, 10.0));
        checkpoint.record(call("/clients", CallOutcome::Ok, 30.0));
        checkpoint.record(call("/loans", CallOutcome::Throttled, 1.0));
        checkpoint.record(call("/loans", CallOutcome::Ok, 50.0));
        checkpoint.record(call("/loans", CallOutcome::Retried, 1.0));
        checkpoint.record(call("/loans", CallOutcome::Ok, 50.0));
        checkpoint.close().unwrap();
        let m = read(dir.path()).unwrap();
        assert_eq!(m.units, 4);
        assert_eq!(m.attempts, 6);
        assert_eq!(m.latency_ms["POST /clients"], 20.0);
        assert_eq!(m.latency_ms["POST /loans"], 50.0);
        assert_eq!(m.mean_latency_ms, Some(35.0));
        assert_eq!(m.retry_rate, 0.25);
        assert_eq!(m.throttle_rate, 0.25);
        assert!(read(&dir.path().join("nowhere")).is_err());
    }
}
