"""The server-side scripts that keep a room's position and history
(docs/HISTORY-PRESENCE.md, "Positions" and "Options").

A room's keys share one hash tag (:mod:`.envelope`): its position, a hash
with exactly one field, named by the room's epoch and holding its last
offset, that expires ``meta_ttl`` after the room's last message; and its
history, a LIST of the envelopes (:mod:`.envelope`) of its last messages
(oldest first: at least the last ``size``, at most ``trim_slack(size)``
more), that expires ``ttl`` after the last message. Every script is given
all the keys it touches, so it runs unchanged on Redis Cluster. Size and
TTLs are written into the scripts' source: one SHA per configuration (every
node of a cluster uses the same options; nodes with different sizes still
agree on every offset, each reads and trims to its own size).

Invariants (kept because only these scripts write a room's keys):
    * The position has exactly one field: ``HINCRBY position E 1`` returns
      more than 1 only if ``E`` is the room's epoch, so the publish script
      both checks the epoch the node remembered and takes the next offset
      in one command; 1 sends it down the slow path, which settles the
      epoch (the room's own, or a new one) and leaves one field again.
    * The history holds the envelopes of offsets ``o - LLEN + 1 .. o`` of the
      position's epoch, so a message's offset follows from its index: a
      position created anew deletes any history left beside it, and the
      history only ever loses its oldest entries (LTRIM) or all (expiry).
    * A message is in the history if and only if it was published: the
      publish script appends and SPUBLISHes in one atomic step.
    * Epochs are never reused. A node that does not know the room sends an
      epoch of its own (a random prefix and a count, :mod:`.history`), used
      if the room has none; when the epoch a node remembered was lost with
      the position, the script starts ``e-`` and 12 hex digits of the SHA1
      of that epoch and the say's envelope head (node, session, the time it
      was said): as unlikely to repeat as the 48 random bits of
      :func:`~broker.backends.memory_history.new_epoch`, and no argument on
      every say for this rare case.
    * Expiry is refreshed only when the node asks (at most once per
      ``refresh`` per node and room, :mod:`.history`) and when a key is
      created, always to ``ttl + refresh`` (``meta_ttl + refresh``): a room's
      messages are kept between ``ttl`` and ``ttl + refresh`` after its last
      message, its position between ``meta_ttl`` and ``meta_ttl + refresh``.

Cost (README.md, "Benchmarks", "Redis CPU per say";
``deploy/measure_publish_script.py`` measures it): redis-server's own CPU
per call, EVALSHA pipelined 32 deep, one subscriber, against the issue's
naive script in the same runs: 0.71 (5.7 µs against 8.0; the previous
version 0.76, the first 1.22). What costs is fixed per call more than per
byte: on Redis 7.0.15, in instructions counted under callgrind (which the
timings follow), the naive script is 77,000, an empty EVALSHA 10,000 plus
1,300 to 3,000 per argument (22,000 with this script's), HINCRBY 8,000,
RPUSH and SPUBLISH 5,500 each, building the envelope 5,000 (a Lua string
allocated and collected; ``string.format`` prints the offset cheapest),
LPOP, LTRIM and PEXPIRE 5,000 to 9,000 each. Hence: the usual say makes
three calls (HINCRBY, RPUSH, SPUBLISH), trims in one LTRIM once the
history is ``trim_slack`` over ``size`` instead of an LPOP per say,
refreshes expiry only when asked, and gets three arguments (no flag
unless needed, no spare epoch: the script makes one in the rare case it
needs it): 49,000 instructions, 0.63 of the naive script's (the previous
version: 60,000). A stripped script doing only HINCRBY, the envelope, one
HSET and SPUBLISH is 45,000 (0.58; 0.63 by CPU time): 0.55 is out of reach
of a Lua script on Redis 7.0.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

__all__ = ["ROTATE", "Script", "publish_script", "read_script", "trim_slack"]


class Script(NamedTuple):
    """A Lua script and the SHA1 that EVALSHA calls it by."""

    source: bytes
    sha: bytes


def _script(source: str) -> Script:
    body = source.strip().encode()
    return Script(body, hashlib.sha1(body, usedforsecurity=False).hexdigest().encode())


_PUBLISH = """
-- KEYS: position, history, channel
-- ARGV: epoch the node remembers (or a fresh one), envelope head, the rest
--       of the envelope up to the offset in the frame ('\\n' epoch '\\n'
--       frame without its closing brace ',"offset":'), and only if asked:
--       'refresh' (refresh expiry) or 'new' (the epoch is fresh; refresh)
local p, h, e = KEYS[1], KEYS[2], ARGV[1]
local o = redis.call('HINCRBY', p, e, 1)
local off
if o > 1 then
  off = string.format('%d', o)
  local env = ARGV[2] .. off .. ARGV[3] .. off .. ',"epoch":"' .. e .. '"}'
  local n = redis.call('RPUSH', h, env)
  if n > {trim_at} then
    redis.call('LTRIM', h, -{size}, -1)
  elseif n == 1 then
    redis.call('PEXPIRE', h, {ttl})
  end
  if ARGV[4] then
    redis.call('PEXPIRE', h, {ttl})
    redis.call('PEXPIRE', p, {meta_ttl})
  end
  redis.call('SPUBLISH', KEYS[3], env)
  return o
end
-- e is new to the room: a position just created, one made by a read at
-- offset 0, or an epoch the node remembered wrongly.
local fields = redis.call('HGETALL', p)
if #fields > 2 then
  redis.call('HDEL', p, e)
  e = fields[1] == e and fields[3] or fields[1]
  o = redis.call('HINCRBY', p, e, 1)
elseif ARGV[4] ~= 'new' then
  -- The remembered epoch was lost with the position: never reuse it. A
  -- fresh one from what only this say has (the lost epoch, the node, the
  -- time it was said), like new_epoch's random one.
  e = 'e-' .. string.sub(redis.sha1hex(e .. ARGV[2]), 1, 12)
  redis.call('DEL', p)
  redis.call('HSET', p, e, 1)
end
if o == 1 then
  redis.call('DEL', h)
  redis.call('PEXPIRE', p, {meta_ttl})
end
off = string.format('%d', o)
local env = ARGV[2] .. off .. '\\n' .. e .. '\\n' .. string.sub(ARGV[3], #ARGV[1] + 3)
  .. off .. ',"epoch":"' .. e .. '"}'
if redis.call('RPUSH', h, env) == 1 then
  redis.call('PEXPIRE', h, {ttl})
end
redis.call('LTRIM', h, -{size}, -1)
if ARGV[4] then
  redis.call('PEXPIRE', h, {ttl})
  redis.call('PEXPIRE', p, {meta_ttl})
end
redis.call('SPUBLISH', KEYS[3], env)
if e ~= ARGV[1] then return {o, e} end
return o
"""


def trim_slack(size: int) -> int:
    """How far past ``size`` a room's history grows before the publish
    script trims it back to ``size`` (a quarter of it, at least 1)."""
    return max(1, size // 4)


def publish_script(size: int, ttl_ms: int, meta_ttl_ms: int, refresh_ms: int) -> Script:
    """Give a ``message`` frame the room's next offset, keep it, publish it.

    The envelope SPUBLISHed and kept is the head, the position, then the
    frame with ``"offset":N,"epoch":"E"`` before its closing brace: the bytes
    :func:`protocol.with_position` makes (epochs are ``[A-Za-z0-9-]``:
    quoting them needs no escape). The node sends the envelope in the two
    pieces around the offset's first place (:meth:`.history.History.publish`),
    so the usual say (the epoch the node remembered is the room's) joins
    six strings. The history grows to ``size + trim_slack(size)`` and is then
    trimmed to ``size`` in one LTRIM (cheaper than an LPOP per say); reads
    never return more than the newest ``size``. Returns the offset if the
    message got the epoch the node sent, else ``{offset, epoch}``.

    Args:
        size: messages kept per room.
        ttl_ms: how long a room's messages are kept after its last message.
        meta_ttl_ms: how long its position is kept after its last message.
        refresh_ms: how often a node refreshes a room's expiry
            (:class:`~broker.backends.redis.history.History`); added to both.
    """
    return _script(
        _PUBLISH.replace("{size}", str(size))
        .replace("{trim_at}", str(size + trim_slack(size)))
        .replace("{ttl}", str(ttl_ms + refresh_ms))
        .replace("{meta_ttl}", str(meta_ttl_ms + refresh_ms))
    )


_READ = """
-- KEYS: position, history
-- ARGV: epoch if new, after, before or '', limit or ''
local p, h = KEYS[1], KEYS[2]
local pos = redis.call('HGETALL', p)
local e, o = pos[1], tonumber(pos[2])
if not e then
  redis.call('HSET', p, ARGV[1], 0)
  redis.call('PEXPIRE', p, {meta_ttl})
  redis.call('DEL', h)
  return {ARGV[1], 0, 0, {}}
end
-- The history holds offsets base .. o; the newest {size} of them are kept.
local base = o - redis.call('LLEN', h) + 1
local lo, hi = math.max(tonumber(ARGV[2]) + 1, base, o - {size} + 1), o
if ARGV[3] ~= '' then hi = math.min(hi, tonumber(ARGV[3]) - 1) end
if ARGV[4] ~= '' then lo = math.max(lo, hi - tonumber(ARGV[4]) + 1) end
if lo > hi then return {e, o, 0, {}} end
return {e, o, lo, redis.call('LRANGE', h, lo - base, hi - base)}
"""


def read_script(meta_ttl_ms: int, refresh_ms: int, size: int) -> Script:
    """The position (created with the given epoch if the room has none) and
    the kept envelopes with ``after < offset < before``, the newest ``limit``
    of the newest ``size``. Returns ``{epoch, offset, first offset, envelopes}``."""
    return _script(
        _READ.replace("{meta_ttl}", str(meta_ttl_ms + refresh_ms)).replace("{size}", str(size))
    )


ROTATE = _script(
    """
-- KEYS: position, history; ARGV: stale epoch
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
"""
)
"""Drop the room's position and history if its epoch is still ``ARGV[1]``."""
