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

fn interval_job(name: &str, overlap: bool) -> crate::grid::command::JobSpec {
    use crate::grid::schedule::{Cadence, Misfire};
    crate::grid::command::JobSpec {
        name: name.into(),
        task: spec(1),
        cadence: Cadence::interval(1_000, 0).expect("valid"),
        misfire: Misfire::Skip,
        overlap,
    }
}

fn recorded(applied: u32, refused: u32) -> Result<GridOutcome, GridError> {
    Ok(GridOutcome::Recorded { applied, refused })
}

#[test]
fn a_paused_job_fires_nothing_until_resumed_and_a_trigger_runs_once_at_once() {
    let mut table = table();
    let mut effects = GridEffects::default();
    let job = Box::new(interval_job("tick", false));
    table.apply(1, 500, &GridCommand::Schedule { job }, &mut effects).expect("scheduled");
    let name = || "tick".to_string();
    assert_eq!(table.apply(2, 600, &GridCommand::Pause { name: name() }, &mut effects), recorded(1, 0));
    assert_eq!(table.apply(3, 601, &GridCommand::Pause { name: name() }, &mut effects), recorded(0, 1), "paused");
    assert_eq!(table.apply(4, 602, &GridCommand::Pause { name: "nope".into() }, &mut effects), recorded(0, 1));
    assert!(table.job_extras("tick").paused);
    // Paused: not due, and a decision made before the pause and committed after it is refused.
    assert!(table.due_jobs(10_000).is_empty());
    let fire = GridCommand::Fire { name: name(), due_ms: 1_000, fire: true, skipped: 0, next_due_ms: Some(2_000) };
    assert_eq!(table.apply(5, 1_000, &fire, &mut effects), recorded(0, 1));
    assert_eq!((table.pending(), table.jobs()["tick"].runs), (0, 0));
    // A trigger runs once now, paused or not, and leaves the due time alone.
    assert_eq!(table.apply(6, 1_100, &GridCommand::Trigger { name: name() }, &mut effects), recorded(1, 0));
    let job = &table.jobs()["tick"];
    let run = job.last_task.expect("a run");
    assert_eq!((job.runs, job.due_ms, table.pending()), (1, Some(1_000), 1));
    assert_eq!(table.get(run).expect("submitted").submitted_ms, 1_100);
    // Its run is going and the job allows no overlap: a second trigger is refused and submits nothing.
    assert_eq!(table.apply(7, 1_200, &GridCommand::Trigger { name: name() }, &mut effects), recorded(0, 1));
    assert_eq!((table.jobs()["tick"].runs, table.pending()), (1, 1));
    assert_eq!(table.apply(8, 1_300, &GridCommand::Trigger { name: "nope".into() }, &mut effects), recorded(0, 1));
    table.on_cancelled(run, 1_400).expect("cancelled");
    assert_eq!(table.apply(9, 1_500, &GridCommand::Trigger { name: name() }, &mut effects), recorded(1, 0));
    assert_eq!(table.jobs()["tick"].runs, 2);
    // Resume with the proposer's numbers: due again, the missed fire times counted as skipped.
    let resume = GridCommand::Resume { name: name(), due_ms: Some(5_000), skipped: 4 };
    assert_eq!(table.apply(10, 4_500, &resume, &mut effects), recorded(1, 0));
    assert_eq!(table.apply(11, 4_501, &resume, &mut effects), recorded(0, 1), "not paused any more");
    let job = &table.jobs()["tick"];
    assert_eq!((job.due_ms, job.skipped), (Some(5_000), 4));
    assert!(table.job_extras("tick").is_default() && table.all_job_extras().is_empty());
    assert_eq!(table.due_jobs(5_000).len(), 1);
    assert_eq!(effects.submitted, 2);
}

#[test]
fn a_job_that_allows_overlap_may_be_triggered_while_its_run_goes_on() {
    let mut table = table();
    let mut effects = GridEffects::default();
    let job = Box::new(interval_job("both", true));
    table.apply(1, 0, &GridCommand::Schedule { job }, &mut effects).expect("scheduled");
    for zxid in 2..4 {
        let trigger = GridCommand::Trigger { name: "both".into() };
        assert_eq!(table.apply(zxid, 10, &trigger, &mut effects), recorded(1, 0));
    }
    assert_eq!((table.jobs()["both"].runs, table.pending()), (2, 2));
}

#[test]
fn a_zoned_job_is_due_when_its_entries_say_on_every_replica() {
    use crate::grid::schedule::{Cadence, CronExpr, Misfire, Zone};
    // 02:30 in New York does not exist on 2025-03-09: the proposer computed the end of the gap.
    let cadence = Cadence::Cron(CronExpr::parse("30 2 * * *").expect("valid"));
    let zone = Zone::parse("America/New_York").expect("known");
    let scheduled_at = 1_741_435_200_000; // 2025-03-08T12:00:00Z
    let due_ms = cadence.next_after_in(&zone, scheduled_at);
    assert_eq!(due_ms, Some(1_741_503_600_000), "2025-03-09T07:00:00Z, 03:00 EDT");
    let job = crate::grid::command::JobSpec {
        name: "nightly".into(),
        task: spec(1),
        cadence,
        misfire: Misfire::Skip,
        overlap: false,
    };
    let schedule = GridCommand::ScheduleZoned { job: Box::new(job.clone()), tz: zone.name().into(), due_ms };
    let fire = GridCommand::Fire {
        name: "nightly".into(),
        due_ms: 1_741_503_600_000,
        fire: true,
        skipped: 0,
        next_due_ms: Some(1_741_588_200_000),
    };
    // Two replicas apply the same entries at the proposal's time; neither evaluates the zone, and their
    // clocks, had they read any, would not matter: they end up with the same numbers.
    let replicas: Vec<TaskTable> = [0u64, 1]
        .into_iter()
        .map(|replica| {
            let mut table = table();
            let mut effects = GridEffects::default();
            table.apply(1, scheduled_at + replica, &schedule, &mut effects).expect("scheduled");
            assert_eq!(table.jobs()["nightly"].due_ms, due_ms);
            assert_eq!(table.apply(2, 1_741_503_600_500, &fire, &mut effects), recorded(1, 0));
            table
        })
        .collect();
    for table in &replicas {
        let job = &table.jobs()["nightly"];
        assert_eq!((job.due_ms, job.runs), (Some(1_741_588_200_000), 1));
        assert_eq!(table.job_extras("nightly").tz.as_deref(), Some("America/New_York"));
    }
    assert_eq!(replicas[0].jobs(), replicas[1].jobs());
    // Replaced by a UTC schedule, the job loses its zone; a zone of the wrong size is refused.
    let mut table = replicas[0].clone();
    let mut effects = GridEffects::default();
    table.apply(3, 0, &GridCommand::Schedule { job: Box::new(job.clone()) }, &mut effects).expect("replaced");
    assert!(table.all_job_extras().is_empty());
    let bad = GridCommand::ScheduleZoned { job: Box::new(job), tz: "x".repeat(65), due_ms: Some(1) };
    assert!(matches!(table.apply(4, 0, &bad, &mut effects), Err(GridError::Refused(_))));
}

#[test]
fn restored_job_extras_keep_only_jobs_the_table_holds() {
    use crate::grid::command::JobExtras;
    let mut table = table();
    let mut effects = GridEffects::default();
    table.apply(1, 0, &GridCommand::Schedule { job: Box::new(interval_job("kept", false)) }, &mut effects).expect("ok");
    let paused = JobExtras { tz: None, paused: true };
    let extras = BTreeMap::from([
        ("kept".to_string(), paused.clone()),
        ("gone".to_string(), paused.clone()),
        ("plain".to_string(), JobExtras::default()),
    ]);
    table.restore_job_extras(extras);
    assert_eq!(table.all_job_extras(), &BTreeMap::from([("kept".to_string(), paused)]));
    assert!(table.due_jobs(u64::MAX).is_empty(), "restored paused");
}

fn effects_of(table: &mut TaskTable, zxid: u64, now_ms: u64, command: GridCommand) -> (GridOutcome, GridEffects) {
    let mut effects = GridEffects::default();
    let outcome = table.apply(zxid, now_ms, &command, &mut effects).expect("applied");
    (outcome, effects)
}

#[test]
fn a_steal_moves_a_queued_attempt_and_fences_the_old_one() {
    let mut table = table();
    table.submit(TaskId(1), spec(1), 0).expect("accepted");
    table.on_assigned(TaskId(1), N1, FencingToken(10), 0).expect("assign");
    let moves = vec![(TaskId(1), FencingToken(10), N2)];
    let (outcome, effects) = effects_of(&mut table, 20, 500, GridCommand::Reassign { moves });
    assert_eq!(outcome, GridOutcome::Recorded { applied: 1, refused: 0 });
    assert_eq!(effects.stolen, vec![(N1, TaskId(1))], "the old node is told to drop it");
    assert_eq!(effects.assigned, vec![(TaskId(1), N2, FencingToken(20))], "the new node is told to run it");
    assert_eq!((table.running_on(N1), table.running_on(N2)), (0, 1));
    assert_eq!(table.held_by(N2), vec![(TaskId(1), FencingToken(20))]);
    // The old attempt's late reports are refused as stale; the new one's count.
    assert!(matches!(table.on_started(TaskId(1), FencingToken(10), 501), Err(GridError::StaleToken { .. })));
    assert!(table.on_finished(TaskId(1), FencingToken(10), Ok(vec![]), 502).is_err());
    assert_eq!(table.on_finished(TaskId(1), FencingToken(20), Ok(vec![]), 503), Ok(TaskState::Succeeded));
    let task = table.get(TaskId(1)).expect("known");
    let states: Vec<AttemptState> = task.attempts.iter().map(|attempt| attempt.state).collect();
    assert_eq!(
        states,
        vec![AttemptState::Lost, AttemptState::Succeeded],
        "one attempt allowed, and the move used none"
    );
    assert_eq!((task.attempts[1].number, task.attempts[1].assigned_ms), (2, 500));
}

#[test]
fn a_steal_is_refused_once_the_attempt_started_or_moved_or_when_the_target_cannot_take_it() {
    let mut table = table();
    for id in 1..=4 {
        table.submit(TaskId(id), spec(1), 0).expect("accepted");
        table.on_assigned(TaskId(id), N1, FencingToken(10), 0).expect("assign");
    }
    // Task 1 started meanwhile (its report applied between the plan and the move): it stays.
    table.on_started(TaskId(1), FencingToken(10), 100).expect("start");
    // Task 2 was moved already: a second move of the same attempt is stale.
    let (_, effects) =
        effects_of(&mut table, 11, 200, GridCommand::Reassign { moves: vec![(TaskId(2), FencingToken(10), N2)] });
    assert_eq!(effects.stolen.len(), 1);
    // Task 4 is pinned to node 1.
    std::sync::Arc::make_mut(table.tasks.get_mut(&TaskId(4)).expect("known")).spec.affinity = Some(N1);
    let moves = vec![
        (TaskId(1), FencingToken(10), N2),
        (TaskId(2), FencingToken(10), NodeId(3)),
        (TaskId(3), FencingToken(10), N1),
        (TaskId(4), FencingToken(10), N2),
        (TaskId(9), FencingToken(10), N2),
    ];
    let (outcome, effects) = effects_of(&mut table, 12, 300, GridCommand::Reassign { moves });
    assert_eq!(outcome, GridOutcome::Recorded { applied: 0, refused: 5 }, "started, stale, same node, pinned, unknown");
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(table.get(TaskId(1)).expect("known").state, TaskState::Running);
    // A draining target takes nothing.
    effects_of(&mut table, 13, 400, GridCommand::Drain { node: N2, draining: true });
    let (outcome, _) =
        effects_of(&mut table, 14, 500, GridCommand::Reassign { moves: vec![(TaskId(3), FencingToken(10), N2)] });
    assert_eq!(outcome, GridOutcome::Recorded { applied: 0, refused: 1 });
    assert_eq!(table.held_by(N1).len(), 3);
}

#[test]
fn lost_work_goes_before_work_queued_after_it_even_when_every_node_is_full() {
    let mut table = table();
    for id in 1..=10 {
        table.submit(TaskId(id), spec(1), id).expect("accepted");
    }
    // Two nodes of 1 slot + 2 prefetched: three attempts each, 7..=10 wait.
    let loads = |table: &TaskTable, nodes: &[NodeId]| -> Vec<NodeLoad> {
        nodes
            .iter()
            .map(|&node| NodeLoad {
                node,
                running: table.running_on(node),
                slots: 1,
                prefetch: 2,
                weight: 1,
                kinds: BTreeSet::from(["noop".to_string()]),
                draining: false,
            })
            .collect()
    };
    let mut placement = Placement::new(Strategy::LeastLoaded, 0);
    let plan = table.plan_dispatch(20, &mut placement, &mut loads(&table, &[N1, N2]), 100);
    assert_eq!(plan.len(), 6);
    for (task, node) in plan {
        table.on_assigned(task, node, FencingToken(20), 20).expect("assign");
    }
    let on_one: Vec<TaskId> = table.held_by(N1).into_iter().map(|(task, _)| task).collect();
    assert_eq!(on_one, vec![TaskId(1), TaskId(3), TaskId(5)]);
    // Node 1 dies: its work goes back to the front of the queue, oldest first.
    assert_eq!(table.on_node_lost(N1, 30), on_one);
    // Node 2 is full (3 of 1 + 2), but lost work may fill it up to twice that; later work may not.
    let plan = table.plan_dispatch(40, &mut placement, &mut loads(&table, &[N2]), 100);
    assert_eq!(plan, vec![(TaskId(1), N2), (TaskId(3), N2), (TaskId(5), N2)], "lost work first, and only it");
    for (task, node) in plan {
        table.on_assigned(task, node, FencingToken(40), 40).expect("assign");
    }
    // Node 2's worker starts lower ids first (see `worker::slots`): 1, 3, 5 before 6 and after 2, 4,
    // which were queued before them; 7..=10 wait in the table behind them.
    let held: Vec<u64> = table.held_by(N2).into_iter().map(|(task, _)| task.0).collect();
    assert_eq!(held, vec![1, 2, 3, 4, 5, 6]);
    assert!(table.plan_dispatch(50, &mut placement, &mut loads(&table, &[N2]), 100).is_empty());
}

#[test]
fn plans_in_flight_are_left_out_of_the_next_plan() {
    let mut table = table();
    for id in 1..=6 {
        table.submit(TaskId(id), spec(1), 0).expect("accepted");
    }
    let mut placement = Placement::new(Strategy::LeastLoaded, 0);
    let mut loads = nodes();
    for load in &mut loads {
        load.slots = 2;
    }
    let first = table.plan_dispatch(10, &mut placement, &mut loads.clone(), 2);
    assert_eq!(first, vec![(TaskId(1), N1), (TaskId(2), N2)]);
    // The first plan is in flight: the second leaves its tasks out and counts its slots as taken.
    let excluded: BTreeSet<TaskId> = first.iter().map(|(task, _)| *task).collect();
    for load in &mut loads {
        load.running += 1;
    }
    let second = table.plan_dispatch_excluding(10, &mut placement, &mut loads, 10, &excluded);
    assert_eq!(second, vec![(TaskId(3), N1), (TaskId(4), N2)], "the one free slot of each node, no task twice");
    // Applied in either order, every assignment lands; one re-proposed after it landed is refused.
    for (zxid, (task, node)) in second.iter().chain(&first).enumerate() {
        table.on_assigned(*task, *node, FencingToken(zxid as u64 + 20), 20).expect("assign");
    }
    assert!(table.on_assigned(TaskId(1), N2, FencingToken(30), 30).is_err(), "no task is assigned twice");
    assert_eq!((table.running_on(N1), table.running_on(N2)), (2, 2));
}

#[test]
fn attempts_a_worker_may_have_started_without_saying_so_yet_are_not_offered_to_stealing() {
    let mut table = table();
    for id in 1..=6 {
        let mut spec = spec(1);
        spec.priority = if id == 5 { 1 } else { 0 };
        table.submit(TaskId(id), spec, 0).expect("accepted");
        table.on_assigned(TaskId(id), N1, FencingToken(10), 0).expect("assign");
    }
    let load = NodeLoad {
        node: N1,
        running: 6,
        slots: 2,
        prefetch: 4,
        weight: 1,
        kinds: BTreeSet::from(["noop".to_string()]),
        draining: false,
    };
    let queued = |table: &TaskTable| -> Vec<u64> {
        table.backlogs(std::slice::from_ref(&load), |_| true)[0].queued.iter().map(|queued| queued.task.0).collect()
    };
    // None reported started: the two the worker starts first (priority 1's task 5, then task 1) may run.
    assert_eq!(queued(&table), vec![2, 3, 4, 6]);
    // One start reported: one slot unaccounted for, which task 1 may hold.
    table.on_started(TaskId(5), FencingToken(10), 1).expect("start");
    assert_eq!(queued(&table), vec![2, 3, 4, 6]);
    // Both slots accounted for: every other attempt may move.
    table.on_started(TaskId(2), FencingToken(10), 1).expect("start");
    assert_eq!(queued(&table), vec![1, 3, 4, 6]);
}
