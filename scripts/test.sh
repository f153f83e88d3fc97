#!/usr/bin/env bash
# All tests, from a fresh clone: set up, then the unit tests and the executed notebooks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
export MPLBACKEND=Agg
.venv/bin/python -m pytest tests/ "$@"
# Per-cell limit: a cell that trains four Fashion-MNIST students takes ~4 min on 2 cores (nbmake default: 300 s).
.venv/bin/python -m pytest --nbmake --nbmake-timeout=1200 --durations=0 notebooks/ "$@"
