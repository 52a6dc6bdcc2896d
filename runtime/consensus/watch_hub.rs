//! Delivers watch events to local watchers through bounded queues.
//!
//! A watcher that falls a full queue behind is cut off (its stream ends) rather than let memory grow;
//! it reconnects and re-registers with the last zxid it saw, and registration tells it what it may
//! have missed (ZooKeeper's `setWatches`).
//!
//! Invariant: closing a watcher (its HTTP stream ended, however it ended) removes it and every watch
//! it holds at once, dropping its queue, so the memory of closed watches is given back.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::registry::watch::WatchLimit;
use crate::registry::{Change, Registry, WatchEvent, WatchKind, WatchTable, WatcherId, ZPath};

/// Events queued per watcher before it is cut off.
pub const WATCH_EVENTS_QUEUED_MAX: usize = 1024;
/// Watchers (client watch streams) per node.
pub const WATCHERS_MAX: usize = 10_000;
/// Watch registrations per node.
pub const WATCHES_MAX: usize = 1_000_000;
/// Watch registrations per watcher (one client connection): a tenth of the node's, so no ten
/// clients can fill it.
pub const WATCHES_PER_WATCHER_MAX: usize = WATCHES_MAX / 10;

/// Why a watch could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// Too many watchers or watches on this node.
    #[error("watch limit reached: {0}")]
    Limit(String),
    /// The watcher is gone (cut off or closed).
    #[error("unknown or closed watcher")]
    UnknownWatcher,
}

impl From<WatchLimit> for WatchError {
    fn from(limit: WatchLimit) -> Self {
        WatchError::Limit(limit.to_string())
    }
}

struct Hub {
    table: WatchTable,
    watchers: BTreeMap<WatcherId, mpsc::Sender<WatchEvent>>,
    next_id: u64,
}

/// The node's watchers and their watches.
pub struct WatchHub {
    hub: Mutex<Hub>,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub").finish_non_exhaustive()
    }
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub {
            hub: Mutex::new(Hub {
                table: WatchTable::bounded(WATCHES_MAX, WATCHES_PER_WATCHER_MAX),
                watchers: BTreeMap::new(),
                next_id: 1,
            }),
        }
    }
}

impl WatchHub {
    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a watcher: an id and the stream of its events.
    ///
    /// # Errors
    /// [`WatchError::Limit`] when the node has too many watchers.
    pub fn open(&self) -> Result<(WatcherId, mpsc::Receiver<WatchEvent>), WatchError> {
        let mut hub = self.hub();
        if hub.watchers.len() >= WATCHERS_MAX {
            return Err(WatchError::Limit(format!("{WATCHERS_MAX} watchers")));
        }
        let id = WatcherId(hub.next_id);
        hub.next_id += 1;
        let (sender, receiver) = mpsc::channel(WATCH_EVENTS_QUEUED_MAX);
        hub.watchers.insert(id, sender);
        Ok((id, receiver))
    }

    /// Closes a watcher and drops its watches.
    pub fn close(&self, watcher: WatcherId) {
        let mut hub = self.hub();
        hub.watchers.remove(&watcher);
        hub.table.remove_watcher(watcher);
    }

    /// Watches registered on this node.
    pub fn watch_count(&self) -> usize {
        self.hub().table.len()
    }

    /// Whether `watcher` holds a watch of `kind` on `path`.
    pub fn contains(&self, watcher: WatcherId, path: &ZPath, kind: WatchKind) -> bool {
        self.hub().table.contains(watcher, path, kind)
    }

    /// Removes `watcher`'s watch of `kind` on `path`; answers whether it held one.
    pub fn remove(&self, watcher: WatcherId, path: &ZPath, kind: WatchKind) -> bool {
        self.hub().table.remove(watcher, path, kind)
    }

    /// Queues `event` for `watcher` (an event it missed, found when it set its watches again).
    ///
    /// # Errors
    /// [`WatchError::UnknownWatcher`] if the watcher is gone, or was cut off now because its queue
    /// is full.
    pub fn deliver(&self, watcher: WatcherId, event: WatchEvent) -> Result<(), WatchError> {
        let mut hub = self.hub();
        let Some(sender) = hub.watchers.get(&watcher) else { return Err(WatchError::UnknownWatcher) };
        if sender.try_send(event).is_err() {
            hub.watchers.remove(&watcher);
            hub.table.remove_watcher(watcher);
            return Err(WatchError::UnknownWatcher);
        }
        Ok(())
    }

    /// Watchers (open watch streams) on this node.
    pub fn watcher_count(&self) -> usize {
        self.hub().watchers.len()
    }

    /// Registers a watch. Call inside a read of `registry` so no change slips between the read and
    /// the registration. With `since_zxid`, a change after that zxid is reported at once.
    ///
    /// # Errors
    /// [`WatchError`] if the watcher is unknown or a limit is reached.
    pub fn register(
        &self,
        registry: &Registry,
        watcher: WatcherId,
        path: &ZPath,
        kind: WatchKind,
        since_zxid: Option<u64>,
    ) -> Result<(), WatchError> {
        let mut hub = self.hub();
        let Some(sender) = hub.watchers.get(&watcher).cloned() else { return Err(WatchError::UnknownWatcher) };
        if let Some(since) = since_zxid {
            if let Some(change) = missed_change(registry, path, kind, since) {
                let event = WatchEvent { zxid: registry.last_zxid(), change };
                if sender.try_send(event).is_err() {
                    // Its stream is gone: nothing it registers could ever be delivered.
                    hub.watchers.remove(&watcher);
                    hub.table.remove_watcher(watcher);
                    return Err(WatchError::UnknownWatcher);
                }
                if kind != WatchKind::PersistentRecursive {
                    return Ok(());
                }
            }
        }
        hub.table.register(watcher, path.clone(), kind)?;
        Ok(())
    }

    /// Delivers the changes of `zxid` (called by the state machine, in apply order).
    pub fn on_changes(&self, zxid: u64, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let mut hub = self.hub();
        let mut events = Vec::new();
        hub.table.on_changes(zxid, changes, &mut events);
        for (watcher, event) in events {
            let full = hub.watchers.get(&watcher).is_some_and(|sender| sender.try_send(event).is_err());
            if full {
                // Cut off: its stream ends, it reconnects with its last zxid and learns what it missed.
                hub.watchers.remove(&watcher);
                hub.table.remove_watcher(watcher);
                metrics::counter!("gridkeeper_registry_watchers_cut_off_total").increment(1);
            }
        }
    }

    /// The state was replaced by a snapshot: every watcher must resynchronise.
    pub fn on_reset(&self) {
        let mut hub = self.hub();
        let watchers: Vec<WatcherId> = hub.watchers.keys().copied().collect();
        for watcher in watchers {
            hub.table.remove_watcher(watcher);
        }
        hub.watchers.clear();
    }
}

/// What a watcher that last saw `since` missed about `path`, if anything.
fn missed_change(registry: &Registry, path: &ZPath, kind: WatchKind, since: u64) -> Option<Change> {
    match (registry.exists(path), kind) {
        (None, WatchKind::Data | WatchKind::Child) => Some(Change::NodeDeleted { path: path.clone() }),
        (Some(stat), WatchKind::Data) if stat.czxid > since => Some(Change::NodeCreated { path: path.clone() }),
        (Some(stat), WatchKind::Data) if stat.mzxid > since => Some(Change::NodeDataChanged { path: path.clone() }),
        (Some(stat), WatchKind::Child) if stat.pzxid > since => {
            Some(Change::NodeChildrenChanged { path: path.clone() })
        }
        (Some(stat), WatchKind::PersistentRecursive) if stat.pzxid.max(stat.mzxid) > since => {
            Some(Change::NodeChildrenChanged { path: path.clone() })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_watchers_gives_back_their_watches_and_queues() {
        let hub = WatchHub::default();
        let registry = Registry::new(Default::default());
        let root = ZPath::parse("/").expect("path");
        let mut open = Vec::new();
        for _ in 0..100 {
            let (watcher, events) = hub.open().expect("room");
            hub.register(&registry, watcher, &root, WatchKind::PersistentRecursive, None).expect("registered");
            hub.register(&registry, watcher, &root, WatchKind::Child, None).expect("registered");
            open.push((watcher, events));
        }
        assert_eq!((hub.watcher_count(), hub.watch_count()), (100, 200));
        for (watcher, events) in open.drain(..) {
            drop(events);
            hub.close(watcher);
        }
        assert_eq!((hub.watcher_count(), hub.watch_count()), (0, 0));
    }

    #[test]
    fn a_watcher_whose_stream_is_gone_registers_nothing() {
        let hub = WatchHub::default();
        let registry = Registry::new(Default::default());
        let (watcher, events) = hub.open().expect("room");
        drop(events);
        let missing = ZPath::parse("/missing").expect("path");
        let result = hub.register(&registry, watcher, &missing, WatchKind::Data, Some(0));
        assert_eq!(result, Err(WatchError::UnknownWatcher));
        assert_eq!((hub.watcher_count(), hub.watch_count()), (0, 0));
    }
}
