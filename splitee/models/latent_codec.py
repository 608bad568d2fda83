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

from splitee.entropy import LatentCodingError
from splitee.latent_messages import LatentWriter, median_bytes
from splitee.latent_messages import choose_rates as choose_card_rates
from splitee.models.bottleneck_checkpoint import BottleneckBundle
from splitee.wire import WireError, decode_latent_header


def choose_rates(bundle: BottleneckBundle, max_drop: float) -> dict[int, int]:
    """Per backbone arm, the rate point chosen from the bundle's card
    (:func:`splitee.latent_messages.choose_rates`: the same rule on a torch-free edge)."""
    return choose_card_rates(bundle.card, bundle.arms, max_drop)


class LatentCodec:
    """Bottleneck codecs of the backbone's split arms at fixed rate points."""

    def __init__(
        self, bundle: BottleneckBundle, rates: dict[int, int], arm_offset: int = 0
    ) -> None:
        self.bundle = bundle
        self.offset = arm_offset
        self.rates = dict(rates)
        # the torch-free half (rANS and the header), shared with the ONNX Runtime edge
        self.writer = LatentWriter(bundle.tables, self.rates, arm_offset)
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
        return self.writer.handles(arm)

    def latent_shape(self, arm: int) -> tuple[int, int, int]:
        return self.bundle.bottlenecks.latent_shape(arm - self.offset)

    def median_bytes(self, arm: int) -> int | None:
        """The card's median payload bytes at this arm's rate point (None without a card)."""
        k = arm - self.offset
        return median_bytes(self.bundle.card, k, self.rates[k])

    @torch.inference_mode()
    def quantize(self, feats: torch.Tensor, arm: int) -> np.ndarray:
        """Edge: a batch of arm ``arm``'s prefix tensors → their integer symbols (int32)."""
        k = arm - self.offset
        q = self.bundle.bottlenecks.codecs[k].quantize(feats.float().to(self.device), self.rates[k])
        return q.cpu().numpy()

    def messages(self, symbols: np.ndarray, arm: int) -> list[bytes]:
        """Edge: a batch of integer symbols → one latent message per frame (no torch)."""
        return self.writer.messages(symbols, arm)

    def encode(self, feats: torch.Tensor, arm: int) -> list[bytes]:
        """Edge: a batch of arm ``arm``'s prefix tensors → one latent message per frame."""
        return self.messages(self.quantize(feats, arm), arm)

    def symbols(self, value: bytes, arm: int) -> np.ndarray:
        """Cloud: one record's latent message → its integer symbols (float32), checked
        against this arm's latent shape and rate; a WireError for anything else."""
        k = arm - self.offset
        if not self.handles(arm):
            raise WireError("bad_codec", f"arm {arm} has no bottleneck codec")
        shape = self.latent_shape(arm)
        rate, payload = decode_latent_header(value, shape, self.bundle.bottlenecks.num_rates)
        if rate != self.rates[k]:
            raise WireError(
                "bad_latent", f"rate {rate}, this deployment codes arm {arm} at {self.rates[k]}"
            )
        try:
            return self.writer.coder(arm).decode(bytes(payload), shape).astype(np.float32)
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
