"""The shipped EfficientNet-Lite0 Caltech-101 model on the shipped real-size sample: it loads
(base weights from the package, hash-checked), fuses, and answers as its card says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from splitee.images import decode_fit, open_source
from splitee.models import load_checkpoint, to_input
from tests.conftest import REPO

CHECKPOINT = REPO / "assets" / "efficientnet-lite0-caltech101.safetensors"
SAMPLE = REPO / "assets" / "caltech101-sample.zip"


def test_shipped_caltech_model_on_the_shipped_sample() -> None:
    card = json.loads(CHECKPOINT.with_suffix(".card.json").read_text())
    model = load_checkpoint(CHECKPOINT, fuse=True)
    assert model.num_exits == 6 and model.input_size == 224
    src = open_source(SAMPLE)
    assert len(src) == 303 and len(src.classes) == card["classes"]
    images = np.stack([decode_fit(b, 224) for _, b, _ in src.iter_bytes()])
    labels = np.asarray(src.labels)
    torch.set_num_threads(2)
    with torch.inference_mode():
        logits = [
            torch.stack(model.forward_all(to_input(images[i : i + 64])), 1)
            for i in range(0, 303, 64)
        ]
    acc = (torch.cat(logits).argmax(2).numpy() == labels[:, None]).mean(axis=0)
    # 303 frames: within a few points of the test split's per-exit accuracy
    assert acc[-1] >= card["final_exit_accuracy"] - 0.05
    assert acc[-1] > acc[0]
    x = to_input(images[:2])
    with torch.inference_mode():
        for k in range(model.num_exits):
            torch.testing.assert_close(
                model.suffix(model.prefix(x, k), k), model(x), atol=1e-4, rtol=0
            )


def test_a_tampered_base_hash_is_refused(tmp_path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(CHECKPOINT), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open API
    meta["base_sha256"] = "0" * 64
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(ValueError, match="built on weights"):
        load_checkpoint(bad)
