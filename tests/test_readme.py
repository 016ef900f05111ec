"""The README's two commands are the ones that work: .ci/run runs the test command, the build command builds."""
from __future__ import annotations

import re
import shlex

from typer.testing import CliRunner

from conftest import ROOT
from vnetgen.cli import app

README = (ROOT / "README.md").read_text()
COMMANDS = re.findall(r"```sh\n(.+?)\n```", README.split("## A tour of a bundle")[0])


def test_readme_has_exactly_two_commands():
    assert len(COMMANDS) == 2, COMMANDS


def test_ci_runs_the_readme_test_command():
    test_command = COMMANDS[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci


def test_readme_build_command_builds(tmp_path, monkeypatch):
    install, build = COMMANDS[0].split("&&")
    assert install.strip() == "pip install ."
    words = shlex.split(build)
    assert words[:2] == ["vnetgen", "build"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").symlink_to(ROOT / "profiles")
    (tmp_path / "build").mkdir()  # what `pip install .` leaves in a source checkout
    (tmp_path / "build" / "lib").mkdir()
    (tmp_path / "build" / "lib" / "x.py").write_text("")
    result = CliRunner().invoke(app, words[1:], catch_exceptions=False)
    assert result.exit_code == 0, result.output
