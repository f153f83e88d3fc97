"""The course site (./scripts/book.sh -> _build/html/) in a real browser: Debian's chromium, driven by Playwright.

Every request that would leave this machine is blocked (and recorded: a page that tries one fails), so the test
proves that the site works offline. For every notebook page: no error output, every image loaded, all math typeset
by the bundled MathJax, no script error, and every link to another page (and its #anchor) resolves.
scripts/test.sh builds the site after executing the notebooks, then runs this; elsewhere it is skipped, saying why.
"""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
RESULTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.md"))
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

if not (SITE / "index.html").is_file():
    pytest.skip("the course site is not built (_build/html/index.html is missing): run ./scripts/book.sh "
                "(scripts/test.sh builds it after executing the notebooks)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install -e '.[docs]'")
if not Path(CHROMIUM).is_file():
    pytest.skip("Debian's chromium is not installed (sudo apt-get install chromium; scripts/setup.sh does it as root)",
                allow_module_level=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log in the test output
        pass


@pytest.fixture(scope="module")
def site_url():
    """The built site served on a free localhost port (as a user's `python -m http.server` would)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(SITE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: chromium refuses its sandbox when run as root (CI runs as root)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


class Visit:
    """One page opened with every non-local request blocked; what it tried and what went wrong is recorded."""

    def __init__(self, browser, url: str):
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.script_errors: list[str] = []
        self.context = browser.new_context()
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda err: self.script_errors.append(str(err)))
        self.page.on("requestfailed", lambda req: self.failed.append(f"{req.url} ({req.failure})"))
        response = self.page.goto(url, wait_until="load")
        assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"

    def _route(self, route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def typeset_math(self) -> dict:
        """Wait for MathJax (if the page has math) and count math elements with and without its output."""
        return self.page.evaluate("""async () => {
            const math = Array.from(document.querySelectorAll('span.math, div.math'));
            if (math.length && window.MathJax && MathJax.startup) { await MathJax.startup.promise; }
            return {math: math.length, mathjax: !!(window.MathJax && MathJax.startup),
                    untypeset: math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80))};
        }""")

    def images(self) -> list[dict]:
        return self.page.evaluate("""() => Array.from(document.images).map(img => ({
            src: img.getAttribute('src'), loaded: img.complete && img.naturalWidth > 0,
            in_output: !!img.closest('.cell_output')}))""")

    def links(self) -> list[str]:
        return self.page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")

    def close(self):
        self.context.close()


@functools.lru_cache(maxsize=None)
def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:  # localhost only (checked by the caller)
        return response.read().decode("utf-8", errors="replace")


def _check_links(visit: Visit, site_url: str) -> list[str]:
    """Every link to this site resolves, and its #anchor exists on the target page; returns what did not."""
    broken = []
    for href in visit.links():
        target, fragment = urldefrag(href)
        if not target.startswith(site_url):
            continue  # external references (the paper, GitHub): never followed offline
        try:
            html = _fetch(target)
        except OSError as err:
            broken.append(f"{href}: {err}")
            continue
        if fragment and target.endswith(".html") and f'id="{fragment}"' not in html:
            broken.append(f"{href}: no element with id {fragment!r}")
    return broken


def _check_page(visit: Visit, site_url: str) -> dict:
    math = visit.typeset_math()
    assert not visit.blocked, f"the page tried to reach the network: {visit.blocked}"
    assert not visit.failed, f"requests failed: {visit.failed}"
    assert not visit.script_errors, f"script errors: {visit.script_errors}"
    assert not math["untypeset"], f"math left untypeset: {math['untypeset']}"
    assert math["math"] == 0 or math["mathjax"], "the page has math but MathJax did not load"
    images = visit.images()
    assert all(img["loaded"] for img in images), f"images not loaded: {[i['src'] for i in images if not i['loaded']]}"
    assert _check_links(visit, site_url) == []
    return {"math": math["math"], "figures": sum(img["in_output"] for img in images)}


def test_the_landing_page_shows_the_headline_comparison_and_links_every_page(browser, site_url):
    visit = Visit(browser, f"{site_url}/index.html")
    try:
        found = _check_page(visit, site_url)
        text = visit.page.inner_text("main")
        assert "SimKD − vanilla" in text and "± " in text, "the seed table's comparison is missing"
        assert found["math"] > 0
        links = visit.links()
        for stem in NOTEBOOKS:
            assert any(link.endswith(f"notebooks/{stem}.html") for link in links), f"no link to {stem}"
        for stem in RESULTS:
            assert any(link.endswith(f"results/{stem}.html") for link in links), f"no link to results/{stem}"
    finally:
        visit.close()


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_a_notebook_page_shows_its_outputs_offline(browser, site_url, stem):
    visit = Visit(browser, f"{site_url}/notebooks/{stem}.html")
    try:
        found = _check_page(visit, site_url)
        page = visit.page
        assert page.locator(".cell_output .traceback, .cell_output .output.error").count() == 0, "an error output"
        outputs = page.locator(".cell_output").count()
        text = page.inner_text("main")
        if stem.startswith("05"):  # the student version: no outputs, no solutions, no hidden tests
            assert outputs == 0
            assert "NotImplementedError" in text
            assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
        else:
            assert outputs > 0 and "Traceback (most recent call last)" not in text
            assert found["figures"] > 0, "no figure in the outputs"
    finally:
        visit.close()


@pytest.mark.parametrize("stem", RESULTS)
def test_a_results_page_opens_offline_with_working_links(browser, site_url, stem):
    visit = Visit(browser, f"{site_url}/results/{stem}.html")
    try:
        _check_page(visit, site_url)
    finally:
        visit.close()


def test_some_notebook_page_has_typeset_math(browser, site_url):
    """The check above only says 'no math left untypeset'; make sure it was not vacuous."""
    counts = {}
    for stem in NOTEBOOKS:
        visit = Visit(browser, f"{site_url}/notebooks/{stem}.html")
        try:
            counts[stem] = visit.typeset_math()["math"]
        finally:
            visit.close()
    assert sum(counts.values()) > 0, counts
