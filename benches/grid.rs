//! Task grid benchmark on a 3-node loopback cluster of real nodes (QUIC mesh, Raft, the fsync'd log,
//! task actors), in this process so that probes can time attempts on one clock:
//!
//! 1. throughput: `noop` tasks from submission to recorded completion;
//! 2. submit-to-start latency p50/p99 at half that rate (open loop, one task per submission), and the
//!    disk's own fsync times right after (a stall of the disk is a stall of every start behind it);
//! 3. failover: kill of a worker to all of its attempts started again elsewhere, p50 and worst;
//! 4. memory: bytes per queued task in the task table, and RSS with 1,000,000 pending tasks;
//! 5. envelope: what a node's table holds at the default byte budgets (history full of 1 MiB results,
//!    pending inputs up to their budget), as the table counts it, as heap and as a snapshot encodes it.
//!
//! Run: `cargo bench --bench grid` (`-- --quick` for fewer tasks and runs; `-- --envelope` for the
//! envelope alone, in seconds). Prints figures; asserts nothing.
//!
//! Two modes run real `gridkeeper node` processes instead (the binary, kill -9):
//! - `-- failover [--trials 20] [--backlog-trials 5]`: kill -9 of a worker to its running work started
//!   elsewhere, every trial, p50 and worst; and a killed node's queued work against later work
//!   (`grid/failover.rs`);
//! - `-- soak [--minutes 10] [--cpu 0.8] [--spin-ms 100] [--slots 2]`: false downs under `spin` load,
//!   with the load average (`grid/soak.rs`).
//!
//! Both take `--silence MS[,MS...]` and `--heartbeat MS` (default a fifth of the silence), or
//! `GK_SILENCE`/`GK_HEARTBEAT`, to run at other detector settings than the nodes' defaults; a soak
//! with several silences runs one after the other and prints the curve.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridkeeper::grid::kinds::{AttemptInfo, Task, TaskError};
use gridkeeper::grid::task::{Encoding, TaskId, TaskSpec};
use gridkeeper::grid::{FencingToken, GridCommand, GridEffects, Report, TableLimits, TaskTable};
use gridkeeper::ids::NodeId;
use gridkeeper::node::local::{LocalCluster, LocalOptions};
use gridkeeper::registry::RegistryLimits;
use gridkeeper::service::{Grid, SubmitOptions};
use gridkeeper::state::ReplicatedState;
use gridkeeper::state::{Command, Proposal};

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "grid/failover.rs"]
mod failover;
#[path = "grid/process.rs"]
mod process;
#[path = "grid/soak.rs"]
mod soak;

#[path = "common/heap.rs"]
mod heap;

fn micros_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_micros() as u64)
}

/// When the submitter called submit, in Unix µs.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Stamp {
    submitted_us: u64,
}

/// Records the delay from submission to the attempt's start.
#[derive(Clone, Default)]
struct Probe {
    /// (submitted, delay to start) in µs, and the node it started on.
    delays_us: Arc<Mutex<Vec<(u64, u64, NodeId)>>>,
}

impl Task for Probe {
    const NAME: &'static str = "probe";
    type Input = Stamp;
    type Output = Stamp;

    async fn run(&self, stamp: Stamp, attempt: AttemptInfo) -> Result<Stamp, TaskError> {
        let delay = micros_now().saturating_sub(stamp.submitted_us);
        self.delays_us.lock().expect("probe lock").push((stamp.submitted_us, delay, attempt.node));
        Ok(stamp)
    }
}

/// One attempt's start: (task, attempt number, node, Unix µs).
type AttemptStart = (TaskId, u32, NodeId, u64);

/// Holds a slot until cancelled, noting each attempt's start.
#[derive(Clone, Default)]
struct Hold {
    starts: Arc<Mutex<Vec<AttemptStart>>>,
}

impl Task for Hold {
    const NAME: &'static str = "hold";
    type Input = Stamp;
    type Output = Stamp;

    async fn run(&self, stamp: Stamp, attempt: AttemptInfo) -> Result<Stamp, TaskError> {
        self.starts.lock().expect("hold lock").push((attempt.task, attempt.number, attempt.node, micros_now()));
        tokio::time::sleep(Duration::from_secs(600)).await;
        Ok(stamp)
    }
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn leader_grid(cluster: &LocalCluster) -> Grid {
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).expect("a leader");
    Grid::local(cluster.view(leader).and_then(|view| view.coordinator()).expect("leader coordinator"))
}

async fn wait_registered(cluster: &LocalCluster, via: NodeId, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let registered = cluster
            .view(via)
            .and_then(|view| view.coordinator())
            .map_or(0, |coordinator| coordinator.read_state(|state| state.nodes().len()));
        if registered >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nodes did not register");
}

fn noop_spec() -> TaskSpec {
    let mut spec = TaskSpec::new("noop", b"{}".to_vec());
    spec.encoding = Encoding::Json;
    spec
}

/// Submits `total` noop tasks in batches from `submitters` concurrent submitters and waits until all
/// are recorded complete. Returns tasks per second.
async fn throughput(grid: &Grid, total: usize, batch: usize) -> f64 {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(total);
    let mut submitted = 0;
    while submitted < total {
        let count = batch.min(total - submitted);
        ids.extend(grid.submit_specs(vec![noop_spec(); count]).await.expect("submit"));
        submitted += count;
    }
    let states = grid.wait_all(&ids, Duration::from_secs(300)).await.expect("wait");
    let elapsed = started.elapsed();
    assert_eq!(states.get("succeeded"), Some(&total), "{states:?}");
    total as f64 / elapsed.as_secs_f64()
}

/// Open loop: one task per submission at `rate` per second for `duration`; returns the delays (µs)
/// from the submit call to the attempt's start.
async fn latency(grid: &Grid, probe: &Probe, rate: f64, duration: Duration) -> Vec<u64> {
    probe.delays_us.lock().expect("probe lock").clear();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut next = started;
    let mut sent = 0usize;
    let mut waits = tokio::task::JoinSet::new();
    while started.elapsed() < duration {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let grid = grid.clone();
        waits.spawn(async move {
            let stamp = Stamp { submitted_us: micros_now() };
            grid.submit::<Probe>(&stamp, &SubmitOptions::default()).await.map(|handle| handle.id())
        });
        sent += 1;
    }
    let mut ids = Vec::with_capacity(sent);
    while let Some(joined) = waits.join_next().await {
        if let Ok(Ok(id)) = joined {
            ids.push(id);
        }
    }
    let _ = grid.wait_all(&ids, Duration::from_secs(60)).await;
    let samples = probe.delays_us.lock().expect("probe lock").clone();
    if std::env::var("GK_TIMELINE").is_ok() {
        timeline(&samples);
    }
    let mut delays: Vec<u64> = samples.iter().map(|(_, delay, _)| *delay).collect();
    delays.sort_unstable();
    delays
}

/// [`disk_profile`]'s figures.
struct DiskProfile {
    count: usize,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    /// The share of the run spent inside fsyncs that took over 5 ms.
    stalled_share: f64,
}

/// Writes 4 KiB and fsyncs it about every millisecond for `duration`, in `dir`.
fn disk_profile(dir: &std::path::Path, duration: Duration) -> DiskProfile {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let mut took = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        file.write_all(&[7u8; 4096]).expect("probe write");
        let fsync = Instant::now();
        file.sync_data().expect("probe fsync");
        took.push(fsync.elapsed().as_micros() as u64);
        std::thread::sleep(Duration::from_micros(800));
    }
    let _ = std::fs::remove_file(&path);
    let stalled: u64 = took.iter().filter(|&&us| us > 5_000).sum();
    let stalled_share = stalled as f64 / started.elapsed().as_micros() as f64;
    took.sort_unstable();
    DiskProfile {
        count: took.len(),
        p50_us: percentile(&took, 0.50),
        p99_us: percentile(&took, 0.99),
        max_us: took.last().copied().unwrap_or(0),
        stalled_share,
    }
}

/// `GK_TIMELINE`: the slowest start in each 50 ms of submissions, for the windows where it passed
/// 5 ms (what a p99 is made of), stamped in Unix µs to match the nodes' logs.
fn timeline(samples: &[(u64, u64, NodeId)]) {
    let mut by_node: BTreeMap<NodeId, Vec<u64>> = BTreeMap::new();
    for &(_, delay, node) in samples {
        by_node.entry(node).or_default().push(delay);
    }
    for (node, mut delays) in by_node {
        delays.sort_unstable();
        println!(
            "  started on node {node}: {} tasks, p50 {} us, p99 {} us",
            delays.len(),
            percentile(&delays, 0.5),
            percentile(&delays, 0.99)
        );
    }
    let mut windows: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    for &(submitted, delay, _) in samples {
        let window = windows.entry(submitted / 50_000).or_default();
        window.0 = window.0.max(delay);
        window.1 += usize::from(delay > 5_000);
    }
    for (window, (max, slow)) in windows.into_iter().filter(|(_, (max, _))| *max > 5_000) {
        println!("  window from {} us: max {max} us, {slow} starts over 5 ms", window * 50_000);
    }
}

/// Kill-to-restart times over `runs` kills of a follower holding `hold` attempts (µs).
fn failover(cluster: &mut LocalCluster, hold: &Hold, runtime: &tokio::runtime::Runtime, runs: usize) -> Vec<u64> {
    let mut times = Vec::new();
    for run in 0..runs {
        let grid = leader_grid(cluster);
        let leader = cluster.leader().expect("a leader");
        // A follower, a different one each run.
        let followers: Vec<NodeId> = [NodeId(1), NodeId(2), NodeId(3)].into_iter().filter(|n| *n != leader).collect();
        let victim = followers[run % followers.len()];
        hold.starts.lock().expect("hold lock").clear();
        let stamp = Stamp { submitted_us: 0 };
        let ids: Vec<TaskId> = runtime
            .block_on(grid.submit_batch::<Hold>(&vec![stamp; 3], &SubmitOptions::default()))
            .expect("submit holds")
            .iter()
            .map(|handle| handle.id())
            .collect();
        // Wait until all three run (one per node, leaving a free slot on each survivor).
        let deadline = Instant::now() + Duration::from_secs(10);
        while hold.starts.lock().expect("hold lock").len() < ids.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let on_victim: Vec<TaskId> =
            hold.starts.lock().expect("hold lock").iter().filter(|s| s.2 == victim).map(|s| s.0).collect();
        let killed_us = micros_now();
        cluster.kill(victim);
        let deadline = Instant::now() + Duration::from_secs(10);
        let restarted = loop {
            let starts = hold.starts.lock().expect("hold lock").clone();
            let again: Vec<u64> = on_victim
                .iter()
                .filter_map(|task| starts.iter().find(|s| s.0 == *task && s.1 >= 2).map(|s| s.3))
                .collect();
            if again.len() == on_victim.len() {
                break again.into_iter().max();
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        match restarted {
            Some(at) if !on_victim.is_empty() => times.push(at.saturating_sub(killed_us)),
            _ => eprintln!("  run {run}: node {victim} held {} attempts; not all restarted in time", on_victim.len()),
        }
        let grid = leader_grid(cluster);
        let _ = runtime.block_on(grid.cancel(&ids));
        cluster.start_node(victim).expect("restart the victim");
        runtime.block_on(wait_registered(cluster, leader, 3));
    }
    times.sort_unstable();
    times
}

/// Heap bytes per pending task in the replicated state, by applying submissions directly.
fn table_bytes_per_task(tasks: usize) -> f64 {
    let limits = TableLimits { tasks_max: tasks + 1, ..TableLimits::default() };
    let window = heap::Window::open();
    let mut state = ReplicatedState::new(RegistryLimits::default(), limits);
    let mut effects = GridEffects::default();
    let batch = 10_000;
    for (index, zxid) in (0..tasks / batch).zip(1..) {
        let command = Command::App(GridCommand::Submit { tasks: vec![noop_spec(); batch] });
        let (result, _) = state.apply(zxid, &Proposal { now_ms: index as u64, command }, &mut effects);
        assert!(result.is_ok(), "{result:?}");
    }
    let per_task = window.growth() as f64 / tasks as f64;
    drop(window);
    drop(state);
    per_task
}

/// Submits, assigns and finishes one task with `result` in `table`.
fn finish_with(table: &mut TaskTable, zxid: &mut u64, result: &[u8]) {
    let mut apply = |zxid: &mut u64, command: GridCommand| {
        *zxid += 1;
        table.apply(*zxid, *zxid, &command, &mut GridEffects::default())
    };
    let outcome = apply(zxid, GridCommand::Submit { tasks: vec![noop_spec()] }).expect("submit");
    let task = outcome.ids()[0];
    apply(zxid, GridCommand::Assign { assignments: vec![(task, NodeId(1))] }).expect("assign");
    let report = Report { task, token: FencingToken(*zxid), started_ms: *zxid, outcome: Some(Ok(result.to_vec())) };
    apply(zxid, GridCommand::Report { reports: vec![report] }).expect("report");
}

/// Phase 5: a table at the default limits, its history filled twice over with 1 MiB results (so
/// retention trimmed it), then pending 1 MiB inputs submitted until the budget refuses them.
fn envelope() {
    const MIB: usize = 1 << 20;
    let limits = TableLimits::default();
    let window = heap::Window::open();
    let mut table = TaskTable::new(limits, 6_000);
    let mut zxid = 0u64;
    let result = vec![7u8; limits.result_bytes_max];
    for _ in 0..2 * limits.history_bytes_max / limits.result_bytes_max {
        finish_with(&mut table, &mut zxid, &result);
    }
    let history_heap = window.growth().max(0) as usize;
    println!(
        "envelope, history at history_bytes_max {} MiB: {} tasks with 1 MiB results kept, counted {} MiB, heap {} MiB",
        limits.history_bytes_max / MIB,
        table.len(),
        table.history_bytes() / MIB,
        history_heap / MIB
    );
    let mut pending = 0;
    let refusal = loop {
        zxid += 1;
        let tasks = vec![TaskSpec::new("parked", vec![1; limits.input_bytes_max]); 4];
        match table.apply(zxid, zxid, &GridCommand::Submit { tasks }, &mut GridEffects::default()) {
            Ok(_) => pending += 4,
            Err(error) => break error,
        }
    };
    let heap = window.growth().max(0) as usize;
    println!(
        "envelope, pending inputs at pending_input_bytes_max {} MiB: {pending} tasks of 1 MiB, counted {} MiB, heap {} MiB (then: {refusal})",
        limits.pending_input_bytes_max / MIB,
        table.pending_input_bytes() / MIB,
        (heap - history_heap) / MIB
    );
    let encoded = postcard::to_stdvec(&table).expect("encodes").len();
    println!(
        "envelope, the table at both budgets: heap {} MiB, snapshot encoding {} MiB (a snapshot briefly holds both)",
        heap / MIB,
        encoded / MIB
    );
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn main() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    let flags = process::Flags::from_env();
    if flags.has("failover") {
        failover::run(&flags);
        return;
    }
    if flags.has("soak") {
        soak::run(&flags);
        return;
    }
    if std::env::args().any(|arg| arg == "--envelope") {
        envelope();
        return;
    }
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (total, runs, pending) = if quick { (50_000, 5, 1_000_000) } else { (200_000, 20, 1_000_000) };
    let skip_memory = std::env::var("GK_SKIP_MEMORY").is_ok();
    let probe = Probe::default();
    let hold = Hold::default();
    let prefetch: Option<u32> = std::env::var("GK_PREFETCH").ok().and_then(|text| text.parse().ok());
    let options = LocalOptions {
        kinds: gridkeeper::worker::builtin::kinds().with(probe.clone()).with(hold.clone()),
        slots: 2,
        prefetch,
        ..LocalOptions::default()
    };
    let dir = std::env::temp_dir().join(format!("gridkeeper-grid-bench-{}", std::process::id()));
    let mut cluster = LocalCluster::start_with(3, &dir, options).expect("cluster");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).expect("leader");
    runtime.block_on(wait_registered(&cluster, leader, 3));
    let grid = leader_grid(&cluster);
    let prefetch = prefetch.unwrap_or(2 * gridkeeper::node::config::PREFETCH_PER_SLOT_DEFAULT);
    println!("task grid, 3 nodes x 2 slots (prefetch {prefetch} per node), loopback, fsync on");

    let _ = runtime.block_on(throughput(&grid, 10_000, 10_000));
    let rate = runtime.block_on(throughput(&grid, total, 10_000));
    println!("noop throughput, submit to recorded completion ({total} tasks, batches of 10,000): {rate:.0} tasks/s");

    let half = rate / 2.0;
    // `GK_WINDOW_S`: a longer latency window (to profile the phase, or to see snapshots in it).
    let window = std::env::var("GK_WINDOW_S")
        .ok()
        .and_then(|text| text.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(if quick { Duration::from_secs(2) } else { Duration::from_secs(5) });
    // One task per submission cannot go faster than one commit per submission allows; cap the rate
    // at what single submissions sustain, and say so.
    let offered = std::env::var("GK_RATE").ok().and_then(|text| text.parse().ok()).unwrap_or(half.min(5_000.0));
    if std::env::var("GK_TIMELINE").is_ok() {
        println!("  the leader is node {leader}");
    }
    let merged_before = gridkeeper::service::hub::merged_totals();
    let delays = runtime.block_on(latency(&grid, &probe, offered, window));
    let merged_after = gridkeeper::service::hub::merged_totals();
    let (entries, submissions) = (merged_after.0 - merged_before.0, merged_after.1 - merged_before.1);
    println!(
        "  {submissions} submissions went out in {entries} submission entries ({:.2} per entry)",
        submissions as f64 / entries.max(1) as f64
    );
    println!(
        "submit-to-start at {offered:.0} submissions/s (one task each, open loop, {} samples): p50 {} us, p99 {} us, max {} us",
        delays.len(),
        percentile(&delays, 0.50),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(0)
    );

    // What the disk under the nodes does on its own right after: submit → start waits for fsyncs on
    // two nodes, so a stall of the disk is a stall of every start behind it.
    let disk = disk_profile(&dir, window);
    println!(
        "disk alone right after (4 KiB write + fsync every ms, {} fsyncs): p50 {} us, p99 {} us, max {} us; \
         {:.1}% of the time inside fsyncs over 5 ms",
        disk.count,
        disk.p50_us,
        disk.p99_us,
        disk.max_us,
        disk.stalled_share * 100.0
    );

    let times = failover(&mut cluster, &hold, &runtime, runs);
    println!(
        "failover, kill of a worker to all its attempts started elsewhere ({} runs): p50 {} ms, worst {} ms",
        times.len(),
        percentile(&times, 0.50) / 1_000,
        times.last().copied().unwrap_or(0) / 1_000
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    if skip_memory {
        return;
    }

    let per_task = table_bytes_per_task(pending);
    println!("memory per queued task in the replicated task table ({pending} pending): {per_task:.0} bytes");

    // RSS of a one-node cluster holding a million pending tasks of a kind no node runs.
    let dir = std::env::temp_dir().join(format!("gridkeeper-grid-bench-rss-{}", std::process::id()));
    let rss_before = rss_bytes();
    let single = LocalCluster::start_with(1, &dir, LocalOptions::default()).expect("one node");
    let grid = leader_grid(&single);
    let started = Instant::now();
    for _ in 0..pending / 10_000 {
        let mut spec = noop_spec();
        spec.kind = "parked".into();
        runtime.block_on(grid.submit_specs(vec![spec; 10_000])).expect("submit pending");
    }
    let submit_rate = pending as f64 / started.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let depth: BTreeMap<i32, usize> = single
        .view(NodeId(1))
        .and_then(|view| view.coordinator())
        .map(|coordinator| coordinator.read_state(|state| state.grid.depth_by_priority()))
        .unwrap_or_default();
    println!(
        "one node with {} pending tasks: RSS {} MiB (+{} MiB over an empty process), submitted at {submit_rate:.0} tasks/s",
        depth.values().sum::<usize>(),
        rss_after / (1 << 20),
        rss_after.saturating_sub(rss_before) / (1 << 20)
    );
    drop(single);
    let _ = std::fs::remove_dir_all(&dir);
    envelope();
}
