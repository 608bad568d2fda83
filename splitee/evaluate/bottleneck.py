"""``splitee evaluate`` with a learned bottleneck: offloads scored as the cloud answers them.

An offloaded frame at split arm k is scored with the cloud's prediction and confidence after
encode → entropy code → decode → suffix at that arm's rate point (not the uncompressed final
exit), and it costs the bytes its coded latent really takes. The third evaluation
(``<out>/bottleneck/``) offers the send-the-JPEG arm 0 too and prices every offload by its
bytes (o · bytes_k / median JPEG), λ_k including the encoder's FLOPs — the same row format as
``send-frame/``, plus the mean bytes offloaded per frame.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from splitee.distortions import Distortion
from splitee.evaluate.outputs import ExitOutputs, save_outputs
from splitee.evaluate.runner import EvalConfig, SettingOutputs, run_evaluation, write_outputs
from splitee.models.bottleneck_checkpoint import BottleneckBundle
from splitee.models.inputs import to_input
from splitee.models.latent_codec import LatentCodec
from splitee.wire import LATENT_HEADER_BYTES


@torch.inference_mode()
def compute_cloud_outputs(
    model, bundle: BottleneckBundle, rates: dict[int, int], images: np.ndarray, bs: int = 32
) -> tuple[ExitOutputs, ExitOutputs, np.ndarray]:
    """Per frame and split arm k: the edge's exit k (confidence, prediction), the cloud's after
    the codec, and the offload's bytes (coded latent + header; float16 tensor bytes for an arm
    without codec). The cloud's final column is the final exit itself (never offloaded: 0
    bytes). The edge's exits come from the same pass through the trunk the codec needs (the
    exit heads are small), so a cold evaluation runs the trunk once per setting, not twice."""
    L = model.num_exits
    live = LatentCodec(bundle, rates)  # the workers' own encode, checked decode, reconstruct
    n = len(images)
    edge_conf, edge_pred = np.zeros((n, L), np.float32), np.zeros((n, L), np.int16)
    conf, pred = np.zeros((n, L), np.float32), np.zeros((n, L), np.int16)
    size = np.zeros((n, L), np.float64)

    def answer(logits: torch.Tensor, c_out: np.ndarray, p_out: np.ndarray, rows: slice, k: int):
        c, p = logits.float().softmax(dim=1).max(dim=1)
        c_out[rows, k], p_out[rows, k] = c.numpy(), p.numpy()

    for s in tqdm(range(0, n, bs), desc="codec outputs", mininterval=30):
        x = to_input(images[s : s + bs])
        rows = slice(s, s + len(x))
        h = x
        for k in range(L):
            h = model.segment(h, k)
            answer(model.exit_logits(h, k), edge_conf, edge_pred, rows, k)
            if k == L - 1:
                break
            if live.handles(k):
                messages = live.encode(h, k)  # what goes on the wire, header included
                size[rows, k] = [len(m) for m in messages]
                q = np.stack([live.symbols(m, k) for m in messages])
                answer(
                    model.suffix(live.reconstruct(torch.from_numpy(q), k), k), conf, pred, rows, k
                )
            else:
                size[rows, k] = 2 * h[0].numel()
    conf[:, -1], pred[:, -1] = edge_conf[:, -1], edge_pred[:, -1]  # the final exit itself
    for k in range(L - 1):  # arms without a codec: the final exit answers
        if not live.handles(k):
            conf[:, k], pred[:, k] = conf[:, -1], pred[:, -1]
    return ExitOutputs(edge_conf, edge_pred), ExitOutputs(conf, pred), size


def cloud_outputs(
    model,
    bundle: BottleneckBundle,
    rates: dict[int, int],
    images: np.ndarray,
    distortion: Distortion,
    seed: int,
    cache_dir: Path | None,
    key: str,
    edge_path: Path | None = None,
) -> tuple[ExitOutputs, np.ndarray]:
    """:func:`compute_cloud_outputs` under ``distortion``, through an .npz cache keyed by the
    model and bottleneck digests (``key``), the rates, the frames and the distortion.

    ``edge_path``: where :func:`~splitee.evaluate.outputs.exit_outputs` caches the edge's exit
    outputs of these frames; on a miss the pass writes them there too (where absent), so the
    edge's evaluation that follows reads them instead of running the trunk again. Only for a
    ``model`` that computes exactly what exit_outputs would (the same fused model)."""
    path = None
    if cache_dir is not None:
        spec = f"{key}|{sorted(rates.items())}|{distortion}|{seed}|h{LATENT_HEADER_BYTES}"
        h = hashlib.sha256(spec.encode())
        h.update(hashlib.sha256(np.ascontiguousarray(images).data).digest())
        path = Path(cache_dir) / "outputs" / f"codec-{h.hexdigest()[:24]}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                return ExitOutputs(z["confidence"], z["prediction"]), z["bytes"]
    edge, out, size = compute_cloud_outputs(
        model, bundle, rates, distortion.apply(images, seed=seed)
    )
    if path is not None:
        save_outputs(path, out, bytes=size)
    if edge_path is not None and not edge_path.exists():
        save_outputs(edge_path, edge)
    return out, size


def codec_key(model_sha: str, bottleneck_sha: str) -> str:
    """The codec cache's key of a (base model, bottleneck) pair."""
    return f"{model_sha}|{bottleneck_sha}"


def shared_pass(
    fused,
    bundle: BottleneckBundle,
    rates: dict[int, int],
    images: np.ndarray,
    cfg: EvalConfig,
    cache_dir: Path | None,
    model_path: Path,
    bottleneck_sha: str,
) -> None:
    """Fill both caches of a cold evaluation with one pass through the trunk per setting: the
    codec's cloud outputs and the edge's exit outputs (what
    :func:`~splitee.evaluate.runner.model_outputs` then reads, instead of running the trunk a
    second time). Nothing to share without a cache, or on frames ``model_outputs`` runs
    unfused (its numbers must not depend on which evaluation filled the cache)."""
    from splitee.evaluate.outputs import outputs_path
    from splitee.evaluate.runner import runs_fused
    from splitee.files import sha256_file

    if cache_dir is None or not runs_fused(images):
        return
    digest = sha256_file(model_path)
    key = codec_key(digest, bottleneck_sha)
    for spec in tqdm(cfg.distortions, desc="exit and codec outputs", unit="setting"):
        d = Distortion.parse(spec)
        edge_path = outputs_path(cache_dir, digest, images, d, cfg.seed)
        cloud_outputs(fused, bundle, rates, images, d, cfg.seed, cache_dir, key, edge_path)


def evaluate_bottleneck(
    outputs: list[SettingOutputs],
    info: dict,
    model,
    bundle: BottleneckBundle,
    rates: dict[int, int],
    images: np.ndarray,
    jpeg_bytes: np.ndarray,
    cfg: EvalConfig,
    out_dir: Path,
    cache_dir: Path | None,
    bottleneck_sha: str,
) -> dict:
    """The third evaluation: send-frame arm 0 + split arms through the bottleneck, priced
    by bytes; written to ``out_dir`` (summary.json, table.md, plots)."""
    from splitee.models.latent_codec import encoder_flops
    from splitee.models.profile import prefix_flops, relative_costs

    rel = relative_costs(model)
    total = prefix_flops(model, model.num_exits - 1)
    for k, f in encoder_flops(bundle, list(rates)).items():
        rel[k] += f / total
    median = float(np.median(jpeg_bytes))
    key = codec_key(info["sha256"], bottleneck_sha)
    settings = []
    arm_bytes = None
    codec_top1 = {}
    for so in tqdm(outputs, desc="codec outputs", unit="setting"):
        cloud, size = cloud_outputs(
            model, bundle, rates, images, so.distortion, cfg.seed, cache_dir, key
        )
        codec_top1[so.name or str(so.distortion)] = top1_after_codec(so, cloud)
        if so.distortion.kind == "pristine" or arm_bytes is None:
            arm_bytes = np.median(size[:, :-1], axis=0)
        # arm 0 sends the frame: nothing at the edge (C_0 = 0), the final exit answers in
        # the cloud, and the offload is the camera's JPEG
        edge = so.outputs.with_frame_arm()
        cl = so.outputs.cloud_with_frame_arm(cloud)
        sent = np.concatenate([jpeg_bytes[:, None].astype(np.float64), size], axis=1)
        settings.append(
            SettingOutputs(so.distortion, edge, so.labels, cloud=cl, offload_bytes=sent)
        )
    scale = [1.0, *(float(b) / median for b in arm_bytes), 0.0]
    depths = [0, *info["exit_depths"]]
    summary = run_evaluation(
        settings,
        depths,
        replace(cfg, sweep_o=[]),
        cost_args={"relative_cost": [0.0, *rel], "offload_scale": scale, "bytes_ref": median},
    )
    summary["model"] = {
        **info,
        "send_frame_arm": True,
        "offload_cost_mode": "bytes",
        "bottleneck_sha256": bottleneck_sha,
        "rates": {str(k + 1): r for k, r in sorted(rates.items())},
        "arm_bytes_median": [int(median), *(int(b) for b in arm_bytes)],
        "jpeg_bytes_median": int(median),
    }
    summary["offload_scale"] = [round(x, 4) for x in scale]
    summary["codec_top1"] = codec_top1
    write_outputs(summary, out_dir)
    return summary


def top1_after_codec(so: SettingOutputs, cloud: ExitOutputs) -> dict:
    """Top-1 of the cloud's answer were every frame offloaded at split arm k (after the codec;
    keyed 1-based as the summary's ``rates``: "1" is the first split, the tables' ``fixed-2``)
    beside the unsplit model's, on one setting's frames: what each codec itself costs under
    that distortion, apart from the exits' mistakes."""
    right = cloud.prediction[:, :-1] == so.labels[:, None]
    return {
        "unsplit": round(float((so.outputs.prediction[:, -1] == so.labels).mean()), 4),
        "arms": {str(k + 1): round(float(right[:, k].mean()), 4) for k in range(right.shape[1])},
    }
