//! Grid actor benchmark (issue 17) on a 3-node loopback cluster of real nodes in this process (QUIC
//! mesh, Raft, the fsync'd log, actor hosts):
//!
//! 1. calls/s to one actor, 1 caller on its hosting node, closed loop: the durable built-in `counter`
//!    (every call's state committed through the log before it answers) and a volatile counter defined
//!    here (`vcounter`, nothing committed per call);
//! 2. calls/s to one actor, 16 callers on the two other nodes (both kinds);
//! 3. calls/s spread over 1,000 actors, 64 callers over the 3 nodes, keys drawn at random (both kinds);
//! 4. call latency p50/p99 to a remote actor: one caller on another node, volatile;
//! 5. kill of the node hosting a durable counter → the counter answers again from another node, with
//!    its total: every trial, and the worst of N (20; 5 with `--quick`), each trial on a fresh cluster;
//! 6. memory per idle activation: heap growth of a 1-node cluster after 20,000 (5,000 quick) volatile
//!    activations, divided by their count (everything they cost: the host's activation, the replicated
//!    ownership record, the log entries still in memory).
//!
//! Callers run on the benchmark's own runtime in the same process and call through the node's
//! `ActorService`, as `Grid::local(..).actor::<A>(key).call(..)` does. Each closed-loop figure has a
//! warm-up (2 s; 1 s quick) and a window (10 s; 3 s quick), as the peers harness.
//!
//! Run: `cargo bench --bench actors` (`-- --quick` for short windows and 5 kill trials; `--trials N`;
//! `--only calls|kill|memory` runs one part (`--only spread`: only the volatile calls over 1,000 actors); `--out FILE` appends every figure as a JSON line in the peers harness's record format, system
//! `gridkeeper`, for `benches/peers`' table and goals). Prints figures; asserts nothing.

use std::io::Write;
use std::time::{Duration, Instant};

use gridkeeper::actors::builtin::{Add, Total};
use gridkeeper::actors::{ActorService, CallOptions};
use gridkeeper::grid::actors::ActorId;
use gridkeeper::grid::kinds::{Decode, Encode};
use gridkeeper::grid::task::Encoding;
use gridkeeper::ids::NodeId;
use gridkeeper::node::local::{LocalCluster, LocalOptions};
use gridkeeper::{ActorContext, ActorError, ErrorCode, GridActor};

#[path = "common/heap.rs"]
mod heap;

/// Longest any set-up step may take (activation, leader, registration).
const WAIT: Duration = Duration::from_secs(30);
/// A kill trial gives up on the counter answering again after this.
const ANSWER_WAIT: Duration = Duration::from_secs(20);
/// Pause after a failed call, so a refused caller does not spin a core away from the nodes.
const ERROR_PAUSE: Duration = Duration::from_millis(1);
const NODES: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

/// A volatile counter: the same messages as the built-in `counter`, but nothing is committed per call
/// and a move restarts it at 0 (what a Ray actor is).
#[derive(Debug, Default)]
struct VolatileCounter {
    total: i64,
}

impl GridActor for VolatileCounter {
    const KIND: &'static str = "vcounter";
    type Message = Add;
    type Reply = Total;

    fn activate(_key: &str, _state: Option<&[u8]>) -> Result<VolatileCounter, ActorError> {
        Ok(VolatileCounter::default())
    }

    async fn handle(&mut self, message: Add, _ctx: &ActorContext) -> Result<Total, ActorError> {
        self.total = self.total.wrapping_add(message.add);
        Ok(Total { total: self.total })
    }
}

/// One figure in the peers harness's record format (`benches/peers/src/report.rs`).
#[derive(serde::Serialize)]
struct Record {
    system: &'static str,
    workload: &'static str,
    clients: usize,
    ops_per_s: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    errors: u64,
    gap_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<f64>,
}

impl Record {
    fn new(workload: &'static str, clients: usize) -> Record {
        Record {
            system: "gridkeeper",
            workload,
            clients,
            ops_per_s: None,
            p50_us: None,
            p99_us: None,
            errors: 0,
            gap_ms: None,
            bytes: None,
        }
    }
}

/// Where the figures go besides stdout.
struct Out {
    file: Option<std::fs::File>,
}

impl Out {
    fn write(&mut self, record: &Record) {
        let Some(file) = self.file.as_mut() else { return };
        let line = serde_json::to_string(record).expect("a record serialises");
        writeln!(file, "{line}").and_then(|()| file.flush()).expect("write the results file");
    }
}

/// What the callers of one closed-loop run saw.
#[derive(Default)]
struct Tally {
    ops: u64,
    errors: u64,
    latencies_us: Vec<u64>,
}

fn percentile(sorted: &[u64], fraction: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((sorted.len() as f64 * fraction) as usize).min(last)] as f64)
}

fn coordinator(cluster: &LocalCluster, node: NodeId) -> gridkeeper::consensus::Coordinator {
    cluster.view(node).and_then(|view| view.coordinator()).expect("a running coordinator")
}

fn service(cluster: &LocalCluster, node: NodeId) -> ActorService {
    ActorService::of(&coordinator(cluster, node)).expect("every node hosts actors")
}

fn actor(kind: &str, key: &str) -> ActorId {
    ActorId::new(kind, key).expect("an actor id")
}

/// One add: (the total, the node that answered).
async fn add(via: &ActorService, id: &ActorId, amount: i64, options: CallOptions) -> Result<(i64, NodeId), ErrorCode> {
    let message = Add { add: amount }.encode().expect("encodes");
    let answer = via.call(id.clone(), message, Encoding::Rkyv, options).await.map_err(|error| error.code)?;
    Ok((Total::decode(&answer.reply).expect("a total").total, answer.node))
}

/// Retries an add carrying `idempotency` (safe to send again) until it answers, within `limit`.
async fn add_until_answered(
    via: &ActorService,
    id: &ActorId,
    amount: i64,
    idempotency: &str,
    limit: Duration,
) -> Option<(i64, NodeId)> {
    let options = CallOptions { idempotency_key: Some(idempotency.to_string()), ..CallOptions::default() };
    tokio::time::timeout(limit, async {
        loop {
            match add(via, id, amount, options.clone()).await {
                Ok(answer) => return answer,
                Err(_) => tokio::time::sleep(ERROR_PAUSE).await,
            }
        }
    })
    .await
    .ok()
}

/// Small, seeded, good enough to spread keys.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `callers` closed loops, caller `i` on `services[i % len]`, each add going to one of `actors` at
/// random; requests started during the warm-up are not counted.
async fn closed_loop(services: &[ActorService], callers: usize, actors: &[ActorId], plan: Plan) -> Tally {
    let count_from = Instant::now() + plan.warmup;
    let until = count_from + plan.window;
    let mut loops = tokio::task::JoinSet::new();
    for index in 0..callers {
        let via = services[index % services.len()].clone();
        let actors = actors.to_vec();
        loops.spawn(async move {
            let mut keys = XorShift(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1));
            let mut tally = Tally { latencies_us: Vec::with_capacity(1 << 16), ..Tally::default() };
            let message = Add { add: 1 }.encode().expect("encodes");
            loop {
                let started = Instant::now();
                if started >= until {
                    break;
                }
                let id = actors[(keys.next() % actors.len() as u64) as usize].clone();
                let outcome = via.call(id, message.clone(), Encoding::Rkyv, CallOptions::default()).await;
                let counted = started >= count_from;
                match outcome {
                    Ok(_) if counted => {
                        tally.ops += 1;
                        tally.latencies_us.push(started.elapsed().as_micros() as u64);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        tally.errors += u64::from(counted);
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(done) = loops.join_next().await {
        let tally = done.expect("a caller loop");
        total.ops += tally.ops;
        total.errors += tally.errors;
        total.latencies_us.extend(tally.latencies_us);
    }
    total.latencies_us.sort_unstable();
    total
}

#[derive(Clone, Copy)]
struct Plan {
    warmup: Duration,
    window: Duration,
}

/// Runs a closed loop, prints its line and turns it into a record.
fn measure(
    runtime: &tokio::runtime::Runtime,
    label: &str,
    workload: &'static str,
    services: &[ActorService],
    callers: usize,
    actors: &[ActorId],
    plan: Plan,
) -> Record {
    let tally = runtime.block_on(closed_loop(services, callers, actors, plan));
    let mut record = Record::new(workload, callers);
    record.ops_per_s = Some(tally.ops as f64 / plan.window.as_secs_f64());
    record.p50_us = percentile(&tally.latencies_us, 0.50);
    record.p99_us = percentile(&tally.latencies_us, 0.99);
    record.errors = tally.errors;
    println!(
        "{label}: {:.0} calls/s, p50 {:.0} us, p99 {:.0} us, {} errors",
        record.ops_per_s.unwrap_or(0.0),
        record.p50_us.unwrap_or(0.0),
        record.p99_us.unwrap_or(0.0),
        record.errors
    );
    record
}

/// Activates `id` (through node 1) and returns its host.
fn activate(runtime: &tokio::runtime::Runtime, cluster: &LocalCluster, id: &ActorId) -> NodeId {
    runtime
        .block_on(add_until_answered(&service(cluster, NodeId(1)), id, 0, "bench-activate", WAIT))
        .expect("the actor activates within the bound")
        .1
}

fn wait_registered(cluster: &LocalCluster, via: NodeId, count: usize) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let registered = coordinator(cluster, via).read_state(|state| state.nodes().len());
        if registered >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the nodes did not register within {WAIT:?}");
}

/// Kill trials, each on a fresh 3-node cluster: a durable counter, its host killed, the time until a
/// survivor's call answers with the total intact. Returns the times in ms, in trial order (`None`: no
/// answer in time, or a wrong total).
///
/// A fresh cluster per trial rather than the victim started again: a node killed in process keeps its
/// mesh socket bound (its actor service and its coordinator hold each other), so it cannot start again
/// on the same ports.
fn kill_trials(
    base: &std::path::Path,
    options: &LocalOptions,
    runtime: &tokio::runtime::Runtime,
    trials: usize,
) -> Vec<Option<f64>> {
    let mut times = Vec::with_capacity(trials);
    for trial in 0..trials {
        let dir = base.join(format!("kill-{trial}"));
        let mut cluster = LocalCluster::start_with(3, &dir, options.clone()).expect("cluster");
        let leader = cluster.wait_for_leader(WAIT).expect("a leader");
        wait_registered(&cluster, leader, NODES.len());
        let id = actor("counter", &format!("kill-{trial}"));
        let before = runtime
            .block_on(add_until_answered(&service(&cluster, leader), &id, 5, "kill-a", WAIT))
            .expect("the counter answers before the kill");
        let victim = before.1;
        let survivor = *NODES.iter().find(|node| **node != victim).expect("a survivor");
        let via = service(&cluster, survivor);
        let killed = Instant::now();
        cluster.kill(victim);
        let after = runtime.block_on(add_until_answered(&via, &id, 1, "kill-b", ANSWER_WAIT));
        let elapsed_ms = killed.elapsed().as_secs_f64() * 1e3;
        let time = match after {
            Some((total, node)) if total == before.0 + 1 && node != victim => {
                println!(
                    "  trial {trial}: killed node {victim}{}; answered from node {node} after {elapsed_ms:.0} ms, total intact",
                    if victim == leader { " (the leader)" } else { "" }
                );
                Some(elapsed_ms)
            }
            Some((total, node)) => {
                println!(
                    "  trial {trial}: killed node {victim}; node {node} answered total {total}, expected {}",
                    before.0 + 1
                );
                None
            }
            None => {
                println!("  trial {trial}: killed node {victim}; no answer within {ANSWER_WAIT:?}");
                None
            }
        };
        times.push(time);
        drop(via);
        drop(cluster);
        let _ = std::fs::remove_dir_all(&dir);
    }
    times
}

/// Heap bytes per idle volatile activation on a 1-node cluster, and the encoded size of one
/// ownership record (a part of it).
fn memory_per_activation(runtime: &tokio::runtime::Runtime, count: usize) -> (f64, f64) {
    let dir = std::env::temp_dir().join(format!("gridkeeper-actors-bench-mem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = LocalOptions {
        slots: 1,
        actors: gridkeeper::actors::builtin::kinds().with::<VolatileCounter>(),
        ..LocalOptions::default()
    };
    let cluster = LocalCluster::start_with(1, &dir, options).expect("one node");
    cluster.wait_for_leader(WAIT).expect("a leader");
    let via = service(&cluster, NodeId(1));
    // Warm the paths (first activation, caches) before counting.
    runtime.block_on(add_until_answered(&via, &actor(VolatileCounter::KIND, "warm"), 0, "warm", WAIT));
    std::thread::sleep(Duration::from_millis(500));
    let window = heap::Window::open();
    let activators = 64;
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..activators {
            let via = via.clone();
            tasks.spawn(async move {
                for n in (index..count).step_by(activators) {
                    let id = actor(VolatileCounter::KIND, &format!("idle-{n}"));
                    add_until_answered(&via, &id, 0, "idle", WAIT).await.expect("activated");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("an activator");
        }
    });
    std::thread::sleep(Duration::from_millis(1_000));
    let growth = window.growth().max(0) as usize;
    drop(window);
    let activations = via.host().activations();
    let record_bytes = coordinator(&cluster, NodeId(1)).read_state(|state| {
        let records: Vec<_> = state.actors().filter(|(id, _)| id.kind == VolatileCounter::KIND).collect();
        let bytes: usize = records
            .iter()
            .map(|(id, record)| {
                postcard::to_stdvec(id).map_or(0, |bytes| bytes.len())
                    + postcard::to_stdvec(record).map_or(0, |bytes| bytes.len())
            })
            .sum();
        bytes as f64 / records.len().max(1) as f64
    });
    println!("  {activations} activations on the node ({count} activated here)");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    (growth as f64 / count as f64, record_bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|arg| arg == "--quick");
    let value = |flag: &str| args.iter().position(|arg| arg == flag).and_then(|at| args.get(at + 1)).cloned();
    // `--only calls|kill|memory` runs one part; `--only spread` only the calls over 1,000 actors;
    // `--only remote` only the latency to a remote actor.
    let only = value("--only");
    let runs = |part: &str| only.as_deref().is_none_or(|only| only == part);
    let spread_only = only.as_deref() == Some("spread");
    let remote_only = only.as_deref() == Some("remote");
    let trials = value("--trials").and_then(|text| text.parse().ok()).unwrap_or(if quick { 5 } else { 20 });
    let idle = if quick { 5_000 } else { 20_000 };
    let plan = if quick {
        Plan { warmup: Duration::from_secs(1), window: Duration::from_secs(3) }
    } else {
        Plan { warmup: Duration::from_secs(2), window: Duration::from_secs(10) }
    };
    let mut out = Out {
        file: value("--out").map(|path| {
            std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open the --out file")
        }),
    };

    let dir = std::env::temp_dir().join(format!("gridkeeper-actors-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = LocalOptions {
        slots: 2,
        actors: gridkeeper::actors::builtin::kinds().with::<VolatileCounter>(),
        ..LocalOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    if runs("calls") || spread_only || remote_only {
        let part = if spread_only {
            CallsPart::Spread
        } else if remote_only {
            CallsPart::Remote
        } else {
            CallsPart::All
        };
        calls(&runtime, &dir, &options, plan, part, &mut out);
    }
    if runs("kill") {
        kill(&runtime, &dir, &options, trials, &mut out);
    }
    if runs("memory") {
        memory(&runtime, idle, &mut out);
    }
}

/// Which of the call rows to run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CallsPart {
    All,
    /// Only the calls over 1,000 volatile actors.
    Spread,
    /// Only the latency to a remote actor.
    Remote,
}

/// Parts 1 to 4: calls per second and latency, on one cluster.
fn calls(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    options: &LocalOptions,
    plan: Plan,
    part: CallsPart,
    out: &mut Out,
) {
    let spread_only = part == CallsPart::Spread;
    let cluster = LocalCluster::start_with(3, dir, options.clone()).expect("cluster");
    let leader = cluster.wait_for_leader(WAIT).expect("leader");
    wait_registered(&cluster, leader, NODES.len());
    println!(
        "grid actors, 3 nodes, loopback, fsync on; warm-up {:?}, window {:?}; callers on the bench's runtime",
        plan.warmup, plan.window
    );

    let kinds = [(VolatileCounter::KIND, "actor-calls", "volatile"), ("counter", "actor-calls-durable", "durable")];
    let kinds = if part == CallsPart::All { &kinds[..] } else { &kinds[..0] };
    // 1 caller on the hosting node.
    for &(kind, workload, label) in kinds {
        let id = actor(kind, "one");
        let host = activate(runtime, &cluster, &id);
        let record = measure(
            runtime,
            &format!("one {label} actor, 1 caller on its host (node {host})"),
            workload,
            &[service(&cluster, host)],
            1,
            std::slice::from_ref(&id),
            plan,
        );
        out.write(&record);
    }
    // 16 callers on the other nodes.
    for &(kind, workload, label) in kinds {
        let id = actor(kind, "sixteen");
        let host = activate(runtime, &cluster, &id);
        let others: Vec<ActorService> =
            NODES.iter().filter(|node| **node != host).map(|node| service(&cluster, *node)).collect();
        let record = measure(
            runtime,
            &format!("one {label} actor, 16 callers on the other nodes"),
            workload,
            &others,
            16,
            std::slice::from_ref(&id),
            plan,
        );
        out.write(&record);
    }
    // 64 callers over 1,000 actors on 3 nodes.
    let all: Vec<ActorService> = NODES.iter().map(|node| service(&cluster, *node)).collect();
    let spreads = [(VolatileCounter::KIND, "actor-spread", "volatile"), ("counter", "actor-spread-durable", "durable")];
    let spreads = match part {
        CallsPart::All => &spreads[..],
        CallsPart::Spread => &spreads[..1],
        CallsPart::Remote => &spreads[..0],
    };
    for &(kind, workload, label) in spreads {
        let actors: Vec<ActorId> = (0..1_000).map(|n| actor(kind, &format!("spread-{n}"))).collect();
        // Activate them all first (spread by placement over the three nodes).
        runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (index, chunk) in actors.chunks(50).enumerate() {
                let via = all[index % all.len()].clone();
                let chunk = chunk.to_vec();
                tasks.spawn(async move {
                    for id in chunk {
                        add_until_answered(&via, &id, 0, "bench-activate", WAIT).await.expect("activated");
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("an activator");
            }
        });
        let record = measure(
            runtime,
            &format!("1,000 {label} actors, 64 callers on 3 nodes"),
            workload,
            &all,
            64,
            &actors,
            plan,
        );
        out.write(&record);
    }
    if spread_only {
        return;
    }
    // Latency to a remote actor.
    let id = actor(VolatileCounter::KIND, "remote");
    let host = activate(runtime, &cluster, &id);
    let caller = *NODES.iter().find(|node| **node != host).expect("another node");
    let record = measure(
        runtime,
        &format!("one volatile actor on node {host}, 1 caller on node {caller}"),
        "actor-remote",
        &[service(&cluster, caller)],
        1,
        std::slice::from_ref(&id),
        plan,
    );
    out.write(&record);
    drop(all);
    drop(cluster);
}

/// Part 5: kill of the hosting node.
fn kill(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    options: &LocalOptions,
    trials: usize,
    out: &mut Out,
) {
    println!(
        "kill of the node hosting a durable counter → it answers again elsewhere, total intact ({trials} trials):"
    );
    let times = kill_trials(dir, options, runtime, trials);
    let answered: Vec<f64> = times.iter().flatten().copied().collect();
    let failed = times.len() - answered.len();
    let mut sorted = answered.clone();
    sorted.sort_by(f64::total_cmp);
    let worst = if failed > 0 { None } else { sorted.last().copied() };
    println!(
        "kill → answered again: p50 {:.0} ms, worst {} of {} trials{}",
        sorted.get(sorted.len().saturating_sub(1) / 2).copied().unwrap_or(0.0),
        worst.map_or_else(|| "not measured".to_string(), |ms| format!("{ms:.0} ms")),
        times.len(),
        if failed > 0 { format!(" ({failed} did not answer in time)") } else { String::new() }
    );
    let mut record = Record::new("actor-restart", 1);
    record.gap_ms = worst.or(sorted.last().copied());
    record.errors = failed as u64;
    out.write(&record);
    let _ = std::fs::remove_dir_all(dir);
}

/// Part 6: memory per idle activation.
fn memory(runtime: &tokio::runtime::Runtime, idle: usize, out: &mut Out) {
    let (per_activation, record_bytes) = memory_per_activation(runtime, idle);
    println!(
        "memory per idle volatile activation ({idle} on one node): {per_activation:.0} bytes of heap \
         (host activation, replicated record, log entries in memory; the record alone encodes to {record_bytes:.0} bytes)"
    );
    let mut record = Record::new("actor-memory", 1);
    record.bytes = Some(per_activation);
    out.write(&record);
}
