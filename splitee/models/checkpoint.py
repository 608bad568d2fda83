"""Save and load multi-exit checkpoints as safetensors (no pickle anywhere).

The architecture travels in the safetensors metadata (``format``, ``arch``, ``exit_depths``),
so a checkpoint alone rebuilds its model. A JSON model card sits beside it
(``<name>.card.json``) with accuracies and training details for humans.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from splitee.files import CHECKPOINT_FORMAT, checkpoint_metadata, reading_checkpoint
from splitee.models.multi_exit import MultiExitNet
from splitee.models.split_backbone import SplitBackboneNet


def save_checkpoint(
    model: MultiExitNet | SplitBackboneNet,
    path: Path,
    card: dict | None = None,
    base: dict[str, torch.Tensor] | None = None,
    base_sha256: str | None = None,
) -> None:
    """``base`` (a backbone's pretrained state, keys without ``backbone.``): tensors equal to
    it are left out of the file, and loading takes them from the weights package again,
    after checking that file's SHA-256 (``base_sha256``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": CHECKPOINT_FORMAT,
        "arch": model.arch,
        "exit_depths": json.dumps(model.exit_depths),
        "exit_head": model.head,
    }
    if isinstance(model, SplitBackboneNet):
        meta["backbone"] = model.arch
        meta["num_classes"] = str(model.feature_shape(model.num_exits - 1)[0])
        meta["exit_paths"] = json.dumps(model.exit_paths)
        meta["input_size"] = str(model.input_size)
        if base is not None:
            same = {
                f"backbone.{k}"
                for k, v in base.items()
                if f"backbone.{k}" in state and torch.equal(state[f"backbone.{k}"], v)
            }
            state = {k: v for k, v in state.items() if k not in same}
            meta["base_sha256"] = base_sha256 or ""
    save_file(state, str(path), metadata=meta)
    if card is not None:
        card_path(path).write_text(json.dumps(card, indent=2) + "\n")


def card_path(path: Path) -> Path:
    return Path(path).with_suffix(".card.json")


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu", fuse: bool = False
) -> MultiExitNet | SplitBackboneNet:
    """Rebuild the model described by the checkpoint's metadata and load its weights.

    ``fuse`` folds BatchNorm into the convolutions (inference only: the workers use it).
    """
    path = Path(path)
    meta = checkpoint_metadata(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r} is not {CHECKPOINT_FORMAT!r}")
    if "backbone" in meta:
        model = _load_split_backbone(path, meta)
    else:
        model = MultiExitNet(
            meta["arch"], json.loads(meta["exit_depths"]), meta.get("exit_head", "conv1")
        )
        with reading_checkpoint(path):
            model.load_state_dict(load_file(str(path)))
    if fuse:
        model.fuse_for_inference()
    return model.to(device).eval()


def _load_split_backbone(path: Path, meta: dict[str, str]) -> SplitBackboneNet:
    """A registered backbone with the checkpoint's exits; tensors the file leaves out come
    from the backbone's pretrained weights, whose file hash must match the one recorded."""
    from splitee.models.backbones import build_model, get

    name = meta["backbone"]
    try:
        entry = get(name)
    except ValueError as exc:  # a user's backbone, not registered by whoever loads the model
        raise ValueError(
            f"{path} needs backbone {name!r}: {exc}. Declare it under [model.backbones.{name}] "
            "in the settings file the command or worker reads (they register it from there)"
        ) from None
    if json.loads(meta["exit_paths"]) != list(entry.exits):
        raise ValueError(f"{path}: exits {meta['exit_paths']} are not backbone {name}'s")
    base_sha = meta.get("base_sha256")
    model, loaded = build_model(name, int(meta["num_classes"]), pretrained=base_sha is not None)
    if base_sha is not None and base_sha not in (loaded or ""):
        raise ValueError(f"{path}: built on weights {base_sha}, found {loaded}")
    with reading_checkpoint(path):
        stored = load_file(str(path))
    missing, unexpected = model.load_state_dict(stored, strict=False)
    if unexpected or (missing and base_sha is None):
        raise ValueError(f"{path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if any(not k.startswith("backbone.") for k in missing):
        raise ValueError(f"{path}: lacks {[k for k in missing if not k.startswith('backbone.')]}")
    return model


def load_card(path: Path) -> dict:
    p = card_path(path)
    return json.loads(p.read_text()) if p.exists() else {}


def resolve_device(name: str) -> torch.device:
    """'auto' means CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
