//! A distributed lock without herd effect: every contender creates an ephemeral-sequential node and
//! watches only its predecessor, so a release wakes exactly one waiter.

use crate::api::ErrorCode;
use crate::client::{Client, ClientError, Session};

use super::wait_first_in_line;

const PREFIX: &str = "lock-";

/// A held lock; released by [`LockGuard::release`], or by its session ending.
#[derive(Debug)]
pub struct LockGuard {
    client: Client,
    path: String,
}

impl LockGuard {
    /// The contender node that holds the lock.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Releases the lock; the next contender takes it.
    ///
    /// # Errors
    /// [`ClientError`] (the lock is released anyway once the session ends).
    pub async fn release(self) -> Result<(), ClientError> {
        match self.client.delete(&self.path, None).await {
            Err(error) if error.code() != ErrorCode::NoNode => Err(error),
            _ => Ok(()),
        }
    }
}

/// Waits until this session holds the lock at `dir`.
///
/// # Errors
/// [`ClientError`] if the registry cannot be reached.
///
/// # Cancel safety
/// Not cancel safe: a cancelled wait leaves its contender node until the session ends.
pub async fn acquire(client: &Client, session: &Session, dir: &str) -> Result<LockGuard, ClientError> {
    let path = wait_first_in_line(client, session, dir, PREFIX, "").await?;
    Ok(LockGuard { client: client.clone(), path })
}
