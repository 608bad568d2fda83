"""The documentation stays navigable and in step with the code: the settings reference is
generated from the code, every relative link and anchor resolves, the README stays short and
keeps the test command CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from splitee.settings import settings_markdown
from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to -."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    heads = re.findall(r"^#{1,6} +(.+?) *$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def _links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]  # relative ones


def test_settings_reference_is_current():
    page = (REPO / "docs" / "settings.md").read_text()
    assert settings_markdown() in page, "run splitee settings --markdown into docs/settings.md"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        missing_anchor = anchor and dest.suffix == ".md" and anchor not in _anchors(dest)
        if not dest.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: broken links {broken}"


def test_links_are_found():
    """The link pattern itself works: the README links to its docs pages."""
    assert {"docs/architecture.md", "docs/settings.md"} <= set(_links(REPO / "README.md"))


def test_readme_is_short_and_keeps_the_ci_test_command():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 260
    assert "python -m pytest -q" in readme  # .ci/run runs the README's test command
