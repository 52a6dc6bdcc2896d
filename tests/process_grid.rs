//! The task grid with real processes on 127.0.0.1: the binary, real QUIC, real disk, kill -9.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use gridkeeper::api::grid::{TaskView, TasksQuery};
use gridkeeper::client::Client;
use gridkeeper::grid::task::{AttemptState, TaskState};
use support::{binary, status, wait_for, ClusterSpec, NodeProcess, WAIT_MAX};

/// One cluster at a time: each test runs 3 to 5 node processes, and several at once on a 2-core CI
/// machine starve their heartbeats and session keepalives, which tests nothing but the machine.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const SLOTS: &str = "2";
/// Room for a whole 300-task wave across 3 nodes: the spread then shows placement's decisions, not
/// which process the shared CI machine happened to schedule faster.
const PREFETCH: &str = "100";

fn start(spec: &ClusterSpec, id: u64) -> NodeProcess {
    spec.start_with_args(id, &spec.certs(), &["--slots", SLOTS, "--prefetch", PREFETCH])
}

/// Waits until every node in `alive` sees a leader among them and all of them registered as workers.
fn wait_until_ready(spec: &ClusterSpec, alive: &[u64]) -> u64 {
    wait_for(WAIT_MAX, || {
        let view = status(spec.admin(alive[0]))?;
        let leader = view.leader.filter(|leader| alive.contains(leader))?;
        let workers = view.members.iter().filter(|member| member.slots.is_some()).count();
        (workers == alive.len()).then_some(leader)
    })
    .expect("a leader and every worker registered")
}

/// `gridkeeper submit` through the CLI; returns the ids it printed.
fn submit(spec: &ClusterSpec, via: u64, task: &str, input: &str, count: usize) -> Vec<u64> {
    let output = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["submit", "--admin", &spec.admin(via).to_string(), "--certs"])
        .arg(spec.certs())
        .args(["--task", task, "--input", input, "--count", &count.to_string(), "--json"])
        .output()
        .expect("run submit");
    assert!(output.status.success(), "submit failed: {}", String::from_utf8_lossy(&output.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("submit prints JSON");
    serde_json::from_value(printed["ids"].clone()).expect("ids")
}

fn all_tasks(client: &Client, runtime: &tokio::runtime::Runtime, count: usize) -> Vec<TaskView> {
    runtime.block_on(client.tasks(&TasksQuery { limit: Some(count), ..TasksQuery::default() })).expect("tasks")
}

fn wait_all_done(client: &Client, runtime: &tokio::runtime::Runtime, ids: &[u64]) -> BTreeMap<String, usize> {
    wait_for(WAIT_MAX, || {
        let answer = runtime.block_on(client.wait_tasks(ids, 1_000)).ok()?;
        answer.done.then_some(answer.states)
    })
    .expect("every task ends")
}

#[test]
fn uniform_work_spreads_evenly_and_a_killed_nodes_attempts_run_again_elsewhere() {
    let _exclusive = exclusive();
    let spec = ClusterSpec::new("grid", 3);
    let mut nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| start(&spec, id)).collect();
    let leader = wait_until_ready(&spec, &[1, 2, 3]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = runtime
        .block_on(Client::connect_any(&[spec.admin(1), spec.admin(2), spec.admin(3)], spec.access()))
        .expect("client");

    // Once the cluster applies state version 7, a submission that finds room is placed in its own
    // entry (`SubmitPlaced`).
    let latest = gridkeeper::registry::STATE_VERSION;
    wait_for(WAIT_MAX, || {
        (status(spec.admin(1)).and_then(|status| status.state_version) == Some(latest)).then_some(())
    })
    .expect("the latest state version");

    // Uniform load: 300 equal sleeps spread within ±20% of a third each.
    let ids = submit(&spec, 1, "sleep", r#"{"ms": 20}"#, 300);
    assert_eq!(ids.len(), 300);
    assert_eq!(wait_all_done(&client, &runtime, &ids), BTreeMap::from([("succeeded".to_string(), 300)]));
    // The idle cluster had room for some of them at once: those were assigned as they were accepted.
    let placed: f64 = spec
        .ids
        .iter()
        .filter_map(|&id| support::admin_get(spec.admin(id), "/metrics"))
        .map(|metrics| support::metric_sum(&metrics, "gridkeeper_grid_placed_at_submission_total"))
        .sum();
    assert!(placed > 0.0, "no task was placed at its submission");
    let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
    let mut ended: BTreeMap<(u64, String), usize> = BTreeMap::new();
    for task in all_tasks(&client, &runtime, 300) {
        // Placement's spread: each task's first attempt (work stealing may move queued ones later,
        // from a node the loaded machine slowed down).
        *per_node.entry(task.attempts.first().expect("an attempt").node).or_default() += 1;
        for attempt in &task.attempts {
            *ended.entry((attempt.node, format!("{:?}", attempt.state))).or_default() += 1;
        }
    }
    // On failure, say why: every attempt's node and end, and what the nodes logged about their
    // registrations (a node whose session was lost takes no work until it registers again).
    let why = || {
        let logs: String = nodes
            .iter()
            .flat_map(|node| {
                node.log_text()
                    .lines()
                    .filter(|line| line.contains("registration") || line.contains("expiring") || line.contains("WARN"))
                    .take(20)
                    .map(|line| format!("  node {}: {line}\n", node.id))
                    .collect::<Vec<_>>()
            })
            .collect();
        format!("first attempts per node {per_node:?}; all attempts {ended:?}\n{logs}")
    };
    assert_eq!(per_node.len(), 3, "{}", why());
    assert!(per_node.values().all(|&count| (80..=120).contains(&count)), "spread beyond ±20%: {}", why());

    // 300 sleeps again; a node that is not the leader is killed -9 while it runs its share.
    let victim = [3, 2].into_iter().find(|&id| id != leader).expect("a follower");
    let via = [1, 2, 3].into_iter().find(|&id| id != victim).expect("a survivor");
    let ids = submit(&spec, via, "sleep", r#"{"ms": 100}"#, 300);
    wait_for(WAIT_MAX, || {
        let running = status(spec.admin(via))?.members.into_iter().find(|member| member.id == victim)?.running?;
        (running > 0).then_some(())
    })
    .expect("the victim holds work");
    nodes[(victim - 1) as usize].kill();
    assert_eq!(wait_all_done(&client, &runtime, &ids), BTreeMap::from([("succeeded".to_string(), 300)]));

    let tasks = all_tasks(&client, &runtime, 300);
    let rerun: Vec<&TaskView> = tasks
        .iter()
        .filter(|task| {
            task.attempts.iter().any(|attempt| attempt.node == victim && attempt.state == AttemptState::Lost)
        })
        .collect();
    assert!(!rerun.is_empty(), "the victim's attempts were re-queued");
    for task in &tasks {
        assert_eq!(task.state, TaskState::Succeeded);
        let wins: Vec<_> = task.attempts.iter().filter(|attempt| attempt.state == AttemptState::Succeeded).collect();
        assert_eq!(wins.len(), 1, "completion recorded exactly once: {task:?}");
    }
    for task in &rerun {
        let last = task.attempts.last().expect("attempts");
        assert_ne!(last.node, victim, "a lost attempt ran again elsewhere: {task:?}");
    }

    // `gridkeeper tasks --id` shows the history: the lost attempt on the victim, then the rerun.
    let output = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["tasks", "--admin", &spec.admin(via).to_string(), "--id", &rerun[0].id.to_string(), "--json"])
        .output()
        .expect("run tasks");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let attempts = shown["attempts"].as_array().expect("attempts");
    assert!(attempts.len() >= 2, "{shown}");
    assert_eq!(attempts[0]["node"], victim);
    assert_eq!(attempts[0]["state"], "lost");
    assert_eq!(attempts.last().expect("last")["state"], "succeeded");
    for field in ["attempt", "node", "state", "started_ms", "ended_ms", "error"] {
        assert!(attempts[0].get(field).is_some(), "{field} missing in {shown}");
    }

    // The metrics count what happened.
    let metrics = support::admin_get(spec.admin(via), "/metrics").expect("metrics");
    assert!(support::metric_sum(&metrics, "gridkeeper_grid_reassignments_total") >= rerun.len() as f64, "{metrics}");
    assert!(support::metric_sum(&metrics, "gridkeeper_grid_completed_total") >= 600.0);
}

#[test]
fn failing_tasks_retry_and_bad_submissions_are_refused() {
    let _exclusive = exclusive();
    let spec = ClusterSpec::new("gridfail", 1);
    let _node = start(&spec, 1);
    wait_until_ready(&spec, &[1]);
    // `fail` fails its first 2 attempts: with 3 attempts it succeeds on the third.
    let ids = submit(&spec, 1, "fail", r#"{"times": 2}"#, 5);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = runtime.block_on(Client::connect(spec.admin(1), spec.access())).expect("client");
    assert_eq!(wait_all_done(&client, &runtime, &ids), BTreeMap::from([("succeeded".to_string(), 5)]));
    let task = runtime.block_on(client.tasks(&TasksQuery { id: Some(ids[0]), ..TasksQuery::default() })).expect("task");
    let states: Vec<AttemptState> = task[0].attempts.iter().map(|attempt| attempt.state).collect();
    assert_eq!(states, [AttemptState::Failed, AttemptState::Failed, AttemptState::Succeeded]);
    // Four failures with three attempts: the task fails, with the error kept.
    let ids = submit(&spec, 1, "fail", r#"{"times": 4}"#, 1);
    assert_eq!(wait_all_done(&client, &runtime, &ids), BTreeMap::from([("failed".to_string(), 1)]));
    // An attempt over its timeout is ended and retried, then the task times out.
    let output = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["submit", "--admin", &spec.admin(1).to_string(), "--certs"])
        .arg(spec.certs())
        .args(["--task", "sleep", "--input", r#"{"ms": 5000}"#, "--timeout-ms", "100", "--attempts", "2", "--wait"])
        .output()
        .expect("run submit");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1 tasks: timed_out 1");

    // Bad input gets a clear message and exit 1 (exit 2 for a usage error clap catches), never a hang.
    for (args, expected, code) in [
        (vec!["--task", "noop", "--input", "{not json"], "bad --input JSON", 1),
        (vec!["--task", "noop", "--count", "0"], "count must be", 1),
        (vec!["--task", "noop", "--attempts", "0"], "attempts must be", 1),
        (vec!["--task", "noop", "--strategy", "sideways"], "invalid value 'sideways' for '--strategy", 2),
    ] {
        let output = Command::new(binary())
            .env("GRIDKEEPER_CERTS", spec.certs())
            .args(["submit", "--admin", &spec.admin(1).to_string(), "--certs"])
            .arg(spec.certs())
            .args(&args)
            .output()
            .expect("run submit");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // A kind no node runs is accepted but placed nowhere; it stays pending (and can be cancelled).
    let ids = submit(&spec, 1, "no-such-kind", "{}", 1);
    let cancelled = runtime.block_on(Client::connect_with_certs(spec.admin(1), &spec.certs())).expect("client");
    assert_eq!(runtime.block_on(cancelled.cancel(&ids)).expect("cancel").applied, 1);
    assert_eq!(wait_all_done(&client, &runtime, &ids), BTreeMap::from([("cancelled".to_string(), 1)]));
}

#[test]
fn a_recurring_job_keeps_firing_across_a_leader_change() {
    let _exclusive = exclusive();
    let spec = ClusterSpec::new("gridjobs", 3);
    let mut nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| start(&spec, id)).collect();
    let leader = wait_until_ready(&spec, &[1, 2, 3]);
    let survivor = [1, 2, 3].into_iter().find(|&id| id != leader).expect("a follower");
    let output = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["schedule", "--admin", &spec.admin(survivor).to_string(), "--certs"])
        .arg(spec.certs())
        .args(["--name", "heartbeat", "--task", "noop", "--every-ms", "200"])
        .output()
        .expect("run schedule");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = runtime.block_on(Client::connect(spec.admin(survivor), spec.access())).expect("client");
    let runs = |client: &Client| -> u64 {
        runtime.block_on(client.jobs()).ok().and_then(|jobs| jobs.first().map(|job| job.runs)).unwrap_or(0)
    };
    wait_for(WAIT_MAX, || (runs(&client) >= 3).then_some(())).expect("the job fires every 200 ms");
    nodes[(leader - 1) as usize].kill();
    let after_kill = runs(&client);
    wait_for(WAIT_MAX, || (runs(&client) >= after_kill + 3).then_some(())).expect("the new leader fires it on");
    // Runs are ordinary tasks: they succeed and are in the history.
    let tasks = runtime.block_on(client.tasks(&TasksQuery { limit: Some(5), ..TasksQuery::default() })).expect("tasks");
    assert!(tasks.iter().any(|task| task.task == "noop" && task.state == TaskState::Succeeded), "{tasks:?}");
    // Removing it stops it; a bad cadence is refused with one line.
    let remove = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["unschedule", "--admin", &spec.admin(survivor).to_string(), "--certs"])
        .arg(spec.certs())
        .args(["--name", "heartbeat"])
        .output()
        .expect("run unschedule");
    assert!(remove.status.success(), "{}", String::from_utf8_lossy(&remove.stderr));
    let bad = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["schedule", "--admin", &spec.admin(survivor).to_string(), "--certs"])
        .arg(spec.certs())
        .args(["--name", "bad", "--task", "noop", "--cron", "61 * * * *"])
        .output()
        .expect("run schedule");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("minute"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn accepted_tasks_and_their_history_survive_a_full_cluster_kill() {
    let _exclusive = exclusive();
    let spec = ClusterSpec::new("gridrestart", 3);
    let mut nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| start(&spec, id)).collect();
    wait_until_ready(&spec, &[1, 2, 3]);
    let done = submit(&spec, 1, "echo", r#"{"value": "kept"}"#, 10);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = runtime
        .block_on(Client::connect_any(&[spec.admin(1), spec.admin(2), spec.admin(3)], spec.access()))
        .expect("client");
    assert_eq!(wait_all_done(&client, &runtime, &done), BTreeMap::from([("succeeded".to_string(), 10)]));
    // Accepted, and partly running, when every node dies at once.
    let accepted = submit(&spec, 2, "sleep", r#"{"ms": 300}"#, 60);
    wait_for(WAIT_MAX, || {
        let running: u32 = status(spec.admin(1))?.members.iter().filter_map(|member| member.running).sum();
        (running > 0).then_some(())
    })
    .expect("work is running");
    for node in &mut nodes {
        node.kill();
    }
    drop(client);
    let _nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| start(&spec, id)).collect();
    wait_until_ready(&spec, &[1, 2, 3]);
    let client = runtime
        .block_on(Client::connect_any(&[spec.admin(1), spec.admin(2), spec.admin(3)], spec.access()))
        .expect("client");
    assert_eq!(wait_all_done(&client, &runtime, &accepted), BTreeMap::from([("succeeded".to_string(), 60)]));
    for task in all_tasks(&client, &runtime, 70) {
        let wins = task.attempts.iter().filter(|attempt| attempt.state == AttemptState::Succeeded).count();
        assert_eq!(wins, 1, "exactly one recorded completion: {task:?}");
    }
    // The history from before the restart is intact, results included.
    let old = runtime.block_on(client.tasks(&TasksQuery { id: Some(done[0]), ..TasksQuery::default() })).expect("task");
    assert_eq!(old[0].state, TaskState::Succeeded);
    assert_eq!(old[0].result, Some(serde_json::json!({ "value": "kept" })));
}

#[test]
fn a_drained_node_gets_no_new_work_until_undrained() {
    let _exclusive = exclusive();
    let spec = ClusterSpec::new("griddrain", 3);
    let _nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| start(&spec, id)).collect();
    wait_until_ready(&spec, &[1, 2, 3]);
    let drain = |extra: &[&str]| {
        let output = Command::new(binary())
            .env("GRIDKEEPER_CERTS", spec.certs())
            .args(["drain", "--admin", &spec.admin(1).to_string(), "--certs"])
            .arg(spec.certs())
            .args(["--node", "2"])
            .args(extra)
            .output()
            .expect("run drain");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    assert!(drain(&[]).contains("runs nothing"), "an idle node drains at once");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = runtime.block_on(Client::connect(spec.admin(3), spec.access())).expect("client");
    let ids = submit(&spec, 3, "sleep", r#"{"ms": 10}"#, 60);
    assert_eq!(wait_all_done(&client, &runtime, &ids), BTreeMap::from([("succeeded".to_string(), 60)]));
    let nodes: BTreeSet<u64> = all_tasks(&client, &runtime, 60)
        .iter()
        .flat_map(|task| task.attempts.iter().map(|attempt| attempt.node))
        .collect();
    assert_eq!(nodes, BTreeSet::from([1, 3]), "node 2 is draining");
    drain(&["--undo"]);
    let ids = submit(&spec, 3, "sleep", r#"{"ms": 10}"#, 60);
    assert_eq!(wait_all_done(&client, &runtime, &ids), BTreeMap::from([("succeeded".to_string(), 60)]));
    let used_two =
        all_tasks(&client, &runtime, 60).iter().any(|task| task.attempts.iter().any(|attempt| attempt.node == 2));
    assert!(used_two, "node 2 takes work again");
}

#[test]
fn a_worker_joins_a_running_cluster_takes_work_at_once_and_its_work_survives_its_death() {
    let _exclusive = exclusive();
    let spec = ClusterSpec::new("gridjoin", 3);
    let _members: Vec<NodeProcess> = spec.ids.iter().map(|&id| start(&spec, id)).collect();
    wait_until_ready(&spec, &[1, 2, 3]);
    // Node 4 joins through node 1's admin API: no peer list, no vote; its own node certificate is its
    // credential.
    let mut worker = join_worker(&spec, 4);
    let mut leaver = join_worker(&spec, 5);
    wait_for(WAIT_MAX, || {
        let view = status(spec.admin(2))?;
        view.members.iter().find(|member| member.id == 4 && member.slots.is_some()).map(|_| ())
    })
    .expect("the joined worker is listed with its slots");

    let ids = submit(&spec, 2, "sleep", r#"{"ms": 100}"#, 200);
    wait_for(WAIT_MAX, || {
        let running = status(spec.admin(2))?.members.into_iter().find(|member| member.id == 4)?.running?;
        (running > 0).then_some(())
    })
    .expect("the joined worker receives work at once");
    worker.kill();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = runtime.block_on(Client::connect(spec.admin(3), spec.access())).expect("client");
    assert_eq!(wait_all_done(&client, &runtime, &ids), BTreeMap::from([("succeeded".to_string(), 200)]));
    let tasks = all_tasks(&client, &runtime, 200);
    let ran_on_four = tasks.iter().filter(|task| task.attempts.iter().any(|attempt| attempt.node == 4)).count();
    assert!(ran_on_four > 0, "node 4 ran work");
    for task in &tasks {
        let wins: Vec<_> = task.attempts.iter().filter(|attempt| attempt.state == AttemptState::Succeeded).collect();
        assert_eq!(wins.len(), 1, "{task:?}");
        if task.attempts.iter().any(|attempt| attempt.node == 4 && attempt.state == AttemptState::Lost) {
            assert_ne!(wins[0].node, 4, "lost work ran again elsewhere: {task:?}");
        }
    }

    // Drained, a joined worker finishes what it runs and leaves by itself (exit 0).
    let output = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        .args(["drain", "--admin", &spec.admin(1).to_string(), "--certs"])
        .arg(spec.certs())
        .args(["--node", "5"])
        .output()
        .expect("run drain");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status = wait_for(WAIT_MAX, || leaver.try_exit()).expect("the drained worker leaves");
    assert!(status.success(), "{status:?}");
}

fn join_worker(spec: &ClusterSpec, id: u64) -> NodeProcess {
    support::issue_certs(&spec.certs(), &id.to_string());
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_tcp_port()));
    let log = spec.dir.path().join(format!("node-{id}.log"));
    let child = Command::new(binary())
        .env("GRIDKEEPER_CERTS", spec.certs())
        // By name: the member's admin certificate is valid for localhost, and the worker checks it
        // for the name it dialed.
        .args(["node", "--id", &id.to_string(), "--join", &format!("localhost:{}", spec.admin(1).port()), "--certs"])
        .arg(spec.certs())
        .arg("--data-dir")
        .arg(spec.dir.path().join(format!("data-{id}")))
        .args(["--admin", &admin.to_string(), "--slots", SLOTS])
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(spec.dir.path().join(format!("node-{id}.err"))).expect("log"))
        .spawn()
        .expect("spawn a joining worker");
    NodeProcess::adopt(id, admin, child, log)
}
