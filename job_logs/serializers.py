"""Log line input and the log payload (snake_case, as the log stream and history carry it)."""
from rest_framework import serializers

from .models import LogLine


class LogLineInput(serializers.Serializer):
    event_message = serializers.CharField(allow_blank=True, trim_whitespace=False)
    severity = serializers.ChoiceField(choices=LogLine.Severity.choices, default=LogLine.Severity.INFO)


class LogHistoryQuery(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=5000, default=500)


def log_payload(line: LogLine, job_id=None) -> dict:
    return {
        "event_id": line.event_id,
        "task_id": str(job_id or line.job_id),
        "event_message": line.message,
        "severity": line.severity,
        "event_time": line.created_at.timestamp(),
    }


def log_payloads(lines, job_id) -> list[dict]:
    """The payloads of one job's lines, its id made text once for all of them."""
    task_id = str(job_id)
    return [log_payload(line, task_id) for line in lines]
