"""Checkerboard context coding: exact round trips, contexts from the anchors only, fewer bytes
than factorized tables where latents are spatially smooth, bounded decoding of any bytes, and
tables that survive their arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitee.checkerboard import (
    CheckerboardCoder,
    ContextTables,
    anchor_mask,
    context_index,
    fit_context_tables,
)
from splitee.coding_tables import coder_for, read_tables, table_arrays
from splitee.entropy import PRECISION, ChannelTables, LatentCoder, LatentCodingError

SHAPE = (5, 9, 8)


def smooth_latents(n: int, seed: int = 0, shape=SHAPE) -> np.ndarray:
    """Integer latents whose magnitude follows a per-frame blob (busy object, quiet border),
    as a split tensor's latents do."""
    rng = np.random.default_rng(seed)
    C, H, W = shape
    yy, xx = np.indices((H, W))
    out = np.empty((n, C, H, W), np.int32)
    for i in range(n):
        cy, cx, r = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(1.5, 4)
        scale = 0.2 + 3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        out[i] = np.round(rng.laplace(0, 1, (C, H, W)) * scale)
    return out


@pytest.fixture(scope="module")
def trained() -> tuple[ContextTables, ChannelTables, np.ndarray]:
    """Context and factorized tables fitted on the same training latents, and test latents."""
    from tests.unit.test_latent_codec import tables_for

    train = smooth_latents(400)
    return fit_context_tables(train), tables_for(train), smooth_latents(60, seed=1)


def test_round_trip_is_exact_and_near_the_ideal_size(trained):
    tables, _, test = trained
    coder = CheckerboardCoder(tables)
    for q in test[:10]:
        q = coder.clamp(q)
        data = coder.encode(q)
        assert (coder.decode(data, SHAPE) == q).all()
        ideal = tables.bits(q) / 8
        assert ideal <= len(data) <= ideal + 12  # two passes: within a few words of entropy


def test_fewer_bytes_than_factorized_on_smooth_latents(trained):
    ctx, fact, test = trained
    a, b = CheckerboardCoder(ctx), LatentCoder(fact)
    ctx_bytes = sum(len(a.encode(q)) for q in test)
    fact_bytes = sum(len(b.encode(q)) for q in test)
    assert ctx_bytes < 0.97 * fact_bytes


def test_contexts_depend_on_the_anchors_only(trained):
    tables, _, test = trained
    q = test[0].copy()
    off = ~anchor_mask(*SHAPE[1:])
    before = context_index(q, tables.act_edges)[:, off]
    q[:, off] = 7  # whatever the second pass holds, the contexts it is decoded in stand
    assert (context_index(q, tables.act_edges)[:, off] == before).all()


def test_symbols_outside_the_tables_are_clamped(trained):
    coder = CheckerboardCoder(trained[0])
    q = np.full(SHAPE, -10_000, np.int32)
    back = coder.decode(coder.encode(q), SHAPE)
    assert (back == trained[0].anchors.offsets.reshape(-1, 1, 1)).all()


def test_every_row_of_a_channel_spans_its_range(trained):
    t = trained[0]
    K = t.contexts
    assert len(t.context.offsets) == len(t.anchors.offsets) * K
    for row, n in zip(t.context.freqs, t.context.lengths, strict=True):
        assert int(row[:n].sum()) == 1 << PRECISION and (row[:n] >= 1).all()
    with pytest.raises(ValueError, match="different ranges"):
        shifted = ChannelTables(
            offsets=t.context.offsets + 1, freqs=t.context.freqs, lengths=t.context.lengths
        )
        ContextTables(anchors=t.anchors, context=shifted, act_edges=t.act_edges)


def test_tables_survive_their_arrays(trained):
    ctx, fact, test = trained
    back = read_tables(table_arrays({0: [ctx, fact]}), [0], 2)[0]
    assert isinstance(back[0], ContextTables) and isinstance(back[1], ChannelTables)
    for orig, got in zip((ctx, fact), back, strict=True):
        assert coder_for(orig).encode(test[0]) == coder_for(got).encode(test[0])
    with pytest.raises(KeyError):
        read_tables({}, [0], 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_the_shape_or_a_coding_error(trained, payload):
    """Garbage: exactly the latent's symbol count, bounded values, or LatentCodingError."""
    coder = CheckerboardCoder(trained[0])
    data = payload[: len(payload) // 4 * 4]
    try:
        q = coder.decode(data, SHAPE)
    except LatentCodingError:
        return
    assert q.shape == SHAPE and q.dtype == np.int32 and np.abs(q).max() < 2048
    with pytest.raises(LatentCodingError):
        coder.decode(b"\0" * 3, SHAPE)
    with pytest.raises(LatentCodingError):
        coder.decode(data, (SHAPE[0] + 1, *SHAPE[1:]))
