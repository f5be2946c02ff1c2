"""``broker serve --log-format json``: every line the node logs is one JSON
object, for log shippers."""

from __future__ import annotations

import json

from tests.support.processes import BrokerProcess


def test_node_logs_one_json_object_per_line_from_start_to_stop() -> None:
    node = BrokerProcess(args=("--log-format", "json", "--node-id", "n-json"))
    try:
        node.start()
        assert node.terminate() == 0
        lines = node.log().splitlines()
    finally:
        node.cleanup()

    entries = [json.loads(line) for line in lines]
    assert all(entry.keys() >= {"time", "level", "logger", "message"} for entry in entries)
    messages = [entry["message"] for entry in entries]
    assert any(m.startswith("node n-json listening on") for m in messages), messages
    assert "node n-json stopped" in messages
