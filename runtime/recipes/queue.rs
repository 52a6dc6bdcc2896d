//! A distributed FIFO queue: producers append persistent-sequential items; a consumer takes the
//! oldest by deleting it, so each item is taken exactly once even with competing consumers.

use crate::api::ErrorCode;
use crate::client::{Client, ClientError};
use crate::consensus::Consistency;
use crate::registry::{CreateMode, WatchKind};

use super::{ensure_path, sequenced_children};

const PREFIX: &str = "item-";

/// Appends `data` to the queue at `dir`; returns the item's path.
///
/// # Errors
/// [`ClientError`].
pub async fn push(client: &Client, dir: &str, data: &str) -> Result<String, ClientError> {
    ensure_path(client, dir).await?;
    Ok(client.create(&format!("{dir}/{PREFIX}"), data, CreateMode::PersistentSequential, None).await?.path)
}

/// Takes the oldest item, if any.
///
/// # Errors
/// [`ClientError`].
pub async fn try_pop(client: &Client, dir: &str) -> Result<Option<String>, ClientError> {
    for item in sequenced_children(client, dir, PREFIX).await? {
        let path = format!("{dir}/{item}");
        let node = match client.get(&path, Consistency::Linearizable).await {
            Ok(node) => node,
            Err(error) if error.code() == ErrorCode::NoNode => continue,
            Err(error) => return Err(error),
        };
        // Whoever deletes the item at the version read owns it; a competitor's delete fails.
        match client.delete(&path, Some(node.stat.version)).await {
            Ok(()) => return Ok(Some(node.data)),
            Err(error) if error.code() == ErrorCode::NoNode => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(None)
}

/// Takes the oldest item, waiting for one if the queue is empty.
///
/// # Errors
/// [`ClientError`].
pub async fn pop(client: &Client, dir: &str) -> Result<String, ClientError> {
    ensure_path(client, dir).await?;
    loop {
        let mut events = client.watch(dir, WatchKind::Child, None).await?;
        if let Some(item) = try_pop(client, dir).await? {
            return Ok(item);
        }
        events.recv().await;
    }
}
