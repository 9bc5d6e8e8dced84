//! Wall-clock time as UTC microseconds since the Unix epoch, the one time format of every store and API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in UTC microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A duration in microseconds, saturating.
pub fn us(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}
