"""The "latency" offload cost: an arm's time to reach the cloud over a rate-limited uplink.

What matters is that the price follows the link: on a fast link the camera's JPEG (no edge
compute) is the cheapest offload, on a slow one a small payload that costs edge compute wins,
and a rate measured live moves the rewards the policy learns from.
"""

from __future__ import annotations

import dataclasses
import gzip
import time

import numpy as np
import pytest
from pydantic import ValidationError

from cloud_workers.processor import CloudProcessor
from edge_workers.processor import EdgeProcessor
from policy_store import CostModel, MemoryStore
from policy_store.policies import ISplitEE, make_policy
from policy_store.uplink import LatencyPricing, UplinkEstimator
from splitee import policy_setup
from splitee.models.frame_arm import FrameArmNet
from splitee.settings import load_settings
from splitee.wire import FrameMeta, OffloadMeta, Result
from splitee.worker.records import InRecord
from tests.bandits import bandit
from tests.conftest import REPO
from tests.unit.test_send_frame import _jpeg, _record

JPEG = 12_800  # bytes of the camera's frame, the reference
#: send the JPEG (no edge compute), a 1.6 kB latent after 40 ms at the edge, the final exit
PRICING = LatencyPricing((JPEG, 1600, 0), (0.0, 0.040, 0.060), JPEG, 10e6)


def offload_reward(cm: CostModel, arm: int, c_final: float = 0.9) -> float:
    """The reward of a frame offloaded at ``arm`` (C_arm below α)."""
    conf = np.array([0.1, 0.1, c_final])
    exits = np.array([False, False, True])
    return float(cm.rewards(conf, exits, c_final)[arm])


def test_the_arm_order_flips_between_a_fast_and_a_slow_link() -> None:
    cm = CostModel((0, 3, 9), gamma=0.0, offload_cost=0.5, relative_cost=(0.0, 0.5, 1.0))
    fast = replace_latency(cm, 10e6)
    slow = replace_latency(cm, 2e6)
    # 10 Mbit/s: JPEG 10.24 ms on the link; the latent 1.28 ms + 40 ms of compute
    assert fast.offload_costs[0] == pytest.approx(0.5)  # o keeps its meaning at the reference
    assert fast.offload_costs[1] == pytest.approx(0.5 * (0.040 + 0.00128) / 0.01024)
    assert offload_reward(fast, 0) > offload_reward(fast, 1)
    # 2 Mbit/s: JPEG 51.2 ms; latent 6.4 + 40 ms: the order flips
    assert slow.offload_costs[0] == pytest.approx(2.5)
    assert offload_reward(slow, 1) > offload_reward(slow, 0)
    # seconds, not abstract units: the times are the formula's
    assert PRICING.seconds(2e6)[:2] == pytest.approx((0.0512, 0.0464))
    assert cm.at_rate(2e6) is cm  # no latency pricing: a rate changes nothing


def test_a_model_rebuilt_from_what_is_beyond_the_papers_prices_as_the_original() -> None:
    """The offline replay rebuilds the workers' CostModel at each o of a sweep from
    ``beyond_papers()``: every measured field must come along (rate, bytes, latency)."""
    cm = replace_latency(CostModel((0, 3, 9), gamma=0.1, relative_cost=(0.0, 0.5, 1.0)), 2e6)
    cm = dataclasses.replace(cm, bytes_ref=float(JPEG))
    args = cm.beyond_papers()
    assert set(args).isdisjoint(CostModel.PAPERS_FIELDS)
    again = CostModel(cm.depths, cm.gamma, cm.mu, cm.alpha, cm.offload_cost, **args)
    assert again.offload_costs.tolist() == cm.offload_costs.tolist()
    assert again.rate_bps == 2e6 and again.bytes_ref == JPEG and again.latency == PRICING


def replace_latency(cm: CostModel, rate_bps: float) -> CostModel:
    return dataclasses.replace(cm, latency=PRICING).at_rate(rate_bps)


def test_pricing_rejects_what_is_not_a_link() -> None:
    with pytest.raises(ValueError, match="one each"):
        LatencyPricing((1, 2), (0.0,), 1, 1e6)
    with pytest.raises(ValueError, match="finite"):
        LatencyPricing((1, float("nan")), (0.0, 0.0), 1, 1e6)
    with pytest.raises(ValueError, match="reference"):
        LatencyPricing((1, 0), (0.0, 0.0), 1, 0.0)
    with pytest.raises(ValueError, match="3 arms for 2"):
        CostModel((0, 3), latency=PRICING)
    # an absurd measured rate is clamped, not divided by
    assert all(np.isfinite(PRICING.scale(0.0)))


def _samples(rate_bps: float, n: int, overhead: float = 0.03, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        bits = 8.0 * rng.integers(1, 12) * rng.choice([1600, 12_800])  # batch size × arm bytes
        yield bits, overhead + bits / rate_bps + rng.normal(0, 0.002)


def test_the_estimator_finds_the_rate_and_follows_a_change() -> None:
    est = UplinkEstimator(prior_bps=5e6, halflife=30)
    for bits, sec in _samples(10e6, 300):
        est.add(bits, sec)
    assert est.rate_bps == pytest.approx(10e6, rel=0.1)
    assert est.overhead_s == pytest.approx(0.03, abs=0.01)
    # 10 → 2 Mbit/s (tc change): within a few half-lives the estimate is the new rate
    seen = []
    for bits, sec in _samples(2e6, 200, seed=1):
        est.add(bits, sec)
        seen.append(est.rate_bps)
    assert seen[150] == pytest.approx(2e6, rel=0.15)
    assert seen[-1] == pytest.approx(2e6, rel=0.1)


def _token_bucket(rate_bps: float, sizes: list[float], gap_s: float, start: float = 0.0):
    """(bits, hop, sent) of batches through a FIFO link of ``rate_bps`` shaped by a token
    bucket with a 32 KiB burst (tc tbf as deploy/hosts.sh sets it), 1 ms of fixed overhead
    and a little noise: two cameras' batches, 5 ms apart, a pair every ``gap_s``."""
    rng = np.random.default_rng(len(sizes))
    tokens, free_at, t = 32768.0, start, start
    for i, b in enumerate(sizes):
        begin = max(t, free_at)
        tokens = min(32768.0, tokens + (begin - free_at) * rate_bps / 8)
        through = min(b, tokens)
        tokens -= through
        free_at = begin + (b - through) * 8 / rate_bps
        yield 8 * b, free_at - t + 0.001 + rng.exponential(0.0005), t
        t += 0.005 if i % 2 == 0 else gap_s - 0.005


def _stream(est: UplinkEstimator, rate_bps: float, sizes, gap_s: float, start: float) -> list:
    seen = []
    for bits, hop, sent in _token_bucket(rate_bps, sizes, gap_s, start):
        est.add(bits, hop, sent=sent)
        seen.append(est.rate_bps)
    return seen


def test_a_token_bucket_link_reads_at_its_rate_not_its_burst() -> None:
    """JPEGs of 8–40 kB from two cameras on a 10 Mbit/s shaper: most cross inside the 32 KiB
    burst in a millisecond; the estimate is the bucket's rate and burst all the same."""
    rng = np.random.default_rng(0)
    est = UplinkEstimator(prior_bps=50e6, halflife=10)
    _stream(est, 10e6, list(rng.uniform(8e3, 40e3, 600)), 0.08, 0.0)
    assert est.rate_bps == pytest.approx(10e6, rel=0.25)
    assert est.burst_bytes == 32768


def test_a_rate_drop_moves_the_estimate_within_seconds() -> None:
    """10 → 2 Mbit/s mid-stream (tc change): the estimate follows within ~30 batches (the
    old straight-line fit took ~50 s on the same benchmark)."""
    rng = np.random.default_rng(1)
    est = UplinkEstimator(prior_bps=10e6, halflife=10)
    sizes = list(rng.uniform(8e3, 40e3, 1200))
    _stream(est, 10e6, sizes[:600], 0.08, 0.0)
    assert est.rate_bps == pytest.approx(10e6, rel=0.25)
    seen = _stream(est, 2e6, sizes[600:], 0.08, 48.0)
    assert seen[30] == pytest.approx(2e6, rel=0.25)
    assert all(x == pytest.approx(2e6, rel=0.3) for x in seen[100:])


def test_small_batches_through_the_burst_leave_the_estimate_alone() -> None:
    """On 2 Mbit/s a stream of small latents crosses inside the burst at line speed: it says
    nothing about the rate, so the estimate stays where the large batches put it."""
    rng = np.random.default_rng(2)
    est = UplinkEstimator(prior_bps=10e6, halflife=10)
    _stream(est, 2e6, list(rng.uniform(8e3, 60e3, 300)), 0.1, 0.0)
    assert est.rate_bps == pytest.approx(2e6, rel=0.25)
    seen = _stream(est, 2e6, list(rng.uniform(1e3, 4e3, 1000)), 0.1, 40.0)
    assert all(x == pytest.approx(2e6, rel=0.25) for x in seen)


def test_a_slow_start_does_not_move_the_prior() -> None:
    """A pipeline's first batches are slow (connections, metadata, a cold broker): the prior
    stands for two half-lives, so they cannot set a wrong estimate that small latents would
    then never correct (a run read 3.6 Mbit/s on a 10 Mbit/s link after five such batches)."""
    est = UplinkEstimator(prior_bps=10e6, halflife=10)
    for i, hop in enumerate((0.020, 0.034, 0.044, 0.022, 0.027, 0.047)):
        est.add(8 * 14e3, hop, sent=0.03 * i)
    seen = _stream(est, 10e6, [2.5e3] * 200, 0.15, 1.0)  # then only latents
    assert all(x == 10e6 for x in seen)


def test_a_stall_is_one_bad_sample_per_batch_not_a_slower_link() -> None:
    """A broker's or host's stall delays every batch by up to a second: the capped error
    leaves the estimate where it was."""
    rng = np.random.default_rng(3)
    est = UplinkEstimator(prior_bps=10e6, halflife=10)
    _stream(est, 10e6, list(rng.uniform(8e3, 40e3, 300)), 0.08, 0.0)
    rate = est.rate_bps
    t = 30.0
    for i in range(8):  # sent 0.1 s apart during a 1 s stall, all through at its end
        est.add(8 * 20e3, t + 1.0 - (t + 0.1 * i) + 0.001, sent=t + 0.1 * i)
    _stream(est, 10e6, list(rng.uniform(8e3, 40e3, 50)), 0.08, 31.5)
    assert est.rate_bps == pytest.approx(rate, rel=0.15)


def test_the_estimator_ignores_bad_samples_and_keeps_its_prior_without_spread() -> None:
    est = UplinkEstimator(prior_bps=10e6, halflife=10)
    for bad in ((float("nan"), 0.1), (8000.0, float("inf")), (0.0, 0.1), (8000.0, -1.0)):
        assert est.add(*bad) is False
    for _ in range(50):  # one size only: no slope to fit, the configured rate stands
        assert est.add(8000.0, 0.05)
    assert est.rate_bps == 10e6 and est.observations == 50
    with pytest.raises(ValueError):
        UplinkEstimator(prior_bps=0.0)


def test_settings_validate_the_latency_mode_fields() -> None:
    s = load_settings(None, policy={"offload_cost_mode": "latency", "uplink_mbps": 2})
    assert s.policy.uplink_rate == "configured" and s.policy.edge_ms is None
    for bad in (
        {"uplink_mbps": 0},
        {"uplink_rate": "guessed"},
        {"edge_ms": [-1.0]},
        {"edge_ms": [float("nan")]},
        {"edge_ms": []},
        {"uplink_halflife": 0},
    ):
        with pytest.raises(ValidationError):
            load_settings(None, policy=bad)


def _latency_settings(**policy):
    return load_settings(
        None,
        policy={
            "offload_cost_mode": "latency",
            "jpeg_bytes": 2000,
            "uplink_mbps": 10,
            "edge_ms": [5.0, 8.0, 20.0],
            **policy,
        },
    )


def test_settings_build_the_latency_costs(tiny_real) -> None:
    s = _latency_settings()
    model, cm = policy_setup.model_and_costs(s, tiny_real)
    assert isinstance(model, FrameArmNet) and cm.num_arms == 4  # the JPEG arm is on
    t_ref = 8 * 2000 / 10e6
    tensor = 8 * 24 * 24 * 2 + 24  # arm 1's float16 split tensor with the wire header
    assert cm.offload_costs[0] == pytest.approx(0.5)
    assert cm.offload_costs[1] == pytest.approx(0.5 * (0.005 + 8 * tensor / 10e6) / t_ref)
    assert cm.offload_costs[-1] == 0.0
    slow = cm.at_rate(1e6)
    assert slow.offload_costs[0] == pytest.approx(5.0)
    assert slow.offload_costs[1] == pytest.approx(0.5 * (0.005 + 8 * tensor / 1e6) / t_ref)
    with pytest.raises(ValueError, match="2 times for 3 exits"):
        policy_setup.model_and_costs(_latency_settings(edge_ms=[1.0, 2.0]), tiny_real)
    # no times configured and no model card beside the checkpoint: refuse, say what to set
    with pytest.raises(ValueError, match=r"policy\.edge_ms"):
        policy_setup.model_and_costs(_latency_settings(edge_ms=None), tiny_real)


def test_the_shipped_caltech_card_prices_the_arms() -> None:
    """Without policy.edge_ms the model card's measured cpu_ms are the edge's times."""
    from splitee.models import load_checkpoint

    s = load_settings(
        None,
        model={"checkpoint": "assets/efficientnet-lite0-caltech101.safetensors"},
        policy={"offload_cost_mode": "latency", "jpeg_bytes": 12844, "uplink_mbps": 10},
    )
    _, cm = policy_setup.model_and_costs(s, load_checkpoint(s.model.checkpoint, fuse=True))
    assert cm.latency is not None and cm.latency.edge_s[0] == 0.0
    assert cm.latency.edge_s[1] == pytest.approx(0.00555)  # the card's arm 1 cpu_ms
    assert cm.offload_costs[0] == pytest.approx(s.policy.offload_cost)


def test_the_cloud_prices_offloads_at_the_measured_rate(tiny_real) -> None:
    s = _latency_settings()
    model, cm = policy_setup.model_and_costs(s, tiny_real)
    cm = CostModel(  # offload everything but the final arm, as priced above
        cm.depths, cm.gamma, cm.mu, 0.99, cm.offload_cost, cm.relative_cost,
        cm.offload_scale, cm.latency,
    )  # fmt: skip
    b = bandit(cm, MemoryStore(cm.num_arms), make_policy("fixed:1"))  # the JPEG arm
    edge = EdgeProcessor(model, b)
    out = edge.process([_record(i, _jpeg(60, 80, i)) for i in range(4)])
    assert len(out.offloads) == 4

    sizes = [len(r.value) for r in out.offloads]  # the camera JPEGs, each its own size
    assert [OffloadMeta.from_headers(r.headers).frame_bytes for r in out.offloads] == sizes

    def cloud_costs(cloud: CloudProcessor, hop_s: float) -> list[float]:
        recs = []
        for i, r in enumerate(out.offloads):
            meta = FrameMeta.from_headers(r.headers)
            om = OffloadMeta.from_headers(r.headers, cm.num_arms, cm.num_arms)
            om = dataclasses.replace(om, edge_ts=time.time() - hop_s)
            recs.append(InRecord(r.key, r.value, meta.headers() + om.headers(), "offload", 0, i))
        back = cloud.process(recs)
        assert not back.dead and len(back.results) == 4
        return [Result.decode(r.value).cost for r in back.results]

    configured = cloud_costs(CloudProcessor(model, b), 0.0)
    # at the reference rate a frame of the reference size costs o; each is priced at its own
    ref = cm.latency.ref_bytes
    assert configured == pytest.approx([cm.offload_cost * n / ref for n in sizes])
    # a link measured at 1 Mbit/s: the JPEG's offload costs 10× more than at 10 Mbit/s
    est = UplinkEstimator(prior_bps=10e6, halflife=20)
    for bits, sec in _samples(1e6, 100, overhead=0.01):
        est.add(bits, sec)
    slow = CloudProcessor(model, b, uplink=est)
    costs = cloud_costs(slow, 0.5)
    assert est.rate_bps < 2e6  # the batch itself is one more sample
    priced = cm.at_rate(est.rate_bps).for_payload({0: sizes[0]})
    assert costs[0] == pytest.approx(priced.offload_costs[0])
    assert costs[0] > 4 * configured[0]


def test_a_frame_is_priced_at_the_bytes_it_really_has() -> None:
    """The card's sizes are medians; a camera's JPEGs are heavy-tailed. A frame twice the
    median costs twice the link time, at whatever rate the arms are priced at now, and the
    arm it did not use keeps the card's price."""
    cm = replace_latency(CostModel((0, 3, 9), relative_cost=(0.0, 0.5, 1.0)), 2e6)
    big = cm.for_payload({0: 2 * JPEG})
    assert big.offload_costs[0] == pytest.approx(2 * cm.offload_costs[0])
    assert big.offload_costs[1] == pytest.approx(cm.offload_costs[1])
    assert cm.for_payload({1: 3200}).offload_costs[1] == pytest.approx(
        0.5 * (0.040 + 8 * 3200 / 2e6) / PRICING.ref_seconds
    )
    assert cm.for_payload({}) is cm
    plain = CostModel((0, 3, 9))  # no latency pricing: sizes change nothing
    assert plain.for_payload({0: 2 * JPEG}) is plain


def test_the_fair_cloud_only_arm_sends_the_fitted_frame_re_encoded(tiny_real) -> None:
    """edge.frame_quality: the send-frame arm's JPEG is the model's input, re-encoded — what a
    fair cloud-only deployment sends on a thin link — and the cloud still answers it."""
    from splitee.jpeg import jpeg_size

    model = FrameArmNet(tiny_real)
    cm = CostModel(model.exit_depths, alpha=0.99)
    b = bandit(cm, MemoryStore(cm.num_arms), make_policy("fixed:1"))
    big = _jpeg(300, 400, 7)
    plain = EdgeProcessor(model, b).process([_record(0, big)])
    fair = EdgeProcessor(model, b, frame_quality=20).process([_record(0, big)])
    assert plain.offloads[0].value == big
    sent = fair.offloads[0].value
    assert jpeg_size(sent) == (48, 48) and len(sent) < len(big) / 10
    back = CloudProcessor(model, b).process(
        [InRecord(r.key, r.value, r.headers, "offload", 0, 0) for r in fair.offloads]
    )
    assert not back.dead and len(back.results) == 1


class _Recording(UplinkEstimator):
    def __init__(self) -> None:
        super().__init__(prior_bps=10e6)
        self.samples: list[tuple[float, float]] = []
        self.sends: list[float | None] = []

    def add(self, bits: float, seconds: float, sent: float | None = None) -> bool:
        self.samples.append((bits, seconds))
        self.sends.append(sent)
        return super().add(bits, seconds, sent)


def test_an_edge_batch_is_one_sample_ended_by_the_brokers_append_time(tiny_real) -> None:
    """With LogAppendTime on the offload topic the sample ends when the batch reached the
    broker, so the cloud's own queueing (here 10 s behind) does not read as a slow link."""
    model = FrameArmNet(tiny_real)
    cm = CostModel(model.exit_depths, alpha=0.99)
    b = bandit(cm, MemoryStore(cm.num_arms), make_policy("fixed:1"))
    out = EdgeProcessor(model, b).process([_record(i, _jpeg(60, 80, i)) for i in range(3)])
    sent = time.time() - 10.0

    def records(log_append: bool) -> list[InRecord]:
        recs = []
        for i, r in enumerate(out.offloads):
            meta = FrameMeta.from_headers(r.headers)
            om = OffloadMeta.from_headers(r.headers, cm.num_arms, cm.num_arms)
            om = dataclasses.replace(om, edge_ts=sent)
            recs.append(
                InRecord(r.key, r.value, meta.headers() + om.headers(), "offload", 0, i,
                         sent + 0.05 + 0.01 * i, log_append)
            )  # fmt: skip
        return recs

    wire = sum(len(r.value) + sum(len(k) + len(v) for k, v in r.headers) for r in records(True))
    est = _Recording()
    cloud = CloudProcessor(model, b, uplink=est)
    cloud.process(records(True))
    assert est.samples == [(pytest.approx(8.0 * wire), pytest.approx(0.07))]
    assert est.sends == [pytest.approx(sent)]  # the edge's send: where it sits on the link
    cloud.process(records(True))  # the batch redelivered (a restart, a rebalance)
    assert len(est.samples) == 1  # answered again, but one sample of the link
    est2 = _Recording()
    CloudProcessor(model, b, uplink=est2).process(records(False))  # CreateTime: consume time
    assert est2.samples[0][1] == pytest.approx(10.0, abs=1.0)


def test_the_cloud_shares_its_measured_rate_and_the_edge_prices_with_it(tiny_real) -> None:
    """The edge's own side observations (frames that ran to the final exit reveal the
    offloads of shallower arms) are priced at the rate the cloud measured, not the configured
    one; without a shared rate the configured prices stand."""
    s = _latency_settings()
    model, cm = policy_setup.model_and_costs(s, tiny_real)
    store = MemoryStore(cm.num_arms)
    b = bandit(cm, store, make_policy("fixed:1"))
    edge = EdgeProcessor(model, b, board=store)
    edge.process([_record(0, _jpeg(60, 80, 0))])
    assert edge.cm.offload_costs.tolist() == cm.offload_costs.tolist()
    est = UplinkEstimator(prior_bps=10e6, halflife=20)
    for bits, sec in _samples(1e6, 100, overhead=0.01):
        est.add(bits, sec)
    cloud = CloudProcessor(model, b, uplink=est, board=store)
    out = edge.process([_record(1, _jpeg(60, 80, 1))])
    cloud.process([InRecord(r.key, r.value, r.headers, "offload", 0, 0) for r in out.offloads])
    assert store.shared_rate() == pytest.approx(est.rate_bps)
    edge.process([_record(2, _jpeg(60, 80, 2))])
    want = cm.at_rate(est.rate_bps).offload_costs
    assert edge.cm.offload_costs == pytest.approx(want)
    assert edge.cm.offload_costs[0] > 4 * cm.offload_costs[0]
    store.publish_rate(float("nan"))  # not a rate: the board holds none
    assert store.shared_rate() is None


def test_the_edge_prices_the_jpeg_arm_it_reveals_at_the_frames_own_size(tiny_real) -> None:
    """A frame run to the final exit at the edge reveals what sending its JPEG would have
    earned: ``C_L − o·(its bytes at the rate)/t_ref``, not the card's median size."""
    s = _latency_settings()
    model, cm = policy_setup.model_and_costs(s, tiny_real)
    frame = _jpeg(60, 80, 3)

    class FinalArm(ISplitEE):  # I-SplitEE's side observations, pulling the final arm
        def pull_batch(self, stats, n):
            return np.full(n, cm.num_arms - 1)

    b = bandit(cm, MemoryStore(cm.num_arms), FinalArm())
    out = EdgeProcessor(model, b).process([_record(3, frame)])
    (rec,) = out.deltas["global"].records
    revealed = dict(rec.observations)
    c_final = Result.decode(out.results[0].value).confidence
    o = cm.offload_cost * len(frame) / cm.latency.ref_bytes  # at the reference rate
    assert revealed[0] == pytest.approx(c_final - o)
    assert len(frame) != cm.latency.ref_bytes  # the median would have priced it otherwise


def test_a_recorded_link_change_reads_at_each_phases_rate() -> None:
    """The cloud's samples of a real run through tc's shaper (bench/uplink.py --link-change
    --trace-uplink: 10 → 2 → 10 Mbit/s, burst 32 KiB; docs/uplink/probes/): the estimate is
    the link's rate in each phase, and the drop shows within 5 s."""
    path = REPO / "docs" / "uplink" / "probes" / "uplink_samples_10-2-10.csv.gz"
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", comments="#", skiprows=2)
    est = UplinkEstimator(prior_bps=10e6, halflife=10)
    seen = []
    for sent, bits, hop in rows:
        est.add(bits, hop, sent=sent)
        seen.append((sent, est.rate_bps / 1e6))
    t, rate = np.array(seen).T
    assert 5 < np.median(rate[(t > 30) & (t < 120)]) < 15
    assert np.all((rate[(t > 130) & (t < 245)] > 1.2) & (rate[(t > 130) & (t < 245)] < 3))
    assert rate[-1] > 5  # back on the fast link (once large batches cross it again)
    assert est.burst_bytes == 32768
