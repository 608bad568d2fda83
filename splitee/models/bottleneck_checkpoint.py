"""Bottleneck checkpoints: codec weights and integer coding tables in one safetensors file.

The file names its base model (file name and SHA-256): codecs trained on one backbone's
tensors must never decode another's, so loading checks the digest. The integer tables are
stored as int32 tensors, read by edge and cloud alike (byte-identical on both sides); the
training density is left out (inference never needs it). No pickle anywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from splitee.coding_tables import Tables, read_tables, table_arrays
from splitee.models.bottleneck import Bottlenecks, CodecSpec

BOTTLENECK_FORMAT = "splitee-bottleneck-1"


@dataclass(frozen=True, kw_only=True)
class BottleneckBundle:
    """What a worker needs: the codecs, their tables per arm and rate, and the base model."""

    bottlenecks: Bottlenecks
    tables: dict[int, list[Tables]]  # 0-based arm → one table set per rate point
    base_path: Path
    base_sha256: str
    card: dict

    @property
    def arms(self) -> list[int]:
        return sorted(self.tables)


def save_bottlenecks(
    bn: Bottlenecks,
    tables: dict[int, list[Tables]],
    out: Path,
    base_path: Path,
    base_sha256: str,
    card: dict | None = None,
) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for k in tables:
        codec = bn.codecs[k]
        for part in ("encoder", "decoder"):
            for n, t in getattr(codec, part).state_dict().items():
                tensors[f"arm{k}.{part}.{n}"] = t.detach().cpu().contiguous()
    tensors |= {n: torch.from_numpy(a) for n, a in table_arrays(tables).items()}
    meta = {
        "format": BOTTLENECK_FORMAT,
        "base_checkpoint": Path(base_path).name,
        "base_sha256": base_sha256,
        "steps": json.dumps(bn.steps),
        "specs": json.dumps([c.spec.to_json() for c in bn.codecs]),
        "arms": json.dumps(sorted(tables)),
    }
    save_file(tensors, str(out), metadata=meta)
    if card is not None:
        out.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")


def is_bottleneck_checkpoint(path: Path) -> bool:
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("format") == BOTTLENECK_FORMAT
    except Exception:
        return False


def load_bottlenecks(path: Path, base_path: Path | None = None) -> BottleneckBundle:
    """Codecs and tables of ``path``; the base model is ``base_path`` or the file named in the
    metadata beside ``path``, and its SHA-256 must be the one recorded."""
    from splitee.files import sha256_file

    path = Path(path)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != BOTTLENECK_FORMAT:
        raise ValueError(f"{path}: not a bottleneck checkpoint ({meta.get('format')!r})")
    base = Path(base_path) if base_path is not None else path.parent / meta["base_checkpoint"]
    if not base.exists():
        raise ValueError(f"{path}: its base model {base} is missing")
    digest = sha256_file(base)
    if digest != meta["base_sha256"]:
        raise ValueError(
            f"{path}: trained on a model with SHA-256 {meta['base_sha256'][:16]}…, "
            f"but {base} is {digest[:16]}…"
        )
    specs = [CodecSpec.from_json(d) for d in json.loads(meta["specs"])]
    steps = json.loads(meta["steps"])
    bn = Bottlenecks(specs, steps)
    stored = load_file(str(path))
    arms = json.loads(meta["arms"])
    for k in arms:
        codec = bn.codecs[k]
        for part in ("encoder", "decoder"):
            sd = {
                n[len(f"arm{k}.{part}.") :]: t
                for n, t in stored.items()
                if n.startswith(f"arm{k}.{part}.")
            }
            getattr(codec, part).load_state_dict(sd)
    arrays = {n: t.numpy() for n, t in stored.items() if ".rate" in n}
    tables = read_tables(arrays, arms, len(steps))
    card_file = path.with_suffix(".card.json")
    card = json.loads(card_file.read_text()) if card_file.exists() else {}
    return BottleneckBundle(
        bottlenecks=bn.eval(), tables=tables, base_path=base, base_sha256=digest, card=card
    )
