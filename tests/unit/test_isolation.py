"""A batch that raises, isolated record by record, with the in-memory store."""

from __future__ import annotations

import numpy as np
import pytest

from policy_store import Delta, MemoryStore
from tests.isolated_batch import check_one_raising_record_among_good_ones


def test_one_raising_record_among_good_ones_keeps_the_rest_and_their_ids(tiny_model, sample_frames):
    store = MemoryStore(len(tiny_model.exit_depths))
    check_one_raising_record_among_good_ones(tiny_model, sample_frames.images, store)


def test_merge_carries_every_field():
    a, b = Delta.zeros(3, discount=0.9, window=4), Delta.zeros(3, discount=0.9, window=4)
    a.tag = "batch-a"
    a.add(1, [(1, 0.5), (0, 0.2)], "f1")
    b.add(2, [(2, 0.7)], "f2")
    m = a.merge(b)
    assert (m.t, m.discount, m.window, m.tag) == (2, 0.9, 4, "batch-a")
    assert [r.frame_id for r in m.records] == ["f1", "f2"]
    assert len(m.frames) == 2
    assert np.array_equal(m.n, a.n + b.n) and np.array_equal(m.pulls, [0, 1, 1])
    with pytest.raises(ValueError, match="different policies"):
        a.merge(Delta.zeros(3))
