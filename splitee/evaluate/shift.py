"""The shift experiment: streams whose distortion changes every N frames, per camera.

Each camera's stream runs through the same phases (pristine → noise → blur → dark → pristine
by default), camera ``c`` starting ``c`` phases later, so at any moment the cameras see
different conditions. Frames of each phase are drawn at random from the test set. Every policy
runs twice: one **global** policy over the interleaved stream of all cameras, and one policy
**per camera**. Per phase the report gives accuracy, cost, cost reduction and accuracy drop
against the final exit, and regret against the best fixed arm *of that phase* (in hindsight).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from policy_store.offline import replay
from policy_store.policies import Policy, make_policy
from policy_store.rewards import CostModel
from splitee.evaluate.outputs import ExitOutputs

if TYPE_CHECKING:
    from splitee.settings import Settings

DEFAULT_PHASES = ("pristine", "noise:0.1", "blur:1.0", "brightness:0.4", "pristine")


@dataclass(frozen=True, kw_only=True)
class ShiftConfig:
    """The shift experiment. The fields without a default come from the policy settings
    (:meth:`from_settings`), so their defaults live there alone."""

    seed: int
    discount: float
    window: int
    beta: float
    phases: tuple[str, ...] = DEFAULT_PHASES
    phase_frames: int = 1000
    cameras: int = 2
    runs: int = 5
    policies: tuple[str, ...] = ("ucb1", "isplitee", "ducb", "swucb")

    @classmethod
    def from_settings(cls, s: Settings, **given: Any) -> ShiftConfig:
        """The policy settings, overridden by ``given`` (what the user gave)."""
        p = s.policy
        values = {"seed": p.seed, "discount": p.discount, "window": p.window, "beta": p.beta}
        return cls(**{**values, **given})


@dataclass
class Streams:
    """Per run and camera: each frame's distortion phase and test-set index."""

    phase: np.ndarray  # (runs, cameras, T) phase position 0..P-1
    index: np.ndarray  # (runs, cameras, T) frame index in the test set

    @property
    def frames(self) -> int:
        return self.phase.shape[-1]


def make_streams(n_test: int, cfg: ShiftConfig) -> Streams:
    P, N = len(cfg.phases), cfg.phase_frames
    rng = np.random.default_rng(cfg.seed)
    phase = np.empty((cfg.runs, cfg.cameras, P * N), dtype=np.int64)
    index = rng.integers(0, n_test, size=phase.shape)
    for c in range(cfg.cameras):
        order = [(p + c) % P for p in range(P)]
        phase[:, c] = np.repeat(order, N)
    return Streams(phase, index)


def _matrices(streams: Streams, outputs: dict[str, ExitOutputs], labels, cfg, cm: CostModel):
    """(runs, cameras, T, L) reward, exit mask, correctness and cost of every arm."""
    shape = (*streams.phase.shape, cm.num_arms)
    rew, ex, ok, cost = (
        np.empty(shape),
        np.empty(shape, bool),
        np.empty(shape, bool),
        np.empty(shape),
    )
    for p, spec in enumerate(cfg.phases):
        sel = streams.phase == p
        idx = streams.index[sel]
        o = outputs[spec]
        conf = o.confidence[idx].astype(np.float64)
        exits = cm.exits_at(conf)
        edge_ok = o.prediction[idx] == labels[idx][:, None]
        rew[sel] = cm.reward_matrix(conf)
        ex[sel] = exits
        ok[sel] = np.where(exits, edge_ok, edge_ok[:, -1:])
        cost[sel] = cm.cost_matrix(conf)
    return rew, ex, ok, cost


def run_policy(policy: Policy, rew: np.ndarray, ex: np.ndarray, scope: str) -> np.ndarray:
    """Chosen arms (runs, cameras, T), one global policy or one per camera."""
    R, C, T, L = rew.shape
    if scope == "camera":
        flat_r = rew.reshape(R * C, T, L)
        flat_e = ex.reshape(R * C, T, L)
        arms = replay(policy, flat_r, flat_e, np.arange(T)[None]).arms[:, 0]
        return arms.reshape(R, C, T)
    # global: cameras interleaved frame by frame into one stream per run
    inter_r = rew.transpose(0, 2, 1, 3).reshape(R, T * C, L)
    inter_e = ex.transpose(0, 2, 1, 3).reshape(R, T * C, L)
    arms = replay(policy, inter_r, inter_e, np.arange(T * C)[None]).arms[:, 0]
    return arms.reshape(R, T, C).transpose(0, 2, 1)


def phase_table(arms, rew, ok, cost, streams: Streams, cfg: ShiftConfig, cm: CostModel):
    """Per phase (distortion): accuracy, cost, reduction, drop vs final, regret vs phase best."""
    take = lambda m: np.take_along_axis(m, arms[..., None].astype(np.intp), -1)[..., 0]  # noqa: E731
    got_ok, got_cost, got_rew = take(ok), take(cost), take(rew)
    rows = []
    for p, spec in enumerate(cfg.phases):
        sel = streams.phase == p  # (R, C, T)
        # regret against the best fixed arm of each (run, camera) segment of this phase
        seg_best = np.where(sel[..., None], rew, 0).sum(2).max(-1)  # (R, C)
        regret = float((seg_best - np.where(sel, got_rew, 0).sum(2)).mean())
        final_acc = float(ok[..., -1][sel].mean())
        acc = float(got_ok[sel].mean())
        c = float(got_cost[sel].mean())
        rows.append(
            {
                "phase": p,
                "distortion": spec,
                "accuracy": round(acc, 4),
                "final_exit_accuracy": round(final_acc, 4),
                "accuracy_drop": round(final_acc - acc, 4),
                "cost": round(c, 4),
                "cost_reduction": round(1 - c / cm.final_cost, 4),
                "regret": round(regret, 2),
            }
        )
    return rows


def shift_experiment(
    outputs: dict[str, ExitOutputs],
    labels: np.ndarray,
    depths: list[int],
    cm_args: dict,
    cfg: ShiftConfig,
) -> dict:
    cm = CostModel(depths, **cm_args)
    streams = make_streams(len(labels), cfg)
    rew, ex, ok, cost = _matrices(streams, outputs, labels, cfg, cm)
    results, traces = [], {}
    for name in cfg.policies:
        for scope in ("global", "camera"):
            pol = make_policy(name, cfg.beta, cfg.discount, cfg.window)
            arms = run_policy(pol, rew, ex, scope)
            method = f"{name}/{scope}"
            for row in phase_table(arms, rew, ok, cost, streams, cfg, cm):
                results.append({"method": method, **row})
            traces[method] = arms[0, 0].tolist()  # run 0, camera 1
    final = np.full(streams.phase.shape, cm.num_arms - 1)
    for row in phase_table(final, rew, ok, cost, streams, cfg, cm):
        results.append({"method": "final-exit", **row})
    return {"settings": {**cfg.__dict__, **cm_args}, "results": results, "_traces": traces}


def write_shift(summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    traces = summary.pop("_traces")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "table.md").write_text(shift_markdown(summary))
    plot_arms(traces, summary["settings"], out / "arms_over_time.png")
    plot_phase_regret(summary, out / "phase_regret.png")


def shift_markdown(summary: dict) -> str:
    s = summary["settings"]
    lines = [
        "# Shift experiment",
        "",
        f"Phases {' → '.join(s['phases'])}, {s['phase_frames']} frames each, {s['cameras']} "
        f"cameras (camera c starts c phases later), {s['runs']} runs; γ={s['gamma']}, "
        f"μ={s['mu']}, α={s['alpha']}, o={s['offload_cost']}, β={s['beta']}; D-UCB discount "
        f"{s['discount']}, SW-UCB window {s['window']}. Drop: accuracy points below the final "
        "exit on the same frames. Regret: against the best fixed arm of each phase segment.",
        "",
        "| method | phase | accuracy % | drop (pts) | cost reduction % | regret |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in summary["results"]:
        phase = f"{r['phase'] + 1}: {r['distortion']}"
        lines.append(
            f"| {r['method']} | {phase} | {100 * r['accuracy']:.2f} | "
            f"{100 * r['accuracy_drop']:.2f} | {100 * r['cost_reduction']:.2f} | "
            f"{r['regret']:.1f} |"
        )
    totals: dict[str, float] = {}
    for r in summary["results"]:
        totals[r["method"]] = totals.get(r["method"], 0.0) + r["regret"]
    lines += ["", "| method | total regret (mean per camera stream) |", "|---|---:|"]
    lines += [f"| {m} | {v:.1f} |" for m, v in sorted(totals.items(), key=lambda kv: kv[1])]
    return "\n".join(lines) + "\n"


def plot_arms(traces: dict[str, list[int]], s: dict, path: Path) -> None:
    """Arm chosen over time (moving average over 100 frames) for camera 1, run 1."""
    names = sorted(traces)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.4 * len(names) + 1), sharex=True)
    n = s["phase_frames"]
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        a = np.asarray(traces[name]) + 1
        ax.plot(a, ",", alpha=0.3, color="gray")
        ax.plot(np.convolve(a, np.ones(100) / 100, mode="same"), color="C0")
        for p in range(1, len(s["phases"])):
            ax.axvline(p * n, color="red", lw=0.8)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        ax.set_ylim(0.5, 9.5)
    np.atleast_1d(axes)[0].set_title("arm chosen (camera 1, run 1; red: distortion changes)")
    np.atleast_1d(axes)[-1].set_xlabel("frame of camera 1")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_phase_regret(summary: dict, path: Path) -> None:
    rows = summary["results"]
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "final-exit"]
    phases = summary["settings"]["phases"]
    fig, ax = plt.subplots(figsize=(11, 4))
    w = 0.8 / len(methods)
    for i, m in enumerate(methods):
        vals = [r["regret"] for r in rows if r["method"] == m]
        ax.bar(np.arange(len(phases)) + i * w, vals, w, label=m)
    ax.set_xticks(np.arange(len(phases)) + 0.4 - w / 2)
    ax.set_xticklabels([f"{i + 1}: {p}" for i, p in enumerate(phases)])
    ax.set_ylabel("regret vs best arm of the phase")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
