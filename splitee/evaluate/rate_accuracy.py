"""The rate–accuracy picture: top-1 against the bytes a frame costs on the wire.

Split computing only pays if what the edge sends is smaller than what it could have sent
instead — the frame itself — at the same accuracy. This module measures, on the same test
frames and the same unsplit model, every way of getting a frame to the cloud:

* **JPEG at fixed qualities** (95 … 5) of the frame after it is fitted to the model's input
  (224 px): what a camera could do instead of splitting, and the fair baseline (the camera's
  own JPEG is larger because it carries the full-resolution frame). The camera's JPEG is a
  reference point: its median bytes and the model's top-1 on it (= the unsplit model).
* **Raw split tensors** per arm in float16, in the wire's symmetric per-tensor int8, and in
  int8 + zstd: the split with no learned codec, decoded and run through the cloud's suffix.
* **Learned bottlenecks** per arm and rate point, read from the bottleneck model card (measured
  there on real payloads; not recomputed here).
* **Learned policies' operating points** (mean offloaded bytes per frame, accuracy), read from
  ``splitee evaluate``'s ``bottleneck/summary.json``.

The expensive part — a forward pass per frame for each JPEG quality and the suffixes of the
raw tensors — is cached per measurement (``.npz``, no pickle) keyed by the model's sha256, the
frames and the measurement, so a rerun only draws the figure. :func:`write_rate_accuracy` takes
the JSON-able result alone, so the figure and table are testable without a model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the card's coded payload sizes get the latent message's header added, so the learned codecs
# are priced on the wire like the raw tensors (whose sizes include the tensor header)
from splitee.wire import LATENT_HEADER_BYTES

#: JPEG qualities of the 224-px curve (the issue's list), best first.
QUALITIES: tuple[int, ...] = (95, 75, 50, 30, 15, 5)
#: Raw tensor encodings, in the order the table lists them.
RAW_CODECS: tuple[str, ...] = ("float16", "int8", "int8+zstd")
#: zstd level for the raw int8 tensors: a high level, so the raw split is not understated.
ZSTD_LEVEL = 19
#: Policies whose operating points the figure shows (from bottleneck/summary.json).
POLICIES: tuple[str, ...] = ("isplitee-online", "isplitee-arm-alpha", "splitee-ucb1", "cloud-only")
#: Cached measurements are named by this, so a change of what they hold never reuses one.
CACHE_VERSION = 1


# ----------------------------------------------------------------------------- measurement
def subset_indices(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """The frames ``--limit`` keeps: the same seeded random subset as ``Dataset.subset``
    (the files are sorted by class, so a prefix would be a few classes only)."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


@dataclass(frozen=True)
class Frames:
    """The test frames the measurements run on: fitted pixels, labels, camera JPEG bytes."""

    images: np.ndarray  # (N, S, S, 3) uint8, decode_fit of the camera JPEG
    labels: np.ndarray  # (N,) int
    camera_bytes: np.ndarray  # (N,) bytes of the camera's JPEG as stored
    key: str  # identifies the source, the fitting size and the subset (cache key)
    source: str  # the source's name, e.g. caltech101-test


def load_frames(
    images_path: Path, size: int, cache_dir: Path, limit: int | None = None, seed: int = 0
) -> Frames:
    """The test split of ``images_path`` fitted to ``size`` (decoded once and cached by
    :func:`splitee.images.load_images`), optionally a seeded random subset of ``limit``."""
    from splitee.images import load_images, open_source

    source = open_source(images_path, "test")
    idx = subset_indices(len(source), limit, seed)
    keep = set(idx.tolist())
    camera = np.array([len(b) for i, (_, b, _) in enumerate(source.iter_bytes()) if i in keep])
    data = load_images(source, size, cache_dir / "images")
    st = source.path.stat()
    key = hashlib.sha256(
        f"{source.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{source.name}|{size}|"
        f"{len(source)}|{idx.tobytes().hex()}".encode()
    ).hexdigest()[:16]
    name = source.name
    return Frames(data.images[idx], data.labels[idx], camera, f"{name}-{len(idx)}-{key}", name)


def _cached(path: Path, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays from ``path`` if present, else computed and saved (atomically, no pickle)."""
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return arrays


def _batches(n: int, bs: int, desc: str) -> Sequence[int]:
    from tqdm import tqdm

    return tqdm(range(0, n, bs), desc=desc, unit="batch", mininterval=30)


def _predict(model, images: np.ndarray) -> np.ndarray:
    """Final-exit predictions of the unsplit model on uint8 NHWC frames."""
    import torch

    from splitee.models.inputs import to_input

    x = to_input(images).contiguous(memory_format=torch.channels_last)
    return model(x).argmax(1).numpy().astype(np.int16)


def measure_jpeg(model, frames: Frames, quality: int, bs: int = 32) -> dict[str, np.ndarray]:
    """Bytes and the unsplit model's prediction per frame, the fitted frame re-encoded as JPEG
    at ``quality`` (4:2:0, as cameras send) and decoded again."""
    import simplejpeg

    n = len(frames.labels)
    size = np.zeros(n, np.int64)
    pred = np.zeros(n, np.int16)
    for s in _batches(n, bs, f"JPEG q{quality}"):
        batch = []
        for j, img in enumerate(frames.images[s : s + bs]):
            data = simplejpeg.encode_jpeg(
                np.ascontiguousarray(img), quality, colorspace="RGB", colorsubsampling="420"
            )
            size[s + j] = len(data)
            batch.append(simplejpeg.decode_jpeg(data, colorspace="RGB"))
        pred[s : s + bs] = _predict(model, np.stack(batch))
    return {"bytes": size, "pred": pred}


def measure_camera_and_raw(model, frames: Frames, bs: int = 32) -> dict[str, np.ndarray]:
    """One pass over the fitted camera frames: the unsplit model's prediction, and at each
    split arm the tensor's wire bytes (float16, int8, int8 + zstd) and the cloud's prediction
    after int8 decode → suffix. int8 + zstd decodes to the same values as int8 (zstd is
    lossless). float16 is not run through the suffix: its rounding (2⁻¹¹ relative) is far
    below int8's step, which is measured, so its top-1 is the unsplit model's — and skipping
    it saves ~2.6 forward passes per frame on a CPU."""
    import torch
    import zstandard

    from splitee.models.inputs import to_input
    from splitee.wire import decode_tensor, encode_tensor

    n, arms = len(frames.labels), model.num_exits - 1
    zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    out = {
        "pred": np.zeros(n, np.int16),
        "pred_int8": np.zeros((n, arms), np.int16),
        "bytes_float16": np.zeros((n, arms), np.int64),
        "bytes_int8": np.zeros((n, arms), np.int64),
        "bytes_zstd": np.zeros((n, arms), np.int64),
    }
    for s in _batches(n, bs, "camera frames + raw split tensors"):
        x = to_input(frames.images[s : s + bs]).contiguous(memory_format=torch.channels_last)
        h = x
        for k in range(model.num_exits):
            h = model.segment(h, k)
            if k == arms:
                out["pred"][s : s + bs] = model.exit_logits(h, k).argmax(1).numpy()
                break
            dec = []
            for j, f in enumerate(h.float().numpy()):
                out["bytes_float16"][s + j, k] = len(encode_tensor(f, "float16"))
                msg = encode_tensor(f, "int8")
                out["bytes_int8"][s + j, k] = len(msg)
                out["bytes_zstd"][s + j, k] = len(zstd.compress(msg))
                dec.append(decode_tensor(msg))
            h_dec = torch.from_numpy(np.stack(dec)).contiguous(memory_format=torch.channels_last)
            out["pred_int8"][s : s + bs, k] = model.suffix(h_dec, k).argmax(1).numpy()
    return out


def measure(
    model_path: Path,
    frames: Frames,
    cache_dir: Path,
    qualities: Sequence[int] = QUALITIES,
    threads: int = 2,
    bs: int = 32,
) -> dict:
    """Measure (or read from the cache) the camera point, the JPEG curve and the raw tensors;
    returns the JSON-able result that :func:`write_rate_accuracy` draws."""
    import torch

    from splitee.files import sha256_file
    from splitee.models import load_checkpoint

    torch.set_num_threads(threads)
    digest = sha256_file(model_path)
    base = cache_dir / "rate_accuracy" / f"v{CACHE_VERSION}-{digest[:16]}-{frames.key}"
    model = None

    def run(fn: Callable[..., dict[str, np.ndarray]], *args: object) -> dict[str, np.ndarray]:
        nonlocal model
        if model is None:
            model = load_checkpoint(model_path, fuse=True)
            model.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            return fn(model, frames, *args, bs)

    y = frames.labels
    camera = _cached(
        base.with_name(base.name + f"-camera-raw-z{ZSTD_LEVEL}.npz"),
        lambda: run(measure_camera_and_raw),
    )
    jpeg = []
    for q in qualities:
        got = _cached(base.with_name(base.name + f"-q{q}.npz"), lambda q=q: run(measure_jpeg, q))
        jpeg.append({"quality": q, **_point(got["bytes"], got["pred"], y)})
    raw = []
    unsplit = np.repeat(camera["pred"][:, None], camera["pred_int8"].shape[1], axis=1)
    for k in range(camera["pred_int8"].shape[1]):
        for codec, size, pred in (
            ("float16", camera["bytes_float16"], unsplit),
            ("int8", camera["bytes_int8"], camera["pred_int8"]),
            ("int8+zstd", camera["bytes_zstd"], camera["pred_int8"]),
        ):
            raw.append({"arm": k + 1, "codec": codec, **_point(size[:, k], pred[:, k], y)})
    top1 = float((camera["pred"] == y).mean())
    return {
        "model": Path(model_path).name,
        "model_sha256": digest,
        "source": frames.source,
        "frames": len(y),
        "frames_key": frames.key,
        "zstd_level": ZSTD_LEVEL,
        "unsplit_top1": round(top1, 4),
        "camera": _point(frames.camera_bytes, camera["pred"], y),
        "jpeg": jpeg,
        "raw": raw,
        "bottleneck": [],
        "policies": [],
    }


def _point(size: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "bytes_median": int(np.median(size)),
        "bytes_mean": round(float(np.mean(size)), 1),
        "top1": round(float((pred == labels).mean()), 4),
    }


# ----------------------------------------------------------------------------- read-only inputs
def bottleneck_points(card: dict) -> list[dict]:
    """Every arm's rate points from a bottleneck model card, priced with the latent header."""
    rows = []
    for arm in card.get("arms", []):
        # a scalar codec says so in its training record; older cards hold learned codecs only
        kind = "scalar" if (arm.get("training") or {}).get("kind") == "scalar" else "learned"
        for r in arm["rates"]:
            rows.append(
                {
                    "arm": int(arm["arm"]),
                    "codec": kind,
                    "rate": int(r["rate"]),
                    "bytes_median": int(r["bytes_median"]) + LATENT_HEADER_BYTES,
                    "bytes_mean": round(float(r["bytes_mean"]) + LATENT_HEADER_BYTES, 1),
                    "top1": float(r["top1"]),
                }
            )
    return rows


def policy_points(summary: dict, distortion: str = "pristine") -> list[dict]:
    """The learned policies' (and cloud-only's) operating points on ``distortion`` frames:
    mean offloaded bytes per frame and accuracy (first row per method)."""
    rows: dict[str, dict] = {}
    for r in summary.get("results", []):
        m = r.get("method")
        if r.get("distortion") != distortion or m not in POLICIES or m in rows:
            continue
        if r.get("offload_bytes") is None:
            continue
        rows[m] = {
            "method": m,
            "offload_bytes": float(r["offload_bytes"]),
            "accuracy": float(r["accuracy"]),
        }
    return [rows[m] for m in POLICIES if m in rows]


# ----------------------------------------------------------------------------- table and figure
def _kb(b: float) -> str:
    return f"{b / 1000:.1f} kB" if b >= 1000 else f"{b:.0f} B"


def table_md(result: dict) -> str:
    """The figure's numbers as Markdown: one table per kind of point, top-1 and its drop."""
    top1 = result["unsplit_top1"]
    cam = result["camera"]

    def row(what: str, b: float, acc: float) -> str:
        return (
            f"| {what} | {b:,.0f} | {b / cam['bytes_median']:.2f} | {100 * acc:.2f} | "
            f"{100 * (acc - top1):+.2f} |"
        )

    head = [
        "| point | bytes / frame (median) | × camera JPEG | top-1 % | vs unsplit (pts) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines = [
        "# Rate and accuracy",
        "",
        f"{result['frames']:,} frames of {result.get('source', 'the test split')}, "
        f"`{result['model']}`; the unsplit model's top-1 on "
        f"the camera's JPEG is {100 * top1:.2f} %, whose median size is "
        f"{cam['bytes_median']:,} B. Bytes are what goes on the wire (tensor and latent "
        "messages with their headers).",
        "",
        "## The frame as JPEG (fitted to 224 px, re-encoded)",
        "",
        *head,
        row("camera JPEG (as stored)", cam["bytes_median"], cam["top1"]),
        *(row(f"q{p['quality']}", p["bytes_median"], p["top1"]) for p in result["jpeg"]),
        "",
        f"## Raw split tensors (int8: symmetric per tensor; zstd level {result['zstd_level']})",
        "",
        "int8 is decoded and run through the cloud's suffix; float16's top-1 is the unsplit "
        "model's (its rounding is far below int8's step).",
        "",
        *head,
        *(row(f"arm {p['arm']} {p['codec']}", p["bytes_median"], p["top1"]) for p in result["raw"]),
        "",
    ]
    if result.get("bottleneck"):
        lines += [
            "## Bottlenecks (model card; coded latent + its message header)",
            "",
            f"As measured for the card, on {result.get('bottleneck_frames') or 'its'} test frames."
            " Learned: an encoder and a decoder trained per arm; scalar: the standardised split "
            "tensor quantized and coded as it is.",
            "",
            *head,
            *(
                row(
                    f"arm {p['arm']} rate {p['rate']} ({p.get('codec', 'learned')})",
                    p["bytes_median"],
                    p["top1"],
                )
                for p in result["bottleneck"]
            ),
            "",
        ]
    if result.get("policies"):
        lines += [
            "## Learned policies (pristine; mean offloaded bytes per frame)",
            "",
            *head,
            *(row(p["method"], p["offload_bytes"], p["accuracy"]) for p in result["policies"]),
            "",
        ]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Top-1 (%) against bytes per frame (log): the figure a user looks at first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator

    top1 = 100 * result["unsplit_top1"]
    cam = result["camera"]
    arms = sorted({p["arm"] for p in result["raw"]} | {p["arm"] for p in result["bottleneck"]})
    colour = {
        a: plt.get_cmap("viridis")(i / max(1, len(arms) - 1) * 0.9) for i, a in enumerate(arms)
    }
    raw_marker = {"float16": "s", "int8": "^", "int8+zstd": "D"}

    fig, ax = plt.subplots(figsize=(10, 6), dpi=150)
    ax.axhspan(top1 - 1, top1, color="tab:green", alpha=0.12, lw=0)
    ax.axhline(top1, color="tab:green", ls="--", lw=1.2)
    ax.axvline(cam["bytes_median"], color="grey", ls=":", lw=1.2)
    ax.plot(cam["bytes_median"], 100 * cam["top1"], "o", ms=9, mfc="white", mec="black", mew=1.5)

    jp = result["jpeg"]
    xs, ys = [p["bytes_median"] for p in jp], [100 * p["top1"] for p in jp]
    ax.plot(xs, ys, "-o", color="black", lw=2, ms=5, zorder=3)
    for p, x, y in zip(jp, xs, ys, strict=True):
        ax.annotate(
            f"q{p['quality']}",
            (x, y),
            xytext=(6, -12),
            textcoords="offset points",
            ha="left",
            fontsize=8,
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
            zorder=7,
        )

    for p in result["raw"]:
        ax.plot(
            p["bytes_median"],
            100 * p["top1"],
            raw_marker[p["codec"]],
            ms=7,
            color=colour[p["arm"]],
            mec="black",
            mew=0.5,
            alpha=0.9,
            zorder=4,
        )
    kinds = {p["arm"]: p.get("codec", "learned") for p in result["bottleneck"]}
    for a in arms:
        pts = sorted(
            (p["bytes_median"], 100 * p["top1"]) for p in result["bottleneck"] if p["arm"] == a
        )
        if pts:
            style = "--o" if kinds[a] == "scalar" else "-o"
            ax.plot(*zip(*pts, strict=True), style, color=colour[a], lw=1.8, ms=4, zorder=5)
    star = {
        "isplitee-online": "tab:red",
        "isplitee-arm-alpha": "tab:pink",
        "splitee-ucb1": "tab:orange",
        "cloud-only": "tab:blue",
    }
    for p in result["policies"]:
        ax.plot(
            max(p["offload_bytes"], 1),
            100 * p["accuracy"],
            "*",
            ms=16,
            color=star.get(p["method"], "tab:purple"),
            mec="black",
            mew=0.6,
            zorder=6,
        )

    ys_all = (
        ys
        + [100 * p["top1"] for p in result["raw"]]
        + [100 * p["top1"] for p in result["bottleneck"]]
        + [100 * p["accuracy"] for p in result["policies"]]
    )
    lo = max(0.0, min(ys_all) - 2)
    ax.set_ylim(lo, min(100.0, max(top1, max(ys_all)) + 1.5))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _kb(v).replace(".0 ", " ")))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("bytes per frame on the wire (median; policies: mean offloaded; log scale)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(
        f"Rate and accuracy: {result.get('source', 'test')} ({result['frames']:,} frames), "
        f"{result['model']}",
        fontsize=11,
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.08)

    handles = [
        Line2D([], [], color="tab:green", ls="--", label=f"unsplit model {top1:.2f} %"),
        plt.Rectangle((0, 0), 1, 1, color="tab:green", alpha=0.12, label="within 1 point"),
        Line2D(
            [], [], color="grey", ls=":", label=f"camera JPEG, median {_kb(cam['bytes_median'])}"
        ),
        Line2D([], [], color="black", marker="o", lw=2, ms=5, label="JPEG of the 224-px frame"),
    ]
    handles += [
        Line2D([], [], ls="", marker=m, color="lightgrey", mec="black", label=f"raw tensor {c}")
        for c, m in raw_marker.items()
    ]
    for kind, ls, label in (
        ("learned", "-", "learned bottleneck"),
        ("scalar", "--", "scalar codec (the tensor itself)"),
    ):
        if kind in set(kinds.values()):
            handles.append(
                Line2D([], [], color="grey", marker="o", ls=ls, lw=1.8, ms=4, label=label)
            )
    handles += [Line2D([], [], ls="", marker="s", color=colour[a], label=f"arm {a}") for a in arms]
    handles += [
        Line2D(
            [],
            [],
            ls="",
            marker="*",
            ms=12,
            color=star.get(p["method"], "tab:purple"),
            mec="black",
            label=f"policy: {p['method']}",
        )
        for p in result["policies"]
    ]
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_rate_accuracy(result: dict, out_dir: Path) -> list[Path]:
    """``rate_accuracy.json``, ``.md`` and ``.png`` in ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"rate_accuracy.{ext}" for ext in ("json", "md", "png")]
    paths[0].write_text(json.dumps(result, indent=1) + "\n")
    paths[1].write_text(table_md(result))
    plot(result, paths[2])
    return paths
