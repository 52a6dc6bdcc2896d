//! Leader election for user applications: candidates queue as in the lock recipe; the first is the
//! leader, and each candidate watches only its predecessor.

use crate::api::ErrorCode;
use crate::client::{Client, ClientError, Session};
use crate::consensus::Consistency;

use super::{sequenced_children, wait_first_in_line};

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
            Err(error) if error.code() != ErrorCode::NoNode => Err(error),
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
    let path = wait_first_in_line(client, session, dir, PREFIX, identity).await?;
    Ok(Leadership { client: client.clone(), path })
}

/// The current leader's identity at `dir`, if any candidate stands.
///
/// # Errors
/// [`ClientError`].
pub async fn leader(client: &Client, dir: &str) -> Result<Option<String>, ClientError> {
    for candidate in sequenced_children(client, dir, PREFIX).await? {
        match client.get(&format!("{dir}/{candidate}"), Consistency::Linearizable).await {
            Ok(node) => return Ok(Some(node.data)),
            Err(error) if error.code() == ErrorCode::NoNode => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(None)
}
