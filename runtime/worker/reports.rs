//! The worker's outgoing reports: queued, cut into batches, one write out at a time, retried.
//!
//! A core value: it imports no runtime and reads no clock. The worker's shell pushes reports in, takes
//! the next batch with [`ReportQueue::poll_batch`], writes it, and tells the queue how the write went
//! with [`ReportQueue::on_written`]. While a write is out, reports queue up and travel together in the
//! next batch, so a batch grows with load and the log sees one entry per write, not one per report.
//!
//! Invariant: at most one batch is out at a time; a batch holds at most `count_max` reports and, past
//! its first report, at most `bytes_max` bytes (about: see [`report_bytes`]), and no report carries a
//! result above `result_bytes_max` (an attempt whose result is larger fails, saying so). A batch whose
//! write failed is sent again, first, after `retry_wait_ms`: reports are idempotent because the table
//! fences them by token.
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
}

impl Default for ReportLimits {
    fn default() -> ReportLimits {
        ReportLimits {
            count_max: REPORT_BATCH_MAX,
            bytes_max: REPORT_BATCH_BYTES_MAX,
            result_bytes_max: REPORT_RESULT_BYTES_MAX,
            retry_wait_ms: REPORT_RETRY_WAIT_MS,
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

/// Reports waiting to be written, and the one write that may be out.
#[derive(Debug)]
pub struct ReportQueue {
    limits: ReportLimits,
    /// Oldest first; a batch whose write failed goes back to the front.
    pending: VecDeque<Report>,
    /// A batch is out; its outcome has not been fed back yet.
    writing: bool,
    /// No batch goes out before this (after a failed write).
    retry_at: Option<Millis>,
}

impl ReportQueue {
    /// An empty queue.
    pub fn new(limits: ReportLimits) -> ReportQueue {
        ReportQueue { limits, pending: VecDeque::new(), writing: false, retry_at: None }
    }

    /// Queues a report. A result too large to travel becomes a failure that says so.
    pub fn push(&mut self, report: Report) {
        self.pending.push_back(bounded_report(report, self.limits.result_bytes_max));
    }

    /// The next batch to write, if no write is out, the retry wait (if any) has passed and reports wait.
    /// The caller writes it and answers with [`ReportQueue::on_written`].
    pub fn poll_batch(&mut self, now: Millis) -> Option<Vec<Report>> {
        if self.writing || self.pending.is_empty() || self.retry_at.is_some_and(|at| now < at) {
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
        self.writing = true;
        Some(batch)
    }

    /// How the write of `batch` (the last one [`ReportQueue::poll_batch`] gave) went.
    ///
    /// # Panics
    /// If no write is out: the shell fed an outcome for a write it was never given.
    pub fn on_written(&mut self, now: Millis, batch: Vec<Report>, written: ReportWrite) {
        assert!(self.writing, "a report write's outcome arrived while none was out");
        self.writing = false;
        if written == ReportWrite::Retry {
            for report in batch.into_iter().rev() {
                self.pending.push_front(report);
            }
            self.retry_at = Some(now.plus(self.limits.retry_wait_ms));
        }
    }

    /// When a batch may go out next, if reports wait only for the retry wait to pass.
    pub fn next_deadline(&self) -> Option<Millis> {
        if self.writing || self.pending.is_empty() {
            return None;
        }
        self.retry_at
    }

    /// Reports waiting, not counting a batch that is out.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A batch is out.
    pub fn is_writing(&self) -> bool {
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
        ReportLimits { count_max: 3, bytes_max: 1_000, result_bytes_max: 500, retry_wait_ms: 20 }
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
        assert_eq!((queue.pending(), queue.is_writing(), queue.next_deadline()), (0, false, None));
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
    #[should_panic(expected = "none was out")]
    fn an_outcome_for_no_write_is_a_programmer_error() {
        ReportQueue::new(limits()).on_written(T0, Vec::new(), ReportWrite::Applied);
    }
}
