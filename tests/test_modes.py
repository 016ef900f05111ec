"""The modes direct (macvtap), hostdev (SR-IOV pool) and ovs (Open vSwitch), with VLANs and portgroups
(issue 14, deliverable 2): located validation errors, XML libvirt's schema and test driver accept, the
runbook's tokens against libvirt's own net-dumpxml, audit drift on each part, and the preflight's
requires. The lab has no Open vSwitch, no SR-IOV NIC and no real guest: these are the proofs (besides
tests/test_direct_lab.py, a direct network in the lab's libvirtd with a stand-in guest on the upstream LAN)."""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import ROOT, require_tool
from vnetgen.cli import app

MODES = ROOT / "tests" / "fixtures" / "modes" / "modes.yaml"
NAMES = ("lan-direct", "lan-vepa", "lan-pass", "sriov", "sriov-vfs", "ovs-lan")
runner = CliRunner()


@functools.lru_cache(maxsize=None)
def _pm():
    from vnetgen.plugins import get_plugin_manager

    return get_plugin_manager()


def _variant(tmp_path: Path, *edits) -> Path:
    text = MODES.read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    out = tmp_path / "profile.yaml"
    out.write_text(text)
    return out


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("modes") / "out"
    result = runner.invoke(app, ["build", str(MODES), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out / "kvm1"


# --- validation -------------------------------------------------------------------------------

def test_the_profile_is_valid_and_states_the_macvtap_caveat(bundle):
    result = runner.invoke(app, ["validate", str(MODES)])
    assert result.exit_code == 0, result.output
    review = (bundle.parent / "REVIEW.md").read_text()
    assert "network lan-direct: over macvtap the host cannot reach its guests on eno1" in review
    assert "on bridge `None`" not in review
    assert "- `ovs-lan`: ovs on bridge `ovsbr0`, VLAN trunk 10, 20, portgroups all, db VLAN 20, web (default) VLAN 10" in review


@pytest.mark.parametrize("edits, needle, message", [
    # a VLAN on a mode that cannot carry one
    ((("  lan-direct:\n    mode: direct\n    dev: eno1\n", "  lan-direct:\n    mode: direct\n    dev: eno1\n    vlan: 7\n"),),
     "vlan: 7", "a VLAN applies to mode direct only with 'macvtap_mode: passthrough'"),
    ((("networks:\n", "networks:\n  natted:\n    mode: nat\n    ip: 10.9.0.1/24\n    vlan: 7\n"),),
     "vlan: 7", "'vlan' does not apply to mode nat (only to mode direct, hostdev, ovs)"),
    ((("networks:\n", "networks:\n  natted:\n    mode: nat\n    ip: 10.9.0.1/24\n    portgroups: {a: {}}\n"),),
     "portgroups:", "'portgroups' does not apply to mode nat (only to mode hostdev, ovs)"),
    ((("    dev: eno1\n", ""),), "lan-direct:", "mode direct needs 'dev:' (or 'devs:')"),
    ((("    dev: eno1\n", "    dev: eno1\n    devs: [eno5]\n"),), "devs: [eno5]", "give 'dev' or 'devs', not both"),
    ((("    dev: eno1\n", "    dev: eno1\n    bridge: br0\n"),), "bridge: br0", "mode direct uses no bridge"),
    ((("networks:\n", "bridges:\n  br0: {ports: [eth9], ip: 10.1.0.2/24, gateway: none, dns: none}\nnetworks:\n"),
      ("devs: [eno2, eno3]", "devs: [eno2, br0, eth9]")), "devs: [eno2, br0",
     "br0 is a host bridge; macvtap sits on a NIC"),
    ((("devs: [eno2, eno3]", "devs: [eno2, lo]"),), "devs: [eno2, lo]", "dev lo is the host's loopback interface"),
    ((("macvtap_mode: vepa", "macvtap_mode: vepx"),), "macvtap_mode: vepx", "macvtap_mode"),
    ((("    pf: enp1s0\n", ""),), "  sriov:", "mode hostdev needs 'pf:' (the SR-IOV NIC) or 'vfs:'"),
    ((("    pf: enp1s0\n", "    pf: enp1s0\n    vfs: ['0000:01:00.1']\n"),), "vfs: ['0000:01:00.1']",
     "give 'pf' or 'vfs', not both"),
    ((('"0000:03:10.2"', '"0000:03:1g.2"'),), "0000:03:1g.2", "0000:03:1g.2"),
    ((('"0000:03:10.2"', '"0000:03:10.9"'),), "0000:03:10.9", "0000:03:10.9"),
    ((('vfs: ["0000:03:10.0", "0000:03:10.2"]', 'vfs: ["0000:03:10.a", "0000:03:10.A"]'),), "vfs:", ""),
    ((("    bridge: ovsbr0\n", ""),), "ovs-lan:", "mode ovs needs 'bridge:' naming the Open vSwitch bridge"),
    ((("db: {vlan: 20}", "db: {vlan: 20, default: true}"),), "db: {vlan", "portgroup db is a second default"),
    ((("vlan: [10, 20]", "vlan: 4096"),), "vlan: 4096", "vlan"),
    ((("    pf: enp1s0\n", "    pf: enp1s0\n    ip: 10.3.0.1/24\n"),), "ip: 10.3.0.1", "mode hostdev takes no 'ip'"),
])
def test_bad_input_is_a_located_error(tmp_path, edits, needle, message):
    path = _variant(tmp_path, *edits)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line = _line_of(path, needle)
    located = [out for out in result.output.splitlines() if out.startswith(f"{path}:{line}:") and ": error: " in out]
    assert located and any(message in out for out in located), result.output


def test_a_vf_pci_address_is_a_vf_once_whatever_its_case(tmp_path):
    path = _variant(tmp_path, ('vfs: ["0000:03:10.0", "0000:03:10.2"]', 'vfs: ["0000:03:1a.0", "0000:03:1A.0"]'))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "VF 0000:03:1A.0 listed twice (first as 0000:03:1a.0)" in result.output


# --- XML, libvirt's schema and test driver -----------------------------------------------------

def test_xml_of_each_mode(bundle):
    xml = {name: (bundle / "networks" / f"{name}.xml").read_text() for name in NAMES}
    assert '<forward mode="bridge">\n    <interface dev="eno1"/>\n  </forward>' in xml["lan-direct"]
    assert '<forward mode="vepa">\n    <interface dev="eno2"/>\n    <interface dev="eno3"/>' in xml["lan-vepa"]
    assert '<forward mode="passthrough">' in xml["lan-pass"] and '<tag id="30"/>' in xml["lan-pass"]
    assert '<forward mode="hostdev" managed="yes">\n    <pf dev="enp1s0"/>' in xml["sriov"]
    assert '<address type="pci" domain="0x0000" bus="0x03" slot="0x10" function="0x2"/>' in xml["sriov-vfs"]
    assert '<bridge name="ovsbr0"/>' in xml["ovs-lan"] and '<virtualport type="openvswitch"/>' in xml["ovs-lan"]
    assert '<vlan trunk="yes">' in xml["ovs-lan"] and '<portgroup name="web" default="yes">' in xml["ovs-lan"]
    for text in xml.values():
        assert "<ip " not in text and "<mac " not in text and "stp=" not in text


@pytest.mark.realtool
def test_every_network_matches_libvirts_relaxng(bundle):
    from vnetgen.xml import rng_errors, rng_path

    if rng_path() is None:
        require_tool("libvirt's network.rng")
    for name in NAMES:
        assert rng_errors((bundle / "networks" / f"{name}.xml").read_text()) is None, name


@pytest.mark.realtool
def test_a_definition_differing_only_in_uuid_and_macs_is_not_validated_again(monkeypatch):
    """rng_errors validates one of the documents that differ only in interchangeable values (UUID,
    unicast MACs); the first one's key is made only when a second document comes."""
    from vnetgen import xml

    if xml.rng_path() is None:
        require_tool("libvirt's network.rng")
    monkeypatch.setattr(xml, "_VALID", {})
    monkeypatch.setattr(xml, "_UNKEYED", [])
    validated = []
    real = xml._schema
    monkeypatch.setattr(xml, "_schema", lambda path: (validated.append(path), real(path))[1])
    doc = ("<network><name>n</name><uuid>{}</uuid><bridge name='{}'/><mac address=\"{}\"/>"
           "<ip address='10.0.0.1' prefix='24'/></network>")
    first = doc.format("f6514662-26e5-431e-8544-fd216bed9312", "virbr0", "52:54:00:53:d4:ee")
    assert xml.rng_errors(first) is None and len(validated) == 1
    assert xml._VALID == {} and len(xml._UNKEYED) == 1   # nothing to compare with yet
    same = doc.format("0a514662-26e5-431e-8544-fd216bed9312", "virbr0", "52:54:00:00:00:01")
    assert xml.rng_errors(same) is None and len(validated) == 1 and xml._UNKEYED == []
    other = doc.format("f6514662-26e5-431e-8544-fd216bed9312", "virbr1", "52:54:00:53:d4:ee")
    assert xml.rng_errors(other) is None and len(validated) == 2
    bad = doc.format("f6514662-26e5-431e-8544-fd216bed9312", "virbr0", "53:54:00:53:d4:ee")   # multicast
    assert xml.rng_errors(bad) is not None and len(validated) == 3


SEPARATOR = "=====vnetgen====="


@pytest.fixture(scope="module")
def dumped(bundle):
    """Each network defined and dumped by libvirt's test driver (one virsh process: its state lives as long).
    Defined and dumped only: on a real host hostdev needs VFs and ovs an OVS bridge to start."""
    require_tool("virsh")
    commands = []
    for name in NAMES:
        commands += [f"net-define {bundle / 'networks' / name}.xml", f"echo {SEPARATOR}", f"net-dumpxml {name}",
                     f"echo {SEPARATOR}"]
    result = subprocess.run(["virsh", "-q", "-c", "test:///default", "; ".join(commands)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    parts = [part.lstrip("\n") for part in result.stdout.split(SEPARATOR)]
    return {name: parts[1 + 2 * index] for index, name in enumerate(NAMES)}


def _plan(profile=MODES):
    from vnetgen.plan import plan_profile
    from vnetgen.profile import load_valid

    return plan_profile(load_valid(str(profile), _pm())[0], _pm())[0]


@pytest.mark.realtool
def test_runbook_tokens_match_what_libvirt_prints(dumped):
    """Every definition check's tokens hold on libvirt's own net-dumpxml of the network."""
    kinds = set()
    for check in _plan().checks:
        if not check.tokens:
            continue
        stripped = "\n".join(line.lstrip() for line in dumped[check.network].splitlines())
        for token in check.tokens:
            verb, _, wanted = token.partition(":")
            if verb == "count":
                count, _, wanted = wanted.partition(":")
                assert stripped.count(wanted) == int(count), (check.id, token)
            else:
                assert (wanted in stripped) == (verb == "has"), (check.id, token)
        kinds.add(check.kind)
    assert {"forward-mode", "forward-dev", "forward-interfaces", "vf-pool", "virtualport", "vlan",
            "portgroups"} <= kinds


# --- audit -------------------------------------------------------------------------------------

def _capture(tmp_path: Path, dumped) -> Path:
    host = tmp_path / "captures" / "kvm1"
    (host / "net").mkdir(parents=True)
    rows = "".join(f" {name:<12} active   {'no' if name == 'sriov-vfs' else 'yes':<11} yes\n" for name in NAMES)
    (host / "virsh-net-list.txt").write_text(" Name     State    Autostart   Persistent\n"
                                             "----------------------------------------------\n" + rows)
    for name in NAMES:
        (host / "net" / f"{name}.xml").write_text(dumped[name])
    (host / "brctl-show.txt").write_text("")
    (host / "sysctl.txt").write_text("net.ipv4.ip_forward = 1\n")
    return host.parent


def _drift(captures: Path):
    from vnetgen.audit import audit_captures

    report = audit_captures(str(MODES), captures, pm=_pm())
    return [(d["kind"], d["object"], d["expected"], d["actual"]) for d in report["hosts"]["kvm1"]["drift"]]


@pytest.mark.realtool
def test_audit_of_libvirts_own_output_is_in_sync(tmp_path, dumped):
    assert _drift(_capture(tmp_path, dumped)) == []


@pytest.mark.realtool
def test_audit_reports_drift_on_each_part(tmp_path, dumped):
    captures = _capture(tmp_path, dumped)
    edits = {
        "lan-vepa": [("mode='vepa'", "mode='private'"), ("<interface dev='eno3'/>", "<interface dev='eno7'/>")],
        "lan-pass": [("<tag id='30'/>", "<tag id='31'/>")],
        "sriov": [("<pf dev='enp1s0'/>", "<pf dev='enp2s0'/>")],
        "sriov-vfs": [("function='0x2'", "function='0x3'")],
        "ovs-lan": [("<virtualport type='openvswitch'/>\n", ""), ("<portgroup name='db'>", "<portgroup name='dbx'>")],
    }
    for name, pairs in edits.items():
        path = captures / "kvm1" / "net" / f"{name}.xml"
        text = path.read_text()
        for old, new in pairs:
            assert old in text, (name, old)
            text = text.replace(old, new)
        path.write_text(text)
    assert _drift(captures) == [   # the core's definition checks first, then the plugins'
        ("forward-mode", "network/lan-vepa", "vepa", "private"),
        ("vlan", "network/lan-pass", [30], [31]),
        ("portgroups", "network/ovs-lan",
         {"all": {"default": False, "vlan": None}, "db": {"default": False, "vlan": [20]},
          "web": {"default": True, "vlan": [10]}},
         {"all": {"default": False, "vlan": None}, "dbx": {"default": False, "vlan": [20]},
          "web": {"default": True, "vlan": [10]}}),
        ("virtualport", "network/ovs-lan", "openvswitch", None),
        ("vf-pool", "network/sriov", "enp1s0", "enp2s0"),
        ("vf-pool", "network/sriov-vfs", ["0000:03:10.0", "0000:03:10.2"], ["0000:03:10.0", "0000:03:10.3"]),
        ("forward-interfaces", "network/lan-vepa", ["eno2", "eno3"], ["eno2", "eno7"]),
    ]


# --- runbook -----------------------------------------------------------------------------------

def test_preflight_requires_what_each_mode_uses(bundle):
    runbook = (bundle / "runbook.sh").read_text()
    assert "must require_nics eno1\n" in runbook and "must require_nics eno2 eno3\n" in runbook
    assert "must require_nics enp1s0\nmust is_sriov_pf enp1s0\n" in runbook
    assert "must pci_device_exists 0000:03:10.0 0000:03:10.2\n" in runbook
    assert "must ovs_bridge_exists ovsbr0\n" in runbook
    # they come before anything changes: the networks step defines them afterwards
    assert runbook.index("must ovs_bridge_exists") < runbook.index("define_net ovs-lan")


@pytest.mark.realtool
def test_the_preflight_stops_without_the_ovs_bridge(bundle, tmp_path):
    """ovs_bridge_exists run by bash, against a stand-in ovs-vsctl that knows one bridge."""
    require_tool("bash")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ovs-vsctl").write_text('#!/bin/sh\n[ "$1 $2" = "br-exists ovsbr0" ]\n')
    (fake / "ovs-vsctl").chmod(0o755)
    runbook = (bundle / "runbook.sh").read_text()
    start = runbook.index("ovs_bridge_exists() {")
    helper = runbook[start:runbook.index("\n}\n", start) + 3]
    for bridge, code in (("ovsbr0", 0), ("ovsbr1", 1)):
        result = subprocess.run(["bash", "-c", helper + f"ovs_bridge_exists {bridge}"], capture_output=True, text=True,
                                env={"PATH": f"{fake}:/usr/bin:/bin"}, timeout=30)
        assert result.returncode == code, result
    assert "Open vSwitch has no bridge ovsbr1 (ovs-vsctl add-br ovsbr1 makes one)" in result.stdout


@pytest.mark.realtool
def test_import_gives_the_modes_back_and_audits_in_sync(tmp_path, dumped):
    """libvirt's own net-dumpxml of the modes profile's networks imports as direct, hostdev and ovs (mode
    plugins claim them through vnetgen_import_network), with vlan and portgroups, nothing "not
    modelled"; the audit of the same capture against the imported profile is in sync."""
    from typer.testing import CliRunner

    from vnetgen.audit import audit_captures
    from vnetgen.cli import app

    captures = _capture(tmp_path, dumped)
    out = tmp_path / "imported.yaml"
    result = CliRunner().invoke(app, ["import", "--captures", str(captures), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    imported = yaml.safe_load(text)["networks"]
    expected = {"lan-direct": {"mode": "direct", "dev": "eno1"},
                "lan-vepa": {"mode": "direct", "devs": ["eno2", "eno3"], "macvtap_mode": "vepa"},
                "lan-pass": {"mode": "direct", "dev": "eno4", "macvtap_mode": "passthrough", "vlan": 30},
                "sriov": {"mode": "hostdev", "pf": "enp1s0", "vlan": 42},
                "sriov-vfs": {"mode": "hostdev", "vfs": ["0000:03:10.0", "0000:03:10.2"], "autostart": False},
                "ovs-lan": {"mode": "ovs", "bridge": "ovsbr0", "vlan": [10, 20],
                            "portgroups": {"web": {"vlan": 10, "default": True}, "db": {"vlan": 20}, "all": {}}}}
    for name, keys in expected.items():
        assert {k: v for k, v in imported[name].items() if k != "uuid"} == keys, (name, text)
    assert "# not modelled" not in text and "not modelled (kept" not in result.output, text + result.output
    assert "bridges:" not in text, text   # ovsbr0 is Open vSwitch's, no host bridge of the profile
    report = audit_captures(str(out), captures, pm=_pm())
    assert report["hosts"]["kvm1"]["drift"] == [], report


def test_an_unclaimed_macvtap_definition_stays_a_comment():
    """A bridge-mode definition with neither a bridge nor a NIC is no plugin's: not imported."""
    from vnetgen.facts import NetworkDef

    assert _pm().hook.vnetgen_import_network(definition=NetworkDef(name="x", forward_mode="bridge")) is None
    assert _pm().hook.vnetgen_import_network(
        definition=NetworkDef(name="x", forward_mode="hostdev", pf="enp1s0", pci=("0000:03:10.0",))) is None
    assert _pm().hook.vnetgen_import_network(
        definition=NetworkDef(name="x", forward_mode="bridge", bridge="br0")) is None   # mode bridge's
