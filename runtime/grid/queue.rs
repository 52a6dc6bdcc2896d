//! The dispatch order of pending tasks: higher priority first, FIFO within a priority, with aging so a
//! low priority cannot starve forever, and not-before times honoured.
//!
//! Deterministic: time is an input. Each priority has its own FIFO; picking compares only the heads,
//! so a pick costs O(priorities in use), not O(tasks).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::task::TaskId;

/// Every `aging_step_ms` a task waits, its effective priority rises by one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyQueue {
    aging_step_ms: u64,
    ready: BTreeMap<i32, VecDeque<(u64, TaskId)>>,
    delayed: BTreeMap<(u64, TaskId), i32>,
    len: usize,
}

impl ReadyQueue {
    /// An empty queue aging by one priority level per `aging_step_ms` of waiting.
    ///
    /// # Panics
    /// If `aging_step_ms` is zero.
    pub fn new(aging_step_ms: u64) -> ReadyQueue {
        assert!(aging_step_ms > 0, "aging needs a positive step");
        ReadyQueue { aging_step_ms, ready: BTreeMap::new(), delayed: BTreeMap::new(), len: 0 }
    }

    /// Tasks queued, delayed ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queued tasks per priority (ready and delayed), for metrics.
    pub fn depth_by_priority(&self) -> BTreeMap<i32, usize> {
        let mut depth: BTreeMap<i32, usize> =
            self.ready.iter().map(|(&priority, fifo)| (priority, fifo.len())).collect();
        for &priority in self.delayed.values() {
            *depth.entry(priority).or_default() += 1;
        }
        depth
    }

    /// Queues `task` at `priority`, ready at `ready_ms` (its not-before time; `now_ms` or earlier: at once).
    pub fn push(&mut self, task: TaskId, priority: i32, enqueued_ms: u64, ready_ms: u64) {
        self.len += 1;
        if ready_ms > enqueued_ms {
            self.delayed.insert((ready_ms, task), priority);
        } else {
            self.ready.entry(priority).or_default().push_back((enqueued_ms, task));
        }
    }

    /// Queues `task` ready now at the head of its priority's FIFO: work lost with a node was already
    /// dispatched once and goes before everything that has not been.
    pub fn push_front(&mut self, task: TaskId, priority: i32, enqueued_ms: u64) {
        self.len += 1;
        let fifo = self.ready.entry(priority).or_default();
        // Keep the head's age ordering sensible: the requeued task is at least as old as the head.
        let head_ms = fifo.front().map_or(enqueued_ms, |&(ms, _)| ms.min(enqueued_ms));
        fifo.push_front((head_ms, task));
    }

    /// Moves delayed tasks whose time has come into their priority's FIFO.
    pub fn on_tick(&mut self, now_ms: u64) {
        while let Some((&(ready_ms, task), &priority)) = self.delayed.first_key_value() {
            if ready_ms > now_ms {
                break;
            }
            self.delayed.pop_first();
            // Aging counts from when the task became ready, not from when it was submitted.
            self.ready.entry(priority).or_default().push_back((ready_ms, task));
        }
    }

    /// The earliest not-before time still waiting.
    pub fn next_ready_ms(&self) -> Option<u64> {
        self.delayed.keys().next().map(|&(ready_ms, _)| ready_ms)
    }

    fn effective(&self, priority: i32, enqueued_ms: u64, now_ms: u64) -> i64 {
        i64::from(priority) + (now_ms.saturating_sub(enqueued_ms) / self.aging_step_ms) as i64
    }

    /// The next task to dispatch at `now_ms` without removing it.
    pub fn peek(&self, now_ms: u64) -> Option<TaskId> {
        self.best(now_ms).map(|(_, task)| task)
    }

    fn best(&self, now_ms: u64) -> Option<(i32, TaskId)> {
        self.ready
            .iter()
            .filter_map(|(&priority, fifo)| fifo.front().map(|&(enqueued_ms, task)| (priority, enqueued_ms, task)))
            // Highest effective priority; among equals the one waiting longest, then the lowest id.
            .max_by(|a, b| {
                let (ea, eb) = (self.effective(a.0, a.1, now_ms), self.effective(b.0, b.1, now_ms));
                ea.cmp(&eb).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2))
            })
            .map(|(priority, _, task)| (priority, task))
    }

    /// Removes and returns the next task to dispatch at `now_ms`.
    pub fn pop(&mut self, now_ms: u64) -> Option<TaskId> {
        let (priority, task) = self.best(now_ms)?;
        let fifo = self.ready.get_mut(&priority).expect("best() names a non-empty FIFO");
        fifo.pop_front();
        if fifo.is_empty() {
            self.ready.remove(&priority);
        }
        self.len -= 1;
        Some(task)
    }

    /// Up to `limit` ready tasks in dispatch order at `now_ms`, without removing them (the leader plans
    /// assignments from this; the table removes a task when its assignment is applied). Delayed tasks
    /// whose time has come count as ready even before an entry's tick moved them, in the place the
    /// tick would put them (after their priority's FIFO, by ready time).
    pub fn ordered(&self, now_ms: u64, limit: usize) -> Vec<TaskId> {
        // One priority in use and nothing delayed due: the order is that FIFO's.
        let nothing_due = self.delayed.first_key_value().is_none_or(|(&(ready_ms, _), _)| ready_ms > now_ms);
        if nothing_due && self.ready.len() <= 1 {
            let fifo = self.ready.values().next();
            return fifo.into_iter().flatten().take(limit).map(|&(_, task)| task).collect();
        }
        let mut due: BTreeMap<i32, Vec<(u64, TaskId)>> = BTreeMap::new();
        for (&(ready_ms, task), &priority) in self.delayed.range(..(now_ms.saturating_add(1), TaskId(0))) {
            due.entry(priority).or_default().push((ready_ms, task));
        }
        let priorities: std::collections::BTreeSet<i32> = self.ready.keys().chain(due.keys()).copied().collect();
        let entry_at = |priority: i32, cursor: usize| -> Option<(u64, TaskId)> {
            let fifo_len = self.ready.get(&priority).map_or(0, VecDeque::len);
            if cursor < fifo_len {
                self.ready[&priority].get(cursor).copied()
            } else {
                due.get(&priority).and_then(|list| list.get(cursor - fifo_len)).copied()
            }
        };
        let mut cursors: BTreeMap<i32, usize> = priorities.into_iter().map(|priority| (priority, 0)).collect();
        let mut out = Vec::with_capacity(limit.min(self.len));
        while out.len() < limit {
            let best = cursors
                .iter()
                .filter_map(|(&priority, &cursor)| {
                    entry_at(priority, cursor).map(|(enqueued_ms, task)| (priority, enqueued_ms, task))
                })
                .max_by(|a, b| {
                    let (ea, eb) = (self.effective(a.0, a.1, now_ms), self.effective(b.0, b.1, now_ms));
                    ea.cmp(&eb).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2))
                });
            let Some((priority, _, task)) = best else { break };
            *cursors.get_mut(&priority).expect("listed") += 1;
            out.push(task);
        }
        out
    }

    /// Removes `task` if it is ready at `now_ms`; a task whose not-before or backoff time is still
    /// to come stays queued. An assignment is applied through this, so a plan made from an older state
    /// (a deposed leader's, applied late) cannot start a retry before its backoff ran out.
    pub fn remove_ready(&mut self, task: TaskId, now_ms: u64) -> bool {
        if self.delayed.keys().any(|&(ready_ms, queued)| queued == task && ready_ms > now_ms) {
            return false;
        }
        self.remove(task)
    }

    /// Removes `task` wherever it is queued (cancellation). Returns whether it was queued.
    pub fn remove(&mut self, task: TaskId) -> bool {
        let before = self.delayed.len();
        self.delayed.retain(|&(_, queued), _| queued != task);
        let mut removed = before != self.delayed.len();
        if !removed {
            for fifo in self.ready.values_mut() {
                if let Some(position) = fifo.iter().position(|&(_, queued)| queued == task) {
                    fifo.remove(position);
                    removed = true;
                    break;
                }
            }
            self.ready.retain(|_, fifo| !fifo.is_empty());
        }
        if removed {
            self.len -= 1;
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    #[test]
    fn higher_priority_first_then_fifo() {
        let mut queue = ReadyQueue::new(HOUR);
        queue.push(TaskId(1), 0, 0, 0);
        queue.push(TaskId(2), 5, 1, 1);
        queue.push(TaskId(3), 0, 2, 2);
        queue.push(TaskId(4), 5, 3, 3);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop(10)).collect();
        assert_eq!(order, [TaskId(2), TaskId(4), TaskId(1), TaskId(3)]);
        assert!(queue.is_empty());
    }

    #[test]
    fn aging_lets_an_old_low_priority_task_overtake() {
        let mut queue = ReadyQueue::new(1_000);
        queue.push(TaskId(1), 0, 0, 0);
        queue.push(TaskId(2), 3, 9_000, 9_000);
        // At 9 s task 1 has aged to 9, above task 2's 3.
        assert_eq!(queue.pop(9_000), Some(TaskId(1)));
        // A fresh flood of high priorities cannot hold a low one back forever.
        let mut queue = ReadyQueue::new(1_000);
        queue.push(TaskId(100), -5, 0, 0);
        let mut now = 0;
        for id in 0..100 {
            now += 100;
            queue.push(TaskId(id), 1, now, now);
            if queue.pop(now) == Some(TaskId(100)) {
                return;
            }
        }
        panic!("the low-priority task starved");
    }

    #[test]
    fn not_before_is_honoured() {
        let mut queue = ReadyQueue::new(HOUR);
        queue.push(TaskId(1), 9, 0, 500);
        queue.push(TaskId(2), 0, 0, 0);
        assert_eq!(queue.next_ready_ms(), Some(500));
        queue.on_tick(499);
        assert_eq!(queue.pop(499), Some(TaskId(2)));
        assert_eq!(queue.pop(499), None);
        assert_eq!(queue.ordered(499, 10), vec![], "not before its time");
        assert_eq!(queue.ordered(500, 10), vec![TaskId(1)], "due before any tick moved it");
        queue.on_tick(500);
        assert_eq!(queue.pop(500), Some(TaskId(1)));
    }

    #[test]
    fn a_task_waiting_for_its_time_is_not_removed_as_ready() {
        let mut queue = ReadyQueue::new(HOUR);
        queue.push(TaskId(1), 0, 0, 500);
        assert!(!queue.remove_ready(TaskId(1), 499), "not before its time");
        assert_eq!(queue.len(), 1);
        assert!(queue.remove_ready(TaskId(1), 500), "due, even before a tick moved it");
        assert!(queue.is_empty());
    }

    #[test]
    fn ordered_matches_repeated_pops() {
        let mut queue = ReadyQueue::new(1_000);
        for (id, priority, at) in [(1, 0, 0), (2, 2, 100), (3, 0, 200), (4, 1, 300), (5, 2, 400)] {
            queue.push(TaskId(id), priority, at, at);
        }
        let planned = queue.ordered(5_000, 10);
        let popped: Vec<_> = std::iter::from_fn(|| queue.pop(5_000)).collect();
        assert_eq!(planned, popped);
    }

    #[test]
    fn ordered_with_one_priority_matches_repeated_pops() {
        // One priority, a delayed task not yet due (the FIFO's own order) and then due (merged).
        for now in [50, 5_000] {
            let mut queue = ReadyQueue::new(1_000);
            for (id, at) in [(1, 0), (2, 10), (3, 20)] {
                queue.push(TaskId(id), 0, at, at);
            }
            queue.push(TaskId(4), 0, 30, 100);
            queue.push(TaskId(5), 0, 30, 200);
            queue.push_front(TaskId(6), 0, 40);
            let planned = queue.ordered(now, 4);
            queue.on_tick(now);
            let popped: Vec<_> = std::iter::from_fn(|| queue.pop(now)).take(4).collect();
            assert_eq!(planned, popped, "at {now}");
        }
    }

    #[test]
    fn requeued_work_goes_first_in_its_priority() {
        let mut queue = ReadyQueue::new(HOUR);
        queue.push(TaskId(1), 0, 0, 0);
        queue.push(TaskId(2), 0, 1, 1);
        queue.push(TaskId(3), 1, 2, 2);
        queue.push_front(TaskId(9), 0, 5);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop(10)).collect();
        assert_eq!(order, [TaskId(3), TaskId(9), TaskId(1), TaskId(2)]);
    }

    #[test]
    fn removal_and_depth() {
        let mut queue = ReadyQueue::new(HOUR);
        queue.push(TaskId(1), 1, 0, 0);
        queue.push(TaskId(2), 1, 0, 100);
        queue.push(TaskId(3), 2, 0, 0);
        assert_eq!(queue.depth_by_priority(), BTreeMap::from([(1, 2), (2, 1)]));
        assert!(queue.remove(TaskId(2)) && queue.remove(TaskId(3)) && !queue.remove(TaskId(9)));
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.pop(0), Some(TaskId(1)));
    }
}
