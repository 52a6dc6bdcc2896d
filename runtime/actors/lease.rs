//! The host lease and the handoff wait (core: no clock, no I/O; time comes in as [`Millis`]): the two
//! halves of "exactly one activation" that live on nodes rather than in the log.
//!
//! - [`HostLease`]: a host handles messages only while `now < renewed_at + HOST_LEASE_MS`, where
//!   `renewed_at` is the time this node *sent* a keepalive of its registration session that a
//!   linearizable stat of its registration then confirmed. The stat proves the registration existed
//!   after the keepalive was sent, so whatever deletes it (session expiry, or the leader expiring a
//!   node the mesh declared down) is committed later than `renewed_at` in real time.
//! - [`Handoff`]: a node lets an orphan (an actor whose owner's registration was deleted) handle
//!   messages again only `HANDOFF_WAIT_MS` after it *applied* the orphaning entry, by its own clock.
//!   Every node applies the deletion after it was committed, so the wait starts after the old host's
//!   `renewed_at`; it covers the old host's lease stretched by the drift bound both ways, plus two
//!   ticks: `ceil(HOST_LEASE_MS × (1+ρ)²) + 2 × tick` with ρ = 5% (the bound `consensus/lease.rs`
//!   states) and a 10 ms tick.
//!
//! A restarted host knows no orphaning time for entries it replayed before it started (or found in a
//! snapshot): it counts those from its own start (the `floor`), which is later still.
//!
//! Invariant: [`Handoff::may_activate`] is false for an orphan until `HANDOFF_WAIT_MS` after the
//! later of its recorded orphaning and the floor; [`HostLease::valid`] is false once lost until the
//! next renewal.

use std::collections::{BTreeMap, VecDeque};

use crate::grid::actors::ActorId;
use crate::ids::Millis;

/// How long a host keeps handling messages after the send time of its last confirmed keepalive.
pub const HOST_LEASE_MS: u64 = 300;

/// The drift bound between two nodes' monotonic clocks, in parts per million (5%, as
/// `consensus/lease.rs` states it).
pub const DRIFT_PPM: u64 = 50_000;

/// The host tick the wait allows twice (a timer fires at most this late on a live node).
pub const HOST_TICK_MS: u64 = 10;

/// How long after applying an orphaning entry a node waits before an orphan handles messages again.
pub const HANDOFF_WAIT_MS: u64 = 352;

/// `ceil(lease × (1+ρ)²) + 2 × tick`, computed exactly in integers.
const fn handoff_wait_ms() -> u64 {
    let scale: u64 = 1_000_000;
    let stretched = HOST_LEASE_MS * (scale + DRIFT_PPM) * (scale + DRIFT_PPM);
    stretched.div_ceil(scale * scale) + 2 * HOST_TICK_MS
}

// The named constant never falls below what the argument needs.
const _: () = assert!(HANDOFF_WAIT_MS >= handoff_wait_ms());

/// Orphanings remembered at once; past it the oldest are forgotten early, and an orphan without a
/// remembered time counts from the floor, which is then raised to the forgotten entry's time (so a
/// forgotten orphan never activates sooner than it would have).
pub const HANDOFF_ORPHANS_MAX: usize = 100_000;

/// The host's lease on handling messages.
#[derive(Debug, Clone, Default)]
pub struct HostLease {
    renewed_at: Option<Millis>,
}

impl HostLease {
    /// A lease not yet renewed (not valid).
    pub fn new() -> HostLease {
        HostLease::default()
    }

    /// A keepalive sent at `sent_at` was confirmed (keepalive answered alive, then a linearizable
    /// stat showed this session still owns the registration). An older send time never moves the
    /// lease back.
    pub fn renewed(&mut self, sent_at: Millis) {
        if self.renewed_at.is_none_or(|renewed| sent_at > renewed) {
            self.renewed_at = Some(sent_at);
        }
    }

    /// Whether the host may handle messages and propose commits at `now`.
    pub fn valid(&self, now: Millis) -> bool {
        self.renewed_at.is_some_and(|renewed| now < renewed.plus(HOST_LEASE_MS))
    }

    /// The registration was lost: invalid until the next renewal.
    pub fn lost(&mut self) {
        self.renewed_at = None;
    }

    /// When the lease lapses (if it is held), for the host's timer.
    pub fn expires_at(&self) -> Option<Millis> {
        self.renewed_at.map(|renewed| renewed.plus(HOST_LEASE_MS))
    }
}

/// When this node applied the entries that orphaned actors.
#[derive(Debug, Clone)]
pub struct Handoff {
    /// An orphan with no remembered time counts from here (the host's start, a snapshot install).
    floor: Millis,
    orphaned: BTreeMap<ActorId, Millis>,
    /// Insertion order, oldest first, to forget the oldest (`(id, time)`: a stale pair is skipped).
    order: VecDeque<(ActorId, Millis)>,
}

impl Handoff {
    /// A handoff table for a host that started at `started_at` (taken after it began hearing
    /// applied entries, so every entry it did not hear was applied before).
    pub fn new(started_at: Millis) -> Handoff {
        Handoff { floor: started_at, orphaned: BTreeMap::new(), order: VecDeque::new() }
    }

    /// This node applied the entry that orphaned `id` at `applied_at`.
    pub fn orphaned(&mut self, id: ActorId, applied_at: Millis) {
        self.prune(applied_at);
        if self.orphaned.len() >= HANDOFF_ORPHANS_MAX {
            if let Some((oldest, at)) = self.order.pop_front() {
                if self.orphaned.get(&oldest) == Some(&at) {
                    self.orphaned.remove(&oldest);
                }
                self.floor = self.floor.max(at);
            }
        }
        self.orphaned.insert(id.clone(), applied_at);
        self.order.push_back((id, applied_at));
    }

    /// The state was replaced by a snapshot at `now`: orphanings it holds count from now.
    pub fn reset(&mut self, now: Millis) {
        self.floor = self.floor.max(now);
        self.orphaned.clear();
        self.order.clear();
    }

    /// Whether `id`, if it is an orphan, may be activated (and handle messages) at `now`.
    pub fn may_activate(&self, id: &ActorId, now: Millis) -> bool {
        self.wait_left(id, now).is_none()
    }

    /// Milliseconds left before `id` may be activated at `now`, or `None` if it may be now.
    pub fn wait_left(&self, id: &ActorId, now: Millis) -> Option<u64> {
        let since = self.orphaned.get(id).copied().unwrap_or(self.floor).max(self.floor);
        let ready = since.plus(HANDOFF_WAIT_MS);
        (now < ready).then(|| ready.since(now))
    }

    /// Forgets orphanings whose wait has passed at `now` (they may activate, as an unknown one past
    /// the floor's wait may).
    pub fn prune(&mut self, now: Millis) {
        while let Some((id, at)) = self.order.front() {
            if now.since(*at) < HANDOFF_WAIT_MS {
                break;
            }
            if self.orphaned.get(id) == Some(at) {
                self.orphaned.remove(id);
            }
            self.order.pop_front();
        }
    }

    /// Whether this node heard `id` orphaned (and its wait may not have passed yet).
    pub fn knows(&self, id: &ActorId) -> bool {
        self.orphaned.contains_key(id)
    }

    /// Orphanings remembered.
    pub fn len(&self) -> usize {
        self.orphaned.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.orphaned.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str) -> ActorId {
        ActorId::new("counter", key).expect("a valid id")
    }

    #[test]
    fn the_named_wait_is_the_formula() {
        assert_eq!(handoff_wait_ms(), 351);
        assert_eq!(HANDOFF_WAIT_MS, 352);
    }

    #[test]
    fn a_lease_holds_from_the_send_time_and_never_moves_back() {
        let mut lease = HostLease::new();
        assert!(!lease.valid(Millis(0)), "not valid before the first renewal");
        lease.renewed(Millis(100));
        assert!(lease.valid(Millis(100)) && lease.valid(Millis(399)));
        assert!(!lease.valid(Millis(400)), "now < renewed_at + lease, strictly");
        lease.renewed(Millis(50));
        assert_eq!(lease.expires_at(), Some(Millis(400)), "an older send time is ignored");
        lease.renewed(Millis(180));
        assert!(lease.valid(Millis(479)) && !lease.valid(Millis(480)));
        lease.lost();
        assert!(!lease.valid(Millis(181)), "lost at once");
        lease.renewed(Millis(200));
        assert!(lease.valid(Millis(201)));
    }

    #[test]
    fn an_orphan_waits_from_its_applied_time_or_the_floor() {
        let mut handoff = Handoff::new(Millis(1_000));
        // Unknown orphans (replayed before the start) count from the floor.
        assert_eq!(handoff.wait_left(&id("a"), Millis(1_000)), Some(HANDOFF_WAIT_MS));
        assert!(!handoff.may_activate(&id("a"), Millis(1_351)));
        assert!(handoff.may_activate(&id("a"), Millis(1_352)));
        handoff.orphaned(id("b"), Millis(2_000));
        assert_eq!(handoff.wait_left(&id("b"), Millis(2_100)), Some(252));
        assert!(handoff.may_activate(&id("a"), Millis(2_100)), "another orphan is not held back");
        assert!(handoff.may_activate(&id("b"), Millis(2_352)));
        // Entries past their wait are dropped; the answer stays the same.
        handoff.prune(Millis(2_352));
        assert!(handoff.is_empty());
        assert!(handoff.may_activate(&id("b"), Millis(2_352)));
    }

    #[test]
    fn a_snapshot_install_restarts_every_wait() {
        let mut handoff = Handoff::new(Millis(0));
        handoff.orphaned(id("a"), Millis(10));
        handoff.reset(Millis(500));
        assert!(!handoff.may_activate(&id("a"), Millis(851)));
        assert!(!handoff.may_activate(&id("z"), Millis(851)), "unknown ones too");
        assert!(handoff.may_activate(&id("z"), Millis(852)));
    }

    #[test]
    fn a_forgotten_orphan_never_activates_sooner() {
        let mut handoff = Handoff::new(Millis(0));
        for n in 0..HANDOFF_ORPHANS_MAX as u64 {
            handoff.orphaned(id(&n.to_string()), Millis(1_000));
        }
        handoff.orphaned(id("last"), Millis(1_000));
        assert_eq!(handoff.len(), HANDOFF_ORPHANS_MAX, "bounded");
        // "0" was forgotten: it counts from the raised floor, as late as its own time.
        assert!(!handoff.may_activate(&id("0"), Millis(1_351)));
        assert!(handoff.may_activate(&id("0"), Millis(1_352)));
    }
}
