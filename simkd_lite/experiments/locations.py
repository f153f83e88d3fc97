"""Where a notebook's runs go when it does not say (``RUNS = None``), and where its data comes from.

Inside a simkd_lite clone the notebooks share the clone's ``runs/notebooks/`` (runs named by their settings
are reused from one notebook to the next); anywhere else (a notebook copied out alone, a wheel-installed
package, a JupyterHub home) they go to ``runs/`` next to the notebook, i.e. under the working directory that
Jupyter gives a notebook: nothing is written above the notebook's own folder. Data: see
``simkd_lite.data.default_data_root``.
"""
from __future__ import annotations

from pathlib import Path

from simkd_lite.data import default_data_root, find_clone

__all__ = ["default_data_root", "default_runs_root"]


def default_runs_root() -> Path:
    """``<clone>/runs/notebooks`` when the working directory is inside a simkd_lite clone, else ``./runs``
    (absolute, so the choice does not change if the working directory does)."""
    clone = find_clone()
    return clone / "runs" / "notebooks" if clone is not None else Path.cwd() / "runs"
