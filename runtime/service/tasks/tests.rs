//! Unit tests of `tasks.rs`: query pages over a real replicated state.
use super::*;
use crate::grid::task::{Encoding, TaskSpec};

fn state_with(tasks: usize, result_bytes: usize) -> ReplicatedState {
    let mut state = ReplicatedState::new(Default::default(), Default::default());
    let specs = vec![TaskSpec::new("echo", vec![1; 10]); tasks];
    let proposal = crate::state::Proposal { now_ms: 1, command: Command::App(GridCommand::Submit { tasks: specs }) };
    let mut effects = crate::grid::GridEffects::default();
    assert!(state.apply(1, &proposal, &mut effects).0.is_ok());
    for id in 1..=tasks as u64 {
        let task = TaskId(id);
        state.grid.on_assigned(task, NodeId(1), crate::grid::FencingToken(2), 2).expect("assign");
        let result = Ok(vec![7; result_bytes]);
        state.grid.on_finished(task, crate::grid::FencingToken(2), result, 3).expect("finish");
    }
    state
}

#[test]
fn listings_are_paged_by_bytes_and_leave_out_results_unless_asked() {
    // 40 tasks with 200 kB results: about 32 MB of JSON with results, so several pages.
    let state = state_with(40, 200_000);
    let mut query = TasksQuery { limit: Some(QUERY_LIMIT_MAX), results: true, ..TasksQuery::default() };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = page(&state, &query);
        let bytes = serde_json::to_vec(&page.tasks).expect("json").len();
        assert!(bytes <= QUERY_RESPONSE_BYTES_MAX + 1_000_000, "{bytes}");
        assert!(page.tasks.iter().all(|task| task.result.is_some()));
        seen.extend(page.tasks.iter().map(|task| task.id));
        pages += 1;
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    assert!(pages > 1, "paged");
    assert_eq!(seen, (1..=40).rev().collect::<Vec<u64>>(), "every task once, newest first");
    // Without results, one page holds them all; a view of one task keeps its result.
    let list = page(&state, &TasksQuery { limit: Some(100), ..TasksQuery::default() });
    assert_eq!((list.tasks.len(), list.next), (40, None));
    assert!(list.tasks.iter().all(|task| task.result.is_none()));
    let one = page(&state, &TasksQuery { id: Some(3), ..TasksQuery::default() });
    assert!(one.tasks[0].result.is_some());
    assert!(list.tasks.iter().all(|task| task.spec.is_none()), "a listing carries no inputs");
    let spec = one.tasks[0].spec.as_ref().expect("a view of one task has its spec");
    assert_eq!((spec.input.clone(), spec.encoding), (serde_json::json!(vec![1u8; 10]), Encoding::Rkyv));
    // A limit cuts the page and says where to go on.
    let cut = page(&state, &TasksQuery { limit: Some(10), ..TasksQuery::default() });
    assert_eq!((cut.tasks.len(), cut.next), (10, Some(31)));
}

#[test]
fn a_task_of_a_kind_no_node_runs_is_shown_unplaceable() {
    let mut state = ReplicatedState::new(Default::default(), Default::default());
    let proposal = crate::state::Proposal {
        now_ms: 1,
        command: Command::App(GridCommand::Submit { tasks: vec![TaskSpec::new("nobody-runs-this", vec![])] }),
    };
    assert!(state.apply(1, &proposal, &mut crate::grid::GridEffects::default()).0.is_ok());
    let view = page(&state, &TasksQuery::default());
    assert!(view.tasks[0].unplaceable);
    let json = serde_json::to_value(&view.tasks[0]).expect("json");
    assert_eq!(json["unplaceable"], serde_json::json!(true));
    assert_eq!(state.unplaceable_count(), 1);
}

#[test]
fn a_listing_filters_by_kind() {
    let mut state = ReplicatedState::new(Default::default(), Default::default());
    let specs = vec![TaskSpec::new("echo", vec![]), TaskSpec::new("sleep", vec![]), TaskSpec::new("echo", vec![])];
    let proposal = crate::state::Proposal { now_ms: 1, command: Command::App(GridCommand::Submit { tasks: specs }) };
    assert!(state.apply(1, &proposal, &mut crate::grid::GridEffects::default()).0.is_ok());
    let of = |kind: &str| {
        let query = TasksQuery { kind: Some(kind.to_string()), ..TasksQuery::default() };
        page(&state, &query).tasks.iter().map(|task| task.id).collect::<Vec<u64>>()
    };
    assert_eq!(of("echo"), vec![3, 1]);
    assert_eq!(of("sleep"), vec![2]);
    assert!(of("ech").is_empty(), "the kind is matched exactly");
    let query: TasksQuery = serde_json::from_value(serde_json::json!({"kind": "sleep"})).expect("query");
    assert_eq!(query.kind.as_deref(), Some("sleep"));
}
