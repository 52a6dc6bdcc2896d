//! Grid actors in the replicated state: who owns each actor (its host node and fencing token), its last
//! committed durable state and the replies recorded by idempotency key. Applied beside the task table,
//! from the same log, so every replica agrees on one owner per actor.
//!
//! Core: no I/O, no clock. This module decides ownership and what a commit may write; the host that
//! runs activations (`crate::actors`) proposes the commands and acts on the effects.
//!
//! Invariants:
//! - An actor has at most one owner. An activation is granted only while nobody else owns the actor
//!   and its node is registered; its token is the granting entry's zxid, so tokens only grow.
//! - State never goes back: a commit applies only with the record's current token, while owned, and
//!   with a `seq` above the record's. A zombie host (an older token) can never write.
//! - When a node's registration is deleted, every actor it owned is orphaned in that same apply step
//!   (`crate::state::replicated` calls [`ActorTable::on_node_lost`]).
//! - Bounded: at most `ACTOR_RECORDS_MAX` records and `ACTOR_STATE_BYTES_TOTAL_MAX` bytes of state and
//!   recorded replies; one record's state and replies are bounded by their own limits.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{GridEffects, GridOutcome};
use super::task::FencingToken;
use crate::ids::NodeId;
use crate::limits::{
    ACTOR_IDEMPOTENCY_KEY_BYTES_MAX, ACTOR_KEY_BYTES_MAX, ACTOR_KIND_BYTES_MAX, ACTOR_RECENT_REPLIES_MAX,
    ACTOR_RECORDS_MAX, ACTOR_REPLY_BYTES_MAX, ACTOR_STATE_BYTES_MAX, ACTOR_STATE_BYTES_TOTAL_MAX,
};

/// An actor's name: its kind (the `GridActor::KIND` that runs it) and its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId {
    /// The kind: ASCII letters, digits, `_`, `-`, `.`, at most `ACTOR_KIND_BYTES_MAX` bytes.
    pub kind: String,
    /// The key: any text without control characters, at most `ACTOR_KEY_BYTES_MAX` bytes.
    pub key: String,
}

impl ActorId {
    /// The actor `key` of `kind`.
    ///
    /// # Errors
    /// A message naming what is wrong: an empty or too long kind or key, a kind with characters other
    /// than ASCII letters, digits, `_`, `-` and `.`, a key with control characters.
    pub fn new(kind: &str, key: &str) -> Result<ActorId, String> {
        let id = ActorId { kind: kind.to_owned(), key: key.to_owned() };
        id.check()?;
        Ok(id)
    }

    /// Checks what [`ActorId::new`] checks, for an id that arrived some other way (decoded).
    ///
    /// # Errors
    /// As [`ActorId::new`].
    pub fn check(&self) -> Result<(), String> {
        if self.kind.is_empty() || self.kind.len() > ACTOR_KIND_BYTES_MAX {
            return Err(format!("an actor kind has 1 to {ACTOR_KIND_BYTES_MAX} bytes"));
        }
        if !self.kind.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
            return Err("an actor kind has only ASCII letters, digits, '_', '-' and '.'".into());
        }
        if self.key.is_empty() || self.key.len() > ACTOR_KEY_BYTES_MAX {
            return Err(format!("an actor key has 1 to {ACTOR_KEY_BYTES_MAX} bytes"));
        }
        if self.key.chars().any(char::is_control) {
            return Err("an actor key has no control characters".into());
        }
        Ok(())
    }
}

impl std::fmt::Display for ActorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.key)
    }
}

/// One durable actor's commit: the state its calls produced and the replies to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorCommit {
    /// The actor.
    pub actor: ActorId,
    /// The token of the activation that writes.
    pub token: FencingToken,
    /// Calls committed, this commit's included; above the record's.
    pub seq: u64,
    /// The snapshot (at most `ACTOR_STATE_BYTES_MAX` bytes).
    pub state: Vec<u8>,
    /// (idempotency key, reply) of the calls that carried a key, oldest first.
    pub replies: Vec<(String, Vec<u8>)>,
}

/// An actor's replicated record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRecord {
    /// The node that hosts it; `None`: nobody (never activated, released, or orphaned).
    pub node: Option<NodeId>,
    /// The fencing token of its latest activation (the zxid of the entry that granted it).
    pub token: FencingToken,
    /// Whether its state is committed through the log.
    pub durable: bool,
    /// Whether the cluster keeps it running without waiting for a call.
    pub singleton: bool,
    /// Its last committed snapshot.
    pub state: Vec<u8>,
    /// Calls committed.
    pub seq: u64,
    /// The latest replies by idempotency key, oldest first, at most `ACTOR_RECENT_REPLIES_MAX`.
    pub recent: Vec<(String, Vec<u8>)>,
    /// The zxid of the entry that orphaned it (its node's registration was deleted), while it is
    /// unowned because of that; 0 otherwise. A node waits `HANDOFF_WAIT_MS` after applying that entry
    /// before it activates the orphan.
    pub orphaned_zxid: u64,
    /// Activations granted so far.
    pub activations: u64,
}

impl ActorRecord {
    fn empty(durable: bool, singleton: bool) -> ActorRecord {
        ActorRecord {
            node: None,
            token: FencingToken(0),
            durable,
            singleton,
            state: Vec::new(),
            seq: 0,
            recent: Vec::new(),
            orphaned_zxid: 0,
            activations: 0,
        }
    }

    /// The bytes this record counts against `ACTOR_STATE_BYTES_TOTAL_MAX`: its state and its replies.
    pub fn state_bytes(&self) -> usize {
        self.state.len() + replies_bytes(&self.recent)
    }

    /// The recorded reply to the call with idempotency key `key`, if it is still kept.
    pub fn reply(&self, key: &str) -> Option<&[u8]> {
        self.recent.iter().rev().find(|(recorded, _)| recorded == key).map(|(_, reply)| reply.as_slice())
    }
}

fn replies_bytes(replies: &[(String, Vec<u8>)]) -> usize {
    replies.iter().map(|(key, reply)| key.len() + reply.len()).sum()
}

/// Why an actor command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorRefusal {
    /// Another node owns the actor (named in the outcome).
    Owned,
    /// The node asking to host it has no registration.
    NotRegistered,
    /// The token is not the record's current one, or the record has no owner (or does not exist).
    Stale,
    /// A bound on one actor (its name, state, replies, keys) is exceeded.
    TooLarge,
    /// A bound on all actors (records, state bytes in all) is reached.
    TooMany,
    /// The cluster's state version does not apply actor commands yet.
    NotVersion,
}

/// Every actor's record, with the derived counts that bound them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorTable {
    records: BTreeMap<ActorId, ActorRecord>,
    /// Derived: the actors each node owns.
    owned: BTreeMap<NodeId, BTreeSet<ActorId>>,
    /// Derived: volatile orphans (unowned, volatile, no singleton, `orphaned_zxid` > 0), with their
    /// `orphaned_zxid`: the records `ActorForget` may remove.
    orphans: BTreeMap<ActorId, u64>,
    /// Derived: the sum of every record's [`ActorRecord::state_bytes`].
    state_bytes: usize,
}

impl ActorTable {
    /// An empty table.
    pub fn new() -> ActorTable {
        ActorTable::default()
    }

    /// A table holding `records` (read from a snapshot), with its derived counts rebuilt.
    pub fn from_records(records: BTreeMap<ActorId, ActorRecord>) -> ActorTable {
        let mut owned: BTreeMap<NodeId, BTreeSet<ActorId>> = BTreeMap::new();
        let mut orphans = BTreeMap::new();
        let mut state_bytes = 0;
        for (id, record) in &records {
            if let Some(node) = record.node {
                owned.entry(node).or_default().insert(id.clone());
            }
            if is_volatile_orphan(record) {
                orphans.insert(id.clone(), record.orphaned_zxid);
            }
            state_bytes += record.state_bytes();
        }
        ActorTable { records, owned, orphans, state_bytes }
    }

    /// Every record (what a snapshot stores).
    pub fn records(&self) -> &BTreeMap<ActorId, ActorRecord> {
        &self.records
    }

    /// One actor's record.
    pub fn get(&self, id: &ActorId) -> Option<&ActorRecord> {
        self.records.get(id)
    }

    /// Every record, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&ActorId, &ActorRecord)> {
        self.records.iter()
    }

    /// The records of one kind, by key.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a ActorId, &'a ActorRecord)> + 'a {
        let from = ActorId { kind: kind.to_owned(), key: String::new() };
        self.records.range(from..).take_while(move |(id, _)| id.kind == kind)
    }

    /// The actors `node` owns.
    pub fn owned_by(&self, node: NodeId) -> impl Iterator<Item = &ActorId> {
        self.owned.get(&node).into_iter().flatten()
    }

    /// Records kept.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of state and recorded replies kept in all.
    pub fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    /// Volatile orphans: unowned volatile records that are no singleton, left so by their node's lost
    /// registration, with the zxid that orphaned each, in id order (what `ActorForget` removes).
    pub fn volatile_orphans(&self) -> impl Iterator<Item = (&ActorId, u64)> {
        self.orphans.iter().map(|(id, zxid)| (id, *zxid))
    }

    /// Singletons that nobody owns (the leader places them).
    pub fn singletons_unowned(&self) -> Vec<ActorId> {
        self.records
            .iter()
            .filter(|(_, record)| record.singleton && record.node.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// `ActorActivate` at `zxid`: `node` (registered: `registered`) asks to host `actor`. Granted if
    /// nobody owns it, or if `node` itself does (an activation it lost track of: the old one ends); the
    /// token is `zxid`. Refused with the owner otherwise.
    pub fn activate(
        &mut self,
        zxid: u64,
        actor: &ActorId,
        node: NodeId,
        durable: bool,
        registered: bool,
        effects: &mut GridEffects,
    ) -> GridOutcome {
        if actor.check().is_err() {
            return refused(None, ActorRefusal::TooLarge);
        }
        let owner = self.records.get(actor).and_then(|record| record.node);
        if owner.is_some_and(|owner| owner != node) {
            return refused(owner, ActorRefusal::Owned);
        }
        if !registered {
            return refused(owner, ActorRefusal::NotRegistered);
        }
        if !self.records.contains_key(actor) && self.records.len() >= ACTOR_RECORDS_MAX {
            return refused(None, ActorRefusal::TooMany);
        }
        if let Some(previous) = owner {
            self.end_ownership(actor, previous, effects);
        }
        let record = self.records.entry(actor.clone()).or_insert_with(|| ActorRecord::empty(durable, false));
        // Once durable, a record keeps its state even if a later build activates the kind as volatile.
        record.durable |= durable;
        record.node = Some(node);
        record.token = FencingToken(zxid);
        record.orphaned_zxid = 0;
        record.activations += 1;
        self.orphans.remove(actor);
        self.owned.entry(node).or_default().insert(actor.clone());
        effects.actors_activated.push((actor.clone(), node, record.token));
        GridOutcome::ActorActivated {
            token: record.token,
            state: record.state.clone(),
            seq: record.seq,
            recent: record.recent.clone(),
        }
    }

    /// `ActorCommit`: applies each commit whose token is its actor's current one (while owned), whose
    /// `seq` is above the record's and whose sizes are within bounds; the others are refused, by index.
    pub fn commit(&mut self, commits: &[ActorCommit]) -> GridOutcome {
        let mut refused = Vec::new();
        for (index, commit) in commits.iter().enumerate() {
            if !self.commit_one(commit) {
                refused.push(index as u32);
            }
        }
        GridOutcome::ActorsCommitted { refused }
    }

    fn commit_one(&mut self, commit: &ActorCommit) -> bool {
        let Some(record) = self.records.get_mut(&commit.actor) else { return false };
        if record.node.is_none() || record.token != commit.token || commit.seq <= record.seq {
            return false;
        }
        if commit.state.len() > ACTOR_STATE_BYTES_MAX
            || commit
                .replies
                .iter()
                .any(|(key, reply)| key.len() > ACTOR_IDEMPOTENCY_KEY_BYTES_MAX || reply.len() > ACTOR_REPLY_BYTES_MAX)
        {
            return false;
        }
        let mut recent = record.recent.clone();
        for (key, reply) in &commit.replies {
            recent.retain(|(recorded, _)| recorded != key);
            recent.push((key.clone(), reply.clone()));
        }
        let excess = recent.len().saturating_sub(ACTOR_RECENT_REPLIES_MAX);
        recent.drain(..excess);
        let before = record.state_bytes();
        let after = commit.state.len() + replies_bytes(&recent);
        let total = self.state_bytes - before + after;
        if after > before && total > ACTOR_STATE_BYTES_TOTAL_MAX {
            return false;
        }
        record.state = commit.state.clone();
        record.seq = commit.seq;
        record.recent = recent;
        self.state_bytes = total;
        true
    }

    /// `ActorRelease`: the activation with `token` gives the actor back (passivated, or its node
    /// drains). A durable record or a singleton is kept without an owner; another is removed.
    pub fn release(&mut self, actor: &ActorId, token: FencingToken, effects: &mut GridEffects) -> GridOutcome {
        let Some(record) = self.records.get(actor) else { return refused(None, ActorRefusal::Stale) };
        let Some(node) = record.node.filter(|_| record.token == token) else {
            return refused(record.node, ActorRefusal::Stale);
        };
        self.end_ownership(actor, node, effects);
        self.remove_if_done(actor);
        GridOutcome::Recorded { applied: 1, refused: 0 }
    }

    /// `ActorSingleton`: declares `actor` a singleton (`start`), or no longer one. A removed singleton's
    /// activation ends (its host stops it) and its record goes unless it is durable.
    pub fn singleton(&mut self, actor: &ActorId, durable: bool, start: bool, effects: &mut GridEffects) -> GridOutcome {
        if actor.check().is_err() {
            return refused(None, ActorRefusal::TooLarge);
        }
        if start {
            if !self.records.contains_key(actor) && self.records.len() >= ACTOR_RECORDS_MAX {
                return refused(None, ActorRefusal::TooMany);
            }
            let record = self.records.entry(actor.clone()).or_insert_with(|| ActorRecord::empty(durable, true));
            record.singleton = true;
            record.durable |= durable;
            self.orphans.remove(actor);
            return GridOutcome::Recorded { applied: 1, refused: 0 };
        }
        let Some(record) = self.records.get_mut(actor).filter(|record| record.singleton) else {
            return GridOutcome::Recorded { applied: 0, refused: 0 };
        };
        record.singleton = false;
        if let Some(node) = record.node {
            self.end_ownership(actor, node, effects);
        }
        self.remove_if_done(actor);
        GridOutcome::Recorded { applied: 1, refused: 0 }
    }

    /// `node`'s registration was deleted at `zxid`: every actor it owned is orphaned.
    pub fn on_node_lost(&mut self, node: NodeId, zxid: u64, effects: &mut GridEffects) {
        let Some(actors) = self.owned.remove(&node) else { return };
        for actor in actors {
            let Some(record) = self.records.get_mut(&actor) else { continue };
            record.node = None;
            record.orphaned_zxid = zxid;
            effects.actors_ended.push((actor.clone(), node, record.token));
            if is_volatile_orphan(record) {
                self.orphans.insert(actor.clone(), zxid);
            }
            effects.actors_orphaned.push(actor);
        }
    }

    /// `ActorForget`: removes each named record that is still the volatile orphan of that orphaning
    /// (see [`GridCommand::ActorForget`](super::GridCommand::ActorForget)); the others are left as they
    /// are.
    pub fn forget(&mut self, actors: &[(ActorId, u64)]) -> GridOutcome {
        let (mut applied, mut refused) = (0, 0);
        for (actor, zxid) in actors {
            if *zxid != 0 && self.orphans.get(actor) == Some(zxid) {
                self.orphans.remove(actor);
                if let Some(record) = self.records.remove(actor) {
                    self.state_bytes -= record.state_bytes();
                }
                applied += 1;
            } else {
                refused += 1;
            }
        }
        GridOutcome::Recorded { applied, refused }
    }

    /// Clears `actor`'s owner `node` (not an orphaning: the record is free at once).
    fn end_ownership(&mut self, actor: &ActorId, node: NodeId, effects: &mut GridEffects) {
        if let Some(record) = self.records.get_mut(actor) {
            record.node = None;
            record.orphaned_zxid = 0;
            effects.actors_ended.push((actor.clone(), node, record.token));
        }
        if let Some(owned) = self.owned.get_mut(&node) {
            owned.remove(actor);
            if owned.is_empty() {
                self.owned.remove(&node);
            }
        }
    }

    /// Removes `actor`'s record if it is unowned, volatile and no singleton: nothing of it is left to keep.
    fn remove_if_done(&mut self, actor: &ActorId) {
        let done = self.records.get(actor).is_some_and(|r| r.node.is_none() && !r.durable && !r.singleton);
        if done {
            self.orphans.remove(actor);
            if let Some(record) = self.records.remove(actor) {
                self.state_bytes -= record.state_bytes();
            }
        }
    }
}

fn is_volatile_orphan(record: &ActorRecord) -> bool {
    record.node.is_none() && record.orphaned_zxid > 0 && !record.durable && !record.singleton
}

fn refused(owner: Option<NodeId>, reason: ActorRefusal) -> GridOutcome {
    GridOutcome::ActorRefused { owner, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: NodeId = NodeId(1);
    const N2: NodeId = NodeId(2);

    fn id(key: &str) -> ActorId {
        ActorId::new("counter", key).expect("valid")
    }

    fn commit(actor: &ActorId, token: FencingToken, seq: u64, state: &[u8]) -> ActorCommit {
        ActorCommit { actor: actor.clone(), token, seq, state: state.to_vec(), replies: Vec::new() }
    }

    fn granted(outcome: &GridOutcome) -> FencingToken {
        match outcome {
            GridOutcome::ActorActivated { token, .. } => *token,
            other => panic!("not granted: {other:?}"),
        }
    }

    #[test]
    fn ids_are_checked() {
        assert!(ActorId::new("counter", "account/42").is_ok());
        assert!(ActorId::new("", "k").is_err());
        assert!(ActorId::new("a b", "k").is_err());
        assert!(ActorId::new(&"k".repeat(ACTOR_KIND_BYTES_MAX + 1), "k").is_err());
        assert!(ActorId::new("counter", "").is_err());
        assert!(ActorId::new("counter", "a\nb").is_err());
        assert!(ActorId::new("counter", &"k".repeat(ACTOR_KEY_BYTES_MAX)).is_ok());
        assert!(ActorId::new("counter", &"k".repeat(ACTOR_KEY_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn an_unowned_actor_is_granted_with_the_entrys_zxid_and_its_last_state() {
        let mut table = ActorTable::new();
        let mut effects = GridEffects::default();
        let a = id("a");
        let outcome = table.activate(10, &a, N1, true, true, &mut effects);
        assert_eq!(
            outcome,
            GridOutcome::ActorActivated { token: FencingToken(10), state: vec![], seq: 0, recent: vec![] }
        );
        assert_eq!(effects.actors_activated, vec![(a.clone(), N1, FencingToken(10))]);
        let mut c = commit(&a, FencingToken(10), 1, b"one");
        c.replies.push(("key".into(), b"r".to_vec()));
        assert_eq!(table.commit(&[c]), GridOutcome::ActorsCommitted { refused: vec![] });
        assert_eq!(table.release(&a, FencingToken(10), &mut effects), GridOutcome::Recorded { applied: 1, refused: 0 });
        // The next activation, on another node, starts from the committed state and replies.
        let outcome = table.activate(20, &a, N2, true, true, &mut effects);
        assert_eq!(
            outcome,
            GridOutcome::ActorActivated {
                token: FencingToken(20),
                state: b"one".to_vec(),
                seq: 1,
                recent: vec![("key".into(), b"r".to_vec())]
            }
        );
        let record = table.get(&a).expect("kept");
        assert_eq!((record.node, record.activations, record.reply("key")), (Some(N2), 2, Some(&b"r"[..])));
    }

    #[test]
    fn an_owned_actor_is_refused_naming_its_owner_and_an_unregistered_node_is_refused() {
        let mut table = ActorTable::new();
        let mut effects = GridEffects::default();
        let a = id("a");
        assert_eq!(
            table.activate(5, &a, N1, true, false, &mut effects),
            GridOutcome::ActorRefused { owner: None, reason: ActorRefusal::NotRegistered }
        );
        assert!(table.is_empty(), "a refusal keeps nothing");
        granted(&table.activate(6, &a, N1, true, true, &mut effects));
        assert_eq!(
            table.activate(7, &a, N2, true, true, &mut effects),
            GridOutcome::ActorRefused { owner: Some(N1), reason: ActorRefusal::Owned }
        );
        // The owner itself asking again (it lost track of its activation) replaces it: the old one ends.
        effects = GridEffects::default();
        assert_eq!(granted(&table.activate(8, &a, N1, true, true, &mut effects)), FencingToken(8));
        assert_eq!(effects.actors_ended, vec![(a.clone(), N1, FencingToken(6))]);
        assert_eq!(table.owned_by(N1).collect::<Vec<_>>(), vec![&a]);
    }

    #[test]
    fn a_commit_with_a_stale_token_or_an_old_seq_is_refused() {
        let mut table = ActorTable::new();
        let mut effects = GridEffects::default();
        let a = id("a");
        let b = id("b");
        let ta = granted(&table.activate(10, &a, N1, true, true, &mut effects));
        let tb = granted(&table.activate(11, &b, N1, true, true, &mut effects));
        let outcome = table.commit(&[
            commit(&a, ta, 1, b"1"),
            commit(&a, FencingToken(9), 2, b"zombie"),
            commit(&b, tb, 2, b"b2"),
            commit(&a, ta, 1, b"again"),
            commit(&a, ta, 3, b"3"),
            commit(&id("unknown"), ta, 1, b"?"),
        ]);
        assert_eq!(outcome, GridOutcome::ActorsCommitted { refused: vec![1, 3, 5] });
        assert_eq!((table.get(&a).expect("a").seq, table.get(&a).expect("a").state.as_slice()), (3, &b"3"[..]));
        assert_eq!(table.get(&b).expect("b").seq, 2);
        // Released: the token no longer writes even though it is still the record's.
        table.release(&a, ta, &mut effects);
        assert_eq!(table.commit(&[commit(&a, ta, 4, b"4")]), GridOutcome::ActorsCommitted { refused: vec![0] });
        assert_eq!(table.get(&a).expect("a").seq, 3);
    }

    #[test]
    fn replies_are_kept_newest_and_bounded() {
        let mut table = ActorTable::new();
        let mut effects = GridEffects::default();
        let a = id("a");
        let token = granted(&table.activate(1, &a, N1, true, true, &mut effects));
        for seq in 1..=40u64 {
            let mut c = commit(&a, token, seq, b"s");
            c.replies.push((format!("k{seq}"), seq.to_le_bytes().to_vec()));
            if seq == 40 {
                c.replies.push(("k39".into(), b"replaced".to_vec()));
            }
            assert_eq!(table.commit(&[c]), GridOutcome::ActorsCommitted { refused: vec![] });
        }
        let record = table.get(&a).expect("a");
        assert_eq!(record.recent.len(), ACTOR_RECENT_REPLIES_MAX);
        assert_eq!(record.recent.last().map(|(key, _)| key.as_str()), Some("k39"));
        assert_eq!(record.reply("k39"), Some(&b"replaced"[..]));
        assert_eq!(record.reply("k40"), Some(&40u64.to_le_bytes()[..]));
        assert_eq!(record.reply("k8"), None, "the oldest are dropped");
        assert_eq!(record.reply("k9"), Some(&9u64.to_le_bytes()[..]));
        assert_eq!(table.state_bytes(), record.state_bytes());
    }

    #[test]
    fn oversized_commits_are_refused() {
        let mut table = ActorTable::new();
        let mut effects = GridEffects::default();
        let a = id("a");
        let token = granted(&table.activate(1, &a, N1, true, true, &mut effects));
        let state = commit(&a, token, 1, &vec![0; ACTOR_STATE_BYTES_MAX + 1]);
        let mut reply = commit(&a, token, 1, b"");
        reply.replies.push(("k".into(), vec![0; ACTOR_REPLY_BYTES_MAX + 1]));
        let mut key = commit(&a, token, 1, b"");
        key.replies.push(("k".repeat(ACTOR_IDEMPOTENCY_KEY_BYTES_MAX + 1), vec![]));
        let fits = commit(&a, token, 1, &vec![0; ACTOR_STATE_BYTES_MAX]);
        assert_eq!(table.commit(&[state, reply, key, fits]), GridOutcome::ActorsCommitted { refused: vec![0, 1, 2] });
        assert_eq!(table.state_bytes(), ACTOR_STATE_BYTES_MAX);
    }

    #[test]
    fn the_total_state_budget_and_the_record_bound_refuse_with_the_right_reason() {
        let mut table = ActorTable::new();
        let mut effects = GridEffects::default();
        let full = ACTOR_STATE_BYTES_TOTAL_MAX / ACTOR_STATE_BYTES_MAX;
        for i in 0..=full {
            let a = id(&format!("a{i}"));
            let token = granted(&table.activate(i as u64 + 1, &a, N1, true, true, &mut effects));
            let outcome = table.commit(&[commit(&a, token, 1, &vec![0; ACTOR_STATE_BYTES_MAX])]);
            let refused = if i < full { vec![] } else { vec![0] };
            assert_eq!(outcome, GridOutcome::ActorsCommitted { refused }, "actor {i}");
        }
        assert_eq!(table.state_bytes(), ACTOR_STATE_BYTES_TOTAL_MAX);
        // Shrinking is always allowed, and frees room for others.
        let a0 = id("a0");
        let token = table.get(&a0).expect("a0").token;
        assert_eq!(table.commit(&[commit(&a0, token, 2, b"")]), GridOutcome::ActorsCommitted { refused: vec![] });
        assert_eq!(table.state_bytes(), ACTOR_STATE_BYTES_TOTAL_MAX - ACTOR_STATE_BYTES_MAX);

        // The record bound, checked on a table filled directly (a million activations are slow to apply
        // in a unit test).
        let records = (0..ACTOR_RECORDS_MAX).map(|i| (id(&i.to_string()), ActorRecord::empty(true, false))).collect();
        let mut table = ActorTable::from_records(records);
        let outcome = table.activate(1, &id("new"), N1, true, true, &mut effects);
        assert_eq!(outcome, GridOutcome::ActorRefused { owner: None, reason: ActorRefusal::TooMany });
        assert_eq!(
            table.singleton(&id("new"), true, true, &mut effects),
            GridOutcome::ActorRefused { owner: None, reason: ActorRefusal::TooMany }
        );
        granted(&table.activate(2, &id("7"), N1, true, true, &mut effects));
        let bad = ActorId { kind: "no spaces".into(), key: "k".into() };
        assert_eq!(
            ActorTable::new().activate(1, &bad, N1, true, true, &mut effects),
            GridOutcome::ActorRefused { owner: None, reason: ActorRefusal::TooLarge }
        );
    }

    #[test]
    fn release_needs_the_current_token_and_keeps_only_what_is_worth_keeping() {
        let mut table = ActorTable::new();
        let mut effects = GridEffects::default();
        let durable = id("d");
        let volatile = id("v");
        let td = granted(&table.activate(1, &durable, N1, true, true, &mut effects));
        let tv = granted(&table.activate(2, &volatile, N1, false, true, &mut effects));
        assert_eq!(
            table.release(&durable, FencingToken(99), &mut effects),
            GridOutcome::ActorRefused { owner: Some(N1), reason: ActorRefusal::Stale }
        );
        effects = GridEffects::default();
        assert_eq!(table.release(&durable, td, &mut effects), GridOutcome::Recorded { applied: 1, refused: 0 });
        assert_eq!(table.release(&volatile, tv, &mut effects), GridOutcome::Recorded { applied: 1, refused: 0 });
        assert_eq!(effects.actors_ended, vec![(durable.clone(), N1, td), (volatile.clone(), N1, tv)]);
        assert!(effects.actors_orphaned.is_empty(), "a release is no orphaning");
        let kept = table.get(&durable).expect("durable kept");
        assert_eq!((kept.node, kept.orphaned_zxid), (None, 0));
        assert!(table.get(&volatile).is_none(), "a volatile actor leaves nothing");
        assert_eq!(table.owned_by(N1).count(), 0);
        assert_eq!(
            table.release(&durable, td, &mut effects),
            GridOutcome::ActorRefused { owner: None, reason: ActorRefusal::Stale },
            "twice"
        );
    }

    #[test]
    fn singletons_are_declared_placed_and_removed() {
        let mut table = ActorTable::new();
        let mut effects = GridEffects::default();
        let s = ActorId::new("ticker", "main").expect("valid");
        assert_eq!(table.singleton(&s, false, true, &mut effects), GridOutcome::Recorded { applied: 1, refused: 0 });
        assert_eq!(table.singletons_unowned(), vec![s.clone()]);
        let token = granted(&table.activate(3, &s, N2, false, true, &mut effects));
        assert!(table.singletons_unowned().is_empty());
        // Released (its node drains): kept, unowned, for the leader to place again.
        table.release(&s, token, &mut effects);
        assert_eq!(table.singletons_unowned(), vec![s.clone()]);
        let token = granted(&table.activate(4, &s, N1, false, true, &mut effects));
        // Removed while running: the activation ends and the volatile record goes.
        effects = GridEffects::default();
        assert_eq!(table.singleton(&s, false, false, &mut effects), GridOutcome::Recorded { applied: 1, refused: 0 });
        assert_eq!(effects.actors_ended, vec![(s.clone(), N1, token)]);
        assert!(table.is_empty());
        assert_eq!(table.singleton(&s, false, false, &mut effects), GridOutcome::Recorded { applied: 0, refused: 0 });
    }

    #[test]
    fn a_lost_node_orphans_every_actor_it_owned_and_only_those() {
        let mut table = ActorTable::new();
        let mut effects = GridEffects::default();
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let ta = granted(&table.activate(1, &a, N1, true, true, &mut effects));
        let tb = granted(&table.activate(2, &b, N1, false, true, &mut effects));
        granted(&table.activate(3, &c, N2, true, true, &mut effects));
        effects = GridEffects::default();
        table.on_node_lost(N1, 9, &mut effects);
        assert_eq!(effects.actors_ended, vec![(a.clone(), N1, ta), (b.clone(), N1, tb)]);
        assert_eq!(effects.actors_orphaned, vec![a.clone(), b.clone()]);
        for orphan in [&a, &b] {
            let record = table.get(orphan).expect("kept, so nodes know to wait before taking it over");
            assert_eq!((record.node, record.orphaned_zxid), (None, 9));
        }
        assert_eq!(table.get(&c).expect("c").node, Some(N2));
        // A zombie commit from the lost node does not write.
        assert_eq!(table.commit(&[commit(&a, ta, 1, b"late")]), GridOutcome::ActorsCommitted { refused: vec![0] });
        // The orphan is free: another node takes it, and the orphaning is cleared.
        granted(&table.activate(10, &a, N2, true, true, &mut effects));
        assert_eq!(table.get(&a).expect("a").orphaned_zxid, 0);
        let mut effects = GridEffects::default();
        table.on_node_lost(N1, 11, &mut effects);
        assert!(effects.is_empty(), "nothing left on node 1");
        assert_eq!(ActorTable::from_records(table.records().clone()), table, "derived counts rebuild alike");
    }

    #[test]
    fn only_a_volatile_orphan_is_forgotten_and_only_for_its_own_orphaning() {
        let mut table = ActorTable::new();
        let mut effects = GridEffects::default();
        let (durable, volatile, again, single) = (id("d"), id("v"), id("w"), id("s"));
        granted(&table.activate(1, &durable, N1, true, true, &mut effects));
        granted(&table.activate(2, &volatile, N1, false, true, &mut effects));
        granted(&table.activate(3, &again, N1, false, true, &mut effects));
        table.singleton(&single, false, true, &mut effects);
        granted(&table.activate(4, &single, N1, false, true, &mut effects));
        table.on_node_lost(N1, 9, &mut effects);
        let orphans: Vec<(ActorId, u64)> = table.volatile_orphans().map(|(id, zxid)| (id.clone(), zxid)).collect();
        assert_eq!(orphans, vec![(volatile.clone(), 9), (again.clone(), 9)], "durable and singleton records stay");
        assert_eq!(ActorTable::from_records(table.records().clone()), table, "the orphans rebuild alike");
        // Taken over before the forget applies: it stays.
        granted(&table.activate(10, &again, N2, false, true, &mut effects));
        let outcome =
            table.forget(&[(volatile.clone(), 8), (durable.clone(), 9), (again.clone(), 9), (single.clone(), 9)]);
        assert_eq!(outcome, GridOutcome::Recorded { applied: 0, refused: 4 });
        assert_eq!(table.len(), 4);
        assert_eq!(table.forget(&[(volatile.clone(), 9)]), GridOutcome::Recorded { applied: 1, refused: 0 });
        assert!(table.get(&volatile).is_none(), "the volatile orphan's record is gone");
        assert_eq!(table.volatile_orphans().count(), 0);
        assert_eq!(table.forget(&[(volatile.clone(), 9)]), GridOutcome::Recorded { applied: 0, refused: 1 });
        assert_eq!(ActorTable::from_records(table.records().clone()), table, "derived counts rebuild alike");
        // Its next call activates it afresh, with no wait to serve.
        granted(&table.activate(12, &volatile, N2, false, true, &mut effects));
        assert_eq!(table.get(&volatile).expect("v").activations, 1);
    }
}
