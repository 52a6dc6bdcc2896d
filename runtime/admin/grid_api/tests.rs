//! Unit tests of `grid_api.rs`.
use super::*;

#[test]
fn a_submission_is_sized_before_its_copies_exist() {
    // 1 MB × 100,000 would be 100 GB: refused from one spec, in no time and no memory.
    let value = "x".repeat(1 << 20);
    let request = SubmitRequest {
        task: Some("echo".into()),
        input: Some(serde_json::json!({ "value": value })),
        count: Some(SUBMIT_COUNT_MAX),
        ..SubmitRequest::default()
    };
    let refusal = request.specs().expect_err("too large");
    assert!(matches!(refusal, SubmitRefusal::TooLarge { max: SUBMIT_BYTES_MAX, .. }), "{refusal:?}");
    assert!(refusal.to_string().contains("SUBMIT_BYTES_MAX"), "{refusal}");
    let error = ApiError::from(refusal);
    let (status, name, _) = error.parts();
    assert_eq!((status, name.to_string()), (StatusCode::PAYLOAD_TOO_LARGE, "too large".to_string()));
    // Many small tasks still fit: 100,000 noops are about 2 MB.
    let many = SubmitRequest { task: Some("noop".into()), count: Some(SUBMIT_COUNT_MAX), ..SubmitRequest::default() };
    assert_eq!(many.specs().expect("fits").len(), SUBMIT_COUNT_MAX);
    let specs = vec![TaskSpec::new("echo", vec![0; 1 << 20]); 5];
    assert!(matches!(check_specs(&specs), Err(SubmitRefusal::TooLarge { .. })));
}

#[test]
fn request_bodies_refuse_unknown_fields() {
    type Refuses = fn(&str) -> bool;
    let bodies: [(&str, Refuses); 7] = [
        (r#"{"task":"noop","cont":3}"#, |text| serde_json::from_str::<SubmitRequest>(text).is_err()),
        (r#"{"ids":[1],"timeout_ms":1,"timeout":5}"#, |text| serde_json::from_str::<WaitRequest>(text).is_err()),
        (r#"{"ids":[1],"force":true}"#, |text| serde_json::from_str::<IdsRequest>(text).is_err()),
        (r#"{"node":1,"undo":true}"#, |text| serde_json::from_str::<DrainRequest>(text).is_err()),
        (r#"{"name":"a","task":"noop","every_ms":10,"evry":1}"#, |text| {
            serde_json::from_str::<ScheduleRequest>(text).is_err()
        }),
        (r#"{"name":"a","x":1}"#, |text| serde_json::from_str::<NameRequest>(text).is_err()),
        (r#"{"reports":[],"extra":1}"#, |text| serde_json::from_str::<ReportRequest>(text).is_err()),
    ];
    for (body, refused) in bodies {
        assert!(refused(body), "accepted {body}");
    }
    // The flattened fields a schedule used to take still parse, flat as before.
    let request: ScheduleRequest =
        serde_json::from_str(r#"{"name":"a","task":"echo","input":{"v":1},"priority":2,"every_ms":1000}"#)
            .expect("parses");
    let job = request.job().expect("a job");
    assert_eq!((job.task.kind.as_str(), job.task.priority), ("echo", 2));
}

#[test]
fn a_cadence_that_never_fires_is_refused() {
    let request = ScheduleRequest {
        name: "never".into(),
        task: Some("noop".into()),
        cron: Some("0 0 30 2 *".into()),
        ..ScheduleRequest::default()
    };
    let error = request.job().expect_err("Feb 30 never comes");
    assert!(error.contains("never fires"), "{error}");
}

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
