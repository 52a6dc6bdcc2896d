//! The audit log: every call that changes something, appended to `DATA_DIR/audit.jsonl` as one JSON
//! object a line, `{"ts_ms", "who", "role", "from", "action", "target", "outcome"}`, and read back
//! for `gridkeeper audit`.
//!
//! A writer thread appends in batches and `fdatasync`s each batch; the queue in front of it is
//! bounded ([`AUDIT_QUEUE_MAX`]) and a request waits for room rather than losing its record. At
//! [`AUDIT_FILE_BYTES_MAX`] the file is rotated (`audit.jsonl.1` ... `.{AUDIT_FILES_KEPT}`, the oldest
//! dropped), so the log's disk use is bounded too.
//!
//! Each node keeps the log of the calls it received. Tokens never appear in it: `who` is a
//! credential's name.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

pub use crate::api::auth::AuditRecord;

/// Records waiting for the writer. Past it a request waits: a record is never dropped.
pub const AUDIT_QUEUE_MAX: usize = 4_096;
/// Size at which `audit.jsonl` is rotated.
pub const AUDIT_FILE_BYTES_MAX: u64 = 32 << 20;
/// Rotated files kept besides the current one.
pub const AUDIT_FILES_KEPT: usize = 4;
/// Records one read returns at most (the newest ones).
pub const AUDIT_READ_RECORDS_MAX: usize = 10_000;
/// Bytes of a record's `target`; longer ones are cut (with `…`).
pub const AUDIT_TARGET_BYTES_MAX: usize = 256;

/// Bytes of a record's `action`: a route's name is short, and a path no route serves is cut.
pub const AUDIT_ACTION_BYTES_MAX: usize = 128;

/// The action name of a route: `/grid/worker/report` is `grid.worker.report`; cut to
/// [`AUDIT_ACTION_BYTES_MAX`] (a request may name any path).
pub fn action_of(path: &str) -> String {
    let mut action = path.trim_start_matches('/').replace('/', ".");
    if action.len() > AUDIT_ACTION_BYTES_MAX {
        let mut end = AUDIT_ACTION_BYTES_MAX;
        while !action.is_char_boundary(end) {
            end -= 1;
        }
        action.truncate(end);
    }
    action
}

/// Cuts `target` to [`AUDIT_TARGET_BYTES_MAX`] on a character boundary.
pub fn bounded_target(mut target: String) -> String {
    if target.len() > AUDIT_TARGET_BYTES_MAX {
        let mut end = AUDIT_TARGET_BYTES_MAX - '…'.len_utf8();
        while !target.is_char_boundary(end) {
            end -= 1;
        }
        target.truncate(end);
        target.push('…');
    }
    target
}

/// The current file of the audit log in `data_dir`.
pub fn audit_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit.jsonl")
}

fn rotated_path(data_dir: &Path, generation: usize) -> PathBuf {
    data_dir.join(format!("audit.jsonl.{generation}"))
}

/// The sending half of a node's audit log; cloned into every request.
#[derive(Debug, Clone)]
pub struct AuditLog {
    records: mpsc::Sender<AuditRecord>,
}

impl AuditLog {
    /// Starts the writer thread appending to `data_dir/audit.jsonl`. It ends, after writing what is
    /// queued, when the last clone of the returned log is dropped.
    ///
    /// # Errors
    /// The I/O error if the file cannot be opened or the thread started.
    pub fn start(data_dir: &Path) -> std::io::Result<AuditLog> {
        let (records, receiver) = mpsc::channel(AUDIT_QUEUE_MAX);
        let dir = data_dir.to_path_buf();
        let file = open_append(&audit_path(&dir))?;
        std::thread::Builder::new().name("gk-audit".into()).spawn(move || write_loop(&dir, file, receiver))?;
        Ok(AuditLog { records })
    }

    /// Appends `record`, waiting for room in the queue.
    ///
    /// # Cancel safety
    /// A record whose send is cancelled before room was found is not written.
    pub async fn record(&self, record: AuditRecord) {
        if self.records.send(record).await.is_err() {
            tracing::error!("the audit log writer has stopped; a call went unrecorded");
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

fn write_loop(dir: &Path, mut file: File, mut receiver: mpsc::Receiver<AuditRecord>) {
    let mut batch = Vec::new();
    while let Some(first) = receiver.blocking_recv() {
        batch.clear();
        for record in
            std::iter::once(first).chain(std::iter::from_fn(|| receiver.try_recv().ok())).take(AUDIT_QUEUE_MAX)
        {
            serde_json::to_writer(&mut batch, &record).expect("a record serializes");
            batch.push(b'\n');
        }
        if let Err(error) = append(dir, &mut file, &batch) {
            tracing::error!(%error, "cannot append to the audit log");
        }
    }
}

fn append(dir: &Path, file: &mut File, batch: &[u8]) -> std::io::Result<()> {
    if file.metadata()?.len() + batch.len() as u64 > AUDIT_FILE_BYTES_MAX {
        rotate(dir)?;
        *file = open_append(&audit_path(dir))?;
    }
    file.write_all(batch)?;
    file.sync_data()
}

/// Shifts `audit.jsonl.N` to `.N+1` (dropping the oldest) and the current file to `.1`.
fn rotate(dir: &Path) -> std::io::Result<()> {
    let _ = fs::remove_file(rotated_path(dir, AUDIT_FILES_KEPT));
    for generation in (1..AUDIT_FILES_KEPT).rev() {
        let from = rotated_path(dir, generation);
        if from.exists() {
            fs::rename(&from, rotated_path(dir, generation + 1))?;
        }
    }
    fs::rename(audit_path(dir), rotated_path(dir, 1))?;
    File::open(dir)?.sync_all()
}

/// The newest records (at most `limit`, capped at [`AUDIT_READ_RECORDS_MAX`]) with `ts_ms >= since_ms`,
/// oldest first, from the current and rotated files. Lines that do not parse are skipped.
///
/// # Errors
/// The I/O error of a file that exists but cannot be read.
pub fn read_since(data_dir: &Path, since_ms: u64, limit: usize) -> std::io::Result<Vec<AuditRecord>> {
    let limit = limit.clamp(1, AUDIT_READ_RECORDS_MAX);
    let mut newest = VecDeque::with_capacity(limit.min(1_024));
    let files = (1..=AUDIT_FILES_KEPT).rev().map(|generation| rotated_path(data_dir, generation));
    for path in files.chain([audit_path(data_dir)]) {
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for line in BufReader::new(file).lines() {
            let Ok(record) = serde_json::from_str::<AuditRecord>(&line?) else { continue };
            if record.ts_ms >= since_ms {
                if newest.len() == limit {
                    newest.pop_front();
                }
                newest.push_back(record);
            }
        }
    }
    Ok(newest.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts_ms: u64) -> AuditRecord {
        AuditRecord {
            ts_ms,
            who: "ci".into(),
            role: "operator".into(),
            from: "127.0.0.1:5000".into(),
            action: action_of("/registry/create"),
            target: "/app".into(),
            outcome: "ok".into(),
        }
    }

    #[test]
    fn records_are_written_rotated_and_read_back() {
        let dir = std::env::temp_dir().join(format!("gk-audit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let mut file = open_append(&audit_path(&dir)).expect("open");
        for ts in 0..10 {
            let mut line = serde_json::to_vec(&record(ts)).expect("json");
            line.push(b'\n');
            append(&dir, &mut file, &line).expect("append");
        }
        rotate(&dir).expect("rotate");
        let mut file = open_append(&audit_path(&dir)).expect("reopen");
        file.write_all(b"not json\n").expect("garbage");
        let mut line = serde_json::to_vec(&record(10)).expect("json");
        line.push(b'\n');
        append(&dir, &mut file, &line).expect("append");
        let all = read_since(&dir, 0, 100).expect("read");
        assert_eq!(all.iter().map(|r| r.ts_ms).collect::<Vec<_>>(), (0..=10).collect::<Vec<_>>());
        let newest = read_since(&dir, 5, 3).expect("read");
        assert_eq!(newest.iter().map(|r| r.ts_ms).collect::<Vec<_>>(), vec![8, 9, 10]);
        assert_eq!(all[0].action, "registry.create");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn targets_and_actions_are_bounded() {
        assert!(action_of(&format!("/{}", "x/".repeat(1_000))).len() <= AUDIT_ACTION_BYTES_MAX);
        assert_eq!(bounded_target("abc".into()), "abc");
        let cut = bounded_target("é".repeat(300));
        assert!(cut.len() <= AUDIT_TARGET_BYTES_MAX && cut.ends_with('…'));
    }
}
