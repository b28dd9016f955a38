"""The Snakemake HTML report of a tiny sweep, opened in a real headless browser.

Runs the tiny workflow (mlp only, to keep it cheap), builds ``report.html`` with
``snakemake --report``, and opens it in Debian's chromium: a small script injected
into a copy of the report clicks through the report's own menu (every result
category, every result's view button) and records what the page displays; the test
then asserts that every figure was shown as a decoded image, that the findings and
runtime tables were shown, and that no script error occurred. A screenshot of one
figure must not be blank.

chromium missing: under ``CI=true`` the test installs it with apt-get (as root);
elsewhere it skips and says how to install it.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.workflow import run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser")
APT_PACKAGES = ["chromium"]

#: Injected before </body> of a copy of the report. It drives the report's own menu like a
#: user: for each result category (the global ``categories`` of the report), click its menu
#: entry, then click the "eye" button of every result; after each click it records what the
#: content pane shows (a decoded <img> and its pixel size, or an <iframe>), using the
#: report's globals ``app`` (its state names the result shown) and ``results``.
DRIVER_JS = r"""
(function () {
  const out = {shown: [], categories: [], errors: [], menu: []};
  window.addEventListener("error", (ev) => out.errors.push(String(ev.message)));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const navLink = (text) => Array.from(document.querySelectorAll("nav a"))
      .find((a) => a.textContent.trim() === text);
  const content = () => Array.from(document.querySelectorAll("#app img, #app iframe"))
      .filter((el) => !el.closest("nav"));
  async function openCategory(name) {
    let link = navLink(name);
    if (!link) {               // inside another category: back to the results menu first
      const back = navLink("Results");
      if (back) { back.click(); await sleep(200); }
      link = navLink(name);
    }
    if (!link) return false;
    link.click();
    await sleep(300);
    return true;
  }
  async function run() {
    await sleep(500);
    out.menu = Array.from(document.querySelectorAll("nav a")).map((a) => a.textContent.trim()).filter(Boolean);
    for (const cat of Object.keys(categories)) {
      out.categories.push(cat);
      if (!(await openCategory(cat))) { out.errors.push("no menu entry for category " + cat); continue; }
      const buttons = Array.from(document.querySelectorAll("nav table a[iconname='eye']"))
          .filter((a) => a.getAttribute("href") === "#");   // viewable inline; others are downloads
      for (const button of buttons) {
        button.click();
        await sleep(300);
        const path = app.state.resultPath;
        const el = content()[0];
        const rec = {category: cat, name: path && results[path] ? results[path].name : null, tag: el ? el.tagName : null};
        if (el && el.tagName === "IMG") {
          rec.complete = el.complete; rec.width = el.naturalWidth; rec.height = el.naturalHeight;
          rec.src = el.src.slice(0, 30);
        } else if (el) {
          rec.src = el.src.slice(0, 30);
        }
        out.shown.push(rec);
      }
    }
    const pre = document.createElement("pre");
    pre.id = "convergent-report-test";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  window.addEventListener("load", () => { run().catch((e) => { out.errors.push(String(e)); }); });
})();
"""

#: Shows the first figure of the report full-pane, for a screenshot.
SHOW_FIRST_FIGURE_JS = r"""
window.addEventListener("load", () => setTimeout(() => {
  const path = Object.keys(results).find((p) => results[p].mime_type === "image/png");
  app.setView({content: "img", contentPath: results[path].data_uri, resultPath: path});
}, 300));
"""


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def install_chromium(timeout: float = 900) -> None:
    """apt-get install chromium (root only); an empty package list is updated once and retried."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail("CI=true but chromium is missing and cannot be installed here (needs root and apt-get)",
                    pytrace=False)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=timeout)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", pytrace=False)
    print(f"installed chromium in {time.monotonic() - start:.1f} s")


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_browser()
    if path is None:
        if os.environ.get("CI") != "true":
            pytest.skip("no headless browser: install Debian's chromium "
                        "(`apt-get install -y --no-install-recommends chromium`), or set CI=true to let "
                        "the test install it")
        install_chromium()
        path = find_browser()
        if path is None:
            pytest.fail("chromium still missing after apt-get install", pytrace=False)
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A finished tiny mlp sweep and its self-contained HTML report."""
    workdir = tmp_path_factory.mktemp("report")
    write_config(workdir, tiny_config(archs=["mlp"]))
    run_snakemake(workdir)
    run_snakemake(workdir, "--report", str(workdir / "report.html"))
    return workdir


def run_browser(browser: str, page: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Headless chromium on a local file; virtual time lets the page's timers run before the dump."""
    cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
           "--virtual-time-budget=30000", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def with_script(report_html: Path, script: str, out: Path) -> Path:
    """A copy of the report with ``script`` run after the report's own scripts."""
    text = report_html.read_text()
    cut = text.rfind("</body>")
    assert cut > 0, "the report has no </body>"
    out.write_text(text[:cut] + "<script>" + script + "</script>" + text[cut:])
    return out


def test_report_is_self_contained(report):
    text = (report / "report.html").read_text()
    # every figure is embedded as data, nothing is fetched from results/
    for png in sorted((report / "results/figures").glob("*.png")):
        assert png.name in text
    assert "data:image/png" in text
    assert not re.search(r"""src=["'](?!data:|#)[^"']*results/""", text)


def test_report_shows_every_figure_in_a_browser(report, browser):
    page = with_script(report / "report.html", DRIVER_JS, report / "report_driven.html")
    proc = run_browser(browser, page, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r'<pre id="convergent-report-test">(.*?)</pre>', proc.stdout, re.S)
    assert m, "the driver did not finish: " + proc.stdout[-2000:]
    seen = json.loads(html.unescape(m.group(1)))
    assert seen["errors"] == []
    for category in ("Findings", "Runtime"):
        assert category in seen["menu"] and category in seen["categories"]
    images = {r["name"]: r for r in seen["shown"] if r["tag"] == "IMG"}
    figures = sorted(p.name for p in (report / "results/figures").glob("*.png"))
    assert figures, "the sweep made no figures"
    for name in figures:
        assert name in images, f"{name} was not shown; shown: {sorted(images)}"
        shown = images[name]
        assert shown["complete"] and shown["width"] > 100 and shown["height"] > 100, shown
        assert shown["src"].startswith("data:image/png")
    frames = {r["name"] for r in seen["shown"] if r["tag"] == "IFRAME"}
    assert {"findings.html", "runtime.html"} <= frames


def test_figure_screenshot_is_not_blank(report, browser, tmp_path):
    from PIL import Image

    page = with_script(report / "report.html", SHOW_FIRST_FIGURE_JS, tmp_path / "first_figure.html")
    shot = tmp_path / "shot.png"
    proc = run_browser(browser, page, f"--screenshot={shot}", "--window-size=1400,1000")
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-3000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 1000)
    # a plot has axes, lines and text: thousands of distinct colours, not a blank page
    assert len(image.getcolors(maxcolors=1 << 20) or []) > 200
