"""The built-in job types' outputs, run through the real worker and fetched over the API."""
import io

import pytest
from PIL import Image

from tests.conftest import wait_for_job

pytestmark = pytest.mark.django_db(transaction=True)


def run(api, jobs_url, job_type, params):
    response = api.post(jobs_url, {"jobType": job_type, "params": params}, format="json")
    assert response.status_code == 202, response.content
    job = wait_for_job(response.json()["jobId"])
    assert job.status == "done", job.error
    return api.get(f"{jobs_url}/{job.pk}").json()


def artifact(api, job, name):
    entry = next(a for a in job["result"]["artifacts"] if a["name"] == name)
    response = api.get(entry["url"])
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert response["Content-Type"] == entry["contentType"] and len(body) == entry["size"]
    return body


def test_render_markdown_makes_a_sanitized_complete_document(api, jobs_url, worker):
    markdown = (
        "# Hi & welcome\n\nSome *text* and a [link](https://example.com).\n\n"
        "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n[bad](javascript:alert(3))\n\n"
        '<a href="javascript:alert(4)" onclick="alert(5)">raw</a>\n'
    )
    job = run(api, jobs_url, "render.markdown", {"markdown": markdown, "title": "Report & <notes>"})
    html = artifact(api, job, "document.html").decode()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<title>Report &amp; &lt;notes&gt;</title>" in html
    assert "<h1>Hi &amp; welcome</h1>" in html and "<em>text</em>" in html
    assert 'href="https://example.com"' in html
    lowered = html.lower()
    assert "<script" not in lowered and "alert(1)" not in lowered
    assert '<img src="x">' in lowered and "onerror" not in lowered
    assert "onclick" not in lowered
    assert 'href="javascript' not in lowered and ">raw</a>" in lowered


def test_markdown_over_1_mib_is_a_400(api, jobs_url):
    response = api.post(jobs_url, {"jobType": "render.markdown", "params": {"markdown": "x" * (1024 * 1024 + 1)}},
                        format="json")
    assert response.status_code == 400
    assert "params.markdown" in {e["field"] for e in response.json()["errors"]}


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_render_card_draws_a_1200x630_png_with_the_wrapped_title(api, jobs_url, worker, theme):
    title = "A rather long title that has to wrap over several lines of the social card"
    job = run(api, jobs_url, "render.card", {"title": title, "subtitle": "Subtitle", "theme": theme})
    png = artifact(api, job, "card.png")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (1200, 630)
    rows_with_ink = [y for y in range(0, 630, 6) if len(image.crop((90, y, 1100, y + 1)).getcolors(4096)) > 1]
    assert len(rows_with_ink) > 20  # several lines of text were drawn, not a blank card
    background = image.getpixel((600, 620))
    assert (sum(background[:3]) > 600) == (theme == "light")


def test_an_invalid_theme_is_a_400(api, jobs_url):
    response = api.post(jobs_url, {"jobType": "render.card", "params": {"title": "x", "theme": "neon"}}, format="json")
    assert response.status_code == 400
