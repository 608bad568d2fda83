"""One raising record among good ones, through the runtime's isolation, against any store.

Shared by the unit tier (in-memory store) and the servers tier (Redis store): a batch that
raises is retried record by record (:func:`splitee.worker.runtime.process_isolated`), so the good
frames of one policy come back as one merged delta, which must still carry every frame's id —
or the Redis store refuses it (the worker crash-looped) and the in-memory store counts a
re-consumed batch twice.
"""

from __future__ import annotations

import numpy as np

from edge_workers.processor import EdgeProcessor
from policy_store import CostModel, PolicyStore, make_policy
from splitee.jpeg import encode_jpeg
from splitee.wire import FrameMeta, Result
from splitee.worker.fault_injection import FailOnFrames
from splitee.worker.records import InRecord
from splitee.worker.runtime import process_isolated
from tests.bandits import bandit

POISON = "poison:"


def _record(i: int, frame_id: str, img: np.ndarray) -> InRecord:
    meta = FrameMeta(frame_id, "cam-1", 1000.0 + i)
    return InRecord(b"cam-1", encode_jpeg(img), meta.headers(), "frames", 0, i)


def check_one_raising_record_among_good_ones(
    tiny_model, images: np.ndarray, store: PolicyStore
) -> None:
    """7 good frames and 1 that raises, every good one exiting at the final arm (one delta)."""
    cm = CostModel(tiny_model.exit_depths, gamma=0.1, mu=1.0, alpha=0.3, offload_cost=0.5)
    last = f"fixed:{cm.num_arms}"  # every frame exits at the edge: every reward known there
    edge = EdgeProcessor(tiny_model, bandit(cm, store, make_policy(last)))
    step = FailOnFrames(edge, POISON)
    good = [f"cam-1:t:{i:08d}" for i in range(7)]
    ids = [*good[:3], f"{POISON}3", *good[3:]]
    records = [_record(i, fid, images[i]) for i, fid in enumerate(ids)]

    out = process_isolated(step, "edge", records)

    assert [(d.record.offset, d.reason) for d in out.dead] == [(3, "processing_error")]
    assert sorted(Result.decode(r.value).frame_id for r in out.results) == sorted(good)
    step.apply(out)
    step.apply(out)  # the batch consumed again (a crash before its offsets were committed)
    st = store.read("global")
    assert float(st.t) == 7 == st.pulls.sum()  # counted once
    assert [r.frame_id for r in out.deltas["global"].records] == good  # ids survived the merge
