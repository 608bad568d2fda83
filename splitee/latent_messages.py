"""The edge's half of a learned bottleneck that needs no torch: integer symbols → wire messages.

Whatever computed the symbols — the torch encoder (:class:`splitee.models.latent_codec.
LatentCodec`) or an exported edge graph on ONNX Runtime (:mod:`splitee.onnx_edge`) — the
bytes on the wire come from here: the rate point chosen per arm (:func:`choose_rates`, the
same rule on edge and cloud), rANS with the shipped integer tables (checkerboard contexts or
factorized: :mod:`splitee.coding_tables`) and the latent header
(:func:`splitee.wire.encode_latent`).

Arms are the *worker's* arms: with the send-frame arm in front, the backbone's arm k is the
worker's arm k + ``arm_offset``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from splitee.coding_tables import Coder, Tables, coder_for
from splitee.wire import LATENT_HEADER_BYTES, encode_latent


def choose_rates(card: dict, arms: Iterable[int], max_drop: float) -> dict[int, int]:
    """Per backbone arm, the rate point with the fewest median bytes whose top-1 on the test
    split (the bottleneck card's ``arms``) is within ``max_drop`` of the unsplit model's —
    or, where none is, within ``max_drop`` of the arm's most accurate rate point (a finer
    step that buys no accuracy is not worth its bytes); without a card entry, the finest
    rate point."""
    by_arm = {a["arm"] - 1: a for a in card.get("arms", [])}
    out = {}
    for k in arms:
        row = by_arm.get(k)
        if row is None:
            out[k] = 0
            continue
        reach = max(r["top1"] for r in row["rates"])
        ref = row["unsplit_top1"] if reach >= row["unsplit_top1"] - max_drop - 1e-9 else reach
        pool = [r for r in row["rates"] if r["top1"] >= ref - max_drop - 1e-9]
        out[k] = min(pool, key=lambda r: r["bytes_median"])["rate"]
    return out


def median_bytes(card: dict, k: int, rate: int) -> int | None:
    """The card's median message bytes of backbone arm ``k`` at ``rate`` (header included),
    or None without a card entry."""
    for a in card.get("arms", []):
        if a["arm"] - 1 == k:
            return int(a["rates"][rate]["bytes_median"]) + LATENT_HEADER_BYTES
    return None


class LatentWriter:
    """Codes a batch of one arm's integer latents into one wire message per frame."""

    def __init__(
        self, tables: dict[int, list[Tables]], rates: dict[int, int], arm_offset: int = 0
    ) -> None:
        self.offset = arm_offset
        self.rates = dict(rates)
        self.tables = tables
        self._coders = {k: coder_for(tables[k][r]) for k, r in self.rates.items()}

    def shifted(self, arm_offset: int) -> LatentWriter:
        return LatentWriter(self.tables, self.rates, arm_offset)

    def handles(self, arm: int) -> bool:
        """Whether the worker's ``arm`` offloads a latent (else a raw tensor or the frame)."""
        return arm - self.offset in self._coders

    def rate(self, arm: int) -> int:
        return self.rates[arm - self.offset]

    def coder(self, arm: int) -> Coder:
        return self._coders[arm - self.offset]

    def messages(self, symbols: np.ndarray, arm: int) -> list[bytes]:
        """(N, C, H, W) integer symbols of the worker's ``arm`` → N latent messages."""
        coder, r = self.coder(arm), self.rate(arm)
        return [encode_latent(coder.encode(q), q.shape, r) for q in symbols]
