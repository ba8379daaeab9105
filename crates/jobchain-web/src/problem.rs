//! Errors as `application/problem+json` (RFC 9457).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jobchain::{Error, StoreError};
use serde_json::json;

/// An error answer: a status, a short title and a detail that says what to do.
#[derive(Debug)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// What kind of problem, the same for every occurrence.
    pub title: &'static str,
    /// This occurrence: what was wrong and what to do.
    pub detail: String,
    /// Ask for a bearer token (`WWW-Authenticate`).
    pub(crate) challenge: bool,
}

impl Problem {
    /// A problem with `status`.
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            title,
            detail: detail.into(),
            challenge: false,
        }
    }

    /// 400: the request was wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        let detail = error.to_string();
        let (status, title) = match &error {
            Error::Store(store) => match store {
                StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
                StoreError::Conflict(_) => (StatusCode::CONFLICT, "Wrong state"),
                StoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "Bad request"),
                StoreError::Connection { .. }
                | StoreError::Transient { .. }
                | StoreError::Locked { .. }
                | StoreError::Closed => (StatusCode::SERVICE_UNAVAILABLE, "Store unavailable"),
                StoreError::DiskFull { .. } => {
                    (StatusCode::INSUFFICIENT_STORAGE, "Store disk full")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "Store error"),
            },
            Error::Payload { .. } | Error::Workflow(_) => (StatusCode::BAD_REQUEST, "Bad request"),
            Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "Timed out"),
            Error::NoResult { .. } => (StatusCode::CONFLICT, "No result"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %detail, "API request failed");
        }
        Problem::new(status, title, detail)
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Problem::bad_request(format!(
            "{}; see /api/v1/openapi.json for the parameters",
            rejection.body_text()
        ))
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        // A body that is JSON but not the expected shape is bad input like any other.
        let status = match rejection.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            other => other,
        };
        let (title, hint) = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "Unsupported media type",
                ": send the body as JSON with `Content-Type: application/json`",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ("Body too large", ""),
            _ => ("Bad request", ""),
        };
        Problem::new(status, title, format!("{}{hint}", rejection.body_text()))
    }
}
