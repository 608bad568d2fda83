"""The split API composes to the full network, and batched early exit matches per-frame runs."""

from __future__ import annotations

import pytest
import torch

from splitee.models import MultiExitNet, load_checkpoint, save_checkpoint
from splitee.models.multi_exit import default_exit_depths
from splitee.models.resnet import DEPTHS, CifarResNet, load_pretrained, pretrained_file
from tests.conftest import SHARED


def test_default_exits_resnet56_has_nine_arms():
    assert default_exit_depths("resnet56") == [3, 6, 9, 12, 15, 18, 21, 24, 27]
    m = MultiExitNet("resnet56")
    assert m.num_exits == 9 and len(m.exits) == 8
    assert m.feature_shape(0) == (16, 32, 32)
    assert m.feature_shape(4) == (32, 16, 16)
    assert m.feature_shape(8) == (64, 8, 8)


@pytest.mark.parametrize("arch", sorted(DEPTHS))
def test_prefix_plus_suffix_equals_full_forward(arch):
    torch.manual_seed(1)
    m = MultiExitNet(arch).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        full = m(x)
        for k in range(m.num_exits):
            h = m.prefix(x, k)
            assert torch.allclose(m.suffix(h, k), full, atol=1e-5), f"arm {k}"
        final = m.num_exits - 1
        assert torch.allclose(m.exit_logits(m.prefix(x, final), final), full, atol=1e-5)


def test_pretrained_resnet56_split_composition():
    weights = SHARED / "weights" / "resnet_cifar10_akamaster"
    if not weights.is_dir():
        pytest.skip("pretrained weights not on this machine")
    m = MultiExitNet("resnet56").eval()
    load_pretrained(m.backbone, pretrained_file(weights, "resnet56"))
    plain = CifarResNet("resnet56").eval()
    load_pretrained(plain, pretrained_file(weights, "resnet56"))
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m(x), plain(x), atol=1e-5)
        for k in range(m.num_exits):
            assert torch.allclose(m.suffix(m.prefix(x, k), k), plain(x), atol=1e-5)


def test_bad_exit_depths_rejected():
    with pytest.raises(ValueError, match="exit depths"):
        MultiExitNet("resnet20", [3, 3, 9])
    with pytest.raises(ValueError, match="end at 9"):
        MultiExitNet("resnet20", [3, 6])


def test_batched_early_exit_matches_per_frame(tiny_model):
    m = tiny_model
    torch.manual_seed(2)
    x = torch.rand(12, 3, 32, 32)
    arms = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 0, 3, 1, 2])
    res = m.early_exit(x, arms, side_observations=True)
    with torch.no_grad():
        for i in range(len(x)):
            k = int(arms[i])
            for j in range(k + 1):  # the arm and every exit passed on the way
                p = m.exit_logits(m.prefix(x[i : i + 1], j), j).softmax(1)
                assert res.confidence[i, j] == pytest.approx(float(p.max()), abs=1e-5)
                assert int(res.prediction[i, j]) == int(p.argmax())
            assert torch.isnan(res.confidence[i, k + 1 :]).all()
            p = m.exit_logits(m.prefix(x[i : i + 1], k), k).softmax(1)[0]
            assert torch.allclose(res.probs[i], p, atol=1e-5)  # what a decision looks at
    # features for every frame whose arm is not final: the model decides nothing
    with_features = sorted(int(i) for idx, _ in res.features.values() for i in idx)
    assert with_features == [i for i in range(len(x)) if arms[i] < m.num_exits - 1]
    for k, (idx, feats) in res.features.items():
        with torch.no_grad():
            assert torch.allclose(feats, m.prefix(x[idx], k), atol=1e-5)


def test_early_exit_without_side_observations_computes_only_the_arm(tiny_model):
    x = torch.rand(5, 3, 32, 32)
    res = tiny_model.early_exit(x, torch.tensor([2, 2, 1, 3, 0]), side_observations=False)
    known = ~torch.isnan(res.confidence)
    assert known.sum(1).tolist() == [1, 1, 1, 1, 1]
    assert known[torch.arange(5), torch.tensor([2, 2, 1, 3, 0])].all()


def test_early_exit_rejects_bad_arms(tiny_model):
    with pytest.raises(ValueError, match="arms must lie"):
        tiny_model.early_exit(torch.rand(2, 3, 32, 32), torch.tensor([0, 7]))


def test_checkpoint_roundtrip(tmp_path, tiny_model):
    tiny_model.temperature.copy_(torch.tensor([1.5, 1.2, 1.1, 1.0]))
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path, {"hello": 1})
    back = load_checkpoint(path)
    assert back.exit_depths == tiny_model.exit_depths
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(back.forward_all(x), tiny_model.forward_all(x), strict=True):
            assert torch.allclose(a, b, atol=1e-6)
    assert (tmp_path / "m.card.json").exists()


def test_missing_checkpoint_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="SPLITEE_MODEL__CHECKPOINT"):
        load_checkpoint(tmp_path / "none.safetensors")


def test_batchnorm_folding_keeps_every_exit(tiny_model):
    import copy

    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        before = tiny_model.forward_all(x)
        fused = copy.deepcopy(tiny_model).fuse_for_inference()
        after = fused.forward_all(x)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        for a, b in zip(before, after, strict=True):
            assert torch.allclose(a, b, atol=1e-4)
        k = 1
        assert torch.allclose(fused.suffix(fused.prefix(x, k), k), tiny_model(x), atol=1e-4)
