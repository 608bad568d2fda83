"""Policies (pure math) and the stores that hold their statistics."""

from policy_store.policies import POLICIES, UCB1, ArmStats, ISplitEE, Policy, make_policy
from policy_store.rewards import CostModel
from policy_store.store import Delta, MemoryStore, PolicyStore

__all__ = [
    "POLICIES",
    "UCB1",
    "ArmStats",
    "CostModel",
    "Delta",
    "ISplitEE",
    "MemoryStore",
    "Policy",
    "PolicyStore",
    "make_policy",
]
