//! Follower read leases: when a follower may answer a linearizable read from its own state, with no
//! round trip to the leader.
//!
//! Core: no clock, no I/O. The leader's side ([`Grants`]) is fed the grants it makes, the log
//! positions its followers acknowledge and readings of its lease clock; it answers how far the
//! leader may let entries become visible. The follower's side ([`held_until`]) turns a grant into
//! the reading of its own clock at which the lease ends.
//!
//! # The rule
//! A follower that reads often asks the leader for a lease along with a read index. The leader
//! grants one only while it holds its own lease ([`super::lease`]), and only up to that lease's end
//! `until` (on the leader's clock), and answers with what is left of it, `r = until - now`. It grants
//! one only to a member that has acknowledged its log of this term to within 1,024 entries of the
//! committed index ([`Grants::caught_up`]): a node that hears no AppendEntries must not hold writes
//! back. From
//! then on, until the grant runs out on the leader's clock, the follower is a *holder*, and:
//!
//! 1. **Nothing becomes visible before every holder has it.** The leader applies (and so answers a
//!    write, or serves a read of it) an entry only once every holder has acknowledged holding it in
//!    its log, and it tells its followers of a commit only up to that point (the commit index it
//!    sends is cut down to it): no node applies an entry some holder lacks.
//! 2. **A holder serves a read at its log's end.** A holder whose lease has not run out on its own
//!    clock serves a linearizable read once it has applied every entry its log held when the read
//!    began (and the read index that came with the lease).
//!
//! Why that is linearizable: every write that completed, and every value any node served, before the
//! read began is in an entry that became visible somewhere, so (rule 1, while the holder still held
//! the lease on the leader's books) an entry the holder had already acknowledged, which is in its
//! log; rule 2 waits until it is applied. What became visible before the grant is at most the read
//! index the grant came with. A write completed by a later leader cannot exist yet: the follower's
//! lease ends before the granting leader's own lease does (below), and no later leader commits
//! anything before that.
//!
//! # Timing
//! The follower reads its clock at `sent` before it asks. The leader grants at a later real time,
//! when its clock reads `until - r`. The follower's lease runs out at `sent + r / (1 + ρ)² - slack`
//! on its own clock: with the drift bound of [`super::lease`] (even with each clock `ρ` off real
//! time, in opposite directions), the leader's clock measures at most `r` over that stretch, which
//! began before the grant, so the leader's clock has not yet reached `until` when the follower's
//! lease ends. The leader keeps the holder on its books until `until`.
//!
//! # What it costs
//! While a follower holds a lease, a write waits for that follower's acknowledgement as well as a
//! quorum's (in a 3-node cluster: the slower follower's fsync rather than the quicker one), and a
//! follower that is not a holder applies a commit only once the holders have it. A holder that
//! stops answering holds writes back until its grant runs out (at most the leader's lease, 169 ms).
//! Only followers that read often ask for a lease, so a cluster nobody reads from on followers pays
//! nothing. A leader of an earlier build (a rolling upgrade) cannot decode the request: the follower
//! then asks for the read index alone, as before, and asks for no lease for a second.

use std::collections::BTreeMap;
use std::time::Duration;

use super::lease::{CLOCK_SLACK, DRIFT_PPM};

const PPM: u128 = 1_000_000;

/// How far the leader may let entries become visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound<L> {
    /// No follower holds a lease: as far as committed.
    Open,
    /// Up to `index`: the lowest log position a holder acknowledged in this term, whose log id is
    /// `log_id` (`None` when a holder has acknowledged nothing in this term yet: nothing more).
    Upto {
        /// The last index that may become visible.
        index: u64,
        /// Its log id, to send as the commit.
        log_id: Option<L>,
    },
}

/// The leader's books: who holds a lease until when, and how far each follower acknowledged the
/// leader's log in the current term. `L` is a log id.
#[derive(Debug, Clone)]
pub struct Grants<L> {
    term: u64,
    /// Holder → the reading of the leader's lease clock at which its grant ends.
    holders: BTreeMap<u64, Duration>,
    /// Follower → the last index (and its log id) it acknowledged holding in `term`.
    matched: BTreeMap<u64, (u64, L)>,
}

impl<L> Default for Grants<L> {
    fn default() -> Self {
        Grants { term: 0, holders: BTreeMap::new(), matched: BTreeMap::new() }
    }
}

impl<L: Clone> Grants<L> {
    /// Moves the books to `term` if it is newer: what a follower acknowledged in an older term says
    /// nothing about its log now. Grants of an older term are dropped too: they end before anything
    /// of a later term can commit (see the module's "Timing").
    fn enter(&mut self, term: u64) {
        if term > self.term {
            self.term = term;
            self.holders.clear();
            self.matched.clear();
        }
    }

    /// The leader of `term`, whose clock reads `now` and whose own lease ends at `until`, grants
    /// `node` a lease. Returns what is left of it (`r`), or `None` if there is nothing to grant.
    pub fn grant(&mut self, term: u64, node: u64, now: Duration, until: Duration) -> Option<Duration> {
        if term < self.term || until <= now {
            return None;
        }
        self.enter(term);
        let end = self.holders.entry(node).or_insert(until);
        *end = (*end).max(until);
        Some(until - now)
    }

    /// Whether `node` has acknowledged, answering the leader of `term`, holding its log at least up to
    /// `floor`. The leader grants a lease only to such a follower: one that hears no AppendEntries (a
    /// node no longer a member, one installing a snapshot, one far behind) would otherwise hold every
    /// write back for as long as it kept renewing.
    pub fn caught_up(&self, term: u64, node: u64, floor: u64) -> bool {
        term == self.term && self.matched.get(&node).is_some_and(|&(index, _)| index >= floor)
    }

    /// `node` acknowledged holding the leader's log up to `index` (log id `log_id`), answering the
    /// leader of `term`. Returns whether that may let more entries become visible.
    pub fn acked(&mut self, term: u64, node: u64, index: u64, log_id: L) -> bool {
        if term < self.term {
            return false;
        }
        self.enter(term);
        match self.matched.get(&node) {
            Some(&(known, _)) if known >= index => false,
            _ => {
                self.matched.insert(node, (index, log_id));
                self.holders.contains_key(&node)
            }
        }
    }

    /// How far entries may become visible at reading `now`; grants that ended are dropped.
    pub fn bound(&mut self, now: Duration) -> Bound<L> {
        self.holders.retain(|_, end| *end > now);
        let mut lowest: Option<(u64, Option<L>)> = None;
        for node in self.holders.keys() {
            let (index, log_id) = match self.matched.get(node) {
                Some((index, log_id)) => (*index, Some(log_id.clone())),
                None => (0, None),
            };
            if lowest.as_ref().is_none_or(|(low, _)| index < *low) {
                lowest = Some((index, log_id));
            }
        }
        match lowest {
            None => Bound::Open,
            Some((index, log_id)) => Bound::Upto { index, log_id },
        }
    }

    /// The first reading at which a grant ends, if any is held.
    pub fn next_end(&self) -> Option<Duration> {
        self.holders.values().min().copied()
    }

    /// Followers holding a grant (ended ones included until the next [`Self::bound`]).
    pub fn holders(&self) -> usize {
        self.holders.len()
    }
}

/// The reading of the follower's lease clock at which a lease it asked for at reading `sent`, and was
/// granted with `remaining` left on the leader's clock, ends: `sent + remaining / (1 + ρ)² - slack`.
///
/// One `1 + ρ` is the drift bound of [`super::lease`] between two nodes' clocks; the second lets
/// each clock stray `ρ` from real time in opposite directions (the simulation's drift model), for
/// 5 % of the lease: the follower renews it well ahead of its end anyway.
pub fn held_until(sent: Duration, remaining: Duration) -> Duration {
    let ratio = PPM + u128::from(DRIFT_PPM);
    let nanos = remaining.as_nanos() * PPM * PPM / (ratio * ratio);
    let shrunk = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
    (sent + shrunk).saturating_sub(CLOCK_SLACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn without_holders_everything_committed_may_become_visible() {
        let mut grants: Grants<u64> = Grants::default();
        assert!(!grants.acked(3, 2, 10, 10));
        assert_eq!(grants.bound(ms(0)), Bound::Open);
    }

    #[test]
    fn a_holder_bounds_visibility_to_what_it_acknowledged() {
        let mut grants: Grants<u64> = Grants::default();
        grants.acked(3, 2, 10, 110);
        grants.acked(3, 3, 14, 114);
        assert_eq!(grants.grant(3, 2, ms(100), ms(250)), Some(ms(150)));
        assert_eq!(grants.bound(ms(100)), Bound::Upto { index: 10, log_id: Some(110) });
        // The holder's acknowledgement raises the bound; another follower's does not matter.
        assert!(!grants.acked(3, 3, 20, 120));
        assert!(grants.acked(3, 2, 12, 112));
        assert!(!grants.acked(3, 2, 11, 111), "an older acknowledgement changes nothing");
        assert_eq!(grants.bound(ms(120)), Bound::Upto { index: 12, log_id: Some(112) });
        // Two holders: the lower one bounds.
        grants.grant(3, 3, ms(130), ms(260));
        assert_eq!(grants.bound(ms(130)), Bound::Upto { index: 12, log_id: Some(112) });
    }

    #[test]
    fn a_holder_that_acknowledged_nothing_this_term_holds_everything_back() {
        let mut grants: Grants<u64> = Grants::default();
        grants.grant(4, 2, ms(0), ms(100));
        assert_eq!(grants.bound(ms(1)), Bound::Upto { index: 0, log_id: None });
    }

    #[test]
    fn a_grant_ends_at_the_leaders_lease_end_and_then_stops_bounding() {
        let mut grants: Grants<u64> = Grants::default();
        grants.acked(3, 2, 5, 105);
        grants.grant(3, 2, ms(0), ms(169));
        assert_eq!(grants.next_end(), Some(ms(169)));
        assert_eq!(grants.bound(ms(168)), Bound::Upto { index: 5, log_id: Some(105) });
        assert_eq!(grants.bound(ms(169)), Bound::Open);
        assert_eq!(grants.holders(), 0);
        assert_eq!(grants.next_end(), None);
        // A renewal extends the end; an earlier one does not shorten it.
        grants.grant(3, 2, ms(200), ms(369));
        grants.grant(3, 2, ms(210), ms(300));
        assert_eq!(grants.next_end(), Some(ms(369)));
    }

    #[test]
    fn nothing_is_granted_past_the_leaders_own_lease_or_for_an_old_term() {
        let mut grants: Grants<u64> = Grants::default();
        assert_eq!(grants.grant(3, 2, ms(100), ms(100)), None);
        grants.acked(5, 2, 7, 107);
        assert_eq!(grants.grant(4, 2, ms(0), ms(100)), None);
        assert!(!grants.acked(4, 2, 9, 109), "an acknowledgement to an older term is ignored");
    }

    #[test]
    fn only_a_follower_that_acknowledged_enough_of_this_term_is_caught_up() {
        let mut grants: Grants<u64> = Grants::default();
        assert!(!grants.caught_up(3, 2, 0), "nothing acknowledged yet");
        grants.acked(3, 2, 50, 150);
        assert!(grants.caught_up(3, 2, 50));
        assert!(!grants.caught_up(3, 2, 51), "behind the floor");
        assert!(!grants.caught_up(3, 3, 0), "another node");
        assert!(!grants.caught_up(4, 2, 0), "a later term");
    }

    #[test]
    fn a_new_term_forgets_acknowledgements_and_grants() {
        let mut grants: Grants<u64> = Grants::default();
        grants.acked(3, 2, 50, 150);
        grants.grant(3, 2, ms(0), ms(100));
        grants.grant(6, 3, ms(10), ms(110));
        // Node 2's grant and its acknowledgement of term 3 are gone; node 3 acknowledged nothing yet.
        assert_eq!(grants.bound(ms(20)), Bound::Upto { index: 0, log_id: None });
        grants.acked(6, 3, 60, 160);
        assert_eq!(grants.bound(ms(20)), Bound::Upto { index: 60, log_id: Some(160) });
    }

    #[test]
    fn the_followers_lease_ends_before_the_leader_stops_counting_it() {
        // The leader's clock runs (1 + ρ)² times the follower's (each ρ off real time, in opposite
        // directions): the follower's lease, measured on the leader's clock, still ends no later
        // than the grant.
        let remaining = ms(169);
        let sent = ms(1_000);
        let end = held_until(sent, remaining);
        let ratio = PPM + u128::from(DRIFT_PPM);
        let on_leaders_clock = (end - sent).as_nanos() * ratio * ratio / (PPM * PPM);
        assert!(on_leaders_clock <= remaining.as_nanos());
        assert!(end > sent + ms(140), "most of the lease is kept: {end:?}");
    }
}
