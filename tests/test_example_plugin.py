"""examples/vnetgen-macvtap: a third-party mode in its own package, installed with pip (tests/run.sh
does), found through the entry-point group and used by a profile like a built-in mode."""
from __future__ import annotations

import importlib.metadata

import pytest
from typer.testing import CliRunner

from conftest import IN_CI, ROOT
from vnetgen.cli import app

PROFILE = """\
vnetgen: 1
host: caldera02
target: el9
networks:
  lan-direct:
    mode: macvtap
    bridge: enp3s0
"""


@pytest.fixture(autouse=True)
def installed():
    try:
        importlib.metadata.distribution("vnetgen-macvtap")
    except importlib.metadata.PackageNotFoundError:
        message = "examples/vnetgen-macvtap is not installed (bash tests/run.sh installs it)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def test_the_example_only_imports_vnetgen_api():
    source = (ROOT / "examples" / "vnetgen-macvtap" / "vnetgen_macvtap.py").read_text()
    imports = [line.split()[1] for line in source.splitlines() if line.startswith(("from vnetgen", "import vnetgen"))]
    assert imports == ["vnetgen.api"]


def test_plugins_lists_it_with_its_package():
    result = CliRunner().invoke(app, ["plugins"])
    line = next(line for line in result.output.splitlines() if " macvtap " in line)
    assert line.split()[:4] == ["mode", "macvtap", "macvtap", "vnetgen-macvtap"]


def test_a_profile_uses_the_mode(tmp_path):
    from vnetgen.xml import rng_errors

    profile = tmp_path / "direct.yaml"
    profile.write_text(PROFILE)
    result = CliRunner().invoke(app, ["build", str(profile), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    xml = (tmp_path / "out" / "caldera02" / "networks" / "lan-direct.xml").read_text()
    assert '<forward mode="bridge">' in xml and '<interface dev="enp3s0"/>' in xml
    assert rng_errors(xml) is None
    runbook = (tmp_path / "out" / "caldera02" / "runbook.sh").read_text()
    assert "define_net lan-direct" in runbook


def test_its_validation_is_located(tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text(PROFILE.replace("    bridge: enp3s0\n", "    dhcp: {start: 10.0.0.2, end: 10.0.0.9}\n"))
    result = CliRunner().invoke(app, ["validate", str(profile)])
    assert result.exit_code == 2
    assert f"{profile}:5:3: error: network lan-direct: macvtap needs 'bridge:' naming the host NIC" in result.output
    assert f"{profile}:7:11: error: network lan-direct: macvtap has no DHCP of libvirt's" in result.output
