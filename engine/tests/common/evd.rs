//! The `evd` binary as a child process: started with a clean environment, found through the
//! startup line that names its address, and signalled like a service manager would.
#![allow(dead_code, unreachable_pub)]

use super::{PATIENCE, Remote, SECRET, jwt};
use std::net::SocketAddr;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `evd` with nothing of the test's environment but `PATH`, signing with [`SECRET`], over the
/// store at `db`. Add the subcommand and any other settings, then [`Evd::spawn`] it.
pub fn evd_command(db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_evd"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EVD_JWT_SECRET", SECRET)
        .env("EVD_DATABASE_URL", db);
    c
}

/// A running `evd`, killed when dropped.
pub struct Evd {
    pub child: Child,
    /// The WebSocket URL from the startup line, `ws://ADDR/ws`.
    pub url: String,
}

impl Evd {
    /// Spawns `cmd` and reads its stderr up to the startup line (`evd listening on …`). With a
    /// `label`, every stderr line but that one is echoed as `[label] …`; without, they are read
    /// and dropped.
    pub async fn spawn(mut cmd: Command, label: Option<&str>) -> Evd {
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let echo = label.map(str::to_owned);
        let url = loop {
            let line = tokio::time::timeout(PATIENCE, lines.next_line())
                .await
                .expect("evd starts within the patience limit")
                .unwrap()
                .unwrap_or_else(|| panic!("evd {} exited before listening", label.unwrap_or("")));
            if let Some(rest) = line.strip_prefix("evd listening on ") {
                break rest.trim().to_owned();
            }
            if let Some(label) = &echo {
                eprintln!("[{label}] {line}");
            }
        };
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(label) = &echo {
                    eprintln!("[{label}] {line}");
                }
            }
        });
        Evd { child, url }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.url
            .strip_prefix("ws://")
            .and_then(|rest| rest.strip_suffix("/ws"))
            .unwrap_or_else(|| panic!("not a ws://ADDR/ws URL: {}", self.url))
            .parse()
            .unwrap()
    }

    /// Its REST API, with tokens signed as it verifies them.
    pub fn remote(&self) -> Remote {
        Remote {
            addr: self.addr(),
            signer: jwt().signer().unwrap(),
        }
    }

    /// Its Prometheus metrics, as text.
    pub async fn metrics(&self) -> String {
        let http = self
            .url
            .replace("ws://", "http://")
            .replace("/ws", "/metrics");
        reqwest::get(http).await.unwrap().text().await.unwrap()
    }

    /// SIGKILL, and waits for it to go: no drain, no goodbye to anyone.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }

    /// Sends it `signal` (`TERM`, `KILL`, …); whether that was delivered.
    pub async fn signal(&self, signal: &str) -> bool {
        kill(&self.child.id().expect("still running").to_string(), signal).await
    }
}

/// Sends `signal` (`TERM`, `KILL`, `9`, …) to process `pid` with kill(1); whether it was delivered.
pub async fn kill(pid: &str, signal: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{signal}"), pid])
        .status()
        .await
        .unwrap()
        .success()
}
