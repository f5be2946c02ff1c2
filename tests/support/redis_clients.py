"""Which Redis connections belong to which process: ``CLIENT LIST`` parsed,
and a process's own TCP connections to a port read from /proc, so that a
test can reset exactly one node's subscriber connection."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.processes import RedisServer

__all__ = ["client_list", "local_ports", "pubsub_client_ids"]


def client_list(redis: RedisServer) -> list[dict[str, str]]:
    """``CLIENT LIST`` of ``redis``, one dict of ``field=value`` per connection."""
    return [
        dict(item.split("=", 1) for item in line.split() if "=" in item)
        for line in redis.cli("CLIENT", "LIST").splitlines()
    ]


def local_ports(pid: int, remote_port: int) -> set[int]:
    """The local ports of the IPv4 TCP connections process ``pid`` has open to
    ``remote_port`` (its sockets' inodes, matched in /proc/net/tcp)."""
    inodes = set()
    for fd in os.scandir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(fd.path)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and int(remote.split(":")[1], 16) == remote_port:
            ports.add(int(local.split(":")[1], 16))
    return ports


def pubsub_client_ids(redis: RedisServer, pid: int) -> list[str]:
    """The ids of the pub/sub connections (flag ``P``: ``SUBSCRIBE`` or
    ``SSUBSCRIBE``) that process ``pid`` holds to ``redis``."""
    ports = local_ports(pid, redis.port)
    return [
        client["id"]
        for client in client_list(redis)
        if "P" in client.get("flags", "") and int(client["addr"].rsplit(":", 1)[1]) in ports
    ]
