"""Settings: where values come from, and that a misspelt key fails instead of being ignored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from splitee.cli import main
from splitee.settings import REPO_ROOT, Section, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SPLITEE_ variable of the caller's shell decides what these tests see."""
    for key in list(os.environ):
        if key.startswith("SPLITEE_"):
            monkeypatch.delenv(key)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def every_section() -> list[type[Section]]:
    """Each section class reachable from Settings (cameras included, through their list)."""
    found: list[type[Section]] = []

    def walk(model: type) -> None:
        for f in model.model_fields.values():
            ann = f.annotation
            inner = getattr(ann, "__args__", (ann,))
            for t in inner:
                if isinstance(t, type) and issubclass(t, Section) and t not in found:
                    found.append(t)
                    walk(t)

    walk(Settings)
    return found


def test_every_section_forbids_unknown_keys():
    sections = every_section()
    assert len(sections) >= 13  # data, model, …, channel, and the cameras in producer
    for section in sections:
        assert section.model_config.get("extra") == "forbid", section.__name__


@pytest.mark.parametrize(
    "toml",
    [
        "[model]\nthreads = 4\n",  # a removed setting
        "[eval]\nbatch_size = 100\n",  # another one
        "[kafka]\nbootstrapp = '127.0.0.1:1'\n",  # a typo
        "[[producer.cameras]]\nid = 'cam-1'\nfsp = 10\n",  # a typo inside a list of sections
        "nope = 1\n",  # at the top level
    ],
)
def test_unknown_key_in_a_toml_section_is_an_error(tmp_path, toml):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        load_settings(write_toml(tmp_path, toml))


def test_unknown_key_in_the_environment_is_an_error(monkeypatch):
    monkeypatch.setenv("SPLITEE_POLICY__ALPAH", "0.7")
    with pytest.raises(ValidationError, match="alpah"):
        Settings()


def test_precedence_kwargs_over_env_over_toml_over_defaults(tmp_path, monkeypatch):
    toml = write_toml(tmp_path, "[policy]\nalpha = 0.6\nbeta = 2.0\ngamma = 0.3\n")
    monkeypatch.setenv("SPLITEE_POLICY__BETA", "3.0")
    monkeypatch.setenv("SPLITEE_LOG_LEVEL", "INFO")
    s = load_settings(toml, log_level="DEBUG")
    assert s.policy.alpha == 0.6  # TOML over the default
    assert s.policy.beta == 3.0  # environment over TOML
    assert s.log_level == "DEBUG"  # keyword over environment
    assert s.policy.mu == 1.0  # the default where nobody says otherwise


def test_load_settings_leaves_the_environment_alone(tmp_path):
    toml = write_toml(tmp_path, "[policy]\nalpha = 0.6\n")
    before = dict(os.environ)
    assert load_settings(toml).policy.alpha == 0.6
    assert dict(os.environ) == before
    assert Settings().policy.alpha is None  # the file applied to that one load only


def test_splitee_config_names_the_file_when_none_is_passed(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLITEE_CONFIG", str(write_toml(tmp_path, "[policy]\nalpha = 0.7\n")))
    assert load_settings().policy.alpha == 0.7
    other = tmp_path / "other.toml"
    other.write_text("[policy]\nalpha = 0.8\n")
    assert load_settings(other).policy.alpha == 0.8  # an explicit file takes its place


def test_missing_settings_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.toml"):
        load_settings(tmp_path / "missing.toml")


def test_var_dir_follows_the_deploy_scripts_variable(tmp_path, monkeypatch):
    assert Settings().var_dir == REPO_ROOT / "var"
    monkeypatch.setenv("SPLITEE_VAR_DIR", str(tmp_path))
    assert Settings().var_dir == tmp_path
    monkeypatch.setenv("SPLITEE_VAR_DIR", "")  # as ${SPLITEE_VAR_DIR:-<repo>/var} in deploy/
    assert Settings().var_dir == REPO_ROOT / "var"


def test_port_defaults_are_read_when_the_settings_are(monkeypatch):
    monkeypatch.setenv("SPLITEE_KAFKA_PORT", "19092")
    monkeypatch.setenv("SPLITEE_REDIS_PORT", "16379")
    s = Settings()
    assert s.kafka.bootstrap == "127.0.0.1:19092"
    assert s.redis.url == "redis://127.0.0.1:16379/0"


def test_cli_config_option_and_unknown_key_message(tmp_path):
    good = write_toml(tmp_path, "[policy]\nalpha = 0.65\n")
    res = CliRunner().invoke(main, ["--config", str(good), "settings"])
    assert res.exit_code == 0, res.output
    assert '"alpha": 0.65' in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[edge]\nbatchsize = 8\n")
    res = CliRunner().invoke(main, ["--config", str(bad), "settings"])
    assert res.exit_code != 0
    assert "invalid settings" in res.output and "batchsize" in res.output


def test_bytes_offload_cost_and_channel_air_time_are_not_both_on(tmp_path):
    """Both scale o by the bytes offloaded: together they would charge bytes twice."""
    both = (
        "[policy]\noffload_cost_mode = 'bytes'\n"
        "[channel]\nenabled = true\noffload_cost = 'channel'\n"
    )
    with pytest.raises(ValidationError, match="choose one"):
        load_settings(write_toml(tmp_path, both))
    one = load_settings(write_toml(tmp_path, both.replace("'channel'\n", "'constant'\n")))
    assert one.policy.offload_cost_mode == "bytes"


def test_alpha_is_the_settings_else_the_checkpoints_else_one_half():
    """SplitEE sets α per data set: a checkpoint may carry the α its card reports."""
    from splitee import policy_setup

    caltech = REPO_ROOT / "assets" / "efficientnet-lite0-caltech101.safetensors"
    resnet = REPO_ROOT / "assets" / "resnet56-multiexit.safetensors"
    assert policy_setup.alpha(Settings(), caltech) == 0.7
    assert policy_setup.alpha(Settings(), resnet) == 0.5  # no α in its metadata
    assert policy_setup.alpha(load_settings(policy={"alpha": 0.9}), caltech) == 0.9
    unset = load_settings(model={"checkpoint": caltech})
    assert policy_setup.cost_model(unset, [1, 2, 3]).alpha == 0.7


def test_settings_are_frozen_after_load() -> None:
    """What was loaded is what every part reads: no section or field changes afterwards; a
    changed copy is model_copy(update=...), which leaves the original as it was."""
    s = load_settings()
    assert Settings.model_config.get("frozen")
    assert all(section.model_config.get("frozen") for section in every_section())
    with pytest.raises(ValidationError, match="frozen"):
        s.log_level = "DEBUG"
    with pytest.raises(ValidationError, match="frozen"):
        s.kafka = s.kafka
    with pytest.raises(ValidationError, match="frozen"):
        s.kafka.frames_topic = "other"
    changed = s.model_copy(update={"kafka": s.kafka.model_copy(update={"frames_topic": "other"})})
    assert changed.kafka.frames_topic == "other" and s.kafka.frames_topic != "other"
