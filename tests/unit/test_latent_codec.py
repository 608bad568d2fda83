"""The learned bottleneck's wire codec: round trip, bounds, fuzzing, and one coder across
processes (the edge and the cloud must read the shipped integer tables identically)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitee.checkerboard import ContextTables, fit_context_tables
from splitee.coding_tables import coder_for
from splitee.entropy import MAX_ALPHABET, PRECISION, ChannelTables, LatentCoder
from splitee.models.bottleneck import Bottlenecks, default_spec
from splitee.models.bottleneck_checkpoint import load_bottlenecks, save_bottlenecks
from splitee.models.latent_codec import LatentCodec
from splitee.wire import (
    LATENT_HEADER_BYTES,
    REASONS,
    WireError,
    decode_latent_header,
    encode_latent,
)

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SHAPE = (6, 4, 5)


def laplace_latent(seed: int, shape=SHAPE, scale: float = 1.5) -> np.ndarray:
    return np.round(np.random.default_rng(seed).laplace(0, scale, shape)).astype(np.int32)


def tables_for(samples: np.ndarray) -> ChannelTables:
    """Histogram tables over (N, C, H, W) symbols, as training builds them."""
    half = MAX_ALPHABET // 2
    C = samples.shape[1]
    counts = np.zeros((C, MAX_ALPHABET), np.int64)
    for c in range(C):
        v, n = np.unique(samples[:, c], return_counts=True)
        counts[c, v + half] = n
    return ChannelTables.from_histograms(counts, np.full(C, -half, np.int32))


@pytest.fixture(scope="module")
def coder() -> LatentCoder:
    return LatentCoder(tables_for(np.stack([laplace_latent(s) for s in range(50)])))


def test_tables_are_full_precision_rows(coder):
    t = coder.tables
    for row, n in zip(t.freqs, t.lengths, strict=True):
        assert int(row[:n].sum()) == 1 << PRECISION and (row[:n] >= 1).all()


def test_round_trip_and_size_near_ideal(coder):
    q = laplace_latent(123)
    q = coder.clamp(q)
    data = coder.encode(q)
    assert (coder.decode(data, SHAPE) == q).all()
    ideal = coder.tables.bits(q) / 8
    assert ideal <= len(data) <= ideal + 8  # ANS: within one state word of the entropy


def test_symbols_outside_the_tables_are_clamped(coder):
    q = np.full(SHAPE, 10_000, np.int32)
    back = coder.decode(coder.encode(q), SHAPE)
    hi = coder.tables.offsets + coder.tables.lengths - 1
    assert (back == hi.reshape(-1, 1, 1)).all()


def test_header_size_is_what_costs_and_evaluation_add():
    assert len(encode_latent(b"", SHAPE, 0)) == LATENT_HEADER_BYTES == 20


def test_header_bounds():
    msg = encode_latent(b"\0" * 8, SHAPE, 1)
    assert decode_latent_header(msg, SHAPE, 2)[0] == 1
    for data, shape, rates, reason in [
        (msg[:10], SHAPE, 2, "truncated"),
        (b"XXXX" + msg[4:], SHAPE, 2, "bad_magic"),
        (msg, SHAPE, 1, "bad_latent"),  # rate 1 of a one-rate codec
        (msg, (6, 4, 4), 2, "bad_shape"),  # not the model's latent
        (msg + b"\0", SHAPE, 2, "size_mismatch"),  # not whole words
        (encode_latent(b"\0" * (2 * 120 + 12), SHAPE, 0), SHAPE, 2, "size_mismatch"),
    ]:
        with pytest.raises(WireError) as exc:
            decode_latent_header(data, shape, rates)
        assert exc.value.reason == reason


@FUZZ
@given(st.binary(max_size=400), st.integers(0, 2**31))
def test_any_payload_decodes_to_the_shape_or_a_wire_error(payload, seed):
    """Garbage after a valid header: symbols of exactly the latent's shape, or a WireError
    — never another exception, more symbols, or unbounded work."""
    codec = _codec()
    msg = encode_latent(payload, codec.latent_shape(0), 0)
    try:
        z = codec.symbols(msg, 0)
    except WireError as exc:
        assert exc.reason in REASONS
        return
    assert z.shape == codec.latent_shape(0) and z.dtype == np.float32


@FUZZ
@given(st.binary(max_size=64), st.integers(0, 3))
def test_mutated_messages_raise_only_wire_errors(noise, cut):
    codec = _codec()
    good = codec.encode(torch.randn(1, *codec.bundle.bottlenecks.codecs[0].spec.in_shape), 0)[0]
    data = good[: len(good) - cut] + noise
    try:
        codec.symbols(data, 0)
    except WireError as exc:
        assert exc.reason in REASONS


_CACHED: dict[str, LatentCodec] = {}


def _bundle_file(tmp: Path) -> Path:
    """A tiny bottleneck (random weights, checkerboard tables from its own latents) on a
    stand-in base."""
    torch.manual_seed(0)
    base = tmp / "base.safetensors"
    base.write_bytes(b"a stand-in for the base model's bytes")
    from splitee.files import sha256_file

    bn = Bottlenecks([default_spec((8, 12, 12))], [0.5, 1.0])
    h = torch.randn(64, 8, 12, 12)
    tables = {0: [fit_context_tables(bn.codecs[0].quantize(h, r).numpy()) for r in range(2)]}
    out = tmp / "bn.safetensors"
    save_bottlenecks(bn, tables, out, base, sha256_file(base))
    return out


def _codec() -> LatentCodec:
    if "c" not in _CACHED:
        import tempfile

        tmp = Path(tempfile.mkdtemp())
        _CACHED["c"] = LatentCodec(load_bottlenecks(_bundle_file(tmp)), {0: 0})
    return _CACHED["c"]


def test_checkpoint_refuses_another_base(tmp_path):
    f = _bundle_file(tmp_path)
    (tmp_path / "base.safetensors").write_bytes(b"another model")
    with pytest.raises(ValueError, match="SHA-256"):
        load_bottlenecks(f)


def test_live_round_trip_shapes(tmp_path):
    codec = LatentCodec(load_bottlenecks(_bundle_file(tmp_path)), {0: 1}, arm_offset=1)
    assert codec.handles(1) and not codec.handles(0)
    assert all(isinstance(t, ContextTables) for t in codec.bundle.tables[0])
    h = torch.randn(3, 8, 12, 12)
    msgs = codec.encode(h, 1)
    z = torch.from_numpy(np.stack([codec.symbols(m, 1) for m in msgs]))
    assert tuple(codec.reconstruct(z, 1).shape) == (3, 8, 12, 12)
    with pytest.raises(WireError) as exc:  # coded at rate 1, read as another deployment's
        LatentCodec(codec.bundle, {0: 0}, arm_offset=1).symbols(msgs[0], 1)
    assert exc.value.reason == "bad_latent"


ENCODE_ELSEWHERE = """
import sys, numpy as np, torch
from splitee.models.bottleneck_checkpoint import load_bottlenecks
from splitee.models.latent_codec import LatentCodec
codec = LatentCodec(load_bottlenecks(sys.argv[1]), {0: 0})
torch.manual_seed(7)
msgs = codec.encode(torch.randn(4, 8, 12, 12), 0)
sys.stdout.buffer.write(b"".join(len(m).to_bytes(4, "little") + m for m in msgs))
"""


def test_a_latent_encoded_in_one_process_decodes_identically_in_another(tmp_path):
    f = _bundle_file(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", ENCODE_ELSEWHERE, str(f)], capture_output=True, check=True
    ).stdout
    msgs, i = [], 0
    while i < len(out):
        n = int.from_bytes(out[i : i + 4], "little")
        msgs.append(out[i + 4 : i + 4 + n])
        i += 4 + n
    codec = LatentCodec(load_bottlenecks(f), {0: 0})
    torch.manual_seed(7)
    mine = codec.encode(torch.randn(4, 8, 12, 12), 0)
    assert msgs == mine  # the same bytes: same encoder output, same integer tables
    torch.manual_seed(7)
    q = codec.bundle.bottlenecks.codecs[0].quantize(torch.randn(4, 8, 12, 12), 0).numpy()
    coder = coder_for(codec.bundle.tables[0][0])
    for m, qi in zip(msgs, q, strict=True):
        assert (codec.symbols(m, 0) == coder.clamp(qi)).all()


def bundle_on_first_arm(model, tmp_path: Path, fit=tables_for):
    """A random-weight bottleneck for ``model`` (a codec per split arm, steps 0.5 and 1) with
    tables for its first split arm only, fitted by ``fit`` on the latents of random tensors; on
    a stand-in base model."""
    from splitee.files import sha256_file

    torch.manual_seed(0)
    base = tmp_path / "base.safetensors"
    base.write_bytes(b"stand-in")
    shapes = [model.feature_shape(k) for k in range(model.num_exits - 1)]
    bn = Bottlenecks([default_spec(s) for s in shapes], [0.5, 1.0])
    h = torch.randn(64, *shapes[0])
    tables = {0: [fit(bn.codecs[0].quantize(h, r).numpy()) for r in range(2)]}
    save_bottlenecks(bn, tables, tmp_path / "bn.safetensors", base, sha256_file(base))
    return load_bottlenecks(tmp_path / "bn.safetensors")


def test_edge_encodes_and_cloud_decodes_latents_through_the_steps(tiny_real, tmp_path):
    """The send-frame model with a bottleneck on its first split arm: the edge offloads a
    latent message, the cloud answers with suffix(decode(q)) — the same numbers as running
    the codec by hand — and a message of another shape is a dead letter."""
    from cloud_workers.processor import CloudProcessor
    from edge_workers.processor import EdgeProcessor
    from policy_store import CostModel, MemoryStore
    from policy_store.policies import make_policy
    from splitee.images import decode_fit
    from splitee.models import to_input
    from splitee.models.frame_arm import FrameArmNet
    from splitee.wire import LATENT_CODEC, Result
    from splitee.worker.records import InRecord
    from tests.bandits import bandit
    from tests.unit.test_send_frame import _jpeg, _record

    bundle = bundle_on_first_arm(tiny_real, tmp_path)
    model = FrameArmNet(tiny_real)
    latent = LatentCodec(bundle, {0: 1}, arm_offset=1)
    cm = CostModel(model.exit_depths, alpha=0.99)  # offload everything but the final exit
    b = bandit(cm, MemoryStore(cm.num_arms), make_policy("fixed:2"))  # 1-based: split arm 1
    edge = EdgeProcessor(model, b, codec="float16", latent=latent)
    cloud = CloudProcessor(model, b, latent=latent)
    recs = [_record(i, _jpeg(120 + 7 * i, 90, i)) for i in range(3)]
    out = edge.process(recs)
    assert not out.dead and len(out.offloads) == 3
    assert {dict(r.headers)["codec"] for r in out.offloads} == {LATENT_CODEC.encode()}
    back = cloud.process(
        [InRecord(r.key, r.value, r.headers, "offload", 0, i) for i, r in enumerate(out.offloads)]
    )
    assert not back.dead
    results = [Result.decode(r.value) for r in back.results]
    assert [r.arm for r in results] == [1] * 3
    assert [r.offload_bytes for r in results] == [len(r.value) for r in out.offloads]
    with torch.inference_mode():
        x = to_input(np.stack([decode_fit(r.value, tiny_real.input_size) for r in recs]))
        q = torch.from_numpy(
            np.stack([latent.symbols(m, 1) for m in latent.encode(tiny_real.prefix(x, 0), 1)])
        )
        want = tiny_real.suffix(latent.reconstruct(q, 1), 0).argmax(1).tolist()
    assert [r.prediction for r in results] == want
    other = LatentCodec(bundle, {0: 1}, arm_offset=1)
    bad = encode_latent(b"\0" * 8, (1, 2, 3), 1)  # not the model's latent shape
    rec = out.offloads[0]
    dead = CloudProcessor(model, b, latent=other).process(
        [InRecord(rec.key, bad, rec.headers, "offload", 0, 9)]
    )
    assert [d.reason for d in dead.dead] == ["bad_shape"]


def test_rate_points_are_the_fewest_bytes_within_the_drop():
    """Within max_drop of the unsplit model: the cheapest such point; where none is, the
    cheapest within max_drop of the arm's best (a tie at the top goes to fewer bytes); an arm
    the card does not list codes at the finest step."""
    from splitee.latent_messages import choose_rates

    def arm(k: int, top1: list[float]) -> dict:
        rates = [{"rate": r, "bytes_median": 4000 >> r, "top1": t} for r, t in enumerate(top1)]
        return {"arm": k + 1, "unsplit_top1": 0.942, "rates": rates}

    card = {
        "arms": [
            arm(0, [0.940, 0.937, 0.930, 0.900]),  # rates 0-1 within 0.01: rate 1
            arm(1, [0.884, 0.882, 0.884, 0.866]),  # none within: best 0.884, rate 2 ties it
            arm(2, [0.700, 0.650, 0.500, 0.400]),  # none within, only the best
        ]
    }
    assert choose_rates(card, [0, 1, 2, 3], 0.01) == {0: 1, 1: 2, 2: 0, 3: 0}
    assert choose_rates(card, [1], 0.02) == {1: 3}  # 0.866 is within 0.02 of 0.884


def test_a_scalar_arm_survives_the_checkpoint_and_the_wire(tmp_path):
    """A scalar codec (no weights, only the tensor's statistics) beside a learned one: after
    save and load it quantizes and reconstructs exactly as before, and its latent crosses the
    wire codec to the same symbols (factorized tables: checkpoints from before context
    coding still load and code)."""
    from splitee.files import sha256_file
    from splitee.models.bottleneck import scalar_spec

    base = tmp_path / "base.safetensors"
    base.write_bytes(b"stand-in")
    spec = scalar_spec((8, 6, 6))
    bn = Bottlenecks([default_spec((8, 12, 12)), spec], [0.5, 1.0])
    bn.codecs[1].set_statistics(torch.linspace(-1, 1, 8), torch.linspace(0.5, 2, 8))
    h = torch.randn(64, 8, 6, 6)
    tables = {1: [tables_for(bn.codecs[1].quantize(h, r).numpy()) for r in range(2)]}
    save_bottlenecks(bn, tables, tmp_path / "bn.safetensors", base, sha256_file(base))
    bundle = load_bottlenecks(tmp_path / "bn.safetensors")
    loaded = bundle.bottlenecks.codecs[1]
    assert loaded.spec == spec and bundle.arms == [1]
    assert all(isinstance(t, ChannelTables) for t in bundle.tables[1])
    for r in range(2):
        q = loaded.quantize(h, r)
        assert torch.equal(q, bn.codecs[1].quantize(h, r))
        torch.testing.assert_close(loaded.dequantize(q, r), bn.codecs[1].dequantize(q, r))
    latent = LatentCodec(bundle, {1: 1})
    msgs = latent.encode(h[:3], 1)
    got = np.stack([latent.symbols(m, 1) for m in msgs])
    np.testing.assert_array_equal(got, loaded.quantize(h[:3], 1).numpy())
