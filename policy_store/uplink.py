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
    exponential forgetting (``halflife`` observations). Batch sizes and arm sizes both vary,
    which is what makes the slope identifiable; while they do not (too little spread, or a
    slope ≤ 0), the last good estimate stands — at first ``prior_bps``, the configured rate.

    Two things a shaped link does that a plain fit gets wrong, and what is done about them:

    * **A small batch says little about the rate.** A token-bucket shaper lets a burst through
      at line speed, so a batch of a few small latents arrives as fast on 2 Mbit/s as on
      10, and a fit over such batches reads the link as hundreds of Mbit/s (one earlier
      run: 631 Mbit/s at 2) — the policy then sends JPEGs again and jams the link. So only
      a *large* batch (``LARGE`` of the largest lately, a maximum decaying with
      ``10·halflife``) goes into the fit, weighted — and making the fit forget — by its bits
      against that maximum: a stream of small latents leaves the estimate where the large
      batches put it.
    * **A link that slows down fills a queue**, and a queue delays every batch alike, which a
      fit reads as overhead, not rate: after a drop from 10 to 2 Mbit/s the estimate stayed
      at 5–15 Mbit/s for ~50 s. So a run of ``SURPRISES`` batches whose time past the
      overhead is ``SURPRISE_FACTOR`` times what the fit gives their bits (and
      ``SURPRISE_MARGIN_S`` more) — or, for large batches, as many times less: the link got
      faster — with no batch on time between late ones, nor a large one above the fit's
      line between early ones, restarts the fit. A surprise never
      enters the fit: it is an outlier or the first sign of a new link. After a slowdown
      the new rate is what the queue drained at — the run's bits over the span of their
      arrivals at the broker; a run that arrived together was a stall on the way (a broker's
      flush, a busy host), not the link, and changes nothing. After a speed-up it is the run's
      bits over their time, at most ``SURPRISE_FACTOR``² the old rate per run.

    >>> est = UplinkEstimator(prior_bps=10e6, halflife=20)
    >>> for i in range(200):   # a 2 Mbit/s link behind 30 ms of fixed overhead
    ...     bits = 8 * (2000 + 7000 * (i % 5))
    ...     _ = est.add(bits, 0.03 + bits / 2e6)
    >>> round(est.rate_bps / 1e6, 1)
    2.0
    """

    #: a slope needs batches whose sizes differ by this fraction of their mean, at least
    MIN_SPREAD = 0.05
    #: a batch surprises the fit when its time past the overhead is this many times what the
    #: fit gives its bits, or this many times less …
    SURPRISE_FACTOR = 2.0
    #: … by this much more (noise on a busy host: a broker's flush, a scheduler's hiccup) …
    SURPRISE_MARGIN_S = 0.05
    #: … and this many such batches in a row mean the link changed
    SURPRISES = 5
    #: a batch is large (tells the rate) at this fraction of the largest lately, at least
    LARGE = 0.25

    def __init__(self, prior_bps: float, halflife: float = 200.0) -> None:
        if not MIN_RATE_BPS <= prior_bps <= MAX_RATE_BPS:
            raise ValueError(f"prior rate {prior_bps} bit/s outside [10 kbit/s, 100 Gbit/s]")
        if not halflife >= 1:
            raise ValueError(f"halflife must be ≥ 1 observation, got {halflife}")
        self.prior_bps = float(prior_bps)
        self.rate_bps = float(prior_bps)
        self.overhead_s = 0.0
        self._keep = 0.5 ** (1.0 / float(halflife))
        self._large_keep = 0.5 ** (1.0 / (10.0 * float(halflife)))
        self._large_bits = 0.0  # the largest batch lately: what a batch's weight is against
        self._w = self._x = self._y = self._xx = self._xy = 0.0
        self._run: list[tuple[float, float, float | None]] = []  # surprises, one way, in a row
        self._run_sign = 0
        self.observations = 0
        self.restarts = 0

    def add(self, bits: float, seconds: float, arrived: float | None = None) -> bool:
        """Fold one edge batch in: its ``bits``, its hop in ``seconds`` and, where known, when
        it ``arrived`` (the broker's append time: how a queue's drain rate is read). False
        (ignored) for a non-finite, empty, negative or over-long one (a clock step, a replayed
        record), so bad input never moves the estimate."""
        if not (math.isfinite(bits) and math.isfinite(seconds)) or bits <= 0:
            return False
        if not 0.0 <= seconds <= MAX_HOP_S:
            return False
        if arrived is not None and not math.isfinite(arrived):
            arrived = None
        if not self.observations:
            self._large_bits = float(bits)
            self._seed(float(bits))  # the prior, as if seen: a first outlier cannot tip it
        self.observations += 1
        self._large_bits = max(float(bits), self._large_bits * self._large_keep)
        surprise = self._surprise(bits, seconds) if self._fitted() else 0
        large = bits >= self.LARGE * self._large_bits
        if not surprise:
            # a batch on time ends a run of late ones; a large one goes into the fit, and
            # ends a run of early ones if it lies above the fit's line; a small one says
            # nothing about a faster link (a shaper's burst hides the rate from it)
            if self._run_sign > 0:
                self._run = []  # no queue: a queue would have delayed this one too
            if large or not self._fitted():
                side = 1 if seconds > self.predict(bits) else -1
                if self._run and side != self._run_sign:
                    self._run = []
                self._fold(bits, seconds)
                self._refit()
            return True
        # a surprise is kept out of the fit (an outlier, or the first sign of a new link); one
        # the other way ends a run if its batch is large (a small one is late by noise alone)
        if self._run and surprise != self._run_sign:
            if not large:
                return True
            self._run = []
        self._run.append((float(bits), float(seconds), arrived))
        self._run_sign = surprise
        if len(self._run) >= self.SURPRISES:
            run, self._run = self._run, []
            self._restart(run, surprise)
        return True

    def predict(self, bits: float) -> float:
        """The hop the fit expects for a batch of ``bits``, seconds."""
        return self.overhead_s + bits / self.rate_bps

    def _surprise(self, bits: float, seconds: float) -> int:
        """+1 where a batch's time past the overhead is ``SURPRISE_FACTOR`` times what the fit
        gives its bits and ``SURPRISE_MARGIN_S`` more (the link slowed down, or a queue
        formed), −1 where it is less than a ``SURPRISE_FACTOR``-th of it by that margin (the
        link got faster), 0 where it is neither."""
        link_s, fit_s = seconds - self.overhead_s, bits / self.rate_bps
        if link_s > self.SURPRISE_FACTOR * fit_s + self.SURPRISE_MARGIN_S:
            return 1
        large = bits >= self.LARGE * self._large_bits  # only a large one shows a faster link
        if large and link_s < fit_s / self.SURPRISE_FACTOR - self.SURPRISE_MARGIN_S:
            return -1
        return 0

    def _fitted(self) -> bool:
        """Whether the fit has seen enough to be surprised (a few batches' worth of weight)."""
        return self._w >= 3.0

    def _fold(self, bits: float, seconds: float, weight: float | None = None) -> None:
        """One batch into the fit, weighted (and forgetting) by its bits against the largest
        lately — ``weight`` observations' worth where given."""
        u = bits / self._large_bits if weight is None else weight
        k = self._keep**u
        self._w = k * self._w + u
        self._x = k * self._x + u * bits
        self._y = k * self._y + u * seconds
        self._xx = k * self._xx + u * bits * bits
        self._xy = k * self._xy + u * bits * seconds

    def _restart(self, run: list[tuple[float, float, float | None]], sign: int) -> bool:
        """A run of surprises one way: the link changed — unless the run was slow and its
        batches arrived together (a stall on the way, which delays every batch to the same
        moment: then False, and nothing changes). The new rate is, after a slowdown, the rate
        the queue drained at (the run's bits over the span of its arrivals; without arrival
        times, its bits over its time past the overhead) and, after a speed-up, the run's own
        bits over their time, at most ``SURPRISE_FACTOR``² the old rate per run; the fit
        starts again from it."""
        bits = [b for b, _, _ in run]
        arrivals = [a for _, _, a in run]
        if all(a is not None for a in arrivals):
            order = sorted(range(len(run)), key=lambda i: arrivals[i])  # type: ignore[arg-type]
            span = arrivals[order[-1]] - arrivals[order[0]]  # type: ignore[operator]
            drained = sum(bits) - bits[order[0]]
            rate = drained / span if span > 0 else math.inf
        else:
            rate = sum(bits) / sum(max(s - self.overhead_s, 1e-3) for _, s, _ in run)
        if sign > 0:
            if sum(bits) < self._large_bits or rate >= self.rate_bps / self.SURPRISE_FACTOR:
                return False  # too few bits to have kept the link busy, or arrived together
        else:
            busy = sum(max(s - self.overhead_s, 1e-3) for _, s, _ in run)
            rate = min(sum(bits) / busy, self.rate_bps * self.SURPRISE_FACTOR**2)
        self.rate_bps = min(max(rate, MIN_RATE_BPS), MAX_RATE_BPS)
        self._seed(sum(bits) / len(bits))
        self.restarts += 1
        return True

    def _seed(self, bits: float) -> None:
        """Start the fit from the current line, as two batches' worth each at half and 1.5
        times ``bits``: enough to judge the next batches by (the rest of a queue is still a
        surprise, kept out), few enough that large batches move it at once."""
        self._w = self._x = self._y = self._xx = self._xy = 0.0
        for b in (0.5 * bits, 1.5 * bits):
            self._fold(b, self.predict(b), weight=2.0)

    def _refit(self) -> bool:
        """The rate and overhead from the fit; False (the last estimate stands) without a
        slope to fit."""
        w = self._w
        if w <= 0:
            return False
        mx, my = self._x / w, self._y / w
        var = self._xx / w - mx * mx
        if var <= (self.MIN_SPREAD * mx) ** 2:
            return False
        slope = (self._xy / w - mx * my) / var
        if slope <= 0:
            return False
        self.rate_bps = min(max(1.0 / slope, MIN_RATE_BPS), MAX_RATE_BPS)
        self.overhead_s = max(0.0, my - slope * mx)
        return True
