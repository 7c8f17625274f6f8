"""The dashboard in a real browser during a real replay: Debian's chromium driven by Playwright.

`oddsflow dashboard` starts before its file exists (the page says how to produce data), then
`oddsflow replay --speed 600` plays the sample feed (about 2.4 hours of event time in ~15 s).
The overview must turn to the data by itself and follow the replay as it publishes, then
every page must show the final numbers of the file, with no Streamlit exception box; a
screenshot of each page lands in docs/screenshots/. No browser is ever downloaded: without
/usr/bin/chromium the tests skip, or fail under CI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.test_dashboard import ROOT, feed, one, sql

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "docs" / "screenshots"
SPEED = "600"
WIDTH = 1500
METRIC = "[data-testid='stMetric']"
CHART = "[data-testid='stVegaLiteChart']"
EXCEPTION = "[data-testid='stException']"


def _need_browser() -> None:
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (pip install playwright)"
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the dashboard exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the dashboard did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a dashboard (or replay) process: SIGTERM, then SIGKILL if it is still there
    after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Live:
    db: Path
    url: str
    feed: Path
    log: Path
    dashboard: subprocess.Popen[bytes]
    replay: subprocess.Popen[bytes] | None = None

    def start_replay(self) -> subprocess.Popen[bytes]:
        self.replay = subprocess.Popen(
            [*PYTHON, "replay", str(self.feed), "--db", str(self.db), "--speed", SPEED],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )
        return self.replay


PYTHON = [sys.executable, "-m", "flows"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The dashboard over a file that does not exist yet; the test starts the paced replay."""
    _need_browser()
    tmp = tmp_path_factory.mktemp("browser")
    port = _free_port()
    db = tmp / "live.duckdb"
    options = ["--server.port", str(port), "--server.headless", "true"]
    dashboard = subprocess.Popen(
        [*PYTHON, "dashboard", "--db", str(db), *options],
        cwd=ROOT,
        stdout=(tmp / "dashboard.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    state = Live(db, url, feed(tmp), tmp / "replay.log", dashboard)
    try:
        _wait_healthy(url, dashboard)
        yield state
    finally:
        for proc in (dashboard, state.replay):
            if proc is not None and proc.poll() is None:
                _stop(proc)


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
    yield page
    page.close()


def metric(page: Any, label: str) -> str | None:
    """The value of the metric whose label is exactly `label`, if the page shows it."""
    for box in page.locator(METRIC).all():
        try:
            if box.locator("[data-testid='stMetricLabel']").inner_text().strip() == label:
                return str(box.locator("[data-testid='stMetricValue']").inner_text().strip())
        except Exception:  # the element was replaced by a refresh between two calls
            continue
    return None


def selected(page: Any, label: str) -> str:
    """What the select box labelled `label` shows (its text, or its input's value)."""
    box = page.locator("[data-testid='stSelectbox']").filter(has_text=label).first
    inputs = " ".join(i.input_value() for i in box.locator("input").all())
    return f"{box.inner_text()} {inputs}"


def wait_for_selected(page: Any, label: str, text: str, timeout: float = 30) -> None:
    """Until the select box labelled `label` shows `text`: while a page reruns, Streamlit
    may show the box for a moment with nothing in it (seen once in CI, read as 'Match ')."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        no_exception(page)
        seen = selected(page, label)
        if text in seen:
            return
        time.sleep(0.5)
    raise AssertionError(f"{label}: expected {text!r} in it, last saw {seen!r}")


def no_exception(page: Any) -> None:
    boxes = page.locator(EXCEPTION)
    assert boxes.count() == 0, boxes.first.inner_text()


def wait_for_metric(page: Any, label: str, value: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        no_exception(page)
        seen = metric(page, label)
        if seen == value:
            return
        time.sleep(0.5)
    raise AssertionError(f"{label}: expected {value}, last saw {seen}")


def wait_for_charts(page: Any, count: int, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(
        """([selector, count]) => {
            const charts = document.querySelectorAll(selector);
            return charts.length >= count &&
                [...charts].every(c => c.querySelector('canvas, svg'));
        }""",
        arg=[CHART, count],
        timeout=timeout_ms,
    )


def screenshot(page: Any, name: str) -> Path:
    """The whole page: the viewport grows to the height of Streamlit's scrolling main area."""
    height = page.evaluate("() => document.querySelector(\"[data-testid='stMain']\").scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": max(1000, int(height) + 40)})
    time.sleep(1.0)  # let the charts take the new size
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": WIDTH, "height": 1000})
    assert path.stat().st_size > 10_000
    return path


def test_overview_waits_for_data_then_follows_the_replay(live: Live, page: Any) -> None:
    page.goto(live.url + "/")
    page.get_by_text("oddsflow: no data yet").wait_for(timeout=30_000)
    assert page.get_by_text(f"--db {live.db}").count() >= 1
    no_exception(page)

    replay = live.start_replay()
    page.wait_for_selector(METRIC, timeout=60_000)  # the page turns to the data by itself
    wait_for_charts(page, 2)
    seen: list[int] = []
    while replay.poll() is None:
        no_exception(page)
        value = metric(page, "Accepted lines")
        if value is not None and (not seen or int(value.replace(",", "")) != seen[-1]):
            seen.append(int(value.replace(",", "")))
        time.sleep(0.5)
    assert replay.returncode == 0, live.log.read_text()
    assert len(seen) >= 3, f"the overview did not refresh during the replay: {seen}"
    assert seen == sorted(seen)


def test_every_page_shows_the_final_numbers(live: Live, page: Any) -> None:
    assert live.replay is not None and live.replay.wait(timeout=120) == 0
    accepted = one(live.db, "SELECT count(*) FROM feed_events")
    rejected = one(live.db, "SELECT count(*) FROM rejects")

    # The overview page from the previous test refreshes by itself up to the final file.
    wait_for_metric(page, "Accepted lines", f"{accepted:,}")
    wait_for_metric(page, "Rejected lines", f"{rejected:,}")
    wait_for_charts(page, 3)
    screenshot(page, "overview")

    first = one(live.db, "SELECT match_id FROM matches ORDER BY kickoff, match_id LIMIT 1")
    suspensions = one(
        live.db,
        "SELECT count(*) FROM market_history WHERE match_id = ? AND status = 'SUSPENDED'",
        [first],
    )
    page.goto(live.url + "/match")
    wait_for_metric(page, "Suspensions", str(suspensions))
    wait_for_charts(page, 1)
    wait_for_selected(page, "Match", f"({first})")
    screenshot(page, "match")

    # A choice survives the page's own refreshes.
    last, label = sql(
        live.db,
        "SELECT match_id, home || ' v ' || away || ' (' || match_id || ')' FROM matches "
        "ORDER BY kickoff DESC, match_id DESC LIMIT 1",
    )[0]
    page.locator("[data-testid='stSelectbox']").filter(has_text="Match").first.click()
    page.get_by_role("option", name=label).click()
    held = one(
        live.db,
        "SELECT count(*) FROM market_history WHERE match_id = ? AND status = 'SUSPENDED'",
        [last],
    )
    wait_for_metric(page, "Suspensions", str(held))
    time.sleep(5)  # two refreshes
    wait_for_selected(page, "Match", f"({last})")  # still the choice, never the first again
    assert metric(page, "Suspensions") == str(held)

    settled = one(live.db, "SELECT count(*) FROM market_status WHERE status = 'SETTLED'")
    page.goto(live.url + "/markets")
    wait_for_metric(page, "Settled markets", str(settled))
    screenshot(page, "markets")

    page.goto(live.url + "/rejects")
    wait_for_metric(page, "Rejected lines", f"{rejected:,}")
    wait_for_charts(page, 1)
    screenshot(page, "rejects")
    no_exception(page)
