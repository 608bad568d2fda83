"""``splitee evaluate`` end to end on the shipped sample and checkpoint."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from splitee.cli import main
from tests.conftest import CHECKPOINT, SAMPLE

METHODS = {
    "splitee-ucb1",
    "isplitee-online",
    "isplitee-full",
    "best-fixed",
    "random",
    "final-exit",
    "edge-only-ee",
    "cloud-only",
    *(f"fixed-{k}" for k in range(1, 10)),
}


def run_eval(out, cache, *extra):
    args = [
        "evaluate",
        "--model",
        str(CHECKPOINT),
        "--data",
        str(SAMPLE),
        "--out",
        str(out),
        "--limit",
        "600",
        "--runs",
        "3",
        "--distortions",
        "pristine,noise:0.1",
        *extra,
    ]
    res = CliRunner().invoke(main, args, env={"SPLITEE_DATA__CACHE_DIR": str(cache)})
    assert res.exit_code == 0, res.output
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One decode/model-output cache for the module: the model runs on the frames once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def first(tmp_path_factory, cache):
    """The first evaluation (fills the cache): its output folder and summary."""
    out = tmp_path_factory.mktemp("eval") / "a"
    return out, run_eval(out, cache)


def test_evaluate_writes_summary_table_and_plots(first):
    out, s = first
    assert {"settings", "model", "results"} <= set(s)
    assert s["settings"]["gamma"] == 0.1 and s["settings"]["alpha"] == 0.5
    assert s["model"]["exit_depths"] == [3, 6, 9, 12, 15, 18, 21, 24, 27]
    for dist in ("pristine", "noise:0.1"):
        rows = {r["method"]: r for r in s["results"] if r["distortion"] == dist}
        assert set(rows) == METHODS
        for r in rows.values():
            assert set(r) >= {
                "distortion",
                "level",
                "method",
                "accuracy",
                "cost",
                "cost_reduction",
                "offload_fraction",
                "regret",
                "runs",
            }
            assert 0 <= r["accuracy"] <= 1 and 0 <= r["offload_fraction"] <= 1
        assert rows["final-exit"]["cost_reduction"] == pytest.approx(0.0)
        assert rows["best-fixed"]["regret"] == 0
        assert rows["isplitee-online"]["runs"] == 3
    table = (out / "table.md").read_text()
    assert "isplitee-online" in table and "## noise:0.1" in table
    for png in ("regret.png", "accuracy_cost.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_evaluate_is_deterministic_and_cached(first, cache, tmp_path):
    _, a = first
    assert any((cache / "outputs").iterdir())
    b = run_eval(tmp_path / "b", cache)
    assert a["results"] == b["results"]


def test_sweep_o(cache, tmp_path):
    s = run_eval(tmp_path / "s", cache, "--sweep-o", "0.1,0.6")
    costs = {r["offload_cost"] for r in s["results"]}
    assert costs == {0.1, 0.6}
    assert (tmp_path / "s" / "sweep_o.png").exists()
