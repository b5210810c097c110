"""The channel layer of the workers' wake-ups (settings.CHANNEL_LAYERS["wake"]; how they are
read: content_jobs.stream_hub): channels_redis's list-based RedisChannelLayer, whose blocking
read gives up in time, and whose send is one round trip.

Its read blocks in Redis (BZPOPMIN) for `brpop_timeout` seconds, then blocks again. That was 5
s, and redis-py 8 gives up waiting for any reply after its default socket timeout, 5 s too:
a worker asleep for longer raced the two, and when the client's timer won its read failed
(logged, and no wake-up read for half a second while it started again).

Its read of that channel is one BZPOPMIN. The library's read then adds the message it popped
to a backup set, a round trip more before the worker is woken (and one more after, to take it
out), so that a read cancelled between its pop and its return loses nothing; this read has
nothing to wait for between them, so it cannot be cancelled there. A read cancelled while its
BZPOPMIN waits is the same in both (a message that Redis popped that very moment is lost with
the connection; a later submission, or the workers' poll, finds its job).

Its send does what the library's does to a general channel (messages past the expiry dropped,
ChannelFull at capacity, the message added with the time as its score, the key's expiry set),
in one script where the library sends four commands one after another: a wake-up is on the
way from a submission to its job's start, and each round trip was about half a millisecond of
it here.
"""
import time

from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer

SEND = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
if redis.call('ZCOUNT', KEYS[1], '-inf', '+inf') >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class WakeLayer(RedisChannelLayer):
    brpop_timeout = 2  # seconds; well under the Redis client's socket timeout (5 s)

    async def send(self, channel, message):
        if "!" in channel:  # a process's own channel: the library's way
            return await super().send(channel, message)
        assert isinstance(message, dict), "message is not a dict"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        assert "__asgi_channel__" not in message
        now = time.time()
        connection = self.connection(next(self._send_index_generator))
        added = await connection.eval(
            SEND, 1, self.prefix + channel,
            int(now) - int(self.expiry), self.get_capacity(channel), now, self.serialize(message),
            int(self.expiry),
        )
        if not added:
            raise ChannelFull()

    async def _brpop_with_clean(self, index, channel, timeout):
        if channel.endswith("!"):  # a process's own channel: the library's way
            return await super()._brpop_with_clean(index, channel, timeout)
        popped = await self.connection(index).bzpopmin(channel, timeout=timeout)
        return None if popped is None else popped[1]

    async def _clean_receive_backup(self, index, channel):
        if channel.endswith("!"):  # the wake-up channel's reads keep no backup
            await super()._clean_receive_backup(index, channel)
