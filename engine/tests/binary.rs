//! The `evd` binary itself: `serve` with SIGTERM, `token`, and configuration errors.

mod common;

use common::*;
use evd_protocol::Codec;
use evd_protocol::auth::{Role, Tier};
use evd_protocol::event::Event;
use tokio::process::Command;

/// `evd` over a database of its own, in memory unless a test names a file.
fn evd() -> Command {
    evd_command("sqlite::memory:")
}

#[tokio::test]
async fn token_prints_a_verifiable_token_and_nothing_else() {
    let out = evd()
        .args([
            "token",
            "--user",
            "u9",
            "--org",
            "o9",
            "--role",
            "organizer",
            "--tier",
            "vip",
        ])
        .args(["--rooms", "event:E1,session:S1", "--ttl", "2h"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "only the token: {stdout:?}");
    let claims = jwt().verifier().unwrap().verify(token).unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.org.as_str(), claims.role),
        ("u9", "o9", Role::Organizer)
    );
    assert_eq!(claims.tier, Some(Tier::Vip));
    assert_eq!(
        claims.rooms,
        Some(vec!["event:E1".to_string(), "session:S1".to_string()])
    );
    assert!(claims.exp >= now() + 7100 && claims.exp <= now() + 7300);

    let bad = evd()
        .args(["token", "--user", "u", "--org", "o", "--role", "admin"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role `admin`"));
}

#[tokio::test]
async fn bad_configuration_exits_with_a_clear_message() {
    let out = evd()
        .env("EVD_LIMITS_OPS_PER_SEC", "0")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("limits.ops_per_sec") && err.contains("must be positive"),
        "{err}"
    );
    let out = evd()
        .env("EVD_JWT_SECRET", "short")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32 bytes"));
}

#[tokio::test]
async fn serve_drains_on_sigterm() {
    let mut cmd = evd();
    cmd.env("EVD_DRAIN_GRACE_MS", "300")
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let mut evd = Evd::spawn(cmd, None).await;
    let claims = evd_protocol::auth::Claims::new("u1", "o1", Role::Organizer, now(), 600);
    let token = jwt().signer().unwrap().sign(&claims).unwrap();
    let mut c = Client::connect(&evd.url, &token, Codec::Json).await;
    c.joined("event:E1").await;

    assert!(evd.signal("TERM").await);
    let (events, close) = c.events_until_close().await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Reconnect(_))),
        "{events:?}"
    );
    assert_eq!(u16::from(close.expect("close frame").code), 4001);
    drop(c);
    let status = tokio::time::timeout(PATIENCE, evd.child.wait())
        .await
        .expect("exits after the drain")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
