//! The consensus stream carries whatever the log holds: an entry larger than a mesh frame (written by
//! an earlier version, before proposals were bounded) and a snapshot larger than a frame both reach
//! every follower, in chunks, over real nodes in turmoil's seeded network.
//!
//! `GK_SIM_SEED=<seed> cargo test --test sim_entry_bounds` replays a seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gridkeeper::consensus::{Coordinator, CoordinatorError};
use gridkeeper::ids::NodeId;
use gridkeeper::limits::{ENTRY_BYTES_MAX, FRAME_BYTES_MAX};
use gridkeeper::registry::{CreateMode, RegistryError, ZPath};
use gridkeeper::sim::RunDir;
use gridkeeper::sim::{SimCluster, SimConfig, Workload};
use gridkeeper::state::{Command, Proposal};

fn seed() -> u64 {
    gridkeeper::sim::swarm::seed_from_env().unwrap_or(7)
}

fn create(path: &str, data: Vec<u8>) -> Command {
    Command::Create {
        path: ZPath::parse(path).expect("valid"),
        data,
        mode: CreateMode::Persistent,
        session: None,
        ttl_ms: None,
    }
}

fn applied(cluster: &SimCluster<'_>, node: u64) -> u64 {
    cluster.coordinator(NodeId(node)).map_or(0, |coordinator| coordinator.status().applied_index)
}

/// An entry of 20 MiB (more than a frame) that an earlier version let into the log is replicated to
/// every follower, and the cluster goes on committing after it. Today's proposals of that size are
/// refused before they reach the log.
#[test]
fn an_oversized_entry_already_in_the_log_still_replicates() {
    let seed = seed();
    let oversized = 20 << 20;
    assert!(oversized > FRAME_BYTES_MAX);
    let big_index = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let after = Arc::new(AtomicU64::new(0));
    let workload: Workload = {
        let (big_index, refused, after) = (big_index.clone(), refused.clone(), after.clone());
        Arc::new(move |node: NodeId, coordinator: Coordinator| {
            let (big_index, refused, after) = (big_index.clone(), refused.clone(), after.clone());
            Box::pin(async move {
                if node == NodeId(1) {
                    // The bounded path refuses it, naming the limit.
                    match coordinator.write(create("/refused", vec![1; oversized])).await {
                        Err(CoordinatorError::EntryTooLarge { max, .. }) if max < ENTRY_BYTES_MAX => {
                            refused.store(1, Ordering::Relaxed);
                        }
                        other => panic!("an oversized write was not refused: {other:?}"),
                    }
                }
                // As an earlier version would have: straight into openraft on the leader.
                loop {
                    if big_index.load(Ordering::Relaxed) > 0 {
                        return;
                    }
                    if coordinator.is_leader() {
                        let proposal = Proposal { now_ms: 0, command: create("/big", vec![2; oversized]) };
                        if let Ok(response) = coordinator.raft().client_write(proposal).await {
                            assert!(matches!(response.data.result, Err(RegistryError::TooLarge { .. })));
                            big_index.store(response.log_id.index, Ordering::Relaxed);
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // The log still moves: a later write commits.
                loop {
                    if let Ok(Ok(_)) = coordinator.write(create("/after", b"x".to_vec())).await {
                        after.store(coordinator.status().commit_index, Ordering::Relaxed);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
    };
    let dir = RunDir::new("oversized-entry", seed);
    let mut config = SimConfig::new(seed, 3);
    config.registry_dir = Some(dir.path().to_path_buf());
    config.workload = Some(workload);
    let mut cluster = SimCluster::new(config).expect("cluster");
    let all_applied = |cluster: &SimCluster<'_>| {
        let index = big_index.load(Ordering::Relaxed);
        index > 0 && (1..=3).all(|node| applied(cluster, node) >= index)
    };
    let reached = cluster.run_until(60_000, all_applied).expect("runs");
    assert!(
        reached,
        "seed {seed}: the oversized entry {} did not reach every node: applied {:?}, refused {}",
        big_index.load(Ordering::Relaxed),
        (1..=3).map(|node| applied(&cluster, node)).collect::<Vec<_>>(),
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(refused.load(Ordering::Relaxed), 1);
    let moved = |cluster: &SimCluster<'_>| {
        let index = after.load(Ordering::Relaxed);
        index > 0 && (1..=3).all(|node| applied(cluster, node) >= index)
    };
    assert!(cluster.run_until(30_000, moved).expect("runs"), "seed {seed}: the log stopped after the oversized entry");
    drop(cluster);
    drop(dir);
}

/// A follower that missed purged entries catches up by installing a snapshot of about 24 MiB, more
/// than a mesh frame holds.
#[test]
fn a_snapshot_larger_than_a_frame_is_installed() {
    const WRITES: u64 = 48;
    const VALUE_BYTES: usize = 512 << 10;
    const SMALL_WRITES: u64 = 300;
    let seed = seed();
    let written = Arc::new(AtomicU64::new(0));
    let writer: Workload = {
        let written = written.clone();
        Arc::new(move |node: NodeId, coordinator: Coordinator| {
            let written = written.clone();
            Box::pin(async move {
                if node != NodeId(1) {
                    return;
                }
                // The big values, then small ones: openraft purges in batches of 256 entries.
                while written.load(Ordering::Relaxed) < WRITES + SMALL_WRITES {
                    let index = written.load(Ordering::Relaxed);
                    let bytes = if index < WRITES { VALUE_BYTES } else { 1 };
                    match coordinator.write(create(&format!("/v{index:03}"), vec![index as u8; bytes])).await {
                        Ok(Ok(_)) | Ok(Err(RegistryError::NodeExists { .. })) => {
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
    };
    let dir = RunDir::new("big-snapshot", seed);
    let mut config = SimConfig::new(seed, 3);
    config.registry_dir = Some(dir.path().to_path_buf());
    config.workload = Some(writer);
    config.snapshot_logs = 10;
    let mut cluster = SimCluster::new(config).expect("cluster");
    let leader_known =
        |cluster: &SimCluster<'_>| cluster.coordinator(NodeId(3)).is_some_and(|c| c.status().leader.is_some());
    assert!(cluster.run_until(10_000, leader_known).expect("runs"), "seed {seed}: no leader");
    cluster.crash(NodeId(3));
    let all_written = |_: &SimCluster<'_>| written.load(Ordering::Relaxed) >= WRITES + SMALL_WRITES;
    assert!(cluster.run_until(120_000, all_written).expect("runs"), "seed {seed}: writes did not finish");
    let purged_on_two = |cluster: &SimCluster<'_>| {
        use openraft::async_runtime::WatchReceiver;
        cluster
            .coordinator(NodeId(2))
            .and_then(|c| c.raft().metrics().borrow_watched().purged)
            .is_some_and(|id| id.index > WRITES)
    };
    let purged = cluster.run_until(10_000, purged_on_two).expect("runs");
    assert!(purged, "seed {seed}: node 2 never purged: {:?}", {
        use openraft::async_runtime::WatchReceiver;
        cluster.coordinator(NodeId(2)).map(|c| {
            let m = c.raft().metrics().borrow_watched().clone();
            (m.purged, m.snapshot, m.last_applied)
        })
    });
    // Node 1 dies and node 3 returns behind node 2's purged log: only node 2's snapshot can bring it up.
    cluster.crash(NodeId(1));
    cluster.restart(NodeId(3));
    let last = ZPath::parse(&format!("/v{:03}", WRITES - 1)).expect("valid");
    let caught_up = |cluster: &SimCluster<'_>| {
        cluster.coordinator(NodeId(3)).is_some_and(|c| c.read_local(|registry| registry.exists(&last).is_some()))
    };
    assert!(cluster.run_until(120_000, caught_up).expect("runs"), "seed {seed}: node 3 never caught up");
    let bytes = cluster
        .coordinator(NodeId(3))
        .map(|c| c.read_local(|registry| registry.get(&last).map(|(data, _)| data.len())))
        .expect("running");
    assert_eq!(bytes, Ok(VALUE_BYTES));
    assert!(WRITES as usize * VALUE_BYTES > FRAME_BYTES_MAX, "the snapshot must not fit one frame");
    drop(cluster);
    drop(dir);
}
