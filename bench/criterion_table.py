#!/usr/bin/env python3
"""Prints criterion's latest fanout results as a Markdown table (ns per delivery).

    cargo bench -p evd-bench --bench fanout && python3 bench/criterion_table.py
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion/fanout")
print("| benchmark | members | codecs | µs per event | ns per delivery (95% CI) |")
print("|---|---|---|---|---|")
for f in sorted(root.glob("*/*/new/estimates.json")):
    bench, members = f.parts[-4], int(f.parts[-3])
    name, codecs = bench.rsplit("_", 1)
    mean = json.loads(f.read_text())["mean"]
    lo, hi = mean["confidence_interval"]["lower_bound"], mean["confidence_interval"]["upper_bound"]
    m = mean["point_estimate"]
    print(f"| `{name}` | {members:,} | {codecs} | {m / 1000:.1f} | {m / members:.1f} ({lo / members:.1f}–{hi / members:.1f}) |")
