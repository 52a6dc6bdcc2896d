//! A distributed lock without herd effect: every contender creates an ephemeral-sequential node and
//! watches only its predecessor, so a release wakes exactly one waiter.

use crate::client::{Client, ClientError, Session};
use crate::consensus::Consistency;
use crate::registry::{CreateMode, WatchKind};

use super::{ensure_path, sequenced_children};

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
            Err(error) if error.name() != "no node" => Err(error),
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
    ensure_path(client, dir).await?;
    let created =
        client.create(&format!("{dir}/{PREFIX}"), "", CreateMode::EphemeralSequential, Some(session.id())).await?;
    let mine = created.path.rsplit('/').next().unwrap_or_default().to_string();
    loop {
        let contenders = sequenced_children(client, dir, PREFIX).await?;
        let Some(position) = contenders.iter().position(|name| *name == mine) else {
            return Err(ClientError::Registry {
                name: "session expired".into(),
                message: "the lock contender node is gone".into(),
            });
        };
        if position == 0 {
            return Ok(LockGuard { client: client.clone(), path: created.path });
        }
        let predecessor = format!("{dir}/{}", contenders[position - 1]);
        let mut events = client.watch(&predecessor, WatchKind::Data, None).await?;
        // The predecessor may have gone between the listing and the watch.
        if client.exists(&predecessor, Consistency::Linearizable).await?.is_some() {
            events.recv().await;
        }
    }
}
