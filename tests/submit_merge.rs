//! Submissions made at once through one node share log entries while the node's submission slots
//! are busy (`grid::merge`), on a real one-node cluster (openraft, the fsync'd log). Each caller must
//! still get exactly its own answer: the ids of its own tasks, or the refusal of its own tasks, and a
//! caller that left before its batch went out must have nothing proposed.

use std::time::Duration;

use gridkeeper::consensus::Coordinator;
use gridkeeper::grid::task::{TaskId, TaskSpec};
use gridkeeper::ids::NodeId;
use gridkeeper::limits::SUBMIT_IN_FLIGHT_MAX;
use gridkeeper::node::local::{LocalCluster, LocalOptions};
use gridkeeper::service::hub::merged_totals;
use gridkeeper::service::{Grid, GridApiError};
use gridkeeper::ErrorCode;

const WAIT: Duration = Duration::from_secs(60);

/// Held by each test: the merge's counters are the process's, so the tests run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A `noop` task told apart from every other by its input.
fn marked(mark: usize) -> TaskSpec {
    TaskSpec::new("noop", format!("{{\"mark\":{mark}}}").into_bytes())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn spec_of(coordinator: &Coordinator, id: TaskId) -> Option<TaskSpec> {
    coordinator.read_state(|state| state.grid.get(id).map(|task| task.spec.clone()))
}

/// Polls `future` once.
async fn poll_once<F: std::future::Future>(mut future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx))).await
}

fn start(name: &str) -> (LocalCluster, Coordinator) {
    let dir = std::env::temp_dir().join(format!("gk-submit-merge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = LocalCluster::start_with(1, &dir, LocalOptions::default()).expect("cluster starts");
    cluster.wait_for_leader(WAIT).expect("leader");
    let coordinator = cluster.view(NodeId(1)).and_then(|view| view.coordinator()).expect("coordinator");
    (cluster, coordinator)
}

#[test]
fn merged_submissions_get_their_own_ids_and_one_bad_task_refuses_only_its_own_submission() {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (_cluster, coordinator) = start("refusal");
    let grid = Grid::local(coordinator.clone());
    // 64 submissions at once: the first take the slots, the rest wait and go out merged. One of the
    // waiting ones carries a task the table refuses (a zero timeout), so the merged entry is refused
    // whole and its submissions are proposed again one by one.
    const BAD: usize = SUBMIT_IN_FLIGHT_MAX + 10;
    let submissions: Vec<Vec<TaskSpec>> = (0..64)
        .map(|n| {
            let mut specs: Vec<TaskSpec> = (0..1 + n % 3).map(|i| marked(n * 10 + i)).collect();
            if n == BAD {
                specs[0].timeout_ms = 0;
            }
            specs
        })
        .collect();
    let (entries_before, merged_before) = merged_totals();
    let results = runtime().block_on(async {
        tokio::time::timeout(
            WAIT,
            futures_util::future::join_all(submissions.iter().map(|specs| grid.submit_specs(specs.clone()))),
        )
        .await
        .expect("every submission is answered")
    });
    let (entries_after, merged_after) = merged_totals();
    assert_eq!(merged_after - merged_before, 64, "every submission went through the merge");
    assert!(entries_after - entries_before < 64, "some submissions shared an entry");

    let mut seen = std::collections::BTreeSet::new();
    for (n, (specs, result)) in submissions.iter().zip(results).enumerate() {
        if n == BAD {
            match result {
                Err(GridApiError::Api(error)) => assert_eq!(error.code, ErrorCode::BadArguments, "{error}"),
                other => panic!("the bad submission is refused on its own: {other:?}"),
            }
            continue;
        }
        let ids = result.unwrap_or_else(|error| panic!("submission {n} is accepted: {error}"));
        assert_eq!(ids.len(), specs.len(), "submission {n}: one id per task");
        for (id, spec) in ids.iter().zip(specs) {
            assert!(seen.insert(*id), "id {id:?} was handed out twice");
            assert_eq!(spec_of(&coordinator, *id).as_ref(), Some(spec), "submission {n}: id {id:?} names its task");
        }
    }
    let accepted: usize = submissions.iter().enumerate().filter(|(n, _)| *n != BAD).map(|(_, specs)| specs.len()).sum();
    assert_eq!(coordinator.read_state(|state| state.grid.len()), accepted, "nothing else entered the table");
}

#[test]
fn a_submission_dropped_while_it_waits_is_never_proposed() {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (_cluster, coordinator) = start("dropped");
    let grid = Grid::local(coordinator.clone());
    let ids = runtime().block_on(async {
        // Polled once each, in this order: the first take every slot, the abandoned one waits.
        let mut busy = Box::pin(futures_util::future::join_all(
            (0..SUBMIT_IN_FLIGHT_MAX).map(|n| grid.submit_specs(vec![marked(n)])),
        ));
        assert!(poll_once(busy.as_mut()).await.is_pending(), "the slots are busy");
        // One waits ahead of the abandoned one, so that the abandoned one is not the batch's first
        // caller (whom the slot is handed to) but one of its passengers.
        let mut ahead = Box::pin(grid.submit_specs(vec![marked(99)]));
        assert!(poll_once(ahead.as_mut()).await.is_pending(), "it waits for a slot");
        let mut abandoned = Box::pin(grid.submit_specs(vec![marked(1_000)]));
        assert!(poll_once(abandoned.as_mut()).await.is_pending(), "it waits for a slot");
        drop(abandoned);
        let later = futures_util::future::join_all((0..7).map(|n| grid.submit_specs(vec![marked(100 + n)])));
        let (busy, ahead, later) =
            tokio::time::timeout(WAIT, async { tokio::join!(busy, ahead, later) }).await.expect("answered");
        let later: Vec<_> = std::iter::once(ahead).chain(later).collect();
        busy.into_iter().chain(later).map(|result| result.expect("accepted")[0]).collect::<Vec<TaskId>>()
    });
    assert_eq!(ids.len(), SUBMIT_IN_FLIGHT_MAX + 8);
    assert_eq!(coordinator.read_state(|state| state.grid.len()), ids.len(), "the abandoned task never entered");
    for id in ids {
        let spec = spec_of(&coordinator, id).expect("an accepted task is in the table");
        assert_ne!(spec, marked(1_000));
    }
}
