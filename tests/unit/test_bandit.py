"""One bandit for both batch steps, built once from the settings."""

from __future__ import annotations

import pytest

from policy_store import ArmSpace, Bandit, CostModel, Delta, MemoryStore, make_policy
from policy_store.keys import PolicyKeys
from splitee import policy_setup
from splitee.settings import load_settings


def test_the_bandit_of_the_settings_has_every_piece_sized_alike(tmp_path):
    (tmp_path / "s.toml").write_text(
        "[policy]\nname = 'ucb1'\nalpha_grid = [0.3, 0.6]\nkey = 'k'\nscope = 'camera'\n"
    )
    s = load_settings(tmp_path / "s.toml")
    costs = CostModel((2, 4, 6, 9))
    b = policy_setup.bandit(s, costs)
    assert b.policy.name == "ucb1" and not b.policy.side_observations
    assert (b.space.split_arms, b.space.num_arms) == (4, 8)
    assert b.keys.for_frame("cam-1") == "k:cam-1"
    assert b.store.num_arms == 8  # the store holds every (arm, α) pair
    assert b.new_delta().n.shape == (8,)


def test_a_bandit_refuses_an_arm_space_of_another_model_and_skips_empty_deltas():
    costs, store = CostModel((2, 4, 9)), MemoryStore(3)
    with pytest.raises(ValueError, match="split arms"):
        Bandit(
            policy=make_policy("ucb1"),
            costs=costs,
            space=ArmSpace(4),
            keys=PolicyKeys(),
            store=store,
        )
    b = Bandit(
        policy=make_policy("ucb1"), costs=costs, space=ArmSpace(3), keys=PolicyKeys(), store=store
    )
    d = Delta.zeros(3)
    d.add(1, [(1, 0.5)], "f1")
    b.apply({"global": d, "empty": Delta.zeros(3)})
    assert store.policies() == ["global"] and float(store.read("global").t) == 1
