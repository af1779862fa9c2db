//! Extractors whose rejections are problem documents: JSON bodies, query strings, path
//! parameters and the `Idempotency-Key` header.

use crate::error::{ApiError, FieldError};
use crate::store::MAX_IDEMPOTENCY_KEY_LEN;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON body. Bad JSON answers 400, a body of the wrong shape 422 naming the field, a
/// body that is not `application/json` 415, one over the size limit 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as `Content-Type: application/json`".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::BadRequest(format!("the body is not valid JSON: {inner}"))
            } else {
                ApiError::Validation(vec![field_error(&e.path().to_string(), inner.to_string())])
            }
        })?;
        de.end()
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
        Ok(Json(value))
    }
}

fn field_error(path: &str, message: String) -> FieldError {
    let field = if path.is_empty() || path == "." {
        "body"
    } else {
        path
    };
    // serde names the field in "missing field `x`"; report that field rather than the parent.
    let field = match message.split('`').nth(1) {
        Some(name)
            if message.starts_with("missing field") || message.starts_with("unknown field") =>
        {
            if field == "body" {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            }
        }
        _ => field.to_owned(),
    };
    FieldError::new(field, message)
}

/// A query string; a bad parameter answers 422 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                ApiError::Validation(vec![field_error(
                    &e.path().to_string(),
                    e.inner().to_string(),
                )])
            })
    }
}

/// Path parameters; a bad one answers 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let bad = || {
            ApiError::field(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
            )
        };
        let key = value.to_str().map_err(|_| bad())?;
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_LEN
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad());
        }
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}
