//! Deterministic simulation of the task grid: 3 real nodes (mesh, openraft, the fsync'd log, dispatcher,
//! registration, worker supervisor with task actors) over turmoil's seeded network and clock. Every
//! node submits random batches of tasks, among them delayed tasks, tasks that fail before they
//! succeed (retried with backoff) and tasks whose first attempt stalls past its timeout, while a cron
//! job and an interval job fire, and a seeded fault schedule crashes the leader and other nodes,
//! restarts them, cuts, holds and fails links. A third of the tasks (`drag`) run slowly on node 1, whose
//! queue grows while its peers idle, so the leader moves queued attempts away from it (work stealing)
//! while several `Assign` entries are in flight. Wall time is simulated too, so every grid timer
//! (timeouts, backoff, not-before times, aging, cron) replays from the seed.
//!
//! Checked after every schedule, once healed:
//! - every submitter got back one id per task it submitted, never an id another submission got, and
//!   each id names the very task it submitted (submissions made at once share entries while the
//!   node's submission slots are busy, and their ids are split per caller);
//! - every task in the table (every accepted one among them, and every job run) ends succeeded, with
//!   exactly one successful attempt and no attempt left open (moved attempts included); no worker ever
//!   ran more attempts at once than its slots; over the swarm, attempts were moved and submissions
//!   were placed in their own entry (`SubmitPlaced`) and submissions shared entries;
//! - the timers held: no attempt was assigned before its task's not-before time, no retry before its
//!   backoff ran out, no attempt timed out before its timeout, every stalled first attempt ended
//!   without success, and no job fired before its due time or twice for one due time.
//!
//! The swarm runs hundreds of schedules per `cargo test` (`GK_SIM_SCHEDULES`, `GK_SIM_SECONDS` and the
//! other knobs: see `gridkeeper::sim::swarm`); some of them twice, comparing the final tables
//! timestamps included. A failing seed prints the command that replays it, e.g.
//! `GK_SIM_SEED=17 cargo test --test sim_grid every_accepted_task -- --nocapture`; with it,
//! `RUST_LOG=gridkeeper=debug` logs the nodes and `GK_SIM_DUMP=<path>` writes each run's final table
//! to `<path>-<seed>-<n>`, for a diff of two runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridkeeper::clock::unix_millis;
use gridkeeper::consensus::Coordinator;
use gridkeeper::grid::command::JobSpec;
use gridkeeper::grid::kinds::{AttemptInfo, Task as TaskKind, TaskError};
use gridkeeper::grid::schedule::{Cadence, CronExpr, Misfire};
use gridkeeper::grid::table::UNSTARTED_GRACE_MS;
use gridkeeper::grid::task::{AttemptState, Encoding, RetryPolicy, TaskId, TaskSpec, TaskState};
use gridkeeper::grid::{GridCommand, Task};
use gridkeeper::ids::NodeId;
use gridkeeper::service::Grid;
use gridkeeper::sim::RunDir;
use gridkeeper::sim::{FaultLog, FaultSchedule, SimCluster, SimConfig, SimGrid, Swarm, Workload};
use gridkeeper::state::Command;
use gridkeeper::worker::builtin::{Empty, FailInput};
use rand::{Rng, SeedableRng};

const NODES: u64 = 3;
const SLOTS: u32 = 2;
const PREFETCH: u32 = 4;
const BATCHES_PER_NODE: u32 = 4;
/// Submissions a node makes at once in one batch step at most: more than its submission slots
/// (`SUBMIT_IN_FLIGHT_MAX`), so that in a third of the steps some wait and share an entry.
const SUBMISSIONS_AT_ONCE_MAX: usize = gridkeeper::limits::SUBMIT_IN_FLIGHT_MAX + 4;
/// Simulated milliseconds of faults.
const CHAOS_MS: u64 = 3_000;
/// Simulated milliseconds allowed for every task to end once the cluster is healed.
const HEAL_MS_MAX: u64 = 60_000;
/// Schedules each `cargo test` runs.
const SCHEDULES: u64 = 500;
/// Every this many schedules, one runs twice and must give the same final table, timestamps included.
const REPLAY_EVERY: u64 = 25;
/// Attempts per task: enough for two designed failures or one stall, and a spare.
const ATTEMPTS_MAX: u32 = 4;
/// Timeout of the tasks that are not meant to time out: far above their run time and any fault.
const TIMEOUT_MS_RELAXED: u64 = 20_000;
const CRON_JOB: &str = "every-second";
const INTERVAL_JOB: &str = "interval";

/// A task whose first `times` attempts stall (far past any timeout) and whose later ones succeed.
#[derive(Debug, Clone, Copy, Default)]
struct Stall;

impl TaskKind for Stall {
    const NAME: &'static str = "stall";
    type Input = FailInput;
    type Output = Empty;

    async fn run(&self, input: FailInput, attempt: AttemptInfo) -> Result<Empty, TaskError> {
        if attempt.number <= input.times {
            // Simulated time: the worker's own timeout ends it long before.
            tokio::time::sleep(Duration::from_secs(3_600)).await;
        }
        Ok(Empty {})
    }
}

/// A task that runs slowly on node 1 and quickly elsewhere: node 1's queue grows long while its peers
/// idle, so the leader moves its queued attempts to them (work stealing).
#[derive(Debug, Clone, Copy, Default)]
struct Drag;

/// How long a `drag` attempt runs on the slow node, and elsewhere (simulated ms).
const DRAG_SLOW_MS: u64 = 700;
const DRAG_FAST_MS: u64 = 5;

impl TaskKind for Drag {
    const NAME: &'static str = "drag";
    type Input = Empty;
    type Output = Empty;

    async fn run(&self, _input: Empty, attempt: AttemptInfo) -> Result<Empty, TaskError> {
        let ms = if attempt.node == NodeId(1) { DRAG_SLOW_MS } else { DRAG_FAST_MS };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Empty {})
    }
}

/// Whether `attempt` was moved to another node by work stealing.
fn stolen(attempt: &gridkeeper::grid::Attempt) -> bool {
    attempt.state == AttemptState::Lost && attempt.error.as_deref().is_some_and(|error| error.contains("work stealing"))
}

/// The two recurring jobs of one seed.
#[derive(Debug, Clone)]
struct Jobs {
    specs: Vec<JobSpec>,
}

#[derive(Default)]
struct Shared {
    /// Every id a submitter got back, with the spec it submitted under it.
    accepted: Mutex<BTreeMap<TaskId, TaskSpec>>,
    /// Ids handed to two submissions (never: merged entries split their ids per caller).
    ids_given_twice: Mutex<Vec<TaskId>>,
    /// Batches each node submitted, over all its incarnations: a restarted node goes on from there.
    batches: Mutex<BTreeMap<NodeId, u32>>,
    /// The Unix ms of the first attempt to schedule the jobs: no schedule applied earlier.
    jobs_scheduled_at: Mutex<Option<u64>>,
    jobs_scheduled: AtomicBool,
    jobs_removed: AtomicBool,
    healed: AtomicBool,
}

fn json(kind: &str, input: serde_json::Value, rng: &mut rand::rngs::SmallRng) -> TaskSpec {
    let mut spec = TaskSpec::new(kind, serde_json::to_vec(&input).expect("json"));
    spec.encoding = Encoding::Json;
    spec.priority = rng.random_range(0..3);
    spec.retry = RetryPolicy { attempts_max: ATTEMPTS_MAX, backoff_ms: rng.random_range(10..300) };
    spec.timeout_ms = TIMEOUT_MS_RELAXED;
    spec
}

fn random_spec(rng: &mut rand::rngs::SmallRng) -> TaskSpec {
    let mut spec = match rng.random_range(0..6) {
        0 => json("noop", serde_json::json!({}), rng),
        4 | 5 => json(Drag::NAME, serde_json::json!({}), rng),
        1 => json("sleep", serde_json::json!({ "ms": rng.random_range(1..300) }), rng),
        2 => json("fail", serde_json::json!({ "times": rng.random_range(1..=2) }), rng),
        _ => {
            let mut spec = json(Stall::NAME, serde_json::json!({ "times": 1 }), rng);
            spec.timeout_ms = rng.random_range(100..800);
            spec
        }
    };
    if rng.random_bool(0.25) {
        spec.not_before_ms = unix_millis() + rng.random_range(50..CHAOS_MS);
    }
    spec
}

fn random_jobs(seed: u64) -> Jobs {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ 0x10b5);
    let misfire = |rng: &mut rand::rngs::SmallRng| if rng.random_bool(0.5) { Misfire::Skip } else { Misfire::RunOnce };
    let cadences = [
        (CRON_JOB, Cadence::Cron(CronExpr::parse("* * * * * *").expect("a valid cron"))),
        // Anchored in simulated time: the simulation's epoch is fixed.
        (
            INTERVAL_JOB,
            Cadence::interval(rng.random_range(200..700), gridkeeper::clock::SIM_EPOCH_MS + rng.random_range(0..1_000))
                .expect("a valid interval"),
        ),
    ];
    let specs = cadences
        .into_iter()
        .map(|(name, cadence)| {
            let task = json("echo", serde_json::json!({ "value": name }), &mut rng);
            JobSpec { name: name.to_string(), task, cadence, misfire: misfire(&mut rng), overlap: rng.random_bool(0.5) }
        })
        .collect();
    Jobs { specs }
}

/// Writes `command` until it is applied (refused or not), a bounded number of times.
async fn write_until_applied(coordinator: &Coordinator, command: Command) {
    for _ in 0..200 {
        match coordinator.write(command.clone()).await {
            Ok(_) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn workload(shared: Arc<Shared>, seed: u64, jobs: Jobs) -> Workload {
    Arc::new(move |node: NodeId, coordinator: Coordinator| {
        let shared = shared.clone();
        let jobs = jobs.clone();
        Box::pin(async move {
            let done = shared.batches.lock().expect("batches").get(&node).copied().unwrap_or(0);
            let mut rng =
                rand::rngs::SmallRng::seed_from_u64(seed ^ node.0.wrapping_mul(0x9e37_79b9) ^ u64::from(done));
            if node == NodeId(1) && !shared.jobs_scheduled.load(Ordering::Relaxed) {
                shared.jobs_scheduled_at.lock().expect("jobs").get_or_insert(unix_millis());
                for job in &jobs.specs {
                    let command = Command::App(GridCommand::Schedule { job: Box::new(job.clone()) });
                    write_until_applied(&coordinator, command).await;
                }
                shared.jobs_scheduled.store(true, Ordering::Relaxed);
            }
            for _ in done..BATCHES_PER_NODE {
                tokio::time::sleep(Duration::from_millis(rng.random_range(10..CHAOS_MS / u64::from(BATCHES_PER_NODE))))
                    .await;
                // Several submissions at once, through the service layer: while the node's submission
                // slots are busy they share entries (`grid::merge`), and each must get back the ids of
                // exactly its own tasks.
                let grid = Grid::local(coordinator.clone());
                let submissions: Vec<Vec<TaskSpec>> = (0..rng.random_range(1..=SUBMISSIONS_AT_ONCE_MAX))
                    .map(|_| (0..rng.random_range(1..=2)).map(|_| random_spec(&mut rng)).collect())
                    .collect();
                let results =
                    futures_util::future::join_all(submissions.iter().map(|specs| grid.submit_specs(specs.clone())))
                        .await;
                for (specs, result) in submissions.into_iter().zip(results) {
                    let Ok(ids) = result else { continue };
                    assert_eq!(ids.len(), specs.len(), "one id per task submitted");
                    let mut accepted = shared.accepted.lock().expect("accepted");
                    for (id, spec) in ids.into_iter().zip(specs) {
                        if accepted.insert(id, spec).is_some() {
                            shared.ids_given_twice.lock().expect("ids").push(id);
                        }
                    }
                }
                *shared.batches.lock().expect("batches").entry(node).or_default() += 1;
            }
            while !shared.healed.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The jobs stop once the faults are over, so that the table can settle.
            while coordinator.read_state(|state| !state.grid.jobs().is_empty()) {
                for job in &jobs.specs {
                    let command = Command::App(GridCommand::Unschedule { name: job.name.clone() });
                    let _ = coordinator.write(command).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            shared.jobs_removed.store(true, Ordering::Relaxed);
        })
    })
}

/// The most advanced replica's table: every task, whole (timestamps included).
fn final_tasks(cluster: &SimCluster<'_>) -> Option<(BTreeMap<TaskId, Task>, usize)> {
    let coordinator = (1..=NODES)
        .filter_map(|id| cluster.coordinator(NodeId(id)))
        .max_by_key(|coordinator| coordinator.status().applied_index)?;
    Some(coordinator.read_state(|state| {
        let tasks = state.grid.older_than(TaskId(u64::MAX)).map(|task| (task.id, task.clone())).collect();
        (tasks, state.grid.jobs().len())
    }))
}

/// What one schedule leaves: the final table and the faults it suffered.
#[derive(Debug, PartialEq)]
struct Run {
    tasks: BTreeMap<TaskId, Task>,
    faults: FaultLog,
    accepted: usize,
}

/// Runs one seeded schedule and checks it; returns what must replay.
fn run(seed: u64) -> Run {
    let shared = Arc::new(Shared::default());
    let dir = RunDir::new("grid", seed);
    let jobs = random_jobs(seed);
    let mut config = SimConfig::new(seed, NODES);
    config.registry_dir = Some(dir.path().to_path_buf());
    config.repair_rate = 0.05;
    config.grid = Some(SimGrid {
        slots: SLOTS,
        prefetch: PREFETCH,
        kinds: gridkeeper::worker::builtin::kinds().with(Stall).with(Drag),
        ..SimGrid::new()
    });
    config.workload = Some(workload(shared.clone(), seed, jobs.clone()));
    let mut cluster = SimCluster::new(config).expect("cluster");
    let schedule = FaultSchedule::random(seed, NODES, CHAOS_MS);
    let faults = cluster.run_schedule(&schedule).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    assert!(
        faults.crashes() >= 1 && faults.restarts() >= 1 && faults.partitions() >= 1,
        "seed {seed}: the schedule must crash, restart and cut: {faults:?}"
    );
    cluster.heal();
    shared.healed.store(true, Ordering::Relaxed);
    let settled = cluster
        .run_until(HEAL_MS_MAX, |cluster| {
            let submitted =
                shared.batches.lock().expect("batches").values().filter(|&&n| n >= BATCHES_PER_NODE).count();
            if submitted < NODES as usize || !shared.jobs_removed.load(Ordering::Relaxed) {
                return false;
            }
            let accepted = shared.accepted.lock().expect("accepted").clone();
            final_tasks(cluster).is_some_and(|(tasks, jobs)| {
                jobs == 0
                    && accepted.keys().all(|id| tasks.contains_key(id))
                    && tasks.values().all(|task| task.state.is_terminal())
            })
        })
        .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    let accepted = shared.accepted.lock().expect("accepted").clone();
    let (tasks, _) = final_tasks(&cluster).expect("a coordinator runs");
    let missing: Vec<&TaskId> = accepted.keys().filter(|id| !tasks.contains_key(id)).collect();
    assert!(settled, "seed {seed}: not every task ended ({} accepted, missing {missing:?})", accepted.len());
    assert!(!accepted.is_empty(), "seed {seed}: nothing was accepted");
    let twice = shared.ids_given_twice.lock().expect("ids").clone();
    assert!(twice.is_empty(), "seed {seed}: ids handed to two submissions: {twice:?}");
    for (id, spec) in &accepted {
        assert_eq!(&tasks[id].spec, spec, "seed {seed}: task {id:?} is not the task its submitter was given it for");
    }
    check_tasks(seed, &tasks);
    let scheduled_at = shared.jobs_scheduled_at.lock().expect("jobs").expect("the jobs were scheduled");
    check_jobs(seed, &jobs, scheduled_at, &tasks);
    for (node, peak) in cluster.worker_peaks() {
        assert!(peak <= SLOTS, "seed {seed}: node {node} ran {peak} attempts at once");
    }
    drop(cluster);
    drop(dir);
    let run = Run { tasks, faults, accepted: accepted.len() };
    if let Ok(path) = std::env::var("GK_SIM_DUMP") {
        static DUMPS: AtomicU64 = AtomicU64::new(0);
        let n = DUMPS.fetch_add(1, Ordering::Relaxed);
        std::fs::write(format!("{path}-{seed}-{n}"), format!("{run:#?}")).expect("dump");
    }
    run
}

/// Every task ended once and well, and its attempts kept to its timers.
fn check_tasks(seed: u64, tasks: &BTreeMap<TaskId, Task>) {
    for (id, task) in tasks {
        let attempts = &task.attempts;
        let states: Vec<AttemptState> = attempts.iter().map(|attempt| attempt.state).collect();
        assert_eq!(task.state, TaskState::Succeeded, "seed {seed}: task {id:?} ended {:?}: {attempts:?}", task.state);
        let wins = states.iter().filter(|state| **state == AttemptState::Succeeded).count();
        assert_eq!(wins, 1, "seed {seed}: task {id:?} completion recorded {wins} times: {states:?}");
        assert!(
            states.iter().all(|state| !matches!(state, AttemptState::Assigned | AttemptState::Running)),
            "seed {seed}: task {id:?} has an open attempt: {states:?}"
        );
        let first = attempts.first().expect("a succeeded task has an attempt");
        assert!(
            first.assigned_ms >= task.spec.not_before_ms && first.assigned_ms >= task.submitted_ms,
            "seed {seed}: task {id:?} assigned at {} before its time ({} / {})",
            first.assigned_ms,
            task.spec.not_before_ms,
            task.submitted_ms
        );
        let mut used = 0;
        for (index, attempt) in attempts.iter().enumerate() {
            used += u32::from(attempt.state != AttemptState::Lost);
            let ended = attempt.ended_ms.expect("every attempt ended");
            if attempt.state == AttemptState::TimedOut {
                let deadline = match attempt.started_ms {
                    Some(started) => started + task.spec.timeout_ms,
                    None => attempt.assigned_ms + task.spec.timeout_ms + UNSTARTED_GRACE_MS,
                };
                assert!(ended > deadline, "seed {seed}: task {id:?} timed out at {ended}, before {deadline}");
            }
            if matches!(attempt.state, AttemptState::Failed | AttemptState::TimedOut) {
                if let Some(next) = attempts.get(index + 1) {
                    let ready = ended + task.spec.retry.backoff_before(used + 1);
                    assert!(
                        next.assigned_ms >= ready,
                        "seed {seed}: task {id:?} retried at {} before its backoff ran out at {ready}: {task:?}",
                        next.assigned_ms
                    );
                }
            }
        }
        if task.spec.kind == Stall::NAME {
            assert!(
                matches!(states[0], AttemptState::TimedOut | AttemptState::Lost),
                "seed {seed}: task {id:?}'s stalled attempt ended {:?}",
                states[0]
            );
        }
    }
}

/// No job fired before its due time, nor twice for one due time: its k-th run (k from 0) was
/// submitted no earlier than the k-th fire time after it was scheduled.
fn check_jobs(seed: u64, jobs: &Jobs, scheduled_at: u64, tasks: &BTreeMap<TaskId, Task>) {
    for job in &jobs.specs {
        let runs: Vec<&Task> = tasks.values().filter(|task| task.spec == job.task).collect();
        let mut due = scheduled_at;
        for (k, run) in runs.iter().enumerate() {
            due = job.cadence.next_after(due).expect("the cadence goes on");
            assert!(
                run.submitted_ms >= due,
                "seed {seed}: job {} run {k} (task {:?}) submitted at {}, before its fire time {due}",
                job.name,
                run.id,
                run.submitted_ms
            );
        }
    }
}

#[test]
fn every_accepted_task_ends_exactly_once_through_crashes_partitions_and_leader_changes() {
    log_if_asked();
    let totals = Mutex::new(BTreeMap::<&str, usize>::new());
    let report = Swarm::new("sim_grid", "every_accepted_task_ends_exactly_once", SCHEDULES, 1)
        .replay_every(REPLAY_EVERY)
        .run(|seed| {
            let run = run(seed);
            let count = |pick: &dyn Fn(&Task) -> bool| run.tasks.values().filter(|task| pick(task)).count();
            let has = |state: AttemptState| move |task: &Task| task.attempts.iter().any(|a| a.state == state);
            let lost = count(&has(AttemptState::Lost));
            let failed = count(&has(AttemptState::Failed));
            let timed_out = count(&has(AttemptState::TimedOut));
            let delayed = count(&|task| task.spec.not_before_ms > 0);
            let job_runs = count(&|task| task.spec.kind == "echo");
            let stolen = count(&|task| task.attempts.iter().any(stolen));
            let mut totals = totals.lock().expect("totals");
            for (name, value) in [
                ("tasks", run.tasks.len()),
                ("lost", lost),
                ("failed", failed),
                ("timed out", timed_out),
                ("delayed", delayed),
                ("job runs", job_runs),
                ("stolen", stolen),
                ("leader crashes", run.faults.leader_crashes()),
                ("faults", run.faults.faults()),
            ] {
                *totals.entry(name).or_default() += value;
            }
            if gridkeeper::sim::swarm::seed_from_env().is_some() {
                eprintln!(
                    "seed {seed}: {} tasks ({} accepted by submitters), {lost} with a lost attempt, {failed} failed, \
                     {timed_out} timed out, {delayed} delayed, {job_runs} job runs, {stolen} stolen; {:?}",
                    run.tasks.len(),
                    run.accepted,
                    run.faults
                );
            }
            run
        });
    let mut totals = totals.into_inner().expect("totals");
    // Submissions that found room were placed in their own entry (state version 7) on every replica.
    totals.insert("placed at submission", gridkeeper::service::hub::placed_at_submission() as usize);
    // Submissions that waited for a slot shared an entry with others.
    let (entries, merged) = gridkeeper::service::hub::merged_totals();
    totals.insert("merged submissions", (merged - entries) as usize);
    eprintln!("{} schedules: {totals:?}", report.schedules);
    // Over the swarm every timer and fault must have been exercised.
    for name in [
        "lost",
        "failed",
        "timed out",
        "delayed",
        "job runs",
        "stolen",
        "leader crashes",
        "placed at submission",
        "merged submissions",
    ] {
        assert!(totals[name] > 0, "no schedule had any {name}: {totals:?}");
    }
}

/// Logs to stderr when `RUST_LOG` is set (for a replayed seed).
fn log_if_asked() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
}

#[test]
fn a_seed_replays_the_same_run() {
    log_if_asked();
    let seed = gridkeeper::sim::swarm::seed_from_env().unwrap_or(11);
    let first = run(seed);
    let second = run(seed);
    assert!(first.tasks.values().any(|task| task.attempts.len() > 1), "seed {seed}: no retry to replay");
    assert_eq!(first, second, "seed {seed} did not replay");
}
