"""One worker's bandit: every piece both batch steps need to choose, price and learn arms.

The edge step pulls arms and learns the rewards of frames that exit there; the cloud step
learns those of offloaded frames once it knows ``C_L``. They must agree on the policy (how a
frame's rewards fold in), the cost model, the arm space (split arms or (arm, α) pairs), the
policy keys (which policy a frame belongs to, and which names an offload may carry) and the
store — so a worker builds them once (:func:`splitee.policy_setup.bandit`) and hands the same
bundle to its step, and tests hand one bundle to both steps as a deployment does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from policy_store.arms import ArmSpace
from policy_store.keys import PolicyKeys
from policy_store.policies import Policy
from policy_store.rewards import CostModel
from policy_store.stats import Delta
from policy_store.store import PolicyStore


@dataclass(frozen=True, kw_only=True)
class Bandit:
    """The policy, cost model, arm space, policy keys and store of one deployment."""

    policy: Policy
    costs: CostModel
    space: ArmSpace
    keys: PolicyKeys
    store: PolicyStore

    def __post_init__(self) -> None:
        if self.space.split_arms != self.costs.num_arms:
            raise ValueError(
                f"arm space of {self.space.split_arms} split arms for a cost model of "
                f"{self.costs.num_arms}"
            )

    def new_delta(self) -> Delta:
        """An empty batch of this policy's updates, sized for the bandit's arms."""
        return self.policy.delta(self.space.num_arms)

    def apply(self, deltas: Mapping[str, Delta]) -> None:
        """Fold a batch's deltas into the store: one call per policy, empty ones skipped."""
        for key, delta in deltas.items():
            if delta:
                self.store.apply(key, delta)
