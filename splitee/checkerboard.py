"""Checkerboard context coding of integer latents: what the factorized tables leave on the table.

A factorized model codes each symbol with its channel's table, blind to where it sits; but
latents are spatially smooth (a frame's background is zeros, its object is busy), so a symbol's
neighbours say much about it. Coding every latent in two passes captures that without any
float arithmetic that edge and cloud could compute differently (He et al., "Checkerboard
Context Model for Efficient Learned Image Compression", CVPR 2021, with integer contexts):

1. the *anchors* — positions with ``(h + w)`` even — with the channel's table, as before;
2. every other position with a table chosen by a context computed from the decoded anchors
   only: how large its four neighbours are in its own channel (``NB_EDGES`` buckets of the sum
   of their absolute values) and how many of the four neighbours are nonzero over all channels
   (``act_edges``, fitted on the training latents).

The context is an integer function of integer symbols, so the decoder recomputes it exactly.
Each pass is one vectorised call into constriction with a probability row per symbol, so the
per-frame cost stays two calls whatever the channel count. All rows of a channel span the
same symbol range, so clamping to the anchor table keeps every symbol codable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitee.entropy import MAX_ALPHABET, PRECISION, ChannelTables, LatentCodingError

#: Bucket edges of the same-channel context (sum of the four neighbours' |symbol|):
#: 0 · 1 · 2–3 · 4–6 · ≥ 7.
NB_EDGES = np.array([1, 2, 4, 7], np.int64)


def anchor_mask(h: int, w: int) -> np.ndarray:
    """True where a symbol is coded in the first pass (``(row + col)`` even)."""
    rows, cols = np.indices((h, w))
    return (rows + cols) % 2 == 0


def _neighbour_sums(a: np.ndarray) -> np.ndarray:
    """Sum of the four neighbours (up, down, left, right) over the last two axes, 0 past the
    border."""
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def activity(q: np.ndarray) -> np.ndarray:
    """(…, C, H, W) symbols → (…, H, W): nonzero anchor neighbours over all channels."""
    anchors = anchor_mask(*q.shape[-2:])
    return _neighbour_sums(((q != 0) & anchors).astype(np.int32)).sum(-3)


def context_index(q: np.ndarray, act_edges: np.ndarray) -> np.ndarray:
    """(…, C, H, W) symbols → the context of every position (meaningful off the anchors),
    computed from the anchors' symbols only."""
    anchors = anchor_mask(*q.shape[-2:])
    nb = _neighbour_sums(np.abs(q).astype(np.int64) * anchors)
    act = activity(q)[..., None, :, :]
    nb_b = np.searchsorted(NB_EDGES, nb, side="right")
    act_b = np.searchsorted(act_edges, act, side="right")
    return nb_b * (len(act_edges) + 1) + act_b


@dataclass(frozen=True, kw_only=True)
class ContextTables:
    """One rate point's tables: ``anchors`` (C rows) and ``context`` (C × K rows, row
    ``c * K + j`` for channel c in context j, every row of a channel over the anchor row's
    range)."""

    anchors: ChannelTables
    context: ChannelTables
    act_edges: np.ndarray  # int: bucket edges of the all-channel activity

    def __post_init__(self) -> None:
        C, K = len(self.anchors.offsets), self.contexts
        if len(self.context.offsets) != C * K:
            raise ValueError(f"context tables: {len(self.context.offsets)} rows for {C}×{K}")
        if len(self.act_edges) > 8 or (np.diff(self.act_edges) <= 0).any():
            raise ValueError("context tables: activity edges must rise, at most 8")
        rep = np.repeat
        if (self.context.offsets != rep(self.anchors.offsets, K)).any() or (
            self.context.lengths != rep(self.anchors.lengths, K)
        ).any():
            raise ValueError("context tables: a channel's rows span different ranges")

    @property
    def contexts(self) -> int:
        """K: contexts per channel."""
        return (len(NB_EDGES) + 1) * (len(self.act_edges) + 1)

    def bits(self, q: np.ndarray) -> float:
        """Ideal code length (bits) of symbols ``q`` (C, H, W) under these tables."""
        rows, sym, _ = _rows_and_symbols(self, q)
        total = 0.0
        for tab, r, s in zip((self.anchors, self.context), rows, sym, strict=True):
            total += float(-np.log2(tab.freqs[r, s] / (1 << PRECISION)).sum())
        return total


def fit_context_tables(q: np.ndarray, act_bins: int = 3) -> ContextTables:
    """Tables from training symbols ``q`` (N, C, H, W): each channel's range is the one seen
    plus a margin symbol each side (at most MAX_ALPHABET); the activity edges split the
    training activity into ``act_bins`` near-equal parts."""
    _, C, H, W = q.shape
    half = MAX_ALPHABET // 2
    q = np.clip(q, -half + 1, half - 2).astype(np.int64)
    anchors = anchor_mask(H, W)
    act = activity(q)[:, ~anchors]
    qs = np.quantile(act, np.linspace(0, 1, act_bins + 1)[1:-1]) if act_bins > 1 else []
    act_edges = np.unique(np.ceil(np.asarray(qs, np.float64)).astype(np.int64))
    act_edges = act_edges[act_edges > 0]
    K = (len(NB_EDGES) + 1) * (len(act_edges) + 1)
    ctx = context_index(q, act_edges)
    lo, hi = q.min(axis=(0, 2, 3)) + half - 1, q.max(axis=(0, 2, 3)) + half + 1
    a_counts = np.zeros((C, MAX_ALPHABET), np.int64)
    c_counts = np.zeros((C * K, MAX_ALPHABET), np.int64)
    chan = np.arange(C)[None, :, None]
    sa = q[:, :, anchors] + half
    np.add.at(a_counts, (np.broadcast_to(chan, sa.shape), sa), 1)
    sc, cc = q[:, :, ~anchors] + half, ctx[:, :, ~anchors]
    np.add.at(c_counts, (np.broadcast_to(chan, sc.shape) * K + cc, sc), 1)
    for counts, rows_of in ((a_counts, 1), (c_counts, K)):
        for c in range(C):  # the margin symbols make every row of a channel span one range
            counts[c * rows_of : (c + 1) * rows_of, lo[c]] += 1
            counts[c * rows_of : (c + 1) * rows_of, hi[c]] += 1
    return ContextTables(
        anchors=ChannelTables.from_histograms(a_counts, np.full(C, -half, np.int32)),
        context=ChannelTables.from_histograms(c_counts, np.full(C * K, -half, np.int32)),
        act_edges=act_edges,
    )


def _rows_and_symbols(
    t: ContextTables, q: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per pass: the table row and in-table symbol of each coded position, and the anchor
    mask (symbols clamped to their channel's range first)."""
    C, H, W = q.shape
    lo = t.anchors.offsets.reshape(-1, 1, 1).astype(np.int64)
    q = np.clip(q.astype(np.int64), lo, lo + t.anchors.lengths.reshape(-1, 1, 1) - 1)
    anchors = anchor_mask(H, W)
    chan = np.broadcast_to(np.arange(C)[:, None, None], q.shape)
    rows_a = chan[:, anchors]
    rows_c = chan[:, ~anchors] * t.contexts + context_index(q, t.act_edges)[:, ~anchors]
    sym = [q[:, anchors] - lo[:, :, 0], q[:, ~anchors] - lo[:, :, 0]]
    return [rows_a.ravel(), rows_c.ravel()], [s.ravel() for s in sym], anchors


class CheckerboardCoder:
    """Codes (C, H, W) integer latents to bytes and back with one rate point's context tables
    (same interface as :class:`splitee.entropy.LatentCoder`)."""

    def __init__(self, tables: ContextTables) -> None:
        import constriction

        self._stack = constriction.stream.stack
        self._family = constriction.stream.model.Categorical(perfect=False)
        self.tables = tables
        scale = float(1 << PRECISION)
        # one float row per table row, as exactly representable dyadic probabilities
        self._probs = [
            (tab.freqs[:, : int(tab.lengths.max())] / scale).astype(np.float32)
            for tab in (tables.anchors, tables.context)
        ]

    @property
    def channels(self) -> int:
        return len(self.tables.anchors.offsets)

    def clamp(self, q: np.ndarray) -> np.ndarray:
        lo = self.tables.anchors.offsets.reshape(-1, 1, 1)
        return np.clip(q, lo, lo + self.tables.anchors.lengths.reshape(-1, 1, 1) - 1)

    def encode(self, q: np.ndarray) -> bytes:
        """Integer latent (C, H, W) → bytes: anchors, then the rest in their contexts."""
        if q.ndim != 3 or q.shape[0] != self.channels:
            raise ValueError(f"latent of shape {q.shape} for {self.channels} channels")
        rows, sym, _ = _rows_and_symbols(self.tables, q)
        coder = self._stack.AnsCoder()
        for p in (1, 0):  # a stack: the pass decoded last is pushed first
            if len(sym[p]):
                coder.encode_reverse(sym[p].astype(np.int32), self._family, self._probs[p][rows[p]])
        return coder.get_compressed().tobytes()

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Bytes → integer latent of ``shape`` (exactly its symbol count, whatever the bytes)."""
        C, H, W = shape
        if self.channels != C:
            raise LatentCodingError(f"latent has {C} channels, tables {self.channels}")
        if len(data) % 4:
            raise LatentCodingError(f"payload of {len(data)} B is not whole 32-bit words")
        t = self.tables
        lo = t.anchors.offsets.astype(np.int64)
        anchors = anchor_mask(H, W)
        chan = np.broadcast_to(np.arange(C)[:, None, None], shape)
        out = np.zeros(shape, np.int64)
        try:
            coder = self._stack.AnsCoder(np.frombuffer(data, dtype=np.uint32).copy())
            rows_a = chan[:, anchors]
            if rows_a.size:
                s = coder.decode(self._family, self._probs[0][rows_a.ravel()])
                out[:, anchors] = s.reshape(rows_a.shape) + lo[:, None]
            ctx = context_index(out, t.act_edges)[:, ~anchors]
            rows_c = chan[:, ~anchors] * t.contexts + ctx
            if rows_c.size:
                s = coder.decode(self._family, self._probs[1][rows_c.ravel()])
                out[:, ~anchors] = s.reshape(rows_c.shape) + lo[:, None]
        except Exception as exc:  # the coder's own errors: a payload it cannot decode
            raise LatentCodingError(f"latent payload does not decode: {exc}") from exc
        return out.astype(np.int32)
