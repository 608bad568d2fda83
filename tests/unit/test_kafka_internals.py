"""The faust and aiokafka private attributes the workers use still exist in the installed
versions: an upgrade that renames one fails here, not in a live worker."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from splitee.worker import kafka_internals
from splitee.worker.kafka_internals import REQUIRED


def _owner(path: str) -> object:
    module, _, name = path.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, name) if name else obj


def _instance(owner: object) -> object:
    """A built instance of ``owner``, for attributes set in ``__init__``."""
    if getattr(owner, "__name__", "") == "Stream":
        import faust

        app = faust.App("splitee-internals-check", autodiscover=False)
        return app.stream(app.channel())
    if getattr(owner, "__name__", "") == "_DefaultRecordBatchPy":
        b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 16)
        b.append(0, timestamp=1, key=b"k", value=b"v", headers=[])
        return owner(bytes(b.build()))
    raise AssertionError(f"no recipe to build a {owner!r}: add one to _instance")


@pytest.mark.parametrize("owner,attr,what", REQUIRED, ids=[f"{o}.{a}" for o, a, _ in REQUIRED])
def test_private_attribute_exists(owner, attr, what):
    obj = _owner(owner)
    if what.startswith("instance:"):
        obj = _instance(obj)
    where = "splitee/worker/kafka_internals.py"
    assert hasattr(obj, attr), f"{owner} has no {attr} ({what}): see {where}"


def test_every_private_use_is_listed():
    """Each private name this module touches appears in REQUIRED, so the check above covers it."""
    text = Path(kafka_internals.__file__).read_text(encoding="utf-8")
    code = text.split("\n)\n", 1)[1]  # what follows the table
    used = set(re.findall(r"\.(_[A-Za-z]\w*)", code)) | set(re.findall(r"import (_\w+)", code))
    assert used and used <= {attr for _, attr, _ in REQUIRED}


def test_lenient_batch_reads_through_the_wrapped_buffer():
    seen = []

    def wrap(buf):
        seen.append(type(buf))
        return buf

    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 16)
    for i in range(3):
        b.append(i, timestamp=1, key=b"k", value=b"v%d" % i, headers=[])
    records = list(kafka_internals.lenient_python_batch(bytes(b.build()), wrap))
    assert [r.value for r in records] == [b"v0", b"v1", b"v2"] and seen
