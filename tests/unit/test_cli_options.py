"""Commands pass only the options given to a config's ``from_settings``, and an option a mode
does not use is an error, never silently ignored."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from splitee.cli import main
from splitee.cli.options import comma_list, given
from splitee.evaluate.runner import EvalConfig
from splitee.evaluate.shift import ShiftConfig
from splitee.evaluate.transmission import ChannelEvalConfig
from splitee.settings import Settings
from splitee.training.train import TrainConfig
from tests.conftest import CHECKPOINT


def test_given_holds_only_what_the_user_gave(monkeypatch):
    seen = {}

    @click.command()
    @click.option("--runs", type=int, default=None)
    @click.option("--seed", type=int, default=3)
    @click.option("--flag", is_flag=True)
    @click.option("--beta", type=float, envvar="TEST_BETA", default=None)
    @click.pass_context
    def cmd(ctx, **_):
        seen.update(given(ctx))

    monkeypatch.setenv("TEST_BETA", "0.5")
    assert CliRunner().invoke(cmd, ["--flag", "--runs", "4"]).exit_code == 0
    assert seen == {"runs": 4, "flag": True, "beta": 0.5}  # defaults (seed) stay out


def test_configs_take_the_settings_and_what_was_given():
    s = Settings(policy={"gamma": 0.2, "seed": 7}, eval={"runs": 3}, channel={"arm": 5})
    e = EvalConfig.from_settings(s, CHECKPOINT, runs=9)
    assert (e.gamma, e.seed, e.runs, e.distortions) == (0.2, 7, 9, s.eval.distortions)
    assert EvalConfig.from_settings(s, CHECKPOINT, alpha=0.9).alpha == 0.9
    c = ChannelEvalConfig.from_settings(s, CHECKPOINT, bits=4)
    assert (c.arm, c.bits, c.retries) == (5, 4, s.channel.retries)
    assert ShiftConfig.from_settings(s, runs=1).seed == 7
    t = TrainConfig.from_settings(s, epochs=1)
    assert (t.arch, t.exit_every, t.noise_arm, t.epochs) == ("resnet56", 3, 5, 1)
    with pytest.raises(TypeError):  # a misspelt option is no silent default either
        EvalConfig.from_settings(s, CHECKPOINT, rnus=1)


@pytest.mark.parametrize(
    "args,named",
    [
        (["--backbone", "efficientnet-lite0", "--lr", "0.1", "--head", "conv2"], "--lr, --head"),
        (["--backbone", "efficientnet-lite0", "--augment-distortions"], "--augment-distortions"),
        (["--backbone", "efficientnet-lite0", "--noise-snr", "0,5"], "--noise-snr"),
        (["--data", "caltech101"], "--data"),
        (["--arch", "resnet20", "--finetune-tail"], "--finetune-tail"),
    ],
)
def test_train_refuses_options_its_mode_ignores(args, named):
    r = CliRunner().invoke(main, ["train", *args])
    assert r.exit_code == 2, r.output
    assert f"{named}: not used when training" in r.output


def test_comma_list():
    assert comma_list("0.1,0.2", float) == [0.1, 0.2]
    assert comma_list("") == []
