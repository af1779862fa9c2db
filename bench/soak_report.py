#!/usr/bin/env python3
"""The soak's report: reads what bench/soak.sh left in its output directory (rss.csv,
events.csv, report.json) and writes rss.png (RSS over time per node, the faults marked) and
summary.md (the RSS slope per node and process after the warm-up, and the harness's figures).

    python3 bench/soak_report.py OUT_DIR WARMUP_SECONDS "the command that made the run"

A node restarted during the run is two processes; each is judged on its own samples from
WARMUP seconds after it started until the restart (the old process's drain is not judged), if
at least MIN_JUDGED_S seconds of samples remain."""

import csv
import json
import os
import sys
from collections import defaultdict


# The shortest window of samples a process is judged on, seconds.
MIN_JUDGED_S = 300


def slope_per_hour(points):
    """Least-squares slope of (t seconds, rss KiB) points, in KiB per hour, and the mean RSS."""
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    cov = sum((t - mt) * (r - mr) for t, r in points)
    return (cov / var * 3600 if var else 0.0), mr


def main():
    out, warmup, command = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    rows = list(csv.DictReader(open(os.path.join(out, "rss.csv"))))
    events = list(csv.DictReader(open(os.path.join(out, "events.csv"))))
    report = json.load(open(os.path.join(out, "report.json")))

    # One series per process: (port, pid) → [(t, rss KiB, connections)].
    series = defaultdict(list)
    for r in rows:
        conns = float(r["connections"]) if r["connections"] else None
        series[(r["port"], r["pid"])].append((float(r["t_s"]), float(r["rss_kib"]), conns))

    lines = []
    slopes = []
    # A node restarted on purpose is judged up to the restart, not through its drain.
    restarts = defaultdict(list)
    for e in events:
        if e["event"].startswith("restart node "):
            restarts[e["event"].split()[-1]].append(float(e["t_s"]))

    for (port, pid), pts in sorted(series.items(), key=lambda kv: (kv[0][0], kv[1][0][0])):
        first = pts[0][0]
        end = min([t for t in restarts[port] if first < t <= pts[-1][0]], default=float("inf"))
        window = [(t, r) for t, r, _ in pts if first + warmup <= t < end]
        span = (window[-1][0] - window[0][0]) if len(window) > 1 else 0
        peak = max(r for _, r, _ in pts)
        if span < MIN_JUDGED_S:
            lines.append(
                f"| {port} | {pid} | {first:.0f}–{pts[-1][0]:.0f} s | too short to judge "
                f"({span:.0f} s after the warm-up) | | {peak / 1024:.0f} MiB |"
            )
            continue
        kib_h, mean = slope_per_hour(window)
        pct = 100 * kib_h / mean
        slopes.append(pct)
        lines.append(
            f"| {port} | {pid} | {window[0][0]:.0f}–{window[-1][0]:.0f} s | "
            f"{kib_h / 1024:+.1f} MiB/h on {mean / 1024:.0f} MiB | {pct:+.2f} %/h | {peak / 1024:.0f} MiB |"
        )

    # The plot.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for (port, pid), pts in sorted(series.items()):
        ax.plot([t / 60 for t, _, _ in pts], [r / 1024 for _, r, _ in pts], label=f"node {port} (pid {pid})")
    for e in events:
        ax.axvline(float(e["t_s"]) / 60, color="grey", linestyle=":", linewidth=1)
        ax.annotate(e["event"], (float(e["t_s"]) / 60, 0), rotation=90, fontsize=7,
                    xytext=(2, 4), textcoords="offset points", va="bottom", color="grey")
    ax.axvspan(0, warmup / 60, color="grey", alpha=0.08, label="warm-up, not judged")
    ax.set_xlabel("minutes since the load started")
    ax.set_ylabel("RSS, MiB")
    ax.set_ylim(bottom=0)
    ax.set_title("evd soak: RSS per engine node")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "rss.png"), dpi=100)

    r = report
    lat = r.get("latency_ms") or {}
    rec = r.get("reconnects") or {}
    votes = r.get("votes") or {}
    md = []
    md.append(f"Command: `{command}`\n")
    md.append("RSS per engine process, least-squares slope after the warm-up:\n")
    md.append("| node | pid | judged window | slope | per hour | peak |")
    md.append("|---|---|---|---|---|---|")
    md.extend(lines)
    md.append("")
    md.append("Faults (seconds since the load started): " + "; ".join(f"{e['t_s']} s {e['event']}" for e in events))
    md.append("")
    md.append("| figure | value |")
    md.append("|---|---|")
    md.append(f"| connections | {r['connections']} of {r['connections_requested']} ({r['connect_failed']} failed) |")
    md.append(f"| messages published | {r['published']} |")
    md.append(f"| deliveries | {r['received']} of {r['expected']} expected (ratio {r['delivery_ratio']:.4f}) |")
    md.append(f"| delivery latency | p50 {lat.get('p50', 0):.0f} ms, p99 {lat.get('p99', 0):.0f} ms, max {lat.get('max', 0):.0f} ms |")
    md.append(f"| offset gaps | {r['gaps']} (reorders {r['reorders']}) |")
    md.append(f"| churn rejoins | {r['churn_rejoins']}, of them `recovered:false`: {r.get('churn_not_recovered', 0)} |")
    if rec:
        md.append(
            f"| connections lost and back | {rec['dropped']} lost, {rec['back']} back (slowest {rec['all_back_s']:.1f} s), "
            f"{rec['recovered']} recovered, {rec['not_recovered']} `recovered:false` |"
        )
    if votes:
        md.append(
            f"| votes | {votes['sent']} sent, {votes['acked']} acked, {votes['errors']} errors {votes['error_kinds']}, "
            f"{votes['unanswered']} unanswered; tallies right in {votes['rooms_tally_ok']} of {votes['rooms_checked']} rooms |"
        )
    md.append(f"| closes by code | {json.dumps(r['closes'])} |")
    md.append(f"| errors | {r['errors']} {json.dumps(r['error_kinds'])} |")
    md.append("")
    if not slopes:
        md.append("Memory: not judged (no process ran long enough after its warm-up).")
    else:
        verdict = "flat" if all(abs(s) < 1.0 for s in slopes) else "NOT flat"
        md.append(f"Memory: {verdict} (the bar: every judged process under 1 % per hour; "
                  f"slopes {[round(s, 2) for s in slopes]} %/h).")
    open(os.path.join(out, "summary.md"), "w").write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
