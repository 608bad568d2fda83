"""What each split arm costs: FLOPs and measured CPU time of its prefix, bytes of its tensor.

The costs λ_k of a backbone whose blocks differ wildly in cost (an EfficientNet's early,
high-resolution blocks against its late, wide ones) should follow what the edge really spends,
not a block count: :func:`relative_costs` gives FLOPs of prefix + exit head over the final
exit's, the measured quantity the cost model scales (``policy_store.rewards.CostModel``).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from splitee.models.split_api import SplitModel
from splitee.wire import encode_tensor


@torch.inference_mode()
def prefix_flops(model: SplitModel, k: int) -> int:
    """FLOPs (multiply-adds count 2) of one frame through prefix k and exit head k."""
    size = model.input_size
    x = torch.zeros(1, 3, size, size)
    with FlopCounterMode(display=False) as fc:
        model.exit_logits(model.prefix(x, k), k)
    return int(fc.get_total_flops())


@torch.inference_mode()
def prefix_cpu_ms(model: SplitModel, k: int, repeats: int = 5) -> float:
    """Median wall time (ms) of one frame through prefix k and exit head k, one thread."""
    size = model.input_size
    x = torch.rand(1, 3, size, size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.exit_logits(model.prefix(x, k), k)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.exit_logits(model.prefix(x, k), k)
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return round(1000 * float(np.median(times)), 2)


def split_bytes(model: torch.nn.Module, k: int) -> dict[str, int]:
    """Bytes of arm k's split tensor on the wire (splitee.wire header included), per codec."""
    shape = model.feature_shape(k)
    x = np.zeros(shape, np.float32)
    return {c: len(encode_tensor(x, c)) for c in ("float32", "float16", "int8")}


def profile_model(model: torch.nn.Module, jpeg_bytes: np.ndarray | None = None) -> dict:
    """Per arm: shape, FLOPs, relative cost, CPU ms and bytes; plus the median JPEG frame."""
    L = model.num_exits
    flops = [prefix_flops(model, k) for k in range(L)]
    arms = []
    for k in range(L):
        row = {
            "arm": k + 1,
            "shape": list(model.feature_shape(k)),
            "flops": flops[k],
            "relative_cost": round(flops[k] / flops[-1], 4),
            "cpu_ms": prefix_cpu_ms(model, k),
        }
        if k < L - 1:
            row["bytes"] = split_bytes(model, k)
        arms.append(row)
    out: dict = {"arms": arms}
    if jpeg_bytes is not None and len(jpeg_bytes):
        out["jpeg_bytes_median"] = int(np.median(jpeg_bytes))
    return out


def relative_costs(model: torch.nn.Module) -> list[float]:
    """FLOPs of every arm over the final arm's (1.0 for the final exit)."""
    flops = [prefix_flops(model, k) for k in range(model.num_exits)]
    return [f / flops[-1] for f in flops]
