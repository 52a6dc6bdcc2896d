//! The local and remote paths cannot drift: every coordinator error (and every registry refusal),
//! sent through the local path (the service's `ApiError`) and through the remote one (the admin API's
//! HTTP answer, decoded by the client), arrives as the same error, and every caller that decides on
//! it (the `Grid` handle, the worker's report retry) decides the same.
//!
//! Bug 2 of issue 10: `OutcomeUnknown` used to arrive over HTTP as a refusal (the remote path
//! classified every name but `unavailable` as refused), so a joined worker dropped a report batch the
//! local path would retry, and a remote submit reported a refusal that may have been committed.

use axum::response::IntoResponse;
use gridkeeper::admin::error::HttpError;
use gridkeeper::api::{ApiError, ErrorCode};
use gridkeeper::client::{error_from_answer, ClientError};
use gridkeeper::consensus::CoordinatorError;
use gridkeeper::registry::{RegistryError, SessionId};
use gridkeeper::service::GridApiError;
use http_body_util::BodyExt;

/// Every error a coordinator call can end with.
fn coordinator_errors() -> Vec<CoordinatorError> {
    let registry = vec![
        RegistryError::NoNode { path: "/a".into() },
        RegistryError::NodeExists { path: "/a".into() },
        RegistryError::BadVersion { path: "/a".into(), expected: 1, actual: 2 },
        RegistryError::NotEmpty { path: "/a".into() },
        RegistryError::NoChildrenForEphemerals { path: "/a".into() },
        RegistryError::InvalidPath { reason: "empty segment".into() },
        RegistryError::TooLarge { bytes: 2 << 20, max: 1 << 20 },
        RegistryError::SessionExpired { session: SessionId(7) },
        RegistryError::BadArguments { reason: "task table full".into() },
        RegistryError::QuotaExceeded { reason: "znodes_max".into() },
        RegistryError::MultiFailed { index: 2, cause: Box::new(RegistryError::NotEmpty { path: "/b".into() }) },
        RegistryError::NoAuth { session: SessionId(9) },
        RegistryError::SessionExists { session: SessionId(9) },
    ];
    let mut errors = vec![
        CoordinatorError::Unavailable("no leader".into()),
        CoordinatorError::OutcomeUnknown("leader changed after the proposal".into()),
        CoordinatorError::Watch("watch table full".into()),
        CoordinatorError::EntryTooLarge { bytes: 9 << 20, max: 8 << 20 },
    ];
    errors.extend(registry.into_iter().map(CoordinatorError::Registry));
    errors
}

/// The remote path: the admin API's answer to the error, as bytes on the wire, decoded by the client.
async fn over_http(error: &ApiError) -> ClientError {
    let response = HttpError(error.clone()).into_response();
    let status = response.status();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    error_from_answer(status, &body)
}

/// What the worker does with a failed report batch (see `worker::send_reports`).
fn report_retried(error: &ApiError) -> bool {
    error.is_retryable() || error.code.may_have_applied()
}

#[tokio::test]
async fn every_coordinator_error_arrives_alike_on_both_paths() {
    for error in coordinator_errors() {
        let local = ApiError::from(error.clone());
        let remote = ApiError::from(over_http(&local).await);
        assert_eq!(remote, local, "{error:?}");
        // Every decision downstream is made on the same code.
        assert_eq!(GridApiError::from(remote.clone()).code(), GridApiError::from(local.clone()).code(), "{error:?}");
        assert_eq!(report_retried(&remote), report_retried(&local), "{error:?}");
    }
}

#[tokio::test]
async fn an_unknown_outcome_is_not_a_refusal_on_either_path() {
    let error = CoordinatorError::OutcomeUnknown("the leader went silent".into());
    let local = ApiError::from(error);
    let remote = ApiError::from(over_http(&local).await);
    for (path, arrived) in [("local", &local), ("remote", &remote)] {
        assert_eq!(arrived.code, ErrorCode::OutcomeUnknown, "{path}");
        assert!(arrived.code.may_have_applied(), "{path}: a submission may have been committed");
        assert!(report_retried(arrived), "{path}: a fenced report batch is sent again, not dropped");
        let grid = GridApiError::from(arrived.clone());
        assert_eq!(grid.code(), ErrorCode::OutcomeUnknown, "{path}: {grid}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_the_contract_is_a_transport_error() {
    let decoded = error_from_answer(axum::http::StatusCode::BAD_GATEWAY, b"<html>proxy</html>");
    assert!(matches!(decoded, ClientError::Transport(_)), "{decoded:?}");
    assert!(decoded.code().is_retryable());
}
