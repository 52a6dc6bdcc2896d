//! A one-shot GET on the admin API (HTTPS or plain, per [`Access`]): one request per connection,
//! bounded response size. For tests and benches that read `/metrics` or `/status` without a
//! [`crate::client::Client`]; the CLI uses the client, with its failover.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};

use crate::client::Access;
use crate::limits::ADMIN_RESPONSE_BYTES_MAX;

/// An admin request that gets no answer within this is abandoned.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    /// The node could not be reached.
    #[error("cannot reach admin API at {addr}: {reason}")]
    Unreachable {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The node answered with an error status.
    #[error("admin API at {addr} answered {status}: {body}")]
    Status {
        /// The address.
        addr: SocketAddr,
        /// HTTP status.
        status: u16,
        /// The answer's text.
        body: String,
    },
    /// The answer could not be read or was too large.
    #[error("bad answer from admin API at {addr}: {reason}")]
    BadAnswer {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// `GET path` on the admin API at `addr`, returning the body of a 2xx answer.
///
/// # Errors
/// [`AdminClientError`] for unreachable nodes, error statuses, and unreadable answers.
pub async fn get(addr: SocketAddr, path: &str, access: &Access) -> Result<Bytes, AdminClientError> {
    tokio::time::timeout(REQUEST_TIMEOUT, get_inner(addr, path, access))
        .await
        .unwrap_or_else(|_| Err(AdminClientError::Unreachable { addr, reason: "timed out".into() }))
}

async fn get_inner(addr: SocketAddr, path: &str, access: &Access) -> Result<Bytes, AdminClientError> {
    let unreachable = |reason: String| AdminClientError::Unreachable { addr, reason };
    let bad = |reason: String| AdminClientError::BadAnswer { addr, reason };
    let mut sender = access.dial::<Empty<Bytes>>(addr).await.map_err(|error| unreachable(error.to_string()))?;
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, addr.to_string());
    if let Some(authorization) = access.authorization() {
        request = request.header(hyper::header::AUTHORIZATION, authorization);
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|error| bad(error.to_string()))?;
    let response = sender.send_request(request).await.map_err(|error| unreachable(error.to_string()))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), ADMIN_RESPONSE_BYTES_MAX)
        .collect()
        .await
        .map_err(|error| bad(error.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(AdminClientError::Status {
            addr,
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    Ok(body)
}
