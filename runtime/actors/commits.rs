//! Group commit of durable actors' states (core: no clock, no I/O): what the host proposes as
//! `ActorCommit` entries and whose held replies each written entry releases.
//!
//! After a durable actor handles a message, its snapshot (and the reply, if the call carried an
//! idempotency key) is *ready*; the reply is held. Everything ready while earlier entries are in flight
//! goes into the next entry, one commit per actor (its latest snapshot, its highest `seq`, every
//! recorded reply), cut at [`COMMIT_BATCH_BYTES_MAX`]. At most [`ACTOR_COMMITS_IN_FLIGHT`] entries are
//! out at once, and an actor has at most one commit in flight: two entries from one node may be
//! ordered either way by the leader, and an actor's later commit applied first would refuse the
//! earlier (`seq` only grows).
//!
//! Invariant: a held reply is released only by the written entry that carries its actor's commit with
//! a `seq` at least its call's; a refused or failed commit hands every held reply of that actor (sent
//! or still ready) back to the shell as failed, and the actor commits nothing more.

use std::collections::{BTreeMap, BTreeSet};

use crate::grid::actors::{ActorCommit, ActorId};
use crate::grid::task::FencingToken;
use crate::limits::{ACTOR_RECENT_REPLIES_MAX, ENTRY_BYTES_MAX, ENTRY_OVERHEAD_BYTES};

/// `ActorCommit` entries one host has in flight at once.
pub const ACTOR_COMMITS_IN_FLIGHT: usize = 2;

/// Bytes of commits (states, keys, replies) one entry carries at most: half the entry bound, so an
/// entry is never refused for its size (one actor's commit is far below it).
pub const COMMIT_BATCH_BYTES_MAX: usize = (ENTRY_BYTES_MAX - ENTRY_OVERHEAD_BYTES) / 2;

/// One actor's ready (not yet sent) or in-flight commit with the replies it holds.
#[derive(Debug)]
struct Pending<W> {
    token: FencingToken,
    seq: u64,
    state: Vec<u8>,
    replies: Vec<(String, Vec<u8>)>,
    waiters: Vec<W>,
}

impl<W> Pending<W> {
    fn bytes(&self) -> usize {
        self.state.len() + self.replies.iter().map(|(key, reply)| key.len() + reply.len()).sum::<usize>()
    }
}

/// How a written entry ended for its actors.
#[derive(Debug, PartialEq, Eq)]
pub struct Written<W> {
    /// Held replies whose commit applied: answer them.
    pub released: Vec<W>,
    /// Actors whose commit was refused (not applied: a stale token), with the token of the activation
    /// that wrote and every reply it held.
    pub refused: Vec<(ActorId, FencingToken, Vec<W>)>,
    /// Actors whose commit's fate is unknown (the write failed), with the token of the activation
    /// that wrote and every reply it held.
    pub failed: Vec<(ActorId, FencingToken, Vec<W>)>,
}

/// The host's commit queue; `W` is whatever answers a held call.
#[derive(Debug)]
pub struct CommitQueue<W> {
    ready: BTreeMap<ActorId, Pending<W>>,
    in_flight: BTreeMap<u64, BTreeMap<ActorId, Pending<W>>>,
    busy: BTreeSet<ActorId>,
    next_batch: u64,
}

impl<W> Default for CommitQueue<W> {
    fn default() -> Self {
        CommitQueue { ready: BTreeMap::new(), in_flight: BTreeMap::new(), busy: BTreeSet::new(), next_batch: 1 }
    }
}

impl<W> CommitQueue<W> {
    /// An empty queue.
    pub fn new() -> CommitQueue<W> {
        CommitQueue::default()
    }

    /// `actor` (activation `token`) handled the call numbered `seq` (its activation's count of calls,
    /// from the record's), leaving `state`; `waiter` is held until it is committed. `reply` is
    /// recorded under the call's idempotency key, if it had one.
    pub fn on_handled(
        &mut self,
        actor: &ActorId,
        token: FencingToken,
        seq: u64,
        state: Vec<u8>,
        reply: Option<(String, Vec<u8>)>,
        waiter: W,
    ) {
        let pending = self.ready.entry(actor.clone()).or_insert_with(|| Pending {
            token,
            seq,
            state: Vec::new(),
            replies: Vec::new(),
            waiters: Vec::new(),
        });
        pending.token = token;
        pending.seq = pending.seq.max(seq);
        pending.state = state;
        if let Some((key, reply)) = reply {
            pending.replies.retain(|(kept, _)| *kept != key);
            pending.replies.push((key, reply));
            let excess = pending.replies.len().saturating_sub(ACTOR_RECENT_REPLIES_MAX);
            pending.replies.drain(..excess);
        }
        pending.waiters.push(waiter);
    }

    /// Holds `waiter` (a retried call answered from the activation's recent replies) until `actor`'s
    /// commits so far are written; gives it back if nothing of `actor` is pending (answer it now).
    ///
    /// # Errors
    /// `waiter` itself, when nothing is pending.
    pub fn hold(&mut self, actor: &ActorId, waiter: W) -> Result<(), W> {
        if let Some(pending) = self.ready.get_mut(actor) {
            pending.waiters.push(waiter);
            return Ok(());
        }
        match self.in_flight.values_mut().find_map(|batch| batch.get_mut(actor)) {
            Some(pending) => {
                pending.waiters.push(waiter);
                Ok(())
            }
            None => Err(waiter),
        }
    }

    /// The next entry to write, if one may go out: its number and its commits. Call it again until it
    /// returns `None`.
    pub fn poll_write(&mut self) -> Option<(u64, Vec<ActorCommit>)> {
        if self.in_flight.len() >= ACTOR_COMMITS_IN_FLIGHT {
            return None;
        }
        let mut taken = BTreeMap::new();
        let mut bytes = 0;
        let candidates: Vec<ActorId> = self.ready.keys().filter(|actor| !self.busy.contains(*actor)).cloned().collect();
        for actor in candidates {
            let size = self.ready.get(&actor).map_or(0, Pending::bytes);
            if !taken.is_empty() && bytes + size > COMMIT_BATCH_BYTES_MAX {
                break;
            }
            if let Some(pending) = self.ready.remove(&actor) {
                bytes += size;
                self.busy.insert(actor.clone());
                taken.insert(actor, pending);
            }
        }
        if taken.is_empty() {
            return None;
        }
        let commits = taken
            .iter()
            .map(|(actor, pending)| ActorCommit {
                actor: actor.clone(),
                token: pending.token,
                seq: pending.seq,
                state: pending.state.clone(),
                replies: pending.replies.clone(),
            })
            .collect();
        let batch = self.next_batch;
        self.next_batch += 1;
        self.in_flight.insert(batch, taken);
        Some((batch, commits))
    }

    /// Entry `batch` was applied; the commits at `refused` (indexes in the order
    /// [`CommitQueue::poll_write`] gave) were refused.
    pub fn on_written(&mut self, batch: u64, refused: &[u32]) -> Written<W> {
        let mut written = Written { released: Vec::new(), refused: Vec::new(), failed: Vec::new() };
        let Some(taken) = self.in_flight.remove(&batch) else { return written };
        for (index, (actor, pending)) in taken.into_iter().enumerate() {
            self.busy.remove(&actor);
            if refused.contains(&(index as u32)) {
                let waiters = self.abandon(&actor, pending.token, pending.waiters);
                written.refused.push((actor, pending.token, waiters));
            } else {
                written.released.extend(pending.waiters);
            }
        }
        written
    }

    /// Entry `batch` failed: its fate is unknown.
    pub fn on_failed(&mut self, batch: u64) -> Written<W> {
        let mut written = Written { released: Vec::new(), refused: Vec::new(), failed: Vec::new() };
        let Some(taken) = self.in_flight.remove(&batch) else { return written };
        for (actor, pending) in taken {
            self.busy.remove(&actor);
            let waiters = self.abandon(&actor, pending.token, pending.waiters);
            written.failed.push((actor, pending.token, waiters));
        }
        written
    }

    /// `actor`'s activation stopped: its ready commit is dropped and its held replies returned (a
    /// commit in flight still answers its own when written).
    pub fn drop_ready(&mut self, actor: &ActorId) -> Vec<W> {
        self.ready.remove(actor).map(|pending| pending.waiters).unwrap_or_default()
    }

    /// The held replies of `actor`'s activation `token` after its commit failed: those of its ready
    /// commit too (a newer activation's ready commit is not its to drop).
    fn abandon(&mut self, actor: &ActorId, token: FencingToken, mut waiters: Vec<W>) -> Vec<W> {
        if self.ready.get(actor).is_some_and(|pending| pending.token == token) {
            waiters.extend(self.drop_ready(actor));
        }
        waiters
    }

    /// Whether `actor` has anything ready or in flight.
    pub fn is_pending(&self, actor: &ActorId) -> bool {
        self.ready.contains_key(actor) || self.busy.contains(actor)
    }

    /// Entries in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Actors with a ready commit.
    pub fn ready(&self) -> usize {
        self.ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str) -> ActorId {
        ActorId::new("counter", key).expect("valid")
    }

    fn handled(queue: &mut CommitQueue<u32>, key: &str, seq: u64, waiter: u32) {
        queue.on_handled(&id(key), FencingToken(9), seq, vec![seq as u8], None, waiter);
    }

    #[test]
    fn calls_ready_while_entries_are_out_go_together_and_one_actor_never_has_two_out() {
        let mut queue = CommitQueue::new();
        handled(&mut queue, "a", 1, 1);
        let (first, commits) = queue.poll_write().expect("one entry");
        assert_eq!(commits.len(), 1);
        assert_eq!((commits[0].seq, commits[0].state.clone()), (1, vec![1]));
        // While the first is out, "a" handles two more and "b" one: "b" may go, "a" waits its turn.
        handled(&mut queue, "a", 2, 2);
        handled(&mut queue, "a", 3, 3);
        handled(&mut queue, "b", 1, 4);
        let (second, commits) = queue.poll_write().expect("a second entry");
        assert_eq!(commits.iter().map(|commit| commit.actor.key.as_str()).collect::<Vec<_>>(), ["b"]);
        assert!(queue.poll_write().is_none(), "two out at most");
        assert_eq!(queue.on_written(first, &[]).released, [1]);
        let (third, commits) = queue.poll_write().expect("a's grouped commit");
        assert_eq!((commits.len(), commits[0].seq, commits[0].state.clone()), (1, 3, vec![3]), "the latest state");
        assert_eq!(queue.on_written(second, &[]).released, [4]);
        assert_eq!(queue.on_written(third, &[]).released, [2, 3], "held in order");
        assert!(!queue.is_pending(&id("a")) && queue.in_flight() == 0);
    }

    #[test]
    fn a_refused_commit_fails_every_reply_its_actor_holds_and_a_failed_write_is_unknown() {
        let mut queue = CommitQueue::new();
        handled(&mut queue, "a", 1, 1);
        handled(&mut queue, "b", 1, 2);
        let (batch, _) = queue.poll_write().expect("entry");
        handled(&mut queue, "a", 2, 3);
        let written = queue.on_written(batch, &[0]);
        assert_eq!(written.released, [2]);
        assert_eq!(written.refused, [(id("a"), FencingToken(9), vec![1, 3])], "the ready one goes too");
        assert_eq!(queue.ready(), 0);
        handled(&mut queue, "b", 2, 4);
        let (batch, _) = queue.poll_write().expect("entry");
        let written = queue.on_failed(batch);
        assert_eq!(written.failed, [(id("b"), FencingToken(9), vec![4])]);
        // A newer activation's ready commit is not dropped with an older one's failed write.
        handled(&mut queue, "c", 1, 5);
        let (batch, _) = queue.poll_write().expect("entry");
        queue.on_handled(&id("c"), FencingToken(10), 1, vec![], None, 6);
        let written = queue.on_failed(batch);
        assert_eq!(written.failed, [(id("c"), FencingToken(9), vec![5])]);
        assert_eq!(queue.ready(), 1, "the newer activation's commit stays");
    }

    #[test]
    fn recorded_replies_keep_the_newest_per_key_and_retries_wait_for_the_commit() {
        let mut queue = CommitQueue::new();
        assert_eq!(queue.hold(&id("a"), 7), Err(7), "nothing pending: answer now");
        for n in 0..(ACTOR_RECENT_REPLIES_MAX as u64 + 3) {
            let reply = Some((format!("k{}", n % (ACTOR_RECENT_REPLIES_MAX as u64 + 1)), vec![n as u8]));
            queue.on_handled(&id("a"), FencingToken(9), n + 1, vec![], reply, n as u32);
        }
        assert_eq!(queue.hold(&id("a"), 99), Ok(()));
        let (batch, commits) = queue.poll_write().expect("entry");
        assert_eq!(commits[0].replies.len(), ACTOR_RECENT_REPLIES_MAX);
        assert_eq!(commits[0].replies.last(), Some(&("k1".to_string(), vec![ACTOR_RECENT_REPLIES_MAX as u8 + 2])));
        assert_eq!(queue.hold(&id("a"), 100), Ok(()), "held by the entry in flight");
        let released = queue.on_written(batch, &[]).released;
        assert!(released.ends_with(&[99, 100]), "{released:?}");
    }

    #[test]
    fn an_entry_is_cut_at_its_byte_bound() {
        let mut queue = CommitQueue::new();
        let big = COMMIT_BATCH_BYTES_MAX / 2 + 1;
        for (n, key) in ["a", "b", "c"].into_iter().enumerate() {
            queue.on_handled(&id(key), FencingToken(1), 1, vec![0; big], None, n as u32);
        }
        assert_eq!(queue.poll_write().map(|(_, commits)| commits.len()), Some(1));
        assert_eq!(queue.poll_write().map(|(_, commits)| commits.len()), Some(1));
        assert!(queue.poll_write().is_none());
        assert_eq!(queue.ready(), 1);
    }
}
