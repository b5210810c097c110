from django.core.management.base import BaseCommand

from content_jobs import services


class Command(BaseCommand):
    help = ("Queue again (or fail with worker_lost) the running jobs whose worker stopped renewing their lease; "
            "close the task rows of runs whose worker is gone, and run again a job whose run was lost before it started.")

    def handle(self, *args, **options):
        total = 0
        while True:
            reaped = services.jobs_reap()
            total += len(reaped)
            for job in reaped:
                self.stdout.write(f"{job.pk} -> {job.status}")
            if len(reaped) < 100:
                break
        self.stdout.write(f"reaped {total} job(s)")
        requeued = services.runs_reap(limit=100_000)
        for job in requeued:
            self.stdout.write(f"{job.pk} -> queued (its run was lost before it started)")
        self.stdout.write(f"queued {len(requeued)} job(s) again whose run was lost before it started")
