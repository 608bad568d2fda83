"""Entropy coding of integer latents with shipped integer tables (rANS via ``constriction``).

Why ``constriction`` and not CompressAI's ``EntropyBottleneck``: it is a small Rust wheel that
needs numpy only (no torch, numpy < 3), so the edge can code latents without PyTorch, and its
ANS coder takes any probability table we hand it. CompressAI pins numpy < 2, pulls torchvision
and computes its CDF tables from its density at run time on each side.

The tables are *integers* that ship in the checkpoint: per rate point and latent channel, a
symbol offset and frequencies summing to ``2**PRECISION`` (every symbol ≥ 1, so any symbol in
range can be coded). Edge and cloud hand constriction the same exactly representable
probabilities (``freq / 2**PRECISION``), so both build the same coder model bit for bit.
Symbols outside a channel's range are clamped to it on the edge (the tables span the training
latents' range plus a margin, so this is rare and bounded).

A payload decodes to exactly the latent's symbol count, whatever its bytes: a short or
garbage payload yields symbols or a :class:`LatentCodingError`, never more work or memory than
the latent's shape allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Frequencies of a table sum to 2**PRECISION (constriction's ANS uses 24-bit probabilities:
#: 16-bit dyadic frequencies are represented exactly).
PRECISION = 16
#: Largest alphabet a channel's table may have (symbols offset .. offset + MAX_ALPHABET - 1).
MAX_ALPHABET = 1024


class LatentCodingError(ValueError):
    """A payload that does not decode to a latent of the expected shape."""


@dataclass(frozen=True, kw_only=True)
class ChannelTables:
    """Integer coding tables of one rate point: ``freqs[c]`` over symbols ``offsets[c] + i``."""

    offsets: np.ndarray  # (C,) int32
    freqs: np.ndarray  # (C, A) int32, rows sum to 2**PRECISION, 0 past a row's length
    lengths: np.ndarray  # (C,) int32: alphabet size per channel

    def __post_init__(self) -> None:
        c = len(self.offsets)
        if self.freqs.ndim != 2 or self.freqs.shape[0] != c or self.lengths.shape != (c,):
            raise ValueError("tables: offsets, freqs and lengths disagree on the channel count")
        if self.freqs.shape[1] > MAX_ALPHABET or (self.lengths < 1).any():
            raise ValueError("tables: alphabet out of bounds")
        for row, n in zip(self.freqs, self.lengths, strict=True):
            if int(row[:n].sum()) != 1 << PRECISION or (row[:n] < 1).any() or row[n:].any():
                raise ValueError("tables: a row is not a full-precision frequency table")

    @classmethod
    def from_histograms(cls, counts: np.ndarray, offsets: np.ndarray) -> ChannelTables:
        """Tables from per-channel symbol counts (C, A) over symbols ``offsets[c] + i``: the
        empirical distribution, every symbol at least 1/2**PRECISION, rows trimmed to the
        range seen."""
        C, A = counts.shape
        freqs = np.zeros((C, A), np.int32)
        lengths = np.zeros(C, np.int32)
        offs = np.asarray(offsets, np.int32).copy()
        for c in range(C):
            seen = np.flatnonzero(counts[c])
            lo, hi = (int(seen[0]), int(seen[-1])) if len(seen) else (0, 0)
            row = counts[c, lo : hi + 1].astype(np.float64)
            n = len(row)
            total = 1 << PRECISION
            f = np.maximum(1, np.floor(row / max(row.sum(), 1) * (total - n)).astype(np.int64))
            f[np.argmax(f)] += total - int(f.sum())  # exact sum: the rest to the mode
            freqs[c, :n] = f
            lengths[c] = n
            offs[c] = offs[c] + lo
        return cls(offsets=offs, freqs=freqs, lengths=lengths)

    def bits(self, q: np.ndarray) -> float:
        """Ideal code length (bits) of symbols ``q`` (C, H, W) under these tables."""
        total = 0.0
        for c in range(len(self.offsets)):
            s = np.clip(q[c].ravel() - self.offsets[c], 0, self.lengths[c] - 1)
            total += float(-np.log2(self.freqs[c, s] / (1 << PRECISION)).sum())
        return total


class LatentCoder:
    """Codes (C, H, W) integer latents to bytes and back with one rate point's tables."""

    def __init__(self, tables: ChannelTables) -> None:
        import constriction

        self._stack = constriction.stream.stack
        self.tables = tables
        scale = float(1 << PRECISION)
        model = constriction.stream.model
        # a one-symbol channel carries no information: no model, nothing coded (constriction
        # refuses a one-entry categorical)
        self._models = [
            model.Categorical((row[:n] / scale).astype(np.float32), perfect=False)
            if n > 1
            else None
            for row, n in zip(tables.freqs, tables.lengths, strict=True)
        ]

    @property
    def channels(self) -> int:
        return len(self._models)

    def clamp(self, q: np.ndarray) -> np.ndarray:
        """Symbols (C, H, W) clamped into each channel's table."""
        lo = self.tables.offsets.reshape(-1, 1, 1)
        hi = lo + self.tables.lengths.reshape(-1, 1, 1) - 1
        return np.clip(q, lo, hi)

    def encode(self, q: np.ndarray) -> bytes:
        """Integer latent (C, H, W) → bytes (channels in order; clamped into the tables)."""
        if q.ndim != 3 or q.shape[0] != self.channels:
            raise ValueError(f"latent of shape {q.shape} for {self.channels} channels")
        q = self.clamp(q.astype(np.int64))
        coder = self._stack.AnsCoder()
        for c in reversed(range(self.channels)):
            if self._models[c] is None:
                continue
            sym = (q[c].ravel() - self.tables.offsets[c]).astype(np.int32)
            coder.encode_reverse(sym, self._models[c])
        return coder.get_compressed().tobytes()

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Bytes → integer latent of ``shape`` (exactly its symbol count, whatever the bytes)."""
        if shape[0] != self.channels:
            raise LatentCodingError(f"latent has {shape[0]} channels, tables {self.channels}")
        if len(data) % 4:
            raise LatentCodingError(f"payload of {len(data)} B is not whole 32-bit words")
        try:
            words = np.frombuffer(data, dtype=np.uint32).copy()
            coder = self._stack.AnsCoder(words)
            n = shape[1] * shape[2]
            out = np.empty(shape, np.int32)
            for c in range(self.channels):
                m = self._models[c]
                out[c] = 0 if m is None else coder.decode(m, n).reshape(shape[1:])
                out[c] += self.tables.offsets[c]
        except LatentCodingError:
            raise
        except Exception as exc:  # the coder's own errors: a payload it cannot decode
            raise LatentCodingError(f"latent payload does not decode: {exc}") from exc
        return out
