//! Watches: which local watcher hears of which change. A node-local, deterministic table; watches
//! are not replicated (as in ZooKeeper, they live on the server the client talks to).
//!
//! Invariant: events come out in the order changes were applied (zxid order), and a one-shot watch
//! fires at most once.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::Change;
use super::path::ZPath;

/// A local watcher (one client connection's watch stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WatcherId(pub u64);

/// What a watch is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchKind {
    /// One shot: the node's creation, data change or deletion.
    Data,
    /// One shot: a change to the node's children, or its deletion.
    Child,
    /// Every creation, data change and deletion at or below the path, until removed.
    PersistentRecursive,
    /// Every creation, data change, deletion and change to the children of the path itself, until
    /// removed (ZooKeeper's persistent, non-recursive `addWatch`).
    Persistent,
}

/// A change delivered to a watcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The zxid that made the change.
    pub zxid: u64,
    /// The change.
    pub change: Change,
}

/// Why a watch was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("watch limit of {0} reached")]
pub struct WatchLimit(pub usize);

/// Every watch on this node.
#[derive(Debug, Clone)]
pub struct WatchTable {
    by_kind: [BTreeMap<ZPath, BTreeSet<WatcherId>>; 4],
    count: usize,
    /// Watches each watcher holds, for the per-watcher bound; no entry for a watcher holding none.
    per_watcher: BTreeMap<WatcherId, usize>,
    max: usize,
    per_watcher_max: usize,
}

fn index(kind: WatchKind) -> usize {
    match kind {
        WatchKind::Data => 0,
        WatchKind::Child => 1,
        WatchKind::PersistentRecursive => 2,
        WatchKind::Persistent => 3,
    }
}

impl WatchTable {
    /// A table holding at most `max` watches, any number of them one watcher's.
    pub fn new(max: usize) -> WatchTable {
        WatchTable::bounded(max, max)
    }

    /// A table holding at most `max` watches, at most `per_watcher_max` of them one watcher's.
    pub fn bounded(max: usize, per_watcher_max: usize) -> WatchTable {
        WatchTable { by_kind: Default::default(), count: 0, per_watcher: BTreeMap::new(), max, per_watcher_max }
    }

    /// Watches `watcher` holds.
    pub fn watcher_len(&self, watcher: WatcherId) -> usize {
        self.per_watcher.get(&watcher).copied().unwrap_or(0)
    }

    /// Whether `watcher` holds a watch of `kind` on `path`.
    pub fn contains(&self, watcher: WatcherId, path: &ZPath, kind: WatchKind) -> bool {
        self.by_kind[index(kind)].get(path).is_some_and(|watchers| watchers.contains(&watcher))
    }

    /// Removes `watcher`'s watch of `kind` on `path`; answers whether it held one.
    pub fn remove(&mut self, watcher: WatcherId, path: &ZPath, kind: WatchKind) -> bool {
        let table = &mut self.by_kind[index(kind)];
        let Some(watchers) = table.get_mut(path) else { return false };
        if !watchers.remove(&watcher) {
            return false;
        }
        if watchers.is_empty() {
            table.remove(path);
        }
        self.count -= 1;
        Self::forget(&mut self.per_watcher, watcher, 1);
        true
    }

    fn forget(per_watcher: &mut BTreeMap<WatcherId, usize>, watcher: WatcherId, watches: usize) {
        if let Some(held) = per_watcher.get_mut(&watcher) {
            *held = held.saturating_sub(watches);
            if *held == 0 {
                per_watcher.remove(&watcher);
            }
        }
    }

    /// Watches registered.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no watch is registered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Registers `watcher` on `path`.
    ///
    /// # Errors
    /// [`WatchLimit`] when the table is full, or the watcher holds its most.
    pub fn register(&mut self, watcher: WatcherId, path: ZPath, kind: WatchKind) -> Result<(), WatchLimit> {
        if self.contains(watcher, &path, kind) {
            return Ok(());
        }
        if self.count >= self.max {
            return Err(WatchLimit(self.max));
        }
        if self.watcher_len(watcher) >= self.per_watcher_max {
            return Err(WatchLimit(self.per_watcher_max));
        }
        self.by_kind[index(kind)].entry(path).or_default().insert(watcher);
        self.count += 1;
        *self.per_watcher.entry(watcher).or_default() += 1;
        Ok(())
    }

    /// Removes every watch of `watcher` (its connection closed).
    pub fn remove_watcher(&mut self, watcher: WatcherId) {
        if self.per_watcher.remove(&watcher).is_none() {
            return;
        }
        for table in &mut self.by_kind {
            table.retain(|_, watchers| {
                if watchers.remove(&watcher) {
                    self.count -= 1;
                }
                !watchers.is_empty()
            });
        }
    }

    fn fire_once(
        &mut self,
        kind: WatchKind,
        path: &ZPath,
        zxid: u64,
        change: &Change,
        out: &mut Vec<(WatcherId, WatchEvent)>,
    ) {
        if let Some(watchers) = self.by_kind[index(kind)].remove(path) {
            self.count -= watchers.len();
            for &watcher in &watchers {
                Self::forget(&mut self.per_watcher, watcher, 1);
            }
            out.extend(watchers.into_iter().map(|watcher| (watcher, WatchEvent { zxid, change: change.clone() })));
        }
    }

    /// Turns the changes of the command at `zxid` into events, removing the one-shot watches fired.
    pub fn on_changes(&mut self, zxid: u64, changes: &[Change], out: &mut Vec<(WatcherId, WatchEvent)>) {
        for change in changes {
            let path = change.path().clone();
            if let Some(watchers) = self.by_kind[index(WatchKind::Persistent)].get(&path) {
                out.extend(watchers.iter().map(|&watcher| (watcher, WatchEvent { zxid, change: change.clone() })));
            }
            match change {
                Change::NodeCreated { .. } | Change::NodeDataChanged { .. } => {
                    self.fire_once(WatchKind::Data, &path, zxid, change, out);
                }
                Change::NodeDeleted { .. } => {
                    self.fire_once(WatchKind::Data, &path, zxid, change, out);
                    self.fire_once(WatchKind::Child, &path, zxid, change, out);
                }
                Change::NodeChildrenChanged { .. } => {
                    self.fire_once(WatchKind::Child, &path, zxid, change, out);
                    // Persistent recursive watches hear of the children themselves, not of this.
                    continue;
                }
            }
            let mut ancestor = Some(path);
            while let Some(current) = ancestor {
                if let Some(watchers) = self.by_kind[index(WatchKind::PersistentRecursive)].get(&current) {
                    out.extend(watchers.iter().map(|&watcher| (watcher, WatchEvent { zxid, change: change.clone() })));
                }
                ancestor = current.parent();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ZPath {
        ZPath::parse(text).expect("valid")
    }

    const W1: WatcherId = WatcherId(1);
    const W2: WatcherId = WatcherId(2);

    #[test]
    fn one_shot_watches_fire_once() {
        let mut table = WatchTable::new(100);
        table.register(W1, p("/a"), WatchKind::Data).expect("room");
        table.register(W2, p("/a"), WatchKind::Child).expect("room");
        let mut out = Vec::new();
        table.on_changes(5, &[Change::NodeDataChanged { path: p("/a") }], &mut out);
        table.on_changes(6, &[Change::NodeDataChanged { path: p("/a") }], &mut out);
        assert_eq!(out, vec![(W1, WatchEvent { zxid: 5, change: Change::NodeDataChanged { path: p("/a") } })]);
        out.clear();
        table.on_changes(7, &[Change::NodeDeleted { path: p("/a") }], &mut out);
        assert_eq!(out, vec![(W2, WatchEvent { zxid: 7, change: Change::NodeDeleted { path: p("/a") } })]);
        assert!(table.is_empty());
    }

    #[test]
    fn recursive_watches_see_everything_below_until_removed() {
        let mut table = WatchTable::new(100);
        table.register(W1, p("/app"), WatchKind::PersistentRecursive).expect("room");
        let mut out = Vec::new();
        let changes = [
            Change::NodeCreated { path: p("/app/x/y") },
            Change::NodeChildrenChanged { path: p("/app/x") },
            Change::NodeDataChanged { path: p("/other") },
        ];
        table.on_changes(9, &changes, &mut out);
        table.on_changes(10, &[Change::NodeDeleted { path: p("/app") }], &mut out);
        let zxids: Vec<u64> = out.iter().map(|(_, event)| event.zxid).collect();
        assert_eq!(zxids, vec![9, 10]);
        table.remove_watcher(W1);
        out.clear();
        table.on_changes(11, &[Change::NodeCreated { path: p("/app") }], &mut out);
        assert!(out.is_empty() && table.is_empty());
    }

    #[test]
    fn persistent_watches_see_their_node_and_its_children_list_until_removed() {
        let mut table = WatchTable::new(100);
        table.register(W1, p("/a"), WatchKind::Persistent).expect("room");
        let mut out = Vec::new();
        let changes = [
            Change::NodeCreated { path: p("/a") },
            Change::NodeCreated { path: p("/a/b") },
            Change::NodeChildrenChanged { path: p("/a") },
            Change::NodeDataChanged { path: p("/a") },
        ];
        table.on_changes(3, &changes, &mut out);
        let seen: Vec<&Change> = out.iter().map(|(_, event)| &event.change).collect();
        assert_eq!(seen, vec![&changes[0], &changes[2], &changes[3]]);
        assert!(table.contains(W1, &p("/a"), WatchKind::Persistent));
        assert!(table.remove(W1, &p("/a"), WatchKind::Persistent));
        assert!(!table.remove(W1, &p("/a"), WatchKind::Persistent));
        assert!(table.is_empty() && table.watcher_len(W1) == 0);
    }

    #[test]
    fn each_watcher_is_bounded_and_fired_watches_give_back_room() {
        let mut table = WatchTable::bounded(100, 2);
        table.register(W1, p("/a"), WatchKind::Data).expect("room");
        table.register(W1, p("/a"), WatchKind::Data).expect("the same watch again takes no room");
        table.register(W1, p("/b"), WatchKind::Data).expect("room");
        assert_eq!(table.register(W1, p("/c"), WatchKind::Data), Err(WatchLimit(2)));
        table.register(W2, p("/c"), WatchKind::Data).expect("another watcher has room");
        let mut out = Vec::new();
        table.on_changes(4, &[Change::NodeDataChanged { path: p("/a") }], &mut out);
        assert_eq!(table.watcher_len(W1), 1);
        table.register(W1, p("/c"), WatchKind::Data).expect("room again");
        table.remove_watcher(W1);
        assert_eq!((table.len(), table.watcher_len(W1)), (1, 0));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = WatchTable::new(1);
        table.register(W1, p("/a"), WatchKind::Data).expect("room");
        table.register(W1, p("/a"), WatchKind::Data).expect("the same watch again takes no room");
        table.register(W2, p("/b"), WatchKind::Data).expect_err("full");
        assert_eq!(table.len(), 1);
    }
}
