"""The edge worker's batch step, independent of Kafka plumbing (so it is easy to test).

One call takes a batch of raw ``frames`` records and returns what to publish: results for
frames that exit at the edge, encoded features for frames to offload, dead letters for bad
input, and the policy delta of the rewards the edge already knows (frames that exited; the
cloud applies the rewards of offloaded frames once it knows ``C_L``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from policy_store.bandit import Bandit
from policy_store.decisions import AlphaRule, TDInputs, TDMechanism
from policy_store.feedback import observations
from policy_store.uplink import RateBoard
from splitee import metrics as m
from splitee.context import frame_context
from splitee.edge_exits import EdgeModel
from splitee.images import decode_fit
from splitee.jpeg import decode_jpeg, encode_jpeg
from splitee.wire import (
    FRAME_CODEC,
    LATENT_CODEC,
    FrameMeta,
    OffloadMeta,
    Result,
    WireError,
    encode_tensor,
)
from splitee.worker.records import DeadLetter, InRecord, OutRecord, StepOutput

if TYPE_CHECKING:  # a torch model is wrapped on the torch runtime only
    from splitee.models.split_api import SplitModel


class LatentMessages(Protocol):
    """A learned bottleneck's coding half: which arms offload latents, and their symbols →
    wire messages (:class:`splitee.latent_messages.LatentWriter`, or the torch
    :class:`~splitee.models.latent_codec.LatentCodec` that holds one)."""

    def handles(self, arm: int) -> bool: ...

    def messages(self, symbols: np.ndarray, arm: int) -> list[bytes]: ...


def snr_band(snr_db: float) -> str:
    """A bounded label for an SNR: below 0 dB, 0-10 dB, 10 dB and above."""
    if snr_db < 0:
        return "<0dB"
    return "0-10dB" if snr_db < 10 else ">=10dB"


class EdgeProcessor:
    """Frames → arms from the shared policy → early exit → keep-or-offload decision."""

    def __init__(
        self,
        model: EdgeModel | SplitModel,
        bandit: Bandit,
        *,
        codec: str = "float16",
        worker_id: str = "edge",
        max_frame_bytes: int = 1 << 20,
        max_aspect: float | None = 20.0,
        capture_ts_tolerance_s: float | None = 60.0,
        td: TDMechanism | None = None,
        latent: LatentMessages | None = None,
        frame_quality: int | None = None,
        board: RateBoard | None = None,
    ) -> None:
        """``model``: an :class:`~splitee.edge_exits.EdgeModel` (ONNX Runtime's or torch's),
        or a torch split model, wrapped here (torch is imported only then); ``bandit``: the
        policy, costs, arm space, keys and store the cloud step shares
        (:func:`splitee.policy_setup.bandit`); ``td`` decides keep-or-offload for frames that
        carry their link's SNR, the ``C ≥ α`` rule decides the others; ``latent`` (a learned
        bottleneck) codes what its arms offload; ``frame_quality``: the send-frame arm sends
        the frame as the model sees it (fitted to its input), re-encoded at this JPEG quality,
        instead of the camera's JPEG — the fair cloud-only baseline on a thin uplink;
        ``board``: the uplink rate the cloud measured (the "latency" cost with a measured
        rate), at which the edge prices the offloads its side observations reveal."""
        self.model = model
        engine = model
        if not hasattr(model, "run_frames"):
            from splitee.models.torch_edge import TorchEdgeModel

            engine = TorchEdgeModel(model, latent, codec)  # type: ignore[arg-type]
        self.engine: EdgeModel = engine  # type: ignore[assignment]
        # split tensors leave in the wire codec's dtype (float16, else float32)
        self.dtype = np.float16 if codec == "float16" else np.float32
        # real-size backbones take a JPEG of any size, fitted to their input (splitee.images)
        self.input_size: int | None = engine.input_size if engine.real_size else None
        self.bandit = bandit
        self.cm = self._costs = bandit.costs
        self.space = bandit.space
        self.codec = codec
        self.worker_id = worker_id
        self.max_frame_bytes = max_frame_bytes
        self.max_aspect = max_aspect
        self.capture_ts_tolerance_s = capture_ts_tolerance_s
        self.td = td
        self.latent = latent  # a learned bottleneck: its arms offload coded latents
        self.frame_quality = frame_quality
        self.board = board
        # side observations need the exits a frame passes; a TD or α pairs turn them off
        self.side = bandit.policy.side_observations and not self.space.pairs and td is None

    def _decode_frame(self, data: bytes) -> np.ndarray:
        """A 32x32 frame for the CIFAR models; any size up to ``max_aspect``, fitted, for
        real-size backbones."""
        if self.input_size is None:
            return decode_jpeg(data)
        return decode_fit(data, self.input_size, max_aspect=self.max_aspect)

    def _check_capture_ts(self, meta: FrameMeta, rec: InRecord) -> None:
        """A capture time ahead of the record's own Kafka timestamp by more than the tolerance
        is a wrong camera clock or header: dead-lettered, not answered with negative latency.
        Behind is fine: a camera may buffer frames while its link is down."""
        tol = self.capture_ts_tolerance_s
        if tol is None or rec.timestamp is None:
            return
        ahead = meta.capture_ts - rec.timestamp
        if ahead > tol:
            raise WireError(
                "future_capture_ts",
                f"capture_ts {meta.capture_ts:.3f} is {ahead:.0f} s ahead of the record's "
                f"timestamp {rec.timestamp:.3f} (tolerance {tol:g} s)",
            )

    def _payload(
        self, arm: int, feats: np.ndarray | bytes | None, frame: bytes, img: np.ndarray
    ) -> tuple[bytes, str]:
        """What an offload carries: the split tensor in the edge's codec, a learned
        bottleneck's coded latent (already a message), or — arm 0 of a model with the
        send-frame arm (splitee.models.frame_arm) — the JPEG as received, or the fitted frame
        ``img`` re-encoded at ``frame_quality``."""
        if arm == 0 and self.engine.send_frame:
            if self.frame_quality is not None:
                return encode_jpeg(img, self.frame_quality), FRAME_CODEC
            return frame, FRAME_CODEC
        if isinstance(feats, bytes):
            return feats, LATENT_CODEC
        return encode_tensor(feats, self.codec), self.codec

    def key_for(self, meta: FrameMeta, img: np.ndarray) -> str:
        """The policy a frame belongs to: global, per camera, or per estimated context."""
        keys = self.bandit.keys
        context = frame_context(img) if keys.scope == "context" else None
        return keys.for_frame(meta.camera_id, context)

    def _decode(self, records: list[InRecord], out: StepOutput):
        """Valid frames as (metas, images, JPEG bytes); every other record becomes a dead
        letter."""
        metas: list[FrameMeta] = []
        images: list[np.ndarray] = []
        raws: list[bytes] = []
        for rec in records:
            try:
                if rec.value is None:
                    raise WireError("empty", "frame record has no value")
                if len(rec.value) > self.max_frame_bytes:
                    raise WireError(
                        "oversized", f"frame of {len(rec.value)} bytes > {self.max_frame_bytes}"
                    )
                meta = FrameMeta.from_headers(rec.headers)
                self._check_capture_ts(meta, rec)
                img = self._decode_frame(rec.value)  # CorruptFrameError is a WireError
            except WireError as exc:
                out.dead.append(DeadLetter(rec, exc.reason, exc.detail))
                m.DEAD_LETTERS.labels("edge", exc.reason).inc()
                continue
            metas.append(meta)
            images.append(img)
            raws.append(rec.value)
        return metas, images, raws

    def _choose(self, keys: list[str]) -> np.ndarray:
        """Bandit arms (split arms or pairs) per frame, from one read of each policy."""
        picks = np.zeros(len(keys), dtype=np.int64)
        policy, store = self.bandit.policy, self.bandit.store
        for key in dict.fromkeys(keys):
            idx = [i for i, k in enumerate(keys) if k == key]
            picks[idx] = policy.pull_batch(store.read(key), len(idx))
        return picks

    def _decide(
        self,
        metas: list[FrameMeta],
        picks: np.ndarray,
        arms: np.ndarray,
        probs: np.ndarray,
        tally: m.BatchTally,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keep (exit at the edge) or offload each frame; returns (kept, decided by the TD).

        The final arm always keeps. Frames that carry their link's SNR are decided by the
        transmission decision when one is configured, every other frame by the ``C ≥ α`` rule
        (α per frame with threshold pairs)."""
        L = self.cm.num_arms
        snr = np.array([np.nan if x.snr_db is None else x.snr_db for x in metas], dtype=float)
        inputs = TDInputs.from_probs(probs, snr)
        transmit = AlphaRule(self.space.alphas(picks, self.cm.alpha)).transmit(inputs)
        by_td = np.zeros(len(metas), dtype=bool)
        if self.td is not None:
            by_td = ~np.isnan(snr) & (arms < L - 1)
            if by_td.any():
                transmit[by_td] = self.td.transmit(inputs.take(by_td))
                for i in np.flatnonzero(by_td):
                    decision = "transmit" if transmit[i] else "keep"
                    camera = m.bounded_label(metas[i].camera_id)
                    tally.inc(m.TD_DECISIONS, (camera, snr_band(snr[i]), decision))
        return (arms == L - 1) | ~transmit, by_td

    def process(self, records: list[InRecord]) -> StepOutput:
        out = StepOutput()
        t0 = time.perf_counter()
        consumed = time.time()
        tally = m.BatchTally()  # per-frame counts, added to Prometheus once per batch
        tally.inc(m.FRAMES_IN, ("edge",), len(records))
        m.BATCH.labels("edge").observe(len(records))
        metas, images, raws = self._decode(records, out)
        if self.board is not None:  # the batch's rewards at the uplink's measured rate
            rate = self.board.shared_rate()
            self.cm = self._costs if rate is None else self._costs.at_rate(rate)
        t1 = time.perf_counter()
        m.STAGE.labels("decode").observe(t1 - t0)
        if not metas:
            return out

        keys = [self.key_for(meta, img) for meta, img in zip(metas, images, strict=True)]
        picks = self._choose(keys)
        arms = self.space.split_arm(picks)
        t2 = time.perf_counter()
        m.STAGE.labels("policy_read").observe(t2 - t1)

        res = self.engine.run_frames(np.stack(images), arms, self.side)
        kept, by_td = self._decide(metas, picks, arms, res.probs, tally)
        t3 = time.perf_counter()
        m.STAGE.labels("edge_compute").observe(t3 - t2)

        conf = res.confidence
        pred = res.prediction
        now = time.time()
        features: dict[int, tuple[int, np.ndarray | bytes | None]] = {}
        for k, (idx, feats) in res.features.items():
            if feats is None:  # the send-frame arm: the JPEG goes as received
                for i in idx.tolist():
                    features[i] = (k, None)
            elif self.latent is not None and self.latent.handles(k):
                for i, msg in zip(idx.tolist(), self.latent.messages(feats, k), strict=True):
                    features[i] = (k, msg)
            else:
                # cast the whole batch once: per-frame casts cost more
                arr = feats if feats.dtype == self.dtype else feats.astype(self.dtype)
                for j, i in enumerate(idx.tolist()):
                    features[i] = (k, arr[j])
        last_arm: dict[str, int] = {}
        # the JPEG arm sends each frame as received, and the bytes and latency costs price it
        # at that size (the offload header frame_bytes; the edge's own side observations)
        jpeg_priced = self.cm.frame_priced and self.engine.send_frame and self.frame_quality is None
        for i, meta in enumerate(metas):
            a, pick = int(arms[i]), int(picks[i])
            # metrics name arms 1-based, like the tables (the code is 0-based)
            camera = m.bounded_label(meta.camera_id)  # header values: bounded series
            tally.inc(m.ARM_CHOSEN, (camera, str(a + 1), m.bounded_label(keys[i], 64, "policy")))
            last_arm[camera] = a + 1
            tally.observe(m.LATENCY_STAGE, ("queue",), max(0.0, consumed - meta.capture_ts))
            tally.observe(m.LATENCY_STAGE, ("edge",), max(0.0, now - consumed))
            row = [None if np.isnan(c) else float(c) for c in conf[i]]
            frame_bytes = len(raws[i]) if jpeg_priced else None
            if kept[i]:
                self._exit(out, meta, keys[i], a, row, int(pred[i, a]), now, t3 - t0, tally)
                offloaded = False if by_td[i] else None
                cm = self.cm.for_payload({0: frame_bytes} if frame_bytes else {})
                obs = observations(
                    self.bandit.policy, cm, self.space, pick, row, None, offloaded, self.side
                )
                delta = out.deltas.setdefault(keys[i], self.bandit.new_delta())
                delta.add(pick, obs, meta.frame_id)
                for arm_j, rew in obs:
                    tally.observe(m.REWARD, (str(self.space.split_arm(arm_j) + 1),), rew)
            else:
                k, feats = features[i]
                payload, codec = self._payload(k, feats, raws[i], images[i])
                om = OffloadMeta(
                    arm=k,
                    confidences=row,
                    codec=codec,
                    policy=keys[i],
                    edge_ts=now,
                    edge_worker=self.worker_id,
                    pair=pick if self.space.pairs else None,
                    alpha=self.space.alpha(pick, self.cm.alpha) if self.space.pairs else None,
                    by_td=bool(by_td[i]),
                    frame_bytes=frame_bytes,
                )
                headers = meta.headers() + om.headers()
                out.offloads.append(OutRecord(meta.frame_id.encode(), payload, headers))
                tally.inc(m.OFFLOADS, (str(a + 1),))
                tally.inc(m.OFFLOAD_BYTES, (codec,), len(payload))  # jpeg for arm 0
                wire = len(payload) + sum(len(hk) + len(hv) for hk, hv in headers)
                tally.inc(m.UPLINK_BYTES, (str(a + 1), codec), wire)
        for camera, arm in last_arm.items():
            m.CURRENT_ARM.labels(camera).set(arm)
        tally.flush()
        m.STAGE.labels("edge_encode").observe(time.perf_counter() - t3)
        return out

    def _exit(
        self,
        out: StepOutput,
        meta: FrameMeta,
        key: str,
        arm: int,
        row: list[float | None],
        prediction: int,
        now: float,
        edge_s: float,
        tally: m.BatchTally,
    ) -> None:
        """The result of a frame that left the edge at ``arm``."""
        cost = float(self.cm.compute_cost[arm])
        r = Result(
            frame_id=meta.frame_id,
            camera_id=meta.camera_id,
            prediction=prediction,
            confidence=float(row[arm] or 0.0),
            arm=arm,
            where="edge",
            capture_ts=meta.capture_ts,
            done_ts=now,
            policy=key,
            run_id=meta.run_id,
            cost=cost,
            timings={"edge_s": edge_s},
        )
        out.results.append(OutRecord(meta.frame_id.encode(), r.encode(), meta.headers()))
        tally.inc(m.EXITS, (str(arm + 1),))
        tally.inc(m.FRAMES_OUT, ("edge", "edge"))
        tally.inc(m.COST, ("edge",), cost)
        tally.observe(m.END_TO_END, ("edge",), max(0.0, now - meta.capture_ts))

    def apply(self, out: StepOutput) -> None:
        """Fold the batch's known rewards into the shared policy (one round trip per key)."""
        self.bandit.apply(out.deltas)
