"""Which policy a frame belongs to, and which policy names a deployment can have.

One policy for every camera (``global``), one per camera (``camera``: ``<base>:<camera id>``)
or one per context estimated from the image (``context``: ``<base>:ctx:<context>``). The cloud
checks the policy name an offload carries against these rules before it touches the store, so
an offload record is no open door to any Redis key.

>>> keys = PolicyKeys("global", "camera")
>>> keys.for_frame("cam-1"), keys.valid("global:cam-1", "cam-1"), keys.valid("other", "cam-1")
('global:cam-1', True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyKeys:
    base: str = "global"
    scope: str = "global"  # "global", "camera" or "context"
    contexts: Sequence[str] = ("dark", "noisy", "blurry", "normal")

    def __post_init__(self) -> None:
        if self.scope not in ("global", "camera", "context"):
            raise ValueError(f"unknown policy scope {self.scope!r}")

    def for_frame(self, camera: str, context: str | None = None) -> str:
        """The policy of a frame from ``camera`` (``context`` only for the context scope)."""
        if self.scope == "camera":
            return f"{self.base}:{camera}"
        if self.scope == "context":
            if context not in self.contexts:
                raise ValueError(f"unknown context {context!r}")
            return f"{self.base}:ctx:{context}"
        return self.base

    def valid(self, key: str, camera: str) -> bool:
        """Whether ``key`` is a policy a frame from ``camera`` can belong to."""
        if self.scope == "camera":
            return key == f"{self.base}:{camera}"
        if self.scope == "context":
            return key in {f"{self.base}:ctx:{c}" for c in self.contexts}
        return key == self.base
