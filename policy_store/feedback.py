"""What one live frame teaches the bandit: which arms it reveals, and with what reward.

The edge (frames that exited) and the cloud (offloaded frames, once ``C_L`` is known) both call
:func:`observations`; which arms are revealed is decided by the policy's own
:meth:`~policy_store.policies.Policy.observe` — the same function the offline replay uses — and
the rewards by :meth:`~policy_store.rewards.CostModel.rewards`, the same formula as the offline
reward matrix. So live and offline learning cannot disagree.

>>> from policy_store.policies import ISplitEE
>>> cm = CostModel(depths=(3, 6, 9), alpha=0.5)
>>> space = ArmSpace(3)
>>> # the final arm ran at the edge: C_L is known, so arm 0 (C=0.2 < α) is revealed too
>>> [(j, round(r, 2)) for j, r in observations(ISplitEE(), cm, space, 2, [0.2, 0.3, 0.8])]
[(2, -0.1), (0, 0.0), (1, -0.3)]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from policy_store.arms import ArmSpace
from policy_store.policies import Policy
from policy_store.rewards import CostModel


def observations(
    policy: Policy,
    cost_model: CostModel,
    space: ArmSpace,
    pick: int,
    confidences: Sequence[float | None],
    c_final: float | None = None,
    offloaded: bool | None = None,
    side: bool = True,
) -> list[tuple[int, float]]:
    """``(bandit arm, reward)`` pairs one frame reveals, the pulled arm ``pick`` first.

    ``confidences`` has one entry per split arm (None or NaN where the exit was not computed);
    ``c_final`` is the cloud's ``C_L`` for an offloaded frame — when the final arm ran at the
    edge, ``C_L`` is its own confidence. ``offloaded`` overrides the ``C ≥ α`` rule for the
    pulled arm when another mechanism (a transmission decision) chose whether the frame left
    the edge; side observations are then off, as they are when ``side`` is False. With (arm, α)
    pairs they reach every threshold of the pulled split arm and of the shallower ones. A
    shallower arm whose reward needs an unknown ``C_L`` is not revealed.
    """
    arm = int(space.split_arm(pick))
    conf = np.array([np.nan if c is None else float(c) for c in confidences], dtype=np.float64)
    final = cost_model.num_arms - 1
    if c_final is None and arm == final:
        c_final = float(conf[final])
    known = ~np.isnan(conf)
    # every bandit arm's exit rule: one α, or each (split arm, α) pair's own
    alphas = space.alpha_grid or (cost_model.alpha,)
    models = [cost_model.with_alpha(a) for a in alphas] if space.pairs else [cost_model]
    exits = np.concatenate([cm.exits_at(np.where(known, conf, 0.0)) for cm in models])
    if offloaded is not None:
        exits[pick] = not offloaded
    if c_final is None and not exits[pick]:
        raise ValueError(f"arm {arm} offloaded (C={conf[arm]:.3f} < α): its reward needs C_L")
    c_l = np.nan if c_final is None else float(c_final)
    n = cost_model.num_arms
    rewards = np.concatenate(
        [cm.rewards(conf, exits[t * n : (t + 1) * n], c_l) for t, cm in enumerate(models)]
    )
    if side and offloaded is None:
        split = n if space.pairs else None
        mask = policy.observe(
            np.array(pick), np.tile(known, len(alphas)), exits, np.array(c_final is not None), split
        )
    else:
        mask = np.arange(space.num_arms) == pick
    out = [(int(pick), float(rewards[pick]))]
    out += [(int(j), float(rewards[j])) for j in np.flatnonzero(mask) if j != pick]
    return out
