"""Request parsing: DRF's JSON parser with a limit on the body size."""
import codecs
import json

from django.conf import settings
from django.utils.http import parse_header_parameters
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"
    default_detail = "The request body is too large."


def _not_json(constant: str):
    """NaN, Infinity and -Infinity, which Python's json reads and JSON has not (DRF's own
    parser refuses them too)."""
    raise ValueError(f"{constant} is not a JSON value")


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with a cap on the body size (DRF itself reads bodies without one).
    As DRF's, it refuses NaN and the infinities. A charset that is no text encoding (Django
    ignores one that names no codec at all, and decodes with one that is not a text encoding,
    such as `base64`) is a 415, and JSON nested too deep for the parser is a 400, not a 500.
    A NUL character in a string is a 400 on every database, as PostgreSQL cannot store it."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.NEXUS_MAX_BODY_BYTES
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise PayloadTooLarge(f"The request body may hold at most {limit} bytes.")
        charset = parse_header_parameters(media_type or "")[1].get("charset")
        if charset is not None and not _is_text_encoding(charset):
            raise exceptions.UnsupportedMediaType(
                media_type, f"The charset {charset!r} is not a text encoding; send JSON in UTF-8.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = data.decode(encoding)
            parsed = json.loads(text, parse_constant=_not_json)
            nul = "\\u0000" in text and holds_nul(parsed)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"Malformed JSON: {exc}") from exc
        except RecursionError as exc:
            raise exceptions.ParseError("Malformed JSON: nested too deeply.") from exc
        if nul:
            raise exceptions.ParseError("The JSON holds a NUL character (\\u0000), which cannot be stored.")
        return parsed


def holds_nul(value) -> bool:
    """Whether a NUL character (U+0000) is in any string of a JSON value, keys too: valid JSON,
    which PostgreSQL stores neither in its text nor in its jsonb."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):  # a handler's result may hold tuples, which JSON writes as arrays
        return any(holds_nul(v) for v in value)
    return False


def _is_text_encoding(charset: str) -> bool:
    try:
        codec = codecs.lookup(charset)
    except LookupError:
        return False
    return getattr(codec, "_is_text_encoding", True)  # what bytes.decode checks: False for base64
