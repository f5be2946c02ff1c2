"""Build hook of the roomcast-client wheel: where its two packages come from.

The wheel holds exactly ``roomcast_client`` and ``protocol``. Built from a
checkout they are the repository root's own packages (``../../``), the one
copy the server distribution ships too; built from the sdist (which
``[tool.hatch.build.targets.sdist.force-include]`` fills with them) they sit
beside this file. A static ``force-include`` table cannot name both, and a
path it names must exist, so the wheel's table is made here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

__all__ = ["PACKAGES", "SharedPackagesHook"]

PACKAGES = ("roomcast_client", "protocol")


class SharedPackagesHook(BuildHookInterface):  # type: ignore[type-arg]
    """Force-include each package from the sdist's root, else the repository's."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Add every package of :data:`PACKAGES` to the wheel's forced files.

        Raises:
            FileNotFoundError: a package is in neither place.
        """
        root = Path(self.root)
        for package in PACKAGES:
            candidates = (root / package, root.parent.parent / package)
            source = next((c for c in candidates if (c / "__init__.py").is_file()), None)
            if source is None:
                raise FileNotFoundError(f"package {package!r} is in none of {candidates}")
            build_data["force_include"][str(source.resolve())] = package
