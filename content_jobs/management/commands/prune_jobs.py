"""Retention: delete finished jobs older than an age, with their stream events, logs and artifacts."""
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand
from django.utils import timezone

from content_jobs import services
from content_jobs.management.arguments import days, positive_int


class Command(BaseCommand):
    help = "Delete jobs that finished more than --days ago (default NEXUS_RETENTION_DAYS) and everything stored for them."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=days, default=settings.NEXUS_RETENTION_DAYS)
        parser.add_argument("--batch-size", type=positive_int, default=500)

    def handle(self, *args, days, batch_size, **options):
        cutoff = timezone.now() - timedelta(days=days)
        counts = services.jobs_prune(finished_before=cutoff, batch_size=batch_size, storage=default_storage)
        self.stdout.write(
            "pruned {jobs} jobs, {events} stream events, {lines} log lines, {tasks} task results".format(**counts)
        )
