"""The `worker` process type: runs jobs from the task database until told to stop."""
import os
import signal
import socket
import sys
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.crypto import get_random_string

from content_jobs.worker import EmbeddedWorker


class Command(BaseCommand):
    help = (
        "Run a job worker. SIGTERM or SIGINT: take no new job, let the running one finish for up "
        "to NEXUS_WORKER_GRACE_SECONDS, then exit (a job still running then is reaped by another "
        "worker when its lease runs out)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--worker-id", default=None)
        parser.add_argument("--grace", type=float, default=settings.NEXUS_WORKER_GRACE_SECONDS)

    def handle(self, *args, worker_id, grace, **options):
        worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{get_random_string(6)}"
        stop = threading.Event()

        def on_signal(signum, frame):
            if stop.is_set():
                sys.exit(1)  # a second signal: leave now
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        worker = EmbeddedWorker(worker_id=worker_id).start()
        self.stdout.write(f"worker {worker_id} running")
        self.stdout.flush()
        while not stop.wait(1.0):
            if not worker.alive():
                self.stderr.write("worker thread ended unexpectedly")
                sys.exit(1)
        self.stdout.write(f"worker {worker_id} stopping (grace {grace:g}s)")
        self.stdout.flush()
        worker.stop(timeout=grace)
        if worker.alive():
            self.stderr.write("grace period over with a job still running; exiting")
            os._exit(1)
        self.stdout.write(f"worker {worker_id} stopped")

