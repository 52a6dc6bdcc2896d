//! The task workloads on gridkeeper: end-to-end no-op throughput (submit 200,000 in calls of at most
//! `SUBMIT_COUNT_MAX`, wait for all), and
//! the time from kill -9 of the node running a retriable task to the retry starting elsewhere.
//!
//! `ray_bench.py` does the same two things to Ray; the harness only reports them side by side.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use gridkeeper::api::grid::{SubmitRequest, TaskView, TasksQuery};
use gridkeeper::client::Client;
use gridkeeper::limits::SUBMIT_COUNT_MAX;

use crate::cluster::{kill_hard, Control};

/// Warm-up tasks run before the measured batch (worker start-up, first placement).
const WARMUP_TASKS: usize = 100;
/// Longest one wait call may hold (the API caps it at a minute).
const WAIT_CALL_MS: u64 = 60_000;
/// Longest a whole task batch may take before the run is called failed.
const BATCH_WAIT_MAX: Duration = Duration::from_secs(600);
/// Poll interval while watching a task's attempts.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Longest to wait for an attempt to start (the first, then the retry).
const ATTEMPT_WAIT_MAX: Duration = Duration::from_secs(60);
/// The retriable task sleeps this long: far longer than the measurement.
const SLEEP_TASK_MS: u64 = 60_000;
/// Attempts the retriable task may use (a lost attempt does not use one up, but say 3 like Ray's).
const RETRY_ATTEMPTS: u32 = 3;
/// Submissions tried to get the task placed on a node that is not the coordinator leader.
const PLACEMENT_TRIES: usize = 5;

/// What a task throughput run saw.
#[derive(Debug)]
pub struct Throughput {
    /// Tasks submitted.
    pub tasks: usize,
    /// From the submission to the last task's end.
    pub elapsed: Duration,
    /// Tasks that did not succeed.
    pub failed: usize,
}

/// Submits `count` no-op tasks in one call and waits until all have ended.
///
/// # Errors
/// When the cluster cannot be reached or the tasks do not end within [`BATCH_WAIT_MAX`].
pub async fn throughput(admins: &[SocketAddr], access: &gridkeeper::client::Access, count: usize) -> Result<Throughput> {
    let client = Client::connect_any(admins, access.clone()).await.context("connect to gridkeeper")?;
    run_noops(&client, WARMUP_TASKS).await.context("warm-up tasks")?;
    let started = Instant::now();
    let failed = run_noops(&client, count).await?;
    Ok(Throughput { tasks: count, elapsed: started.elapsed(), failed })
}

/// Runs `count` no-ops to their end; returns how many did not succeed. The submissions go in calls
/// of at most [`SUBMIT_COUNT_MAX`] tasks, one after another, so that the first chunk runs while the
/// next is being submitted (as one caller submitting a large batch would); then every chunk is
/// waited for.
async fn run_noops(client: &Client, count: usize) -> Result<usize> {
    let started = Instant::now();
    let mut chunks = Vec::new();
    let mut left = count;
    while left > 0 {
        let size = left.min(SUBMIT_COUNT_MAX);
        let request = SubmitRequest { task: Some("noop".into()), count: Some(size), ..Default::default() };
        chunks.push(client.submit(&request).await.context("submit no-op tasks")?);
        left -= size;
    }
    let mut failed = 0;
    for ids in &chunks {
        loop {
            let waited = client.wait_tasks(ids, WAIT_CALL_MS).await.context("wait for tasks")?;
            if waited.done {
                let succeeded = waited.states.get("succeeded").copied().unwrap_or(0);
                failed += ids.len().saturating_sub(succeeded);
                break;
            }
            if started.elapsed() > BATCH_WAIT_MAX {
                bail!("{count} no-op tasks not done after {BATCH_WAIT_MAX:?}: {:?}", waited.states);
            }
        }
    }
    Ok(failed)
}

/// Kills the node running a retriable `sleep` task and returns the time from the kill to the
/// retry's start, as the retry's own `started_ms` says (both clocks are this machine's).
///
/// The victim is a node that is not the coordinator leader when placement allows: losing the
/// leader is the failover workload's business, and Ray's counterpart kills a worker process, not
/// its head node.
///
/// # Errors
/// When the cluster cannot be reached, the task never starts, or no retry starts in time.
pub async fn retry_after_kill(
    admins: &[SocketAddr],
    access: &gridkeeper::client::Access,
    control: &Control,
) -> Result<Duration> {
    let client = Client::connect_any(admins, access.clone()).await.context("connect to gridkeeper")?;
    let nodes = admin_by_node(admins, access).await?;
    let placed = place_off_leader(&client, control).await?;
    let (id, victim) = (placed.task, placed.node);
    let pid = control.pid(victim).await?;
    // Poll through the survivors only, so no poll waits on the dead node.
    let survivors: Vec<SocketAddr> = admins.iter().copied().filter(|admin| nodes.get(&victim) != Some(admin)).collect();
    let poller = Client::connect_any(&survivors, access.clone()).await.context("connect to survivors")?;
    let killed_ms = unix_ms();
    kill_hard(pid).await?;
    let retry = wait_for_attempt(&poller, id, 2).await;
    // Sleeping tasks would hold slots for a minute; the cluster is stopped next anyway.
    let _ = poller.cancel(&placed.all).await;
    let retry = retry?;
    let started_ms =
        retry.attempts.iter().filter(|attempt| attempt.attempt >= 2).find_map(|attempt| attempt.started_ms);
    let after = Duration::from_millis(started_ms.context("retry has no start time")?.saturating_sub(killed_ms));
    eprintln!("peers: killed node {victim} (pid {pid}) running task {id}; retry started {after:?} later");
    Ok(after)
}

/// Where the sleeping task runs.
struct Placed {
    /// The task to watch.
    task: u64,
    /// The node running it.
    node: u64,
    /// Every task submitted, the ones parked on the leader included.
    all: Vec<u64>,
}

/// Submits the sleeping task until it starts on a node other than the leader (or tries run out).
/// A task that lands on the leader is left running: placement favours the least loaded node, so
/// the next one goes elsewhere (cancelling it would make the leader the least loaded again).
async fn place_off_leader(client: &Client, control: &Control) -> Result<Placed> {
    let request = SubmitRequest {
        task: Some("sleep".into()),
        input: Some(serde_json::json!({ "ms": SLEEP_TASK_MS })),
        attempts: Some(RETRY_ATTEMPTS),
        ..Default::default()
    };
    let mut all = Vec::new();
    for try_number in 1..=PLACEMENT_TRIES {
        let ids = client.submit(&request).await.context("submit the sleep task")?;
        let task = *ids.first().context("submit returned no id")?;
        all.push(task);
        let view = wait_for_attempt(client, task, 1).await?;
        let node = view.attempts.first().context("started task has no attempt")?.node;
        let leader = control.leader().await?;
        if node != leader.id || try_number == PLACEMENT_TRIES {
            if node == leader.id {
                eprintln!("peers: the sleep task kept landing on the leader; killing the leader's node");
            }
            return Ok(Placed { task, node, all });
        }
    }
    unreachable!("the last try returns")
}

/// Polls task `id` until its attempt number `attempt` has started.
async fn wait_for_attempt(client: &Client, id: u64, attempt: u32) -> Result<TaskView> {
    let query = TasksQuery { id: Some(id), ..Default::default() };
    let started = Instant::now();
    let mut last_error = None;
    while started.elapsed() < ATTEMPT_WAIT_MAX {
        // Errors are expected while the cluster notices the dead node; keep polling.
        match client.tasks(&query).await {
            Ok(views) => {
                if let Some(view) = views.into_iter().find(|view| view.id == id) {
                    if view.attempts.iter().any(|seen| seen.attempt >= attempt && seen.started_ms.is_some()) {
                        return Ok(view);
                    }
                }
            }
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    bail!("attempt {attempt} of task {id} did not start within {ATTEMPT_WAIT_MAX:?} (last error: {last_error:?})")
}

/// Which admin address serves which node, from each node's `/status`.
async fn admin_by_node(
    admins: &[SocketAddr],
    access: &gridkeeper::client::Access,
) -> Result<HashMap<u64, SocketAddr>> {
    let mut nodes = HashMap::new();
    for &admin in admins {
        let body = gridkeeper::admin::client::get(admin, "/status", access)
            .await
            .with_context(|| format!("status of {admin}"))?;
        let status: serde_json::Value = serde_json::from_slice(&body).context("parse /status")?;
        let node = status["node"].as_u64().with_context(|| format!("{admin}/status has no node id"))?;
        nodes.insert(node, admin);
    }
    Ok(nodes)
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}
