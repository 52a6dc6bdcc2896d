//! Leader failover: 16 writers on every member, kill -9 of the leader, and the longest time during
//! which no write anywhere was acknowledged.
//!
//! The gap is measured by the clients, as a user sees it: it includes noticing the dead leader,
//! electing a new one, and the clients finding a live member. Every system's clients get the same
//! per-request deadline, because a client that waits out a long server-side timeout would otherwise
//! decide the result (etcd's 7 s request timeout, for one).

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cluster::{kill_hard, Control};
use crate::connection::{Op, Reach, Target};
use crate::driver::{connect_all, run_clients, Plan, Schedule, Tally};

/// Writers under which the leader is killed.
pub const FAILOVER_CLIENTS: usize = 16;

/// Per-request deadline during failover, the same for every system: a client gives up on a write
/// after this and sends the next one (to whichever member its library picks).
pub const FAILOVER_DEADLINE: Duration = Duration::from_secs(1);

/// What a failover run saw.
#[derive(Debug)]
pub struct Failover {
    /// Every request of the run (the whole run counts: there is no warm-up).
    pub tally: Tally,
    /// Length of the run.
    pub elapsed: Duration,
    /// Longest stretch without an acknowledged write, the run's edges included.
    pub gap: Duration,
}

/// Runs the failover workload against `target`, killing the leader `control` names.
///
/// # Errors
/// When the members cannot be reached, no leader is known, or the kill fails.
pub async fn failover(target: &Target, control: &Control, plan: &Plan) -> Result<Failover> {
    let connections = connect_all(target, FAILOVER_CLIENTS, Reach::All, 0).await?;
    // Asked before the load starts: the leader is stable until we kill it.
    let leader = control.leader().await?;
    let start = Instant::now();
    let kill_at = start + plan.failover_before;
    let until = kill_at + plan.failover_after;
    let schedule = Schedule { count_from: start, until, deadline: FAILOVER_DEADLINE, keep_acks: true };
    let load = tokio::spawn(run_clients(connections, Op::Write, schedule));
    tokio::time::sleep_until(kill_at.into()).await;
    let kill = kill_hard(leader.pid).await;
    let killed = Instant::now();
    let mut tally = load.await?;
    kill?;
    tally.acks.sort_unstable();
    let gap = longest_gap(start, until, &tally.acks);
    let first_after = tally.acks.iter().find(|&&ack| ack > killed).map(|&ack| ack.duration_since(killed));
    eprintln!(
        "peers: killed leader {} (pid {}); first write acknowledged {} after the kill; longest gap {} ms",
        leader.id,
        leader.pid,
        first_after.map_or_else(|| "never".to_string(), |after| format!("{} ms", after.as_millis())),
        gap.as_millis()
    );
    Ok(Failover { tally, elapsed: until.duration_since(start), gap })
}

/// The longest stretch without an instant of `acks` (sorted) from `from` on; a stretch still open at
/// `until` ends there.
fn longest_gap(from: Instant, until: Instant, acks: &[Instant]) -> Duration {
    let mut previous = from;
    let mut longest = Duration::ZERO;
    for &ack in acks.iter().chain(std::iter::once(&until)) {
        longest = longest.max(ack.saturating_duration_since(previous));
        previous = previous.max(ack);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_the_edges() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(longest_gap(t0, at(100), &[at(10), at(20), at(70)]), Duration::from_millis(50));
        assert_eq!(longest_gap(t0, at(100), &[at(60)]), Duration::from_millis(60));
        assert_eq!(longest_gap(t0, at(100), &[]), Duration::from_millis(100));
        // A request started in time but acknowledged after the end still closes the gap it ends.
        assert_eq!(longest_gap(t0, at(100), &[at(10), at(120)]), Duration::from_millis(110));
    }
}
