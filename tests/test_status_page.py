"""The status page at ``/`` on --metrics-bind, in a real browser (headless Chromium): its worker
table follows the master, its requests/s chart moves under load, and it needs no network."""

from __future__ import annotations

import os
import re
import signal

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from test_health_metrics import get, status_url
from test_status_view import kept_busy

from conftest import DEADLINE, debian_binary, wait_for


@pytest.fixture
def browser():
    chromium = debian_binary("chromium", "chromium")
    driver_path = debian_binary("chromedriver", "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--no-first-run", "--disable-extensions", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(DEADLINE)
    yield driver
    driver.quit()


def _rows(driver) -> dict[int, list[str]]:
    """{pid: cell texts} of the worker table, read in one script (the page rebuilds it each second)."""
    found = driver.execute_script(
        "return [...document.querySelectorAll('#workers tr')]"
        ".map(r => [r.dataset.pid, [...r.cells].map(c => c.textContent)])")
    return {int(pid): cells for pid, cells in found}


def _lines(driver) -> dict[int, tuple[str, float]]:
    """{pid: (points, highest rate)} of the chart's polylines."""
    found = driver.execute_script(
        "return [...document.querySelectorAll('#chart polyline')]"
        ".map(l => [l.dataset.pid, l.getAttribute('points'), l.dataset.max])")
    return {int(pid): (points, float(last)) for pid, points, last in found}


def _attribute(driver, element: str, name: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element}').getAttribute('{name}')")


def test_the_page_is_self_contained(start_server):
    server = start_server(["--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0", "testapp:app"])
    status, body = get(status_url(server), "/")
    assert status == 200
    page = body.decode()
    assert "<svg" in page and "status.json" in page
    # Nothing to fetch from elsewhere: no external script, style, image or font.
    assert not re.search(r"""\b(src|href)\s*=|@import|url\(""", page)
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}  # a name only


def test_the_page_shows_the_workers_and_charts_their_rates_under_load(start_server, browser):
    server = start_server(["--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0", "--workers", "2",
                           "testapp:app"], workers=2)
    url = status_url(server)
    pids = set(server.booted_pids())
    with kept_busy(server):
        browser.get(url + "/")
        assert browser.title == "sharedsock status"
        rows = wait_for(lambda: (r := _rows(browser)) and set(r) == pids and r,
                        message="a table row per worker")
        for cells in rows.values():
            assert cells[2:4] == ["1", "ready"]  # generation, state
        # Under load every worker's line rises above zero, and new points keep arriving.
        lines = wait_for(lambda: (found := _lines(browser)) and set(found) == pids and
                         all(rate > 0 for _, rate in found.values()) and found,
                         message="a rising line per worker in the chart")
        updates = int(_attribute(browser, "chart", "data-updates"))
        wait_for(lambda: all(_lines(browser)[pid][0] != lines[pid][0] for pid in pids),
                 message="the chart to gain points")
        assert int(_attribute(browser, "chart", "data-updates")) > updates
        assert all(float(cells[5]) >= 0 for cells in _rows(browser).values())  # req/s column
        totals = browser.execute_script("return document.getElementById('totals').textContent")
        assert re.match(r"requests \d+ \(\d+\.\d/s\)", totals), totals
        # The table follows the master: a killed worker's row goes, its replacement's comes.
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        server.wait_log(r"Booted worker \d+ \(generation 1\)", count=3)
        replacement = server.booted_pids()[-1]
        wait_for(lambda: set(_rows(browser)) == pids - {victim} | {replacement},
                 message="the replacement's row instead of the killed worker's")
        assert browser.execute_script("return document.getElementById('error').textContent") == ""
    assert server.stop() == 0
