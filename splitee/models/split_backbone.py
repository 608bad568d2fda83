"""Exits on an unmodified torch backbone, attached after named modules; the split API on top.

The backbone is traced once with ``torch.fx`` (the exit modules, and any module whose class sets
``fx_leaf = True``, stay single calls) and its graph is cut right after each exit module into
segments ``x → e_1 → e_2 → … → logits``. A cut is valid only where the exit module's output is
the one value that crosses it (as after a residual block, not inside one); otherwise the
constructor says which module path is not a cut point. Because the segments are the backbone's
own graph, ``suffix(prefix(x, k), k)`` runs exactly the operations of ``backbone(x)``.

Arms are 0-based. Arm ``k < L-1`` is the exit head after ``exits[k]``; arm ``L-1`` is the
backbone's own classifier, and its "features" are the final logits (it is never offloaded):

* ``prefix(x, k)``       normalise and run the segments up to the cut after ``exits[k]``,
* ``exit_logits(h, k)``  exit head k on those features (temperature-scaled),
* ``suffix(h, k)``       the rest of the backbone, to the final (temperature-scaled) logits.

:meth:`early_exit` has the contract of :meth:`MultiExitNet.early_exit`: one batch, frames with
different arms, each frame dropped at its arm; it decides nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from splitee.models.multi_exit import EarlyExitResult, ExitDepths, run_early_exit

#: Spatial size the exit heads pool their input to before the 1x1 convolution.
HEAD_POOL = 7


class PooledHead(nn.Module):
    """AdaptiveAvgPool(7×7) → Conv1x1(→width) → BN → ReLU6 → global pool → dropout → Linear.

    (ours) The fixed average pool first makes the head's cost independent of the exit's
    resolution (an 8×8 mean at 56×56, identity at 7×7) and lets training cache 7×7 maps instead
    of full ones; the 1x1 convolution with a non-linearity before the global pool is what makes
    it stronger than I-SplitEE's BN → pool → Linear on early, low-level features.
    """

    def __init__(self, in_ch: int, num_classes: int, width: int = 256, dropout: float = 0.2):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)

    @staticmethod
    def pool(h: torch.Tensor) -> torch.Tensor:
        """The head's fixed first step (training caches its output)."""
        return F.adaptive_avg_pool2d(h, HEAD_POOL)

    def from_pooled(self, p: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.bn(self.conv(p)))
        # global average pooling written as the mean over H and W it is: one ReduceMean in an
        # exported graph, whatever the exporter knows of the spatial size
        return self.fc(self.drop(h.mean(dim=(2, 3))))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.from_pooled(self.pool(h))


class _Tracer(fx.Tracer):
    """Keeps exit modules (and modules marked ``fx_leaf``) as single calls."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.leaves or getattr(type(m), "fx_leaf", False):
            return True
        return super().is_leaf_module(m, qualname)


def split_graph(backbone: nn.Module, exits: Sequence[str]) -> list[fx.GraphModule]:
    """Cut ``backbone``'s traced graph after each module path in ``exits`` (in run order).

    Returns ``len(exits) + 1`` graph modules sharing the backbone's submodules: segment 0 maps
    the input to the first exit's output, segment i the (i-1)-th exit's output to the i-th's,
    the last one the last exit's output to the backbone's output.
    """
    names = dict(backbone.named_modules())
    for p in exits:
        if p not in names or p == "":
            raise ValueError(f"exit module path {p!r} is not a submodule of the backbone")
    graph = _Tracer(set(exits)).trace(backbone)
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ValueError(f"the backbone's forward must take one tensor, not {len(inputs)}")
    pos = {n: i for i, n in enumerate(nodes)}
    cuts = []
    for p in exits:
        calls = [n for n in nodes if n.op == "call_module" and n.target == p]
        if len(calls) != 1:
            raise ValueError(f"exit module {p!r} runs {len(calls)} times in forward, not once")
        cuts.append(calls[0])
    if [pos[c] for c in cuts] != sorted(pos[c] for c in cuts):
        raise ValueError(f"exits must be listed in the order forward runs them: {list(exits)}")
    bounds = [inputs[0], *cuts]
    for a, b in itertools.pairwise(bounds):
        _check_cut(nodes, pos, a, b, exits)
    segments = []
    ends = [*cuts, None]
    for start, end in zip(bounds, ends, strict=True):
        segments.append(_segment(backbone, nodes, pos, start, end))
    return segments


def _check_cut(nodes: list[fx.Node], pos: dict, start: fx.Node, cut: fx.Node, exits) -> None:
    """Every value computed up to ``cut`` and used after it must be ``cut`` itself."""
    for n in nodes[pos[start] + 1 : pos[cut]]:
        if n.op == "get_attr":
            continue  # parameters and buffers are re-read where needed
        late = [u for u in n.users if pos[u] > pos[cut]]
        if late:
            raise ValueError(
                f"exit module {cut.target!r} is not a cut point of the backbone: {n.name} "
                f"is also used after it (by {late[0].name}); attach the exit after a whole "
                "block or stage"
            )


def _segment(
    root: nn.Module, nodes: list[fx.Node], pos: dict, start: fx.Node, end: fx.Node | None
) -> fx.GraphModule:
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {start: g.placeholder("h")}

    def arg(n: fx.Node) -> fx.Node:
        if n not in env:
            if n.op != "get_attr":
                raise ValueError(f"segment after {start.name} needs {n.name} from before it")
            env[n] = g.node_copy(n, arg)
        return env[n]

    stop = pos[end] if end is not None else len(nodes)
    for n in nodes[pos[start] + 1 : stop + (end is not None)]:
        if n.op == "output":
            g.output(fx.map_arg(n.args[0], arg))
            break
        env[n] = g.node_copy(n, arg)
    if end is not None:
        g.output(env[end])
    return fx.GraphModule(root, g)


class SplitBackboneNet(ExitDepths, nn.Module):
    """A backbone with exit heads after named modules, and the split API of MultiExitNet.

    A :class:`~splitee.models.split_api.SplitModel` that takes frames of any size, fitted to
    ``input_size``.
    """

    real_size = True
    send_frame = False

    def __init__(
        self,
        name: str,
        backbone: nn.Module,
        exits: Sequence[str],
        depths: Sequence[int],
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        num_classes: int,
        head_width: int = 256,
    ) -> None:
        super().__init__()
        if len(depths) != len(exits) + 1 or list(depths) != sorted(set(depths)):
            raise ValueError(f"need {len(exits) + 1} strictly increasing depths, got {depths}")
        self.arch = name
        self.head = "pooled"
        self.backbone = backbone.eval()
        self.exit_paths = list(exits)
        self.exit_depths = [int(d) for d in depths]
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._build_segments()
        with torch.no_grad():
            x = torch.zeros(1, 3, self.input_size, self.input_size)
            h = self._norm(x)
            shapes = []
            for seg in self._segments[:-1]:
                h = seg(h)
                shapes.append(tuple(h.shape[1:]))
            out = self._segments[-1](h)
        if out.ndim != 2 or out.shape[1] != num_classes:
            raise ValueError(f"backbone output {tuple(out.shape)} is not (N, {num_classes})")
        self._shapes = [*shapes, (num_classes,)]
        self.exits = nn.ModuleList(PooledHead(s[0], num_classes, head_width) for s in shapes)
        self.register_buffer("temperature", torch.ones(len(self.exit_depths)))

    def _build_segments(self) -> None:
        # a plain list: the segments share the backbone's modules, so the state dict has each
        # parameter once, under backbone.*
        self._segments = split_graph(self.backbone, self.exit_paths)

    # ------------------------------------------------------------------ shape of the network

    def feature_shape(self, k: int) -> tuple[int, ...]:
        """Shape (no batch) of what arm k's prefix outputs, i.e. what an offload carries."""
        self._check_arm(k)
        return self._shapes[k]

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def fuse_for_inference(self) -> SplitBackboneNet:
        """Fold BatchNorm into the preceding convolutions (eval only; same outputs to ~1e-6)."""
        self.eval()
        fold_batchnorm(self.backbone)
        for head in self.exits:
            fold_pair(head, "conv", "bn")
        self._build_segments()
        return self

    def _apply(self, fn, recurse=True):
        # .to()/.cuda() may replace parameters; rebuilt segments pick the moved modules up
        out = super()._apply(fn, recurse)
        self._build_segments()
        return out

    # ------------------------------------------------------------------ split API
    def prefix(self, x: torch.Tensor, k: int) -> torch.Tensor:
        self._check_arm(k)
        h = self._norm(x)
        for seg in self._segments[: k + 1]:
            h = seg(h)
        return h

    def exit_logits(self, h: torch.Tensor, k: int) -> torch.Tensor:
        self._check_arm(k)
        logits = h if k == self.num_exits - 1 else self.exits[k](h)
        return logits / self.temperature[k]

    def suffix(self, h: torch.Tensor, k: int) -> torch.Tensor:
        self._check_arm(k)
        for seg in self._segments[k + 1 :]:
            h = seg(h)
        return self.exit_logits(h, self.num_exits - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The full network (final exit only)."""
        return self.suffix(self.prefix(x, 0), 0)

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit in one pass."""
        h = self._norm(x)
        outs = []
        for k, seg in enumerate(self._segments):
            h = seg(h)
            outs.append(self.exit_logits(h, k))
        return outs

    def segment(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """Segment k alone: from arm k-1's features (the input for k = 0) to arm k's."""
        return self._segments[k](self._norm(h) if k == 0 else h)

    # ------------------------------------------------------------------ batched early exit
    @torch.inference_mode()
    def early_exit(
        self, x: torch.Tensor, arms: torch.Tensor, side_observations: bool = True
    ) -> EarlyExitResult:
        """Run a batch where frame i stops at exit ``arms[i]`` (see ``run_early_exit``)."""
        return run_early_exit(
            self._segments, self.exit_logits, self._norm(x), arms, side_observations
        )


def fold_pair(owner: nn.Module, conv: str, bn: str) -> None:
    """Fold ``owner.<bn>`` into ``owner.<conv>`` (eval mode) and make the BN an identity."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    c, b = getattr(owner, conv), getattr(owner, bn)
    if isinstance(b, nn.BatchNorm2d):
        setattr(owner, conv, fuse_conv_bn_eval(c, b))
        setattr(owner, bn, nn.Identity())


def fold_batchnorm(backbone: nn.Module) -> None:
    """Fold every BatchNorm a backbone declares: its ``bn_pairs()`` (owner, conv, bn) names,
    and in any ``nn.Sequential`` a Conv2d directly followed by a BatchNorm2d (torchvision's
    conv-norm-activation blocks)."""
    pairs = list(backbone.bn_pairs()) if hasattr(backbone, "bn_pairs") else []
    for owner, conv, bn in pairs:
        fold_pair(owner, conv, bn)
    for mod in backbone.modules():
        if isinstance(mod, nn.Sequential):
            keys = list(mod._modules)
            for a, b in itertools.pairwise(keys):
                if isinstance(mod._modules[a], nn.Conv2d) and isinstance(
                    mod._modules[b], nn.BatchNorm2d
                ):
                    fold_pair(mod, a, b)
