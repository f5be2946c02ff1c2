"""The README's SDK example runs as printed (against a node of our own)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import BrokerFactory
from tests.sdk.readme import README_URL, sdk_example
from tests.support.processes import REPO


def test_readme_sdk_example_prints_the_message(broker: BrokerFactory) -> None:
    node = broker()
    example = sdk_example()
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
