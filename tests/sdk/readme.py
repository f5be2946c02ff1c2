"""The README's SDK example, as the tests run it."""

from __future__ import annotations

import re

from tests.support.processes import REPO

__all__ = ["README_URL", "sdk_example"]

README_URL = "ws://127.0.0.1:8765/ws"
"""The broker URL the example is printed with (tests substitute their node's)."""


def sdk_example() -> str:
    """The first ``python`` block of the README's "Python SDK" section."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python SDK", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "no python example in the Python SDK section"
    return match.group(1)
