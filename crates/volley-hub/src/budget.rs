//! The hub-wide budget of queued outbound bytes.
//!
//! Each client's outbox is bounded on its own ([`crate::outbox`]), but
//! 100,000 clients each under their own limit can still hold far more than
//! the machine has. This budget bounds their sum: every push is charged
//! before it is queued, and released when its bytes have been written to the
//! socket (or dropped with the queue).
//!
//! What is counted: a push's encoded frame bytes once per queue that holds
//! it, plus the size of its queue entry, from the moment it is queued until
//! the socket took its bytes. Frames are encoded once and shared between
//! subscribers, so the memory actually held is less; the count is the
//! conservative bound. A subscribe reply that carries recovered
//! publications, and a `history` reply with publications, are counted the
//! same way, and admitted only while they leave the last quarter of the
//! budget to live pushes ([`QueueBudget::try_charge_reply`]); one that does
//! not fit is refused with a temporary error and the client tries again
//! later. Other replies to a client's own commands are not counted (they are
//! small, or bounded per connection, see `Outbox::reply`).
//!
//! Past [`QueueBudget::trigger`] (three quarters of the budget) the hub's
//! eviction task disconnects the clients with the largest backlogs, with
//! 4002 (reconnect and recover), until the count is projected back under
//! [`QueueBudget::target`] (half of it). A push that would take the count
//! past the budget itself is refused and its client disconnected the same
//! way: the count never exceeds the budget, and the publisher never waits.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// The shared counter of queued bytes and its limit.
#[derive(Debug)]
pub struct QueueBudget {
    /// The queued bytes; also the `volley_outbound_queued_bytes` metric.
    queued: Gauge<i64, AtomicI64>,
    limit: i64,
    /// Clients disconnected for the budget; the `volley_budget_disconnects`
    /// metric.
    disconnects: Counter,
    /// Wakes the eviction task.
    evict: tokio::sync::Notify,
}

impl QueueBudget {
    /// A budget of `limit` bytes, counted in `queued` (a metric's gauge),
    /// its disconnects in `disconnects`.
    pub fn new(limit: usize, queued: Gauge<i64, AtomicI64>, disconnects: Counter) -> Self {
        Self {
            queued,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            disconnects,
            evict: tokio::sync::Notify::new(),
        }
    }

    /// Charges `n` bytes; `false` (nothing charged) when they would take the
    /// count past the budget. Past the trigger, wakes the eviction task.
    pub(crate) fn try_charge(&self, n: usize) -> bool {
        self.try_charge_up_to(n, self.limit)
    }

    /// Charges the `n` bytes of a reply the client asked for (a recovery):
    /// `false` (nothing charged) when they would take the count past the
    /// trigger. The last quarter of the budget is kept for live pushes, so
    /// that clients catching up never push out those that keep up.
    pub(crate) fn try_charge_reply(&self, n: usize) -> bool {
        self.try_charge_up_to(n, self.trigger())
    }

    /// Whether a reply of `n` bytes fits under the trigger at all.
    pub(crate) fn reply_fits(&self, n: usize) -> bool {
        i64::try_from(n).is_ok_and(|n| n <= self.trigger())
    }

    fn try_charge_up_to(&self, n: usize, ceiling: i64) -> bool {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let counter = self.queued.inner();
        let mut current = counter.load(Ordering::Relaxed);
        loop {
            let Some(next) = current.checked_add(n).filter(|next| *next <= ceiling) else {
                self.evict.notify_one();
                return false;
            };
            match counter.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if next > self.trigger() {
                        self.evict.notify_one();
                    }
                    return true;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Releases `n` bytes charged before.
    pub(crate) fn release(&self, n: usize) {
        if n > 0 {
            self.queued.dec_by(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts `n` clients disconnected for the budget.
    pub(crate) fn disconnected(&self, n: u64) {
        self.disconnects.inc_by(n);
    }

    /// The bytes charged now.
    pub fn queued(&self) -> usize {
        usize::try_from(self.queued.get()).unwrap_or(0)
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> usize {
        usize::try_from(self.limit).unwrap_or(usize::MAX)
    }

    /// Past this count, the largest backlogs are disconnected.
    pub(crate) fn trigger(&self) -> i64 {
        self.limit / 4 * 3
    }

    /// Eviction stops once the count is projected under this.
    pub(crate) fn target(&self) -> usize {
        self.limit() / 2
    }

    /// Waits until a charge passes the trigger (or [`QueueBudget::wake`]).
    pub(crate) async fn wanted(&self) {
        self.evict.notified().await;
    }

    /// Wakes the eviction task (to let it see that the hub is gone).
    pub(crate) fn wake(&self) {
        self.evict.notify_one();
    }
}

/// The default budget: a quarter of the memory this process may use (the
/// smaller of the machine's `MemTotal` and the cgroup's memory limit), or
/// 1 GiB when neither can be read; at least 64 MiB.
pub fn default_budget() -> usize {
    let total = meminfo_total();
    let cgroup = cgroup_limit();
    let memory = match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    };
    memory.map_or(1 << 30, |m| (m / 4).max(64 << 20))
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn meminfo_total() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The cgroup's memory limit (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`), when there is one.
fn cgroup_limit() -> Option<usize> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|s| s.trim().parse::<usize>().ok())
    // v1 reports "no limit" as a huge number.
    .filter(|&n| n < 1 << 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_past_the_budget_is_refused_and_the_count_never_passes_it() {
        let budget = QueueBudget::new(1000, Gauge::default(), Counter::default());
        assert!(budget.try_charge(600));
        assert!(budget.try_charge(400), "exactly the budget fits");
        assert!(!budget.try_charge(1), "one byte past it does not");
        assert_eq!(budget.queued(), 1000);
        budget.release(500);
        assert!(budget.try_charge(500));
        assert_eq!(budget.queued(), 1000);
    }

    #[test]
    fn a_reply_is_charged_only_below_the_trigger() {
        let budget = QueueBudget::new(1000, Gauge::default(), Counter::default());
        assert!(budget.try_charge_reply(700));
        assert!(
            budget.try_charge_reply(50),
            "exactly the trigger (750) fits"
        );
        assert!(
            !budget.try_charge_reply(1),
            "the last quarter is for pushes"
        );
        assert!(budget.try_charge(250), "which may still use it");
        assert_eq!(budget.queued(), 1000);
        assert!(budget.reply_fits(750), "later, when the budget is free");
        assert!(!budget.reply_fits(751), "never");
    }

    #[test]
    fn the_default_is_a_quarter_of_memory_and_at_least_64_mib() {
        let budget = default_budget();
        assert!(budget >= 64 << 20);
        if let Some(total) = meminfo_total() {
            assert!(budget <= (total / 4).max(64 << 20));
        }
    }
}
