//! The durable store under consensus: the Raft log and its metadata (the vote, the committed and
//! purged marks) in append-only segment files ([`super::wal`]).
//!
//! Writes go through a group committer: every batch queued while the previous commit was syncing is
//! written as one frame with one fsync, and each caller is acknowledged only after that fsync. Under
//! load the batch grows by itself (no timer, no tuning); at low load a write commits alone.
//!
//! A directory written by an older build, whose log is in `raft.redb`, is imported into segments on
//! first open, and the old file is kept as `raft.redb.imported`.
//!
//! Invariant: an acknowledged write is on disk (fsync'd) before its acknowledgement is sent. One
//! process at a time writes a directory's log (an exclusive lock on `log.lock`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::wal::{self, Image, Record, Wal};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Batches waiting for the committer. Callers wait (backpressure) when it is full.
const WRITES_QUEUED_MAX: usize = 1024;

/// Most write requests folded into one frame, so one fsync never waits on an unbounded batch.
const BATCH_WRITES_MAX: usize = 512;

/// Entry bytes past which the committer stops folding more requests into a frame: a frame (and the
/// memory it is built in) stays near this size plus one request, however large entries are.
const BATCH_BYTES_MAX: usize = 16 << 20;

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
}

impl WriteBatch {
    /// Bytes of the entries it appends.
    fn append_bytes(&self) -> usize {
        self.appends.iter().map(|(_, bytes)| bytes.len()).sum()
    }

    fn records(&self) -> impl Iterator<Item = Record<'_>> {
        let truncate = self.truncate_from.map(Record::Truncate);
        let purge = self.purge_through.map(Record::Purge);
        let appends = self.appends.iter().map(|(index, bytes)| Record::Append(*index, bytes));
        let meta = self.meta.iter().map(|(key, value)| match value {
            Some(value) => Record::MetaSet(key, value),
            None => Record::MetaRemove(key),
        });
        truncate.into_iter().chain(purge).chain(appends).chain(meta)
    }
}

struct Queued {
    batch: WriteBatch,
    done: oneshot::Sender<Result<(), DiskError>>,
}

/// Figures about group commit, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Frames written with an fsync (= fsyncs).
    pub commits: std::sync::atomic::AtomicU64,
    /// Write requests acknowledged.
    pub writes: std::sync::atomic::AtomicU64,
}

/// How writes reach the files.
#[derive(Clone)]
enum Writer {
    /// A committer thread batches concurrent writes into one fsync (group commit).
    Grouped(mpsc::Sender<Queued>),
    /// Each write commits in the caller, one fsync each. For deterministic simulation, where an OS
    /// thread finishing at its own pace would make runs unrepeatable.
    Inline(Arc<Mutex<Committer>>),
}

/// What was on disk when the store was opened: the log since the last purge, and the metadata.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Entries by index.
    pub entries: BTreeMap<u64, Vec<u8>>,
    /// Metadata by key.
    pub meta: BTreeMap<String, Vec<u8>>,
}

/// Metadata values waiting to ride on the next frame (see [`Disk::set_lazily`]), the newest per key.
type LazyMeta = Arc<Mutex<BTreeMap<&'static str, Option<Vec<u8>>>>>;

/// The store: writes through the committer; what was on disk at opening is read once.
#[derive(Clone)]
pub struct Disk {
    writer: Writer,
    stats: Arc<CommitStats>,
    recovered: Arc<Mutex<Option<Recovered>>>,
    lazy: LazyMeta,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk").finish_non_exhaustive()
    }
}

impl Disk {
    /// Opens (or creates) the log in `dir` and starts its committer thread.
    ///
    /// # Errors
    /// [`DiskError`] if the files cannot be opened, are damaged, or are of a newer format.
    pub fn open(dir: &Path) -> Result<Disk, DiskError> {
        Disk::open_with(dir, true)
    }

    /// Opens the store with writes committed inline in the caller (no committer thread, no group
    /// commit): for deterministic simulation.
    ///
    /// # Errors
    /// [`DiskError`] if the files cannot be opened, are damaged, or are of a newer format.
    pub fn open_inline(dir: &Path) -> Result<Disk, DiskError> {
        Disk::open_with(dir, false)
    }

    fn open_with(dir: &Path, grouped: bool) -> Result<Disk, DiskError> {
        std::fs::create_dir_all(dir).map_err(disk_error)?;
        let lock = lock(dir)?;
        let seed = import_redb(dir)?;
        let (wal, mut image) = Wal::open(dir, seed.as_ref()).map_err(disk_error)?;
        if seed.is_some() {
            // The segments now hold what the old file held; keep that file aside, never read again.
            let old = dir.join(REDB_FILE);
            std::fs::rename(&old, dir.join(format!("{REDB_FILE}.imported"))).map_err(disk_error)?;
        }
        // The image holds the log now; free the import's copy before the node starts.
        drop(seed);
        let lazy = LazyMeta::default();
        let mut committer = Committer { wal, _lock: lock, frame: Vec::new(), lazy: lazy.clone() };
        check_format(&mut committer, &mut image)?;
        let recovered = Arc::new(Mutex::new(Some(Recovered { entries: image.entries, meta: image.meta })));
        let stats = Arc::new(CommitStats::default());
        if !grouped {
            let writer = Writer::Inline(Arc::new(Mutex::new(committer)));
            return Ok(Disk { writer, stats, recovered, lazy });
        }
        let (queue, receiver) = mpsc::channel(WRITES_QUEUED_MAX);
        let committer_stats = stats.clone();
        std::thread::Builder::new()
            .name("gk-commit".into())
            .spawn(move || run_committer(committer, receiver, &committer_stats))
            .map_err(disk_error)?;
        Ok(Disk { writer: Writer::Grouped(queue), stats, recovered, lazy })
    }

    /// Sets a metadata key durably only with the next frame written (or when the store closes):
    /// a hint such as the committed index then costs the log no write and no wake-up of its own.
    /// A crash may lose it, never an entry.
    pub fn set_lazily(&self, key: &'static str, value: Option<Vec<u8>>) {
        self.lazy.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key, value);
    }

    /// What was on disk when the store was opened; empty after the first call.
    pub fn take_recovered(&self) -> Recovered {
        self.recovered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take().unwrap_or_default()
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
            Writer::Inline(committer) => {
                let queued = [Queued { batch, done }];
                let mut committer = committer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let lazy = committer.take_lazy();
                let outcome = committer.commit(&lazy, &queued);
                drop(committer);
                self.stats.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.stats.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let [Queued { done, .. }] = queued;
                let _ = done.send(outcome);
            }
        }
        Ok(receiver)
    }
}

/// How long `open` waits for an earlier handle in this process (a restarting coordinator's committer
/// thread finishing its last batch) to release the directory.
const REOPEN_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(3);

/// The format of the log's entries and metadata this build writes (postcard-encoded openraft
/// entries of [`crate::state::Proposal`]). Files written before formats were recorded hold format 1.
pub const LOG_FORMAT: u16 = 1;

const META_FORMAT: &str = "format";

/// Where builds before 2026-12-03 kept the log.
const REDB_FILE: &str = "raft.redb";

/// Records [`LOG_FORMAT`] in a log that has none, and refuses a log of a newer format.
fn check_format(committer: &mut Committer, image: &mut Image) -> Result<(), DiskError> {
    match image.meta.get(META_FORMAT).map(Vec::as_slice) {
        None => {
            let batch = WriteBatch {
                meta: vec![(META_FORMAT, Some(LOG_FORMAT.to_le_bytes().to_vec()))],
                ..WriteBatch::default()
            };
            let (done, _) = oneshot::channel();
            committer.commit(&BTreeMap::new(), &[Queued { batch, done }])?;
            image.meta.insert(META_FORMAT.into(), LOG_FORMAT.to_le_bytes().to_vec());
            Ok(())
        }
        Some([low, high]) if u16::from_le_bytes([*low, *high]) <= LOG_FORMAT => Ok(()),
        Some(other) => Err(DiskError(format!(
            "the log is of format {other:?}, newer than this build's {LOG_FORMAT}: written by a newer gridkeeper?"
        ))),
    }
}

/// Takes the directory's exclusive lock, waiting (in real time) for another handle in this process to
/// let go of it. Held for as long as the returned file is open.
fn lock(dir: &Path) -> Result<File, DiskError> {
    let path = dir.join("log.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(disk_error)?;
    let deadline = crate::clock::OsDeadline::after(REOPEN_WAIT_MAX);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if !deadline.passed() => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DiskError(format!("{}: the log is in use by another process", path.display())));
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(disk_error(error)),
        }
    }
}

/// The log and metadata of an older build's `raft.redb`, when the directory has no segments yet.
fn import_redb(dir: &Path) -> Result<Option<Image>, DiskError> {
    let path = dir.join(REDB_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let has_segments = std::fs::read_dir(dir).map_err(disk_error)?.filter_map(Result::ok).any(|listed| {
        listed.file_name().to_str().is_some_and(|name| name.starts_with("log-") && name.ends_with(".wal"))
    });
    if has_segments {
        // Imported before, stopped before the rename: the segments are the log.
        std::fs::rename(&path, dir.join(format!("{REDB_FILE}.imported"))).map_err(disk_error)?;
        return Ok(None);
    }
    let db = Database::builder().create(&path).map_err(disk_error)?;
    let read = db.begin_read().map_err(disk_error)?;
    let mut image = Image::default();
    if let Ok(table) = read.open_table(LOG) {
        for entry in table.range(0..).map_err(disk_error)? {
            let (index, bytes) = entry.map_err(disk_error)?;
            image.entries.insert(index.value(), bytes.value().to_vec());
        }
    }
    if let Ok(table) = read.open_table(META) {
        for entry in table.range::<&str>(..).map_err(disk_error)? {
            let (key, value) = entry.map_err(disk_error)?;
            image.meta.insert(key.value().to_owned(), value.value().to_vec());
        }
    }
    Ok(Some(image))
}

/// Writes frames into the log's segments: owned by the committer thread, or shared behind a lock
/// when writes commit inline.
struct Committer {
    wal: Wal,
    _lock: File,
    frame: Vec<u8>,
    lazy: LazyMeta,
}

impl Committer {
    /// The metadata set lazily so far. Taken before the batch it rides with is drained from the
    /// queue: a committed mark then never names an entry queued after that batch, so the frame never
    /// marks committed what is not yet in the log.
    fn take_lazy(&self) -> BTreeMap<&'static str, Option<Vec<u8>>> {
        std::mem::take(&mut *self.lazy.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Writes `lazy` and `batch` as one frame, and fsyncs it.
    fn commit(&mut self, lazy: &BTreeMap<&'static str, Option<Vec<u8>>>, batch: &[Queued]) -> Result<(), DiskError> {
        self.frame.clear();
        let start = wal::open_frame(&mut self.frame);
        let lazy = lazy.iter().map(|(key, value)| match value {
            Some(value) => Record::MetaSet(key, value),
            None => Record::MetaRemove(key),
        });
        for record in lazy.chain(batch.iter().flat_map(|queued| queued.batch.records())) {
            wal::encode_record(&mut self.frame, &record);
            self.wal.note(&record);
        }
        wal::seal_frame(&mut self.frame, start);
        let outcome = self.wal.write(&self.frame).map_err(disk_error);
        if self.frame.capacity() > FRAME_KEPT_MAX {
            self.frame = Vec::new();
        }
        outcome
    }
}

impl Drop for Committer {
    /// A store closing writes what was set lazily, so a clean stop keeps the newest committed mark.
    fn drop(&mut self) {
        let lazy = self.take_lazy();
        if !lazy.is_empty() {
            let _ = self.commit(&lazy, &[]);
        }
    }
}

/// The committer's frame buffer is kept between commits up to this size (a batch of large entries
/// does not pin its memory).
const FRAME_KEPT_MAX: usize = 1 << 20;

/// The writes for one frame: `first` and whatever else is queued, up to [`BATCH_WRITES_MAX`] writes
/// or until the entries reach [`BATCH_BYTES_MAX`].
fn drain(first: Queued, receiver: &mut mpsc::Receiver<Queued>) -> Vec<Queued> {
    let mut bytes = first.batch.append_bytes();
    let mut batch = vec![first];
    while batch.len() < BATCH_WRITES_MAX && bytes < BATCH_BYTES_MAX {
        match receiver.try_recv() {
            Ok(next) => {
                bytes += next.batch.append_bytes();
                batch.push(next);
            }
            Err(_) => break,
        }
    }
    batch
}

fn run_committer(mut committer: Committer, mut receiver: mpsc::Receiver<Queued>, stats: &CommitStats) {
    let mut failed: Option<DiskError> = None;
    while let Some(first) = receiver.blocking_recv() {
        let lazy = committer.take_lazy();
        let batch = drain(first, &mut receiver);
        let stopwatch = crate::clock::Stopwatch::start();
        // After a failed write the files' state is unknown: every later write fails too, and the
        // coordinator restarts from what is on disk.
        let outcome = match &failed {
            Some(error) => Err(error.clone()),
            None => committer.commit(&lazy, &batch),
        };
        if let Err(error) = &outcome {
            failed = Some(error.clone());
        }
        stats.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats.writes.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let seconds = stopwatch.elapsed().as_secs_f64();
        super::telemetry::commit_done(batch.len(), seconds);
        // For `benches/cycle.rs` (entries per fsync); nothing listens at trace level in a node.
        tracing::trace!(
            target: "gridkeeper::cycle",
            writes = batch.len(),
            entries = batch.iter().map(|queued| queued.batch.appends.len()).sum::<usize>(),
            us = (seconds * 1e6) as u64,
            "fsync"
        );
        for queued in batch {
            let _ = queued.done.send(outcome.clone());
        }
    }
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
        let recovered = Disk::open(&dir).expect("reopen").take_recovered();
        assert_eq!(recovered.entries.keys().copied().collect::<Vec<_>>(), vec![4, 5, 6, 7]);
        assert_eq!(recovered.meta.get("vote"), Some(&b"v1".to_vec()));
        assert_eq!(recovered.meta.get("missing"), None);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn an_older_builds_redb_log_is_imported_once_and_kept_aside() {
        let dir = temp("import");
        std::fs::create_dir_all(&dir).expect("dir");
        {
            let db = Database::builder().create(dir.join(REDB_FILE)).expect("redb");
            let write = db.begin_write().expect("begin");
            {
                let mut log = write.open_table(LOG).expect("log");
                for index in 5..=9u64 {
                    log.insert(index, [index as u8].as_slice()).expect("insert");
                }
                let mut meta = write.open_table(META).expect("meta");
                meta.insert("vote", b"v7".as_slice()).expect("vote");
            }
            write.commit().expect("commit");
        }
        {
            let disk = Disk::open(&dir).expect("open");
            let recovered = disk.take_recovered();
            assert_eq!(recovered.entries.keys().copied().collect::<Vec<_>>(), vec![5, 6, 7, 8, 9]);
            assert_eq!(recovered.meta.get("vote"), Some(&b"v7".to_vec()));
            assert_eq!(recovered.meta.get(META_FORMAT), Some(&LOG_FORMAT.to_le_bytes().to_vec()));
            disk.write(WriteBatch { appends: vec![(10, vec![10])], ..WriteBatch::default() }).await.expect("write");
        }
        assert!(!dir.join(REDB_FILE).exists());
        assert!(dir.join(format!("{REDB_FILE}.imported")).exists());
        let recovered = Disk::open(&dir).expect("reopen").take_recovered();
        assert_eq!(recovered.entries.keys().copied().collect::<Vec<_>>(), vec![5, 6, 7, 8, 9, 10]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn lazy_metadata_rides_on_the_next_frame_or_the_close() {
        let dir = temp("lazy");
        {
            let disk = Disk::open(&dir).expect("open");
            disk.set_lazily("committed", Some(b"c1".to_vec()));
            disk.set_lazily("committed", Some(b"c2".to_vec()));
            disk.write(WriteBatch { appends: vec![(1, vec![1])], ..WriteBatch::default() }).await.expect("write");
            disk.set_lazily("committed", Some(b"c3".to_vec()));
        }
        // The committer thread lets go of the directory once it has written what was pending.
        let recovered = Disk::open(&dir).expect("reopen").take_recovered();
        assert_eq!(recovered.meta.get("committed"), Some(&b"c3".to_vec()));
        assert_eq!(recovered.entries.keys().copied().collect::<Vec<_>>(), vec![1]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_log_in_use_is_not_opened_twice() {
        let dir = temp("lock");
        let first = Disk::open_inline(&dir).expect("open");
        let refused = Disk::open_inline(&dir).expect_err("second handle");
        assert!(refused.to_string().contains("in use"), "{refused}");
        drop(first);
        Disk::open_inline(&dir).expect("open once released");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_frame_stops_growing_at_the_write_or_byte_bound() {
        let queued = |bytes: usize| {
            let batch = WriteBatch { appends: vec![(1, vec![0; bytes])], ..WriteBatch::default() };
            Queued { batch, done: oneshot::channel().0 }
        };
        let (queue, mut receiver) = mpsc::channel(WRITES_QUEUED_MAX);
        for _ in 0..4 {
            queue.try_send(queued(BATCH_BYTES_MAX / 3)).expect("room");
        }
        // Three thirds reach the bound; the fourth waits for the next frame.
        assert_eq!(drain(queued(1), &mut receiver).len(), 4);
        assert_eq!(drain(queued(BATCH_BYTES_MAX), &mut receiver).len(), 1);
        assert_eq!(drain(queued(1), &mut receiver).len(), 2);
        for _ in 0..WRITES_QUEUED_MAX {
            queue.try_send(queued(8)).expect("room");
        }
        assert_eq!(drain(queued(8), &mut receiver).len(), BATCH_WRITES_MAX);
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
        drop(disk);
        assert_eq!(Disk::open(&dir).expect("reopen").take_recovered().entries.len(), 64 * 20);
        std::fs::remove_dir_all(&dir).ok();
    }
}
