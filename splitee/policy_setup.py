"""The bandit pieces every process builds from the settings, built in one place.

Workers, the exporter, the recorder and the CLI must agree on the cost model, the policy, the
arm space and the size of the statistics in Redis — with threshold adaptation the bandit's
arms are (split arm, α) pairs, so a store sized by split arms alone would misread the hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from policy_store.arms import ArmSpace
from policy_store.decisions import Always, Never, TDMechanism
from policy_store.policies import Policy, make_policy
from policy_store.redis_store import RedisStore
from policy_store.rewards import CostModel
from splitee import redis_io
from splitee.files import model_alpha
from splitee.settings import Settings

if TYPE_CHECKING:  # the models import torch; this module stays light without them
    from splitee.models.split_api import SplitModel

#: α when neither the settings nor the checkpoint give one (SplitEE's and I-SplitEE's value)
DEFAULT_ALPHA = 0.5


def alpha(s: Settings, checkpoint: Path | None = None) -> float:
    """The exit threshold α: policy.alpha when set, else the checkpoint's own (its metadata),
    else 0.5. Every process resolves it here, so edge, cloud and the offline tools agree."""
    if s.policy.alpha is not None:
        return s.policy.alpha
    own = model_alpha(checkpoint or s.model.checkpoint)
    return DEFAULT_ALPHA if own is None else own


def cost_model(s: Settings, depths: Sequence[int]) -> CostModel:
    p = s.policy
    return CostModel(depths, p.gamma, p.mu, alpha(s), p.offload_cost)


def _send_frame_on(s: Settings) -> bool:
    on = s.policy.send_frame_arm
    return s.policy.offload_cost_mode == "bytes" if on is None else bool(on)


def send_frame(s: Settings, model: SplitModel) -> bool:
    """Whether arm 0 sends the frame: a real-size backbone, and policy.send_frame_arm (on by
    default with the bytes-based offload cost)."""
    return _send_frame_on(s) and model.real_size


def split_arms(s: Settings) -> int:
    """The bandit's split arms for the configured checkpoint, from its metadata alone (no
    torch, for the exporter, the evaluator, the recorder and the CLI): its exits, plus the
    send-frame arm of a real-size backbone when that is on."""
    from splitee.files import checkpoint_metadata, exit_depths

    n = len(exit_depths(s.model.checkpoint))
    real = "backbone" in checkpoint_metadata(s.model.checkpoint)
    return n + 1 if real and _send_frame_on(s) else n


def model_and_costs(s: Settings, model: SplitModel) -> tuple[SplitModel, CostModel]:
    """The model the workers run and its cost model, from the settings.

    CIFAR ResNets: λ_k = γ·ℓ_k, constant o (as always). Real-size backbones: λ_k from the
    FLOPs of each prefix (splitee.models.profile), the send-frame arm 0 when on
    (:func:`send_frame`; the model is wrapped in FrameArmNet), and with
    ``offload_cost_mode = "bytes"`` o scaled per arm by its encoded bytes over
    policy.jpeg_bytes (the frame itself for arm 0, the split tensor in edge.codec after).
    """
    if not model.real_size:
        return model, cost_model(s, model.exit_depths)
    from policy_store.rewards import bytes_scale
    from splitee.models.frame_arm import FrameArmNet
    from splitee.models.profile import relative_costs, split_bytes

    p = s.policy
    rel = relative_costs(model)
    arm_bytes = [split_bytes(model, k)[s.edge.codec] for k in range(model.num_exits - 1)]
    depths = list(model.exit_depths)
    if send_frame(s, model):
        model, depths, rel = FrameArmNet(model), [0, *depths], [0.0, *rel]
        arm_bytes = [p.jpeg_bytes, *arm_bytes]
    scale = None
    if p.offload_cost_mode == "bytes":
        scale = bytes_scale([*arm_bytes, 0], p.jpeg_bytes)
    cm = CostModel(
        depths, p.gamma, p.mu, alpha(s), p.offload_cost, relative_cost=rel, offload_scale=scale
    )
    return model, cm


def policy(s: Settings) -> Policy:
    p = s.policy
    return make_policy(p.name, p.beta, p.discount, p.window, p.side_observations)


def arm_space(s: Settings, split_arms: int) -> ArmSpace:
    """The split arms, or (split arm, α) pairs with ``policy.alpha_grid``."""
    return ArmSpace(split_arms, s.policy.alpha_grid)


def store(s: Settings, split_arms: int, cache_ms: float | None = None) -> RedisStore:
    """The Redis policy store, sized for the bandit's arms (reads cached ``cache_ms``)."""
    cache = s.redis.read_cache_ms if cache_ms is None else cache_ms
    num_arms = arm_space(s, split_arms).num_arms
    # the client of the settings: ACL user, password and TLS (splitee.redis_io)
    return RedisStore(
        s.redis.url, s.redis.namespace, num_arms, cache, client=redis_io.client(s.redis)
    )


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
