#!/usr/bin/env python3
"""Plots the CSV written by `cargo run --example soak` (RSS, CPU, threads, descriptors, viewers and the
steady viewers' frame rates over time) into one PNG.

    python3 scripts/plot_soak.py [target/soak.csv] [docs/plots/soak.png]

Needs matplotlib (`python3 -m pip install --user matplotlib`).
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "target/soak.csv"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/plots/soak.png"
    with open(src) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{src}: no samples")
    t = [float(r["t_s"]) / 60 for r in rows]
    col = lambda k: [float(r[k]) for r in rows]  # noqa: E731
    warm = [float(r["t_s"]) / 60 for r in rows if r["phase"] == "warmup"]
    slow = [float(r["t_s"]) / 60 for r in rows if r["phase"] == "slow"]

    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)

    def shade(ax):
        if warm:
            ax.axvspan(0, max(warm), color="0.9", label="warm-up")
        if slow:
            ax.axvspan(min(slow) - 5 / 60, max(slow), color="#fde0c5", label="slow viewer not reading")

    ax = axes[0]
    shade(ax)
    ax.plot(t, col("rss_mib"), color="tab:blue", label="RSS")
    if "rss_anon_mib" in rows[0]:
        ax.plot(t, col("rss_anon_mib"), color="tab:cyan", label="of which anonymous (heap, stacks)")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(0, max(col("rss_mib")) * 1.15)
    ax.legend(loc="lower right")
    ax.set_title("HAVEN soak: three demo cameras, viewers joining and leaving, never-readers, one slow viewer")

    ax = axes[1]
    shade(ax)
    ax.plot(t, col("cpu_pct"), color="tab:red", label="server CPU (% of one core)")
    ax.set_ylabel("CPU %")
    ax.set_ylim(0, max(col("cpu_pct")) * 1.15)
    ax.legend(loc="lower right")

    ax = axes[2]
    shade(ax)
    ax.plot(t, col("threads"), color="tab:green", label="threads")
    ax.plot(t, col("fds"), color="tab:purple", label="file descriptors")
    ax.plot(t, col("viewers"), color="tab:gray", linestyle="--", label="viewers counted by the server")
    ax.set_ylabel("count")
    ax.legend(loc="upper right", fontsize="small")

    ax = axes[3]
    shade(ax)
    for i, c in enumerate(["tab:blue", "tab:orange", "tab:green"], start=1):
        ax.plot(t, col(f"steady_fps_cam{i}"), color=c, label=f"steady viewer cam{i}")
        ax.plot(t, col(f"processed_fps_cam{i}"), color=c, linestyle=":", label=f"cam{i} frames encoded/s")
    ax.set_ylabel("frames / s")
    ax.set_xlabel("minutes")
    ax.set_ylim(0, 11)
    ax.legend(loc="lower right", fontsize="x-small", ncol=3)

    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
