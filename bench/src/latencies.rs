//! Latency figures of a run, in an HDR histogram (microseconds, three significant digits), and the
//! queries of the search runs.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Three-letter prefixes of common first and last names, the queries of the search load runs.
pub const SEARCH_PREFIXES: &[&str] = &[
    "ann", "mar", "sch", "mei", "mue", "ben", "car", "cla", "dan", "dav", "eli", "emm", "eri",
    "fel", "fin", "geo", "han", "jan", "jon", "jul", "kar", "kla", "lar", "lea", "len", "leo",
    "lin", "lis", "luk", "max", "mia", "nin", "noa", "nor", "osk", "pau", "pet", "ros", "sar",
    "sim", "sof", "ste", "the", "tim", "tob", "wal", "web", "wag", "bec", "hof", "kel", "koc",
    "ric", "wol", "zim", "ber", "bra", "fis", "fra", "hah",
];

/// Latency percentiles of a run.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Latencies {
    pub fn new(samples: Vec<Duration>) -> Self {
        // Three significant digits from 1 µs up, the histogram growing as large values come.
        let mut histogram = Histogram::new(3).expect("three significant digits are supported");
        for sample in samples {
            let micros = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX).max(1);
            histogram
                .record(micros)
                .expect("an auto-resizing histogram records any value");
        }
        Self { histogram }
    }

    pub fn len(&self) -> usize {
        self.histogram.len() as usize
    }

    /// The `p`-th percentile (0–100).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.histogram.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.histogram.value_at_percentile(p))
    }

    /// One line: count, p50, p90, p99, max in milliseconds.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
            self.len(),
            ms(self.percentile(50.0)),
            ms(self.percentile(90.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(100.0)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_the_histogram_precision() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        let near = |d: Duration, ms: u64| {
            let expected = Duration::from_millis(ms).as_secs_f64();
            (d.as_secs_f64() - expected).abs() <= expected * 0.001
        };
        assert_eq!(l.len(), 100);
        assert!(near(l.percentile(50.0), 50), "{:?}", l.percentile(50.0));
        assert!(near(l.percentile(99.0), 99), "{:?}", l.percentile(99.0));
        assert!(near(l.percentile(100.0), 100), "{:?}", l.percentile(100.0));
        assert_eq!(Latencies::new(vec![]).percentile(99.0), Duration::ZERO);
    }
}
