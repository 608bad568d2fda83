"""The evaluator service: joins results with ground truth, live, and exports quality metrics.

Workers never see labels, so accuracy, cost reduction and regret of a running deployment can
only be measured beside them: this process consumes the ``results`` and ``truth`` topics
(kafka-python, consumer group ``<prefix>-evaluator``), joins them by frame id and keeps the
first result per frame (results are at-least-once; later copies are counted as duplicates,
as in :class:`splitee.results.ResultsView`). Frame ids are remembered in a bounded set:
duplicates come from a worker replaying its last batch, seconds after the original.

Exported (labels ``camera`` and ``distortion`` are capped at :data:`MAX_LABEL_VALUES` values
each, the rest become ``other``):

* counters per camera and distortion phase: frames, correct predictions, cost, offloads, so
  PromQL computes accuracy, cost reduction and offload rate over any time range;
* a sliding window of the last ``observability.eval_window`` frames: accuracy, cost
  reduction against the final exit, offload fraction;
* regret against the best fixed arm so far, estimated from results alone (below).

Regret estimator. A result implies the unsupervised reward its frame gave the policy:
``r = C - mu * cost``, where ``C`` is the confidence the result carries (the exit's ``C_k``
for an edge exit, ``C_L`` for an offloaded frame) and ``cost`` is ``lambda_k`` (+ ``o`` when
offloaded); this is exactly :meth:`policy_store.rewards.CostModel.reward`. With ``n_k`` frames
served at arm ``k`` and mean implied reward ``m_k``, the best fixed arm so far is
``k* = argmax m_k`` over arms with at least :data:`MIN_ARM_FRAMES` frames, and the regret of
the ``N`` frames seen is ``N * m_k* - sum(r)`` (a plug-in estimate: the rewards an unchosen arm
would have given are never observed, so each arm's mean is estimated from the frames that did
use it; it is consistent as every arm keeps being tried, optimistic for ``k*`` with few
samples, and may be negative early on).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from splitee.files import exit_depths
from splitee.metrics import LATENCY_STAGE
from splitee.settings import Settings
from splitee.wire import Result, WireError, decode_frame_id, decode_truth

#: result → read here: the last hop of a frame's latency (splitee_latency_stage_seconds)
RESULT_HOP = LATENCY_STAGE.labels("result_hop")

log = logging.getLogger("splitee.evaluator")

MAX_LABEL_VALUES = 32
MIN_ARM_FRAMES = 10


@dataclass(frozen=True)
class Outcome:
    """One frame with both its result and its truth."""

    camera: str
    distortion: str
    correct: bool
    cost: float
    offloaded: bool
    arm: int  # 0-based
    reward: float


@dataclass
class _Totals:
    frames: int = 0
    correct: int = 0
    cost: float = 0.0
    offloaded: int = 0


class _BoundedSet:
    """The most recent ``cap`` keys (oldest forgotten first)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._d: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._d

    def add(self, key: str) -> None:
        self._d[key] = None
        if len(self._d) > self.cap:
            self._d.popitem(last=False)


@dataclass
class EvalState:
    """The evaluator's state: pure (no I/O), so it is unit-tested without Kafka."""

    final_cost: float
    mu: float = 1.0
    window: int = 500
    num_arms: int = 9
    max_pending: int = 100_000
    max_seen: int = 1_000_000
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.pending_results: OrderedDict[str, Result] = OrderedDict()
        self.pending_truth: OrderedDict[str, dict] = OrderedDict()
        self.seen = _BoundedSet(self.max_seen)
        self.totals: dict[tuple[str, str], _Totals] = {}
        self.recent: deque[Outcome] = deque(maxlen=self.window)
        self.arm_n = [0] * self.num_arms
        self.arm_sum = [0.0] * self.num_arms
        self.frames = 0
        self.reward_sum = 0.0
        self.duplicates = 0
        self.bad = 0
        self.bad_reasons: Counter[str] = Counter()
        self.evicted = {"results": 0, "truth": 0}
        self._values: dict[str, set[str]] = {"camera": set(), "distortion": set()}

    # ------------------------------------------------------------------ input
    def reject(self, reason: str) -> None:
        """Count a record skipped as invalid (``reason`` from the closed set of WireError)."""
        with self.lock:
            self.bad += 1
            self.bad_reasons[reason] += 1

    def add_result(self, value: bytes | None) -> Outcome | None:
        """A record of the results topic; the joined outcome when its truth is already here."""
        try:
            if value is None:
                raise WireError("empty", "result record has no value")
            r = Result.decode(value)
        except WireError as exc:
            self.reject(exc.reason)
            return None
        with self.lock:
            if r.frame_id in self.seen or r.frame_id in self.pending_results:
                self.duplicates += 1
                return None
            RESULT_HOP.observe(max(0.0, time.time() - r.done_ts))
            truth = self.pending_truth.pop(r.frame_id, None)
            if truth is None:
                self._park(self.pending_results, r.frame_id, r, "results")
                return None
            return self._join(r, truth)

    def add_truth(self, frame_id: str, value: bytes | None) -> Outcome | None:
        """A record of the truth topic; the joined outcome when its result is already here."""
        try:
            truth = decode_truth(value)
        except WireError as exc:
            self.reject(exc.reason)
            return None
        with self.lock:
            if frame_id in self.seen or frame_id in self.pending_truth:
                return None
            r = self.pending_results.pop(frame_id, None)
            if r is None:
                self._park(self.pending_truth, frame_id, truth, "truth")
                return None
            return self._join(r, truth)

    def _park(self, pending: OrderedDict, key: str, item: object, kind: str) -> None:
        pending[key] = item
        if len(pending) > self.max_pending:  # its partner never came (e.g. a lost topic)
            pending.popitem(last=False)
            self.evicted[kind] += 1

    def _bounded(self, kind: str, value: str) -> str:
        seen = self._values[kind]
        if value in seen:
            return value
        if len(seen) >= MAX_LABEL_VALUES:
            return "other"
        seen.add(value)
        return value

    def _join(self, r: Result, truth: dict) -> Outcome:
        self.seen.add(r.frame_id)
        out = Outcome(
            camera=self._bounded("camera", r.camera_id),
            distortion=self._bounded("distortion", str(truth.get("distortion", "unknown"))),
            correct=int(r.prediction) == int(truth["label"]),
            cost=float(r.cost),
            offloaded=r.where == "cloud",
            arm=int(r.arm),
            reward=float(r.confidence) - self.mu * float(r.cost),
        )
        t = self.totals.setdefault((out.camera, out.distortion), _Totals())
        t.frames += 1
        t.correct += out.correct
        t.cost += out.cost
        t.offloaded += out.offloaded
        self.recent.append(out)
        if 0 <= out.arm < self.num_arms:
            self.arm_n[out.arm] += 1
            self.arm_sum[out.arm] += out.reward
        self.frames += 1
        self.reward_sum += out.reward
        return out

    # ------------------------------------------------------------------ derived
    def best_fixed_arm(self) -> int | None:
        """0-based arm with the best mean implied reward among arms with enough frames."""
        ok = [k for k in range(self.num_arms) if self.arm_n[k] >= MIN_ARM_FRAMES]
        if not ok:
            return None
        return max(ok, key=lambda k: self.arm_sum[k] / self.arm_n[k])

    def regret(self) -> float | None:
        """Estimated cumulative regret against the best fixed arm so far (module docstring)."""
        k = self.best_fixed_arm()
        if k is None:
            return None
        return self.frames * self.arm_sum[k] / self.arm_n[k] - self.reward_sum

    def window_stats(self) -> dict[str, float]:
        n = len(self.recent)
        if not n:
            return {"frames": 0}
        cost = sum(o.cost for o in self.recent) / n
        return {
            "frames": n,
            "accuracy": sum(o.correct for o in self.recent) / n,
            "cost_reduction": 1.0 - cost / self.final_cost,
            "offload": sum(o.offloaded for o in self.recent) / n,
            "mean_reward": sum(o.reward for o in self.recent) / n,
        }


class EvalCollector(Collector):
    """Prometheus view of an :class:`EvalState`, computed at scrape time under its lock."""

    def __init__(self, state: EvalState) -> None:
        self.state = state

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        st = self.state
        with st.lock:
            yield from self._per_phase(st)
            win = st.window_stats()
            for name, key, doc in (
                ("accuracy_ratio", "accuracy", "Accuracy of the last window of frames"),
                ("cost_reduction_ratio", "cost_reduction", "1 - mean cost / final-exit cost"),
                ("offload_ratio", "offload", "Fraction of the window's frames offloaded"),
                ("mean_reward", "mean_reward", "Mean implied reward of the window's frames"),
            ):
                if key in win:
                    yield GaugeMetricFamily(f"splitee_eval_window_{name}", doc, value=win[key])
            yield GaugeMetricFamily(
                "splitee_eval_window_frames", "Frames in the sliding window", value=win["frames"]
            )
            yield GaugeMetricFamily(
                "splitee_eval_final_exit_cost",
                "Cost of running a frame to the final exit on the edge (the reference)",
                value=st.final_cost,
            )
            yield from self._regret(st)
            yield CounterMetricFamily(
                "splitee_eval_duplicate_results",
                "Results dropped as later copies of a frame's first result",
                value=st.duplicates,
            )
            bad = CounterMetricFamily(
                "splitee_eval_bad_records",
                "Results or truth records skipped as invalid, by reason",
                labels=["reason"],
            )
            for reason, n in sorted(st.bad_reasons.items()):
                bad.add_metric([reason], n)
            yield bad
            pend = GaugeMetricFamily(
                "splitee_eval_pending", "Records waiting for their partner", labels=["kind"]
            )
            pend.add_metric(["results"], len(st.pending_results))
            pend.add_metric(["truth"], len(st.pending_truth))
            yield pend
            ev = CounterMetricFamily(
                "splitee_eval_evicted", "Records dropped unjoined (pending full)", labels=["kind"]
            )
            for kind, n in st.evicted.items():
                ev.add_metric([kind], n)
            yield ev

    @staticmethod
    def _per_phase(st: EvalState) -> Iterator[CounterMetricFamily]:
        labels = ["camera", "distortion"]
        fams = {
            "frames": CounterMetricFamily(
                "splitee_eval_frames", "Frames joined with their truth", labels=labels
            ),
            "correct": CounterMetricFamily(
                "splitee_eval_correct", "Frames predicted correctly", labels=labels
            ),
            "cost": CounterMetricFamily(
                "splitee_eval_cost", "Sum of per-frame costs (λ_k + o if offloaded)", labels=labels
            ),
            "offloaded": CounterMetricFamily(
                "splitee_eval_offloaded", "Frames finished in the cloud", labels=labels
            ),
        }
        for (cam, dist), t in sorted(st.totals.items()):
            for key, fam in fams.items():
                fam.add_metric([cam, dist], getattr(t, key))
        yield from fams.values()

    @staticmethod
    def _regret(st: EvalState) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        arm_n = CounterMetricFamily(
            "splitee_eval_arm_frames", "Joined frames served at each arm (1-based)", labels=["arm"]
        )
        arm_m = GaugeMetricFamily(
            "splitee_eval_arm_mean_reward",
            "Mean reward implied by results, per arm",
            labels=["arm"],
        )
        for k in range(st.num_arms):
            if st.arm_n[k]:
                arm_n.add_metric([str(k + 1)], st.arm_n[k])
                arm_m.add_metric([str(k + 1)], st.arm_sum[k] / st.arm_n[k])
        yield arm_n
        yield arm_m
        regret = st.regret()
        best = st.best_fixed_arm()
        if regret is not None and best is not None:
            yield GaugeMetricFamily(
                "splitee_eval_regret",
                "Estimated cumulative regret against the best fixed arm so far",
                value=regret,
            )
            yield GaugeMetricFamily(
                "splitee_eval_regret_per_frame",
                "Estimated regret per frame against the best fixed arm so far",
                value=regret / max(st.frames, 1),
            )
            yield GaugeMetricFamily(
                "splitee_eval_best_fixed_arm",
                "Best fixed arm so far by mean implied reward (1-based)",
                value=best + 1,
            )


def state_from_settings(s: Settings) -> EvalState:
    from splitee import policy_setup  # the send-frame arm counts too

    depths = exit_depths(s.model.checkpoint)
    return EvalState(
        final_cost=s.policy.gamma * depths[-1],
        mu=s.policy.mu,
        window=s.observability.eval_window,
        num_arms=policy_setup.split_arms(s),
    )


def run(s: Settings, worker_id: str, metrics_port: int) -> None:
    """Consume results and truth until SIGTERM, exporting :class:`EvalCollector`."""
    from splitee.kafka_io import consumer, poll_skipping_corrupt
    from splitee.observability import service

    state = state_from_settings(s)
    stop = service.start(
        s.var_dir,
        "evaluator",
        worker_id,
        metrics_port,
        EvalCollector(state),
        host=s.deploy.metrics_host,
    )
    k = s.kafka
    c = consumer(
        k,
        k.results_topic,
        k.truth_topic,
        group_id=f"{k.group_prefix}-evaluator",
        enable_auto_commit=True,
    )

    def corrupt(tp, offset: int, exc: Exception) -> None:
        log.warning("skipped a record the client cannot parse at %s/%s: %s", tp, offset, exc)
        state.reject("corrupt_record")

    try:
        while not stop.is_set():
            for tp, recs in poll_skipping_corrupt(c, 500, corrupt).items():
                for rec in recs:
                    if tp.topic == k.results_topic:
                        state.add_result(rec.value)
                        continue
                    try:
                        frame_id = decode_frame_id(rec.key)
                    except WireError as exc:
                        state.reject(exc.reason)
                        continue
                    state.add_truth(frame_id, rec.value)
    finally:
        c.close()
