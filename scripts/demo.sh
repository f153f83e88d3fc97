#!/usr/bin/env bash
# The main job, from a fresh clone: set up, then `simkd-lite demo` (extra arguments are passed on).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
exec .venv/bin/simkd-lite demo "$@"
