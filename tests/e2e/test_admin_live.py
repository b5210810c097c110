"""The admin job page tails a running job live, in real headless Chromium."""
import re

import pytest

from tests.browser import record_browser_log

pytestmark = [pytest.mark.browser, pytest.mark.live]


def test_the_admin_job_page_receives_live_lines_and_progress(browser, server, request):
    with server.client("alice") as client:
        job = client.post(f"/api/companies/{server.company()}/content-jobs",
                          json={"jobType": "demo.steps", "params": {"steps": 300, "delayMs": 100}}).json()
    context = browser.new_context(base_url=server.url)
    try:
        page = context.new_page()
        record_browser_log(page, request.node)
        page.set_default_timeout(30_000)
        page.goto("/admin/login/")
        page.fill("#id_username", "root")
        page.fill("#id_password", "pw-root")
        page.click("input[type=submit]")
        page.wait_for_url(re.compile(r"/admin/$"))
        page.goto(f"/admin/content_jobs/contentjob/{job['jobId']}/change/")
        # Lines written after the page loaded arrive through the live tail.
        page.wait_for_function("document.querySelectorAll('#live-log li').length >= 1")
        first_count = page.locator("#live-log li").count()
        page.wait_for_function(f"document.querySelectorAll('#live-log li').length > {first_count}")
        page.wait_for_function("document.getElementById('live-status').textContent === 'running'")
        with server.client("alice") as client:
            client.post(f"/api/companies/{server.company()}/content-jobs/{job['jobId']}/cancel")
        page.wait_for_function("document.getElementById('live-status').textContent === 'cancelled'")
        page.wait_for_function("[...document.querySelectorAll('#live-log li')].some(li => "
                               "li.textContent.includes('Cancelled at a checkpoint.'))")
        ids = page.eval_on_selector_all("#live-log li", "els => els.map(e => Number(e.dataset.eventId))")
        assert ids == list(range(1, len(ids) + 1))  # every line once, in order
        assert int(page.locator("#live-pct").inner_text().rstrip("%")) > 0
    finally:
        context.close()
