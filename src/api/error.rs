//! The one error type of the HTTP layer, mapped once to the JSON error body of the contract:
//! `{"status": 422, "code": "VALIDATION_ERROR", "message": "url: ..."}`. Server faults are
//! logged here and answered with a bare message.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::engine::EngineError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("this API key belongs to another team")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("no route {method} {path}; the API is described in the README")]
    NoRoute { method: String, path: String },
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("the source is disabled")]
    SourceDisabled,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the body did not arrive within {}; nothing was stored", humantime::format_duration(*.0))]
    RequestTimeout(std::time::Duration),
    #[error("the request signature did not verify")]
    VerificationFailed,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("this team sends more than its ingress limit; retry after {0} s")]
    RateLimited(u64),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError::Validation(format!("{field}: {message}"))
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "INVALID_JSON",
            ApiError::Validation(_) => "VALIDATION_ERROR",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::Forbidden => "FORBIDDEN",
            ApiError::NotFound(_) | ApiError::NoRoute { .. } => "NOT_FOUND",
            ApiError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            ApiError::SourceDisabled => "SOURCE_DISABLED",
            ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::RequestTimeout(_) => "REQUEST_TIMEOUT",
            ApiError::VerificationFailed => "VERIFICATION_FAILED",
            ApiError::Conflict { code, .. } => code,
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::RateLimited(_) => "RATE_LIMITED",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) | ApiError::VerificationFailed => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::SourceDisabled => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let mut resp = HttpResponse::build(status);
        match self {
            ApiError::Unavailable(_) => {
                resp.insert_header(("retry-after", "1"));
            }
            ApiError::RateLimited(secs) => {
                resp.insert_header(("retry-after", secs.to_string()));
            }
            _ => {}
        }
        resp.json(serde_json::json!({
            "status": status.as_u16(),
            "code": self.code(),
            "message": self.to_string(),
        }))
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(what) => ApiError::NotFound(what),
            EngineError::Conflict(message) => ApiError::Conflict {
                code: "CONFLICT",
                message,
            },
            EngineError::Refused { code, message } => ApiError::Conflict { code, message },
            EngineError::Store(e) => e.into(),
            EngineError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The disk is full or failing: nothing was stored half-way, the caller may retry.
            StoreError::Sled(_) | StoreError::Io(_) | StoreError::Closed => {
                tracing::error!(error = %e, "store unavailable");
                ApiError::Unavailable(
                    "storage is unavailable; nothing was stored, retry later".into(),
                )
            }
            StoreError::Behind(_) => ApiError::Unavailable(e.to_string()),
            StoreError::Corrupt(m) => ApiError::Internal(m),
            StoreError::NewerLayout { .. } | StoreError::Damaged(_) => {
                ApiError::Internal(e.to_string())
            }
            StoreError::Duplicate { .. } => ApiError::Conflict {
                code: "DUPLICATE_REQUEST",
                message: e.to_string(),
            },
        }
    }
}
