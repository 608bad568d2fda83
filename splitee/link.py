"""A noisy wireless edge-to-cloud link: seeded SNR processes and analog / digital transmission.

Specification: ``docs/algorithms.md`` §5; the choices below are ours.

**SNR processes** (one per camera, seeded, behind :class:`SNRProcess`): ``snr_db(step)`` gives
the SNR in dB at a discrete step (one step = one frame of that camera, or one slot of a trace).

* :class:`ConstantSNR` — AWGN at a fixed SNR.
* :class:`TraceSNR` — a CSV of ``time,snr_db`` rows, indexed by step (row ``step mod n``) or by
  time (step ``i`` is time ``i·dt``; the last row at or before that time, wrapping around).
* :class:`GilbertElliott` — a two-state Markov chain (good / bad) with one SNR per state and
  the transition probabilities per step ``p_gb`` (good→bad) and ``p_bg`` (bad→good); a state
  lasts a geometric number of steps with mean ``1/p``. ``state(step)`` is 0 (good) or 1 (bad).
* :class:`BlockRayleigh` — ``SNR = mean · |h|²`` with ``h ~ CN(0, 1)`` drawn once per block of
  ``coherence`` steps, so ``|h|²`` is exponential with mean 1.

Processes are generated lazily from their own ``numpy`` generator and cached, so ``snr_db`` is
a pure function of (seed, step) whatever order it is asked in.

**Transmission** of a feature tensor (features of one frame: the leading axis is the frame):

* :func:`analog` — DeepJSCC-style: each frame's tensor is power-normalised (mean square 1), each
  real value is one real channel symbol, Gaussian noise of variance ``1/SNR_linear`` is added,
  and the normalisation is undone. Two real values share one complex channel use.
* :func:`digital` — the tensor is quantised (``bits`` per value, per-frame min/max scale, two
  float32 numbers of header) and sent error-free at the capacity ``log2(1 + SNR)`` bits per
  channel use, unless the SNR is below ``outage_snr_db``: then the attempt is lost after the
  channel uses of one slot at the threshold rate, and is retried at the next step's SNR up to
  ``retries`` times, after which the frame is dropped (the cloud never sees it; the edge keeps
  its own prediction).

Every transmission reports a :class:`Transmission` per frame: bytes, channel uses, seconds at
``symbol_rate`` channel uses per second, attempts and whether it was delivered.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from policy_store.rewards import capacity


def db_to_linear(db: float | np.ndarray) -> float | np.ndarray:
    return 10.0 ** (np.asarray(db, dtype=np.float64) / 10.0)


def camera_seed(seed: int, camera_id: str) -> int:
    """A stable per-camera seed (independent of Python's hash randomisation)."""
    h = hashlib.sha256(f"{seed}|{camera_id}".encode()).digest()
    return int.from_bytes(h[:8], "little")


# --------------------------------------------------------------------------- SNR processes
class SNRProcess:
    """Seeded SNR in dB per step; subclasses fill :meth:`_generate` for a range of steps."""

    name = "process"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._snr = np.empty(0)

    def _generate(self, start: int, n: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    CHUNK = 4096  # steps generated at a time; fixed, so values never depend on query order

    def _ensure(self, stop: int) -> None:
        parts = [self._snr]
        have = len(self._snr)
        while have < stop:
            parts.append(self._generate(have, self.CHUNK))
            have += self.CHUNK
        if len(parts) > 1:
            self._snr = np.concatenate(parts)

    def snr_db(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be ≥ 0, not {step}")
        self._ensure(step + 1)
        return float(self._snr[step])

    def snr_db_array(self, n: int, start: int = 0) -> np.ndarray:
        """SNR in dB at steps start … start+n-1."""
        self._ensure(start + n)
        return self._snr[start : start + n].copy()

    def describe(self) -> dict[str, object]:
        return {"process": self.name, "seed": self.seed}


class ConstantSNR(SNRProcess):
    name = "constant"

    def __init__(self, snr_db: float, seed: int = 0) -> None:
        super().__init__(seed)
        self.value = float(snr_db)

    def _generate(self, start: int, n: int) -> np.ndarray:
        return np.full(n, self.value)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "snr_db": self.value}


class TraceSNR(SNRProcess):
    """SNR from a ``time,snr_db`` CSV (a header row is allowed); wraps around at its end."""

    name = "trace"

    def __init__(self, times: np.ndarray, snr: np.ndarray, dt: float | None = None) -> None:
        super().__init__(0)
        times, snr = np.asarray(times, float), np.asarray(snr, float)
        if len(times) == 0 or len(times) != len(snr):
            raise ValueError("a trace needs at least one (time, snr_db) row")
        if np.any(np.diff(times) < 0):
            raise ValueError("trace times must not decrease")
        self.times, self.values, self.dt = times, snr, dt

    @classmethod
    def from_csv(cls, path: Path | str, dt: float | None = None) -> TraceSNR:
        rows: list[tuple[float, float]] = []
        with Path(path).open(newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                if not row or row[0].strip().startswith("#"):
                    continue
                try:
                    rows.append((float(row[0]), float(row[1])))
                except (ValueError, IndexError) as exc:
                    if i == 0:  # header
                        continue
                    raise ValueError(f"{path}:{i + 1}: expected time,snr_db, got {row}") from exc
        if not rows:
            raise ValueError(f"{path}: no (time, snr_db) rows")
        arr = np.array(rows)
        return cls(arr[:, 0], arr[:, 1], dt)

    def _generate(self, start: int, n: int) -> np.ndarray:
        steps = np.arange(start, start + n)
        if self.dt is None:  # step indexed
            return self.values[steps % len(self.values)]
        t0, span = self.times[0], self.times[-1] - self.times[0]
        t = steps * self.dt
        if span > 0:
            t = np.mod(t, span + (self.dt if self.dt > 0 else 0))
        idx = np.searchsorted(self.times - t0, t, side="right") - 1
        return self.values[np.clip(idx, 0, len(self.values) - 1)]

    def describe(self) -> dict[str, object]:
        return {"process": self.name, "rows": len(self.values), "dt": self.dt}


class GilbertElliott(SNRProcess):
    """Good/bad two-state Markov chain; starts in its stationary distribution."""

    name = "gilbert-elliott"

    def __init__(
        self,
        good_db: float = 20.0,
        bad_db: float = 0.0,
        p_gb: float = 0.05,
        p_bg: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        if not (0 < p_gb <= 1 and 0 < p_bg <= 1):
            raise ValueError("transition probabilities must lie in (0, 1]")
        self.good_db, self.bad_db, self.p_gb, self.p_bg = good_db, bad_db, p_gb, p_bg
        self._states = np.empty(0, dtype=np.int8)

    @property
    def stationary_bad(self) -> float:
        return self.p_gb / (self.p_gb + self.p_bg)

    def _generate(self, start: int, n: int) -> np.ndarray:
        if start == 0:
            s = int(self._rng.random() < self.stationary_bad)  # the chain's initial state
        else:
            s = int(self._states[start - 1])
        u = self._rng.random(n)
        states = np.empty(n, dtype=np.int8)
        for i in range(n):
            if i or start:  # step 0 is the initial state itself
                s = (1 if u[i] < self.p_gb else 0) if s == 0 else (0 if u[i] < self.p_bg else 1)
            states[i] = s
        self._states = np.concatenate([self._states, states])
        return np.where(states == 0, self.good_db, self.bad_db).astype(float)

    def state(self, step: int) -> int:
        """0 = good, 1 = bad."""
        self._ensure(step + 1)
        return int(self._states[step])

    def states_array(self, n: int, start: int = 0) -> np.ndarray:
        self._ensure(start + n)
        return self._states[start : start + n].copy()

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "good_db": self.good_db,
            "bad_db": self.bad_db,
            "p_gb": self.p_gb,
            "p_bg": self.p_bg,
        }


class BlockRayleigh(SNRProcess):
    """SNR = mean · |h|², h ~ CN(0, 1) constant over blocks of ``coherence`` steps."""

    name = "rayleigh"

    def __init__(self, mean_db: float = 10.0, coherence: int = 1, seed: int = 0) -> None:
        super().__init__(seed)
        if coherence < 1:
            raise ValueError("coherence must be ≥ 1 step")
        self.mean_db, self.coherence = float(mean_db), int(coherence)
        self._gains = np.empty(0)  # |h|² per block

    def _generate(self, start: int, n: int) -> np.ndarray:
        last_block = (start + n - 1) // self.coherence
        need = last_block + 1 - len(self._gains)
        if need > 0:
            h = (self._rng.standard_normal(need) + 1j * self._rng.standard_normal(need)) / np.sqrt(
                2
            )
            self._gains = np.concatenate([self._gains, np.abs(h) ** 2])
        gains = self._gains[np.arange(start, start + n) // self.coherence]
        return self.mean_db + 10.0 * np.log10(np.maximum(gains, 1e-300))

    def gain(self, step: int) -> float:
        """|h|² at ``step``."""
        self._ensure(step + 1)
        return float(self._gains[step // self.coherence])

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "mean_db": self.mean_db, "coherence": self.coherence}


def parse_process(spec: str, seed: int = 0) -> SNRProcess:
    """Parse ``constant:10``, ``rayleigh:10[,coherence]``, ``ge:good,bad,p_gb,p_bg`` or
    ``trace:FILE[,dt]`` into a process."""
    kind, _, rest = spec.partition(":")
    args = [a for a in rest.split(",") if a]
    try:
        if kind in ("constant", "awgn"):
            return ConstantSNR(float(args[0]), seed)
        if kind == "rayleigh":
            return BlockRayleigh(float(args[0]), int(args[1]) if len(args) > 1 else 1, seed)
        if kind in ("ge", "gilbert-elliott"):
            return GilbertElliott(*(float(a) for a in args[:4]), seed=seed)  # type: ignore[misc]
        if kind == "trace":
            return TraceSNR.from_csv(args[0], float(args[1]) if len(args) > 1 else None)
    except (IndexError, ValueError) as exc:
        raise ValueError(f"bad channel spec {spec!r}: {exc}") from exc
    raise ValueError(
        f"unknown channel process {kind!r}; expected constant, rayleigh, ge or trace: {spec!r}"
    )


def camera_process(spec: str, camera_id: str, seed: int = 0) -> SNRProcess:
    """The SNR process of one camera: same spec, independent seeded realisation."""
    return parse_process(spec, camera_seed(seed, camera_id))


# --------------------------------------------------------------------------- transmission
@dataclass(frozen=True)
class Transmission:
    """What sending one frame's features cost, and whether they arrived."""

    bytes: int  # payload bits / 8 (analog: the float16 size of the tensor, for reference)
    channel_uses: float  # complex channel uses, every attempt included
    seconds: float  # channel_uses / symbol_rate
    attempts: int = 1
    delivered: bool = True
    snr_db: float = float("nan")  # SNR of the (last) attempt


def _per_frame_snr(snr_db: float | np.ndarray, n: int) -> np.ndarray:
    s = np.broadcast_to(np.asarray(snr_db, dtype=np.float64), (n,))
    return s.copy()


def analog(
    features: torch.Tensor,
    snr_db: float | np.ndarray,
    generator: torch.Generator | None = None,
    symbol_rate: float = 1e6,
) -> tuple[torch.Tensor, list[Transmission]]:
    """Power-normalise each frame's features, add N(0, 1/SNR) per value, undo the scaling."""
    n = features.shape[0]
    snr = _per_frame_snr(snr_db, n)
    x = features.float()
    dims = tuple(range(1, x.dim()))
    power = x.pow(2).mean(dim=dims, keepdim=True).clamp_min(1e-12)
    sigma = torch.from_numpy(np.sqrt(1.0 / db_to_linear(snr))).float()
    sigma = sigma.view(n, *([1] * (x.dim() - 1))).to(x.device)
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    y = (x / power.sqrt() + sigma * noise) * power.sqrt()
    per = x[0].numel() if n else 0
    uses = per / 2.0
    info = [
        Transmission(per * 2, uses, uses / symbol_rate, 1, True, float(snr[i])) for i in range(n)
    ]
    return y.to(features.dtype), info


def quantise(features: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Uniform quantisation to ``bits`` per value with a per-frame min/max scale (dequantised)."""
    if not 1 <= bits <= 16:
        raise ValueError("bits must lie in 1..16")
    x = features.float()
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    scale = ((hi - lo) / (2**bits - 1)).clamp_min(1e-12)
    q = torch.round((flat - lo) / scale)
    return (q * scale + lo).reshape(x.shape).to(features.dtype)


def digital_costs(
    numel: int,
    snr_db: np.ndarray,
    bits: int = 8,
    outage_snr_db: float = 0.0,
    retries: int = 1,
    symbol_rate: float = 1e6,
    retry_snr_db: np.ndarray | None = None,
) -> list[Transmission]:
    """Per-frame cost and delivery of ``numel`` values at ``bits`` each.

    ``snr_db`` (N,) is the SNR of the first attempt; ``retry_snr_db`` (N, retries) the SNR of
    each retry (default: the same SNR again, i.e. a static channel, where retrying an outage
    never helps). A lost attempt costs the channel uses of the payload at the threshold rate.
    """
    payload_bits = numel * bits + 64  # + min and scale as two float32
    n = len(snr_db)
    if retry_snr_db is None:
        retry_snr_db = np.repeat(np.asarray(snr_db, float)[:, None], retries, axis=1)
    lost_uses = payload_bits / float(capacity(outage_snr_db))
    out = []
    for i in range(n):
        uses, attempts, delivered, last = 0.0, 0, False, float(snr_db[i])
        for a in range(retries + 1):
            s = float(snr_db[i]) if a == 0 else float(retry_snr_db[i, a - 1])
            attempts, last = attempts + 1, s
            if s >= outage_snr_db:
                uses += payload_bits / float(capacity(s))
                delivered = True
                break
            uses += lost_uses
        out.append(
            Transmission(
                math.ceil(payload_bits / 8), uses, uses / symbol_rate, attempts, delivered, last
            )
        )
    return out


def digital(
    features: torch.Tensor,
    snr_db: float | np.ndarray,
    bits: int = 8,
    outage_snr_db: float = 0.0,
    retries: int = 1,
    symbol_rate: float = 1e6,
    retry_snr_db: np.ndarray | None = None,
) -> tuple[torch.Tensor, list[Transmission]]:
    """Quantised features as received (error-free when delivered) and the per-frame costs."""
    n = features.shape[0]
    snr = _per_frame_snr(snr_db, n)
    info = digital_costs(
        features[0].numel() if n else 0,
        snr,
        bits,
        outage_snr_db,
        retries,
        symbol_rate,
        retry_snr_db,
    )
    return quantise(features, bits), info


__all__ = [
    "BlockRayleigh",
    "ConstantSNR",
    "GilbertElliott",
    "SNRProcess",
    "TraceSNR",
    "Transmission",
    "analog",
    "camera_process",
    "capacity",
    "db_to_linear",
    "digital",
    "digital_costs",
    "parse_process",
    "quantise",
]
