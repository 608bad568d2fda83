"""Tuning a bottleneck's decoders on distorted frames (splitee.training.decoder_tune)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from splitee.files import sha256_file
from splitee.models.bottleneck_checkpoint import load_bottlenecks
from splitee.training.decoder_tune import (
    DecoderTuneConfig,
    distort_some,
    trained_rates,
    tune_decoders,
)
from tests.unit.test_latent_codec import bundle_on_first_arm


def test_distort_some_distorts_the_share_it_draws_and_no_other():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    cfg = DecoderTuneConfig()
    assert (distort_some(frames, 0.0, cfg, np.random.default_rng(1)) == frames).all()
    every = distort_some(frames, 1.0, cfg, np.random.default_rng(1))
    assert all((every[i] != frames[i]).any() for i in range(len(frames)))
    again = distort_some(frames, 1.0, cfg, np.random.default_rng(1))
    assert (again == every).all()  # seeded: a resumed run draws what it would have


def test_log_levels_draw_seeded_distortions_too():
    frames = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    cfg = DecoderTuneConfig(log_levels=True)
    every = distort_some(frames, 1.0, cfg, np.random.default_rng(1))
    assert all((every[i] != frames[i]).any() for i in range(len(frames)))
    assert (distort_some(frames, 1.0, cfg, np.random.default_rng(1)) == every).all()
    uniform = distort_some(frames, 1.0, DecoderTuneConfig(), np.random.default_rng(1))
    assert (uniform != every).any()  # another draw of the levels


def test_trained_rates_are_the_steps_named_and_only_the_codecs_own():
    assert trained_rates([1.0, 2.0, 4.0, 6.0], None) == [0, 1, 2, 3]
    assert trained_rates([1.0, 2.0, 4.0, 6.0], (6.0,)) == [3]
    with pytest.raises(ValueError, match="rate points are"):
        trained_rates([1.0, 2.0, 4.0, 6.0], (5.0,))
    with pytest.raises(ValueError, match="rate points are"):
        trained_rates([1.0, 2.0], ())


def _frames(n: int, side: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8), rng.integers(0, 5, n)


def _bundle_and_frames(model, tmp_path):
    """A random bottleneck on the model's first arm (its file), 24 training and 8 test frames."""
    bundle = bundle_on_first_arm(model, tmp_path)
    train_x, _ = _frames(24, model.input_size, 0)
    test_x, test_y = _frames(8, model.input_size, 1)
    return bundle, tmp_path / "bn.safetensors", train_x, test_x, test_y


def test_tuning_trains_the_decoder_only_and_resumes(tiny_real, tmp_path):
    """The tuned checkpoint keeps the encoder and the coding tables byte-identical (the edge
    and its bytes do not change) and has another decoder; its card records the tuning; a run
    with more time resumes the saved state instead of starting again."""
    bundle, src, train_x, test_x, test_y = _bundle_and_frames(tiny_real, tmp_path)
    out, work = tmp_path / "tuned.safetensors", tmp_path / "work"
    cfg = DecoderTuneConfig(seconds=2.0, batch=4, lr=1e-2, test_limit=8)
    card = tune_decoders(tiny_real, bundle, src, [0], train_x, test_x, test_y, cfg, out, work)

    before, after = load_file(str(src)), load_file(str(out))
    assert before.keys() == after.keys()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (not name.startswith("arm0.decoder.net")), name
    tuned = load_bottlenecks(out, tmp_path / "base.safetensors")
    h = torch.randn(3, *tiny_real.feature_shape(0))
    original = load_bottlenecks(src, tmp_path / "base.safetensors")
    assert torch.equal(
        tuned.bottlenecks.codecs[0].quantize(h, 1), original.bottlenecks.codecs[0].quantize(h, 1)
    )
    info = card["decoder_tuned_from"], card["arms"][0]["training"]["decoder_tune"]
    assert info[0] == "bn.safetensors" and info[1]["steps"] > 0
    assert card["decoder_tuned_from_sha256"] == sha256_file(src)
    assert len(card["arms"][0]["rates"]) == 2  # re-measured at both rate points

    first = info[1]["steps"]
    more = DecoderTuneConfig(seconds=3.0, batch=4, lr=1e-2, test_limit=8)  # same recipe key
    again = tune_decoders(
        tiny_real, load_bottlenecks(src), src, [0], train_x, test_x, test_y, more, out, work
    )
    tune = again["arms"][0]["training"]["decoder_tune"]
    assert tune["steps"] > first and tune["seconds"] >= 3.0


def test_a_scalar_arm_has_no_decoder_to_tune(tiny_real, tmp_path):
    from splitee.checkerboard import fit_context_tables
    from splitee.files import sha256_file
    from splitee.models.bottleneck import Bottlenecks, scalar_spec
    from splitee.models.bottleneck_checkpoint import save_bottlenecks

    base = tmp_path / "base.safetensors"
    base.write_bytes(b"stand-in")
    shape = tiny_real.feature_shape(0)
    bn = Bottlenecks([scalar_spec(shape)], [1.0])
    tables = {0: [fit_context_tables(bn.codecs[0].quantize(torch.randn(16, *shape), 0).numpy())]}
    save_bottlenecks(bn, tables, tmp_path / "s.safetensors", base, sha256_file(base))
    x, y = _frames(4, tiny_real.input_size, 0)
    with pytest.raises(ValueError, match="only learned codecs"):
        tune_decoders(
            tiny_real,
            load_bottlenecks(tmp_path / "s.safetensors"),
            tmp_path / "s.safetensors",
            [0],
            x,
            x,
            y,
            DecoderTuneConfig(seconds=1.0),
            tmp_path / "o.safetensors",
            tmp_path / "w",
        )


def test_a_tuned_checkpoint_tuned_again_at_one_rate_keeps_its_history(tiny_real, tmp_path):
    """Tuning at one rate point moves the decoder (shared by every rate) and the card keeps
    the earlier tune under ``decoder_tune_history``."""
    bundle, src, train_x, test_x, test_y = _bundle_and_frames(tiny_real, tmp_path)
    first, second = tmp_path / "t1.safetensors", tmp_path / "t2.safetensors"
    cfg = DecoderTuneConfig(seconds=1.0, batch=4, lr=1e-2, test_limit=8)
    tune_decoders(tiny_real, bundle, src, [0], train_x, test_x, test_y, cfg, first, tmp_path)
    again = DecoderTuneConfig(seconds=1.0, batch=4, lr=1e-2, test_limit=8, steps=(1.0,))
    tuned = load_bottlenecks(first, tmp_path / "base.safetensors")
    card = tune_decoders(
        tiny_real, tuned, first, [0], train_x, test_x, test_y, again, second, tmp_path
    )
    training = card["arms"][0]["training"]
    assert tuple(training["decoder_tune"]["config"]["steps"]) == (1.0,)
    assert [t["config"]["steps"] for t in training["decoder_tune_history"]] == [None]
    a, b = load_file(str(first)), load_file(str(second))
    assert any(not torch.equal(a[n], b[n]) for n in a if n.startswith("arm0.decoder.net"))


def test_the_recipe_key_tells_recipes_apart_but_not_time_budgets():
    base = DecoderTuneConfig()
    assert base.key() == DecoderTuneConfig(seconds=60.0, threads=1).key()
    keys = {base.key(), DecoderTuneConfig(log_levels=True).key()}
    keys.add(DecoderTuneConfig(steps=(6.0,)).key())
    assert len(keys) == 3  # a state of one recipe is never resumed by another
