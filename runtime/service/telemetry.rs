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

use std::collections::{BTreeMap, BTreeSet};
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

/// The `kind` label of a task of `kind` (`None`: not in the table) in `state`.
fn kind_label(labels: &mut KindLabels, state: &ReplicatedState, kind: Option<&str>) -> String {
    match kind {
        Some(kind) => labels.label(kind, |kind| state.registered_kinds().contains(kind)),
        None => KIND_OTHER.to_string(),
    }
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

/// What one entry did to the tasks of one kind, summed before it is recorded.
#[derive(Default)]
struct KindTally {
    assigned: u64,
    lost: u64,
    /// Ended tasks by outcome label.
    ended: BTreeMap<&'static str, u64>,
    /// Ended tasks' wait and run times (seconds).
    waits: Vec<f64>,
    runs: Vec<f64>,
}

/// Counts what one applied entry did to the table. Per-task events are summed by kind first, so an
/// entry of a thousand tasks updates each labelled series once, not a thousand times (the registry
/// lookup and the label's allocation cost more than the update); every replica does this for every
/// task it applies.
pub fn record_applied(effects: &GridEffects, state: &ReplicatedState) {
    if effects.submitted > 0 {
        metrics::counter!("gridkeeper_grid_submitted_total").increment(u64::from(effects.submitted));
    }
    if effects.retried > 0 {
        metrics::counter!("gridkeeper_grid_retries_total").increment(u64::from(effects.retried));
    }
    if !effects.stolen.is_empty() {
        // Work stealing: queued attempts moved off a node with a far longer queue.
        metrics::counter!("gridkeeper_grid_stolen_total").increment(effects.stolen.len() as u64);
    }
    if effects.refused > 0 {
        metrics::counter!("gridkeeper_grid_rejected_reports_total").increment(u64::from(effects.refused));
    }
    if effects.assigned.is_empty() && effects.lost.is_empty() && effects.ended.is_empty() {
        return;
    }
    let mut tallies: BTreeMap<Option<&str>, KindTally> = BTreeMap::new();
    let kind_of = |task: TaskId| state.grid.get(task).map(|entry| entry.spec.kind.as_str());
    for &(task, _, _) in &effects.assigned {
        tallies.entry(kind_of(task)).or_default().assigned += 1;
    }
    for &(_, task) in &effects.lost {
        tallies.entry(kind_of(task)).or_default().lost += 1;
    }
    for &(task, task_state) in &effects.ended {
        let Some(entry) = state.grid.get(task) else {
            *tallies.entry(None).or_default().ended.entry(outcome_label(task_state)).or_default() += 1;
            continue;
        };
        let tally = tallies.entry(Some(entry.spec.kind.as_str())).or_default();
        *tally.ended.entry(outcome_label(task_state)).or_default() += 1;
        // Wait: submission to the first attempt's start; run: the last attempt's start to its end.
        if let Some(started) = entry.attempts.first().and_then(|attempt| attempt.started_ms) {
            tally.waits.push(started.saturating_sub(entry.submitted_ms) as f64 / 1e3);
        }
        if let Some((started, ended)) =
            entry.attempts.last().and_then(|attempt| attempt.started_ms.zip(attempt.ended_ms))
        {
            tally.runs.push(ended.saturating_sub(started) as f64 / 1e3);
        }
    }
    let labelled: Vec<(String, KindTally)> = {
        let mut labels = KIND_LABELS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tallies.into_iter().map(|(kind, tally)| (kind_label(&mut labels, state, kind), tally)).collect()
    };
    for (kind, tally) in labelled {
        if tally.assigned > 0 {
            metrics::counter!("gridkeeper_grid_assigned_total", "kind" => kind.clone()).increment(tally.assigned);
        }
        if tally.lost > 0 {
            metrics::counter!("gridkeeper_grid_reassignments_total", "kind" => kind.clone()).increment(tally.lost);
        }
        for (outcome, count) in tally.ended {
            metrics::counter!("gridkeeper_grid_completed_total", "outcome" => outcome, "kind" => kind.clone())
                .increment(count);
        }
        if !tally.waits.is_empty() {
            let histogram = metrics::histogram!("gridkeeper_grid_wait_seconds", "kind" => kind.clone());
            tally.waits.into_iter().for_each(|wait| histogram.record(wait));
        }
        if !tally.runs.is_empty() {
            let histogram = metrics::histogram!("gridkeeper_grid_run_seconds", "kind" => kind);
            tally.runs.into_iter().for_each(|run| histogram.record(run));
        }
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
