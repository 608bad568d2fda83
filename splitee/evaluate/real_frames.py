"""``splitee evaluate`` for a registered backbone on real-size frames (Caltech-101 and others).

Differences from the CIFAR reproduction, all about what a real frame costs:

* λ_k follows the measured cost of each arm's prefix and exit head: its FLOPs over the final
  exit's (:func:`splitee.models.profile.relative_costs`), scaled so the final exit costs
  γ·ℓ_L as with block counts (I-SplitEE's normalisation: cost per block, the final exit the
  full network), instead of the block count;
* a second evaluation adds arm 0, "send the JPEG to the cloud and compute nothing at the
  edge", with the offload cost in the "bytes" mode: o·bytes_k / median JPEG bytes for every
  arm k (arm 0's bytes are the median JPEG's, arm k's the encoded split tensor's in the
  edge's codec), so the policy can weigh a frame's own bytes against a feature tensor's;
  arm 0 sent for one frame is priced at that frame's own JPEG, as the live workers do.

Both write the usual summary, table and plots; the second into ``<out>/send-frame/``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from splitee.data import Dataset
from splitee.evaluate.runner import EvalConfig, SettingOutputs, run_evaluation, write_outputs


def load_test_frames(path: Path, size: int, cache_dir: Path | None) -> tuple[Dataset, np.ndarray]:
    """The test split (Caltech-101) or the whole folder, fitted to ``size``; JPEG sizes too."""
    from splitee.images import load_images, open_source

    src = open_source(path, "test")
    sizes = np.array([len(b) for _, b, _ in src.iter_bytes()])
    return load_images(src, size, None if cache_dir is None else cache_dir / "images"), sizes


def with_send_frame(
    outputs: list[SettingOutputs], jpeg_bytes: np.ndarray, arm_bytes: list[int]
) -> list[SettingOutputs]:
    """Arm 0 = send the frame: nothing runs at the edge, so its confidence is 0 (< any α:
    always offloaded, the cloud's final exit answers) and it has no edge prediction. Each
    frame's arm 0 carries its own JPEG, arm k the split tensor's ``arm_bytes[k - 1]``."""
    n = len(jpeg_bytes)
    sent = np.zeros((n, len(arm_bytes) + 2))
    sent[:, 0], sent[:, 1:-1] = jpeg_bytes, arm_bytes
    return [
        SettingOutputs(so.distortion, so.outputs.with_frame_arm(), so.labels, offload_bytes=sent)
        for so in outputs
    ]


def evaluate_real(
    outputs: list[SettingOutputs],
    info: dict,
    model,
    jpeg_bytes: np.ndarray,
    cfg: EvalConfig,
    out_dir: Path,
    codec: str = "float16",
) -> dict[str, dict]:
    """Both evaluations (split arms, constant o; plus arm 0 with bytes-based o); returns
    their summaries by name after writing them."""
    from splitee.models.profile import relative_costs, split_bytes

    rel = relative_costs(model)
    depths = list(info["exit_depths"])
    L = len(depths)
    median = float(np.median(jpeg_bytes))
    arm_bytes = [split_bytes(model, k)[codec] for k in range(L - 1)]
    info = {
        **info,
        "cost_basis": "flops",
        "relative_cost": [round(r, 4) for r in rel],
        "jpeg_bytes_median": int(median),
        "split_bytes": arm_bytes,
        "codec": codec,
    }
    results = {}
    summary = run_evaluation(outputs, depths, cfg, cost_args={"relative_cost": rel})
    summary["model"] = info
    write_outputs(summary, out_dir)
    results["split-arms"] = summary

    scale = [1.0, *(b / median for b in arm_bytes), 0.0]
    frame_cfg = replace(cfg, sweep_o=[])
    summary2 = run_evaluation(
        with_send_frame(outputs, jpeg_bytes, arm_bytes),
        [0, *depths],
        frame_cfg,
        cost_args={"relative_cost": [0.0, *rel], "offload_scale": scale, "bytes_ref": median},
    )
    summary2["model"] = {**info, "send_frame_arm": True, "offload_cost_mode": "bytes"}
    summary2["offload_scale"] = [round(x, 4) for x in scale]
    write_outputs(summary2, out_dir / "send-frame")
    results["send-frame"] = summary2
    return results
