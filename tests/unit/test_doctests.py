"""The docstring examples in the core modules run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "splitee.wire",
    "splitee.context",
    "producers.schedule",
    "splitee.distortions",
    "policy_store.policies",
    "policy_store.rewards",
    "policy_store.store",
    "policy_store.stats",
    "policy_store.arms",
    "policy_store.decisions",
    "policy_store.feedback",
    "splitee.worker.stall",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
