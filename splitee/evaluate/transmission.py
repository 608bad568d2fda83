"""``splitee evaluate-channel``: transmission decisions over a noisy link, offline.

For one split arm the prefix and the exit run once per frame; the suffix then runs on the
channel-corrupted features for every SNR. Frames are split (seeded) into a **fit** part, on
which the SNR-threshold table and the learned classifier are fitted, and a disjoint **scored**
part, on which every TD mechanism is scored. Labels are used only offline, to fit and to score.

SNR per frame: the nominal SNR (``fading="none"``, AWGN) or block Rayleigh fading around it,
one block per frame (``fading="rayleigh"``). The transmitter knows the SNR of the frame's slot
when it decides (channel-state information at the transmitter) **(ours)**. A frame the digital
link drops (outage after its retries) keeps the edge prediction; its channel uses still count.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from splitee.data import Dataset
from splitee.link import BlockRayleigh, ConstantSNR, analog, digital
from splitee.models.inputs import to_input
from splitee.td import (
    AlphaRule,
    Always,
    Learned,
    Never,
    Oracle,
    SNRThreshold,
    TDInputs,
    TDMechanism,
)

if TYPE_CHECKING:
    from splitee.settings import Settings

MECHANISMS = (
    "always-transmit",
    "never-transmit",
    "channel-blind",
    "snr-threshold",
    "learned",
    "oracle",
)


@dataclass(kw_only=True)
class ChannelEvalConfig:
    """What ``splitee evaluate-channel`` scores. The fields without a default come from the
    channel and policy settings (:meth:`from_settings`), so their defaults live there alone."""

    arm: int  # 1-based split arm
    mode: str  # analog | digital
    alpha: float  # the channel-blind threshold
    penalty: float  # fitting maximises accuracy − penalty · fraction transmitted
    bits: int
    outage_snr_db: float
    retries: int
    symbol_rate: float
    snrs: list[float] = field(default_factory=lambda: [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0])
    fading: str = "none"  # none | rayleigh
    fit_frames: int = 1000  # held-out frames the TDs are fitted on (never scored)
    seed: int = 0
    batch_size: int = 250

    @classmethod
    def from_settings(
        cls, s: Settings, checkpoint: Path | None = None, **given: Any
    ) -> ChannelEvalConfig:
        """The channel settings, overridden by ``given``; α is the checkpoint's own unless
        policy.alpha or ``given`` sets it."""
        from splitee import policy_setup

        ch = s.channel
        values: dict[str, Any] = {
            "arm": ch.arm,
            "mode": ch.mode,
            "penalty": ch.td_penalty,
            "bits": ch.bits,
            "outage_snr_db": ch.outage_snr_db,
            "retries": ch.retries,
            "symbol_rate": ch.symbol_rate,
            **given,
        }
        if "alpha" not in values:
            values["alpha"] = policy_setup.alpha(s, checkpoint)
        return cls(**values)


@dataclass
class FrameOutcomes:
    """Per frame (N,) edge outcome and, per SNR (S, N), what the link and the cloud gave."""

    probs: np.ndarray  # (N, classes) edge exit softmax
    edge_correct: np.ndarray  # (N,)
    clean_server_correct: np.ndarray  # (N,) suffix on pristine features
    snr_db: np.ndarray  # (S, N) per-frame SNR
    server_correct: np.ndarray  # (S, N) what transmitting yields (edge's if dropped)
    delivered: np.ndarray  # (S, N)
    bytes: np.ndarray  # (S, N)
    channel_uses: np.ndarray  # (S, N)
    seconds: np.ndarray  # (S, N)


def _frame_snrs(cfg: ChannelEvalConfig, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, N) SNR of each frame's first attempt and (S, N, retries) of its retries."""
    first, retry = [], []
    for i, s in enumerate(cfg.snrs):
        if cfg.fading == "rayleigh":
            proc = BlockRayleigh(s, 1, seed=cfg.seed * 1000 + i)
            seq = proc.snr_db_array(n * (1 + cfg.retries))
            first.append(seq[:n])
            retry.append(seq[n:].reshape(cfg.retries, n).T if cfg.retries else np.zeros((n, 0)))
        elif cfg.fading == "none":
            first.append(ConstantSNR(s).snr_db_array(n))
            retry.append(np.full((n, cfg.retries), float(s)))
        else:
            raise ValueError(f"fading must be 'none' or 'rayleigh', not {cfg.fading!r}")
    return np.stack(first), np.stack(retry)


@torch.inference_mode()
def frame_outcomes(model: torch.nn.Module, data: Dataset, cfg: ChannelEvalConfig) -> FrameOutcomes:
    """Prefix and exit once, then the channel and the suffix per SNR, batch by batch."""
    if cfg.mode not in ("analog", "digital"):
        raise ValueError(f"mode must be 'analog' or 'digital', not {cfg.mode!r}")
    model.eval()
    k = cfg.arm - 1
    if not 0 <= k < model.num_exits - 1:  # type: ignore[operator]
        raise ValueError(f"arm must lie in 1..{model.num_exits - 1} (the last arm never sends)")
    n, S = len(data), len(cfg.snrs)
    labels = torch.from_numpy(data.labels)
    snr, retry = _frame_snrs(cfg, n)
    probs, clean = [], []
    server = np.zeros((S, n), bool)
    delivered = np.ones((S, n), bool)
    nbytes, uses, secs = (np.zeros((S, n)) for _ in range(3))
    gen = torch.Generator().manual_seed(cfg.seed)
    for s0 in range(0, n, cfg.batch_size):
        sl = slice(s0, min(n, s0 + cfg.batch_size))
        y = labels[sl]
        h = model.prefix(to_input(data.images[sl]), k)  # type: ignore[operator]
        probs.append(model.exit_logits(h, k).float().softmax(1).numpy())  # type: ignore[operator]
        clean_pred = model.suffix(h, k).argmax(1)  # type: ignore[operator]
        clean.append((clean_pred == y).numpy())
        if cfg.mode == "digital":
            qpred = None
        for i in range(S):
            if cfg.mode == "analog":
                rx, info = analog(h, snr[i, sl], gen, cfg.symbol_rate)
                pred = model.suffix(rx, k).argmax(1)  # type: ignore[operator]
            else:
                rx, info = digital(
                    h,
                    snr[i, sl],
                    cfg.bits,
                    cfg.outage_snr_db,
                    cfg.retries,
                    cfg.symbol_rate,
                    retry[i, sl],
                )
                if qpred is None:  # error-free when delivered: the same for every SNR
                    qpred = model.suffix(rx, k).argmax(1)  # type: ignore[operator]
                pred = qpred
            server[i, sl] = (pred == y).numpy()
            delivered[i, sl] = [t.delivered for t in info]
            nbytes[i, sl] = [t.bytes for t in info]
            uses[i, sl] = [t.channel_uses for t in info]
            secs[i, sl] = [t.seconds for t in info]
    p = np.concatenate(probs)
    edge_correct = p.argmax(1) == data.labels
    server = np.where(delivered, server, edge_correct[None, :])
    return FrameOutcomes(
        p, edge_correct, np.concatenate(clean), snr, server, delivered, nbytes, uses, secs
    )


def split_frames(n: int, fit_frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint (fit, scored) frame indices."""
    if not 0 < fit_frames < n:
        raise ValueError(f"fit_frames must lie in 1..{n - 1}, not {fit_frames}")
    perm = np.random.default_rng(seed + 17).permutation(n)
    return np.sort(perm[:fit_frames]), np.sort(perm[fit_frames:])


def _inputs(o: FrameOutcomes, i: int, idx: np.ndarray) -> TDInputs:
    return TDInputs.from_probs(o.probs[idx], o.snr_db[i, idx])


def bin_edges(snrs: list[float]) -> list[float]:
    """SNR bins of the threshold table: one per evaluated SNR, split half-way between them."""
    s = sorted(snrs)
    return [(a + b) / 2 for a, b in pairwise(s)]


def fit_mechanisms(
    o: FrameOutcomes, fit: np.ndarray, cfg: ChannelEvalConfig
) -> dict[str, TDMechanism]:
    """The fitted (and the fixed) mechanisms; the oracle is built per scored set."""
    S = len(cfg.snrs)
    x = TDInputs.concat([_inputs(o, i, fit) for i in range(S)])
    edge = np.tile(o.edge_correct[fit], S)
    server = np.concatenate([o.server_correct[i, fit] for i in range(S)])
    return {
        "always-transmit": Always(),
        "never-transmit": Never(),
        "channel-blind": AlphaRule(cfg.alpha),
        "snr-threshold": SNRThreshold.fit(x, edge, server, bin_edges(cfg.snrs), cfg.penalty),
        "learned": Learned.fit(x, edge, server, penalty=cfg.penalty),
    }


def score(
    o: FrameOutcomes, scored: np.ndarray, mechanisms: dict[str, TDMechanism], cfg: ChannelEvalConfig
) -> list[dict]:
    rows = []
    for i, s in enumerate(cfg.snrs):
        x = _inputs(o, i, scored)
        edge, server = o.edge_correct[scored], o.server_correct[i, scored]
        mechs = {**mechanisms, "oracle": Oracle(edge, server)}
        for name in MECHANISMS:
            tx = mechs[name].transmit(x)
            correct = np.where(tx, server, edge)
            rows.append(
                {
                    "snr_db": s,
                    "mechanism": name,
                    "accuracy": round(float(correct.mean()), 5),
                    "transmitted": round(float(tx.mean()), 5),
                    "delivered": round(float((tx & o.delivered[i, scored]).mean()), 5),
                    "bytes_per_frame": round(float((o.bytes[i, scored] * tx).mean()), 1),
                    "channel_uses_per_frame": round(
                        float((o.channel_uses[i, scored] * tx).mean()), 1
                    ),
                    "ms_per_frame": round(float((o.seconds[i, scored] * tx).mean()) * 1e3, 4),
                }
            )
    return rows


def findings(rows: list[dict]) -> dict[str, list[dict]]:
    """The two questions: at ≤ 0 dB, adaptive TDs more accurate than always-transmit with fewer
    transmissions; at the highest SNR, within 1 point of it with ≥ 30 % fewer transmissions."""
    adaptive = ("channel-blind", "snr-threshold", "learned")
    by = {(r["snr_db"], r["mechanism"]): r for r in rows}
    snrs = sorted({r["snr_db"] for r in rows})
    low, high = [], []
    for s in snrs:
        base = by[(s, "always-transmit")]
        for m in adaptive:
            r = by[(s, m)]
            entry = {
                "snr_db": s,
                "mechanism": m,
                "accuracy_gain_pts": round(100 * (r["accuracy"] - base["accuracy"]), 2),
                "transmissions_saved": round(
                    1 - r["transmitted"] / max(base["transmitted"], 1e-9), 4
                ),
            }
            if (
                s <= 0
                and r["accuracy"] > base["accuracy"]
                and r["transmitted"] < base["transmitted"]
            ):
                low.append(entry)
            if (
                s == snrs[-1]
                and r["accuracy"] >= base["accuracy"] - 0.01
                and r["transmitted"] <= 0.7 * base["transmitted"]
            ):
                high.append(entry)
    return {"low_snr_better_and_fewer": low, "high_snr_within_1pt_30pct_fewer": high}


def run_channel_evaluation(model_path: Path, data: Dataset, cfg: ChannelEvalConfig) -> dict:
    from splitee.files import sha256_file
    from splitee.models import load_checkpoint
    from splitee.models.checkpoint import load_card

    model = load_checkpoint(model_path)
    t0 = time.perf_counter()
    o = frame_outcomes(model, data, cfg)
    seconds = time.perf_counter() - t0
    fit, scored = split_frames(len(data), cfg.fit_frames, cfg.seed)
    mechanisms = fit_mechanisms(o, fit, cfg)
    rows = score(o, scored, mechanisms, cfg)
    card = load_card(model_path)
    return {
        "settings": asdict(cfg),
        "model": {
            "checkpoint": str(model_path),
            "sha256": sha256_file(model_path),
            "arch": model.arch,
            "exit_depths": model.exit_depths,
            "feature_shape": list(model.feature_shape(cfg.arm - 1)),
            "final_exit_accuracy": card.get("final_exit_accuracy"),
        },
        "data": {
            "source": data.source,
            "frames": len(data),
            "fit": len(fit),
            "scored": len(scored),
        },
        "reference": {
            "edge_exit_accuracy": round(float(o.edge_correct[scored].mean()), 5),
            "server_accuracy_no_channel": round(float(o.clean_server_correct[scored].mean()), 5),
        },
        "fitted": {
            "snr-threshold": mechanisms["snr-threshold"].describe(),
            "learned": mechanisms["learned"].to_json(),  # type: ignore[attr-defined]
        },
        "results": rows,
        "findings": findings(rows),
        "seconds": round(seconds, 1),
    }


def table_md(summary: dict) -> str:
    c, ref = summary["settings"], summary["reference"]
    d = summary["data"]
    lines = [
        f"# Transmission decisions over a noisy link ({c['mode']}, fading: {c['fading']})",
        "",
        f"Arm {c['arm']} (features {summary['model']['feature_shape']}), α = {c['alpha']}, "
        f"fit on {d['fit']} frames, scored on {d['scored']} other frames of {d['source']}. "
        f"Edge exit accuracy {100 * ref['edge_exit_accuracy']:.2f} %, server on clean features "
        f"{100 * ref['server_accuracy_no_channel']:.2f} %. Fitting maximises accuracy − "
        f"{c['penalty']} × fraction transmitted."
        + (
            f" Digital: {c['bits']}-bit features, outage below {c['outage_snr_db']} dB, "
            f"{c['retries']} retr{'y' if c['retries'] == 1 else 'ies'}, then the edge "
            "prediction stands."
            if c["mode"] == "digital"
            else " Analog: one real value per real channel symbol, two per channel use."
        )
        + f" Symbol rate {c['symbol_rate']:g} channel uses/s.",
        "",
    ]
    for s in c["snrs"]:
        rows = [r for r in summary["results"] if r["snr_db"] == s]
        lines += [
            f"## {s:g} dB",
            "",
            "| mechanism | accuracy % | transmitted % | delivered % | bytes/frame | "
            "channel uses/frame | ms/frame |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['mechanism']} | {100 * r['accuracy']:.2f} | {100 * r['transmitted']:.1f} | "
                f"{100 * r['delivered']:.1f} | {r['bytes_per_frame']:.0f} | "
                f"{r['channel_uses_per_frame']:.0f} | {r['ms_per_frame']:.3f} |"
            )
        lines.append("")
    f = summary["findings"]
    lines += ["## Findings", ""]
    low = f["low_snr_better_and_fewer"]
    lines.append(
        "- At ≤ 0 dB, adaptive TDs more accurate than always-transmit with fewer transmissions: "
        + (
            ", ".join(
                f"{e['mechanism']} at {e['snr_db']:g} dB (+{e['accuracy_gain_pts']} pts, "
                f"{100 * e['transmissions_saved']:.0f} % fewer)"
                for e in low
            )
            or "none"
        )
    )
    high = f["high_snr_within_1pt_30pct_fewer"]
    lines.append(
        f"- At {max(c['snrs']):g} dB, within 1 point of always-transmit with ≥ 30 % fewer "
        "transmissions: "
        + (
            ", ".join(
                f"{e['mechanism']} ({e['accuracy_gain_pts']:+} pts, "
                f"{100 * e['transmissions_saved']:.0f} % fewer)"
                for e in high
            )
            or "none"
        )
    )
    return "\n".join(lines) + "\n"


def plot(summary: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["results"]
    c = summary["settings"]
    title = f"arm {c['arm']}, {c['mode']}, fading {c['fading']}"
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m in MECHANISMS:
        rs = [r for r in rows if r["mechanism"] == m]
        ax.plot(
            [r["snr_db"] for r in rs],
            [100 * r["accuracy"] for r in rs],
            marker="o",
            ls="--" if m in ("oracle", "never-transmit") else "-",
            label=m,
        )
    ax.axhline(
        100 * summary["reference"]["server_accuracy_no_channel"], color="grey", lw=0.8, ls=":"
    )
    ax.set(xlabel="SNR (dB)", ylabel="accuracy (%)", title=f"Accuracy vs SNR ({title})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_snr.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m in MECHANISMS:
        rs = [r for r in rows if r["mechanism"] == m]
        ax.plot(
            [100 * r["transmitted"] for r in rs],
            [100 * r["accuracy"] for r in rs],
            marker="o",
            ls="",
            label=m,
        )
        if m in ("snr-threshold", "learned"):
            for r in rs:
                ax.annotate(
                    f"{r['snr_db']:g}",
                    (100 * r["transmitted"], 100 * r["accuracy"]),
                    fontsize=6,
                    xytext=(3, 2),
                    textcoords="offset points",
                )
    ax.set(
        xlabel="frames transmitted (%)",
        ylabel="accuracy (%)",
        title=f"Accuracy vs transmissions ({title}; labels: dB)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_transmitted.png", dpi=110)
    plt.close(fig)


def write_channel_outputs(summary: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / "table.md").write_text(table_md(summary))
    (out_dir / "td-learned.json").write_text(
        json.dumps(summary["fitted"]["learned"], indent=1) + "\n"
    )
    plot(summary, out_dir)


__all__ = [
    "ChannelEvalConfig",
    "fit_mechanisms",
    "frame_outcomes",
    "run_channel_evaluation",
    "score",
    "split_frames",
    "write_channel_outputs",
]
