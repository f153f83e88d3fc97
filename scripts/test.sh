#!/usr/bin/env bash
# All tests, from a fresh clone: set up, then the unit tests and the executed notebooks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
export MPLBACKEND=Agg
.venv/bin/python -m pytest tests/ "$@"
.venv/bin/python -m pytest --nbmake notebooks/ "$@"
