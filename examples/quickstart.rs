//! The main job: a real three-node gridkeeper cluster (QUIC mesh with mutual TLS, a Raft coordinator
//! on an fsync'd log, task actors under supervision) counts the primes below 60 million as 3,000
//! tasks, loses a node halfway through, and still records every task's result exactly once.
//!
//! Run: `cargo run --release --example quickstart`.
//!
//! The three nodes run in this process (each on its own runtimes, with its own disk state and ports);
//! killing one tears its runtimes down without a goodbye, which its peers see exactly as kill -9. The
//! driver talks to the cluster as an external client would, over the admin API, failing over along
//! the list of nodes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use gridkeeper::api::grid::{TaskView, TasksQuery};
use gridkeeper::grid::task::{AttemptState, TaskState};
use gridkeeper::registry::WatchKind;
use gridkeeper::{
    AttemptInfo, Client, Consistency, ErrorCode, Grid, LocalCluster, LocalOptions, NodeId, SubmitOptions, Task,
    TaskError, TaskId,
};

const TASKS: u64 = 3_000;
const NUMBERS_PER_TASK: u64 = 20_000;

/// A range of numbers to search.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Range {
    start: u64,
    len: u64,
}

/// How many primes a range holds.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
struct PrimeCount {
    primes: u64,
}

/// The task actor: counts primes by trial division (real CPU work), yielding now and then so a
/// stopped attempt stops promptly. It also counts how many attempts ran anywhere in this process.
#[derive(Clone, Default)]
struct CountPrimes {
    attempts_run: Arc<AtomicU64>,
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut divisor = 3;
    while divisor * divisor <= n {
        if n.is_multiple_of(divisor) {
            return false;
        }
        divisor += 2;
    }
    true
}

impl Task for CountPrimes {
    const NAME: &'static str = "count-primes";
    type Input = Range;
    type Output = PrimeCount;

    async fn run(&self, range: Range, _attempt: AttemptInfo) -> Result<PrimeCount, TaskError> {
        self.attempts_run.fetch_add(1, Ordering::Relaxed);
        let mut primes = 0;
        for (offset, n) in (range.start..range.start + range.len).enumerate() {
            primes += u64::from(is_prime(n));
            if offset.is_multiple_of(2_000) {
                tokio::task::yield_now().await;
            }
        }
        Ok(PrimeCount { primes })
    }
}

/// The number of primes below `limit`, by a sieve: the answer the cluster must reach.
fn primes_below(limit: u64) -> u64 {
    let mut composite = vec![false; limit as usize];
    let mut count = 0;
    for n in 2..limit as usize {
        if !composite[n] {
            count += 1;
            let mut multiple = n * n;
            while multiple < limit as usize {
                composite[multiple] = true;
                multiple += n;
            }
        }
    }
    count
}

/// Redraws the progress bar in place on a terminal; elsewhere (a log) prints a line per tenth.
fn progress(done: usize, total: usize, note: &str, last_tenth: &mut usize) {
    const WIDTH: usize = 40;
    let filled = done * WIDTH / total.max(1);
    let bar = format!("[{}{}] {done:>5}/{total} {note:<40}", "#".repeat(filled), ".".repeat(WIDTH - filled));
    if std::io::stderr().is_terminal() {
        eprint!("\r  {bar}");
        let _ = std::io::stderr().flush();
    } else if done * 10 / total.max(1) > *last_tenth || done == total {
        *last_tenth = done * 10 / total.max(1);
        eprintln!("  {bar}");
    }
}

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("gridkeeper-quickstart-{}", std::process::id()));
    let counter = CountPrimes::default();
    let options = LocalOptions {
        kinds: gridkeeper::node::builtin::kinds().with(counter.clone()),
        slots: 2,
        // Tasks of several milliseconds of CPU keep slots busy by themselves; a short prefetch queue
        // lets a dead node's work start elsewhere at once instead of behind the survivors' queues.
        prefetch: Some(4),
        ..LocalOptions::default()
    };
    println!("starting 3 nodes (QUIC mesh, Raft coordinator, task workers) under {}", dir.display());
    let mut cluster = LocalCluster::start_with(3, &dir, options)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).context("no leader elected")?;
    println!("leader: node {leader}");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let admins: Vec<SocketAddr> = cluster.admins().values().copied().collect();
    let client = runtime.block_on(Client::connect_any(&admins, cluster.access()?))?;
    runtime.block_on(wait_for_workers(&client, 3))?;
    let grid = Grid::remote(client);

    let inputs: Vec<Range> = (0..TASKS).map(|i| Range { start: i * NUMBERS_PER_TASK, len: NUMBERS_PER_TASK }).collect();
    let started = Instant::now();
    let handles = runtime.block_on(grid.submit_batch::<CountPrimes>(&inputs, &SubmitOptions::default()))?;
    let ids: Vec<_> = handles.iter().map(|handle| handle.id()).collect();
    println!("submitted {} count-primes tasks (committed in {:?})", ids.len(), started.elapsed());

    // The victim is a node that is neither the leader nor the first admin address the client uses.
    let victim = [NodeId(3), NodeId(2)].into_iter().find(|node| *node != leader).expect("two candidates");
    let mut killed_at_ms = None;
    let mut last_tenth = 0;
    loop {
        let states = runtime.block_on(grid.wait_all(&ids, Duration::from_millis(100)))?;
        let done: usize = ["succeeded", "failed", "timed_out", "cancelled"].iter().filter_map(|s| states.get(*s)).sum();
        let note = match killed_at_ms {
            Some(_) => format!("node {victim} killed; survivors finishing"),
            None => "running on 3 nodes".to_string(),
        };
        progress(done, ids.len(), &note, &mut last_tenth);
        if done == ids.len() {
            break;
        }
        if killed_at_ms.is_none() && done >= ids.len() / 2 {
            killed_at_ms = Some(unix_millis());
            cluster.kill(victim);
        }
    }
    let elapsed = started.elapsed();
    eprintln!();

    // Listings come in pages bounded by bytes, results only when asked for.
    let mut query = TasksQuery { limit: Some(TASKS as usize), results: true, ..TasksQuery::default() };
    let mut tasks = Vec::new();
    loop {
        let page = runtime.block_on(grid.query_page(&query))?;
        tasks.extend(page.tasks);
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    report(&tasks, &ids, killed_at_ms, victim, elapsed, counter.attempts_run.load(Ordering::Relaxed))?;
    Ok(())
}

/// Waits (bounded, on child watches) until `count` nodes have registered as workers: every live
/// node keeps an ephemeral znode under `/grid/nodes`.
async fn wait_for_workers(client: &Client, count: usize) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut changed = client.watch("/grid/nodes", WatchKind::Child, None).await?;
        let registered = match client.children("/grid/nodes", Consistency::Linearizable).await {
            Ok(listing) => listing.children.len(),
            Err(error) if error.code() == ErrorCode::NoNode => 0,
            Err(error) => return Err(error.into()),
        };
        if registered >= count {
            return Ok(());
        }
        tokio::time::timeout_at(deadline, changed.recv()).await.context("the nodes did not register as workers")?;
    }
}

/// Wall-clock milliseconds, comparable with the attempts' recorded start times.
fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

fn report(
    tasks: &[TaskView],
    ids: &[TaskId],
    killed_at_ms: Option<u64>,
    victim: NodeId,
    elapsed: Duration,
    attempts_run: u64,
) -> Result<()> {
    let mut succeeded_on: BTreeMap<u64, usize> = BTreeMap::new();
    let mut restarted = 0;
    let mut recovery_ms: Vec<u64> = Vec::new();
    let mut total_primes = 0;
    for task in tasks {
        let winners: Vec<_> = task.attempts.iter().filter(|a| a.state == AttemptState::Succeeded).collect();
        if task.state != TaskState::Succeeded || winners.len() != 1 {
            bail!("task {} ended {:?} with {} successful attempts", task.id, task.state, winners.len());
        }
        *succeeded_on.entry(winners[0].node).or_default() += 1;
        let result: PrimeCount = serde_json::from_value::<Vec<u8>>(task.result.clone().unwrap_or_default())
            .map_err(anyhow::Error::from)
            .and_then(|bytes| {
                <PrimeCount as gridkeeper::grid::kinds::Decode>::decode(&bytes).map_err(anyhow::Error::msg)
            })?;
        total_primes += result.primes;
        if task.attempts.iter().any(|a| a.state == AttemptState::Lost) {
            restarted += 1;
            if let (Some(killed), Some(started)) = (killed_at_ms, winners[0].started_ms) {
                recovery_ms.push(started.saturating_sub(killed));
            }
        }
    }
    let expected = primes_below(TASKS * NUMBERS_PER_TASK);
    println!(
        "\nall {} tasks finished in {:.1} s ({:.0} tasks/s)",
        tasks.len(),
        elapsed.as_secs_f64(),
        tasks.len() as f64 / elapsed.as_secs_f64()
    );
    println!("where they ran (successful attempts per node):");
    for (node, count) in &succeeded_on {
        let note = if *node == victim.0 { "  <- killed halfway" } else { "" };
        println!("  node {node}: {count:>5}{note}");
    }
    recovery_ms.sort_unstable();
    match (recovery_ms.first(), recovery_ms.last()) {
        (Some(first), Some(last)) => println!(
            "restarted elsewhere: {restarted} tasks whose attempt on node {victim} was lost; \
             the first restarted {first} ms after the kill, the last {last} ms after"
        ),
        _ => println!("restarted elsewhere: none (node {victim} held no attempt when it died)"),
    }
    println!(
        "attempts run: {attempts_run} for {} tasks; completions recorded: {} (exactly one per task)",
        ids.len(),
        tasks.len()
    );
    println!("primes below {}: {total_primes} (a local sieve says {expected})", TASKS * NUMBERS_PER_TASK);
    if tasks.len() != ids.len() || total_primes != expected {
        bail!("the cluster's answer is wrong or incomplete");
    }
    println!("every task finished exactly once, and the answer is right");
    Ok(())
}
