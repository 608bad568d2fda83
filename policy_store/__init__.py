"""The whole bandit: arm space, policies, rewards, exit decisions, feedback, offline replay, stores.

Pure numpy; only :mod:`policy_store.redis_store` talks to a server (enforced by import-linter).
"""

from policy_store.arms import ArmSpace
from policy_store.bandit import Bandit
from policy_store.decisions import AlphaRule, TDInputs, TDMechanism
from policy_store.feedback import observations
from policy_store.policies import POLICIES, UCB1, ISplitEE, Policy, make_policy
from policy_store.rewards import CostModel
from policy_store.stats import ArmStats, Delta
from policy_store.store import MemoryStore, PolicyStore

__all__ = [
    "POLICIES",
    "UCB1",
    "AlphaRule",
    "ArmSpace",
    "ArmStats",
    "Bandit",
    "CostModel",
    "Delta",
    "ISplitEE",
    "MemoryStore",
    "Policy",
    "PolicyStore",
    "TDInputs",
    "TDMechanism",
    "make_policy",
    "observations",
]
