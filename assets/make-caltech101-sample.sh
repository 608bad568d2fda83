#!/usr/bin/env bash
# Rebuild assets/caltech101-sample.zip: the first 3 frames of every class of Caltech-101's
# fixed test split (303 JPEGs, stored byte for byte at their own resolution), laid out as
# <class>/<file>.jpg so the image-folder source reads it. Usage: assets/make-caltech101-sample.sh
# [CALTECH]  (default: data.images, e.g. ../shared/data/caltech101).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/.venv/bin/python" - "${1:-}" <<'PY'
import sys, zipfile
from collections import Counter
from pathlib import Path

from splitee.images import open_source
from splitee.settings import load_settings

src = open_source(Path(sys.argv[1]) if sys.argv[1] else load_settings().data.images, "test")
target = Path("assets/caltech101-sample.zip")
taken = Counter()
with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
    for member, data, label in src.iter_bytes():
        if taken[label] < 3:
            taken[label] += 1
            cls, name = member.split("/")[-2:]
            zi = zipfile.ZipInfo(f"{cls}/{name}", date_time=(2004, 1, 1, 0, 0, 0))
            zf.writestr(zi, data)
print(f"{target}: {sum(taken.values())} frames of {len(taken)} classes")
PY
