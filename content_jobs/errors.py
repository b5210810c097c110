"""Domain errors that the API turns into 4xx answers."""


class DomainError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors


class InvalidTransition(DomainError):
    status_code = 409
    code = "invalid_transition"

    def __init__(self, current: str, target: str):
        super().__init__(f"A {current} job cannot become {target}.")
        self.current = current
        self.target = target


class UnknownJobType(DomainError):
    code = "unknown_job_type"

    def __init__(self, name: str):
        super().__init__(f"{name!r} is not a registered job type.", field="jobType")


class InvalidParams(DomainError):
    code = "invalid_params"

    def __init__(self, errors: dict):
        super().__init__("The params are not valid for this job type.", field="params", errors=errors)


class IdempotencyConflict(DomainError):
    status_code = 422
    code = "idempotency_key_reused"

    def __init__(self):
        super().__init__(
            "This Idempotency-Key was already used with a different request body.", field="Idempotency-Key"
        )


class LogMessageTooLong(DomainError):
    code = "message_too_long"

    def __init__(self, limit: int):
        super().__init__(f"A log message may hold at most {limit} bytes.", field="event_message")


class LeaseLost(Exception):
    """The runner's lease on a job is gone (it was reaped, or another attempt runs it now):
    its writes are refused. Not an API error: only a runner sees it."""

    def __init__(self, job_id, attempt: int):
        super().__init__(f"job {job_id} attempt {attempt} no longer holds its lease")
        self.job_id = job_id
        self.attempt = attempt


class RunLost(Exception):
    """A run's worker stopped before the run ended: what the reaper writes on the run's task
    row, which the worker would have closed."""
