#!/usr/bin/env bash
# One-time set-up on a fresh machine, safe to re-run (it skips what is already done):
#   1. a virtual environment in .venv (Python >= 3.10),
#   2. simkd_lite installed into it in editable mode, with the test and docs extras,
#   3. Fashion-MNIST under data/ (Debian's package offline, else torchvision's download),
#   4. npm (MathJax for the course site) and Debian's chromium for its browser test (tests/test_site.py skips,
#      saying why, without it).
# Run by scripts/demo.sh, scripts/test.sh and scripts/book.sh; run it alone with `./scripts/setup.sh`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

# Reinstall only when pyproject.toml changed since the last successful install.
stamp=.venv/.simkd_lite-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing simkd_lite and its dependencies into .venv (torch is large: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev,docs]"
  touch "$stamp"
fi

# Fashion-MNIST: our loader copies Debian's files if present, else tries torchvision's download.
if ! .venv/bin/simkd-lite data fetch fashion_mnist --quiet; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing Debian's dataset-fashion-mnist package"
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
    .venv/bin/simkd-lite data fetch fashion_mnist --quiet
  else
    echo "Fashion-MNIST is missing and cannot be downloaded here. Run one of:" >&2
    echo "  sudo apt-get install dataset-fashion-mnist      # Debian/Ubuntu, works offline" >&2
    echo "  .venv/bin/simkd-lite data fetch fashion_mnist   # anywhere with internet" >&2
    exit 1
  fi
fi

# npm fetches MathJax once for the course site (scripts/book.py); Node.js comes with most machines, else Debian's.
if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing Debian's npm (the course site's math renderer, MathJax, is an npm package)"
  apt-get install -y -qq npm >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq npm >/dev/null; } \
    || echo "note: could not install npm; ./scripts/book.sh will say how to get it" >&2
fi

# Chromium for tests/test_site.py: Debian's package, driven by Playwright (never `playwright install`, which
# downloads a browser build of its own).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing Debian's chromium (for the course site's browser test)"
    apt-get install -y -qq chromium >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; } \
      || echo "note: could not install chromium, so tests/test_site.py will be skipped" >&2
  else
    echo "note: chromium is missing, so tests/test_site.py will be skipped (sudo apt-get install chromium)" >&2
  fi
fi
