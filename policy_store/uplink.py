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

import numpy as np

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
    """The uplink's rate, measured from what crossed it, as a token-bucket shaper.

    Each observation is one edge batch as the cloud received it: its bits, the time it was
    sent (the edge's ``edge_ts``) and its hop — from the send to the broker's append of its
    last record. A shaped uplink is a token bucket (``tc tbf``, and most traffic policers):
    bits leave at line speed while the bucket holds tokens, then at its rate R; the bucket
    (burst B) refills at R while the link is idle. So a batch that fits in the burst crosses
    in a millisecond on 2 Mbit/s as on 10, and only a batch sent while the bucket is low — the
    second of two cameras' frames, a large noisy frame, a queue — shows the rate. A straight
    line ``hop = overhead + bits/R`` through such data reads the link as 30–600 Mbit/s (the
    runs before this estimator), and after a drop from 10 to 2 Mbit/s it took ~50 s to come
    down.

    Instead every (R, B) on a grid (``PER_DECADE`` rates per decade from 10 kbit/s to 100
    Gbit/s, bursts ``BURSTS``) predicts each batch's hop from the link's observed state — when
    the last batch got through, and the tokens that hypothesis leaves after it —, scores the
    prediction by its absolute error (capped at ``CAP_S``, so a stall is one bad sample, not
    a verdict) with exponential forgetting (``halflife`` batches), and the estimate is the
    best-scoring hypothesis — a move counting against it by ``TOL_S`` and ``MOVE_S`` per decade,
    so batches that tell nothing (small ones through the burst, which every hypothesis with
    some burst predicts alike, or a noisy few that one hypothesis of a thousand happens to
    fit) leave it where the informative ones put it. The fixed part of a hop (producer,
    broker append) is the lowest hop lately (a minimum rising by ``FLOOR_DRIFT_S`` per batch).

    >>> est = UplinkEstimator(prior_bps=10e6, halflife=10)
    >>> for i in range(100):   # 2 Mbit/s, burst 32 KiB, 1 ms fixed: a batch a second
    ...     bits = 8 * (20_000 + 10_000 * (i % 8))
    ...     _ = est.add(bits, 0.001 + max(0, bits - 8 * 32768) / 2e6, sent=float(i))
    >>> round(est.rate_bps / 1e6, 1), est.burst_bytes
    (2.0, 32768.0)
    """

    #: rate hypotheses per decade (the estimate's resolution: 20 per decade is ±6 %)
    PER_DECADE = 20
    #: burst hypotheses, bytes (tc tbf needs at least one MTU per tick; deploy/hosts.sh 32 KiB)
    BURSTS = (0, 8192, 16384, 32768, 65536, 131072, 262144)
    #: a prediction error counts at most this much (a stall, a broker's flush)
    CAP_S = 0.25
    #: the estimate moves to a hypothesis that scores better by this much mean absolute
    #: error, seconds …
    TOL_S = 0.0005
    #: … and by this much more per decade its rate is from the estimate's (one of a thousand
    #: hypotheses fits a few noisy batches by chance; a changed link misses by tens of ms)
    MOVE_S = 0.001
    #: the hop's fixed part is the lowest lately, rising by this much per batch
    FLOOR_DRIFT_S = 1e-4

    def __init__(self, prior_bps: float, halflife: float = 10.0) -> None:
        if not MIN_RATE_BPS <= prior_bps <= MAX_RATE_BPS:
            raise ValueError(f"prior rate {prior_bps} bit/s outside [10 kbit/s, 100 Gbit/s]")
        if not halflife >= 1:
            raise ValueError(f"halflife must be ≥ 1 observation, got {halflife}")
        decades = math.log10(MAX_RATE_BPS / MIN_RATE_BPS)
        rates = np.logspace(
            math.log10(MIN_RATE_BPS), math.log10(MAX_RATE_BPS), round(decades * self.PER_DECADE) + 1
        )
        grid_r, grid_b = np.meshgrid(rates, 8.0 * np.asarray(self.BURSTS, float), indexing="ij")
        self._rate, self._burst = grid_r.ravel(), grid_b.ravel()  # bit/s, bits
        self._log_rate = np.log10(self._rate)  # a move's distance, in decades
        self._tokens = self._burst.copy()  # bits left in each hypothesis's bucket …
        self._free_at: float | None = None  # … when the link last let a batch through
        self._keep = 0.5 ** (1.0 / float(halflife))
        # a pipeline's first batches are slow (connections, metadata, a cold broker) and out
        # of order: the first half-life of batches only sets the floor and the link's state,
        # and the prior stands until another half-life has been scored — a wrong early
        # estimate holds while only small latents follow (runs read 3.2–3.6 Mbit/s on a
        # 10 Mbit/s link after such a start)
        self._warmup = max(5, round(halflife))
        self._weight = 0.0
        self._error = np.zeros_like(self._rate)  # forgotten sum of |observed − predicted|
        self._floor: float | None = None
        self._clock = 0.0
        self._best = int(np.argmin(np.abs(np.log(self._rate / prior_bps))))  # its burst: seen
        self.prior_bps = float(prior_bps)
        self.rate_bps = float(prior_bps)
        self.overhead_s = 0.0
        self.observations = 0
        self.moves = 0  # the estimate's moves by more than 2× (a link that changed)

    @property
    def burst_bytes(self) -> float:
        """The burst of the hypothesis the estimate is (bytes)."""
        return float(self._burst[self._best]) / 8.0

    def add(self, bits: float, seconds: float, sent: float | None = None) -> bool:
        """Fold one edge batch in: its ``bits``, its hop in ``seconds`` and when it was
        ``sent`` (the edge's clock, as the hop's start; None: long after the batch before,
        the link idle between them). False (ignored) for a non-finite, empty, negative or
        over-long one (a clock step, a replayed record), so bad input never moves the
        estimate."""
        if not (math.isfinite(bits) and math.isfinite(seconds)) or bits <= 0:
            return False
        if not 0.0 <= seconds <= MAX_HOP_S:
            return False
        if sent is None or not math.isfinite(sent):
            sent = self._clock + 3600.0
        self._clock = max(self._clock, sent)
        floor = seconds if self._floor is None else min(seconds, self._floor + self.FLOOR_DRIFT_S)
        self._floor = floor
        through = sent + seconds - floor  # when the link let it through, as observed
        if self._free_at is None:
            self._free_at = sent
        start = max(sent, self._free_at)  # it waited for the batch before, if that one was late
        tokens = np.minimum(self._burst, self._tokens + (start - self._free_at) * self._rate)
        predicted = start + np.maximum(0.0, bits - tokens) / self._rate
        miss = np.minimum(np.abs(through - predicted), self.CAP_S)
        # each hypothesis's bucket after the batch, from what was observed (not its own
        # prediction: a wrong hypothesis must not drift into a queue of its own)
        self._tokens = np.clip(tokens + (through - start) * self._rate - bits, 0.0, self._burst)
        self._free_at = max(self._free_at, through)
        self.observations += 1
        self.overhead_s = floor
        if self.observations > self._warmup:
            self._weight = self._keep * self._weight + 1.0
            self._error = self._keep * self._error + miss
        if self.observations == 2 * self._warmup:  # the prior's rate; its burst, as seen
            at_prior = np.flatnonzero(self._rate == self._rate[self._best])
            self._best = int(at_prior[np.argmin(self._error[at_prior])])
        if self.observations >= 2 * self._warmup:
            self._choose()
        return True

    def _choose(self) -> None:
        """The best hypothesis, counting a move against it: ``TOL_S`` plus ``MOVE_S`` per
        decade the rate moves — so noise that one of a thousand hypotheses happens to fit
        does not move the estimate, while a changed link (errors of tens of ms) does."""
        here = self._log_rate[self._best]
        score = self._error / self._weight
        score = score + self.TOL_S + self.MOVE_S * np.abs(self._log_rate - here)
        score[self._best] -= self.TOL_S
        new = int(np.argmin(score))
        if new == self._best:
            return
        if abs(self._log_rate[new] - here) > math.log10(2.0):
            self.moves += 1
        self._best = new
        self.rate_bps = float(self._rate[new])
