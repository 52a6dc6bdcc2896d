//! Unit tests of `table.rs`.
use super::*;
use crate::grid::task::{RetryPolicy, Strategy};

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);

fn table() -> TaskTable {
    TaskTable::new(TableLimits::default(), 60_000)
}

fn spec(attempts: u32) -> TaskSpec {
    let mut spec = TaskSpec::new("noop", vec![1]);
    spec.retry = RetryPolicy { attempts_max: attempts, backoff_ms: 100 };
    spec.timeout_ms = 1_000;
    spec
}

#[test]
fn a_task_runs_once_to_success() {
    let mut table = table();
    table.submit(TaskId(1), spec(3), 0).expect("accepted");
    table.on_assigned(TaskId(1), N1, FencingToken(10), 1).expect("assign");
    assert_eq!(table.running_on(N1), 1);
    table.on_started(TaskId(1), FencingToken(10), 2).expect("start");
    assert_eq!(table.on_finished(TaskId(1), FencingToken(10), Ok(b"ok".to_vec()), 3), Ok(TaskState::Succeeded));
    let task = table.get(TaskId(1)).expect("known");
    assert_eq!((task.state, task.result.as_deref(), task.attempts.len()), (TaskState::Succeeded, Some(&b"ok"[..]), 1));
    assert_eq!(table.running_on(N1), 0);
    // A duplicate report of the same completion is refused: recorded exactly once.
    assert!(matches!(table.on_finished(TaskId(1), FencingToken(10), Ok(vec![]), 4), Err(GridError::StaleToken { .. })));
}

#[test]
fn failures_retry_with_backoff_then_fail() {
    let mut table = table();
    table.submit(TaskId(1), spec(2), 0).expect("accepted");
    table.on_assigned(TaskId(1), N1, FencingToken(10), 0).expect("assign");
    assert_eq!(table.on_finished(TaskId(1), FencingToken(10), Err("boom".into()), 50), Ok(TaskState::Pending));
    assert_eq!(table.pending(), 1);
    assert!(
        table.plan_dispatch(100, &mut Placement::new(Strategy::LeastLoaded, 0), &mut nodes(), 10).is_empty(),
        "backoff holds it"
    );
    // A plan made before the failure and applied during the backoff (a deposed leader's) is refused.
    assert!(table.on_assigned(TaskId(1), N2, FencingToken(15), 100).is_err(), "backoff holds it at apply too");
    table.on_tick(150);
    let plan = table.plan_dispatch(150, &mut Placement::new(Strategy::LeastLoaded, 0), &mut nodes(), 10);
    assert_eq!(plan, vec![(TaskId(1), N1)]);
    table.on_assigned(TaskId(1), N2, FencingToken(20), 150).expect("assign again");
    assert_eq!(table.on_timed_out(TaskId(1), FencingToken(20), 2_000), Ok(TaskState::TimedOut));
    let task = table.get(TaskId(1)).expect("known");
    assert_eq!(
        task.attempts.iter().map(|a| a.state).collect::<Vec<_>>(),
        vec![AttemptState::Failed, AttemptState::TimedOut]
    );
    assert_eq!(task.attempts[0].error.as_deref(), Some("boom"));
}

fn nodes() -> Vec<NodeLoad> {
    [1, 2]
        .into_iter()
        .map(|id| NodeLoad {
            node: NodeId(id),
            running: 0,
            slots: 1,
            prefetch: 0,
            weight: 1,
            kinds: BTreeSet::from(["noop".to_string()]),
            draining: false,
        })
        .collect()
}

#[test]
fn a_lost_node_requeues_its_work_and_fences_the_zombie() {
    let mut table = table();
    table.submit(TaskId(1), spec(1), 0).expect("accepted");
    table.on_assigned(TaskId(1), N1, FencingToken(10), 0).expect("assign");
    table.on_started(TaskId(1), FencingToken(10), 1).expect("start");
    assert_eq!(table.on_node_lost(N1, 500), vec![TaskId(1)]);
    assert_eq!(table.get(TaskId(1)).expect("known").state, TaskState::Pending);
    table.on_assigned(TaskId(1), N2, FencingToken(30), 501).expect("reassigned though attempts_max is 1");
    // The dead node comes back and reports: refused.
    assert!(matches!(
        table.on_finished(TaskId(1), FencingToken(10), Ok(vec![]), 600),
        Err(GridError::StaleToken { .. })
    ));
    assert_eq!(table.on_finished(TaskId(1), FencingToken(30), Ok(vec![]), 700), Ok(TaskState::Succeeded));
    let attempts: Vec<_> = table.get(TaskId(1)).expect("known").attempts.iter().map(|a| (a.node, a.state)).collect();
    assert_eq!(attempts, vec![(N1, AttemptState::Lost), (N2, AttemptState::Succeeded)]);
}

#[test]
fn plans_respect_slots_and_priority_and_overdue_attempts_are_found() {
    let mut table = table();
    for (id, priority) in [(1, 0), (2, 5), (3, 1)] {
        let mut spec = spec(1);
        spec.priority = priority;
        table.submit(TaskId(id), spec, 0).expect("accepted");
    }
    let mut loads = nodes();
    let plan = table.plan_dispatch(0, &mut Placement::new(Strategy::LeastLoaded, 0), &mut loads, 10);
    assert_eq!(plan, vec![(TaskId(2), N1), (TaskId(3), N2)], "two slots, highest priorities first");
    for &(task, node) in &plan {
        table.on_assigned(task, node, FencingToken(task.0 * 100), 0).expect("assign");
    }
    assert_eq!(
        table.on_assigned(TaskId(2), N1, FencingToken(1), 0),
        Err(GridError::WrongState { task: TaskId(2), state: TaskState::Assigned })
    );
    assert_eq!(table.overdue(1_000 + UNSTARTED_GRACE_MS), vec![]);
    assert_eq!(table.overdue(1_001 + UNSTARTED_GRACE_MS).len(), 2, "unstarted: timeout plus grace");
    table.on_started(TaskId(2), FencingToken(200), 50).expect("start");
    assert_eq!(table.overdue(1_051), vec![(TaskId(2), FencingToken(200))], "started: timeout from the start");
}

#[test]
fn a_job_fires_once_per_due_time_and_stale_decisions_are_refused() {
    use crate::grid::command::JobSpec;
    use crate::grid::schedule::{Cadence, Misfire};
    let mut table = table();
    let job = JobSpec {
        name: "tick".into(),
        task: spec(1),
        cadence: Cadence::interval(1_000, 0).expect("valid"),
        misfire: Misfire::Skip,
        overlap: false,
    };
    let mut effects = GridEffects::default();
    table.apply(1, 500, &GridCommand::Schedule { job: Box::new(job) }, &mut effects).expect("scheduled");
    assert_eq!(table.jobs()["tick"].due_ms, Some(1_000));
    assert!(table.due_jobs(999).is_empty());
    assert_eq!(table.due_jobs(1_000).len(), 1);
    let fire = |due_ms| GridCommand::Fire {
        name: "tick".into(),
        due_ms,
        fire: true,
        skipped: 0,
        next_due_ms: Some(due_ms + 1_000),
    };
    assert_eq!(table.apply(2, 1_000, &fire(1_000), &mut effects), Ok(GridOutcome::Recorded { applied: 1, refused: 0 }));
    // The same decision again (a new leader repeating it) is stale: one run per due time.
    assert_eq!(table.apply(3, 1_001, &fire(1_000), &mut effects), Ok(GridOutcome::Recorded { applied: 0, refused: 1 }));
    let job = &table.jobs()["tick"];
    assert_eq!((job.runs, job.due_ms, table.pending()), (1, Some(2_000), 1));
    let (_, running) = table.due_jobs(2_000)[0];
    assert!(running, "its run has not ended");
    table.apply(4, 2_000, &GridCommand::Unschedule { name: "tick".into() }, &mut effects).expect("removed");
    assert!(table.jobs().is_empty());
}

#[test]
fn cancellation_and_bounds() {
    let mut table = table();
    table.submit(TaskId(1), spec(1), 0).expect("accepted");
    table.on_cancelled(TaskId(1), 1).expect("cancel pending");
    assert_eq!(table.pending(), 0);
    assert!(table.on_cancelled(TaskId(1), 2).is_err(), "terminal stays terminal");
    assert!(table.submit(TaskId(2), spec(0), 0).is_err());
    let mut big = spec(1);
    big.input = vec![0; TableLimits::default().input_bytes_max + 1];
    assert!(table.submit(TaskId(3), big, 0).is_err());
    table.submit(TaskId(4), spec(1), 0).expect("accepted");
    table.on_assigned(TaskId(4), N1, FencingToken(7), 0).expect("assign");
    let huge = vec![0; TableLimits::default().result_bytes_max + 1];
    assert_eq!(table.on_finished(TaskId(4), FencingToken(7), Ok(huge), 1), Ok(TaskState::Failed));
}

#[test]
fn a_node_is_idle_only_when_its_oldest_attempt_has_ended_however_many_tasks_are_newer() {
    // A drain asks whether a node still holds work. The answer comes from the table's per-node index,
    // not from a listing of recent tasks, so an old long-running attempt behind more tasks than any
    // page holds (10,000) still keeps its node busy.
    let mut table = table();
    table.submit(TaskId(1), spec(1), 0).expect("accepted");
    table.on_assigned(TaskId(1), N1, FencingToken(10), 1).expect("assign");
    table.on_started(TaskId(1), FencingToken(10), 2).expect("start");
    for id in 2..=10_002 {
        table.submit(TaskId(id), spec(1), 3).expect("accepted");
        // Half of the newer tasks ran and ended on another node, the rest wait.
        if id % 2 == 0 {
            table.on_assigned(TaskId(id), N2, FencingToken(id * 10), 4).expect("assign");
            assert_eq!(table.on_finished(TaskId(id), FencingToken(id * 10), Ok(vec![]), 5), Ok(TaskState::Succeeded));
        }
    }
    assert_eq!((table.running_on(N1), table.held_by(N1)), (1, vec![(TaskId(1), FencingToken(10))]));
    assert_eq!(table.running_on(N2), 0, "every attempt on the other node ended");
    // The index is part of the replicated state: a replica that loaded a snapshot answers alike.
    let loaded: TaskTable = postcard::from_bytes(&postcard::to_stdvec(&table).expect("encodes")).expect("decodes");
    assert_eq!(loaded.running_on(N1), 1);
    assert_eq!(table.on_finished(TaskId(1), FencingToken(10), Ok(vec![]), 6), Ok(TaskState::Succeeded));
    assert_eq!(table.running_on(N1), 0, "idle once its last attempt ended");
}
