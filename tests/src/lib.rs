//! Shared pieces of the end-to-end tests and load generators: latency statistics and an in-process
//! identity server for benchmarks, the whole platform in one process (`platform`), and the load runs
//! of the figures (`assist_load`, `console_load`, `routing_load`).

pub mod assist_load;
pub mod console_load;
pub mod http_api;
pub mod platform;
pub mod routing_load;

use std::time::Duration;

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
    sorted: Vec<Duration>,
}

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The `p`-th percentile (0–100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
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
    fn percentiles_use_nearest_rank() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(l.percentile(50.0), Duration::from_millis(50));
        assert_eq!(l.percentile(99.0), Duration::from_millis(99));
        assert_eq!(l.percentile(100.0), Duration::from_millis(100));
        assert_eq!(Latencies::new(vec![]).percentile(99.0), Duration::ZERO);
    }
}
