"""The HTML report and HTML diff as a person sees them: headless Chromium (Debian's chromium and
chromium-driver) loads the pages from file:// while the embedded servers that made the images
still run, and every image must load, the console must stay clean and the page must not scroll
sideways at desktop (1280x800) or phone (390x844) size. Screenshots go to outputs/ for people.

selenium drives the system chromedriver by its explicit path, so selenium-manager never downloads
anything. Skipped (with the reason) only when the browser or its driver is not installed.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fixtures_execute import write_spec
from fixtures_looks import SPEC as LOOKS_SPEC
from fixtures_looks import deployment
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import Select

from batchrun.cli import main
from batchrun.server import ServerThread
from batchrun.server.image import image_path, prompt_digest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "outputs"
QUICKSTART = ROOT / "specs" / "quickstart.yaml"
DESKTOP = (1280, 800)
PHONE = (390, 844)
SIZES = {"square": (512, 512), "landscape_4_3": (1024, 768)}  # the quickstart's image sizes

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # a Chromium per test
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason=f"needs {CHROMIUM} and {CHROMEDRIVER} "
        "(Debian packages chromium and chromium-driver; .ci/run installs them)",
    ),
]

ServerFactory = Callable[..., AbstractContextManager[ServerThread]]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def run_quickstart(server: ServerThread, output: Path) -> None:
    code = main(["run", str(QUICKSTART), "-o", str(output), "--no-progress",
                 "--run-url", server.run_url, "--queue-url", server.queue_url])  # fmt: skip
    assert code == 0


def fresh_log(driver: Any) -> None:
    """Leave the previous page, then drop what it logged: a live viewer page of an earlier test
    keeps polling its (stopped) server until it is unloaded, and a refused poll logged after the
    log was read would be counted against the next page."""
    driver.get("about:blank")
    driver.get_log("browser")


def open_page(driver: Any, page: Path, size: tuple[int, int]) -> None:
    driver.set_window_size(*size)
    fresh_log(driver)
    driver.get(page.as_uri())
    deadline = time.monotonic() + 15
    while not driver.execute_script("return [...document.images].every(i => i.complete)"):
        assert time.monotonic() < deadline, "images still loading after 15 s"
        time.sleep(0.05)
    # Decoded too, so a screenshot shows the pictures rather than their placeholders.
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.allSettled([...document.images].map(i => i.decode())).then(() => done(true));"
    )


def image_widths(driver: Any) -> list[int]:
    return driver.execute_script("return [...document.images].map(i => i.naturalWidth)")


def horizontal_overflow(driver: Any) -> int:
    """Pixels the page is wider than the window (0 when it does not scroll sideways)."""
    return driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")


def severe_console(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver: Any, name: str) -> Path:
    """The whole page (not just the window) at the window's width, via the DevTools protocol."""
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
    options = {"format": "png", "captureBeyondViewport": True, "clip": clip}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", options)
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def check_page(driver: Any, page: Path, images: int, shots: dict[tuple[int, int], str]) -> None:
    for size, name in shots.items():
        open_page(driver, page, size)
        widths = image_widths(driver)
        assert len(widths) == images
        assert all(width > 0 for width in widths), widths
        assert severe_console(driver) == []
        assert driver.execute_script("return window.innerWidth") == size[0]
        assert horizontal_overflow(driver) <= 0
        assert screenshot(driver, name).stat().st_size > 10_000


def test_quickstart_report_in_chromium(browser: Any, make_server: ServerFactory, tmp_path: Path) -> None:
    output, page = tmp_path / "quickstart.jsonl", tmp_path / "report" / "report.html"
    with make_server(runners=2) as server:
        run_quickstart(server, output)
        assert main(["report", str(output), "--html", str(page)]) == 0
        check_page(browser, page, 6, {DESKTOP: "report-desktop.png", PHONE: "report-phone.png"})
        browser.set_window_size(*DESKTOP)
        sheet = browser.execute_script(
            "const t = document.querySelector('table.sheet');"
            "return [t.dataset.rows, t.dataset.cols, [...t.querySelectorAll('thead th .value')].map(e => e.textContent),"
            " [...t.querySelectorAll('tbody th .value')].map(e => e.textContent)]"
        )
        assert sheet == ["style", "seed", ["1", "2", "3"], ["watercolor", "photo"]]
        # The full image is one click away: the thumbnail's link is the image itself.
        links = browser.execute_script(
            "return [...document.querySelectorAll('.shot a')].map(a => a.href === a.firstChild.src)"
        )
        assert links == [True] * 6


def changed_image_app(server: dict[str, ServerThread]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """local/image as it might behave after a model update: seed 3 now draws seed 7's picture,
    and the photo of seed 2 fails."""

    def app(arguments: dict[str, Any]) -> dict[str, Any]:
        prompt, seed = arguments["prompt"], arguments["seed"]
        if "photo" in prompt and seed == 2:
            raise RuntimeError("model update broke photos")
        drawn = 7 if seed == 3 else seed
        width, height = SIZES[arguments["image_size"]]
        url = server["new"].origin + image_path(prompt_digest(prompt), drawn, 0, width, height)
        image = {"url": url, "width": width, "height": height, "content_type": "image/png"}
        return {"images": [image], "seed": drawn, "prompt": prompt, "has_nsfw_concepts": [False]}

    return app


def test_diff_page_in_chromium(browser: Any, make_server: ServerFactory, tmp_path: Path) -> None:
    base_out, new_out, page = tmp_path / "base.jsonl", tmp_path / "new.jsonl", tmp_path / "diff.html"
    servers: dict[str, ServerThread] = {}
    with make_server(runners=2) as base_server:
        servers["new"] = make_server(runners=2, apps={"local/image": changed_image_app(servers)})
        with servers["new"] as new_server:
            run_quickstart(base_server, base_out)
            new_run = ["run", str(QUICKSTART), "-o", str(new_out), "--no-progress",
                       "--run-url", new_server.run_url, "--queue-url", new_server.queue_url]  # fmt: skip
            assert main(new_run) == 1  # the failed photo
            # --latency-ratio: a loaded machine's slower second run must not add latency cards to this page.
            assert main(["diff", str(base_out), str(new_out), "--html", str(page), "--latency-ratio", "1000"]) == 1
            # 1 newly failing (base image | new error) + 2 results changed (base | new | difference each).
            check_page(browser, page, 7, {DESKTOP: "diff-desktop.png", PHONE: "diff-phone.png"})
            cards = browser.execute_script(
                "return [...document.querySelectorAll('section[data-id]')].map(s => "
                "[s.closest('div').previousElementSibling.id, s.querySelectorAll('.base img').length,"
                " s.querySelectorAll('.new img').length, s.querySelectorAll('.new .err').length])"
            )
            assert cards == [["newly_failing", 1, 0, 1], ["results_changed", 1, 1, 0], ["results_changed", 1, 1, 0]]


def test_visual_diff_page_in_chromium(browser: Any, make_server: ServerFactory, tmp_path: Path) -> None:
    """A re-encoded picture is "visually the same" and a redrawn one "visually changed", each card
    showing base | new | difference at one width; the redrawn new side is marked for its failed
    check; the category buttons filter the page without a script."""
    spec = write_spec(tmp_path, LOOKS_SPEC)
    outs = {}
    for name, new in (("base", False), ("new", True)):
        outs[name] = tmp_path / name / "out.jsonl"
        with make_server(apps={"me/draw": deployment(new=new)}) as server:
            assert main(["run", str(spec), "-o", str(outs[name]), "--no-progress",
                         "--run-url", server.run_url, "--queue-url", server.queue_url]) == (1 if new else 0)  # fmt: skip
    page = tmp_path / "looks.html"
    # --latency-ratio: a loaded machine's slower second run must not add latency cards to this page.
    assert main(["diff", str(outs["base"]), str(outs["new"]), "--html", str(page), "--latency-ratio", "1000"]) == 1
    # results changed (redrawn) + visually the same (reencoded): 3 images each; the expectation
    # regression card shows the redrawn pair again, without a difference (its change is the check).
    check_page(browser, page, 8, {DESKTOP: "diff-visual-desktop.png", PHONE: "diff-visual-phone.png"})
    for size in (DESKTOP, PHONE):
        open_page(browser, page, size)
        cards = browser.execute_script(
            "return [...document.querySelectorAll('section[data-id]')].map(s => ["
            " s.closest('.category').dataset.category, s.dataset.visual,"
            " (s.querySelector('.visual') || {}).textContent || '',"
            " [...s.querySelectorAll('.side img')].map(i => Math.round(i.getBoundingClientRect().width)),"
            " s.querySelectorAll('.new .checks-failed').length])"
        )
        assert [card[:2] for card in cards] == [
            ["results_changed", "changed"], ["visually_same", "same"], ["expectation_regressions", ""]]
        assert cards[0][2].startswith("visually changed, pHash distance ")
        assert cards[1][2] == "visually the same, pHash distance 0/64"
        for card in cards[:2]:
            # One width (a failed check's thicker outline takes 2 px off), and not thumbnails of thumbnails.
            assert len(card[3]) == 3 and max(card[3]) - min(card[3]) <= 2 and min(card[3]) > 90, card
        assert [card[4] for card in cards] == [1, 0, 1]  # the redrawn picture's seed check failed
    browser.set_window_size(*DESKTOP)
    browser.find_element("css selector", "label[for=show-visually_same]").click()
    shown = browser.execute_script(
        "return [...document.querySelectorAll('.category')].filter(c => c.offsetParent !== null)"
        ".map(c => c.dataset.category)")
    assert shown == ["visually_same"]
    assert screenshot(browser, "diff-visual-filtered.png").stat().st_size > 10_000
    browser.find_element("css selector", "label[for=show-all]").click()
    assert browser.execute_script("return document.querySelectorAll('.category').length") == 3
    assert all(browser.execute_script(
        "return [...document.querySelectorAll('.category')].map(c => c.offsetParent !== null)"))
    assert severe_console(browser) == []


LIVE_SPEC = """\
    version: 1
    name: live
    concurrency: 1
    defaults: {mode: run, download: true}
    jobs:
      - name: sweep
        endpoint: local/image
        arguments: {prompt: "a lighthouse, ${{ matrix.style }}", seed: "${{ matrix.seed }}", delay: 0.35,
                    image_size: {width: 192, height: 144}}
        matrix: {style: [ink, oil], seed: [1, 2, 3, 4]}
        expect:
          - {path: seed, max: 3}
      - name: broken
        endpoint: local/fail
        arguments: {status: 422}
"""


def start_viewer(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`batchrun view ARGS --port 0` in a subprocess; (the process, its URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "batchrun", "view", *args, "--port", "0"],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert " at http://127.0.0.1:" in line, line
    return proc, line.split(" at ")[1].split(" ")[0]


def tiles(driver: Any) -> int:
    return driver.execute_script("return document.querySelectorAll('#sheet figure').length")


def wait_until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_live_viewer_follows_a_run(browser: Any, make_server: ServerFactory, tmp_path: Path) -> None:
    """The page fills in while the run appends records: new tiles appear without a reload; at the
    end it shows every request, the error by type and the failed checks, and filters in place."""
    spec, out = write_spec(tmp_path, LIVE_SPEC), tmp_path / "live.jsonl"
    viewer, url = start_viewer(str(out))
    try:
        with make_server(runners=2) as model:
            run = subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), "--no-progress",
                                    "--run-url", model.run_url, "--queue-url", model.queue_url],
                                   stderr=subprocess.DEVNULL)  # fmt: skip
            try:
                browser.set_window_size(*DESKTOP)
                fresh_log(browser)
                browser.get(url)
                browser.execute_script("window.loadedOnce = true")  # gone if the page ever reloads
                wait_until(lambda: tiles(browser) >= 1)
                first = tiles(browser)
                assert first < 9
                assert browser.execute_script("return document.getElementById('status').textContent").startswith(
                    "running: ")
                wait_until(lambda: tiles(browser) > first)
                assert browser.execute_script("return window.loadedOnce") is True
                assert screenshot(browser, "view-running.png").stat().st_size > 10_000
                assert run.wait(timeout=60) == 1  # the failed request and the failed checks
            finally:
                if run.poll() is None:
                    run.kill()
            wait_until(lambda: tiles(browser) == 9)
            wait_until(lambda: browser.execute_script(
                "return document.getElementById('status').textContent").startswith("not running: 9/9"))
            assert browser.execute_script("return window.loadedOnce") is True
            for size, name in ((DESKTOP, "view-desktop.png"), (PHONE, "view-phone.png")):
                browser.set_window_size(*size)
                wait_until(lambda: browser.execute_script("return [...document.images].every(i => i.complete)"))
                widths = image_widths(browser)
                assert len(widths) == 8 and all(w > 0 for w in widths), widths
                assert horizontal_overflow(browser) <= 0
                assert screenshot(browser, name).stat().st_size > 10_000
            counts = browser.execute_script(
                "return Object.fromEntries([...document.querySelectorAll('#counts tr')].map(r => "
                "[r.dataset.key, r.querySelector('td').textContent]))")
            assert (counts["finished"], counts["ok"], counts["errors"], counts["failed checks"]) == ("9/9", "8", "1", "2")
            errors = browser.execute_script(
                "return [...document.querySelectorAll('#errors tr')].map(r => [...r.cells].map(c => c.textContent))")
            assert len(errors) == 1 and errors[0][1] == "1"
            assert browser.execute_script("return document.querySelectorAll('#hist rect').length") >= 1
            assert browser.execute_script("return document.querySelectorAll('#sheet .checks-failed').length") == 2
            browser.set_window_size(*DESKTOP)
            Select(browser.find_element("id", "f-matrix")).select_by_value("style=oil")
            visible = browser.execute_script(
                "return [...document.querySelectorAll('#sheet figure')].filter(f => !f.hidden).length")
            assert visible == 4
            Select(browser.find_element("id", "f-matrix")).select_by_value("")
            Select(browser.find_element("id", "f-status")).select_by_value("error")
            assert browser.execute_script(
                "return [...document.querySelectorAll('#sheet figure')].filter(f => !f.hidden)"
                ".map(f => f.querySelector('figcaption').textContent)") == ["broken"]
            assert severe_console(browser) == []
    finally:
        viewer.terminate()
        viewer.communicate(timeout=10)


def test_live_viewer_compares_with_a_base(browser: Any, make_server: ServerFactory, tmp_path: Path) -> None:
    """With BASE each tile shows base beside new and the verdict by look; the status filter offers
    the verdicts."""
    spec = write_spec(tmp_path, LOOKS_SPEC)
    outs = {}
    for name, new in (("base", False), ("new", True)):
        outs[name] = tmp_path / name / "out.jsonl"
        with make_server(apps={"me/draw": deployment(new=new)}) as server:
            main(["run", str(spec), "-o", str(outs[name]), "--no-progress",
                  "--run-url", server.run_url, "--queue-url", server.queue_url])  # fmt: skip
    viewer, url = start_viewer(str(outs["new"]), str(outs["base"]))
    try:
        for size, name in ((DESKTOP, "view-compare-desktop.png"), (PHONE, "view-compare-phone.png")):
            browser.set_window_size(*size)
            fresh_log(browser)
            browser.get(url)
            wait_until(lambda: tiles(browser) == 3)
            wait_until(lambda: browser.execute_script("return [...document.images].every(i => i.complete)"))
            assert len(image_widths(browser)) == 6 and all(w > 0 for w in image_widths(browser))
            badges = browser.execute_script(
                "return [...document.querySelectorAll('#sheet figure')].map(f => [f.dataset.visual,"
                " f.querySelector('.badge').textContent])")
            assert [b[0] for b in badges] == ["identical", "same", "changed"]
            assert badges[1][1] == "visually the same 0/64" and badges[2][1].startswith("visually changed ")
            assert horizontal_overflow(browser) <= 0
            assert severe_console(browser) == []
            assert screenshot(browser, name).stat().st_size > 10_000
        Select(browser.find_element("id", "f-status")).select_by_value("changed")
        assert browser.execute_script(
            "return [...document.querySelectorAll('#sheet figure')].filter(f => !f.hidden).length") == 1
    finally:
        viewer.terminate()
        viewer.communicate(timeout=10)
