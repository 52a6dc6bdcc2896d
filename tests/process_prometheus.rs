//! The dashboard and the alert rules against real nodes and a real Prometheus.
//!
//! - Every metric named by an expression of `deploy/grafana/gridkeeper.json` or
//!   `deploy/prometheus/alerts.yml` is exported by a live node of a 3-node cluster that ran tasks
//!   (succeeded, failed, retried, of an unregistered kind), registry writes and reads, a session that
//!   expired, a ZooKeeper request and a node loss; every histogram has real buckets (none is a
//!   summary); the `kind` and `priority` labels take only their bounded values.
//! - Debian's Prometheus (`/usr/bin/prometheus`), configured from `deploy/prometheus/prometheus.yml`
//!   (HTTPS with the cluster CA and a client certificate of role `metrics`) and loading
//!   `deploy/prometheus/alerts.yml`, scrapes the three nodes, evaluates every dashboard query and
//!   every rule without error, and fires `GridkeeperNodeDown` for the node this test kills.
//!
//! Prometheus is installed by the test (`ensure_apt`), never skipped, and killed (its whole process
//! group) when the test ends, also on a panic.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gridkeeper::api::grid::TasksQuery;
use gridkeeper::client::{Access, Client};
use gridkeeper::grid::task::AttemptState;
use support::zk_tools::{ensure_apt, kill_group, repo_dir};
use support::{admin_get_with, binary, free_tcp_port, status, wait_for, ClusterSpec, NodeProcess, TempDir, WAIT_MAX};

/// One cluster at a time: each test runs three node processes (and one Prometheus) on a 2-core machine.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Longest the test waits for Prometheus to scrape, evaluate or fire something.
const PROMETHEUS_WAIT_MAX: Duration = Duration::from_secs(90);

/// The kinds the `gridkeeper node` binary registers (`runtime/worker/builtin.rs`).
const BUILTIN_KINDS: [&str; 5] = ["noop", "echo", "sleep", "spin", "fail"];

// ---------------------------------------------------------------------------------------------
// The expressions of the deployment files and the names they use.

/// Every query of the dashboard: (panel title, expr).
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_dir().join("deploy/grafana/gridkeeper.json")).expect("dashboard");
    let model: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for panel in model["panels"].as_array().expect("panels") {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    let mut exprs = Vec::new();
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every query has an expr");
            exprs.push((panel["title"].as_str().unwrap_or_default().to_string(), expr.to_string()));
        }
    }
    assert!(exprs.len() >= 20, "only {} dashboard queries", exprs.len());
    exprs
}

/// Every rule of alerts.yml: (alert, expr). Reads the file's own layout (a plain or quoted scalar
/// after `expr:`, or a `>`/`|` block indented below it) and fails on anything else, so a rule cannot
/// slip past; the count is checked against the `- alert:` lines and, in the Prometheus test,
/// against the rules Prometheus loaded.
fn alert_exprs(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = Vec::new();
    let mut alert = None;
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            alert = Some(name.trim().to_string());
        }
        let Some(rest) = trimmed.strip_prefix("expr:") else { continue };
        let name = alert.take().unwrap_or_else(|| panic!("line {}: an expr before its alert", index + 1));
        let rest = rest.trim();
        let expr = if rest.starts_with('>') || rest.starts_with('|') {
            let indent = line.len() - trimmed.len();
            let block: Vec<&str> = lines[index + 1..]
                .iter()
                .take_while(|next| next.trim().is_empty() || next.len() - next.trim_start().len() > indent)
                .map(|next| next.trim())
                .collect();
            block.join(" ")
        } else {
            rest.trim_matches(|c| c == '"' || c == '\'').to_string()
        };
        assert!(!expr.trim().is_empty(), "{name}: empty expr");
        rules.push((name, expr));
    }
    let declared = lines.iter().filter(|line| line.trim_start().starts_with("- alert:")).count();
    assert_eq!(rules.len(), declared, "every alert has one expr");
    rules
}

fn alerts_text() -> String {
    std::fs::read_to_string(repo_dir().join("deploy/prometheus/alerts.yml")).expect("alerts.yml")
}

/// The metric names an expression selects: every identifier outside strings and label matchers
/// that names a gridkeeper or process metric (functions, keywords, label names and Prometheus's own
/// `up` are not exported by a node).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    let mut braces = 0usize;
    while let Some((start, c)) = chars.next() {
        match c {
            '"' | '\'' => {
                // Skip the string, escapes included.
                while let Some((_, next)) = chars.next() {
                    if next == '\\' {
                        chars.next();
                    } else if next == c {
                        break;
                    }
                }
            }
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let mut end = start + c.len_utf8();
                while let Some(&(at, next)) = chars.peek() {
                    if next.is_ascii_alphanumeric() || next == '_' || next == ':' {
                        end = at + next.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = &expr[start..end];
                if braces == 0 && (word.starts_with("gridkeeper_") || word.starts_with("process_")) {
                    names.insert(word.to_string());
                }
            }
            _ => {}
        }
    }
    names
}

#[test]
fn metric_names_are_parsed_out_of_promql() {
    let expr = r#"histogram_quantile(0.99, sum by (instance, le) (rate(gridkeeper_raft_fsync_seconds_bucket{job=~"$job", note="gridkeeper_not_a_metric"}[5m]))) / on (instance) process_max_fds and up == 0"#;
    let want: BTreeSet<String> =
        ["gridkeeper_raft_fsync_seconds_bucket", "process_max_fds"].iter().map(|name| name.to_string()).collect();
    assert_eq!(metric_names(expr), want);
    let rules = alert_exprs(
        "groups:\n  - rules:\n      - alert: A\n        expr: up == 0\n      - alert: B\n        expr: >\n          rate(gridkeeper_x_total[5m])\n            > 1\n        for: 1m\n",
    );
    assert_eq!(
        rules,
        [("A".to_string(), "up == 0".to_string()), ("B".to_string(), "rate(gridkeeper_x_total[5m]) > 1".to_string())]
    );
}

// ---------------------------------------------------------------------------------------------
// A scrape, parsed.

/// A `/metrics` body: sample names with their label sets and values, and each family's type.
struct Scrape {
    samples: BTreeMap<String, Vec<(String, f64)>>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_string(), kind.trim().to_string());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.find('{') {
                Some(at) => (&series[..at], &series[at..]),
                None => (series, ""),
            };
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a value in {line:?}"));
            samples.entry(name.to_string()).or_default().push((labels.to_string(), value));
        }
        Scrape { samples, types }
    }

    /// The values of `name` whose labels contain `matcher` (`""`: all).
    fn sum(&self, name: &str, matcher: &str) -> f64 {
        self.samples
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(labels, _)| labels.contains(matcher))
            .map(|(_, v)| v)
            .sum()
    }

    /// The values label `label` takes on `name`.
    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        let key = format!("{label}=\"");
        self.samples
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|(labels, _)| {
                let start = labels.find(&key)? + key.len();
                Some(labels[start..start + labels[start..].find('"')?].to_string())
            })
            .collect()
    }
}

/// GET `/metrics` with the client certificate of role `metrics`, as Prometheus scrapes.
fn scrape(spec: &ClusterSpec, id: u64) -> Option<Scrape> {
    let access = metrics_access(spec);
    admin_get_with(spec.admin(id), "/metrics", &access).map(|text| Scrape::parse(&text))
}

fn metrics_access(spec: &ClusterSpec) -> Access {
    let certs = spec.certs();
    Access::with_certificate(&certs, &certs.join("client-prometheus.pem"), &certs.join("client-prometheus.key"))
        .expect("the metrics client certificate")
}

/// `gridkeeper certs --client prometheus --role metrics` into the cluster's certificate directory.
fn issue_metrics_certificate(spec: &ClusterSpec) {
    let output = Command::new(binary())
        .args(["certs", "--out"])
        .arg(spec.certs())
        .args(["--client", "prometheus", "--role", "metrics"])
        .output()
        .expect("run certs");
    assert!(output.status.success(), "certs --client failed: {}", String::from_utf8_lossy(&output.stderr));
}

// ---------------------------------------------------------------------------------------------
// The cluster and what it is made to do.

fn start_cluster(name: &str) -> (ClusterSpec, Vec<NodeProcess>) {
    let spec = ClusterSpec::new(name, 3);
    issue_metrics_certificate(&spec);
    let nodes: Vec<NodeProcess> = spec.ids.iter().map(|&id| spec.start(id)).collect();
    wait_for(WAIT_MAX, || {
        let view = status(spec.admin(1))?;
        view.leader?;
        (view.members.iter().filter(|member| member.slots.is_some()).count() == 3).then_some(())
    })
    .expect("a leader and three registered workers");
    (spec, nodes)
}

/// `gridkeeper submit`: the ids it printed.
fn submit(spec: &ClusterSpec, task: &str, input: &str, count: usize, extra: &[&str]) -> Vec<u64> {
    let output = Command::new(binary())
        .args(["submit", "--admin", &spec.admin(1).to_string(), "--certs"])
        .arg(spec.certs())
        .args(["--task", task, "--input", input, "--count", &count.to_string(), "--json"])
        .args(extra)
        .output()
        .expect("run submit");
    assert!(output.status.success(), "submit failed: {}", String::from_utf8_lossy(&output.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("submit prints JSON");
    serde_json::from_value(printed["ids"].clone()).expect("ids")
}

fn wait_done(client: &Client, runtime: &tokio::runtime::Runtime, ids: &[u64]) -> BTreeMap<String, usize> {
    wait_for(WAIT_MAX, || {
        let answer = runtime.block_on(client.wait_tasks(ids, 1_000)).ok()?;
        answer.done.then_some(answer.states)
    })
    .expect("the tasks end")
}

/// Tasks that succeed, fail after retries, succeed after a retry, and one of a kind no node runs
/// (cancelled); registry writes and reads; a watch; a session left to expire; a ZooKeeper request.
fn run_workload(spec: &ClusterSpec, client: &Client, runtime: &tokio::runtime::Runtime) {
    let ok = submit(spec, "echo", r#"{"hello": 1}"#, 5, &["--priority", "3"]);
    let failing = submit(spec, "fail", r#"{"times": 4}"#, 2, &[]);
    let retried = submit(spec, "fail", r#"{"times": 1}"#, 2, &["--priority=-2"]);
    let unknown = submit(spec, "no-such-kind", "{}", 1, &[]);
    assert_eq!(wait_done(client, runtime, &ok), BTreeMap::from([("succeeded".to_string(), 5)]));
    assert_eq!(wait_done(client, runtime, &failing), BTreeMap::from([("failed".to_string(), 2)]));
    assert_eq!(wait_done(client, runtime, &retried), BTreeMap::from([("succeeded".to_string(), 2)]));
    assert_eq!(runtime.block_on(client.cancel(&unknown)).expect("cancel").applied, 1);
    assert_eq!(wait_done(client, runtime, &unknown), BTreeMap::from([("cancelled".to_string(), 1)]));

    use gridkeeper::consensus::Consistency;
    use gridkeeper::registry::{CreateMode, WatchKind};
    runtime.block_on(async {
        client.create("/dash", "0", CreateMode::Persistent, None).await.expect("create");
        let watch = client.watch("/dash", WatchKind::Data, None).await.expect("watch");
        client.set("/dash", "1", None).await.expect("set");
        client.get("/dash", Consistency::Linearizable).await.expect("get");
        drop(watch);
        // A session nobody keeps alive: it expires after its timeout.
        let session = client.open_session(1_000).await.expect("session");
        drop(session);
        let zk = zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&spec.zk(1).to_string())
            .await
            .expect("a ZooKeeper client connects");
        zk.list_children("/").await.expect("a ZooKeeper read");
    });
}

/// Sleeps spread over the cluster, then node 3 killed while it runs some: its attempts are lost and
/// queued again (reassignments). Returns the killed node's admin address.
fn lose_a_node_with_work(
    spec: &ClusterSpec,
    nodes: &mut [NodeProcess],
    client: &Client,
    runtime: &tokio::runtime::Runtime,
) -> Vec<u64> {
    let ids = submit(spec, "sleep", r#"{"ms": 1500}"#, 12, &[]);
    wait_for(WAIT_MAX, || {
        let tasks = runtime.block_on(client.tasks(&TasksQuery { limit: Some(100), ..TasksQuery::default() })).ok()?;
        tasks
            .iter()
            .filter(|task| ids.contains(&task.id))
            .any(|task| task.attempts.iter().any(|a| a.node == 3 && a.state == AttemptState::Running))
            .then_some(())
    })
    .expect("node 3 runs one of the sleeps");
    nodes[2].kill();
    ids
}

// ---------------------------------------------------------------------------------------------
// The live scrape.

#[test]
fn every_metric_the_dashboard_and_the_alerts_name_is_exported_by_a_live_node() {
    let _exclusive = exclusive();
    let (spec, mut nodes) = start_cluster("prom-scrape");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = runtime
        .block_on(Client::connect_any(&[spec.admin(1), spec.admin(2), spec.admin(3)], spec.access()))
        .expect("client");

    // Without a credential /metrics is refused (no --metrics-public); with the metrics role it is served.
    let anonymous = Access::ca_only(&spec.certs()).expect("ca");
    assert!(admin_get_with(spec.admin(1), "/metrics", &anonymous).is_none(), "/metrics needs a credential");

    run_workload(&spec, &client, &runtime);
    let sleeps = lose_a_node_with_work(&spec, &mut nodes, &client, &runtime);
    wait_done(&client, &runtime, &sleeps);

    // Counters counted at apply (and the session's expiry) reach node 1 as it applies; gauges on its
    // next metrics tick.
    let scrape = wait_for(WAIT_MAX, || {
        let scrape = scrape(&spec, 1)?;
        let ready = scrape.sum("gridkeeper_grid_reassignments_total", "") >= 1.0
            && scrape.sum("gridkeeper_registry_sessions_expired_total", "") >= 2.0
            && scrape.sum("gridkeeper_grid_completed_total", "outcome=\"succeeded\"") >= 19.0;
        ready.then_some(scrape)
    })
    .expect("node 1 counts the reassignments, both expiries (the session and node 3's) and the successes");

    // Every name every expression uses is exported; a histogram's series come from a histogram.
    let mut referenced: BTreeMap<String, String> = BTreeMap::new();
    for (title, expr) in dashboard_exprs() {
        for name in metric_names(&expr) {
            referenced.entry(name).or_insert_with(|| format!("dashboard panel {title:?}"));
        }
    }
    for (alert, expr) in alert_exprs(&alerts_text()) {
        for name in metric_names(&expr) {
            referenced.entry(name).or_insert_with(|| format!("alert {alert}"));
        }
    }
    assert!(referenced.len() >= 30, "only {} names referenced: {referenced:?}", referenced.len());
    let mut missing = Vec::new();
    for (name, by) in &referenced {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix));
        let histogram = base.is_some_and(|base| scrape.types.get(base).is_some_and(|kind| kind == "histogram"));
        if !scrape.samples.contains_key(name) || (name.ends_with("_bucket") && !histogram) {
            missing.push(format!("{name} (used by {by})"));
        }
    }
    assert!(
        missing.is_empty(),
        "named by the deployment files but not exported by a live node:\n{}",
        missing.join("\n")
    );

    // Real buckets: every histogram has finite `le` bounds, and nothing is a summary.
    let summaries: Vec<&String> =
        scrape.types.iter().filter(|(_, kind)| *kind == "summary").map(|(name, _)| name).collect();
    assert!(summaries.is_empty(), "histograms without configured buckets render as summaries: {summaries:?}");
    for (name, _) in scrape.types.iter().filter(|(_, kind)| *kind == "histogram") {
        let bounds = scrape.label_values(&format!("{name}_bucket"), "le");
        assert!(bounds.len() >= 5 && bounds.contains("+Inf"), "{name} has buckets {bounds:?}");
    }
    let fsync = scrape.label_values("gridkeeper_raft_fsync_seconds_bucket", "le");
    assert!(fsync.contains("0.001") && fsync.contains("0.1"), "fsync buckets {fsync:?}");
    let run = scrape.label_values("gridkeeper_grid_run_seconds_bucket", "le");
    assert!(run.contains("3600"), "task run buckets reach hours: {run:?}");
    assert!(scrape.sum("gridkeeper_raft_fsync_seconds_count", "") >= 1.0, "fsyncs were timed");

    // Bounded labels: priority bands only, all three always set; kinds only registered ones or `other`.
    let bands = scrape.label_values("gridkeeper_grid_queue_depth", "priority");
    assert_eq!(bands, ["high", "low", "normal"].iter().map(|band| band.to_string()).collect());
    let mut allowed: BTreeSet<String> = BUILTIN_KINDS.iter().map(|kind| kind.to_string()).collect();
    allowed.insert("other".to_string());
    for name in
        ["gridkeeper_grid_completed_total", "gridkeeper_grid_wait_seconds_bucket", "gridkeeper_grid_assigned_total"]
    {
        let kinds = scrape.label_values(name, "kind");
        assert!(kinds.is_subset(&allowed), "{name} kinds {kinds:?}");
    }
    assert_eq!(
        scrape.sum("gridkeeper_grid_completed_total", "kind=\"other\""),
        1.0,
        "the unregistered kind is `other`"
    );
    assert!(scrape.sum("gridkeeper_grid_completed_total", "outcome=\"failed\",kind=\"fail\"") >= 2.0);
    assert!(scrape.sum("gridkeeper_grid_completed_total", "kind=\"echo\"") >= 5.0);
    assert!(scrape.sum("gridkeeper_grid_retries_total", "") >= 2.0 * 2.0 + 2.0, "retries counted");
    assert!(scrape.sum("gridkeeper_registry_writes_total", "op=\"create\"") >= 1.0);
    assert!(scrape.sum("gridkeeper_registry_reads_total", "consistency=\"linearizable\"") >= 1.0);
    assert!(scrape.sum("gridkeeper_zk_requests_total", "") >= 1.0);

    // Process metrics and the build.
    assert_eq!(scrape.types.get("process_cpu_seconds_total").map(String::as_str), Some("counter"));
    assert!(scrape.sum("process_resident_memory_bytes", "") > 0.0);
    assert!(scrape.sum("process_open_fds", "") >= 1.0 && scrape.sum("process_max_fds", "") >= 1.0);
    assert!(scrape.sum("process_start_time_seconds", "") > 1.6e9);
    assert_eq!(scrape.sum("gridkeeper_build_info", &format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), 1.0);
    let leads = scrape.sum("gridkeeper_raft_is_leader", "");
    assert!(leads == 0.0 || leads == 1.0, "gridkeeper_raft_is_leader {leads}");
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus.

/// A Prometheus server process, killed with its process group when dropped (a panic included).
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `/usr/bin/prometheus` with `config` on a free loopback port, storing into a fresh
    /// temp dir, and waits until it answers.
    fn start(dir: TempDir, config: &Path) -> Prometheus {
        use std::os::unix::process::CommandExt;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start /usr/bin/prometheus");
        let prometheus = Prometheus { child, addr, dir };
        wait_for(WAIT_MAX, || prometheus.get("/-/ready"))
            .unwrap_or_else(|| panic!("prometheus never ready:\n{}", prometheus.log()));
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Option<String> {
        admin_get_with(self.addr, path, &Access::plaintext())
    }

    /// `GET /api/v1/<path>`'s `data`, if the answer is a success.
    fn api(&self, path: &str) -> Option<serde_json::Value> {
        let answer: serde_json::Value = serde_json::from_str(&self.get(&format!("/api/v1/{path}"))?).ok()?;
        (answer["status"] == "success").then(|| answer["data"].clone())
    }

    /// The query's result, or its error.
    fn query(&self, expr: &str) -> Result<serde_json::Value, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (_, body) = support::http(&Access::plaintext(), self.addr, "GET", &path, "").ok_or("no answer")?;
        let answer: serde_json::Value = serde_json::from_str(&body).map_err(|error| error.to_string())?;
        if answer["status"] == "success" {
            Ok(answer["data"]["result"].clone())
        } else {
            Err(body)
        }
    }

    /// The alerts with `name`: (instance, state).
    fn alerts(&self, name: &str) -> Vec<(String, String)> {
        let Some(data) = self.api("alerts") else { return Vec::new() };
        data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|alert| alert["labels"]["alertname"] == name)
            .map(|alert| {
                let instance = alert["labels"]["instance"].as_str().unwrap_or_default().to_string();
                (instance, alert["state"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Replaces `from` with `to` in `text`, which must contain it: a deployment file that drifted from
/// what this test rewrites fails here rather than testing something else.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "expected {from:?} in the deployment file:\n{text}");
    text.replace(from, to)
}

/// `deploy/prometheus/prometheus.yml` and `alerts.yml` pointed at this cluster and sped up: the
/// scrape and evaluation intervals become 1 s (with a 1 s scrape timeout, which may not exceed the
/// interval), every `for:` becomes 2 s, the certificate paths the test's, the targets the nodes'.
/// Nothing else changes: TLS with the CA and the `metrics` client certificate is the file's own.
fn prometheus_config(spec: &ClusterSpec, dir: &Path) -> std::path::PathBuf {
    let deploy = repo_dir().join("deploy/prometheus");
    let mut config = std::fs::read_to_string(deploy.join("prometheus.yml")).expect("prometheus.yml");
    config = replaced(&config, "scrape_interval: 15s", "scrape_interval: 1s\n  scrape_timeout: 1s");
    config = replaced(&config, "evaluation_interval: 15s", "evaluation_interval: 1s");
    config = replaced(&config, "/etc/prometheus/gridkeeper/", &format!("{}/", spec.certs().display()));
    for id in 1..=3u64 {
        config = replaced(&config, &format!("gk{id}.example.org:9100"), &spec.admin(id).to_string());
    }
    std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
    let alerts = alerts_text();
    let quick: Vec<String> = alerts
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 2s", &line[..line.len() - line.trim_start().len()]),
            None => line.to_string(),
        })
        .collect();
    assert!(quick.iter().filter(|line| line.trim() == "for: 2s").count() >= 7, "every rule has a for:");
    std::fs::write(dir.join("alerts.yml"), quick.join("\n") + "\n").expect("write alerts.yml");
    dir.join("prometheus.yml")
}

#[test]
fn prometheus_scrapes_the_nodes_over_tls_evaluates_every_query_and_fires_node_down_for_a_killed_node() {
    ensure_apt("prometheus-apt.installed", &["prometheus"]).unwrap_or_else(|error| panic!("{error}"));
    let _exclusive = exclusive();
    let (spec, mut nodes) = start_cluster("prom-alerts");
    let dir = TempDir::new("prometheus");
    let config = prometheus_config(&spec, dir.path());
    let prometheus = Prometheus::start(dir, &config);

    // All three targets are scraped over HTTPS with the client certificate.
    let targets = wait_for(PROMETHEUS_WAIT_MAX, || {
        let data = prometheus.api("targets")?;
        let active = data["activeTargets"].as_array()?.clone();
        (active.len() == 3 && active.iter().all(|target| target["health"] == "up")).then_some(active)
    })
    .unwrap_or_else(|| {
        panic!("the three nodes are not all scraped:\n{:?}\n{}", prometheus.api("targets"), prometheus.log())
    });
    assert!(targets.iter().all(|target| target["scrapeUrl"].as_str().is_some_and(|url| url.starts_with("https://"))));

    // Every rule of alerts.yml is loaded and evaluates without error.
    let rules = alert_exprs(&alerts_text());
    let loaded = wait_for(PROMETHEUS_WAIT_MAX, || {
        let data = prometheus.api("rules")?;
        let rules: Vec<serde_json::Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        rules.iter().all(|rule| rule["health"] == "ok").then_some(rules)
    })
    .unwrap_or_else(|| panic!("rules not all healthy: {:?}", prometheus.api("rules")));
    assert_eq!(loaded.len(), rules.len(), "Prometheus loaded every rule of alerts.yml");

    // Every dashboard query evaluates (its Grafana variables given values).
    let values = [("$__rate_interval", "1m"), ("$job", "gridkeeper"), ("$instance", ".*")];
    for (title, expr) in dashboard_exprs() {
        let expr = values.iter().fold(expr, |expr, (variable, value)| expr.replace(variable, value));
        assert!(!expr.contains('$'), "{title}: a variable the test does not know: {expr}");
        if let Err(error) = prometheus.query(&expr) {
            panic!("{title}: Prometheus refuses {expr}: {error}");
        }
    }
    // The cluster's basics through Prometheus: three nodes up, one leader.
    let up = wait_for(PROMETHEUS_WAIT_MAX, || {
        let result = prometheus.query(r#"sum(gridkeeper_raft_is_leader{job="gridkeeper"})"#).ok()?;
        (result[0]["value"][1] == "1").then_some(())
    });
    assert!(up.is_some(), "Prometheus sees exactly one leader");
    assert!(prometheus.alerts("GridkeeperNodeDown").is_empty(), "no node is down yet");

    // Kill node 3: its scrapes fail, and GridkeeperNodeDown fires for it (and only for it).
    let victim = spec.admin(3).to_string();
    nodes[2].kill();
    let fired = wait_for(PROMETHEUS_WAIT_MAX, || {
        let alerts = prometheus.alerts("GridkeeperNodeDown");
        alerts.iter().any(|(instance, state)| *instance == victim && state == "firing").then_some(alerts)
    })
    .unwrap_or_else(|| panic!("GridkeeperNodeDown never fired for {victim}: {:?}", prometheus.api("alerts")));
    assert!(fired.iter().all(|(instance, _)| *instance == victim), "only the killed node is down: {fired:?}");
    drop(prometheus);
}
