//! The Socket.IO drop-in (`/socket.io/`) against the `evd` binary cargo built, driven by the real
//! `socket.io-client` from npm: `npm test` in `clients/socketio-tests` (node's test runner) with
//! `EVD_BIN` pointing at the binary. The tests start their own `evd serve` on free ports with
//! temp SQLite databases. The two-node test runs over the Redis Cluster named by
//! `EVD_TEST_REDIS_CLUSTER` (inherited from this process), and is skipped without it unless
//! `EVD_REQUIRE_SERVICES=1`.
//!
//! Needs `node` (20+) on `PATH` and `clients/socketio-tests/node_modules`
//! (`scripts/socketio-tests.sh setup`). Without them the test prints `skipped: …` and passes,
//! unless `EVD_REQUIRE_SERVICES=1`, when that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("clients")
        .join("socketio-tests")
}

fn required() -> bool {
    std::env::var("EVD_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Why the tests cannot run here, if they cannot.
fn missing_prerequisite(dir: &Path) -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("`node` is not on PATH (the Socket.IO tests need Node 20+)".into()),
    }
    if !dir.join("node_modules").is_dir() {
        return Some(format!(
            "{} is missing (run scripts/socketio-tests.sh setup)",
            dir.join("node_modules").display()
        ));
    }
    None
}

fn npm_test(dir: &Path) -> Output {
    Command::new("npm")
        .arg("test")
        .current_dir(dir)
        .env("EVD_BIN", env!("CARGO_BIN_EXE_evd"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm test: {e}"))
}

#[test]
fn socketio_client_tests_pass_against_the_built_evd() {
    let dir = tests_dir();
    if let Some(why) = missing_prerequisite(&dir) {
        if required() {
            panic!("EVD_REQUIRE_SERVICES=1 but {why}");
        }
        eprintln!("skipped: {why}");
        return;
    }
    let out = npm_test(&dir);
    eprintln!(
        "---- npm test: {} ----\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the Socket.IO tests failed (node's output above)"
    );
}
