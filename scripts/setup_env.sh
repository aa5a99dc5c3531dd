#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the package with its test
# extras from pyproject.toml.  Sourced by demo.sh and test.sh; safe to run repeatedly.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARSESEG_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "napari-sparseseg needs Python >= 3.11 (found: $("$PY" --version 2>&1))" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment in $VENV" >&2
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.sparseseg-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "[setup] installing napari-sparseseg and its dependencies (first run: a few minutes)" >&2
    log="$VENV/install.log"
    if ! { "$VENV/bin/python" -m pip install --upgrade pip \
           && "$VENV/bin/python" -m pip install -e "$ROOT[test]" \
           && "$VENV/bin/python" -m pip check; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "[setup] installation failed; full log: $log" >&2
        exit 1
    fi
    touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
