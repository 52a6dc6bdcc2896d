//! A barrier: participants register under a directory and wait until `count` have arrived.

use crate::api::ErrorCode;
use crate::client::{Client, ClientError, Session};
use crate::consensus::Consistency;
use crate::registry::{CreateMode, WatchKind};

use super::ensure_path;

/// Registers `participant` at the barrier `dir` and waits until `count` participants are there.
/// A participant whose session ends leaves the barrier.
///
/// # Errors
/// [`ClientError`].
pub async fn enter(
    client: &Client,
    session: &Session,
    dir: &str,
    participant: &str,
    count: usize,
) -> Result<(), ClientError> {
    ensure_path(client, dir).await?;
    match client.create(&format!("{dir}/{participant}"), "", CreateMode::Ephemeral, Some(session)).await {
        Ok(_) => {}
        Err(error) if error.code() == ErrorCode::NodeExists => {}
        Err(error) => return Err(error),
    }
    loop {
        let mut events = client.watch(dir, WatchKind::Child, None).await?;
        if client.children(dir, Consistency::Linearizable).await?.children.len() >= count {
            return Ok(());
        }
        events.recv().await;
    }
}
