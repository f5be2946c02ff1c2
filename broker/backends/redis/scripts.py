"""The server-side scripts that keep a room's position and history
(docs/HISTORY-PRESENCE.md, "Positions" and "Options").

A room's keys share one hash tag (:mod:`.envelope`): its position, a hash
``{e: epoch, o: last offset}`` that expires ``meta_ttl`` after the room's
last message, and its history, a LIST of the last ``size`` frames (oldest
first) that expires ``ttl`` after the last message. Every script is given
all the keys it touches, so it runs unchanged on Redis Cluster.

Invariants (kept because only these scripts write a room's keys):
    * The history holds the frames of offsets ``o - LLEN + 1 .. o`` of the
      position's epoch, so a frame's offset follows from its index: a
      position created anew deletes any history left beside it.
    * A message is in the history if and only if it was published: the
      publish script appends and SPUBLISHes in one atomic step.
    * Epochs come from the node (random, :func:`new_epoch`); one is used only
      when the room has no position.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

__all__ = ["PUBLISH", "READ", "ROTATE", "Script"]


class Script(NamedTuple):
    """A Lua script and the SHA1 that EVALSHA calls it by."""

    source: bytes
    sha: bytes


def _script(source: str) -> Script:
    body = source.strip().encode()
    return Script(body, hashlib.sha1(body, usedforsecurity=False).hexdigest().encode())


PUBLISH = _script(
    """
-- KEYS: position, history, channel
-- ARGV: epoch if new, envelope head, frame, size, ttl ms, meta ttl ms
local p, h = KEYS[1], KEYS[2]
local o = redis.call('HINCRBY', p, 'o', 1)
local e = redis.call('HGET', p, 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', p, 'e', e)
  redis.call('DEL', h)
end
local off = string.format('%d', o)
local frame = string.sub(ARGV[3], 1, -2) .. ',"offset":' .. off .. ',"epoch":"' .. e .. '"}'
if redis.call('RPUSH', h, frame) > tonumber(ARGV[4]) then
  redis.call('LTRIM', h, -ARGV[4], -1)
end
redis.call('PEXPIRE', h, ARGV[5])
redis.call('PEXPIRE', p, ARGV[6])
redis.call('SPUBLISH', KEYS[3], ARGV[2] .. off .. '\\n' .. e .. '\\n' .. frame)
return {o, e}
"""
)
"""Give a ``message`` frame the room's next offset, keep it, publish it.

The frame gets ``"offset":N,"epoch":"E"`` before its closing brace, the bytes
:func:`protocol.with_position` makes (epochs are ``[A-Za-z0-9-]``: quoting
them needs no escape). LTRIM runs only when the RPUSH went past ``size``,
and keeps the history at exactly ``size``. Returns ``{offset, epoch}``.
"""

READ = _script(
    """
-- KEYS: position, history
-- ARGV: epoch if new, after, before or '', limit or '', meta ttl ms
local p, h = KEYS[1], KEYS[2]
local pos = redis.call('HMGET', p, 'e', 'o')
local e, o = pos[1], tonumber(pos[2])
if not e then
  redis.call('HSET', p, 'e', ARGV[1], 'o', 0)
  redis.call('PEXPIRE', p, ARGV[5])
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
)
"""The position (created with the given epoch if the room has none) and the
kept frames with ``after < offset < before``, the newest ``limit``.
Returns ``{epoch, offset, first offset, frames}``."""

ROTATE = _script(
    """
-- KEYS: position, history; ARGV: stale epoch
if redis.call('HGET', KEYS[1], 'e') == ARGV[1] then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
"""
)
"""Drop the room's position and history if its epoch is still ``ARGV[1]``."""
