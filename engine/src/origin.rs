//! The WebSocket upgrade's `Origin` check: a browser page may open `/ws` only when it was served
//! by this server (its host and port are the request's `Host`) or its origin is listed in
//! `cors.allowed_origins` (or that lists `*`). Browsers always send `Origin` on an upgrade and
//! never let a page forge it; a request without one (a phone app, a server, the load harness) is
//! not a page's, and passes.

use axum::http::{HeaderMap, Uri, header};
use evd_api::cors::{CorsSettings, is_same_origin};

/// `Ok` when the upgrade may go on; otherwise the refused origin, for the refusal's message.
pub fn check(cors: &CorsSettings, headers: &HeaderMap, uri: &Uri) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let Ok(origin) = origin.to_str() else {
        return Err(String::from_utf8_lossy(origin.as_bytes()).into_owned());
    };
    // HTTP/1.1 names the host in `Host`, HTTP/2 in the request's authority.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    if cors.allows(origin) || host.is_some_and(|h| is_same_origin(origin, h)) {
        Ok(())
    } else {
        Err(origin.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
        }
        h
    }

    #[test]
    fn own_listed_or_absent_origins_pass_and_others_are_refused() {
        let uri = Uri::from_static("/ws");
        let none = CorsSettings::default();
        let listed = CorsSettings {
            allowed_origins: vec!["https://app.example".into()],
        };
        let host = "evd.example:8080";
        assert!(check(&none, &headers(None, host), &uri).is_ok());
        assert!(check(&none, &headers(Some("http://evd.example:8080"), host), &uri).is_ok());
        assert!(
            check(
                &none,
                &headers(Some("https://evd.example:8080"), host),
                &uri
            )
            .is_ok()
        );
        assert_eq!(
            check(&none, &headers(Some("https://app.example"), host), &uri),
            Err("https://app.example".to_owned())
        );
        assert!(check(&listed, &headers(Some("https://app.example"), host), &uri).is_ok());
        assert!(check(&listed, &headers(Some("https://evil.example"), host), &uri).is_err());
        assert!(check(&listed, &headers(Some("null"), host), &uri).is_err());
        let any = CorsSettings {
            allowed_origins: vec!["*".into()],
        };
        assert!(check(&any, &headers(Some("https://evil.example"), host), &uri).is_ok());
    }
}
