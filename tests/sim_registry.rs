//! Deterministic simulation of the replicated registry: 3 and 5 real nodes (mesh, openraft, the fsync'd log)
//! over turmoil's seeded network, with crashes, restarts, partitions and flapping links. Every
//! client history is checked linearizable (stateright's `LinearizabilityTester`, per key), and the
//! cluster must serve every client to the end once healed.
//!
//! The two swarms run hundreds of seeded fault schedules per `cargo test` (see `gridkeeper::sim::swarm`
//! for `GK_SIM_SCHEDULES`, `GK_SIM_SECONDS` and the other knobs); each schedule crashes the leader and
//! restarts it, cuts a link and repairs it, and adds random faults. A failing seed prints the command
//! that replays it, e.g. `GK_SIM_SEED=17 cargo test --test sim_registry three_nodes -- --nocapture`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridkeeper::consensus::{Consistency, Coordinator, CoordinatorError, ReadOp, ReadResult};
use gridkeeper::ids::NodeId;
use gridkeeper::registry::{CreateMode, RegistryError, ZPath};
use gridkeeper::sim::RunDir;
use gridkeeper::sim::{FaultLog, FaultSchedule, SimCluster, SimConfig, Swarm, Workload};
use gridkeeper::state::{Command, Outcome};
use rand::{Rng, SeedableRng};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

const KEYS: usize = 3;
const OPS_PER_CLIENT: u32 = 25;
/// Simulated milliseconds of chaos.
const CHAOS_MS: u64 = 3_000;
/// Longest pause between a client's operations: its operations span the chaos.
const OP_PAUSE_MS_MAX: u64 = 2 * CHAOS_MS / OPS_PER_CLIENT as u64;
/// Schedules each `cargo test` runs on 3 nodes, and on 5.
const SCHEDULES_3: u64 = 500;
const SCHEDULES_5: u64 = 100;
/// Every this many schedules, one runs twice and must replay its history exactly.
const REPLAY_EVERY: u64 = 40;
/// Simulated milliseconds allowed for every client to finish once the cluster is healed.
const HEAL_MS_MAX: u64 = 60_000;

#[derive(Debug, Clone)]
enum Event {
    Invoke { thread: u64, key: usize, op: RegisterOp<String> },
    Return { thread: u64, key: usize, ret: RegisterRet<String> },
}

#[derive(Default)]
struct Shared {
    history: Mutex<Vec<Event>>,
    next_thread: AtomicU64,
    healed: AtomicBool,
    finished: AtomicU64,
}

fn key_path(key: usize) -> ZPath {
    ZPath::parse(&format!("/k{key}")).expect("valid")
}

async fn ensure_keys(coordinator: &Coordinator) {
    for key in 0..KEYS {
        gridkeeper::sim::create_until_present(coordinator, key_path(key), b"init").await;
    }
}

async fn perform(
    coordinator: &Coordinator,
    key: usize,
    op: &RegisterOp<String>,
) -> Result<RegisterRet<String>, CoordinatorError> {
    match op {
        RegisterOp::Write(value) => {
            let set = Command::Set { path: key_path(key), data: value.clone().into_bytes(), version: None };
            match coordinator.write(set).await? {
                Ok(Outcome::Set { .. }) => Ok(RegisterRet::WriteOk),
                other => panic!("a set on an existing key answered {other:?}"),
            }
        }
        RegisterOp::Read => match coordinator.read(&ReadOp::Get(key_path(key)), Consistency::Linearizable).await? {
            ReadResult::Data { data, .. } => Ok(RegisterRet::ReadOk(String::from_utf8(data).expect("utf-8"))),
            other => panic!("a get answered {other:?}"),
        },
    }
}

fn workload(shared: Arc<Shared>, seed: u64) -> Workload {
    Arc::new(move |node: NodeId, coordinator: Coordinator| {
        let shared = shared.clone();
        Box::pin(async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ node.0.wrapping_mul(0x9e37_79b9));
            ensure_keys(&coordinator).await;
            let mut thread = shared.next_thread.fetch_add(1, Ordering::Relaxed);
            let record = |event: Event| shared.history.lock().expect("history").push(event);
            for counter in 0..OPS_PER_CLIENT + KEYS as u32 {
                // The last ops read every key, once the cluster is healed: no acknowledged write lost.
                let final_read = counter >= OPS_PER_CLIENT;
                if final_read {
                    while !shared.healed.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                // Spread over the chaos, so operations meet the faults.
                tokio::time::sleep(Duration::from_millis(rng.random_range(1..OP_PAUSE_MS_MAX))).await;
                let key = if final_read { (counter - OPS_PER_CLIENT) as usize } else { rng.random_range(0..KEYS) };
                let op = if !final_read && rng.random_bool(0.5) {
                    RegisterOp::Write(format!("n{node}-t{thread}-c{counter}"))
                } else {
                    RegisterOp::Read
                };
                record(Event::Invoke { thread, key, op: op.clone() });
                match perform(&coordinator, key, &op).await {
                    Ok(ret) => record(Event::Return { thread, key, ret }),
                    // Unknown outcome or unavailable: the op stays pending ("may have happened"),
                    // and this client continues as a new thread.
                    Err(_) => thread = shared.next_thread.fetch_add(1, Ordering::Relaxed),
                }
            }
            shared.finished.fetch_add(1, Ordering::Relaxed);
        })
    })
}

/// Runs one seeded schedule and returns its history and what faults it inflicted.
fn run(seed: u64, nodes: u64) -> (Vec<Event>, FaultLog) {
    let shared = Arc::new(Shared::default());
    let dir = RunDir::new(&format!("registry-{nodes}"), seed);
    let mut config = SimConfig::new(seed, nodes);
    config.registry_dir = Some(dir.path().to_path_buf());
    // Randomly failed links come back on their own.
    config.repair_rate = 0.05;
    config.workload = Some(workload(shared.clone(), seed));
    let mut cluster = SimCluster::new(config).expect("cluster");
    let ids: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
    let schedule = FaultSchedule::random(seed, nodes, CHAOS_MS);
    let faults = cluster.run_schedule(&schedule).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    assert!(
        faults.crashes() >= 1 && faults.restarts() >= 1 && faults.partitions() >= 1,
        "seed {seed}: the schedule must crash, restart and cut: {faults:?}"
    );
    cluster.heal();
    shared.healed.store(true, Ordering::Relaxed);
    let clients = nodes;
    let done = cluster
        .run_until(HEAL_MS_MAX, |_| shared.finished.load(Ordering::Relaxed) >= clients)
        .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    let history = shared.history.lock().expect("history").clone();
    if !done {
        for &id in &ids {
            eprintln!(
                "seed {seed}: node {id}: {:?} sees {:?}",
                cluster.coordinator(id).map(|c| c.status()),
                cluster.members(id)
            );
        }
        eprintln!("finished clients: {}", shared.finished.load(Ordering::Relaxed));
    }
    drop(cluster);
    drop(dir);
    assert!(done, "seed {seed} ({nodes} nodes): clients did not finish after healing; {} events", history.len());
    (history, faults)
}

/// Checks every key's history; returns the number of completed operations.
fn check_linearizable(seed: u64, history: &[Event]) -> usize {
    let mut testers: BTreeMap<usize, LinearizabilityTester<u64, Register<String>>> =
        (0..KEYS).map(|key| (key, LinearizabilityTester::new(Register("init".to_string())))).collect();
    let mut completed = 0;
    for event in history {
        match event {
            Event::Invoke { thread, key, op } => {
                testers.get_mut(key).expect("key").on_invoke(*thread, op.clone()).expect("well-formed history");
            }
            Event::Return { thread, key, ret } => {
                completed += 1;
                testers.get_mut(key).expect("key").on_return(*thread, ret.clone()).expect("well-formed history");
            }
        }
    }
    for (key, tester) in testers {
        assert!(tester.is_consistent(), "seed {seed}: key /k{key} history is not linearizable: {history:?}");
    }
    completed
}

fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
    match gridkeeper::sim::swarm::seed_from_env() {
        Some(seed) => vec![seed],
        None => default.collect(),
    }
}

/// One schedule: run, check the history, and return it (as text) for the replay check.
fn check_schedule(seed: u64, nodes: u64, leader_crashes: &AtomicU64) -> Vec<String> {
    let (history, faults) = run(seed, nodes);
    let completed = check_linearizable(seed, &history);
    assert!(completed > (OPS_PER_CLIENT as usize), "seed {seed}: only {completed} operations completed");
    leader_crashes.fetch_add(faults.leader_crashes() as u64, Ordering::Relaxed);
    if gridkeeper::sim::swarm::seed_from_env().is_some() {
        eprintln!(
            "seed {seed} ({nodes} nodes): {completed} ops completed, {} events, {} faults: {faults:?}",
            history.len(),
            faults.faults()
        );
    }
    history.iter().map(|event| format!("{event:?}")).collect()
}

fn swarm(nodes: u64, test_name: &str, schedules: u64, seed_base: u64) {
    let leader_crashes = AtomicU64::new(0);
    let report = Swarm::new("sim_registry", test_name, schedules, seed_base)
        .replay_every(REPLAY_EVERY)
        .run(|seed| check_schedule(seed, nodes, &leader_crashes));
    let leader_crashes = leader_crashes.load(Ordering::Relaxed);
    eprintln!("{nodes} nodes: {} schedules, {leader_crashes} leader crashes", report.schedules);
    // A leader crash waits for an election; only a schedule that never elects could miss it.
    assert!(leader_crashes * 10 >= report.schedules * 9, "too few leaders crashed: {leader_crashes}");
}

#[test]
fn three_nodes_stay_linearizable_under_crashes_partitions_and_loss() {
    swarm(3, "three_nodes_stay_linearizable", SCHEDULES_3, 1);
}

#[test]
fn five_nodes_stay_linearizable_under_crashes_partitions_and_loss() {
    swarm(5, "five_nodes_stay_linearizable", SCHEDULES_5, 100_000);
}

#[test]
#[should_panic(expected = "not linearizable")]
fn the_checker_rejects_a_stale_read() {
    let history = vec![
        Event::Invoke { thread: 0, key: 0, op: RegisterOp::Write("a".into()) },
        Event::Return { thread: 0, key: 0, ret: RegisterRet::WriteOk },
        Event::Invoke { thread: 1, key: 0, op: RegisterOp::Read },
        Event::Return { thread: 1, key: 0, ret: RegisterRet::ReadOk("init".into()) },
    ];
    check_linearizable(0, &history);
}

#[test]
fn the_same_seed_replays_the_same_history() {
    let seed = seeds(7..8)[0];
    let describe = |(history, faults): (Vec<Event>, FaultLog)| {
        (history.iter().map(|event| format!("{event:?}")).collect::<Vec<_>>(), faults)
    };
    let first = describe(run(seed, 3));
    let second = describe(run(seed, 3));
    assert!(!first.0.is_empty(), "seed {seed}: nothing happened");
    assert_eq!(first, second, "seed {seed}: two runs diverged");
}

/// A follower that misses more than the retained log catches up from a snapshot (built, purged and
/// installed through openraft), and a restarted leader recovers from its own snapshot file.
#[test]
fn a_node_that_missed_purged_entries_catches_up_from_a_snapshot() {
    const WRITES: usize = 300;
    let seed = seeds(42..43)[0];
    let written = Arc::new(AtomicU64::new(0));
    let writer: Workload = {
        let written = written.clone();
        Arc::new(move |node: NodeId, coordinator: Coordinator| {
            let written = written.clone();
            Box::pin(async move {
                if node != NodeId(1) {
                    return;
                }
                while (written.load(Ordering::Relaxed) as usize) < WRITES {
                    let index = written.load(Ordering::Relaxed);
                    let path = ZPath::parse(&format!("/s{index:04}")).expect("valid");
                    let create = Command::Create {
                        path,
                        data: index.to_string().into_bytes(),
                        mode: CreateMode::Persistent,
                        session: None,
                        ttl_ms: None,
                    };
                    match coordinator.write(create).await {
                        Ok(Ok(_)) | Ok(Err(RegistryError::NodeExists { .. })) => {
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
    };
    let dir = RunDir::new("registry-3", seed);
    let mut config = SimConfig::new(seed, 3);
    config.registry_dir = Some(dir.path().to_path_buf());
    config.workload = Some(writer);
    config.snapshot_logs = 50;
    let mut cluster = SimCluster::new(config).expect("cluster");
    let leader_known =
        |cluster: &SimCluster<'_>| cluster.coordinator(NodeId(3)).is_some_and(|c| c.status().leader.is_some());
    assert!(cluster.run_until(10_000, leader_known).expect("runs"), "seed {seed}: no leader");
    cluster.crash(NodeId(3));
    let all_written = cluster.run_until(120_000, |_| written.load(Ordering::Relaxed) as usize >= WRITES).expect("runs");
    assert!(all_written, "seed {seed}: only {} of {WRITES} writes", written.load(Ordering::Relaxed));
    // Followers snapshot and purge; the leader keeps what lagging node 3 still needs.
    let purged_on_two = |cluster: &SimCluster<'_>| {
        use openraft::async_runtime::WatchReceiver;
        cluster
            .coordinator(NodeId(2))
            .and_then(|c| c.raft().metrics().borrow_watched().purged)
            .is_some_and(|id| id.index > 50)
    };
    assert!(
        cluster.run_until(10_000, purged_on_two).expect("runs"),
        "seed {seed}: node 2 never snapshotted and purged"
    );
    // Node 1 dies and node 3 returns: node 2 must lead, and node 3 is behind node 2's purged log, so
    // it can only catch up by installing node 2's snapshot.
    cluster.crash(NodeId(1));
    cluster.restart(NodeId(3));
    let last = ZPath::parse(&format!("/s{:04}", WRITES - 1)).expect("valid");
    let has_last = |node: u64| {
        let last = last.clone();
        move |c: &SimCluster<'_>| {
            c.coordinator(NodeId(node)).is_some_and(|c| c.read_local(|registry| registry.exists(&last).is_some()))
        }
    };
    assert!(cluster.run_until(60_000, has_last(3)).expect("runs"), "seed {seed}: node 3 never caught up");
    let count = cluster.coordinator(NodeId(3)).map(|c| c.read_local(|registry| registry.znode_count()));
    assert!(count.is_some_and(|count| count > WRITES), "seed {seed}: node 3 holds {count:?} znodes");
    // Node 1 restarts from its own snapshot file plus its retained log.
    cluster.restart(NodeId(1));
    assert!(cluster.run_until(60_000, has_last(1)).expect("runs"), "seed {seed}: node 1 did not recover its state");
    drop(cluster);
    drop(dir);
}
