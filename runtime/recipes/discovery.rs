//! Service registration and discovery: an instance registers an ephemeral node under
//! `/services/<service>` holding its address; clients list and watch the instances.

use tokio::sync::mpsc;

use crate::api::ErrorCode;
use crate::client::{Client, ClientError, Session};
use crate::consensus::Consistency;
use crate::registry::{CreateMode, WatchKind};

use super::ensure_path;

fn service_dir(service: &str) -> String {
    format!("/services/{service}")
}

/// Registers `instance` of `service` at `address` for as long as `session` lives.
///
/// # Errors
/// [`ClientError`]; `node exists` if that instance name is taken.
pub async fn register(
    client: &Client,
    session: &Session,
    service: &str,
    instance: &str,
    address: &str,
) -> Result<(), ClientError> {
    let dir = service_dir(service);
    ensure_path(client, &dir).await?;
    client.create(&format!("{dir}/{instance}"), address, CreateMode::Ephemeral, Some(session)).await?;
    Ok(())
}

/// The live instances of `service` and their addresses, sorted by instance name.
///
/// # Errors
/// [`ClientError`].
pub async fn discover(client: &Client, service: &str) -> Result<Vec<(String, String)>, ClientError> {
    let dir = service_dir(service);
    let children = match client.children(&dir, Consistency::Linearizable).await {
        Ok(listing) => listing.children,
        Err(error) if error.code() == ErrorCode::NoNode => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut instances = Vec::with_capacity(children.len());
    for instance in children {
        match client.get(&format!("{dir}/{instance}"), Consistency::Linearizable).await {
            Ok(node) => instances.push((instance, node.data)),
            Err(error) if error.code() == ErrorCode::NoNode => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(instances)
}

/// Waits for the next change to `service`'s instances.
///
/// # Errors
/// [`ClientError`].
pub async fn changes(
    client: &Client,
    service: &str,
) -> Result<mpsc::Receiver<crate::registry::WatchEvent>, ClientError> {
    let dir = service_dir(service);
    ensure_path(client, &dir).await?;
    client.watch(&dir, WatchKind::Child, None).await
}
