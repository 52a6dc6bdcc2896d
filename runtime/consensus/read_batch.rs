//! Linearizable reads that wait for a read index, batched: one round (a request to the leader,
//! answered from its lease or a quorum round) serves every read queued when it starts.
//!
//! Invariant: a round asks for its index only after it took its reads, so a read arriving during a
//! round waits for the next one and its index is never older than its arrival.
//!
//! A reader that finds a round free runs it itself, in its own task, so a lone read costs no
//! hand-off to a batching task and back; when every round is busy, the coordinator's batching task
//! runs the next one as a permit frees. A round whose runner is cancelled puts the reads it took
//! back in the queue and wakes the batching task, so no other read is lost with it.
//!
//! Bounds: [`READ_INDEX_WAITERS_MAX`] queued reads (more are refused), [`READ_INDEX_ROUNDS_MAX`]
//! rounds in flight.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use super::request::CoordinatorError;

/// Reads waiting for a read index at most; more are refused as unavailable.
pub const READ_INDEX_WAITERS_MAX: usize = 100_000;
/// Read-index rounds in flight at once.
pub const READ_INDEX_ROUNDS_MAX: usize = 4;

type Waiter = oneshot::Sender<Result<u64, CoordinatorError>>;
/// Where a queued read's index (or its round's error) arrives.
pub(super) type Answer = oneshot::Receiver<Result<u64, CoordinatorError>>;

/// The queue of reads waiting for a read index, and the rounds that serve them.
pub(super) struct ReadBatch {
    waiters: Mutex<Vec<Waiter>>,
    rounds: Arc<Semaphore>,
    /// Wakes the batching task: reads were queued while every round was busy.
    pub(super) wake: Notify,
}

impl Default for ReadBatch {
    fn default() -> ReadBatch {
        ReadBatch {
            waiters: Mutex::new(Vec::new()),
            rounds: Arc::new(Semaphore::new(READ_INDEX_ROUNDS_MAX)),
            wake: Notify::new(),
        }
    }
}

impl ReadBatch {
    fn waiters(&self) -> MutexGuard<'_, Vec<Waiter>> {
        self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a read; its read index (or the round's error) arrives on the receiver. Returns a
    /// round for the caller to run if one was free, else wakes the batching task.
    ///
    /// # Errors
    /// [`CoordinatorError::Unavailable`] past [`READ_INDEX_WAITERS_MAX`].
    pub(super) fn enqueue(self: &Arc<Self>) -> Result<(Answer, Option<Round>), CoordinatorError> {
        let (sender, receiver) = oneshot::channel();
        {
            let mut waiters = self.waiters();
            if waiters.len() >= READ_INDEX_WAITERS_MAX {
                return Err(CoordinatorError::Unavailable("too many reads waiting".into()));
            }
            waiters.push(sender);
        }
        match self.rounds.clone().try_acquire_owned() {
            Ok(permit) => Ok((receiver, self.take(permit))),
            Err(_) => {
                self.wake.notify_one();
                Ok((receiver, None))
            }
        }
    }

    /// Waits for a free round and takes the reads queued by then; `None` if there were none.
    pub(super) async fn next_round(self: &Arc<Self>) -> Option<Round> {
        let permit = self.rounds.clone().acquire_owned().await.ok()?;
        self.take(permit)
    }

    fn take(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Option<Round> {
        let waiters = std::mem::take(&mut *self.waiters());
        (!waiters.is_empty()).then(|| Round { batch: self.clone(), waiters, _permit: permit })
    }
}

/// One round: the reads it took, answered together by [`Round::finish`].
pub(super) struct Round {
    batch: Arc<ReadBatch>,
    waiters: Vec<Waiter>,
    _permit: OwnedSemaphorePermit,
}

impl Round {
    /// Reads this round serves.
    pub(super) fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Answers every read of the round with `outcome`.
    pub(super) fn finish(mut self, outcome: Result<u64, CoordinatorError>) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(outcome.clone());
        }
    }
}

impl Drop for Round {
    /// Unanswered (the runner was cancelled): the reads go back to the queue for another round.
    fn drop(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let mut waiters = self.batch.waiters();
        waiters.extend(self.waiters.drain(..).filter(|waiter| !waiter.is_closed()));
        drop(waiters);
        self.batch.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_read_runs_its_own_round_and_a_busy_batch_queues_for_the_next() {
        let batch = Arc::new(ReadBatch::default());
        let (mut first, round) = batch.enqueue().expect("queued");
        let round = round.expect("a round was free");
        assert_eq!(round.len(), 1);
        // Every other round busy: the next read waits in the queue for the batching task.
        let busy: Vec<_> =
            (1..READ_INDEX_ROUNDS_MAX).map(|_| batch.rounds.clone().try_acquire_owned().expect("free")).collect();
        let (mut second, none) = batch.enqueue().expect("queued");
        assert!(none.is_none());
        round.finish(Ok(7));
        assert_eq!(first.try_recv().expect("answered").expect("index"), 7);
        assert!(second.try_recv().is_err(), "the second read is not answered by the first round");
        drop(busy);
        let next = batch.take(batch.rounds.clone().try_acquire_owned().expect("free")).expect("queued read");
        next.finish(Ok(9));
        assert_eq!(second.try_recv().expect("answered").expect("index"), 9);
    }

    #[test]
    fn a_cancelled_round_puts_its_reads_back() {
        let batch = Arc::new(ReadBatch::default());
        let (_mine, round) = batch.enqueue().expect("queued");
        let round = round.expect("free");
        // A second read takes a round of its own, which is dropped unanswered at once.
        let (mut other, _) = batch.enqueue().expect("queued");
        drop(round);
        let again = batch.take(batch.rounds.clone().try_acquire_owned().expect("free")).expect("put back");
        assert_eq!(again.len(), 2, "the dropped round's read and the later one");
        again.finish(Ok(3));
        assert_eq!(other.try_recv().expect("answered").expect("index"), 3);
    }
}
