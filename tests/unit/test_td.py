"""Transmission-decision mechanisms on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from splitee.td import (
    AlphaRule,
    Always,
    Learned,
    Never,
    Oracle,
    SNRThreshold,
    TDInputs,
    keep_objective,
)


def _inputs(maxes, snr):
    m = np.asarray(maxes, float)
    return TDInputs(m, m - (1 - m) / 9, np.zeros_like(m), np.broadcast_to(snr, m.shape).copy())


def test_softmax_statistics():
    x = TDInputs.from_probs(np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]]), 5.0)
    assert x.max == pytest.approx([0.7, 1 / 3])
    assert x.margin == pytest.approx([0.5, 0.0])
    assert x.entropy[1] == pytest.approx(np.log(3))
    assert np.all(x.snr_db == 5.0)
    both = TDInputs.concat([x, x.take(np.array([1]))])
    assert len(both) == 3 and both.max[2] == pytest.approx(1 / 3)


def test_always_never_and_channel_blind():
    x = _inputs([0.2, 0.5, 0.9], 0.0)
    assert Always().transmit(x).tolist() == [True, True, True]
    assert Never().transmit(x).tolist() == [False, False, False]
    assert AlphaRule(0.5).transmit(x).tolist() == [True, False, False]
    # the SNR does not matter to the channel-blind rule
    assert AlphaRule(0.5).transmit(_inputs([0.2, 0.5, 0.9], 30.0)).tolist() == [
        True,
        False,
        False,
    ]


def test_oracle_keeps_when_edge_right_or_server_wrong():
    x = _inputs([0.1, 0.1, 0.1, 0.1], 0.0)
    edge = np.array([True, True, False, False])
    server = np.array([True, False, True, False])
    assert Oracle(edge, server).transmit(x).tolist() == [False, False, True, False]
    with pytest.raises(ValueError):
        Oracle(edge, server).transmit(_inputs([0.1], 0.0))


def test_snr_threshold_table_lookup():
    td = SNRThreshold(edges=[2.5, 12.5], taus=[0.0, 0.6, 0.9])
    x = TDInputs.concat([_inputs([0.3, 0.8], s) for s in (0.0, 5.0, 20.0)])
    # 0 dB: τ=0 keeps everything; 5 dB: τ=0.6; 20 dB: τ=0.9 sends both
    assert td.transmit(x).tolist() == [False, False, True, False, True, True]
    with pytest.raises(ValueError):
        SNRThreshold([0.0], [0.5])


def test_snr_threshold_fit_per_bin():
    # at low SNR the server is always wrong: keep all (τ = 0); at high SNR the server is
    # always right and the edge right only when max ≥ 0.7: τ = 0.7 is the cheapest best
    maxes = np.linspace(0.05, 0.95, 19)
    lo, hi = _inputs(maxes, -5.0), _inputs(maxes, 20.0)
    x = TDInputs.concat([lo, hi])
    edge = np.concatenate([maxes >= 0.7, maxes >= 0.7])
    server = np.concatenate([np.zeros(19, bool), np.ones(19, bool)])
    td = SNRThreshold.fit(x, edge, server, edges=[7.5])
    assert td.taus[0] == 0.0
    assert 0.65 < td.taus[1] <= 0.7
    # the best possible: the 6 confident low-SNR frames and every high-SNR frame right
    assert keep_objective(td.transmit(x), edge, server, 0.0) == pytest.approx(25 / 38)
    # an empty bin borrows its neighbour's threshold
    td3 = SNRThreshold.fit(x, edge, server, edges=[7.5, 30.0])
    assert td3.taus[2] == td3.taus[1]


def test_learned_classifier_learns_the_snr_dependence(tmp_path):
    rng = np.random.default_rng(0)
    n = 4000
    maxes = rng.uniform(0.1, 1.0, n)
    snr = rng.choice([-5.0, 20.0], n)
    x = _inputs(maxes, 0.0)
    x = TDInputs(x.max, x.margin, x.entropy, snr)
    edge = rng.random(n) < maxes  # confident edge predictions are right more often
    server = np.where(snr > 0, rng.random(n) < 0.95, rng.random(n) < 0.1)
    td = Learned.fit(x, edge, server, penalty=0.0)
    tx = td.transmit(x)
    # noisy link: keep nearly everything; clean link: send the unconfident frames
    assert tx[snr < 0].mean() < 0.1
    assert tx[(snr > 0) & (maxes < 0.4)].mean() > 0.9
    acc = np.where(tx, server, edge).mean()
    assert acc > max(np.where(snr > 0, server, edge).mean() - 0.02, edge.mean(), server.mean())
    # JSON round trip, no pickle
    path = tmp_path / "td.json"
    td.save(path)
    again = Learned.load(path)
    assert np.array_equal(again.transmit(x), tx)
    assert again.to_json()["format"] == "splitee-td-logreg/1"
    with pytest.raises(ValueError):
        Learned.from_json({"format": "other"})
    assert 0.0 <= td.threshold <= 1.0
    assert Learned.fit(x, edge, server).threshold == 0.5
