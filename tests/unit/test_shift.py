"""The shift experiment's streams, scopes and per-phase scoring on synthetic exit outputs."""

from __future__ import annotations

import numpy as np

from splitee.evaluate.outputs import ExitOutputs
from splitee.evaluate.shift import ShiftConfig, make_streams, shift_experiment, write_shift
from splitee.settings import Settings

DEPTHS = [3, 6, 9, 12]
CM = {"gamma": 0.1, "mu": 1.0, "alpha": 0.6, "offload_cost": 0.5}


def fake_outputs(n: int, means, rng) -> ExitOutputs:
    conf = np.clip(rng.normal(means, 0.05, (n, 4)), 0, 1).astype(np.float32)
    return ExitOutputs(conf, np.zeros((n, 4), np.int16))


def test_streams_rotate_phases_per_camera():
    cfg = ShiftConfig.from_settings(Settings(), phases=("a", "b", "c"), phase_frames=4, runs=1)
    st = make_streams(100, cfg)
    assert st.phase[0, 0].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert st.phase[0, 1].tolist() == [1] * 4 + [2] * 4 + [0] * 4


def test_shift_experiment_scores_every_method_per_phase(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros(500, np.int64)
    outputs = {
        "day": fake_outputs(500, [0.9, 0.7, 0.8, 0.9], rng),  # arm 1 exits: best
        "night": fake_outputs(500, [0.2, 0.95, 0.9, 0.5], rng),  # arm 2 best
    }
    cfg = ShiftConfig.from_settings(
        Settings(),
        phases=("day", "night"),
        phase_frames=600,
        runs=2,
        policies=("ucb1", "swucb"),
        window=200,
    )
    summary = shift_experiment(outputs, labels, DEPTHS, CM, cfg)
    methods = {r["method"] for r in summary["results"]}
    assert methods == {"ucb1/global", "ucb1/camera", "swucb/global", "swucb/camera", "final-exit"}
    by = {(r["method"], r["distortion"]): r for r in summary["results"]}
    # all predictions are class 0 = the label: accuracy is 1 everywhere, drop 0
    assert by[("ucb1/global", "day")]["accuracy"] == 1.0
    # the windowed policy adapts to the night phase with less regret than UCB1 per camera
    assert by[("swucb/camera", "night")]["regret"] < by[("ucb1/camera", "night")]["regret"]
    assert by[("final-exit", "day")]["cost_reduction"] == 0
    write_shift(summary, tmp_path)
    for f in ("summary.json", "table.md", "arms_over_time.png", "phase_regret.png"):
        assert (tmp_path / f).stat().st_size > 100
