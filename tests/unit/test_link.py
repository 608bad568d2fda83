"""The channel model: SNR process statistics, analog noise power, capacity and outage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splitee.link import (
    BlockRayleigh,
    ConstantSNR,
    GilbertElliott,
    TraceSNR,
    analog,
    camera_process,
    capacity,
    digital,
    digital_costs,
    parse_process,
    quantise,
)


def _run_lengths(states: np.ndarray, value: int) -> np.ndarray:
    """Lengths of the maximal runs of ``value`` (the first and last run dropped: censored)."""
    change = np.flatnonzero(np.diff(states)) + 1
    bounds = np.concatenate([[0], change, [len(states)]])
    runs = [
        (bounds[i + 1] - bounds[i]) for i in range(1, len(bounds) - 2) if states[bounds[i]] == value
    ]
    return np.array(runs)


def test_constant_snr():
    p = ConstantSNR(7.5)
    assert p.snr_db(0) == p.snr_db(10_000) == 7.5
    assert np.all(p.snr_db_array(100) == 7.5)


def test_processes_are_seeded_and_independent_of_query_order():
    a, b = BlockRayleigh(10, 3, seed=4), BlockRayleigh(10, 3, seed=4)
    late = a.snr_db(9000)
    assert b.snr_db_array(9001)[-1] == late
    g1, g2 = GilbertElliott(seed=1), GilbertElliott(seed=1)
    assert g1.state(5000) == g2.states_array(5001)[-1]
    assert not np.array_equal(BlockRayleigh(seed=1).snr_db_array(50), a.snr_db_array(50))
    c1, c2 = camera_process("rayleigh:10", "cam-1"), camera_process("rayleigh:10", "cam-2")
    assert not np.array_equal(c1.snr_db_array(20), c2.snr_db_array(20))
    assert np.array_equal(
        c1.snr_db_array(20), camera_process("rayleigh:10", "cam-1").snr_db_array(20)
    )


def test_gilbert_elliott_state_durations_are_geometric():
    p_gb, p_bg = 0.05, 0.2
    ge = GilbertElliott(good_db=20, bad_db=-2, p_gb=p_gb, p_bg=p_bg, seed=0)
    n = 200_000
    states = ge.states_array(n)
    snr = ge.snr_db_array(n)
    assert set(np.unique(snr)) == {20.0, -2.0}
    assert np.all((snr == -2.0) == (states == 1))
    good, bad = _run_lengths(states, 0), _run_lengths(states, 1)
    # geometric durations: mean 1/p, variance (1-p)/p²
    assert good.mean() == pytest.approx(1 / p_gb, rel=0.05)
    assert bad.mean() == pytest.approx(1 / p_bg, rel=0.05)
    assert good.var() == pytest.approx((1 - p_gb) / p_gb**2, rel=0.15)
    assert states.mean() == pytest.approx(p_gb / (p_gb + p_bg), abs=0.02)
    assert ge.state(123) == states[123]


def test_block_rayleigh_gain_is_exponential_with_mean_one():
    mean_db, coh = 10.0, 4
    r = BlockRayleigh(mean_db, coh, seed=3)
    n = 200_000
    snr = r.snr_db_array(n)
    # constant within a coherence block, changing between blocks
    assert np.all(snr.reshape(-1, coh) == snr.reshape(-1, coh)[:, :1])
    gains = 10 ** ((snr[::coh] - mean_db) / 10)
    assert gains.mean() == pytest.approx(1.0, rel=0.02)
    assert gains.var() == pytest.approx(1.0, rel=0.05)  # Exp(1): variance 1
    # Kolmogorov-Smirnov distance to the Exp(1) CDF, against its 1% critical value
    g = np.sort(gains)
    m = len(g)
    cdf = 1 - np.exp(-g)
    ks = max(np.max(np.arange(1, m + 1) / m - cdf), np.max(cdf - np.arange(m) / m))
    assert ks < 1.63 / math.sqrt(m)
    # mean SNR in linear units is the nominal mean
    assert np.mean(10 ** (snr / 10)) == pytest.approx(10**1.0, rel=0.02)
    assert r.gain(5) == pytest.approx(gains[1])


def test_trace_step_and_time_indexed(tmp_path):
    f = tmp_path / "trace.csv"
    f.write_text("time,snr_db\n0,10\n1,5\n2,-3\n")
    t = TraceSNR.from_csv(f)
    assert [t.snr_db(i) for i in range(5)] == [10, 5, -3, 10, 5]
    timed = TraceSNR.from_csv(f, dt=0.5)  # steps at t = 0, .5, 1, 1.5, 2, then wraps
    assert [timed.snr_db(i) for i in range(5)] == [10, 10, 5, 5, -3]
    assert parse_process(f"trace:{f}").snr_db(2) == -3
    with pytest.raises(ValueError):
        parse_process("wifi:3")


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0])
def test_analog_noise_power_matches_snr(snr_db):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 16, 8, 8, generator=g) * 3  # non-negative, like post-ReLU features
    y, info = analog(x, snr_db, generator=g)
    power = x.pow(2).mean(dim=(1, 2, 3))
    noise = (y - x).pow(2).mean(dim=(1, 2, 3))
    measured = float((noise / power).mean())  # noise power relative to signal power
    assert measured == pytest.approx(10 ** (-snr_db / 10), rel=0.03)
    assert len(info) == 64 and info[0].channel_uses == 16 * 8 * 8 / 2
    assert info[0].seconds == pytest.approx(info[0].channel_uses / 1e6)
    assert info[3].snr_db == snr_db


def test_analog_per_frame_snr():
    x = torch.ones(2, 1000)
    y, _ = analog(x, np.array([30.0, -10.0]), generator=torch.Generator().manual_seed(1))
    err = (y - x).pow(2).mean(dim=1)
    assert float(err[0]) < 0.01 < 5 < float(err[1])


def test_capacity_and_digital_costs():
    assert float(capacity(0.0)) == pytest.approx(1.0)
    assert float(capacity(10 * math.log10(3))) == pytest.approx(2.0)
    numel, bits = 1000, 8
    payload = numel * bits + 64
    costs = digital_costs(numel, np.array([10 * math.log10(3)]), bits, outage_snr_db=0.0)
    assert costs[0].delivered and costs[0].attempts == 1
    assert costs[0].channel_uses == pytest.approx(payload / 2)
    assert costs[0].bytes == payload // 8
    assert costs[0].seconds == pytest.approx(payload / 2 / 1e6)


def test_digital_outage_retry_and_drop():
    snr = np.array([-5.0, -5.0, 3.0])
    retry = np.array([[10.0], [-6.0], [0.0]])
    costs = digital_costs(100, snr, 8, outage_snr_db=0.0, retries=1, retry_snr_db=retry)
    lost = (100 * 8 + 64) / 1.0  # an attempt in outage costs the payload at the threshold rate
    assert costs[0].delivered and costs[0].attempts == 2
    assert costs[0].channel_uses == pytest.approx(lost + 864 / float(capacity(10.0)))
    assert not costs[1].delivered and costs[1].attempts == 2
    assert costs[1].channel_uses == pytest.approx(2 * lost)
    assert costs[2].delivered and costs[2].attempts == 1
    # static channel: without a retry SNR a retry of an outage fails again
    assert not digital_costs(10, np.array([-1.0]), retries=3)[0].delivered


def test_digital_quantises_within_half_a_step():
    x = torch.rand(4, 3, 5, 5) * 2
    y, info = digital(x, 20.0, bits=8)
    step = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))) / 255
    assert torch.all((y - x).abs().amax(dim=(1, 2, 3)) <= step / 2 + 1e-6)
    assert all(t.delivered for t in info)
    assert torch.equal(quantise(x, 8), y)
    assert len(torch.unique(quantise(x, 2)[0])) <= 4
