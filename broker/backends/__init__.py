"""Backends that carry room traffic between nodes (see :mod:`broker.backends.base`)."""

from broker.backends.base import Backend, BackendUnavailable, Delivery
from broker.backends.memory import MemoryBackend, MemoryBus

__all__ = ["Backend", "BackendUnavailable", "Delivery", "MemoryBackend", "MemoryBus"]
