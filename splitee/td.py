"""Transmission decisions (TD): keep the edge exit's prediction or send the features to the cloud.

Specification: ``docs/algorithms.md`` §5. Every mechanism decides per frame from the
exit's softmax statistics — ``max`` (the confidence C_k), ``margin`` (top-1 minus top-2) and
``entropy`` (nats) — and the SNR of the link in dB, through one interface:
``mechanism.transmit(stats) -> bool array`` (True = send to the cloud).

* :class:`~policy_store.decisions.AlphaRule` — keep iff ``max ≥ α`` (SplitEE's rule; the
  channel is ignored). It, the inputs and the interface live in :mod:`policy_store.decisions`.
* :class:`SNRThreshold` — keep iff ``max ≥ τ(SNR)``, one τ per SNR bin, fitted offline.
* :class:`Learned` — numpy logistic regression on (max, margin, entropy, s, s·max, s·margin,
  s·entropy) with ``s = SNR/10``; the products let the SNR tilt the weight of each statistic
  **(ours)**. It predicts "the server would not do better than the edge" (edge right or server
  wrong) and keeps when that probability is ≥ ``threshold``, tuned on the fitting frames.
  Weights are saved as JSON.
* :class:`Oracle` — offline only: keep iff the edge is right or the server is wrong.
* :class:`Always` / :class:`Never` — always transmit / never transmit (keep at the edge).

Fitting (τ table, classifier) needs labels and the server's predictions under the channel: it
happens offline on held-out frames, never on the frames that are scored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from policy_store.decisions import AlphaRule, Always, Never, TDInputs, TDMechanism


class Oracle(TDMechanism):
    """Keep iff the edge is right or the server is wrong (needs labels: offline bound only)."""

    name = "oracle"

    def __init__(self, edge_correct: np.ndarray, server_correct: np.ndarray) -> None:
        self.edge_correct = np.asarray(edge_correct, bool)
        self.server_correct = np.asarray(server_correct, bool)

    def transmit(self, x: TDInputs) -> np.ndarray:
        if len(x) != len(self.edge_correct):
            raise ValueError("the oracle decides only the frames it was given outcomes for")
        return ~(self.edge_correct | ~self.server_correct)


def keep_objective(
    transmit: np.ndarray, edge_correct: np.ndarray, server_correct: np.ndarray, penalty: float
) -> float:
    """Accuracy minus ``penalty`` × fraction transmitted (what fitting maximises)."""
    acc = np.where(transmit, server_correct, edge_correct).mean()
    return float(acc - penalty * np.mean(transmit))


class SNRThreshold(TDMechanism):
    """Keep iff ``max ≥ τ[bin(SNR)]``; bins are split by ``edges`` (dB, increasing)."""

    name = "snr-threshold"

    def __init__(self, edges: list[float], taus: list[float]) -> None:
        if len(taus) != len(edges) + 1:
            raise ValueError(f"{len(edges)} bin edges need {len(edges) + 1} thresholds")
        self.edges, self.taus = [float(e) for e in edges], [float(t) for t in taus]

    def transmit(self, x: TDInputs) -> np.ndarray:
        tau = np.asarray(self.taus)[np.searchsorted(self.edges, x.snr_db, side="right")]
        return np.asarray(x.max) < tau

    @classmethod
    def fit(
        cls,
        x: TDInputs,
        edge_correct: np.ndarray,
        server_correct: np.ndarray,
        edges: list[float],
        penalty: float = 0.0,
        grid: np.ndarray | None = None,
    ) -> SNRThreshold:
        """Per bin, the τ maximising accuracy − penalty·fraction transmitted (ties: lowest τ,
        i.e. fewest transmissions). An empty bin gets its nearest fitted neighbour's τ."""
        grid = np.linspace(0.0, 1.0, 101) if grid is None else np.asarray(grid)
        bins = np.searchsorted(edges, x.snr_db, side="right")
        taus: list[float | None] = []
        for b in range(len(edges) + 1):
            m = bins == b
            if not m.any():
                taus.append(None)
                continue
            scores = [
                keep_objective(x.max[m] < t, edge_correct[m], server_correct[m], penalty)
                for t in grid
            ]
            taus.append(float(grid[int(np.argmax(scores))]))  # argmax: first (lowest) τ
        fitted = [i for i, t in enumerate(taus) if t is not None]
        if not fitted:
            raise ValueError("no frames to fit the SNR thresholds on")
        full = [
            t if t is not None else taus[min(fitted, key=lambda j, i=i: abs(j - i))]
            for i, t in enumerate(taus)
        ]
        return cls(edges, full)  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "edges_db": self.edges, "taus": self.taus}


FEATURES = [
    "max",
    "margin",
    "entropy",
    "snr/10",
    "snr/10*max",
    "snr/10*margin",
    "snr/10*entropy",
]


def _features(x: TDInputs) -> np.ndarray:
    s = np.asarray(x.snr_db, dtype=np.float64) / 10.0
    base = np.stack([x.max, x.margin, x.entropy], axis=1).astype(np.float64)
    return np.concatenate([base, s[:, None], base * s[:, None]], axis=1)


class Learned(TDMechanism):
    """Logistic regression P(server would not do better | stats, SNR); keep when ≥ threshold."""

    name = "learned"
    FORMAT = "splitee-td-logreg/1"

    def __init__(
        self, weights: np.ndarray, bias: float, mean: np.ndarray, std: np.ndarray, threshold=0.5
    ) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = float(bias)
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        self.threshold = float(threshold)

    def keep_probability(self, x: TDInputs) -> np.ndarray:
        z = ((_features(x) - self.mean) / self.std) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def transmit(self, x: TDInputs) -> np.ndarray:
        return self.keep_probability(x) < self.threshold

    @classmethod
    def fit(
        cls,
        x: TDInputs,
        edge_correct: np.ndarray,
        server_correct: np.ndarray,
        l2: float = 1e-3,
        steps: int = 500,
        lr: float = 0.5,
        penalty: float | None = None,
    ) -> Learned:
        """Full-batch gradient descent on the L2-regularised log loss (standardised inputs).

        The label is the oracle's: keep iff the edge is right or the server is wrong, i.e.
        "the server would not do better". A keep probability ≥ 0.5 is not the accuracy-optimal
        rule (transmitting costs no accuracy when both are right), so with ``penalty`` set the
        threshold is tuned on the same frames to maximise accuracy − penalty·fraction
        transmitted; without, it stays 0.5."""
        f = _features(x)
        mean, std = f.mean(axis=0), f.std(axis=0) + 1e-8
        z = (f - mean) / std
        y = (np.asarray(edge_correct, bool) | ~np.asarray(server_correct, bool)).astype(float)
        prior = float(y.mean())
        w, b = np.zeros(z.shape[1]), float(np.log((prior + 1e-3) / (1 - prior + 1e-3)))
        n = len(y)
        for _ in range(steps):
            p = 1.0 / (1.0 + np.exp(-np.clip(z @ w + b, -50, 50)))
            g = p - y
            w -= lr * (z.T @ g / n + l2 * w)
            b -= lr * float(g.mean())
        model = cls(w, b, mean, std)
        if penalty is not None:
            probs = model.keep_probability(x)
            grid = np.linspace(0.0, 1.0, 101)
            scores = [
                keep_objective(probs < t, edge_correct, server_correct, penalty) for t in grid
            ]
            model.threshold = float(grid[int(np.argmax(scores))])
        return model

    def to_json(self) -> dict[str, object]:
        return {
            "format": self.FORMAT,
            "features": FEATURES,
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "threshold": self.threshold,
        }

    @classmethod
    def from_json(cls, d: dict) -> Learned:
        if d.get("format") != cls.FORMAT:
            raise ValueError(f"not a {cls.FORMAT} file: format={d.get('format')!r}")
        return cls(
            np.array(d["weights"]),
            d["bias"],
            np.array(d["mean"]),
            np.array(d["std"]),
            d["threshold"],
        )

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Learned:
        """Read a learned mechanism from the settings' ``td_file``; ValueError naming the file
        for anything else, since json and numpy raise half a dozen types on a foreign file."""
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ValueError(f"{path}: not a readable {cls.FORMAT} file ({exc!r:.200})") from None

    def describe(self) -> dict[str, object]:
        return {"name": self.name, **self.to_json()}


__all__ = [
    "AlphaRule",
    "Always",
    "Learned",
    "Never",
    "Oracle",
    "SNRThreshold",
    "TDInputs",
    "TDMechanism",
    "keep_objective",
]
