//! The shell around [`super::follower_lease::Grants`]: one per node, shared by the coordinator (which
//! grants leases), the network (which records what followers acknowledged and cuts the commit index
//! it sends) and the state machine (whose apply waits for the holders).
//!
//! It also owns the node's lease clock: monotonic time since the coordinator's origin, scaled by a
//! rate that is 10⁶ ppm outside simulation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::follower_lease::{Bound, Grants};
use super::lease::ClockRate;
use super::types::LogId;
use crate::clock::monotonic;

/// Longest single wait of an apply held back by a holder before it looks at the clock again.
const HOLD_RECHECK_MAX: Duration = Duration::from_millis(20);

/// See the module.
#[derive(Debug)]
pub struct ReadGate {
    grants: Mutex<Grants<LogId>>,
    /// Whether any grant may still be live: the fast path of every apply and every send.
    active: AtomicBool,
    /// Whether a commit index was cut since the holders last acknowledged more.
    cut: AtomicBool,
    origin: tokio::time::Instant,
    rate_ppm: AtomicU64,
    /// Woken when the bound may have risen (applies waiting).
    raised: Notify,
    /// Woken when the bound rose after a cut commit index: followers should hear the commit now.
    lifted: Notify,
}

impl ReadGate {
    /// A gate whose lease clock counts from `origin`.
    pub fn new(origin: tokio::time::Instant) -> ReadGate {
        ReadGate {
            grants: Mutex::default(),
            active: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            origin,
            rate_ppm: AtomicU64::new(ClockRate::default().ppm()),
            raised: Notify::new(),
            lifted: Notify::new(),
        }
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, Grants<LogId>> {
        self.grants.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lease clock's rate.
    pub fn rate(&self) -> ClockRate {
        ClockRate::from_ppm(self.rate_ppm.load(Ordering::Relaxed))
    }

    /// Simulation only: see `Coordinator::set_lease_clock_rate`.
    pub fn set_rate(&self, rate: ClockRate) {
        self.rate_ppm.store(rate.ppm(), Ordering::Relaxed);
    }

    /// Monotonic time since the origin, unscaled.
    pub fn since_origin(&self) -> Duration {
        monotonic().saturating_duration_since(self.origin)
    }

    /// The lease clock now.
    pub fn now(&self) -> Duration {
        self.rate().scale(self.since_origin())
    }

    /// The leader of `term`, whose lease clock read `now` and whose lease ends at `until`, grants
    /// `node` a lease if it acknowledged this term's log up to `floor` (see [`Grants::caught_up`]);
    /// returns what is left of it.
    pub fn grant(&self, term: u64, node: u64, now: Duration, until: Duration, floor: u64) -> Option<Duration> {
        let mut grants = self.grants();
        if !grants.caught_up(term, node, floor) {
            return None;
        }
        let granted = grants.grant(term, node, now, until);
        drop(grants);
        if granted.is_some() {
            self.active.store(true, Ordering::SeqCst);
        }
        granted
    }

    /// `node` answered an AppendEntries of the leader of `term`: its log matches up to `log_id`.
    pub fn acked(&self, term: u64, node: u64, log_id: LogId) {
        let raised = self.grants().acked(term, node, log_id.index(), log_id);
        if raised && self.active.load(Ordering::SeqCst) {
            self.raised.notify_waiters();
            if self.cut.swap(false, Ordering::SeqCst) {
                self.lifted.notify_one();
            }
        }
    }

    /// The bound now; clears the fast path when no grant is left.
    fn bound(&self) -> (Bound<LogId>, Option<Duration>) {
        let now = self.now();
        let mut grants = self.grants();
        let bound = grants.bound(now);
        if bound == Bound::Open {
            self.active.store(false, Ordering::SeqCst);
        }
        (bound, grants.next_end().map(|end| end.saturating_sub(now)))
    }

    /// The commit index to send a follower: `committed`, cut down to what every holder has.
    pub fn cut_commit(&self, committed: Option<LogId>) -> Option<LogId> {
        if !self.active.load(Ordering::SeqCst) {
            return committed;
        }
        let committed = committed?;
        match self.bound().0 {
            Bound::Open => Some(committed),
            Bound::Upto { index, .. } if index >= committed.index() => Some(committed),
            Bound::Upto { log_id, .. } => {
                self.cut.store(true, Ordering::SeqCst);
                log_id
            }
        }
    }

    /// Waits until the entry at `index` may become visible on this node (at once unless this node
    /// granted leases that are still live and a holder lacks the entry).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_visible(&self, index: u64) {
        while self.active.load(Ordering::SeqCst) {
            let raised = self.raised.notified();
            tokio::pin!(raised);
            raised.as_mut().enable();
            let (bound, left) = self.bound();
            let hold = match bound {
                Bound::Open => return,
                Bound::Upto { index: upto, .. } if upto >= index => return,
                Bound::Upto { .. } => left.unwrap_or(HOLD_RECHECK_MAX),
            };
            // The lease clock may run at another rate than the timer: look again at least this often.
            let _ = tokio::time::timeout(hold.min(HOLD_RECHECK_MAX), raised).await;
        }
    }

    /// Resolves when followers should hear the commit index again (a cut one has risen).
    pub async fn lifted(&self) {
        self.lifted.notified().await;
    }
}
