"""The README's SDK example runs as printed (against a node of our own)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import BrokerFactory
from tests.support.processes import REPO

README_URL = "ws://127.0.0.1:8765/ws"


def _sdk_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python SDK", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "no python example in the Python SDK section"
    return match.group(1)


def test_readme_sdk_example_prints_the_message(broker: BrokerFactory) -> None:
    node = broker()
    example = _sdk_example()
    assert README_URL in example

    result = subprocess.run(
        [sys.executable, "-c", example.replace(README_URL, node.url)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("{'text': 'hi alice'}\n")
    assert result.stdout.startswith("s-")
