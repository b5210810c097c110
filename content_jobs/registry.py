"""The registry of job types: a dotted name, a params serializer and a handler."""
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from .errors import InvalidParams, UnknownJobType


class StrictParamsSerializer(serializers.Serializer):
    """A params serializer that rejects keys it does not know (a typo is an error, not a no-op)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown parameter."] for key in unknown})
        return super().to_internal_value(data)


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Callable[[Any], dict | None]
    params: type[serializers.Serializer]
    description: str = ""


_registry: dict[str, JobType] = {}


def register(name: str, *, params: type[serializers.Serializer], description: str = ""):
    """Decorator: register `handler(ctx) -> dict | None` as the job type `name`."""

    def decorator(handler):
        if name in _registry and _registry[name].handler is not handler:
            raise ValueError(f"job type {name!r} is registered twice")
        _registry[name] = JobType(name=name, handler=handler, params=params, description=description)
        return handler

    return decorator


def get(name: str) -> JobType:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownJobType(name) from None


def all_types() -> list[JobType]:
    return [_registry[name] for name in sorted(_registry)]


def validate_params(name: str, params: Any) -> dict:
    """The job type's params with defaults filled in; raises InvalidParams or UnknownJobType."""
    job_type = get(name)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidParams({"non_field_errors": ["params must be a JSON object."]})
    serializer = job_type.params(data=params)
    if not serializer.is_valid():
        raise InvalidParams(serializer.errors)
    return dict(serializer.validated_data)
