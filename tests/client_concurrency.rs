//! Clones of one `Client` call a real node side by side: a long `wait` on one clone (as a
//! `TaskHandle` of `Grid::remote` makes) does not hold up a quick read or a write on another.
//!
//! Every assertion is about the order of events, never about how long a call took: the wait is polled
//! first, so if calls shared one connection the wait would hold it until its own timeout, the read
//! would finish after it, and the cancel would come too late to end it.

use std::time::Duration;

use gridkeeper::client::Client;
use gridkeeper::ids::NodeId;
use gridkeeper::node::local::LocalCluster;

const WAIT: Duration = Duration::from_secs(20);
/// How long the long wait may last on the server: below the client's per-call deadline, long enough
/// that nothing in this test can end it but the cancel the test makes.
const LONG_WAIT_MS: u64 = 12_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

#[test]
fn a_long_wait_on_one_clone_does_not_hold_up_calls_on_another() {
    let dir = std::env::temp_dir().join(format!("gk-client-concurrency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = LocalCluster::start(1, &dir).expect("cluster starts");
    cluster.wait_for_leader(WAIT).expect("leader");
    runtime().block_on(async {
        let client =
            Client::connect(cluster.admin(NodeId(1)), cluster.access().expect("access")).await.expect("client");
        // A task held back for an hour: nothing ends it but a cancel.
        let request = serde_json::from_value(serde_json::json!({
            "task": "sleep",
            "input": {"ms": 1},
            "delay_ms": 3_600_000u64,
        }))
        .expect("a submit request");
        let ids = tokio::time::timeout(WAIT, client.submit(&request)).await.expect("bounded").expect("submitted");
        assert_eq!(ids.len(), 1);

        let (waiter, reader, writer) = (client.clone(), client.clone(), client.clone());
        let wait = waiter.wait_tasks(&ids, LONG_WAIT_MS);
        tokio::pin!(wait);

        // A quick read on another clone completes while the wait is pending.
        let query = serde_json::from_value(serde_json::json!({"id": ids[0]})).expect("a query");
        let read = reader.tasks(&query);
        let listed = tokio::select! {
            biased;
            waited = &mut wait => panic!("the wait ended before a quick read on another clone: {waited:?}"),
            listed = read => listed.expect("the read answers"),
        };
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(!listed[0].state.is_terminal(), "{listed:?}");

        // A write on another clone goes through while the wait is pending, and ends it: the wait
        // answers only because the cancel was applied while it was in flight.
        let cancel = writer.cancel(&ids);
        let (waited, cancelled) =
            tokio::time::timeout(WAIT, async { tokio::join!(wait, cancel) }).await.expect("bounded");
        assert_eq!(cancelled.expect("the cancel answers").applied, 1);
        let waited = waited.expect("the wait answers");
        assert!(waited.done, "the cancel made during the wait ended it: {waited:?}");
        assert_eq!(waited.states.get("cancelled"), Some(&1), "{waited:?}");
    });
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}
