//! What one grid request may cost, with real processes on 127.0.0.1 (one 3-node cluster for the
//! whole file): submissions are sized before anything is copied (issue 9, finding 2), a follower's
//! waits cannot be filled with unknown ids (3), listings are paged by bytes (6), the table's bytes are
//! counted alike on every node and stay within their budgets (8), and a task no node can run is shown
//! unplaceable and failed after `--unplaceable-timeout-ms`.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use gridkeeper::api::grid::{SubmitRequest, TasksQuery};
use gridkeeper::api::ErrorCode;
use gridkeeper::client::{Client, ClientError};
use gridkeeper::grid::table::{HISTORY_BYTES_MAX_DEFAULT, PENDING_INPUT_BYTES_MAX_DEFAULT};
use gridkeeper::grid::task::TaskState;
use gridkeeper::limits::IDS_MAX;
use gridkeeper::limits::QUERY_RESPONSE_BYTES_MAX;
use support::{admin_get, binary, metric_sum, status, wait_for, ClusterSpec, NodeProcess, WAIT_MAX};

/// Long enough that the test sees the task pending first, short enough to see it fail.
const UNPLACEABLE_TIMEOUT_MS: &str = "15000";

struct Cluster {
    spec: ClusterSpec,
    follower: u64,
    runtime: tokio::runtime::Runtime,
    client: Client,
    _nodes: Vec<NodeProcess>,
}

impl Cluster {
    fn start() -> Cluster {
        let spec = ClusterSpec::new("grid-bounds", 3);
        let extra = ["--slots", "2", "--unplaceable-timeout-ms", UNPLACEABLE_TIMEOUT_MS];
        let nodes = spec.ids.iter().map(|&id| spec.start_with_args(id, &spec.certs(), &extra)).collect();
        let leader = wait_for(WAIT_MAX, || {
            let view = status(spec.admin(1))?;
            let workers = view.members.iter().filter(|member| member.slots.is_some()).count();
            view.leader.filter(|_| workers == 3)
        })
        .expect("a leader and every worker registered");
        let follower = [1, 2, 3].into_iter().find(|&id| id != leader).expect("a follower");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = runtime.block_on(Client::connect_with_certs(spec.admin(follower), &spec.certs())).expect("client");
        Cluster { spec, follower, runtime, client, _nodes: nodes }
    }

    /// Runs the CLI against the follower; returns (success, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let admin = self.spec.admin(self.follower).to_string();
        let mut command = Command::new(binary());
        command.arg(args[0]).args(["--admin", &admin]).args(&args[1..]).arg("--certs").arg(self.spec.certs());
        let output = command.output().expect("run the CLI");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }

    fn submit(&self, task: &str, value: Option<String>, count: usize) -> Result<Vec<u64>, ClientError> {
        let input = value.map(|value| serde_json::json!({ "value": value }));
        let request = SubmitRequest { task: Some(task.into()), input, count: Some(count), ..SubmitRequest::default() };
        self.runtime.block_on(self.client.submit(&request))
    }

    fn wait_done(&self, ids: &[u64]) {
        wait_for(WAIT_MAX, || self.runtime.block_on(self.client.wait_tasks(ids, 1_000)).ok()?.done.then_some(()))
            .expect("every task ends");
    }
}

/// Resident memory of the node process serving `admin`, in bytes (Linux).
fn rss_bytes(admin: std::net::SocketAddr) -> u64 {
    let needle = admin.to_string();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("node") && cmdline.split('\0').any(|arg| arg == needle) {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let kib = status.lines().find_map(|line| line.strip_prefix("VmRSS:")).unwrap_or("0 kB");
            return kib.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0) * 1024;
        }
    }
    panic!("no node process serves {admin}");
}

#[test]
fn one_request_cannot_exhaust_a_node() {
    let cluster = Cluster::start();
    // Submitted first, so that its timeout runs while the rest of the test does.
    let nobody = cluster.submit("nobody-runs-this", None, 1).expect("accepted")[0];
    let (ok, shown, _) = cluster.cli(&["tasks", "--id", &nobody.to_string(), "--json"]);
    assert!(ok);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["unplaceable"], serde_json::json!(true), "{shown}");
    let counted = wait_for(WAIT_MAX, || {
        let metrics = admin_get(cluster.spec.admin(cluster.follower), "/metrics")?;
        (metric_sum(&metrics, "gridkeeper_grid_unplaceable_tasks ") >= 1.0).then_some(())
    });
    assert!(counted.is_some(), "the unplaceable task is counted");

    submissions_are_sized_before_they_are_copied(&cluster);
    a_followers_waits_cannot_be_filled(&cluster);
    listings_are_paged_by_bytes(&cluster);
    table_bytes_are_counted_alike_and_bounded(&cluster);

    let failed = wait_for(WAIT_MAX, || {
        let task =
            cluster.runtime.block_on(cluster.client.tasks(&TasksQuery { id: Some(nobody), ..Default::default() }));
        task.ok()?.pop().filter(|task| task.state == TaskState::Failed)
    })
    .expect("the unplaceable task fails after the timeout");
    let error = failed.attempts.last().and_then(|attempt| attempt.error.clone()).unwrap_or_default();
    assert!(error.contains("unplaceable"), "{error}");
}

/// Finding 2: 100 kB × 1000 through the CLI, 512 kB × 200 over HTTP to a follower, are refused naming
/// the limit, without the follower's memory growing by the copies; a submission within it is taken.
fn submissions_are_sized_before_they_are_copied(cluster: &Cluster) {
    let value = format!(r#"{{"value":"{}"}}"#, "x".repeat(100_000));
    let (ok, _, stderr) = cluster.cli(&["submit", "--task", "echo", "--input", &value, "--count", "1000"]);
    assert!(!ok && stderr.contains("SUBMIT_BYTES_MAX"), "{stderr}");

    let before = rss_bytes(cluster.spec.admin(cluster.follower));
    let refused = cluster.submit("echo", Some("y".repeat(512 << 10)), 200);
    let Err(ClientError::Api(error)) = refused else { panic!("accepted: {refused:?}") };
    let message = error.message;
    assert_eq!(error.code, ErrorCode::TooLarge, "{message}");
    assert!(message.contains("SUBMIT_BYTES_MAX"), "{message}");
    let grown = rss_bytes(cluster.spec.admin(cluster.follower)).saturating_sub(before);
    assert!(grown < 64 << 20, "a refused 100 MB submission grew the follower by {} MiB", grown >> 20);

    let ids = cluster.submit("echo", Some("z".repeat(256 << 10)), 4).expect("1 MiB in all is within the bound");
    cluster.wait_done(&ids);
}

/// Finding 3: twelve waits of 100,000 unknown ids at a follower are answered at once and hold nothing,
/// so a normal `submit --wait` there still works; more ids than a submission returns are refused.
fn a_followers_waits_cannot_be_filled(cluster: &Cluster) {
    for call in 0..12u64 {
        let ids: Vec<u64> = (0..100_000).map(|i| 1_000_000_000 + call * 100_000 + i).collect();
        let answer = cluster.runtime.block_on(cluster.client.wait_tasks(&ids, 1_000)).expect("answered");
        assert_eq!(answer.states.get("unknown"), Some(&100_000), "call {call}: {:?}", answer.states);
    }
    let (ok, stdout, stderr) = cluster.cli(&["submit", "--task", "noop", "--count", "5", "--wait", "--json"]);
    assert!(ok, "submit --wait on the follower: {stderr}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(printed["states"], serde_json::json!({ "succeeded": 5 }), "{printed}");
    let too_many: Vec<u64> = (0..=IDS_MAX as u64).collect();
    let refused = cluster.runtime.block_on(cluster.client.wait_tasks(&too_many, 1_000));
    assert!(matches!(refused, Err(ClientError::Api(_))), "{refused:?}");
}

/// Finding 6: 40 results of 200 kB (8 MB as JSON) come back in pages of at most 4 MiB (plus one task),
/// each task once; a listing leaves results out unless asked; `tasks --id N --json` keeps its result.
fn listings_are_paged_by_bytes(cluster: &Cluster) {
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.extend(cluster.submit("echo", Some("r".repeat(200_000)), 10).expect("2 MB per submission"));
    }
    cluster.wait_done(&ids);
    let mut query = TasksQuery { limit: Some(10_000), results: true, ..TasksQuery::default() };
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let page = cluster.runtime.block_on(cluster.client.tasks_page(&query)).expect("a page");
        let bytes = serde_json::to_vec(&page.tasks).expect("JSON").len();
        assert!(bytes <= QUERY_RESPONSE_BYTES_MAX + (1 << 20), "a page of {bytes} bytes");
        seen.extend(page.tasks.iter().map(|task| task.id));
        pages += 1;
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    assert!(pages >= 2, "8 MB of results in one page");
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a task listed twice");
    assert!(ids.iter().all(|id| unique.contains(id)), "a task never listed");

    let (ok, stdout, _) = cluster.cli(&["tasks", "--limit", "5", "--json"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(5));
    assert!(listed["tasks"].as_array().into_iter().flatten().all(|task| task["result"].is_null()));
    let next = listed["next"].as_u64().expect("a cursor");
    let (ok, stdout, _) = cluster.cli(&["tasks", "--limit", "5", "--cursor", &next.to_string(), "--json"]);
    let after: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert!(ok && after["tasks"][0]["id"].as_u64().is_some_and(|id| id < next), "{after}");
    let (ok, stdout, _) = cluster.cli(&["tasks", "--id", &ids[0].to_string(), "--json"]);
    let one: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert!(ok && one["result"]["value"].as_str().is_some_and(|value| value.len() == 200_000), "no result");
}

/// Finding 8: every node, followers included, counts the history's bytes as the same figure, within
/// its budget, and no pending inputs once everything ended.
fn table_bytes_are_counted_alike_and_bounded(cluster: &Cluster) {
    let figures = wait_for(WAIT_MAX, || {
        let mut figures = BTreeSet::new();
        for id in 1..=3 {
            let metrics = admin_get(cluster.spec.admin(id), "/metrics")?;
            let history = metric_sum(&metrics, "gridkeeper_grid_history_bytes ");
            let pending = metric_sum(&metrics, "gridkeeper_grid_pending_input_bytes ");
            // The unplaceable task's input (`{}`) is the only pending input.
            figures.insert((history as u64, pending as u64));
        }
        // The gauges are refreshed about once a second on each node: wait until all three have
        // caught up with the table after everything ended (history full, no input pending).
        (figures.len() == 1)
            .then_some(figures)
            .filter(|set| set.iter().all(|(history, pending)| *history > 8_000_000 && *pending < 100))
    })
    .expect("every node counts the same history bytes, and no pending input once everything ended");
    let (history, pending) = figures.into_iter().next().expect("one figure");
    assert!(history <= HISTORY_BYTES_MAX_DEFAULT as u64, "{history}");
    assert!(pending <= PENDING_INPUT_BYTES_MAX_DEFAULT as u64 && pending < 100, "{pending}");
}
