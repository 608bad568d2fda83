"""Per-frame exit outputs (confidence and prediction at every exit), computed once and cached.

The offline evaluator never reruns the network per policy: one forward pass per distortion
setting yields every exit's confidence and prediction, and every policy replays over those.
The cache key covers the checkpoint's bytes, the frames, the distortion and its seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from splitee.distortions import Distortion
from splitee.models.inputs import to_input


@dataclass(frozen=True)
class ExitOutputs:
    """(N, L) float32 max-softmax confidence and (N, L) int16 argmax of every exit."""

    confidence: np.ndarray
    prediction: np.ndarray

    def correct(self, labels: np.ndarray) -> np.ndarray:
        return self.prediction == labels[:, None]

    def with_frame_arm(self) -> ExitOutputs:
        """These exits with arm 0, "send the frame", in front: nothing runs at the edge, so
        its confidence is 0 (< any α: always offloaded) and it has no edge prediction."""
        n = len(self.confidence)
        return ExitOutputs(
            np.concatenate([np.zeros((n, 1), self.confidence.dtype), self.confidence], axis=1),
            np.concatenate([np.full((n, 1), -1, self.prediction.dtype), self.prediction], axis=1),
        )

    def cloud_with_frame_arm(self, cloud: ExitOutputs) -> ExitOutputs:
        """The cloud's answer per arm, arm 0 in front: for a frame sent whole, the final exit
        (these exits' last column); for arm k, ``cloud``'s (after a codec)."""
        return ExitOutputs(
            np.concatenate([self.confidence[:, -1:], cloud.confidence], axis=1),
            np.concatenate([self.prediction[:, -1:], cloud.prediction], axis=1),
        )


@torch.inference_mode()
def compute_outputs(
    model: torch.nn.Module, images: np.ndarray, batch_size: int = 500
) -> ExitOutputs:
    model.eval()
    confs, preds = [], []
    for s in range(0, len(images), batch_size):
        logits = torch.stack(model.forward_all(to_input(images[s : s + batch_size])), dim=1)
        c, p = logits.float().softmax(dim=2).max(dim=2)
        confs.append(c.numpy().astype(np.float32))
        preds.append(p.numpy().astype(np.int16))
    return ExitOutputs(np.concatenate(confs), np.concatenate(preds))


def outputs_path(
    cache_dir: Path | None, model_digest: str, images: np.ndarray, distortion: Distortion, seed: int
) -> Path | None:
    """Where :func:`exit_outputs` caches these frames' outputs (None: no cache)."""
    if cache_dir is None:
        return None
    h = hashlib.sha256()
    h.update(model_digest.encode())
    h.update(hashlib.sha256(np.ascontiguousarray(images).data).digest())
    h.update(f"{distortion}|{seed}".encode())
    return Path(cache_dir) / "outputs" / f"{h.hexdigest()[:24]}.npz"


def save_outputs(path: Path, out: ExitOutputs, **extra: np.ndarray) -> None:
    """Write ``out`` (and ``extra`` arrays) as .npz atomically: a reader sees all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, confidence=out.confidence, prediction=out.prediction, **extra)
    tmp.replace(path)


def exit_outputs(
    model: torch.nn.Module,
    images: np.ndarray,
    distortion: Distortion,
    seed: int,
    cache_dir: Path | None,
    model_digest: str,
    batch_size: int = 500,
) -> ExitOutputs:
    """Outputs for ``images`` under ``distortion``, through an .npz cache (no pickle)."""
    path = outputs_path(cache_dir, model_digest, images, distortion, seed)
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return ExitOutputs(z["confidence"], z["prediction"])
    out = compute_outputs(model, distortion.apply(images, seed=seed), batch_size)
    if path is not None:
        save_outputs(path, out)
    return out
