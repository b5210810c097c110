"""Health of the parts /healthz reports on beyond the database."""
from django.conf import settings


def channel_layer_problems() -> list[dict]:
    if not settings.REDIS_URL:
        return []  # the in-memory layer lives in this process: nothing to reach
    try:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return [{"part": "channel_layer", "message": str(exc)[:200]}]
    return []
