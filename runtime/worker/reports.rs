//! The worker's outgoing reports: queued, cut into batches, at most two writes out at a time, retried.
//!
//! A core value: it imports no runtime and reads no clock. The worker's shell pushes reports in, takes
//! the next batch with [`ReportQueue::poll_batch`], writes it, and tells the queue how the write went
//! with [`ReportQueue::on_written`]. While the writes allowed are out, reports queue up and travel
//! together in the next batch, so a batch grows with load and the log sees one entry per write, not one
//! per report. A second write may go out while the first commits, so a report that comes just after a
//! write left waits for a quorum's append, not for a whole commit round of that write.
//!
//! Invariant: at most `writes_max` batches are out at a time; a batch holds at most `count_max` reports
//! and, past its first report, at most `bytes_max` bytes (about: see [`report_bytes`]), and no report
//! carries a result above `result_bytes_max` (an attempt whose result is larger fails, saying so). A
//! batch whose write failed is sent again, first, after `retry_wait_ms`, and nothing goes out before
//! then: reports are idempotent because the table fences them by token. Writes out together may apply
//! in either order, so an attempt's start report may land after its end report; the table refuses it
//! then as stale (its token is no longer the current attempt's), which is harmless.
//!
//! The queue is bounded by use, not by a limit of its own: each attempt adds at most two reports, and a
//! node holds at most `slots + prefetch` open attempts (placement's bound); the table opens no new ones
//! for this node while its reports cannot land.

use std::collections::{HashSet, VecDeque};

use crate::grid::command::Report;
use crate::grid::task::{FencingToken, TaskId};
use crate::ids::Millis;

pub use crate::limits::{REPORT_BATCH_BYTES_MAX, REPORT_BATCH_MAX, REPORT_RESULT_BYTES_MAX};

/// Wait before retrying a report write that failed, in milliseconds.
pub const REPORT_RETRY_WAIT_MS: u64 = 20;

/// Report writes out at once. One more than one: the next batch goes out while the previous one
/// commits (each write is a log entry, about 1.3 ms alone on the development machine), so an end
/// report no longer waits a whole commit round behind a batch that left just before it. Two, not
/// more: the leader's group commit takes both entries of a pair in one fsync when they meet, and a
/// third write would mostly cut batches smaller (more entries per task) without shortening the wait.
pub const REPORT_WRITES_MAX: usize = 2;

/// How reports are cut into batches and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLimits {
    /// Reports in one batch at most.
    pub count_max: usize,
    /// Bytes of reports in one batch at most (a lone larger report still travels alone).
    pub bytes_max: usize,
    /// The largest result a report carries; a larger one becomes a failure that says so, and a larger
    /// error is cut to this.
    pub result_bytes_max: usize,
    /// Wait after a failed write before the next one.
    pub retry_wait_ms: u64,
    /// Writes out at once (at least 1).
    pub writes_max: usize,
}

impl Default for ReportLimits {
    fn default() -> ReportLimits {
        ReportLimits {
            count_max: REPORT_BATCH_MAX,
            bytes_max: REPORT_BATCH_BYTES_MAX,
            result_bytes_max: REPORT_RESULT_BYTES_MAX,
            retry_wait_ms: REPORT_RETRY_WAIT_MS,
            writes_max: REPORT_WRITES_MAX,
        }
    }
}

/// How a batch's write went, as the shell classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportWrite {
    /// Recorded.
    Applied,
    /// Refused as a whole: sending it again cannot help, so it is dropped.
    Refused,
    /// Nothing, or maybe something, was recorded: send it again after the retry wait.
    Retry,
}

/// Reports waiting to be written, and the writes that are out.
#[derive(Debug)]
pub struct ReportQueue {
    limits: ReportLimits,
    /// Oldest first; a batch whose write failed goes back to the front.
    pending: VecDeque<Report>,
    /// Batches out whose outcome has not been fed back yet.
    writing: usize,
    /// No batch goes out before this (after a failed write).
    retry_at: Option<Millis>,
}

impl ReportQueue {
    /// An empty queue.
    pub fn new(limits: ReportLimits) -> ReportQueue {
        ReportQueue { limits, pending: VecDeque::new(), writing: 0, retry_at: None }
    }

    /// Queues a report. A result too large to travel becomes a failure that says so.
    pub fn push(&mut self, report: Report) {
        self.pending.push_back(bounded_report(report, self.limits.result_bytes_max));
    }

    /// The next batch to write, if fewer than `writes_max` writes are out, the retry wait (if any) has
    /// passed and reports wait. The caller writes it and answers with [`ReportQueue::on_written`].
    pub fn poll_batch(&mut self, now: Millis) -> Option<Vec<Report>> {
        if self.writing >= self.limits.writes_max.max(1)
            || self.pending.is_empty()
            || self.retry_at.is_some_and(|at| now < at)
        {
            return None;
        }
        self.retry_at = None;
        drop_starts_of_finished(&mut self.pending);
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = self.pending.front() {
            let next_bytes = report_bytes(next);
            // The first report always travels, so the queue cannot stall behind it.
            if !batch.is_empty() && (batch.len() >= self.limits.count_max || bytes + next_bytes > self.limits.bytes_max)
            {
                break;
            }
            bytes += next_bytes;
            batch.extend(self.pending.pop_front());
        }
        self.writing += 1;
        Some(batch)
    }

    /// How the write of `batch` (one [`ReportQueue::poll_batch`] gave, in any order) went.
    ///
    /// # Panics
    /// If no write is out: the shell fed an outcome for a write it was never given.
    pub fn on_written(&mut self, now: Millis, batch: Vec<Report>, written: ReportWrite) {
        assert!(self.writing > 0, "a report write's outcome arrived while none was out");
        self.writing -= 1;
        if written == ReportWrite::Retry {
            for report in batch.into_iter().rev() {
                self.pending.push_front(report);
            }
            self.retry_at = Some(now.plus(self.limits.retry_wait_ms));
        }
    }

    /// When a batch may go out next, if reports wait only for the retry wait to pass.
    pub fn next_deadline(&self) -> Option<Millis> {
        if self.writing >= self.limits.writes_max.max(1) || self.pending.is_empty() {
            return None;
        }
        self.retry_at
    }

    /// Reports waiting, not counting batches that are out.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Batches out.
    pub fn writing(&self) -> usize {
        self.writing
    }
}

/// What a report adds to an entry, about: its result or error and its fixed fields.
pub fn report_bytes(report: &Report) -> usize {
    let outcome = match &report.outcome {
        Some(Ok(result)) => result.len(),
        Some(Err(error)) => error.len(),
        None => 0,
    };
    outcome + 64
}

/// A report whose result is larger than `result_bytes_max` becomes a failure that says so; an error
/// larger than that is cut (the table keeps only its first `error_bytes_max` bytes anyway).
pub fn bounded_report(mut report: Report, result_bytes_max: usize) -> Report {
    let too_large = match &report.outcome {
        Some(Ok(result)) if result.len() > result_bytes_max => Some(result.len()),
        _ => None,
    };
    if let Some(bytes) = too_large {
        report.outcome = Some(Err(format!(
            "result of {bytes} bytes exceeds the limit of {result_bytes_max} bytes (REPORT_RESULT_BYTES_MAX)"
        )));
    }
    if let Some(Err(error)) = &mut report.outcome {
        if error.len() > result_bytes_max {
            let mut cut = result_bytes_max;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
        }
    }
    report
}

/// A start report is redundant while the attempt's end waits beside it (the end records the start
/// time too).
fn drop_starts_of_finished(pending: &mut VecDeque<Report>) {
    // Most batches hold ends only (a quick attempt's start is never queued): nothing to build then.
    if pending.iter().all(|report| report.outcome.is_some()) {
        return;
    }
    let finished: HashSet<(TaskId, FencingToken)> =
        pending.iter().filter(|report| report.outcome.is_some()).map(|report| (report.task, report.token)).collect();
    if finished.is_empty() {
        return;
    }
    pending.retain(|report| report.outcome.is_some() || !finished.contains(&(report.task, report.token)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = Millis(1_000);

    fn limits() -> ReportLimits {
        ReportLimits { count_max: 3, bytes_max: 1_000, result_bytes_max: 500, retry_wait_ms: 20, writes_max: 1 }
    }

    fn started(task: u64) -> Report {
        Report { task: TaskId(task), token: FencingToken(task * 10), started_ms: 5, outcome: None }
    }

    fn finished(task: u64, result_bytes: usize) -> Report {
        Report {
            task: TaskId(task),
            token: FencingToken(task * 10),
            started_ms: 5,
            outcome: Some(Ok(vec![1; result_bytes])),
        }
    }

    fn tasks(batch: &[Report]) -> Vec<(u64, bool)> {
        batch.iter().map(|report| (report.task.0, report.outcome.is_some())).collect()
    }

    #[test]
    fn a_result_too_large_for_an_entry_becomes_a_failure_that_says_so() {
        let report = bounded_report(finished(1, REPORT_RESULT_BYTES_MAX + 1), REPORT_RESULT_BYTES_MAX);
        match report.outcome {
            Some(Err(error)) => assert!(error.contains("REPORT_RESULT_BYTES_MAX"), "{error}"),
            other => panic!("not failed: {other:?}"),
        }
        assert_eq!(bounded_report(finished(1, 10), REPORT_RESULT_BYTES_MAX).outcome, Some(Ok(vec![1; 10])));
    }

    #[test]
    fn a_huge_error_is_cut_to_fit() {
        let mut report = finished(1, 0);
        report.outcome = Some(Err("é".repeat(REPORT_RESULT_BYTES_MAX)));
        match bounded_report(report, REPORT_RESULT_BYTES_MAX).outcome {
            Some(Err(error)) => assert!(error.len() <= REPORT_RESULT_BYTES_MAX),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn an_oversized_result_is_queued_as_the_failure_of_its_attempt() {
        let mut queue = ReportQueue::new(limits());
        queue.push(finished(1, 501));
        let batch = queue.poll_batch(T0).expect("a batch");
        assert_eq!(batch.len(), 1);
        assert_eq!(
            batch[0].outcome,
            Some(Err("result of 501 bytes exceeds the limit of 500 bytes (REPORT_RESULT_BYTES_MAX)".into()))
        );
    }

    #[test]
    fn batches_are_cut_by_count_and_by_bytes() {
        // Each case: result sizes queued (None: a start report), then the batches written in turn.
        type Case = (&'static str, Vec<(u64, Option<usize>)>, Vec<Vec<u64>>);
        let cases: Vec<Case> = vec![
            ("one report", vec![(1, None)], vec![vec![1]]),
            (
                "count cuts at 3",
                (1..=7).map(|task| (task, None)).collect(),
                vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]],
            ),
            // 64 + 400 bytes each: two fit 1,000, a third does not.
            ("bytes cut", (1..=3).map(|task| (task, Some(400))).collect(), vec![vec![1, 2], vec![3]]),
            // 500 + 500 is exactly 1,000 and fits; one byte more does not.
            ("bytes fill exactly", vec![(1, Some(436)), (2, Some(436)), (3, None)], vec![vec![1, 2], vec![3]]),
            ("one byte over", vec![(1, Some(436)), (2, Some(437)), (3, None)], vec![vec![1], vec![2, 3]]),
            // A large report waits for the next batch while a small one would still have fitted: order
            // is kept, nothing overtakes.
            ("order kept", vec![(1, Some(500)), (2, Some(500)), (3, None)], vec![vec![1], vec![2, 3]]),
        ];
        for (name, queued, expected) in cases {
            let mut queue = ReportQueue::new(limits());
            for (task, result) in queued {
                queue.push(match result {
                    None => started(task),
                    Some(bytes) => finished(task, bytes),
                });
            }
            let mut written = Vec::new();
            while let Some(batch) = queue.poll_batch(T0) {
                assert!(queue.poll_batch(T0).is_none(), "{name}: one write out at a time");
                written.push(batch.iter().map(|report| report.task.0).collect::<Vec<_>>());
                queue.on_written(T0, batch, ReportWrite::Applied);
            }
            assert_eq!(written, expected, "{name}");
        }
    }

    #[test]
    fn a_lone_report_over_the_byte_bound_travels_alone() {
        let mut queue = ReportQueue::new(ReportLimits { bytes_max: 100, ..limits() });
        queue.push(finished(1, 200));
        queue.push(started(2));
        assert_eq!(tasks(&queue.poll_batch(T0).expect("a batch")), [(1, true)]);
    }

    #[test]
    fn reports_queued_while_a_write_is_out_travel_together_next() {
        let mut queue = ReportQueue::new(limits());
        queue.push(started(1));
        let first = queue.poll_batch(T0).expect("first batch");
        queue.push(started(2));
        queue.push(started(3));
        assert_eq!(queue.poll_batch(T0), None, "the first write is still out");
        queue.on_written(T0, first, ReportWrite::Applied);
        assert_eq!(tasks(&queue.poll_batch(T0).expect("second batch")), [(2, false), (3, false)]);
    }

    #[test]
    fn a_failed_write_is_retried_first_after_the_wait() {
        let mut queue = ReportQueue::new(limits());
        queue.push(started(1));
        queue.push(started(2));
        let batch = queue.poll_batch(T0).expect("a batch");
        queue.push(started(3));
        queue.on_written(T0, batch, ReportWrite::Retry);
        assert_eq!(queue.next_deadline(), Some(T0.plus(20)));
        assert_eq!(queue.poll_batch(T0.plus(19)), None, "waits out the retry wait");
        // The failed batch goes first, topped up with what came meanwhile.
        let retried = queue.poll_batch(T0.plus(20)).expect("the retry");
        assert_eq!(tasks(&retried), [(1, false), (2, false), (3, false)]);
        assert_eq!(queue.next_deadline(), None, "a write is out");
        queue.on_written(T0.plus(25), retried, ReportWrite::Applied);
        assert_eq!((queue.pending(), queue.writing(), queue.next_deadline()), (0, 0, None));
    }

    #[test]
    fn a_refused_write_is_dropped() {
        let mut queue = ReportQueue::new(limits());
        queue.push(started(1));
        let batch = queue.poll_batch(T0).expect("a batch");
        queue.on_written(T0, batch, ReportWrite::Refused);
        assert_eq!((queue.poll_batch(T0), queue.next_deadline()), (None, None));
    }

    #[test]
    fn a_start_waiting_beside_its_end_is_not_sent() {
        let mut queue = ReportQueue::new(limits());
        queue.push(started(1));
        queue.push(started(2));
        queue.push(finished(1, 0));
        assert_eq!(tasks(&queue.poll_batch(T0).expect("a batch")), [(2, false), (1, true)]);
        // A start already written stays written; its end follows alone.
        let mut queue = ReportQueue::new(limits());
        queue.push(started(1));
        let batch = queue.poll_batch(T0).expect("a batch");
        queue.push(finished(1, 0));
        queue.on_written(T0, batch, ReportWrite::Applied);
        assert_eq!(tasks(&queue.poll_batch(T0).expect("a batch")), [(1, true)]);
    }

    #[test]
    fn a_second_write_goes_out_while_the_first_commits_and_no_third() {
        let mut queue = ReportQueue::new(ReportLimits { writes_max: 2, ..limits() });
        queue.push(started(1));
        let first = queue.poll_batch(T0).expect("first write");
        queue.push(finished(2, 0));
        let second = queue.poll_batch(T0).expect("a second write while the first is out");
        assert_eq!((tasks(&first), tasks(&second)), (vec![(1, false)], vec![(2, true)]));
        queue.push(finished(3, 0));
        queue.push(finished(4, 0));
        assert_eq!(queue.poll_batch(T0), None, "two writes out at most");
        assert_eq!(queue.next_deadline(), None, "nothing to wake for: a write's outcome frees a place");
        // Outcomes come back in either order; each frees a place for the reports that waited.
        queue.on_written(T0, second, ReportWrite::Applied);
        assert_eq!(tasks(&queue.poll_batch(T0).expect("third write")), [(3, true), (4, true)]);
        assert_eq!(queue.writing(), 2);
        queue.on_written(T0, first, ReportWrite::Applied);
        assert_eq!((queue.writing(), queue.pending()), (1, 0));
    }

    #[test]
    fn a_failed_write_among_two_goes_back_first_and_holds_every_write_for_the_wait() {
        let mut queue = ReportQueue::new(ReportLimits { writes_max: 2, ..limits() });
        queue.push(started(1));
        let first = queue.poll_batch(T0).expect("first write");
        queue.push(started(2));
        let second = queue.poll_batch(T0).expect("second write");
        queue.push(finished(1, 0));
        queue.on_written(T0, first, ReportWrite::Retry);
        assert_eq!(queue.poll_batch(T0.plus(19)), None, "waits out the retry wait though a place is free");
        assert_eq!(queue.next_deadline(), Some(T0.plus(20)));
        // The failed start travels no more: its end waits beside it and records the start too.
        let retried = queue.poll_batch(T0.plus(20)).expect("the retry");
        assert_eq!(tasks(&retried), [(1, true)]);
        // The other write failing too goes back first as well; its report is sent again, after the wait.
        queue.on_written(T0.plus(21), second, ReportWrite::Retry);
        assert_eq!(queue.poll_batch(T0.plus(40)), None);
        assert_eq!(tasks(&queue.poll_batch(T0.plus(41)).expect("second retry")), [(2, false)]);
        queue.on_written(T0.plus(42), retried, ReportWrite::Applied);
        assert_eq!((queue.writing(), queue.pending()), (1, 0));
    }

    #[test]
    #[should_panic(expected = "none was out")]
    fn an_outcome_for_no_write_is_a_programmer_error() {
        ReportQueue::new(limits()).on_written(T0, Vec::new(), ReportWrite::Applied);
    }
}
