#!/usr/bin/env bash
# All tests, from a fresh clone: set up, execute the notebooks once, build the course site from them, then the
# unit tests (tests/test_site.py opens that site in chromium). Exits non-zero if any step failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
export MPLBACKEND=Agg
rm -rf _build/html   # never test a site left over from an earlier run
status=0
# 1. The notebooks, executed ONCE for the tests and the site: `pytest --nbmake --overwrite` on fresh copies in
#    _executed/ (scripts/book.py). Per-cell limit: the longest cell (four Fashion-MNIST students) takes ~146 s on
#    2 idle cores; 600 s leaves room for a busy machine (nbmake's default is 300 s).
.venv/bin/python scripts/book.py execute "$@" || status=$?
# 2. The site from those executed copies, never a second execution (with `-k`, say, no site: its test skips).
if [ "$status" = 0 ]; then .venv/bin/python scripts/book.py build --no-execute || status=$?; fi
# 3. The unit tests, and the browser test of the site.
.venv/bin/python -m pytest tests/ "$@" || status=$?
exit "$status"
