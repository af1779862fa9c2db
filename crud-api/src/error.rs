//! The API's one error type, answered as `application/problem+json` (RFC 9457).
//!
//! 4xx variants carry a message for the client. A 5xx is logged with its cause and answered
//! with a generic body.

use crate::store::{Conflict, StoreError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

/// A problem with one field of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as a path into the body or the query (`options[2]`, `limit`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: `code` tells problems apart.
    #[serde(rename = "type")]
    pub r#type: String,
    /// The HTTP status text.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// What went wrong, for a program: `sold_out`, `duplicate`, `validation`, …
    pub code: String,
    /// With 422: the fields at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// Every error answer the API gives, for the OpenAPI document.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Problems {
    /// The request is malformed (bad JSON, a bad path or header).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(#[to_schema] Problem),
    /// No valid bearer token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The token's role may not do this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such resource in the token's org.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// Sold out, duplicate, expired offer, closed poll, …
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body is over the size limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// A field is invalid; `errors` lists them.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
    /// Over the per-user rate limit; see `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or bad token.
    #[error("{0}")]
    Unauthorized(String),
    /// The role may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Nothing with this id in the token's org.
    #[error("no such {0} in this org")]
    NotFound(&'static str),
    /// Conflicts with stored state.
    #[error("{0}")]
    Conflict(Conflict),
    /// Body over the limit.
    #[error("the request body is too large")]
    TooLarge,
    /// Body not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Field errors.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// Over the rate limit.
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited {
        /// When to retry.
        retry_after_secs: u64,
    },
    /// A failure of ours.
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ApiError {
    /// A single field error.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// Store errors, naming the resource a `NotFound` is about.
    pub fn store(what: &'static str) -> impl Fn(StoreError) -> ApiError {
        move |e| match e {
            StoreError::NotFound => ApiError::NotFound(what),
            e => ApiError::from(e),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(c) => match c {
                Conflict::SoldOut => "sold_out",
                Conflict::Duplicate(_) => "duplicate",
                Conflict::OfferExpired => "offer_expired",
                Conflict::OfferAnswered => "offer_answered",
                Conflict::HoldsOffer => "holds_offer",
                Conflict::PollClosed => "poll_closed",
                Conflict::CapacityBelowTaken => "capacity_below_taken",
                Conflict::LastOwner => "last_owner",
                Conflict::IdempotencyKeyReused => "idempotency_key_reused",
                Conflict::AlreadyCancelled => "already_cancelled",
            },
            ApiError::TooLarge => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Validation(_) => "validation",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::NotFound("resource"),
            StoreError::Conflict(c) => ApiError::Conflict(c),
            StoreError::Invalid { field, message } => ApiError::field(field, message),
            // Every tenant row refers to its org: a write for an org that was never created.
            StoreError::Database(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_foreign_key_violation()) =>
            {
                ApiError::NotFound("org")
            }
            e => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = %e, "request failed");
        }
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let body = Problem {
            r#type: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().into(),
            errors: match self {
                ApiError::Validation(errors) => Some(errors),
                _ => None,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Handler results.
pub type ApiResult<T> = Result<T, ApiError>;
