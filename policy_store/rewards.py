"""Costs and the unsupervised reward of each split arm (algorithms.md, section 2).

Arms are 0-based: arm ``k`` exits after block ``depths[k]``; the last arm is the final exit.
Confidence stands in for accuracy, so no reward ever needs a label.

>>> cm = CostModel(depths=(3, 6, 9), gamma=0.1, mu=1.0, alpha=0.5, offload_cost=0.5)
>>> [round(float(c), 2) for c in cm.compute_cost]
[0.3, 0.6, 0.9]
>>> conf = np.array([[0.9, 0.2, 0.8]])      # C_1 = 0.9 ≥ α: arm 0 exits at the edge
>>> [round(float(r), 2) for r in cm.reward_matrix(conf)[0]]
[0.6, -0.3, -0.1]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np

from policy_store.decisions import AlphaRule
from policy_store.uplink import LatencyPricing


@dataclass(frozen=True)
class CostModel:
    """λ_k = γ·ℓ_k edge compute, o per offload, μ converting cost to confidence units.

    ``relative_cost`` (measured: FLOPs or CPU time of each arm's prefix over the final
    arm's) replaces the block count: λ_k = γ·ℓ_L·relative_cost_k, so the final exit costs what
    it does by blocks and the others what they really spend. ``offload_scale`` makes o per
    arm: arm k's offload costs o·offload_scale_k (the "bytes" mode: the arm's encoded bytes over
    a reference, so sending the JPEG frame and sending a feature tensor are priced apart).
    ``bytes_ref`` (the "bytes" mode): the reference those bytes were divided by, so a frame's
    own sizes can price it (:meth:`for_payload`, :meth:`frame_offload_costs`).
    ``latency`` (the "latency" mode): the pricing that made ``offload_scale`` from the arms'
    bytes, edge times and the link's rate, so :meth:`at_rate` can re-price the arms when the
    measured rate moves.

    >>> cm = CostModel((0, 3, 9), gamma=0.1, relative_cost=(0.0, 0.2, 1.0),
    ...                offload_scale=(1.0, 4.0, 1.0))
    >>> [round(float(c), 2) for c in cm.compute_cost], cm.offload_costs.tolist()
    ([0.0, 0.18, 0.9], [0.5, 2.0, 0.5])
    """

    depths: Sequence[int]
    gamma: float = 0.1
    mu: float = 1.0
    alpha: float = 0.5
    offload_cost: float = 0.5
    relative_cost: Sequence[float] | None = None
    offload_scale: Sequence[float] | None = None
    latency: LatencyPricing | None = None
    rate_bps: float | None = None  # the rate ``latency`` priced the arms at (None: its ref)
    bytes_ref: float | None = None  # the "bytes" mode's reference size (the median JPEG)
    compute_cost: np.ndarray = field(init=False, repr=False)
    offload_costs: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        d = np.asarray(self.depths, dtype=np.float64)
        if d.ndim != 1 or len(d) < 1 or np.any(np.diff(d) <= 0):
            raise ValueError(f"depths must be strictly increasing, got {list(self.depths)}")
        object.__setattr__(self, "depths", tuple(int(x) for x in self.depths))
        lam = self.gamma * d
        if self.relative_cost is not None:
            rel = np.asarray(self.relative_cost, dtype=np.float64)
            if rel.shape != d.shape or np.any(rel < 0) or rel[-1] <= 0:
                raise ValueError(f"relative_cost must be {len(d)} values ≥ 0, the last > 0")
            lam = self.gamma * d[-1] * rel / rel[-1]
            object.__setattr__(self, "relative_cost", tuple(float(x) for x in rel))
        object.__setattr__(self, "compute_cost", lam)
        scale = np.ones_like(d)
        if self.offload_scale is not None:
            scale = np.asarray(self.offload_scale, dtype=np.float64)
            if scale.shape != d.shape or np.any(scale < 0):
                raise ValueError(f"offload_scale must be {len(d)} values ≥ 0")
            object.__setattr__(self, "offload_scale", tuple(float(x) for x in scale))
        object.__setattr__(self, "offload_costs", self.offload_cost * scale)
        if self.latency is not None and len(self.latency.arm_bytes) != len(d):
            n = len(self.latency.arm_bytes)
            raise ValueError(f"a latency pricing of {n} arms for {len(d)}")
        if self.bytes_ref is not None and not self.bytes_ref > 0:
            raise ValueError(f"bytes_ref must be > 0, got {self.bytes_ref}")

    #: the papers' constants; every other field is measured or priced (beyond_papers)
    PAPERS_FIELDS = ("depths", "gamma", "mu", "alpha", "offload_cost")

    def beyond_papers(self) -> dict:
        """The fields beyond the papers' constants (measured costs, bytes and latency pricing)
        as keyword arguments: a CostModel rebuilt from them at another o or α prices the arms
        as this one does, whatever field is added later (no caller copies them by name)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.init and f.name not in self.PAPERS_FIELDS
        }

    @property
    def num_arms(self) -> int:
        return len(self.depths)

    @property
    def final(self) -> int:
        return self.num_arms - 1

    @property
    def final_cost(self) -> float:
        """Cost of running every frame to the final exit on the edge (the reference)."""
        return float(self.compute_cost[-1])

    def exits_at(self, conf: np.ndarray) -> np.ndarray:
        """(…, L) bool: the frame would leave the edge at arm k (C_k ≥ α, or the final arm)."""
        ok = AlphaRule(self.alpha).keeps_conf(conf)
        ok[..., -1] = True
        return ok

    @property
    def frame_priced(self) -> bool:
        """Whether a frame's own payload sizes change its offload costs (:meth:`for_payload`)."""
        return self.latency is not None or self.bytes_ref is not None

    def rewards(
        self,
        conf: np.ndarray,
        exits: np.ndarray,
        c_final: np.ndarray,
        offload: np.ndarray | None = None,
    ) -> np.ndarray:
        """(…, L) reward of every arm: ``C_k − μλ_k`` where the frame exits at k, else
        ``C_L − (μλ_k + μo)`` (algorithms.md §2). ``c_final`` broadcasts against ``conf``;
        so does ``offload``, each frame's o per arm (default: :attr:`offload_costs`)."""
        lam = self.mu * self.compute_cost
        o = self.offload_costs if offload is None else offload
        return np.where(exits, conf - lam, c_final - (lam + self.mu * o))

    def reward_matrix(self, conf: np.ndarray) -> np.ndarray:
        """(N, L) reward of every arm for every frame, from the (N, L) confidence matrix."""
        conf = np.asarray(conf, dtype=np.float64)
        return self.rewards(conf, self.exits_at(conf), conf[:, -1:])

    def cost_matrix(self, conf: np.ndarray, offload: np.ndarray | None = None) -> np.ndarray:
        """(N, L) cost of every arm for every frame: λ_k, plus o when offloaded (``offload``:
        each frame's o per arm, as from :meth:`frame_offload_costs`)."""
        off = ~self.exits_at(np.asarray(conf))
        o = self.offload_costs[None, :] if offload is None else offload
        return self.compute_cost[None, :] + o * off

    def frame_offload_costs(self, offload_bytes: np.ndarray) -> np.ndarray:
        """(N, L) o of every arm for every frame at the bytes it would really carry, in the
        "bytes" mode (``offload_bytes[i, k] / bytes_ref``, as :meth:`for_payload` prices one
        frame); the other modes price every frame alike.

        >>> cm = CostModel((0, 3, 9), offload_scale=(1.0, 0.2, 0.0), bytes_ref=10000)
        >>> cm.frame_offload_costs(np.array([[20000, 1000, 0]])).tolist()
        [[1.0, 0.05, 0.0]]
        """
        b = np.asarray(offload_bytes, dtype=np.float64)
        if self.bytes_ref is None:
            return np.broadcast_to(self.offload_costs, b.shape)
        return self.offload_cost * b / self.bytes_ref

    def with_offload_cost(self, offload_cost: float) -> CostModel:
        return replace(self, offload_cost=offload_cost)

    def with_alpha(self, alpha: float) -> CostModel:
        return replace(self, alpha=alpha)

    def at_rate(self, rate_bps: float) -> CostModel:
        """This cost model with the "latency" mode's offload costs at uplink rate
        ``rate_bps`` (bit/s); without a latency pricing the rate changes nothing."""
        if self.latency is None:
            return self
        return replace(self, offload_scale=self.latency.scale(rate_bps), rate_bps=rate_bps)

    def for_payload(self, payload: Mapping[int, float]) -> CostModel:
        """This cost model for one frame whose arms would put ``payload[k]`` bytes on the
        uplink (the "latency" and "bytes" modes; otherwise unchanged). The card's per-arm
        sizes are medians, and a camera's JPEGs are heavy-tailed — a large frame sent whole
        costs more link time than the median says — so a frame's rewards are priced at the
        sizes it really had, at the rate the arms are priced at now.

        >>> p = LatencyPricing((12500, 1250, 0), (0.0, 0.02, 0.03), 12500, 10e6)
        >>> cm = CostModel((0, 3, 9), relative_cost=(0.0, 0.2, 1.0), latency=p,
        ...                offload_scale=p.scale(10e6))
        >>> cm.offload_costs.tolist(), cm.for_payload({0: 25000}).offload_costs.tolist()
        ([0.5, 1.05, 0.0], [1.0, 1.05, 0.0])

        The "bytes" mode prices the given arms at their bytes over ``bytes_ref`` likewise:

        >>> cm = CostModel((0, 3, 9), offload_scale=(1.0, 0.2, 0.0), bytes_ref=12500)
        >>> cm.for_payload({0: 25000}).offload_costs.tolist()
        [1.0, 0.1, 0.0]
        """
        if not payload:
            return self
        if self.latency is None:
            if self.bytes_ref is None:
                return self
            scale = list(self.offload_scale or [1.0] * self.num_arms)
            for k, b in payload.items():
                scale[k] = float(b) / self.bytes_ref
            return replace(self, offload_scale=scale)
        rate = self.latency.ref_rate_bps if self.rate_bps is None else self.rate_bps
        return replace(self, offload_scale=self.latency.with_bytes(payload).scale(rate))


def bytes_scale(arm_bytes: Sequence[float], ref_bytes: float) -> tuple[float, ...]:
    """``offload_scale`` of the "bytes" mode: each arm's encoded bytes over ``ref_bytes``
    (the median JPEG frame), so o is the cost of sending one frame as the camera encoded it.

    >>> bytes_scale([15000, 60000, 0], 15000)
    (1.0, 4.0, 0.0)
    """
    return tuple(float(b) / max(1.0, float(ref_bytes)) for b in arm_bytes)


def capacity(snr_db: float | np.ndarray) -> np.ndarray:
    """Shannon capacity log2(1 + SNR) in bits per channel use."""
    return np.log2(1.0 + 10.0 ** (np.asarray(snr_db, dtype=np.float64) / 10.0))


def air_time_cost(
    base: float, nbytes: int, snr_db: float | None, ref_bytes: int, ref_snr_db: float = 20.0
) -> float:
    """Channel-aware offload cost: ``base`` scaled by the frame's air time against a reference.

    Air time ∝ bits / log2(1 + SNR), so sending ``ref_bytes`` at ``ref_snr_db`` costs ``base``;
    twice the bytes, or half the capacity, costs twice as much. Capped at 20 × ``base`` so one
    deep fade cannot swamp the statistics. Without an SNR only the bytes count.

    >>> round(air_time_cost(0.5, 1000, 20.0, 1000), 3)
    0.5
    >>> round(air_time_cost(0.5, 2000, 20.0, 1000), 3)
    1.0
    """
    scale = nbytes / max(1, ref_bytes)
    if snr_db is not None:
        scale *= float(capacity(ref_snr_db)) / max(float(capacity(snr_db)), 1e-9)
    return base * min(scale, 20.0)
