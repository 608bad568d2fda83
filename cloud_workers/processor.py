"""The cloud worker's batch step: offloaded features → suffix → results and offload rewards.

Frames are grouped by arm (their features have the arm's shape), each group runs the suffix
in one batch on the worker's device (CUDA when present). The cloud then knows ``C_L`` and
applies the offloaded frames' rewards — the pulled arm and, with side observations, every
shallower arm — to the shared policy.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from edge_workers.processor import DeadLetter, InRecord, OutRecord, StepOutput
from policy_store.policies import Policy
from policy_store.rewards import CostModel
from policy_store.store import Delta, PolicyStore
from splitee import metrics as m
from splitee.channel import offload_cost
from splitee.models import MultiExitNet
from splitee.wire import FrameMeta, OffloadMeta, Result, WireError, decode_tensor


class CloudProcessor:
    def __init__(
        self,
        model: MultiExitNet,
        cost_model: CostModel,
        store: PolicyStore,
        side_observations: bool = True,
        device: torch.device | str = "cpu",
        max_bytes: int | None = None,
        policy: Policy | None = None,
        channel: str | None = None,
        channel_bits: int = 8,
        channel_seed: int = 0,
        alpha_grid: list[float] | None = None,
        channel_cost: bool = False,
    ) -> None:
        """``policy`` (the edge's) sets side observations, discounting and windows of updates.

        ``channel`` ("analog" or "digital") simulates the wireless link on offloaded features
        that carry an ``snr_db`` header (splitee.channel): analog adds noise at that SNR,
        digital quantises to ``channel_bits`` (outage is not simulated live)."""
        self.channel = channel
        self.channel_bits = channel_bits
        self._channel_gen = torch.Generator().manual_seed(channel_seed)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cm = cost_model
        self.store = store
        # channel-aware offload cost: o scales with the frame's air time (bytes, SNR)
        self.channel_cost = channel_cost
        self.ref_bytes = 2 * int(np.prod(model.feature_shape(0)))  # arm 1's features, float16
        # threshold adaptation: the policy's arms are (split arm, α) pairs
        self.policy_arms = cost_model.num_arms * max(1, len(alpha_grid or []))
        self.policy = policy
        self.side = policy.side_observations if policy is not None else side_observations
        self.max_bytes = max_bytes

    def process(self, records: list[InRecord]) -> StepOutput:
        out = StepOutput()
        t0 = time.perf_counter()
        m.FRAMES_IN.labels("cloud").inc(len(records))
        m.BATCH.labels("cloud").observe(len(records))
        groups: dict[int, list[tuple[FrameMeta, OffloadMeta, np.ndarray, int]]] = {}
        for rec in records:
            try:
                if rec.value is None:
                    raise WireError("empty", "offload record has no value")
                meta = FrameMeta.from_headers(rec.headers)
                om = OffloadMeta.from_headers(rec.headers)
                if not 0 <= om.arm < self.cm.num_arms - 1:
                    raise WireError("bad_arm", f"arm {om.arm} cannot be offloaded")
                feats = decode_tensor(rec.value, self.max_bytes)
                want = self.model.feature_shape(om.arm)
                if feats.shape != want:
                    raise WireError(
                        "wrong_shape", f"features {feats.shape} for arm {om.arm}, expected {want}"
                    )
                if len(om.confidences) != self.cm.num_arms:
                    raise WireError("bad_header", "confidences do not cover every arm")
            except WireError as exc:
                out.dead.append(DeadLetter(rec, exc.reason, exc.detail))
                m.DEAD_LETTERS.labels("cloud", exc.reason).inc()
                continue
            groups.setdefault(om.arm, []).append((meta, om, feats, len(rec.value)))
        t1 = time.perf_counter()
        m.STAGE.labels("cloud_decode").observe(t1 - t0)

        L = self.cm.num_arms
        for arm, items in groups.items():
            tc = time.perf_counter()
            x = torch.from_numpy(np.stack([f for _, _, f, _ in items])).to(self.device)
            if self.channel is not None:
                x = self._through_channel(x, [meta.snr_db for meta, _, _, _ in items])
            with torch.inference_mode():
                p = self.model.suffix(x, arm).float().softmax(dim=1)
            c, y = (t.cpu().numpy() for t in p.max(dim=1))
            now = time.time()
            m.STAGE.labels("cloud_compute").observe(time.perf_counter() - tc)
            for (meta, om, _, nbytes), c_final, pred in zip(items, c, y, strict=True):
                cm = self.cm
                if self.channel_cost:
                    o = offload_cost(cm.offload_cost, nbytes, meta.snr_db, self.ref_bytes)
                    cm = replace(cm, offload_cost=o)
                cost = float(cm.compute_cost[arm] + cm.offload_cost)
                r = Result(
                    frame_id=meta.frame_id,
                    camera_id=meta.camera_id,
                    prediction=int(pred),
                    confidence=float(c_final),
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
                out.arms.append(arm)
                m.FRAMES_OUT.labels("cloud", "cloud").inc()
                m.COST.labels("cloud").inc(cost)
                m.END_TO_END.labels("cloud").observe(max(0.0, now - meta.capture_ts))
                if om.pair is not None and om.alpha is not None:  # threshold adaptation
                    pair_cm = replace(cm, alpha=om.alpha)
                    c_arm = float(om.confidences[arm] or 0.0)
                    obs = [(om.pair, pair_cm.reward(arm, c_arm, float(c_final)))]
                    pick = om.pair
                else:
                    conf_row = list(om.confidences)
                    if om.by_td:  # sent by a transmission decision: an offload, whatever C_k
                        obs = cm.observations(arm, conf_row, float(c_final), False, True)
                    else:
                        obs = cm.observations(arm, conf_row, float(c_final), self.side)
                    pick = arm
                delta = out.deltas.setdefault(
                    om.policy, Delta.for_policy(self.policy, self.policy_arms)
                )
                delta.add(pick, obs)
                for arm_j, rew in obs:
                    m.REWARD.labels(str(arm_j % L + 1)).observe(rew)  # split arm, 1-based
        return out

    def _through_channel(self, x: torch.Tensor, snrs: list[float | None]) -> torch.Tensor:
        """Features as received over the simulated link; frames without an SNR are clean."""
        from splitee.channel import analog, quantise

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
        for key, delta in out.deltas.items():
            if delta:
                self.store.apply(key, delta)
