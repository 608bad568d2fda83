"""Which policy a frame belongs to, and which policy names a deployment can have.

One policy for every camera (``global``), one per camera (``camera``: ``<base>:<camera id>``)
or one per context estimated from the image (``context``: ``<base>:ctx:<context>``). The cloud
checks the policy name an offload carries against these rules before it touches the store, so
an offload record is no open door to any Redis key.

Per camera, the keys are bounded by an allow-list (``cameras``; the workers pass
``policy.cameras``, by default the cameras the settings declare): a frame from any other camera
id uses the global policy, so a camera id nobody configured creates no key. An allow-list, not
a cap on the ids seen first: every worker and the cloud's check then agree without sharing
state, whatever order frames arrive in and across restarts.

>>> keys = PolicyKeys("global", "camera", cameras=frozenset({"cam-1"}))
>>> keys.for_frame("cam-1"), keys.valid("global:cam-1", "cam-1"), keys.valid("other", "cam-1")
('global:cam-1', True, False)
>>> keys.for_frame("cam-9"), keys.valid("global:cam-9", "cam-9")
('global', False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyKeys:
    base: str = "global"
    scope: str = "global"  # "global", "camera" or "context"
    contexts: Sequence[str] = ("dark", "noisy", "blurry", "normal")
    cameras: frozenset[str] | None = None  # scope "camera": the ids with their own (None: any)

    def __post_init__(self) -> None:
        if self.scope not in ("global", "camera", "context"):
            raise ValueError(f"unknown policy scope {self.scope!r}")

    def for_frame(self, camera: str, context: str | None = None) -> str:
        """The policy of a frame from ``camera`` (``context`` only for the context scope)."""
        if self.scope == "camera":
            if self.cameras is None or camera in self.cameras:
                return f"{self.base}:{camera}"
            return self.base
        if self.scope == "context":
            if context not in self.contexts:
                raise ValueError(f"unknown context {context!r}")
            return f"{self.base}:ctx:{context}"
        return self.base

    def valid(self, key: str, camera: str) -> bool:
        """Whether ``key`` is a policy a frame from ``camera`` can belong to."""
        if self.scope == "camera":
            return key == self.for_frame(camera)
        if self.scope == "context":
            return key in {f"{self.base}:ctx:{c}" for c in self.contexts}
        return key == self.base
