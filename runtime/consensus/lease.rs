//! The leader lease: when a leader may answer a linearizable read from its own state, without a
//! quorum round (ReadIndex), and when a restarted node may vote again.
//!
//! Core: no clock, no I/O. The coordinator feeds it readings of the node's monotonic clock (as
//! [`Duration`]s since an origin) and what openraft's metrics say; it answers whether the lease is
//! held, until when, and at which index the read is served.
//!
//! # Assumptions
//! - **Bounded drift.** For any two nodes `a`, `b` and any interval of real time, the time `b`'s
//!   monotonic clock measures is at most `(1 + ρ)` times what `a`'s measures, with
//!   `ρ = DRIFT_PPM / 10⁶` = 5 %. A server's quartz drifts by at most about 100 ppm and NTP slews
//!   the monotonic clock by at most 500 ppm, so 5 % is some 80 times the worst steady drift; it
//!   also covers a leader whose clock runs slow for a while under a throttled VM. It costs little:
//!   the lease lasts 169 ms on a 180 ms window and every 20 ms heartbeat renews it, so it runs out
//!   only when no AppendEntries of the last 169 ms has been acknowledged by a quorum, and then the
//!   read falls back to ReadIndex.
//! - **No jumps.** Monotonic clocks never step, and a node's clock counts all the real time its
//!   process lives: a host suspended with the leader on it (CLOCK_MONOTONIC stops during system
//!   suspend) breaks the assumption, a paused process does not (its clock keeps running).
//! - **One window everywhere.** Every voter runs with the same `election_timeout_max` (the
//!   coordinator's `RaftTimings`, not a flag). A build that lowers it must first ship a release whose
//!   lease uses the lower value.
//! - **No leadership transfer.** openraft grants a transfer's vote inside the window; gridkeeper
//!   never transfers leadership.
//!
//! # Derivation
//! Let `W` be openraft's follower window, `election_timeout_max`. A follower that processes an
//! AppendEntries of the leader's committed vote stamps it with its own clock (`Leased::touch` in
//! openraft's vote handler) and refuses every vote request while its clock reads within `W` of the
//! stamp (`handle_vote_req`: "leader lease has not yet expired"); its own election timer fires only
//! `W` plus an election timeout after the stamp, so its vote for itself comes later still. A node
//! that restarts forgets the stamp (openraft loads the vote with a zero lease, see the TODO in its
//! `storage/helper.rs`): the coordinator then refuses vote requests and keeps its election timer off
//! until its clock reads `W` past its start ([`LeaseRule::votes_open`]), which stands for the
//! forgotten stamp since the start comes after it.
//!
//! The leader records `acked`, the time on its clock at which it sent the last AppendEntries that
//! a quorum `Q` acknowledged (openraft's `last_quorum_acked`). Each member of `Q` stamped it at or
//! after the real time `t_s` it was sent. A new leader needs the votes of a quorum, which shares a
//! member `f` with `Q`; `f` votes only once its clock has run `W` past its stamp, so no other leader
//! exists, and nothing is committed in a later term, before `f`'s clock has measured `W` since
//! `t_s`. Over that real interval the leader's clock measures at least `W / (1 + ρ)`. So while the
//! leader's clock reads less than `acked + W / (1 + ρ)`, no write can have completed anywhere that
//! this leader has not committed itself.
//!
//! Each of the two readings that matter (the follower's stamp, the leader's `now`) may lag real time
//! by one tick of the clock read; [`CLOCK_SLACK`] takes two such ticks off. The lease is therefore
//!
//! ```text
//! held while  now < until = acked + W / (1 + ρ) - CLOCK_SLACK
//! ```
//!
//! Served at which index: the leader's committed index, and only once it has committed an entry of
//! its own term (its blank entry). Before that it may not know everything earlier leaders
//! committed; after it, every entry committed in an earlier term lies below that entry, and every
//! write acknowledged in this term was applied here before it was acknowledged. A reader waits until
//! it has applied that index, so the read sees every write that completed before the check, which
//! is its linearization point. A sole voter holds the lease always: no other node can be elected.
//!
//! What it does not do: read a clock, count reads (the coordinator does), or renew anything: the
//! lease is renewed by openraft's heartbeats alone.

use std::time::Duration;

/// `ρ`, the bound on the relative drift of any two nodes' monotonic clocks, in millionths: 5 %.
pub const DRIFT_PPM: u64 = 50_000;

/// What two clock readings may lag real time together: one millisecond each, the tick of the
/// coarsest clock a monotonic reading might come from on the platforms gridkeeper runs on.
pub const CLOCK_SLACK: Duration = Duration::from_millis(2);

const PPM: u128 = 1_000_000;

/// The lease's parameters: the followers' window and the drift and slack taken off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRule {
    window: Duration,
    drift_ppm: u64,
    slack: Duration,
}

/// A leader's committed log id, as far as the lease cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The term of the leader that proposed the entry.
    pub term: u64,
    /// Its index.
    pub index: u64,
}

/// What the leader knows when a read asks for the lease. Times are readings of this node's lease
/// clock, as durations since its origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderView {
    /// Now.
    pub now: Duration,
    /// Whether this node is openraft's leader (its state, and the leader it names).
    pub leading: bool,
    /// Its current term.
    pub term: u64,
    /// Whether it is the only voter (no joint configuration either).
    pub sole_voter: bool,
    /// When it sent the last AppendEntries a quorum acknowledged in this term, if any has been.
    pub acked: Option<Duration>,
    /// The last entry it knows committed.
    pub committed: Option<Committed>,
}

/// The answer: serve the read at `read_index`, or confirm leadership with a quorum round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The lease is held: the read is served at `read_index`, and further reads may be until `until`
    /// (`None` for a sole voter, whose lease never ends).
    Held {
        /// Index the reader must have applied.
        read_index: u64,
        /// First reading of the lease clock at which the lease no longer holds.
        until: Option<Duration>,
    },
    /// It is not: fall back to ReadIndex.
    NotHeld(NotHeld),
}

/// Why the lease is not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotHeld {
    /// This node does not lead.
    NotLeader,
    /// No entry of this term is committed yet (just elected).
    TermNotCommitted,
    /// No quorum has acknowledged this leader yet.
    NoQuorumAck,
    /// The last quorum acknowledgement is too old: it ran out at `until`.
    Expired {
        /// When the lease ended.
        until: Duration,
    },
}

impl LeaseRule {
    /// The rule for a follower window of `window` (openraft's `election_timeout_max`), with
    /// [`DRIFT_PPM`] and [`CLOCK_SLACK`].
    pub const fn new(window: Duration) -> LeaseRule {
        LeaseRule { window, drift_ppm: DRIFT_PPM, slack: CLOCK_SLACK }
    }

    /// The rule with another drift bound and slack (tests).
    pub const fn with_drift(window: Duration, drift_ppm: u64, slack: Duration) -> LeaseRule {
        LeaseRule { window, drift_ppm, slack }
    }

    /// How long the lease lasts on the leader's clock after the quorum-acknowledged send time:
    /// `W / (1 + ρ) - slack`, rounded down to the nanosecond (zero if the slack eats it all).
    pub fn length(&self) -> Duration {
        let nanos = self.window.as_nanos() * PPM / (PPM + u128::from(self.drift_ppm));
        let shrunk = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        shrunk.saturating_sub(self.slack)
    }

    /// Whether a node that started at reading `started` may grant votes and stand for election at
    /// reading `now`: only once its clock has run a whole window past its start, which stands for
    /// the stamp of any AppendEntries it acknowledged before it restarted.
    pub fn votes_open(&self, started: Duration, now: Duration) -> bool {
        now.saturating_sub(started) > self.window
    }

    /// How long after its start a node keeps its votes closed (see [`Self::votes_open`]).
    pub fn vote_guard(&self) -> Duration {
        self.window
    }

    /// Whether the leader holds its lease, and at which index it serves a read if so.
    pub fn check(&self, view: &LeaderView) -> Lease {
        if !view.leading {
            return Lease::NotHeld(NotHeld::NotLeader);
        }
        let read_index = match view.committed {
            Some(committed) if committed.term == view.term => committed.index,
            _ => return Lease::NotHeld(NotHeld::TermNotCommitted),
        };
        if view.sole_voter {
            return Lease::Held { read_index, until: None };
        }
        let Some(acked) = view.acked else { return Lease::NotHeld(NotHeld::NoQuorumAck) };
        let until = acked.saturating_add(self.length());
        if view.now < until {
            Lease::Held { read_index, until: Some(until) }
        } else {
            Lease::NotHeld(NotHeld::Expired { until })
        }
    }
}

/// A clock that runs at `rate_ppm` millionths of the rate of the clock it reads: the real one at
/// 10⁶ (always, outside simulation); in simulation, a drifting one, to show what the drift bound
/// buys (`tests/sim_lease.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockRate {
    ppm: u64,
}

impl Default for ClockRate {
    fn default() -> Self {
        ClockRate { ppm: 1_000_000 }
    }
}

impl ClockRate {
    /// A clock running at `ppm` millionths of the real rate.
    pub const fn from_ppm(ppm: u64) -> ClockRate {
        ClockRate { ppm }
    }

    /// Its rate in millionths.
    pub const fn ppm(self) -> u64 {
        self.ppm
    }

    /// What this clock measures while the real one measures `real`, rounded down.
    pub fn scale(self, real: Duration) -> Duration {
        let nanos = real.as_nanos() * u128::from(self.ppm) / PPM;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(180);

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A leader in term 3 that committed index 40 of its term, acknowledged at 1,000 ms.
    fn leader(now: Duration) -> LeaderView {
        LeaderView {
            now,
            leading: true,
            term: 3,
            sole_voter: false,
            acked: Some(ms(1_000)),
            committed: Some(Committed { term: 3, index: 40 }),
        }
    }

    #[test]
    fn the_lease_is_the_window_shrunk_by_the_drift_bound_less_the_slack() {
        // 180 ms / 1.05 = 171.428571 ms, less 2 ms.
        assert_eq!(LeaseRule::new(W).length(), Duration::from_nanos(171_428_571) - ms(2));
        assert_eq!(LeaseRule::with_drift(W, 0, Duration::ZERO).length(), W);
        assert_eq!(LeaseRule::with_drift(W, 1_000_000, Duration::ZERO).length(), ms(90));
        // A slack longer than the window leaves no lease at all.
        assert_eq!(LeaseRule::with_drift(ms(1), 0, ms(5)).length(), Duration::ZERO);
    }

    #[test]
    fn a_leader_holds_the_lease_until_its_end_and_serves_its_committed_index() {
        let rule = LeaseRule::new(W);
        let until = ms(1_000) + rule.length();
        assert_eq!(rule.check(&leader(ms(1_000))), Lease::Held { read_index: 40, until: Some(until) });
        let last = until - Duration::from_nanos(1);
        assert_eq!(rule.check(&leader(last)), Lease::Held { read_index: 40, until: Some(until) });
        assert_eq!(rule.check(&leader(until)), Lease::NotHeld(NotHeld::Expired { until }));
        assert_eq!(rule.check(&leader(ms(5_000))), Lease::NotHeld(NotHeld::Expired { until }));
    }

    #[test]
    fn the_lease_ends_before_any_follower_could_vote_even_at_the_worst_drift() {
        // The leader's clock runs slow by the whole bound against a follower's: the lease must end
        // (in real time) before the follower's window, measured from the same send time, does.
        let rule = LeaseRule::new(W);
        let leader_clock = ClockRate::from_ppm(1_000_000 * 1_000_000 / (1_000_000 + DRIFT_PPM));
        for real_ms in 0..=W.as_millis() as u64 {
            let real = ms(real_ms);
            let view = LeaderView { now: ms(1_000) + leader_clock.scale(real), ..leader(ms(0)) };
            if matches!(rule.check(&view), Lease::Held { .. }) {
                assert!(real < W, "held {real:?} after the send: a follower may vote from {W:?}");
            }
        }
        // ... while a leader's clock that runs at a fifth of the rate holds it far too long.
        let slow = ClockRate::from_ppm(200_000);
        let view = LeaderView { now: ms(1_000) + slow.scale(ms(500)), ..leader(ms(0)) };
        assert!(matches!(rule.check(&view), Lease::Held { .. }), "the negative control's premise");
    }

    #[test]
    fn no_lease_without_leadership_a_committed_entry_of_the_term_or_a_quorum_ack() {
        let rule = LeaseRule::new(W);
        let now = ms(1_010);
        let follower = LeaderView { leading: false, ..leader(now) };
        assert_eq!(rule.check(&follower), Lease::NotHeld(NotHeld::NotLeader));
        let just_elected = LeaderView { committed: Some(Committed { term: 2, index: 39 }), ..leader(now) };
        assert_eq!(rule.check(&just_elected), Lease::NotHeld(NotHeld::TermNotCommitted));
        let nothing_committed = LeaderView { committed: None, ..leader(now) };
        assert_eq!(rule.check(&nothing_committed), Lease::NotHeld(NotHeld::TermNotCommitted));
        let never_acked = LeaderView { acked: None, ..leader(now) };
        assert_eq!(rule.check(&never_acked), Lease::NotHeld(NotHeld::NoQuorumAck));
    }

    #[test]
    fn a_sole_voter_holds_the_lease_without_acknowledgements_once_its_term_committed() {
        let rule = LeaseRule::new(W);
        let alone = LeaderView { sole_voter: true, acked: None, ..leader(ms(99_000)) };
        assert_eq!(rule.check(&alone), Lease::Held { read_index: 40, until: None });
        let alone_new = LeaderView { committed: Some(Committed { term: 2, index: 7 }), ..alone };
        assert_eq!(rule.check(&alone_new), Lease::NotHeld(NotHeld::TermNotCommitted));
    }

    #[test]
    fn a_restarted_node_votes_only_a_whole_window_after_its_start() {
        let rule = LeaseRule::new(W);
        let started = ms(50);
        assert!(!rule.votes_open(started, ms(50)));
        assert!(!rule.votes_open(started, ms(230)));
        assert!(rule.votes_open(started, ms(230) + Duration::from_nanos(1)));
        assert!(!rule.votes_open(started, ms(10)), "a reading before the start is no reason to vote");
        assert_eq!(rule.vote_guard(), W);
    }

    #[test]
    fn a_clock_rate_scales_what_it_measures() {
        assert_eq!(ClockRate::default().scale(ms(180)), ms(180));
        assert_eq!(ClockRate::from_ppm(200_000).scale(ms(500)), ms(100));
        assert_eq!(ClockRate::from_ppm(1_050_000).scale(ms(100)), ms(105));
        assert_eq!(ClockRate::from_ppm(0).scale(ms(100)), Duration::ZERO);
    }
}
