//! The durable store under consensus: the Raft log, the vote, and snapshots, in one redb file.
//!
//! Writes go through a group committer: every batch queued while the previous commit was syncing is
//! written in one transaction with one fsync, and each caller is acknowledged only after that fsync.
//! Under load the batch grows by itself (no timer, no tuning); at low load a write commits alone.
//!
//! Invariant: an acknowledged write is on disk (fsync'd) before its acknowledgement is sent.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Batches waiting for the committer. Callers wait (backpressure) when it is full.
const WRITES_QUEUED_MAX: usize = 1024;

/// Most write requests folded into one transaction, so one fsync never waits on an unbounded batch.
const BATCH_WRITES_MAX: usize = 512;

/// Why the store failed. Storage errors are fatal for the node: openraft stops, the supervisor restarts
/// the coordinator from what is on disk.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage: {0}")]
pub struct DiskError(pub String);

fn disk_error(error: impl std::fmt::Display) -> DiskError {
    DiskError(error.to_string())
}

/// One write: entries to append, a truncation, a purge, metadata to set or clear. Applied in this
/// order: truncate, purge, append, meta.
#[derive(Debug, Default)]
pub struct WriteBatch {
    /// Delete log entries with index >= this.
    pub truncate_from: Option<u64>,
    /// Delete log entries with index <= this.
    pub purge_through: Option<u64>,
    /// Entries to append, by index.
    pub appends: Vec<(u64, Vec<u8>)>,
    /// Metadata keys to set (`Some`) or remove (`None`).
    pub meta: Vec<(&'static str, Option<Vec<u8>>)>,
    /// Durable only with the next durable commit: a group made only of lazy batches is committed
    /// without an fsync of its own (redb's `Durability::None`), so a hint such as the committed
    /// index never costs the log a disk flush in the write path. A crash may lose it, never an
    /// entry: every batch that appends, truncates, purges or is not lazy is fsync'd before it is
    /// acknowledged.
    pub lazy: bool,
}

struct Queued {
    batch: WriteBatch,
    done: oneshot::Sender<Result<(), DiskError>>,
}

/// Figures about group commit, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Transactions committed (= fsyncs).
    pub commits: std::sync::atomic::AtomicU64,
    /// Write requests acknowledged.
    pub writes: std::sync::atomic::AtomicU64,
}

/// How writes reach the file.
#[derive(Clone)]
enum Writer {
    /// A committer thread batches concurrent writes into one fsync (group commit).
    Grouped(mpsc::Sender<Queued>),
    /// Each write commits in the caller, one fsync each. For deterministic simulation, where an OS
    /// thread finishing at its own pace would make runs unrepeatable.
    Inline,
}

/// The store: reads from any thread, writes through the committer.
#[derive(Clone)]
pub struct Disk {
    db: Arc<Database>,
    writer: Writer,
    stats: Arc<CommitStats>,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk").finish_non_exhaustive()
    }
}

impl Disk {
    /// Opens (or creates) `dir/raft.redb` and starts its committer thread.
    ///
    /// # Errors
    /// [`DiskError`] if the file cannot be opened or initialised.
    pub fn open(dir: &Path) -> Result<Disk, DiskError> {
        Disk::open_with(dir, true)
    }

    /// Opens the store with writes committed inline in the caller (no committer thread, no group
    /// commit): for deterministic simulation.
    ///
    /// # Errors
    /// [`DiskError`] if the file cannot be opened or initialised.
    pub fn open_inline(dir: &Path) -> Result<Disk, DiskError> {
        Disk::open_with(dir, false)
    }

    fn open_with(dir: &Path, grouped: bool) -> Result<Disk, DiskError> {
        std::fs::create_dir_all(dir).map_err(disk_error)?;
        let db = open_database(&dir.join("raft.redb"))?;
        let setup = db.begin_write().map_err(disk_error)?;
        setup.open_table(LOG).map_err(disk_error)?;
        check_format(&mut setup.open_table(META).map_err(disk_error)?)?;
        setup.commit().map_err(disk_error)?;
        let db = Arc::new(db);
        let stats = Arc::new(CommitStats::default());
        if !grouped {
            return Ok(Disk { db, writer: Writer::Inline, stats });
        }
        let (queue, receiver) = mpsc::channel(WRITES_QUEUED_MAX);
        let (committer_db, committer_stats) = (db.clone(), stats.clone());
        std::thread::Builder::new()
            .name("gk-commit".into())
            .spawn(move || run_committer(&committer_db, receiver, &committer_stats))
            .map_err(disk_error)?;
        Ok(Disk { db, writer: Writer::Grouped(queue), stats })
    }

    /// Group-commit figures so far.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Writes `batch` durably.
    ///
    /// # Errors
    /// [`DiskError`] if the commit failed.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled write may still be committed.
    pub async fn write(&self, batch: WriteBatch) -> Result<(), DiskError> {
        self.submit(batch).await?.await.map_err(|_| DiskError("committer stopped".into()))?
    }

    /// Queues `batch` and returns the receiver of its outcome, without waiting for the fsync.
    ///
    /// # Errors
    /// [`DiskError`] if the committer has stopped.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled submit queued nothing.
    pub async fn submit(&self, batch: WriteBatch) -> Result<oneshot::Receiver<Result<(), DiskError>>, DiskError> {
        let (done, receiver) = oneshot::channel();
        match &self.writer {
            // Waits for room when the committer is behind: backpressure on openraft's storage task.
            Writer::Grouped(queue) => {
                queue.send(Queued { batch, done }).await.map_err(|_| DiskError("committer stopped".into()))?;
            }
            Writer::Inline => {
                let queued = [Queued { batch, done }];
                let outcome = commit(&self.db, &queued).map_err(disk_error);
                self.stats.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.stats.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let [Queued { done, .. }] = queued;
                let _ = done.send(outcome);
            }
        }
        Ok(receiver)
    }

    /// Log entries with index in `[from, to)`, in order.
    ///
    /// # Errors
    /// [`DiskError`].
    pub fn entries(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>, DiskError> {
        let read = self.db.begin_read().map_err(disk_error)?;
        let table = read.open_table(LOG).map_err(disk_error)?;
        let mut out = Vec::new();
        for entry in table.range(from..to).map_err(disk_error)? {
            let (index, bytes) = entry.map_err(disk_error)?;
            out.push((index.value(), bytes.value().to_vec()));
        }
        Ok(out)
    }

    /// The last log entry, if any.
    ///
    /// # Errors
    /// [`DiskError`].
    pub fn last_entry(&self) -> Result<Option<(u64, Vec<u8>)>, DiskError> {
        let read = self.db.begin_read().map_err(disk_error)?;
        let table = read.open_table(LOG).map_err(disk_error)?;
        let last = table.last().map_err(disk_error)?;
        Ok(last.map(|(index, bytes)| (index.value(), bytes.value().to_vec())))
    }

    /// A metadata value.
    ///
    /// # Errors
    /// [`DiskError`].
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, DiskError> {
        let read = self.db.begin_read().map_err(disk_error)?;
        let table = read.open_table(META).map_err(disk_error)?;
        let value = table.get(key).map_err(disk_error)?;
        Ok(value.map(|bytes| bytes.value().to_vec()))
    }
}

/// How long `open` waits for an earlier handle in this process (a restarting coordinator's committer
/// thread finishing its last batch) to release the file.
const REOPEN_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(3);

/// The format of the log's entries and metadata this build writes (postcard-encoded openraft
/// entries of [`crate::state::Proposal`]). Files written before formats were recorded hold format 1.
pub const LOG_FORMAT: u16 = 1;

const META_FORMAT: &str = "format";

/// Records [`LOG_FORMAT`] in a file that has none, and refuses a file of a newer format.
fn check_format(meta: &mut redb::Table<&str, &[u8]>) -> Result<(), DiskError> {
    let stored = meta.get(META_FORMAT).map_err(disk_error)?.map(|value| value.value().to_vec());
    match stored.as_deref() {
        None => {
            meta.insert(META_FORMAT, LOG_FORMAT.to_le_bytes().as_slice()).map_err(disk_error)?;
            Ok(())
        }
        Some([low, high]) if u16::from_le_bytes([*low, *high]) <= LOG_FORMAT => Ok(()),
        Some(other) => Err(DiskError(format!(
            "the log is of format {other:?}, newer than this build's {LOG_FORMAT}: written by a newer gridkeeper?"
        ))),
    }
}

fn open_database(path: &Path) -> Result<Database, DiskError> {
    // Another thread (a previous incarnation's committer) releases the file: wait in real time.
    let deadline = crate::clock::OsDeadline::after(REOPEN_WAIT_MAX);
    loop {
        match Database::builder().set_cache_size(64 << 20).create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if !deadline.passed() => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return result.map_err(disk_error),
        }
    }
}

fn run_committer(db: &Database, mut receiver: mpsc::Receiver<Queued>, stats: &CommitStats) {
    while let Some(first) = receiver.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_WRITES_MAX {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let stopwatch = crate::clock::Stopwatch::start();
        let outcome = commit(db, &batch).map_err(disk_error);
        stats.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats.writes.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let seconds = stopwatch.elapsed().as_secs_f64();
        super::telemetry::commit_done(batch.len(), !is_lazy(&batch), seconds);
        // For `benches/cycle.rs` (entries per fsync); nothing listens at trace level in a node.
        tracing::trace!(
            target: "gridkeeper::cycle",
            writes = batch.len(),
            entries = batch.iter().map(|queued| queued.batch.appends.len()).sum::<usize>(),
            durable = !is_lazy(&batch),
            us = (seconds * 1e6) as u64,
            "fsync"
        );
        for queued in batch {
            let _ = queued.done.send(outcome.clone());
        }
    }
}

/// Whether every write of `batch` may skip the fsync (lazy metadata only, no log change).
fn is_lazy(batch: &[Queued]) -> bool {
    batch.iter().all(|Queued { batch, .. }| {
        batch.lazy && batch.appends.is_empty() && batch.truncate_from.is_none() && batch.purge_through.is_none()
    })
}

fn commit(db: &Database, batch: &[Queued]) -> Result<(), redb::Error> {
    let mut transaction = db.begin_write()?;
    transaction.set_durability(if is_lazy(batch) { Durability::None } else { Durability::Immediate })?;
    {
        let mut log = transaction.open_table(LOG)?;
        let mut meta = transaction.open_table(META)?;
        for Queued { batch, .. } in batch {
            if let Some(from) = batch.truncate_from {
                log.retain_in(from.., |_, _| false)?;
            }
            if let Some(through) = batch.purge_through {
                log.retain_in(..=through, |_, _| false)?;
            }
            for (index, bytes) in &batch.appends {
                log.insert(*index, bytes.as_slice())?;
            }
            for (key, value) in &batch.meta {
                match value {
                    Some(value) => {
                        meta.insert(*key, value.as_slice())?;
                    }
                    None => {
                        meta.remove(*key)?;
                    }
                }
            }
        }
    }
    transaction.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gk-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn writes_survive_reopen_and_truncate_purge_apply_in_order() {
        let dir = temp("reopen");
        {
            let disk = Disk::open(&dir).expect("open");
            let appends = (1..=10).map(|index| (index, vec![index as u8])).collect();
            disk.write(WriteBatch { appends, meta: vec![("vote", Some(b"v1".to_vec()))], ..WriteBatch::default() })
                .await
                .expect("write");
            disk.write(WriteBatch { truncate_from: Some(8), purge_through: Some(3), ..WriteBatch::default() })
                .await
                .expect("trim");
        }
        let disk = Disk::open(&dir).expect("reopen");
        let indexes: Vec<u64> = disk.entries(0, 100).expect("read").into_iter().map(|(index, _)| index).collect();
        assert_eq!(indexes, vec![4, 5, 6, 7]);
        assert_eq!(disk.last_entry().expect("last").map(|(index, _)| index), Some(7));
        assert_eq!(disk.meta("vote").expect("meta"), Some(b"v1".to_vec()));
        assert_eq!(disk.meta("missing").expect("meta"), None);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits() {
        let dir = temp("group");
        let disk = Disk::open(&dir).expect("open");
        let writers: Vec<_> = (0..64u64)
            .map(|writer| {
                let disk = disk.clone();
                tokio::spawn(async move {
                    for round in 0..20u64 {
                        let index = writer * 1000 + round;
                        disk.write(WriteBatch { appends: vec![(index, vec![1])], ..WriteBatch::default() })
                            .await
                            .expect("write");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer");
        }
        let stats = disk.stats();
        let (commits, writes) = (
            stats.commits.load(std::sync::atomic::Ordering::Relaxed),
            stats.writes.load(std::sync::atomic::Ordering::Relaxed),
        );
        assert_eq!(writes, 64 * 20);
        assert!(commits < writes, "64 concurrent writers must share fsyncs ({commits} commits for {writes} writes)");
        assert_eq!(disk.entries(0, u64::MAX).expect("read").len(), 64 * 20);
        std::fs::remove_dir_all(&dir).ok();
    }
}
