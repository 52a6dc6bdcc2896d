//! Model test: random operation sequences on the registry state machine and on a plain `BTreeMap`
//! model of ZooKeeper semantics, compared after every step.

use std::collections::BTreeMap;

use gridkeeper::registry::{Command, CreateMode, Outcome, Proposal, Registry, RegistryLimits, ZPath};
use proptest::prelude::*;

/// The model: path -> (data, version). The root always exists.
#[derive(Default, Debug)]
struct Model {
    nodes: BTreeMap<String, (Vec<u8>, u32)>,
}

fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".to_string(),
        Some(cut) => path[..cut].to_string(),
        None => "/".to_string(),
    }
}

impl Model {
    fn exists(&self, path: &str) -> bool {
        path == "/" || self.nodes.contains_key(path)
    }
    fn has_children(&self, path: &str) -> bool {
        self.nodes.keys().any(|other| parent_of(other) == path)
    }
    /// The error name the real registry must give, or `None` on success (after applying).
    fn apply(&mut self, op: &Op) -> Option<&'static str> {
        match op {
            Op::Create { path, data } => {
                if self.exists(path) {
                    return Some("node exists");
                }
                if !self.exists(&parent_of(path)) {
                    return Some("no node");
                }
                self.nodes.insert(path.clone(), (data.clone(), 0));
                None
            }
            Op::Set { path, data, version } => match self.nodes.get_mut(path) {
                None => Some("no node"),
                Some((_, actual)) if version.is_some_and(|v| v != *actual) => Some("bad version"),
                Some(node) => {
                    *node = (data.clone(), node.1 + 1);
                    None
                }
            },
            Op::Delete { path, version } => match self.nodes.get(path) {
                None => Some("no node"),
                Some((_, actual)) if version.is_some_and(|v| v != *actual) => Some("bad version"),
                Some(_) if self.has_children(path) => Some("not empty"),
                Some(_) => {
                    self.nodes.remove(path);
                    None
                }
            },
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create { path: String, data: Vec<u8> },
    Set { path: String, data: Vec<u8>, version: Option<u32> },
    Delete { path: String, version: Option<u32> },
}

fn path_strategy() -> impl Strategy<Value = String> {
    // A small alphabet and depth so that operations collide often.
    proptest::collection::vec(prop_oneof!["a", "b", "c"], 1..4).prop_map(|segments| format!("/{}", segments.join("/")))
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let data = proptest::collection::vec(any::<u8>(), 0..8);
    let version = proptest::option::of(0u32..3);
    prop_oneof![
        3 => (path_strategy(), data.clone()).prop_map(|(path, data)| Op::Create { path, data }),
        2 => (path_strategy(), data, version.clone()).prop_map(|(path, data, version)| Op::Set { path, data, version }),
        2 => (path_strategy(), version).prop_map(|(path, version)| Op::Delete { path, version }),
    ]
}

fn command(op: &Op) -> Command {
    let path = |text: &str| ZPath::parse(text).expect("strategy makes valid paths");
    match op {
        Op::Create { path: p, data } => Command::Create {
            path: path(p),
            data: data.clone(),
            mode: CreateMode::Persistent,
            session: None,
            ttl_ms: None,
        },
        Op::Set { path: p, data, version } => Command::Set { path: path(p), data: data.clone(), version: *version },
        Op::Delete { path: p, version } => Command::Delete { path: path(p), version: *version },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn registry_matches_the_model(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        let mut registry = Registry::new(RegistryLimits::default());
        let mut model = Model::default();
        for (index, op) in ops.iter().enumerate() {
            let zxid = index as u64 + 1;
            let (result, _) = registry.apply(zxid, &Proposal { now_ms: zxid, command: command(op) });
            let expected = model.apply(op);
            prop_assert_eq!(result.as_ref().err().map(|error| error.code().name()), expected, "op {} {:?}", index, op);
            if let (Op::Create { .. }, Ok(outcome)) = (op, &result) {
                let stamped = matches!(outcome, Outcome::Created { stat, .. } if stat.czxid == zxid);
                prop_assert!(stamped, "create at zxid {} must stamp czxid", zxid);
            }
        }
        // Same nodes, same data, same versions, same child counts.
        let mut stack = vec![ZPath::root()];
        let mut seen = 0;
        while let Some(path) = stack.pop() {
            let (children, stat) = registry.children(&path).expect("listed nodes exist");
            prop_assert_eq!(stat.num_children as usize, children.len());
            for child in children {
                let child = path.child(&child).expect("valid");
                let (data, stat) = registry.get(&child).expect("exists");
                let (model_data, model_version) = model.nodes.get(child.as_str()).expect("model has it");
                prop_assert_eq!(data, model_data.as_slice());
                prop_assert_eq!(stat.version, *model_version);
                seen += 1;
                stack.push(child);
            }
        }
        prop_assert_eq!(seen, model.nodes.len());
        prop_assert_eq!(registry.znode_count(), model.nodes.len() + 1);
    }
}
