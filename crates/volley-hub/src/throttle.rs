//! A warning that is logged at most once per interval: a failure that
//! recurs on every call (Redis unreachable while `info` is polled, or on
//! every heartbeat) is reported without flooding the log, with the count of
//! the repeats that were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// How often a throttled warning may be logged.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// Lets one warning through per interval.
#[derive(Debug)]
pub(crate) struct Throttle {
    every: Duration,
    /// When the last warning went through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// One warning per `every`.
    pub(crate) const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Whether to log now (`Some` with the number of warnings held back
    /// since the last one), or `None` to stay quiet.
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = lock(&self.state);
        let (last, held) = &mut *state;
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.every) {
            *held += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.allow(start), Some(0));
        assert_eq!(t.allow(start + Duration::from_secs(1)), None);
        assert_eq!(t.allow(start + Duration::from_millis(9_999)), None);
        assert_eq!(t.allow(start + Duration::from_secs(10)), Some(2));
        assert_eq!(t.allow(start + Duration::from_secs(11)), None);
        assert_eq!(t.allow(start + Duration::from_secs(25)), Some(1));
    }
}
