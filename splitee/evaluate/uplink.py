"""What bench/uplink.py measures on a shaped edge uplink, as pure functions of what it read.

The benchmark drives servers and namespaces; the numbers it reports come from here, so they
can be tested without either: the bytes the kernel counted on the shaped interface (``tc -s
qdisc``), whether a consumer group's lag grows, and for the link-change experiment the frames
a policy needs to settle on each phase's best arm, its regret against that arm, and the figure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

_SENT = re.compile(r"Sent (\d+) bytes (\d+) pkt(?: \(dropped (\d+), overlimits (\d+))?")


def qdisc_counters(text: str) -> dict[str, int]:
    """Bytes, packets and drops of the root qdisc from ``tc -s qdisc show dev IF``.

    >>> qdisc_counters(" qdisc tbf 8001: root refcnt 2 rate 2Mbit burst 32Kb lat 200ms\\n"
    ...                "  Sent 1234 bytes 12 pkt (dropped 1, overlimits 3 requeues 0)")
    {'bytes': 1234, 'packets': 12, 'dropped': 1}
    """
    m = _SENT.search(text)
    if m is None:
        raise ValueError(f"no 'Sent N bytes' line in tc output: {text[:200]!r}")
    return {"bytes": int(m[1]), "packets": int(m[2]), "dropped": int(m[3] or 0)}


def lag_slope(samples: Sequence[tuple[float, float]], skip: float = 0.25) -> float:
    """Lag growth in messages per second: the least-squares slope of (time, lag) after the
    first ``skip`` of the samples (workers warming up, the first batches in flight).

    >>> abs(lag_slope([(t, 5.0) for t in range(20)])) < 1e-9
    True
    >>> round(lag_slope([(t, 3.0 * t) for t in range(20)]), 6)
    3.0
    """
    if len(samples) < 3:
        return 0.0
    arr = np.asarray(samples[int(len(samples) * skip) :], dtype=np.float64)
    if len(arr) < 2 or np.ptp(arr[:, 0]) == 0:
        return 0.0
    return float(np.polyfit(arr[:, 0], arr[:, 1], 1)[0])


def keeps_up(slope: float, offered_fps: float, batch: int, final_lag: float) -> bool:
    """Lag flat: it grows by less than 5 % of the offered rate (and 0.5 frames/s), or what is
    left at the end fits in one batch."""
    return slope <= max(0.5, 0.05 * offered_fps) or final_lag <= batch


def phase_of(ts: np.ndarray, changes: Sequence[float]) -> np.ndarray:
    """Index of the link phase each time falls in (``changes``: the times the rate changed).

    >>> phase_of(np.array([0.0, 5.0, 10.0, 15.0]), [5.0, 12.0]).tolist()
    [0, 1, 1, 2]
    """
    return np.searchsorted(np.asarray(changes, dtype=np.float64), ts, side="right")


def arm_means(arms: np.ndarray, rewards: np.ndarray, min_pulls: int = 10) -> dict[int, float]:
    """Each arm's mean reward, among the arms pulled at least ``min_pulls`` times."""
    u, n = np.unique(arms, return_counts=True)
    return {
        int(a): float(rewards[arms == a].mean())
        for a, c in zip(u, n, strict=True)
        if c >= min_pulls
    }


def best_arm(arms: np.ndarray, rewards: np.ndarray, min_pulls: int = 10) -> tuple[int, float]:
    """The arm with the highest mean reward among those pulled at least ``min_pulls`` times
    (all of them when none is), and that mean: the best fixed arm as the results show it."""
    means = arm_means(arms, rewards, min_pulls) or arm_means(arms, rewards, 1)
    a = max(means, key=means.__getitem__)
    return a, means[a]


def settle_frames(arms: np.ndarray, best: int, window: int = 100, share: float = 0.8) -> int | None:
    """Frames after a change until the policy has settled on ``best``: the first frame from
    which ``share`` of the next ``window`` choices are ``best`` (None: never in the phase).

    >>> settle_frames(np.array([0] * 30 + [2] * 200), 2, window=50)
    20
    """
    hit = (np.asarray(arms) == best).astype(np.float64)
    w = min(window, len(hit))
    if w == 0:
        return None
    ok = np.convolve(hit, np.ones(w), mode="valid") / w >= share
    idx = np.flatnonzero(ok)
    return int(idx[0]) if len(idx) else None


def rewards_at_link(
    conf: np.ndarray,
    arms: np.ndarray,
    offloaded: np.ndarray,
    compute_cost: np.ndarray,
    offload_cost: np.ndarray,
    mu: float = 1.0,
) -> np.ndarray:
    """Each frame's reward priced at the link's true rate in its phase: ``C − μλ_k`` for a
    frame that exited at arm k, ``C_L − μ(λ_k + o)`` for an offloaded one, with ``o`` its own
    offload cost (``offload_cost[i]``: the latency pricing of the bytes it sent at its phase's
    rate). ``conf`` is the confidence the result reports (C_k at the edge, C_L from the cloud).
    What the policy saw was priced at its measured rate instead; this is what the link cost.

    >>> rewards_at_link(np.array([0.9, 0.8]), np.array([0, 1]), np.array([True, False]),
    ...                 np.array([0.0, 0.2]), np.array([2.5, 0.3])).round(2).tolist()
    [-1.6, 0.6]
    """
    lam = np.asarray(compute_cost, dtype=np.float64)[arms]
    o = np.asarray(offload_cost, dtype=np.float64)
    return np.asarray(conf, dtype=np.float64) - mu * (lam + np.where(offloaded, o, 0.0))


def link_change_summary(
    ts: np.ndarray,
    arms: np.ndarray,
    rewards: np.ndarray,
    changes: Sequence[float],
    rates: Sequence[float],
    min_pulls: int = 10,
) -> list[dict]:
    """Per link phase: its rate, frames, the best fixed arm (by the results' own rewards,
    confidence − μ·cost as the policy saw them), frames to settle on it, the regret against it
    (Σ best mean − reward), the arms chosen and their mean rewards; where the best arm changed,
    also the frames until the policy left the previous phase's best arm (``leave_frames``:
    from then on at most a fifth of every 100 choices are that arm) — a policy that moves at
    once but then shares its pulls between two arms of nearly equal reward settles late by the
    80 % rule.
    Arms are 1-based, as in every table."""
    order = np.argsort(ts)
    ts, arms, rewards = ts[order], arms[order], rewards[order]
    ph = phase_of(ts, changes)
    out: list[dict] = []
    previous = None  # the best arm of the phase before (0-based)
    for i, rate in enumerate(rates):
        sel = ph == i
        if not sel.any():
            out.append({"phase": i, "mbit": rate, "frames": 0})
            continue
        a, r = arms[sel], rewards[sel]
        b, mean = best_arm(a, r, min_pulls)
        u, n = np.unique(a, return_counts=True)
        out.append(
            {
                "phase": i,
                "mbit": rate,
                "frames": int(sel.sum()),
                "best_arm": b + 1,
                "settle_frames": settle_frames(a, b),
                "regret": round(float(np.sum(mean - r)), 2),
                "regret_per_frame": round(float(np.mean(mean - r)), 4),
                "arms": {str(int(x) + 1): int(c) for x, c in zip(u, n, strict=True)},
                # each arm's mean reward where it was pulled enough to say (how close the
                # runner-up is to the best: a policy shares its pulls between near equals)
                "arm_means": {
                    str(x + 1): round(m, 3) for x, m in arm_means(a, r, min_pulls).items()
                },
            }
        )
        if previous is not None and previous != b:
            out[-1]["leave_frames"] = settle_frames((a != previous).astype(np.int64), 1)
        previous = b
    return out


def plot_link_change(traces: dict[str, dict], path: Path) -> None:
    """Arm chosen over capture time per policy (dots, and a 50-frame moving average), with
    the link's rate phases shaded and the cloud's measured rate (red, right axis) when the
    trace has it: the figure of docs/uplink/."""
    names = sorted(traces)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.8 * len(names) + 1), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        tr = traces[name]
        t0 = tr["start"]
        t = np.asarray(tr["ts"]) - t0
        a = np.asarray(tr["arms"]) + 1
        ax.plot(t, a, ".", ms=2, alpha=0.3, color="gray")
        if len(a) >= 50:
            ax.plot(t[49:], np.convolve(a, np.ones(50) / 50, mode="valid"), color="C0")
        edges = [0.0, *[c - t0 for c in tr["changes"]], float(t.max()) if len(t) else 1.0]
        for i, rate in enumerate(tr["rates"]):
            ax.axvspan(edges[i], edges[i + 1], color="C1", alpha=0.08 if i % 2 else 0.18, lw=0)
            ax.text(edges[i], ax.get_ylim()[1], f" {rate:g} Mbit/s", va="top", fontsize=7)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        ax.set_ylim(0.5, max(int(a.max()) if len(a) else 1, tr.get("num_arms", 6)) + 0.5)
        if tr.get("measured"):  # the cloud's estimate of the link, what priced the rewards
            m = np.asarray(tr["measured"], dtype=np.float64)
            rax = ax.twinx()
            rax.plot(m[:, 0] - t0, m[:, 1] / 1e6, color="C3", lw=1)
            rax.set_ylabel("measured Mbit/s", color="C3", fontsize=7)
            rax.set_ylim(0, max(tr["rates"]) * 1.6)
    axes[0, 0].set_title("arm chosen over time (shaded: uplink rate phases, tc change)")
    axes[-1, 0].set_xlabel("capture time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_comparison(rows: list[dict], path: Path) -> None:
    """p50/p99 capture-to-result and uplink bytes per frame, per policy and link rate; a
    learning policy's cold run (``cold``: fresh, exploring) beside its warm one, as "c cold"."""
    cold = [{**r["cold"], "policy": f"{r['policy']} cold", "mbit": r["mbit"]}
            for r in rows if r.get("cold")]  # fmt: skip
    rows = [*rows, *cold]
    rates = sorted({r["mbit"] for r in rows})
    pols = list(dict.fromkeys(r["policy"] for r in rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    w = 0.8 / max(1, len(pols))
    for j, pol in enumerate(pols):
        x = np.arange(len(rates)) + j * w
        get = {r["mbit"]: r for r in rows if r["policy"] == pol}
        p50 = [get[m].get("p50_ms", np.nan) if m in get else np.nan for m in rates]
        p99 = [get[m].get("p99_ms", np.nan) if m in get else np.nan for m in rates]
        kb = [get[m].get("uplink_bytes_per_frame", np.nan) / 1000 if m in get else np.nan
              for m in rates]  # fmt: skip
        ax1.bar(x, p99, w, color=f"C{j}", alpha=0.35)
        ax1.bar(x, p50, w, color=f"C{j}", label=pol)
        ax2.bar(x, kb, w, color=f"C{j}", label=pol)
    for ax in (ax1, ax2):
        ax.set_xticks(np.arange(len(rates)) + 0.4 - w / 2, [f"{m:g} Mbit/s" for m in rates])
    ax1.set_ylabel("capture to result (ms): p50 solid, p99 light")
    ax1.set_yscale("log")
    ax2.set_ylabel("uplink kB per frame (tc)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
