"""``splitee evaluate-channel`` on the shipped sample and checkpoint (a few hundred frames)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from splitee.evaluate.transmission import (
    MECHANISMS,
    ChannelEvalConfig,
    bin_edges,
    run_channel_evaluation,
    split_frames,
    write_channel_outputs,
)
from splitee.settings import Settings
from tests.conftest import CHECKPOINT


def channel_config(**given) -> ChannelEvalConfig:
    """The default channel settings, with ``given`` as a user would give them."""
    return ChannelEvalConfig.from_settings(Settings(), CHECKPOINT, **given)


@pytest.fixture(scope="module")
def frames(sample_frames):
    return sample_frames.subset(240, seed=0)


def _by(summary):
    return {(r["snr_db"], r["mechanism"]): r for r in summary["results"]}


def test_split_is_disjoint_and_seeded():
    fit, scored = split_frames(100, 30, 0)
    assert len(fit) == 30 and len(scored) == 70
    assert not set(fit) & set(scored)
    assert np.array_equal(fit, split_frames(100, 30, 0)[0])
    with pytest.raises(ValueError):
        split_frames(10, 10, 0)
    assert bin_edges([20, -5, 0]) == [-2.5, 10.0]


def test_analog_evaluation(frames, tmp_path):
    cfg = channel_config(arm=7, mode="analog", snrs=[-10.0, 20.0], fit_frames=80)
    summary = run_channel_evaluation(CHECKPOINT, frames, cfg)
    by = _by(summary)
    assert summary["data"] == {
        "source": frames.source,
        "frames": 240,
        "fit": 80,
        "scored": 160,
    }
    assert len(summary["results"]) == 2 * len(MECHANISMS)
    for s in cfg.snrs:
        assert by[(s, "always-transmit")]["transmitted"] == 1.0
        assert by[(s, "never-transmit")]["transmitted"] == 0.0
        assert by[(s, "never-transmit")]["accuracy"] == summary["reference"]["edge_exit_accuracy"]
        best = max(by[(s, m)]["accuracy"] for m in MECHANISMS)
        assert by[(s, "oracle")]["accuracy"] == best
        assert by[(s, "always-transmit")]["bytes_per_frame"] == 64 * 8 * 8 * 2
    # features drowned in noise at -10 dB; nearly clean at 20 dB
    assert by[(-10.0, "always-transmit")]["accuracy"] < by[(20.0, "always-transmit")]["accuracy"]
    assert by[(20.0, "always-transmit")]["accuracy"] == pytest.approx(
        summary["reference"]["server_accuracy_no_channel"], abs=0.03
    )
    write_channel_outputs(summary, tmp_path)
    for f in ("summary.json", "table.md", "td-learned.json", "accuracy_snr.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert json.loads((tmp_path / "td-learned.json").read_text())["format"].startswith("splitee-td")
    assert "## Findings" in (tmp_path / "table.md").read_text()


def test_digital_outage_falls_back_to_the_edge(frames):
    cfg = channel_config(
        arm=8, mode="digital", snrs=[-5.0, 10.0], fit_frames=80, outage_snr_db=0.0, retries=1
    )
    summary = run_channel_evaluation(CHECKPOINT, frames, cfg)
    by = _by(summary)
    edge = summary["reference"]["edge_exit_accuracy"]
    # static channel in outage: every frame is lost twice and keeps its edge prediction
    low = by[(-5.0, "always-transmit")]
    assert low["delivered"] == 0.0 and low["accuracy"] == edge
    high = by[(10.0, "always-transmit")]
    assert high["delivered"] == 1.0
    payload = 64 * 8 * 8 * 8 + 64
    assert high["channel_uses_per_frame"] == pytest.approx(payload / np.log2(1 + 10.0), abs=0.1)
    assert low["channel_uses_per_frame"] == pytest.approx(2 * payload, abs=0.1)
