//! The run's report: the merged worker reports and the server samples as one JSON object,
//! and that object as a few readable lines.

use crate::plan::Args;
use crate::procstat::Sample;
use crate::stats::{Merged, StormReport, VotesMerged};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::time::Duration;

/// Rooms whose failed tally check the report lists: enough to see the pattern, few enough to
/// keep the report one readable object.
const MISMATCHES_SHOWN: usize = 10;

/// What the coordinator measured itself, around the workers' reports.
pub(super) struct Run<'a> {
    pub(super) args: &'a Args,
    /// The org the clients used (made by `--api`, or `--org`).
    pub(super) org: &'a str,
    pub(super) workers: usize,
    /// From starting the workers to every worker being ready, seconds.
    pub(super) ramp_s: f64,
    /// The common start, unix µs.
    pub(super) start_us: u64,
    /// The run and its drain.
    pub(super) window: Duration,
    /// The servers before the workers started, when every worker was ready, at the start, at
    /// the end (`None` without `--server-pid`).
    pub(super) baseline: Option<Sample>,
    pub(super) at_ready: Option<Sample>,
    pub(super) at_start: Option<Sample>,
    pub(super) at_end: Option<Sample>,
    /// The servers' largest RSS sampled during the run, KiB.
    pub(super) peak_rss: u64,
    /// The coordinator's own CPU time, seconds.
    pub(super) own_cpu: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Quantile `p` of `h` in ms; 0 for an empty histogram.
fn q(h: &Histogram<u64>, p: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        ms(h.value_at_quantile(p))
    }
}

/// The quantiles of a latency histogram, ms.
fn latency_ms(h: &Histogram<u64>) -> Value {
    json!({
        "p50": q(h, 0.5), "p95": q(h, 0.95),
        "p99": q(h, 0.99), "p999": q(h, 0.999),
        "max": if h.is_empty() { 0.0 } else { ms(h.max()) },
    })
}

/// The report of `run`, from the workers' `merged` reports and `votes`.
pub(super) fn build(run: &Run<'_>, merged: &Merged, votes: Option<&VotesMerged>) -> Value {
    let args = run.args;
    let window = run.window;
    let ratio = if merged.expected > 0 {
        merged.received as f64 / merged.expected as f64
    } else {
        1.0
    };
    let deliveries_per_s = merged.received as f64 / args.duration.max(1e-9);
    let server = match (run.baseline, run.at_ready, run.at_start, run.at_end) {
        (Some(b), Some(r), Some(s), Some(e)) => {
            let cpu = e.cpu_s - s.cpu_s;
            json!({
                "pids": args.server_pids,
                "rss_baseline_kib": b.rss_kib,
                "rss_ready_kib": r.rss_kib,
                "rss_peak_kib": run.peak_rss,
                "rss_per_connection_kib": if merged.connected > 0 {
                    (r.rss_kib as f64 - b.rss_kib as f64) / merged.connected as f64
                } else { 0.0 },
                "cpu_s": cpu,
                "cpu_percent": 100.0 * cpu / window.as_secs_f64(),
                "cpu_per_delivery_us": if merged.received > 0 { cpu * 1e6 / merged.received as f64 } else { 0.0 },
            })
        }
        _ => Value::Null,
    };
    let comebacks = |c: &Option<(StormReport, Histogram<u64>)>| {
        c.as_ref().map(|(s, h)| {
            json!({
                "dropped": s.dropped, "back": s.back, "recovered": s.recovered,
                "not_recovered": s.not_recovered, "replayed": s.replayed,
                "all_back_s": s.slowest_us as f64 / 1e6,
                "rejoin_p50_ms": q(h, 0.5), "rejoin_p99_ms": q(h, 0.99),
            })
        })
    };
    let storm = comebacks(&merged.storm);
    let reconnects = comebacks(&merged.reconnects);
    let start_us = run.start_us;
    let votes = votes.map(|v| {
        let span_s = v.last_ack_us.saturating_sub(start_us) as f64 / 1e6;
        json!({
            "sent": v.sent,
            "retries": v.retries,
            "acked": v.acked,
            "errors": v.errors,
            "error_kinds": v.error_kinds,
            "unanswered": v.sent.saturating_sub(v.acked + v.errors),
            "latency_ms": latency_ms(&v.latency),
            "rate_per_s": if span_s > 0.0 { v.acked as f64 / span_s } else { 0.0 },
            "rooms_checked": v.rooms_checked,
            "rooms_tally_ok": v.rooms_tally_ok,
            "tally_mismatches": v.mismatches.iter().take(MISMATCHES_SHOWN).map(|(room, seen, acked)| {
                json!({ "room": room, "largest_total_seen": seen, "acked": acked })
            }).collect::<Vec<_>>(),
            "members_missed_final": v.members_missed_final,
            "results_converged_s": if v.converged_us > 0 {
                v.converged_us.saturating_sub(start_us) as f64 / 1e6
            } else { 0.0 },
        })
    });
    json!({
        "scenario": args.scenario,
        "target": args.target,
        "codec": args.codec,
        "targets": args.targets,
        "workers": run.workers,
        "connections_requested": args.connections,
        "connections": merged.connected,
        "connect_failed": merged.connect_failed,
        "joined": merged.joined,
        "connect_p50_ms": q(&merged.connect, 0.5),
        "connect_p99_ms": q(&merged.connect, 0.99),
        "connect_rate_per_s": if merged.connect_span_us > 0 {
            merged.connected as f64 / (merged.connect_span_us as f64 / 1e6)
        } else { 0.0 },
        "ramp_s": run.ramp_s,
        "duration_s": args.duration,
        "publishers": args.publishers,
        "rate": args.rate,
        "payload": args.payload,
        "room_size": args.room_size,
        "published": merged.sent,
        "expected": merged.expected,
        "received": merged.received,
        "delivery_ratio": ratio,
        "deliveries_per_s": deliveries_per_s,
        "latency_ms": latency_ms(&merged.latency),
        "gaps": merged.gaps,
        "reorders": merged.reorders,
        "churn": args.churn,
        "churn_rejoins": merged.rejoins,
        "churn_not_recovered": merged.rejoins_not_recovered,
        "errors": merged.errors,
        "error_kinds": merged.error_kinds,
        "closes": merged.closes,
        "server": server,
        "storm": storm,
        "reconnects": reconnects,
        "api": args.api,
        "org": run.org,
        "sync_publishers": args.sync_publishers,
        "votes": votes,
        "harness_cpu_s": merged.cpu_s + run.own_cpu,
    })
}

/// The report as a few readable lines.
pub(super) fn human(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut s = format!(
        "{} against {} ({}), {} workers\n\
         connections   {} of {} ({} failed), connect p50 {:.1} ms p99 {:.1} ms, {:.0}/s\n",
        r["scenario"].as_str().unwrap_or(""),
        r["targets"],
        r["target"].as_str().unwrap_or(""),
        r["workers"],
        r["connections"],
        r["connections_requested"],
        r["connect_failed"],
        f(&r["connect_p50_ms"]),
        f(&r["connect_p99_ms"]),
        f(&r["connect_rate_per_s"]),
    );
    s += &format!(
        "deliveries    {} of {} expected (ratio {:.4}), {:.0}/s from {} published\n\
         latency       {}\n\
         order         gaps {}  reorders {}  churn rejoins {}\n\
         errors        {} {}  closes {}\n",
        r["received"],
        r["expected"],
        f(&r["delivery_ratio"]),
        f(&r["deliveries_per_s"]),
        r["published"],
        quantiles(&r["latency_ms"]),
        r["gaps"],
        r["reorders"],
        r["churn_rejoins"],
        r["errors"],
        r["error_kinds"],
        r["closes"],
    );
    let sv = &r["server"];
    if !sv.is_null() {
        s += &format!(
            "server        RSS {} → {} KiB (peak {}), {:.2} KiB per connection; CPU {:.2} s ({:.0}%), {:.3} µs per delivery\n",
            sv["rss_baseline_kib"],
            sv["rss_ready_kib"],
            sv["rss_peak_kib"],
            f(&sv["rss_per_connection_kib"]),
            f(&sv["cpu_s"]),
            f(&sv["cpu_percent"]),
            f(&sv["cpu_per_delivery_us"]),
        );
    }
    for (label, key) in [("storm        ", "storm"), ("reconnects   ", "reconnects")] {
        let st = &r[key];
        if st.is_null() {
            continue;
        }
        s += &format!(
            "{label} {} dropped, {} back in {:.2} s (rejoin p50 {:.0} ms p99 {:.0} ms), {} recovered, {} not, {} messages replayed\n",
            st["dropped"],
            st["back"],
            f(&st["all_back_s"]),
            f(&st["rejoin_p50_ms"]),
            f(&st["rejoin_p99_ms"]),
            st["recovered"],
            st["not_recovered"],
            st["replayed"],
        );
    }
    let v = &r["votes"];
    if !v.is_null() {
        s += &format!(
            "votes         {} sent ({} retried after rate_limited), {} acked, {} errors {}, {} unanswered; {:.0} acked/s\n\
             vote latency  {}\n\
             tally         {} of {} rooms ok, results converged in {:.2} s, {} members missed the final tally\n",
            v["sent"],
            v["retries"],
            v["acked"],
            v["errors"],
            v["error_kinds"],
            v["unanswered"],
            f(&v["rate_per_s"]),
            quantiles(&v["latency_ms"]),
            v["rooms_tally_ok"],
            v["rooms_checked"],
            f(&v["results_converged_s"]),
            v["members_missed_final"],
        );
        if let Some(bad) = v["tally_mismatches"].as_array().filter(|b| !b.is_empty()) {
            s += &format!("tally FAILED  {}\n", Value::Array(bad.clone()));
        }
    }
    s += &format!("harness CPU   {:.2} s", f(&r["harness_cpu_s"]));
    s
}

/// A `latency_ms` object as one line: `p50 … ms  p95 … ms  p99 … ms  p99.9 … ms  max … ms`.
fn quantiles(l: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    format!(
        "p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        f(&l["p50"]),
        f(&l["p95"]),
        f(&l["p99"]),
        f(&l["p999"]),
        f(&l["max"]),
    )
}
