//! Progress: an indicatif bar on a terminal; otherwise (or with `--no-progress`) one line every
//! 10 seconds on stderr and in run.log. The executor only bumps counters; this reads them.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::Shared;

pub struct Progress {
    pub units_total: u64,
    pub units_done: AtomicU64,
    pub units_failed: AtomicU64,
    pub units_skipped: AtomicU64,
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
    pub retried: AtomicU64,
    /// Calls waiting out an outage (no answer, or only 502/503/504/429, through every attempt).
    pub waiting: AtomicU64,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(units_total: u64, wanted: bool) -> Self {
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(units_total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} units {msg} (ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            units_total,
            units_done: AtomicU64::new(0),
            units_failed: AtomicU64::new(0),
            units_skipped: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            started: Instant::now(),
            bar,
        }
    }

    /// Counts one attempt of a call: a call, and a retry or a throttle when it was one.
    pub fn count_call(&self, outcome: crate::mambu::CallOutcome) {
        use crate::mambu::CallOutcome;
        self.calls.fetch_add(1, Ordering::Relaxed);
        match outcome {
            CallOutcome::Throttled => self.throttled.fetch_add(1, Ordering::Relaxed),
            CallOutcome::Retried => self.retried.fetch_add(1, Ordering::Relaxed),
            CallOutcome::Ok | CallOutcome::Adopted | CallOutcome::Failed => 0,
        };
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let calls = self.calls.load(Ordering::Relaxed);
        let mut line = format!(
            "{} failed, {} calls ({:.1}/s), {} retried, {} throttled",
            self.units_failed.load(Ordering::Relaxed),
            calls,
            calls as f64 / secs,
            self.retried.load(Ordering::Relaxed),
            self.throttled.load(Ordering::Relaxed)
        );
        match self.waiting.load(Ordering::Relaxed) {
            0 => {}
            n => line.push_str(&format!(", {n} calls waiting for Mambu to answer")),
        }
        line
    }

    fn position(&self) -> u64 {
        self.units_done.load(Ordering::Relaxed)
            + self.units_failed.load(Ordering::Relaxed)
            + self.units_skipped.load(Ordering::Relaxed)
    }

    /// Starts the ticker: the bar's refresh, or the 10-second log line.
    pub fn start(&self, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let p = &shared.progress;
            let every = if p.bar.is_some() {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(10)
            };
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match &p.bar {
                    Some(bar) => {
                        bar.set_position(p.position());
                        bar.set_message(p.line());
                    }
                    None => {
                        let line =
                            format!("{}/{} units, {}", p.position(), p.units_total, p.line());
                        eprintln!("[{:>6.0}s] {line}", p.started.elapsed().as_secs_f64());
                        tracing::info!(progress = %line, "progress");
                    }
                }
            }
        })
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.position());
            bar.finish_with_message(self.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_when_calls_wait_for_mambu() {
        let p = Progress::new(10, false);
        assert!(!p.line().contains("waiting"), "{}", p.line());
        p.waiting.store(3, Ordering::Relaxed);
        assert!(
            p.line().ends_with(", 3 calls waiting for Mambu to answer"),
            "{}",
            p.line()
        );
    }
}
