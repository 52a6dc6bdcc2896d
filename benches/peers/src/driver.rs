//! The closed loop: every simulated client holds one connection and one outstanding request, and
//! sends the next as soon as the previous one is answered. Throughput is then what the system
//! sustains at that concurrency, not what a load generator pushes at it.
//!
//! Every system gets the same loop, the same warm-up, the same window, the same per-request deadline
//! and the same pause after an error. The loop only counts; turning counts into records is
//! `report`'s job.

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::connection::{Connection, FreshKey, Op, Reach, Target, KEYS};

/// A request unanswered after this, in the steady workloads, counts as an error and is abandoned.
/// Far above any healthy latency on loopback; it only bounds a stuck request.
pub const STEADY_DEADLINE: Duration = Duration::from_secs(5);

/// Pause after a failed request. A refused connection fails at once, and a client spinning on it
/// would take a core from the servers being measured.
const ERROR_PAUSE: Duration = Duration::from_millis(1);

/// Latencies one client reserves room for up front, so the vector rarely grows inside a window.
const LATENCIES_RESERVED: usize = 1 << 14;

/// How long each phase runs.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Before each window: requests run, uncounted (JIT warm-up, connection set-up, caches).
    pub warmup: Duration,
    /// The measured window of a steady workload.
    pub window: Duration,
    /// Failover: load before the kill.
    pub failover_before: Duration,
    /// Failover: load after the kill; longer than any gap worth reporting.
    pub failover_after: Duration,
}

impl Plan {
    /// Full (10 s windows) or quick (3 s windows) runs.
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                warmup: Duration::from_secs(1),
                window: Duration::from_secs(3),
                failover_before: Duration::from_secs(2),
                failover_after: Duration::from_secs(6),
            }
        } else {
            Plan {
                warmup: Duration::from_secs(2),
                window: Duration::from_secs(10),
                failover_before: Duration::from_secs(3),
                failover_after: Duration::from_secs(10),
            }
        }
    }
}

/// When one client's loop runs and what it keeps.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Requests started before this are warm-up: run, not counted.
    pub count_from: Instant,
    /// No request starts at or after this.
    pub until: Instant,
    /// A request unanswered after this counts as an error and is abandoned.
    pub deadline: Duration,
    /// Keep the instant of every acknowledged request (failover's gap needs them).
    pub keep_acks: bool,
}

/// What one or more clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Acknowledged requests started inside the window.
    pub ops: u64,
    /// Failed or abandoned requests started inside the window.
    pub errors: u64,
    /// Latency of each acknowledged request, in microseconds.
    pub latencies_us: Vec<u64>,
    /// When each request was acknowledged (only with `keep_acks`), counted or not.
    pub acks: Vec<Instant>,
}

impl Tally {
    /// Adds another client's tally to this one.
    pub fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        self.acks.extend(other.acks);
    }
}

/// One simulated client: requests of `op` on uniformly random keys until the schedule ends.
/// `index` seeds its key sequence, so runs are repeatable; `clients` labels its fresh keys.
pub async fn client_loop(
    mut connection: Connection,
    op: Op,
    index: usize,
    clients: usize,
    schedule: Schedule,
) -> Tally {
    let mut keys = SmallRng::seed_from_u64(index as u64);
    let mut tally = Tally { latencies_us: Vec::with_capacity(LATENCIES_RESERVED), ..Tally::default() };
    let mut number = 0;
    loop {
        let started = Instant::now();
        if started >= schedule.until {
            break;
        }
        number += 1;
        let key = keys.random_range(0..KEYS);
        let fresh = FreshKey { window: clients, client: index, number };
        let outcome = tokio::time::timeout(schedule.deadline, connection.run(op, key, fresh)).await;
        let answered = Instant::now();
        let counted = started >= schedule.count_from;
        if let Ok(Ok(())) = outcome {
            if counted {
                tally.ops += 1;
                tally.latencies_us.push(answered.duration_since(started).as_micros() as u64);
            }
            if schedule.keep_acks {
                tally.acks.push(answered);
            }
        } else {
            if counted {
                tally.errors += 1;
            }
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    tally
}

/// Opens one connection per client, in order (connection set-up is not measured); client `i` gets
/// member `first + i` (modulo the members) when pinned.
///
/// # Errors
/// When a member cannot be reached.
pub async fn connect_all(target: &Target, clients: usize, reach: Reach, first: usize) -> Result<Vec<Connection>> {
    let mut connections = Vec::with_capacity(clients);
    for index in 0..clients {
        connections.push(target.connect(first + index, reach).await?);
    }
    Ok(connections)
}

/// Runs `clients` loops under `schedule` and merges what they saw.
pub async fn run_clients(connections: Vec<Connection>, op: Op, schedule: Schedule) -> Tally {
    let clients = connections.len();
    let loops: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(index, connection)| tokio::spawn(client_loop(connection, op, index, clients, schedule)))
        .collect();
    let mut total = Tally::default();
    for handle in loops {
        match handle.await {
            Ok(tally) => total.merge(tally),
            // A panicked client is a harness bug; its requests are lost, so say so loudly.
            Err(error) => eprintln!("peers: a client loop failed: {error}"),
        }
    }
    total
}

/// One steady window: `clients` pinned clients doing `op` for the plan's warm-up and window, the
/// first of them on member `first`.
///
/// # Errors
/// When a member cannot be reached.
pub async fn steady(target: &Target, op: Op, clients: usize, first: usize, plan: &Plan) -> Result<Tally> {
    let connections = connect_all(target, clients, Reach::Pinned, first).await?;
    let count_from = Instant::now() + plan.warmup;
    let until = count_from + plan.window;
    let schedule = Schedule { count_from, until, deadline: STEADY_DEADLINE, keep_acks: false };
    Ok(run_clients(connections, op, schedule).await)
}
