//! The page `evd serve` serves at `/` (`engine/assets/`, built from `clients/page/`), driven in
//! headless Chromium against the `evd` binary cargo built: `npm run test:browser` in
//! `clients/js` (node's test runner over `clients/js/test/browser/`, with playwright-core).
//!
//! Those tests start their own `evd serve` on free ports with temp SQLite databases and cover, with
//! an organizer and an attendee in two browser contexts: presence both ways, chat both ways, a poll
//! whose tally moves on both screens, a hidden question disappearing, the waitlist of a full
//! session ending in an accepted offer and a ticket, and a page on another origin allowed or
//! refused by `cors.allowed_origins` (REST and WebSocket); and the admin view at `/admin`
//! (`admin.test.mjs`): an owner's numbers following SDK clients that join and chat, an
//! organizer refused on the page and at `/admin/stats`. Screenshots go to
//! `target/browser-screenshots/`.
//!
//! Needs `node` (20+) on `PATH`, `clients/js/node_modules` (`scripts/clients.sh setup`) and
//! Chromium (`EVD_CHROMIUM`, default `/usr/bin/chromium`). Without them the test prints
//! `skipped: …` and passes, unless `EVD_REQUIRE_SERVICES=1`, when that is a failure.
//!
//! The binary embeds `engine/assets/app.js` as it was when cargo built it: after changing
//! `clients/page/`, run `npm run build` in `clients/js` before `cargo test`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("clients")
        .join("js")
}

fn chromium() -> PathBuf {
    std::env::var_os("EVD_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn required() -> bool {
    std::env::var("EVD_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Why the browser tests cannot run here, if they cannot.
fn missing_prerequisite(dir: &Path) -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("`node` is not on PATH (the browser tests need Node 20+)".into()),
    }
    let playwright = dir.join("node_modules").join("playwright-core");
    if !playwright.is_dir() {
        return Some(format!(
            "{} is missing (run scripts/clients.sh setup)",
            playwright.display()
        ));
    }
    let chromium = chromium();
    if !chromium.is_file() {
        return Some(format!(
            "no Chromium at {} (set EVD_CHROMIUM, or run scripts/clients.sh setup)",
            chromium.display()
        ));
    }
    None
}

#[test]
fn the_page_works_in_a_browser_against_the_built_evd() {
    let dir = js_dir();
    if let Some(why) = missing_prerequisite(&dir) {
        if required() {
            panic!("EVD_REQUIRE_SERVICES=1 but {why}");
        }
        eprintln!("skipped: {why}");
        return;
    }
    let out = Command::new("npm")
        .args(["run", "test:browser"])
        .current_dir(&dir)
        .env("EVD_BIN", env!("CARGO_BIN_EXE_evd"))
        .env("EVD_CHROMIUM", chromium())
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm run test:browser: {e}"));
    eprintln!(
        "---- npm run test:browser: {} ----\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser tests failed (node's output above)"
    );
}
