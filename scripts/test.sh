#!/usr/bin/env bash
# All tests, from a fresh clone: set up, then the unit tests and the executed notebooks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
export MPLBACKEND=Agg
.venv/bin/python -m pytest tests/ "$@"
# Per-cell limit: the longest cell (four Fashion-MNIST students) takes ~146 s on 2 idle cores; 600 s leaves room
# for a busy machine (nbmake's default is 300 s).
.venv/bin/python -m pytest --nbmake --nbmake-timeout=600 --durations=0 notebooks/ "$@"
