"""The rule for missing deploy tools: skip with how to install, fail in CI."""

from __future__ import annotations

import shutil

import pytest

from tests.deploy import tools


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """No binary can be found."""
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)


@pytest.mark.usefixtures("nothing_installed")
def test_a_missing_tool_skips_saying_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "REQUIRE", False)

    with pytest.raises(
        pytest.skip.Exception, match=r"nginx not installed: .*apt-get install nginx"
    ):
        tools.require_tool("nginx")


@pytest.mark.usefixtures("nothing_installed")
def test_a_missing_tool_fails_when_deploy_tools_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tools, "REQUIRE", True)

    with pytest.raises(pytest.fail.Exception, match="ROOMCAST_REQUIRE_DEPLOY_TOOLS=1"):
        tools.require_tool("chromium")


def test_a_present_tool_is_found_by_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, path=None: f"/opt/bin/{name}")

    assert tools.require_tool("hadolint") == "/opt/bin/hadolint"
