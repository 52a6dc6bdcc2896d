//! Property test of the grid's task table: random sequences of submissions (some placed in their own
//! entry, as the leader shapes them when they find room), plans (pipelined: a second
//! plan made while the first is in flight, the two applied in either order), starts, finishes (current
//! and stale tokens), timeouts, node losses, cancellations and work stealing (moves planned by
//! `grid::steal`, some of whose attempts start before the move applies). After every step: a terminal
//! task never changes, a success is recorded at most once and only under the current token, no node
//! holds more attempts than its room, every task is either queued, held by exactly one node, or
//! terminal, and a move of an attempt that started meanwhile is refused. After a node loss, its work is
//! planned before every task of its priority that was not lost.

use std::collections::{BTreeMap, BTreeSet};

use gridkeeper::grid::steal;
use gridkeeper::grid::Strategy as PlacementStrategy;
use gridkeeper::grid::{
    AttemptState, FencingToken, GridCommand, GridEffects, NodeLoad, Placement, RetryPolicy, TableLimits, TaskId,
    TaskSpec, TaskState, TaskTable,
};
use gridkeeper::ids::NodeId;
use proptest::prelude::*;

const NODES: u64 = 3;
const SLOTS: u32 = 2;
const PREFETCH: u32 = 1;
/// What a node may hold: slots + prefetch, twice that when lost work filled it.
const ROOM_MAX: u32 = 2 * (SLOTS + PREFETCH);

#[derive(Debug, Clone)]
enum Step {
    Submit { priority: i32, attempts: u32 },
    SubmitPlaced { count: usize, delayed: bool },
    Dispatch,
    DispatchPipelined { reversed: bool },
    Steal { start_first: usize },
    Start { pick: usize },
    Finish { pick: usize, ok: bool, stale: bool },
    TimeOut { pick: usize },
    LoseNode { node: u64 },
    Cancel { pick: usize },
    Advance { ms: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (-2i32..3, 1u32..4).prop_map(|(priority, attempts)| Step::Submit { priority, attempts }),
        2 => (1usize..6, prop::bool::weighted(0.2)).prop_map(|(count, delayed)| Step::SubmitPlaced { count, delayed }),
        3 => Just(Step::Dispatch),
        2 => any::<bool>().prop_map(|reversed| Step::DispatchPipelined { reversed }),
        2 => any::<usize>().prop_map(|start_first| Step::Steal { start_first }),
        2 => any::<usize>().prop_map(|pick| Step::Start { pick }),
        3 => (any::<usize>(), any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(pick, ok, stale)| Step::Finish { pick, ok, stale }),
        1 => any::<usize>().prop_map(|pick| Step::TimeOut { pick }),
        1 => (1..=NODES).prop_map(|node| Step::LoseNode { node }),
        1 => any::<usize>().prop_map(|pick| Step::Cancel { pick }),
        2 => (1u64..500).prop_map(|ms| Step::Advance { ms }),
    ]
}

fn loads(table: &TaskTable) -> Vec<NodeLoad> {
    (1..=NODES)
        .map(|id| NodeLoad {
            node: NodeId(id),
            running: table.running_on(NodeId(id)),
            slots: SLOTS,
            prefetch: PREFETCH,
            weight: 1,
            kinds: BTreeSet::from(["noop".to_string()]),
            draining: false,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn the_task_table_keeps_its_invariants(steps in proptest::collection::vec(step(), 1..120)) {
        let mut table = TaskTable::new(TableLimits::default(), 1_000);
        let mut placement = Placement::new(PlacementStrategy::LeastLoaded, 9);
        let mut now = 0u64;
        let mut next_id = 1u64;
        let mut next_token = 1u64;
        let mut ids: Vec<TaskId> = Vec::new();
        let mut terminal: BTreeMap<TaskId, TaskState> = BTreeMap::new();
        let mut successes: BTreeMap<TaskId, u32> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Submit { priority, attempts } => {
                    // Inputs of varied sizes, so the pending byte count has something to count.
                    let mut spec = TaskSpec::new("noop", vec![0; attempts as usize * 7]);
                    spec.priority = priority;
                    spec.retry = RetryPolicy { attempts_max: attempts, backoff_ms: 50 };
                    spec.timeout_ms = 300;
                    table.submit(TaskId(next_id), spec, now).expect("within bounds");
                    ids.push(TaskId(next_id));
                    next_id += 1;
                }
                Step::SubmitPlaced { count, delayed } => {
                    // The leader's placement of a submission against the loads, applied as its entry:
                    // what found room is assigned in that step under the entry's zxid.
                    table.on_tick(now);
                    let mut spec = TaskSpec::new("noop", vec![]);
                    spec.timeout_ms = 300;
                    spec.not_before_ms = if delayed { now + 100 } else { 0 };
                    let specs = vec![spec; count];
                    let nodes = table.place_new(now, &mut placement, &mut loads(&table), &specs);
                    prop_assert!(!delayed || nodes.iter().all(Option::is_none), "a delayed task placed");
                    let zxid = next_token;
                    next_token += 1;
                    let command = GridCommand::SubmitPlaced { tasks: specs, nodes: nodes.clone() };
                    let mut effects = GridEffects::default();
                    let outcome = table.apply(zxid, now, &command, &mut effects).expect("within bounds");
                    let accepted = outcome.ids();
                    prop_assert_eq!(accepted.len(), count);
                    prop_assert_eq!(accepted[0], TaskId(next_id));
                    for (task, node) in accepted.iter().zip(&nodes) {
                        let state = table.get(*task).expect("accepted").state;
                        prop_assert_eq!(state, if node.is_some() { TaskState::Assigned } else { TaskState::Pending });
                    }
                    prop_assert_eq!(effects.assigned.len(), nodes.iter().flatten().count());
                    prop_assert!(effects.assigned.iter().all(|&(_, _, token)| token == FencingToken(zxid)));
                    next_id += count as u64;
                    ids.extend(accepted);
                }
                Step::Dispatch => {
                    table.on_tick(now);
                    let mut nodes = loads(&table);
                    for (task, node) in table.plan_dispatch(now, &mut placement, &mut nodes, 8) {
                        table.on_assigned(task, node, FencingToken(next_token), now).expect("planned tasks are pending");
                        next_token += 1;
                    }
                }
                Step::DispatchPipelined { reversed } => {
                    table.on_tick(now);
                    let mut nodes = loads(&table);
                    let first = table.plan_dispatch(now, &mut placement, &mut nodes, 3);
                    // The second is planned while the first is in flight: its tasks left out, its
                    // loads counted (`nodes` carries them).
                    let excluded: BTreeSet<TaskId> = first.iter().map(|(task, _)| *task).collect();
                    let second = table.plan_dispatch_excluding(now, &mut placement, &mut nodes, 3, &excluded);
                    prop_assert!(second.iter().all(|(task, _)| !excluded.contains(task)), "a task planned twice");
                    let mut batches = [first, second];
                    if reversed {
                        batches.reverse();
                    }
                    for batch in batches {
                        let token = FencingToken(next_token);
                        next_token += 1;
                        for (task, node) in batch {
                            table.on_assigned(task, node, token, now).expect("planned tasks are pending");
                        }
                    }
                }
                Step::Steal { start_first } => {
                    let nodes = loads(&table);
                    let moves = steal::plan(&table.backlogs(&nodes, |_| true), now, 4);
                    // Some attempts start between the plan and its apply: those moves must be refused.
                    let started: Option<TaskId> =
                        (!moves.is_empty()).then(|| moves[start_first % moves.len()].0).filter(|_| start_first % 3 == 0);
                    if let Some(task) = started {
                        let token = table.get(task).and_then(|t| t.current_attempt()).map(|a| a.token).expect("held");
                        table.on_started(task, token, now).expect("current token");
                    }
                    let token = FencingToken(next_token);
                    next_token += 1;
                    for (task, old, node) in moves {
                        prop_assert!(now >= table.get(task).and_then(|t| t.current_attempt()).expect("held").assigned_ms + steal::STEAL_GRACE_MS);
                        let moved = table.on_reassigned(task, old, node, token, now);
                        if Some(task) == started {
                            prop_assert!(moved.is_err(), "an attempt that started was moved");
                        } else {
                            prop_assert!(moved.is_ok(), "a planned move was refused: {:?}", moved);
                            prop_assert!(table.get(task).and_then(|t| t.current_attempt()).is_some_and(|a| a.node == node && a.token == token));
                        }
                    }
                }
                Step::Start { pick } if !ids.is_empty() => {
                    let task = ids[pick % ids.len()];
                    if let Some(token) = table.get(task).and_then(|t| t.current_attempt()).map(|a| a.token) {
                        table.on_started(task, token, now).expect("current token");
                    }
                }
                Step::Finish { pick, ok, stale } if !ids.is_empty() => {
                    let task = ids[pick % ids.len()];
                    let current = table.get(task).and_then(|t| t.current_attempt()).map(|a| a.token);
                    let token = if stale { FencingToken(0) } else { current.unwrap_or(FencingToken(0)) };
                    let outcome = if ok { Ok(vec![1]) } else { Err("boom".to_string()) };
                    match table.on_finished(task, token, outcome, now) {
                        Ok(state) => {
                            prop_assert!(!stale && current == Some(token), "only the current token may finish a task");
                            if state == TaskState::Succeeded {
                                *successes.entry(task).or_default() += 1;
                            }
                        }
                        Err(_) => prop_assert!(stale || current.is_none(), "the current token must be accepted"),
                    }
                }
                Step::TimeOut { pick } if !ids.is_empty() => {
                    let task = ids[pick % ids.len()];
                    if let Some(token) = table.get(task).and_then(|t| t.current_attempt()).map(|a| a.token) {
                        table.on_timed_out(task, token, now).expect("current token");
                    }
                }
                Step::LoseNode { node } => {
                    let lost = table.on_node_lost(NodeId(node), now);
                    // With room for everything, the next plan takes the lost work before every task
                    // of its priority that was not lost.
                    let mut roomy: Vec<NodeLoad> = loads(&table);
                    for load in &mut roomy {
                        load.slots = 10_000;
                    }
                    let order = table.plan_dispatch(now, &mut placement.clone(), &mut roomy, 10_000);
                    let position = |task: TaskId| order.iter().position(|(planned, _)| *planned == task);
                    for &gone in &lost {
                        let at = position(gone).expect("lost work is ready at once");
                        let priority = table.get(gone).expect("known").spec.priority;
                        for (index, (task, _)) in order.iter().enumerate() {
                            let entry = table.get(*task).expect("known");
                            let was_lost = entry.attempts.last().is_some_and(|a| a.state == AttemptState::Lost);
                            if entry.spec.priority == priority && !was_lost {
                                prop_assert!(at < index, "lost task {:?} planned after {:?}", gone, task);
                            }
                        }
                    }
                }
                Step::Cancel { pick } if !ids.is_empty() => {
                    let _ = table.on_cancelled(ids[pick % ids.len()], now);
                }
                Step::Advance { ms } => now += ms,
                _ => {}
            }
            for id in 1..=NODES {
                prop_assert!(table.running_on(NodeId(id)) <= ROOM_MAX, "node {} over its room", id);
            }
            let mut held = 0;
            for &task in &ids {
                let state = table.get(task).expect("known").state;
                if let Some(&was) = terminal.get(&task) {
                    prop_assert_eq!(state, was, "a terminal task changed");
                } else if state.is_terminal() {
                    terminal.insert(task, state);
                }
                if matches!(state, TaskState::Assigned | TaskState::Running) {
                    held += 1;
                }
            }
            let running: u32 = (1..=NODES).map(|id| table.running_on(NodeId(id))).sum();
            prop_assert_eq!(running as usize, held, "every assigned or running task is held by exactly one node");
            prop_assert!(successes.values().all(|&count| count <= 1), "a success recorded twice");
            // What the table counts as it goes equals a recount (what a loaded snapshot rebuilds).
            let mut recounted = table.clone();
            recounted.rebuild_derived();
            prop_assert_eq!(table.bytes().into_owned(), recounted.bytes().into_owned(), "derived counts drifted");
        }
    }
}
