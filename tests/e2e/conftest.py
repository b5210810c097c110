"""Fixtures for the browser tests of this directory.

`browser`: headless Debian Chromium driven by Playwright's sync API (tests.browser.launch:
/usr/bin/chromium with --no-sandbox, --disable-gpu, --disable-quic, ...). Without
/usr/bin/chromium the tests are skipped with a message naming the Debian package `chromium`,
or fail when CI=true (tests.browser.require_chromium).

The fixture is module-scoped, not session-scoped, on purpose: while a sync Playwright instance
is alive, it marks its asyncio loop as the running loop of the main thread between calls (see
playwright/_impl/_greenlets.py, wait_for_future). Kept for the whole session, it would make
every later test of the same pytest process fail that starts Playwright itself
(test_console.py, test_admin_live.py: "using Playwright Sync API inside the asyncio loop") or
calls async code through asgiref's async_to_sync ("cannot use AsyncToSync in the same thread
as an async event loop"). A module scope ends it before the next module runs.
"""
import pytest

from tests.browser import launch, require_chromium
from tests.live import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """A server process of the module's own, so that one module's jobs never show in another's pages."""
    require_chromium()
    server = LiveServer(var_dir=tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])).prepare().start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def browser():
    require_chromium()  # skip (or fail in CI) before starting Playwright's driver
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch(p)
        try:
            yield chromium
        finally:
            chromium.close()
