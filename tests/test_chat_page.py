"""The chat page of ``examples/simple_chat.py``, used as a person would: in headless Chromium.

The example runs as a user runs it (``python examples/simple_chat.py PORT``);
Selenium drives Debian's ``chromium`` through its ``chromedriver`` (nothing is
downloaded). The browser test skips, saying why, where either is missing:
``apt-get install chromium chromium-driver`` and ``pip install aiows[browser]``.
Set ``AIOWS_SCREENSHOT_DIR`` to keep a screenshot of each tab.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from processes import EXAMPLES, run_example

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 15.0  # seconds any one step of the page may take
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=900,700",
]




@pytest.fixture
def chat_port() -> Iterator[int]:
    """``python examples/simple_chat.py PORT``, listening; stopped with SIGTERM after the test."""
    yield from run_example("simple_chat.py")


def test_page_is_served_over_plain_http(chat_port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{chat_port}/", timeout=WAIT) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.read() == (EXAMPLES / "static" / "chat.html").read_bytes()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium under chromedriver, with a fresh profile; skips where either is missing."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install aiows[browser])")
    with tempfile.TemporaryDirectory(prefix="aiows-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # driver.get_log("browser"): the console
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
        try:
            driver.set_page_load_timeout(WAIT)
            driver.set_script_timeout(WAIT)
            yield driver
        finally:
            driver.quit()


def log_lines(driver: Any) -> list[str]:
    lines: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#log li')].map((li) => li.className + ' ' + li.textContent)"
    )
    return lines


def wait_until(driver: Any, what: str, done: Callable[[], bool]) -> None:
    """Poll ``done()`` for at most ``WAIT`` seconds; fail with the page's log."""
    end = time.monotonic() + WAIT
    while not done():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not seen within {WAIT} s; the page shows {log_lines(driver)}")
        time.sleep(0.05)


def wait_for_line(driver: Any, line: str) -> None:
    wait_until(driver, repr(line), lambda: line in log_lines(driver))


def open_page(driver: Any, port: int) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"http://127.0.0.1:{port}/")
    status = driver.find_element(By.ID, "status")
    wait_until(driver, "Connected", lambda: status.text == "Connected")
    wait_for_line(driver, "info Connected!")  # the server's welcome frame


def fill(driver: Any, **values: str) -> None:
    from selenium.webdriver.common.by import By

    for element_id, value in values.items():
        field = driver.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)


def click(driver: Any, element_id: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, element_id).click()


def screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("AIOWS_SCREENSHOT_DIR")
    if folder:
        driver.save_screenshot(os.path.join(folder, f"{name}.png"))


def test_two_tabs_chat_in_a_room(chat_port: int, browser: Any) -> None:
    ann = browser.current_window_handle
    open_page(browser, chat_port)

    # Saying something before joining: the server's error frame shows up.
    fill(browser, room="kitchen", text="anyone here?")
    click(browser, "send")
    wait_for_line(browser, "error Error (not_in_room): join room 'kitchen' before saying something in it")

    fill(browser, name="ann", room="kitchen")
    click(browser, "join")
    wait_for_line(browser, "info ann joined kitchen (1 here)")

    browser.switch_to.new_window("tab")
    bob = browser.current_window_handle
    open_page(browser, chat_port)
    fill(browser, name="bob", room="kitchen")
    click(browser, "join")
    wait_for_line(browser, "info bob joined kitchen (2 here)")
    fill(browser, text="hello ann")
    click(browser, "send")
    wait_for_line(browser, "said bob: hello ann")  # the room includes the sender
    screenshot(browser, "bob")

    browser.switch_to.window(ann)
    wait_for_line(browser, "info bob joined kitchen (2 here)")
    wait_for_line(browser, "said bob: hello ann")
    fill(browser, text="hi bob")
    click(browser, "send")
    wait_for_line(browser, "said ann: hi bob")
    screenshot(browser, "ann")
    click(browser, "leave")
    wait_for_line(browser, "info ann left kitchen (1 here)")

    browser.switch_to.window(bob)
    wait_for_line(browser, "said ann: hi bob")
    wait_for_line(browser, "info ann left kitchen (1 here)")
    # A bad field: the server's validation error shows up too.
    fill(browser, text="")
    click(browser, "send")
    wait_until(
        browser,
        "a validation_error line",
        lambda: any(line.startswith("error Error (validation_error)") for line in log_lines(browser)),
    )


def said_lines(driver: Any) -> list[str]:
    return [line for line in log_lines(driver) if line.startswith("said ")]


def test_the_page_recovers_what_it_missed_while_its_server_restarted(browser: Any, tmp_path: Any) -> None:
    """Two chat processes on one Redis. The page's process stops; the chat goes on in the other; the page's
    process starts again: the page (aiows.js) reconnects, joins again from the last message it saw, and
    shows every message it missed, once and in order."""
    import asyncio

    import orjson
    from processes import free_port
    from test_broadcast_redis import REDIS_SERVER, RedisProcess, start_chat, stop
    from websockets.asyncio.client import connect

    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH (apt-get install redis-server)")
    redis = RedisProcess(tmp_path)
    redis.start()
    port_a, port_b = free_port(), free_port()
    a = start_chat(port_a, redis.url)
    b = start_chat(port_b, redis.url)

    async def bob_says(*texts: str) -> None:
        async with connect(f"ws://127.0.0.1:{port_b}") as bob:
            await bob.send(orjson.dumps({"type": "join", "room": "kitchen", "name": "bob"}).decode())
            for text in texts:
                await bob.send(orjson.dumps({"type": "say", "room": "kitchen", "text": text}).decode())
            while (frame := orjson.loads(await asyncio.wait_for(bob.recv(), WAIT)))["type"] != "said" or (
                frame["text"] != texts[-1]
            ):
                pass  # every line of his is published once he has heard his last one

    try:
        open_page(browser, port_a)
        fill(browser, name="ann", room="kitchen")
        click(browser, "join")
        wait_for_line(browser, "info ann joined kitchen (1 here)")
        asyncio.run(bob_says("m1"))
        wait_for_line(browser, "said bob: m1")

        stop(a)  # the page's server goes away (1001): the page reconnects with backoff
        status = browser.find_element("id", "status")
        wait_until(browser, "reconnecting", lambda: "reconnecting" in status.text)
        asyncio.run(bob_says("m2", "m3"))
        a = start_chat(port_a, redis.url)
        wait_for_line(browser, "info Rejoined kitchen")
        wait_until(browser, "Connected", lambda: status.text == "Connected")
        asyncio.run(bob_says("m4"))
        wait_for_line(browser, "said bob: m4")
        screenshot(browser, "recovered")
        assert said_lines(browser) == ["said bob: m1", "said bob: m2", "said bob: m3", "said bob: m4"]
        lines = log_lines(browser)
        assert not any("could not be recovered" in line for line in lines), lines
        # what happened in the room while the page was away shows too, in its place
        assert lines.index("said bob: m2") < lines.index("info Rejoined kitchen")
    finally:
        for process in (a, b):
            if process.poll() is None:
                stop(process)
        redis.kill()
