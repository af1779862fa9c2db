//! Cross-origin access: which web origins besides the server's own may call the REST API and
//! read what `/ws` answers (`[cors] allowed_origins`, `EVD_CORS_ALLOWED_ORIGINS`), and the layer
//! that answers browsers' CORS requests for those origins. The engine checks a WebSocket
//! upgrade's `Origin` against the same list.

use axum::http::{HeaderName, HeaderValue, Method, Request, Response, header};
use futures_util::future::Either;
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

/// How long a browser may reuse a preflight's answer, seconds: a change of the allowed origins
/// reaches open pages within ten minutes, and a page's burst of calls costs one preflight.
pub const PREFLIGHT_MAX_AGE_SECS: u64 = 600;

/// The entry of `allowed_origins` that allows every origin.
pub const ANY_ORIGIN: &str = "*";

/// Cross-origin access (`[cors]` in the config file, `EVD_CORS_*` in the environment), shared by
/// `evd api` and the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins (`scheme://host[:port]`) whose pages may call the REST API and open `/ws`,
    /// besides the server's own; `*` allows any. Empty: the server's own origin only. A
    /// comma-separated string is accepted too.
    #[serde(deserialize_with = "origin_list")]
    pub allowed_origins: Vec<String>,
}

impl CorsSettings {
    /// True when `*` is listed.
    pub fn allows_any(&self) -> bool {
        self.allowed_origins.iter().any(|o| o == ANY_ORIGIN)
    }

    /// Whether a page served from `origin` (an `Origin` header's value) is listed.
    pub fn allows(&self, origin: &str) -> bool {
        self.allows_any()
            || normalize_origin(origin).is_some_and(|o| self.allowed_origins.contains(&o))
    }
}

/// `origin` in the form browsers send it, `scheme://host[:port]` in lower case without a default
/// port (80 for http, 443 for https) or a trailing `/`; `*` stays `*`. `None` when it is not
/// an origin (a path, a query, user info, an opaque `null`, …).
pub fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim();
    if origin == ANY_ORIGIN {
        return Some(ANY_ORIGIN.into());
    }
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let authority = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
    let authority_ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\'));
    if !scheme_ok || !authority_ok {
        return None;
    }
    let (host, port) = split_port(&authority)?;
    if host.is_empty() {
        return None;
    }
    Some(match port {
        Some(p) if Some(p) != default_port(&scheme) => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Whether `origin` is the origin of a page served by this server, reached at `host` (the
/// request's `Host`): their host and port match, whatever the scheme (TLS may end at a proxy in
/// front). A port left out is the default port of the origin's scheme.
pub fn is_same_origin(origin: &str, host: &str) -> bool {
    let Some(origin) = normalize_origin(origin) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let Some((host_name, host_port)) = split_port(&host) else {
        return false;
    };
    let host = match host_port {
        Some(p) if Some(p) == default_port(scheme) => host_name.to_owned(),
        _ => host,
    };
    authority == host
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `host[:port]` (IPv6 hosts in brackets) into host and port; `None` when the port is not one.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let after_host = authority.rfind(']').map_or(0, |i| i + 1);
    match authority[after_host..].rfind(':') {
        Some(i) => {
            let (host, port) = authority.split_at(after_host + i);
            let port: u16 = port[1..].parse().ok().filter(|p| *p != 0)?;
            Some((host, Some(port)))
        }
        None => Some((authority, None)),
    }
}

fn origin_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let listed: Vec<String> = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    };
    listed
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .map(|o| {
            normalize_origin(o).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{o}` is not an origin: use scheme://host[:port] (no path), or *"
                ))
            })
        })
        .collect()
}

/// CORS for the routes it wraps, for the origins `settings` allows: a request from one goes
/// through tower-http's [`CorsLayer`] (its preflight answered, the allow and expose headers
/// added). Every other request (without an `Origin`, from the server's own page, or from an
/// origin not allowed) passes through untouched, so a refused origin's preflight carries no
/// CORS header at all and its browser refuses the call.
pub fn layer(settings: &CorsSettings) -> CorsGateLayer {
    let allow_origin = if settings.allows_any() {
        AllowOrigin::any()
    } else {
        let allowed = settings.clone();
        AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().is_ok_and(|o| allowed.allows(o))
        })
    };
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::LOCATION,
            HeaderName::from_static("x-request-id"),
            // `true` when an `Idempotency-Key` replayed an earlier answer.
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(PREFLIGHT_MAX_AGE_SECS));
    CorsGateLayer {
        settings: Arc::new(settings.clone()),
        cors,
    }
}

/// The layer [`layer`] builds.
#[derive(Debug, Clone)]
pub struct CorsGateLayer {
    settings: Arc<CorsSettings>,
    cors: CorsLayer,
}

impl<S: Clone> Layer<S> for CorsGateLayer {
    type Service = CorsGate<S>;

    fn layer(&self, inner: S) -> CorsGate<S> {
        CorsGate {
            settings: Arc::clone(&self.settings),
            cors: self.cors.layer(inner.clone()),
            inner,
        }
    }
}

/// A service behind [`CorsGateLayer`]: CORS for allowed origins, the service alone otherwise.
#[derive(Debug, Clone)]
pub struct CorsGate<S> {
    settings: Arc<CorsSettings>,
    cors: Cors<S>,
    inner: S,
}

impl<S> CorsGate<S> {
    fn is_allowed<B>(&self, req: &Request<B>) -> bool {
        req.headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| self.settings.allows(o))
    }
}

impl<S, B, R> Service<Request<B>> for CorsGate<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Either<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Either path may take the next request, so both must be ready (axum's routes always
        // are).
        match self.cors.poll_ready(cx)? {
            Poll::Ready(()) => self.inner.poll_ready(cx),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.is_allowed(&req) {
            Either::Left(self.cors.call(req))
        } else {
            Either::Right(self.inner.call(req))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_as_browsers_send_them() {
        let n = |s: &str| normalize_origin(s);
        assert_eq!(
            n("HTTPS://Evd.Example/").as_deref(),
            Some("https://evd.example")
        );
        assert_eq!(
            n("https://evd.example:443").as_deref(),
            Some("https://evd.example")
        );
        assert_eq!(
            n("http://localhost:80").as_deref(),
            Some("http://localhost")
        );
        assert_eq!(
            n("http://localhost:5173").as_deref(),
            Some("http://localhost:5173")
        );
        assert_eq!(n("http://[::1]:8080").as_deref(), Some("http://[::1]:8080"));
        assert_eq!(
            n("capacitor://localhost").as_deref(),
            Some("capacitor://localhost")
        );
        assert_eq!(n("*").as_deref(), Some("*"));
        for bad in [
            "null",
            "evd.example",
            "https://evd.example/app",
            "https://user@evd.example",
            "https://evd.example:0",
            "https://evd.example:99999",
            "https://",
            "1http://x",
            "https://evd example",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn allows_listed_origins_or_any() {
        let s = CorsSettings {
            allowed_origins: vec!["https://app.example".into()],
        };
        assert!(s.allows("https://app.example"));
        assert!(s.allows("https://APP.example:443"));
        assert!(!s.allows("http://app.example"));
        assert!(!s.allows("https://evil.example"));
        assert!(!s.allows("null"));
        assert!(!CorsSettings::default().allows("https://app.example"));
        let any = CorsSettings {
            allowed_origins: vec!["*".into()],
        };
        assert!(any.allows("https://evil.example") && any.allows("null"));
    }

    #[test]
    fn same_origin_matches_host_and_port_whatever_the_scheme() {
        assert!(is_same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(is_same_origin("https://evd.example", "evd.example"));
        assert!(is_same_origin("https://evd.example", "EVD.example:443"));
        assert!(is_same_origin(
            "http://evd.example:8080",
            "evd.example:8080"
        ));
        assert!(!is_same_origin(
            "http://evd.example:8081",
            "evd.example:8080"
        ));
        assert!(!is_same_origin("https://evil.example", "evd.example"));
        assert!(!is_same_origin("null", "evd.example"));
    }

    #[test]
    fn a_comma_separated_string_or_a_list_is_read_and_checked() {
        let s: CorsSettings = serde_json::from_value(serde_json::json!({
            "allowed_origins": " https://a.example/ , http://localhost:5173,"
        }))
        .unwrap();
        assert_eq!(
            s.allowed_origins,
            ["https://a.example", "http://localhost:5173"]
        );
        let s: CorsSettings =
            serde_json::from_value(serde_json::json!({"allowed_origins": ["*"]})).unwrap();
        assert!(s.allows_any());
        let err = serde_json::from_value::<CorsSettings>(
            serde_json::json!({"allowed_origins": "https://a.example/path"}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("https://a.example/path"), "{err}");
    }
}
