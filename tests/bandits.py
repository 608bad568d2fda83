"""A bandit for the batch steps under test, built the way a deployment builds one."""

from __future__ import annotations

from collections.abc import Sequence

from policy_store import ArmSpace, Bandit, CostModel, Policy, PolicyStore
from policy_store.keys import PolicyKeys


def bandit(
    costs: CostModel,
    store: PolicyStore,
    policy: Policy,
    *,
    alpha_grid: Sequence[float] = (),
    keys: PolicyKeys | None = None,
) -> Bandit:
    """``policy`` over ``costs``' split arms (× ``alpha_grid``), global keys unless given."""
    return Bandit(
        policy=policy,
        costs=costs,
        space=ArmSpace(costs.num_arms, alpha_grid),
        keys=keys or PolicyKeys(),
        store=store,
    )
