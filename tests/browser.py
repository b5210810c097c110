"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright.

Missing chromium: skipped with a message naming the Debian package, except in CI (CI=true),
where it fails the run.
"""
import os
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
