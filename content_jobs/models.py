"""Companies, memberships, content jobs and their stored stream events."""
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Company(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    # The last sequence number handed to an event of this company's stream.
    event_seq = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "companies"

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "member (read and write jobs)"
        VIEWER = "viewer", "viewer (read only)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "company"], name="membership_unique_user_company")]

    def __str__(self) -> str:
        return f"{self.user} in {self.company} ({self.role})"


class ContentJobQuerySet(models.QuerySet):
    def for_company(self, company) -> "ContentJobQuerySet":
        return self.filter(company=company)

    def active(self) -> "ContentJobQuerySet":
        return self.filter(status__in=ContentJob.ACTIVE)


class ContentJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexes: see Meta (no index a composite one or a unique constraint already covers).
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="jobs", db_index=False)
    job_type = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=255, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    source_task_id = models.CharField(max_length=255, null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The runner holding the job: its worker and the time its lease runs out unless renewed.
    worker_id = models.CharField(max_length=100, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The last sequence number handed to one of this job's stream events.
    event_seq = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The finished job is counted in JobTotals (its run's duration, and the job by its status):
    # /metrics reads the totals and the jobs not counted yet, never the whole table.
    counted = models.BooleanField(default=False)

    objects = ContentJobQuerySet.as_manager()

    TERMINAL = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED})
    ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})

    class Meta:
        ordering = ["-created_at"]
        # Each index is one more write for every insert and status change. The company's jobs
        # by date serve the list (and the company's foreign key); status and lease the reaper
        # (and any filter on status); plain indexes of job type and source task, without the
        # `LIKE` twin that db_index makes on PostgreSQL, which no query uses.
        indexes = [
            models.Index(fields=["company", "-created_at"], name="job_company_created"),
            models.Index(fields=["status", "lease_expires_at"], name="job_status_lease"),
            models.Index(fields=["job_type"], name="job_type"),
            models.Index(fields=["source_task_id"], name="job_source_task"),
            # The jobs /metrics reads row by row: the active ones and the finished ones that a
            # scrape has not counted yet (content_jobs.job_totals). Counted jobs leave it.
            models.Index(fields=["status", "job_type"], condition=Q(counted=False), name="job_uncounted"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="job_unique_idempotency_key",
            ),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=100), name="job_progress_range"),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} {str(self.id)[:8]} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at
        if end is None:
            from django.utils import timezone

            end = timezone.now()
        return (end - self.started_at).total_seconds()


class JobEvent(models.Model):
    """One stored event of a job's stream, written in the transaction of the change it reports.

    `seq` numbers the job's own stream 1, 2, 3, ...; `company_seq` numbers the company's stream.
    Both have no holes and are committed in order (each is handed out under a row lock), so a
    stream that sees number n+2 after n knows it missed n+1 and reads it from here.
    """

    id = models.BigAutoField(primary_key=True)
    # Their indexes are the unique constraints' (job, seq) and (company, company_seq). Streams
    # read events by those and nothing reads them by time, so created_at has no index: it would
    # be one more entry to write for every event.
    job = models.ForeignKey(ContentJob, on_delete=models.CASCADE, related_name="events", db_index=False)
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="+", db_index=False)
    seq = models.PositiveBigIntegerField()
    company_seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=40)
    # The whole job, already encoded as JSON: stored once, sent as is.
    data = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="jobevent_unique_job_seq"),
            models.UniqueConstraint(fields=["company", "company_seq"], name="jobevent_unique_company_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.seq} of {self.job_id}"

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENT_TYPES


TERMINAL_EVENT_TYPES = frozenset({"content_job.done", "content_job.failed", "content_job.cancelled"})


class JobTotals(models.Model):
    """What /metrics counts of a job type's finished runs, kept as they are counted.

    A scrape counts the jobs that finished since the last one (ContentJob.counted): their runs'
    durations go into the histogram's totals (nexus_job_duration_seconds), and the jobs into
    `jobs` by status (the finished part of the gauge nexus_jobs). So a scrape reads these rows
    and the few jobs not counted yet, never the whole table.

    The durations and the log lines the line cap dropped (nexus_log_lines_truncated) are
    counters: they must never go down. When a job leaves the table (retention's prune, the
    admin's or a company's deletion) or its run is cleared (a retry), content_jobs.job_totals
    adds what it had not counted yet here first and takes the job out of `jobs`, in the same
    transaction.
    """

    job_type = models.CharField(max_length=100, primary_key=True)
    runs = models.PositiveBigIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    # Runs at or under each bound of content_jobs.job_totals.DURATION_BUCKETS, keyed by the
    # bound as text ("0.1", "0.5", ...).
    buckets = models.JSONField(default=dict)
    log_lines_dropped = models.PositiveBigIntegerField(default=0)
    # The counted jobs still in the table, by status ("done": 12, ...).
    jobs = models.JSONField(default=dict)

    class Meta:
        verbose_name_plural = "job totals"

    def __str__(self) -> str:
        return f"totals of {self.job_type}: {self.runs} runs"
