"""What an offload costs on a bandwidth-limited edge uplink, in seconds, and the link's rate.

The papers' offload cost ``o`` is abstract; on a real edge site the price of offloading at arm
k is the time the frame takes to reach the cloud: the edge's compute up to k plus the payload's
time on the uplink, ``t_k = t_edge,k + 8·B_k / R``. ``policy.offload_cost_mode = "latency"``
prices every arm that way (:class:`LatencyPricing`), in units of the camera JPEG's uplink time
at the reference rate, so ``o`` keeps its meaning: at the reference rate, sending the camera's
JPEG costs ``o``. A rate change on the link changes the prices, so the policy's best arm moves
with it — when ``R`` is measured live (:class:`UplinkEstimator`) rather than configured.

>>> p = LatencyPricing(arm_bytes=(12500, 1250, 0), edge_s=(0.0, 0.02, 0.03),
...                    ref_bytes=12500, ref_rate_bps=10e6)
>>> [round(x, 2) for x in p.scale(10e6)]    # JPEG 10 ms; arm 1: 20 ms compute + 1 ms link
[1.0, 2.1, 0.0]
>>> [round(x, 2) for x in p.scale(2e6)]     # at 2 Mbit/s the JPEG takes 50 ms, arm 1 25 ms
[5.0, 2.5, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

#: Rates outside these bounds (bit/s) are measurement noise, not a link: estimates are clamped.
MIN_RATE_BPS = 1e4
MAX_RATE_BPS = 1e11
#: A hop longer than this is a clock step or a replayed record, not a link's time: ignored.
MAX_HOP_S = 60.0


@dataclass(frozen=True)
class LatencyPricing:
    """Per-arm offload cost scale of the "latency" mode: ``(t_edge,k + 8·B_k/R) / t_ref``.

    ``arm_bytes``: what arm k puts on the uplink per frame (the camera's JPEG for the
    send-frame arm, the split tensor or the bottleneck's latent after; 0 for the final arm,
    which never offloads); ``edge_s``: the edge's measured compute time up to arm k, seconds;
    ``t_ref = 8·ref_bytes / ref_rate_bps``, the reference JPEG's time on the link at the
    configured rate. The final arm's scale is 0 (it never offloads).
    """

    arm_bytes: Sequence[float]
    edge_s: Sequence[float]
    ref_bytes: float
    ref_rate_bps: float

    def __post_init__(self) -> None:
        if len(self.arm_bytes) != len(self.edge_s) or not self.arm_bytes:
            raise ValueError(
                f"{len(self.arm_bytes)} arm sizes for {len(self.edge_s)} edge times: one each"
            )
        if any(not math.isfinite(b) or b < 0 for b in self.arm_bytes):
            raise ValueError(f"arm bytes must be finite and ≥ 0, got {list(self.arm_bytes)}")
        if any(not math.isfinite(t) or t < 0 for t in self.edge_s):
            raise ValueError(f"edge times must be finite and ≥ 0 s, got {list(self.edge_s)}")
        if not (self.ref_bytes > 0 and MIN_RATE_BPS <= self.ref_rate_bps <= MAX_RATE_BPS):
            raise ValueError("the reference needs bytes > 0 and a rate in [10 kbit/s, 100 Gbit/s]")
        object.__setattr__(self, "arm_bytes", tuple(float(b) for b in self.arm_bytes))
        object.__setattr__(self, "edge_s", tuple(float(t) for t in self.edge_s))

    @property
    def ref_seconds(self) -> float:
        """The reference JPEG's time on the link at the reference rate: one ``o``."""
        return 8.0 * self.ref_bytes / self.ref_rate_bps

    def seconds(self, rate_bps: float) -> tuple[float, ...]:
        """Each arm's time to reach the cloud at ``rate_bps``: edge compute + uplink time
        (0 for the final arm)."""
        rate = min(max(float(rate_bps), MIN_RATE_BPS), MAX_RATE_BPS)
        last = len(self.arm_bytes) - 1
        return tuple(
            0.0 if k == last else t + 8.0 * b / rate
            for k, (b, t) in enumerate(zip(self.arm_bytes, self.edge_s, strict=True))
        )

    def with_bytes(self, payload: Mapping[int, float]) -> LatencyPricing:
        """This pricing with arm k's bytes replaced by ``payload[k]``: one frame's real sizes
        (the JPEG it arrived as, the payload it was sent with) instead of the card's medians.

        >>> p = LatencyPricing((12500, 1250, 0), (0.0, 0.02, 0.03), 12500, 10e6)
        >>> [round(x, 2) for x in p.with_bytes({0: 25000}).scale(10e6)]
        [2.0, 2.1, 0.0]
        """
        sizes = list(self.arm_bytes)
        for k, b in payload.items():
            sizes[k] = float(b)
        return LatencyPricing(sizes, self.edge_s, self.ref_bytes, self.ref_rate_bps)

    def scale(self, rate_bps: float) -> tuple[float, ...]:
        """``offload_scale`` of a :class:`~policy_store.rewards.CostModel` at ``rate_bps``."""
        ref = self.ref_seconds
        return tuple(t / ref for t in self.seconds(rate_bps))


def valid_rate(value: object) -> float | None:
    """A rate read back from a store, or None for anything that is not one (bad input never
    prices a reward).

    >>> valid_rate(b"2000000.0"), valid_rate("nan"), valid_rate(b"-1"), valid_rate(None)
    (2000000.0, None, None, None)
    """
    try:
        rate = float(value.decode() if isinstance(value, bytes) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError, UnicodeDecodeError):
        return None
    return rate if MIN_RATE_BPS <= rate <= MAX_RATE_BPS else None


class RateBoard(Protocol):
    """Where the cloud's measured uplink rate is shared with the edge workers, so the rewards
    the edge scores itself (side observations of frames that ran to the final exit) are
    priced at the same rate as the cloud's (the policy store: Redis, or memory in tests)."""

    def publish_rate(self, rate_bps: float) -> None: ...

    def shared_rate(self) -> float | None: ...


class UplinkEstimator:
    """The uplink's rate, measured from what crossed it: ``hop = overhead + bits / R``.

    Each observation is one edge batch as the cloud received it: the bits its offloads carried
    and the time from the edge's send (``edge_ts``) to the cloud's consume. The fixed part
    (producer linger, broker append, consumer fetch wait, queueing shared by every size) is
    the intercept; the rate is the inverse of the slope, fitted by least squares with
    exponential forgetting (``halflife`` observations), so a ``tc change`` on the link moves
    the estimate within a few half-lives. Batch sizes and arm sizes both vary, which is what
    makes the slope identifiable; while they do not (too little spread, or a slope ≤ 0), the
    last good estimate stands — at first ``prior_bps``, the configured rate.

    >>> est = UplinkEstimator(prior_bps=10e6, halflife=20)
    >>> for i in range(200):   # a 2 Mbit/s link behind 30 ms of fixed overhead
    ...     bits = 8 * (2000 + 7000 * (i % 5))
    ...     _ = est.add(bits, 0.03 + bits / 2e6)
    >>> round(est.rate_bps / 1e6, 2)
    2.0
    """

    #: a slope needs batches whose sizes differ by this fraction of their mean, at least
    MIN_SPREAD = 0.05

    def __init__(self, prior_bps: float, halflife: float = 200.0) -> None:
        if not MIN_RATE_BPS <= prior_bps <= MAX_RATE_BPS:
            raise ValueError(f"prior rate {prior_bps} bit/s outside [10 kbit/s, 100 Gbit/s]")
        if not halflife >= 1:
            raise ValueError(f"halflife must be ≥ 1 observation, got {halflife}")
        self.prior_bps = float(prior_bps)
        self.rate_bps = float(prior_bps)
        self.overhead_s = 0.0
        self._keep = 0.5 ** (1.0 / float(halflife))
        self._w = self._x = self._y = self._xx = self._xy = 0.0
        self.observations = 0

    def add(self, bits: float, seconds: float) -> bool:
        """Fold one edge batch in; False (ignored) for a non-finite, empty, negative or
        over-long one (a clock step, a replayed record), so bad input never moves the
        estimate."""
        if not (math.isfinite(bits) and math.isfinite(seconds)) or bits <= 0:
            return False
        if not 0.0 <= seconds <= MAX_HOP_S:
            return False
        k = self._keep
        self._w = k * self._w + 1.0
        self._x = k * self._x + bits
        self._y = k * self._y + seconds
        self._xx = k * self._xx + bits * bits
        self._xy = k * self._xy + bits * seconds
        self.observations += 1
        self._refit()
        return True

    def _refit(self) -> None:
        w = self._w
        mx, my = self._x / w, self._y / w
        var = self._xx / w - mx * mx
        if var <= (self.MIN_SPREAD * mx) ** 2:
            return
        slope = (self._xy / w - mx * my) / var
        if slope <= 0:
            return
        self.rate_bps = min(max(1.0 / slope, MIN_RATE_BPS), MAX_RATE_BPS)
        self.overhead_s = max(0.0, my - slope * mx)
