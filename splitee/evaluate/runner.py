"""``splitee evaluate``: exit outputs once per distortion, then every method replayed over them."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from policy_store.offline import random_orders, replay
from policy_store.policies import UCB1, ISplitEE
from policy_store.rewards import CostModel
from splitee.data import Dataset
from splitee.distortions import Distortion
from splitee.evaluate.methods import (
    MethodResult,
    Setting,
    best_fixed,
    cloud_only,
    edge_only,
    fixed_arm,
    score_arms,
)
from splitee.evaluate.outputs import ExitOutputs, exit_outputs
from splitee.files import sha256_file

if TYPE_CHECKING:
    from splitee.settings import Settings

# The bandit methods: (name, policy class, side-observation variant)
BANDITS = (
    ("splitee-ucb1", UCB1, "online"),
    ("isplitee-online", ISplitEE, "online"),
    ("isplitee-full", ISplitEE, "full"),
)


@dataclass(kw_only=True)
class EvalConfig:
    """What ``splitee evaluate`` replays. The fields without a default come from the settings
    (:meth:`from_settings`), so their defaults live there alone."""

    gamma: float
    mu: float
    alpha: float
    offload_cost: float
    beta: float
    runs: int
    seed: int
    distortions: list[str]
    sweep_o: list[float] = field(default_factory=list)
    alpha_grid: list[float] = field(default_factory=list)  # non-empty: learn (arm, α) too

    @classmethod
    def from_settings(cls, s: Settings, checkpoint: Path | None = None, **given: Any) -> EvalConfig:
        """The policy and eval settings, overridden by ``given`` (what the user gave); α is
        the checkpoint's own unless policy.alpha or ``given`` sets it; policy.alpha_grid adds
        the (arm, α) pair methods, as the workers would learn them."""
        from splitee import policy_setup

        p = s.policy
        values: dict[str, Any] = {
            "gamma": p.gamma,
            "mu": p.mu,
            "offload_cost": p.offload_cost,
            "beta": p.beta,
            "runs": s.eval.runs,
            "seed": p.seed,
            "distortions": list(s.eval.distortions),
            "alpha_grid": list(p.alpha_grid),  # the workers' (arm, α) pairs, when they learn α
            **given,
        }
        if "alpha" not in values:
            values["alpha"] = policy_setup.alpha(s, checkpoint)
        return cls(**values)


@dataclass
class SettingOutputs:
    """One setting's exit outputs and labels, from the model or from a recording."""

    distortion: Distortion
    outputs: ExitOutputs
    labels: np.ndarray
    cloud: ExitOutputs | None = None  # the cloud's answer per offloaded arm (a codec)
    offload_bytes: np.ndarray | None = None  # (N, L) bytes of an offload at each arm
    name: str | None = None  # the setting's name in the tables (default: the distortion's)


def runs_fused(images: np.ndarray) -> bool:
    """Whether :func:`model_outputs` runs these frames with BatchNorm folded (as the workers
    do) in batches of 32: real-size frames; small ones unfused in batches of 500."""
    return images.shape[1] > 64


def model_outputs(
    model_path: Path, dataset: Dataset, distortions: list[str], seed: int, cache_dir: Path | None
) -> tuple[list[SettingOutputs], dict]:
    """Run the model once per distortion (cached) and describe the model for the summary."""
    from splitee.models import load_checkpoint
    from splitee.models.checkpoint import load_card

    model = load_checkpoint(model_path)
    digest = sha256_file(model_path)
    big = runs_fused(dataset.images)
    if big:
        model.fuse_for_inference()
    out = []
    for spec in tqdm(distortions, desc="exit outputs", unit="setting"):
        d = Distortion.parse(spec)
        o = exit_outputs(
            model, dataset.images, d, seed, cache_dir, digest, batch_size=32 if big else 500
        )
        out.append(SettingOutputs(d, o, dataset.labels))
    card = load_card(model_path)
    info = {
        "checkpoint": str(model_path),
        "sha256": digest,
        "arch": model.arch,
        "exit_depths": model.exit_depths,
        "final_exit_accuracy": card.get("final_exit_accuracy"),
        "frames": len(dataset),
        "data": dataset.source,
    }
    return out, info


def evaluate_setting(
    setting: Setting, orders: np.ndarray, cfg: EvalConfig, replays: dict[str, np.ndarray]
) -> list[MethodResult]:
    """Every method on one setting; ``replays`` holds each bandit's (R, T) arms."""
    L = setting.cost_model.num_arms
    results = [score_arms(name, setting, arms, orders) for name, arms in replays.items()]
    results.append(best_fixed(setting)[1])
    rng = np.random.default_rng(cfg.seed + 1)
    results.append(score_arms("random", setting, rng.integers(0, L, orders.shape), orders))
    results.append(fixed_arm(setting, L - 1, "final-exit"))
    results.append(edge_only(setting))
    results.append(cloud_only(setting))
    results.extend(fixed_arm(setting, k) for k in range(L))
    return results


def run_evaluation(
    settings_outputs: list[SettingOutputs],
    depths: list[int],
    cfg: EvalConfig,
    bandits: list[str] | None = None,
    cost_args: dict | None = None,
    orders: np.ndarray | None = None,
) -> dict:
    """Replay and score every method; returns the summary dict (plus curves for plotting).

    ``bandits`` names the bandit methods of :data:`BANDITS` to replay (default: all), for an
    A/B of chosen policies (``splitee replay --offline``); the baselines are always scored.
    ``cost_args``: further CostModel fields (measured ``relative_cost``, ``offload_scale``).
    ``orders``: the (runs, N) stream orders to replay (default: ``cfg.runs`` random ones), e.g.
    a recording's own order.
    """
    known = [name for name, _, _ in BANDITS]
    unknown = set(bandits or ()) - set(known)
    if unknown:
        raise ValueError(f"unknown bandit methods {sorted(unknown)}; known: {known}")
    n = len(settings_outputs[0].labels)
    if orders is None:
        orders = random_orders(n, cfg.runs, cfg.seed)
    rows: list[dict] = []
    curves: dict[str, dict[str, list[float]]] = {}
    arm_use: dict[str, dict[str, list[float]]] = {}
    steps, seconds = 0, 0.0
    for o in cfg.sweep_o or [cfg.offload_cost]:
        cm = CostModel(depths, cfg.gamma, cfg.mu, cfg.alpha, o, **(cost_args or {}))
        settings = [
            Setting(
                so.name or str(so.distortion),
                so.distortion.level,
                so.outputs,
                so.labels,
                cm,
                cloud=so.cloud,
                offload_bytes=so.offload_bytes,
            )
            for so in settings_outputs
        ]
        rewards = np.stack([s.rewards for s in settings])
        exits = np.stack([s.exits for s in settings])
        replays: dict[str, np.ndarray] = {}
        for name, cls, side in BANDITS:
            if bandits is not None and name not in bandits:
                continue
            t0 = time.perf_counter()
            res = replay(cls(beta=cfg.beta), rewards, exits, orders, side)
            seconds += time.perf_counter() - t0
            steps += res.steps
            replays[name] = res.arms
        extra: list[list[MethodResult]] = [[] for _ in settings]
        if cfg.alpha_grid:
            from splitee.evaluate.thresholds import threshold_methods

            extra = threshold_methods(settings, cfg.alpha_grid, orders, cfg.beta)
        for i, setting in enumerate(settings):
            per = {k: v[i] for k, v in replays.items()}
            for r in [*evaluate_setting(setting, orders, cfg, per), *extra[i]]:
                row = r.row(setting)
                row["offload_cost"] = o
                rows.append(row)
                if o == (cfg.sweep_o or [cfg.offload_cost])[0] and r.regret_curve is not None:
                    curves.setdefault(setting.name, {})[r.method] = r.regret_curve.tolist()
                    arm_use.setdefault(setting.name, {})[r.method] = r.arm_counts.tolist()
    return {
        "settings": asdict(cfg),
        "results": rows,
        "replay": {
            "policy_steps": steps,
            "seconds": round(seconds, 3),
            "steps_per_second": round(steps / seconds) if seconds else None,
        },
        "_curves": curves,
        "_arm_use": arm_use,
    }


def write_outputs(summary: dict, out_dir: Path) -> None:
    """summary.json, table.md and the PNG plots."""
    from splitee.evaluate.plots import plot_accuracy_cost, plot_regret, plot_sweep, table_md

    out_dir.mkdir(parents=True, exist_ok=True)
    curves = summary.pop("_curves", {})
    arm_use = summary.pop("_arm_use", {})
    summary["arm_use"] = arm_use
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / "table.md").write_text(table_md(summary))
    plot_regret(curves, out_dir / "regret.png")
    plot_accuracy_cost(summary, out_dir / "accuracy_cost.png")
    if len(summary["settings"].get("sweep_o") or []) > 1:
        plot_sweep(summary, out_dir / "sweep_o.png")
