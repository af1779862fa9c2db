//! A connection never outlives its token: `TOKEN_EXPIRING` before `exp`, the close with 4501
//! once `exp` is past by `jwt.leeway_secs`, and `refresh`, which keeps the connection alive
//! with a new token of the same user and org.

mod common;

use common::*;
use evd_protocol::auth::{Claims, KeySpec, Role, Signer};
use evd_protocol::event::Event;
use evd_protocol::op::{Op, Refresh};
use evd_protocol::{Codec, ErrorCode};

/// Seconds of warning and leeway the servers here use: short, so a token lives a few seconds.
const WARNING_SECS: u64 = 1;
const LEEWAY_SECS: u64 = 1;
/// Lifetime of the tokens here. `exp` is whole seconds, so each lives 1 to 2 s.
const TTL_SECS: u64 = 2;

async fn server() -> TestServer {
    let mut s = settings();
    s.token_expiry_warning_secs = WARNING_SECS;
    s.api.jwt.leeway_secs = LEEWAY_SECS;
    TestServer::with(s).await
}

/// A token for `user` in `org` living [`TTL_SECS`], and its `exp`.
fn short_token(srv: &TestServer, user: &str, org: &str) -> (String, u64) {
    token_for(srv, user, org, TTL_SECS)
}

/// A token for `user` in `org` living `ttl` seconds, and its `exp`.
fn token_for(srv: &TestServer, user: &str, org: &str, ttl: u64) -> (String, u64) {
    let claims = Claims::new(user, org, Role::Organizer, now(), ttl);
    let signer = srv.node.settings.api.jwt.signer().unwrap();
    (signer.sign(&claims).unwrap(), claims.exp)
}

fn unix_ms() -> i64 {
    i64::try_from(now()).unwrap() * 1_000
}

async fn refresh(c: &mut Client, token: String) -> Event {
    let r = c.send(Op::Refresh(Refresh { token })).await;
    c.reply(r).await
}

/// The next `TOKEN_EXPIRING`, skipping other events.
async fn expiring(c: &mut Client) -> i64 {
    c.next_where(|e| match e {
        Event::TokenExpiring(t) => Some(t.expires_at),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn an_unrefreshed_connection_is_warned_then_closed_with_4501_after_the_leeway() {
    let srv = server().await;
    for codec in Codec::ALL {
        let (token, exp) = short_token(&srv, "u1", "o1");
        let mut c = Client::connect(&srv.url(), &token, codec).await;
        let (events, close) = c.events_until_close().await;
        let closed_at = unix_ms();
        let warnings: Vec<i64> = events
            .iter()
            .filter_map(|e| match e {
                Event::TokenExpiring(t) => Some(t.expires_at),
                _ => None,
            })
            .collect();
        assert_eq!(warnings, vec![exp as i64 * 1_000], "{codec}: {events:?}");
        let close = close.expect("a close frame");
        assert_eq!(u16::from(close.code), 4501, "{codec}");
        assert_eq!(close.reason.as_str(), "token_expired", "{codec}");
        assert!(
            closed_at >= exp as i64 * 1_000,
            "{codec}: closed before the token's exp"
        );
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn refresh_keeps_a_connection_open_past_several_token_lifetimes() {
    let srv = server().await;
    let (token, first_exp) = short_token(&srv, "u1", "o1");
    let mut c = Client::connect(&srv.url(), &token, Codec::MsgPack).await;
    let mut refreshes = 0;
    // Refresh on each warning until the first token is long past its exp and leeway.
    while now() <= first_exp + LEEWAY_SECS + TTL_SECS && refreshes < 20 {
        expiring(&mut c).await;
        let (token, exp) = short_token(&srv, "u1", "o1");
        match refresh(&mut c, token).await {
            Event::TokenRefreshed(t) => assert_eq!(t.expires_at, exp as i64 * 1_000),
            other => panic!("refresh: {other:?}"),
        }
        refreshes += 1;
    }
    assert!(refreshes >= 2, "{refreshes} refreshes");
    assert!(now() > first_exp + LEEWAY_SECS, "outlived the first token");
    assert!(matches!(c.ping().await, Event::Pong(_)), "still open");
    // Without another refresh, the last token ends it.
    let (_, close) = c.events_until_close().await;
    assert_eq!(u16::from(close.expect("close frame").code), 4501);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_refresh_with_another_users_or_orgs_or_a_bad_token_is_refused() {
    let srv = server().await;
    // Long enough for the refusals below to be answered before it ends.
    let (token, _) = token_for(&srv, "u1", "o1", 6);
    let mut c = Client::connect(&srv.url(), &token, Codec::Json).await;
    let refused = |e: Event, code: ErrorCode, text: &str| match e {
        Event::Error(err) => {
            assert_eq!(err.code, code, "{err:?}");
            assert!(err.message.contains(text), "{err:?}");
        }
        other => panic!("expected ERROR {code}, got {other:?}"),
    };
    let (other_user, _) = short_token(&srv, "u2", "o1");
    refused(
        refresh(&mut c, other_user).await,
        ErrorCode::Forbidden,
        "another user",
    );
    let (other_org, _) = short_token(&srv, "u1", "o2");
    refused(
        refresh(&mut c, other_org).await,
        ErrorCode::Forbidden,
        "another org",
    );
    let wrong_key = Signer::new(KeySpec::Hs256(b"some-other-secret-some-other-secret!"))
        .unwrap()
        .sign(&Claims::new("u1", "o1", Role::Organizer, now(), 3600))
        .unwrap();
    refused(
        refresh(&mut c, wrong_key).await,
        ErrorCode::Unauthorized,
        "signature",
    );
    let mut old = Claims::new("u1", "o1", Role::Organizer, now() - 7200, 60);
    old.iat = Some(now() - 7200);
    let expired = srv
        .node
        .settings
        .api
        .jwt
        .signer()
        .unwrap()
        .sign(&old)
        .unwrap();
    refused(
        refresh(&mut c, expired).await,
        ErrorCode::Unauthorized,
        "expired",
    );
    refused(
        refresh(&mut c, String::new()).await,
        ErrorCode::BadRequest,
        "token",
    );
    // Nothing was adopted: the connection still ends with its own token.
    let (_, close) = c.events_until_close().await;
    assert_eq!(u16::from(close.expect("close frame").code), 4501);
    srv.shutdown().await;
}
