"""render.markdown and render.card: documents and social cards as job artifacts."""
import html
import io
import textwrap

import nh3
from markdown_it import MarkdownIt
from PIL import Image, ImageDraw, ImageFont
from rest_framework import serializers

from ..registry import StrictParamsSerializer, register

MAX_MARKDOWN_BYTES = 1024 * 1024


class RenderMarkdownParams(StrictParamsSerializer):
    markdown = serializers.CharField(allow_blank=True, trim_whitespace=False)
    title = serializers.CharField(required=False, allow_blank=True, max_length=200)

    def validate_markdown(self, value: str) -> str:
        if len(value.encode("utf-8")) > MAX_MARKDOWN_BYTES:
            raise serializers.ValidationError("Markdown may hold at most 1 MiB.", code="max_length")
        return value


# The sanitizer's allow-list decides what survives: no script or style elements, no event-handler
# attributes, and only http(s), mailto and relative links (so no javascript: URLs).
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}


def render_markdown_document(markdown: str, title: str) -> str:
    body = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough").render(markdown)
    clean = nh3.clean(body, url_schemes=ALLOWED_URL_SCHEMES, link_rel="noopener noreferrer")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.55}pre{overflow:auto;background:#f4f4f4;padding:.75rem}</style>\n"
        f"</head>\n<body>\n<main>\n{clean}</main>\n</body>\n</html>\n"
    )


@register("render.markdown", params=RenderMarkdownParams, description="Renders Markdown to a sanitized HTML document.")
def render_markdown(ctx) -> dict:
    markdown = ctx.params["markdown"]
    title = ctx.params.get("title") or "Document"
    ctx.progress(10, stage="parsing")
    ctx.log(f"rendering {len(markdown.encode('utf-8'))} bytes of Markdown")
    document = render_markdown_document(markdown, title)
    ctx.check_cancelled()
    ctx.progress(80, stage="storing")
    artifact = ctx.save_artifact("document.html", document.encode("utf-8"), "text/html; charset=utf-8")
    ctx.log(f"stored document.html ({artifact['size']} bytes)", "success")
    return {"title": title}


class RenderCardParams(StrictParamsSerializer):
    title = serializers.CharField(max_length=300)
    subtitle = serializers.CharField(required=False, allow_blank=True, max_length=300)
    theme = serializers.ChoiceField(choices=["light", "dark"], default="light")


CARD_SIZE = (1200, 630)
THEMES = {
    "light": {"background": "#f7f7f2", "title": "#16161d", "subtitle": "#4a4a57", "accent": "#2f6fed"},
    "dark": {"background": "#16161d", "title": "#f7f7f2", "subtitle": "#b7b7c4", "accent": "#7aa2ff"},
}


def draw_card(title: str, subtitle: str, theme: str) -> bytes:
    colours = THEMES[theme]
    image = Image.new("RGB", CARD_SIZE, colours["background"])
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 24, CARD_SIZE[1]), fill=colours["accent"])
    title_font = ImageFont.load_default(size=68)
    subtitle_font = ImageFont.load_default(size=36)
    lines = textwrap.wrap(title, width=28, break_long_words=True)[:5]
    y = 90
    for line in lines:
        draw.text((90, y), line, font=title_font, fill=colours["title"])
        y += 84
    if subtitle:
        for line in textwrap.wrap(subtitle, width=52)[:3]:
            draw.text((90, y + 24), line, font=subtitle_font, fill=colours["subtitle"])
            y += 48
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


@register("render.card", params=RenderCardParams, description="Draws a 1200x630 PNG social card.")
def render_card(ctx) -> dict:
    ctx.progress(10, stage="drawing")
    png = draw_card(ctx.params["title"], ctx.params.get("subtitle", ""), ctx.params["theme"])
    ctx.check_cancelled()
    ctx.progress(80, stage="storing")
    artifact = ctx.save_artifact("card.png", png, "image/png")
    ctx.log(f"stored card.png ({artifact['size']} bytes, {CARD_SIZE[0]}x{CARD_SIZE[1]})", "success")
    return {"width": CARD_SIZE[0], "height": CARD_SIZE[1]}
