"""Structured logs: one JSON object per line, quiet by default, one logger louder on demand."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from splitee.logs import configure_logging
from splitee.settings import Settings


def test_one_logger_can_be_louder_than_the_rest(capsys) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("splitee.uplink").level)
    try:
        configure_logging("WARNING", {"splitee.uplink": "DEBUG"})
        logging.getLogger("splitee.uplink").debug("uplink sample", extra={"bits": 8000.0})
        logging.getLogger("kafka.conn").debug("a library's chatter")
        logging.getLogger("splitee.edge").info("not at WARNING")
        lines = capsys.readouterr().err.strip().splitlines()
        assert [json.loads(ln)["msg"] for ln in lines] == ["uplink sample"]
        assert json.loads(lines[0])["bits"] == 8000.0
    finally:
        root.handlers[:], _, level = saved
        root.setLevel(saved[1])
        logging.getLogger("splitee.uplink").setLevel(level)


def test_per_logger_levels_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SPLITEE_LOG_LEVELS", '{"splitee.uplink": "DEBUG"}')
    assert Settings().log_levels == {"splitee.uplink": "DEBUG"}


def test_an_unknown_level_is_refused_when_the_settings_load(monkeypatch) -> None:
    monkeypatch.setenv("SPLITEE_LOG_LEVELS", '{"splitee.uplink": "LOUD"}')
    with pytest.raises(ValidationError, match="unknown log levels"):
        Settings()
