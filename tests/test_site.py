"""The HTML book (`make site`) opened page by page in a real browser: headless Chromium via selenium.

Uses Debian's `chromium` and `chromium-driver` (no browser download at run time). Without them the
tests skip and say how to install them; CI sets TCMAX_REQUIRE_BROWSER=1, which turns the skip into a
failure. The site is built from build/executed/, which the suite's one FAST run of each chapter writes
(`tests/conftest.py`, `suite.Lane`). One screenshot per page goes to build/site-check/.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tcmax_lib.course import book, series

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "build" / "site"
SHOTS = ROOT / "build" / "site-check"
CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def site(chapters) -> Path:
    if not (CHROMIUM and DRIVER):
        msg = ("no headless browser: install Debian's `chromium` and `chromium-driver` "
               "(`apt-get install chromium chromium-driver`) to run the site tests")
        if os.environ.get("TCMAX_REQUIRE_BROWSER") == "1":
            pytest.fail(msg + " (TCMAX_REQUIRE_BROWSER=1: CI requires them)")
        pytest.skip(msg)
    for nb in series.notebooks():                        # the suite's one run of each writes build/executed/
        chapters.get(nb)
    return book.build_site(ROOT / "build" / "executed", SITE)


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def driver(site):
    os.environ["SE_AVOID_STATS"] = "true"                       # selenium manager: no network, no statistics
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(DRIVER))
    drv.set_script_timeout(60)
    yield drv
    drv.quit()


def _pages(site: Path) -> list[str]:
    skip = {"search.html", "genindex.html", "py-modindex.html"}
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if p.name not in skip and not p.relative_to(site).as_posix().startswith(("_", ".")))


def _open(driver, url: str) -> None:
    driver.get(url)
    driver.execute_async_script(                                # wait until MathJax has typeset the page
        "const done = arguments[arguments.length - 1];"
        "if (window.MathJax && MathJax.startup && MathJax.startup.promise) {"
        "  MathJax.startup.promise.then(() => done(true), () => done(false)); } else { done(true); }")


def test_site_has_every_chapter_and_the_api(site):
    pages = _pages(site)
    for nb in series.notebooks():
        assert f"notebooks/{nb.stem}.html" in pages, nb.name
    assert "index.html" in pages and "api.html" in pages


def test_every_page_loads_without_errors_with_images_and_math(site, server, driver):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for page in _pages(site):
        _open(driver, server + page)
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"{page}: JavaScript errors {errors}"
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert not broken, f"{page}: images that did not load {broken}"
        unrendered = driver.execute_script(
            "return Array.from(document.querySelectorAll('.math')).filter(e => !e.querySelector('mjx-container'))"
            ".map(e => e.textContent.slice(0, 80))")
        assert not unrendered, f"{page}: math MathJax did not render {unrendered[:3]}"
        # MyST pitfall: display math inside a paragraph swallows the prose after it into one huge formula
        huge = driver.execute_script(
            "return Array.from(document.querySelectorAll('mjx-container')).map(m => m.textContent.length)"
            ".filter(n => n > 600)")
        assert not huge, f"{page}: a formula of {huge} characters, prose swallowed into math?"
        problems = driver.execute_script("return document.querySelectorAll('.problematic, .system-message').length")
        assert problems == 0, f"{page}: {problems} reStructuredText/MyST errors rendered into the page"
        driver.save_screenshot(str(SHOTS / (page.replace("/", "__").removesuffix(".html") + ".png")))
    notebooks_with_math = [p for p in _pages(site) if p.startswith("notebooks/01")]
    _open(driver, server + notebooks_with_math[0])
    assert driver.execute_script("return document.querySelectorAll('mjx-container').length") > 20


@functools.cache
def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def test_every_internal_link_resolves(site, server, driver):
    bad = []
    for page in _pages(site):
        _open(driver, server + page)
        hrefs = driver.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
        for href in hrefs:
            if not href.startswith(server):
                continue
            target, _, frag = href.partition("#")
            status, html = _fetch(target)
            if status != 200:
                bad.append(f"{page} -> {href} (HTTP {status})")
            elif frag and target.endswith(".html") and not re.search(rf'id="{re.escape(frag)}"', html):
                bad.append(f"{page} -> {href} (no element with id {frag!r})")
    assert not bad, "\n".join(sorted(set(bad))[:30])


def test_chapter_navigation_reaches_every_notebook_in_order(site, server, driver):
    _open(driver, server + "index.html")
    visited = []
    for _ in range(20):
        nxt = driver.execute_script("const a = document.querySelector('a.right-next'); return a ? a.href : null")
        if nxt is None:
            break
        driver.get(nxt)
        visited.append(nxt.removeprefix(server))
    chapters = [v for v in visited if v.startswith("notebooks/")]
    assert chapters == [f"notebooks/{nb.stem}.html" for nb in series.notebooks()], visited
    assert visited[-1] == "api.html"


def test_solutions_are_collapsed_behind_a_toggle(site, server, driver):
    import nbformat

    for nb in series.notebooks():
        solutions = sum("solution" in c.metadata.get("tags", []) for c in nbformat.read(nb, as_version=4).cells)
        assert solutions >= 3, f"{nb.name}: {solutions} solution cells"
        _open(driver, server + f"notebooks/{nb.stem}.html")
        closed = driver.execute_script(
            "return Array.from(document.querySelectorAll('details')).filter(d => !d.open).length")
        assert closed >= solutions, f"{nb.name}: {closed} collapsed toggles for {solutions} solutions"


def test_each_chapter_offers_both_editions_for_download_and_the_guide_is_a_page(site, server, driver):
    assert "instructors.html" in _pages(site)
    for nb in series.notebooks():
        _open(driver, server + f"notebooks/{nb.stem}.html")
        hrefs = driver.execute_script("return Array.from(document.querySelectorAll('p.downloads a')).map(a => a.href)")
        assert hrefs == [f"{server}downloads/{e}/{nb.name}" for e in book.EDITIONS], (nb.name, hrefs)
        for href in hrefs:                                     # the file itself, byte for byte the committed one
            folder = book.EDITIONS[href.split("/")[-2]]
            with urllib.request.urlopen(href) as resp:
                assert resp.read() == (ROOT / folder / nb.name).read_bytes()
