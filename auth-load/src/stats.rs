//! What one run of workers measured: counts, throughput and latency percentiles.
//!
//! Latencies are kept exactly (microseconds, one entry per answered request) and sorted once at
//! the end; a run is bounded in time and requests, so the vector stays small (a few MB at most).
//! Percentiles use the nearest-rank definition: p99 is the smallest latency that at least 99% of
//! the requests did not exceed.

use std::collections::BTreeMap;
use std::time::Duration;

/// What one worker saw during the measured window.
#[derive(Debug, Default)]
pub struct WorkerTally {
    /// Latency of every answered request, in microseconds (2xx and not).
    pub latencies_us: Vec<u64>,
    /// 2xx answers.
    pub ok: u64,
    /// Answers by non-2xx status; status 0 stands for a transport failure (no answer).
    pub errors: BTreeMap<u16, u64>,
    /// The first non-2xx answer, shortened, to say what went wrong.
    pub first_error: Option<String>,
    /// When the last measured request finished, from the start of the window.
    pub last_done: Duration,
}

impl WorkerTally {
    /// Records one answer.
    pub fn record(&mut self, status: u16, latency: Duration, done: Duration, body: &[u8]) {
        self.latencies_us.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        self.last_done = self.last_done.max(done);
        if (200..300).contains(&status) {
            self.ok += 1;
        } else {
            self.error(status, &String::from_utf8_lossy(body));
        }
    }

    /// Records a failure with no latency (transport error, broken refresh chain).
    pub fn error(&mut self, status: u16, what: &str) {
        *self.errors.entry(status).or_default() += 1;
        if self.first_error.is_none() {
            let what: String = what.chars().take(160).collect();
            self.first_error = Some(format!("{status}: {what}"));
        }
    }
}

/// The merged result of a group of workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Workers (one keep-alive connection each).
    pub workers: usize,
    /// 2xx answers.
    pub ok: u64,
    /// Everything else, including transport failures.
    pub errors: u64,
    /// Errors by status (0 = transport).
    pub errors_by_status: BTreeMap<u16, u64>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// From the start of the window to the last answer.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Slowest answer.
    pub max: Duration,
}

impl Summary {
    /// Merges the tallies of a group's workers.
    pub fn merge(tallies: Vec<WorkerTally>) -> Self {
        let workers = tallies.len();
        let mut latencies = Vec::new();
        let mut ok = 0;
        let mut errors_by_status = BTreeMap::new();
        let mut first_error = None;
        let mut elapsed = Duration::ZERO;
        for tally in tallies {
            latencies.extend(tally.latencies_us);
            ok += tally.ok;
            for (status, n) in tally.errors {
                *errors_by_status.entry(status).or_default() += n;
            }
            first_error = first_error.or(tally.first_error);
            elapsed = elapsed.max(tally.last_done);
        }
        latencies.sort_unstable();
        let micros = |q: f64| Duration::from_micros(percentile(&latencies, q));
        Self {
            workers,
            ok,
            errors: errors_by_status.values().sum(),
            errors_by_status,
            first_error,
            elapsed,
            p50: micros(0.50),
            p99: micros(0.99),
            max: Duration::from_micros(latencies.last().copied().unwrap_or(0)),
        }
    }

    /// 2xx answers per second over the window.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.ok as f64 / secs } else { 0.0 }
    }
}

/// Nearest-rank percentile of sorted values (`q` in 0..=1); 0 for no values.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of some durations (the middle one, or the lower middle for an even count).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    match samples.len() {
        0 => Duration::ZERO,
        n => samples[(n - 1) / 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.50), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&values, 0.0), 1);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
        // 1000 values: p99 is the 990th.
        let values: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&values, 0.99), 990);
    }

    #[test]
    fn merge_counts_errors_and_keeps_the_longest_window() {
        let mut a = WorkerTally::default();
        a.record(200, Duration::from_micros(100), Duration::from_secs(1), b"");
        a.record(200, Duration::from_micros(300), Duration::from_secs(2), b"");
        let mut b = WorkerTally::default();
        b.record(429, Duration::from_micros(200), Duration::from_secs(3), b"{\"error\":\"slow_down\"}");
        b.error(0, "connection reset");
        let summary = Summary::merge(vec![a, b]);
        assert_eq!(summary.workers, 2);
        assert_eq!(summary.ok, 2);
        assert_eq!(summary.errors, 2);
        assert_eq!(summary.errors_by_status.get(&429), Some(&1));
        assert_eq!(summary.errors_by_status.get(&0), Some(&1));
        assert_eq!(summary.first_error.as_deref(), Some("429: {\"error\":\"slow_down\"}"));
        assert_eq!(summary.elapsed, Duration::from_secs(3));
        assert_eq!(summary.p50, Duration::from_micros(200));
        assert_eq!(summary.p99, Duration::from_micros(300));
        assert_eq!(summary.max, Duration::from_micros(300));
        assert!((summary.rate() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn median_of_samples() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(median(vec![ms(4), ms(1), ms(2), ms(3)]), ms(2));
        assert_eq!(median(Vec::new()), Duration::ZERO);
    }
}
