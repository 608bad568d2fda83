"""Training with channel noise (a short real run): only the cloud part after the noisy arm
learns; the edge part and its exit's calibration stay as they were."""

from __future__ import annotations

import pytest
import torch


def test_train_with_channel_noise_changes_only_the_cloud_part(tmp_path, sample_frames):
    from splitee.models import MultiExitNet, load_checkpoint, save_checkpoint
    from splitee.training.train import TrainConfig, train

    torch.manual_seed(0)
    init = tmp_path / "init.safetensors"
    start = MultiExitNet("resnet20")  # exits after blocks 3, 6 and the final head after 9
    start.temperature.copy_(torch.tensor([1.3, 1.2, 1.1]))
    save_checkpoint(start, init)
    cfg = TrainConfig(
        arch="resnet20",
        exit_every=3,
        epochs=1,
        batch_size=32,
        holdout=32,
        limit=96,
        init=str(init),
        channel_noise=True,
        noise_arm=1,
        eval_distortions=["pristine"],
        bf16=False,
    )
    out = tmp_path / "noisy.safetensors"
    card = train(cfg, sample_frames, sample_frames.subset(40), None, out)
    got = load_checkpoint(out)
    before, after = start.state_dict(), got.state_dict()
    for name in ("backbone.conv1.weight", "backbone.layer1.2.conv2.weight", "exits.0.fc.weight"):
        assert torch.equal(before[name], after[name]), name  # the edge part is frozen
    for name in ("backbone.layer2.0.conv1.weight", "backbone.linear.weight", "exits.1.fc.weight"):
        assert not torch.equal(before[name], after[name]), name
    assert float(got.temperature[0]) == pytest.approx(1.3)  # frozen exit keeps its calibration
    assert set(card["channel_accuracy"]) == {"clean", "-5.0", "0.0", "5.0", "10.0", "20.0"}
