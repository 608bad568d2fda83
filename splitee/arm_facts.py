"""What the cost model needs to know of a model's arms, without the model.

The edge and the cloud must price the arms identically (their rewards update the same
statistics). A torch worker measures these facts on the model it loaded
(:func:`splitee.policy_setup.model_and_costs`); a torch-free edge reads the same numbers from
the export's manifest (:mod:`splitee.onnx_manifest`), measured by the same functions at export
time. :func:`splitee.policy_setup.costs_from_facts` turns either into the one cost model.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class ArmFacts:
    """Per backbone arm (0-based, the send-frame arm not included)."""

    exit_depths: list[int]
    real_size: bool
    #: the exit threshold α the checkpoint carries in its metadata (None: it has none)
    alpha: float | None = None
    #: FLOPs of each arm's prefix and exit head over the final arm's (real-size models only)
    relative_costs: list[float] = field(default_factory=list)
    #: FLOPs of the final arm (the denominator of relative_costs)
    total_flops: int = 0
    #: bytes of each non-final arm's split tensor on the wire, per tensor codec
    split_bytes: list[dict[str, int]] = field(default_factory=list)
    #: a learned bottleneck's arms: its encoder's FLOPs, added to the arm's edge cost
    encoder_flops: dict[int, int] = field(default_factory=dict)
    #: a learned bottleneck's arms: median message bytes at the chosen rate (None: no card)
    latent_bytes: dict[int, int | None] = field(default_factory=dict)
