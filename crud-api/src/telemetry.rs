//! Request ids, request spans and HTTP metrics.
//!
//! - `evd_http_requests_total{route, method, status}`: a counter.
//! - `evd_http_request_duration_seconds{route, method}`: a histogram.
//!
//! `route` is the matched path template (`/api/v1/events/{event_id}`), never the raw URL, so
//! the number of series stays bounded.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::time::Instant;
use tower_http::request_id::RequestId;
use tracing::Span;

/// Buckets of `evd_http_request_duration_seconds`, in seconds: from a cached read (1 ms) to a
/// request stuck behind a slow database (5 s).
pub const HTTP_DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the process-wide Prometheus recorder, with histogram buckets for the HTTP metrics.
/// A process that mounts [`crate::app`] next to other services installs its own recorder and
/// should give it [`HTTP_DURATION_BUCKETS`] too, and call [`describe`].
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("evd_http_request_duration_seconds".into()),
            &HTTP_DURATION_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// Gives the HTTP metrics their help text (`# HELP`), on the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        "evd_http_requests_total",
        "REST requests answered, by route, method and status."
    );
    metrics::describe_histogram!(
        "evd_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "REST request latency, by route and method."
    );
}

/// Records the metrics of one request.
pub(crate) async fn track_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        "evd_http_request_duration_seconds",
        "route" => route.clone(),
        "method" => method.clone()
    )
    .record(start.elapsed().as_secs_f64());
    metrics::counter!(
        "evd_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => status
    )
    .increment(1);
    response
}

/// The span every log line of a request is written in; it carries the request id.
pub(crate) fn request_span(req: &Request) -> Span {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
    )
}
