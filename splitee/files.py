"""Files on disk: digests, atomic JSON writes, and what a checkpoint says about itself.

The checkpoint readers here use safetensors' header only (no torch import), so light processes
— the recorder, the exporter, the evaluator service, the CLI — can size the bandit from the
model without loading it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError, safe_open

#: The format tag every splitee multi-exit checkpoint carries in its metadata.
CHECKPOINT_FORMAT = "splitee-multiexit/1"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, obj: object, indent: int | None = 1) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent) + "\n")
    tmp.replace(path)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be parsed, or whose metadata is not a splitee model's."""


@contextmanager
def reading_checkpoint(path: Path) -> Iterator[None]:
    """Turn safetensors' parser errors into a CheckpointError that names the file.

    ``SafetensorError`` derives from ``Exception`` only, so a user's truncated or foreign file
    would otherwise escape every ``except ValueError`` as a bare traceback.
    """
    try:
        yield
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None


def checkpoint_metadata(path: Path) -> dict[str, str]:
    """The safetensors metadata of a checkpoint (architecture, exit depths, format)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"model checkpoint {path} not found: set SPLITEE_MODEL__CHECKPOINT or run "
            "`splitee train`"
        )
    with reading_checkpoint(path), safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata() or {})


def model_alpha(path: Path) -> float | None:
    """The exit threshold α the checkpoint was validated with (its ``alpha`` metadata), if any.

    SplitEE sets α per data set; a checkpoint carries the value its model card reports, so a
    user who does not choose α gets the one its figures were measured at.
    """
    try:
        value = checkpoint_metadata(path).get("alpha")
    except FileNotFoundError:
        return None
    if value is None:
        return None
    alpha = float(value)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{path}: alpha {value!r} in its metadata is not in [0, 1]")
    return alpha


def exit_depths(path: Path) -> list[int]:
    """The checkpoint's exit depths (one per split arm, the last is the final exit)."""
    meta = checkpoint_metadata(path)
    if meta.get("format") != CHECKPOINT_FORMAT or "exit_depths" not in meta:
        raise CheckpointError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    try:
        depths = json.loads(meta["exit_depths"])
        if not isinstance(depths, list) or not depths:
            raise ValueError("not a list of layers")
        return [int(d) for d in depths]
    except (ValueError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: exit_depths {meta['exit_depths'][:80]!r}: {exc}") from None
