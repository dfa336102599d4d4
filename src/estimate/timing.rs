//! The timing model: how long a run of N calls takes, bounded by the rate limit, by concurrency
//! over latency, and by the longest unit's chain of sequential calls. Pure functions only.

use serde::Serialize;

/// What the model needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimingInput {
    /// Call attempts the run will make (retries and throttled attempts included).
    pub calls: f64,
    /// Σ attempts × latency, in milliseconds: the time the calls spend in flight.
    pub work_ms: f64,
    /// The longest unit's calls × their latency, in milliseconds.
    pub critical_ms: f64,
    /// Calls per second.
    pub rate: f64,
    /// Units in flight at once.
    pub concurrency: u32,
    /// The units' work laid out as the executor starts them (in order, each on the first free
    /// slot of `concurrency`), seconds: at least both the concurrency and critical path bounds,
    /// and closer than either when units are few or uneven. `None`: not known.
    pub schedule_seconds: Option<f64>,
}

/// Lays units out as the executor starts them: in order, each on the first free of
/// `concurrency` slots. Feed every unit's duration, then read the makespan.
#[derive(Debug, Clone)]
pub struct Schedule {
    slots: std::collections::BinaryHeap<std::cmp::Reverse<u64>>,
    concurrency: usize,
    end_us: u64,
}

impl Schedule {
    pub fn new(concurrency: u32) -> Self {
        Schedule {
            slots: std::collections::BinaryHeap::new(),
            concurrency: concurrency.max(1) as usize,
            end_us: 0,
        }
    }

    pub fn push(&mut self, unit_ms: f64) {
        let free = if self.slots.len() < self.concurrency {
            0
        } else {
            self.slots.pop().map_or(0, |r| r.0)
        };
        let end = free + (unit_ms * 1000.0).round() as u64;
        self.end_us = self.end_us.max(end);
        self.slots.push(std::cmp::Reverse(end));
    }

    pub fn seconds(&self) -> f64 {
        self.end_us as f64 / 1e6
    }
}

/// Which bound sets the duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// calls ÷ rate.
    Rate,
    /// calls × latency ÷ concurrency.
    Concurrency,
    /// The longest unit's sequential calls.
    CriticalPath,
    /// Units laid out on the concurrency slots in order (few or uneven units).
    Schedule,
}

impl Bound {
    pub fn describe(self) -> &'static str {
        match self {
            Bound::Rate => "the rate limit (calls ÷ rate)",
            Bound::Concurrency => "concurrency (calls × latency ÷ concurrency)",
            Bound::CriticalPath => "the longest unit (its calls one after another)",
            Bound::Schedule => "units laid out on the concurrency slots in run order",
        }
    }
}

/// The projected duration and its three bounds, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Projection {
    pub seconds: f64,
    pub rate_bound_seconds: f64,
    pub concurrency_bound_seconds: f64,
    pub critical_path_seconds: f64,
    pub schedule_seconds: Option<f64>,
    pub binding: Bound,
}

/// duration = max(calls ÷ rate, work ÷ concurrency, critical path[, schedule]).
pub fn project(input: &TimingInput) -> Projection {
    let rate_bound = if input.rate > 0.0 {
        input.calls / input.rate
    } else {
        f64::INFINITY
    };
    let concurrency_bound = input.work_ms / 1000.0 / f64::from(input.concurrency.max(1));
    let critical = input.critical_ms / 1000.0;
    let (classic, mut binding) = [
        (rate_bound, Bound::Rate),
        (concurrency_bound, Bound::Concurrency),
        (critical, Bound::CriticalPath),
    ]
    .into_iter()
    .fold(
        (0.0, Bound::Rate),
        |best, (s, b)| {
            if s > best.0 { (s, b) } else { best }
        },
    );
    // The schedule is never below the concurrency and critical path bounds; it is named as
    // what binds only when uneven or few units make it clearly longer than them.
    let schedule = input.schedule_seconds.unwrap_or(0.0);
    if schedule > classic * 1.05 {
        binding = Bound::Schedule;
    }
    let seconds = classic.max(schedule);
    Projection {
        seconds,
        rate_bound_seconds: rate_bound,
        concurrency_bound_seconds: concurrency_bound,
        critical_path_seconds: critical,
        schedule_seconds: input.schedule_seconds,
        binding,
    }
}

/// Whether the run fits a window, and what it would take to fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowFit {
    pub window_seconds: f64,
    pub fits: bool,
    /// Spare (positive) or missing (negative) time, in seconds.
    pub margin_seconds: f64,
    /// The rate needed to fit, when the rate bound exceeds the window.
    pub rate_needed: Option<f64>,
    /// The concurrency needed to fit, when the concurrency bound exceeds the window.
    pub concurrency_needed: Option<u32>,
    /// The longest unit alone exceeds the window: no rate or concurrency makes it fit.
    pub critical_path_too_long: bool,
}

pub fn fit(input: &TimingInput, projection: &Projection, window_seconds: f64) -> WindowFit {
    let fits = projection.seconds <= window_seconds;
    let rate_needed = (projection.rate_bound_seconds > window_seconds)
        .then(|| (input.calls / window_seconds * 100.0).ceil() / 100.0);
    let concurrency_needed = (projection.concurrency_bound_seconds > window_seconds)
        .then(|| (input.work_ms / 1000.0 / window_seconds).ceil() as u32);
    WindowFit {
        window_seconds,
        fits,
        margin_seconds: window_seconds - projection.seconds,
        rate_needed,
        concurrency_needed,
        critical_path_too_long: projection.critical_path_seconds > window_seconds,
    }
}

/// `8h`, `90m`, `2h30m`, `45s`, `1h15m30s` (a bare number is hours).
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a duration: write it like 8h, 90m or 2h30m");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(hours) = text.parse::<f64>() {
        return (hours > 0.0 && hours.is_finite())
            .then_some(hours * 3600.0)
            .ok_or_else(bad);
    }
    let mut total = 0.0;
    let mut number = String::new();
    let mut last_unit = 4;
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let (rank, scale) = match c {
            'h' => (1, 3600.0),
            'm' => (2, 60.0),
            's' => (3, 1.0),
            _ => return Err(bad()),
        };
        if number.is_empty() || (last_unit != 4 && rank <= last_unit) {
            return Err(bad());
        }
        let n: f64 = number.parse().map_err(|_| bad())?;
        total += n * scale;
        number.clear();
        last_unit = rank;
    }
    if !number.is_empty() || total <= 0.0 {
        return Err(bad());
    }
    Ok(total)
}

/// `2h 05m`, `14m 32s`, `8.2s`.
pub fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "never".into();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else {
        format!("{m}m {s:02}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        calls: f64,
        latency_ms: f64,
        critical_calls: f64,
        rate: f64,
        conc: u32,
    ) -> TimingInput {
        TimingInput {
            calls,
            work_ms: calls * latency_ms,
            critical_ms: critical_calls * latency_ms,
            rate,
            concurrency: conc,
            schedule_seconds: None,
        }
    }

    #[test]
    fn rate_bound() {
        // 10,000 calls at 20/s: 500 s; 8 × (1/0.1 s) = 80 calls/s of capacity: 125 s.
        let p = project(&input(10_000.0, 100.0, 50.0, 20.0, 8));
        assert_eq!(p.binding, Bound::Rate);
        assert!((p.seconds - 500.0).abs() < 1e-9);
        assert!((p.concurrency_bound_seconds - 125.0).abs() < 1e-9);
        assert!((p.critical_path_seconds - 5.0).abs() < 1e-9);
    }

    #[test]
    fn concurrency_bound() {
        // 10,000 calls at 200 ms, 4 at once: 500 s; the rate (1,000/s) allows 10 s.
        let p = project(&input(10_000.0, 200.0, 10.0, 1000.0, 4));
        assert_eq!(p.binding, Bound::Concurrency);
        assert!((p.seconds - 500.0).abs() < 1e-9);
        assert!((p.rate_bound_seconds - 10.0).abs() < 1e-9);
    }

    #[test]
    fn critical_path_bound() {
        // One unit of 2,000 sequential calls at 150 ms: 300 s, whatever the rate and concurrency.
        let p = project(&input(2_100.0, 150.0, 2_000.0, 1000.0, 64));
        assert_eq!(p.binding, Bound::CriticalPath);
        assert!((p.seconds - 300.0).abs() < 1e-9);
    }

    #[test]
    fn schedule_lays_units_out_in_order() {
        // 2 slots; units of 4, 1, 1, 1, 1 s: slot A 0-4, slot B 0-1-2-3-4: 4 s, while
        // work ÷ concurrency says 4 and the critical path 4.
        let mut s = Schedule::new(2);
        for ms in [4000.0, 1000.0, 1000.0, 1000.0, 1000.0] {
            s.push(ms);
        }
        assert!((s.seconds() - 4.0).abs() < 1e-9);
        // 3 equal units on 2 slots: 2 rounds, longer than work ÷ concurrency (1.5).
        let mut s = Schedule::new(2);
        for _ in 0..3 {
            s.push(1000.0);
        }
        assert!((s.seconds() - 2.0).abs() < 1e-9);
        let mut i = input(3.0, 1000.0, 1.0, 1000.0, 2);
        i.schedule_seconds = Some(s.seconds());
        let p = project(&i);
        assert_eq!(p.binding, Bound::Schedule);
        assert!((p.seconds - 2.0).abs() < 1e-9);
    }

    #[test]
    fn window_says_what_is_needed() {
        let i = input(36_000.0, 100.0, 10.0, 5.0, 8);
        let p = project(&i);
        assert!((p.seconds - 7200.0).abs() < 1e-9);
        let f = fit(&i, &p, 3600.0);
        assert!(!f.fits);
        assert_eq!(f.rate_needed, Some(10.0));
        assert_eq!(f.concurrency_needed, None);
        assert!(!f.critical_path_too_long);
        let f = fit(&i, &p, 8.0 * 3600.0);
        assert!(f.fits && f.rate_needed.is_none());
        // Concurrency short: 36,000 calls × 1 s = 36,000 s of work; a 1 h window needs 10.
        let i = input(36_000.0, 1000.0, 10.0, 1000.0, 2);
        let f = fit(&i, &project(&i), 3600.0);
        assert_eq!(f.concurrency_needed, Some(10));
        assert_eq!(f.rate_needed, None);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("8h"), Ok(28_800.0));
        assert_eq!(parse_duration("90m"), Ok(5_400.0));
        assert_eq!(parse_duration("2h30m"), Ok(9_000.0));
        assert_eq!(parse_duration("1h15m30s"), Ok(4_530.0));
        assert_eq!(parse_duration("1.5h"), Ok(5_400.0));
        for bad in ["", "h", "8x", "30m2h", "8h8h", "0m", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_format() {
        assert_eq!(format_duration(8.24), "8.2s");
        assert_eq!(format_duration(872.0), "14m 32s");
        assert_eq!(format_duration(7_500.0), "2h 05m");
    }
}
