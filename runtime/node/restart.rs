//! Restart intensity: how many child crashes a supervisor absorbs before giving up.
//!
//! A deterministic core: the caller passes the time of each failure and gets a verdict.

use std::collections::VecDeque;

use crate::ids::Millis;

/// The verdict on one child failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart the child.
    Restart,
    /// Too many failures in the window: stop the node so the operator sees the crash loop.
    GiveUp,
}

/// Sliding-window restart budget: at most `max` restarts within `window_ms`.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    max: usize,
    window_ms: u64,
    recent: VecDeque<Millis>,
}

impl RestartBudget {
    /// A budget of `max` restarts per `window_ms`.
    pub fn new(max: usize, window_ms: u64) -> RestartBudget {
        RestartBudget { max, window_ms, recent: VecDeque::with_capacity(max + 1) }
    }

    /// Records a failure at `now` and decides.
    pub fn on_failure(&mut self, now: Millis) -> RestartDecision {
        while self.recent.front().is_some_and(|&at| now.since(at) >= self.window_ms) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max {
            return RestartDecision::GiveUp;
        }
        self.recent.push_back(now);
        RestartDecision::Restart
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_within_budget_then_gives_up() {
        let mut budget = RestartBudget::new(3, 1000);
        let decisions: Vec<_> = [0, 10, 20, 30].into_iter().map(|at| budget.on_failure(Millis(at))).collect();
        assert_eq!(
            decisions,
            [RestartDecision::Restart, RestartDecision::Restart, RestartDecision::Restart, RestartDecision::GiveUp]
        );
    }

    #[test]
    fn old_failures_leave_the_window() {
        let mut budget = RestartBudget::new(2, 1000);
        assert_eq!(budget.on_failure(Millis(0)), RestartDecision::Restart);
        assert_eq!(budget.on_failure(Millis(500)), RestartDecision::Restart);
        assert_eq!(budget.on_failure(Millis(1000)), RestartDecision::Restart, "the failure at 0 has left the window");
        assert_eq!(budget.on_failure(Millis(1200)), RestartDecision::GiveUp);
    }
}
