//! The `evd` binary itself: `serve` with SIGTERM, `token`, and configuration errors.

mod common;

use common::*;
use evd_protocol::Codec;
use evd_protocol::auth::{JwtSettings, Role, Tier};
use evd_protocol::event::Event;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn evd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_evd"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EVD_JWT_SECRET", SECRET)
        // Each run gets its own database, in memory unless a test names a file.
        .env("EVD_DATABASE_URL", "sqlite::memory:");
    c
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
    let jwt = JwtSettings {
        secret: Some(SECRET.into()),
        ..Default::default()
    };
    let claims = jwt.verifier().unwrap().verify(token).unwrap();
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
    let mut child = evd()
        .env("EVD_DRAIN_GRACE_MS", "300")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The banner names the bound address.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("banner");
        if let Some(rest) = line.strip_prefix("evd listening on ") {
            break rest.trim().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let jwt = JwtSettings {
        secret: Some(SECRET.into()),
        ..Default::default()
    };
    let claims = evd_protocol::auth::Claims::new("u1", "o1", Role::Organizer, now(), 600);
    let token = jwt.signer().unwrap().sign(&claims).unwrap();
    let mut c = Client::connect(&url, &token, Codec::Json).await;
    c.joined("event:E1").await;

    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    let (events, close) = c.events_until_close().await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Reconnect(_))),
        "{events:?}"
    );
    assert_eq!(u16::from(close.expect("close frame").code), 4001);
    drop(c);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits after the drain")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
