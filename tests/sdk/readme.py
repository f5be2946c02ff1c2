"""The README's SDK examples, as the tests run them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.processes import REPO

__all__ = ["README_URL", "online_example", "sdk_example"]

README_URL = "ws://127.0.0.1:8765/ws"
"""The broker URL the example is printed with (tests substitute their node's)."""


def sdk_example() -> str:
    """The first ``python`` block of the README's "Python SDK" section."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python SDK", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "no python example in the Python SDK section"
    return match.group(1)


def online_example(readme: Path = REPO / "README.md") -> str:
    """The ``python`` block of ``readme`` that defines ``keep_online`` ("Who's online")."""
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    found = [block for block in blocks if "async def keep_online(" in block]
    assert len(found) == 1, f"{len(found)} keep_online examples in {readme}"
    return str(found[0])
