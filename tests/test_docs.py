"""The docs site: it builds with warnings as errors, every internal link and anchor resolves, and headless
Chromium renders the landing page and a guide with their titles (Debian's ``chromium``, which ``.ci/run``
installs; without it, and outside CI, that one test is skipped, saying so)."""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import sys
import urllib.parse

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def _pages(site) -> dict[str, _Page]:
    pages = {}
    for root, _, files in os.walk(site):
        for name in files:
            if name.endswith(".html"):
                path = os.path.join(root, name)
                page = _Page()
                page.feed(open(path, encoding="utf-8").read())
                pages[os.path.relpath(path, site)] = page
    return pages


def test_the_site_builds_with_warnings_as_errors_and_has_every_section(site):
    for page in (
        "index",
        "getting-started",
        "concepts",
        "algorithms",
        "guides/sweeps",
        "guides/extending",
        "results",
        "performance",
        "reference/api",
        "reference/cli",
        "faq",
    ):
        assert (site / f"{page}.html").is_file(), page
    cli = (site / "reference" / "cli.html").read_text()
    assert "--smoke-test" in cli and "--algorithm" in cli and "async-diloco" in cli  # from the parsers
    api = (site / "reference" / "api.html").read_text()
    assert "dana_ray.register_rule" in api and "dana_ray.run" in api  # from the docstrings


def test_every_internal_link_and_anchor_resolves(site):
    pages, broken = _pages(site), []
    for name, page in pages.items():
        for href in page.links:
            url = urllib.parse.urlsplit(href)
            if url.scheme or href.startswith("//") or href.startswith("mailto:"):
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(name), url.path)) if url.path else name
            if target not in pages:
                if not os.path.exists(os.path.join(site, target)):
                    broken.append(f"{name}: {href}")
                continue
            if url.fragment and urllib.parse.unquote(url.fragment) not in pages[target].ids:
                broken.append(f"{name}: {href}")
    assert broken == []
    assert sum(len(p.links) for p in pages.values()) > 500  # the check saw the site's links


def test_chromium_renders_the_landing_page_and_a_guide(site, tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    for page, title in (("index.html", "dana_ray"), ("guides/sweeps.html", "Sweeps")):
        url = (site / page).as_uri()
        args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]
        dom = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        parsed = _Page()
        parsed.feed(dom)
        start = dom.index("<title>") + len("<title>")
        assert dom[start : dom.index("</title>")].startswith(title), page
        assert len(parsed.links) > 20  # the rendered page has its navigation
        shot = tmp_path / (page.replace("/", "_") + ".png")
        subprocess.run([*args, f"--screenshot={shot}", url], capture_output=True, timeout=120)
        assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000, page
