"""A bottleneck's integer coding tables as flat arrays, and the coder each kind of table needs.

Two kinds exist: factorized :class:`~splitee.entropy.ChannelTables` (checkpoints before
context coding) and :class:`~splitee.checkerboard.ContextTables`. The checkpoint, the ONNX
export's table file and the workers all go through :func:`table_arrays` / :func:`read_tables`,
so the names of the stored arrays are written in one place; an array set with ``ctx.*``
entries is a context table set, one without them factorized.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from splitee.checkerboard import CheckerboardCoder, ContextTables
from splitee.entropy import ChannelTables, LatentCoder

Tables = ChannelTables | ContextTables
Coder = LatentCoder | CheckerboardCoder


def coder_for(tables: Tables) -> Coder:
    """The coder that reads ``tables`` (edge and cloud build it from the same arrays)."""
    if isinstance(tables, ContextTables):
        return CheckerboardCoder(tables)
    return LatentCoder(tables)


def coding_name(tables: Tables) -> str:
    """How a table set codes: ``checkerboard`` or ``factorized`` (for cards and reports)."""
    return "checkerboard" if isinstance(tables, ContextTables) else "factorized"


def _channel_arrays(prefix: str, tab: ChannelTables) -> dict[str, np.ndarray]:
    width = int(tab.lengths.max())  # the rest of every row is zeros
    return {
        f"{prefix}.offsets": np.ascontiguousarray(tab.offsets, np.int32),
        f"{prefix}.freqs": np.ascontiguousarray(tab.freqs[:, :width], np.int32),
        f"{prefix}.lengths": np.ascontiguousarray(tab.lengths, np.int32),
    }


def table_arrays(tables: Mapping[int, list[Tables]]) -> dict[str, np.ndarray]:
    """Per arm k and rate r, the arrays ``arm{k}.rate{r}.*`` that store its tables."""
    out: dict[str, np.ndarray] = {}
    for k, per_rate in tables.items():
        for r, tab in enumerate(per_rate):
            key = f"arm{k}.rate{r}"
            if isinstance(tab, ContextTables):
                out |= _channel_arrays(key, tab.anchors)
                out |= _channel_arrays(f"{key}.ctx", tab.context)
                out[f"{key}.ctx.act_edges"] = np.asarray(tab.act_edges, np.int32)
            else:
                out |= _channel_arrays(key, tab)
    return out


def _channel_tables(arrays: Mapping[str, np.ndarray], prefix: str) -> ChannelTables:
    return ChannelTables(
        offsets=np.asarray(arrays[f"{prefix}.offsets"], np.int32),
        freqs=np.asarray(arrays[f"{prefix}.freqs"], np.int32),
        lengths=np.asarray(arrays[f"{prefix}.lengths"], np.int32),
    )


def read_tables(
    arrays: Mapping[str, np.ndarray], arms: Iterable[int], rates: int
) -> dict[int, list[Tables]]:
    """The tables stored by :func:`table_arrays` (KeyError names an array that is missing;
    ValueError a table that is not a valid one)."""
    out: dict[int, list[Tables]] = {}
    for k in arms:
        out[k] = []
        for r in range(rates):
            key = f"arm{k}.rate{r}"
            tab = _channel_tables(arrays, key)
            if f"{key}.ctx.act_edges" in arrays:
                tab = ContextTables(
                    anchors=tab,
                    context=_channel_tables(arrays, f"{key}.ctx"),
                    act_edges=np.asarray(arrays[f"{key}.ctx.act_edges"], np.int64),
                )
            out[k].append(tab)
    return out
