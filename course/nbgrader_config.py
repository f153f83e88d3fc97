"""nbgrader configuration for the SimKD assignment (notebooks/05_assignment.ipynb); see course/README.md.

Run nbgrader from this folder: `cd course && nbgrader generate_assignment simkd`.
"""
import os
from pathlib import Path

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "simkd_lite"
c.CourseDirectory.root = str(Path(__file__).resolve().parent)

# Part 5 trains two small students: more than nbgrader's default 30 s for one cell.
c.Execute.timeout = 600

# The notebook reads its data from $SIMKD_LITE_DATA (else ../data, which does not exist inside course/):
# default to this repository's data/ folder so that autograding works from a fresh checkout.
os.environ.setdefault("SIMKD_LITE_DATA", str(Path(__file__).resolve().parents[1] / "data"))
