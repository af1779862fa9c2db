//! `loopback-floor`: what one delivery costs this machine's kernel before any server code runs.
//!
//! It opens `--conns` loopback TCP connections between two processes (one process may not hold
//! both ends of 10,000 connections here), then sends `--rounds` messages down every connection
//! at `--rate` rounds per second, as a server broadcasting to one room does. Each connection gets
//! one plain `write()` per pass; rounds that fell due while a sender was still busy go out
//! together in one write, as a server's send queue coalesces them. There is no framing, no queue
//! and no task scheduler, only plain threads, so this is the least any server on this machine
//! can pay per delivery, and the soonest one broadcast can reach everyone while the receivers
//! share the cores, as `evd-loadtest`'s do.
//!
//! - **CPU per delivery**: the sending threads' own CPU time over the rounds, divided by the
//!   deliveries (and per write). On loopback the kernel runs the receiving socket's TCP
//!   processing, and the wake-up of the thread waiting on it, inside the sender's `write()`, so
//!   this is the figure to hold against a server's CPU per delivery sampled from `/proc`.
//! - **Latency**: receive time minus the round's intended send time (open loop), over every
//!   delivery, in an HdrHistogram, as `evd-loadtest` measures it.
//! - **Receive CPU**: the receiving threads' CPU per message (epoll, one `read()` per ready socket).
//!
//! ```text
//! cargo run --release -p evd-bench --bin loopback-floor -- --conns 10000 --rate 1 --rounds 10
//! ```

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::time::{ClockId, clock_gettime};
use serde_json::json;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Parser, Clone)]
#[command(about = "The kernel's floor: one plain send() per delivery over loopback TCP")]
struct Args {
    /// Connections, each receiving every round.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Rounds (messages to every connection) per second.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Rounds to send.
    #[arg(long, default_value_t = 10)]
    rounds: u32,
    /// Bytes per message (about one evd chat frame; at least 8, for the stamp).
    #[arg(long, default_value_t = 200)]
    payload: usize,
    /// Sending threads (the server's workers).
    #[arg(long, default_value_t = 2)]
    senders: usize,
    /// Receiving threads, in a second process (the load generator's).
    #[arg(long, default_value_t = 2)]
    receivers: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Internal: run as the receiving process, connecting to this port.
    #[arg(long, hide = true)]
    receive_from: Option<u16>,
}

/// How long the receiver waits for the last messages once the sender is done, before it
/// reports what it has (a loss); a complete run reports as soon as the last one arrives.
const DRAIN: Duration = Duration::from_secs(2);
/// Longest latency recorded, µs.
const MAX_LATENCY_US: u64 = 60_000_000;

fn clock_ns(id: ClockId) -> u64 {
    let t = clock_gettime(id).unwrap_or_else(|e| panic!("clock_gettime({id}): {e}"));
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// CLOCK_MONOTONIC is one clock for both processes on one machine.
fn mono_ns() -> u64 {
    clock_ns(ClockId::CLOCK_MONOTONIC)
}

fn thread_cpu_ns() -> u64 {
    clock_ns(ClockId::CLOCK_THREAD_CPUTIME_ID)
}

fn sleep_until_ns(at: u64) {
    let now = mono_ns();
    if at > now {
        std::thread::sleep(Duration::from_nanos(at - now));
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.payload < 8 || args.conns == 0 || args.senders == 0 || args.receivers == 0 {
        bail!("--payload must be at least 8, and --conns, --senders and --receivers at least 1");
    }
    if args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    match args.receive_from {
        Some(port) => receive(&args, port),
        None => send(&args),
    }
}

/// What one sending thread measured.
struct SendReport {
    deliveries: u64,
    writes: u64,
    cpu_ns: u64,
    /// Per round: from the round's due time to this thread's last send.
    fanout_ns: Vec<u64>,
}

/// The coordinating, sending side: accepts the receiver's connections, then sends the rounds.
fn send(args: &Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let port = listener.local_addr()?.port();
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--conns",
            &args.conns.to_string(),
            "--payload",
            &args.payload.to_string(),
            "--rounds",
            &args.rounds.to_string(),
            "--receivers",
            &args.receivers.to_string(),
            "--receive-from",
            &port.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("start the receiving process")?;
    let result = (|| {
        let mut socks = Vec::with_capacity(args.conns);
        while socks.len() < args.conns {
            let (s, _) = listener.accept().context("accept")?;
            s.set_nodelay(true)?;
            socks.push(s);
            if !args.json && socks.len() % 2_000 == 0 {
                eprintln!("connected {}/{}", socks.len(), args.conns);
            }
        }
        let mut lines = BufReader::new(child.stdout.take().context("receiver stdout")?).lines();
        match lines.next().transpose()? {
            Some(l) if l == "ready" => {}
            other => bail!("the receiver did not get ready: {other:?}"),
        }
        let period_ns = (1e9 / args.rate) as u64;
        let start = mono_ns() + 200_000_000;
        let mut shares: Vec<Vec<TcpStream>> = (0..args.senders).map(|_| Vec::new()).collect();
        for (i, s) in socks.into_iter().enumerate() {
            shares[i % args.senders].push(s);
        }
        if !args.json {
            eprintln!(
                "sending {} rounds to {} connections at {}/s",
                args.rounds, args.conns, args.rate
            );
        }
        let threads: Vec<_> = shares
            .into_iter()
            .map(|mut share| {
                let (rounds, payload) = (args.rounds, args.payload);
                // The thread hands its sockets back: closing them before the receiver is told the
                // run is over would read as a lost connection.
                std::thread::spawn(move || -> std::io::Result<(SendReport, Vec<TcpStream>)> {
                    let mut buf = Vec::new();
                    let mut report = SendReport {
                        deliveries: 0,
                        writes: 0,
                        cpu_ns: 0,
                        fanout_ns: Vec::new(),
                    };
                    let mut next = 0u64;
                    while next < u64::from(rounds) {
                        sleep_until_ns(start + next * period_ns);
                        // Every round due by now goes out in one write per connection, as a
                        // server's queue coalesces the messages that waited for its writer.
                        let now = mono_ns();
                        let first = next;
                        buf.clear();
                        while next < u64::from(rounds) && start + next * period_ns <= now {
                            let at = buf.len();
                            buf.resize(at + payload, 0x2a);
                            buf[at..at + 8]
                                .copy_from_slice(&(start + next * period_ns).to_le_bytes());
                            next += 1;
                        }
                        let cpu0 = thread_cpu_ns();
                        for s in &mut share {
                            s.write_all(&buf)?;
                        }
                        report.cpu_ns += thread_cpu_ns() - cpu0;
                        let done = mono_ns();
                        for k in first..next {
                            report.fanout_ns.push(done - (start + k * period_ns));
                        }
                        report.writes += share.len() as u64;
                        report.deliveries += share.len() as u64 * (next - first);
                    }
                    Ok((report, share))
                })
            })
            .collect();
        let mut reports = Vec::new();
        let mut open = Vec::new();
        for t in threads {
            let (report, share) = t
                .join()
                .map_err(|_| anyhow::anyhow!("a sender panicked"))??;
            reports.push(report);
            open.push(share);
        }
        let mut stdin = child.stdin.take().context("receiver stdin")?;
        writeln!(stdin, "sent")?;
        let line = lines
            .next()
            .transpose()?
            .context("the receiver sent no report")?;
        let received: serde_json::Value = serde_json::from_str(&line).context("receiver report")?;
        drop(open);
        Ok((reports, received))
    })();
    let (reports, received) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    child.wait()?;

    let sends: u64 = reports.iter().map(|r| r.deliveries).sum();
    let writes: u64 = reports.iter().map(|r| r.writes).sum();
    let cpu_ns: u64 = reports.iter().map(|r| r.cpu_ns).sum();
    // A round is over when its slowest sender is done.
    let mut fanout = histogram();
    for k in 0..args.rounds as usize {
        let slowest = reports.iter().map(|r| r.fanout_ns[k]).max().unwrap_or(0);
        fanout.saturating_record((slowest / 1_000).max(1));
    }
    let expected = sends;
    let got = received["received"].as_u64().unwrap_or(0);
    let out = json!({
        "conns": args.conns,
        "rate": args.rate,
        "rounds": args.rounds,
        "payload": args.payload,
        "senders": args.senders,
        "receivers": args.receivers,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "deliveries": sends,
        "writes": writes,
        "received": got,
        "delivery_ratio": if expected == 0 { 0.0 } else { got as f64 / expected as f64 },
        "cpu_per_delivery_us": cpu_ns as f64 / 1e3 / sends.max(1) as f64,
        "cpu_per_write_us": cpu_ns as f64 / 1e3 / writes.max(1) as f64,
        "receive_cpu_per_message_us": received["cpu_per_message_us"],
        "fanout_ms": {
            "p50": fanout.value_at_quantile(0.5) as f64 / 1e3,
            "max": fanout.max() as f64 / 1e3,
        },
        "latency_ms": received["latency_ms"],
    });
    if args.json {
        writeln!(std::io::stdout(), "{out}")?;
    } else {
        let l = &out["latency_ms"];
        writeln!(
            std::io::stdout(),
            "{} connections, {} rounds at {}/s, {} B, {} sending / {} receiving threads\n\
             delivered {} of {} (ratio {:.4})\n\
             CPU per delivery      {:.2} µs, per write {:.2} µs (sending threads, kernel included)\n\
             CPU per receive       {:.2} µs (receiving threads)\n\
             one round, all sent   p50 {} ms, max {} ms\n\
             latency               p50 {} ms, p99 {} ms, max {} ms",
            args.conns,
            args.rounds,
            args.rate,
            args.payload,
            args.senders,
            args.receivers,
            got,
            expected,
            out["delivery_ratio"].as_f64().unwrap_or(0.0),
            out["cpu_per_delivery_us"].as_f64().unwrap_or(0.0),
            out["cpu_per_write_us"].as_f64().unwrap_or(0.0),
            out["receive_cpu_per_message_us"].as_f64().unwrap_or(0.0),
            out["fanout_ms"]["p50"],
            out["fanout_ms"]["max"],
            l["p50"],
            l["p99"],
            l["max"],
        )?;
    }
    if got != expected {
        bail!("{} of {expected} messages arrived", got);
    }
    Ok(())
}

/// One connection's bytes between reads: a message may arrive split.
struct Conn {
    stream: TcpStream,
    partial: Vec<u8>,
}

/// What one receiving thread measured.
struct ReceiveReport {
    received: u64,
    cpu_ns: u64,
    latency: Histogram<u64>,
}

/// The receiving process: connects, then reads until every message is in, or until
/// [`DRAIN`] after the sender says it is done.
fn receive(args: &Args, port: u16) -> anyhow::Result<()> {
    let mut shares: Vec<Vec<Conn>> = (0..args.receivers).map(|_| Vec::new()).collect();
    for i in 0..args.conns {
        let stream = TcpStream::connect(("127.0.0.1", port)).context("connect")?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        shares[i % args.receivers].push(Conn {
            stream,
            partial: Vec::new(),
        });
    }
    // CLOCK_MONOTONIC ns after which a thread stops waiting; 0 while the sender is still busy.
    let give_up_at = Arc::new(AtomicU64::new(0));
    let (payload, rounds) = (args.payload, u64::from(args.rounds));
    let threads: Vec<_> = shares
        .into_iter()
        .map(|mut conns| {
            let give_up_at = Arc::clone(&give_up_at);
            std::thread::spawn(move || -> anyhow::Result<ReceiveReport> {
                let epoll = Epoll::new(EpollCreateFlags::empty())?;
                for (i, c) in conns.iter().enumerate() {
                    epoll.add(
                        c.stream.as_fd(),
                        EpollEvent::new(EpollFlags::EPOLLIN, i as u64),
                    )?;
                }
                let mut events = vec![EpollEvent::empty(); 1024];
                let mut buf = vec![0u8; 64 * 1024];
                let mut report = ReceiveReport {
                    received: 0,
                    cpu_ns: 0,
                    latency: histogram(),
                };
                let expected = conns.len() as u64 * rounds;
                let cpu0 = thread_cpu_ns();
                while report.received < expected {
                    let deadline = give_up_at.load(Ordering::Relaxed);
                    if deadline != 0 && mono_ns() > deadline {
                        break;
                    }
                    let n = epoll.wait(&mut events, EpollTimeout::from(100u8))?;
                    for ev in &events[..n] {
                        let c = &mut conns[ev.data() as usize];
                        let got = match c.stream.read(&mut buf) {
                            Ok(0) => bail!("a connection closed"),
                            Ok(got) => got,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                            Err(e) => return Err(e.into()),
                        };
                        let now = mono_ns();
                        let mut record = |m: &[u8]| -> anyhow::Result<()> {
                            let due = u64::from_le_bytes(m[..8].try_into()?);
                            report
                                .latency
                                .saturating_record((now.saturating_sub(due) / 1_000).max(1));
                            report.received += 1;
                            Ok(())
                        };
                        let mut data = &buf[..got];
                        // Complete a message split over reads first.
                        if !c.partial.is_empty() {
                            let need = (payload - c.partial.len()).min(data.len());
                            c.partial.extend_from_slice(&data[..need]);
                            data = &data[need..];
                            if c.partial.len() == payload {
                                record(&c.partial)?;
                                c.partial.clear();
                            }
                        }
                        let mut chunks = data.chunks_exact(payload);
                        for m in &mut chunks {
                            record(m)?;
                        }
                        c.partial.extend_from_slice(chunks.remainder());
                    }
                }
                report.cpu_ns = thread_cpu_ns() - cpu0;
                Ok(report)
            })
        })
        .collect();
    writeln!(std::io::stdout(), "ready")?;
    std::io::stdout().flush()?;
    // The coordinator writes a line when its last round is sent.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    give_up_at.store(mono_ns() + DRAIN.as_nanos() as u64, Ordering::Relaxed);
    let mut latency = histogram();
    let (mut received, mut cpu_ns) = (0u64, 0u64);
    for t in threads {
        let r = t
            .join()
            .map_err(|_| anyhow::anyhow!("a receiver panicked"))??;
        latency.add(&r.latency)?;
        received += r.received;
        cpu_ns += r.cpu_ns;
    }
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1e3;
    writeln!(
        std::io::stdout(),
        "{}",
        json!({
            "received": received,
            "cpu_per_message_us": cpu_ns as f64 / 1e3 / received.max(1) as f64,
            "latency_ms": {
                "p50": ms(0.5), "p95": ms(0.95), "p99": ms(0.99), "p999": ms(0.999),
                "max": latency.max() as f64 / 1e3,
            },
        })
    )?;
    Ok(())
}
