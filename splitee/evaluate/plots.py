"""Markdown table and PNG plots of an evaluation summary."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HEADLINE = ("isplitee-online", "isplitee-full", "splitee-ucb1", "best-fixed", "final-exit")


def _pct(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def table_md(summary: dict) -> str:
    """One table per (offload cost, distortion): methods with accuracy, cost and regret."""
    s = summary["settings"]
    lines = [
        "# Offline evaluation",
        "",
        f"γ={s['gamma']}, μ={s['mu']}, α={s['alpha']}, β={s['beta']}, runs={s['runs']}, "
        f"seed={s['seed']}. Accuracy drop and cost reduction are against the final exit on the "
        "edge. Regret: cumulative pseudo-regret against the best fixed arm in hindsight.",
        "",
    ]
    groups: dict[tuple[float, str], list[dict]] = {}
    for r in summary["results"]:
        groups.setdefault((r.get("offload_cost", s["offload_cost"]), r["distortion"]), []).append(r)
    for (o, dist), rows in groups.items():
        final = next(r for r in rows if r["method"] == "final-exit")
        sent = any("offload_bytes" in r for r in rows)  # a bytes-priced evaluation
        head = (
            "| method | accuracy % | drop (pts) | cost | cost reduction % | offloaded % | regret |"
        )
        lines += [
            f"## {dist} (o = {o})",
            "",
            head + (" bytes sent / frame |" if sent else ""),
            "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if sent else ""),
        ]
        for r in rows:
            drop = 100 * (final["accuracy"] - r["accuracy"])
            regret = r["regret"]
            reg = "–" if regret is None or math.isnan(regret) else f"{regret:.1f}"
            tail = f" {r.get('offload_bytes', '–')} |" if sent else ""
            lines.append(
                f"| {r['method']} | {_pct(r['accuracy'])} | {drop:.2f} | {r['cost']:.3f} | "
                f"{_pct(r['cost_reduction'])} | {_pct(r['offload_fraction'])} | {reg} |" + tail
            )
        lines.append("")
    if "replay" in summary:
        rp = summary["replay"]
        lines.append(
            f"Replay: {rp['policy_steps']:,} policy steps in {rp['seconds']} s "
            f"({rp['steps_per_second']:,} steps/s)."
        )
    return "\n".join(lines) + "\n"


def _grid(n: int) -> tuple[plt.Figure, list]:
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[n:]:
        a.axis("off")
    return fig, flat


def plot_regret(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Mean cumulative regret over the stream, one panel per distortion."""
    if not curves:
        return
    fig, axes = _grid(len(curves))
    for ax, (dist, methods) in zip(axes, curves.items(), strict=False):
        for name, curve in methods.items():
            if name == "random":
                continue
            ax.plot(range(1, len(curve) + 1), curve, label=name)
        ax.set_title(dist)
        ax.set_xlabel("frames")
        ax.set_ylabel("cumulative regret")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy_cost(summary: dict, path: Path) -> None:
    """Accuracy against cost, one point per method, one panel per distortion."""
    o0 = (summary["settings"].get("sweep_o") or [summary["settings"]["offload_cost"]])[0]
    by: dict[str, list[dict]] = {}
    for r in summary["results"]:
        if r.get("offload_cost", o0) == o0:
            by.setdefault(r["distortion"], []).append(r)
    fig, axes = _grid(len(by))
    for ax, (dist, rows) in zip(axes, by.items(), strict=False):
        for r in rows:
            fixed = r["method"].startswith("fixed-")
            ax.scatter(
                r["cost"],
                100 * r["accuracy"],
                s=14 if fixed else 40,
                c="lightgray" if fixed else None,
                marker="o" if fixed else "D",
                label=None if fixed else r["method"],
                zorder=1 if fixed else 3,
            )
            if fixed:
                ax.annotate(r["method"].split("-")[1], (r["cost"], 100 * r["accuracy"]), fontsize=6)
        ax.set_title(dist)
        ax.set_xlabel("mean cost per frame")
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(summary: dict, path: Path) -> None:
    """Accuracy and cost reduction of the headline methods as the offload cost o varies."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for method in HEADLINE:
        pts = sorted(
            (r["offload_cost"], r["accuracy"], r["cost_reduction"])
            for r in summary["results"]
            if r["method"] == method and r["distortion"] == "pristine"
        )
        if not pts:
            continue
        o, acc, red = zip(*pts, strict=True)
        a1.plot(o, [100 * a for a in acc], marker="o", label=method)
        a2.plot(o, [100 * r for r in red], marker="o", label=method)
    a1.set_xlabel("offload cost o")
    a1.set_ylabel("accuracy % (pristine)")
    a2.set_xlabel("offload cost o")
    a2.set_ylabel("cost reduction % (pristine)")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    a1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
