//! Task logs with real processes on 127.0.0.1: `gridkeeper logs` against every node of a 3-node
//! cluster shows what the built-ins logged wherever they ran, `--json` has the contract's shape,
//! `--follow` prints a running attempt's lines and exits when it ends, a restarted node still serves
//! its attempts' logs, a node killed -9 makes them `unavailable` from the others, and a joined
//! worker's attempts' logs are read through a member.

mod support;

use std::process::{Command, Output, Stdio};

use gridkeeper::api::grid::NodeStatus;
use gridkeeper::client::Client;
use support::{binary, status, wait_for, ClusterSpec, NodeProcess, WAIT_MAX};

/// One cluster at a time (see `process_grid.rs`): several at once starve a small CI machine.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start(spec: &ClusterSpec, id: u64) -> NodeProcess {
    spec.start_with_args(id, &spec.certs(), &["--slots", "2"])
}

/// Waits until `via` sees a leader and `workers` registered workers.
fn wait_until_ready(spec: &ClusterSpec, via: u64, workers: usize) {
    wait_for(WAIT_MAX, || {
        let view = status(spec.admin(via))?;
        view.leader?;
        (view.members.iter().filter(|member| member.slots.is_some()).count() == workers).then_some(())
    })
    .expect("a leader and every worker registered");
}

/// Runs the CLI against node `via` with the operator's credentials.
fn cli(spec: &ClusterSpec, via: u64, args: &[&str]) -> Output {
    Command::new(binary())
        .args([args[0], "--admin", &spec.admin(via).to_string(), "--certs"])
        .arg(spec.certs())
        .args(&args[1..])
        .output()
        .expect("run the CLI")
}

fn submit(spec: &ClusterSpec, via: u64, task: &str, input: &str, extra: &[&str]) -> u64 {
    let mut args = vec!["submit", "--task", task, "--input", input, "--json"];
    args.extend_from_slice(extra);
    let output = cli(spec, via, &args);
    assert!(output.status.success(), "submit failed: {}", String::from_utf8_lossy(&output.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("submit prints JSON");
    printed["ids"][0].as_u64().expect("an id")
}

fn wait_done(spec: &ClusterSpec, via: u64, ids: &[u64]) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = runtime.block_on(Client::connect(spec.admin(via), spec.access())).expect("client");
    wait_for(WAIT_MAX, || runtime.block_on(client.wait_tasks(ids, 1_000)).ok()?.done.then_some(()))
        .expect("the tasks end");
}

/// `gridkeeper logs --id ID [extra]` against `via`: its stdout lines, asserting success.
fn logs(spec: &ClusterSpec, via: u64, id: u64, extra: &[&str]) -> Vec<String> {
    let id = id.to_string();
    let mut args = vec!["logs", "--id", id.as_str()];
    args.extend_from_slice(extra);
    let output = cli(spec, via, &args);
    assert!(output.status.success(), "logs via {via}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(String::from).collect()
}

/// A text line's three parts: `<RFC 3339 time> <LEVEL> <text>`.
fn parts(line: &str) -> (&str, &str, &str) {
    let (time, rest) = line.split_once(' ').expect("a time");
    let (level, text) = rest.split_once(' ').expect("a level");
    assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "an RFC 3339 time: {line}");
    (time, level, text)
}

fn node_registered(spec: &ClusterSpec, via: u64, node: u64) -> Option<bool> {
    let body = support::admin_get(spec.admin(via), &format!("/grid/node?node={node}"))?;
    Some(serde_json::from_str::<NodeStatus>(&body).ok()?.registered)
}

#[test]
fn every_node_serves_every_attempts_logs_until_the_node_that_keeps_them_dies() {
    let _exclusive = exclusive();
    let spec = ClusterSpec::new("logs", 3);
    let mut nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| start(&spec, id)).collect();
    wait_until_ready(&spec, 1, 3);

    let echo = submit(&spec, 1, "echo", r#"{"value": {"b": [1, 2], "a": "x y"}}"#, &[]);
    let fail = submit(&spec, 2, "fail", r#"{"times": 1}"#, &[]);
    wait_done(&spec, 3, &[echo, fail]);
    for via in [1, 2, 3] {
        let lines = logs(&spec, via, echo, &[]);
        assert_eq!(lines.len(), 1, "via {via}: {lines:?}");
        let (_, level, text) = parts(&lines[0]);
        assert_eq!((level, text), ("INFO", r#"{"a":"x y","b":[1,2]}"#), "via {via}");
        let lines = logs(&spec, via, fail, &["--attempt", "1"]);
        assert_eq!(lines.len(), 1, "via {via}: {lines:?}");
        assert_eq!(parts(&lines[0]).2, "failing attempt 1");
        // The latest attempt (the second) succeeds and says nothing.
        assert!(logs(&spec, via, fail, &[]).is_empty(), "via {via}");
    }

    // `--json`: the route's document.
    let json = logs(&spec, 2, echo, &["--json"]);
    assert_eq!(json.len(), 1);
    let document: serde_json::Value = serde_json::from_str(&json[0]).expect("JSON");
    let mut keys: Vec<&str> = document.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["attempt", "ended", "lines", "node", "task", "truncated"]);
    assert_eq!((document["task"].as_u64(), document["attempt"].as_u64()), (Some(echo), Some(1)));
    assert_eq!((document["ended"].as_bool(), document["truncated"].as_bool()), (Some(true), Some(false)));
    let line = &document["lines"][0];
    assert_eq!((line["seq"].as_u64(), line["level"].as_str()), (Some(0), Some("info")));
    assert!(line["ts_ms"].as_u64().is_some_and(|ms| ms > 1_700_000_000_000), "{line}");
    assert_eq!(line["text"].as_str(), Some(r#"{"a":"x y","b":[1,2]}"#));
    let holder = document["node"].as_u64().expect("a node");

    // `--follow` on a running `sleep`: its line, then exit 0 once it ends.
    let sleep = submit(&spec, 3, "sleep", r#"{"ms": 1500}"#, &[]);
    let id = sleep.to_string();
    let mut follow = Command::new(binary())
        .args(["logs", "--admin", &spec.admin(1).to_string(), "--certs"])
        .arg(spec.certs())
        .args(["--id", &id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run logs --follow");
    let exited = wait_for(WAIT_MAX, || follow.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = follow.kill();
    }
    let output = follow.wait_with_output().expect("its output");
    assert!(exited.is_some_and(|status| status.success()), "{exited:?}: {}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(parts(&lines[0]).2, "sleeping 1500 ms");
    let sleep_state = cli(&spec, 2, &["tasks", "--id", &id, "--json"]);
    assert!(String::from_utf8_lossy(&sleep_state.stdout).contains("succeeded"), "it followed to the end");

    // A restarted node still serves its attempts' logs (from its data dir).
    let other = if holder == 1 { 2 } else { 1 };
    let index = (holder - 1) as usize;
    assert!(nodes[index].terminate().is_some_and(|status| status.success()));
    nodes[index] = start(&spec, holder);
    for via in [holder, other] {
        // Bounded: the restarted node first rejoins and registers again.
        let served = wait_for(WAIT_MAX, || {
            let output = cli(&spec, via, &["logs", "--id", &echo.to_string()]);
            output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
        })
        .expect("served after the restart");
        let lines: Vec<&str> = served.lines().collect();
        assert_eq!(lines.len(), 1, "via {via}: {lines:?}");
        assert_eq!(parts(lines[0]).2, r#"{"a":"x y","b":[1,2]}"#, "via {via} after the restart");
    }

    // Killed -9 and its registration gone: unavailable from the others, naming the node.
    nodes[index].kill();
    wait_for(WAIT_MAX, || (!node_registered(&spec, other, holder)?).then_some(()))
        .expect("the killed node's registration goes");
    let output = cli(&spec, other, &["logs", "--id", &echo.to_string()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty());
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("unavailable") && stderr.contains(&format!("node {holder}")), "{stderr}");
}

#[test]
fn a_joined_workers_attempt_logs_are_read_through_a_member() {
    let _exclusive = exclusive();
    let spec = ClusterSpec::new("logsjoin", 1);
    let _member = start(&spec, 1);
    wait_until_ready(&spec, 1, 1);
    let _worker = join_worker(&spec, 2);
    wait_until_ready(&spec, 1, 2);
    let echo = submit(&spec, 1, "echo", r#"{"value": "from the worker"}"#, &["--affinity", "2"]);
    wait_done(&spec, 1, &[echo]);
    let json = logs(&spec, 1, echo, &["--json"]);
    let document: serde_json::Value = serde_json::from_str(&json[0]).expect("JSON");
    assert_eq!(document["node"].as_u64(), Some(2), "ran on the joined worker");
    assert_eq!(document["lines"][0]["text"].as_str(), Some(r#""from the worker""#));
    assert_eq!(document["ended"].as_bool(), Some(true));
}

/// Starts node `id` as a worker joined through node 1 (see `process_grid.rs`).
fn join_worker(spec: &ClusterSpec, id: u64) -> NodeProcess {
    support::issue_certs(&spec.certs(), &id.to_string());
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_tcp_port()));
    let log = spec.dir.path().join(format!("node-{id}.log"));
    let child = Command::new(binary())
        .args(["node", "--id", &id.to_string(), "--join", &spec.admin(1).to_string(), "--certs"])
        .arg(spec.certs())
        .arg("--data-dir")
        .arg(spec.dir.path().join(format!("data-{id}")))
        .args(["--admin", &admin.to_string(), "--slots", "2"])
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(spec.dir.path().join(format!("node-{id}.err"))).expect("log"))
        .spawn()
        .expect("spawn a joining worker");
    NodeProcess::adopt(id, admin, child, log)
}
