//! openraft's log storage over [`Disk`]: the vote, the committed id and the log entries.
//!
//! The log tail since the last purge is also kept in memory (bounded by the snapshot policy), so
//! reads never wait for the disk, and entries are readable as soon as `append` returns while their
//! fsync completes in the group committer.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;

use super::disk::{Disk, WriteBatch};
use super::types::{Entry, LogId, TypeConfig, Vote};

const META_VOTE: &str = "vote";
const META_COMMITTED: &str = "committed";
const META_PURGED: &str = "purged";

fn io_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

fn encode<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(io_error)
}

fn decode<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(io_error)
}

#[derive(Default)]
struct Tail {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// Encoded bytes appended since a snapshot was last asked for over them.
#[derive(Default)]
struct Growth {
    bytes: std::sync::atomic::AtomicU64,
    due: tokio::sync::Notify,
}

/// The log store; clones share the same log.
#[derive(Clone)]
pub struct LogStore {
    disk: Disk,
    tail: Arc<Mutex<Tail>>,
    growth: Arc<Growth>,
    /// Bytes of log appended that make a snapshot due (see [`LogStore::snapshot_due`]).
    snapshot_bytes: u64,
}

impl LogStore {
    /// Loads the log, vote and marks from `disk`.
    ///
    /// # Errors
    /// An I/O error if the stored bytes do not decode.
    pub fn load(disk: Disk, snapshot_bytes: u64) -> io::Result<LogStore> {
        let recovered = disk.take_recovered();
        let meta = |key: &str| recovered.meta.get(key);
        let mut tail = Tail {
            vote: meta(META_VOTE).map(|bytes| decode(bytes)).transpose()?,
            committed: meta(META_COMMITTED).map(|bytes| decode(bytes)).transpose()?,
            purged: meta(META_PURGED).map(|bytes| decode(bytes)).transpose()?,
            entries: BTreeMap::new(),
        };
        let growth = Growth::default();
        for (index, bytes) in &recovered.entries {
            tail.entries.insert(*index, decode(bytes)?);
            growth.bytes.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(LogStore { disk, tail: Arc::new(Mutex::new(tail)), growth: Arc::new(growth), snapshot_bytes })
    }

    /// Waits until the log has grown by its byte bound since the last time this returned: the
    /// caller asks openraft for a snapshot, after which the log is purged. The entry-count policy
    /// alone would let a log of large entries (10,000-task batches) hold gigabytes in memory.
    pub async fn snapshot_due(&self) {
        self.growth.due.notified().await;
    }

    fn grew(&self, bytes: u64) {
        use std::sync::atomic::Ordering;
        // openraft appends from one task at a time, so the count and its reset do not race.
        let total = self.growth.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total >= self.snapshot_bytes {
            self.growth.bytes.store(0, Ordering::Relaxed);
            // One permit, however many bounds were crossed before the waiter ran.
            self.growth.due.notify_one();
        }
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Index of the last entry in the log, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.tail().entries.keys().next_back().copied()
    }
}

/// Drops the entries a purge removed from memory on a thread of their own. openraft's core awaits
/// [`RaftLogStorage::purge`], with every append queued behind it, and freeing the 20,000 or so
/// entries behind a snapshot (each a proposal with its own allocations) took that task 32–39 ms at
/// 5,000 entries/s: every node's writes stalled for as long. One short-lived thread per purge, so one
/// per snapshot. It runs at normal priority: freeing takes the allocator's locks, which a thread at
/// low priority could hold while preempted.
fn drop_elsewhere(purged: BTreeMap<u64, Entry>) {
    if purged.is_empty() {
        return;
    }
    // Should no thread be had, the refused closure, and the entries with it, are dropped here.
    let _ = std::thread::Builder::new().name("gk-purge".into()).spawn(move || drop(purged));
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.tail().entries.range(range).map(|(_, entry)| entry.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.tail().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let tail = self.tail();
        let last = tail.entries.values().next_back().map(|entry| entry.log_id).or(tail.purged);
        Ok(LogState { last_purged_log_id: tail.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let bytes = encode(vote)?;
        self.disk
            .write(WriteBatch { meta: vec![(META_VOTE, Some(bytes))], ..WriteBatch::default() })
            .await
            .map_err(io_error)?;
        self.tail().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let bytes = committed.as_ref().map(encode).transpose()?;
        self.tail().committed = committed;
        // Rides on the next frame: the committed mark is an optimisation (fewer re-applies after a
        // restart); losing the newest one only means re-learning it from the leader.
        self.disk.set_lazily(META_COMMITTED, bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.tail().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut appends = Vec::new();
        {
            let mut tail = self.tail();
            for entry in entries {
                appends.push((entry.log_id.index, encode(&entry)?));
                tail.entries.insert(entry.log_id.index, entry);
            }
        }
        // Stage events for `benches/cycle.rs`: nothing listens at trace level in a node.
        self.grew(appends.iter().map(|(_, bytes)| bytes.len() as u64).sum());
        let (first, last) = (appends.first().map_or(0, |append| append.0), appends.last().map_or(0, |append| append.0));
        tracing::trace!(target: "gridkeeper::cycle", first, last, "append");
        let flushed = self.disk.submit(WriteBatch { appends, ..WriteBatch::default() }).await.map_err(io_error)?;
        // The acknowledgement waits for the group commit's fsync, off this task.
        tokio::spawn(async move {
            let outcome = match flushed.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(io_error(error)),
                Err(_) => Err(io_error("committer stopped")),
            };
            tracing::trace!(target: "gridkeeper::cycle", first, last, "flushed");
            callback.io_completed(outcome);
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        self.tail().entries.split_off(&from);
        self.disk.write(WriteBatch { truncate_from: Some(from), ..WriteBatch::default() }).await.map_err(io_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let bytes = encode(&log_id)?;
        let purged = {
            let mut tail = self.tail();
            let kept = tail.entries.split_off(&(log_id.index + 1));
            tail.purged = Some(log_id);
            std::mem::replace(&mut tail.entries, kept)
        };
        drop_elsewhere(purged);
        let batch = WriteBatch {
            purge_through: Some(log_id.index),
            meta: vec![(META_PURGED, Some(bytes))],
            ..WriteBatch::default()
        };
        self.disk.write(batch).await.map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::entry::RaftEntry;
    use openraft::type_config::TypeConfigExt;
    use openraft::vote::RaftLeaderIdExt;

    fn entry(index: u64) -> Entry {
        let leader = openraft::type_config::alias::LeaderIdOf::<TypeConfig>::new_committed(1, 1);
        Entry::new_blank(LogId::new(leader, index))
    }

    #[tokio::test]
    async fn a_snapshot_is_due_once_the_log_grows_by_its_byte_bound() {
        let dir = std::env::temp_dir().join(format!("gk-log-bytes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = LogStore::load(Disk::open(&dir).expect("open"), 256).expect("load");
        let watcher = log.clone();
        let due = tokio::spawn(async move { watcher.snapshot_due().await });
        let (flushed, done) = TypeConfig::oneshot();
        log.append((1..=2).map(entry), IOFlushed::<TypeConfig>::signal(flushed)).await.expect("append");
        done.await.expect("flushed").expect("durable");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!due.is_finished(), "two small entries are far under the bound");
        let (flushed, done) = TypeConfig::oneshot();
        log.append((3..=200).map(entry), IOFlushed::<TypeConfig>::signal(flushed)).await.expect("append");
        done.await.expect("flushed").expect("durable");
        tokio::time::timeout(std::time::Duration::from_secs(5), due).await.expect("due").expect("task");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_purge_forgets_the_entries_behind_it_in_memory_and_on_disk() {
        let dir = std::env::temp_dir().join(format!("gk-log-purge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut log = LogStore::load(Disk::open(&dir).expect("open"), u64::MAX).expect("load");
            let (flushed, done) = TypeConfig::oneshot();
            let callback = IOFlushed::<TypeConfig>::signal(flushed);
            log.append((1..=10).map(entry), callback).await.expect("append");
            done.await.expect("flushed").expect("durable");
            log.purge(entry(6).log_id).await.expect("purge");
            let left: Vec<u64> =
                log.try_get_log_entries(0..).await.expect("read").iter().map(|e| e.log_id.index).collect();
            assert_eq!(left, vec![7, 8, 9, 10]);
            let state = log.get_log_state().await.expect("state");
            assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(6));
            assert_eq!(state.last_log_id.map(|id| id.index), Some(10));
        }
        // Reopened: the purge is on disk too.
        let mut log = LogStore::load(Disk::open(&dir).expect("reopen"), u64::MAX).expect("load");
        let left: Vec<u64> = log.try_get_log_entries(0..).await.expect("read").iter().map(|e| e.log_id.index).collect();
        assert_eq!(left, vec![7, 8, 9, 10]);
        assert_eq!(log.get_log_state().await.expect("state").last_purged_log_id.map(|id| id.index), Some(6));
        std::fs::remove_dir_all(&dir).ok();
    }
}
