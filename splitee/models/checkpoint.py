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

from splitee.files import CHECKPOINT_FORMAT, checkpoint_metadata
from splitee.models.multi_exit import MultiExitNet


def save_checkpoint(model: MultiExitNet, path: Path, card: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": CHECKPOINT_FORMAT,
        "arch": model.arch,
        "exit_depths": json.dumps(model.exit_depths),
        "exit_head": model.head,
    }
    save_file(state, str(path), metadata=meta)
    if card is not None:
        card_path(path).write_text(json.dumps(card, indent=2) + "\n")


def card_path(path: Path) -> Path:
    return Path(path).with_suffix(".card.json")


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu", fuse: bool = False
) -> MultiExitNet:
    """Rebuild the model described by the checkpoint's metadata and load its weights.

    ``fuse`` folds BatchNorm into the convolutions (inference only: the workers use it).
    """
    path = Path(path)
    meta = checkpoint_metadata(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r} is not {CHECKPOINT_FORMAT!r}")
    model = MultiExitNet(
        meta["arch"], json.loads(meta["exit_depths"]), meta.get("exit_head", "conv1")
    )
    model.load_state_dict(load_file(str(path)))
    if fuse:
        model.fuse_for_inference()
    return model.to(device).eval()


def load_card(path: Path) -> dict:
    p = card_path(path)
    return json.loads(p.read_text()) if p.exists() else {}


def resolve_device(name: str) -> torch.device:
    """'auto' means CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
