"""The server-side scripts that keep a room's position and history
(docs/HISTORY-PRESENCE.md, "Positions" and "Options").

A room's keys share one hash tag (:mod:`.envelope`): its position, a hash
with exactly one field, named by the room's epoch and holding its last
offset, that expires ``meta_ttl`` after the room's last message; and its
history, a LIST of the envelopes (:mod:`.envelope`) of the last ``size``
messages (oldest first), that expires ``ttl`` after the last message. Every
script is given all the keys it touches, so it runs unchanged on Redis
Cluster. Size and TTLs are written into the scripts' source: one SHA per
configuration (every node of a cluster uses the same options).

Invariants (kept because only these scripts write a room's keys):
    * The position has exactly one field: ``HINCRBY position E 1`` returns
      more than 1 only if ``E`` is the room's epoch, so the publish script
      both checks the epoch the node remembered and takes the next offset
      in one command; 1 sends it down the slow path, which settles the
      epoch (the room's own, or a new one) and leaves one field again.
    * The history holds the envelopes of offsets ``o - LLEN + 1 .. o`` of the
      position's epoch, so a message's offset follows from its index: a
      position created anew deletes any history left beside it.
    * A message is in the history if and only if it was published: the
      publish script appends and SPUBLISHes in one atomic step.
    * Epochs come from the node (random, :func:`new_epoch`); a fresh one is
      used only when the room has no position (or lost the one the node
      remembered: an epoch is never reused).
    * Expiry is refreshed only when the node asks (at most once per
      ``refresh`` per node and room, :mod:`.history`) and when a key is
      created, always to ``ttl + refresh`` (``meta_ttl + refresh``): a room's
      messages are kept between ``ttl`` and ``ttl + refresh`` after its last
      message, its position between ``meta_ttl`` and ``meta_ttl + refresh``.

Cost (README.md, "Benchmarks", "Redis CPU per say"): 5.5 µs of redis-server
CPU per say against 7.3 µs for the issue's naive script in the same runs
(0.75x; this script's first version: 8.9 µs), redis-benchmark EVALSHA
pipelined 32 deep, one subscriber, /proc CPU over the calls, medians of 3.
An empty EVALSHA is 2.0 µs of it; each Redis call about 0.5 to 0.9 µs, hence
one HINCRBY for epoch and offset, no read, and expiry only when asked.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

__all__ = ["ROTATE", "Script", "publish_script", "read_script"]


class Script(NamedTuple):
    """A Lua script and the SHA1 that EVALSHA calls it by."""

    source: bytes
    sha: bytes


def _script(source: str) -> Script:
    body = source.strip().encode()
    return Script(body, hashlib.sha1(body, usedforsecurity=False).hexdigest().encode())


_PUBLISH = """
-- KEYS: position, history, channel
-- ARGV: epoch the node remembers (or a fresh one), a fresh epoch, envelope
--       head, frame without its closing brace, '1' to refresh expiry
local p, h, e = KEYS[1], KEYS[2], ARGV[1]
local o = redis.call('HINCRBY', p, e, 1)
local moved = false
if o == 1 then
  -- e is new to the room: a position just created, one made by a read at
  -- offset 0, or an epoch the node remembered wrongly.
  local fields = redis.call('HGETALL', p)
  if #fields > 2 then
    redis.call('HDEL', p, e)
    e = fields[1] == e and fields[3] or fields[1]
    o = redis.call('HINCRBY', p, e, 1)
  elseif e ~= ARGV[2] then
    -- The remembered epoch was lost with the position: never reuse it.
    e = ARGV[2]
    redis.call('DEL', p)
    redis.call('HSET', p, e, 1)
  end
  if o == 1 then
    redis.call('DEL', h)
    redis.call('PEXPIRE', p, {meta_ttl})
  end
  moved = e ~= ARGV[1]
end
local off = string.format('%d', o)
local env = ARGV[3] .. off .. '\\n' .. e .. '\\n'
  .. ARGV[4] .. ',"offset":' .. off .. ',"epoch":"' .. e .. '"}'
local n = redis.call('RPUSH', h, env)
if n == {size} + 1 then
  redis.call('LPOP', h)
elseif n > {size} then
  redis.call('LTRIM', h, -{size}, -1)
elseif n == 1 then
  redis.call('PEXPIRE', h, {ttl})
end
if ARGV[5] == '1' then
  redis.call('PEXPIRE', h, {ttl})
  redis.call('PEXPIRE', p, {meta_ttl})
end
redis.call('SPUBLISH', KEYS[3], env)
if moved then return {o, e} end
return o
"""


def publish_script(size: int, ttl_ms: int, meta_ttl_ms: int, refresh_ms: int) -> Script:
    """Give a ``message`` frame the room's next offset, keep it, publish it.

    The envelope SPUBLISHed and kept is the head, the position, then the
    frame with ``"offset":N,"epoch":"E"`` before its closing brace: the bytes
    :func:`protocol.with_position` makes (epochs are ``[A-Za-z0-9-]``:
    quoting them needs no escape). When the RPUSH went past ``size``, LPOP
    (or LTRIM, if ``size`` was lowered) keeps the history at exactly
    ``size`` (LPOP measured cheaper than LTRIM). Returns the offset
    if the message got the epoch the node gave first, else ``{offset, epoch}``.

    Args:
        size: messages kept per room.
        ttl_ms: how long a room's messages are kept after its last message.
        meta_ttl_ms: how long its position is kept after its last message.
        refresh_ms: how often a node refreshes a room's expiry
            (:class:`~broker.backends.redis.history.History`); added to both.
    """
    return _script(
        _PUBLISH.replace("{size}", str(size))
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
local first = o - redis.call('LLEN', h) + 1
local lo, hi = math.max(tonumber(ARGV[2]) + 1, first), o
if ARGV[3] ~= '' then hi = math.min(hi, tonumber(ARGV[3]) - 1) end
if ARGV[4] ~= '' then lo = math.max(lo, hi - tonumber(ARGV[4]) + 1) end
if lo > hi then return {e, o, 0, {}} end
return {e, o, lo, redis.call('LRANGE', h, lo - first, hi - first)}
"""


def read_script(meta_ttl_ms: int, refresh_ms: int) -> Script:
    """The position (created with the given epoch if the room has none) and
    the kept envelopes with ``after < offset < before``, the newest ``limit``.
    Returns ``{epoch, offset, first offset, envelopes}``."""
    return _script(_READ.replace("{meta_ttl}", str(meta_ttl_ms + refresh_ms)))


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
