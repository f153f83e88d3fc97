"""Sphinx configuration of the course site (built by ./scripts/book.sh into _build/html/).

This folder is copied into _build/site/ together with the executed notebooks (notebooks/), the results
pages (results/) and headline.md (computed from the committed seed table); see scripts/book.py.
Nothing on a page is fetched from the network: MathJax is served from _static/mathjax/ (the npm package,
copied there by book.py), the theme's fonts and icons are its own files, and notebooks are not executed
here (they were, once, by nbmake).

Why this stack: Sphinx, MyST-NB and sphinx-book-theme are pip packages (the `docs` extra) that build with no
network: MyST-NB renders the outputs saved in a notebook without executing it, and the book theme gives one page
per notebook with a table of contents and a download button for the .ipynb. Jupyter Book 2 runs on the Node-based
mystmd, which fetches its site template when it builds; Jupyter Book 1 is this same stack behind a wrapper.
"""
project = "simkd_lite"
author = "the simkd_lite developers"
copyright = "the simkd_lite developers, MIT licence"

extensions = ["myst_nb", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "headline.md"]  # headline.md: included by index.md
suppress_warnings = ["mystnb.unknown_mime_type"]

# MyST: $...$ / $$...$$ math in markdown and notebooks, anchors for the headings that pages link to.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# MyST-NB: show the outputs saved by the one execution (scripts/test.sh or book.py); never re-run here.
nb_execution_mode = "off"
nb_ipywidgets_js = {}            # no widget library from a CDN: widget outputs are dropped by book.py
nb_merge_streams = True          # one block per cell for the per-epoch progress lines

# Math: MathJax 3 from this site (the default would load MathJax 4 from a CDN, which fails offline).
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "sphinx_book_theme"
html_title = "SimKD, taught and measured"
html_static_path = ["_static"]
html_last_updated_fmt = ""
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "use_download_button": True,   # the .ipynb, to run it yourself
    "use_fullscreen_button": False,
    "use_repository_button": False,
}
html_show_sourcelink = False
