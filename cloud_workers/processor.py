"""The cloud worker's batch step: offloaded features → suffix → results and offload rewards.

Frames are grouped by arm (their features have the arm's shape), each group runs the suffix
in one batch on the worker's device (CUDA when present). The cloud then knows ``C_L`` and
applies the offloaded frames' rewards — the pulled arm and, with side observations, every
shallower arm — to the shared policy.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from edge_workers.processor import DeadLetter, InRecord, OutRecord, StepOutput
from policy_store.policies import Policy
from policy_store.rewards import CostModel
from policy_store.store import Delta, PolicyStore
from splitee import metrics as m
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
    ) -> None:
        """``policy`` (the edge's) sets side observations, discounting and windows of updates."""
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cm = cost_model
        self.store = store
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
            with torch.inference_mode():
                p = self.model.suffix(x, arm).float().softmax(dim=1)
            c, y = (t.cpu().numpy() for t in p.max(dim=1))
            now = time.time()
            m.STAGE.labels("cloud_compute").observe(time.perf_counter() - tc)
            for (meta, om, _, nbytes), c_final, pred in zip(items, c, y, strict=True):
                cost = float(self.cm.compute_cost[arm] + self.cm.offload_cost)
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
                obs = self.cm.observations(arm, list(om.confidences), float(c_final), self.side)
                out.deltas.setdefault(om.policy, Delta.for_policy(self.policy, L)).add(arm, obs)
                for arm_j, rew in obs:
                    m.REWARD.labels(str(arm_j + 1)).observe(rew)  # 1-based in metrics
        return out

    def apply(self, out: StepOutput) -> None:
        for key, delta in out.deltas.items():
            if delta:
                self.store.apply(key, delta)
