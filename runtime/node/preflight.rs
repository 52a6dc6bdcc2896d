//! Checks that need the file system, run once before any actor starts, so that a bad setup exits
//! with one clear line instead of a half-started node.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// It cannot be created or written.
    #[error("data dir {path} is not writable: {source}")]
    NotWritable {
        /// The directory.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another process holds its lock.
    #[error("data dir {path} is in use by another node process")]
    Locked {
        /// The directory.
        path: String,
    },
}

/// An exclusively locked, writable data directory. The lock is released when this is dropped (or
/// the process dies, kill -9 included: it is an advisory file lock held by the kernel).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `path` if needed, proves it writable with an fsync'd probe, and locks it.
///
/// # Errors
/// [`DataDirError`] naming the directory.
pub fn prepare_data_dir(path: &Path) -> Result<DataDir, DataDirError> {
    let not_writable = |source| DataDirError::NotWritable { path: path.display().to_string(), source };
    fs::create_dir_all(path).map_err(not_writable)?;
    let probe = path.join(".write-probe");
    let mut file = File::create(&probe).map_err(not_writable)?;
    file.write_all(b"ok").and_then(|()| file.sync_all()).map_err(not_writable)?;
    fs::remove_file(&probe).map_err(not_writable)?;
    let lock =
        OpenOptions::new().create(true).truncate(false).write(true).open(path.join("LOCK")).map_err(not_writable)?;
    match lock.try_lock() {
        Ok(()) => Ok(DataDir { path: path.to_path_buf(), _lock: lock }),
        Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::Locked { path: path.display().to_string() }),
        Err(std::fs::TryLockError::Error(source)) => Err(not_writable(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_is_created_and_locked_once() {
        let dir = std::env::temp_dir().join(format!("gk-data-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let held = prepare_data_dir(&dir).expect("fresh dir");
        assert!(matches!(prepare_data_dir(&dir), Err(DataDirError::Locked { .. })));
        drop(held);
        prepare_data_dir(&dir).expect("lock released");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_unwritable_path_is_refused() {
        let error = prepare_data_dir(Path::new("/proc/gridkeeper-cannot-exist")).expect_err("not writable");
        assert!(error.to_string().contains("not writable"), "{error}");
    }
}
