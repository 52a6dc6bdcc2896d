//! Deterministic simulation of the leader lease (`consensus/lease.rs`): 3 real nodes over turmoil,
//! each node's lease clock drifting against simulated time, and a leader deposed while its clients
//! keep reading from it.
//!
//! The scenario: a leader is elected and serves reads and writes; then it is cut off (from both
//! followers at once, or from one follower first and then from the other while that follower crashes
//! and restarts, which forgets its lease stamp). The majority elects a new leader and writes new
//! values there, while a client keeps reading, linearizably, from the old leader. Every history is
//! checked linearizable (stateright's `LinearizabilityTester`).
//! - Within the drift bound (rates between `1/(1+ρ)` and `1+ρ` of simulated time) every history of
//!   many seeds is linearizable, and the old leader did serve reads from its lease after the cut.
//! - Far beyond it (the old leader's lease clock at 0.2x) the same scenario serves a stale read and
//!   the checker catches it: the test can fail.
//! - A healthy leader serves every read from its lease: no quorum round, and its followers serve
//!   theirs from the read leases it grants them (`consensus/follower_lease.rs`).
//! - Follower read leases: the reader is a follower holding a lease, cut off from everyone (or the
//!   leader cut off from both followers), while the writer writes through the majority. Within the
//!   drift bound every history is linearizable and the follower served reads after the cut; with the
//!   follower's lease clock far beyond the bound it serves a stale read the checker catches.
//!
//! Replay a seed: `GK_SIM_SEED=17 cargo test --test sim_lease deposed -- --nocapture`. Explore the
//! bound: `GK_LEASE_RATE_PPM=900000 GK_SIM_SCHEDULES=300 cargo test --test sim_lease deposed` runs
//! every node's lease clock at 0.8x (four times the bound) and finds a stale read (at 0.9x, 90 seeds
//! find none: the staggered cut is sharp, not exact). `GK_LEASE_TRACE=1` prints, per seed, when the
//! new leader came, when its first write completed and when the deposed leader's last read was
//! served, counted from the cut.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridkeeper::consensus::lease::{ClockRate, DRIFT_PPM};
use gridkeeper::consensus::{Consistency, Coordinator, CoordinatorError, ReadOp, ReadResult};
use gridkeeper::ids::NodeId;
use gridkeeper::registry::ZPath;
use gridkeeper::sim::{RunDir, SimCluster, SimConfig, Swarm, Workload};
use gridkeeper::state::{Command, Outcome};
use rand::{Rng, SeedableRng};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

/// Seeds each `cargo test` runs within the drift bound.
const SCHEDULES: u64 = 90;
/// Seeds of the negative control: each must be caught.
const CONTROL_SEEDS: u64 = 4;
/// Simulated milliseconds the deposed leader's clients keep reading after the cut.
const DEPOSED_MS: u64 = 1_500;
/// Simulated milliseconds allowed for the first leader and for every client to finish once healed.
const SETTLE_MS_MAX: u64 = 30_000;
/// Nodes in the cluster.
const NODES: u64 = 3;

#[derive(Debug, Clone)]
enum Event {
    Invoke { thread: u64, op: RegisterOp<String> },
    Return { thread: u64, ret: RegisterRet<String> },
}

#[derive(Default)]
struct Shared {
    history: Mutex<Vec<Event>>,
    next_thread: AtomicU64,
    /// The node whose client reads back to back, once chosen (0 before): the leader to depose, or
    /// in the follower-lease scenarios a follower.
    deposed: AtomicU64,
    /// The node whose client writes (0: none). The third node's client only waits for the end: one
    /// reader and one writer keep the checker's search small even when it must refute a history.
    writer: AtomicU64,
    /// Simulated ms of the cut (0 before).
    cut_at_ms: AtomicU64,
    /// Reads the deposed leader answered that were invoked after the cut.
    deposed_reads_after_cut: AtomicU64,
    /// Writes that completed on the majority's side after the cut.
    majority_writes_after_cut: AtomicU64,
    healed: AtomicBool,
    finished: AtomicU64,
}

fn key() -> ZPath {
    ZPath::parse("/k").expect("valid")
}

fn sim_ms() -> u64 {
    gridkeeper::clock::unix_millis().saturating_sub(gridkeeper::clock::SIM_EPOCH_MS)
}

async fn perform(coordinator: &Coordinator, op: &RegisterOp<String>) -> Result<RegisterRet<String>, CoordinatorError> {
    match op {
        RegisterOp::Write(value) => {
            let set = Command::Set { path: key(), data: value.clone().into_bytes(), version: None };
            match coordinator.write(set).await? {
                Ok(Outcome::Set { .. }) => Ok(RegisterRet::WriteOk),
                other => panic!("a set on an existing key answered {other:?}"),
            }
        }
        RegisterOp::Read => match coordinator.read(&ReadOp::Get(key()), Consistency::Linearizable).await? {
            ReadResult::Data { data, .. } => Ok(RegisterRet::ReadOk(String::from_utf8(data).expect("utf-8"))),
            other => panic!("a get answered {other:?}"),
        },
    }
}

/// Each node's client: the deposed leader's reads, back to back, so it reads through the whole life
/// of its lease; the writer's writes; then, once the cluster is healed, one last read on every node.
fn workload(shared: Arc<Shared>, seed: u64) -> Workload {
    Arc::new(move |node: NodeId, coordinator: Coordinator| {
        let shared = shared.clone();
        Box::pin(async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ node.0.wrapping_mul(0x9e37_79b9));
            gridkeeper::sim::create_until_present(&coordinator, key(), b"init").await;
            let mut thread = shared.next_thread.fetch_add(1, Ordering::Relaxed);
            let record = |event: Event| shared.history.lock().expect("history").push(event);
            let mut counter = 0u64;
            loop {
                let last = shared.healed.load(Ordering::Relaxed);
                let deposed = shared.deposed.load(Ordering::Relaxed) == node.0;
                let writer = shared.writer.load(Ordering::Relaxed) == node.0;
                if !last && !deposed && !writer {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let pause = if deposed { rng.random_range(1..4) } else { rng.random_range(2..8) };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let op = if !last && writer {
                    counter += 1;
                    RegisterOp::Write(format!("n{node}-t{thread}-c{counter}"))
                } else {
                    RegisterOp::Read
                };
                let invoked_ms = sim_ms();
                let cut_at_ms = shared.cut_at_ms.load(Ordering::Relaxed);
                let after_cut = cut_at_ms > 0 && invoked_ms >= cut_at_ms;
                record(Event::Invoke { thread, op: op.clone() });
                match perform(&coordinator, &op).await {
                    Ok(ret) => {
                        if after_cut && deposed && !last && ret != RegisterRet::WriteOk {
                            shared.deposed_reads_after_cut.fetch_add(1, Ordering::Relaxed);
                        }
                        if ret == RegisterRet::WriteOk && after_cut && !deposed {
                            shared.majority_writes_after_cut.fetch_add(1, Ordering::Relaxed);
                        }
                        record(Event::Return { thread, ret });
                        if last {
                            break;
                        }
                    }
                    // Unknown outcome or unavailable: the op stays pending ("may have happened"),
                    // and this client continues as a new thread.
                    Err(_) => thread = shared.next_thread.fetch_add(1, Ordering::Relaxed),
                }
            }
            shared.finished.fetch_add(1, Ordering::Relaxed);
        })
    })
}

/// How the leader is deposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Cut off from both followers at once: the followers' election timers start together, so the
    /// new leader comes an election timeout after the window.
    Isolate,
    /// Cut off from one follower, which campaigns in vain while the other still hears the leader;
    /// later from the other too. The first vote request after the second follower's window ends
    /// wins, so the new leader comes as soon as the lease rule allows: the sharpest test of the bound.
    Staggered,
    /// Cut off from one follower; later from the other, which crashes and restarts at that moment
    /// (forgetting its lease stamp: the coordinator's restart guard must stand in for it).
    RestartFollower,
    /// The reader is a follower holding a read lease; it is cut off from the leader and the writer.
    HolderIsolated,
    /// The reader is a follower holding a read lease; the leader is cut off from both followers, which
    /// elect a new one.
    HolderLeaderIsolated,
}

impl Cut {
    fn follower_reads(self) -> bool {
        matches!(self, Cut::HolderIsolated | Cut::HolderLeaderIsolated)
    }
}

/// What one run saw.
#[derive(Debug, PartialEq)]
struct RunOutcome {
    history: Vec<String>,
    linearizable: bool,
    deposed_reads_after_cut: u64,
    majority_writes_after_cut: u64,
    /// Reads the reading node served from a follower read lease, over the whole run.
    follower_lease_reads: u64,
}

fn run(seed: u64, cut: Cut, rates: &dyn Fn(NodeId) -> ClockRate) -> RunOutcome {
    run_with_reader_rate(seed, cut, rates, None)
}

/// As [`run`]; `reader_rate`, if given, becomes the reading node's lease clock rate once it is chosen
/// (before it reads anything).
fn run_with_reader_rate(
    seed: u64,
    cut: Cut,
    rates: &dyn Fn(NodeId) -> ClockRate,
    reader_rate: Option<ClockRate>,
) -> RunOutcome {
    let shared = Arc::new(Shared::default());
    let dir = RunDir::new("lease", seed);
    let mut config = SimConfig::new(seed, NODES);
    config.registry_dir = Some(dir.path().to_path_buf());
    config.workload = Some(workload(shared.clone(), seed));
    config.lease_clock_rates = (1..=NODES).map(|id| (NodeId(id), rates(NodeId(id)))).collect();
    let mut cluster = SimCluster::new(config).expect("cluster");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let ready = |cluster: &SimCluster<'_>| {
        cluster.leader().is_some()
            && (1..=NODES).all(|id| {
                cluster
                    .coordinator(NodeId(id))
                    .is_some_and(|c| c.read_local(|registry| registry.exists(&key()).is_some()))
            })
    };
    assert!(cluster.run_until(SETTLE_MS_MAX, ready).expect("runs"), "seed {seed}: no leader");
    let old = cluster.leader().expect("a leader");
    let others: Vec<NodeId> = (1..=NODES).map(NodeId).filter(|&id| id != old).collect();
    let reader = if cut.follower_reads() { others[1] } else { old };
    if let Some(rate) = reader_rate {
        cluster.coordinator(reader).expect("running").set_lease_clock_rate(rate);
    }
    shared.deposed.store(reader.0, Ordering::Relaxed);
    shared.writer.store(others[0].0, Ordering::Relaxed);
    // Reads on the old leader, through its lease, and writes, before the cut.
    cluster.run_for(rng.random_range(50..300)).expect("runs");
    if std::env::var("GK_LEASE_TRACE").is_ok() {
        let c = cluster.coordinator(reader).expect("running").read_index_counts();
        eprintln!("seed {seed}: reader {reader:?} before the cut: {c:?}");
    }
    // In the follower-lease scenarios, every run with a skewed reader and half the others stop
    // writing shortly before the cut: the reader's whole log is then committed and applied, so it
    // may serve reads at once after the cut (a write in flight at the cut makes it wait for a commit
    // index it can no longer hear). The writer resumes at the cut.
    if cut.follower_reads() && (reader_rate.is_some() || seed.is_multiple_of(2)) {
        shared.writer.store(0, Ordering::Relaxed);
        cluster.run_for(30).expect("runs");
        shared.writer.store(others[0].0, Ordering::Relaxed);
    }
    match cut {
        Cut::HolderIsolated => {
            shared.cut_at_ms.store(cluster.elapsed_ms(), Ordering::Relaxed);
            cluster.partition(reader, old);
            cluster.partition(reader, others[0]);
        }
        Cut::Isolate | Cut::HolderLeaderIsolated => {
            shared.cut_at_ms.store(cluster.elapsed_ms(), Ordering::Relaxed);
            for &other in &others {
                cluster.partition(old, other);
            }
        }
        Cut::Staggered | Cut::RestartFollower => {
            let (kept, lost) = (others[0], others[1]);
            // No writes from here to the second cut, so the lost follower's log stays as long as
            // the kept one's and the kept one grants it a vote the moment its window ends.
            shared.writer.store(0, Ordering::Relaxed);
            cluster.run_for(30).expect("runs");
            cluster.partition(old, lost);
            // The lost follower campaigns in vain: the kept one still hears the leader.
            cluster.run_for(rng.random_range(300..700)).expect("runs");
            shared.cut_at_ms.store(cluster.elapsed_ms(), Ordering::Relaxed);
            shared.writer.store(lost.0, Ordering::Relaxed);
            if cut == Cut::Staggered {
                cluster.partition(old, kept);
            } else {
                cluster.crash(kept);
                cluster.partition(old, kept);
                cluster.run_for(rng.random_range(1..5)).expect("runs");
                cluster.restart(kept);
            }
        }
    }
    if std::env::var("GK_LEASE_TRACE").is_ok() {
        let cut_at = shared.cut_at_ms.load(Ordering::Relaxed);
        let mut new_leader_at = None;
        let mut last_reads = 0;
        let mut last_read_at = 0;
        let mut first_write_at = None;
        for _ in 0..DEPOSED_MS {
            cluster.step().expect("runs");
            let now = cluster.elapsed_ms();
            if new_leader_at.is_none()
                && others.iter().any(|&id| cluster.coordinator(id).is_some_and(|c| c.status().is_leader))
            {
                new_leader_at = Some(now - cut_at);
            }
            let reads = shared.deposed_reads_after_cut.load(Ordering::Relaxed);
            if reads != last_reads {
                last_reads = reads;
                last_read_at = now - cut_at;
            }
            if first_write_at.is_none() && shared.majority_writes_after_cut.load(Ordering::Relaxed) > 0 {
                first_write_at = Some(now - cut_at);
            }
        }
        eprintln!("seed {seed} {cut:?}: new leader +{new_leader_at:?} ms, first write +{first_write_at:?}, last deposed read +{last_read_at} ({last_reads} reads)");
    } else {
        cluster.run_for(DEPOSED_MS).expect("runs");
    }
    cluster.heal();
    shared.healed.store(true, Ordering::Relaxed);
    let done = cluster.run_until(SETTLE_MS_MAX, |_| shared.finished.load(Ordering::Relaxed) >= NODES).expect("runs");
    let history = shared.history.lock().expect("history").clone();
    let follower_lease_reads = cluster.coordinator(reader).map_or(0, |c| c.read_index_counts().follower_lease);
    drop(cluster);
    drop(dir);
    assert!(done, "seed {seed}: clients did not finish after healing; {} events", history.len());
    RunOutcome {
        linearizable: is_linearizable(&history),
        history: history.iter().map(|event| format!("{event:?}")).collect(),
        deposed_reads_after_cut: shared.deposed_reads_after_cut.load(Ordering::Relaxed),
        majority_writes_after_cut: shared.majority_writes_after_cut.load(Ordering::Relaxed),
        follower_lease_reads,
    }
}

fn is_linearizable(history: &[Event]) -> bool {
    let mut tester = LinearizabilityTester::new(Register("init".to_string()));
    for event in history {
        match event {
            Event::Invoke { thread, op } => {
                tester.on_invoke(*thread, op.clone()).expect("well-formed history");
            }
            Event::Return { thread, ret } => {
                tester.on_return(*thread, ret.clone()).expect("well-formed history");
            }
        }
    }
    tester.is_consistent()
}

/// A rate within the bound: between `1/(1+ρ)` (slow, the dangerous side for a leader) and `1+ρ`.
/// `GK_LEASE_RATE_PPM` sets every node's rate instead, to explore the bound by hand.
fn rate_within_bound(seed: u64, node: NodeId) -> ClockRate {
    if let Ok(ppm) = std::env::var("GK_LEASE_RATE_PPM") {
        return ClockRate::from_ppm(ppm.parse().expect("GK_LEASE_RATE_PPM is a number"));
    }
    let slowest = 1_000_000 * 1_000_000 / (1_000_000 + DRIFT_PPM);
    let fastest = 1_000_000 + DRIFT_PPM;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed.rotate_left(7) ^ node.0);
    // Half the seeds put every node at the slowest rate the bound allows.
    if seed % 6 < 3 {
        ClockRate::from_ppm(slowest)
    } else {
        ClockRate::from_ppm(rng.random_range(slowest..=fastest))
    }
}

fn cut_of(seed: u64) -> Cut {
    match seed % 3 {
        0 => Cut::Isolate,
        1 => Cut::Staggered,
        _ => Cut::RestartFollower,
    }
}

#[test]
fn a_deposed_leader_never_serves_a_stale_read_within_the_drift_bound() {
    let served = AtomicU64::new(0);
    let report = Swarm::new("sim_lease", "deposed", SCHEDULES, 1).run(|seed| {
        let outcome = run(seed, cut_of(seed), &|node| rate_within_bound(seed, node));
        assert!(
            outcome.linearizable,
            "seed {seed} ({:?}): a stale read within the drift bound: {:#?}",
            cut_of(seed),
            outcome.history
        );
        assert!(outcome.majority_writes_after_cut > 0, "seed {seed}: the majority never wrote after the cut");
        served.fetch_add(outcome.deposed_reads_after_cut, Ordering::Relaxed);
        outcome
    });
    // The scenario reaches the lease's edge: the old leader still answered reads after the cut.
    let served = served.load(Ordering::Relaxed);
    eprintln!("{} schedules; the deposed leaders served {served} reads after their cut", report.schedules);
    assert!(served >= report.schedules, "the deposed leaders served only {served} reads after the cut");
}

#[test]
fn a_lease_clock_far_beyond_the_drift_bound_serves_a_stale_read_the_checker_catches() {
    let caught = AtomicU64::new(0);
    let report = Swarm::new("sim_lease", "beyond_the_bound", CONTROL_SEEDS, 500).run(|seed| {
        let outcome = run(seed, Cut::Isolate, &|_| ClockRate::from_ppm(200_000));
        if !outcome.linearizable {
            caught.fetch_add(1, Ordering::Relaxed);
        }
        outcome.linearizable
    });
    let caught = caught.load(Ordering::Relaxed);
    assert_eq!(caught, report.schedules, "only {caught} of {} runs served a stale read", report.schedules);
}

#[test]
fn a_healthy_leader_serves_linearizable_reads_from_its_lease_without_a_quorum_round() {
    const READS: u64 = 200;
    let seed = gridkeeper::sim::swarm::seed_from_env().unwrap_or(3);
    let dir = RunDir::new("lease-healthy", seed);
    let mut config = SimConfig::new(seed, NODES);
    config.registry_dir = Some(dir.path().to_path_buf());
    let done = Arc::new(AtomicU64::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let reader: Workload = {
        let (done, go) = (done.clone(), go.clone());
        Arc::new(move |_node: NodeId, coordinator: Coordinator| {
            let (done, go) = (done.clone(), go.clone());
            Box::pin(async move {
                gridkeeper::sim::create_until_present(&coordinator, key(), b"init").await;
                while !go.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                for _ in 0..READS {
                    coordinator
                        .read(&ReadOp::Get(key()), Consistency::Linearizable)
                        .await
                        .expect("a read on a healthy cluster");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        })
    };
    config.workload = Some(reader);
    let mut cluster = SimCluster::new(config).expect("cluster");
    let ready = |cluster: &SimCluster<'_>| {
        cluster.leader().is_some()
            && (1..=NODES).all(|id| {
                cluster
                    .coordinator(NodeId(id))
                    .is_some_and(|c| c.read_local(|registry| registry.exists(&key()).is_some()))
            })
    };
    assert!(cluster.run_until(SETTLE_MS_MAX, ready).expect("runs"), "seed {seed}: no leader");
    cluster.run_for(200).expect("runs");
    let leader = cluster.leader().expect("a leader");
    let counts = |cluster: &SimCluster<'_>| -> BTreeMap<u64, (u64, u64, u64)> {
        (1..=NODES)
            .map(|id| {
                let counts = cluster.coordinator(NodeId(id)).expect("running").read_index_counts();
                (id, (counts.lease, counts.quorum, counts.follower_lease))
            })
            .collect()
    };
    let before = counts(&cluster);
    go.store(true, Ordering::Relaxed);
    let finished = cluster.run_until(SETTLE_MS_MAX, |_| done.load(Ordering::Relaxed) >= NODES).expect("runs");
    assert!(finished, "seed {seed}: the readers did not finish");
    assert_eq!(cluster.leader(), Some(leader), "seed {seed}: the leader changed");
    let after = counts(&cluster);
    drop(cluster);
    drop(dir);
    eprintln!("seed {seed}: leader {leader}; read indexes (lease, quorum) before {before:?}, after {after:?}");
    let delta = |id: u64| (after[&id].0 - before[&id].0, after[&id].1 - before[&id].1);

    let (leader_lease, leader_quorum) = delta(leader.0);
    assert_eq!(leader_quorum, 0, "seed {seed}: the healthy leader ran {leader_quorum} quorum rounds");
    // Every read on the leader took the lease; the followers' batches did too (a batch may carry
    // several reads, so at least one per batch and at most one per read).
    assert!(
        leader_lease > READS && leader_lease <= READS * NODES,
        "seed {seed}: {leader_lease} lease reads for {} reads",
        READS * NODES
    );
    for id in (1..=NODES).filter(|&id| id != leader.0) {
        assert_eq!(delta(id), (0, 0), "seed {seed}: follower {id} gave out read indexes");
        // Most of a follower's reads came from the read lease the leader granted it.
        let served = after[&id].2 - before[&id].2;
        assert!(served >= READS / 2, "seed {seed}: follower {id} served {served} of {READS} reads from its lease");
    }
}

/// Seeds of the follower-lease scenarios each `cargo test` runs within the drift bound.
const HOLDER_SCHEDULES: u64 = 40;

fn holder_cut_of(seed: u64) -> Cut {
    if seed.is_multiple_of(2) {
        Cut::HolderIsolated
    } else {
        Cut::HolderLeaderIsolated
    }
}

#[test]
fn a_follower_holding_a_read_lease_never_serves_a_stale_read_within_the_drift_bound() {
    let served = AtomicU64::new(0);
    let report = Swarm::new("sim_lease", "holder", HOLDER_SCHEDULES, 1_000).run(|seed| {
        let cut = holder_cut_of(seed);
        let outcome = run(seed, cut, &|node| rate_within_bound(seed, node));
        assert!(
            outcome.linearizable,
            "seed {seed} ({cut:?}): a stale read within the drift bound: {:#?}",
            outcome.history
        );
        assert!(outcome.majority_writes_after_cut > 0, "seed {seed}: the majority never wrote after the cut");
        assert!(outcome.follower_lease_reads > 0, "seed {seed} ({cut:?}): the follower never read from a lease");
        served.fetch_add(outcome.deposed_reads_after_cut, Ordering::Relaxed);
        outcome
    });
    let served = served.load(Ordering::Relaxed);
    eprintln!("{} schedules; the cut-off lease holders served {served} reads after their cut", report.schedules);
    assert!(served >= report.schedules, "the lease holders served only {served} reads after the cut");
}

#[test]
fn a_followers_lease_clock_far_beyond_the_drift_bound_serves_a_stale_read_the_checker_catches() {
    let caught = AtomicU64::new(0);
    let report = Swarm::new("sim_lease", "holder_beyond_the_bound", CONTROL_SEEDS, 1_500).run(|seed| {
        // Only the holder's clock is slow: the leader's books are right, the holder's are not.
        let outcome = run_with_reader_rate(
            seed,
            Cut::HolderIsolated,
            &|_| ClockRate::default(),
            Some(ClockRate::from_ppm(200_000)),
        );
        if !outcome.linearizable {
            caught.fetch_add(1, Ordering::Relaxed);
        }
        outcome.linearizable
    });
    let caught = caught.load(Ordering::Relaxed);
    assert_eq!(caught, report.schedules, "only {caught} of {} runs served a stale read", report.schedules);
}
