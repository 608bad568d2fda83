"""A short run of the cached-feature trainer on a backbone declared like a user's: exits train,
temperatures are fitted, the card has accuracies, costs and bytes, the checkpoint reloads."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from splitee.images import image_folder, load_images
from splitee.models import backbones, load_checkpoint
from splitee.training.train_backbone import BackboneTrainConfig, train_backbone


def _folder(root, n: int, seed: int) -> None:
    """Two classes a network tells apart from colour: reddish and bluish frames of odd sizes."""
    rng = np.random.default_rng(seed)
    for label, cls in enumerate(("blue", "red")):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            h, w = rng.integers(40, 90, 2)
            img = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
            img[..., 2 - 2 * label] += 120
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=90)
            (root / cls / f"{i}.jpg").write_bytes(buf.getvalue())


def test_train_backbone_on_a_tiny_folder(tmp_path) -> None:
    backbones.register_custom(
        "tiny-train", "tests.unit.test_backbones:tiny_backbone", ["stage1", "stage2"], 32
    )
    _folder(tmp_path / "train", 40, 0)
    _folder(tmp_path / "test", 12, 1)
    train = load_images(image_folder(tmp_path / "train"), 32)
    test = load_images(image_folder(tmp_path / "test"), 32)
    cfg = BackboneTrainConfig(
        backbone="tiny-train",
        epochs=6,
        batch_size=16,
        augment_passes=1,
        eval_distortions=["pristine", "noise:0.1"],
    )
    out = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    card = train_backbone(cfg, train, test, out, tmp_path / "cache", np.array([900, 1100]))
    assert json.loads(out.with_suffix(".card.json").read_text()) == card
    assert set(card["exit_accuracy"]) == {"pristine", "noise:0.1"}
    assert card["final_exit_accuracy"] >= 0.9  # colour is easy
    assert len(card["temperatures"]) == 3 and all(t > 0 for t in card["temperatures"])
    arms = card["profile"]["arms"]
    assert [a["arm"] for a in arms] == [1, 2, 3] and arms[-1]["relative_cost"] == 1.0
    assert arms[0]["bytes"]["float16"] < arms[0]["bytes"]["float32"]
    assert card["profile"]["jpeg_bytes_median"] == 1000
    back = load_checkpoint(out)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), back.suffix(back.prefix(x, 0), 0))
        assert back.temperature.tolist() == pytest.approx(card["temperatures"], abs=1e-4)
