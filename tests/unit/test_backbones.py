"""Any backbone with exits by module path: the split identity for every registered backbone,
a backbone declared in a settings file, checkpoints that leave the pretrained weights out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from splitee.models import backbones
from splitee.models.backbones import build_model
from splitee.models.split_backbone import SplitBackboneNet


def _randomise_bn(model: nn.Module) -> None:
    """Random BatchNorm statistics, so eval mode is not an identity map."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)


class Block(nn.Module):
    """A residual block: exits may sit after it, never inside it."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.bn = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.bn(self.conv(x)))


class TinyNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.stage1 = Block(8)
        self.down = nn.Conv2d(8, 16, 3, 2, 1)
        self.stage2 = Block(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


def tiny_backbone(num_classes: int) -> nn.Module:
    """The factory a settings file names (tests.unit.test_backbones:tiny_backbone)."""
    return TinyNet(num_classes)


@pytest.mark.parametrize("name", backbones.names())
def test_split_identity_for_every_registered_backbone(name: str) -> None:
    torch.manual_seed(0)
    model, _ = build_model(name, 10)
    _randomise_bn(model)
    model.eval()
    size = backbones.get(name).input_size
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        full = model(x)
        for k in range(model.num_exits):
            h = model.prefix(x, k)
            assert tuple(h.shape[1:]) == tuple(model.feature_shape(k))
            torch.testing.assert_close(model.suffix(h, k), full, atol=1e-5, rtol=0)
        if isinstance(model, SplitBackboneNet):
            # the wrapped backbone is unmodified: the split adds nothing to its own forward
            ref = model.backbone((x - model.mean) / model.std)
            torch.testing.assert_close(full, ref, atol=1e-5, rtol=0)


def test_the_built_in_backbones_are_registered() -> None:
    names = set(backbones.names())
    assert {"resnet20", "resnet32", "resnet44", "resnet56"} <= names
    assert {"efficientnet-lite0", "mobilenet_v2"} <= names
    assert backbones.get("efficientnet-lite0").input_size == 224
    assert backbones.get("efficientnet-lite0").mean == (0.5, 0.5, 0.5)
    assert backbones.get("mobilenet_v2").exits == tuple(f"features.{i}" for i in range(3, 19, 3))


def test_every_model_says_what_it_is() -> None:
    """Input size, real-size frames and the send-the-frame arm are declared, never guessed;
    a CIFAR ResNet entry says it is one instead of building a placeholder backbone."""
    from splitee.models.frame_arm import FrameArmNet
    from splitee.models.multi_exit import MultiExitNet

    cifar, _ = build_model("resnet20", 10)
    assert isinstance(cifar, MultiExitNet) and backbones.get("resnet20").build is None
    assert (cifar.input_size, cifar.real_size, cifar.send_frame) == (32, False, False)
    tiny = SplitBackboneNet("tiny", TinyNet(3), ["stage1"], [1, 2], 48, (0, 0, 0), (1, 1, 1), 3)
    assert (tiny.input_size, tiny.real_size, tiny.send_frame) == (48, True, False)
    framed = FrameArmNet(tiny)
    assert (framed.input_size, framed.real_size, framed.send_frame) == (48, True, True)
    assert FrameArmNet(cifar).real_size is False
    _geometry = {"input_size": 32, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    with pytest.raises(ValueError, match="needs a build function"):
        backbones.BackboneEntry(name="nothing", build=None, exits=(), depths=(1,), **_geometry)
    with pytest.raises(ValueError, match="builds a CIFAR ResNet itself"):
        backbones.BackboneEntry(
            name="both",
            build=TinyNet,
            exits=(),
            depths=(1,),
            kind=backbones.CIFAR_RESNET,
            **_geometry,
        )


def test_early_exit_matches_multi_exit_contract() -> None:
    torch.manual_seed(1)
    model, _ = build_model("mobilenet_v2", 5)
    _randomise_bn(model)
    model.eval()
    L = model.num_exits
    x = torch.rand(4, 3, 224, 224)
    arms = torch.tensor([0, 3, L - 1, 1])
    res = model.early_exit(x, arms, side_observations=True)
    with torch.no_grad():
        logits = model.forward_all(x)
    for i, a in enumerate(arms.tolist()):
        # every exit up to the frame's arm is computed, none after it
        assert not torch.isnan(res.confidence[i, : a + 1]).any()
        assert torch.isnan(res.confidence[i, a + 1 :]).all()
        p = logits[a][i].softmax(0)
        torch.testing.assert_close(res.probs[i], p, atol=1e-5, rtol=0)
    idx, feats = res.features[3]
    assert idx.tolist() == [1]
    with torch.no_grad():
        torch.testing.assert_close(model.suffix(feats, 3), logits[-1][1:2], atol=1e-5, rtol=0)
    assert L - 1 not in res.features  # the final arm offloads nothing
    only = model.early_exit(x, arms, side_observations=False)
    assert torch.isnan(only.confidence[1, :3]).all()


def test_fused_model_gives_the_same_outputs() -> None:
    torch.manual_seed(2)
    model, _ = build_model("efficientnet-lite0", 7)
    _randomise_bn(model)
    model.eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        before = model.forward_all(x)
        model.fuse_for_inference()
        after = model.forward_all(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_exit_inside_a_residual_block_is_refused() -> None:
    with pytest.raises(ValueError, match="not a cut point"):
        SplitBackboneNet("tiny", TinyNet(3), ["stage1.conv"], [1, 2], 32, (0, 0, 0), (1, 1, 1), 3)
    with pytest.raises(ValueError, match="not a submodule"):
        SplitBackboneNet("tiny", TinyNet(3), ["nope"], [1, 2], 32, (0, 0, 0), (1, 1, 1), 3)
    with pytest.raises(ValueError, match="order"):
        SplitBackboneNet(
            "tiny", TinyNet(3), ["stage2", "stage1"], [1, 2, 3], 32, (0, 0, 0), (1, 1, 1), 3
        )


def test_custom_backbone_declared_in_a_settings_file(tmp_path) -> None:
    from splitee.models.checkpoint import load_checkpoint, save_checkpoint
    from splitee.settings import load_settings

    cfg = tmp_path / "splitee.toml"
    cfg.write_text(
        "[model.backbones.tiny]\n"
        'factory = "tests.unit.test_backbones:tiny_backbone"\n'
        'exits = ["stage1", "stage2"]\n'
        "input_size = 48\n"
        "mean = [0.5, 0.5, 0.5]\n"
        "std = [0.25, 0.25, 0.25]\n"
    )
    s = load_settings(cfg)
    backbones.register_from_settings(s)
    torch.manual_seed(3)
    model, _ = build_model("tiny", 4)
    _randomise_bn(model)
    model.eval()
    assert model.exit_paths == ["stage1", "stage2"]
    assert model.feature_shape(0) == (8, 24, 24) and model.feature_shape(1) == (16, 12, 12)
    x = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        full = model(x)
        for k in range(model.num_exits):
            torch.testing.assert_close(model.suffix(model.prefix(x, k), k), full, atol=1e-5, rtol=0)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(model, path)
    back = load_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(back.forward_all(x)[0], model.forward_all(x)[0])


def test_models_never_read_settings_the_loader_registers_the_backbone(tmp_path, monkeypatch):
    """A checkpoint of a backbone nobody registered is refused with the fix named; the CLI
    registers the backbones of the file given with --config (models never read settings)."""
    from click.testing import CliRunner

    from splitee.cli import main
    from splitee.models.checkpoint import load_checkpoint, save_checkpoint

    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))
    backbones.register_custom("tiny-cli", "tests.unit.test_backbones:tiny_backbone", ["stage1"], 48)
    model, _ = build_model("tiny-cli", 4)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(model, path)
    del backbones._REGISTRY["tiny-cli"]
    with pytest.raises(ValueError, match=r"\[model\.backbones\.tiny-cli\]"):
        load_checkpoint(path)
    cfg = tmp_path / "custom.toml"
    cfg.write_text(
        '[model.backbones.tiny-cli]\nfactory = "tests.unit.test_backbones:tiny_backbone"\n'
        'exits = ["stage1"]\ninput_size = 48\n'
    )
    result = CliRunner().invoke(main, ["--config", str(cfg), "settings"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(path).exit_paths == ["stage1"]


def test_checkpoint_leaves_pretrained_tensors_out_and_checks_their_hash(tmp_path) -> None:
    """Tensors equal to the base are not stored; the recorded base hash must match."""
    from safetensors.torch import load_file

    from splitee.models.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(4)
    model, _ = build_model("mobilenet_v2", 3)
    model.eval()
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    with torch.no_grad():
        model.backbone.classifier[1].weight.add_(1.0)  # "trained": differs from the base
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, base=base, base_sha256="feed")
    stored = load_file(str(path))
    assert "backbone.classifier.1.weight" in stored
    assert "backbone.features.0.0.weight" not in stored
    assert any(k.startswith("exits.") for k in stored)
    # mobilenet_v2 has no weights package: the recorded base cannot be found again
    with pytest.raises(FileNotFoundError, match="backbone_weights"):
        load_checkpoint(path)
