"""The TypeScript SDK (``sdk/typescript``, npm package ``roomcast``), checked
from the one test command: its types, its generated protocol types, its
unit and integration tests (Node's test runner, against broker processes
they start), the size of its browser build, and its packed tarball as a
user installs it.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REDIS_SERVER, REPO
from tests.typescript.conftest import run

SIZE_BUDGET = 8192
"""Bytes of the minified, gzipped browser build at most (issue #15)."""

CONSUMER = """\
import { connect, BrokerError, type Client, type Message, type Position } from "roomcast";

export async function chat(url: string): Promise<Position | null> {
  const client: Client = connect(url, { timeout: 5000 });
  client.on("message", (message: Message) => console.log(message.room, message.body));
  client.on("reconnected", (event) => console.log(event.recovered));
  try {
    await client.join("lobby");
    return await client.say("lobby", { text: "hi" });
  } catch (error) {
    if (error instanceof BrokerError) console.log(error.code);
    return null;
  } finally {
    client.close();
  }
}
console.log(typeof connect, typeof chat);
"""


def test_sources_and_tests_type_check(sdk: Path, npm: str) -> None:
    run([npm, "run", "typecheck"], cwd=sdk)


def test_sources_and_tests_are_formatted(sdk: Path, npm: str) -> None:
    run([npm, "run", "format:check"], cwd=sdk)


def test_generated_protocol_types_are_current(sdk: Path, npm: str) -> None:
    run([npm, "run", "check-generated"], cwd=sdk)


def test_generated_types_check_fails_when_the_schema_changes(sdk: Path, tmp_path: Path) -> None:
    schema = json.loads((REPO / "tests" / "golden" / "protocol-schema.json").read_text())
    schema["$defs"]["ErrorCode"]["enum"].append("new_code")
    changed = tmp_path / "schema.json"
    changed.write_text(json.dumps(schema))
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "scripts/generate.mjs", "--check", "--schema", str(changed)],
        cwd=sdk,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not current" in result.stderr


def test_unit_tests_pass(sdk: Path, npm: str) -> None:
    result = run([npm, "run", "test:unit"], cwd=sdk)
    print(result.stdout[-400:])


@pytest.mark.redis
def test_integration_tests_against_real_brokers_pass(sdk: Path, npm: str) -> None:
    assert REDIS_SERVER is not None
    result = run(
        [npm, "run", "test:integration"],
        cwd=sdk,
        env={"ROOMCAST_PYTHON": sys.executable, "ROOMCAST_REDIS_SERVER": REDIS_SERVER},
    )
    print(result.stdout[-400:])


def test_browser_build_is_within_its_size_budget(sdk: Path) -> None:
    raw = (sdk / "dist" / "roomcast.min.js").read_bytes()
    size = len(gzip.compress(raw, compresslevel=9))
    print(f"sdk/typescript/dist/roomcast.min.js: {len(raw)} bytes minified, {size} gzipped")
    assert size <= SIZE_BUDGET, f"{size} bytes gzipped, over the {SIZE_BUDGET}-byte budget"


def test_packed_tarball_installs_and_its_typed_import_compiles(
    sdk: Path, npm: str, tmp_path: Path
) -> None:
    packed = run([npm, "pack", "--json", "--pack-destination", str(tmp_path)], cwd=sdk)
    tarball = tmp_path / json.loads(packed.stdout)[0]["filename"]
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "app", "type": "module"}))
    run([npm, "install", "--no-audit", "--no-fund", str(tarball)], cwd=app)
    (app / "chat.ts").write_text(CONSUMER)
    tsc = sdk / "node_modules" / ".bin" / "tsc"
    run(
        [str(tsc), "--strict", "--module", "nodenext", "--moduleResolution", "nodenext",
         "--target", "es2022", "--lib", "es2022,dom", "--types", "", "--outDir", "out", "chat.ts"],
        cwd=app,
    )  # fmt: skip
    node = shutil.which("node")
    assert node is not None
    assert run([node, "out/chat.js"], cwd=app).stdout.strip() == "function function"
