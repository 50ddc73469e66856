#!/usr/bin/env python3
"""Draw bench/out/chart.png from a panobench results JSON.

    python3 bench/chart.py bench/out/latest.json bench/out/chart.png

One panel per measurement, one bar per subject, log scale where the subjects
differ by orders of magnitude. Medians over the rounds of one run.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SUBJECTS = ["direct", "panopticon", "baseline", "mitmproxy", "squid"]
COLORS = {"direct": "#888888", "panopticon": "#1f77b4", "baseline": "#aec7e8", "mitmproxy": "#d62728", "squid": "#2ca02c"}

# (title, phase, variant, metric, log scale)
PANELS = [
    ("keep-alive req/s", "keepalive", "", "per_sec", True),
    ("keep-alive p50 latency, ms", "keepalive", "", "p50_ms", True),
    ("new TLS conn/s, resumed", "newconn", "resumed", "per_sec", True),
    ("new TLS conn/s, full handshake", "newconn", "full", "per_sec", True),
    ("download MB/s", "download", "", "mb_per_sec", False),
    ("upload MB/s (placeholders)", "upload", "placeholders", "mb_per_sec", False),
    ("peak RSS under keep-alive, MiB", "keepalive", "", "peak_rss", False),
    ("KiB per idle connection", "idle", "", "kib_per_conn", False),
]


def main(src, dst):
    with open(src) as f:
        rep = json.load(f)
    cells = {}
    for row in rep.get("summary") or []:
        m = dict(row.get("metrics") or {})
        m["peak_rss"] = row.get("peak_rss_mib", 0)
        cells[(row["phase"], row.get("variant", ""), row["subject"])] = m

    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, (title, phase, variant, metric, log) in zip(axes.flat, PANELS):
        names, values = [], []
        for s in SUBJECTS:
            v = cells.get((phase, variant, s), {}).get(metric, 0)
            if v:
                names.append(s)
                values.append(v)
        ax.set_title(title, fontsize=10)
        if not values:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        bars = ax.bar(names, values, color=[COLORS[n] for n in names])
        if log and max(values) / max(min(values), 1e-9) > 20:
            ax.set_yscale("log")
        for b, v in zip(bars, values):
            label = f"{v:,.0f}" if v >= 100 else f"{v:.2f}" if v < 10 else f"{v:.1f}"
            ax.annotate(label, (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    mach = rep.get("machine", {})
    mode = "quick" if rep.get("settings", {}).get("quick") else "full"
    fig.suptitle(f"panopticon vs direct, mitmproxy, squid — {mach.get('nproc', '?')} × {mach.get('cpu', '?')}, "
                 f"{rep.get('started', '')[:16]} ({mode} run; medians; ratios matter, not absolutes)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(dst, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
