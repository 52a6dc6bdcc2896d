//! The node's clocks: the one place gridkeeper reads time.
//!
//! Two clocks, both read only through this module:
//! - **Monotonic time**, for timers, deadlines and measured durations: [`monotonic`] (a point),
//!   [`Clock`] (milliseconds since an origin, fed to the core modules as `Millis`) and [`Stopwatch`]
//!   (a duration for a metric). It is tokio's clock, so whatever drives tokio's time drives it.
//! - **Unix time**, [`unix_millis`], for timestamps that enter the replicated log (a proposal's
//!   `now_ms`, from which every replica computes session and TTL expiry, attempt timeouts, retry
//!   backoff, not-before times, aging and cron) and for timestamps shown to people.
//!
//! Under simulation both come from the simulator. Each turmoil host runs on a tokio runtime whose
//! paused clock turmoil advances, so monotonic time is simulated; and Unix time is [`SIM_EPOCH_MS`]
//! plus turmoil's simulated elapsed time, whatever epoch the simulation was built with. A seed
//! therefore replays every grid timer and every timestamp. Outside a simulation, Unix time is the
//! system's.
//!
//! One kind of wait stays on the operating system's clock: a thread that blocks (sleeps) until
//! something outside the runtime happens, such as another thread releasing a file lock. Simulated
//! time stands still while a host's thread blocks, so such a wait measures real time with an
//! [`OsDeadline`] (as does a simulation swarm's budget of real seconds).
//!
//! What it does not do: the deterministic cores (`registry/`, `grid/`, the detector, ...) never call
//! it. Time reaches them as an argument (`Millis`, `now_ms`), read here by the shell.
//!
//! Invariant: no other file under `runtime/` reads `SystemTime`, `std::time::Instant` or
//! `tokio::time::Instant::now`. The one exception is the `spin` built-in's CPU loop
//! (`worker/builtin.rs`), user code that burns real CPU time for as long as it was asked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ids::Millis;

/// A point in monotonic time: tokio's instant, simulated under turmoil and paused tokio time.
pub type Instant = tokio::time::Instant;

/// The Unix time (ms) at which every simulation starts: 2024-01-01T00:00:00Z. Fixed, so that wall
/// time, like everything else in a simulation, follows from the seed alone; midnight on the first of
/// January, so that cron schedules start from a plain boundary.
pub const SIM_EPOCH_MS: u64 = 1_704_067_200_000;

/// Now, on the monotonic clock.
pub fn monotonic() -> Instant {
    Instant::now()
}

/// Milliseconds since the Unix epoch: the simulator's under turmoil (see the module docs), the
/// system's otherwise. It may jump (NTP) outside a simulation; measure durations with [`monotonic`].
pub fn unix_millis() -> u64 {
    match turmoil::sim_elapsed() {
        Some(elapsed) => SIM_EPOCH_MS.saturating_add(duration_millis(elapsed)),
        None => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, duration_millis),
    }
}

/// A point in Unix time, as libraries take it.
pub type UnixTime = SystemTime;

/// [`unix_millis`] as a [`UnixTime`], for libraries that take one (quinn's token clock).
pub fn unix_time() -> UnixTime {
    UNIX_EPOCH + Duration::from_millis(unix_millis())
}

/// [`SIM_EPOCH_MS`] as a `SystemTime`, for a simulation builder (turmoil's `Builder::epoch`), so that
/// the simulator's own timestamps (its file system's) agree with [`unix_millis`].
pub fn sim_epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(SIM_EPOCH_MS)
}

fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds and microseconds since the clock was made, on the monotonic clock (in a simulation,
/// possibly at a drifting rate: [`Clock::start_at_rate`]).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    /// The clock's rate in millionths of the monotonic clock's.
    ppm: u64,
}

/// The monotonic clock's own rate, in millionths.
const REAL_PPM: u64 = 1_000_000;

impl Clock {
    /// A clock whose origin is now.
    pub fn start() -> Clock {
        Clock { origin: monotonic(), ppm: REAL_PPM }
    }

    /// Simulation only: a clock whose origin is now and that runs at `ppm` millionths of the monotonic
    /// clock's rate, to show that a drift bound holds (`tests/sim_actors.rs`). Never used on a node.
    #[doc(hidden)]
    pub fn start_at_rate(ppm: u64) -> Clock {
        Clock { origin: monotonic(), ppm: ppm.max(1) }
    }

    /// What this clock measures while the monotonic clock measures `real`, rounded down.
    fn scaled(&self, real: Duration) -> Duration {
        if self.ppm == REAL_PPM {
            return real;
        }
        let nanos = real.as_nanos() * u128::from(self.ppm) / u128::from(REAL_PPM);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Milliseconds since the origin.
    pub fn now(&self) -> Millis {
        Millis(duration_millis(self.scaled(self.origin.elapsed())))
    }

    /// Microseconds since the origin, for round-trip measurements.
    pub fn micros(&self) -> u64 {
        u64::try_from(self.scaled(self.origin.elapsed()).as_micros()).unwrap_or(u64::MAX)
    }

    /// The tokio instant of a point on this clock, for sleeping until it: the first instant at which
    /// [`Clock::now`] reads at least `at`.
    pub fn instant_at(&self, at: Millis) -> Instant {
        if self.ppm == REAL_PPM {
            return self.origin + Duration::from_millis(at.0);
        }
        let nanos = (u128::from(at.0) * 1_000_000 * u128::from(REAL_PPM)).div_ceil(u128::from(self.ppm));
        self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Measures how long something took, on the monotonic clock (so a simulated run measures simulated
/// time): for metrics, never for a decision.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch {
    started: Instant,
}

impl Stopwatch {
    /// A stopwatch running from now.
    pub fn start() -> Stopwatch {
        Stopwatch { started: monotonic() }
    }

    /// Time since [`Stopwatch::start`].
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A deadline on the operating system's monotonic clock, for the waits simulated time cannot measure:
/// a thread that blocks (`std::thread::sleep`) until something outside the async runtime happens
/// (simulated time would not move while it blocks, so the wait could never end), and a budget of real
/// seconds for a run of many simulations.
#[derive(Clone, Copy, Debug)]
pub struct OsDeadline {
    at: std::time::Instant,
}

impl OsDeadline {
    /// The deadline `limit` from now.
    pub fn after(limit: Duration) -> OsDeadline {
        OsDeadline { at: std::time::Instant::now() + limit }
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        std::time::Instant::now() >= self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_outside_a_simulation_is_the_system_s() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64;
        let now = unix_millis();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64;
        assert!((before..=after).contains(&now), "{before} <= {now} <= {after}");
    }

    #[test]
    fn unix_time_inside_a_simulation_is_the_epoch_plus_simulated_time() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // A builder epoch other than ours: unix_millis must not depend on it.
        let mut sim = turmoil::Builder::new().epoch(UNIX_EPOCH).tick_duration(Duration::from_millis(1)).build();
        let record = seen.clone();
        sim.client("probe", async move {
            let stopwatch = Stopwatch::start();
            record.lock().expect("lock").push(unix_millis());
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            record.lock().expect("lock").push(unix_millis());
            assert_eq!(stopwatch.elapsed(), Duration::from_millis(1_500));
            Ok(())
        });
        sim.run().expect("the probe runs");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 2);
        assert!((SIM_EPOCH_MS..SIM_EPOCH_MS + 5).contains(&seen[0]), "{seen:?}");
        assert_eq!(seen[1] - seen[0], 1_500, "{seen:?}");
    }

    #[test]
    fn a_blocking_deadline_passes_in_real_time() {
        let deadline = OsDeadline::after(Duration::ZERO);
        assert!(deadline.passed());
        assert!(!OsDeadline::after(Duration::from_secs(3600)).passed());
    }
}
