"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright.

Missing chromium: skipped with a message naming the Debian package, except in CI (CI=true),
where it fails the run.
"""
import os
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = "headless browser tests need Debian's package `chromium` (/usr/bin/chromium); `make test` installs it where it can"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def launch(playwright):
    require_chromium()
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


def record_browser_log(page, node) -> None:
    """Keep the page's console messages, answers of 400 and up, and failed requests on the test
    item (`node.browser_log`): a failed test shows them (tests/conftest.py)."""
    log = node.browser_log = []
    start = time.monotonic()

    def note(text: str) -> None:
        log.append(f"{time.monotonic() - start:7.2f}s {text}")

    page.on("console", lambda message: note(f"console.{message.type}: {message.text}"))
    page.on("pageerror", lambda error: note(f"page error: {error}"))
    page.on("requestfailed", lambda r: note(f"request failed: {r.method} {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and note(f"answer {r.status}: {r.request.method} {r.url}"))
    page.on("framenavigated", lambda frame: frame.parent_frame is None and note(f"page: {frame.url}"))
