//! Natural batching of submissions: while a node's earlier submissions are still being committed,
//! the small ones that arrive wait and then go out together, as one log entry.
//!
//! A single-task submission costs the cluster one entry: encoded, appended, replicated, fsynced and
//! applied on every node, each step with its own wake-ups. At a few thousand single submissions a
//! second that per-entry work is most of the CPU, and queueing behind it is most of the latency. A
//! submission that finds a free proposal slot (at most [`SUBMIT_IN_FLIGHT_MAX`] in flight) goes out
//! at once, alone: no timer ever holds it back. Only when every slot is taken does it wait, and it
//! then shares the next entry with whatever else waited: a batch costs about one entry, so the
//! busier the node, the fewer entries per submission.
//!
//! This module decides; `crate::service::tasks` does (proposes, answers each caller). It holds no
//! task itself, only opaque items with their sizes, and it never reads a clock.
//!
//! Invariants:
//! - an item waits only while all `in_flight_max` slots are taken, so a lone submission is never
//!   delayed;
//! - every batch handed out holds at least one item, at most `tasks_max` tasks and `bytes_max`
//!   bytes (a single item always fits: only items within those bounds are admitted);
//! - at most [`SUBMIT_MERGE_WAITING_MAX`] items and [`SUBMIT_MERGE_WAITING_BYTES_MAX`] bytes wait; past
//!   that a submission is refused as overloaded, with nothing applied.

use std::collections::VecDeque;

pub use crate::limits::{SUBMIT_IN_FLIGHT_MAX, SUBMIT_MERGE_WAITING_BYTES_MAX, SUBMIT_MERGE_WAITING_MAX};

/// How much one submission weighs in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitSize {
    /// Its tasks.
    pub tasks: usize,
    /// Its tasks' encoded bytes.
    pub bytes: usize,
}

/// What one entry may carry: the table's batch size and the submission byte bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchBounds {
    /// Tasks in one entry at most.
    pub tasks_max: usize,
    /// Encoded task bytes in one entry at most.
    pub bytes_max: usize,
}

impl BatchBounds {
    /// Whether `size` may be merged at all: a larger submission goes out on its own path.
    pub fn admits(&self, size: SubmitSize) -> bool {
        size.tasks >= 1 && size.tasks <= self.tasks_max && size.bytes <= self.bytes_max
    }
}

/// What to do with a submission just offered.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<T> {
    /// A slot was free: propose this batch (the item alone) now, and call
    /// [`SubmitMerge::on_done`] when its write returns.
    Propose(Vec<T>),
    /// Every slot is taken: the item waits for a batch.
    Wait,
    /// Too much waits already: refuse the submission, nothing is applied.
    Overloaded,
}

/// One item waiting, with its size.
#[derive(Debug)]
struct Waiting<T> {
    item: T,
    size: SubmitSize,
}

/// The merge of one node's submissions: slots in flight and the items waiting for one.
#[derive(Debug)]
pub struct SubmitMerge<T> {
    in_flight: usize,
    in_flight_max: usize,
    waiting: VecDeque<Waiting<T>>,
    waiting_bytes: usize,
}

impl<T> Default for SubmitMerge<T> {
    fn default() -> Self {
        SubmitMerge::new(SUBMIT_IN_FLIGHT_MAX)
    }
}

impl<T> SubmitMerge<T> {
    /// A merge with at most `in_flight_max` (at least 1) batches in flight.
    pub fn new(in_flight_max: usize) -> SubmitMerge<T> {
        SubmitMerge { in_flight: 0, in_flight_max: in_flight_max.max(1), waiting: VecDeque::new(), waiting_bytes: 0 }
    }

    /// Offers a submission of `size` (which the caller checked with [`BatchBounds::admits`]).
    pub fn on_submit(&mut self, item: T, size: SubmitSize) -> Admit<T> {
        if self.in_flight < self.in_flight_max {
            debug_assert!(self.waiting.is_empty(), "items wait only while every slot is taken");
            self.in_flight += 1;
            return Admit::Propose(vec![item]);
        }
        if self.waiting.len() >= SUBMIT_MERGE_WAITING_MAX
            || self.waiting_bytes.saturating_add(size.bytes) > SUBMIT_MERGE_WAITING_BYTES_MAX
        {
            return Admit::Overloaded;
        }
        self.waiting_bytes += size.bytes;
        self.waiting.push_back(Waiting { item, size });
        Admit::Wait
    }

    /// A batch's write returned (or was abandoned). Returns the next batch for the freed slot, oldest
    /// items first and cut at `bounds`, skipping items `live` says nobody waits for any more; empty
    /// if nothing waits, and then the slot is released.
    pub fn on_done(&mut self, bounds: BatchBounds, mut live: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut batch = Vec::new();
        let (mut tasks, mut bytes) = (0usize, 0usize);
        while let Some(front) = self.waiting.front() {
            let size = front.size;
            if !batch.is_empty() && (tasks + size.tasks > bounds.tasks_max || bytes + size.bytes > bounds.bytes_max) {
                break;
            }
            let Waiting { item, .. } = self.waiting.pop_front().expect("the front was just seen");
            self.waiting_bytes -= size.bytes;
            if live(&item) {
                tasks += size.tasks;
                bytes += size.bytes;
                batch.push(item);
            }
        }
        if batch.is_empty() {
            self.in_flight -= 1;
        }
        batch
    }

    /// Batches in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Submissions waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: BatchBounds = BatchBounds { tasks_max: 10, bytes_max: 1_000 };

    fn size(tasks: usize, bytes: usize) -> SubmitSize {
        SubmitSize { tasks, bytes }
    }

    #[test]
    fn a_lone_submission_goes_out_at_once_and_releases_its_slot() {
        let mut merge = SubmitMerge::new(2);
        assert_eq!(merge.on_submit(1, size(1, 10)), Admit::Propose(vec![1]));
        assert_eq!(merge.in_flight(), 1);
        assert!(merge.on_done(BOUNDS, |_| true).is_empty());
        assert_eq!(merge.in_flight(), 0);
        assert_eq!(merge.on_submit(2, size(1, 10)), Admit::Propose(vec![2]));
    }

    #[test]
    fn submissions_wait_only_while_every_slot_is_taken_and_then_go_together() {
        let mut merge = SubmitMerge::new(2);
        assert_eq!(merge.on_submit(1, size(1, 10)), Admit::Propose(vec![1]));
        assert_eq!(merge.on_submit(2, size(1, 10)), Admit::Propose(vec![2]));
        for item in 3..=6 {
            assert_eq!(merge.on_submit(item, size(1, 10)), Admit::Wait);
        }
        assert_eq!(merge.waiting(), 4);
        // The slot freed by the first write carries all four; the second slot then frees for good.
        assert_eq!(merge.on_done(BOUNDS, |_| true), vec![3, 4, 5, 6]);
        assert_eq!(merge.in_flight(), 2);
        assert!(merge.on_done(BOUNDS, |_| true).is_empty());
        assert!(merge.on_done(BOUNDS, |_| true).is_empty());
        assert_eq!(merge.in_flight(), 0);
    }

    #[test]
    fn a_batch_is_cut_at_the_task_and_byte_bounds_in_arrival_order() {
        let mut merge = SubmitMerge::new(1);
        assert_eq!(merge.on_submit(0, size(1, 1)), Admit::Propose(vec![0]));
        let offers = [(1, size(6, 100)), (2, size(4, 100)), (3, size(1, 100)), (4, size(1, 900)), (5, size(1, 10))];
        for (item, weight) in offers {
            assert_eq!(merge.on_submit(item, weight), Admit::Wait);
        }
        assert_eq!(merge.on_done(BOUNDS, |_| true), vec![1, 2], "10 tasks: the third would make 11");
        assert_eq!(merge.on_done(BOUNDS, |_| true), vec![3, 4], "1,000 bytes: the next would pass them");
        assert_eq!(merge.on_done(BOUNDS, |_| true), vec![5]);
        assert!(merge.on_done(BOUNDS, |_| true).is_empty());
        assert_eq!(merge.in_flight(), 0);
    }

    #[test]
    fn abandoned_items_are_dropped_without_taking_room_in_the_batch() {
        let mut merge = SubmitMerge::new(1);
        assert_eq!(merge.on_submit(0, size(1, 1)), Admit::Propose(vec![0]));
        for item in 1..=3 {
            assert_eq!(merge.on_submit(item, size(5, 1)), Admit::Wait);
        }
        assert_eq!(merge.on_done(BOUNDS, |item| *item != 1), vec![2, 3]);
        // Only abandoned items waited: the slot is released.
        assert_eq!(merge.on_submit(4, size(1, 1)), Admit::Wait);
        assert!(merge.on_done(BOUNDS, |_| true) == vec![4]);
        assert_eq!(merge.on_submit(5, size(1, 1)), Admit::Wait);
        assert!(merge.on_done(BOUNDS, |_| false).is_empty());
        assert_eq!(merge.in_flight(), 0);
    }

    #[test]
    fn what_waits_is_bounded_by_count_and_by_bytes() {
        let mut merge = SubmitMerge::new(1);
        assert_eq!(merge.on_submit(0, size(1, 1)), Admit::Propose(vec![0]));
        assert_eq!(merge.on_submit(1, size(1, SUBMIT_MERGE_WAITING_BYTES_MAX)), Admit::Wait);
        assert_eq!(merge.on_submit(2, size(1, 1)), Admit::Overloaded);
        let big = BatchBounds { tasks_max: usize::MAX, bytes_max: usize::MAX };
        assert_eq!(merge.on_done(big, |_| true), vec![1]);
        for item in 0..SUBMIT_MERGE_WAITING_MAX {
            assert_eq!(merge.on_submit(item, size(1, 0)), Admit::Wait);
        }
        assert_eq!(merge.on_submit(0, size(1, 0)), Admit::Overloaded);
        assert_eq!(merge.on_done(big, |_| true).len(), SUBMIT_MERGE_WAITING_MAX);
    }

    #[test]
    fn only_submissions_within_one_entry_are_merged() {
        assert!(BOUNDS.admits(size(10, 1_000)));
        assert!(!BOUNDS.admits(size(11, 1)));
        assert!(!BOUNDS.admits(size(1, 1_001)));
        assert!(!BOUNDS.admits(size(0, 0)));
    }
}
