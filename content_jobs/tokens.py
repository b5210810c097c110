"""Stream tokens: signed, expiring, bound to one job, accepted only on that job's two streams."""
import time

from django.conf import settings
from django.core import signing

SALT = "nexus.content_jobs.stream-token"

# The tokens signed in the current second, by job: a signature is stamped to the second, so a
# job's token signed again within it is the same text. Every job event carries the job's
# token (each progress value, a job's start and end); signing it was a tenth of a progress
# write.
_signed: tuple[int, dict] = (0, {})


def stream_token_for(job_id) -> str:
    global _signed
    second, tokens = _signed
    now = int(time.time())
    if second != now:
        tokens = {}
        _signed = (now, tokens)
    job_id = str(job_id)
    token = tokens.get(job_id)
    if token is None:
        token = tokens[job_id] = signing.dumps(job_id, salt=SALT, compress=False)
    return token


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
