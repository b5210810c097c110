"""Serve the ASGI app with daphne; in the embedded default, run the task worker beside it."""
import gc
import os

from daphne.cli import CommandLineInterface
from django.conf import settings
from django.core.management.base import BaseCommand

from content_jobs import worker
from nexus_site import transport


class Command(BaseCommand):
    help = "Serve the service with daphne (and, unless NEXUS_EMBEDDED_WORKER=false, the task worker)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--backlog", type=int, default=int(os.environ.get("NEXUS_LISTEN_BACKLOG", "4096")))
        parser.add_argument("--access-log", action="store_true", help="Print one line per request.")

    def handle(self, *args, host, port, backlog, access_log, **options):
        if settings.NEXUS_EMBEDDED_WORKER:
            worker.start_embedded()
        self.stdout.write(f"Nexus content jobs on http://{host}:{port}/ (embedded worker: "
                          f"{'on' if settings.NEXUS_EMBEDDED_WORKER else 'off'})")
        self.stdout.flush()
        argv = ["-e", f"tcp:port={port}:interface={host}:backlog={backlog}", "--application-close-timeout", "5"]
        if not access_log:
            argv += ["--verbosity", "0"]
        transport.install()
        tune_gc()
        try:
            CommandLineInterface().run([*argv, "nexus_site.asgi:application"])
        finally:
            worker.stop_embedded()


def tune_gc() -> None:
    """Collect garbage less often than Python does by default.

    A web process holds many long-lived objects per connection. CPython's full collection
    walks all of them and comes back each time the surviving objects grew by a quarter: while
    10,000 clients reconnected at once it ran 29 times, at 0.4 to 0.8 s each with the event loop
    stopped, and found nothing to free (11 of the storm's seconds). Startup's objects are frozen
    (never walked again), the youngest generation is collected every 10,000 allocations instead
    of 700, and a full collection is considered after 100 middle-generation ones instead of 10
    (NEXUS_GC_THRESHOLDS). Cyclic garbage still goes, a little later.
    """
    gc.collect()
    gc.freeze()
    if settings.NEXUS_GC_THRESHOLDS:
        gc.set_threshold(*settings.NEXUS_GC_THRESHOLDS)
