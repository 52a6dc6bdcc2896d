//! Coordination recipes on the registry client, as ZooKeeper users know them: a lock without herd
//! effect, leader election, a barrier, a distributed queue, and service registration/discovery.
//!
//! Each waits with watches, never by polling, and each ties its membership to a session, so a
//! participant that dies releases what it held when its session expires.

pub mod barrier;
pub mod discovery;
pub mod election;
pub mod lock;
pub mod queue;

use crate::api::{ApiError, ErrorCode};
use crate::client::{Client, ClientError};
use crate::consensus::Consistency;
use crate::registry::CreateMode;

/// Why a recipe failed.
pub type RecipeError = ClientError;

/// Creates `path` and any missing ancestors as persistent nodes.
///
/// # Errors
/// [`ClientError`] other than `node exists`.
pub async fn ensure_path(client: &Client, path: &str) -> Result<(), ClientError> {
    let mut prefix = String::new();
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        prefix.push('/');
        prefix.push_str(segment);
        match client.create(&prefix, "", CreateMode::Persistent, None).await {
            Ok(_) => {}
            Err(error) if error.code() == ErrorCode::NodeExists => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The sequence number of a sequential node's name (its last ten digits).
pub fn sequence_of(name: &str) -> Option<u64> {
    name.len().checked_sub(10).and_then(|start| name.get(start..)).and_then(|digits| digits.parse().ok())
}

/// Children of `dir` whose names start with `prefix`, ordered by sequence number.
///
/// # Errors
/// [`ClientError`].
pub async fn sequenced_children(client: &Client, dir: &str, prefix: &str) -> Result<Vec<String>, ClientError> {
    let mut children: Vec<String> = client
        .children(dir, Consistency::Linearizable)
        .await?
        .children
        .into_iter()
        .filter(|name| name.starts_with(prefix))
        .collect();
    children.sort_by_key(|name| sequence_of(name));
    Ok(children)
}

/// Queues `session` under `dir` as an ephemeral-sequential node named `prefix…` holding `data`, and
/// waits until it is first in line, watching only its predecessor (no herd effect). Returns its path.
///
/// # Errors
/// [`ClientError`]; `session expired` if the node vanished while waiting.
pub(crate) async fn wait_first_in_line(
    client: &Client,
    session: &crate::client::Session,
    dir: &str,
    prefix: &str,
    data: &str,
) -> Result<String, ClientError> {
    ensure_path(client, dir).await?;
    let created =
        client.create(&format!("{dir}/{prefix}"), data, CreateMode::EphemeralSequential, Some(session)).await?;
    let mine = created.path.rsplit('/').next().unwrap_or_default().to_string();
    loop {
        let line = sequenced_children(client, dir, prefix).await?;
        let Some(position) = line.iter().position(|name| *name == mine) else {
            return Err(ClientError::Api(ApiError::new(
                ErrorCode::SessionExpired,
                format!("{} is gone", created.path),
            )));
        };
        if position == 0 {
            return Ok(created.path);
        }
        let predecessor = format!("{dir}/{}", line[position - 1]);
        let mut events = client.watch(&predecessor, crate::registry::WatchKind::Data, None).await?;
        // The predecessor may have gone between the listing and the watch.
        if client.exists(&predecessor, Consistency::Linearizable).await?.is_some() {
            events.recv().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_parse_from_the_tail() {
        assert_eq!(sequence_of("lock-0000000042"), Some(42));
        assert_eq!(sequence_of("x"), None);
        assert_eq!(sequence_of("lock-abcdefghij"), None);
    }
}
