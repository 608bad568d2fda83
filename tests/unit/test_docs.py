"""The README's settings table is generated from the code and must stay in step with it."""

from __future__ import annotations

from splitee.settings import settings_markdown
from tests.conftest import REPO


def test_readme_settings_table_is_current():
    readme = (REPO / "README.md").read_text()
    assert settings_markdown() in readme, "run: splitee settings --markdown, paste into README"
