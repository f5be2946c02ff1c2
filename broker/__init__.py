"""roomcast broker: server, backends, CLI and Python client SDK."""

__version__ = "0.1.0"
__all__ = ["__version__"]
