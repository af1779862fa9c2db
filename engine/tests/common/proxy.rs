//! A fault-injection TCP proxy for tests: put it between the engine and Redis or PostgreSQL, then
//! switch a [`Fault`] on and off while the test runs (added latency, a stall, resets, a slow
//! trickle), as Toxiproxy would.
//!
//! Bounded: each direction of each connection holds at most [`CHUNKS_IN_FLIGHT`] chunks of
//! [`CHUNK`] bytes; while stalled it stops reading, so the kernel's buffers fill and the sender
//! blocks. [`FaultProxy::stop`] (or a drop) ends the listener and every connection.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// The most bytes read from one side in one go.
pub const CHUNK: usize = 16 * 1024;

/// Chunks read but not yet written, per direction: what latency can hold back.
pub const CHUNKS_IN_FLIGHT: usize = 16;

/// What the proxy does to the bytes it forwards, switchable at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards as it reads.
    None,
    /// Holds each chunk for this long before forwarding it (each direction).
    Latency(Duration),
    /// Accepts connections but forwards nothing either way: every request goes unanswered.
    Stall,
    /// Resets (RST) every open connection, and every new one at once, while on.
    Reset,
    /// Forwards `bytes` at a time, one piece every `every`.
    Trickle { bytes: usize, every: Duration },
}

/// A running proxy from [`FaultProxy::addr`] to an upstream address.
pub struct FaultProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    open: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (fault, rx) = watch::channel(Fault::None);
        let open = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(listener, upstream, rx, Arc::clone(&open)));
        FaultProxy {
            addr,
            fault,
            open,
            task: Some(task),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches to `fault` (or back to [`Fault::None`]); takes effect at once on every
    /// connection.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Connections open through the proxy now.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Stops listening and closes every connection; returns once they are gone.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Accepts until aborted; the connections live in a set that dies with this task.
async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Receiver<Fault>,
    open: Arc<AtomicUsize>,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // Reap finished connections so the set stays as small as what is open.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Ok((client, _)) = accepted else { continue };
        if *fault.borrow() == Fault::Reset {
            reset(client);
            continue;
        }
        let (fault, open) = (fault.clone(), Arc::clone(&open));
        conns.spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                reset(client);
                return;
            };
            open.fetch_add(1, Ordering::Relaxed);
            relay(client, server, fault).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Closes `s` with a reset rather than a FIN.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

/// Forwards both ways until either side is done or a [`Fault::Reset`], which resets both.
async fn relay(mut client: TcpStream, mut server: TcpStream, fault: watch::Receiver<Fault>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let resetting = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let mut on_reset = fault.clone();
        tokio::select! {
            _ = async {
                tokio::join!(
                    pump(cr, sw, fault.clone()),
                    pump(sr, cw, fault.clone()),
                )
            } => false,
            _ = on_reset.wait_for(|f| *f == Fault::Reset) => true,
        }
    };
    if resetting {
        reset(client);
        reset(server);
    }
}

/// One direction: reads chunks into a bounded queue and writes them out as the fault allows.
async fn pump(mut from: ReadHalf<'_>, mut to: WriteHalf<'_>, fault: watch::Receiver<Fault>) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let mut read_fault = fault.clone();
    let reader = async move {
        let mut buf = vec![0; CHUNK];
        loop {
            if unstalled(&mut read_fault).await.is_none() {
                return;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let hold = match *read_fault.borrow() {
                Fault::Latency(d) => d,
                _ => Duration::ZERO,
            };
            if tx
                .send((Instant::now() + hold, buf[..n].to_vec()))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let mut write_fault = fault;
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let Some(now) = unstalled(&mut write_fault).await else {
                    return;
                };
                let (piece, pause) = match now {
                    Fault::Trickle { bytes, every } => (bytes.clamp(1, rest.len()), every),
                    _ => (rest.len(), Duration::ZERO),
                };
                if to.write_all(&rest[..piece]).await.is_err() {
                    return;
                }
                rest = &rest[piece..];
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }
        // The reader saw the end: pass the FIN on.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Waits while the proxy is stalled; the fault in force after, or `None` once the proxy is gone.
async fn unstalled(fault: &mut watch::Receiver<Fault>) -> Option<Fault> {
    fault
        .wait_for(|f| *f != Fault::Stall)
        .await
        .ok()
        .map(|f| *f)
}
