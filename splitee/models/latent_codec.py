"""The live path of a learned bottleneck: edge encodes split tensors, cloud decodes them.

One object serves both roles (each uses its half): the edge calls :meth:`LatentCodec.encode`
on a batch of prefix tensors of one arm and gets one wire message per frame; the cloud calls
:meth:`LatentCodec.symbols` per record (every field checked, errors are ``WireError``s, so a
bad record becomes a dead letter) and :meth:`LatentCodec.reconstruct` per batch before the
backbone's suffix.

Arms here are the *worker's* arms: with the send-frame arm in front (FrameArmNet) the
backbone's split arm k is the worker's arm k + 1, so the codec is built with that offset.
Each arm codes at one rate point, chosen once (:func:`choose_rates`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from splitee.entropy import LatentCoder, LatentCodingError
from splitee.models.bottleneck_checkpoint import BottleneckBundle
from splitee.wire import LATENT_HEADER_BYTES, WireError, decode_latent_header, encode_latent


def choose_rates(bundle: BottleneckBundle, max_drop: float) -> dict[int, int]:
    """Per backbone arm, the rate point with the fewest median bytes whose top-1 on the test
    split (the card's) is within ``max_drop`` of the unsplit model's; without a card entry,
    the finest rate point."""
    by_arm = {a["arm"] - 1: a for a in bundle.card.get("arms", [])}
    out = {}
    for k in bundle.arms:
        row = by_arm.get(k)
        if row is None:
            out[k] = 0
            continue
        ok = [r for r in row["rates"] if r["top1"] >= row["unsplit_top1"] - max_drop - 1e-9]
        pool = ok or [max(row["rates"], key=lambda r: r["top1"])]
        out[k] = min(pool, key=lambda r: r["bytes_median"])["rate"]
    return out


class LatentCodec:
    """Bottleneck codecs of the backbone's split arms at fixed rate points."""

    def __init__(
        self, bundle: BottleneckBundle, rates: dict[int, int], arm_offset: int = 0
    ) -> None:
        self.bundle = bundle
        self.offset = arm_offset
        self.rates = dict(rates)
        self._coders = {k: LatentCoder(bundle.tables[k][r]) for k, r in self.rates.items()}
        self.device = torch.device("cpu")

    def shifted(self, arm_offset: int) -> LatentCodec:
        """The same codecs and rate points for a model whose arms are offset (the send-frame
        arm in front), without loading anything again."""
        return LatentCodec(self.bundle, self.rates, arm_offset)

    def to(self, device: torch.device | str) -> LatentCodec:
        self.device = torch.device(device)
        self.bundle.bottlenecks.to(self.device)
        return self

    def handles(self, arm: int) -> bool:
        """Whether the worker's ``arm`` offloads a latent (else a raw tensor or the frame)."""
        return arm - self.offset in self._coders

    def latent_shape(self, arm: int) -> tuple[int, int, int]:
        return self.bundle.bottlenecks.latent_shape(arm - self.offset)

    def median_bytes(self, arm: int) -> int | None:
        """The card's median payload bytes at this arm's rate point (None without a card)."""
        k = arm - self.offset
        for a in self.bundle.card.get("arms", []):
            if a["arm"] - 1 == k:
                return int(a["rates"][self.rates[k]]["bytes_median"]) + LATENT_HEADER_BYTES
        return None

    @torch.inference_mode()
    def encode(self, feats: torch.Tensor, arm: int) -> list[bytes]:
        """Edge: a batch of arm ``arm``'s prefix tensors → one latent message per frame."""
        k = arm - self.offset
        r = self.rates[k]
        q = self.bundle.bottlenecks.codecs[k].quantize(feats.float().to(self.device), r)
        q = q.cpu().numpy()
        coder = self._coders[k]
        return [encode_latent(coder.encode(qi), qi.shape, r) for qi in q]

    def symbols(self, value: bytes, arm: int) -> np.ndarray:
        """Cloud: one record's latent message → its integer symbols (float32), checked
        against this arm's latent shape and rate; a WireError for anything else."""
        k = arm - self.offset
        if k not in self._coders:
            raise WireError("bad_codec", f"arm {arm} has no bottleneck codec")
        shape = self.latent_shape(arm)
        rate, payload = decode_latent_header(value, shape, self.bundle.bottlenecks.num_rates)
        if rate != self.rates[k]:
            raise WireError(
                "bad_latent", f"rate {rate}, this deployment codes arm {arm} at {self.rates[k]}"
            )
        try:
            return self._coders[k].decode(bytes(payload), shape).astype(np.float32)
        except LatentCodingError as exc:
            raise WireError("bad_latent", str(exc)) from None

    @torch.inference_mode()
    def reconstruct(self, symbols: torch.Tensor, arm: int) -> torch.Tensor:
        """Cloud: a batch of symbols → the prefix tensors the backbone's suffix runs on."""
        k = arm - self.offset
        return self.bundle.bottlenecks.codecs[k].dequantize(symbols.to(self.device), self.rates[k])


def encoder_flops(bundle: BottleneckBundle, arms: Sequence[int]) -> dict[int, int]:
    """FLOPs of each backbone arm's encoder (what the edge adds to that arm's cost)."""
    from splitee.models.bottleneck import module_flops

    out = {}
    for k in arms:
        c = bundle.bottlenecks.codecs[k]
        out[k] = module_flops(c.encoder, c.spec.in_shape)
    return out
