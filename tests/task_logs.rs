//! A task's own log lines, through the worker: what it logs with `attempt.log()` and the `tracing`
//! events it emits inside `run` are kept by the node that ran it and read through another node's
//! `GET /grid/logs` (an in-process cluster of two).

use std::time::Duration;

use gridkeeper::admin::logs_api::LogsView;
use gridkeeper::client::Client;
use gridkeeper::grid::kinds::{AttemptInfo, LogLevel, Task, TaskError};
use gridkeeper::ids::NodeId;
use gridkeeper::node::builtin::Empty;
use gridkeeper::node::local::{LocalCluster, LocalOptions};

const WAIT: Duration = Duration::from_secs(60);

/// Logs through both ways, at several levels, and succeeds.
#[derive(Debug, Clone, Copy, Default)]
struct Chatty;

impl Task for Chatty {
    const NAME: &'static str = "chatty";
    type Input = Empty;
    type Output = Empty;

    async fn run(&self, _input: Empty, attempt: AttemptInfo) -> Result<Empty, TaskError> {
        let log = attempt.log();
        log.info(format_args!("attempt {} starts", attempt.number));
        tracing::info!(rows = 3, "loaded from tracing");
        tracing::debug!("a debug event is not kept");
        log.debug("a debug line through the logger is");
        // A logger moved into a task the attempt spawns still logs for it.
        let spawned = attempt.log();
        tokio::spawn(async move { spawned.warn("from a spawned task") }).await.map_err(TaskError::new)?;
        tracing::error!("done");
        Ok(Empty {})
    }
}

async fn logs_of(admin: std::net::SocketAddr, access: &gridkeeper::client::Access, id: u64) -> Option<LogsView> {
    let body = gridkeeper::admin::client::get(admin, &format!("/grid/logs?id={id}"), access).await.ok()?;
    serde_json::from_slice(&body).ok()
}

#[test]
fn a_tasks_logger_and_its_tracing_events_are_kept_for_its_attempt() {
    let dir = std::env::temp_dir().join(format!("gk-task-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options =
        LocalOptions { kinds: gridkeeper::node::builtin::kinds().with(Chatty), slots: 2, ..Default::default() };
    let cluster = LocalCluster::start_with(2, &dir, options).expect("cluster starts");
    cluster.wait_for_leader(WAIT).expect("leader");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let access = cluster.access().expect("access");
    let view = runtime.block_on(async {
        let client = Client::connect(cluster.admin(NodeId(1)), access.clone()).await.expect("client");
        // Run on node 2, read through node 1: the lines come from the node that ran the attempt.
        let request = serde_json::from_value(serde_json::json!({"task": "chatty", "input": {}, "affinity": 2}))
            .expect("a submit request");
        let id = client.submit(&request).await.expect("submitted")[0];
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(view) = logs_of(cluster.admin(NodeId(1)), &access, id).await.filter(|view| view.ended) {
                    return view;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the attempt ends and its log is served")
    });
    assert_eq!((view.attempt, view.node, view.truncated), (1, 2, false));
    let lines: Vec<(u64, LogLevel, &str)> =
        view.lines.iter().map(|line| (line.seq, line.level, line.text.as_str())).collect();
    assert_eq!(
        lines,
        [
            (0, LogLevel::Info, "attempt 1 starts"),
            (1, LogLevel::Info, "loaded from tracing rows=3"),
            (2, LogLevel::Debug, "a debug line through the logger is"),
            (3, LogLevel::Warn, "from a spawned task"),
            (4, LogLevel::Error, "done"),
        ]
    );
    assert!(view.lines.windows(2).all(|pair| pair[0].ts_ms <= pair[1].ts_ms));
    // The same lines from the node that keeps them, and only the newer ones after `after=`.
    let (own, after) = runtime.block_on(async {
        let own = logs_of(cluster.admin(NodeId(2)), &access, view.task).await.expect("served");
        let path = format!("/grid/logs?id={}&attempt=1&after=2", view.task);
        let body = gridkeeper::admin::client::get(cluster.admin(NodeId(1)), &path, &access).await.expect("served");
        (own, serde_json::from_slice::<LogsView>(&body).expect("a logs view"))
    });
    assert_eq!(own, view);
    assert_eq!(after.lines.iter().map(|line| line.seq).collect::<Vec<_>>(), [3, 4]);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
