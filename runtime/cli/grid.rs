//! `gridkeeper submit`, `tasks`, `drain`, `schedule`, `jobs`, `unschedule`: the task grid from the
//! command line, over a node's admin API.

use clap::Args;

use super::Connect;
use crate::api::grid::{
    check_submission, state_name, ScheduleRequest, SubmitRefusal, SubmitRequest, TaskView, TasksQuery,
};
use crate::api::{ApiError, ErrorCode};
use crate::client::{Client, ClientError};
use crate::clock::unix_millis;
use crate::grid::task::TaskState;

/// Longest one wait call holds; `--wait` loops over calls until every task is terminal.
const WAIT_CALL_MS: u64 = 5_000;

/// `gridkeeper submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    node: Connect,
    /// Task kind (built-ins: noop, echo, sleep, spin, fail).
    #[arg(long)]
    task: String,
    /// JSON input (default `{}`).
    #[arg(long)]
    input: Option<String>,
    /// Identical tasks to submit.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Priority: higher runs first.
    #[arg(long)]
    priority: Option<i32>,
    /// Not before this many milliseconds from now.
    #[arg(long)]
    delay_ms: Option<u64>,
    /// Shard key (same key, same node, under consistent hashing).
    #[arg(long)]
    key: Option<String>,
    /// Per-attempt timeout in milliseconds (default 30000).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Attempts in all (default 3).
    #[arg(long)]
    attempts: Option<u32>,
    /// Placement override: least_loaded, round_robin, random, weighted, consistent_hash.
    #[arg(long)]
    strategy: Option<String>,
    /// Run only on this node.
    #[arg(long)]
    affinity: Option<u64>,
    /// Wait until every task is terminal and print the counts per final state.
    #[arg(long)]
    wait: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `gridkeeper tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(flatten)]
    connect: Connect,
    /// One task, with its attempts.
    #[arg(long, conflicts_with_all = ["state", "node"])]
    id: Option<u64>,
    /// Only tasks in this state (pending, assigned, running, succeeded, failed, timed_out, cancelled).
    #[arg(long)]
    state: Option<String>,
    /// Only tasks with an attempt on this node.
    #[arg(long)]
    node: Option<u64>,
    /// Only tasks with an event at or after this Unix time in ms.
    #[arg(long)]
    since_ms: Option<u64>,
    /// Only tasks submitted at or before this Unix time in ms.
    #[arg(long)]
    until_ms: Option<u64>,
    /// At most this many tasks (default 100).
    #[arg(long)]
    limit: Option<usize>,
    /// Continue a listing from the `next` cursor a previous page printed.
    #[arg(long)]
    cursor: Option<u64>,
    /// Show results in a listing (a single task, `--id`, always shows its result).
    #[arg(long)]
    results: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `gridkeeper drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    #[command(flatten)]
    admin: Connect,
    /// The node to drain.
    #[arg(long)]
    node: u64,
    /// Stop draining instead (the node takes work again).
    #[arg(long)]
    undo: bool,
    /// Return at once instead of waiting until the node runs nothing.
    #[arg(long)]
    no_wait: bool,
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, ClientError> {
    serde_json::from_str(text).map_err(|error| ClientError::Transport(format!("bad {what}: {error}")))
}

/// Runs `gridkeeper submit`.
///
/// # Errors
/// [`ClientError`] for refusals and unreachable nodes.
pub async fn submit(args: SubmitArgs) -> Result<(), ClientError> {
    let client = args.node.client().await?;
    let input = args.input.as_deref().map(|text| parse_json("--input JSON", text)).transpose()?;
    let strategy = args
        .strategy
        .as_deref()
        .map(|text| parse_json("--strategy", &format!("\"{}\"", text.replace('-', "_"))))
        .transpose()?;
    let mut request = SubmitRequest {
        task: Some(args.task),
        input,
        count: Some(args.count),
        priority: args.priority,
        delay_ms: args.delay_ms,
        key: args.key,
        timeout_ms: args.timeout_ms,
        attempts: args.attempts,
        backoff_ms: None,
        strategy,
        affinity: args.affinity,
        specs: None,
    };
    // The same bound the node applies, checked here before a request is sent.
    let refused = |refusal: SubmitRefusal| ClientError::Api(ApiError::from(refusal));
    let spec = request.clone().spec(unix_millis()).map_err(refused)?;
    check_submission(&spec, args.count).map_err(refused)?;
    request.count = Some(args.count);
    let ids = client.submit(&request).await?;
    if !args.wait {
        println!("{}", serde_json::json!({ "ids": ids }));
        return Ok(());
    }
    let states = loop {
        let answer = client.wait_tasks(&ids, WAIT_CALL_MS).await?;
        if answer.done {
            break answer.states;
        }
    };
    if args.json {
        println!("{}", serde_json::json!({ "ids": ids, "states": states }));
    } else {
        let counts: Vec<String> = states.iter().map(|(state, count)| format!("{state} {count}")).collect();
        println!("{} tasks: {}", ids.len(), counts.join(", "));
    }
    Ok(())
}

/// Runs `gridkeeper tasks`.
///
/// # Errors
/// [`ClientError`] for unknown tasks and unreachable nodes.
pub async fn tasks(args: TasksArgs) -> Result<(), ClientError> {
    let client = args.connect.client().await?;
    let state: Option<TaskState> =
        args.state.as_deref().map(|text| parse_json("--state", &format!("\"{text}\""))).transpose()?;
    let query = TasksQuery {
        id: args.id,
        state,
        node: args.node,
        since_ms: args.since_ms,
        until_ms: args.until_ms,
        limit: args.limit,
        local: false,
        cursor: args.cursor,
        results: args.results,
    };
    let page = client.tasks_page(&query).await?;
    let tasks = &page.tasks;
    if args.json {
        let text = match (args.id, tasks.first()) {
            (Some(_), Some(task)) => serde_json::to_string(task),
            _ => serde_json::to_string(&page),
        };
        println!("{}", text.map_err(|error| ClientError::Transport(error.to_string()))?);
        return Ok(());
    }
    match (args.id, tasks.first()) {
        (Some(_), Some(task)) => print!("{}", task_detail(task)),
        _ => {
            print!("{}", task_table(tasks));
            if let Some(next) = page.next {
                println!("more: --cursor {next}");
            }
        }
    }
    Ok(())
}

fn task_detail(task: &TaskView) -> String {
    let mut out = format!(
        "task {}  {}  {}  priority {}  submitted {}\n",
        task.id,
        task.task,
        state_name(task.state),
        task.priority,
        task.submitted_ms
    );
    out.push_str(&format!("{:<8} {:<6} {:<10} {:>15} {:>15}  ERROR\n", "ATTEMPT", "NODE", "STATE", "STARTED", "ENDED"));
    let show = |value: Option<u64>| value.map_or_else(|| "-".to_string(), |value| value.to_string());
    for attempt in &task.attempts {
        let state =
            serde_json::to_value(attempt.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        out.push_str(&format!(
            "{:<8} {:<6} {:<10} {:>15} {:>15}  {}\n",
            attempt.attempt,
            attempt.node,
            state,
            show(attempt.started_ms),
            show(attempt.ended_ms),
            attempt.error.as_deref().unwrap_or("")
        ));
    }
    if let Some(result) = &task.result {
        out.push_str(&format!("result {result}\n"));
    }
    out
}

fn task_table(tasks: &[TaskView]) -> String {
    let mut out =
        format!("{:<10} {:<12} {:<10} {:>8} {:>6} {:>15}\n", "ID", "TASK", "STATE", "ATTEMPTS", "NODE", "SUBMITTED");
    for task in tasks {
        let node = task.attempts.last().map_or_else(|| "-".to_string(), |attempt| attempt.node.to_string());
        out.push_str(&format!(
            "{:<10} {:<12} {:<10} {:>8} {:>6} {:>15}\n",
            task.id,
            task.task,
            state_name(task.state),
            task.attempts.len(),
            node,
            task.submitted_ms
        ));
    }
    out
}

/// Runs `gridkeeper drain`: marks the node draining, then waits until it runs nothing.
///
/// # Errors
/// [`ClientError`].
pub async fn drain(args: DrainArgs) -> Result<(), ClientError> {
    let client = args.admin.client().await?;
    client.drain(args.node, !args.undo).await?;
    if args.undo {
        println!("node {} takes work again", args.node);
        return Ok(());
    }
    println!("node {} takes no new work", args.node);
    if args.no_wait {
        return Ok(());
    }
    while runs_anything(&client, args.node).await? {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    println!("node {} runs nothing and can be stopped", args.node);
    Ok(())
}

/// Whether `node` holds an attempt that has not ended: one exact read of the table's per-node index
/// (`GET /grid/node`), however many tasks the cluster keeps.
async fn runs_anything(client: &Client, node: u64) -> Result<bool, ClientError> {
    Ok(client.node_status(node).await?.held > 0)
}

/// `gridkeeper schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    node: Connect,
    /// The job's unique name (an existing job of that name is replaced).
    #[arg(long)]
    name: String,
    /// Task kind each run submits.
    #[arg(long)]
    task: String,
    /// JSON input of each run (default `{}`).
    #[arg(long)]
    input: Option<String>,
    /// Cron expression, UTC (5 fields, or 6 with seconds first; @hourly and friends).
    #[arg(long, conflicts_with = "every_ms", required_unless_present = "every_ms")]
    cron: Option<String>,
    /// Fixed interval in milliseconds.
    #[arg(long)]
    every_ms: Option<u64>,
    /// Missed fire times (no leader, cluster down): skip (default) or run_once.
    #[arg(long)]
    misfire: Option<String>,
    /// Let a run start while the previous one is still going.
    #[arg(long)]
    overlap: bool,
}

/// `gridkeeper jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    node: Connect,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `gridkeeper unschedule`.
#[derive(Debug, Args)]
pub struct UnscheduleArgs {
    #[command(flatten)]
    node: Connect,
    /// The job.
    #[arg(long)]
    name: String,
}

/// Runs `gridkeeper schedule`.
///
/// # Errors
/// [`ClientError`] for bad cadences or tasks and unreachable nodes.
pub async fn schedule(args: ScheduleArgs) -> Result<(), ClientError> {
    let client = args.node.client().await?;
    let input = args.input.as_deref().map(|text| parse_json("--input JSON", text)).transpose()?;
    let misfire = args
        .misfire
        .as_deref()
        .map(|text| parse_json("--misfire", &format!("\"{}\"", text.replace('-', "_"))))
        .transpose()?
        .unwrap_or_default();
    let request = ScheduleRequest {
        name: args.name.clone(),
        task: Some(args.task),
        input,
        cron: args.cron,
        every_ms: args.every_ms,
        misfire,
        overlap: args.overlap,
        ..ScheduleRequest::default()
    };
    client.schedule(&request).await?;
    println!("job {} scheduled", args.name);
    Ok(())
}

/// Runs `gridkeeper jobs`.
///
/// # Errors
/// [`ClientError`].
pub async fn jobs(args: JobsArgs) -> Result<(), ClientError> {
    let client = args.node.client().await?;
    let jobs = client.jobs().await?;
    if args.json {
        println!("{}", serde_json::json!({ "jobs": jobs }));
        return Ok(());
    }
    println!("{:<20} {:<12} {:<28} {:>8} {:>8} {:>15}", "NAME", "TASK", "CADENCE", "RUNS", "SKIPPED", "NEXT DUE");
    for job in jobs {
        let due = job.due_ms.map_or_else(|| "-".to_string(), |due| due.to_string());
        println!(
            "{:<20} {:<12} {:<28} {:>8} {:>8} {:>15}",
            job.name, job.task, job.cadence, job.runs, job.skipped, due
        );
    }
    Ok(())
}

/// Runs `gridkeeper unschedule`.
///
/// # Errors
/// [`ClientError`]; `no job` if there is none of that name.
pub async fn unschedule(args: UnscheduleArgs) -> Result<(), ClientError> {
    let client = args.node.client().await?;
    if client.unschedule(&args.name).await?.applied == 0 {
        return Err(ClientError::Api(ApiError::new(ErrorCode::NoJob, format!("no job named {}", args.name))));
    }
    println!("job {} removed", args.name);
    Ok(())
}
