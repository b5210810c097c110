"""Log lines of content jobs."""
from django.db import models
from django.db.models import Q

from content_jobs.models import ContentJob


class LogLineQuerySet(models.QuerySet):
    def for_job(self, job_id) -> "LogLineQuerySet":
        return self.filter(job_id=job_id)

    def after(self, event_id: int) -> "LogLineQuerySet":
        return self.filter(event_id__gt=event_id)


class LogLine(models.Model):
    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        ERROR = "error"
        SUCCESS = "success"

    id = models.BigAutoField(primary_key=True)
    # Its index is the unique constraint's (job, event_id).
    job = models.ForeignKey(ContentJob, on_delete=models.CASCADE, related_name="log_lines", db_index=False)
    # Numbers the job's lines 1, 2, 3, ...: the SSE id and the `after=` cursor.
    event_id = models.PositiveBigIntegerField()
    message = models.TextField()
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    created_at = models.DateTimeField()

    objects = LogLineQuerySet.as_manager()

    class Meta:
        ordering = ["job", "event_id"]
        constraints = [models.UniqueConstraint(fields=["job", "event_id"], name="logline_unique_job_event")]
        # The admin's filter by severity across jobs; a plain index, without the `LIKE` twin that
        # db_index makes on PostgreSQL.
        indexes = [models.Index(fields=["severity"], name="logline_severity")]

    def __str__(self) -> str:
        return f"#{self.event_id} {self.severity}: {self.message[:60]}"

    @property
    def event_time(self) -> float:
        return self.created_at.timestamp()


class LogCursor(models.Model):
    """Per-job counters: the lock that orders a job's lines, and what the line cap dropped."""

    job = models.OneToOneField(ContentJob, on_delete=models.CASCADE, primary_key=True, related_name="log_cursor")
    last_event_id = models.PositiveBigIntegerField(default=0)
    dropped = models.PositiveBigIntegerField(default=0)

    class Meta:
        # /metrics adds up the dropped lines of every job in the table: only the few whose line
        # cap was reached are read.
        indexes = [models.Index(fields=["job"], condition=Q(dropped__gt=0), name="log_cursor_dropped")]

    def __str__(self) -> str:
        return f"log cursor of {self.job_id} at {self.last_event_id}"
