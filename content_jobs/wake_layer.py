"""The channel layer of the workers' wake-ups (settings.CHANNEL_LAYERS["wake"]; how they are
read: content_jobs.stream_hub): channels_redis's list-based RedisChannelLayer, whose blocking
read gives up in time.

Its read blocks in Redis (BZPOPMIN) for `brpop_timeout` seconds, then blocks again. That was 5
s, and redis-py 8 gives up waiting for any reply after its default socket timeout, 5 s too:
a worker asleep for longer raced the two, and when the client's timer won its read failed
(logged, and no wake-up read for half a second while it started again). A wake-up taken by a
read that its worker cancelled (it started a job) waits in the layer's backup until the next
read of the channel begins: a shorter block also brings it back sooner.
"""
from channels_redis.core import RedisChannelLayer


class WakeLayer(RedisChannelLayer):
    brpop_timeout = 2  # seconds; well under the Redis client's socket timeout (5 s)
