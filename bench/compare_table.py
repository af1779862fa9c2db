#!/usr/bin/env python3
"""Turns bench/compare.sh's raw reports (target/compare/*.json) into the side-by-side table in
bench/RESULTS.md, between the `compare:begin` and `compare:end` markers.

    python3 bench/compare_table.py target/compare "bench/compare.sh" "CONNS=… …"
"""
import datetime, glob, json, os, re, subprocess, sys

out, cmd, settings = sys.argv[1], sys.argv[2], sys.argv[3]
ALL_SERVERS = [("evd", "evd"), ("evd-sio", "evd, Socket.IO endpoint"), ("uws", "uWebSockets.js"), ("socketio", "Socket.IO 4 (Node)"),
               ("socketioxide", "socketioxide")]
# The servers this run measured (compare.sh's SERVERS), in the order above.
SERVERS = [(s, n) for s, n in ALL_SERVERS if glob.glob(os.path.join(out, f"{s}-*.json"))]


def load(server, label):
    try:
        with open(os.path.join(out, f"{server}-{label}.json")) as f:
            return json.load(f) or None
    except (OSError, ValueError):
        return None


def get(r, *path):
    for p in path:
        if not isinstance(r, dict) or r.get(p) is None:
            return None
        r = r[p]
    return r


def saturation(server):
    """The highest saturation step with ratio 1.0 and p99 ≤ 1 s, else None."""
    best = None
    for path in glob.glob(os.path.join(out, f"{server}-sat-*.json")):
        r = load(server, os.path.basename(path)[len(server) + 1:-5])
        if r and r.get("delivery_ratio") == 1.0 and get(r, "latency_ms", "p99") <= 1000:
            if best is None or r["deliveries_per_s"] > best["deliveries_per_s"]:
                best = r
    return best


def rooms_runs(server):
    """Every rooms run of `server` (compare.sh repeats it), sorted by p99."""
    runs = [load(server, os.path.basename(p)[len(server) + 1:-5])
            for p in glob.glob(os.path.join(out, f"{server}-rooms*.json"))]
    runs = [r for r in runs if r and get(r, "latency_ms", "p99") is not None]
    return sorted(runs, key=lambda r: get(r, "latency_ms", "p99"))


def rooms(server):
    """The rooms run with the median p99: a run's p99 here moves by about a millisecond from
    run to run, so one run alone can decide a comparison by chance."""
    runs = rooms_runs(server)
    return runs[(len(runs) - 1) // 2] if runs else None


# The highest saturation rate any server was run at.
TOP_SAT_RATE = max((float(os.path.basename(p).rsplit("-", 1)[1][:-5])
                    for p in glob.glob(os.path.join(out, "*-sat-*.json"))), default=float("inf"))


def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}{unit}"
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + unit


# (label, scenario, extractor, unit, better): better is "low" or "high" or None (no ratio).
def closes(r):
    c = get(r, "closes") or {}
    return ", ".join(f"{k}×{v}" for k, v in c.items()) or "none"


ROWS = [
    ("connections held (idle)", "idle", lambda r: r.get("connections"), "", None),
    ("RSS per idle connection, rooms of 100", "idle", lambda r: get(r, "server", "rss_per_connection_kib"), " KiB", "low"),
    ("RSS per idle connection, rooms of 10", "idle-10", lambda r: get(r, "server", "rss_per_connection_kib"), " KiB", "low"),
    ("connect p99 (idle ramp)", "idle", lambda r: r.get("connect_p99_ms"), " ms", "low"),
]
for rate in (1, 10, 50):
    s = f"broadcast-{rate}"
    ROWS += [
        (f"broadcast {rate}/s: p50", s, lambda r: get(r, "latency_ms", "p50"), " ms", "low"),
        (f"broadcast {rate}/s: p99", s, lambda r: get(r, "latency_ms", "p99"), " ms", "low"),
        (f"broadcast {rate}/s: delivery ratio", s, lambda r: r.get("delivery_ratio"), "", None),
        (f"broadcast {rate}/s: server CPU per delivery", s, lambda r: get(r, "server", "cpu_per_delivery_us"), " µs", "low"),
        (f"broadcast {rate}/s: closes", s, closes, "", None),
    ]
ROWS += [
    ("saturation: deliveries/s (ratio 1.0, p99 ≤ 1 s)", "sat", lambda r: r.get("deliveries_per_s"), "", "high"),
    ("saturation: publish rate", "sat", lambda r: fmt(r.get("rate"), "/s") + (" (the top step tried: a floor)" if r.get("rate") >= TOP_SAT_RATE else ""), "", None),
    ("saturation: p99", "sat", lambda r: get(r, "latency_ms", "p99"), " ms", "low"),
    ("saturation: server CPU per delivery", "sat", lambda r: get(r, "server", "cpu_per_delivery_us"), " µs", "low"),
    ("rooms 1000×10, 100 pub × 10/s: p50", "rooms", lambda r: get(r, "latency_ms", "p50"), " ms", "low"),
    ("rooms: p99", "rooms", lambda r: get(r, "latency_ms", "p99"), " ms", "low"),
    ("rooms: p99 of each run, ms", "rooms-all", lambda runs: ", ".join(fmt(get(r, "latency_ms", "p99")) for r in runs), "", None),
    ("rooms: delivery ratio", "rooms", lambda r: r.get("delivery_ratio"), "", None),
    ("rooms: server CPU per delivery", "rooms", lambda r: get(r, "server", "cpu_per_delivery_us"), " µs", "low"),
    ("reconnect storm: back / dropped", "storm", lambda r: f'{get(r, "storm", "back")} / {get(r, "storm", "dropped")}', "", None),
    ("reconnect storm: all back in", "storm", lambda r: get(r, "storm", "all_back_s") if get(r, "storm", "back") == get(r, "storm", "dropped") else "not all back", " s", "low"),
    ("reconnect storm: recovered (no gap)", "storm", lambda r: get(r, "storm", "recovered"), "", None),
    ("reconnect storm: gaps left", "storm", lambda r: r.get("gaps"), "", None),
    ("reconnect storm: delivery ratio", "storm", lambda r: r.get("delivery_ratio"), "", None),
]


def value(server, scen, f):
    if scen == "sat":
        r = saturation(server)
    elif scen == "rooms":
        r = rooms(server)
    elif scen == "rooms-all":
        r = rooms_runs(server)
    else:
        r = load(server, scen)
    if not r:
        return None
    try:
        return f(r)
    except (TypeError, KeyError):
        return None


def advantage(e, p, better):
    if better is None or not isinstance(e, (int, float)) or not isinstance(p, (int, float)) or e <= 0 or p <= 0:
        return "–"
    x = p / e if better == "low" else e / p
    return f"{x:.1f}×"


def quotient(e, u, better):
    """One figure ÷ another, as measured (below 1 on a "low" row: the first is better)."""
    if better is None or not isinstance(e, (int, float)) or not isinstance(u, (int, float)) or e <= 0 or u <= 0:
        return "–"
    return f"{e / u:.2f}"


# The comparison columns, for the peers this run measured: uWS as a plain quotient (the anchor
# the fanout issue measures against), the others as evd's advantage.
# (label, (measured server, against, how)): evd's Socket.IO endpoint against evd's own protocol
# (the aim: within 1.3×) and against the Node server it replaces.
names = {s for s, _ in SERVERS}
COMPARE = [(label, spec) for label, spec in [
    ("evd ÷ uWS", ("evd", "uws", quotient)),
    ("evd vs Socket.IO", ("evd", "socketio", advantage)),
    ("evd vs socketioxide", ("evd", "socketioxide", advantage)),
    ("evd Socket.IO endpoint ÷ evd", ("evd-sio", "evd", quotient)),
    ("evd Socket.IO endpoint vs Socket.IO", ("evd-sio", "socketio", advantage)),
] if spec[0] in names and spec[1] in names]


lines = []
date = datetime.date.today().isoformat()
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
lines += [
    "## evd" + (" (its own protocol and its Socket.IO endpoint)" if "evd-sio" in names else "")
    + " against " + ", ".join(n for s, n in SERVERS if s not in ("evd", "evd-sio")) + " (evd-loadtest, same run)",
    f"**Date:** {date}. **Machine:** {cores} cores, the harness on the same machine as the server.",
    "**Command:**",
    "",
    f"    {cmd}",
    "",
    f"Settings: `{settings}`. Every server is started fresh for each scenario and sampled from",
    "`/proc`; server CPU per delivery is its CPU time over the measurement window (duration plus",
    "drain) divided by the messages delivered. evd runs with `EVD_LIMITS_CONN_RATE_PER_IP=0`",
    "`EVD_LIMITS_OPS_PER_SEC=100000` `EVD_LIMITS_OPS_BURST=100000` and a temporary SQLite store.",
    "The peers skip authentication; evd verifies a JWT on every connection. \"×\" is evd's",
    "advantage (above 1: evd is better); \"÷\" columns are plain quotients (below 1: the first is",
    "better). \"evd, Socket.IO endpoint\" is the same `evd serve` driven through `/socket.io/`",
    "(`evd-loadtest --target socketio`, as the Node peers are); its storm rejoins without Socket.IO's",
    "recovery, as the harness does for every Socket.IO server. uWS skips a subscriber over its 64 KiB backpressure instead of queueing, and has no",
    "recovery, so its storm rows count what it dropped. The rooms scenario runs several times per server,",
    "interleaved; its rows come from the run with the median p99. The raw reports are in",
    "`target/compare/` after a run.",
    "",
    "| figure | " + " | ".join([n for _, n in SERVERS] + [c for c, _ in COMPARE]) + " |",
    "|---|" + "---|" * (len(SERVERS) + len(COMPARE)),
]
for label, scen, f, unit, better in ROWS:
    vals = {s: value(s, scen, f) for s, _ in SERVERS}
    if all(v is None for v in vals.values()):
        continue  # a part this run did not measure (compare.sh's SCENARIOS)
    cells = [fmt(vals[s], unit) for s, _ in SERVERS]
    cells += [cmp(vals.get(a), vals.get(b), better) for _, (a, b, cmp) in COMPARE]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")

def ratio(a, b):
    ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0
    return f"{a / b:.2f}" if ok else "–"


floors = [(rate, load("floor", f"broadcast-{rate}"), load("evd", f"broadcast-{rate}")) for rate in (1, 10, 50)]
if any(f for _, f, _ in floors):
    lines += [
        "", "### The machine's floor for the same broadcasts (loopback-floor, same run)", "",
        "`loopback-floor` sends the same rounds to the same number of loopback TCP connections with",
        "no server at all: two plain threads doing one `write()` per connection per message (rounds",
        "that fell due meanwhile go out in one write, as a send queue coalesces them), and a second",
        "process with two threads reading with epoll. Its CPU is the sending threads' own, over the",
        "passes only; on loopback that includes the kernel's receive path and the reader's wake-up.",
        "It is what the kernel alone costs here: a WebSocket server adds framing, queues and",
        "scheduling on top, and evd-loadtest's readers do more per message than a bare read.",
        "",
        "| broadcast to " + f"{get(floors[0][1], 'conns') or '–'}" + " | floor p50 | floor p99 | floor CPU per delivery | evd p99 | evd CPU per delivery | evd ÷ floor (p99, CPU) | uWS p99 | uWS CPU per delivery | uWS ÷ floor (p99, CPU) | evd ÷ uWS (p99, CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rate, f, e in floors:
        u = load("uws", f"broadcast-{rate}")
        fp99, ep99, up99 = get(f, "latency_ms", "p99"), get(e, "latency_ms", "p99"), get(u, "latency_ms", "p99")
        fcpu, ecpu = get(f, "cpu_per_delivery_us"), get(e, "server", "cpu_per_delivery_us")
        ucpu = get(u, "server", "cpu_per_delivery_us")
        lines.append(
            f"| {rate}/s | {fmt(get(f, 'latency_ms', 'p50'), ' ms')} | {fmt(fp99, ' ms')} | {fmt(fcpu, ' µs')}"
            f" | {fmt(ep99, ' ms')} | {fmt(ecpu, ' µs')} | {ratio(ep99, fp99)}, {ratio(ecpu, fcpu)}"
            f" | {fmt(up99, ' ms')} | {fmt(ucpu, ' µs')} | {ratio(up99, fp99)}, {ratio(ucpu, fcpu)}"
            f" | {ratio(ep99, up99)}, {ratio(ecpu, ucpu)} |"
        )

big_idle, big_storm = load("evd", "idle-big"), load("evd", "storm-big")
big_idle_10, idle_cpu = load("evd", "idle-big-10"), load("evd", "idle-cpu")
if big_idle or big_storm or idle_cpu:
    lines += ["", "### evd on its own: the bars at the most one process may hold here", "",
              "| figure | evd |", "|---|---|"]
    if big_idle:
        lines += [
            f"| idle: connections held | {big_idle.get('connections')} of {big_idle.get('connections_requested')} |",
            f"| idle: RSS per connection, rooms of 100 | {fmt(get(big_idle, 'server', 'rss_per_connection_kib'), ' KiB')} "
            f"({get(big_idle, 'server', 'rss_baseline_kib')} → {get(big_idle, 'server', 'rss_ready_kib')} KiB) |",
            f"| idle: connect p50 / p99 | {fmt(big_idle.get('connect_p50_ms'), ' ms')} / {fmt(big_idle.get('connect_p99_ms'), ' ms')} |",
        ]
    if big_idle_10:
        lines += [
            f"| idle: RSS per connection, rooms of 10 | {fmt(get(big_idle_10, 'server', 'rss_per_connection_kib'), ' KiB')} "
            f"({get(big_idle_10, 'server', 'rss_baseline_kib')} → {get(big_idle_10, 'server', 'rss_ready_kib')} KiB, "
            f"{big_idle_10.get('connections')} held) |",
        ]
    if idle_cpu:
        lines += [
            f"| idle CPU: {idle_cpu.get('connections')} connections at the default heartbeat, "
            f"{fmt(idle_cpu.get('duration_s'), ' s')} | {fmt(get(idle_cpu, 'server', 'cpu_percent'), ' %')} of a core |",
        ]
    if big_storm:
        st = big_storm.get("storm") or {}
        lines += [
            f"| storm: back / dropped | {st.get('back')} / {st.get('dropped')} |",
            f"| storm: all back in | {fmt(st.get('all_back_s'), ' s')} (rejoin p50 {fmt(st.get('rejoin_p50_ms'), ' ms')}, p99 {fmt(st.get('rejoin_p99_ms'), ' ms')}) |",
            f"| storm: recovered / not | {st.get('recovered')} / {st.get('not_recovered')}, {st.get('replayed')} messages replayed |",
            f"| storm: gaps left, delivery ratio | {big_storm.get('gaps')}, {fmt(big_storm.get('delivery_ratio'))} |",
        ]

section = "<!-- compare:begin -->\n" + "\n".join(lines) + "\n<!-- compare:end -->"
path = "bench/RESULTS.md"
text = open(path).read()
if "<!-- compare:begin -->" in text:
    text = re.sub(r"<!-- compare:begin -->.*?<!-- compare:end -->", lambda _: section, text, flags=re.S)
else:
    head, sep, rest = text.partition("\n## ")
    text = head.rstrip("\n") + "\n\n" + section + "\n\n" + sep.lstrip("\n") + rest
open(path, "w").write(text)
print("\n".join(lines))
