//! The task table's derived byte accounting: inputs of tasks that have not ended (bounded by
//! `pending_input_bytes_max`), bytes of the ended tasks kept as history (bounded by
//! `history_bytes_max`), and open tasks per kind (for the unplaceable gauge and timeout).
//!
//! Derived, never stored: a snapshot holds the tasks, and [`TableBytes::of`] recounts them after a
//! load. Every figure is a function of the tasks alone, so a recount equals the running count and
//! every replica reaches the same retention decisions.
//!
//! Invariant: a running count and a recount of the same table are equal (checked by `grid_model`).

use std::collections::{BTreeMap, VecDeque};

use super::task::{Task, TaskId, TaskSpec};

/// Byte and kind counts derived from a task table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableBytes {
    /// Input bytes of tasks that have not ended.
    pub pending_input: usize,
    /// [`Task::retained_bytes`] of every ended task still in history.
    pub history: usize,
    /// Tasks that have not ended, per kind.
    pub open_by_kind: BTreeMap<String, usize>,
}

impl TableBytes {
    /// Counts `tasks`, whose ended ones in history are `ended`.
    pub fn of(tasks: &imbl::OrdMap<TaskId, std::sync::Arc<Task>>, ended: &VecDeque<TaskId>) -> TableBytes {
        let mut bytes = TableBytes::default();
        for task in tasks.values().filter(|task| !task.state.is_terminal()) {
            bytes.on_open(&task.spec);
        }
        for task in ended.iter().filter_map(|id| tasks.get(id)) {
            bytes.on_history_in(task);
        }
        bytes
    }

    /// A task was accepted.
    pub fn on_open(&mut self, spec: &TaskSpec) {
        self.pending_input = self.pending_input.saturating_add(spec.input.len());
        // The kind is copied only the first time it opens.
        match self.open_by_kind.get_mut(&spec.kind) {
            Some(open) => *open += 1,
            None => {
                self.open_by_kind.insert(spec.kind.clone(), 1);
            }
        }
    }

    /// A task ended.
    pub fn on_close(&mut self, spec: &TaskSpec) {
        self.pending_input = self.pending_input.saturating_sub(spec.input.len());
        if let Some(open) = self.open_by_kind.get_mut(&spec.kind) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                self.open_by_kind.remove(&spec.kind);
            }
        }
    }

    /// An ended task joined the history.
    pub fn on_history_in(&mut self, task: &Task) {
        self.history = self.history.saturating_add(task.retained_bytes());
    }

    /// A task left the history.
    pub fn on_history_out(&mut self, task: &Task) {
        self.history = self.history.saturating_sub(task.retained_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::grid::command::{GridCommand, GridEffects, GridOutcome, Report};
    use crate::grid::table::{GridError, TableLimits, TaskTable};
    use crate::grid::task::{FencingToken, TaskId, TaskSpec, TaskState};
    use crate::ids::NodeId;

    fn run(table: &mut TaskTable, zxid: &mut u64, command: GridCommand) -> Result<GridOutcome, GridError> {
        *zxid += 1;
        table.apply(*zxid, *zxid * 10, &command, &mut GridEffects::default())
    }

    /// Submits one task with `input` bytes, runs it and records `result` bytes. Returns its id.
    fn finish_one(table: &mut TaskTable, zxid: &mut u64, input: usize, result: usize) -> TaskId {
        let tasks = vec![TaskSpec::new("noop", vec![1; input])];
        let outcome = run(table, zxid, GridCommand::Submit { tasks }).expect("accepted");
        let task = outcome.ids()[0];
        run(table, zxid, GridCommand::Assign { assignments: vec![(task, NodeId(1))] }).expect("assigned");
        let token = FencingToken(*zxid);
        let report = Report { task, token, started_ms: 1, outcome: Some(Ok(vec![2; result])) };
        run(table, zxid, GridCommand::Report { reports: vec![report] }).expect("reported");
        assert_eq!(table.get(task).map(|entry| entry.state), Some(TaskState::Succeeded));
        task
    }

    #[test]
    fn history_is_bounded_in_bytes_and_the_oldest_goes_first() {
        let limits = TableLimits { history_bytes_max: 5_000, ..TableLimits::default() };
        let mut table = TaskTable::new(limits, 60_000);
        let mut zxid = 0;
        let ids: Vec<TaskId> = (0..10).map(|_| finish_one(&mut table, &mut zxid, 10, 1_000)).collect();
        let kept: Vec<TaskId> = ids.iter().copied().filter(|id| table.get(*id).is_some()).collect();
        // Each holds about 1.4 kB (1 kB result plus fixed costs): three fit under 5 kB, the newest three.
        assert_eq!(kept, ids[7..].to_vec(), "the oldest ended tasks were forgotten first");
        assert!(table.history_bytes() <= 5_000, "{}", table.history_bytes());
        let retained: usize = kept.iter().map(|id| table.get(*id).expect("kept").retained_bytes()).sum();
        assert_eq!(table.history_bytes(), retained);
        // A result larger than the whole budget: the newest ended task is always kept.
        let big = finish_one(&mut table, &mut zxid, 10, 8_000);
        assert!(table.get(big).is_some());
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn pending_inputs_have_a_byte_budget() {
        let limits = TableLimits { pending_input_bytes_max: 1_000, ..TableLimits::default() };
        let mut table = TaskTable::new(limits, 60_000);
        let mut zxid = 0;
        let tasks = vec![TaskSpec::new("noop", vec![0; 400]); 2];
        let first = run(&mut table, &mut zxid, GridCommand::Submit { tasks: tasks.clone() }).expect("800 of 1000");
        assert_eq!(table.pending_input_bytes(), 800);
        let refused = run(&mut table, &mut zxid, GridCommand::Submit { tasks: tasks.clone() });
        assert!(
            matches!(&refused, Err(GridError::OverBudget { limit, max: 1_000, held: 800, asked: 800 }) if limit == "pending_input_bytes_max"),
            "{refused:?}"
        );
        assert!(refused.expect_err("refused").to_string().contains("pending_input_bytes_max"));
        assert_eq!(table.len(), 2, "all or none");
        // Ended tasks free their share.
        run(&mut table, &mut zxid, GridCommand::Cancel { tasks: first.ids() }).expect("cancelled");
        assert_eq!(table.pending_input_bytes(), 0);
        run(&mut table, &mut zxid, GridCommand::Submit { tasks }).expect("room again");
    }

    #[test]
    fn a_loaded_table_recounts_what_is_derived_and_takes_new_limits() {
        let mut table = TaskTable::new(TableLimits::default(), 60_000);
        let mut zxid = 0;
        for _ in 0..5 {
            finish_one(&mut table, &mut zxid, 100, 2_000);
        }
        run(&mut table, &mut zxid, GridCommand::Submit { tasks: vec![TaskSpec::new("rare", vec![0; 300])] })
            .expect("accepted");
        let running = table.bytes().into_owned();
        let encoded = postcard::to_stdvec(&table).expect("encodes");
        let mut loaded: TaskTable = postcard::from_bytes(&encoded).expect("decodes");
        assert_eq!(loaded.bytes().into_owned(), running, "recounted on demand");
        assert_eq!(running.pending_input, 300);
        assert_eq!(running.open_by_kind.keys().collect::<BTreeSet<_>>(), BTreeSet::from([&"rare".to_string()]));
        // The skipped limits come back as their defaults, and set_limits replaces them.
        assert_eq!(loaded.limits(), TableLimits::default());
        let lower = TableLimits { history_bytes_max: 1, ..TableLimits::default() };
        loaded.set_limits(lower);
        assert_eq!((loaded.limits(), loaded.len()), (lower, 6), "set_limits forgets nothing by itself");
        finish_one(&mut loaded, &mut zxid, 1, 1);
        assert_eq!(loaded.len(), 2, "the next ending trims the history to its newest task (plus the pending one)");
    }
}
