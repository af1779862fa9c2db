//! The shutdown signal a process waits for: Ctrl-C, or SIGTERM on Unix.

/// Resolves when the process is asked to stop: on Ctrl-C (SIGINT) or, on Unix, SIGTERM. Where
/// SIGTERM cannot be watched, only Ctrl-C counts.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
