//! A simulation swarm: one test runs many seeded schedules, on parallel threads (each turmoil
//! simulation is single-threaded), and a failing seed prints the one command that replays it.
//!
//! How many schedules run is the test's default (what every `cargo test` runs) unless the
//! environment says otherwise, for longer runs by hand or at night:
//! - `GK_SIM_SEED=<seed>` runs that seed alone, on the calling thread: the replay.
//! - `GK_SIM_SCHEDULES=<n>` runs `n` schedules.
//! - `GK_SIM_SECONDS=<s>` runs schedules until `s` real seconds have passed (and at most
//!   `GK_SIM_SCHEDULES`, if also set).
//! - `GK_SIM_SEED_BASE=<seed>` numbers the seeds from there. By default the test's own fixed base, so
//!   that CI runs the same schedules every time; when a count or a budget is given and no base, a
//!   random one (printed), so that a long run explores new schedules.
//! - `GK_SIM_THREADS=<n>` threads (default: the machine's parallelism).
//!
//! `GRIDKEEPER_SIM_SEED` is read as `GK_SIM_SEED`, its older name.
//!
//! Every `replay_every`-th schedule runs twice and must give the same result, so replay from a seed is
//! checked across the swarm, not only on one chosen seed. That check needs a build that replays
//! exactly ([`super::REPLAYS_EXACTLY`]: `RUSTFLAGS="--cfg tokio_unstable"`); other builds skip it and
//! say so.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::clock::{OsDeadline, Stopwatch};

/// Stack of each swarm thread: simulated nodes nest deep futures, and a history checker may recurse
/// once per operation.
const STACK_BYTES_DEFAULT: usize = 256 << 20;

/// A swarm of one test's schedules.
#[derive(Debug, Clone)]
pub struct Swarm {
    test_binary: String,
    test_name: String,
    schedules: u64,
    seed_base: u64,
    replay_every: u64,
    stack_bytes: usize,
}

/// What a swarm ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwarmReport {
    /// Schedules run (a replayed one counts once).
    pub schedules: u64,
    /// Schedules run twice and compared.
    pub replayed: u64,
}

/// The seed `GK_SIM_SEED` (or `GRIDKEEPER_SIM_SEED`) asks to replay, if any.
///
/// # Panics
/// If the variable is set but is not a number.
pub fn seed_from_env() -> Option<u64> {
    ["GK_SIM_SEED", "GRIDKEEPER_SIM_SEED"].iter().find_map(|name| env_number(name))
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(text.trim().parse().unwrap_or_else(|_| panic!("{name}={text} is not a number")))
}

impl Swarm {
    /// A swarm for the test `test_name` in `tests/<test_binary>.rs`, running `schedules` schedules
    /// by default, seeds counted from `seed_base`.
    pub fn new(test_binary: &str, test_name: &str, schedules: u64, seed_base: u64) -> Swarm {
        Swarm {
            test_binary: test_binary.to_string(),
            test_name: test_name.to_string(),
            schedules,
            seed_base,
            replay_every: 0,
            stack_bytes: STACK_BYTES_DEFAULT,
        }
    }

    /// Runs every `every`-th schedule twice and checks both give the same result (0: never).
    pub fn replay_every(mut self, every: u64) -> Swarm {
        self.replay_every = every;
        self
    }

    /// The command that replays `seed`.
    pub fn replay_command(&self, seed: u64) -> String {
        format!("GK_SIM_SEED={seed} cargo test --test {} {} -- --nocapture", self.test_binary, self.test_name)
    }

    /// Runs the swarm: `schedule(seed)` for each seed, panicking on a broken invariant and returning
    /// what must replay. Returns what ran.
    ///
    /// # Panics
    /// If any schedule panicked or did not replay, after every thread stopped, with the first
    /// failing seed and the command that replays it.
    pub fn run<R, F>(&self, schedule: F) -> SwarmReport
    where
        R: PartialEq + std::fmt::Debug,
        F: Fn(u64) -> R + Sync,
    {
        self.run_checking(schedule, super::REPLAYS_EXACTLY)
    }

    fn run_checking<R, F>(&self, schedule: F, replays_exactly: bool) -> SwarmReport
    where
        R: PartialEq + std::fmt::Debug,
        F: Fn(u64) -> R + Sync,
    {
        let replay_every = if replays_exactly { self.replay_every } else { 0 };
        if self.replay_every > 0 && !replays_exactly {
            eprintln!(
                "swarm {}: replay checks skipped: this build does not replay exactly \
                 (build with RUSTFLAGS=\"--cfg tokio_unstable\" to check them)",
                self.test_name
            );
        }
        if let Some(seed) = seed_from_env() {
            let replay = || {
                let first = schedule(seed);
                if replay_every > 0 {
                    assert_eq!(first, schedule(seed), "seed {seed} did not replay");
                }
            };
            // On a thread of the swarm's stack size, its panic passed on as it is.
            std::thread::scope(|scope| {
                let thread = std::thread::Builder::new().name(format!("seed-{seed}")).stack_size(self.stack_bytes);
                let outcome = thread.spawn_scoped(scope, replay).expect("the replay thread starts").join();
                if let Err(panic) = outcome {
                    std::panic::resume_unwind(panic);
                }
            });
            return SwarmReport { schedules: 1, replayed: u64::from(replay_every > 0) };
        }
        let count = env_number("GK_SIM_SCHEDULES");
        let budget = env_number("GK_SIM_SECONDS");
        let base = env_number("GK_SIM_SEED_BASE").unwrap_or_else(|| {
            if count.is_some() || budget.is_some() {
                rand::random::<u32>().into()
            } else {
                self.seed_base
            }
        });
        let limit = match (count, budget) {
            (Some(count), _) => count,
            (None, Some(_)) => u64::MAX,
            (None, None) => self.schedules,
        };
        let deadline = budget.map(|seconds| OsDeadline::after(std::time::Duration::from_secs(seconds)));
        let threads = env_number("GK_SIM_THREADS")
            .map_or_else(|| std::thread::available_parallelism().map_or(1, usize::from), |n| n.max(1) as usize);
        let run = Run { next: AtomicU64::new(0), stop: AtomicBool::new(false), failures: Mutex::default() };
        let replayed = AtomicU64::new(0);
        let stopwatch = Stopwatch::start();
        std::thread::scope(|scope| {
            for thread in 0..threads {
                let builder = std::thread::Builder::new().name(format!("swarm-{thread}")).stack_size(self.stack_bytes);
                builder
                    .spawn_scoped(scope, || {
                        while let Some(index) = run.claim(limit, deadline.as_ref()) {
                            let seed = base.wrapping_add(index);
                            let replay = replay_every > 0 && index % replay_every == 0;
                            if replay {
                                replayed.fetch_add(1, Ordering::Relaxed);
                            }
                            let outcome = catch_unwind(AssertUnwindSafe(|| {
                                let first = schedule(seed);
                                if replay {
                                    assert_eq!(first, schedule(seed), "seed {seed} did not replay");
                                }
                            }));
                            if let Err(panic) = outcome {
                                let message = panic_message(&*panic);
                                eprintln!("swarm: seed {seed} failed; replay it with: {}", self.replay_command(seed));
                                run.fail(seed, message);
                            }
                        }
                    })
                    .expect("the swarm thread starts");
            }
        });
        let ran = run.next.load(Ordering::Relaxed).min(limit);
        let failures = run.failures.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        eprintln!(
            "swarm {}: {ran} schedules from seed {base} on {threads} threads in {:.1} s, {} replayed, {} failed",
            self.test_name,
            stopwatch.elapsed().as_secs_f64(),
            replayed.load(Ordering::Relaxed),
            failures.len(),
        );
        if let Some((seed, message)) = failures.iter().min_by_key(|(seed, _)| *seed) {
            let seeds: Vec<u64> = failures.iter().map(|(seed, _)| *seed).collect();
            panic!(
                "{} schedule(s) failed (seeds {seeds:?}); seed {seed}: {message}\nreplay it with: {}",
                failures.len(),
                self.replay_command(*seed)
            );
        }
        SwarmReport { schedules: ran, replayed: replayed.load(Ordering::Relaxed) }
    }
}

/// The threads' shared progress.
struct Run {
    next: AtomicU64,
    stop: AtomicBool,
    failures: Mutex<Vec<(u64, String)>>,
}

impl Run {
    /// The next schedule's index, unless the count or the budget is spent or a schedule failed.
    fn claim(&self, limit: u64, deadline: Option<&OsDeadline>) -> Option<u64> {
        if self.stop.load(Ordering::Relaxed) || deadline.is_some_and(OsDeadline::passed) {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        (index < limit).then_some(index)
    }

    /// Records a failure and stops the other threads after their current schedule.
    fn fail(&self, seed: u64, message: String) {
        self.stop.store(true, Ordering::Relaxed);
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((seed, message));
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swarm_runs_its_count_and_replays_every_nth() {
        let swarm = Swarm::new("sim_x", "swarm", 20, 1_000).replay_every(5);
        let calls = AtomicU64::new(0);
        let report = swarm.run_checking(
            |seed| {
                calls.fetch_add(1, Ordering::Relaxed);
                seed * 2
            },
            true,
        );
        if seed_from_env().is_none() && std::env::var("GK_SIM_SCHEDULES").is_err() {
            assert_eq!(report, SwarmReport { schedules: 20, replayed: 4 });
            assert_eq!(calls.load(Ordering::Relaxed), 24);
        }
    }

    #[test]
    fn a_failing_seed_names_its_replay_command() {
        let swarm = Swarm::new("sim_x", "swarm", 10, 500);
        let failure = catch_unwind(AssertUnwindSafe(|| {
            swarm.run(|seed| assert_ne!(seed, 503, "seed {seed} breaks"));
        }));
        if seed_from_env().is_none() && std::env::var("GK_SIM_SCHEDULES").is_err() {
            let message = panic_message(&*failure.expect_err("seed 503 fails"));
            assert!(message.contains("GK_SIM_SEED=503 cargo test --test sim_x swarm -- --nocapture"), "{message}");
        }
    }

    #[test]
    fn a_schedule_that_does_not_replay_fails() {
        let swarm = Swarm::new("sim_x", "swarm", 4, 0).replay_every(1);
        let calls = AtomicU64::new(0);
        let failure = catch_unwind(AssertUnwindSafe(|| {
            swarm.run_checking(|_| calls.fetch_add(1, Ordering::Relaxed), true);
        }));
        let message = panic_message(&*failure.expect_err("two runs differ"));
        assert!(message.contains("did not replay"), "{message}");
    }
}
