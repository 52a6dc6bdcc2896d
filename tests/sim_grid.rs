//! Deterministic simulation of the task grid: 3 real nodes (mesh, openraft, redb, dispatcher,
//! registration, worker supervisor with task actors) over turmoil's seeded network. Every node submits
//! random batches of tasks while nodes crash and restart (the leader too), links are cut and healed.
//!
//! Checked after every run: every accepted task reaches a terminal state (here: succeeded, since every
//! kind succeeds within its attempts); its completion is recorded exactly once; no attempt is left
//! open; no worker ever ran more attempts at once than its slots; no accepted task is missing after the
//! leader changes.
//!
//! A failure prints its seed; `GRIDKEEPER_SIM_SEED=<seed> cargo test --test sim_grid` replays it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridkeeper::consensus::Coordinator;
use gridkeeper::grid::task::{AttemptState, RetryPolicy, Strategy, TaskId, TaskSpec, TaskState};
use gridkeeper::grid::{GridCommand, GridOutcome};
use gridkeeper::ids::NodeId;
use gridkeeper::sim::{SimCluster, SimConfig, Workload};
use gridkeeper::state::NodeRecord;
use gridkeeper::state::{Command, Outcome};
use gridkeeper::worker::{WorkerArgs, WorkerGauge, WorkerLink, WorkerSupervisor};
use rand::{Rng, SeedableRng};

const NODES: u64 = 3;
const SLOTS: u32 = 2;
const PREFETCH: u32 = 4;
const BATCHES_PER_NODE: u32 = 6;
/// Simulated milliseconds of chaos.
const CHAOS_MS: u64 = 5_000;
/// Simulated milliseconds allowed for every accepted task to end once the cluster is healed.
const HEAL_MS_MAX: u64 = 60_000;

#[derive(Default)]
struct Shared {
    accepted: Mutex<BTreeSet<TaskId>>,
    gauges: Mutex<Vec<(NodeId, WorkerGauge)>>,
    submitters_done: AtomicU64,
    healed: AtomicBool,
}

fn random_spec(rng: &mut rand::rngs::SmallRng) -> TaskSpec {
    let (kind, input) = match rng.random_range(0..3) {
        0 => ("noop", serde_json::json!({})),
        1 => ("sleep", serde_json::json!({ "ms": rng.random_range(1..300) })),
        _ => ("fail", serde_json::json!({ "times": 1 })),
    };
    let mut spec = TaskSpec::new(kind, serde_json::to_vec(&input).expect("json"));
    spec.encoding = gridkeeper::grid::task::Encoding::Json;
    spec.priority = rng.random_range(0..3);
    // No backoff and a long timeout: the grid's wall-clock timers do not follow simulated time.
    spec.retry = RetryPolicy { attempts_max: 3, backoff_ms: 0 };
    spec.timeout_ms = 3_600_000;
    spec
}

fn workload(shared: Arc<Shared>, seed: u64) -> Workload {
    Arc::new(move |node: NodeId, coordinator: Coordinator| {
        let shared = shared.clone();
        Box::pin(async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ node.0.wrapping_mul(0x9e37_79b9));
            let kinds = gridkeeper::worker::builtin::kinds();
            tokio::spawn(gridkeeper::service::dispatcher::run(
                coordinator.clone(),
                Strategy::LeastLoaded,
                seed ^ node.0,
            ));
            let record = NodeRecord {
                addr: gridkeeper::sim::host_name(node),
                slots: SLOTS,
                prefetch: PREFETCH,
                weight: 1,
                kinds: kinds.names(),
            };
            tokio::spawn(gridkeeper::service::registration::keep_registered_local(coordinator.clone(), node, record));
            let gauge = WorkerGauge::default();
            shared.gauges.lock().expect("gauges").push((node, gauge.clone()));
            let args = WorkerArgs {
                node,
                link: WorkerLink::Local(coordinator.clone()),
                kinds,
                threads: 0,
                slots: SLOTS,
                gauge,
            };
            let (_worker, _) =
                ractor::Actor::spawn(None, WorkerSupervisor, Arc::new(args)).await.expect("worker starts");
            for _ in 0..BATCHES_PER_NODE {
                tokio::time::sleep(Duration::from_millis(rng.random_range(10..600))).await;
                let specs: Vec<TaskSpec> = (0..rng.random_range(1..12)).map(|_| random_spec(&mut rng)).collect();
                let command = Command::App(GridCommand::Submit { tasks: specs });
                if let Ok(Ok(Outcome::App(outcome @ GridOutcome::Submitted { .. }))) = coordinator.write(command).await
                {
                    shared.accepted.lock().expect("accepted").extend(outcome.ids());
                }
            }
            shared.submitters_done.fetch_add(1, Ordering::Relaxed);
            // The worker lives as long as this host: hold it until the host stops.
            std::future::pending::<()>().await;
        })
    })
}

fn data_root(seed: u64) -> std::path::PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("gk-sim-grid-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The most advanced replica's view: every accepted task and how it ended.
fn final_tasks(
    cluster: &SimCluster<'_>,
    accepted: &BTreeSet<TaskId>,
) -> Option<BTreeMap<TaskId, (TaskState, Vec<AttemptState>)>> {
    let coordinator = (1..=NODES)
        .filter_map(|id| cluster.coordinator(NodeId(id)))
        .max_by_key(|coordinator| coordinator.status().applied_index)?;
    Some(coordinator.read_state(|state| {
        accepted
            .iter()
            .filter_map(|&id| {
                let task = state.grid.get(id)?;
                Some((id, (task.state, task.attempts.iter().map(|attempt| attempt.state).collect())))
            })
            .collect()
    }))
}

/// Runs one seeded scenario; returns the final table of accepted tasks.
fn run(seed: u64) -> BTreeMap<TaskId, (TaskState, Vec<AttemptState>)> {
    let shared = Arc::new(Shared::default());
    let dir = data_root(seed);
    let mut config = SimConfig::new(seed, NODES);
    config.registry_dir = Some(dir.clone());
    config.repair_rate = 0.05;
    config.workload = Some(workload(shared.clone(), seed));
    let mut cluster = SimCluster::new(config).expect("cluster");
    let ids: Vec<NodeId> = (1..=NODES).map(NodeId).collect();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut crashed: Option<NodeId> = None;
    let mut partitioned = Vec::new();
    for _ in 0..CHAOS_MS / 250 {
        cluster.run_for(250).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        match rng.random_range(0..5) {
            0 if crashed.is_none() => {
                // Often the leader: its successor must continue from the committed table.
                let leader = (1..=NODES).find_map(|id| cluster.coordinator(NodeId(id))?.status().leader);
                let victim = match leader {
                    Some(leader) if rng.random_bool(0.5) => NodeId(leader),
                    _ => ids[rng.random_range(0..ids.len())],
                };
                cluster.crash(victim);
                crashed = Some(victim);
            }
            1 => {
                if let Some(back) = crashed.take() {
                    cluster.restart(back);
                }
            }
            2 if partitioned.is_empty() => {
                let a = ids[rng.random_range(0..ids.len())];
                let b = ids[rng.random_range(0..ids.len())];
                if a != b {
                    cluster.partition(a, b);
                    partitioned.push((a, b));
                }
            }
            3 => {
                for (a, b) in partitioned.drain(..) {
                    cluster.repair(a, b);
                }
            }
            _ => {}
        }
    }
    for (a, b) in partitioned.drain(..) {
        cluster.repair(a, b);
    }
    if let Some(back) = crashed.take() {
        cluster.restart(back);
    }
    cluster.set_fail_rate(0.0);
    shared.healed.store(true, Ordering::Relaxed);
    let settled = cluster
        .run_until(HEAL_MS_MAX, |cluster| {
            if shared.submitters_done.load(Ordering::Relaxed) < NODES {
                return false;
            }
            let accepted = shared.accepted.lock().expect("accepted").clone();
            final_tasks(cluster, &accepted).is_some_and(|tasks| {
                tasks.len() == accepted.len() && tasks.values().all(|(state, _)| state.is_terminal())
            })
        })
        .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    let accepted = shared.accepted.lock().expect("accepted").clone();
    let tasks = final_tasks(&cluster, &accepted).expect("a coordinator runs");
    assert!(settled, "seed {seed}: not every accepted task ended: {} of {} found", tasks.len(), accepted.len());
    assert!(!accepted.is_empty(), "seed {seed}: nothing was accepted");
    for (id, (state, attempts)) in &tasks {
        assert_eq!(*state, TaskState::Succeeded, "seed {seed}: task {id:?} ended {state:?}: {attempts:?}");
        let wins = attempts.iter().filter(|attempt| **attempt == AttemptState::Succeeded).count();
        assert_eq!(wins, 1, "seed {seed}: task {id:?} completion recorded {wins} times: {attempts:?}");
        assert!(
            attempts.iter().all(|attempt| !matches!(attempt, AttemptState::Assigned | AttemptState::Running)),
            "seed {seed}: task {id:?} has an open attempt: {attempts:?}"
        );
    }
    for (node, gauge) in shared.gauges.lock().expect("gauges").iter() {
        assert!(gauge.peak() <= SLOTS, "seed {seed}: node {node} ran {} attempts at once", gauge.peak());
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    tasks
}

fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
    match std::env::var("GRIDKEEPER_SIM_SEED").ok().and_then(|text| text.parse().ok()) {
        Some(seed) => vec![seed],
        None => default.collect(),
    }
}

#[test]
fn every_accepted_task_ends_exactly_once_through_crashes_partitions_and_leader_changes() {
    for seed in seeds(1..9) {
        let tasks = run(seed);
        let lost = tasks.values().filter(|(_, attempts)| attempts.contains(&AttemptState::Lost)).count();
        let failed = tasks.values().filter(|(_, attempts)| attempts.contains(&AttemptState::Failed)).count();
        eprintln!("seed {seed}: {} tasks, {lost} with a lost attempt, {failed} with a failed attempt", tasks.len());
    }
}

#[test]
fn a_seed_replays_the_same_run() {
    let seed = seeds(11..12)[0];
    let first = run(seed);
    let second = run(seed);
    assert_eq!(first, second, "seed {seed} did not replay");
}
