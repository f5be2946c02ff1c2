"""The server-side scripts that keep a room's presence
(docs/HISTORY-PRESENCE.md, "Presence").

A room's presence is three hashes under the room's hash tag
(:class:`~broker.backends.redis.envelope.PresenceKeys`): ``ps`` session ->
user (empty: anonymous), ``pu`` user -> how many of the room's sessions are
that user's, ``pn`` node -> how many of the room's sessions that node holds.
Every script is given all the keys it touches, so it runs unchanged on Redis
Cluster.

Invariants (kept because only these scripts write presence keys):
    * ``pu`` counts exactly the non-empty users of ``ps`` (so ``HLEN pu`` is
      the number of distinct users), ``pn`` the sessions each node added and
      has not removed; no count is ever left at zero or below.
    * Adding a session that is there, or removing one that is not, changes
      nothing: a write may be sent again after an outage without harm.
    * A write sets the expiry of all three keys to the node's TTL; so does a
      node's heartbeat (:data:`REFRESH`): a room nobody refreshes expires.
"""

from __future__ import annotations

import hashlib

from broker.backends.redis.scripts import Script

__all__ = ["ADD", "READ", "REFRESH", "REMOVE"]


def _script(source: str) -> Script:
    body = source.strip().encode()
    return Script(body, hashlib.sha1(body, usedforsecurity=False).hexdigest().encode())


ADD = _script(
    """
-- KEYS: sessions, users, nodes; ARGV: node, ttl ms, session, user, session, user...
local ps, pu, pn = KEYS[1], KEYS[2], KEYS[3]
local added = 0
for i = 3, #ARGV, 2 do
  local s, u = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', ps, s)
  if old ~= u then
    if not old then
      added = added + 1
    elseif old ~= '' and redis.call('HINCRBY', pu, old, -1) <= 0 then
      redis.call('HDEL', pu, old)
    end
    redis.call('HSET', ps, s, u)
    if u ~= '' then redis.call('HINCRBY', pu, u, 1) end
  end
end
if added > 0 then redis.call('HINCRBY', pn, ARGV[1], added) end
redis.call('PEXPIRE', ps, ARGV[2])
redis.call('PEXPIRE', pu, ARGV[2])
redis.call('PEXPIRE', pn, ARGV[2])
return added
"""
)
"""Add ``(session, user)`` pairs of one node to a room. Returns how many
sessions were not there yet."""

REMOVE = _script(
    """
-- KEYS: sessions, users, nodes; ARGV: node, session, session...
local ps, pu, pn = KEYS[1], KEYS[2], KEYS[3]
local removed = 0
for i = 2, #ARGV do
  local u = redis.call('HGET', ps, ARGV[i])
  if u then
    redis.call('HDEL', ps, ARGV[i])
    removed = removed + 1
    if u ~= '' and redis.call('HINCRBY', pu, u, -1) <= 0 then redis.call('HDEL', pu, u) end
  end
end
if removed > 0 and redis.call('HINCRBY', pn, ARGV[1], -removed) <= 0 then
  redis.call('HDEL', pn, ARGV[1])
end
return removed
"""
)
"""Remove sessions of one node from a room. Returns how many were there."""

REFRESH = _script(
    """
-- KEYS: sessions, users, nodes; ARGV: node, ttl ms
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
"""
)
"""A node's heartbeat in one room: push the room's expiry back. Returns how
many sessions the room holds for that node, for the node to compare with its
own count (a room that expired or was lost answers 0)."""

READ = _script(
    """
-- KEYS: sessions, users; ARGV: limit
local ps, limit = KEYS[1], tonumber(ARGV[1])
local count, users = redis.call('HLEN', ps), redis.call('HLEN', KEYS[2])
if limit <= 0 then return {count, users, {}} end
if count <= limit then return {count, users, redis.call('HGETALL', ps)} end
local listed, seen, n, cursor = {}, {}, 0, '0'
repeat
  local page = redis.call('HSCAN', ps, cursor, 'COUNT', limit - n)
  cursor = page[1]
  local fields = page[2]
  for i = 1, #fields, 2 do
    if n >= limit then break end
    if not seen[fields[i]] then
      seen[fields[i]] = true
      listed[2 * n + 1], listed[2 * n + 2] = fields[i], fields[i + 1]
      n = n + 1
    end
  end
until cursor == '0' or n >= limit
return {count, users, listed}
"""
)
"""Who is in a room, in one atomic look: ``{count, users, [session, user,
...]}`` with at most ``limit`` pairs. The counts are two HLENs; the list is
the whole hash when it fits, else HSCAN pages until ``limit`` distinct
sessions are collected (HSCAN may return one twice)."""
