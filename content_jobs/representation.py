"""The job as every client sees it: the body of GET, of POST and of every job event."""
from datetime import datetime
from typing import Any

from .models import ContentJob
from .tokens import stream_token_for


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value.utcoffset() is not None else value.isoformat()


def events_path(company_id, job_id) -> str:
    return f"/api/companies/{company_id}/content-jobs/{job_id}/events"


def logs_path(job_id) -> str:
    return f"/jobs/{job_id}/logs"


def artifact_path(company_id, job_id, name: str) -> str:
    return f"/api/companies/{company_id}/content-jobs/{job_id}/artifacts/{name}"


def job_representation(job: ContentJob) -> dict[str, Any]:
    token = stream_token_for(job.id)
    return {
        "jobId": str(job.id),
        "companyId": str(job.company_id),
        "jobType": job.job_type,
        "status": job.status,
        "progress": float(job.progress),
        "stage": job.stage,
        "params": job.params,
        "result": job.result,
        "error": job.error,
        "sourceTaskId": job.source_task_id,
        "attempt": job.attempt,
        "cancelRequested": job.cancel_requested,
        "createdAt": _ts(job.created_at),
        "startedAt": _ts(job.started_at),
        "finishedAt": _ts(job.finished_at),
        "eventsUrl": f"{events_path(job.company_id, job.id)}?token={token}",
        "logsUrl": f"{logs_path(job.id)}?token={token}",
    }
