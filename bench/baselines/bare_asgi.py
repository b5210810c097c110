"""The bottom layer of a submission's path: daphne with the project's tuning of its transport
(nexus_site.transport, as `manage.py serve` installs it) and an ASGI app that reads the body and
answers 202 with a small JSON body, no Django at all. Run: daphne bench.baselines.bare_asgi:application"""
from nexus_site import transport

transport.install()  # before daphne builds its server, as `manage.py serve` does

ANSWER = b'{"id":"00000000-0000-0000-0000-000000000000","status":"queued"}'


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": ANSWER})
