//! Property test of the actors' ownership table (`grid::actors`): random sequences of activations
//! (registered and unregistered nodes), commits (current, stale and made-up tokens, old and new
//! `seq`s), releases, singleton declarations and removals, node losses and re-registrations, applied
//! to the real table and to a plain model. After every step:
//! - the effects never show two live activations of one actor (an ownership ends before the next one
//!   starts), and a grant goes only to a registered node, with a token above every earlier one;
//! - a commit applies exactly when its token is the current one of an owned actor and its `seq` is
//!   above the record's: a commit with any other token never changes anything;
//! - a record's `seq` never decreases while it exists (durable records always exist once made);
//! - the table agrees with the model, and its derived counts with its records.

use std::collections::{BTreeMap, BTreeSet};

use gridkeeper::grid::{ActorCommit, ActorId, ActorTable, FencingToken, GridEffects, GridOutcome};
use gridkeeper::ids::NodeId;
use proptest::prelude::*;

const NODES: u64 = 3;
const ACTORS: usize = 4;

#[derive(Debug, Clone)]
enum Step {
    Activate { actor: usize, node: u64, durable: bool },
    Commit { actor: usize, token: TokenPick, seq_step: i8, state: u8 },
    Release { actor: usize, token: TokenPick },
    Singleton { actor: usize, durable: bool, start: bool },
    LoseNode { node: u64 },
    Register { node: u64 },
}

/// Which token a command carries.
#[derive(Debug, Clone, Copy)]
enum TokenPick {
    Current,
    /// An earlier token of the same actor (a zombie), if it had one.
    Earlier(usize),
    Made(u64),
}

fn token_pick() -> impl Strategy<Value = TokenPick> {
    prop_oneof![
        4 => Just(TokenPick::Current),
        2 => any::<usize>().prop_map(TokenPick::Earlier),
        1 => (0u64..200).prop_map(TokenPick::Made),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..ACTORS, 1..=NODES, any::<bool>()).prop_map(|(actor, node, durable)| Step::Activate { actor, node, durable }),
        6 => (0..ACTORS, token_pick(), -1i8..3, any::<u8>())
            .prop_map(|(actor, token, seq_step, state)| Step::Commit { actor, token, seq_step, state }),
        2 => (0..ACTORS, token_pick()).prop_map(|(actor, token)| Step::Release { actor, token }),
        1 => (0..ACTORS, any::<bool>(), any::<bool>()).prop_map(|(actor, durable, start)| Step::Singleton { actor, durable, start }),
        1 => (1..=NODES).prop_map(|node| Step::LoseNode { node }),
        2 => (1..=NODES).prop_map(|node| Step::Register { node }),
    ]
}

fn actor(index: usize) -> ActorId {
    ActorId::new("counter", &format!("k{index}")).expect("valid")
}

/// What the model keeps of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    node: Option<NodeId>,
    token: FencingToken,
    durable: bool,
    singleton: bool,
    seq: u64,
    state: Vec<u8>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn one_owner_state_never_goes_back_and_stale_tokens_never_write(steps in proptest::collection::vec(step(), 1..150)) {
        let mut table = ActorTable::new();
        let mut model: BTreeMap<ActorId, Model> = BTreeMap::new();
        let mut registered: BTreeSet<NodeId> = (1..=NODES).map(NodeId).collect();
        // Live activations as the effects tell the hosts: actor → (node, token).
        let mut live: BTreeMap<ActorId, (NodeId, FencingToken)> = BTreeMap::new();
        let mut tokens_seen: BTreeMap<ActorId, Vec<FencingToken>> = BTreeMap::new();
        let mut seqs: BTreeMap<ActorId, u64> = BTreeMap::new();
        let mut zxid = 0u64;
        for step in steps {
            zxid += 1;
            let mut effects = GridEffects::default();
            let pick = |id: &ActorId, pick: TokenPick, model: &BTreeMap<ActorId, Model>| match pick {
                TokenPick::Current => model.get(id).map_or(FencingToken(0), |record| record.token),
                TokenPick::Earlier(i) => {
                    let seen = tokens_seen.get(id).map(Vec::as_slice).unwrap_or_default();
                    if seen.is_empty() { FencingToken(0) } else { seen[i % seen.len()] }
                }
                TokenPick::Made(token) => FencingToken(token),
            };
            match step {
                Step::Activate { actor: a, node, durable } => {
                    let id = actor(a);
                    let node = NodeId(node);
                    let is_registered = registered.contains(&node);
                    let outcome = table.activate(zxid, &id, node, durable, is_registered, &mut effects);
                    let owner = model.get(&id).and_then(|record| record.node);
                    let grant = is_registered && owner.is_none_or(|owner| owner == node);
                    if grant {
                        let record = model.entry(id.clone()).or_insert(Model {
                            node: None, token: FencingToken(0), durable, singleton: false, seq: 0, state: Vec::new(),
                        });
                        prop_assert!(matches!(&outcome, GridOutcome::ActorActivated { token, state, seq, .. }
                            if *token == FencingToken(zxid) && *state == record.state && *seq == record.seq), "{outcome:?}");
                        record.node = Some(node);
                        record.token = FencingToken(zxid);
                        record.durable |= durable;
                        tokens_seen.entry(id.clone()).or_default().push(FencingToken(zxid));
                    } else {
                        prop_assert!(matches!(&outcome, GridOutcome::ActorRefused { owner: o, .. } if *o == owner), "{outcome:?}");
                    }
                }
                Step::Commit { actor: a, token, seq_step, state } => {
                    let id = actor(a);
                    let token = pick(&id, token, &model);
                    let current = model.get(&id).cloned();
                    let seq = current.as_ref().map_or(0, |record| record.seq).saturating_add_signed(i64::from(seq_step));
                    let commit = ActorCommit { actor: id.clone(), token, seq, state: vec![state], replies: vec![(format!("r{seq}"), vec![state])] };
                    let outcome = table.commit(&[commit]);
                    let applies = current.as_ref().is_some_and(|record| {
                        record.node.is_some() && record.token == token && seq > record.seq
                    });
                    let refused = if applies { vec![] } else { vec![0] };
                    prop_assert_eq!(outcome, GridOutcome::ActorsCommitted { refused });
                    if applies {
                        let record = model.get_mut(&id).expect("known");
                        record.seq = seq;
                        record.state = vec![state];
                    } else {
                        // Nothing changed: a commit with any other token never writes.
                        let now = table.get(&id).map(|record| (record.seq, record.state.clone()));
                        prop_assert_eq!(now, current.map(|record| (record.seq, record.state)));
                    }
                }
                Step::Release { actor: a, token } => {
                    let id = actor(a);
                    let token = pick(&id, token, &model);
                    let outcome = table.release(&id, token, &mut effects);
                    let applies = model.get(&id).is_some_and(|record| record.node.is_some() && record.token == token);
                    if applies {
                        prop_assert_eq!(outcome, GridOutcome::Recorded { applied: 1, refused: 0 });
                        let record = model.get_mut(&id).expect("known");
                        record.node = None;
                        if !record.durable && !record.singleton {
                            model.remove(&id);
                        }
                    } else {
                        prop_assert!(matches!(outcome, GridOutcome::ActorRefused { .. }), "{outcome:?}");
                    }
                }
                Step::Singleton { actor: a, durable, start } => {
                    let id = actor(a);
                    table.singleton(&id, durable, start, &mut effects);
                    if start {
                        let record = model.entry(id.clone()).or_insert(Model {
                            node: None, token: FencingToken(0), durable, singleton: true, seq: 0, state: Vec::new(),
                        });
                        record.singleton = true;
                        record.durable |= durable;
                    } else if let Some(record) = model.get_mut(&id).filter(|record| record.singleton) {
                        record.singleton = false;
                        record.node = None;
                        if !record.durable {
                            model.remove(&id);
                        }
                    }
                }
                Step::LoseNode { node } => {
                    let node = NodeId(node);
                    if registered.remove(&node) {
                        table.on_node_lost(node, zxid, &mut effects);
                        for record in model.values_mut().filter(|record| record.node == Some(node)) {
                            record.node = None;
                        }
                    }
                }
                Step::Register { node } => {
                    registered.insert(NodeId(node));
                }
            }

            // The hosts' view: an ownership ends before another starts, grants go to registered
            // nodes, and tokens only grow.
            for (id, node, token) in &effects.actors_ended {
                prop_assert_eq!(live.remove(id), Some((*node, *token)), "ended what was live");
            }
            for (id, node, token) in &effects.actors_activated {
                prop_assert!(registered.contains(node));
                prop_assert!(live.insert(id.clone(), (*node, *token)).is_none(), "two live activations of {}", id);
                let seen = tokens_seen.get(id).map(Vec::as_slice).unwrap_or_default();
                prop_assert!(seen.iter().all(|earlier| earlier <= token));
            }
            for id in &effects.actors_orphaned {
                prop_assert_eq!(table.get(id).map(|record| (record.node, record.orphaned_zxid)), Some((None, zxid)));
            }

            // The table agrees with the model and with the live activations.
            let actual: BTreeMap<ActorId, Model> = table
                .iter()
                .map(|(id, r)| {
                    (id.clone(), Model { node: r.node, token: r.token, durable: r.durable, singleton: r.singleton, seq: r.seq, state: r.state.clone() })
                })
                .collect();
            prop_assert_eq!(&actual, &model);
            let owned: BTreeMap<ActorId, (NodeId, FencingToken)> =
                model.iter().filter_map(|(id, r)| r.node.map(|node| (id.clone(), (node, r.token)))).collect();
            prop_assert_eq!(&owned, &live);
            for node in (1..=NODES).map(NodeId) {
                let by_index: BTreeSet<&ActorId> = table.owned_by(node).collect();
                let by_record: BTreeSet<&ActorId> = owned.iter().filter(|(_, (n, _))| *n == node).map(|(id, _)| id).collect();
                prop_assert_eq!(by_index, by_record);
                if !registered.contains(&node) {
                    prop_assert!(table.owned_by(node).next().is_none(), "an unregistered node owns nothing");
                }
            }
            prop_assert_eq!(table.state_bytes(), table.iter().map(|(_, r)| r.state_bytes()).sum::<usize>());
            // State never goes back while its record exists.
            seqs.retain(|id, _| table.get(id).is_some());
            for (id, record) in table.iter() {
                let before = seqs.insert(id.clone(), record.seq).unwrap_or(0);
                prop_assert!(record.seq >= before, "{} went back from {} to {}", id, before, record.seq);
                prop_assert!(record.recent.len() <= gridkeeper::limits::ACTOR_RECENT_REPLIES_MAX);
            }
        }
    }
}
