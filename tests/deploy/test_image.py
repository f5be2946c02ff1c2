"""``deploy/Dockerfile`` and its build context, checked without a Docker engine."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.dockerfile import (
    Instruction,
    build_context_includes,
    parse_dockerfile,
    stages,
)
from tests.deploy.tools import require_tool
from tests.support.processes import REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = (REPO / ".dockerignore").read_text()
INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())
STAGES = stages(INSTRUCTIONS)
RUNTIME = STAGES[-1]


def _arg_defaults() -> dict[str, str]:
    defaults = {}
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "ARG" and "=" in instruction.args:
            name, _, value = instruction.args.partition("=")
            defaults[name] = value
    return defaults


def _base_image(stage: list[Instruction]) -> str:
    image = stage[0].words()[0]
    for name, value in _arg_defaults().items():
        image = image.replace("${" + name + "}", value)
    return image


def _last(keyword: str, stage: list[Instruction] = RUNTIME) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert found, f"no {keyword} in the runtime stage"
    return found[-1]


def _copied_sources() -> list[str]:
    sources = []
    for instruction in INSTRUCTIONS:
        words = instruction.words()
        if instruction.keyword == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[:-1] if not w.startswith("--")]
    return sources


def test_dockerfile_passes_hadolint() -> None:
    hadolint = require_tool("hadolint")

    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_multi_stage_on_an_official_slim_python() -> None:
    assert len(STAGES) >= 2
    for stage in STAGES:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", _base_image(stage))


def test_runtime_stage_takes_only_the_virtualenv_from_the_build() -> None:
    copies = [i.words() for i in RUNTIME if i.keyword == "COPY"]

    assert copies == [["--from=build", "/opt/roomcast", "/opt/roomcast"]]


def test_image_runs_as_an_unprivileged_user() -> None:
    user = _last("USER").args.split(":")[0]

    assert user not in {"root", "0"}


def test_image_entrypoint_is_broker_serve() -> None:
    assert json.loads(_last("ENTRYPOINT").args) == ["broker", "serve"]


def test_image_listens_on_every_interface_through_broker_env() -> None:
    env = " ".join(i.args for i in RUNTIME if i.keyword == "ENV")

    assert "BROKER_HOST=0.0.0.0" in env.split()


def test_image_healthcheck_runs_the_healthz_probe_with_python() -> None:
    healthcheck = _last("HEALTHCHECK").args

    assert healthcheck.endswith('CMD ["python", "/opt/roomcast/healthcheck.py"]')


def test_build_context_holds_every_file_the_image_copies() -> None:
    sources = _copied_sources()

    assert sources, "the Dockerfile copies nothing from the context"
    for source in sources:
        assert (REPO / source).exists(), source
        assert build_context_includes(DOCKERIGNORE, source), f"{source} is in .dockerignore"


@pytest.mark.parametrize("path", [".git/HEAD", "tests/conftest.py", "deploy/demo/index.html"])
def test_build_context_leaves_out_what_the_image_does_not_need(path: str) -> None:
    assert not build_context_includes(DOCKERIGNORE, path)


@pytest.fixture(scope="module")
def wheel_from_the_copied_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip`` builds from a directory holding only what the build
    stage copies (it runs ``pip install .`` on exactly that)."""
    tmp_path = tmp_path_factory.mktemp("image")
    context = tmp_path / "src"
    for source in _copied_sources():
        if source.startswith("deploy/"):
            continue  # copied into the venv, not part of the package
        target = context / source
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / source, target)

    wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    result = subprocess.run(
        [*wheel, "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list((tmp_path / "dist").glob("roomcast-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_the_copied_files_are_enough_to_build_the_package(
    wheel_from_the_copied_files: Path,
) -> None:
    assert wheel_from_the_copied_files.name.startswith("roomcast-")


@pytest.mark.parametrize("package", ["broker", "protocol", "roomcast_client"])
def test_the_image_package_holds_every_top_level_package(
    wheel_from_the_copied_files: Path, package: str
) -> None:
    # A package the Dockerfile forgets to copy still builds, without it:
    # `broker say` in the image would then fail on its first import.
    with zipfile.ZipFile(wheel_from_the_copied_files) as wheel:
        assert f"{package}/__init__.py" in wheel.namelist()
