//! The worker's decisions: which attempts run, which wait for a slot, which ended, and what to report.
//!
//! A core value (quinn-proto's `Connection` is the model): it imports no runtime, no actor library and
//! reads no clock. The worker's actor feeds it inputs with the time (`handle_order`, `handle_abort`,
//! `handle_abort_all` from the hub; `on_started`, `on_ended` from the attempts it runs;
//! `on_tick` at [`Slots::next_deadline`]; `on_reports_written` when a report write returns) and executes
//! the [`Action`]s it pushes, in order: start an attempt, stop one, write a batch of reports
//! ([`Slots::poll_reports`], called once the inputs of a message are all fed, so a batch gathers all of
//! them).
//!
//! Invariants:
//! - At most one attempt per task runs or waits here: an order with a newer token replaces the older
//!   attempt (which is stopped, never reported), and an order with the same or an older token is ignored.
//! - At most `slots` attempts run. The leader may assign up to `slots + prefetch`; the rest wait here,
//!   highest priority first, then lowest task id, so no slot idles while the next assignment commits.
//! - An attempt that ended (finished, stopped, aborted, past its timeout) is remembered, the newest
//!   `ended_max` of them, so an order sent again (after a snapshot, a re-poll) does not run it twice; an
//!   order older than a remembered end of its task is ignored too.
//! - An attempt still running `timeout_grace_ms` past its task's timeout is stopped and not reported: the
//!   leader has recorded the timeout by then, and its report would be refused.
//! - Each attempt is reported at most twice (started, then finished with its outcome), through the
//!   [`ReportQueue`]; a stopped attempt is never reported finished. The start is reported only for an
//!   attempt still running `started_report_delay_ms` after it started (or half its timeout, if that is
//!   sooner): a quicker one sends its end alone, which records the start too (it carries `started_ms`).
//!   An attempt that waited here for a slot longer than `started_report_queued_ms_max` reports its
//!   start at once.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};

use super::reports::{ReportLimits, ReportQueue, ReportWrite};
use crate::grid::command::Report;
use crate::grid::task::{FencingToken, TaskId, TaskSpec};
use crate::ids::Millis;

pub use crate::limits::ENDED_REMEMBERED_MAX;

/// Extra time an attempt gets past its timeout before the worker stops it, in milliseconds (the leader
/// records the timeout; the grace lets that record land first).
pub const TIMEOUT_GRACE_MS: u64 = 100;

/// How long an attempt runs before its start is reported, in milliseconds. Most attempts end sooner
/// (a no-op runs in about 0.1 ms, 1 ms at p99 under load), and their end report, which carries
/// `started_ms`, records the start too: one log entry (a quorum's append, fsync and apply, about
/// 1.3 ms) saved per attempt, and the end no longer queues behind the start's write. Nothing is lost
/// by waiting: the table measures a timeout from `started_ms`, the worker's own stamp, not from when the
/// report lands, and until a start is known it waits `UNSTARTED_GRACE_MS` (10 s) past the timeout, so a
/// late start report never brings a timeout forward. What waits is what others see: the task shows
/// `running` up to this much later. 20 ms is well under what a person or a poller notices and bounds
/// how long a running attempt may look unstarted to the leader. An attempt whose timeout is shorter
/// than twice this reports its start at half its timeout, so the leader knows the start before it
/// could be overdue.
pub const STARTED_REPORT_DELAY_MS: u64 = 20;

/// An attempt that waited here for a slot longer than this, in milliseconds, reports its start at once,
/// without [`STARTED_REPORT_DELAY_MS`]. The leader may move an attempt that the table shows unstarted
/// to another node once it was assigned a while ago (work stealing, `grid::steal::STEAL_GRACE_MS`,
/// 250 ms); such an attempt has waited long, so its start must reach the table promptly, or one that
/// just started here would be stopped and run again elsewhere. One that waited less is assigned less
/// than 100 + 20 ms before its start is due, which leaves more than 100 ms of the 250 for the order's
/// delivery and the report's commit (tens of milliseconds at p99 under load).
pub const STARTED_REPORT_QUEUED_MS_MAX: u64 = 100;

/// What the worker's core is set up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotsConfig {
    /// Attempts run at once.
    pub slots: u32,
    /// Ended attempts remembered at most.
    pub ended_max: usize,
    /// Time past a task's timeout before its attempt is stopped.
    pub timeout_grace_ms: u64,
    /// Time an attempt runs before its start is reported (half its timeout if sooner).
    pub started_report_delay_ms: u64,
    /// Time waited for a slot past which an attempt's start is reported at once.
    pub started_report_queued_ms_max: u64,
    /// How reports are batched and retried.
    pub reports: ReportLimits,
}

impl SlotsConfig {
    /// `slots` attempts at once, every other bound at its default.
    pub fn new(slots: u32) -> SlotsConfig {
        SlotsConfig {
            slots,
            ended_max: ENDED_REMEMBERED_MAX,
            timeout_grace_ms: TIMEOUT_GRACE_MS,
            started_report_delay_ms: STARTED_REPORT_DELAY_MS,
            started_report_queued_ms_max: STARTED_REPORT_QUEUED_MS_MAX,
            reports: ReportLimits::default(),
        }
    }
}

/// One attempt to run here, as assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The task.
    pub task: TaskId,
    /// The attempt's fencing token.
    pub token: FencingToken,
    /// 1 for the first attempt.
    pub number: u32,
    /// What to run.
    pub spec: TaskSpec,
}

/// What the core asks its shell to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run this attempt now. The shell says when it started ([`Slots::on_started`]) and, later, how it
    /// ended ([`Slots::on_ended`]).
    Start(Box<Order>),
    /// Stop this attempt if it runs (replaced, cancelled, lost, past its timeout). Its outcome is not
    /// wanted any more.
    Stop {
        /// The task.
        task: TaskId,
        /// The attempt's token.
        token: FencingToken,
    },
    /// Write these reports in one write; answer with [`Slots::on_reports_written`].
    WriteReports(Vec<Report>),
}

#[derive(Debug)]
struct Running {
    token: FencingToken,
    /// Unix milliseconds, as the shell stamped it; 0 until [`Slots::on_started`].
    started_ms: u64,
    /// When it is stopped if it still runs.
    deadline: Millis,
    /// Its timeout, for when its start is reported.
    timeout_ms: u64,
    /// How long it waited here for a slot.
    waited_ms: u64,
    /// When its start report is queued if it still runs; `None` before it started and once queued.
    start_report_at: Option<Millis>,
}

/// The attempts this worker holds and the reports it owes. See the module docs for its invariants.
#[derive(Debug)]
pub struct Slots {
    config: SlotsConfig,
    running: BTreeMap<TaskId, Running>,
    /// Assigned here, waiting for a slot since the time beside it: highest priority first, then oldest
    /// task.
    queued: BTreeMap<(Reverse<i32>, TaskId), (Order, Millis)>,
    /// Each queued task's token and priority (its key in `queued`).
    queued_keys: HashMap<TaskId, (FencingToken, i32)>,
    /// The newest ended token of each remembered task.
    ended: HashMap<TaskId, FencingToken>,
    /// Ends in the order they were remembered, for forgetting the oldest.
    ended_order: VecDeque<(TaskId, FencingToken)>,
    reports: ReportQueue,
}

impl Slots {
    /// A worker holding nothing.
    pub fn new(config: SlotsConfig) -> Slots {
        Slots {
            config,
            running: BTreeMap::new(),
            queued: BTreeMap::new(),
            queued_keys: HashMap::new(),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            reports: ReportQueue::new(config.reports),
        }
    }

    /// An attempt assigned here: runs it if a slot is free, else queues it by priority. A newer token
    /// replaces the task's older attempt; a token no newer than one held or remembered is ignored.
    pub fn handle_order(&mut self, now: Millis, order: Order, out: &mut Vec<Action>) {
        let (task, token) = (order.task, order.token);
        let ended = self.ended.get(&task).copied();
        let held =
            self.running.get(&task).map(|running| running.token).or(self.queued_keys.get(&task).map(|key| key.0));
        if ended.max(held).is_some_and(|known| known >= token) {
            return;
        }
        // A newer assignment of the same task: the older attempt is fenced; stop it.
        self.abort(task, out);
        let priority = order.spec.priority;
        self.queued_keys.insert(task, (token, priority));
        self.queued.insert((Reverse(priority), task), (order, now));
        self.fill_slots(now, out);
    }

    /// The task's attempt is cancelled or lost: stops it if it runs, forgets it if it waits.
    pub fn handle_abort(&mut self, now: Millis, task: TaskId, out: &mut Vec<Action>) {
        self.abort(task, out);
        self.fill_slots(now, out);
    }

    /// This worker's registration is gone, so everything it holds was lost: stops every attempt.
    pub fn handle_abort_all(&mut self, out: &mut Vec<Action>) {
        let held: Vec<TaskId> = self.running.keys().chain(self.queued.keys().map(|key| &key.1)).copied().collect();
        for task in held {
            self.abort(task, out);
        }
    }

    /// The shell started the attempt at `now`, `started_ms` in Unix milliseconds: its start report is
    /// queued at [`Slots::on_tick`] once it has run `started_report_delay_ms` (or half its timeout), and
    /// never if it ends sooner (its end report records the start); at once if it waited for a slot
    /// longer than `started_report_queued_ms_max`.
    pub fn on_started(&mut self, now: Millis, task: TaskId, token: FencingToken, started_ms: u64) {
        let (delay_max, waited_max) = (self.config.started_report_delay_ms, self.config.started_report_queued_ms_max);
        let Some(running) = self.running.get_mut(&task).filter(|running| running.token == token) else { return };
        running.started_ms = started_ms;
        if running.waited_ms > waited_max {
            self.reports.push(Report { task, token, started_ms, outcome: None });
        } else {
            running.start_report_at = Some(now.plus(delay_max.min(running.timeout_ms / 2)));
        }
    }

    /// The attempt ended with `outcome`: queues its report and gives its slot to the next in the queue.
    /// The end of an attempt already stopped or replaced is ignored.
    pub fn on_ended(
        &mut self,
        now: Millis,
        task: TaskId,
        token: FencingToken,
        outcome: Result<Vec<u8>, String>,
        out: &mut Vec<Action>,
    ) {
        if !self.runs(task, token) {
            return;
        }
        let running = self.running.remove(&task).expect("checked just above");
        self.remember_ended(task, token);
        self.reports.push(Report { task, token, started_ms: running.started_ms, outcome: Some(outcome) });
        self.fill_slots(now, out);
    }

    /// Queues the start reports now due, stops the attempts past their deadline (unreported) and fills
    /// their slots.
    pub fn on_tick(&mut self, now: Millis, out: &mut Vec<Action>) {
        for (task, running) in &mut self.running {
            if running.start_report_at.is_some_and(|at| at <= now) {
                running.start_report_at = None;
                let (token, started_ms) = (running.token, running.started_ms);
                self.reports.push(Report { task: *task, token, started_ms, outcome: None });
            }
        }
        let overdue: Vec<(TaskId, FencingToken)> = self
            .running
            .iter()
            .filter(|(_, running)| running.deadline <= now)
            .map(|(task, running)| (*task, running.token))
            .collect();
        for (task, token) in overdue {
            self.running.remove(&task);
            self.remember_ended(task, token);
            out.push(Action::Stop { task, token });
        }
        self.fill_slots(now, out);
    }

    /// Pushes the next batch of reports to write, if one may go out now.
    pub fn poll_reports(&mut self, now: Millis, out: &mut Vec<Action>) {
        if let Some(batch) = self.reports.poll_batch(now) {
            out.push(Action::WriteReports(batch));
        }
    }

    /// How an [`Action::WriteReports`] went (writes out together answer in any order); `batch` is the
    /// batch it carried.
    ///
    /// # Panics
    /// If no write is out.
    pub fn on_reports_written(&mut self, now: Millis, batch: Vec<Report>, written: ReportWrite) {
        self.reports.on_written(now, batch, written);
    }

    /// When [`Slots::on_tick`] (an attempt's deadline or its start report) or [`Slots::poll_reports`] (a
    /// retry) has work next.
    pub fn next_deadline(&self) -> Option<Millis> {
        let attempts = self
            .running
            .values()
            .map(|running| running.start_report_at.map_or(running.deadline, |at| at.min(running.deadline)))
            .min();
        match (attempts, self.reports.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Attempts running.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Attempts waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Reports not yet written, not counting batches that are out.
    pub fn reports_pending(&self) -> usize {
        self.reports.pending()
    }

    fn runs(&self, task: TaskId, token: FencingToken) -> bool {
        self.running.get(&task).is_some_and(|running| running.token == token)
    }

    fn fill_slots(&mut self, now: Millis, out: &mut Vec<Action>) {
        while self.running.len() < self.config.slots as usize {
            let Some((_, (order, queued_at))) = self.queued.pop_first() else { break };
            self.queued_keys.remove(&order.task);
            let deadline = now.plus(order.spec.timeout_ms).plus(self.config.timeout_grace_ms);
            let running = Running {
                token: order.token,
                started_ms: 0,
                deadline,
                timeout_ms: order.spec.timeout_ms,
                waited_ms: now.since(queued_at),
                start_report_at: None,
            };
            self.running.insert(order.task, running);
            out.push(Action::Start(Box::new(order)));
        }
    }

    fn abort(&mut self, task: TaskId, out: &mut Vec<Action>) {
        if let Some((token, priority)) = self.queued_keys.remove(&task) {
            self.queued.remove(&(Reverse(priority), task));
            self.remember_ended(task, token);
        }
        if let Some(running) = self.running.remove(&task) {
            out.push(Action::Stop { task, token: running.token });
            self.remember_ended(task, running.token);
        }
    }

    fn remember_ended(&mut self, task: TaskId, token: FencingToken) {
        if self.ended.get(&task).is_some_and(|known| *known >= token) {
            return;
        }
        self.ended.insert(task, token);
        self.ended_order.push_back((task, token));
        while self.ended.len() > self.config.ended_max {
            let Some((old_task, old_token)) = self.ended_order.pop_front() else { break };
            self.forget_if_current(old_task, old_token);
        }
        // Entries a newer end of their task superseded: dropped in one sweep once they are half the
        // order, so it stays within twice the bound at amortized O(1) per end.
        if self.ended_order.len() > 2 * self.config.ended_max.max(1) {
            let ended = &self.ended;
            self.ended_order.retain(|(task, token)| ended.get(task) == Some(token));
        }
    }

    fn forget_if_current(&mut self, task: TaskId, token: FencingToken) {
        // A superseded entry: the task's newer end stays remembered.
        if self.ended.get(&task) == Some(&token) {
            self.ended.remove(&task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = Millis(1_000);

    fn order(task: u64, token: u64, priority: i32) -> Order {
        let mut spec = TaskSpec::new("noop", Vec::new());
        spec.priority = priority;
        spec.timeout_ms = 1_000;
        Order { task: TaskId(task), token: FencingToken(token), number: 1, spec }
    }

    fn start(task: u64, token: u64, priority: i32) -> Action {
        Action::Start(Box::new(order(task, token, priority)))
    }

    fn stop(task: u64, token: u64) -> Action {
        Action::Stop { task: TaskId(task), token: FencingToken(token) }
    }

    fn slots(count: u32) -> Slots {
        Slots::new(SlotsConfig::new(count))
    }

    /// Feeds orders `(task, token, priority)` and returns the actions they caused.
    fn feed(core: &mut Slots, orders: &[(u64, u64, i32)]) -> Vec<Action> {
        let mut out = Vec::new();
        for &(task, token, priority) in orders {
            core.handle_order(T0, order(task, token, priority), &mut out);
        }
        out
    }

    fn end(core: &mut Slots, task: u64, token: u64) -> Vec<Action> {
        let mut out = Vec::new();
        core.on_ended(T0, TaskId(task), FencingToken(token), Ok(Vec::new()), &mut out);
        out
    }

    fn started(task: u64, token: u64, started_ms: u64) -> Report {
        Report { task: TaskId(task), token: FencingToken(token), started_ms, outcome: None }
    }

    fn finished(task: u64, token: u64, started_ms: u64, outcome: Result<Vec<u8>, String>) -> Report {
        Report { task: TaskId(task), token: FencingToken(token), started_ms, outcome: Some(outcome) }
    }

    #[test]
    fn at_most_slots_run_and_the_rest_start_by_priority_then_task() {
        // Each case: slots, orders (task, token, priority), the starts at once, then the order in which
        // the waiting ones start as running ones end (first to start ends first).
        type Case = (&'static str, u32, Vec<(u64, u64, i32)>, Vec<u64>, Vec<u64>);
        let cases: Vec<Case> = vec![
            ("free slots start at once", 3, vec![(1, 10, 0), (2, 11, 0)], vec![1, 2], vec![]),
            (
                "one slot, priority first",
                1,
                vec![(1, 10, 0), (2, 11, 0), (3, 12, 5), (4, 13, -1)],
                vec![1],
                vec![3, 2, 4],
            ),
            ("ties by lower task id", 1, vec![(1, 10, 0), (9, 11, 2), (4, 12, 2), (6, 13, 2)], vec![1], vec![4, 6, 9]),
            ("two slots", 2, vec![(1, 10, 0), (2, 11, 0), (3, 12, 0), (4, 13, 7)], vec![1, 2], vec![4, 3]),
        ];
        for (name, count, orders, at_once, later) in cases {
            let mut core = slots(count);
            let token_of = |task: u64| orders.iter().find(|o| o.0 == task).map(|o| (o.1, o.2)).expect("ordered");
            let expected: Vec<Action> =
                at_once.iter().map(|&task| start(task, token_of(task).0, token_of(task).1)).collect();
            assert_eq!(feed(&mut core, &orders), expected, "{name}");
            assert!(core.running() <= count as usize, "{name}");
            let mut ending: VecDeque<u64> = at_once.into();
            let mut started_later = Vec::new();
            while let Some(task) = ending.pop_front() {
                for action in end(&mut core, task, token_of(task).0) {
                    let Action::Start(order) = action else { panic!("{name}: not a start: {action:?}") };
                    assert_eq!(core.running(), count as usize, "{name}: a slot is refilled, never overfilled");
                    started_later.push(order.task.0);
                    ending.push_back(order.task.0);
                }
            }
            assert_eq!(started_later, later, "{name}");
            assert_eq!((core.running(), core.queued()), (0, 0), "{name}");
        }
    }

    #[test]
    fn fencing_newer_token_replaces_older_and_stale_orders_are_ignored() {
        // Each case: with one slot, task 1 holds token 10 running (and task 2 waits, token 20); then
        // `before` is fed, then the order under test; expected: the actions of that order alone.
        type Case = (&'static str, Vec<(u64, u64, i32)>, bool, (u64, u64, i32), Vec<Action>);
        let cases: Vec<Case> = vec![
            ("same token re-sent while running", vec![], false, (1, 10, 0), vec![]),
            ("older token while running", vec![], false, (1, 9, 0), vec![]),
            // The freed slot goes to the queue's head: the newer attempt, by its lower task id.
            ("newer token while running", vec![], false, (1, 12, 0), vec![stop(1, 10), start(1, 12, 0)]),
            ("same token re-sent while queued", vec![], false, (2, 20, 0), vec![]),
            ("older token while queued", vec![], false, (2, 19, 0), vec![]),
            ("newer token while queued", vec![], false, (2, 21, 0), vec![]),
            ("ended token re-sent", vec![], true, (1, 10, 0), vec![]),
            ("token older than an ended one", vec![], true, (1, 8, 0), vec![]),
            ("newer token after the end waits for a slot", vec![(3, 30, 0)], true, (1, 11, 9), vec![]),
        ];
        for (name, before, end_first, (task, token, priority), expected) in cases {
            let mut core = slots(1);
            feed(&mut core, &[(1, 10, 0), (2, 20, 0)]);
            feed(&mut core, &before);
            if end_first {
                assert_eq!(end(&mut core, 1, 10), [start(2, 20, 0)], "{name}");
            }
            assert_eq!(feed(&mut core, &[(task, token, priority)]), expected, "{name}");
            assert!(core.running() <= 1, "{name}");
        }
        // A newer token of a waiting task takes its place in the queue and runs with the new token.
        let mut core = slots(1);
        feed(&mut core, &[(1, 10, 0), (2, 20, 0), (2, 21, 3)]);
        assert_eq!(core.queued(), 1);
        assert_eq!(end(&mut core, 1, 10), [start(2, 21, 3)]);
        // A newer token after the end runs once a slot is free, by priority.
        let mut core = slots(1);
        feed(&mut core, &[(1, 10, 0), (2, 20, 0)]);
        end(&mut core, 1, 10);
        assert_eq!(feed(&mut core, &[(3, 30, 0), (1, 11, 9)]), []);
        assert_eq!(end(&mut core, 2, 20), [start(1, 11, 9)]);
    }

    #[test]
    fn a_replaced_attempt_gives_its_slot_to_the_highest_priority() {
        let mut core = slots(1);
        feed(&mut core, &[(1, 10, 0), (2, 20, 5)]);
        assert_eq!(feed(&mut core, &[(1, 11, 0)]), [stop(1, 10), start(2, 20, 5)]);
        // The old attempt's late end is not reported and frees nothing.
        assert_eq!(end(&mut core, 1, 10), []);
        assert_eq!((core.running(), core.queued()), (1, 1));
    }

    #[test]
    fn the_ended_set_is_bounded_and_forgets_the_oldest() {
        let mut core = Slots::new(SlotsConfig { ended_max: 2, ..SlotsConfig::new(4) });
        for task in 1..=3 {
            feed(&mut core, &[(task, task * 10, 0)]);
            end(&mut core, task, task * 10);
        }
        // Tasks 2 and 3 are remembered; task 1 was forgotten, so its re-sent order runs again.
        assert_eq!(feed(&mut core, &[(2, 20, 0), (3, 30, 0)]), []);
        assert_eq!(feed(&mut core, &[(1, 10, 0)]), [start(1, 10, 0)]);
        // A task's newer end replaces its older one without crowding out another task.
        let mut core = Slots::new(SlotsConfig { ended_max: 2, ..SlotsConfig::new(4) });
        for (task, token) in [(1, 10), (2, 20), (2, 21)] {
            feed(&mut core, &[(task, token, 0)]);
            end(&mut core, task, token);
        }
        assert_eq!(feed(&mut core, &[(2, 21, 0), (2, 20, 0), (1, 10, 0)]), []);
        // Many newer ends of one task: the order of ends is swept, within twice the bound, and the other
        // task stays remembered.
        for token in 22..40 {
            feed(&mut core, &[(2, token, 0)]);
            end(&mut core, 2, token);
            assert!(core.ended_order.len() <= 4, "{}", core.ended_order.len());
        }
        assert_eq!(core.ended.len(), 2);
        assert_eq!(feed(&mut core, &[(1, 10, 0), (2, 39, 0)]), []);
    }

    #[test]
    fn aborts_stop_running_attempts_and_forget_waiting_ones() {
        let mut core = slots(1);
        feed(&mut core, &[(1, 10, 0), (2, 20, 0), (3, 30, 0)]);
        let mut out = Vec::new();
        core.handle_abort(T0, TaskId(2), &mut out);
        assert_eq!(out, [], "a waiting attempt leaves quietly");
        core.handle_abort(T0, TaskId(1), &mut out);
        assert_eq!(out, [stop(1, 10), start(3, 30, 0)]);
        core.handle_abort(T0, TaskId(7), &mut out);
        assert_eq!(out.len(), 2, "an unknown task is nothing to abort");
        // Aborted attempts are remembered: their orders re-sent do not run.
        assert_eq!(feed(&mut core, &[(1, 10, 0), (2, 20, 0)]), []);

        let mut core = slots(2);
        feed(&mut core, &[(1, 10, 0), (2, 20, 0), (3, 30, 0), (4, 40, 1)]);
        let mut out = Vec::new();
        core.handle_abort_all(&mut out);
        assert_eq!(out, [stop(1, 10), stop(2, 20)]);
        assert_eq!((core.running(), core.queued()), (0, 0));
        assert_eq!(feed(&mut core, &[(4, 40, 1)]), [], "remembered");
        assert_eq!(feed(&mut core, &[(4, 41, 1)]), [start(4, 41, 1)], "a new incarnation's assignment runs");
    }

    /// Ticks at `now` and polls reports: the actions of both.
    fn tick(core: &mut Slots, now: Millis) -> Vec<Action> {
        let mut out = Vec::new();
        core.on_tick(now, &mut out);
        core.poll_reports(now, &mut out);
        out
    }

    fn written(core: &mut Slots, now: Millis, actions: Vec<Action>) {
        for action in actions {
            if let Action::WriteReports(batch) = action {
                core.on_reports_written(now, batch, ReportWrite::Applied);
            }
        }
    }

    const DELAY: u64 = STARTED_REPORT_DELAY_MS;

    #[test]
    fn a_quick_attempt_sends_its_end_alone() {
        let mut core = slots(1);
        feed(&mut core, &[(1, 10, 0)]);
        core.on_started(T0, TaskId(1), FencingToken(10), 500);
        let mut out = Vec::new();
        core.poll_reports(T0, &mut out);
        assert_eq!(out, [], "no start report yet");
        assert_eq!(core.next_deadline(), Some(T0.plus(DELAY)));
        let mut out = Vec::new();
        core.on_ended(T0.plus(DELAY - 1), TaskId(1), FencingToken(10), Ok(vec![7]), &mut out);
        core.poll_reports(T0.plus(DELAY - 1), &mut out);
        assert_eq!(out, [Action::WriteReports(vec![finished(1, 10, 500, Ok(vec![7]))])], "the end carries the start");
        written(&mut core, T0.plus(DELAY), out);
        assert_eq!(tick(&mut core, T0.plus(DELAY)), [], "an ended attempt's start is never reported");
        assert_eq!((core.next_deadline(), core.reports_pending()), (None, 0));
    }

    #[test]
    fn a_slow_attempt_reports_its_start_after_the_delay_then_its_end() {
        let mut core = slots(1);
        feed(&mut core, &[(1, 10, 0)]);
        core.on_started(T0, TaskId(1), FencingToken(10), 500);
        assert_eq!(tick(&mut core, T0.plus(DELAY - 1)), []);
        let out = tick(&mut core, T0.plus(DELAY));
        assert_eq!(out, [Action::WriteReports(vec![started(1, 10, 500)])]);
        written(&mut core, T0.plus(DELAY + 2), out);
        assert_eq!(tick(&mut core, T0.plus(3 * DELAY)), [], "reported once");
        assert_eq!(core.next_deadline(), Some(T0.plus(1_000 + TIMEOUT_GRACE_MS)), "only its timeout is left");
        // A re-sent order does not start it again nor report its start again.
        assert_eq!(feed(&mut core, &[(1, 10, 0)]), []);
        let mut out = Vec::new();
        core.on_ended(T0.plus(50), TaskId(1), FencingToken(10), Ok(Vec::new()), &mut out);
        core.poll_reports(T0.plus(50), &mut out);
        assert_eq!(out, [Action::WriteReports(vec![finished(1, 10, 500, Ok(Vec::new()))])]);
    }

    #[test]
    fn a_start_report_still_waiting_when_the_end_comes_is_merged_into_it() {
        let mut config = SlotsConfig::new(2);
        config.reports.writes_max = 1;
        let mut core = Slots::new(config);
        feed(&mut core, &[(1, 10, 0), (2, 20, 0)]);
        core.on_started(T0, TaskId(1), FencingToken(10), 500);
        core.on_started(T0, TaskId(2), FencingToken(20), 501);
        // Task 2's end keeps the one write out; then task 1's start comes due and waits behind it.
        let mut out = Vec::new();
        core.on_ended(T0, TaskId(2), FencingToken(20), Ok(Vec::new()), &mut out);
        core.poll_reports(T0, &mut out);
        let Some(Action::WriteReports(first)) = out.pop() else { panic!("a write: {out:?}") };
        assert_eq!(tick(&mut core, T0.plus(DELAY)), [], "the start waits for the write out");
        assert_eq!(core.reports_pending(), 1);
        let mut out = Vec::new();
        core.on_ended(T0.plus(DELAY), TaskId(1), FencingToken(10), Err("boom".into()), &mut out);
        core.on_reports_written(T0.plus(DELAY), first, ReportWrite::Applied);
        core.poll_reports(T0.plus(DELAY), &mut out);
        assert_eq!(out, [Action::WriteReports(vec![finished(1, 10, 500, Err("boom".into()))])]);
    }

    #[test]
    fn an_attempt_that_waited_long_for_a_slot_reports_its_start_at_once() {
        let mut core = slots(1);
        feed(&mut core, &[(1, 10, 0), (2, 20, 0), (3, 30, 0)]);
        core.on_started(T0, TaskId(1), FencingToken(10), 500);
        // Task 2 waited exactly the most that still allows the delay; task 3 a millisecond more.
        let at = T0.plus(STARTED_REPORT_QUEUED_MS_MAX);
        let mut out = Vec::new();
        core.on_ended(at, TaskId(1), FencingToken(10), Ok(Vec::new()), &mut out);
        assert_eq!(out, [start(2, 20, 0)]);
        core.on_started(at, TaskId(2), FencingToken(20), 600);
        let out = tick(&mut core, at);
        assert_eq!(out, [Action::WriteReports(vec![finished(1, 10, 500, Ok(Vec::new()))])], "2's start waits");
        written(&mut core, at, out);
        let mut out = Vec::new();
        core.on_ended(at.plus(1), TaskId(2), FencingToken(20), Ok(Vec::new()), &mut out);
        assert_eq!(out, [start(3, 30, 0)]);
        core.on_started(at.plus(1), TaskId(3), FencingToken(30), 700);
        let mut out = Vec::new();
        core.poll_reports(at.plus(1), &mut out);
        let expected = vec![finished(2, 20, 600, Ok(Vec::new())), started(3, 30, 700)];
        assert_eq!(out, [Action::WriteReports(expected)], "3's start goes at once");
    }

    #[test]
    fn a_short_timeout_reports_the_start_at_half_of_it() {
        let mut core = slots(1);
        let mut order = order(1, 10, 0);
        order.spec.timeout_ms = 10;
        let mut out = Vec::new();
        core.handle_order(T0, order, &mut out);
        core.on_started(T0, TaskId(1), FencingToken(10), 500);
        assert_eq!(core.next_deadline(), Some(T0.plus(5)));
        assert_eq!(tick(&mut core, T0.plus(5)), [Action::WriteReports(vec![started(1, 10, 500)])]);
    }

    #[test]
    fn a_replaced_or_aborted_attempt_never_reports_its_start() {
        let mut core = slots(2);
        feed(&mut core, &[(1, 10, 0), (2, 20, 0)]);
        core.on_started(T0, TaskId(1), FencingToken(10), 500);
        core.on_started(T0, TaskId(2), FencingToken(20), 500);
        // A start stamped for a token this worker does not run is ignored.
        core.on_started(T0, TaskId(2), FencingToken(19), 400);
        assert_eq!(feed(&mut core, &[(1, 11, 0)]), [stop(1, 10), start(1, 11, 0)]);
        let mut out = Vec::new();
        core.handle_abort(T0, TaskId(2), &mut out);
        assert_eq!(out, [stop(2, 20)]);
        assert_eq!(tick(&mut core, T0.plus(DELAY)), [], "task 1's new attempt has not started yet");
        core.on_started(T0.plus(DELAY), TaskId(1), FencingToken(11), 600);
        assert_eq!(tick(&mut core, T0.plus(2 * DELAY)), [Action::WriteReports(vec![started(1, 11, 600)])]);
    }

    #[test]
    fn an_attempt_past_its_timeout_and_grace_is_stopped_unreported() {
        let mut core = slots(1);
        feed(&mut core, &[(1, 10, 0), (2, 20, 0)]);
        core.on_started(T0, TaskId(1), FencingToken(10), 77);
        let deadline = T0.plus(1_000 + TIMEOUT_GRACE_MS);
        assert_eq!(tick(&mut core, T0.plus(DELAY)), [Action::WriteReports(vec![started(1, 10, 77)])]);
        assert_eq!(core.next_deadline(), Some(deadline));
        let mut out = Vec::new();
        core.on_tick(Millis(deadline.0 - 1), &mut out);
        assert_eq!(out, []);
        core.on_tick(deadline, &mut out);
        assert_eq!(out, [stop(1, 10), start(2, 20, 0)]);
        // Its late end changes nothing; only its start was ever reported.
        assert_eq!(end(&mut core, 1, 10), []);
        let mut out = Vec::new();
        core.poll_reports(deadline, &mut out);
        assert_eq!(out, []);
        assert_eq!(feed(&mut core, &[(1, 10, 0)]), [], "remembered as ended");
        assert_eq!(core.next_deadline(), Some(deadline.plus(1_000 + TIMEOUT_GRACE_MS)));
    }

    #[test]
    fn reports_of_slow_attempts_are_written_two_at_a_time_and_retried_after_a_failed_write() {
        let mut core = slots(3);
        feed(&mut core, &[(1, 10, 0), (2, 20, 0), (3, 30, 0)]);
        core.on_started(T0, TaskId(1), FencingToken(10), 500);
        core.on_started(T0, TaskId(2), FencingToken(20), 501);
        core.on_started(T0, TaskId(3), FencingToken(30), 502);
        core.on_started(T0, TaskId(4), FencingToken(40), 503);
        let at = T0.plus(DELAY);
        let mut out = Vec::new();
        core.on_tick(at, &mut out);
        core.poll_reports(at, &mut out);
        let first = vec![started(1, 10, 500), started(2, 20, 501), started(3, 30, 502)];
        assert_eq!(out, [Action::WriteReports(first.clone())], "no report for an attempt not held");
        // While it is out, an end goes out in a second write; a stale end is not reported.
        let mut out = Vec::new();
        core.on_ended(at, TaskId(1), FencingToken(10), Ok(vec![7]), &mut out);
        core.on_ended(at, TaskId(2), FencingToken(19), Ok(vec![8]), &mut out);
        core.poll_reports(at, &mut out);
        let second = vec![finished(1, 10, 500, Ok(vec![7]))];
        assert_eq!(out, [Action::WriteReports(second.clone())]);
        let mut out = Vec::new();
        core.on_ended(at, TaskId(3), FencingToken(30), Ok(vec![9]), &mut out);
        core.poll_reports(at, &mut out);
        assert_eq!(out, [], "two writes out at most");
        // The first write fails: it goes back first, after the retry wait, minus the start whose end
        // now travels with it. The second write's outcome (in either order) frees nothing before then.
        core.on_reports_written(at, first, ReportWrite::Retry);
        core.on_reports_written(at, second, ReportWrite::Applied);
        assert_eq!(core.next_deadline(), Some(at.plus(20)), "the retry wait comes before any attempt's deadline");
        core.poll_reports(at.plus(19), &mut out);
        assert_eq!(out, []);
        core.poll_reports(at.plus(20), &mut out);
        let retried = vec![started(1, 10, 500), started(2, 20, 501), finished(3, 30, 502, Ok(vec![9]))];
        assert_eq!(out, [Action::WriteReports(retried.clone())], "task 1's start is sent again: harmless, fenced");
        core.on_reports_written(at.plus(21), retried, ReportWrite::Applied);
        assert_eq!(core.reports_pending(), 0);
        assert_eq!(core.next_deadline(), Some(T0.plus(1_000 + TIMEOUT_GRACE_MS)));
    }

    #[test]
    fn an_attempt_that_cannot_run_is_reported_failed_without_a_start() {
        // The shell, executing `Start` for a kind it lacks, stamps the start and ends it at once.
        let mut core = slots(1);
        feed(&mut core, &[(1, 10, 0), (2, 20, 0)]);
        let mut out = Vec::new();
        core.on_started(T0, TaskId(1), FencingToken(10), 500);
        core.on_ended(T0, TaskId(1), FencingToken(10), Err("no kind".into()), &mut out);
        core.poll_reports(T0, &mut out);
        assert_eq!(out, [start(2, 20, 0), Action::WriteReports(vec![finished(1, 10, 500, Err("no kind".into()))])]);
    }

    #[test]
    fn an_oversized_result_fails_its_attempt_with_a_message() {
        let mut config = SlotsConfig::new(1);
        config.reports.result_bytes_max = 100;
        let mut core = Slots::new(config);
        feed(&mut core, &[(1, 10, 0)]);
        core.on_started(T0, TaskId(1), FencingToken(10), 500);
        let mut out = Vec::new();
        core.on_ended(T0, TaskId(1), FencingToken(10), Ok(vec![0; 101]), &mut out);
        core.poll_reports(T0, &mut out);
        let error = "result of 101 bytes exceeds the limit of 100 bytes (REPORT_RESULT_BYTES_MAX)".to_string();
        assert_eq!(out, [Action::WriteReports(vec![finished(1, 10, 500, Err(error))])]);
    }
}
