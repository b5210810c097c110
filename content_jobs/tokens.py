"""Stream tokens: signed, expiring, bound to one job, accepted only on that job's two streams."""
from django.conf import settings
from django.core import signing

SALT = "nexus.content_jobs.stream-token"


def stream_token_for(job_id) -> str:
    return signing.dumps(str(job_id), salt=SALT, compress=False)


class TokenError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def job_id_from_stream_token(token: str) -> str:
    """The job id the token was made for; raises TokenError if forged or expired."""
    try:
        return signing.loads(token, salt=SALT, max_age=settings.NEXUS_STREAM_TOKEN_SECONDS)
    except signing.SignatureExpired as exc:
        raise TokenError("token_expired", "The stream token has expired; GET the job for a fresh one.") from exc
    except signing.BadSignature as exc:
        raise TokenError("token_invalid", "The stream token is not valid.") from exc
