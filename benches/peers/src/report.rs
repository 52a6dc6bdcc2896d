//! Results: one JSON line per measurement (the schema `ray_bench.py` writes too), and the Markdown
//! table with the ratio of gridkeeper to the best peer and of gridkeeper through its ZooKeeper
//! protocol (`gridkeeper-zk`) to ZooKeeper, followed by the goals of issues 5, 12, 16 and 17 as met
//! or missed.
//!
//! The table reads only the results file, so it can be printed again from an old run.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::driver::Tally;

/// Systems in column order: gridkeeper first (over HTTP, then through its ZooKeeper protocol), then
/// its peers.
const SYSTEMS: [&str; 6] = ["gridkeeper", "gridkeeper-zk", "gridkeeper-1node", "zookeeper", "etcd", "ray"];
/// gridkeeper driven through its ZooKeeper listeners with ZooKeeper's client; compared with ZooKeeper.
const GK_ZK: &str = "gridkeeper-zk";
/// The peers a gridkeeper figure is compared with.
const PEERS: [&str; 3] = ["zookeeper", "etcd", "ray"];
/// Client counts of the steady workloads.
const CLIENT_COUNTS: [usize; 3] = [1, 16, 128];
/// Workloads in row order.
const WORKLOADS: [&str; 14] = [
    "write",
    "create",
    "read",
    "read-local",
    "failover",
    "tasks",
    "task-retry",
    "actor-calls",
    "actor-calls-durable",
    "actor-spread",
    "actor-spread-durable",
    "actor-remote",
    "actor-restart",
    "actor-memory",
];

/// One measurement. Fields that do not apply to a workload are `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `gridkeeper`, `gridkeeper-zk`, `gridkeeper-1node`, `zookeeper`, `etcd` or `ray`.
    pub system: String,
    /// `write`, `create`, `read`, `read-local`, `failover`, `tasks`, `task-retry`, or one of the
    /// actor workloads (`actor-calls`, `actor-calls-durable`, `actor-spread`, `actor-spread-durable`,
    /// `actor-remote`, `actor-restart`, `actor-memory`; gridkeeper's from `benches/actors.rs`).
    pub workload: String,
    /// Concurrent clients (1 for the task workloads: one submitter).
    pub clients: usize,
    /// Acknowledged operations (or finished tasks) per second.
    pub ops_per_s: Option<f64>,
    /// Median latency of acknowledged operations.
    pub p50_us: Option<f64>,
    /// 99th percentile latency of acknowledged operations.
    pub p99_us: Option<f64>,
    /// Failed or abandoned operations (tasks that did not succeed).
    #[serde(default)]
    pub errors: u64,
    /// Failover: longest time without an acknowledged write. Task retry: kill to retry start.
    /// Actor restart: kill to the actor answering again, the worst trial.
    pub gap_ms: Option<f64>,
    /// Actor memory: heap bytes per idle activation. Absent from the other records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<f64>,
}

impl Record {
    /// A record of `tally` over a window of `window`.
    pub fn of_tally(system: &str, workload: &str, clients: usize, tally: &mut Tally, window: Duration) -> Record {
        tally.latencies_us.sort_unstable();
        Record {
            system: system.into(),
            workload: workload.into(),
            clients,
            ops_per_s: Some(tally.ops as f64 / window.as_secs_f64()),
            p50_us: percentile(&tally.latencies_us, 0.50),
            p99_us: percentile(&tally.latencies_us, 0.99),
            errors: tally.errors,
            gap_ms: None,
            bytes: None,
        }
    }

    /// One line for the log while the harness runs.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ops) = self.ops_per_s {
            parts.push(format!("{} ops/s", thousands(ops)));
        }
        if let (Some(p50), Some(p99)) = (self.p50_us, self.p99_us) {
            parts.push(format!("p50 {p50:.0} µs, p99 {p99:.0} µs"));
        }
        if let Some(gap) = self.gap_ms {
            parts.push(format!("gap {gap:.0} ms"));
        }
        if let Some(bytes) = self.bytes {
            parts.push(format!("{} bytes", thousands(bytes)));
        }
        parts.push(format!("{} errors", self.errors));
        format!("{} {} {} clients: {}", self.system, self.workload, self.clients, parts.join(", "))
    }
}

/// The `fraction` quantile of `sorted`, in the unit of its items.
fn percentile(sorted: &[u64], fraction: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((sorted.len() as f64 * fraction) as usize).min(last)] as f64)
}

/// Appends records to the results file, one JSON line each, flushed at once so a run cut short
/// keeps what it measured.
pub struct Results {
    file: File,
}

impl Results {
    /// Opens (creating it and its directory if needed) `path` for appending.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn open(path: &Path) -> Result<Results> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        Ok(Results { file })
    }

    /// Writes `record` and logs its summary on stderr.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        eprintln!("peers: {}", record.summary());
        let line = serde_json::to_string(record)?;
        writeln!(self.file, "{line}").context("write a result")?;
        self.file.flush().context("flush results")
    }
}

/// Reads every record of a results file.
///
/// # Errors
/// When the file cannot be read or a line is not a record.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut records = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a result record", path.display(), number + 1))?;
        records.push(record);
    }
    Ok(records)
}

/// Lower is better for these workloads (a time), higher for the others (a rate).
fn is_time(workload: &str) -> bool {
    matches!(workload, "failover" | "task-retry" | "actor-restart")
}

/// The workload whose figure is a size in bytes (lower is better, no peer measures it).
const MEMORY: &str = "actor-memory";

/// The figure a row compares: the rate, the time for failover, task retry and actor restart, or the
/// bytes for actor memory.
fn figure(record: &Record) -> Option<f64> {
    if is_time(&record.workload) {
        record.gap_ms
    } else if record.workload == MEMORY {
        record.bytes
    } else {
        record.ops_per_s
    }
}

/// The records of one row, by system.
type Row<'a> = BTreeMap<&'a str, &'a Record>;

/// Groups records into rows keyed by (workload rank, workload, clients); a later record of the same
/// cell replaces an earlier one.
fn rows(records: &[Record]) -> BTreeMap<(usize, &str, usize), Row<'_>> {
    let mut rows: BTreeMap<(usize, &str, usize), Row<'_>> = BTreeMap::new();
    for record in records {
        let rank = WORKLOADS.iter().position(|&name| name == record.workload).unwrap_or(WORKLOADS.len());
        let row = rows.entry((rank, record.workload.as_str(), record.clients)).or_default();
        row.insert(record.system.as_str(), record);
    }
    rows
}

/// ZooKeeper has no linearizable read, so the `read` row shows its local read, marked, and compares
/// gridkeeper's linearizable read with it: the issue's goal for reads.
fn stand_in<'a>(
    records: &'a [Record],
    row: &Row<'a>,
    workload: &str,
    clients: usize,
    system: &str,
) -> Option<&'a Record> {
    match row.get(system).copied() {
        Some(record) => Some(record),
        None if workload == "read" && system == "zookeeper" => find(records, "zookeeper", "read-local", clients),
        None => None,
    }
}

fn find<'a>(records: &'a [Record], system: &str, workload: &str, clients: usize) -> Option<&'a Record> {
    records
        .iter()
        .rev()
        .find(|record| record.system == system && record.workload == workload && record.clients == clients)
}

/// The best peer figure of a row: the highest rate or the shortest time.
fn best_peer(records: &[Record], row: &Row<'_>, workload: &str, clients: usize) -> Option<f64> {
    let figures = PEERS.iter().filter_map(|peer| stand_in(records, row, workload, clients, peer).and_then(figure));
    if is_time(workload) {
        figures.min_by(f64::total_cmp)
    } else {
        figures.max_by(f64::total_cmp)
    }
}

fn cell(record: &Record, substituted: bool) -> String {
    let Some(value) = figure(record) else { return "—".into() };
    let mut text = if is_time(&record.workload) {
        format!("{} ms", thousands(value))
    } else if record.workload == MEMORY {
        format!("{} B", thousands(value))
    } else {
        thousands(value)
    };
    if substituted {
        text.push('*');
    }
    if record.errors > 0 {
        text.push_str(&format!(" ({} err)", record.errors));
    }
    text
}

fn ratio_text(ours: f64, best: f64) -> String {
    if best > 0.0 {
        format!("{:.2}×", ours / best)
    } else {
        "—".into()
    }
}

/// A system's column heading.
fn label(system: &str) -> &str {
    match system {
        GK_ZK => "gridkeeper (ZooKeeper protocol)",
        other => other,
    }
}

/// The `gridkeeper-zk` figure of a row over ZooKeeper's, both measured in the row (no stand-in:
/// neither has a linearizable read).
fn zk_protocol_ratio(row: &Row<'_>) -> String {
    let figure_of = |system: &str| row.get(system).and_then(|record| figure(record));
    match (figure_of(GK_ZK), figure_of("zookeeper")) {
        (Some(ours), Some(theirs)) => ratio_text(ours, theirs),
        _ => "—".into(),
    }
}

/// The Markdown table of `records`: rates in operations (tasks) per second, times in ms.
pub fn table(records: &[Record]) -> String {
    let mut out = String::new();
    out.push_str("| workload | clients | ");
    out.push_str(&SYSTEMS.map(label).join(" | "));
    out.push_str(" | gridkeeper ÷ best peer | ZooKeeper protocol ÷ ZooKeeper |\n|---|---:|");
    out.push_str(&"---:|".repeat(SYSTEMS.len()));
    out.push_str("---:|---:|\n");
    for ((_, workload, clients), row) in rows(records) {
        let mut cells = Vec::new();
        for system in SYSTEMS {
            let found = stand_in(records, &row, workload, clients, system);
            let substituted = found.is_some() && !row.contains_key(system);
            cells.push(found.map_or_else(|| "—".to_string(), |record| cell(record, substituted)));
        }
        let mut ratios = Vec::new();
        if let Some(best) = best_peer(records, &row, workload, clients) {
            for (system, label) in [("gridkeeper", ""), ("gridkeeper-1node", "1 node ")] {
                if let Some(ours) = row.get(system).and_then(|record| figure(record)) {
                    ratios.push(format!("{label}{}", ratio_text(ours, best)));
                }
            }
        }
        let ratio = if ratios.is_empty() { "—".to_string() } else { ratios.join(", ") };
        let zk_ratio = zk_protocol_ratio(&row);
        out.push_str(&format!("| {workload} | {clients} | {} | {ratio} | {zk_ratio} |\n", cells.join(" | ")));
    }
    out.push_str(
        "\nRates in operations (tasks) per second, higher is better; failover and task-retry in ms, lower is \
         better (a ratio below 1 is gridkeeper ahead). `gridkeeper`: its HTTP client API; `gridkeeper \
         (ZooKeeper protocol)`: the same 3-node cluster through its ZooKeeper listeners, driven with the \
         client ZooKeeper gets, and compared with ZooKeeper alone in the last column. `*` ZooKeeper's local \
         getData, the reference for linearizable reads (ZooKeeper has none). `err`: failed or abandoned \
         requests in the window. Actor rows (issue 17): calls per second, `actor-restart` in ms (worst \
         trial), `actor-memory` in bytes per idle activation; gridkeeper's from `benches/actors.rs` (an \
         in-process 3-node cluster; `-durable`: the built-in durable counter, the others a volatile one).\n",
    );
    out
}

/// A gridkeeper figure over a peer figure, if both were measured.
fn versus(records: &[Record], ours: (&str, &str), theirs: (&str, &str), clients: usize) -> Option<f64> {
    let ours = find(records, ours.0, ours.1, clients).and_then(figure)?;
    let theirs = find(records, theirs.0, theirs.1, clients).and_then(figure)?;
    (theirs > 0.0).then_some(ours / theirs)
}

/// gridkeeper's figure over a peer's at each of 1, 16 and 128 clients.
fn by_count(records: &[Record], ours: (&str, &str), theirs: (&str, &str)) -> Vec<(usize, Option<f64>)> {
    CLIENT_COUNTS.iter().map(|&clients| (clients, versus(records, ours, theirs, clients))).collect()
}

/// How a measured ratio must stand to its goal's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    /// At least the target (`≥`).
    AtLeast,
    /// Strictly above it (`>`): ahead of the peer when the target is 1.
    Above,
}

impl Bound {
    fn symbol(self) -> &'static str {
        match self {
            Bound::AtLeast => "≥",
            Bound::Above => ">",
        }
    }

    fn holds(self, ratio: f64, target: f64) -> bool {
        match self {
            Bound::AtLeast => ratio >= target,
            Bound::Above => ratio > target,
        }
    }
}

/// One goal line: the measured ratios (by client count) against the `target` ratio, at least.
fn rate_goal(title: &str, ratios: &[(usize, Option<f64>)], target: f64) -> String {
    bounded_goal(title, ratios, Bound::AtLeast, target)
}

/// One goal line: the measured ratios (by client count) standing to the `target` ratio as `bound`
/// says, every one of them.
fn bounded_goal(title: &str, ratios: &[(usize, Option<f64>)], bound: Bound, target: f64) -> String {
    let measured: Vec<String> = ratios
        .iter()
        .map(|(clients, ratio)| match ratio {
            Some(ratio) => format!("{clients}: {ratio:.2}×"),
            None => format!("{clients}: not measured"),
        })
        .collect();
    let verdict = if ratios.iter().any(|(_, ratio)| ratio.is_none()) {
        "not measured".to_string()
    } else {
        let worst = ratios.iter().filter_map(|(_, ratio)| *ratio).fold(f64::INFINITY, f64::min);
        if bound.holds(worst, target) {
            "met".to_string()
        } else {
            format!("missed by {:.0}% at worst", (1.0 - worst / target) * 100.0)
        }
    };
    format!("- {title} (goal {} {target}×): {}. **{verdict}**\n", bound.symbol(), measured.join(", "))
}

/// The goals of issue 5 (gridkeeper over HTTP against its peers) and then of issue 12 (gridkeeper
/// through its ZooKeeper protocol against ZooKeeper), each as met, missed (by how much) or not
/// measured.
pub fn goals(records: &[Record]) -> String {
    let mut out = String::from("\nGoals (all from this run):\n");
    out.push_str(&rate_goal(
        "writes at 128 clients vs ZooKeeper",
        &[(128, versus(records, ("gridkeeper", "write"), ("zookeeper", "write"), 128))],
        2.0,
    ));
    out.push_str(&rate_goal(
        "linearizable reads vs ZooKeeper's local reads, clients",
        &by_count(records, ("gridkeeper", "read"), ("zookeeper", "read-local")),
        1.0,
    ));
    out.push_str(&rate_goal(
        "local reads vs ZooKeeper's local reads, clients",
        &by_count(records, ("gridkeeper", "read-local"), ("zookeeper", "read-local")),
        2.0,
    ));
    out.push_str(&failover_goal(records));
    out.push_str(&rate_goal(
        "no-op tasks vs Ray (one node), gridkeeper nodes",
        &[
            (1, versus(records, ("gridkeeper-1node", "tasks"), ("ray", "tasks"), 1)),
            (3, versus(records, ("gridkeeper", "tasks"), ("ray", "tasks"), 1)),
        ],
        25.0,
    ));
    out.push_str(&task_rate_goal(records, "gridkeeper", 3, 50_000.0));
    out.push_str(&task_rate_goal(records, "gridkeeper-1node", 1, 60_000.0));
    out.push_str(&zk_protocol_goals(records));
    out.push_str(&actor_goals(records));
    out
}

/// Issue 17's goals: gridkeeper's actor figures (`benches/actors.rs`) against Ray's actors and
/// against absolute bounds. The ratios to Ray compare the volatile actor (what a Ray actor is); the
/// durable counter's ratio is shown beside it.
fn actor_goals(records: &[Record]) -> String {
    let mut out = String::from("\nGoals of issue 17, grid actors (gridkeeper from benches/actors.rs):\n");
    for (title, clients, target) in [
        ("calls/s to one actor, 1 caller on its host, vs Ray", 1, 20.0),
        ("calls/s to one actor, 16 callers on other nodes, vs Ray", 16, 5.0),
    ] {
        let volatile = versus(records, ("gridkeeper", "actor-calls"), ("ray", "actor-calls"), clients);
        let durable = versus(records, ("gridkeeper", "actor-calls-durable"), ("ray", "actor-calls"), clients);
        let shown =
            |ratio: Option<f64>| ratio.map_or_else(|| "not measured".to_string(), |ratio| format!("{ratio:.2}×"));
        let verdict = match volatile {
            None => "not measured".to_string(),
            Some(ratio) if ratio >= target => "met".to_string(),
            Some(ratio) => format!("missed by {:.0}%", (1.0 - ratio / target) * 100.0),
        };
        out.push_str(&format!(
            "- {title} (goal ≥ {target}×): volatile {}, durable counter {}. **{verdict}**\n",
            shown(volatile),
            shown(durable)
        ));
    }
    let spread = find(records, "gridkeeper", "actor-spread", 64).and_then(figure);
    let spread_durable = find(records, "gridkeeper", "actor-spread-durable", 64).and_then(figure);
    out.push_str(&bound_line(
        "calls/s over 1,000 actors, 64 callers, 3 nodes (goal ≥ 200,000/s)",
        &[
            ("volatile", spread.map(|rate| format!("{}/s", thousands(rate)))),
            ("durable counter", spread_durable.map(|rate| format!("{}/s", thousands(rate)))),
        ],
        spread.map(|rate| (rate >= 200_000.0, format!("missed by {:.0}%", (1.0 - rate / 200_000.0) * 100.0))),
    ));
    let p50 = find(records, "gridkeeper", "actor-remote", 1).and_then(|record| record.p50_us);
    out.push_str(&bound_line(
        "call p50 to a remote actor (goal < 200 µs)",
        &[("gridkeeper", p50.map(|us| format!("{} µs", thousands(us))))],
        p50.map(|us| (us < 200.0, format!("missed by {} µs", thousands(us - 200.0)))),
    ));
    let restart = find(records, "gridkeeper", "actor-restart", 1);
    let ours = restart.filter(|record| record.errors == 0).and_then(|record| record.gap_ms);
    let ray = find(records, "ray", "actor-restart", 1).and_then(|record| record.gap_ms);
    out.push_str(&bound_line(
        "kill of the hosting node → the actor answers again, worst trial (goal < 1 s)",
        &[("gridkeeper", restart.map(shown_trials)), ("Ray (worker kill)", ray.map(|ms| format!("{ms:.0} ms")))],
        ours.map(|ms| (ms < 1_000.0, format!("missed by {:.0} ms", ms - 1_000.0))),
    ));
    let bytes = find(records, "gridkeeper", MEMORY, 1).and_then(|record| record.bytes);
    out.push_str(&bound_line(
        "memory per idle activation (goal < 2 KiB)",
        &[("gridkeeper", bytes.map(|bytes| format!("{} bytes", thousands(bytes))))],
        bytes.map(|bytes| (bytes < 2_048.0, format!("missed by {} bytes", thousands(bytes - 2_048.0)))),
    ));
    out
}

/// A restart record as shown in the goals: its worst time, and the trials that never answered.
fn shown_trials(record: &Record) -> String {
    let worst = shown_ms(record.gap_ms);
    if record.errors > 0 {
        format!("{worst} ({} trials did not answer)", record.errors)
    } else {
        worst
    }
}

/// One goal line with labelled figures and a verdict: `(held, how it missed)`, or not measured.
fn bound_line(title: &str, figures: &[(&str, Option<String>)], verdict: Option<(bool, String)>) -> String {
    let shown: Vec<String> = figures
        .iter()
        .map(|(label, figure)| format!("{label} {}", figure.as_deref().unwrap_or("not measured")))
        .collect();
    let verdict = match verdict {
        None => "not measured".to_string(),
        Some((true, _)) => "met".to_string(),
        Some((false, missed)) => missed,
    };
    format!("- {title}: {}. **{verdict}**\n", shown.join(", "))
}

/// Issue 16's absolute goal for no-op tasks per second on `nodes` nodes (the ratio to Ray is the
/// `no-op tasks vs Ray` line).
fn task_rate_goal(records: &[Record], system: &str, nodes: usize, target: f64) -> String {
    let plural = if nodes == 1 { "node" } else { "nodes" };
    let measured = find(records, system, "tasks", 1).and_then(figure);
    let (shown, verdict) = match measured {
        None => ("not measured".to_string(), "not measured".to_string()),
        Some(rate) if rate >= target => (format!("{}/s", thousands(rate)), "met".to_string()),
        Some(rate) => (format!("{}/s", thousands(rate)), format!("missed by {:.0}%", (1.0 - rate / target) * 100.0)),
    };
    format!("- no-op tasks/s on {nodes} {plural} (goal ≥ {}/s): {shown}. **{verdict}**\n", thousands(target))
}

/// Issue 12's goals, on the `gridkeeper-zk` rows against ZooKeeper's: the same client, the same
/// requests, the same cluster sizes.
fn zk_protocol_goals(records: &[Record]) -> String {
    let mut out =
        String::from("\nGoals of issue 12, gridkeeper through its ZooKeeper protocol (gridkeeper-zk) vs ZooKeeper:\n");
    let against = |workload: &str, clients: usize| versus(records, (GK_ZK, workload), ("zookeeper", workload), clients);
    for (workload, plural) in [("write", "writes"), ("create", "creates")] {
        out.push_str(&rate_goal(&format!("{plural} at 128 clients"), &[(128, against(workload, 128))], 2.0));
        out.push_str(&bounded_goal(
            &format!("{plural} at 1 and 16 clients"),
            &[(1, against(workload, 1)), (16, against(workload, 16))],
            Bound::Above,
            1.0,
        ));
    }
    out.push_str(&rate_goal(
        "local reads, clients",
        &by_count(records, (GK_ZK, "read-local"), ("zookeeper", "read-local")),
        2.0,
    ));
    out.push_str(&write_latency_goal(records));
    out.push_str(&zk_failover_goal(records));
    out
}

/// One client's median write latency through the ZooKeeper protocol: below ZooKeeper's.
fn write_latency_goal(records: &[Record]) -> String {
    let p50 = |system| find(records, system, "write", 1).and_then(|record| record.p50_us);
    let (ours, zookeeper) = (p50(GK_ZK), p50("zookeeper"));
    let shown =
        |value: Option<f64>| value.map_or_else(|| "not measured".to_string(), |us| format!("{} µs", thousands(us)));
    let verdict = match (ours, zookeeper) {
        (Some(ours), Some(zookeeper)) if ours < zookeeper => "met".to_string(),
        (Some(ours), Some(zookeeper)) => format!("missed by {} µs", thousands(ours - zookeeper)),
        _ => "not measured".to_string(),
    };
    format!(
        "- one-client write p50 latency (goal below ZooKeeper's): gridkeeper-zk {}, ZooKeeper {}. **{verdict}**\n",
        shown(ours),
        shown(zookeeper)
    )
}

/// A failover gap as shown in the goals: `320 ms`, or `not measured`.
fn shown_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "not measured".to_string(), |ms| format!("{ms:.0} ms"))
}

/// Whether `ours` is under 500 ms and under every peer's gap (each must have been measured).
fn gap_verdict(ours: Option<f64>, peers: &[Option<f64>]) -> String {
    let Some(ours) = ours else { return "not measured".to_string() };
    let mut bound = 500f64;
    for peer in peers {
        let Some(peer) = peer else { return "not measured".to_string() };
        bound = bound.min(*peer);
    }
    if ours < bound {
        "met".to_string()
    } else {
        format!("missed by {:.0} ms", ours - bound)
    }
}

fn failover_gap(records: &[Record], system: &str) -> Option<f64> {
    find(records, system, "failover", 16).and_then(|record| record.gap_ms)
}

/// Failover through the ZooKeeper protocol: under 500 ms and shorter than ZooKeeper's.
fn zk_failover_goal(records: &[Record]) -> String {
    let (ours, zookeeper) = (failover_gap(records, GK_ZK), failover_gap(records, "zookeeper"));
    format!(
        "- failover gap (goal < 500 ms and below ZooKeeper's): gridkeeper-zk {}, ZooKeeper {}. **{}**\n",
        shown_ms(ours),
        shown_ms(zookeeper),
        gap_verdict(ours, &[zookeeper])
    )
}

/// Failover: under 500 ms and shorter than both peers'.
fn failover_goal(records: &[Record]) -> String {
    let ours = failover_gap(records, "gridkeeper");
    let (zookeeper, etcd) = (failover_gap(records, "zookeeper"), failover_gap(records, "etcd"));
    format!(
        "- failover gap (goal < 500 ms and below both peers): gridkeeper {}, ZooKeeper {}, etcd {}. **{}**\n",
        shown_ms(ours),
        shown_ms(zookeeper),
        shown_ms(etcd),
        gap_verdict(ours, &[zookeeper, etcd])
    )
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(system: &str, workload: &str, clients: usize, ops: Option<f64>, gap: Option<f64>) -> Record {
        Record {
            system: system.into(),
            workload: workload.into(),
            clients,
            ops_per_s: ops,
            p50_us: None,
            p99_us: None,
            errors: 0,
            gap_ms: gap,
            bytes: None,
        }
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12345.6), "12,346");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn reads_compare_with_zookeeper_local_reads_and_times_with_the_shortest_peer() {
        let records = vec![
            record("gridkeeper", "read", 16, Some(30_000.0), None),
            record("zookeeper", "read-local", 16, Some(20_000.0), None),
            record("etcd", "read", 16, Some(6_000.0), None),
            record("gridkeeper", "failover", 16, None, Some(400.0)),
            record("zookeeper", "failover", 16, None, Some(800.0)),
            record("etcd", "failover", 16, None, Some(2_000.0)),
        ];
        let table = table(&records);
        assert!(table.contains("| read | 16 | 30,000 | — | — | 20,000* | 6,000 | — | 1.50× | — |"), "{table}");
        assert!(table.contains("| failover | 16 | 400 ms | — | — | 800 ms | 2,000 ms | — | 0.50× | — |"), "{table}");
        let goals = goals(&records);
        assert!(goals.contains("failover gap (goal < 500 ms and below both peers): gridkeeper 400 ms"), "{goals}");
        assert!(goals.contains("**met**\n- no-op"), "{goals}");
        assert!(
            goals.contains("- no-op tasks/s on 3 nodes (goal ≥ 50,000/s): not measured. **not measured**"),
            "{goals}"
        );
    }

    #[test]
    fn task_rates_stand_against_the_absolute_goals() {
        let records = vec![
            record("gridkeeper", "tasks", 1, Some(40_000.0), None),
            record("gridkeeper-1node", "tasks", 1, Some(61_000.0), None),
        ];
        let goals = goals(&records);
        assert!(goals.contains("- no-op tasks/s on 3 nodes (goal ≥ 50,000/s): 40,000/s. **missed by 20%**"), "{goals}");
        assert!(goals.contains("- no-op tasks/s on 1 node (goal ≥ 60,000/s): 61,000/s. **met**"), "{goals}");
    }

    #[test]
    fn the_zookeeper_protocol_rows_compare_with_zookeeper_alone() {
        let with_p50 = |base: Record, p50: f64| Record { p50_us: Some(p50), ..base };
        let records = vec![
            with_p50(record("gridkeeper-zk", "write", 1, Some(1_200.0), None), 700.0),
            with_p50(record("zookeeper", "write", 1, Some(1_000.0), None), 900.0),
            record("gridkeeper-zk", "write", 16, Some(3_000.0), None),
            record("zookeeper", "write", 16, Some(2_000.0), None),
            record("gridkeeper-zk", "write", 128, Some(12_000.0), None),
            record("zookeeper", "write", 128, Some(6_000.0), None),
            record("gridkeeper-zk", "read-local", 1, Some(9_000.0), None),
            record("zookeeper", "read-local", 1, Some(5_000.0), None),
            record("gridkeeper-zk", "read-local", 16, Some(30_000.0), None),
            record("zookeeper", "read-local", 16, Some(14_000.0), None),
            record("gridkeeper-zk", "read-local", 128, Some(50_000.0), None),
            record("zookeeper", "read-local", 128, Some(20_000.0), None),
            record("gridkeeper-zk", "failover", 16, None, Some(320.0)),
            record("zookeeper", "failover", 16, None, Some(800.0)),
        ];
        let table = table(&records);
        assert!(table.contains("| gridkeeper | gridkeeper (ZooKeeper protocol) | gridkeeper-1node |"), "{table}");
        // Not a peer: the best-peer column stays empty without an HTTP figure.
        assert!(table.contains("| write | 128 | — | 12,000 | — | 6,000 | — | — | — | 2.00× |"), "{table}");
        assert!(table.contains("| failover | 16 | — | 320 ms | — | 800 ms | — | — | — | 0.40× |"), "{table}");
        let goals = goals(&records);
        assert!(goals.contains("- writes at 128 clients vs ZooKeeper (goal ≥ 2×): 128: not measured."), "{goals}");
        assert!(goals.contains("- writes at 128 clients (goal ≥ 2×): 128: 2.00×. **met**"), "{goals}");
        assert!(goals.contains("- writes at 1 and 16 clients (goal > 1×): 1: 1.20×, 16: 1.50×. **met**"), "{goals}");
        assert!(goals.contains("- creates at 128 clients (goal ≥ 2×): 128: not measured. **not measured**"), "{goals}");
        assert!(goals.contains("- local reads, clients (goal ≥ 2×): 1: 1.80×, 16: 2.14×, 128: 2.50×."), "{goals}");
        assert!(goals.contains("2.50×. **missed by 10% at worst**"), "{goals}");
        assert!(goals.contains("(goal below ZooKeeper's): gridkeeper-zk 700 µs, ZooKeeper 900 µs. **met**"), "{goals}");
        assert!(goals.contains("below ZooKeeper's): gridkeeper-zk 320 ms, ZooKeeper 800 ms. **met**"), "{goals}");
    }

    #[test]
    fn actor_rows_compare_with_ray_and_stand_against_the_issue_17_goals() {
        let with = |base: Record, p50: Option<f64>, bytes: Option<f64>, errors: u64| Record {
            p50_us: p50,
            bytes,
            errors,
            ..base
        };
        let records = vec![
            record("gridkeeper", "actor-calls", 1, Some(100_000.0), None),
            record("gridkeeper", "actor-calls-durable", 1, Some(5_000.0), None),
            record("ray", "actor-calls", 1, Some(4_000.0), None),
            record("gridkeeper", "actor-calls", 16, Some(30_000.0), None),
            record("ray", "actor-calls", 16, Some(10_000.0), None),
            record("gridkeeper", "actor-spread", 64, Some(250_000.0), None),
            with(record("gridkeeper", "actor-remote", 1, Some(5_000.0), None), Some(150.0), None, 0),
            with(record("gridkeeper", "actor-restart", 1, None, Some(1_200.0)), None, None, 1),
            record("ray", "actor-restart", 1, None, Some(400.0)),
            with(record("gridkeeper", "actor-memory", 1, None, None), None, Some(1_500.0), 0),
        ];
        let table = table(&records);
        assert!(table.contains("| actor-calls | 1 | 100,000 | — | — | — | — | 4,000 | 25.00× | — |"), "{table}");
        assert!(
            table.contains("| actor-restart | 1 | 1,200 ms (1 err) | — | — | — | — | 400 ms | 3.00× | — |"),
            "{table}"
        );
        assert!(table.contains("| actor-memory | 1 | 1,500 B | — |"), "{table}");
        let goals = goals(&records);
        assert!(
            goals
                .contains("1 caller on its host, vs Ray (goal ≥ 20×): volatile 25.00×, durable counter 1.25×. **met**"),
            "{goals}"
        );
        assert!(goals.contains("16 callers on other nodes, vs Ray (goal ≥ 5×): volatile 3.00×, durable counter not measured. **missed by 40%**"), "{goals}");
        assert!(
            goals.contains("(goal ≥ 200,000/s): volatile 250,000/s, durable counter not measured. **met**"),
            "{goals}"
        );
        assert!(goals.contains("(goal < 200 µs): gridkeeper 150 µs. **met**"), "{goals}");
        // A trial that never answered leaves the goal unmeasured, whatever the worst answered trial.
        assert!(
            goals.contains("gridkeeper 1200 ms (1 trials did not answer), Ray (worker kill) 400 ms. **not measured**"),
            "{goals}"
        );
        assert!(goals.contains("(goal < 2 KiB): gridkeeper 1,500 bytes. **met**"), "{goals}");
    }

    #[test]
    fn records_round_trip_with_nulls() {
        let line = concat!(
            r#"{"system":"ray","workload":"task-retry","clients":1,"ops_per_s":null,"#,
            r#""p50_us":null,"p99_us":null,"errors":0,"gap_ms":812.5}"#
        );
        let parsed: Record = serde_json::from_str(line).expect("a record");
        assert_eq!(parsed, record("ray", "task-retry", 1, None, Some(812.5)));
        assert_eq!(serde_json::to_string(&parsed).expect("serialises"), line);
    }
}
