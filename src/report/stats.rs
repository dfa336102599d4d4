//! The arithmetic of the reports: percentiles, time buckets, and how times and rates are
//! written (numbers and shares: [`render`](super::render)).

use serde::{Deserialize, Serialize};

/// The value at percentile `p` (0 < p <= 100) of ascending `sorted` values, by the
/// nearest-rank method: the smallest value with at least p% of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[crate::checkpoint::nearest_rank(p, sorted.len()) - 1])
}

/// The width of a throughput bucket: 10 seconds for a run under 10 minutes, a minute otherwise.
pub fn bucket_seconds(duration_seconds: f64) -> u32 {
    if duration_seconds < 600.0 { 10 } else { 60 }
}

/// Calls in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Seconds from the start of the run to the start of the bucket.
    pub offset_seconds: i64,
    pub calls: i64,
    pub throttled: i64,
}

/// Gaps of more than this many empty buckets (a run stopped, then resumed later) are left out
/// rather than filled with zeros; the offsets show the jump.
pub const MAX_FILLED_GAP: i64 = 10;

/// Turns sparse `(index, calls, throttled)` counts (ascending index) into buckets, with the
/// short gaps between them filled with empty buckets.
pub fn fill_buckets(sparse: &[(i64, i64, i64)], width: u32) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::with_capacity(sparse.len());
    let mut previous: Option<i64> = None;
    for &(index, calls, throttled) in sparse {
        if let Some(prev) = previous {
            let gap = index - prev - 1;
            if gap <= MAX_FILLED_GAP {
                out.extend((prev + 1..index).map(|i| Bucket {
                    offset_seconds: i * i64::from(width),
                    calls: 0,
                    throttled: 0,
                }));
            }
        }
        out.push(Bucket {
            offset_seconds: index * i64::from(width),
            calls,
            throttled,
        });
        previous = Some(index);
    }
    out
}

/// Merges consecutive buckets `k` at a time (for a short table), keeping the first offset.
pub fn merge_buckets(buckets: &[Bucket], k: usize) -> Vec<Bucket> {
    buckets
        .chunks(k.max(1))
        .map(|chunk| Bucket {
            offset_seconds: chunk[0].offset_seconds,
            calls: chunk.iter().map(|b| b.calls).sum(),
            throttled: chunk.iter().map(|b| b.throttled).sum(),
        })
        .collect()
}

/// `part / whole`, 0 when `whole` is 0.
pub fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Rounds to `digits` decimals (for figures in report.json).
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// A rate per second, one decimal.
pub fn per_second(rate: f64) -> String {
    format!("{rate:.1}/s")
}

/// `2h 05m 09s`, `5m 09s`, `9s`.
pub fn duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `+1:05` or `+2:00:10`: an offset from the start of the run.
pub fn offset(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("+{h}:{m:02}:{s:02}")
    } else {
        format!("+{m}:{s:02}")
    }
}

/// `2025-01-31 22:05:09 UTC` from unix seconds.
pub fn date(unix_seconds: f64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds.floor() as i64, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{unix_seconds} (unix)"))
}

/// `2025-01-31T22:05:09Z` from unix seconds (for report.json).
pub fn rfc3339(unix_seconds: f64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds.floor() as i64, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{unix_seconds} (unix)"))
}

/// A latency in ms as shown: whole ms from 10 ms up, one decimal below.
pub fn ms(value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(v) if v >= 10.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// A word quoted for a POSIX shell when it needs it.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@+,%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        let v = [10.0, 20.0, 30.0, 40.0];
        assert_eq!(
            percentile(&v, 50.0),
            Some(20.0),
            "ceil(0.5 * 4) = 2nd value"
        );
        assert_eq!(percentile(&v, 95.0), Some(40.0));
        assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1000.0];
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(
            percentile(&v, 95.0),
            Some(1000.0),
            "one slow call in ten shows at p95"
        );
    }

    #[test]
    fn buckets_are_ten_seconds_under_ten_minutes_then_a_minute() {
        assert_eq!(bucket_seconds(0.0), 10);
        assert_eq!(bucket_seconds(599.9), 10);
        assert_eq!(bucket_seconds(600.0), 60);
        assert_eq!(bucket_seconds(8.0 * 3600.0), 60);
    }

    #[test]
    fn short_gaps_are_filled_long_ones_skipped() {
        let sparse = [(0, 5, 1), (2, 3, 0), (20, 4, 0), (21, 1, 1)];
        let b = fill_buckets(&sparse, 10);
        let got: Vec<_> = b
            .iter()
            .map(|b| (b.offset_seconds, b.calls, b.throttled))
            .collect();
        assert_eq!(
            got,
            vec![(0, 5, 1), (10, 0, 0), (20, 3, 0), (200, 4, 0), (210, 1, 1)]
        );
        let sparse = [(0, 1, 0), (11, 1, 0)];
        assert_eq!(
            fill_buckets(&sparse, 60).len(),
            12,
            "a gap of exactly ten buckets is filled"
        );
        assert!(fill_buckets(&[], 10).is_empty());
        let merged = merge_buckets(&b, 2);
        let got: Vec<_> = merged
            .iter()
            .map(|b| (b.offset_seconds, b.calls, b.throttled))
            .collect();
        assert_eq!(got, vec![(0, 5, 1), (20, 7, 0), (210, 1, 1)]);
    }

    #[test]
    fn figures_read_well() {
        assert_eq!(duration(9.4), "9s");
        assert_eq!(duration(65.0), "1m 05s");
        assert_eq!(duration(7509.0), "2h 05m 09s");
        assert_eq!(offset(0), "+0:00");
        assert_eq!(offset(70), "+1:10");
        assert_eq!(offset(3610), "+1:00:10");
        assert_eq!(ratio(3, 40), 0.075);
        assert_eq!(ratio(1, 0), 0.0);
        assert_eq!(round(0.615_384, 2), 0.62);
        assert_eq!(ms(Some(12.46)), "12");
        assert_eq!(ms(Some(3.24)), "3.2");
        assert_eq!(ms(None), "–");
        assert_eq!(date(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(rfc3339(1_738_361_109.7), "2025-01-31T22:05:09Z");
        assert_eq!(shell_word("runs/acme-core"), "runs/acme-core");
        assert_eq!(shell_word("my runs/it's"), r"'my runs/it'\''s'");
    }
}
