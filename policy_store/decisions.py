"""Keep or offload: the one decision object every path uses to let a frame leave the edge.

A frame that reached its split arm either exits there with the exit's prediction or is sent
to the cloud. Who decides is a :class:`TDMechanism` — the confidence threshold rule
:class:`AlphaRule` (``C ≥ α``: SplitEE, I-SplitEE, the cost model's reward matrices, the
offline evaluator, the live edge), or a channel-aware transmission decision
(:mod:`splitee.td`). Models only compute exits; they never decide.

Every decision sees per-frame statistics of the exit's softmax — ``max`` (the confidence C_k),
``margin`` (top-1 minus top-2), ``entropy`` (nats) — and the link's SNR in dB (NaN when the
frame carries none), and answers ``transmit(x) -> bool array`` (True = send to the cloud).

>>> AlphaRule(0.5).keeps_conf(np.array([0.4, 0.5, 0.9])).tolist()
[False, True, True]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TDInputs:
    """Per-frame statistics of the exit's softmax and the link's SNR (all shape (N,))."""

    max: np.ndarray
    margin: np.ndarray
    entropy: np.ndarray
    snr_db: np.ndarray

    @classmethod
    def from_probs(cls, probs: np.ndarray, snr_db: float | np.ndarray) -> TDInputs:
        p = np.asarray(probs, dtype=np.float64)
        top2 = np.sort(p, axis=1)[:, -2:]
        ent = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1)
        snr = np.broadcast_to(np.asarray(snr_db, dtype=np.float64), (len(p),)).copy()
        return cls(top2[:, 1], top2[:, 1] - top2[:, 0], ent, snr)

    def __len__(self) -> int:
        return len(self.max)

    def take(self, idx: np.ndarray) -> TDInputs:
        return TDInputs(self.max[idx], self.margin[idx], self.entropy[idx], self.snr_db[idx])

    @staticmethod
    def concat(parts: list[TDInputs]) -> TDInputs:
        return TDInputs(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in TDInputs.__annotations__)
        )


class TDMechanism:
    """Decides per frame whether to transmit (True) or keep the edge prediction (False)."""

    name = "td"

    def transmit(self, x: TDInputs) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        return {"name": self.name}


class Always(TDMechanism):
    name = "always-transmit"

    def transmit(self, x: TDInputs) -> np.ndarray:
        return np.ones(len(x), dtype=bool)


class Never(TDMechanism):
    name = "never-transmit"

    def transmit(self, x: TDInputs) -> np.ndarray:
        return np.zeros(len(x), dtype=bool)


class AlphaRule(TDMechanism):
    """Keep iff ``C ≥ α`` — the channel-blind rule of SplitEE. ``alpha`` may be per frame.

    The one implementation of the threshold rule: the cost model's reward matrices, the
    offline evaluator and the live edge all call :meth:`keeps_conf`.
    """

    name = "channel-blind"

    def __init__(self, alpha: float | np.ndarray) -> None:
        self.alpha = alpha if isinstance(alpha, np.ndarray) else float(alpha)

    def keeps_conf(self, conf: np.ndarray) -> np.ndarray:
        return np.asarray(conf) >= self.alpha

    def transmit(self, x: TDInputs) -> np.ndarray:
        return ~self.keeps_conf(x.max)

    def describe(self) -> dict[str, object]:
        alpha = self.alpha.tolist() if isinstance(self.alpha, np.ndarray) else self.alpha
        return {"name": self.name, "alpha": alpha}
