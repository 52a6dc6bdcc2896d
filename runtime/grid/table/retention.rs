//! The table's byte budgets and their derived counts, its limits changing at runtime, history
//! retention by count and bytes, and tasks no registered node can run. Every decision here reads only
//! the replicated table (and, for kinds, what the caller says is registered), so every replica makes
//! the same one at the same zxid.

use std::collections::BTreeMap;

use super::{GridError, TableLimits, TaskTable};
use crate::grid::budget::TableBytes;
use crate::grid::command::{GridEffects, GridOutcome};
use crate::grid::task::{Attempt, AttemptState, FencingToken, Task, TaskId, TaskState};
use crate::ids::NodeId;

impl TaskTable {
    /// Replaces the table's bounds (cluster-wide settings, after a load or when they change) and
    /// recounts everything derived. It forgets no task itself: history past a lowered bound is
    /// trimmed when the next task ends, inside an apply, so every replica trims at the same zxid.
    /// Call it only at a point of the log every replica passes with the same limits (after loading
    /// a snapshot, or while applying the entry that changed the settings).
    pub fn set_limits(&mut self, limits: TableLimits) {
        self.limits = limits;
        self.rebuild_derived();
    }

    /// Recounts the derived byte counts from the tasks. Call after deserializing a table (the counts
    /// are not stored); the table also recounts by itself on first use if nobody did.
    pub fn rebuild_derived(&mut self) {
        self.bytes = Some(TableBytes::of(&self.tasks, &self.ended));
    }

    /// The derived counts, recounted first if the table was just loaded.
    pub(super) fn bytes_mut(&mut self) -> &mut TableBytes {
        self.bytes.get_or_insert_with(|| TableBytes::of(&self.tasks, &self.ended))
    }

    /// The derived counts (a recount if the table was just loaded and never applied since).
    pub fn bytes(&self) -> std::borrow::Cow<'_, TableBytes> {
        match &self.bytes {
            Some(bytes) => std::borrow::Cow::Borrowed(bytes),
            None => std::borrow::Cow::Owned(TableBytes::of(&self.tasks, &self.ended)),
        }
    }

    /// Input bytes of the tasks that have not ended.
    pub fn pending_input_bytes(&self) -> usize {
        self.bytes().pending_input
    }

    /// Bytes of the ended tasks kept as history.
    pub fn history_bytes(&self) -> usize {
        self.bytes().history
    }

    pub(super) fn check_pending_budget(&mut self, asked: usize) -> Result<(), GridError> {
        let max = self.limits.pending_input_bytes_max;
        let held = self.bytes_mut().pending_input;
        if held.saturating_add(asked) > max {
            return Err(GridError::OverBudget {
                limit: "pending_input_bytes_max".into(),
                max: max as u64,
                held: held as u64,
                asked: asked as u64,
            });
        }
        Ok(())
    }

    /// A task reached a terminal state: its input no longer counts as pending.
    pub(super) fn on_closed(&mut self, task: TaskId) {
        // The task's `Arc`, not a copy of its spec (input included): this runs for every task that ends.
        let Some(entry) = self.tasks.get(&task).cloned() else { return };
        self.bytes_mut().on_close(&entry.spec);
    }

    /// Forgets the oldest ended tasks while the history is over its count or its bytes (the newest
    /// ended task is always kept, so its waiters can read how it ended).
    pub(super) fn retain_history(&mut self) {
        loop {
            let over_count = self.ended.len() > self.limits.history_max;
            let over_bytes = self.ended.len() > 1 && self.bytes_mut().history > self.limits.history_bytes_max;
            if !over_count && !over_bytes {
                break;
            }
            let Some(old) = self.ended.pop_front() else { break };
            if let Some(task) = self.tasks.remove(&old) {
                self.bytes_mut().on_history_out(&task);
            }
        }
    }

    /// Kinds with tasks that have not ended, with how many.
    pub fn open_kinds(&self) -> BTreeMap<String, usize> {
        self.bytes().open_by_kind.clone()
    }

    /// Pending tasks of a kind `registered` says no node runs, waiting for at least `after_ms` at
    /// `now_ms` (since submission, their last attempt's end or their not-before time), at most `max`.
    pub fn unplaceable_overdue(
        &self,
        now_ms: u64,
        after_ms: u64,
        registered: impl Fn(&str) -> bool,
        max: usize,
    ) -> Vec<TaskId> {
        let kinds = self.bytes();
        if kinds.open_by_kind.keys().all(|kind| registered(kind)) {
            return Vec::new();
        }
        self.tasks
            .values()
            .filter(|task| task.state == TaskState::Pending && !registered(&task.spec.kind))
            .filter(|task| waiting_since(task).saturating_add(after_ms) <= now_ms)
            .map(|task| task.id)
            .take(max)
            .collect()
    }

    /// Fails `tasks` that are still pending, of a kind `registered` says no node runs, and have waited
    /// `after_ms` by `now_ms`; others are refused (counted). The failure is recorded as an attempt on
    /// node 0 (the grid itself) with the reason. Every check reads only the replicated state, so
    /// every replica decides the same.
    pub fn fail_unplaceable(
        &mut self,
        (tasks, after_ms): (&[TaskId], u64),
        registered: impl Fn(&str) -> bool,
        (zxid, now_ms): (u64, u64),
        effects: &mut GridEffects,
    ) -> GridOutcome {
        let (mut applied, mut refused) = (0u32, 0u32);
        for &task in tasks {
            let due = self.tasks.get(&task).is_some_and(|entry| {
                entry.state == TaskState::Pending
                    && !registered(&entry.spec.kind)
                    && waiting_since(entry).saturating_add(after_ms) <= now_ms
            });
            if !due || !self.queue.remove(task) {
                refused += 1;
                continue;
            }
            let entry = std::sync::Arc::make_mut(self.tasks.get_mut(&task).expect("checked above"));
            let error = format!("unplaceable: no registered node runs task kind {:?} ({after_ms} ms)", entry.spec.kind);
            entry.attempts.push(Attempt {
                number: entry.attempts.len() as u32 + 1,
                node: NodeId(0),
                token: FencingToken(zxid),
                state: AttemptState::Failed,
                assigned_ms: now_ms,
                started_ms: None,
                ended_ms: Some(now_ms),
                error: Some(error),
            });
            entry.state = TaskState::Failed;
            self.on_closed(task);
            self.note_state(task, TaskState::Failed, effects);
            applied += 1;
        }
        GridOutcome::Recorded { applied, refused }
    }
}

/// Since when a pending task has waited to be placed: its submission, its last attempt's end or its
/// not-before time, whichever is latest.
fn waiting_since(task: &Task) -> u64 {
    let ended = task.attempts.last().and_then(|attempt| attempt.ended_ms).unwrap_or(0);
    task.submitted_ms.max(ended).max(task.spec.not_before_ms)
}
