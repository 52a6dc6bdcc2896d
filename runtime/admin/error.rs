//! How the admin API answers an error: the contract's [`ApiError`] as JSON
//! (`{"error": "<name>", "message": "..."}`) under the HTTP status its code implies. The one place
//! that maps codes to statuses; no route picks a status of its own.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{ApiError, ErrorCode};

/// An error as an HTTP answer.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl<E: Into<ApiError>> From<E> for HttpError {
    fn from(error: E) -> Self {
        HttpError(error.into())
    }
}

/// The HTTP status of an error code.
pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NoNode | ErrorCode::NoTask | ErrorCode::NoJob => StatusCode::NOT_FOUND,
        ErrorCode::NodeExists
        | ErrorCode::BadVersion
        | ErrorCode::NotEmpty
        | ErrorCode::NoChildrenForEphemerals
        | ErrorCode::SessionExpired
        | ErrorCode::SessionExists
        | ErrorCode::QuotaExceeded
        | ErrorCode::MembershipRefused
        | ErrorCode::JobRunning => StatusCode::CONFLICT,
        ErrorCode::InvalidPath | ErrorCode::BadArguments | ErrorCode::InvalidAcl => StatusCode::BAD_REQUEST,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::NoAuth | ErrorCode::AuthFailed => StatusCode::FORBIDDEN,
        ErrorCode::WatchLimit | ErrorCode::TooManyWatches | ErrorCode::TooManyWaits | ErrorCode::Overloaded => {
            StatusCode::TOO_MANY_REQUESTS
        }
        ErrorCode::ActorFailed => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Unavailable | ErrorCode::OutcomeUnknown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorCode::Misdirected => StatusCode::MISDIRECTED_REQUEST,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let code = self.0.code;
        let mut response = (status(code), Json(self.0)).into_response();
        // The audit log reads the outcome here rather than parsing the body.
        response.extensions_mut().insert(code);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_an_error_status() {
        for &code in ErrorCode::ALL {
            let status = status(code);
            assert!(status.is_client_error() || status.is_server_error(), "{code:?} -> {status}");
        }
    }
}
