//! The node's monotonic clock, the one place the shell reads time.
//!
//! It reads tokio's clock, not `std::time`, so that simulated time (turmoil, paused tokio time) drives
//! every timer and timestamp the same way real time does.

use crate::ids::Millis;

/// Milliseconds and microseconds since the clock was made.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn start() -> Clock {
        Clock { origin: tokio::time::Instant::now() }
    }

    /// Milliseconds since the origin.
    pub fn now(&self) -> Millis {
        Millis(self.origin.elapsed().as_millis() as u64)
    }

    /// Microseconds since the origin, for round-trip measurements.
    pub fn micros(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// The tokio instant of a point on this clock, for sleeping until it.
    pub fn instant_at(&self, at: Millis) -> tokio::time::Instant {
        self.origin + std::time::Duration::from_millis(at.0)
    }
}

/// Wall-clock milliseconds since the Unix epoch, for timestamps shown to people.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}
