//! One node's merged submissions: the shell of [`crate::grid::merge`]. A submission that finds a
//! free slot is proposed at once by its own caller; one that has to wait is later handed, with the
//! others that waited, to one of the waiting callers, which proposes them all as one entry and answers
//! each caller with its own ids.
//!
//! No task of its own and no timer: a batch is always driven by a caller that waits for it anyway,
//! and a caller that goes away hands its slot on as it drops (see `Slot`).
//!
//! Invariants:
//! - every caller gets exactly one answer: its ids, the refusal of its own tasks, or, if its batch's
//!   driver was dropped mid-write, `outcome unknown`;
//! - one caller's refused tasks never refuse another caller's: a merged entry the table refuses is
//!   proposed again one submission at a time (nothing of a refused entry was applied);
//! - a caller that went away before its batch was proposed has none of its tasks proposed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::api::{ApiError, ErrorCode};
use crate::consensus::Coordinator;
use crate::grid::merge::{Admit, BatchBounds, SubmitMerge, SubmitSize};
use crate::grid::task::{TaskId, TaskSpec};
use crate::grid::GridCommand;

/// Merged entries proposed by any node of this process, and the submissions they carried: for
/// benchmarks that print submissions per entry. Nodes export them as
/// `gridkeeper_grid_submit_entries_total` and `gridkeeper_grid_submit_merged_total`.
static ENTRIES: AtomicU64 = AtomicU64::new(0);
static MERGED: AtomicU64 = AtomicU64::new(0);

/// Submission entries proposed through the merge by any node of this process so far, and the
/// submissions they held.
pub fn merged_totals() -> (u64, u64) {
    (ENTRIES.load(Ordering::Relaxed), MERGED.load(Ordering::Relaxed))
}

/// A submission in the merge: its tasks and where its answer goes (`None`: the caller driving the
/// batch, which answers itself).
#[derive(Debug)]
struct Waiter {
    specs: Vec<TaskSpec>,
    reply: Option<oneshot::Sender<Turn>>,
}

/// What a waiting caller hears.
#[derive(Debug)]
enum Turn {
    /// Its answer.
    Done(Result<Vec<TaskId>, ApiError>),
    /// A slot and the batch to propose in it, its own submission among them.
    Drive(Slot),
}

/// The merge of one node's small submissions.
#[derive(Debug, Default)]
pub struct Submissions {
    merge: Arc<Mutex<SubmitMerge<Waiter>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lost() -> ApiError {
    ApiError::new(
        ErrorCode::OutcomeUnknown,
        "the write carrying this submission was abandoned: its tasks may have been accepted",
    )
}

/// Whether someone still waits for `waiter`'s answer.
fn live(waiter: &Waiter) -> bool {
    waiter.reply.as_ref().is_some_and(|reply| !reply.is_closed())
}

impl Submissions {
    /// Submits `specs` (of `size`, admitted by `bounds`), merged with the node's other small
    /// submissions when its slots are busy; returns their ids in order.
    ///
    /// # Errors
    /// [`ErrorCode::Overloaded`] if too much waits already (nothing applied); otherwise as
    /// [`super::tasks::submit`].
    ///
    /// # Cancel safety
    /// Dropped while waiting, its tasks are not proposed. Dropped while driving a batch, the slot
    /// passes on and the batch's other callers hear `outcome unknown`.
    pub async fn submit(
        &self,
        coordinator: &Coordinator,
        specs: Vec<TaskSpec>,
        size: SubmitSize,
        bounds: BatchBounds,
    ) -> Result<Vec<TaskId>, ApiError> {
        let (reply, mut answer) = oneshot::channel();
        let admitted = lock(&self.merge).on_submit(Waiter { specs, reply: Some(reply) }, size);
        let (slot, batch) = match admitted {
            Admit::Propose(batch) => {
                (Slot { merge: self.merge.clone(), bounds, batch: Vec::new(), armed: true }, batch)
            }
            Admit::Overloaded => {
                metrics::counter!("gridkeeper_grid_submit_overloaded_total").increment(1);
                return Err(ApiError::new(
                    ErrorCode::Overloaded,
                    "this node holds as many submissions waiting for an entry as it may",
                ));
            }
            Admit::Wait => match (&mut answer).await {
                Ok(Turn::Done(result)) => return result,
                Ok(Turn::Drive(mut slot)) => {
                    let batch = std::mem::take(&mut slot.batch);
                    (slot, batch)
                }
                Err(_) => return Err(lost()),
            },
        };
        let own = propose(coordinator, batch).await;
        drop(slot);
        match own {
            Some(result) => result,
            None => match answer.await {
                Ok(Turn::Done(result)) => result,
                Ok(Turn::Drive(_)) | Err(_) => Err(lost()),
            },
        }
    }
}

/// A batch slot, held by the caller driving it or on its way to one, with the batch it has not
/// proposed yet. Dropped (its write returned, or its holder went away), it hands the rest of its
/// batch, or else the next waiting batch, to one of that batch's callers still listening, or frees
/// the slot.
#[derive(Debug)]
struct Slot {
    merge: Arc<Mutex<SubmitMerge<Waiter>>>,
    bounds: BatchBounds,
    /// Not proposed yet.
    batch: Vec<Waiter>,
    /// Whether dropping it passes the slot on (a slot sent back undelivered is not).
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.retain(live);
        loop {
            if batch.is_empty() {
                batch = lock(&self.merge).on_done(self.bounds, live);
                if batch.is_empty() {
                    return;
                }
            }
            // The first caller of the batch drives it; one that left as it was chosen leaves with
            // its tasks unproposed.
            let reply = batch[0].reply.take().expect("a waiting submission has a reply");
            let slot = Slot { merge: self.merge.clone(), bounds: self.bounds, batch, armed: true };
            match reply.send(Turn::Drive(slot)) {
                Ok(()) => return,
                Err(Turn::Drive(mut back)) => {
                    back.armed = false;
                    batch = std::mem::take(&mut back.batch);
                    batch.remove(0);
                }
                Err(Turn::Done(_)) => unreachable!("a slot was sent"),
            }
        }
    }
}

/// Proposes `batch` as one entry and answers its callers; returns the answer of the driving
/// caller (the one without a reply), if it is in the batch.
async fn propose(coordinator: &Coordinator, batch: Vec<Waiter>) -> Option<Result<Vec<TaskId>, ApiError>> {
    ENTRIES.fetch_add(1, Ordering::Relaxed);
    MERGED.fetch_add(batch.len() as u64, Ordering::Relaxed);
    metrics::counter!("gridkeeper_grid_submit_entries_total").increment(1);
    metrics::counter!("gridkeeper_grid_submit_merged_total").increment(batch.len() as u64);
    let merged = batch.len() > 1;
    let total = batch.iter().map(|waiter| waiter.specs.len()).sum();
    let mut tasks = Vec::with_capacity(total);
    let mut callers = Vec::with_capacity(batch.len());
    for Waiter { specs, reply } in batch {
        // A merged entry may be refused whole for one caller's tasks; each is then proposed alone.
        let copy = if merged { specs.clone() } else { Vec::new() };
        callers.push((specs.len(), copy, reply));
        tasks.extend(specs);
    }
    let mut own = None;
    let mut answer = |reply: Option<oneshot::Sender<Turn>>, result: Result<Vec<TaskId>, ApiError>| match reply {
        Some(reply) => {
            let _ = reply.send(Turn::Done(result));
        }
        None => own = Some(result),
    };
    match super::tasks::write(coordinator, GridCommand::Submit { tasks }).await {
        Ok(outcome) => {
            let ids = outcome.ids();
            if ids.len() != total {
                let error = ApiError::unexpected(outcome);
                for (_, _, reply) in callers {
                    answer(reply, Err(error.clone()));
                }
            } else {
                let mut ids = ids.into_iter();
                for (count, _, reply) in callers {
                    answer(reply, Ok(ids.by_ref().take(count).collect()));
                }
            }
        }
        Err(error) if merged && !matches!(error.code, ErrorCode::Unavailable | ErrorCode::OutcomeUnknown) => {
            for (_, specs, reply) in callers {
                let alone = super::tasks::write(coordinator, GridCommand::Submit { tasks: specs }).await;
                answer(reply, alone.map(|outcome| outcome.ids()));
            }
        }
        Err(error) => {
            for (_, _, reply) in callers {
                answer(reply, Err(error.clone()));
            }
        }
    }
    own
}
