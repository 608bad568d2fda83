"""The rate–accuracy figure and table from synthetic numbers (no model, no frames): the files
are written, every point gets its row, and the card and evaluation readers pick the right rows."""

from __future__ import annotations

import json

import numpy as np

from splitee.evaluate.rate_accuracy import (
    LATENT_HEADER_BYTES,
    QUALITIES,
    bottleneck_points,
    policy_points,
    subset_indices,
    write_rate_accuracy,
)

CARD = {
    "arms": [
        {
            "arm": a,
            "rates": [
                {"rate": r, "bytes_median": 3000 // (r + 1) // a, "bytes_mean": 3100.0 / (r + 1),
                 "bytes_p95": 4000, "top1": 0.94 - 0.01 * r, "step": 0.5}
                for r in range(3)
            ],
        }
        for a in (1, 2)
    ]
}  # fmt: skip
CARD["arms"][1]["training"] = {"kind": "scalar", "gain": 3.0}  # arm 2: a scalar codec

SUMMARY = {
    "results": [
        {"distortion": "pristine", "method": m, "accuracy": acc, "offload_bytes": b}
        for m, acc, b in (
            ("isplitee-online", 0.935, 1200),
            ("splitee-ucb1", 0.93, 1500),
            ("cloud-only", 0.9437, 12844),
            ("final-exit", 0.9437, 0),
        )
    ]
    + [  # another distortion, and a second row of a method: neither is taken
        {"distortion": d, "method": "isplitee-online", "accuracy": 0.1, "offload_bytes": 1}
        for d in ("noise:0.1", "pristine")
    ]
}  # fmt: skip


def _result(with_learned: bool) -> dict:
    raw = [
        {"arm": a, "codec": c, "bytes_median": 150_000 // a // f, "bytes_mean": 1.0, "top1": 0.94}
        for a in range(1, 6)
        for c, f in (("float16", 1), ("int8", 2), ("int8+zstd", 3))
    ]
    return {
        "model": "m.safetensors",
        "source": "caltech101-test",
        "frames": 64,
        "zstd_level": 19,
        "unsplit_top1": 0.9437,
        "camera": {"bytes_median": 12844, "bytes_mean": 13000.0, "top1": 0.9437},
        "jpeg": [
            {"quality": q, "bytes_median": 100 * q + 2000, "bytes_mean": 1.0, "top1": 0.8 + q / 700}
            for q in QUALITIES
        ],
        "raw": raw,
        "bottleneck": bottleneck_points(CARD) if with_learned else [],
        "policies": policy_points(SUMMARY) if with_learned else [],
    }


def test_readers_take_the_card_and_the_pristine_policies() -> None:
    points = bottleneck_points(CARD)
    assert len(points) == 6
    assert points[0] == {
        "arm": 1, "codec": "learned", "rate": 0, "bytes_median": 3000 + LATENT_HEADER_BYTES,
        "bytes_mean": 3100.0 + LATENT_HEADER_BYTES, "top1": 0.94,
    }  # fmt: skip
    assert {p["codec"] for p in points if p["arm"] == 2} == {"scalar"}
    policies = policy_points(SUMMARY)
    assert [p["method"] for p in policies] == ["isplitee-online", "splitee-ucb1", "cloud-only"]
    assert policies[0] == {"method": "isplitee-online", "offload_bytes": 1200.0, "accuracy": 0.935}


def test_subset_is_the_datasets_seeded_subset() -> None:
    assert subset_indices(10, None).tolist() == list(range(10))
    idx = subset_indices(100, 8, seed=3)
    assert len(idx) == 8 and (np.diff(idx) > 0).all()
    assert idx.tolist() == subset_indices(100, 8, seed=3).tolist()


def test_files_and_table_rows(tmp_path) -> None:
    for with_learned in (False, True):
        out = tmp_path / str(with_learned)
        paths = write_rate_accuracy(_result(with_learned), out)
        assert [p.name for p in paths] == [
            "rate_accuracy.json", "rate_accuracy.md", "rate_accuracy.png",
        ]  # fmt: skip
        assert all(p.stat().st_size > 0 for p in paths)
        assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert json.loads(paths[0].read_text())["unsplit_top1"] == 0.9437
        rows = [r for r in paths[1].read_text().splitlines() if r.startswith("| ")]
        names = [r.split("|")[1].strip() for r in rows if not r.startswith("| point")]
        expect = ["camera JPEG (as stored)", *(f"q{q}" for q in QUALITIES)]
        expect += [f"arm {a} {c}" for a in range(1, 6) for c in ("float16", "int8", "int8+zstd")]
        if with_learned:
            kind = {1: "learned", 2: "scalar"}
            expect += [f"arm {a} rate {r} ({kind[a]})" for a in (1, 2) for r in range(3)]
            expect += ["isplitee-online", "splitee-ucb1", "cloud-only"]
        assert names == expect
        q5 = next(r for r in rows if r.startswith("| q5 |"))
        assert q5 == "| q5 | 2,500 | 0.19 | 80.71 | -13.66 |"
