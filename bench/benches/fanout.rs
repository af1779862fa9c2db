//! Cost per delivery of one event to every member of one room on a single node.
//!
//! - `hub_deliver`: the hub's fanout: encode once per codec, push the shared bytes to each
//!   member's queue.
//! - `deliver_and_pack`: the above plus what each member's writer does before the socket write:
//!   take from the queue and build the WebSocket frame.
//!
//! Throughput is reported in deliveries (members), so time per element is the cost of one
//! delivery.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use evd_engine::conn::Conn;
use evd_engine::conn::queue::QueueStats;
use evd_engine::conn::writer::{Packing, frames};
use evd_engine::hub::Hub;
use evd_engine::metrics::Metrics;
use evd_engine::room_key::RoomKey;
use evd_protocol::event::{ChatMessage, Event};
use evd_protocol::{Codec, RoomName};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MEMBERS: [usize; 2] = [1_000, 10_000];

fn room_of(n: usize, msgpack_share: usize) -> (Hub, RoomKey, Vec<Arc<Conn>>, Arc<QueueStats>) {
    let stats = Arc::new(QueueStats::default());
    let hub = Hub::new(8, Arc::clone(&stats), Metrics::new());
    let key = RoomKey::new("org", RoomName::parse("event:keynote").unwrap());
    let conns: Vec<_> = (0..n)
        .map(|i| {
            let codec = if msgpack_share > 0 && i % msgpack_share == 0 {
                Codec::MsgPack
            } else {
                Codec::Json
            };
            let c = Arc::new(Conn::new(
                i as u64,
                format!("user-{i}").into(),
                codec,
                1 << 20,
            ));
            hub.join(&key, &c);
            hub.activate(&key, &c, None, 0);
            c
        })
        .collect();
    (hub, key, conns, stats)
}

fn event(offset: u64) -> Event {
    Event::MessageReceived(ChatMessage {
        room: "event:keynote".into(),
        offset,
        id: "0193a0b6-7c1e-7d2a-9f3b-3c1d2e4f5a6b".into(),
        user: "speaker-1".into(),
        text: "Welcome everyone! Questions go in the Q&A tab; polls open after the break.".into(),
        ts: 1_764_000_000_000,
    })
}

fn drain(conns: &[Arc<Conn>], stats: &QueueStats) {
    for c in conns {
        black_box(c.queue.take(usize::MAX, stats));
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    g.measurement_time(Duration::from_secs(8));
    for n in MEMBERS {
        g.throughput(Throughput::Elements(n as u64));
        for (label, msgpack_share) in [("json", 0), ("mixed", 4)] {
            let (hub, key, conns, stats) = room_of(n, msgpack_share);
            g.bench_with_input(
                BenchmarkId::new(format!("hub_deliver/{label}"), n),
                &n,
                |b, _| {
                    let mut offset = 0;
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            offset += 1;
                            let ev = event(offset);
                            let t = Instant::now();
                            hub.deliver(&key, &ev, Some(offset));
                            total += t.elapsed();
                            drain(&conns, &stats);
                        }
                        total
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new(format!("deliver_and_pack/{label}"), n),
                &n,
                |b, _| {
                    let mut offset = 0;
                    // One reused batch buffer per member, as each writer task keeps its own.
                    let mut batches: Vec<Vec<_>> = conns.iter().map(|_| Vec::new()).collect();
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            offset += 1;
                            let ev = event(offset);
                            let t = Instant::now();
                            hub.deliver(&key, &ev, Some(offset));
                            for (conn, batch) in conns.iter().zip(batches.iter_mut()) {
                                conn.queue.take_into(256 * 1024, &stats, batch);
                                for frame in frames(batch, conn.codec, Packing::Batch, 64 * 1024) {
                                    black_box(frame);
                                }
                            }
                            total += t.elapsed();
                        }
                        total
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
