#!/usr/bin/env bash
# The course site, from a fresh clone: set up, then build it into _build/html/ (open _build/html/index.html).
#   1. set-up as for the other scripts (scripts/setup.sh: .venv with the docs extra, Fashion-MNIST, chromium),
#   2. the notebooks executed once, in _executed/ (skipped when scripts/test.sh already executed the current ones),
#   3. MathJax fetched once from the npm package `mathjax` into _build/mathjax/ (the pages load nothing online),
#   4. Sphinx + MyST-NB + sphinx-book-theme: landing page, one page per notebook, the results pages.
# Safe to re-run; extra arguments go to pytest when the notebooks are executed. See scripts/book.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
export MPLBACKEND=Agg
exec .venv/bin/python scripts/book.py build "$@"
