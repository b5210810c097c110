"""Input serializers of the job API (output is content_jobs.representation)."""
from rest_framework import serializers

from .models import ContentJob


class JobSubmitInput(serializers.Serializer):
    jobType = serializers.CharField(max_length=100)
    params = serializers.JSONField(required=False, allow_null=True)
    sourceTaskId = serializers.CharField(max_length=255, required=False, allow_null=True)

    def validate_params(self, value):
        if value is not None and not isinstance(value, dict):
            raise serializers.ValidationError("params must be a JSON object.", code="invalid_type")
        return value


class JobListFilters(serializers.Serializer):
    status = serializers.ChoiceField(choices=ContentJob.Status.choices, required=False)
    jobType = serializers.CharField(max_length=100, required=False)
    sourceTaskId = serializers.CharField(max_length=255, required=False)


class IdempotencyKeyInput(serializers.Serializer):
    key = serializers.CharField(max_length=255, trim_whitespace=False)
