"""Domain signals: facts that other parts of the service react to, sent after commit."""
from django.dispatch import Signal

# A job's state changed and was stored as a stream event.
# Arguments: job_id (UUID), company_id (UUID), event (content_jobs.models.JobEvent).
job_changed = Signal()

# A log line was stored. Arguments: job_id (UUID), line (job_logs.models.LogLine).
log_appended = Signal()
