//! Where a task cycle's time goes: one task traced from submission to recorded completion on a
//! 3-node loopback cluster of real nodes (QUIC mesh, Raft, the fsync'd log, the worker's attempt
//! tasks), in this process so every stage is stamped on one clock.
//!
//! The runtime emits `trace`-level events with target `gridkeeper::cycle` at each stage (the log
//! store's append and its fsync, the group committer's commits, every applied grid entry on every
//! node, the dispatcher's plans, the worker's starts, ends and report writes). Nothing listens to
//! them in a node; this bench installs the only subscriber that does, stamps each event and links
//! them per task through the attempt's fencing token (the index of its `Assign` entry).
//!
//! 1. alone: one task at a time, submit to recorded completion, so every stage is seen unloaded;
//! 2. loaded: a throughput run of `cycle` tasks, every 25th task traced, with the log's entries,
//!    fsyncs and entries per fsync counted.
//!
//! What to expect of a lone cycle: 3 grid entries per task (Submit, Assign, the report of its end). A
//! `cycle` task ends long before the worker would report its start (`STARTED_REPORT_DELAY_MS`), so its
//! end report alone records the start, and no start-only report is written.
//!
//! Run: `cargo bench --bench cycle` (`-- --quick` for fewer cycles and tasks; `-- --loaded` for the
//! loaded phase alone, to profile it). Prints figures; asserts nothing.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use gridkeeper::grid::kinds::{AttemptInfo, Task, TaskError};
use gridkeeper::ids::NodeId;
use gridkeeper::node::local::{LocalCluster, LocalOptions};
use gridkeeper::service::{Grid, SubmitOptions};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// The target of the runtime's stage events.
const TARGET: &str = "gridkeeper::cycle";

/// One stage event, as stamped here.
#[derive(Debug, Clone, Default)]
struct Stamped {
    /// Microseconds since the bench's origin.
    at_us: u64,
    /// The node it happened on: its `node` field, else the thread's (`gk-node-N`, `gk-work-N`), else 0.
    node: u64,
    stage: String,
    fields: Vec<(&'static str, u64)>,
}

impl Stamped {
    fn get(&self, name: &str) -> u64 {
        self.fields.iter().find(|(field, _)| *field == name).map_or(0, |(_, value)| *value)
    }
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    origin().elapsed().as_micros() as u64
}

/// Every stamped event, in the order they were stamped.
static EVENTS: Mutex<Vec<Stamped>> = Mutex::new(Vec::new());

fn thread_node() -> u64 {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or_default();
    name.strip_prefix("gk-node-").or(name.strip_prefix("gk-work-")).and_then(|id| id.parse().ok()).unwrap_or(0)
}

#[derive(Default)]
struct Fields {
    stage: String,
    fields: Vec<(&'static str, u64)>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name(), value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name(), value.max(0) as u64));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name(), u64::from(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.stage, "{value:?}");
        }
    }
}

/// Listens to `gridkeeper::cycle` events only; every other callsite stays disabled.
struct Stamper;

impl Subscriber for Stamper {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target() == TARGET {
            Interest::always()
        } else {
            Interest::never()
        }
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == TARGET
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let at_us = now_us();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let node = fields.fields.iter().find(|(name, _)| *name == "node").map_or_else(thread_node, |(_, node)| *node);
        let stamped = Stamped { at_us, node, stage: fields.stage, fields: fields.fields };
        EVENTS.lock().expect("events lock").push(stamped);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The bench's own stage events (submission, completion seen by the submitter, the task's run).
fn mark(stage: &str, task: u64) {
    mark_at(stage, task, now_us());
}

fn mark_at(stage: &str, task: u64, at_us: u64) {
    EVENTS.lock().expect("events lock").push(Stamped {
        at_us,
        node: thread_node(),
        stage: stage.to_string(),
        fields: vec![("task", task)],
    });
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Nothing {
    pad: u8,
}

/// A no-op that stamps when its run begins.
#[derive(Clone, Default)]
struct Cycle;

impl Task for Cycle {
    const NAME: &'static str = "cycle";
    type Input = Nothing;
    type Output = Nothing;

    async fn run(&self, input: Nothing, attempt: AttemptInfo) -> Result<Nothing, TaskError> {
        mark("run", attempt.task.0);
        Ok(input)
    }
}

/// The events, indexed for linking one task's stages.
struct Trace {
    leader: u64,
    /// Per node: (first, last, at) of each append and each flush, in order.
    appends: HashMap<u64, Vec<(u64, u64, u64)>>,
    flushes: HashMap<u64, Vec<(u64, u64, u64)>>,
    /// (node, index) -> applied at.
    applied: HashMap<(u64, u64), u64>,
    /// On the leader: first task of an Assign entry -> its index; first ended task of an entry -> index.
    assign_entry: HashMap<u64, u64>,
    report_entry: HashMap<u64, u64>,
    /// Leader's applied entries, in order: (at, index, submitted, assigned, ended).
    leader_applied: Vec<(u64, u64, u64, u64, u64)>,
    /// First task of a plan -> (plan begun, plan made, Assign answered).
    plans: HashMap<u64, (u64, u64, u64)>,
    plan_times: Vec<u64>,
    /// Task -> (node, token, at), and ended at.
    starts: HashMap<u64, (u64, u64, u64)>,
    ends: HashMap<u64, u64>,
    runs: HashMap<u64, u64>,
    /// Per node, in order: (at, first ended task, reports), and write answers (at).
    batches: HashMap<u64, Vec<(u64, u64, u64)>>,
    written: HashMap<u64, Vec<u64>>,
    marks: HashMap<(String, u64), u64>,
    fsyncs: Vec<Stamped>,
}

impl Trace {
    fn build(events: &[Stamped], leader: u64) -> Trace {
        let mut trace = Trace {
            leader,
            appends: HashMap::new(),
            flushes: HashMap::new(),
            applied: HashMap::new(),
            assign_entry: HashMap::new(),
            report_entry: HashMap::new(),
            leader_applied: Vec::new(),
            plans: HashMap::new(),
            plan_times: Vec::new(),
            starts: HashMap::new(),
            ends: HashMap::new(),
            runs: HashMap::new(),
            batches: HashMap::new(),
            written: HashMap::new(),
            marks: HashMap::new(),
            fsyncs: Vec::new(),
        };
        let mut plan_begun = 0;
        let mut last_plan = None;
        for event in events {
            let (at, node) = (event.at_us, event.node);
            match event.stage.as_str() {
                "append" => trace.appends.entry(node).or_default().push((event.get("first"), event.get("last"), at)),
                "flushed" => trace.flushes.entry(node).or_default().push((event.get("first"), event.get("last"), at)),
                "fsync" => trace.fsyncs.push(event.clone()),
                "applied" => {
                    let index = event.get("index");
                    trace.applied.entry((node, index)).or_insert(at);
                    if node == leader {
                        if event.get("assigned") > 0 {
                            trace.assign_entry.entry(event.get("first_assigned")).or_insert(index);
                        }
                        if event.get("ended") > 0 {
                            trace.report_entry.entry(event.get("first_ended")).or_insert(index);
                        }
                        let counts = (event.get("submitted"), event.get("assigned"), event.get("ended"));
                        trace.leader_applied.push((at, index, counts.0, counts.1, counts.2));
                    }
                }
                "plan_begin" if node == leader => plan_begun = at,
                "plan" if node == leader => {
                    trace.plans.insert(event.get("first"), (plan_begun, at, 0));
                    trace.plan_times.push(at);
                    last_plan = Some(event.get("first"));
                }
                "assign_done" if node == leader => {
                    if let Some(plan) = last_plan.take().and_then(|first| trace.plans.get_mut(&first)) {
                        plan.2 = at;
                    }
                }
                "start" => {
                    trace.starts.entry(event.get("task")).or_insert((node, event.get("token"), at));
                }
                "ended" => {
                    trace.ends.entry(event.get("task")).or_insert(at);
                }
                "run" => {
                    trace.runs.entry(event.get("task")).or_insert(at);
                }
                "report_batch" => {
                    trace.batches.entry(node).or_default().push((at, event.get("first_end"), event.get("reports")))
                }
                "report_written" => trace.written.entry(node).or_default().push(at),
                other => {
                    trace.marks.insert((other.to_string(), event.get("task")), at);
                }
            }
        }
        trace
    }

    fn first_covering(list: Option<&Vec<(u64, u64, u64)>>, index: u64) -> Option<u64> {
        list?.iter().find(|(first, last, _)| *first <= index && index <= *last).map(|(_, _, at)| *at)
    }

    fn append(&self, node: u64, index: u64) -> Option<u64> {
        Trace::first_covering(self.appends.get(&node), index)
    }

    fn flushed(&self, node: u64, index: u64) -> Option<u64> {
        Trace::first_covering(self.flushes.get(&node), index)
    }

    /// The stages of one log entry: leader append, first follower append, leader flush, the follower
    /// flush that makes a quorum, leader apply, and apply on `on` (a node of interest).
    fn entry(&self, index: u64, on: u64) -> Option<EntryStages> {
        let leader_append = self.append(self.leader, index)?;
        let leader_flushed = self.flushed(self.leader, index)?;
        let followers: Vec<u64> =
            self.appends.keys().copied().filter(|node| *node != self.leader && *node != 0).collect();
        let follower_append = followers.iter().filter_map(|node| self.append(*node, index)).min()?;
        let follower_flush = followers
            .iter()
            .filter_map(|node| Some((self.flushed(*node, index)?, self.append(*node, index)?)))
            .min()?;
        let leader_applied = *self.applied.get(&(self.leader, index))?;
        let applied_on = *self.applied.get(&(on, index))?;
        Some(EntryStages {
            leader_append,
            follower_append,
            leader_fsync_us: leader_flushed.saturating_sub(leader_append),
            follower_fsync_us: follower_flush.0.saturating_sub(follower_flush.1),
            quorum_durable: leader_flushed.max(follower_flush.0),
            leader_applied,
            applied_on,
        })
    }
}

struct EntryStages {
    leader_append: u64,
    follower_append: u64,
    leader_fsync_us: u64,
    follower_fsync_us: u64,
    quorum_durable: u64,
    leader_applied: u64,
    applied_on: u64,
}

/// Stage name -> samples (µs), in first-seen order.
#[derive(Default)]
struct Stages {
    order: Vec<&'static str>,
    samples: HashMap<&'static str, Vec<u64>>,
}

impl Stages {
    fn add(&mut self, stage: &'static str, from: u64, to: u64) {
        if !self.samples.contains_key(stage) {
            self.order.push(stage);
        }
        self.samples.entry(stage).or_default().push(to.saturating_sub(from));
    }

    fn add_value(&mut self, stage: &'static str, value: u64) {
        self.add(stage, 0, value);
    }

    fn print(&self, title: &str) {
        println!("\n{title}");
        println!("| stage | n | median ms | p99 ms |");
        println!("|---|---:|---:|---:|");
        for stage in &self.order {
            let mut samples = self.samples[stage].clone();
            samples.sort_unstable();
            println!(
                "| {stage} | {} | {:.2} | {:.2} |",
                samples.len(),
                percentile(&samples, 0.50) as f64 / 1_000.0,
                percentile(&samples, 0.99) as f64 / 1_000.0
            );
        }
    }
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// Adds the stages of one entry under `names`; the last (apply on the node of interest) only if
/// that node is a follower.
fn add_entry(stages: &mut Stages, names: &[&'static str; 5], entry: &EntryStages, on_follower: bool) {
    stages.add(names[0], entry.leader_append, entry.follower_append);
    stages.add_value(names[1], entry.leader_fsync_us);
    stages.add_value(names[2], entry.follower_fsync_us);
    stages.add(names[3], entry.quorum_durable, entry.leader_applied);
    if on_follower {
        stages.add(names[4], entry.leader_applied, entry.applied_on);
    }
}

/// One traced task's stages from the `Assign` proposal on; `false` if a stage is missing.
/// Under load, the time from the report to the next plan is counted too (alone, the next plan waits
/// for the next submission).
fn assign_to_report(trace: &Trace, stages: &mut Stages, task: u64, loaded: bool) -> bool {
    let Some(&(node, token, started)) = trace.starts.get(&task) else { return false };
    let Some(first) = trace.assign_entry.iter().find(|(_, index)| **index == token).map(|(first, _)| *first) else {
        return false;
    };
    let Some(&(plan_begun, planned, _)) = trace.plans.get(&first) else { return false };
    let Some(assign) = trace.entry(token, node) else { return false };
    let (Some(&run), Some(&ended)) = (trace.runs.get(&task), trace.ends.get(&task)) else { return false };
    // The first batch this node wrote after the end, and the answer to it.
    let Some(&(batched, first_end, _)) = trace.batches.get(&node).and_then(|list| list.iter().find(|b| b.0 >= ended))
    else {
        return false;
    };
    let Some(&written) = trace.written.get(&node).and_then(|list| list.iter().find(|at| **at >= batched)) else {
        return false;
    };
    let Some(&report_index) = trace.report_entry.get(&first_end) else { return false };
    let Some(report) = trace.entry(report_index, node) else { return false };
    stages.add("plan (dispatcher reads the table, places)", plan_begun, planned);
    stages.add("Assign proposed -> appended on the leader", planned, assign.leader_append);
    add_entry(
        stages,
        &[
            "Assign: replicate (leader append -> first follower append)",
            "Assign: fsync on the leader",
            "Assign: fsync on the quickest follower",
            "Assign: quorum durable -> applied on the leader (commit)",
            "Assign: applied on the leader -> applied on the worker's node (a follower)",
        ],
        &assign,
        node != trace.leader,
    );
    stages.add("applied on the worker's node -> attempt started (worker queue)", assign.applied_on, started);
    stages.add("attempt started -> task runs (task spawn)", started, run);
    stages.add("task runs -> end seen by the worker", run, ended);
    stages.add("end -> its report batch written (report batching)", ended, batched);
    stages.add("report batch -> appended on the leader (forward, propose)", batched, report.leader_append);
    add_entry(
        stages,
        &[
            "Report: replicate",
            "Report: fsync on the leader",
            "Report: fsync on the quickest follower",
            "Report: quorum durable -> applied on the leader (commit)",
            "Report: applied on the leader -> applied on the worker's node (a follower)",
        ],
        &report,
        node != trace.leader,
    );
    stages.add("Report applied on the leader -> write answered on the worker", report.leader_applied, written);
    if loaded {
        if let Some(next) = trace.plan_times.iter().find(|at| **at >= report.leader_applied) {
            stages.add("Report applied on the leader -> next plan", report.leader_applied, *next);
        }
    }
    stages.add("Assign proposed -> report applied on the leader (the cycle)", planned, report.leader_applied);
    true
}

fn take_events() -> Vec<Stamped> {
    std::mem::take(&mut *EVENTS.lock().expect("events lock"))
}

/// Phase 1: `cycles` tasks, one at a time, each awaited before the next is submitted.
async fn alone(grid: &Grid, leader: u64, cycles: usize) {
    take_events();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for cycle in 0..cycles {
        // Each node in turn: placement alone would send every lone task to the lowest id.
        let options = SubmitOptions { affinity: Some(NodeId(cycle as u64 % 3 + 1)), ..SubmitOptions::default() };
        let called = now_us();
        let handle = grid.submit::<Cycle>(&Nothing { pad: 0 }, &options).await.expect("submit");
        let task = handle.id();
        mark_at("submit_called", task.0, called);
        mark("submitted", task.0);
        let states = grid.wait_all(&[task], Duration::from_secs(30)).await.expect("wait");
        assert_eq!(states.get("succeeded"), Some(&1), "{states:?}");
        mark("awaited", task.0);
        tasks.push(task.0);
    }
    let elapsed = started.elapsed();
    let events = take_events();
    let trace = Trace::build(&events, leader);
    let (mut on_leader, mut on_followers) = (Stages::default(), Stages::default());
    let mut complete = 0;
    for &task in &tasks {
        let mark_of = |stage: &str| trace.marks.get(&(stage.to_string(), task)).copied();
        let (Some(called), Some(submitted), Some(awaited)) =
            (mark_of("submit_called"), mark_of("submitted"), mark_of("awaited"))
        else {
            continue;
        };
        // The Submit entry: the leader's last applied entry that accepted tasks before the answer.
        let Some(&(_, submit_index, ..)) =
            trace.leader_applied.iter().rev().find(|entry| entry.2 > 0 && entry.0 <= submitted)
        else {
            continue;
        };
        let Some(submit) = trace.entry(submit_index, leader) else { continue };
        let mut one = Stages::default();
        one.add("Submit: call -> appended on the leader", called, submit.leader_append);
        add_entry(
            &mut one,
            &[
                "Submit: replicate",
                "Submit: fsync on the leader",
                "Submit: fsync on the quickest follower",
                "Submit: quorum durable -> applied on the leader (commit)",
                "(unused)",
            ],
            &submit,
            false,
        );
        one.add("Submit: applied on the leader -> answered", submit.leader_applied, submitted);
        let Some(&(_, token, _)) = trace.starts.get(&task) else { continue };
        let first = trace.assign_entry.iter().find(|(_, index)| **index == token).map(|(first, _)| *first);
        let Some(&(plan_begun, ..)) = first.and_then(|first| trace.plans.get(&first)) else { continue };
        one.add("Submit applied on the leader -> dispatcher wakes", submit.leader_applied, plan_begun);
        if !assign_to_report(&trace, &mut one, task, false) {
            continue;
        }
        one.add("total: submit call -> completion seen by the submitter", called, awaited);
        complete += 1;
        let stages = if trace.starts[&task].0 == leader { &mut on_leader } else { &mut on_followers };
        for stage in one.order {
            for value in &one.samples[stage] {
                stages.add_value(stage, *value);
            }
        }
    }
    println!("\none task at a time: {complete} of {cycles} cycles fully traced");
    on_followers.print("one task at a time, run on a follower");
    on_leader.print(&format!("one task at a time, run on the leader (node {leader})"));
    entry_counts(&trace, elapsed, cycles);
}

/// Phase 2: `total` tasks in batches of 10,000, every `sample`th traced.
async fn loaded(grid: &Grid, leader: u64, total: usize, sample: u64) {
    take_events();
    let cpu_before = cpu_by_thread();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(total);
    while ids.len() < total {
        let count = 10_000.min(total - ids.len());
        let handles = grid.submit_batch::<Cycle>(&vec![Nothing { pad: 0 }; count], &SubmitOptions::default()).await;
        ids.extend(handles.expect("submit").iter().map(|handle| handle.id()));
    }
    let states = grid.wait_all(&ids, Duration::from_secs(300)).await.expect("wait");
    let elapsed = started.elapsed();
    let cpu_after = cpu_by_thread();
    assert_eq!(states.get("succeeded"), Some(&total), "{states:?}");
    let events = take_events();
    let trace = Trace::build(&events, leader);
    let mut stages = Stages::default();
    let traced = ids
        .iter()
        .filter(|id| id.0 % sample == 0)
        .filter(|id| assign_to_report(&trace, &mut stages, id.0, true))
        .count();
    println!(
        "\nloaded: {total} tasks in {:.2} s = {:.0} tasks/s; {traced} of {} sampled tasks fully traced",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        total as u64 / sample
    );
    print_cpu(&cpu_before, &cpu_after, elapsed);
    stages.print("loaded, per traced task");
    // An attempt that starts as soon as its Assign applies found a slot idle: the window ran dry.
    let waits: Vec<u64> = trace
        .starts
        .values()
        .filter_map(|(node, token, at)| Some(at.saturating_sub(*trace.applied.get(&(*node, *token))?)))
        .collect();
    let idle = waits.iter().filter(|wait| **wait < 200).count();
    println!(
        "attempts started within 0.2 ms of their Assign applying on their node (a slot waited for them): {idle} of {} ({:.0}%)",
        waits.len(),
        100.0 * idle as f64 / waits.len().max(1) as f64
    );
    entry_counts(&trace, elapsed, total);
}

/// CPU time (user + system, clock ticks) of every thread of this process, summed by thread name with
/// its node number dropped (`gk-node-N` -> `gk-node`).
fn cpu_by_thread() -> BTreeMap<String, u64> {
    let mut cpu = BTreeMap::new();
    let Ok(threads) = std::fs::read_dir("/proc/self/task") else { return cpu };
    for thread in threads.flatten() {
        let Ok(stat) = std::fs::read_to_string(thread.path().join("stat")) else { continue };
        // `pid (comm) state ...`: the comm may hold spaces, so split after its closing parenthesis.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks: u64 = [11, 12].iter().filter_map(|index| fields.get(*index)?.parse::<u64>().ok()).sum();
        *cpu.entry(name).or_default() += ticks;
    }
    cpu
}

/// How busy the process was, in cores, and by which threads. Threads that ended in between are missed.
fn print_cpu(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, elapsed: Duration) {
    // Linux reports these in USER_HZ, 100 per second on every platform Rust supports.
    let cores = |ticks: u64| ticks as f64 / 100.0 / elapsed.as_secs_f64();
    let used: Vec<(String, u64)> = after
        .iter()
        .map(|(name, ticks)| (name.clone(), ticks.saturating_sub(before.get(name).copied().unwrap_or(0))))
        .filter(|(_, ticks)| *ticks > 0)
        .collect();
    let total: u64 = used.iter().map(|(_, ticks)| ticks).sum();
    let by_thread: Vec<String> = used.iter().map(|(name, ticks)| format!("{name} {:.2}", cores(*ticks))).collect();
    println!("CPU: {:.2} cores busy of 2 ({})", cores(total), by_thread.join(", "));
}

/// The log's entries by what they carried, their sizes, and the fsyncs they cost.
fn entry_counts(trace: &Trace, elapsed: Duration, tasks: usize) {
    let mut kinds: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for &(_, _, submitted, assigned, ended) in &trace.leader_applied {
        let (kind, items) = if submitted > 0 {
            ("Submit (tasks)", submitted)
        } else if assigned > 0 {
            ("Assign (attempts)", assigned)
        } else if ended > 0 {
            ("Report with ends (ends)", ended)
        } else {
            ("other grid entries (start-only reports, ...)", 0)
        };
        let counts = kinds.entry(kind).or_default();
        counts.0 += 1;
        counts.1 += items;
    }
    println!("\ngrid entries applied on the leader:");
    for (kind, (entries, items)) in &kinds {
        println!("  {kind}: {entries} entries, {:.1} per entry", *items as f64 / (*entries).max(1) as f64);
    }
    let all: u64 = kinds.values().map(|(entries, _)| entries).sum();
    println!("  all: {all} entries for {tasks} tasks, {:.3} per task", all as f64 / tasks.max(1) as f64);
    let mut reports: Vec<u64> = trace.batches.values().flatten().map(|batch| batch.2).collect();
    reports.sort_unstable();
    let starts_only = trace.batches.values().flatten().filter(|batch| batch.1 == 0).count();
    println!(
        "report batches written by the workers: {} ({starts_only} with start reports only), reports per batch p50 {}, p99 {}, max {}",
        reports.len(),
        percentile(&reports, 0.5),
        percentile(&reports, 0.99),
        reports.last().copied().unwrap_or(0)
    );
    let durable: Vec<&Stamped> = trace.fsyncs.iter().filter(|fsync| fsync.get("durable") == 1).collect();
    let mut entries: Vec<u64> = durable.iter().map(|fsync| fsync.get("entries")).collect();
    let mut writes: Vec<u64> = durable.iter().map(|fsync| fsync.get("writes")).collect();
    let mut micros: Vec<u64> = durable.iter().map(|fsync| fsync.get("us")).collect();
    entries.sort_unstable();
    writes.sort_unstable();
    micros.sort_unstable();
    let seconds = elapsed.as_secs_f64();
    println!(
        "fsyncs, 3 nodes together: {} ({:.0}/s; lazy commits without fsync: {}); entries per fsync mean {:.1}, p50 {}, p99 {}; \
         writes per fsync p50 {}, p99 {}; fsync time p50 {:.2} ms, p99 {:.2} ms",
        durable.len(),
        durable.len() as f64 / seconds,
        trace.fsyncs.len() - durable.len(),
        entries.iter().sum::<u64>() as f64 / entries.len().max(1) as f64,
        percentile(&entries, 0.5),
        percentile(&entries, 0.99),
        percentile(&writes, 0.5),
        percentile(&writes, 0.99),
        percentile(&micros, 0.5) as f64 / 1_000.0,
        percentile(&micros, 0.99) as f64 / 1_000.0
    );
}

fn main() {
    origin();
    tracing::subscriber::set_global_default(Stamper).expect("the only subscriber");
    let quick = std::env::args().any(|arg| arg == "--quick");
    let loaded_only = std::env::args().any(|arg| arg == "--loaded");
    let (cycles, total) = if quick { (100, 20_000) } else { (400, 60_000) };
    // A longer loaded phase (for a profiler): GK_LOADED_TASKS, in batches of 10,000.
    let total = std::env::var("GK_LOADED_TASKS").ok().and_then(|text| text.parse().ok()).unwrap_or(total);
    let options = LocalOptions {
        kinds: gridkeeper::worker::builtin::kinds().with(Cycle),
        slots: 2,
        prefetch: std::env::var("GK_PREFETCH").ok().and_then(|text| text.parse().ok()),
        ..LocalOptions::default()
    };
    let dir = std::env::temp_dir().join(format!("gridkeeper-cycle-bench-{}", std::process::id()));
    let cluster = LocalCluster::start_with(3, &dir, options).expect("cluster");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).expect("leader");
    let grid = Grid::local(cluster.view(leader).and_then(|view| view.coordinator()).expect("leader coordinator"));
    runtime.block_on(wait_registered(&cluster, leader, 3));
    println!("task cycle, 3 nodes x 2 slots, loopback, fsync on; leader node {leader}");
    // Warm up: connections, the settings entry, the first plans.
    runtime.block_on(async {
        let handles = grid.submit_batch::<Cycle>(&vec![Nothing { pad: 0 }; 2_000], &SubmitOptions::default()).await;
        let ids: Vec<_> = handles.expect("warm-up").iter().map(|handle| handle.id()).collect();
        grid.wait_all(&ids, Duration::from_secs(60)).await.expect("warm-up wait");
    });
    if !loaded_only {
        runtime.block_on(alone(&grid, leader.0, cycles));
    }
    runtime.block_on(loaded(&grid, leader.0, total, 25));
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_registered(cluster: &LocalCluster, via: NodeId, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let registered = cluster
            .view(via)
            .and_then(|view| view.coordinator())
            .map_or(0, |coordinator| coordinator.read_state(|state| state.nodes().len()));
        if registered >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nodes did not register");
}
