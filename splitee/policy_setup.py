"""The bandit pieces every process builds from the settings, built in one place.

Workers, the exporter, the recorder and the CLI must agree on the cost model, the policy, the
arm space and the size of the statistics in Redis — with threshold adaptation the bandit's
arms are (split arm, α) pairs, so a store sized by split arms alone would misread the hash.
A worker gets its model and its whole :class:`~policy_store.bandit.Bandit` from
:func:`worker_model_and_bandit`, the one way both the edge and the cloud step are fed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from policy_store.arms import ArmSpace
from policy_store.bandit import Bandit
from policy_store.decisions import Always, Never, TDMechanism
from policy_store.keys import PolicyKeys
from policy_store.policies import Policy, make_policy
from policy_store.redis_store import RedisStore
from policy_store.rewards import CostModel
from policy_store.uplink import LatencyPricing
from splitee import redis_io
from splitee.arm_facts import ArmFacts
from splitee.context import CONTEXTS
from splitee.files import model_alpha, sha256_file
from splitee.settings import Settings

if TYPE_CHECKING:  # the models import torch, imported by the workers only
    from splitee.latent_messages import LatentWriter
    from splitee.models.latent_codec import LatentCodec
    from splitee.models.split_api import SplitModel
    from splitee.onnx_edge import OnnxEdgeModel
    from splitee.onnx_manifest import OnnxManifest

#: α when neither the settings nor the checkpoint give one (SplitEE's and I-SplitEE's value)
DEFAULT_ALPHA = 0.5


@dataclass(frozen=True)
class ModelDigests:
    """SHA-256 of the checkpoint and of the bottleneck (None without one)."""

    model: str
    bottleneck: str | None


def alpha(s: Settings, checkpoint: Path | None = None) -> float:
    """The exit threshold α: policy.alpha when set, else the checkpoint's own (its metadata),
    else 0.5. Every process resolves it here, so edge, cloud and the offline tools agree."""
    if s.policy.alpha is not None:
        return s.policy.alpha
    own = model_alpha(checkpoint or s.model.checkpoint)
    return DEFAULT_ALPHA if own is None else own


def policy_keys(s: Settings, contexts: Sequence[str]) -> PolicyKeys:
    """Which policy a frame belongs to; with ``scope = camera`` only the allow-listed cameras
    (policy.cameras, else producer.cameras' ids) get their own, so Redis keys stay bounded and
    edge and cloud agree on them."""
    p = s.policy
    cameras = p.cameras if p.cameras is not None else [c.id for c in s.producer.cameras]
    return PolicyKeys(p.key, p.scope, contexts, cameras=frozenset(cameras))


def cost_model(s: Settings, depths: Sequence[int]) -> CostModel:
    p = s.policy
    return CostModel(depths, p.gamma, p.mu, alpha(s), p.offload_cost)


def _send_frame_on(s: Settings) -> bool:
    on = s.policy.send_frame_arm
    return s.policy.offload_cost_mode in ("bytes", "latency") if on is None else bool(on)


def split_arms(s: Settings) -> int:
    """The bandit's split arms for the configured checkpoint, from its metadata alone (no
    torch, for the exporter, the evaluator, the recorder and the CLI): its exits, plus the
    send-frame arm of a real-size backbone when that is on."""
    from splitee.files import checkpoint_metadata, exit_depths

    n = len(exit_depths(s.model.checkpoint))
    real = "backbone" in checkpoint_metadata(s.model.checkpoint)
    return n + 1 if real and _send_frame_on(s) else n


def latent_codec(s: Settings, model: SplitModel) -> LatentCodec | None:
    """The learned bottleneck's live codec for the worker's ``model`` (arms shifted by the
    send-frame arm when it is on), or None without ``model.bottleneck``."""
    if s.model.bottleneck is None:
        return None
    from splitee.models.bottleneck_checkpoint import load_bottlenecks
    from splitee.models.latent_codec import LatentCodec, choose_rates

    bundle = load_bottlenecks(s.model.bottleneck, base_path=s.model.checkpoint)
    offset = 1 if model.send_frame else 0
    return LatentCodec(bundle, choose_rates(bundle, s.model.bottleneck_max_drop), offset)


def model_and_costs(s: Settings, model: SplitModel) -> tuple[SplitModel, CostModel]:
    """The model the workers run and its cost model, from the settings (the bottleneck, when
    configured, loaded here: see :func:`_model_and_costs`)."""
    return _model_and_costs(s, model, latent_codec(s, model))


def _model_and_costs(
    s: Settings, model: SplitModel, codec: LatentCodec | None
) -> tuple[SplitModel, CostModel]:
    """The model the workers run and its cost model, from the settings: the facts measured on
    ``model`` (:func:`arm_facts`) priced by :func:`costs_from_facts`; a real-size model with
    the send-frame arm on is wrapped in FrameArmNet."""
    send, cm = costs_from_facts(s, arm_facts(s, model, codec))
    if send:
        from splitee.models.frame_arm import FrameArmNet

        model = FrameArmNet(model)
    return model, cm


def arm_facts(s: Settings, model: SplitModel, codec: LatentCodec | None) -> ArmFacts:
    """What the cost model needs, measured on ``model`` (torch): FLOPs per prefix
    (splitee.models.profile), split-tensor bytes, and with ``codec`` (for the unwrapped
    ``model``'s arms) the bottleneck encoder's FLOPs and its measured bytes. The CIFAR
    ResNets are priced by depth alone."""
    own = model_alpha(s.model.checkpoint)
    if not model.real_size:
        return ArmFacts(exit_depths=list(model.exit_depths), real_size=False, alpha=own)
    from splitee.models.profile import prefix_flops, split_bytes

    flops = [prefix_flops(model, k) for k in range(model.num_exits)]
    enc: dict[int, int] = {}
    lat: dict[int, int | None] = {}
    if codec is not None:
        from splitee.models.latent_codec import encoder_flops

        enc = encoder_flops(codec.bundle, codec.bundle.arms)
        lat = {k: codec.median_bytes(k + codec.offset) for k in enc}
    return ArmFacts(
        exit_depths=list(model.exit_depths),
        real_size=True,
        alpha=own,
        relative_costs=[f / flops[-1] for f in flops],
        total_flops=flops[-1],
        split_bytes=[split_bytes(model, k) for k in range(model.num_exits - 1)],
        encoder_flops=enc,
        latent_bytes=lat,
    )


def costs_from_facts(s: Settings, facts: ArmFacts) -> tuple[bool, CostModel]:
    """Whether arm 0 sends the frame, and the cost model over the worker's arms.

    CIFAR ResNets: λ_k = γ·ℓ_k, constant o (as always). Real-size backbones: λ_k from the
    FLOPs of each prefix, the send-frame arm 0 when on (:func:`_send_frame_on`), and with
    ``offload_cost_mode = "bytes"`` o scaled per arm by its encoded bytes over
    policy.jpeg_bytes (the frame itself for arm 0, the split tensor in edge.codec after; a
    frame's rewards at the bytes it really sent, :meth:`CostModel.for_payload`).
    A bottleneck's measured bytes replace the split tensors', and its encoder's FLOPs add to
    λ_k. With ``offload_cost_mode = "latency"`` o is scaled per arm by its time to reach the
    cloud, ``(t_edge,k + 8·B_k/R) / t_ref`` (:class:`~policy_store.uplink.LatencyPricing`, at
    R = policy.uplink_mbps; the cloud re-prices at a measured R with ``uplink_rate =
    "measured"``). Torch workers and the torch-free edge both price their arms here.
    """
    p = s.policy
    a = p.alpha if p.alpha is not None else facts.alpha
    a = DEFAULT_ALPHA if a is None else a  # as alpha(s) resolves it, from the facts' checkpoint
    if not facts.real_size:
        return False, CostModel(facts.exit_depths, p.gamma, p.mu, a, p.offload_cost)
    from policy_store.rewards import bytes_scale

    rel = list(facts.relative_costs)
    latency = p.offload_cost_mode == "latency"
    n = len(facts.exit_depths)
    edge_s = edge_seconds(s, n) if latency else [0.0] * n
    arm_bytes = [b[s.edge.codec] for b in facts.split_bytes]
    for k, f in facts.encoder_flops.items():  # the bottleneck's bytes, its encoder's FLOPs
        rel[k] += f / facts.total_flops
        edge_s[k] += edge_s[-1] * f / facts.total_flops  # the encoder's time, by its FLOPs
        arm_bytes[k] = facts.latent_bytes.get(k) or arm_bytes[k]
    depths = list(facts.exit_depths)
    send = _send_frame_on(s)
    if send:
        depths, rel = [0, *depths], [0.0, *rel]
        arm_bytes, edge_s = [p.jpeg_bytes, *arm_bytes], [0.0, *edge_s]
    scale, pricing, ref = None, None, None
    if p.offload_cost_mode == "bytes":
        scale, ref = bytes_scale([*arm_bytes, 0], p.jpeg_bytes), float(p.jpeg_bytes)
    elif latency:
        pricing = LatencyPricing([*arm_bytes, 0], edge_s, p.jpeg_bytes, p.uplink_mbps * 1e6)
        scale = pricing.scale(pricing.ref_rate_bps)
    cm = CostModel(
        depths,
        p.gamma,
        p.mu,
        a,
        p.offload_cost,
        relative_cost=rel,
        offload_scale=scale,
        latency=pricing,
        bytes_ref=ref,
    )
    return send, cm


def edge_seconds(s: Settings, num_exits: int) -> list[float]:
    """The edge's compute time (s) up to each of ``model``'s exits, for the "latency" mode:
    policy.edge_ms, else the checkpoint's model card (its profile's cpu_ms, measured when it
    was trained). Edge and cloud price from the same numbers, never from their own clocks:
    the cloud's hardware says nothing about the edge's."""
    ms = s.policy.edge_ms
    if ms is None:
        import json

        card = Path(s.model.checkpoint).with_suffix(".card.json")  # torch-free: not card_path
        try:
            ms = [float(a["cpu_ms"]) for a in json.loads(card.read_text())["profile"]["arms"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CostSetupError(
                f"offload_cost_mode = latency needs the edge's compute times: set policy.edge_ms "
                f"(one per exit, ms) or ship the model card {card} with its profile ({exc!r})"
            ) from None
    if len(ms) != num_exits:
        raise CostSetupError(f"policy.edge_ms has {len(ms)} times for {num_exits} exits")
    return [float(x) / 1000.0 for x in ms]


def policy(s: Settings) -> Policy:
    p = s.policy
    return make_policy(p.name, p.beta, p.discount, p.window, p.side_observations)


def arm_space(s: Settings, split_arms: int) -> ArmSpace:
    """The split arms, or (split arm, α) pairs with ``policy.alpha_grid``."""
    return ArmSpace(split_arms, s.policy.alpha_grid)


@functools.cache
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)[:12]


def _file_digest(path: Path) -> str:
    """The SHA-256 prefix of a file, hashed once per (path, size, mtime)."""
    st = Path(path).stat()
    return _digest(Path(path).resolve(), st.st_size, st.st_mtime_ns)


def _identity(model_sha: str, num_arms: int, bottleneck_sha: str | None = None) -> str:
    """``<SHA-256 prefix of the checkpoint>-<arms>a[-b<bottleneck's>]``: what the statistics
    were learned with.

    The digest (not the file name) tells a retrained model from the one before; the arm count
    also covers settings that change the arms of one checkpoint (send-frame arm, α pairs)."""
    ident = f"{model_sha[:12]}-{num_arms}a"
    return ident if bottleneck_sha is None else f"{ident}-b{bottleneck_sha[:8]}"


def namespace(s: Settings, num_arms: int, digests: ModelDigests | None = None) -> str:
    """The Redis key prefix of this deployment's policies: ``redis.namespace``, followed by the
    model's identity with ``policy.per_model`` (when the checkpoint exists: a recorder or CLI
    without one reads the bare namespace) and the bottleneck's digest when one is set (its
    bytes price the arms: another cost model). ``digests``: the checkpoint's and bottleneck's
    SHA-256 as an export's manifest records them (a torch-free edge without the files)."""
    if not s.policy.per_model:
        return s.redis.namespace
    if digests is not None:
        ident = _identity(digests.model, num_arms, digests.bottleneck)
    else:
        ckpt = Path(s.model.checkpoint)
        if not ckpt.is_file():
            return s.redis.namespace
        bn = s.model.bottleneck
        bn_sha = _file_digest(Path(bn)) if bn is not None and Path(bn).is_file() else None
        ident = _identity(_file_digest(ckpt), num_arms, bn_sha)
    return f"{s.redis.namespace}:{ident}"


def store(
    s: Settings,
    split_arms: int,
    cache_ms: float | None = None,
    digests: ModelDigests | None = None,
) -> RedisStore:
    """The Redis policy store, sized for the bandit's arms (reads cached ``cache_ms``).

    Workers, the exporter, the recorder and ``splitee policy`` all come here, so they find the
    same keys (:func:`namespace`)."""
    cache = s.redis.read_cache_ms if cache_ms is None else cache_ms
    num_arms = arm_space(s, split_arms).num_arms
    # the client of the settings: ACL user, password and TLS (splitee.redis_io)
    return RedisStore(
        s.redis.url,
        namespace(s, num_arms, digests),
        num_arms,
        cache,
        client=redis_io.client(s.redis),
    )


class CostSetupError(ValueError):
    """The settings cannot price the arms (the latency cost without the edge's compute
    times): a configuration to fix, so the worker refuses to start instead of restarting."""


class PolicyConflict(RuntimeError):
    """The store holds this deployment's policy with another arm count: another model's."""


def check_store(s: Settings, st: RedisStore) -> None:
    """Refuse, before the first batch, a policy of this deployment's key that another model
    wrote (its arm count differs): every update would fail in Redis and the worker would
    fail-stop on the same batch again and again. Redis down: nothing to check yet (the worker
    rides the outage out)."""
    from policy_store.redis_store import OUTAGE

    base = s.policy.key
    try:
        names = [n for n in st.policies() if n == base or n.startswith(base + ":")]
        found = {n: st.stored_arms(n) for n in names}
    except OUTAGE:
        return
    for name, arms in found.items():
        if arms is not None and arms != st.num_arms:
            raise PolicyConflict(
                f"policy {name!r} in Redis (namespace {st.namespace!r}) has {arms} arms, this "
                f"model {st.num_arms}: it was learned with another model; run `splitee policy "
                f"reset {name}` to start afresh, or set policy.key (SPLITEE_POLICY__KEY) to "
                "another name, or policy.per_model = true"
            )


def worker_store(s: Settings, split_arms: int, digests: ModelDigests | None = None) -> RedisStore:
    """The store a worker runs on, checked by :func:`check_store`."""
    st = store(s, split_arms, digests=digests)
    check_store(s, st)
    return st


def bandit(s: Settings, costs: CostModel, policy_store: RedisStore | None = None) -> Bandit:
    """The bandit a worker's step runs: the configured policy, ``costs`` (the model's, see
    :func:`model_and_costs`), the arm space, the policy keys and ``policy_store`` (by default
    the Redis store of the settings, sized for the arms)."""
    return Bandit(
        policy=policy(s),
        costs=costs,
        space=arm_space(s, costs.num_arms),
        keys=policy_keys(s, CONTEXTS),
        store=policy_store if policy_store is not None else store(s, costs.num_arms),
    )


def worker_model_and_bandit(
    s: Settings,
) -> tuple[SplitModel, Bandit, LatentCodec | None]:
    """The model a worker runs (checkpoint loaded with fused batch norms, the settings' own
    backbones registered first), its bandit, whose store is checked (:func:`worker_store`;
    :class:`PolicyConflict` when another model's policy holds the key) and watched by the
    worker's metrics (reachability, age, pending updates), and its bottleneck codec for that
    model's arms (loaded once: the costs and the step share it), or None."""
    from splitee import metrics
    from splitee.models import load_checkpoint  # torch: only worker processes pay for it
    from splitee.models.backbones import register_from_settings

    register_from_settings(s)  # a user's backbone comes from these settings, not the models'
    backbone = load_checkpoint(s.model.checkpoint, fuse=True)
    codec = latent_codec(s, backbone)
    model, costs = _model_and_costs(s, backbone, codec)
    b = bandit(s, costs, worker_store(s, costs.num_arms))
    metrics.watch_store(b.store)
    # the dashboards' "share of the link" divides by it, whatever the cost mode
    metrics.UPLINK_RATE.labels("configured").set(s.policy.uplink_mbps * 1e6)
    if codec is not None and model.send_frame:
        codec = codec.shifted(1)  # the worker's arms: the send-frame arm comes first
    return model, b, codec


def onnx_edge_model_and_bandit(
    s: Settings,
) -> tuple[OnnxEdgeModel, Bandit, LatentWriter | None]:
    """The torch-free edge (edge.runtime = onnxruntime): the export's edge graphs on ONNX
    Runtime, the bandit priced by the facts its manifest recorded (the cloud, on torch,
    measures the same facts on the checkpoint: :func:`costs_from_facts` prices both), the
    policy keys of the checkpoint the graphs came from, and the bottleneck's writer from the
    export's copy of its tables, at the rate points the cloud chooses."""
    from splitee import metrics
    from splitee.latent_messages import LatentWriter, choose_rates
    from splitee.onnx_edge import OnnxEdgeModel
    from splitee.onnx_manifest import ManifestError, latent_facts, read_manifest

    if s.edge.onnx_dir is None:
        raise ManifestError("edge.runtime = onnxruntime needs edge.onnx_dir")
    m = read_manifest(s.edge.onnx_dir)
    if not m.complete:
        raise ManifestError(f"{m.directory}: a partial export (not every arm has its graphs)")
    check_export(s, m)
    bn = m.bottleneck
    rates = choose_rates(bn.card, bn.arms, s.model.bottleneck_max_drop) if bn else {}
    send, costs = costs_from_facts(s, latent_facts(m, rates))
    model = OnnxEdgeModel(
        m,
        threads=s.edge.threads,
        int8=s.edge.onnx_int8,
        send_frame=send,
        steps={k: bn.steps[r] for k, r in rates.items()} if bn else None,
    )
    digests = ModelDigests(m.sha256, bn.sha256 if bn else None)
    b = bandit(s, costs, worker_store(s, costs.num_arms, digests))
    metrics.watch_store(b.store)
    writer = None
    if bn is not None:
        writer = LatentWriter(bn.tables(m.directory), rates, 1 if send else 0)
    return model, b, writer


def check_export(s: Settings, m: OnnxManifest) -> None:
    """Refuse an export of another model than the settings': the cloud runs model.checkpoint
    (and model.bottleneck), so a stale export would price, code and key everything for a
    model nobody else runs. Files absent on an edge box: the manifest's word is taken."""
    from splitee.onnx_manifest import ManifestError

    ckpt, bn = Path(s.model.checkpoint), s.model.bottleneck
    if ckpt.is_file() and sha256_file(ckpt) != m.sha256:
        raise ManifestError(
            f"{m.directory} was exported from {m.checkpoint} ({m.sha256[:12]}…), not from "
            f"{ckpt}: run `splitee export` again"
        )
    if (bn is None) != (m.bottleneck is None):
        raise ManifestError(
            f"{m.directory}: model.bottleneck is {'unset' if bn is None else bn}, the export "
            f"{'has no' if m.bottleneck is None else 'has a'} bottleneck: export with the same"
        )
    bn_file = bn is not None and m.bottleneck is not None and Path(bn).is_file()
    if bn_file and sha256_file(Path(bn)) != m.bottleneck.sha256:
        raise ManifestError(f"{m.directory}: exported with another bottleneck than {bn}")


def transmission_decision(s: Settings) -> TDMechanism | None:
    """The edge's channel-aware keep-or-offload decision (None: the ``C ≥ α`` rule alone)."""
    c = s.channel
    if not c.enabled or c.td == "alpha":
        return None
    if c.td == "learned":
        from splitee.td import Learned

        if c.td_file is None:
            raise ValueError("channel.td = learned needs channel.td_file (td-learned.json)")
        return Learned.load(c.td_file)
    return Always() if c.td == "always" else Never()
