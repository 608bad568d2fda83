"""A test-only fault: the records of chosen frames make a worker's batch step raise.

A batch step that raises is isolated by the runtime
(:func:`splitee.worker.runtime.process_isolated`): the batch is retried record by record, the
culprit becomes a dead letter with reason ``processing_error`` and the rest are processed. No
valid input makes a step raise — a record that did would be a bug, to be fixed where it is
found — so tests reach that path through this wrapper instead of monkeypatching a worker
process. A worker wraps its step only when started with the hidden option
``--fail-on-frame PREFIX`` (``splitee edge``, ``splitee cloud``); even then only frames whose id
starts with the prefix are affected, and they end as dead letters, like any poison record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from splitee.worker.records import InRecord, StepOutput

if TYPE_CHECKING:
    from splitee.worker.runtime import BatchStep


class InjectedFault(RuntimeError):
    """Raised for a frame chosen by :class:`FailOnFrames`."""


def frame_id(record: InRecord) -> str:
    """The record's ``frame_id`` header as text ("" when it has none); never raises."""
    for key, value in record.headers:
        if key in ("frame_id", b"frame_id"):
            return bytes(value or b"").decode("utf-8", "replace")
    return ""


class FailOnFrames:
    """``step``, except that a batch holding a frame whose id starts with ``prefix`` raises."""

    def __init__(self, step: BatchStep, prefix: str) -> None:
        if not prefix:
            raise ValueError("an empty prefix would fail every frame")
        self.step = step
        self.prefix = prefix

    def process(self, records: list[InRecord]) -> StepOutput:
        for rec in records:
            if frame_id(rec).startswith(self.prefix):
                raise InjectedFault(f"injected fault for frame {frame_id(rec)!r}")
        return self.step.process(records)

    def apply(self, out: StepOutput) -> None:
        self.step.apply(out)


def with_faults(step: BatchStep, fail_on_frame: str | None) -> BatchStep:
    """``step`` wrapped in :class:`FailOnFrames` when a prefix is given, else ``step`` itself."""
    return FailOnFrames(step, fail_on_frame) if fail_on_frame else step
