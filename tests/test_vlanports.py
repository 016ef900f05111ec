"""VLAN sub-interfaces as bridge ports (issue 14, plugins/vlan.py): a port named PARENT.ID is VLAN ID
on NIC PARENT. Validation with located errors, each target's persistent files, the runbook's guarded
live step and rollback, and the audit from `ip -j -d link` (its linkinfo.info_kind and info_data.id).
The lab test is tests/test_vlanports_lab.py; shellcheck and `bash -n` of the fixture's scripts run in
tests/test_realtools.py."""
from __future__ import annotations

import configparser
import functools
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import ROOT
from vnetgen.cli import app

runner = CliRunner()
FIXTURE = ROOT / "tests" / "fixtures" / "vlan" / "vlan-ports.yaml"

HOST_BRIDGE_ONLY = """\
vnetgen: 1
host: kvm1
target: TARGET
nics:
  ens2: {ip: 192.0.2.10/24}
bridges:
  br100: {ports: [ens2.100], ip: 10.100.0.1/24, stp: false}
"""


@functools.lru_cache(maxsize=None)
def _pm():
    from vnetgen.plugins import get_plugin_manager

    return get_plugin_manager()


def _build(tmp_path: Path, text: str, target: str) -> Path:
    path = tmp_path / f"{target}.yaml"
    path.write_text(text.replace("target: el7", f"target: {target}").replace("TARGET", target))
    out = tmp_path / f"out-{target}"
    result = runner.invoke(app, ["build", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out / "kvm1"


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# --- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("port, extra, message", [
    ("ens2.0", "", "VLAN id 0 is out of range 1-4094 (0 and 4095 are reserved by 802.1Q)"),
    ("ens2.4095", "", "VLAN id 4095 is out of range 1-4094"),
    ("ens2.0100", "", "write the VLAN id without leading zeros (ens2.100)"),
    ("ens2.100", "  br9: {ports: [ens2]}\n", "its parent ens2 is itself a bridge port"),
    ("br9.100", "  br9: {}\n", "its parent br9 is a bridge of the profile"),
    ("ens2.7.100", "", "its parent ens2.7 is a VLAN itself"),
    ("enp0s31f6np0.100", "", "longer than 15 bytes"),   # 16 bytes: not an interface name
])
def test_bad_vlan_port_is_a_located_error(tmp_path, port, extra, message):
    path = tmp_path / "profile.yaml"
    path.write_text("vnetgen: 1\nhost: kvm1\nbridges:\n" + extra + f"  br100: {{ports: [{port}]}}\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line = _line_of(path, f"ports: [{port}]")
    located = [out for out in result.output.splitlines() if out.startswith(f"{path}:{line}:") and ": error: " in out]
    assert any(message in out for out in located), result.output


def test_valid_vlan_ports_and_dotted_non_vlan_names(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text("vnetgen: 1\nhost: kvm1\nbridges:\n  br1: {ports: [ens2.1]}\n  br2: {ports: [ens2.4094]}\n"
                    "  br3: {ports: [eth.x]}\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


def test_ubuntu_refuses_a_vlan_trunk_port_of_a_libvirt_bridge(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(FIXTURE.read_text().replace("target: el7", "target: ubuntu"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:{_line_of(path, 'ports: [ens3.200]')}:" in result.output
    assert "target ubuntu cannot persist a VLAN port of a libvirt bridge" in result.output


# --- each target's files ----------------------------------------------------------------------

def _ifcfg(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))


def test_el7_writes_ifcfg_vlan_files(tmp_path):
    host = _build(tmp_path, FIXTURE.read_text(), "el7")
    port = _ifcfg((host / "ifcfg" / "ifcfg-ens2.100").read_text())
    assert port == {"DEVICE": "ens2.100", "VLAN": "yes", "PHYSDEV": "ens2", "BOOTPROTO": "none", "IPV6INIT": "no",
                    "ONBOOT": "yes", "BRIDGE": "br100", "NM_CONTROLLED": "no"}
    trunk = _ifcfg((host / "ifcfg" / "ifcfg-ens3.200").read_text())
    assert trunk["PHYSDEV"] == "ens3" and trunk["VLAN"] == "yes" and "BRIDGE" not in trunk  # the hook enslaves it
    assert "IPADDR" in _ifcfg((host / "ifcfg" / "ifcfg-ens2").read_text())   # the parent keeps its address
    assert _ifcfg((host / "ifcfg" / "ifcfg-br100").read_text())["TYPE"] == "Bridge"


def test_el9_writes_networkmanager_vlan_connections(tmp_path):
    host = _build(tmp_path, FIXTURE.read_text(), "el9")
    keyfiles = {}
    for path in (host / "NetworkManager").iterdir():
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(path.read_text())
        keyfiles[parser["connection"]["interface-name"]] = parser
    port, bridge, trunk = keyfiles["ens2.100"], keyfiles["br100"], keyfiles["ens3.200"]
    assert port["connection"]["type"] == "vlan" and dict(port["vlan"]) == {"parent": "ens2", "id": "100"}
    assert port["connection"]["master"] == bridge["connection"]["uuid"]
    assert port["connection"]["slave-type"] == "bridge"
    assert dict(trunk["vlan"]) == {"parent": "ens3", "id": "200"} and "master" not in trunk["connection"]
    assert trunk["ipv4"]["method"] == "disabled"


def test_ubuntu_writes_netplan_vlans(tmp_path):
    host = _build(tmp_path, HOST_BRIDGE_ONLY, "ubuntu")
    network = yaml.safe_load((host / "netplan" / "90-vnetgen.yaml").read_text())["network"]
    assert network["vlans"] == {"ens2.100": {"id": 100, "link": "ens2", "dhcp4": False, "dhcp6": False}}
    assert network["bridges"]["br100"]["interfaces"] == ["ens2.100"]
    assert "ens2.100" not in network["ethernets"]
    assert network["ethernets"]["ens2"]["addresses"] == ["192.0.2.10/24"]


def test_ubuntu_defines_an_unnumbered_parent_for_netplans_link(tmp_path):
    host = _build(tmp_path, HOST_BRIDGE_ONLY.replace("nics:\n  ens2: {ip: 192.0.2.10/24}\n", ""), "ubuntu")
    network = yaml.safe_load((host / "netplan" / "90-vnetgen.yaml").read_text())["network"]
    assert network["ethernets"] == {"ens2": {"dhcp4": False, "dhcp6": False}}


# --- runbook and rollback ---------------------------------------------------------------------

@pytest.mark.parametrize("target", ["el7", "el9", "ubuntu"])
def test_runbook_creates_the_vlan_before_the_bridge_takes_it(tmp_path, target):
    host = _build(tmp_path, HOST_BRIDGE_ONLY, target)
    runbook = (host / "runbook.sh").read_text()
    create = "ip link add link ens2 name ens2.100 type vlan id 100"
    assert "if vlan_is ens2.100 ens2 100; then" in runbook and create in runbook
    assert runbook.index(create) < runbook.index("host bridge br100")
    assert "require_nics ens2\n" in runbook            # the parent must exist, not the VLAN the run makes
    rollback = (host / "rollback.sh").read_text()
    assert "ip link delete ens2.100" in rollback and "created vlan-ens2.100" in rollback
    # rollback takes the port off the bridge before it deletes the VLAN
    assert rollback.index("br100") < rollback.index("ip link delete ens2.100")


# --- audit ------------------------------------------------------------------------------------

def _links(vlan_id: int = 100, parent: str = "ens2", kind: str = "vlan") -> list:
    vlan = {"ifname": "ens2.100", "link": parent, "master": "br100", "flags": ["UP"], "address": "52:54:00:00:00:02",
            "linkinfo": {"info_kind": kind, "info_data": {"protocol": "802.1Q", "id": vlan_id}}}
    return [{"ifname": "ens2", "flags": ["UP"], "promiscuity": 0, "address": "52:54:00:00:00:02"},
            {"ifname": "br100", "flags": ["UP"], "address": "52:54:00:00:00:02",
             "linkinfo": {"info_kind": "bridge", "info_data": {"stp_state": 0, "forward_delay": 0}}},
            {"ifname": "ens3", "flags": ["UP"], "promiscuity": 0},
            vlan]


def _capture(tmp_path: Path, links: list) -> Path:
    host = tmp_path / "captures" / "kvm1"
    host.mkdir(parents=True)
    (host / "virsh-net-list.txt").write_text(" Name   State   Autostart   Persistent\n"
                                             "--------------------------------------------\n")
    (host / "brctl-show.txt").write_text("")
    (host / "sysctl.txt").write_text("net.ipv4.ip_forward = 0\n")
    (host / "ip-link.json").write_text(json.dumps(links))
    addrs = [{"ifname": "br100", "addr_info": [{"family": "inet", "local": "10.100.0.1", "prefixlen": 24,
                                                  "scope": "global"}]},
             {"ifname": "ens2", "addr_info": [{"family": "inet", "local": "192.0.2.10", "prefixlen": 24,
                                                 "scope": "global"}]}]
    (host / "ip-addr.json").write_text(json.dumps(addrs))
    (host / "ip-route.json").write_text("[]")
    return host.parent


def _drift(tmp_path: Path, links: list):
    from vnetgen.audit import audit_captures

    path = tmp_path / "profile.yaml"
    path.write_text(HOST_BRIDGE_ONLY.replace("TARGET", "el7"))
    report = audit_captures(str(path), _capture(tmp_path, links), pm=_pm())
    return [(d["kind"], d["object"], d["expected"], d["actual"]) for d in report["hosts"]["kvm1"]["drift"]]


def test_audit_of_the_vlan_port_in_sync(tmp_path):
    assert _drift(tmp_path, _links()) == []


@pytest.mark.parametrize("links, actual", [
    (_links(vlan_id=200), "ens2 id 200"),
    (_links(parent="ens3"), "ens3 id 100"),
    (_links(kind="veth"), "a veth"),
])
def test_audit_reports_a_wrong_vlan(tmp_path, links, actual):
    assert ("vlan-port", "nic/ens2.100", "ens2 id 100", actual) in _drift(tmp_path, links)


def test_audit_reports_a_missing_vlan(tmp_path):
    links = [link for link in _links() if link["ifname"] != "ens2.100"]
    drift = _drift(tmp_path, links)
    assert ("vlan-port", "nic/ens2.100", "ens2 id 100", None) in drift
    assert any(kind == "port-missing" for kind, *_ in drift)
