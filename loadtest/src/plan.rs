//! The command line, and how a run is split into worker plans.

use crate::wire::Target;
use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Scenario {
    /// N connections, each joined to a room of `--room-size`; nothing is published.
    Idle,
    /// N members in one room; `--publishers` publishers at `--rate` messages per second each.
    Broadcast,
    /// N clients in rooms of `--room-size`; `--publishers` publishers at `--rate` each, every
    /// publisher cycling over its share of the rooms.
    Rooms,
    /// Rooms traffic plus presence churn: each client leaves its room and joins again with
    /// `recover` at random times, `--churn` times per second on average. With `--api`, every
    /// client also votes once in its room's poll at a random time of the run.
    Chat,
    /// Rooms traffic, and halfway through every client drops its connection at once and
    /// reconnects with `recover` (evd) or a plain rejoin (Socket.IO).
    ReconnectStorm,
    /// N clients in rooms of `--room-size`, each with a poll (needs `--api`); every client votes
    /// once at a random instant of the run's first second. Publishers, if any, add chat.
    PollBurst,
}

/// Wire codec for evd targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CodecArg {
    Json,
    Msgpack,
}

impl CodecArg {
    pub(crate) fn codec(self) -> evd_protocol::Codec {
        match self {
            CodecArg::Json => evd_protocol::Codec::Json,
            CodecArg::Msgpack => evd_protocol::Codec::MsgPack,
        }
    }
}

/// The window in which every client of `poll-burst` votes.
pub(crate) const POLL_BURST_WINDOW: Duration = Duration::from_secs(1);

/// Most connections one worker holds: a process may open 20,000 files here, and a worker needs
/// a few for itself.
pub(crate) const MAX_PER_WORKER: usize = 18_000;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "evd-loadtest",
    about = "Load harness for evd and Socket.IO servers: connections, open-loop publishers, delivery latency without coordinated omission",
    after_help = "Examples:\n  evd-loadtest broadcast --connections 10000 --rate 10 --duration 30 --server-pid $(pgrep -n evd)\n  evd-loadtest poll-burst --connections 5000 --publishers 0 --api http://127.0.0.1:8080 --targets ws://127.0.0.1:8080"
)]
pub(crate) struct Args {
    /// What the clients do.
    #[arg(value_enum)]
    pub(crate) scenario: Scenario,
    /// Server base URLs (`ws://host:port` or `http://…`); clients are spread over them in turn.
    /// Repeat or comma-separate for several engine nodes.
    #[arg(
        long = "targets",
        alias = "target-url",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080"
    )]
    pub(crate) targets: Vec<String>,
    /// Which server protocol to speak.
    #[arg(long, value_enum, default_value = "evd")]
    pub(crate) target: Target,
    /// Client connections (publishers come on top).
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub(crate) connections: usize,
    /// New connections per second, over all workers.
    #[arg(long, default_value_t = 2000.0)]
    pub(crate) ramp: f64,
    /// Measurement time, seconds (after every connection is up).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Time after the last publish to wait for deliveries, seconds.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) drain: f64,
    /// Messages per second per publisher.
    #[arg(long, short = 'r', default_value_t = 1.0)]
    pub(crate) rate: f64,
    /// Publishers (separate connections, not room members).
    #[arg(long, short = 'p', default_value_t = 1)]
    pub(crate) publishers: usize,
    /// Message text size in bytes (the stamp is padded to this).
    #[arg(long, default_value_t = 64)]
    pub(crate) payload: usize,
    /// Members per room (rooms, chat, idle, reconnect-storm; broadcast uses one room).
    #[arg(long, default_value_t = 10)]
    pub(crate) room_size: usize,
    /// Leaves and rejoins per client per second, on average (chat): each client waits an
    /// exponentially distributed time with mean 1/churn seconds between two.
    #[arg(long, default_value_t = 0.01)]
    pub(crate) churn: f64,
    /// Fire every publisher's message k at the same instant (start + k/rate), the bursty worst
    /// case. By default publisher p of P is offset by p/P of the interval, a steady load.
    #[arg(long)]
    pub(crate) sync_publishers: bool,
    /// The engine's REST base URL (e.g. http://127.0.0.1:8080; paths under /api/v1). Before the
    /// run the coordinator creates a fresh org, events, and per room a session with a poll;
    /// rooms become `session:<session id>`. Needed by poll-burst; adds votes to chat. evd only.
    #[arg(long)]
    pub(crate) api: Option<String>,
    /// evd codec.
    #[arg(long, value_enum, default_value = "json")]
    pub(crate) codec: CodecArg,
    /// Source addresses for the workers, one per worker in turn. Default: 127.0.0.2, .3, … when
    /// every target is on loopback, else the system's choice.
    #[arg(long, value_delimiter = ',')]
    pub(crate) sources: Vec<IpAddr>,
    /// Worker processes (0: enough for `--per-worker`, at least one per core).
    #[arg(long, default_value_t = 0)]
    pub(crate) workers: usize,
    /// Most connections per worker.
    #[arg(long, default_value_t = MAX_PER_WORKER)]
    pub(crate) per_worker: usize,
    /// HS256 secret to mint tokens with (default: the engine's development secret).
    #[arg(long, env = "EVD_JWT_SECRET", hide_env_values = true)]
    pub(crate) secret: Option<String>,
    /// Organization the tokens are minted for (with `--api`, the org made for the run instead).
    #[arg(long, default_value = "loadtest")]
    pub(crate) org: String,
    /// Room name prefix; rooms are `session:<prefix>-<n>`. Default: unique per run.
    #[arg(long)]
    pub(crate) room_prefix: Option<String>,
    /// Server process to sample CPU and RSS from `/proc` (repeat for several nodes).
    #[arg(long = "server-pid")]
    pub(crate) server_pids: Vec<u32>,
    /// Seconds to wait for all connections before measuring anyway.
    #[arg(long, default_value_t = 120.0)]
    pub(crate) connect_timeout: f64,
    /// A client or publisher whose connection the server closes or loses (a node restarted, a
    /// drain, a network fault) reconnects with back-off and rejoins with `recover`, as a real
    /// client would; the report counts them under `reconnects`. Without it such a client is
    /// gone for the rest of the run.
    #[arg(long)]
    pub(crate) reconnect: bool,
    /// Print one JSON object instead of the human report; no progress bars.
    #[arg(long)]
    pub(crate) json: bool,
}

/// One worker's share of a run, passed as JSON on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerPlan {
    pub(crate) worker: usize,
    pub(crate) scenario: Scenario,
    pub(crate) target: Target,
    pub(crate) codec: CodecArg,
    pub(crate) targets: Vec<String>,
    pub(crate) source: Option<IpAddr>,
    /// Global index of this worker's first client, and how many it runs.
    pub(crate) first_client: usize,
    pub(crate) clients: usize,
    /// Global ids of this worker's publishers.
    pub(crate) publishers: Vec<usize>,
    pub(crate) total_publishers: usize,
    pub(crate) room_size: usize,
    pub(crate) rooms: usize,
    pub(crate) room_prefix: String,
    pub(crate) rate: f64,
    pub(crate) payload: usize,
    pub(crate) churn: f64,
    /// This worker's share of the ramp, connections per second.
    pub(crate) ramp: f64,
    pub(crate) duration_ms: u64,
    pub(crate) drain_ms: u64,
    pub(crate) connect_timeout_ms: u64,
    pub(crate) secret: Option<String>,
    pub(crate) org: String,
    /// Every publisher fires at once (`--sync-publishers`).
    pub(crate) sync_publishers: bool,
    /// Clients and publishers come back after losing their connection (`--reconnect`).
    pub(crate) reconnect: bool,
    /// The rooms made through the REST API, by room index; empty without `--api`.
    pub(crate) api_rooms: Vec<ApiRoom>,
}

/// A room made through the REST API: a session's room and the poll open in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ApiRoom {
    /// `session:<session id>`.
    pub(crate) name: String,
    /// The poll id.
    pub(crate) poll: String,
    /// The poll's option ids.
    pub(crate) options: Vec<String>,
}

impl WorkerPlan {
    /// The room index of global client `i`.
    pub(crate) fn room_of(&self, i: usize) -> usize {
        room_of(self.scenario, self.room_size, i)
    }

    /// The room name of room index `r`.
    pub(crate) fn room_name(&self, r: usize) -> String {
        match self.api_rooms.get(r) {
            Some(room) => room.name.clone(),
            None => format!("session:{}-{r}", self.room_prefix),
        }
    }

    /// The window in which each client votes once, from the start; `None` when clients do not
    /// vote (no polls, or a scenario without votes).
    pub(crate) fn vote_window(&self) -> Option<Duration> {
        if self.api_rooms.is_empty() {
            return None;
        }
        let run = Duration::from_millis(self.duration_ms);
        match self.scenario {
            Scenario::Chat => Some(run),
            Scenario::PollBurst => Some(POLL_BURST_WINDOW.min(run)),
            _ => None,
        }
    }

    /// The rooms publisher `p` publishes to, in turn.
    pub(crate) fn rooms_of_publisher(&self, p: usize) -> Vec<usize> {
        if self.scenario == Scenario::Idle {
            return Vec::new();
        }
        (p % self.rooms.max(1)..self.rooms)
            .step_by(self.total_publishers.max(1))
            .collect()
    }
}

fn room_of(scenario: Scenario, room_size: usize, i: usize) -> usize {
    match scenario {
        Scenario::Broadcast => 0,
        _ => i / room_size.max(1),
    }
}

/// Refuses combinations of flags that cannot work, before anything is started.
pub(crate) fn check(args: &Args) -> anyhow::Result<()> {
    if args.targets.is_empty() {
        anyhow::bail!("no --targets");
    }
    if args.api.is_some() && args.target != Target::Evd {
        anyhow::bail!("--api needs --target evd: Socket.IO servers have no polls to vote in");
    }
    if args.target == Target::Uws && args.scenario == Scenario::Chat {
        anyhow::bail!("chat churns membership with leave_room, which the uWS peer does not have");
    }
    if args.scenario == Scenario::PollBurst && args.api.is_none() {
        anyhow::bail!("poll-burst needs --api <REST base URL> to create the polls");
    }
    Ok(())
}

/// How many rooms a run has.
pub(crate) fn room_count(args: &Args) -> usize {
    match args.scenario {
        Scenario::Broadcast => 1,
        _ => args.connections.div_ceil(args.room_size.max(1)).max(1),
    }
}

/// The org and rooms made through the REST API for a run.
#[derive(Debug, Clone)]
pub(crate) struct Provisioned {
    pub(crate) org: String,
    pub(crate) rooms: Vec<ApiRoom>,
}

/// Splits a run into worker plans; `api` replaces the org and the room names when given.
pub(crate) fn split(args: &Args, api: Option<&Provisioned>) -> Vec<WorkerPlan> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let needed = args.connections.div_ceil(args.per_worker.max(1)).max(1);
    let workers = if args.workers > 0 {
        args.workers.max(needed)
    } else {
        needed.max(cores.min(args.connections.max(1)))
    };
    let rooms = room_count(args);
    let loopback = args
        .targets
        .iter()
        .all(|t| t.contains("://127.") || t.contains("://localhost") || t.contains("://[::1]"));
    let prefix = args
        .room_prefix
        .clone()
        .unwrap_or_else(|| format!("lt{}", crate::stamp::now_us() / 1000 % 100_000_000));
    let base = args.connections / workers;
    let extra = args.connections % workers;
    let mut first = 0;
    (0..workers)
        .map(|w| {
            let clients = base + usize::from(w < extra);
            let source = if !args.sources.is_empty() {
                Some(args.sources[w % args.sources.len()])
            } else if loopback {
                // 127.0.0.2 upwards; 127.0.0.1 stays the servers' own.
                Some(IpAddr::V4(Ipv4Addr::from(0x7f00_0002_u32 + w as u32)))
            } else {
                None
            };
            let plan = WorkerPlan {
                worker: w,
                scenario: args.scenario,
                target: args.target,
                codec: args.codec,
                targets: args.targets.clone(),
                source,
                first_client: first,
                clients,
                publishers: (0..args.publishers).filter(|p| p % workers == w).collect(),
                total_publishers: args.publishers,
                room_size: args.room_size,
                rooms,
                room_prefix: prefix.clone(),
                rate: args.rate,
                payload: args.payload,
                churn: args.churn,
                ramp: args.ramp / workers as f64,
                duration_ms: (args.duration * 1000.0) as u64,
                drain_ms: (args.drain * 1000.0) as u64,
                connect_timeout_ms: (args.connect_timeout * 1000.0) as u64,
                secret: args.secret.clone(),
                org: api.map_or_else(|| args.org.clone(), |a| a.org.clone()),
                sync_publishers: args.sync_publishers,
                reconnect: args.reconnect,
                api_rooms: api.map(|a| a.rooms.clone()).unwrap_or_default(),
            };
            first += clients;
            plan
        })
        .collect()
}

/// The user id of publisher `p` (global): its token's `sub`, and the member the harness makes
/// an organizer of the org it provisions.
pub(crate) fn publisher_user(p: usize) -> String {
    format!("pub{p}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["evd-loadtest"];
        v.extend_from_slice(extra);
        Args::parse_from(v)
    }

    #[test]
    fn connections_are_split_without_loss_over_workers_and_sources() {
        let a = args(&["rooms", "-c", "40001", "--room-size", "10", "-p", "100"]);
        let plans = split(&a, None);
        assert_eq!(plans.len(), 3);
        assert_eq!(plans.iter().map(|p| p.clients).sum::<usize>(), 40001);
        assert!(plans.iter().all(|p| p.clients <= MAX_PER_WORKER));
        assert_eq!(plans[1].first_client, plans[0].clients);
        let sources: Vec<_> = plans
            .iter()
            .map(|p| p.source.unwrap().to_string())
            .collect();
        assert_eq!(sources, ["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
        assert_eq!(plans.iter().map(|p| p.publishers.len()).sum::<usize>(), 100);
        assert_eq!(plans[0].rooms, 4001);
    }

    #[test]
    fn publishers_cover_every_room_once() {
        let a = args(&["rooms", "-c", "10000", "--room-size", "10", "-p", "100"]);
        let plan = &split(&a, None)[0];
        let mut seen = vec![0; plan.rooms];
        for p in 0..100 {
            for r in plan.rooms_of_publisher(p) {
                seen[r] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        assert_eq!(plan.rooms_of_publisher(3).len(), 10);
    }

    #[test]
    fn several_targets_and_given_sources() {
        let a = args(&[
            "broadcast",
            "-c",
            "100",
            "--workers",
            "2",
            "--targets",
            "ws://10.0.0.1:8080,ws://10.0.0.2:8080",
            "--sources",
            "10.0.0.9",
        ]);
        let plans = split(&a, None);
        assert_eq!(plans[0].targets.len(), 2);
        assert_eq!(plans[1].source.unwrap().to_string(), "10.0.0.9");
        assert_eq!(plans[0].room_of(57), 0);
    }

    #[test]
    fn polls_need_the_api_and_the_api_needs_evd() {
        assert!(check(&args(&["poll-burst"])).is_err());
        assert!(check(&args(&["poll-burst", "--api", "http://127.0.0.1:8080"])).is_ok());
        assert!(
            check(&args(&[
                "chat",
                "--api",
                "http://x:1",
                "--target",
                "socketio"
            ]))
            .is_err()
        );
        assert!(check(&args(&["chat", "--target", "socketio"])).is_ok());
    }

    #[test]
    fn api_rooms_replace_the_org_and_the_room_names_and_decide_who_votes() {
        let a = args(&["poll-burst", "-c", "30", "--room-size", "10", "-d", "5"]);
        let rooms: Vec<ApiRoom> = (0..room_count(&a))
            .map(|r| ApiRoom {
                name: format!("session:s{r}"),
                poll: format!("p{r}"),
                options: vec!["o1".into(), "o2".into()],
            })
            .collect();
        let api = Provisioned {
            org: "lt-1-2".into(),
            rooms,
        };
        let plan = &split(&a, Some(&api))[0];
        assert_eq!(plan.org, "lt-1-2");
        assert_eq!(plan.room_name(plan.room_of(25)), "session:s2");
        assert_eq!(plan.vote_window(), Some(POLL_BURST_WINDOW));
        let chat = args(&["chat", "-c", "30", "-d", "5"]);
        assert_eq!(
            split(&chat, Some(&api))[0].vote_window(),
            Some(Duration::from_secs(5))
        );
        // Without the API there are no polls, so nobody votes and the names are generated.
        let plain = &split(&chat, None)[0];
        assert_eq!(plain.vote_window(), None);
        assert!(plain.room_name(0).starts_with("session:lt"));
        let rooms = args(&["rooms", "-c", "30"]);
        assert_eq!(split(&rooms, Some(&api))[0].vote_window(), None);
    }
}
