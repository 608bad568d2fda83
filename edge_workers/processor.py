"""The edge worker's batch step, independent of Kafka plumbing (so it is easy to test).

One call takes a batch of raw ``frames`` records and returns what to publish: results for
frames that exit at the edge, encoded features for frames to offload, dead letters for bad
input, and the policy delta of the rewards the edge already knows (frames that exited; the
cloud applies the rewards of offloaded frames once it knows ``C_L``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from policy_store.policies import ArmStats, Policy
from policy_store.rewards import CostModel
from policy_store.store import Delta, PolicyStore
from splitee import metrics as m
from splitee.context import frame_context
from splitee.data import CorruptFrameError, decode_jpeg
from splitee.models import MultiExitNet
from splitee.td import TDInputs, TDMechanism
from splitee.train import to_input
from splitee.wire import FrameMeta, OffloadMeta, Result, WireError, encode_tensor


@dataclass(frozen=True)
class InRecord:
    """A consumed Kafka record, as the processors see it."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    topic: str
    partition: int
    offset: int


@dataclass
class OutRecord:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class DeadLetter:
    record: InRecord
    reason: str
    detail: str


@dataclass
class StepOutput:
    results: list[OutRecord] = field(default_factory=list)
    offloads: list[OutRecord] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    deltas: dict[str, Delta] = field(default_factory=dict)
    arms: list[int] = field(default_factory=list)


def snr_band(snr_db: float) -> str:
    """A bounded label for an SNR: below 0 dB, 0-10 dB, 10 dB and above."""
    if snr_db < 0:
        return "<0dB"
    return "0-10dB" if snr_db < 10 else ">=10dB"


def choose_arms(policy: Policy, stats: ArmStats, count: int) -> list[int]:
    """Arms for ``count`` frames from one statistics snapshot.

    UCB is deterministic, so a batch would otherwise give every frame the same arm. After each
    choice the chosen arm gets a *virtual* pull at its current mean: its exploration bonus
    shrinks (and ``t`` grows) without changing its estimate, so one batch spreads over the arms
    a sequential learner would try. The virtual pulls are never written to the store.
    """
    local = stats.copy()
    out = []
    for _ in range(count):
        a = int(policy.pull(local))
        out.append(a)
        mean = local.s[a] / local.n[a] if local.n[a] > 0 else 0.0
        local.n[a] += 1
        local.s[a] += mean
        local.t = local.t + 1
    return out


class EdgeProcessor:
    def __init__(
        self,
        model: MultiExitNet,
        cost_model: CostModel,
        policy: Policy,
        store: PolicyStore,
        policy_key: str = "global",
        codec: str = "float16",
        worker_id: str = "edge",
        max_frame_bytes: int = 1 << 20,
        policy_scope: str = "global",
        alpha_grid: list[float] | None = None,
        td: TDMechanism | None = None,
    ) -> None:
        """``alpha_grid`` (threshold adaptation): the policy's arms are (split arm, α) pairs,
        pair ``j·L + k`` = arm k with threshold ``alpha_grid[j]``; no side observations."""
        self.model = model.eval()
        self.cm = cost_model
        self.policy = policy
        self.store = store
        self.policy_key = policy_key
        self.codec = codec
        self.worker_id = worker_id
        self.max_frame_bytes = max_frame_bytes
        self.policy_scope = policy_scope
        self.td = td  # channel-aware transmission decision for frames with an snr_db header
        self.alpha_grid = list(alpha_grid or [])
        self.pair_models = [replace(cost_model, alpha=a) for a in self.alpha_grid]
        self.policy_arms = cost_model.num_arms * max(1, len(self.alpha_grid))

    def key_for(self, meta: FrameMeta, img: np.ndarray) -> str:
        """The policy a frame belongs to: global, per camera, or per estimated context."""
        if self.policy_scope == "camera":
            return f"{self.policy_key}:{meta.camera_id}"
        if self.policy_scope == "context":
            return f"{self.policy_key}:ctx:{frame_context(img)}"
        return self.policy_key

    def process(self, records: list[InRecord]) -> StepOutput:
        out = StepOutput()
        t0 = time.perf_counter()
        m.FRAMES_IN.labels("edge").inc(len(records))
        m.BATCH.labels("edge").observe(len(records))
        metas: list[FrameMeta] = []
        images: list[np.ndarray] = []
        for rec in records:
            try:
                if rec.value is None:
                    raise WireError("empty", "frame record has no value")
                if len(rec.value) > self.max_frame_bytes:
                    raise WireError(
                        "oversized", f"frame of {len(rec.value)} bytes > {self.max_frame_bytes}"
                    )
                meta = FrameMeta.from_headers(rec.headers)
                try:
                    img = decode_jpeg(rec.value)
                except CorruptFrameError as exc:
                    reason = "wrong_shape" if "shape" in str(exc) else "corrupt_jpeg"
                    raise WireError(reason, str(exc)) from None
            except WireError as exc:
                out.dead.append(DeadLetter(rec, exc.reason, exc.detail))
                m.DEAD_LETTERS.labels("edge", exc.reason).inc()
                continue
            metas.append(meta)
            images.append(img)
        t1 = time.perf_counter()
        m.STAGE.labels("decode").observe(t1 - t0)
        if not metas:
            return out

        # Arms per policy key, from one read of each policy's statistics.
        keys = [self.key_for(meta, img) for meta, img in zip(metas, images, strict=True)]
        choices = np.zeros(len(metas), dtype=np.int64)  # policy arms: split arms or pairs
        for key in dict.fromkeys(keys):
            idx = [i for i, k in enumerate(keys) if k == key]
            choices[idx] = choose_arms(self.policy, self.store.read(key), len(idx))
        L = self.cm.num_arms
        arms = choices % L
        alpha: float | torch.Tensor = self.cm.alpha
        if self.alpha_grid:
            grid = torch.tensor(self.alpha_grid, dtype=torch.float32)
            alpha = grid[torch.from_numpy(choices // L)]
        t2 = time.perf_counter()
        m.STAGE.labels("policy_read").observe(t2 - t1)

        x = to_input(np.stack(images))
        side = self.policy.side_observations and not self.alpha_grid and self.td is None
        if self.td is not None:
            alpha = 2.0  # nothing exits on C ≥ α: the transmission decision below decides
        res = self.model.early_exit(x, torch.from_numpy(arms), alpha, side)
        exited = res.exited.numpy().copy()
        by_td = np.zeros(len(metas), dtype=bool)
        if self.td is not None:
            exited, by_td = self._decide(metas, arms, res, exited)
        t3 = time.perf_counter()
        m.STAGE.labels("edge_compute").observe(t3 - t2)

        conf = res.confidence.numpy()
        pred = res.prediction.numpy()
        now = time.time()
        offload_of = {}
        for k, (idx, feats) in res.offloaded.items():
            # cast the whole batch once (per-frame numpy casts cost more than the copy)
            dtype = {"float16": torch.float16}.get(self.codec, torch.float32)
            arr = feats.to(dtype).numpy()
            for j, i in enumerate(idx.tolist()):
                offload_of[i] = (k, arr[j])
        for i, meta in enumerate(metas):
            a = int(arms[i])
            out.arms.append(a)
            # metrics name arms 1-based, like the tables (the code is 0-based)
            m.ARM_CHOSEN.labels(meta.camera_id, str(a + 1), keys[i]).inc()
            m.CURRENT_ARM.labels(meta.camera_id).set(a + 1)
            row = [None if np.isnan(c) else float(c) for c in conf[i]]
            if bool(exited[i]):
                cost = float(self.cm.compute_cost[a])
                r = Result(
                    frame_id=meta.frame_id,
                    camera_id=meta.camera_id,
                    prediction=int(pred[i, a]),
                    confidence=float(conf[i, a]),
                    arm=a,
                    where="edge",
                    capture_ts=meta.capture_ts,
                    done_ts=now,
                    policy=keys[i],
                    run_id=meta.run_id,
                    cost=cost,
                    timings={"edge_s": t3 - t0},
                )
                out.results.append(OutRecord(meta.frame_id.encode(), r.encode(), meta.headers()))
                m.EXITS.labels(str(a + 1)).inc()
                m.FRAMES_OUT.labels("edge", "edge").inc()
                m.COST.labels("edge").inc(cost)
                m.END_TO_END.labels("edge").observe(max(0.0, now - meta.capture_ts))
                pick = int(choices[i])
                if self.alpha_grid:
                    pair_cm = self.pair_models[pick // L]
                    obs = [(pick, pair_cm.reward(a, float(conf[i, a]), None))]
                else:
                    obs = self.cm.observations(a, row, None, side, False if by_td[i] else None)
                delta = out.deltas.setdefault(
                    keys[i], Delta.for_policy(self.policy, self.policy_arms)
                )
                delta.add(pick, obs)
                for arm_j, rew in obs:
                    m.REWARD.labels(str(arm_j % L + 1)).observe(rew)
            else:
                k, feats = offload_of[i]
                payload = encode_tensor(feats, self.codec)
                pair = int(choices[i]) if self.alpha_grid else None
                om = OffloadMeta(
                    k,
                    row,
                    self.codec,
                    keys[i],
                    now,
                    self.worker_id,
                    pair,
                    self.alpha_grid[pair // L] if pair is not None else None,
                    bool(by_td[i]),
                )
                out.offloads.append(
                    OutRecord(meta.frame_id.encode(), payload, meta.headers() + om.headers())
                )
                m.OFFLOADS.labels(str(a + 1)).inc()
                m.OFFLOAD_BYTES.labels(self.codec).inc(len(payload))
        m.STAGE.labels("edge_encode").observe(time.perf_counter() - t3)
        return out

    def _decide(
        self, metas: list[FrameMeta], arms: np.ndarray, res, exited: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keep or transmit each non-final frame: the TD where the frame carries its link's SNR,
        else the channel-blind ``C ≥ α`` rule. Returns (exited, decided by the TD)."""
        L = self.cm.num_arms
        conf = res.confidence.numpy()
        rows = np.arange(len(metas))
        by_td = np.array([m.snr_db is not None for m in metas]) & (arms < L - 1)
        blind = (arms < L - 1) & ~by_td
        exited = exited.copy()
        exited[blind] = conf[rows[blind], arms[blind]] >= self.cm.alpha
        if by_td.any():
            snr = np.array([m.snr_db if m.snr_db is not None else 0.0 for m in metas])
            inputs = TDInputs.from_probs(res.probs.numpy()[by_td], snr[by_td])
            send = self.td.transmit(inputs)
            exited[by_td] = ~send
            for i, s in zip(np.flatnonzero(by_td), send, strict=True):
                band = snr_band(float(snr[i]))
                decision = "transmit" if s else "keep"
                m.TD_DECISIONS.labels(metas[i].camera_id, band, decision).inc()
        return exited, by_td

    def apply(self, out: StepOutput) -> None:
        """Fold the batch's known rewards into the shared policy (one round trip per key)."""
        for key, delta in out.deltas.items():
            if delta:
                self.store.apply(key, delta)
