"""A multi-exit network that can be cut at any exit: the split API and batched early exit.

Arms are 0-based here: arm ``k`` (0 ≤ k < L) is the exit after block ``depths[k]``; arm
``L-1`` is the final classifier after the last block. The split API is

* ``prefix(x, k)``          stem and blocks 1 … ℓ_k (what the edge runs),
* ``exit_logits(h, k)``     exit head k on those features,
* ``suffix(h, k)``          blocks ℓ_k+1 … B and the final head (what the cloud runs),

so that ``suffix(prefix(x, k), k) == forward(x)`` for every k. :meth:`early_exit` runs one batch
whose frames have different arms, dropping each frame from the batch at its arm's exit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from splitee.models.resnet import DEPTHS, CifarResNet

HEADS = ("conv1", "conv2")


class ExitHead(nn.Module):
    """``conv1``: Conv3x3(→64) → BN → ReLU → global average pool → Linear;
    ``conv2``: a second Conv3x3(→128) → BN → ReLU before the pool.

    (ours) I-SplitEE's BN→GAP→Linear head is far too weak on the 16-channel maps of a CIFAR
    ResNet's first stage. Strided convolutions (down to 8x8) keep the head cheap: ``conv1``
    costs about half a basic block, ``conv2`` about one and a half.
    """

    def __init__(
        self, in_ch: int, spatial: int, num_classes: int = 10, kind: str = "conv1"
    ) -> None:
        super().__init__()
        if kind not in HEADS:
            raise ValueError(f"unknown exit head {kind!r}; expected one of {HEADS}")
        stride = 2 if spatial > 8 else 1
        self.conv = nn.Conv2d(in_ch, 64, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(64)
        width = 64
        self.conv2: nn.Conv2d | None = None
        if kind == "conv2":
            stride2 = 2 if spatial // stride > 8 else 1
            self.conv2 = nn.Conv2d(64, 128, 3, stride2, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(128)
            width = 128
        self.fc = nn.Linear(width, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(h)))
        if self.conv2 is not None:
            h = F.relu(self.bn2(self.conv2(h)))
        return self.fc(h.mean(dim=(2, 3)))  # global average pooling (a ReduceMean in ONNX)


def default_exit_depths(arch: str, every: int = 3) -> list[int]:
    """Exit after every ``every``-th block, the last one being the final head."""
    blocks = 3 * DEPTHS[arch]
    depths = list(range(every, blocks, every))
    return [*depths, blocks]


@dataclass
class EarlyExitResult:
    """What :meth:`MultiExitNet.early_exit` computed for a batch of N frames and L exits.

    It decides nothing: whether a frame leaves the edge at its arm is the caller's decision
    (:mod:`policy_store.decisions`), made from ``confidence``/``probs`` at the frame's arm.
    """

    confidence: torch.Tensor  # (N, L) max softmax; NaN where the exit was not computed
    prediction: torch.Tensor  # (N, L) argmax; -1 where not computed
    probs: torch.Tensor  # (N, classes) softmax at each frame's own arm
    features: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    """arm -> (frame indices, features after block ℓ_arm) for every frame whose arm is not
    the final one: what an offload carries if the decision sends the frame on."""


class ExitDepths:
    """What every multi-exit model knows of its shape: ``exit_depths`` (one per arm, the last
    is the final exit), hence the arm count and the arm check."""

    exit_depths: list[int]

    @property
    def num_exits(self) -> int:
        return len(self.exit_depths)

    @property
    def num_blocks(self) -> int:
        return self.exit_depths[-1]

    def _check_arm(self, k: int) -> None:
        if not 0 <= k < self.num_exits:
            raise ValueError(f"arm {k} outside 0..{self.num_exits - 1}")


class MultiExitNet(ExitDepths, nn.Module):
    """Backbone + exit heads, with the split API and batched early exit.

    A :class:`~splitee.models.split_api.SplitModel` that takes 32×32 CIFAR frames as they are.
    """

    input_size = 32
    real_size = False
    send_frame = False

    def __init__(
        self, arch: str = "resnet56", exit_depths: list[int] | None = None, head: str = "conv1"
    ) -> None:
        super().__init__()
        self.backbone = CifarResNet(arch)
        n_blocks = len(self.backbone.blocks)
        depths = exit_depths or default_exit_depths(arch)
        if sorted(set(depths)) != list(depths) or depths[-1] != n_blocks or depths[0] < 1:
            raise ValueError(
                f"exit depths must increase strictly, start ≥ 1 and end at {n_blocks}: {depths}"
            )
        self.arch = arch
        self.head = head
        self.exit_depths = list(depths)
        heads = []
        for d in depths[:-1]:
            block = self.backbone.blocks[d - 1]
            ch = block.conv2.out_channels
            spatial = 32 // (ch // 16)
            heads.append(ExitHead(ch, spatial, kind=head))
        self.exits = nn.ModuleList(heads)
        # Per-exit temperature (logits / T), fitted after training; 1 means uncalibrated.
        self.register_buffer("temperature", torch.ones(len(depths)))

    # ------------------------------------------------------------------ shape of the network

    def feature_shape(self, k: int) -> tuple[int, int, int]:
        """(C, H, W) of the features after block ℓ_k, i.e. what an offload carries."""
        self._check_arm(k)
        ch = self.backbone.blocks[self.exit_depths[k] - 1].conv2.out_channels
        side = 32 // (ch // 16)
        return (ch, side, side)

    def fuse_for_inference(self) -> MultiExitNet:
        """Fold every BatchNorm into the convolution before it (eval-mode inference only).

        BatchNorm is a per-channel affine map at inference, so it folds into the preceding
        convolution's weights and bias: the outputs stay the same (to float rounding) and a
        third of the CPU time of a residual block goes away. Training must use an unfused model.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        self.eval()
        pairs = [(self.backbone, "conv1", "bn1")]
        for b in self.backbone.blocks:
            pairs += [(b, "conv1", "bn1"), (b, "conv2", "bn2")]
        for head in self.exits:
            pairs.append((head, "conv", "bn"))
            if head.conv2 is not None:
                pairs.append((head, "conv2", "bn2"))
        for mod, conv, bn in pairs:
            setattr(mod, conv, fuse_conv_bn_eval(getattr(mod, conv), getattr(mod, bn)))
            setattr(mod, bn, nn.Identity())
        return self

    # ------------------------------------------------------------------ split API
    def prefix(self, x: torch.Tensor, k: int) -> torch.Tensor:
        self._check_arm(k)
        h = self.backbone.stem(x)
        for b in self.backbone.blocks[: self.exit_depths[k]]:
            h = b(h)
        return h

    def exit_logits(self, h: torch.Tensor, k: int) -> torch.Tensor:
        self._check_arm(k)
        logits = self.backbone.head(h) if k == self.num_exits - 1 else self.exits[k](h)
        return logits / self.temperature[k]

    def suffix(self, h: torch.Tensor, k: int) -> torch.Tensor:
        self._check_arm(k)
        for b in self.backbone.blocks[self.exit_depths[k] :]:
            h = b(h)
        return self.exit_logits(h, self.num_exits - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The full network (final exit only)."""
        return self.suffix(self.prefix(x, 0), 0)

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit in one pass (training and offline evaluation)."""
        outs: list[torch.Tensor] = []
        h = self.backbone.stem(x)
        exit_at = {d: i for i, d in enumerate(self.exit_depths)}
        for depth, b in enumerate(self.backbone.blocks, start=1):
            h = b(h)
            if depth in exit_at:
                outs.append(self.exit_logits(h, exit_at[depth]))
        return outs

    def exit_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Features at every early exit and the final logits, in one pass (head training)."""
        feats: list[torch.Tensor] = []
        h = self.backbone.stem(x)
        early = set(self.exit_depths[:-1])
        for depth, b in enumerate(self.backbone.blocks, start=1):
            h = b(h)
            if depth in early:
                feats.append(h)
        return feats, self.exit_logits(h, self.num_exits - 1)

    # ------------------------------------------------------------------ batched early exit
    def segments(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The network as one callable per exit: segment k runs from arm k-1's features (the
        input for k = 0) up to arm k's."""
        bounds = [0, *self.exit_depths]
        blocks = list(self.backbone.blocks)

        def segment(h: torch.Tensor, k: int) -> torch.Tensor:
            if k == 0:
                h = self.backbone.stem(h)
            for b in blocks[bounds[k] : bounds[k + 1]]:
                h = b(h)
            return h

        return [lambda h, k=k: segment(h, k) for k in range(self.num_exits)]

    @torch.inference_mode()
    def early_exit(
        self, x: torch.Tensor, arms: torch.Tensor, side_observations: bool = True
    ) -> EarlyExitResult:
        """Run a batch where frame i stops at exit ``arms[i]`` (see :func:`run_early_exit`)."""
        return run_early_exit(self.segments(), self.exit_logits, x, arms, side_observations)


def run_early_exit(
    segments: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    exit_logits: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    arms: torch.Tensor,
    side_observations: bool = True,
) -> EarlyExitResult:
    """One batch through ``segments`` (one per exit), frame i stopping at exit ``arms[i]``.

    Each frame leaves the batch at its arm, so no frame computes a segment past its arm. With
    ``side_observations`` the exits a frame passes on the way to its arm are evaluated too, so
    their confidences can update those arms' statistics (I-SplitEE). Every multi-exit model
    (the CIFAR ResNets, any backbone split by module path) runs its early exit through here.
    """
    n, L = x.shape[0], len(segments)
    arms = arms.to(torch.long).cpu()
    if n and (int(arms.min()) < 0 or int(arms.max()) >= L):
        raise ValueError(f"arms must lie in 0..{L - 1}")
    conf = torch.full((n, L), float("nan"))
    pred = torch.full((n, L), -1, dtype=torch.long)
    result = EarlyExitResult(conf, pred, torch.zeros(n, 0))
    active = torch.arange(n)  # indices into the batch of frames still running
    active_arms = arms.clone()
    h = x
    for k, seg in enumerate(segments):
        if active.numel() == 0:
            break
        h = seg(h)
        stop = active_arms == k
        look = torch.ones_like(stop) if side_observations else stop
        if bool(look.any()):
            p = exit_logits(h[look.to(h.device)], k).float().softmax(dim=1)
            c, y = p.max(dim=1)
            idx = active[look]
            conf[idx, k] = c.cpu()
            pred[idx, k] = y.cpu()
            if result.probs.shape[1] == 0:
                result.probs = torch.zeros(n, p.shape[1])
            result.probs[active[stop]] = p[stop[look].to(p.device)].cpu()
        if bool(stop.any()):
            if k < L - 1:
                result.features[k] = (active[stop], h[stop.to(h.device)])
            keep = ~stop
            active, active_arms, h = active[keep], active_arms[keep], h[keep.to(h.device)]
    return result
