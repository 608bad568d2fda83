"""The docstring examples of every module hold.

Modules are found, not listed: a list by hand went stale (four modules' examples never ran), so
every source module of the packages below whose text holds an example prompt is imported and
its examples run. Only those modules are imported, so the tier stays fast.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.conftest import REPO

PACKAGES = ("splitee", "policy_store", "producers", "edge_workers", "cloud_workers")
PROMPT = ">>> "


def modules_with_examples() -> list[str]:
    """Dotted names of the packages' modules whose source holds a doctest prompt."""
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if PROMPT in path.read_text(encoding="utf-8"):
                parts = path.relative_to(REPO).with_suffix("").parts
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = modules_with_examples()


def test_discovery_finds_the_known_modules():
    """A broken walk would silently run nothing: the modules that had examples are found."""
    known = ("splitee.wire", "policy_store.policies", "producers.schedule", "splitee.worker.stall")
    for name in known:
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has a {PROMPT!r} but no example doctest can run"
    assert result.failed == 0
