"""The slice viewer in a real headless browser: Debian chromium + chromedriver driven by selenium.

A small report (3 patients x 3 scans, the oracle pipeline of tests/test_pipeline.py) is built
once; its patient pages are opened from the report's links and driven with keys, the mouse
wheel, the slider, the window / overlay / timepoint controls and the per-scan table. Pixel
changes are read back from the canvases (``getImageData``). Every page must log no console
error and make no request (the performance entries hold only the page itself; the same page
also loads with the network switched off through the DevTools protocol).

Skipped, with the reason, when chromium, chromedriver or selenium is missing.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:  # pragma: no cover - selenium is a pinned test dependency
    HAVE_SELENIUM = False

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)"),
    pytest.mark.skipif(
        CHROMEDRIVER is None, reason="chromedriver not installed (Debian: apt-get install chromium-driver)"
    ),
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium not installed (pip install selenium)"),
]

# a canvas's pixels, reduced to a checksum (position-weighted, so a moved object changes it)
CANVAS_SUM = """
var c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, s = 0;
for (var i = 0; i < d.length; i += 4) { s = (s * 31 + d[i] * 3 + d[i + 1] * 5 + d[i + 2] * 7) % 2147483647; }
return s;
"""
# what the page loaded: every performance entry that is a fetch of something
REQUESTS = """
return performance.getEntries().filter(function (e) {
  return e.entryType === 'resource' || e.entryType === 'navigation';
}).map(function (e) { return e.name; });
"""


@pytest.fixture(scope="module")
def small_report(tmp_path_factory) -> Path:
    from mkunet.report import write_report
    from tests.run.test_pipeline import OracleBundle, make_tiny_cohort, run

    root = tmp_path_factory.mktemp("viewer-report")
    cohort = make_tiny_cohort(root / "cohort", n_patients=3, n_timepoints=3, dicom=False, shape=(16, 40, 40))
    result = run(cohort, root / "run", OracleBundle(), synthetic=True)
    return write_report(result.out_dir, root / "report.html")


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def wait_ready(driver, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = driver.find_element("id", "mk-viewer").get_attribute("data-ready")
        if state == "1":
            return
        assert state != "error", driver.find_element("id", "mk-viewer").text
        time.sleep(0.05)
    raise AssertionError("the viewer did not become ready")


def severe(driver) -> list[dict]:
    """Console errors, uncaught exceptions and failed loads since the last call (chromium logs them SEVERE).

    Warnings are not counted: chromium warns about the tests' own repeated ``getImageData`` read-backs."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_viewer(driver, page: Path, fragment: str = "") -> None:
    driver.get("about:blank")
    driver.get(page.as_uri() + fragment)
    wait_ready(driver)


def attr(driver, name: str) -> str:
    return driver.find_element("id", "mk-viewer").get_attribute(name)


def canvases(driver) -> list:
    return driver.find_elements("css selector", "canvas.mk-canvas")


def pixels(driver, j: int = 0) -> int:
    return driver.execute_script(CANVAS_SUM, canvases(driver)[j])


def test_report_links_every_patient_to_its_viewer(driver, small_report):
    text = small_report.read_text(encoding="utf-8")
    pages = sorted((small_report.parent / "patient").glob("*.html"))
    assert [p.stem for p in pages] == ["P00", "P01", "P02"]
    assert "<script" not in text.lower()  # the report itself stays script-free
    driver.get(small_report.as_uri())
    links = driver.find_elements("css selector", "a.viewer-link")
    assert len(links) == 3
    links[1].click()
    wait_ready(driver)
    assert driver.current_url.endswith("/patient/P01.html")
    assert "Patient P01" in driver.find_element("tag name", "h1").text
    assert len(canvases(driver)) == 3
    assert severe(driver) == []
    # a row of the per-scan table opens the viewer at that scan: a click on its last cell (the link's
    # ::after covers the row; ActionChains clicks what is on screen there)
    from selenium.webdriver.common.action_chains import ActionChains

    driver.get(small_report.as_uri())
    link = driver.find_element("css selector", 'a[href="patient/P02.html#t=2"]')
    last_cell = link.find_element("xpath", "./ancestor::tr/td[last()]")
    ActionChains(driver).move_to_element(last_cell).click().perform()
    wait_ready(driver)
    assert driver.current_url.endswith("/patient/P02.html#t=2")
    focused = driver.find_elements("css selector", "figure.mk-focus")
    assert [f.get_attribute("data-tp") for f in focused] == ["2"]
    assert severe(driver) == []


def test_keys_wheel_and_slider_change_the_slice_and_the_image(driver, small_report):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.keys import Keys

    open_viewer(driver, small_report.parent / "patient" / "P00.html")
    n = int(driver.find_element("id", "mk-slice").get_attribute("max")) + 1
    k0, img0 = int(attr(driver, "data-slice")), pixels(driver)
    assert 0 < k0 < n - 1
    readout0 = driver.find_element("id", "mk-readout").text
    assert readout0.startswith(f"slice {k0 + 1} / {n}") and " mm" in readout0
    panels = driver.find_element("id", "mk-panels")
    panels.click()
    ActionChains(driver).send_keys(Keys.ARROW_UP).perform()
    assert int(attr(driver, "data-slice")) == k0 + 1
    img1 = pixels(driver)
    assert img1 != img0
    assert driver.find_element("id", "mk-readout").text.startswith(f"slice {k0 + 2} / {n}")
    ActionChains(driver).send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN).perform()
    assert int(attr(driver, "data-slice")) == k0 - 1 and pixels(driver) not in (img0, img1)
    # the mouse wheel: down = next slice, up = previous (the pointer over the panel also draws the cursor)
    origin = ScrollOrigin.from_element(canvases(driver)[0])
    ActionChains(driver).move_to_element(canvases(driver)[0]).perform()
    below = pixels(driver)
    ActionChains(driver).scroll_from_origin(origin, 0, 120).perform()
    assert int(attr(driver, "data-slice")) == k0
    at_k0 = pixels(driver)
    assert at_k0 != below
    ActionChains(driver).scroll_from_origin(origin, 0, -120).perform()
    assert int(attr(driver, "data-slice")) == k0 - 1 and pixels(driver) == below
    # the slider (keyboard on the slider itself: End = last slice)
    slider = driver.find_element("id", "mk-slice")
    slider.send_keys(Keys.END)
    assert int(attr(driver, "data-slice")) == n - 1 and slider.get_attribute("value") == str(n - 1)
    ActionChains(driver).send_keys(Keys.HOME).perform()  # focus on the slider: its own Home
    assert int(attr(driver, "data-slice")) == 0
    assert severe(driver) == []


def test_window_and_overlay_toggles_change_the_pixels(driver, small_report):
    from selenium.webdriver.common.action_chains import ActionChains

    open_viewer(driver, small_report.parent / "patient" / "P01.html")
    driver.find_element("id", "mk-panels").click()
    lung = pixels(driver)
    assert attr(driver, "data-window") == "lung"
    ActionChains(driver).send_keys("w").perform()
    assert attr(driver, "data-window") == "mediastinum"
    assert driver.find_element("id", "mk-win-mediastinum").is_selected()
    mediastinum = pixels(driver)
    assert mediastinum != lung
    driver.find_element("css selector", 'label[for="mk-win-lung"]').click()
    assert attr(driver, "data-window") == "lung" and pixels(driver) == lung
    # the contour is an outline: turning it off changes only pixels on its edge
    label = canvases(driver)[0].get_attribute("aria-label")
    assert "contour of lesion GTV shown" in label
    driver.find_element("css selector", 'label[for="mk-contour"]').click()
    no_contour = pixels(driver)
    assert no_contour != lung and "contours hidden" in canvases(driver)[0].get_attribute("aria-label")
    outline = driver.execute_script(
        """
        var c = arguments[0], ctx = c.getContext('2d'), w = c.width, h = c.height;
        var a = ctx.getImageData(0, 0, w, h).data;
        document.getElementById('mk-contour').click();
        var b = ctx.getImageData(0, 0, w, h).data, diff = 0, red = 0;
        for (var i = 0; i < a.length; i += 4) {
          if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) {
            diff++;
            if (b[i] > 200 && b[i + 1] < 120) { red++; }
          }
        }
        return [diff, red, w * h];
        """,
        canvases(driver)[0],
    )
    diff, red, total = outline
    assert 0 < diff < 0.1 * total and red > 0.5 * diff  # a thin red line, not a filled blob
    assert pixels(driver) == lung
    # maps: the oracle network gives attention and probability maps
    for name, key in (("probability", "p"), ("attention", "a")):
        box = driver.find_element("id", f"mk-{name}")
        assert box.is_enabled() and not box.is_selected()
        ActionChains(driver).send_keys(key).perform()
        assert box.is_selected()
        with_map = pixels(driver)
        assert with_map != lung and f"{name} map shown" in canvases(driver)[0].get_attribute("aria-label")
        ActionChains(driver).send_keys(key).perform()
        assert pixels(driver) == lung
    assert severe(driver) == []


def test_timepoints_switch_and_the_table_jumps(driver, small_report):
    from selenium.webdriver.common.action_chains import ActionChains

    open_viewer(driver, small_report.parent / "patient" / "P02.html")
    figs = driver.find_elements("css selector", "figure.mk-panel")
    assert [f.is_displayed() for f in figs] == [True, True, True]
    captions = [f.find_element("tag name", "figcaption").text for f in figs]
    assert captions[0].startswith("T0 · day 0") and "baseline" in captions[0]
    assert all("cm³" in c for c in captions) and "not registered" in captions[1]
    # the three scans differ (the tumour grows)
    sums = [pixels(driver, j) for j in range(3)]
    assert len(set(sums)) == 3
    driver.find_element("css selector", 'label[for="mk-view-1"]').click()
    assert attr(driver, "data-view") == "1"
    assert [f.is_displayed() for f in figs] == [False, True, False]
    ActionChains(driver).send_keys("3").perform()
    assert [f.is_displayed() for f in figs] == [False, False, True]
    ActionChains(driver).send_keys("0").perform()
    assert [f.is_displayed() for f in figs] == [True, True, True]
    # the linked cursor: one mouse move draws it on every panel at the same voxel
    before = [pixels(driver, j) for j in range(3)]
    ActionChains(driver).move_to_element_with_offset(canvases(driver)[1], 10, 12).perform()
    after = [pixels(driver, j) for j in range(3)]
    assert all(a != b for a, b in zip(after, before))
    cursor = driver.find_element("id", "mk-cursor").text
    assert cursor.startswith("Cursor (x, y, z) = (") and "HU: T0 " in cursor and "T2 " in cursor
    # a table row jumps to that scan's lesion slice
    driver.find_element("id", "mk-slice").send_keys("\ue011")  # Home
    rows = driver.find_elements("css selector", "tr.mk-row")
    assert len(rows) == 3
    want = int(rows[2].find_elements("tag name", "td")[-1].text) - 1
    rows[2].click()
    assert int(attr(driver, "data-slice")) == want
    assert driver.find_element("css selector", "figure.mk-focus").get_attribute("data-tp") == "2"
    assert severe(driver) == []


def test_keyboard_only_labels_and_alt_text(driver, small_report):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    open_viewer(driver, small_report.parent / "patient" / "P00.html")
    unlabelled = driver.execute_script(
        "return Array.prototype.filter.call(document.querySelectorAll('input'),"
        " function (i) { return !i.labels || i.labels.length === 0; }).map(function (i) { return i.id; });"
    )
    assert unlabelled == []
    for c in canvases(driver):
        assert c.get_attribute("role") == "img" and "axial CT slice" in c.get_attribute("aria-label")
    # Tab reaches the slider, the window, the overlays, the image area and the table rows
    seen = []
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.focus();")
    for _ in range(20):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        el = driver.switch_to.active_element
        seen.append(el.get_attribute("id") or el.get_attribute("class") or el.tag_name)
    for want in ("mk-slice", "mk-win-lung", "mk-contour", "mk-panels", "mk-row"):
        assert want in seen, seen
    # with the image area focused (by Tab), keys scroll, Enter on a row jumps
    while driver.switch_to.active_element.get_attribute("id") != "mk-panels":
        ActionChains(driver).send_keys(Keys.SHIFT, Keys.TAB).perform()
    k = int(attr(driver, "data-slice"))
    ActionChains(driver).send_keys(Keys.PAGE_DOWN).perform()
    assert int(attr(driver, "data-slice")) == max(k - 5, 0)
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ARROW_RIGHT).key_up(Keys.SHIFT).perform()
    assert driver.find_element("id", "mk-cursor").text.startswith("Cursor (x, y, z)")
    row = driver.find_elements("css selector", "tr.mk-row")[1]
    row_slice = int(row.find_elements("tag name", "td")[-1].text) - 1
    driver.execute_script("arguments[0].focus()", row)
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    assert int(attr(driver, "data-slice")) == row_slice
    assert severe(driver) == []


def test_no_request_leaves_the_page_even_offline(driver, small_report):
    page = small_report.parent / "patient" / "P01.html"
    open_viewer(driver, page)
    assert driver.execute_script(REQUESTS) == [page.as_uri()]
    # and with the network switched off, the page works the same
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
    )
    try:
        open_viewer(driver, page, "#t=1")
        assert driver.execute_script(REQUESTS) == [page.as_uri() + "#t=1"]
        assert pixels(driver) != 0
    finally:
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
    assert severe(driver) == []


def test_the_checks_can_fail(driver, tmp_path):
    """A page that logs an error and asks for a remote image is caught by both checks."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><img alt='x' src='http://127.0.0.1:9/x.png'>"
        "<script>console.error('boom-check')</script></body></html>",
        encoding="utf-8",
    )
    driver.get(bad.as_uri())
    time.sleep(0.5)
    assert any("127.0.0.1:9" in name for name in driver.execute_script(REQUESTS))
    assert any("boom-check" in e["message"] for e in severe(driver))


def test_single_run_viewer_one_click_one_scroll(driver, tmp_path):
    """The page of ``mkunet segment --viewer`` (write_segmentation_viewer): one panel, a scroll changes it."""
    import numpy as np
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    from mkunet.report.viewer import write_segmentation_viewer
    from mkunet.segmentation.infer import Segmentation
    from mkunet.volume import Volume

    zz, yy, xx = np.meshgrid(np.arange(20), np.arange(60), np.arange(60), indexing="ij")
    ball = ((zz - 10) * 2.0) ** 2 + ((yy - 30) * 0.8) ** 2 + ((xx - 28) * 0.8) ** 2 <= 8.0**2
    hu = np.where(ball, 30.0, -820.0).astype(np.float32)
    vol = Volume(hu, (2.0, 0.8, 0.8))
    seg = Segmentation(mask=ball, probability=ball.astype(np.float32), volume=vol, method="image")
    page = write_segmentation_viewer(seg, tmp_path / "viewer.html")
    open_viewer(driver, page)
    assert len(canvases(driver)) == 1
    assert not driver.find_element("id", "mk-attention").is_enabled()  # no network: no attention map
    assert "not available" in driver.find_element("id", "mk-attention-note").text
    k0, img0 = int(attr(driver, "data-slice")), pixels(driver)
    ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(canvases(driver)[0]), 0, 300).perform()
    assert int(attr(driver, "data-slice")) == k0 + 1 and pixels(driver) != img0
    assert driver.execute_script(REQUESTS) == [page.as_uri()]
    assert severe(driver) == []
