"""DRF's content negotiation, its choice for each Accept header kept.

DRF parses a request's Accept header and matches it against the view's renderers on every
request: 5.5% of a submission's time in-process (py-spy), for an answer that depends only on
the header and the renderers. Here that answer is kept for each pair (a bounded number of
them: the header is the client's to choose); a header that no renderer takes (406) and a
`?format=` choice still go through DRF's own code each time.
"""
import threading

from rest_framework.negotiation import DefaultContentNegotiation

_CHOSEN: dict = {}  # (renderer classes, Accept header): (index of the renderer, media type)
_LIMIT = 512
_lock = threading.Lock()


class KeptNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        if format_suffix or self.settings.URL_FORMAT_OVERRIDE in request.query_params:
            return super().select_renderer(request, renderers, format_suffix)
        key = (tuple(type(renderer) for renderer in renderers), request.META.get("HTTP_ACCEPT", "*/*"))
        chosen = _CHOSEN.get(key)
        if chosen is None:
            renderer, media_type = super().select_renderer(request, renderers)
            chosen = (renderers.index(renderer), media_type)
            with _lock:
                if len(_CHOSEN) < _LIMIT:
                    _CHOSEN[key] = chosen
        return renderers[chosen[0]], chosen[1]
