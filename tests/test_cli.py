"""The CLI contract of SPEC section 4: commands, exit codes, atomic writes, --check, hostile input."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from vnetgen.cli import app

NAT = str(ROOT / "profiles" / "nat-default.yaml")
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def tree(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_version_and_help():
    code, out = invoke("--version")
    assert code == 0 and out.startswith("vnetgen ")
    code, out = invoke("--help")
    assert code == 0 and all(c in out for c in ("build", "validate", "plugins", "schema"))


COMMANDS = ["validate", "build", "audit", "import", "diff", "plugins", "schema", "rehearse"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("rest", [["--help"], [], ["--bogus"], ["--version"], [NAT, "--nope"]])
def test_a_command_alone_parses_helps_and_fails_as_the_whole_app(command, rest):
    """`vnetgen COMMAND ...` runs the app made of that command alone (cli.command_app): the same
    output and exit status as the whole app for its help, a missing argument, unknown options."""
    from vnetgen.cli import command_app

    alone = command_app([command])
    assert alone is not app and [c.callback for c in alone.registered_commands] == \
        [c.callback for c in app.registered_commands if (c.name or c.callback.__name__.replace("_", "-")) == command]
    whole = runner.invoke(app, [command, *rest])
    one = runner.invoke(alone, [command, *rest])
    assert (one.exit_code, one.output) == (whole.exit_code, whole.output)
    assert whole.exit_code != 0 or rest == ["--help"] or (rest == [] and command in ("plugins", "schema"))


def test_a_first_argument_that_is_no_command_gets_the_whole_app():
    from vnetgen.cli import command_app

    assert command_app([]) is app and command_app(["--version"]) is app and command_app(["biuld"]) is app
    assert [c.callback.__name__ for c in app.registered_commands] == \
        ["validate", "build", "audit", "import_", "diff", "plugins", "schema", "rehearse"]   # COMMANDS


def test_validate_ok_and_errors(write_profile):
    assert invoke("validate", NAT)[0] == 0
    bad = write_profile("vnetgen: 1\nnetworks:\n  n: {mode: nat}\n")
    code, out = invoke("validate", bad)
    assert code == 2 and f"{bad}:3:3: error:" in out


def test_warnings_alone_exit_zero(write_profile):
    path = write_profile("vnetgen: 1\nbridges:\n  br0: {ports: [a, b], stp: false}\n")
    code, out = invoke("validate", path)
    assert code == 0 and "warning: bridge br0: stp is off" in out


def test_build_writes_bundle(tmp_path):
    out = tmp_path / "bundle"
    code, text = invoke("build", NAT, "-o", str(out))
    assert code == 0, text
    assert (out / "caldera02" / "runbook.sh").exists() and (out / "SHA256SUMS").exists()


def test_build_only_selected_host(tmp_path):
    out = tmp_path / "b"
    assert invoke("build", str(ROOT / "profiles" / "two-hosts.yaml"), "-o", str(out), "--host", "caldera03")[0] == 0
    assert (out / "caldera03").is_dir() and not (out / "caldera02").exists()
    assert invoke("build", NAT, "-o", str(out), "--host", "nope")[0] == 2


def test_invalid_profile_writes_nothing_and_leaves_dir_as_it_was(tmp_path, write_profile):
    out = tmp_path / "bundle"
    assert invoke("build", NAT, "-o", str(out))[0] == 0
    before = tree(out)
    bad = write_profile("vnetgen: 1\nhost: caldera02\nnetworks:\n  default: {mode: nat}\n")
    code, text = invoke("build", bad, "-o", str(out))
    assert code == 2 and "nothing was written" in text
    assert tree(out) == before
    fresh = tmp_path / "fresh"
    assert invoke("build", bad, "-o", str(fresh))[0] == 2 and not fresh.exists()


def test_foreign_files_refused_unless_force(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, text = invoke("build", NAT, "-o", str(out))
    assert code == 2 and "did not write" in text and "notes.txt" in text
    assert sorted(os.listdir(out)) == ["notes.txt"]
    assert invoke("build", NAT, "-o", str(out), "--force")[0] == 0
    assert (out / "notes.txt").read_text() == "mine"  # --force never deletes what is not ours
    assert (out / "caldera02" / "runbook.sh").exists()


def test_rebuild_replaces_own_files_and_drops_stale_ones(tmp_path):
    out = tmp_path / "bundle"
    assert invoke("build", str(ROOT / "profiles" / "two-hosts.yaml"), "-o", str(out))[0] == 0
    assert invoke("build", NAT, "-o", str(out))[0] == 0
    assert not (out / "caldera03").exists()


def test_check_in_sync_tampered_missing_extra(tmp_path):
    out = tmp_path / "bundle"
    assert invoke("build", NAT, "-o", str(out))[0] == 0
    assert invoke("build", NAT, "-o", str(out), "--check")[0] == 0
    runbook = out / "caldera02" / "runbook.sh"
    runbook.write_text(runbook.read_text() + "# edited\n")
    (out / "REVIEW.md").unlink()
    (out / "caldera02" / "extra.txt").write_text("x")
    before = tree(out)
    code, text = invoke("build", NAT, "-o", str(out), "--check")
    assert code == 1
    assert "differs: caldera02/runbook.sh (a rebuild writes +0 -1 lines)" in text and "missing: REVIEW.md" in text
    assert "extra: caldera02/extra.txt" in text
    assert tree(out) == before  # --check writes nothing
    (out / "caldera02" / "capture.sh").chmod(0o644)
    code, text = invoke("build", NAT, "-o", str(out), "--check")
    assert "differs: caldera02/capture.sh (a rebuild writes mode 644 → 755)" in text


def test_plugins_lists_modes_with_package_and_version():
    code, out = invoke("plugins")
    assert code == 0
    for mode in ("nat", "route", "isolated", "bridge", "open"):
        assert any(line.split()[:2] == ["mode", mode] and "vnetgen" in line for line in out.splitlines())


def test_schema_is_json_schema_with_modes():
    code, out = invoke("schema")
    schema = json.loads(out)
    assert code == 0 and schema["required"] == ["vnetgen"]
    mode = schema["properties"]["hosts"]["additionalProperties"]["properties"]["networks"][
        "additionalProperties"]["properties"]["mode"]
    assert set(mode["enum"]) >= {"nat", "route", "isolated", "bridge", "open"}


def test_schema_accepts_the_shipped_profiles():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads(invoke("schema")[1])
    for profile in sorted((ROOT / "profiles").glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(profile.read_text()), schema)


def test_a_newline_in_the_profile_file_name_cannot_reach_a_command_line(tmp_path):
    profile = tmp_path / "x\nreboot\n.yaml"
    profile.write_text((ROOT / "profiles" / "nat-default.yaml").read_text())
    out = tmp_path / "out"
    assert invoke("build", str(profile), "-o", str(out))[0] == 0
    runbook = (out / "caldera02" / "runbook.sh").read_text()
    assert "\nreboot" not in runbook and "x?reboot?.yaml" in runbook
    assert "\nreboot" not in (out / "REVIEW.md").read_text()


HOSTILE = [
    b"vnetgen: 1\nnetworks:\n  'x; rm -rf /': {mode: nat}\n",
    b"vnetgen: 1\nnetworks:\n  n: {mode: nat, bridge: \"$(reboot)\"}\n",
    b"vnetgen: 1\nnetworks:\n  n: {mode: isolated, bridge: \"a</bridge><x>\"}\n",
    b"vnetgen: 1\nname: \"line\\nbreak\"\nnetworks: {n: {mode: isolated}}\n",
    b"vnetgen: 1\nvms: {v: {memory: 1, vcpus: 1, networks: [n], location: \"/x\\n; reboot\"}}\n"
    b"networks: {n: {mode: isolated}}\n",
    b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)),
    b"vnetgen: !!python/object/apply:os.system ['true']\n",
    b"vnetgen: 1\nhosts: {'../../etc': {networks: {n: {mode: isolated}}}}\n",
    b"[" * 5000,
    b"vnetgen: 1\nnetworks: {n: {mode: isolated, ports: [" + b",".join([b"eth0"] * 3) + b"]}}\n",
]


@pytest.mark.parametrize("content", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_exit_2_no_traceback_nothing_written(tmp_path, content):
    profile = tmp_path / "hostile.yaml"
    profile.write_bytes(content)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "vnetgen", "build", str(profile), "-o", str(out)],
                            capture_output=True, text=True, errors="replace", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "hostile.yaml:" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("argv, status", [(["validate", NAT], 0), (["validate", "/nonexistent.yaml"], 2)])
def test_the_cli_freezes_the_collector_on_its_way_out(monkeypatch, argv, status):
    """The interpreter's last collections would walk every object the command made (a fleet's
    profile: millions) only to free memory the process is giving back anyway: main() freezes them
    once the command is done, whatever its exit."""
    import gc

    from vnetgen import cli

    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr(sys, "argv", ["vnetgen", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == status and frozen == [True]


def test_a_built_bundle_is_whole_after_the_process_exits(tmp_path):
    """In a real process (the collector frozen at exit): every file written and closed, as listed."""
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "vnetgen", "build", NAT, "-o", str(out)], check=True,
                   capture_output=True)
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=out, check=True)
    listed = {line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines()}
    assert len(listed) > 10 and all((out / name).stat().st_size > 0 for name in listed)
