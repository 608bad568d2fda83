"""The manifest of an ONNX export (``splitee export``): what each graph is and what priced it.

An export directory holds, per split arm of the backbone, an edge graph and a cloud graph
(:mod:`splitee.models.export_graphs`), and ``manifest.json``: the arms, shapes, exit depths,
temperatures, the checkpoint's α and SHA-256, the facts the cost model prices the arms with
(:class:`splitee.arm_facts.ArmFacts`), and with a learned bottleneck its integer coding
tables (``latent-tables.safetensors``, read with safetensors' numpy API) and card. The
directory is all a torch-free edge needs: it never opens the checkpoint.

Reading it checks every field against bounds and the files it names against the directory:
a manifest is input like any other (a wrong one fails the worker at start, loudly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from splitee.arm_facts import ArmFacts
from splitee.coding_tables import Tables, read_tables

MANIFEST_FORMAT = "splitee-onnx-1"
MANIFEST = "manifest.json"
TABLES = "latent-tables.safetensors"
CARD = "bottleneck.card.json"
#: split tensor codecs whose bytes the manifest records (splitee.wire)
TENSOR_CODECS = ("float32", "float16", "int8")


class ManifestError(ValueError):
    """An export directory whose manifest or files do not describe a usable export."""


@dataclass(frozen=True, kw_only=True)
class ArmGraphs:
    """One backbone arm (0-based): its graphs (file names in the directory) and shapes."""

    arm: int
    depth: int
    edge: str | None  # None only in a partial export (splitee.onnx_export.export's arms)
    edge_int8: str | None
    cloud: str | None  # None for the final arm (it never offloads) and in a partial export
    offload: str | None  # "split", "symbols" (a bottleneck arm) or None (final arm)
    split_shape: tuple[int, ...]
    latent_shape: tuple[int, ...] | None


@dataclass(frozen=True, kw_only=True)
class Bottleneck:
    """A learned bottleneck's facts: rate steps, coded arms, encoder FLOPs and card."""

    checkpoint: str
    sha256: str
    steps: list[float]
    arms: list[int]
    encoder_flops: dict[int, int]
    card: dict

    def tables(self, directory: Path) -> dict[int, list[Tables]]:
        """The integer coding tables per arm and rate point (numpy, no torch)."""
        from safetensors.numpy import load_file

        stored = load_file(str(Path(directory) / TABLES))
        try:
            return read_tables(stored, self.arms, len(self.steps))
        except KeyError as exc:
            raise ManifestError(f"{directory / TABLES} lacks {exc}") from None
        except ValueError as exc:
            raise ManifestError(f"{directory / TABLES}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class OnnxManifest:
    directory: Path
    arch: str
    checkpoint: str
    sha256: str
    alpha: float | None
    real_size: bool
    input_size: int
    num_classes: int
    exit_depths: list[int]
    temperatures: list[float]
    arms: list[ArmGraphs]
    frame_graph: str | None  # the whole network on the frame (the send-frame arm's cloud)
    complete: bool  # every arm has its graphs (an edge worker needs them all)
    facts: ArmFacts
    bottleneck: Bottleneck | None
    exporter: str

    @property
    def num_exits(self) -> int:
        return len(self.exit_depths)

    def path(self, name: str) -> Path:
        return self.directory / name


def _int(v: object, what: str, lo: int = 0, hi: int = 1 << 31) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ManifestError(f"{what}: {v!r} is not an integer in [{lo}, {hi}]")
    return v


def _shape(v: object, what: str) -> tuple[int, ...]:
    if not isinstance(v, list) or not 1 <= len(v) <= 4:
        raise ManifestError(f"{what}: {v!r} is not a shape")
    return tuple(_int(d, what, 1, 1 << 16) for d in v)


def _file(directory: Path, v: object, what: str) -> str:
    if not isinstance(v, str) or "/" in v or v.startswith("."):
        raise ManifestError(f"{what}: {v!r} is not a file name in the export directory")
    if not (directory / v).is_file():
        raise ManifestError(f"{what}: {directory / v} is missing")
    return v


def read_manifest(directory: Path) -> OnnxManifest:
    """The manifest of export ``directory``, checked (a :class:`ManifestError` if not)."""
    directory = Path(directory)
    try:
        d = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{directory / MANIFEST}: {exc}") from None
    if not isinstance(d, dict) or d.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{directory / MANIFEST}: format is not {MANIFEST_FORMAT!r}")
    try:
        return _parse(directory, d)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, OSError) as exc:
        raise ManifestError(f"{directory / MANIFEST}: bad or missing field {exc!r}") from None


def _parse(directory: Path, d: dict) -> OnnxManifest:
    m = d["model"]
    depths = [_int(x, "exit_depths", 0, 10_000) for x in m["exit_depths"]]
    L = len(depths)
    if not 2 <= L <= 64:
        raise ManifestError(f"{L} exits: need 2 to 64")
    temps = [float(t) for t in m["temperatures"]]
    if len(temps) != L:
        raise ManifestError("one temperature per exit")
    arms = []
    for i, a in enumerate(d["arms"]):
        if a["arm"] != i:
            raise ManifestError(f"arms out of order at {i}")
        final = i == L - 1
        offload = a.get("offload")
        if offload not in ((None,) if final else ("split", "symbols")):
            raise ManifestError(f"arm {i}: offload {offload!r}")
        int8, edge, cloud = a.get("edge_int8"), a.get("edge"), a.get("cloud")
        arms.append(
            ArmGraphs(
                arm=i,
                depth=depths[i],
                edge=None if edge is None else _file(directory, edge, f"arm {i} edge"),
                edge_int8=None if int8 is None else _file(directory, int8, f"arm {i} int8"),
                cloud=None if cloud is None or final else _file(directory, cloud, f"arm {i}"),
                offload=offload,
                split_shape=_shape(a["split_shape"], f"arm {i} split_shape"),
                latent_shape=None
                if a.get("latent_shape") is None
                else _shape(a["latent_shape"], f"arm {i} latent_shape"),
            )
        )
    if len(arms) != L:
        raise ManifestError(f"{len(arms)} arms for {L} exits")
    c = d["costs"]
    bn = None
    if d.get("bottleneck") is not None:
        b = d["bottleneck"]
        _file(directory, TABLES, "latent tables")
        bn_arms = [_int(k, "bottleneck arm", 0, L - 2) for k in b["arms"]]
        for k in bn_arms:
            if arms[k].offload != "symbols" or arms[k].latent_shape is None:
                raise ManifestError(f"bottleneck arm {k}: its edge graph does not code symbols")
        card_file = directory / CARD
        bn = Bottleneck(
            checkpoint=str(b["checkpoint"]),
            sha256=str(b["sha256"]),
            steps=[float(x) for x in b["steps"]],
            arms=bn_arms,
            encoder_flops={int(k): int(v) for k, v in b["encoder_flops"].items()},
            card=json.loads(card_file.read_text()) if card_file.is_file() else {},
        )
        if not 1 <= len(bn.steps) <= 255 or any(not x > 0 for x in bn.steps):
            raise ManifestError(f"bottleneck steps {bn.steps}")
    facts = ArmFacts(
        exit_depths=depths,
        real_size=bool(m["real_size"]),
        alpha=None if d["source"].get("alpha") is None else float(d["source"]["alpha"]),
        relative_costs=[float(x) for x in c.get("relative_costs", [])],
        total_flops=int(c.get("total_flops", 0)),
        split_bytes=[
            {k: _int(b[k], "split_bytes", 1) for k in TENSOR_CODECS}
            for b in c.get("split_bytes", [])
        ],
    )
    if facts.real_size and (len(facts.relative_costs) != L or len(facts.split_bytes) != L - 1):
        raise ManifestError("costs: one relative cost per arm, split bytes per non-final arm")
    frame = d.get("frame_graph")
    return OnnxManifest(
        directory=directory,
        arch=str(m["arch"]),
        checkpoint=str(d["source"]["checkpoint"]),
        sha256=str(d["source"]["sha256"]),
        alpha=facts.alpha,
        real_size=facts.real_size,
        input_size=_int(m["input_size"], "input_size", 8, 4096),
        num_classes=_int(m["num_classes"], "num_classes", 2, 100_000),
        exit_depths=depths,
        temperatures=temps,
        arms=arms,
        frame_graph=None if frame is None else _file(directory, frame, "frame graph"),
        complete=bool(d.get("complete", False)) and all(a.edge for a in arms),
        facts=facts,
        bottleneck=bn,
        exporter=str(d.get("exporter", "")),
    )


def latent_facts(manifest: OnnxManifest, rates: dict[int, int]) -> ArmFacts:
    """The manifest's arm facts with a bottleneck's costs at ``rates`` (backbone arms)."""
    from dataclasses import replace

    from splitee.latent_messages import median_bytes

    bn = manifest.bottleneck
    if bn is None:
        return manifest.facts
    return replace(
        manifest.facts,
        encoder_flops={k: bn.encoder_flops[k] for k in bn.arms},
        latent_bytes={k: median_bytes(bn.card, k, rates[k]) for k in bn.arms},
    )
