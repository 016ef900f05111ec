"""IPv6 on libvirt networks (issue 14): `ips:` — located errors, XML libvirt's schema and test driver
accept, the single `ip:` + `dhcp:` building the same XML as its `ips:` spelling, the IPv6 forwarding
sysctl and the accept_ra warning."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from test_profile_grows import SEPARATOR, _virsh_session
from test_profile_grows import _variant as grows_variant
from vnetgen.cli import app

IPV6 = ROOT / "tests" / "fixtures" / "grow" / "ipv6.yaml"
runner = CliRunner()
NETS = ("dual", "routed6", "plain")


def _variant(tmp_path: Path, *edits) -> Path:
    return grows_variant(tmp_path, *edits, source=IPV6)


def test_the_ipv6_profile_is_valid_and_warns_about_accept_ra():
    result = runner.invoke(app, ["validate", str(IPV6)])
    assert result.exit_code == 0, result.output
    assert re.search(r"ipv6.yaml:15:\d+: warning: network dual: IPv6 on a nat network .*accept_ra=2", result.output)


@pytest.mark.parametrize("edits, needle, message", [
    ((("fd00:160::1/64", "fd00:160::1/128"),), "fd00:160::1/128", "IPv6 prefix /128: /128 is one address"),
    ((("fd00:160::1/64", "fd00:160::1/80"),), "fd00:160::1/80", "IPv6 prefix /80: libvirt announces the prefix"),
    ((("fd00:160::1/64", "fe80::1/64"),), "fe80::1/64", "fe80::1 is a link-local address"),
    ((("end: fd00:160::1ff", "end: fd00:161::1ff"),), "end: fd00:161::1ff", "dhcp end fd00:161::1ff is outside fd00:160::/64"),
    ((("start: fd00:160::100", "start: fd00:160::200"),), "start: fd00:160::200", "dhcp start fd00:160::200 is after end"),
    ((("start: fd00:160::100", "start: fd00:160::1"),), "start: fd00:160::1\n", "contains the network's own address"),
    ((("ip: \"fd00:160::51\"", "ip: \"fd00:161::51\""),), "fd00:161::51", "static host fd00:161::51 is outside"),
    ((("{name: vm2, ip: \"fd00:160::51\"}", "{mac: \"52:54:00:16:00:06\", ip: \"fd00:160::51\"}"),), "fd00:160::51",
     "libvirt refuses a MAC address there"),
    ((("{name: vm2, ip: \"fd00:160::51\"}", "{ip: \"fd00:160::51\"}"),), "fd00:160::51", "needs 'id' or 'name'"),
    ((("{name: vm2, ip: \"fd00:160::51\"}", "{name: vm2, ip: \"fd00:160::50\"}"),), "vm2", "static host ip fd00:160::50 used twice"),
    ((("end: 192.168.160.99", "end: fd00:160::99"),), "end: fd00:160::99", "dhcp end fd00:160::99 is IPv6"),
    ((("2001:db8:161::1/64", "fd00:160:0:1::1/64"),), "fd00:160:0:1::1/64", None),   # not overlapping: ok
    ((("2001:db8:161::1/64", "fd00:160::2/64"),), "fd00:160::2/64", "overlaps network dual's fd00:160::/64"),
    ((("      - address: 2001:db8:161::1/64\n", "      - address: 2001:db8:161::1/64\n      - address: 2001:db8:162::1/64\n"),),
     "2001:db8:162::1/64", "a second IPv6 address"),
    ((("    mode: isolated\n", "    mode: isolated\n    ip: 192.168.163.1/24\n"),), "ip: 192.168.163.1/24",
     "'ip' and 'ips' together"),
    ((("{name: vm2, ip: \"fd00:160::51\"}", "{id: \"00:03:00:01:52:54:00:16:00:05\", ip: \"fd00:160::51\"}"),),
     "fd00:160::51", "DUID 00:03:00:01:52:54:00:16:00:05 used twice"),
    ((("{mac: \"52:54:00:16:02:05\", ip: 192.168.162.5}", "{id: \"00:03:00:01:52:54:00:16:00:05\", ip: 192.168.162.5}"),),
     "192.168.162.5", "'id' (a DUID) is for IPv6 static hosts"),
])
def test_bad_ips_are_located_errors(tmp_path, edits, needle, message):
    path = _variant(tmp_path, *edits)
    result = runner.invoke(app, ["validate", str(path)])
    assert "Traceback" not in result.output
    if message is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    line = next(n for n, text in enumerate(path.read_text().splitlines(True), 1) if needle in text)
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: error: .*{re.escape(message)}", result.output), result.output


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("ipv6") / "build"
    result = runner.invoke(app, ["build", str(IPV6), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_xml_has_both_ips_and_is_valid_against_relaxng(bundle):
    from lxml import etree

    from vnetgen.xml import rng_errors, rng_path

    dual = etree.parse(str(bundle / "kvm1" / "networks" / "dual.xml")).getroot()
    ips = dual.findall("ip")
    assert [ip.get("family") for ip in ips] == [None, "ipv6"]
    assert (ips[1].get("address"), ips[1].get("prefix")) == ("fd00:160::1", "64")
    assert [dict(h.attrib) for h in ips[1].find("dhcp").findall("host")] == [
        {"id": "00:03:00:01:52:54:00:16:00:05", "name": "vm1", "ip": "fd00:160::50"},
        {"name": "vm2", "ip": "fd00:160::51"}]
    if rng_path() is None:
        pytest.skip("libvirt's network.rng is not installed")
    for xml in sorted((bundle / "kvm1" / "networks").glob("*.xml")):
        assert rng_errors(xml.read_text()) is None, xml


def test_sysctl_keeps_ipv6_forwarding(bundle):
    text = (bundle / "kvm1" / "sysctl.d" / "90-vnetgen.conf").read_text()
    assert "net.ipv6.conf.all.forwarding = 1" in text and "net.ipv4.ip_forward = 1" in text


def test_ips_with_one_ipv4_builds_as_ip_and_dhcp(tmp_path):
    """The old spelling and `ips` give the same network XML, byte for byte."""
    old = _variant(tmp_path / "old", ("""    ips:
      - address: 192.168.162.1/24
        dhcp: {start""", """    ip: 192.168.162.1/24
    dhcp: {start"""))
    outs = []
    for name, path in (("old", old), ("new", IPV6)):
        out = tmp_path / f"{name}-build"
        result = runner.invoke(app, ["build", str(path), "-o", str(out)])
        assert result.exit_code == 0, result.output
        outs.append((out / "kvm1" / "networks" / "plain.xml").read_text())
    assert outs[0] == outs[1]
    assert "<host mac=\"52:54:00:16:02:05\" ip=\"192.168.162.5\"/>" in outs[0]


@pytest.fixture(scope="module")
def dumped(bundle):
    """Each network defined and started by libvirt's test driver: {name: live net-dumpxml}."""
    xml_dir = bundle / "kvm1" / "networks"
    commands = []
    for name in NETS:
        commands += [f"net-define {xml_dir / name}.xml", f"net-start {name}", f"net-autostart {name}", f"echo {SEPARATOR}",
                     f"net-dumpxml {name}"]
    commands += [f"echo {SEPARATOR}", "net-list --all"]
    parts = [part.lstrip("\n") for part in _virsh_session("; ".join(commands)).split(SEPARATOR)]
    found = dict(zip(NETS, parts[1:-1]))
    found["net-list"] = "".join(line + "\n" for line in parts[-1].splitlines() if line.split()[:1] != ["default"])
    return found


def test_virsh_test_driver_accepts_the_ipv6_networks(dumped):
    assert "<ip family='ipv6' address='fd00:160::1' prefix='64'>" in dumped["dual"]
    assert "<host id='00:03:00:01:52:54:00:16:00:05' name='vm1' ip='fd00:160::50'/>" in dumped["dual"]
    assert "<range start='fd00:160::100' end='fd00:160::1ff'/>" in dumped["dual"]
    assert "<ip family='ipv6' address='2001:db8:161::1' prefix='64'>" in dumped["routed6"]


def _drift(tmp_path: Path, dumped, edit=None):
    from vnetgen.audit import audit_captures

    host = tmp_path / "captures" / "kvm1"
    (host / "net").mkdir(parents=True)
    (host / "virsh-net-list.txt").write_text(" Name     State    Autostart   Persistent\n"
                                             "----------------------------------------------\n" + dumped["net-list"])
    for name in NETS:
        text = dumped[name]
        (host / "net" / f"{name}.xml").write_text(edit(name, text) if edit else text)
    (host / "brctl-show.txt").write_text("")
    (host / "sysctl.txt").write_text("net.ipv4.ip_forward = 1\n")
    report = audit_captures(str(IPV6), tmp_path / "captures")
    return [(d["kind"], d["object"], d["actual"]) for d in report["hosts"]["kvm1"]["drift"]]


def test_audit_in_sync_then_ipv6_drift(tmp_path, dumped):
    assert [d for d in _drift(tmp_path / "a", dumped) if d[0] != "sysctl"] == []
    drift = _drift(tmp_path / "b", dumped, lambda name, text: text.replace("fd00:160::1ff", "fd00:160::2ff")
                   .replace("<host name='vm2' ip='fd00:160::51'/>", ""))
    assert [(k, o) for k, o, _ in drift if k != "sysctl"] == [("ipv6", "network/dual")]
    actual = next(a for k, _, a in drift if k == "ipv6")
    assert actual == {"address": "fd00:160::1/64", "range": "fd00:160::100-fd00:160::2ff", "hosts": ["vm1|fd00:160::50"]}
