"""The cloud worker's batch step: offloaded features → suffix → results and offload rewards.

Frames are grouped by arm (their features have the arm's shape), each group runs the suffix
in one batch on the worker's device (CUDA when present). The cloud then knows ``C_L`` and
applies the offloaded frames' rewards — the pulled arm and, with side observations, every
shallower arm — to the shared policy.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import numpy as np
import torch

from cloud_workers.suffix_runner import SuffixRunner
from policy_store.bandit import Bandit
from policy_store.feedback import observations
from policy_store.rewards import CostModel, air_time_cost
from policy_store.uplink import RateBoard, UplinkEstimator
from splitee import metrics as m
from splitee.images import decode_fit
from splitee.jpeg import CorruptFrameError
from splitee.link import analog, quantise
from splitee.models import to_input
from splitee.models.latent_codec import LatentCodec
from splitee.models.split_api import SplitModel
from splitee.wire import (
    FRAME_CODEC,
    LATENT_CODEC,
    FrameMeta,
    OffloadMeta,
    Result,
    WireError,
    decode_tensor,
)
from splitee.worker.records import DeadLetter, InRecord, OutRecord, StepOutput

#: one debug line per uplink rate sample (``log_levels = {"splitee.uplink": "DEBUG"}``)
UPLINK_LOG = logging.getLogger("splitee.uplink")

#: One valid offload: its frame header, offload header, features (or a latent's symbols) and
#: bytes on the wire.
_Offload = tuple[FrameMeta, OffloadMeta, np.ndarray, int]

#: edge batches remembered so a redelivered one does not feed the uplink's rate twice
FOLDED_KEYS = 4096


class CloudProcessor:
    """Offloads → suffix of the model → results, and the offloaded frames' rewards."""

    def __init__(
        self,
        model: SplitModel,
        bandit: Bandit,
        *,
        device: torch.device | str = "cpu",
        max_bytes: int | None = None,
        channel: str | None = None,
        channel_bits: int = 8,
        channel_seed: int = 0,
        channel_cost: bool = False,
        latent: LatentCodec | None = None,
        uplink: UplinkEstimator | None = None,
        board: RateBoard | None = None,
    ) -> None:
        """``bandit``: the edge step's policy, costs, arm space, keys and store
        (:func:`splitee.policy_setup.bandit`) — its policy sets side observations, discounting
        and windows of the updates, its keys the policy names an offload may carry.

        ``channel`` ("analog" or "digital") simulates the wireless link on offloaded features
        that carry an ``snr_db`` header (splitee.link): analog adds noise at that SNR,
        digital quantises to ``channel_bits`` (outage is not simulated live).

        ``uplink`` (the "latency" cost mode with a measured rate) learns the edge uplink's
        rate from the offloads' bits and send-to-consume times, and the offloaded frames'
        rewards are priced at that rate (:meth:`~policy_store.rewards.CostModel.at_rate`);
        ``board`` shares it with the edge workers (the policy store)."""
        self.channel = channel
        self.channel_bits = channel_bits
        self._channel_gen = torch.Generator().manual_seed(channel_seed)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.suffix = SuffixRunner(self.model, self.device)  # CUDA graphs when on a GPU
        self.bandit = bandit
        self.cm = bandit.costs
        self.space = bandit.space  # (split arm, α) pairs with threshold adaptation
        # channel-aware offload cost: o scales with the frame's air time (bytes, SNR)
        self.channel_cost = channel_cost
        # the air-time reference: the first split tensor in float16 (arm 1 of the model; with
        # the send-frame arm in front, that is arm 1 here, not the frame)
        first_split = 1 if model.send_frame else 0
        self.ref_bytes = 2 * int(np.prod(model.feature_shape(first_split)))
        self.side = bandit.policy.side_observations
        self.max_bytes = max_bytes
        # a learned bottleneck: its arms carry coded latents, decoded before the suffix
        self.latent = latent.to(self.device) if latent is not None else None
        self.uplink = uplink
        self.board = board
        self._priced = self.cm  # the cost model at the uplink's current rate
        # edge batches already folded into the rate (a batch redelivered after a restart or
        # a rebalance is one sample, not two); the most recent FOLDED_KEYS of them
        self._folded: OrderedDict[tuple[str, float], None] = OrderedDict()

    def process(self, records: list[InRecord]) -> StepOutput:
        out = StepOutput()
        t0 = time.perf_counter()
        consumed = time.time()
        tally = m.BatchTally()  # per-frame counts, added to Prometheus once per batch
        tally.inc(m.FRAMES_IN, ("cloud",), len(records))
        m.BATCH.labels("cloud").observe(len(records))
        sent: dict[tuple[str, float], list[float]] = {}
        groups = self._decode(records, out, sent)
        self._measure_uplink(sent, consumed)
        t1 = time.perf_counter()
        m.STAGE.labels("cloud_decode").observe(t1 - t0)

        for arm, items in groups.items():
            tc = time.perf_counter()
            c, y = self._finish(arm, items)
            now = time.time()
            m.STAGE.labels("cloud_compute").observe(time.perf_counter() - tc)
            for (meta, om, _, nbytes), c_final, pred in zip(items, c, y, strict=True):
                cm = self._cost_model(meta, om, nbytes)
                self._answer(out, meta, om, arm, nbytes, float(c_final), int(pred), cm, now, tally)
                tally.observe(m.LATENCY_STAGE, ("offload_hop",), max(0.0, consumed - om.edge_ts))
                tally.observe(m.LATENCY_STAGE, ("cloud",), max(0.0, now - consumed))
                self._reward(out, meta, om, arm, float(c_final), cm, tally)
        tally.flush()
        return out

    def _decode(
        self,
        records: list[InRecord],
        out: StepOutput,
        sent: dict[tuple[str, float], list[float]],
    ) -> dict[int, list[_Offload]]:
        """Valid offloads grouped by arm (one suffix batch each); the rest dead-lettered.
        ``sent`` gets [bytes (payload and headers), latest broker append time or 0] of each
        edge batch, keyed by its edge worker and send time, for the uplink's rate."""
        groups: dict[int, list[_Offload]] = {}
        for rec in records:
            try:
                if rec.value is None:
                    raise WireError("empty", "offload record has no value")
                meta = FrameMeta.from_headers(rec.headers)
                om = OffloadMeta.from_headers(rec.headers, self.cm.num_arms, self.space.num_arms)
                if not 0 <= om.arm < self.cm.num_arms - 1:
                    raise WireError("bad_arm", f"arm {om.arm} cannot be offloaded")
                feats = self._features(rec.value, om)
                want = self._shape(om.arm)
                if feats.shape != want:
                    raise WireError(
                        "wrong_shape", f"features {feats.shape} for arm {om.arm}, expected {want}"
                    )
                if len(om.confidences) != self.cm.num_arms:
                    raise WireError("bad_header", "confidences do not cover every arm")
                self._check_bandit_fields(meta, om)
            except WireError as exc:
                out.dead.append(DeadLetter(rec, exc.reason, exc.detail))
                m.DEAD_LETTERS.labels("cloud", exc.reason).inc()
                continue
            groups.setdefault(om.arm, []).append((meta, om, feats, len(rec.value)))
            wire = len(rec.value) + sum(len(k) + len(v or b"") for k, v in rec.headers)
            batch = sent.setdefault((om.edge_worker, om.edge_ts), [0.0, 0.0])
            batch[0] += wire
            if rec.log_append and rec.timestamp is not None:
                batch[1] = max(batch[1], rec.timestamp)
        return groups

    def _measure_uplink(self, sent: dict[tuple[str, float], list[float]], consumed: float) -> None:
        """Each edge batch in this batch is one rate sample: its bits, and its time from the
        edge's send to the broker's append of its last record (with LogAppendTime on the
        offload topic), else to this consume — which then also holds the cloud's own
        queueing —, and its send time, which places it on the link's timeline (the batch
        before may still hold the link, or have emptied a token bucket). The offloads' rewards
        are then priced at the new estimate."""
        if self.uplink is None:
            return
        for key, (nbytes, appended) in sent.items():
            if key in self._folded:
                continue
            self._folded[key] = None
            if len(self._folded) > FOLDED_KEYS:
                self._folded.popitem(last=False)
            seconds = (appended or consumed) - key[1]
            self.uplink.add(8.0 * nbytes, seconds, sent=key[1])
            if UPLINK_LOG.isEnabledFor(logging.DEBUG):
                UPLINK_LOG.debug(
                    "uplink sample",
                    extra={"bits": 8.0 * nbytes, "seconds": round(seconds, 4), "sent": key[1],
                           "arrived": appended or None, "rate_bps": round(self.uplink.rate_bps),
                           "burst_bytes": self.uplink.burst_bytes,
                           "overhead_s": round(self.uplink.overhead_s, 4),
                           "moves": self.uplink.moves},
                )  # fmt: skip
        self._priced = self.cm.at_rate(self.uplink.rate_bps)
        m.UPLINK_RATE.labels("measured").set(self.uplink.rate_bps)
        if self.board is not None and self.uplink.observations:
            self.board.publish_rate(self.uplink.rate_bps)

    def _finish(self, arm: int, items: list[_Offload]) -> tuple[np.ndarray, np.ndarray]:
        """One arm's frames through the suffix in one batch: (final confidence, prediction).
        A learned bottleneck's latents are reconstructed first, then go through the channel."""
        x = torch.from_numpy(np.stack([f for _, _, f, _ in items])).to(self.device)
        if self.latent is not None and self.latent.handles(arm):
            x = self.latent.reconstruct(x, arm)
        if self.channel is not None:
            x = self._through_channel(x, [meta.snr_db for meta, _, _, _ in items])
        with torch.inference_mode():
            p = self.suffix(x, arm).softmax(dim=1)
        c, y = (t.cpu().numpy() for t in p.max(dim=1))
        return c, y

    def _cost_model(self, meta: FrameMeta, om: OffloadMeta, nbytes: int) -> CostModel:
        """The cost model for this frame: the "latency" mode prices its arm at the bytes it
        really sent and the send-frame arm at its JPEG's size (the edge's ``frame_bytes``), at
        the uplink's measured rate; with channel cost, ``o`` scales with its air time."""
        if not self.channel_cost:
            payload = {om.arm: float(nbytes)}
            if om.frame_bytes is not None:
                payload.setdefault(0, float(om.frame_bytes))
            return self._priced.for_payload(payload)
        o = air_time_cost(self.cm.offload_cost, nbytes, meta.snr_db, self.ref_bytes)
        return self.cm.with_offload_cost(o)

    def _answer(
        self,
        out: StepOutput,
        meta: FrameMeta,
        om: OffloadMeta,
        arm: int,
        nbytes: int,
        confidence: float,
        prediction: int,
        cm: CostModel,
        now: float,
        tally: m.BatchTally,
    ) -> None:
        """The frame's result, with its cost and the edge-to-cloud time."""
        cost = float(cm.compute_cost[arm] + cm.offload_costs[arm])
        r = Result(
            frame_id=meta.frame_id,
            camera_id=meta.camera_id,
            prediction=prediction,
            confidence=confidence,
            arm=arm,
            where="cloud",
            capture_ts=meta.capture_ts,
            done_ts=now,
            policy=om.policy,
            run_id=meta.run_id,
            offload_bytes=nbytes,
            cost=cost,
            timings={"edge_to_cloud_s": max(0.0, now - om.edge_ts)},
        )
        out.results.append(OutRecord(meta.frame_id.encode(), r.encode(), meta.headers()))
        tally.inc(m.FRAMES_OUT, ("cloud", "cloud"))
        tally.inc(m.COST, ("cloud",), cost)
        tally.observe(m.END_TO_END, ("cloud",), max(0.0, now - meta.capture_ts))

    def _reward(
        self,
        out: StepOutput,
        meta: FrameMeta,
        om: OffloadMeta,
        arm: int,
        c_final: float,
        cm: CostModel,
        tally: m.BatchTally,
    ) -> None:
        """The offloaded frame's rewards (now that ``C_L`` is known) into its policy's delta."""
        pick = om.pair if om.pair is not None else arm
        obs = observations(
            self.bandit.policy,
            cm,
            self.space,
            pick,
            om.confidences,
            c_final,
            True if om.by_td else None,  # sent by a TD: an offload, whatever C_k
            self.side,
        )
        delta = out.deltas.setdefault(om.policy, self.bandit.new_delta())
        delta.add(pick, obs, meta.frame_id)
        for arm_j, rew in obs:
            tally.observe(m.REWARD, (str(self.space.split_arm(arm_j) + 1),), rew)

    def _features(self, value: bytes, om: OffloadMeta) -> np.ndarray:
        """The offload's tensor; for the send-frame arm the JPEG itself, decoded and fitted
        to the model's input here (the cloud runs the whole network on it)."""
        if self.latent is not None and self.latent.handles(om.arm):
            if om.codec != LATENT_CODEC:
                raise WireError("bad_codec", f"arm {om.arm} carries a latent, not {om.codec}")
            return self.latent.symbols(value, om.arm)
        if om.codec == LATENT_CODEC:
            raise WireError("bad_codec", f"a latent for arm {om.arm}, which has no codec here")
        if om.codec != FRAME_CODEC:
            return decode_tensor(value, self.max_bytes)
        if not (om.arm == 0 and self.model.send_frame):
            raise WireError("bad_codec", f"a JPEG frame for arm {om.arm}, not the send-frame arm")
        try:
            img = decode_fit(value, self.model.input_size)
        except CorruptFrameError as exc:
            raise WireError(exc.reason, str(exc)) from None
        return to_input(img[None])[0].numpy()

    def _shape(self, arm: int) -> tuple[int, ...]:
        """What arm ``arm``'s offload must decode to: its latent or its split tensor."""
        if self.latent is not None and self.latent.handles(arm):
            return self.latent.latent_shape(arm)
        return tuple(self.model.feature_shape(arm))

    def _check_bandit_fields(self, meta: FrameMeta, om: OffloadMeta) -> None:
        """The offload's policy, pair and confidences against what this deployment can have,
        before any of them reaches the store."""
        if not self.bandit.keys.valid(om.policy, meta.camera_id):
            raise WireError(
                "bad_policy", f"policy {om.policy[:64]!r} is not one of this deployment"
            )
        sp = self.space
        if sp.pairs != (om.pair is not None):
            raise WireError("bad_pair", f"pair {om.pair} with an α grid of {len(sp.alpha_grid)}")
        if om.pair is not None:
            if not 0 <= om.pair < sp.num_arms or sp.split_arm(om.pair) != om.arm:
                raise WireError("bad_pair", f"pair {om.pair} is not arm {om.arm} of {sp.num_arms}")
            if om.alpha != sp.alpha(om.pair, self.cm.alpha):
                raise WireError("bad_alpha", f"α {om.alpha} is not pair {om.pair}'s threshold")
        for c in om.confidences:
            if c is not None and not 0.0 <= c <= 1.0:  # NaN fails too
                raise WireError("bad_confidences", f"confidence {c!r} outside [0, 1]")
        if om.confidences[om.arm] is None:
            raise WireError("bad_confidences", f"no confidence at the offloaded arm {om.arm}")

    def _through_channel(self, x: torch.Tensor, snrs: list[float | None]) -> torch.Tensor:
        """Features as received over the simulated link; frames without an SNR are clean."""
        idx = [i for i, s in enumerate(snrs) if s is not None]
        if not idx:
            return x
        x = x.clone()
        sel = torch.tensor(idx, device=x.device)
        if self.channel == "analog":
            snr = np.array([snrs[i] for i in idx], dtype=np.float64)
            x[sel] = analog(x[sel], snr, self._channel_gen)[0]
        else:
            x[sel] = quantise(x[sel], self.channel_bits)
        return x

    def apply(self, out: StepOutput) -> None:
        """Fold the offloaded frames' rewards into the shared policy (one round trip per key)."""
        self.bandit.apply(out.deltas)
