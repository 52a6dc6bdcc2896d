//! `gridkeeper submit`, `tasks`, `drain`, `schedule`, `jobs` (and `jobs pause|resume|trigger`),
//! `unschedule`: the task grid from the command line, over a node's admin API.

use clap::Args;

use super::flags::{parse_since, Since, StateArg, StrategyArg};
use super::output::{age, duration, json_line, or_dash, rfc3339, Table};
use super::Connect;
use crate::api::grid::{
    check_submission, state_name, JobView, NameRequest, ScheduleRequest, SubmitRefusal, SubmitRequest, TaskView,
    TasksQuery,
};
use crate::api::{ApiError, ErrorCode};
use crate::client::{Client, ClientError};
use crate::clock::unix_millis;

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
    /// Placement override.
    #[arg(long)]
    strategy: Option<StrategyArg>,
    /// Run only on this node.
    #[arg(long)]
    affinity: Option<u64>,
    /// Wait until every task is terminal and print the counts per final state.
    #[arg(long)]
    wait: bool,
    /// Machine-readable output (without --wait the ids are always printed as JSON).
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
    /// Only tasks in this state.
    #[arg(long)]
    state: Option<StateArg>,
    /// Only tasks with an attempt on this node.
    #[arg(long)]
    node: Option<u64>,
    /// Only tasks with an event since then: a duration back from now (`90s`, `15m`, `1h30m`, `7d`)
    /// or an RFC 3339 time.
    #[arg(long, value_parser = parse_since, conflicts_with = "since_ms")]
    since: Option<Since>,
    /// Only tasks with an event at or after this Unix time in ms.
    #[arg(long)]
    since_ms: Option<u64>,
    /// Only tasks submitted at or before then: a duration back from now or an RFC 3339 time.
    #[arg(long, value_parser = parse_since, conflicts_with = "until_ms")]
    until: Option<Since>,
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
    /// Print the outcome as one JSON object: `{"node", "draining", "held"}` (attempts it still holds).
    #[arg(long)]
    json: bool,
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
    let strategy = args.strategy.map(Into::into);
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
    let now = unix_millis();
    let query = TasksQuery {
        id: args.id,
        state: args.state.map(Into::into),
        node: args.node,
        kind: None,
        since_ms: args.since.map(|since| since.unix_ms(now)).or(args.since_ms),
        until_ms: args.until.map(|until| until.unix_ms(now)).or(args.until_ms),
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
        (Some(_), Some(task)) => print!("{}", task_detail(task, now)),
        _ => {
            print!("{}", task_table(tasks, now));
            if let Some(next) = page.next {
                println!("more: --cursor {next}");
            }
        }
    }
    Ok(())
}

/// One task for people: a line on the task (its submission as RFC 3339 and as an age), a table of its
/// attempts, and its result.
fn task_detail(task: &TaskView, now_ms: u64) -> String {
    let mut out = format!(
        "task {}  {}  {}  priority {}  submitted {} ({})\n",
        task.id,
        task.task,
        state_name(task.state),
        task.priority,
        rfc3339(task.submitted_ms),
        age(now_ms, task.submitted_ms)
    );
    let mut table = Table::new(["ATTEMPT", "NODE", "STATE", "STARTED", "ENDED", "TOOK", "ERROR"]).right([0, 1, 5]);
    for attempt in &task.attempts {
        let state =
            serde_json::to_value(attempt.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let took = match (attempt.started_ms, attempt.ended_ms) {
            (Some(started), Some(ended)) => duration(ended.saturating_sub(started)),
            (Some(started), None) => format!("{}+", duration(now_ms.saturating_sub(started))),
            (None, _) => "-".to_string(),
        };
        table.row([
            attempt.attempt.to_string(),
            attempt.node.to_string(),
            state,
            attempt.started_ms.map_or_else(|| "-".to_string(), rfc3339),
            attempt.ended_ms.map_or_else(|| "-".to_string(), rfc3339),
            took,
            attempt.error.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&table.render());
    if let Some(result) = &task.result {
        out.push_str(&format!("result {result}\n"));
    }
    out
}

/// A page of tasks for people, one row each, newest first; SUBMITTED is an age (`3s ago`).
fn task_table(tasks: &[TaskView], now_ms: u64) -> String {
    let mut table = Table::new(["ID", "TASK", "STATE", "ATTEMPTS", "NODE", "SUBMITTED"]).right([0, 3, 4, 5]);
    for task in tasks {
        table.row([
            task.id.to_string(),
            task.task.clone(),
            state_name(task.state).to_string(),
            task.attempts.len().to_string(),
            or_dash(task.attempts.last().map(|attempt| attempt.node)),
            age(now_ms, task.submitted_ms),
        ]);
    }
    table.render()
}

/// Runs `gridkeeper drain`: marks the node draining, then waits until it runs nothing.
///
/// # Errors
/// [`ClientError`].
pub async fn drain(args: DrainArgs) -> Result<(), ClientError> {
    let client = args.admin.client().await?;
    client.drain(args.node, !args.undo).await?;
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    if args.undo {
        say(format!("node {} takes work again", args.node));
    } else {
        say(format!("node {} takes no new work", args.node));
        if !args.no_wait {
            while runs_anything(&client, args.node).await? {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            say(format!("node {} runs nothing and can be stopped", args.node));
        }
    }
    if args.json {
        let held = client.node_status(args.node).await?.held;
        let outcome = serde_json::json!({ "node": args.node, "draining": !args.undo, "held": held });
        println!("{}", json_line(&outcome).map_err(ClientError::Transport)?);
    }
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
    /// Cron expression, read in --tz (5 fields, or 6 with seconds first; @hourly and friends; Quartz's
    /// `?` for "any" in a day field).
    #[arg(long, conflicts_with = "every_ms", required_unless_present = "every_ms")]
    cron: Option<String>,
    /// The IANA time zone the cron is read in, such as Europe/Berlin or America/New_York (default UTC).
    /// A time a daylight-saving gap skips fires when the gap ends; one repeated by a fold fires once.
    #[arg(long, value_name = "ZONE", conflicts_with = "every_ms")]
    tz: Option<String>,
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

/// `gridkeeper jobs`: list the jobs, or `gridkeeper jobs pause|resume|trigger --name N` one.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Act on one job instead of listing them: pause (it stays and fires nothing until resumed),
    /// resume (fire times missed while paused are skipped; due next at its first fire time from now) or
    /// trigger (one run now, cadence unchanged; refused while its last run goes on, unless it allows
    /// overlap).
    #[arg(value_enum, requires = "name")]
    action: Option<JobAction>,
    /// The job to pause, resume or trigger.
    #[arg(long, requires = "action")]
    name: Option<String>,
    #[command(flatten)]
    node: Connect,
    /// Machine-readable output (a job's view, for an action).
    #[arg(long)]
    json: bool,
}

/// What `gridkeeper jobs` does to one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JobAction {
    /// Pause it: it stays, and fires nothing until resumed.
    Pause,
    /// Resume it.
    Resume,
    /// Submit one run now.
    Trigger,
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
        tz: args.tz,
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
    if let (Some(action), Some(name)) = (args.action, &args.name) {
        return job_action(&client, action, name, args.json).await;
    }
    let jobs = client.jobs().await?;
    if args.json {
        println!("{}", serde_json::json!({ "jobs": jobs }));
        return Ok(());
    }
    print!("{}", job_table(&jobs));
    Ok(())
}

/// The jobs as aligned text, one a line.
fn job_table(jobs: &[JobView]) -> String {
    let mut table = Table::new(["NAME", "TASK", "CADENCE", "TZ", "STATE", "RUNS", "SKIPPED", "NEXT DUE"]).right([5, 6]);
    for job in jobs {
        let due = job.due_ms.map_or_else(|| "-".to_string(), rfc3339);
        let state = if job.paused { "paused" } else { "active" };
        table.row([
            job.name.clone(),
            job.task.clone(),
            job.cadence.clone(),
            job.tz.clone(),
            state.to_string(),
            job.runs.to_string(),
            job.skipped.to_string(),
            due,
        ]);
    }
    table.render()
}

/// Runs `gridkeeper jobs pause|resume|trigger --name NAME`.
async fn job_action(client: &Client, action: JobAction, name: &str, json: bool) -> Result<(), ClientError> {
    let (path, done) = match action {
        JobAction::Pause => ("/grid/jobs/pause", "paused"),
        JobAction::Resume => ("/grid/jobs/resume", "resumed"),
        JobAction::Trigger => ("/grid/jobs/trigger", "triggered"),
    };
    let job: JobView = client.post(path, &NameRequest { name: name.to_owned() }).await?;
    if json {
        println!("{}", serde_json::to_string(&job).map_err(|error| ClientError::Transport(error.to_string()))?);
    } else if let Some(task) = job.last_task.filter(|_| action == JobAction::Trigger) {
        println!("job {} {done}: task {task}", job.name);
    } else {
        println!("job {} {done}", job.name);
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_061_600_000;

    fn task(id: u64, kind: &str, attempts: serde_json::Value) -> TaskView {
        serde_json::from_value(serde_json::json!({
            "id": id, "task": kind, "state": "succeeded", "priority": 0,
            "submitted_ms": NOW - 3_000, "attempts": attempts, "result": {"ok": true}
        }))
        .expect("a task view")
    }

    #[test]
    fn a_listing_aligns_columns_and_shows_ages() {
        let attempt = serde_json::json!([{"attempt": 1, "node": 12, "state": "succeeded", "assigned_ms": NOW - 2_900}]);
        let tasks = [task(1042, "echo", attempt), task(7, "sleep", serde_json::json!([]))];
        assert_eq!(
            task_table(&tasks, NOW),
            "  ID  TASK   STATE      ATTEMPTS  NODE  SUBMITTED\n\
             1042  echo   succeeded         1    12     3s ago\n\
             \x20  7  sleep  succeeded         0     -     3s ago\n"
        );
    }

    #[test]
    fn one_task_shows_rfc3339_times_and_how_long_each_attempt_took() {
        let attempts = serde_json::json!([
            {"attempt": 1, "node": 2, "state": "failed", "assigned_ms": NOW - 2_900, "started_ms": NOW - 2_800,
             "ended_ms": NOW - 1_300, "error": "boom"},
            {"attempt": 2, "node": 3, "state": "running", "assigned_ms": NOW - 1_000, "started_ms": NOW - 1_000}
        ]);
        assert_eq!(
            task_detail(&task(9, "fail", attempts), NOW),
            "task 9  fail  succeeded  priority 0  submitted 2026-11-30T17:59:57.000Z (3s ago)\n\
             ATTEMPT  NODE  STATE    STARTED                   ENDED                     TOOK  ERROR\n\
             \x20     1     2  failed   2026-11-30T17:59:57.200Z  2026-11-30T17:59:58.700Z    1s  boom\n\
             \x20     2     3  running  2026-11-30T17:59:59.000Z  -                          1s+\n\
             result {\"ok\":true}\n"
        );
    }
}
