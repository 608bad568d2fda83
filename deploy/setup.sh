#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment at <repo>/.venv and install splitee
# with its dev extra. Idempotent: a second run only reinstalls when pyproject.toml changed.
# PyTorch from PyPI is large; pip's cache (~/.cache/pip) makes later installs cheap.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$REPO/.venv"
STAMP="$VENV/.splitee-installed"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "splitee needs Python 3.11 or newer (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
HASH="$(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && "$VENV/bin/python" -c 'import splitee' 2>/dev/null; then
  echo "[setup] $VENV is up to date"
  exit 0
fi
echo "[setup] installing splitee[dev] into $VENV (first time: PyTorch, a few minutes)"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -e "${REPO}[dev]"
echo "$HASH" > "$STAMP"
echo "[setup] done: $VENV/bin/splitee"
