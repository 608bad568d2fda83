"""The policy pieces every process builds from the settings, built in one place.

Workers, the exporter, the recorder and the CLI must agree on the cost model, the policy and
the size of the statistics in Redis — with threshold adaptation the bandit's arms are
(split arm, α) pairs, so a store sized by split arms alone would misread the hash.
"""

from __future__ import annotations

from collections.abc import Sequence

from policy_store.policies import Policy, make_policy
from policy_store.redis_store import RedisStore
from policy_store.rewards import CostModel
from splitee.settings import Settings


def cost_model(s: Settings, depths: Sequence[int]) -> CostModel:
    p = s.policy
    return CostModel(depths, p.gamma, p.mu, p.alpha, p.offload_cost)


def policy(s: Settings) -> Policy:
    p = s.policy
    return make_policy(p.name, p.beta, p.discount, p.window, p.side_observations)


def policy_arms(s: Settings, split_arms: int) -> int:
    """Arms of the bandit: the split arms, or (split arm, α) pairs with ``policy.alpha_grid``."""
    return split_arms * max(1, len(s.policy.alpha_grid))


def store(s: Settings, split_arms: int, cache_ms: float | None = None) -> RedisStore:
    """The Redis policy store, sized for the bandit's arms (reads cached ``cache_ms``)."""
    cache = s.redis.read_cache_ms if cache_ms is None else cache_ms
    return RedisStore(s.redis.url, s.redis.namespace, policy_arms(s, split_arms), cache)
