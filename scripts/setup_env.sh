#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the package with its test
# extras from pyproject.toml.  Sourced by demo.sh and test.sh; safe to run repeatedly.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARSESEG_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    echo "napari-sparseseg needs Python >= 3.10 (found: $("$PY" --version 2>&1))" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment in $VENV" >&2
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.sparseseg-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "[setup] installing napari-sparseseg and its dependencies (first run: a few minutes)" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
    "$VENV/bin/python" -m pip check
    touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
