"""`vnetgen import` of IPv6 networks (issue 14): an IPv6 `<ip>` becomes `ips:` with its DHCPv6 range and static
hosts (DUID `id`, `name`), such that the audit of the same capture is in sync and `build --against` the source
profile changes nothing. Captures: a real libvirtd's net-dumpxml (tests/fixtures/facts/net_dumpxml/v6lab.json,
its IPv6 `<ip>` written before the IPv4 one), and the dual-stack profile tests/fixtures/grow/ipv6.yaml defined and
started by libvirt's test driver, written in the capture layout."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT
from test_import import imported_profile, invoke
from test_profile_grows import SEPARATOR, _virsh_session
from vnetgen.audit import audit_captures
from vnetgen.plugins import get_plugin_manager
from vnetgen.profile import load_valid

IPV6 = ROOT / "tests" / "fixtures" / "grow" / "ipv6.yaml"
V6LAB = ROOT / "tests" / "fixtures" / "facts" / "net_dumpxml" / "v6lab.json"
NET_LIST_HEAD = " Name     State    Autostart   Persistent\n----------------------------------------------\n"
SYSCTL = "net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\n"


def _capture(root, networks: dict, listed: str):
    host = root / "kvm1"
    (host / "net").mkdir(parents=True)
    for name, xml in networks.items():
        (host / "net" / f"{name}.xml").write_text(xml)
    (host / "virsh-net-list.txt").write_text(NET_LIST_HEAD + listed)
    (host / "brctl-show.txt").write_text("")
    (host / "sysctl.txt").write_text(SYSCTL)
    return root


def _in_sync(profile_path, captures):
    pm = get_plugin_manager()
    profile, report = load_valid(str(profile_path), pm)
    # the only warning: IPv6 forwarding and a host that takes its own address by RA (netip6.validate)
    assert all("accept_ra=2" in str(d) for d in report.sorted()), report.sorted()
    result = audit_captures(profile, captures, strict=True, pm=pm)
    assert [d for host in result["hosts"].values() for d in host["drift"]] == []
    assert result["in_sync"]
    return profile


def test_a_real_libvirtd_capture_imports_as_ips_and_audits_in_sync(tmp_path):
    xml = json.loads(V6LAB.read_text())["output"]
    captures = _capture(tmp_path / "captures", {"v6lab": xml}, " v6lab    active   no          yes\n\n")
    path = imported_profile(captures, tmp_path)
    text = path.read_text()
    assert ("    ips:\n"
            "      - address: 192.168.200.1/24\n"
            "      - address: 2001:db8:ca2:2::1/64\n"
            "        dhcp:\n"
            "          start: 2001:db8:ca2:2::100\n"
            "          end: 2001:db8:ca2:2::1ff\n"
            "          hosts:\n"
            "            - {id: \"0:4:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63\", name: vm6, ip: 2001:db8:ca2:2::150}\n"
            ) in text
    assert "\n    ip:" not in text and "# not modelled" not in text
    profile = _in_sync(path, captures)
    net = profile.hosts["kvm1"].networks["v6lab"]
    assert net.ip6.dhcp.hosts[0].id == "0:4:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63"


@pytest.fixture(scope="module")
def dual_stack(tmp_path_factory):
    """ipv6.yaml's bundle defined, started and autostarted by libvirt's test driver, captured."""
    root = tmp_path_factory.mktemp("v6import")
    code, _, stderr = invoke("build", IPV6, "-o", root / "bundle")
    assert code == 0, stderr
    names = ("dual", "routed6", "plain")
    commands = []
    for name in names:
        commands += [f"net-define {root / 'bundle' / 'kvm1' / 'networks' / name}.xml", f"net-start {name}",
                     f"net-autostart {name}", f"echo {SEPARATOR}", f"net-dumpxml {name}"]
    commands += [f"echo {SEPARATOR}", "net-list --all"]
    parts = [part.lstrip("\n") for part in _virsh_session("; ".join(commands)).split(SEPARATOR)]
    listed = "".join(line + "\n" for line in parts[-1].splitlines() if line.split()[:1] != ["default"])
    return _capture(root / "captures", dict(zip(names, parts[1:-1])), listed)


def test_the_dual_stack_profile_round_trips(dual_stack, tmp_path):
    path = imported_profile(dual_stack, tmp_path)
    text = path.read_text()
    assert '- {id: "00:03:00:01:52:54:00:16:00:05", name: vm1, ip: fd00:160::50}' in text
    assert "- {name: vm2, ip: fd00:160::51}" in text
    # an IPv4-only network keeps the single `ip:` and `dhcp:` (imports of IPv4 networks read as before)
    plain = text.split("  plain:\n", 1)[1].split("\n  routed6:\n")[0]
    assert "\n    ip: 192.168.162.1/24\n    dhcp:\n" in plain and "ips:" not in plain
    _in_sync(path, dual_stack)
    code, stdout, stderr = invoke("import", "--captures", dual_stack)
    assert code == 0 and "the audit will still report" not in stderr and "not modelled" not in stderr


def test_build_against_the_source_profile_changes_nothing(dual_stack, tmp_path):
    path = imported_profile(dual_stack, tmp_path)
    code, _, stderr = invoke("build", path, "--against", IPV6, "-o", tmp_path / "bundle")
    assert code == 0, stderr
    assert "- nothing changes" in (tmp_path / "bundle" / "REVIEW.md").read_text()
    code, diff, _ = invoke("diff", IPV6, path)
    assert code == 0 and diff == "no changes\n"
    # and a changed DHCPv6 host is a change (the comparison can fail)
    changed = tmp_path / "changed.yaml"
    changed.write_text(path.read_text().replace("name: vm2, ip: fd00:160::51", "name: vm2, ip: fd00:160::52"))
    code, diff, _ = invoke("diff", IPV6, changed)
    assert code == 0 and "DHCPv6 static host added: <host name='vm2' ip='fd00:160::52'/> (applies live" in diff


def test_what_the_profile_cannot_say_of_an_ipv6_ip_is_a_note(tmp_path):
    xml = json.loads(V6LAB.read_text())["output"]
    xml = xml.replace("prefix='64'", "prefix='80'")
    captures = _capture(tmp_path / "a", {"v6lab": xml}, " v6lab    active   no          yes\n\n")
    code, stdout, stderr = invoke("import", "--captures", captures)
    assert code == 0 and "ips:" not in stdout and "\n    ip: 192.168.200.1/24\n" in stdout
    assert "# not modelled: <ip> 2001:db8:ca2:2::1/80 with DHCP 2001:db8:ca2:2::100-2001:db8:ca2:2::1ff (prefix /80" \
        in stdout
    assert "v6lab: address 2001:db8:ca2:2::1/80 (prefix /80" in stderr
    # a host outside the prefix: the rest is imported, the host is a note
    xml = json.loads(V6LAB.read_text())["output"].replace("ip='2001:db8:ca2:2::150'", "ip='2001:db8:ca2:3::150'")
    captures = _capture(tmp_path / "b", {"v6lab": xml}, " v6lab    active   no          yes\n\n")
    code, stdout, stderr = invoke("import", "--captures", captures)
    assert code == 0 and "ips:" in stdout and "hosts:" not in stdout
    assert "DHCPv6 host <host id='0:4:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63' name='vm6' " \
           "ip='2001:db8:ca2:3::150'/>: outside the prefix" in stderr
