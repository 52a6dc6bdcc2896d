//! The coordination recipes on a real in-process 3-node cluster, including participants that die.

use std::collections::BTreeSet;
use std::time::Duration;

use gridkeeper::client::Client;
use gridkeeper::ids::NodeId;
use gridkeeper::node::local::LocalCluster;
use gridkeeper::recipes::{barrier, discovery, election, lock, queue};

const WAIT: Duration = Duration::from_secs(20);
const SESSION_MS: u64 = 1_000;

/// Waits, on child watches and bounded, until `dir` has `count` children (`at_least` or exactly).
async fn wait_children(client: &Client, dir: &str, accept: impl Fn(usize) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut events = client.watch(dir, gridkeeper::registry::WatchKind::Child, None).await.expect("watch");
        let count = match client.children(dir, gridkeeper::consensus::Consistency::Linearizable).await {
            Ok(listing) => listing.children.len(),
            Err(error) if error.code() == gridkeeper::api::ErrorCode::NoNode => 0,
            Err(error) => panic!("children of {dir}: {error}"),
        };
        if accept(count) {
            return;
        }
        tokio::time::timeout_at(deadline, events.recv()).await.expect("the awaited children appear in time");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn cluster(name: &str) -> (LocalCluster, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("gk-recipes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = LocalCluster::start(3, &dir).expect("cluster starts");
    cluster.wait_for_leader(WAIT).expect("leader");
    (cluster, dir)
}

async fn client(cluster: &LocalCluster, node: u64) -> Client {
    Client::connect(cluster.admin(NodeId(node)), cluster.access().expect("access")).await.expect("client")
}

#[test]
fn the_lock_passes_to_the_next_waiter_when_the_holder_dies() {
    let (cluster, dir) = cluster("lock");
    runtime().block_on(async {
        let (a, b, c) = (client(&cluster, 1).await, client(&cluster, 2).await, client(&cluster, 3).await);
        let holder_session = a.open_session(SESSION_MS).await.expect("session");
        let held = lock::acquire(&a, &holder_session, "/locks/job").await.expect("first contender takes it");
        let (b_session, c_session) =
            (b.open_session(SESSION_MS).await.expect("s"), c.open_session(SESSION_MS).await.expect("s"));
        let (order_sender, mut order) = tokio::sync::mpsc::channel(2);
        for (queued, (name, client, session)) in
            [("b", b.clone(), b_session), ("c", c.clone(), c_session)].into_iter().enumerate()
        {
            let order_sender = order_sender.clone();
            tokio::spawn(async move {
                let guard = lock::acquire(&client, &session, "/locks/job").await.expect("acquire");
                order_sender.send(name).await.expect("report");
                guard.release().await.expect("release");
                drop(session);
            });
            // Queue b before c: wait until b's contender node is there.
            wait_children(&a, "/locks/job", |count| count == queued + 2).await;
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(300), order.recv()).await.is_err(),
            "nobody may take a held lock"
        );
        // The holder dies: its session stops being kept alive and expires.
        drop(holder_session);
        std::mem::forget(held);
        let first = tokio::time::timeout(WAIT, order.recv()).await.expect("the lock passes on").expect("a waiter");
        let second = tokio::time::timeout(WAIT, order.recv()).await.expect("and on again").expect("a waiter");
        assert_eq!((first, second), ("b", "c"), "waiters are served in order, one at a time");
    });
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn election_moves_on_when_the_leader_resigns_or_dies() {
    let (cluster, dir) = cluster("election");
    runtime().block_on(async {
        let (a, b) = (client(&cluster, 1).await, client(&cluster, 3).await);
        let a_session = a.open_session(SESSION_MS).await.expect("session");
        let leadership = election::campaign(&a, &a_session, "/apps/web/election", "alpha").await.expect("elected");
        assert_eq!(election::leader(&b, "/apps/web/election").await.expect("read"), Some("alpha".into()));
        let b_session = b.open_session(SESSION_MS).await.expect("session");
        let waiting = tokio::spawn({
            let b = b.clone();
            async move {
                election::campaign(&b, &b_session, "/apps/web/election", "beta").await.map(|lead| (lead, b_session))
            }
        });
        wait_children(&a, "/apps/web/election", |count| count == 2).await;
        assert!(!waiting.is_finished(), "the second candidate waits");
        leadership.resign().await.expect("resign");
        let (beta, b_session) =
            tokio::time::timeout(WAIT, waiting).await.expect("elected in time").expect("task").expect("campaign");
        assert_eq!(election::leader(&a, "/apps/web/election").await.expect("read"), Some("beta".into()));
        // The leader's session dies: nobody leads until someone stands again.
        drop(b_session);
        std::mem::forget(beta);
        wait_children(&a, "/apps/web/election", |count| count == 0).await;
        assert_eq!(
            election::leader(&a, "/apps/web/election").await.expect("read"),
            None,
            "a dead leader's candidacy expires"
        );
        drop(a_session);
    });
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_barrier_opens_when_everyone_arrives() {
    let (cluster, dir) = cluster("barrier");
    runtime().block_on(async {
        let mut arrivals = Vec::new();
        for participant in 1..=3u64 {
            let client = client(&cluster, participant).await;
            arrivals.push(tokio::spawn(async move {
                let session = client.open_session(5_000).await.expect("session");
                barrier::enter(&client, &session, "/barriers/start", &format!("p{participant}"), 3)
                    .await
                    .expect("enter");
                session
            }));
            if participant < 3 {
                let observer = self::client(&cluster, 1).await;
                wait_children(&observer, "/barriers/start", |count| count == participant as usize).await;
                assert!(arrivals.iter().all(|arrival| !arrival.is_finished()), "nobody passes before all arrive");
            }
        }
        for arrival in arrivals {
            tokio::time::timeout(WAIT, arrival).await.expect("barrier opens").expect("task");
        }
    });
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn queue_items_are_taken_exactly_once_in_order_with_competing_consumers() {
    let (cluster, dir) = cluster("queue");
    runtime().block_on(async {
        let producer = client(&cluster, 1).await;
        for item in 0..30 {
            queue::push(&producer, "/queues/work", &format!("item {item:02}")).await.expect("push");
        }
        let mut consumers = Vec::new();
        for node in [2, 3] {
            let consumer = client(&cluster, node).await;
            consumers.push(tokio::spawn(async move {
                let mut taken = Vec::new();
                while let Some(item) = queue::try_pop(&consumer, "/queues/work").await.expect("pop") {
                    taken.push(item);
                }
                taken
            }));
        }
        let mut all = Vec::new();
        for consumer in consumers {
            let taken = consumer.await.expect("consumer");
            assert!(taken.windows(2).all(|pair| pair[0] < pair[1]), "each consumer sees FIFO order: {taken:?}");
            all.extend(taken);
        }
        let unique: BTreeSet<_> = all.iter().cloned().collect();
        assert_eq!((all.len(), unique.len()), (30, 30), "every item exactly once");
        let waiter = tokio::spawn({
            let consumer = client(&cluster, 3).await;
            async move { queue::pop(&consumer, "/queues/work").await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        queue::push(&producer, "/queues/work", "late").await.expect("push");
        assert_eq!(tokio::time::timeout(WAIT, waiter).await.expect("woken").expect("task").expect("pop"), "late");
    });
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn discovery_sees_instances_come_and_go() {
    let (cluster, dir) = cluster("discovery");
    runtime().block_on(async {
        let (one, two, observer) = (client(&cluster, 1).await, client(&cluster, 2).await, client(&cluster, 3).await);
        let one_session = one.open_session(SESSION_MS).await.expect("session");
        let two_session = two.open_session(SESSION_MS).await.expect("session");
        discovery::register(&one, &one_session, "billing", "a", "10.0.0.1:80").await.expect("register");
        discovery::register(&two, &two_session, "billing", "b", "10.0.0.2:80").await.expect("register");
        let found = discovery::discover(&observer, "billing").await.expect("discover");
        assert_eq!(found, vec![("a".into(), "10.0.0.1:80".into()), ("b".into(), "10.0.0.2:80".into())]);
        let mut changes = discovery::changes(&observer, "billing").await.expect("watch");
        drop(two_session);
        tokio::time::timeout(WAIT, changes.recv())
            .await
            .expect("the watch fires when an instance dies")
            .expect("event");
        assert_eq!(
            discovery::discover(&observer, "billing").await.expect("discover"),
            vec![("a".into(), "10.0.0.1:80".into())]
        );
        drop(one_session);
    });
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}
