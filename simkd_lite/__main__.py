"""`python -m simkd_lite ...` is the same as the `simkd-lite` command."""
from simkd_lite.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
