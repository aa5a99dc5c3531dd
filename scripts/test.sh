#!/usr/bin/env bash
# The whole test suite, from a fresh machine: system packages (xvfb), the venv, then pytest under a
# virtual X server.  Extra arguments go to pytest (e.g. --run-slow, -k io).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install_xvfb.sh
source scripts/setup_env.sh
set +e
xvfb-run -a -s "-screen 0 1600x1000x24" "$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
    echo "test.sh: pytest collected no tests -- failing on purpose" >&2
    exit 1
fi
exit "$rc"
