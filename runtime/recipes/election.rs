//! Leader election for user applications: candidates queue as in the lock recipe; the first is the
//! leader, and each candidate watches only its predecessor.

use crate::client::{Client, ClientError, Session};
use crate::consensus::Consistency;
use crate::registry::{CreateMode, WatchKind};

use super::{ensure_path, sequenced_children};

const PREFIX: &str = "candidate-";

/// Leadership held until [`Leadership::resign`] or the session ends.
#[derive(Debug)]
pub struct Leadership {
    client: Client,
    path: String,
}

impl Leadership {
    /// Gives leadership up; the next candidate is elected.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn resign(self) -> Result<(), ClientError> {
        match self.client.delete(&self.path, None).await {
            Err(error) if error.name() != "no node" => Err(error),
            _ => Ok(()),
        }
    }
}

/// Stands for election at `dir` with `identity` as the candidate's data, and waits until elected.
///
/// # Errors
/// [`ClientError`].
pub async fn campaign(
    client: &Client,
    session: &Session,
    dir: &str,
    identity: &str,
) -> Result<Leadership, ClientError> {
    ensure_path(client, dir).await?;
    let created = client
        .create(&format!("{dir}/{PREFIX}"), identity, CreateMode::EphemeralSequential, Some(session.id()))
        .await?;
    let mine = created.path.rsplit('/').next().unwrap_or_default().to_string();
    loop {
        let candidates = sequenced_children(client, dir, PREFIX).await?;
        let Some(position) = candidates.iter().position(|name| *name == mine) else {
            return Err(ClientError::Registry {
                name: "session expired".into(),
                message: "the candidate node is gone".into(),
            });
        };
        if position == 0 {
            return Ok(Leadership { client: client.clone(), path: created.path });
        }
        let predecessor = format!("{dir}/{}", candidates[position - 1]);
        let mut events = client.watch(&predecessor, WatchKind::Data, None).await?;
        if client.exists(&predecessor, Consistency::Linearizable).await?.is_some() {
            events.recv().await;
        }
    }
}

/// The current leader's identity at `dir`, if any candidate stands.
///
/// # Errors
/// [`ClientError`].
pub async fn leader(client: &Client, dir: &str) -> Result<Option<String>, ClientError> {
    for candidate in sequenced_children(client, dir, PREFIX).await? {
        match client.get(&format!("{dir}/{candidate}"), Consistency::Linearizable).await {
            Ok(node) => return Ok(Some(node.data)),
            Err(error) if error.name() == "no node" => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(None)
}
