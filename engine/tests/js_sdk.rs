//! The TypeScript client SDK (`clients/js`, `@evd/client`) against the `evd` binary cargo built:
//! `npm run build`, then `npm test` (node's test runner) with `EVD_BIN` pointing at the binary.
//! The SDK's tests start their own `evd serve` on free ports with temp SQLite databases, and cover
//! chat in both codecs, reconnect with recovery through a fault-injecting TCP proxy, drain and
//! restart, exactly-once sends across a reconnect, token refresh without loops, and
//! `recovered:false`.
//!
//! Needs `node` (20+) on `PATH` and `clients/js/node_modules` (`scripts/clients.sh setup`).
//! Without them the test prints `skipped: …` and passes, unless `EVD_REQUIRE_SERVICES=1`, when
//! that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("clients")
        .join("js")
}

fn required() -> bool {
    std::env::var("EVD_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Why the SDK tests cannot run here, if they cannot.
fn missing_prerequisite(dir: &Path) -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("`node` is not on PATH (the SDK tests need Node 20+)".into()),
    }
    if !dir.join("node_modules").is_dir() {
        return Some(format!(
            "{} is missing (run scripts/clients.sh setup)",
            dir.join("node_modules").display()
        ));
    }
    None
}

fn npm(dir: &Path, args: &[&str]) -> Output {
    Command::new("npm")
        .args(args)
        .current_dir(dir)
        .env("EVD_BIN", env!("CARGO_BIN_EXE_evd"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm {args:?}: {e}"))
}

fn show(what: &str, out: &Output) {
    eprintln!(
        "---- {what}: {} ----\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn js_sdk_tests_pass_against_the_built_evd() {
    let dir = sdk_dir();
    if let Some(why) = missing_prerequisite(&dir) {
        if required() {
            panic!("EVD_REQUIRE_SERVICES=1 but {why}");
        }
        eprintln!("skipped: {why}");
        return;
    }
    let build = npm(&dir, &["run", "build"]);
    show("npm run build", &build);
    assert!(build.status.success(), "npm run build failed");
    let test = npm(&dir, &["test"]);
    show("npm test", &test);
    assert!(
        test.status.success(),
        "the SDK tests failed (node's output above)"
    );
}
