//! The grid's metrics: task throughput by outcome and kind, attempts assigned and lost, retries,
//! queue depth by priority band, wait and run time. Every replica counts these as it applies, so
//! each node reports the whole cluster's.
//!
//! Label values come from closed sets only, so no submitter can grow the number of series:
//! - `kind`: a task kind that some registered node advertises, admitted the first time it is seen,
//!   at most [`KIND_LABELS_MAX`] of them per process; any other kind (one no registered node runs, or
//!   one past the bound) is `other`. A task's kind is any string a submitter writes, and every
//!   distinct label value is a series held for good by this process and by Prometheus; the kinds
//!   nodes advertise are compiled into their binaries, so they are few and the operator's.
//! - `priority`: the band of a task's priority, [`PriorityBand`], never the raw `i32`.
//! - `outcome`: the terminal states.
//!
//! [`KindLabels`] and [`PriorityBand`] are the deterministic part (tested here); the rest records.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::grid::command::GridEffects;
use crate::grid::task::{TaskId, TaskState};
pub use crate::limits::KIND_LABELS_MAX;
use crate::state::replicated::ReplicatedState;

/// The `kind` label of a kind that gets none of its own.
pub const KIND_OTHER: &str = "other";

/// The band a task's priority falls in, the `priority` label of `gridkeeper_grid_queue_depth`:
/// below zero `low`, zero (the default) `normal`, above zero `high`. The one place the bands are
/// defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PriorityBand {
    /// Below zero: background work.
    Low,
    /// Zero, what a submit without a priority gets.
    Normal,
    /// Above zero.
    High,
}

impl PriorityBand {
    /// Every band, in label order.
    pub const ALL: [PriorityBand; 3] = [PriorityBand::Low, PriorityBand::Normal, PriorityBand::High];

    /// The band of `priority`.
    pub fn of(priority: i32) -> PriorityBand {
        match priority {
            ..0 => PriorityBand::Low,
            0 => PriorityBand::Normal,
            1.. => PriorityBand::High,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            PriorityBand::Low => "low",
            PriorityBand::Normal => "normal",
            PriorityBand::High => "high",
        }
    }
}

/// The kinds that have a `kind` label of their own: at most `max`, each admitted the first time a
/// registered kind is seen, kept for the life of the process (its series exist for good anyway).
#[derive(Debug, Clone)]
pub struct KindLabels {
    admitted: BTreeSet<String>,
    max: usize,
}

impl KindLabels {
    /// No kind admitted yet; room for `max`.
    pub const fn new(max: usize) -> KindLabels {
        KindLabels { admitted: BTreeSet::new(), max }
    }

    /// The label for `kind`: itself if admitted, or admitted now because `registered` says a
    /// registered node runs it and there is room; [`KIND_OTHER`] otherwise. `registered` is asked
    /// only for a kind not admitted yet while there is room.
    pub fn label(&mut self, kind: &str, registered: impl FnOnce(&str) -> bool) -> String {
        if self.admitted.contains(kind) {
            return kind.to_string();
        }
        if self.admitted.len() < self.max && registered(kind) {
            self.admitted.insert(kind.to_string());
            return kind.to_string();
        }
        KIND_OTHER.to_string()
    }

    /// Kinds admitted.
    pub fn len(&self) -> usize {
        self.admitted.len()
    }

    /// Whether none is admitted.
    pub fn is_empty(&self) -> bool {
        self.admitted.is_empty()
    }
}

/// One set per process, as the recorder is (nodes of a `LocalCluster` share both).
static KIND_LABELS: Mutex<KindLabels> = Mutex::new(KindLabels::new(KIND_LABELS_MAX));

/// The `kind` label of `task` in `state`.
fn kind_label(state: &ReplicatedState, task: TaskId) -> String {
    let Some(kind) = state.grid.get(task).map(|task| task.spec.kind.as_str()) else {
        return KIND_OTHER.to_string();
    };
    let mut labels = KIND_LABELS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    labels.label(kind, |kind| state.registered_kinds().contains(kind))
}

/// The label of a terminal state, the `outcome` of `gridkeeper_grid_completed_total`.
fn outcome_label(state: TaskState) -> &'static str {
    match state {
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::TimedOut => "timed_out",
        _ => "cancelled",
    }
}

/// Registers the unlabelled counters at zero, so a fresh node exports them before the first event.
pub fn register() {
    for name in [
        "gridkeeper_grid_submitted_total",
        "gridkeeper_grid_retries_total",
        "gridkeeper_grid_rejected_reports_total",
        "gridkeeper_grid_stolen_total",
        "gridkeeper_grid_placed_at_submission_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// Counts what one applied entry did to the table.
pub fn record_applied(effects: &GridEffects, state: &ReplicatedState) {
    if effects.submitted > 0 {
        metrics::counter!("gridkeeper_grid_submitted_total").increment(u64::from(effects.submitted));
    }
    for &(task, _, _) in &effects.assigned {
        metrics::counter!("gridkeeper_grid_assigned_total", "kind" => kind_label(state, task)).increment(1);
    }
    if effects.retried > 0 {
        metrics::counter!("gridkeeper_grid_retries_total").increment(u64::from(effects.retried));
    }
    for &(_, task) in &effects.lost {
        metrics::counter!("gridkeeper_grid_reassignments_total", "kind" => kind_label(state, task)).increment(1);
    }
    if !effects.stolen.is_empty() {
        // Work stealing: queued attempts moved off a node with a far longer queue.
        metrics::counter!("gridkeeper_grid_stolen_total").increment(effects.stolen.len() as u64);
    }
    if effects.refused > 0 {
        metrics::counter!("gridkeeper_grid_rejected_reports_total").increment(u64::from(effects.refused));
    }
    for &(task, task_state) in &effects.ended {
        let kind = kind_label(state, task);
        metrics::counter!("gridkeeper_grid_completed_total", "outcome" => outcome_label(task_state), "kind" => kind.clone())
            .increment(1);
        record_times(state, task, kind);
    }
}

/// Records an ended task's wait (submission to its first attempt's start) and run (its last
/// attempt's start to its end), in seconds, from the replicated timestamps.
fn record_times(state: &ReplicatedState, task: TaskId, kind: String) {
    let Some(entry) = state.grid.get(task) else { return };
    if let Some(started) = entry.attempts.first().and_then(|attempt| attempt.started_ms) {
        let wait = started.saturating_sub(entry.submitted_ms) as f64 / 1e3;
        metrics::histogram!("gridkeeper_grid_wait_seconds", "kind" => kind.clone()).record(wait);
    }
    if let Some((started, ended)) = entry.attempts.last().and_then(|attempt| attempt.started_ms.zip(attempt.ended_ms)) {
        let run = ended.saturating_sub(started) as f64 / 1e3;
        metrics::histogram!("gridkeeper_grid_run_seconds", "kind" => kind).record(run);
    }
}

/// The table's gauges, on every node's metrics tick: tasks held, and tasks queued by priority band
/// (every band set, so one that emptied reads 0).
pub fn record_table(state: &ReplicatedState) {
    metrics::gauge!("gridkeeper_grid_tasks").set(state.grid.len() as f64);
    let mut depth = [0usize; PriorityBand::ALL.len()];
    for (priority, queued) in state.grid.depth_by_priority() {
        depth[PriorityBand::of(priority) as usize] += queued;
    }
    for band in PriorityBand::ALL {
        metrics::gauge!("gridkeeper_grid_queue_depth", "priority" => band.label()).set(depth[band as usize] as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_fall_in_three_bands_split_at_zero() {
        let cases = [(i32::MIN, "low"), (-1, "low"), (0, "normal"), (1, "high"), (i32::MAX, "high")];
        for (priority, label) in cases {
            assert_eq!(PriorityBand::of(priority).label(), label, "priority {priority}");
        }
        let labels: Vec<&str> = PriorityBand::ALL.iter().map(|band| band.label()).collect();
        assert_eq!(labels, ["low", "normal", "high"]);
        for (index, band) in PriorityBand::ALL.iter().enumerate() {
            assert_eq!(*band as usize, index, "ALL is in discriminant order (record_table indexes by it)");
        }
    }

    #[test]
    fn kinds_past_the_bound_or_unregistered_share_the_other_label() {
        let mut labels = KindLabels::new(3);
        let registered = |kind: &str| kind.starts_with("ok-");
        assert_eq!(labels.label("ok-1", registered), "ok-1");
        assert_eq!(labels.label("typo", registered), KIND_OTHER, "no registered node runs it");
        assert_eq!(labels.label("ok-2", registered), "ok-2");
        assert_eq!(labels.label("ok-3", registered), "ok-3");
        assert_eq!(labels.label("ok-4", registered), KIND_OTHER, "past the bound");
        assert_eq!(labels.len(), 3);
        // An admitted kind keeps its label, even once no node advertises it any more.
        assert_eq!(labels.label("ok-1", |_| false), "ok-1");
        // A flood of distinct submitted kinds never grows the set.
        for n in 0..10_000 {
            assert_eq!(labels.label(&format!("junk-{n}"), registered), KIND_OTHER);
        }
        assert_eq!(labels.len(), 3);
    }

    #[test]
    fn the_registry_is_asked_only_while_there_is_room() {
        let mut labels = KindLabels::new(1);
        assert_eq!(labels.label("a", |_| true), "a");
        assert_eq!(labels.label("a", |_| panic!("an admitted kind needs no look-up")), "a");
        assert_eq!(labels.label("b", |_| panic!("a full set needs no look-up")), KIND_OTHER);
        assert!(!labels.is_empty());
    }
}
