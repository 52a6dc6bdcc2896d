//! Deterministic simulation of membership changes under crashes, partitions and loss: a spare node
//! is added (learner, then voter once caught up) and a founder removed while clients read and write
//! one register through every node and submit tasks that every node runs. The history must stay
//! linearizable, every accepted task must end exactly once (one successful attempt), the membership
//! must settle on the intended voters once the faults heal, and the removed node must be refused
//! afterwards.
//!
//! A failure prints its seed; `GK_SIM_SEED=<seed> cargo test --test sim_membership` replays it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridkeeper::consensus::{Consistency, Coordinator, CoordinatorError, ReadOp, ReadResult};
use gridkeeper::grid::task::{AttemptState, Encoding, TaskId, TaskSpec, TaskState};
use gridkeeper::grid::{GridCommand, GridOutcome};
use gridkeeper::ids::NodeId;
use gridkeeper::mesh::PeerAddr;
use gridkeeper::registry::ZPath;
use gridkeeper::sim::{FaultSchedule, RunDir, SimCluster, SimConfig, SimGrid, Workload};
use gridkeeper::state::{Command, Outcome};
use rand::{Rng, SeedableRng};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

/// Hosts: 1 to 3 found the cluster, 4 is the spare added, 3 the founder removed.
const HOSTS: u64 = 4;
const FOUNDERS: u64 = 3;
const ADDED: u64 = 4;
const REMOVED: u64 = 3;
/// Simulated milliseconds of faults.
const CHAOS_MS: u64 = 4_000;
/// Operations per client during the chaos.
const OPS: u32 = 30;
/// Simulated milliseconds allowed to settle after healing.
const SETTLE_MS_MAX: u64 = 60_000;
const SEEDS: u64 = 64;

/// How far the membership change has got (shared by every node's driver, across restarts).
const ADDING: u8 = 0;
const PROMOTING: u8 = 1;
const REMOVING: u8 = 2;
const DONE: u8 = 3;

#[derive(Debug, Clone)]
enum Event {
    Invoke { thread: u64, op: RegisterOp<String> },
    Return { thread: u64, ret: RegisterRet<String> },
}

#[derive(Default)]
struct Shared {
    history: Mutex<Vec<Event>>,
    threads: AtomicU64,
    phase: AtomicU8,
    healed: AtomicBool,
    /// Clients (one per node that stays) done with their operations.
    finished: Mutex<BTreeSet<u64>>,
    /// Task batches each node has submitted (across its restarts).
    batches: Mutex<std::collections::BTreeMap<u64, u32>>,
    /// Every task a submission was acknowledged for.
    accepted: Mutex<Vec<TaskId>>,
}

/// Task batches each node submits during the chaos.
const BATCHES: u32 = 4;

/// Submits batches of short `sleep` tasks through `node`, spread over the chaos.
async fn submitter(shared: Arc<Shared>, node: NodeId, coordinator: Coordinator, seed: u64) {
    let done = shared.batches.lock().expect("batches").get(&node.0).copied().unwrap_or(0);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ node.0.rotate_left(7) ^ u64::from(done));
    for _ in done..BATCHES {
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..CHAOS_MS / u64::from(BATCHES)))).await;
        let tasks: Vec<TaskSpec> = (0..rng.random_range(1..6))
            .map(|_| {
                let input = serde_json::json!({ "ms": rng.random_range(1..200) });
                let mut spec = TaskSpec::new("sleep", serde_json::to_vec(&input).expect("json"));
                spec.encoding = Encoding::Json;
                spec
            })
            .collect();
        let command = Command::App(GridCommand::Submit { tasks });
        if let Ok(Ok(Outcome::App(outcome @ GridOutcome::Submitted { .. }))) = coordinator.write(command).await {
            shared.accepted.lock().expect("accepted").extend(outcome.ids());
        }
        *shared.batches.lock().expect("batches").entry(node.0).or_default() += 1;
    }
}

/// Every accepted task is in `coordinator`'s table and ended, succeeded, with one successful
/// attempt and no attempt left open.
fn tasks_settled(coordinator: &Coordinator, accepted: &[TaskId]) -> Result<(), String> {
    coordinator.read_state(|state| {
        for id in accepted {
            let task = state.grid.get(*id).ok_or_else(|| format!("task {id:?} is missing"))?;
            let states: Vec<AttemptState> = task.attempts.iter().map(|attempt| attempt.state).collect();
            if task.state != TaskState::Succeeded {
                return Err(format!("task {id:?} is {:?}: {states:?}", task.state));
            }
            let wins = states.iter().filter(|state| **state == AttemptState::Succeeded).count();
            if wins != 1 || states.iter().any(|state| matches!(state, AttemptState::Assigned | AttemptState::Running)) {
                return Err(format!("task {id:?} ended with attempts {states:?}"));
            }
        }
        Ok(())
    })
}

fn register() -> ZPath {
    ZPath::parse("/register").expect("valid")
}

async fn operate(coordinator: &Coordinator, op: &RegisterOp<String>) -> Result<RegisterRet<String>, CoordinatorError> {
    match op {
        RegisterOp::Write(value) => {
            let set = Command::Set { path: register(), data: value.clone().into_bytes(), version: None };
            match coordinator.write(set).await? {
                Ok(Outcome::Set { .. }) => Ok(RegisterRet::WriteOk),
                other => panic!("a set of the register answered {other:?}"),
            }
        }
        RegisterOp::Read => match coordinator.read(&ReadOp::Get(register()), Consistency::Linearizable).await? {
            ReadResult::Data { data, .. } => Ok(RegisterRet::ReadOk(String::from_utf8(data).expect("utf-8"))),
            other => panic!("a get answered {other:?}"),
        },
    }
}

/// Every node's client: sets and reads the register during the chaos, and a final read once healed
/// (no acknowledged write may be missing from it).
async fn client(shared: Arc<Shared>, node: NodeId, coordinator: Coordinator, seed: u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ node.0.wrapping_mul(0x9e37_79b9));
    gridkeeper::sim::create_until_present(&coordinator, register(), b"init").await;
    let mut thread = shared.threads.fetch_add(1, Ordering::Relaxed);
    let record = |event: Event| shared.history.lock().expect("history").push(event);
    for counter in 0..=OPS {
        let last = counter == OPS;
        if last {
            while !shared.healed.load(Ordering::Relaxed) || shared.phase.load(Ordering::Relaxed) != DONE {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(1..2 * CHAOS_MS / u64::from(OPS)))).await;
        let op = if !last && rng.random_bool(0.5) {
            RegisterOp::Write(format!("n{node}-t{thread}-c{counter}"))
        } else {
            RegisterOp::Read
        };
        record(Event::Invoke { thread, op: op.clone() });
        match operate(&coordinator, &op).await {
            Ok(ret) => record(Event::Return { thread, ret }),
            // The operation stays pending ("may have happened"); the client goes on as a new thread.
            Err(_) if !last => thread = shared.threads.fetch_add(1, Ordering::Relaxed),
            // The final read must succeed once healed: retry it as a fresh operation.
            Err(_) => {
                thread = shared.threads.fetch_add(1, Ordering::Relaxed);
                final_read(shared.clone(), node, coordinator, thread).await;
                return;
            }
        }
    }
    shared.finished.lock().expect("finished").insert(node.0);
}

async fn final_read(shared: Arc<Shared>, node: NodeId, coordinator: Coordinator, mut thread: u64) {
    loop {
        shared.history.lock().expect("history").push(Event::Invoke { thread, op: RegisterOp::Read });
        if let Ok(ret) = operate(&coordinator, &RegisterOp::Read).await {
            shared.history.lock().expect("history").push(Event::Return { thread, ret });
            shared.finished.lock().expect("finished").insert(node.0);
            return;
        }
        thread = shared.threads.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator, acting through whichever node runs it: add the spare, wait until it votes, remove
/// the founder. Every step is retried until it answers; a refusal (no quorum now) is retried too.
async fn operator(shared: Arc<Shared>, coordinator: Coordinator, spare: PeerAddr) {
    tokio::time::sleep(Duration::from_millis(CHAOS_MS / 4)).await;
    loop {
        match shared.phase.load(Ordering::Relaxed) {
            ADDING => {
                if coordinator.add_member(NodeId(ADDED), &spare).await.is_ok() {
                    let _ = shared.phase.compare_exchange(ADDING, PROMOTING, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
            PROMOTING => {
                if coordinator.voters().iter().any(|(id, _)| id.0 == ADDED) {
                    let _ = shared.phase.compare_exchange(PROMOTING, REMOVING, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
            REMOVING => {
                if coordinator.remove_member(NodeId(REMOVED)).await.is_ok() {
                    let _ = shared.phase.compare_exchange(REMOVING, DONE, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn workload(shared: Arc<Shared>, seed: u64) -> Workload {
    Arc::new(move |node: NodeId, coordinator: Coordinator| {
        let shared = shared.clone();
        Box::pin(async move {
            // Nodes 1 and 2 stay members throughout: the operator acts through them.
            if node.0 <= 2 {
                let spare = SocketAddr::new(turmoil::lookup(gridkeeper::sim::host_name(NodeId(ADDED))), 7000);
                tokio::spawn(operator(shared.clone(), coordinator.clone(), spare.into()));
            }
            if node.0 != REMOVED {
                tokio::spawn(submitter(shared.clone(), node, coordinator.clone(), seed));
                client(shared, node, coordinator, seed).await;
            }
        })
    })
}

fn voters(cluster: &SimCluster<'_>, node: u64) -> Option<Vec<u64>> {
    let coordinator = cluster.coordinator(NodeId(node))?;
    Some(coordinator.voters().into_iter().map(|(id, _)| id.0).collect())
}

fn run(seed: u64) -> Vec<Event> {
    let shared = Arc::new(Shared::default());
    let dir = RunDir::new("membership", seed);
    let mut config = SimConfig::new(seed, HOSTS);
    config.founders = Some(FOUNDERS);
    config.registry_dir = Some(dir.path().to_path_buf());
    config.repair_rate = 0.05;
    config.workload = Some(workload(shared.clone(), seed));
    config.grid = Some(SimGrid::new());
    let mut cluster = SimCluster::new(config).expect("cluster");
    let schedule = FaultSchedule::random(seed, HOSTS, CHAOS_MS);
    let faults = cluster.run_schedule(&schedule).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    cluster.heal();
    shared.healed.store(true, Ordering::Relaxed);
    let stays = [1, 2, ADDED];
    let settled = cluster
        .run_until(SETTLE_MS_MAX, |cluster| {
            let accepted = shared.accepted.lock().expect("accepted").clone();
            shared.finished.lock().expect("finished").len() == stays.len()
                && shared.batches.lock().expect("batches").values().filter(|&&n| n >= BATCHES).count() == stays.len()
                && stays.iter().all(|&node| voters(cluster, node).is_some_and(|voters| voters == stays))
                && stays.iter().all(|&node| {
                    cluster.coordinator(NodeId(node)).is_some_and(|c| tasks_settled(&c, &accepted).is_ok())
                })
        })
        .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    if !settled {
        for node in 1..=HOSTS {
            eprintln!(
                "seed {seed}: node {node}: {:?}, voters {:?}",
                cluster.coordinator(NodeId(node)).map(|c| c.status()),
                voters(&cluster, node)
            );
        }
    }
    assert!(
        settled,
        "seed {seed}: membership did not settle on voters {stays:?} (phase {}, finished {:?}; faults {faults:?})",
        shared.phase.load(Ordering::Relaxed),
        shared.finished.lock().expect("finished")
    );
    let accepted = shared.accepted.lock().expect("accepted").clone();
    assert!(!accepted.is_empty(), "seed {seed}: no task was accepted");
    for node in stays {
        let coordinator = cluster.coordinator(NodeId(node)).expect("running");
        if let Err(problem) = tasks_settled(&coordinator, &accepted) {
            panic!("seed {seed}: on node {node}: {problem}");
        }
    }
    // The removed node is refused by every member's mesh.
    for node in stays {
        let mesh = cluster.mesh(NodeId(node)).expect("running");
        assert!(
            !mesh.peers().contains_key(&NodeId(REMOVED)),
            "seed {seed}: node {node} still has node {REMOVED} as a peer"
        );
    }
    let history = shared.history.lock().expect("history").clone();
    drop(cluster);
    drop(dir);
    history
}

fn check_linearizable(seed: u64, history: &[Event]) {
    let mut tester = LinearizabilityTester::new(Register("init".to_string()));
    for event in history {
        match event {
            Event::Invoke { thread, op } => tester.on_invoke(*thread, op.clone()).expect("well-formed history"),
            Event::Return { thread, ret } => tester.on_return(*thread, ret.clone()).expect("well-formed history"),
        };
    }
    assert!(tester.is_consistent(), "seed {seed}: the register's history is not linearizable: {history:?}");
}

#[test]
fn adding_a_voter_and_removing_a_founder_under_faults_stays_linearizable_and_settles() {
    let seeds: Vec<u64> = match gridkeeper::sim::swarm::seed_from_env() {
        Some(seed) => vec![seed],
        None => (1..=SEEDS).collect(),
    };
    for seed in seeds {
        let history = run(seed);
        check_linearizable(seed, &history);
    }
}
