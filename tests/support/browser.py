"""Shared pieces of the browser tests: Debian chromium's launch flags and helpers that drive the chat UI."""

from __future__ import annotations

import re
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ANSWER_TIMEOUT_MS = 120_000


def open_app(page, server, hash_: str = "") -> None:
    page.goto(server.url + "/" + hash_)
    page.wait_for_function("document.body.dataset.ready === 'true'")


def pick_small_model(page) -> str:
    """Selects the SmolLM2 model when the picker offers it; returns the selected model id."""
    picker = page.get_by_test_id("model-picker")
    values = picker.locator("option").evaluate_all("opts => opts.map(o => o.value)")
    assert values and values[0], "the model picker has no models"
    small = [v for v in values if "smollm2" in v.lower()]
    if small:
        picker.select_option(small[0])
    return picker.input_value()


def assistant_messages(page):
    return page.locator("[data-testid=message][data-role=assistant]")


def current_conversation_id(page) -> str:
    match = re.search(r"#/c/([^/?#]+)$", page.url)
    assert match, f"no conversation id in the URL {page.url}"
    return match.group(1)


def send(page, text: str) -> None:
    composer = page.get_by_test_id("composer")
    composer.fill(text)
    composer.press("Enter")


def wait_until(predicate, timeout: float = 15, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
