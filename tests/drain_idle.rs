//! `gridkeeper drain` waits until the drained node holds no open attempt, however many tasks are
//! newer than the one it still runs. (It once looked at the node's newest 10,000 tasks only, so an
//! older long-running attempt behind them went unseen and the node was called idle.)

use std::process::{Command, Output};
use std::time::Duration;

use gridkeeper::client::Client;
use gridkeeper::ids::NodeId;
use gridkeeper::node::local::{LocalCluster, LocalOptions};

const WAIT: Duration = Duration::from_secs(120);
/// More tasks than one page of `/grid/tasks` holds (`QUERY_LIMIT_MAX`, 10,000).
const NEWER_TASKS: usize = 10_001;
/// How long the drain gets to (wrongly) call the node idle while the old attempt runs. The drain
/// decides on its first look, which takes milliseconds; this bounds how long the test waits for a
/// wrong answer, and a right answer never depends on it.
const WRONG_ANSWER_WAIT: Duration = Duration::from_secs(5);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Waits (bounded) until every task in `ids` has ended.
async fn wait_ended(client: &Client, ids: &[u64]) {
    tokio::time::timeout(WAIT, async {
        loop {
            if client.wait_tasks(ids, 10_000).await.expect("wait answers").done {
                return;
            }
        }
    })
    .await
    .expect("the tasks end within the bound");
}

#[test]
fn a_drain_waits_for_an_old_attempt_behind_more_than_a_page_of_newer_tasks() {
    let dir = std::env::temp_dir().join(format!("gk-drain-idle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = LocalOptions { slots: 16, ..LocalOptions::default() };
    let cluster = LocalCluster::start_with(1, &dir, options).expect("cluster starts");
    cluster.wait_for_leader(WAIT).expect("leader");
    let admin = cluster.admin(NodeId(1));
    runtime().block_on(async {
        let client = Client::connect(admin, cluster.access().expect("access")).await.expect("client");
        let submit = |body: serde_json::Value| {
            let client = client.clone();
            async move {
                let request = serde_json::from_value(body).expect("a submit request");
                client.submit(&request).await.expect("submitted")
            }
        };
        // The old attempt: it runs until cancelled.
        let old = submit(serde_json::json!({"task": "sleep", "input": {"ms": 3_600_000u64}})).await;
        let query = serde_json::from_value(serde_json::json!({"id": old[0]})).expect("a query");
        tokio::time::timeout(WAIT, async {
            while client.tasks(&query).await.expect("listed")[0].attempts.is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the old task is assigned");
        // More than a page of newer tasks, every one run and ended on the same node.
        let newer = submit(serde_json::json!({"task": "noop", "count": NEWER_TASKS})).await;
        wait_ended(&client, &newer).await;
        let listed = client.tasks(&query).await.expect("listed");
        assert!(!listed[0].state.is_terminal(), "the old attempt still runs: {listed:?}");
        // The node's newest page of tasks is full and does not reach back to the old one.
        let newest = serde_json::from_value(serde_json::json!({"node": 1, "limit": 10_000})).expect("a query");
        let page = client.tasks_page(&newest).await.expect("listed");
        assert_eq!(page.tasks.len(), 10_000);
        assert!(page.next.is_some() && page.tasks.iter().all(|task| task.id != old[0]));

        let (done_sender, mut done) = tokio::sync::oneshot::channel::<Output>();
        let mut drain = Command::new(env!("CARGO_BIN_EXE_gridkeeper"));
        drain.args(["drain", "--admin", &admin.to_string(), "--certs"]).arg(cluster.certs()).args(["--node", "1"]);
        std::thread::spawn(move || {
            let _ = done_sender.send(drain.output().expect("run drain"));
        });
        if let Ok(output) = tokio::time::timeout(WRONG_ANSWER_WAIT, &mut done).await {
            let output = output.expect("drain output");
            let listed = client.tasks(&query).await.expect("listed");
            panic!(
                "the drain ended while the old attempt ran ({:?}): {}{}",
                listed[0].state,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Once the old attempt ends, the node is idle and the drain says so.
        client.cancel(&old).await.expect("cancelled");
        let output = tokio::time::timeout(WAIT, done).await.expect("the drain ends").expect("drain output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("runs nothing"), "{stdout}");
    });
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}
