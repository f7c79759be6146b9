"""The docs page (``docs_path``) as a person sees it: ``examples/simple_chat.py``'s, in headless Chromium.

The example runs as a user runs it; the page must show every channel and
message with its fields, types, constraints and example payload, and leave
nothing in the browser console (the page loads nothing: no script, no CDN,
no favicon request). Set ``AIOWS_SCREENSHOT_DIR`` to keep a screenshot.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from processes import run_example
from test_chat_page import WAIT, browser  # noqa: F401  (the fixture: headless Chromium under chromedriver)


@pytest.fixture
def chat_port() -> Iterator[int]:
    yield from run_example("simple_chat.py")


def test_docs_page_shows_the_contract_without_console_errors(chat_port: int, browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    with urllib.request.urlopen(f"http://127.0.0.1:{chat_port}/asyncapi.json", timeout=WAIT) as response:
        document = json.loads(response.read())
    browser.get(f"http://127.0.0.1:{chat_port}/docs")
    assert browser.title == "aiows chat 1.0.0: messages"
    assert browser.find_element(By.TAG_NAME, "h1").text == "aiows chat"
    channel = browser.find_element(By.ID, "channel-root")
    assert channel.is_displayed() and channel.find_element(By.TAG_NAME, "h2").text == "Channel /"
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, ".message h4")]
    for key, message in document["components"]["messages"].items():  # every message, with its name and model
        if not key.startswith("server.reply."):  # a typed reply: shown with its request (below)
            assert f'"{message["name"]}" {message["title"]}' in headings
    join = browser.find_element(By.ID, "root-client.join")
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in join.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert ["room", "string", "required", "min length 1, max length 64", ""] in rows
    assert ["name", "string", "optional", 'min length 1, max length 32, default "anonymous"', ""] in rows
    assert json.loads(join.find_element(By.TAG_NAME, "pre").text) == {
        "type": "join", "timestamp": "2026-01-01T12:00:00Z", "room": "text", "name": "anonymous", "offset": None,
        "epoch": None,
    }  # fmt: skip
    reply = join.find_element(By.CSS_SELECTOR, ".reply")  # the reply's data: the handler's return annotation
    assert reply.text == 'Reply. Sent with a "ref", it is answered with {"type": "reply", "ref", "data"}; data: JoinReply'
    assert browser.find_element(By.ID, "type-JoinReply").is_displayed()
    said = browser.find_element(By.ID, "root-server.said.room")  # published to rooms with history
    fields = [row.find_element(By.TAG_NAME, "td").text for row in said.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert fields == ["type", "name", "text", "timestamp", "room", "offset", "epoch"]
    error = browser.find_element(By.ID, "root-server.error")
    assert '"not_in_room"' in error.text and "ErrorDetail" in error.text  # the app's code; the nested type's link
    assert browser.find_element(By.ID, "type-ErrorDetail").is_displayed()
    folder = os.environ.get("AIOWS_SCREENSHOT_DIR")
    if folder:
        browser.set_window_size(1000, browser.execute_script("return document.documentElement.scrollHeight") + 120)
        browser.save_screenshot(os.path.join(folder, "contract-docs.png"))
    assert browser.get_log("browser") == []
    browser.execute_script("console.error('probe')")  # the console is read: this check can fail
    assert any("probe" in entry["message"] for entry in browser.get_log("browser"))
