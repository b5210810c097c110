"""The built-in job types' outputs, run through the real worker and fetched over the API."""
import io
from html.parser import HTMLParser

import pytest
from django.core.files.storage import default_storage
from PIL import Image, ImageChops

from content_jobs.models import ContentJob
from content_jobs.runner import artifact_storage_name
from tests.conftest import wait_for_job

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1024 * 1024


def run(api, jobs_url, job_type, params) -> dict:
    response = api.post(jobs_url, {"jobType": job_type, "params": params}, format="json")
    assert response.status_code == 202, response.content
    job = wait_for_job(response.json()["jobId"])
    assert job.status == "done", job.error
    return api.get(f"{jobs_url}/{job.pk}").json()


def artifact(api, job: dict, name: str) -> bytes:
    """The artifact's bytes as GET of its listed url returns them, checked against its listing."""
    [entry] = [a for a in job["result"]["artifacts"] if a["name"] == name]
    assert set(entry) == {"name", "contentType", "size", "url"}
    assert entry["url"] == f"/api/companies/{job['companyId']}/content-jobs/{job['jobId']}/artifacts/{name}"
    response = api.get(entry["url"])
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert response["Content-Type"] == entry["contentType"]
    assert len(body) == entry["size"]
    with default_storage.open(artifact_storage_name(job["jobId"], name), "rb") as stored:
        assert body == stored.read()  # the bytes the job stored, not a re-rendering
    return body


def submit_status(api, jobs_url, job_type, params):
    response = api.post(jobs_url, {"jobType": job_type, "params": params}, format="json")
    return response.status_code, response.json()


def error_fields(body: dict) -> set[str]:
    return {e.get("field") for e in body.get("errors", [])}


class Elements(HTMLParser):
    """Every start tag of a document with its attributes."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


# render.markdown ---------------------------------------------------------------------------
def test_render_markdown_makes_a_complete_document_with_the_rendered_markdown(api, jobs_url, worker):
    markdown = "# Hi & welcome\n\nSome *text*, a [link](https://example.com) and a list:\n\n- one\n- two\n"
    job = run(api, jobs_url, "render.markdown", {"markdown": markdown, "title": "Report & <notes>"})
    assert [a["name"] for a in job["result"]["artifacts"]] == ["document.html"]
    html = artifact(api, job, "document.html").decode("utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for part in ('<html lang="en">', '<meta charset="utf-8">', "<head>", "</head>", "<body>", "</body>"):
        assert part in html
    assert "<title>Report &amp; &lt;notes&gt;</title>" in html
    assert "<h1>Hi &amp; welcome</h1>" in html and "<em>text</em>" in html
    assert "<li>one</li>" in html and "<li>two</li>" in html
    assert [attrs.get("href") for tag, attrs in Elements(html).tags if tag == "a"] == ["https://example.com"]


def test_render_markdown_without_a_title_has_a_default_title(api, jobs_url, worker):
    job = run(api, jobs_url, "render.markdown", {"markdown": "plain"})
    html = artifact(api, job, "document.html").decode("utf-8")
    assert "<title>Document</title>" in html and "<p>plain</p>" in html


def test_render_markdown_strips_scripts_event_handlers_and_javascript_links(api, jobs_url, worker):
    markdown = (
        "Before.\n\n"
        "<script>alert(1)</script>\n\n"
        "<img src=x onerror=alert(2)>\n\n"
        "[x](javascript:alert(3))\n\n"
        '<a href="javascript:alert(4)" onclick="alert(5)">raw</a> <a href="JaVaScRiPt:alert(6)">mixed</a>\n\n'
        "After.\n"
    )
    job = run(api, jobs_url, "render.markdown", {"markdown": markdown})
    html = artifact(api, job, "document.html").decode("utf-8")
    tags = Elements(html).tags

    assert "<p>Before.</p>" in html and "<p>After.</p>" in html  # the rest of the document survives
    assert not [tag for tag, _ in tags if tag in {"script", "iframe", "object", "embed"}]
    assert "alert(1)" not in html  # the script's content goes with it
    assert ("img", {"src": "x"}) in tags  # the image stays, without its handler
    assert not [(tag, name) for tag, attrs in tags for name in attrs if name.lower().startswith("on")]
    assert not [
        (tag, value) for tag, attrs in tags for value in attrs.values() if value and "javascript" in value.lower()
    ]
    for text in ("alert(2)", "alert(4)", "alert(5)", "alert(6)"):
        assert text not in html
    # The Markdown link is not made at all: what is left is inert text, never inside a tag.
    assert "javascript:alert(3)" not in [attrs.get("href") for tag, attrs in tags if tag == "a"]
    assert [a for a in tags if a[0] == "a"] == [("a", {"rel": "noopener noreferrer"})] * 2  # raw, mixed: no href


def test_markdown_over_1_mib_is_a_400_and_no_job(api, jobs_url):
    status, body = submit_status(api, jobs_url, "render.markdown", {"markdown": "x" * (MIB + 1)})
    assert status == 400
    assert "params.markdown" in error_fields(body)
    # The limit is on bytes: 512 Ki two-byte characters and one more are over it too.
    status, body = submit_status(api, jobs_url, "render.markdown", {"markdown": "\u00e4" * (MIB // 2 + 1)})
    assert status == 400
    assert "params.markdown" in error_fields(body)
    assert not ContentJob.objects.exists()


def test_markdown_of_exactly_1_mib_is_accepted(api, jobs_url):
    status, body = submit_status(api, jobs_url, "render.markdown", {"markdown": "x" * MIB})
    assert status == 202 and body["status"] == "queued"


# render.card ---------------------------------------------------------------------------------
def ink_bands(image: Image.Image, left: int = 60) -> list[tuple[int, int]]:
    """The runs of rows, right of the accent bar, that hold any pixel unlike the background."""
    background = image.getpixel((image.width // 2, image.height - 5))
    diff = ImageChops.difference(image, Image.new(image.mode, image.size, background)).convert("L")
    rows = [y for y in range(image.height) if diff.crop((left, y, image.width, y + 1)).getbbox()]
    bands: list[list[int]] = []
    for y in rows:
        if bands and y == bands[-1][1] + 1:
            bands[-1][1] = y
        else:
            bands.append([y, y])
    return [(top, bottom) for top, bottom in bands]


def ink_right_edge(image: Image.Image, left: int = 60) -> int:
    background = image.getpixel((image.width // 2, image.height - 5))
    diff = ImageChops.difference(image, Image.new(image.mode, image.size, background)).convert("L")
    return diff.crop((left, 0, image.width, image.height)).getbbox()[2] + left


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_render_card_draws_a_1200x630_png_with_the_wrapped_title(api, jobs_url, worker, theme):
    title = "A rather long title that has to wrap over several lines of the social card"
    job = run(api, jobs_url, "render.card", {"title": title, "subtitle": "A subtitle", "theme": theme})
    assert [a["name"] for a in job["result"]["artifacts"]] == ["card.png"]
    png = artifact(api, job, "card.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (1200, 630)
    image = image.convert("RGB")

    # Not a blank card: antialiased text gives many colours (a blank one has 2: background, accent).
    assert len(image.getcolors(1200 * 630)) > 50
    # The title is wrapped: three lines of title (and one of subtitle), none running off the card.
    assert len(ink_bands(image)) >= 4
    assert ink_right_edge(image) < 1150
    background = image.getpixel((600, 625))
    assert (sum(background) > 600) if theme == "light" else (sum(background) < 150)


def test_render_card_with_a_short_title_draws_one_line(api, jobs_url, worker):
    job = run(api, jobs_url, "render.card", {"title": "Hi", "theme": "dark"})
    image = Image.open(io.BytesIO(artifact(api, job, "card.png"))).convert("RGB")
    assert image.size == (1200, 630)
    assert len(ink_bands(image)) == 1  # so the several bands above are wrapping, not the measure


def test_an_invalid_theme_is_a_400_and_no_job(api, jobs_url):
    status, body = submit_status(api, jobs_url, "render.card", {"title": "x", "theme": "neon"})
    assert status == 400
    assert "params.theme" in error_fields(body)
    assert not ContentJob.objects.exists()
