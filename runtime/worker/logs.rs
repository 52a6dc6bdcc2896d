//! A node's task logs (shell): attempts' lines written through to append-only files under
//! `<data_dir>/task-logs/`, read back for `GET /grid/logs`, and deleted by retention. The decisions
//! (numbering, rotation, bounds, retention, parsing) are `logs_book.rs`'s; this file does the I/O.
//!
//! A task's logging call never waits on the disk: [`AttemptLog`]'s sink cuts the text, stamps the
//! time and pushes it onto a queue bounded overall ([`TASK_LOG_QUEUE_BYTES_MAX`]) and per attempt
//! ([`TASK_LOG_QUEUE_ATTEMPT_BYTES_MAX`]). A line that does not fit is dropped and counted, and a
//! warning line says how many before the attempt's next line, so a task logging in a tight loop
//! loses lines instead of stalling or growing memory. One writer thread per node
//! (`gk-task-logs-<id>`) drains the queue in batches: each batch's lines are appended with one
//! `write` per file, which puts them in the operating system's page cache, so they survive the
//! process being killed (kill -9) the moment the batch is written. There is no fsync per line (nor
//! per batch): a machine crash may lose the last seconds of logs, which is what logs are worth; what
//! a process kill can lose is only what was still queued (milliseconds).
//!
//! Reading takes the book's lock, so a reader never sees a rotation or a deletion half done; a line
//! being appended meanwhile is not whole yet, and whole lines are all a reader takes.
//!
//! An attempt's log is opened by its first line, not when it starts: most attempts (a `noop`, any task
//! that logs nothing) never write one, and then cost the writer thread nothing, neither a wake-up nor a
//! file. Until its first line, an attempt has no files here and reads as `ended` with no lines; the
//! admin API answers `ended` only once the task table has ended the attempt too.
//!
//! Invariant: an attempt's close is queued after every line it logged (closing and logging take the
//! queue's lock), so once the writer has handled the close, the files hold every line the attempt
//! will ever have here (`ended`).

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::clock::unix_millis;
use crate::grid::kinds::{AttemptLog, LogLevel, LogSink};
use crate::ids::NodeId;
use crate::limits::{
    TASK_LOG_ATTEMPT_BYTES_MAX, TASK_LOG_LINE_BYTES_MAX, TASK_LOG_QUEUE_ATTEMPT_BYTES_MAX, TASK_LOG_QUEUE_BYTES_MAX,
};

use super::logs_book::{cut_text, dropped_text, read_window, recovered_seq, FileOp, LogBook};
pub use super::logs_book::{AttemptKey, LogLine, TaskLogsConfig, Window};

/// The directory under a node's data dir that holds its task logs.
pub const TASK_LOGS_DIR: &str = "task-logs";

/// How often retention runs when nothing else wakes the writer (it also runs after any batch that
/// takes the node over its budget).
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// What a line costs in the queue besides its text.
const QUEUED_LINE_OVERHEAD_BYTES: usize = 64;

/// A node's task logs: clones share one store and its writer thread, which ends once every clone is
/// gone (after writing what was queued).
#[derive(Clone)]
pub struct TaskLogs {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

impl std::fmt::Debug for TaskLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskLogs").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}

struct Shared {
    dir: PathBuf,
    queue: Mutex<Queue>,
    wake: Condvar,
    book: Mutex<LogBook>,
}

#[derive(Default)]
struct Queue {
    ops: VecDeque<Op>,
    bytes: usize,
    /// Open attempts: their queued bytes and the lines dropped since their last queued line.
    attempts: HashMap<AttemptKey, Queued>,
    /// The writer took a batch it has not finished writing.
    writing: bool,
    shutdown: bool,
}

#[derive(Default)]
struct Queued {
    bytes: usize,
    dropped: u64,
}

enum Op {
    Open { key: AttemptKey, ts_ms: u64 },
    Line { key: AttemptKey, ts_ms: u64, level: LogLevel, text: String },
    Close { key: AttemptKey },
}

/// Ends the writer thread when the last [`TaskLogs`] clone goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        lock(&self.0.queue).shutdown = true;
        self.0.wake.notify_all();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under these locks leaves plain counters and queues, which stay usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a reader gets of one attempt on this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttemptLines {
    /// The lines after the reader's `after`, oldest first.
    pub lines: Vec<LogLine>,
    /// Older lines were dropped by the per-attempt bound.
    pub truncated: bool,
    /// No more lines will come here: the attempt is not running on this node (it ended, or it ran
    /// under an earlier process, or never here).
    pub ended: bool,
}

impl TaskLogs {
    /// Opens the task logs in `data_dir` (creating the directory), indexes the files there, applies
    /// retention once, and starts the writer thread of node `node`.
    ///
    /// # Errors
    /// The I/O error if the directory cannot be created or listed, or the thread not started.
    pub fn open(data_dir: &Path, config: TaskLogsConfig, node: NodeId) -> std::io::Result<TaskLogs> {
        let dir = data_dir.join(TASK_LOGS_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut book = LogBook::new(config);
        let mut ops = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let (Some(name), Ok(metadata)) = (entry.file_name().to_str().map(String::from), entry.metadata()) else {
                continue;
            };
            if metadata.is_file() {
                book.on_found(&name, metadata.len(), &mut ops);
            }
        }
        book.handle_retention(unix_millis(), &mut ops);
        execute(&dir, ops);
        let shared = Arc::new(Shared { dir, queue: Mutex::default(), wake: Condvar::new(), book: Mutex::new(book) });
        let writer = shared.clone();
        std::thread::Builder::new().name(format!("gk-task-logs-{node}")).spawn(move || write_loop(&writer))?;
        Ok(TaskLogs { _owner: Arc::new(Owner(shared.clone())), shared })
    }

    /// Starts keeping the lines of attempt `key`: its logger, closed when the guard is dropped. Nothing
    /// is queued until its first line.
    pub fn attempt(&self, key: AttemptKey) -> AttemptLogGuard {
        let sink =
            AttemptSink { shared: self.shared.clone(), key, start_ms: unix_millis(), stage: AtomicU8::new(UNOPENED) };
        AttemptLogGuard { sink: Arc::new(sink) }
    }

    /// The kept lines of attempt `key` numbered above `after`, read from its files.
    ///
    /// # Errors
    /// The I/O error of a file that exists but cannot be read.
    pub fn read(&self, key: AttemptKey, after: Option<u64>) -> std::io::Result<AttemptLines> {
        let book = lock(&self.shared.book);
        let Some(files) = book.files(key) else {
            return Ok(AttemptLines { ended: true, ..AttemptLines::default() });
        };
        let previous = read_segment(&self.shared.dir.join(&files.previous))?;
        let current = read_segment(&self.shared.dir.join(&files.current))?;
        drop(book);
        let Window { lines, truncated } = read_window(&previous, &current, after);
        Ok(AttemptLines { lines, truncated, ended: !files.open })
    }

    /// Waits (bounded by `limit`) until everything queued so far is written. For tests and a clean
    /// stop; returns whether it was.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = crate::clock::OsDeadline::after(limit);
        loop {
            let idle = {
                let queue = lock(&self.shared.queue);
                queue.ops.is_empty() && !queue.writing
            };
            if idle {
                return true;
            }
            if deadline.passed() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Reads a segment: at most what a segment can hold (a longer file is not one of ours, and is cut).
fn read_segment(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut bytes = Vec::new();
    file.take((TASK_LOG_ATTEMPT_BYTES_MAX + TASK_LOG_LINE_BYTES_MAX) as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Keeps an attempt's lines while it lives; dropping it closes the attempt's log.
pub struct AttemptLogGuard {
    sink: Arc<AttemptSink>,
}

impl AttemptLogGuard {
    /// The attempt's logger.
    pub fn log(&self) -> AttemptLog {
        AttemptLog::to(self.sink.clone())
    }
}

impl Drop for AttemptLogGuard {
    fn drop(&mut self) {
        let shared = &self.sink.shared;
        let mut queue = lock(&shared.queue);
        if self.sink.stage.swap(CLOSED, Ordering::Relaxed) == UNOPENED {
            // It logged nothing: no file, nothing queued, nothing to close.
            return;
        }
        if let Some(queued) = queue.attempts.remove(&self.sink.key) {
            if queued.dropped > 0 {
                let text = dropped_text(queued.dropped);
                queue.ops.push_back(Op::Line { key: self.sink.key, ts_ms: unix_millis(), level: LogLevel::Warn, text });
            }
        }
        queue.ops.push_back(Op::Close { key: self.sink.key });
        drop(queue);
        shared.wake.notify_one();
    }
}

struct AttemptSink {
    shared: Arc<Shared>,
    key: AttemptKey,
    /// When the attempt started (its files are named for it), Unix milliseconds.
    start_ms: u64,
    /// [`UNOPENED`], [`OPEN`] or [`CLOSED`]; changed only under the queue's lock, so the lock orders it
    /// with the ops it decides.
    stage: AtomicU8,
}

/// No line yet: nothing queued for the attempt.
const UNOPENED: u8 = 0;
/// Its `Open` is queued (with its first line).
const OPEN: u8 = 1;
/// Its guard is gone: it keeps nothing more.
const CLOSED: u8 = 2;

impl LogSink for AttemptSink {
    fn line(&self, level: LogLevel, text: &str) {
        let text = cut_text(text).into_owned();
        let cost = text.len() + QUEUED_LINE_OVERHEAD_BYTES;
        let ts_ms = unix_millis();
        let mut guard = lock(&self.shared.queue);
        let Queue { ops, bytes, attempts, .. } = &mut *guard;
        let was_empty = ops.is_empty();
        match self.stage.load(Ordering::Relaxed) {
            UNOPENED => {
                self.stage.store(OPEN, Ordering::Relaxed);
                attempts.insert(self.key, Queued::default());
                ops.push_back(Op::Open { key: self.key, ts_ms: self.start_ms });
            }
            OPEN => {}
            // A closed attempt (its guard is gone) keeps nothing more.
            _ => return,
        }
        let Some(queued) = attempts.get_mut(&self.key) else { return };
        if *bytes + cost > TASK_LOG_QUEUE_BYTES_MAX || queued.bytes + cost > TASK_LOG_QUEUE_ATTEMPT_BYTES_MAX {
            queued.dropped += 1;
            metrics::counter!("gridkeeper_task_log_lines_dropped_total").increment(1);
            return;
        }
        if queued.dropped > 0 {
            let dropped = dropped_text(std::mem::take(&mut queued.dropped));
            ops.push_back(Op::Line { key: self.key, ts_ms, level: LogLevel::Warn, text: dropped });
        }
        queued.bytes += cost;
        *bytes += cost;
        ops.push_back(Op::Line { key: self.key, ts_ms, level, text });
        drop(guard);
        if was_empty {
            self.shared.wake.notify_one();
        }
    }
}

/// The writer thread: takes whatever is queued, hands it to the book and executes what it says; runs
/// retention every [`RETENTION_INTERVAL`] and whenever the budget is exceeded.
fn write_loop(shared: &Shared) {
    let mut last_retention = crate::clock::OsDeadline::after(RETENTION_INTERVAL);
    loop {
        let (batch, shutdown) = {
            let mut queue = lock(&shared.queue);
            if queue.ops.is_empty() && !queue.shutdown {
                queue = shared.wake.wait_timeout(queue, RETENTION_INTERVAL).unwrap_or_else(PoisonError::into_inner).0;
            }
            queue.bytes = 0;
            for queued in queue.attempts.values_mut() {
                queued.bytes = 0;
            }
            queue.writing = !queue.ops.is_empty();
            (std::mem::take(&mut queue.ops), queue.shutdown)
        };
        let mut book = lock(&shared.book);
        let mut ops = Vec::new();
        for op in batch {
            match op {
                Op::Open { key, ts_ms } => {
                    if let Some(files) = book.handle_open(key, ts_ms) {
                        let previous = read_segment(&shared.dir.join(&files.previous)).unwrap_or_default();
                        let current = read_segment(&shared.dir.join(&files.current)).unwrap_or_default();
                        let (next, torn) = recovered_seq(&previous, &current);
                        book.on_recovered(key, next, torn, &mut ops);
                    }
                }
                Op::Line { key, ts_ms, level, text } => book.handle_line(key, ts_ms, level, &text, &mut ops),
                Op::Close { key } => {
                    // Lines before the close must be on disk before a reader can see it closed.
                    execute(&shared.dir, std::mem::take(&mut ops));
                    book.handle_close(key);
                }
            }
        }
        execute(&shared.dir, ops);
        if book.over_budget() || last_retention.passed() {
            let mut deletions = Vec::new();
            let deleted = book.handle_retention(unix_millis(), &mut deletions);
            execute(&shared.dir, deletions);
            metrics::counter!("gridkeeper_task_log_attempts_deleted_total").increment(deleted as u64);
            last_retention = crate::clock::OsDeadline::after(RETENTION_INTERVAL);
        }
        metrics::gauge!("gridkeeper_task_log_bytes").set(book.accounted_bytes() as f64);
        drop(book);
        let mut queue = lock(&shared.queue);
        queue.writing = false;
        if shutdown && queue.ops.is_empty() {
            return;
        }
    }
}

/// Executes file operations in order, appending each file's consecutive lines with one write. A
/// failure is logged and the operation skipped: logs are best effort, the node runs on.
fn execute(dir: &Path, ops: Vec<FileOp>) {
    let mut pending: Vec<(String, Vec<u8>)> = Vec::new();
    for op in ops {
        match op {
            FileOp::Append { name, bytes } => match pending.iter_mut().find(|(file, _)| *file == name) {
                Some((_, buffer)) => buffer.extend(bytes),
                None => pending.push((name, bytes)),
            },
            FileOp::Rotate { from, to } => {
                if let Some(index) = pending.iter().position(|(file, _)| *file == from) {
                    let (name, bytes) = pending.swap_remove(index);
                    append(dir, &name, &bytes);
                }
                if let Err(error) = std::fs::rename(dir.join(&from), dir.join(&to)) {
                    tracing::warn!(%error, from, to, "cannot rotate a task log");
                }
            }
            FileOp::Delete { name } => {
                pending.retain(|(file, _)| *file != name);
                match std::fs::remove_file(dir.join(&name)) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => tracing::warn!(%error, name, "cannot delete a task log"),
                }
            }
        }
    }
    for (name, bytes) in pending {
        append(dir, &name, &bytes);
    }
}

fn append(dir: &Path, name: &str, bytes: &[u8]) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .and_then(|mut file| file.write_all(bytes));
    if let Err(error) = written {
        tracing::warn!(%error, name, "cannot write a task log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::task::TaskId;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gk-task-logs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn key(task: u64) -> AttemptKey {
        AttemptKey { task: TaskId(task), number: 1 }
    }

    const FLUSH: Duration = Duration::from_secs(10);

    #[test]
    fn lines_are_kept_through_a_new_store_and_a_closed_attempt_has_ended() {
        let dir = temp_dir("reopen");
        let logs = TaskLogs::open(&dir, TaskLogsConfig::default(), NodeId(1)).expect("open");
        let guard = logs.attempt(key(3));
        let log = guard.log();
        log.info("first");
        log.warn(format_args!("second {}", 2));
        assert!(logs.flush(FLUSH));
        let read = logs.read(key(3), None).expect("read");
        let texts: Vec<(u64, LogLevel, &str)> =
            read.lines.iter().map(|line| (line.seq, line.level, line.text.as_str())).collect();
        assert_eq!(texts, [(0, LogLevel::Info, "first"), (1, LogLevel::Warn, "second 2")]);
        assert!(!read.ended && !read.truncated);
        drop(guard);
        log.info("after the end: kept nowhere");
        assert!(logs.flush(FLUSH));
        let read = logs.read(key(3), Some(0)).expect("read");
        assert_eq!((read.lines.len(), read.ended), (1, true));
        assert_eq!(logs.read(key(4), None).expect("read"), AttemptLines { ended: true, ..AttemptLines::default() });
        drop(logs);
        let again = TaskLogs::open(&dir, TaskLogsConfig::default(), NodeId(1)).expect("reopen");
        let read = again.read(key(3), None).expect("read");
        assert_eq!(read.lines.iter().map(|line| line.text.as_str()).collect::<Vec<_>>(), ["first", "second 2"]);
        assert!(read.ended);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_attempt_that_logs_nothing_queues_nothing_and_leaves_no_file() {
        let dir = temp_dir("silent");
        let logs = TaskLogs::open(&dir, TaskLogsConfig::default(), NodeId(1)).expect("open");
        let silent = logs.attempt(key(5));
        let talker = logs.attempt(key(6));
        assert!(lock(&logs.shared.queue).ops.is_empty(), "starting an attempt queues nothing");
        drop(silent);
        assert!(lock(&logs.shared.queue).ops.is_empty(), "nor does ending one that logged nothing");
        // The first line opens the log, with the attempt's start time in its files' names.
        talker.log().info("late first line");
        drop(talker);
        assert!(logs.flush(FLUSH));
        let read = logs.read(key(6), None).expect("read");
        assert_eq!(read.lines.iter().map(|line| line.text.as_str()).collect::<Vec<_>>(), ["late first line"]);
        assert!(read.ended);
        assert_eq!(logs.read(key(5), None).expect("read"), AttemptLines { ended: true, ..AttemptLines::default() });
        let files = std::fs::read_dir(dir.join(TASK_LOGS_DIR)).expect("dir").count();
        assert_eq!(files, 1, "one segment, of the attempt that logged");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_task_logging_in_a_tight_loop_keeps_two_segments_at_most() {
        let dir = temp_dir("loop");
        let logs = TaskLogs::open(&dir, TaskLogsConfig::default(), NodeId(1)).expect("open");
        let guard = logs.attempt(key(8));
        let log = guard.log();
        let text = "z".repeat(100);
        for n in 0..200_000 {
            log.info(format_args!("{n} {text}"));
        }
        drop(guard);
        assert!(logs.flush(FLUSH));
        let files: Vec<(String, u64)> = std::fs::read_dir(dir.join(TASK_LOGS_DIR))
            .expect("dir")
            .map(|entry| {
                let entry = entry.expect("entry");
                (entry.file_name().to_string_lossy().into_owned(), entry.metadata().expect("metadata").len())
            })
            .collect();
        assert!(files.len() <= 2, "{files:?}");
        assert!(files.iter().all(|(_, bytes)| *bytes <= TASK_LOG_ATTEMPT_BYTES_MAX as u64), "{files:?}");
        let read = logs.read(key(8), None).expect("read");
        assert!(read.truncated && read.ended);
        let last = read.lines.last().expect("lines");
        // The last line written is the last line logged, or the count of lines dropped after it.
        assert!(last.text.starts_with("199999 ") || last.text.contains("lines dropped"), "{}", last.text);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn opening_applies_retention_and_leaves_other_files_alone() {
        let dir = temp_dir("retention");
        std::fs::create_dir_all(dir.join(TASK_LOGS_DIR)).expect("dir");
        // Started at the epoch: far older than any age limit.
        std::fs::write(dir.join(TASK_LOGS_DIR).join("1-1-0.log"), b"{}\n").expect("write");
        std::fs::write(dir.join(TASK_LOGS_DIR).join("notes.txt"), b"mine").expect("write");
        let logs = TaskLogs::open(&dir, TaskLogsConfig::default(), NodeId(1)).expect("open");
        assert!(!dir.join(TASK_LOGS_DIR).join("1-1-0.log").exists());
        assert!(dir.join(TASK_LOGS_DIR).join("notes.txt").exists());
        drop(logs);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tracing_events_inside_an_attempt_are_its_lines_too() {
        use futures_util::FutureExt;
        use tracing::instrument::WithSubscriber;
        let dir = temp_dir("capture");
        let logs = TaskLogs::open(&dir, TaskLogsConfig::default(), NodeId(1)).expect("open");
        let guard = logs.attempt(key(11));
        let info = crate::grid::kinds::AttemptInfo {
            task: TaskId(11),
            number: 1,
            token: crate::grid::FencingToken(4),
            node: NodeId(1),
        };
        let run: crate::grid::kinds::AttemptFuture = Box::pin(async {
            tracing::info!(rows = 3, "loaded");
            tracing::debug!("too fine to keep");
            tracing::warn!("careful");
            Ok(Vec::new())
        });
        let scoped = crate::grid::kinds::with_attempt_log(info, guard.log(), run);
        let outcome = scoped.with_subscriber(super::super::logs_capture::capture_default()).now_or_never();
        assert_eq!(outcome, Some(Ok(Vec::new())));
        // Outside the attempt, events are the node's alone.
        tracing::info!("not an attempt's");
        drop(guard);
        assert!(logs.flush(FLUSH));
        let read = logs.read(key(11), None).expect("read");
        let texts: Vec<(LogLevel, &str)> = read.lines.iter().map(|line| (line.level, line.text.as_str())).collect();
        assert_eq!(texts, [(LogLevel::Info, "loaded rows=3"), (LogLevel::Warn, "careful")]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
