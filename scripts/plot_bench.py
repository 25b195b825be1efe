#!/usr/bin/env python3
"""Plots the markdown tables that the benchmark examples print (fanout, latency, throughput) as PNGs.

    cargo run --example fanout -- --ai > docs/plots/fanout-ai.md
    cargo run --example latency > docs/plots/latency.md
    cargo run --example throughput > docs/plots/throughput.md
    python3 scripts/plot_bench.py docs/plots

Writes fanout-*.png, latency.png and throughput.png beside the tables it finds. Needs matplotlib
(`python3 -m pip install --user matplotlib`).
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def table(path):
    """(title, header, rows) of the first markdown table in `path`."""
    title, header, rows = "", None, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("# "):
                title = line[2:]
            elif line.startswith("|") and not line.startswith("|---"):
                cells = [c.strip() for c in line.strip("|").split("|")]
                if header is None:
                    header = cells
                else:
                    rows.append(cells)
    return title, header, rows


def num(v):
    try:
        return float(v.strip("*"))
    except ValueError:
        return float("nan")


def fanout(path, out):
    title, header, rows = table(path)
    viewers = [r[0] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].bar(viewers, [num(r[2]) for r in rows], color="#4c8bf5")
    ax[0].axhline(1.2, color="red", linestyle="--", label="target 1.2x")
    ax[0].set_xlabel("viewers")
    ax[0].set_ylabel("server CPU, ratio to the first row")
    ax[0].legend()
    ax[1].bar(viewers, [num(r[3]) for r in rows], color="#34a853")
    ax[1].set_xlabel("viewers")
    ax[1].set_ylabel("RSS MiB")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def latency(path, out):
    title, header, rows = table(path)
    labels = [f"AI {r[0]}\n{r[1]} viewer(s)" for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, color) in enumerate([("p50", "#4c8bf5"), ("p95", "#fbbc04"), ("p99", "#ea4335")]):
        col = header.index(f"{name} ms")
        ax.bar([j + (i - 1) * 0.27 for j in x], [num(r[col]) for r in rows], width=0.27, label=name, color=color)
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("capture to viewer, ms")
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def throughput(path, out):
    title, header, rows = table(path)
    labels = [f"{r[0]} cams\n{r[1]}" for r in rows]
    x = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar([j - 0.2 for j in x], [num(r[3]) for r in rows], width=0.4, label="processed fps (= detection fps)", color="#4c8bf5")
    ax.bar([j + 0.2 for j in x], [num(r[5]) for r in rows], width=0.4, label="dropped per s", color="#ea4335")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("frames per second")
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "docs/plots"
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        stem, ext = os.path.splitext(name)
        if ext != ".md":
            continue
        out = os.path.join(folder, stem + ".png")
        if stem.startswith("fanout"):
            fanout(path, out)
        elif stem.startswith("latency"):
            latency(path, out)
        elif stem.startswith("throughput"):
            throughput(path, out)
        else:
            continue
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
