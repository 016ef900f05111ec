"""Artifacts accepted by the real tools: libvirt's RelaxNG schema, virsh's test driver, virt-install
--dry-run, bash -n and shellcheck. In CI (CI=true) a missing tool fails these tests."""
from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from conftest import PROFILES, ROOT, require_tool

pytestmark = pytest.mark.realtool


# Every shipped profile is also built for these targets (its `target: el7` replaced), as "STEM@TARGET".
OTHER_TARGETS = ("ubuntu",)


def retargeted(directory, target):
    """The shipped profiles that name target el7, rewritten for `target` under `directory`."""
    out = []
    for path in PROFILES:
        text = path.read_text()
        if "target: el7" in text:
            copy = directory / f"{path.stem}@{target}.yaml"
            copy.write_text(text.replace("target: el7", f"target: {target}"))
            out.append(copy)
    return out


@pytest.fixture(scope="module")
def bundles(pm_module, tmp_path_factory):
    from vnetgen.bundle import build
    from vnetgen.profile import load_valid

    # and profile fixtures of what the lab cannot run (modes direct, hostdev, ovs)
    paths = list(PROFILES) + [ROOT / "tests" / "fixtures" / "modes" / "modes.yaml",
                              ROOT / "tests" / "fixtures" / "vlan" / "vlan-ports.yaml"]   # VLAN ports, el7
    vlan = (ROOT / "tests" / "fixtures" / "vlan" / "vlan-ports.yaml").read_text()
    el9 = tmp_path_factory.mktemp("vlan") / "vlan-ports@el9.yaml"
    el9.write_text(vlan.replace("target: el7", "target: el9"))
    paths.append(el9)
    for target in OTHER_TARGETS:
        paths += retargeted(tmp_path_factory.mktemp(target), target)
    out = {}
    for path in paths:
        profile, _ = load_valid(str(path), pm_module)
        out[path.stem] = build(profile, pm_module, path.name)
    return out


def test_every_profile_is_built_for_every_target(bundles):
    for target in OTHER_TARGETS:
        assert sum(name.endswith(f"@{target}") for name in bundles) == sum("target: el7" in p.read_text()
                                                                            for p in PROFILES) > 0


@pytest.fixture(scope="module")
def pm_module():
    from vnetgen.plugins import get_plugin_manager

    return get_plugin_manager()


def _files(bundles, predicate):
    return [(name, path, artifact) for name, bundle in bundles.items()
            for path, artifact in sorted(bundle.files.items()) if predicate(path)]


def test_every_network_xml_matches_libvirts_relaxng(bundles):
    from vnetgen.xml import rng_errors, rng_path

    if rng_path() is None:
        require_tool("virsh")  # the schema ships with libvirt's clients
        pytest.fail("virsh is installed but network.rng is not where vnetgen looks")
    files = _files(bundles, lambda p: "/networks/" in p)
    assert files
    for name, path, artifact in files:
        assert rng_errors(artifact.text) is None, (name, path)


def test_relaxng_rejects_what_libvirt_rejects():
    from vnetgen.xml import rng_errors, rng_path

    if rng_path() is None:
        pytest.skip("no network.rng")
    assert rng_errors("<network><name>x</name><forward mode='teleport'/></network>") is not None


_VALID_NETWORK = """<network>
  <name>net1</name>
  <uuid>51a9b432-9c5c-54f6-9690-9d914b7f9dbc</uuid>
  <forward mode="nat"/>
  <bridge name="virbr2" stp="on" delay="0"/>
  <mac address="52:54:00:ae:b3:b7"/>
  <ip address="172.17.0.1" netmask="255.255.255.0">
    <dhcp>
      <range start="172.17.0.10" end="172.17.0.200"/>
      <host mac="52:54:01:00:01:01" ip="172.17.0.201"/>
    </dhcp>
  </ip>
</network>
"""


@pytest.mark.parametrize("old, new", [
    ("51a9b432-9c5c-54f6-9690-9d914b7f9dbc", ""),                       # an empty UUID
    ("51a9b432-9c5c-54f6-9690-9d914b7f9dbc", "51a9b432-9c5c-54f6-9690"),  # a short one
    ("51a9b432-9c5c-54f6-9690-9d914b7f9dbc", "51a9b432-9c5c-54f6-9690-9d914b7f9dbz"),
    ('<mac address="52:54:00:ae:b3:b7"/>', '<mac address="01:00:5e:00:00:01"/>'),   # multicast
    ('<mac address="52:54:00:ae:b3:b7"/>', '<mac address=""/>'),
    ('<host mac="52:54:01:00:01:01"', '<host mac="53:54:01:00:01:01"'),   # multicast
    ('<host mac="52:54:01:00:01:01"', '<host mac="52:54:01:00:01"'),
    ("<uuid>", "<uuid>\0"),   # what stands for a replaced value cannot stand in a document
])
def test_relaxng_results_reused_for_another_uuid_or_mac_only_when_both_are_valid(old, new):
    """rng_errors takes a document that differs from one found valid only in its UUID or unicast
    MACs as valid without validating it again (a fleet's networks are mostly such copies); any
    other difference, even at those places, is validated."""
    from vnetgen.xml import _UNKEYED, _VALID, rng_errors, rng_path

    if rng_path() is None:
        pytest.skip("no network.rng")
    _VALID.clear()
    _UNKEYED.clear()
    assert rng_errors(_VALID_NETWORK) is None
    assert (len(_VALID), len(_UNKEYED)) == (0, 1)   # remembered; keyed when a second document comes
    other = (_VALID_NETWORK.replace("51a9b432-9c5c-54f6-9690-9d914b7f9dbc", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
             .replace("52:54:00:ae:b3:b7", "fe:00:00:00:00:02").replace("52:54:01:00:01:01", "00:11:22:33:44:55"))
    assert rng_errors(other) is None and (len(_VALID), len(_UNKEYED)) == (1, 0)   # reused: nothing new validated
    from lxml import etree

    bad = _VALID_NETWORK.replace(old, new)
    assert bad != _VALID_NETWORK
    try:
        problem = rng_errors(bad)
    except etree.XMLSyntaxError as exc:   # the NUL: not even XML
        problem = str(exc)
    assert problem is not None


def test_virsh_test_driver_defines_every_network(bundles, tmp_path):
    require_tool("virsh")
    for name, path, artifact in _files(bundles, lambda p: "/networks/" in p):
        # The test driver already has a network "default" (and its bridge): rename ours for the test.
        text = re.sub(r"<name>([^<]*)</name>", r"<name>vg_\1</name>", artifact.text, count=1)
        text = re.sub(r"<bridge name=\"virbr(\d+)\"", r'<bridge name="vgbr\1"', text)
        xml = tmp_path / "net.xml"
        xml.write_text(text)
        result = subprocess.run(["virsh", "-c", "test:///default", "net-define", str(xml)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (name, path, result.stderr)


def test_virsh_test_driver_refuses_a_broken_network(tmp_path):
    require_tool("virsh")
    xml = tmp_path / "bad.xml"
    xml.write_text("<network><name>bad</name><forward mode='nat'/></network>")  # nat without <ip>
    result = subprocess.run(["virsh", "-c", "test:///default", "net-define", str(xml)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0


def _virt_install_lines(bundles):
    for name, path, artifact in _files(bundles, lambda p: p.endswith("/runbook.sh")):
        for line in artifact.text.splitlines():
            if line.strip().startswith("run virt-install "):
                yield name, shlex.split(line.strip())[1:]


@pytest.fixture
def install_tree(tmp_path):
    """A minimal distribution tree, so --location resolves without the real ISO."""
    tree = tmp_path / "tree"
    (tree / "images" / "pxeboot").mkdir(parents=True)
    for image in ("vmlinuz", "initrd.img"):
        (tree / "images" / "pxeboot" / image).write_text("x")
    (tree / ".treeinfo").write_text("[general]\nfamily = Ubuntu\nversion = 14.04\narch = x86_64\n"
                                    "platforms = x86_64\n[images-x86_64]\nkernel = images/pxeboot/vmlinuz\n"
                                    "initrd = images/pxeboot/initrd.img\n")
    return tree


def test_virt_install_accepts_every_command_line(bundles, tmp_path, install_tree):
    require_tool("virt-install")
    commands = list(_virt_install_lines(bundles))
    assert commands
    for name, argv in commands:
        argv = [re.sub(r"^path=[^,]*", f"path={tmp_path}/disk.img", w) for w in argv]
        argv = [str(install_tree) if prev == "--location" else w for prev, w in zip([""] + argv, argv)]
        result = subprocess.run(argv[:1] + ["--connect", "test:///default"] + argv[1:] + ["--dry-run"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (name, argv, result.stderr)


def test_virt_install_refuses_a_bad_option(install_tree):
    require_tool("virt-install")
    result = subprocess.run(["virt-install", "--connect", "test:///default", "--name", "x", "--ram", "64",
                             "--bogus-flag", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


SCRIPTS = lambda p: p.endswith(".sh") or p.endswith("/hooks/network")  # noqa: E731


def test_every_script_parses_with_bash(bundles, tmp_path):
    require_tool("bash")
    for name, path, artifact in _files(bundles, SCRIPTS):
        script = tmp_path / "s.sh"
        script.write_text(artifact.text)
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (name, path, result.stderr)


def test_every_script_is_shellcheck_clean(bundles, tmp_path):
    require_tool("shellcheck")
    paths = []
    for index, (name, path, artifact) in enumerate(_files(bundles, SCRIPTS)):
        script = tmp_path / f"{index}-{name}-{path.replace('/', '_')}"
        script.write_text(artifact.text)
        paths.append(str(script))
    result = subprocess.run(["shellcheck", "-S", "style", *paths], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]


def test_shellcheck_is_really_checking(tmp_path):
    require_tool("shellcheck")
    script = tmp_path / "bad.sh"
    script.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    assert subprocess.run(["shellcheck", "-S", "style", str(script)], capture_output=True).returncode != 0
