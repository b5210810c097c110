"""Domain signals: facts that other parts of the service react to, sent after commit."""
from django.dispatch import Signal

# A job's state changed and was stored as a stream event.
# Arguments: job_id (UUID), company_id (UUID), event (content_jobs.models.JobEvent).
job_changed = Signal()

# Log lines were stored, together (one line, or a chunk stored in one transaction).
# Arguments: job_id (UUID), lines (list of job_logs.models.LogLine, in order).
log_appended = Signal()
