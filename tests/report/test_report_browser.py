"""The report in a real headless browser (Debian chromium): loads without console errors, every image decodes.

Skipped (with the reason) when chromium is not installed. The page itself needs no
script: for the check only, a copy of the report gets a tiny inline script that, on
load, writes into a ``data-`` attribute how many <img> decoded (naturalWidth > 0);
``--dump-dom`` then shows it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.report.test_report import shared_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium); browser check skipped"
)

PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
});
</script>"""


def chromium(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        *extra,
        url,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp)


def console_errors(stderr: str) -> list[str]:
    """Page-level problems in chromium's log: console messages, uncaught errors, failed loads."""
    pattern = re.compile(r"CONSOLE|Uncaught|net::ERR_|Failed to load|Not allowed to load", re.I)
    return [line for line in stderr.splitlines() if pattern.search(line)]


def probe(report: Path, tmp: Path) -> tuple[str | None, list[str]]:
    page = tmp / "probe.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = chromium(page.as_uri(), tmp, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    m = re.search(r'<body[^>]*data-images="(\d+/\d+)"', done.stdout)
    return (m.group(1) if m else None), console_errors(done.stderr)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return shared_report(tmp_path_factory)[0]


def test_report_loads_without_errors_and_every_image_decodes(report, tmp_path):
    n_img = report.read_text(encoding="utf-8").count("<img")
    assert n_img >= 5
    images, errors = probe(report, tmp_path)
    assert images == f"{n_img}/{n_img}", images
    assert errors == [], errors
    # the page as shipped (no probe script) loads cleanly too
    plain = chromium(report.as_uri(), tmp_path, "--dump-dom")
    assert plain.returncode == 0 and "Kaplan-Meier" in plain.stdout
    assert console_errors(plain.stderr) == []


def test_probe_detects_a_broken_image(report, tmp_path):
    text = report.read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(
        text.replace('src="data:image/png;base64,iVBOR', 'src="data:image/png;base64,AAAA', 1), encoding="utf-8"
    )
    n_img = text.count("<img")
    images, _ = probe(broken, tmp_path)
    assert images == f"{n_img - 1}/{n_img}"
    # and a console error is seen in chromium's log
    noisy = tmp_path / "noisy.html"
    noisy.write_text("<html><body><script>console.error('boom-check')</script></body></html>", encoding="utf-8")
    assert any("boom-check" in line for line in console_errors(chromium(noisy.as_uri(), tmp_path, "--dump-dom").stderr))


def test_screenshot(report, tmp_path):
    shot = tmp_path / "report.png"
    done = chromium(report.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1200,3000")
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a rendered page, not a blank one
