"""vnetgen audit: every drift kind both ways, on real captures (tests/fixtures/audit, see record.py) edited by hand."""
from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import PROFILES, ROOT
from vnetgen.audit import AuditError, Drift, audit_captures, audit_host, format_text, local_host
from vnetgen.facts import FactError
from vnetgen.observe import read_capture

FIXTURES = ROOT / "tests" / "fixtures" / "audit"
runner = CliRunner()


@functools.lru_cache(maxsize=None)
def _pm():
    from vnetgen.plugins import get_plugin_manager

    return get_plugin_manager()


@functools.lru_cache(maxsize=None)
def _profile(path: str, text: str):
    from vnetgen.profile import load_valid

    return load_valid(path, _pm())[0]


def profile(name: str, tmp_path: Path = None, *edits):
    """A shipped profile, or (with edits: (old, new) pairs) a variant of it written under tmp_path."""
    path = ROOT / "profiles" / f"{name}.yaml"
    if not edits:
        return _profile(str(path), path.read_text())
    text = path.read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / f"{name}.yaml"
    out.write_text(text)
    return _profile(str(out), text)


def captures(tmp_path: Path, name: str, kind: str = "insync") -> Path:
    """A writable copy of a recorded capture directory (all its hosts)."""
    out = tmp_path / "captures"
    shutil.copytree(FIXTURES / kind / name, out)
    return out


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert text.count(old) == count, (path, old, text)
    path.write_text(text.replace(old, new))


# A layout-1 capture (written by the capture.sh of an older bundle) has no addresses, routes or
# sysctls beyond ip_forward: the audit says so for a profile with a bridge that takes an address.
LAYOUT_1_NOT_AUDITED = ["addresses: ip-addr.json not captured", "default route: ip-route.json not captured",
                        "sysctl: a layout-1 capture holds net.ipv4.ip_forward only"]


def without_brctl(name: str, tmp_path: Path):
    """The shipped profile for an el9 host: one without brctl, captured with iproute2 and fixed with it."""
    text = (ROOT / "profiles" / f"{name}.yaml").read_text()
    return profile(name, tmp_path / "el9", ("target: el7", "target: el9")) if "target: el7" in text else None


def audit(name_or_profile, directory: Path, hosts=None, strict=False):
    prof = profile(name_or_profile) if isinstance(name_or_profile, str) else name_or_profile
    return audit_captures(prof, directory, hosts, strict=strict, pm=_pm())


def drift(report, host="caldera02"):
    return [(d["kind"], d["object"], d["expected"], d["actual"], d["severity"])
            for d in report["hosts"][host]["drift"]]


def fixes(report, host="caldera02"):
    return [d["fix"] for d in report["hosts"][host]["drift"]]


# --- recorded captures ---------------------------------------------------------------

# A shipped profile of a recorded scenario for another target reads that scenario's captures.
SCENARIO = {"bridged-ubuntu": "bridged"}


@pytest.mark.parametrize("kind", ["insync", "iproute"])
@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_shipped_profiles_in_sync(path, kind):
    directory = FIXTURES / kind / SCENARIO.get(path.stem, path.stem)
    if kind == "insync" and "target: ubuntu" in path.read_text():
        # The insync captures hold `brctl show` only; an ubuntu host is observed with iproute2 JSON.
        with pytest.raises(AuditError, match="ip-link.json"):
            audit(path.stem, directory)
        return
    report = audit(path.stem, directory)
    assert report["in_sync"], report
    assert all(not h["drift"] for h in report["hosts"].values())
    assert set(report["hosts"]) == set(profile(path.stem).hosts)
    for host, result in report["hosts"].items():
        vms = bool(profile(path.stem).hosts[host].vms)
        # The iproute captures come from a libvirtd without a domain driver: no virsh-list.txt.
        assert ("VMs: virsh-list.txt not captured" in result["not_audited"]) == (vms and kind == "iproute")


def test_brctl_does_not_show_a_host_bridge_delay():
    report = audit("bridged", FIXTURES / "insync" / "bridged")
    assert report["hosts"]["caldera02"]["not_audited"] == ["bridge/mybridge0 delay: brctl show does not print it",
                                                            *LAYOUT_1_NOT_AUDITED]
    assert audit("bridged", FIXTURES / "iproute" / "bridged")["hosts"]["caldera02"]["not_audited"] == [
        "VMs: virsh-list.txt not captured", *LAYOUT_1_NOT_AUDITED]


def test_recorded_perturbation_gives_the_exact_drift():
    report = audit("two-hosts", FIXTURES / "perturbed" / "two-hosts", ["caldera02"])
    assert drift(report) == [
        ("dhcp-range", "network/default", "192.168.122.2-192.168.122.254", "192.168.122.100-192.168.122.200",
         "error"),
        ("dhcp-host", "network/default", [], ["52:54:00:aa:00:01|stray|192.168.122.50"], "error"),
        ("port-missing", "bridge/virbr0", "ens2", None, "error"),
        ("port-extra", "bridge/virbr0", ["ens2"], ["eth9"], "error"),
        ("ip-forward", "host", 1, 0, "error"),
        ("network-extra", "network/scratch", None, "active", "warning"),
    ]
    assert not report["in_sync"]


def test_the_printed_fixes_were_run_for_real_and_fixed_the_host():
    """record.py ran each fix of the perturbed capture's report, as printed, in a real libvirtd: all held."""
    report = audit("two-hosts", FIXTURES / "perturbed" / "two-hosts", ["caldera02"])
    assert fixes(report) == json.loads((FIXTURES / "fixed" / "FIXES.json").read_text())
    fixed = audit("two-hosts", FIXTURES / "fixed" / "two-hosts", ["caldera02"], strict=True)
    assert fixed["in_sync"] and not fixed["hosts"]["caldera02"]["drift"]


def test_a_stopped_network_hides_its_ports():
    report = audit("two-hosts", FIXTURES / "stopped" / "two-hosts", ["caldera02"])
    assert drift(report) == [("network-inactive", "network/default", "active", "inactive", "error")]
    assert fixes(report) == ["virsh net-start default"]


# --- networks ------------------------------------------------------------------------

def test_network_missing(tmp_path):
    cap = captures(tmp_path, "nat-default")
    edit(cap / "caldera02" / "virsh-net-list.txt", " default   active   yes         yes\n", "")
    (cap / "caldera02" / "net" / "default.xml").unlink()
    report = audit("nat-default", cap)
    # Nothing more about the missing network: its definition, state and ports follow from defining it.
    assert drift(report) == [("network-missing", "network/default", True, False, "error")]
    assert fixes(report) == ["virsh net-define networks/default.xml"]


def test_network_extra_is_a_warning_that_counts_with_strict(tmp_path):
    cap = captures(tmp_path, "nat-default")
    edit(cap / "caldera02" / "virsh-net-list.txt", " default ",
         " lab net   active   no          yes\n other     inactive no          yes\n"
         " temp      active   no          no\n default ")
    report = audit("nat-default", cap)
    assert drift(report) == [("network-extra", "network/lab net", None, "active", "warning"),
                             ("network-extra", "network/other", None, "inactive", "warning"),
                             ("network-extra", "network/temp", None, "active", "warning")]
    # Only what is needed: a stopped one is only undefined, a transient one only destroyed; names quoted.
    assert fixes(report) == ["virsh net-destroy 'lab net'; virsh net-undefine 'lab net'",
                             "virsh net-undefine other", "virsh net-destroy temp"]
    assert report["in_sync"] and report["hosts"]["caldera02"]["in_sync"]
    strict = audit("nat-default", cap, strict=True)
    assert not strict["in_sync"] and not strict["hosts"]["caldera02"]["in_sync"]


def test_network_marked_absent(tmp_path):
    prof = profile("nat-default", tmp_path, ("networks:\n", "networks:\n  old: {mode: isolated, state: absent}\n"))
    cap = captures(tmp_path, "nat-default")
    assert audit(prof, cap)["in_sync"]  # absent, as it should be
    edit(cap / "caldera02" / "virsh-net-list.txt", " default ", " old       active   yes         yes\n default ")
    report = audit(prof, cap)
    assert drift(report) == [("network-extra", "network/old", None, "active", "error")]
    assert fixes(report) == ["virsh net-destroy old; virsh net-undefine old"]


def test_network_inactive_both_ways(tmp_path):
    cap = captures(tmp_path, "nat-default")
    edit(cap / "caldera02" / "virsh-net-list.txt", "default   active ", "default   inactive ")
    assert drift(audit("nat-default", cap)) == [
        ("network-inactive", "network/default", "active", "inactive", "error")]
    cap = captures(tmp_path / "b", "bridged")  # the bridged scenario stops libvirt's default network
    edit(cap / "caldera02" / "virsh-net-list.txt", " default           inactive", " default           active  ")
    report = audit("bridged", cap)
    assert drift(report) == [("network-inactive", "network/default", "inactive", "active", "error")]
    assert fixes(report) == ["virsh net-destroy default"]


def test_network_autostart_both_ways(tmp_path):
    cap = captures(tmp_path, "nat-default")
    edit(cap / "caldera02" / "virsh-net-list.txt", "active   yes ", "active   no  ")
    report = audit("nat-default", cap)
    assert drift(report) == [("network-autostart", "network/default", True, False, "error")]
    assert fixes(report) == ["virsh net-autostart default"]
    prof = profile("nat-default", tmp_path, ("    delay: 0\n", "    delay: 0\n    autostart: false\n"))
    report = audit(prof, captures(tmp_path / "b", "nat-default"))
    assert drift(report) == [("network-autostart", "network/default", False, True, "error")]
    assert fixes(report) == ["virsh net-autostart --disable default"]


def test_forward_mode_both_ways(tmp_path):
    cap = captures(tmp_path, "nat-default")
    xml = cap / "caldera02" / "net" / "default.xml"
    edit(xml, "<forward mode='nat'>", "<forward mode='route'>")
    report = audit("nat-default", cap)
    assert drift(report) == [("forward-mode", "network/default", "nat", "route", "error")]
    # A running network takes a new definition only when restarted.
    assert fixes(report) == ["virsh net-define networks/default.xml && virsh net-destroy default && "
                             "virsh net-start default"]
    cap = captures(tmp_path / "b", "isolated")
    edit(cap / "caldera03" / "net" / "default.xml", "  <bridge ", "  <forward mode='open'/>\n  <bridge ")
    assert drift(audit("isolated", cap), "caldera03") == [("forward-mode", "network/default", None, "open", "error")]


def test_forward_without_mode_is_nat_and_nat_ports_are_not_drift(tmp_path):
    cap = captures(tmp_path, "nat-default")
    xml = cap / "caldera02" / "net" / "default.xml"
    edit(xml, "<forward mode='nat'>", "<forward>")
    edit(xml, "<port start='1024' end='65535'/>", "<port start='2000' end='3000'/>")
    edit(xml, "<network>", "<network connections='3'>")
    assert audit("nat-default", cap)["in_sync"]


def test_bridge_name_pinned_and_unpinned(tmp_path):
    cap = captures(tmp_path, "two-hosts")
    host = cap / "caldera02"
    edit(host / "net" / "default.xml", "<bridge name='virbr0'", "<bridge name='virbr7'")
    edit(host / "brctl-show.txt", "virbr0\t", "virbr7\t")
    report = audit("two-hosts", cap, ["caldera02"])
    assert drift(report) == [("bridge-name", "network/default", "virbr0", "virbr7", "error")]
    # Unpinned: the name libvirt chose is fine, and the ports are looked for on that bridge.
    prof = profile("two-hosts", tmp_path, ("        bridge: virbr0\n        mac: \"52:54:00:53:d4:ee\"",
                                           "        mac: \"52:54:00:53:d4:ee\""))
    assert audit(prof, cap, ["caldera02"])["in_sync"]
    edit(host / "brctl-show.txt", "\tens2\n", "\t\n")
    report = audit(prof, cap, ["caldera02"])
    assert drift(report) == [("port-missing", "bridge/virbr7", "ens2", None, "error")]
    assert fixes(report) == ["brctl addif virbr7 ens2"]


def test_network_stp_both_ways_and_its_default(tmp_path):
    cap = captures(tmp_path, "nat-default")
    xml = cap / "caldera02" / "net" / "default.xml"
    edit(xml, "stp='on'", "stp='off'")
    assert drift(audit("nat-default", cap)) == [("stp", "network/default", True, False, "error")]
    edit(xml, " stp='off' delay='0'", "")  # libvirt's defaults: on, 0
    assert audit("nat-default", cap)["in_sync"]
    prof = profile("nat-default", tmp_path, ("    stp: true\n", "    stp: false\n"))
    assert drift(audit(prof, cap)) == [("stp", "network/default", False, True, "error")]


def test_network_delay_both_ways(tmp_path):
    cap = captures(tmp_path, "nat-default")
    edit(cap / "caldera02" / "net" / "default.xml", "delay='0'", "delay='3'")
    assert drift(audit("nat-default", cap)) == [("delay", "network/default", 0, 3, "error")]
    prof = profile("nat-default", tmp_path, ("    delay: 0\n", "    delay: 2\n"))
    assert drift(audit(prof, captures(tmp_path / "b", "nat-default"))) == [
        ("delay", "network/default", 2, 0, "error")]


def test_host_bridge_stp_both_ways(tmp_path):
    cap = captures(tmp_path, "bridged")
    edit(cap / "caldera02" / "brctl-show.txt", "\tno\t", "\tyes\t")
    report = audit("bridged", cap)
    assert drift(report) == [("stp", "bridge/mybridge0", False, True, "error")]
    assert fixes(report) == ["brctl stp mybridge0 off"]
    prof = profile("bridged", tmp_path, ("    stp: false\n    delay: 0\n", "    stp: true\n    delay: 2\n"))
    cap = captures(tmp_path / "b", "bridged")
    assert drift(audit(prof, cap)) == [("stp", "bridge/mybridge0", True, False, "error")]


def test_host_bridge_delay_both_ways_where_ip_shows_it(tmp_path):
    cap = captures(tmp_path, "bridged", "iproute")
    links = cap / "caldera02" / "ip-link-bridge.json"
    edit(links, '"forward_delay":0,', '"forward_delay":1500,')
    # el7, captured where brctl was absent: the delay is checked with STP off too; el7's fix is brctl's.
    report = audit("bridged", cap)
    assert drift(report) == [("delay", "bridge/mybridge0", 0, 15, "error")]
    assert fixes(report) == ["brctl setfd mybridge0 0"]
    # el9: NetworkManager sets the delay only with STP on, and without STP it does not matter.
    assert audit(without_brctl("bridged", tmp_path), cap)["in_sync"]
    prof = profile("bridged", tmp_path, ("    stp: false\n    delay: 0\n", "    stp: true\n    delay: 4\n"),
                   ("target: el7", "target: el9"))
    cap = captures(tmp_path / "b", "bridged", "iproute")
    links = cap / "caldera02" / "ip-link-bridge.json"
    edit(links, '"stp_state":0,', '"stp_state":1,')
    report = audit(prof, cap)
    assert drift(report) == [("delay", "bridge/mybridge0", 4, 0, "error")]
    # Under NetworkManager a change made with ip lasts until its next activation: the fix activates.
    assert fixes(report) == ["nmcli connection up id vnetgen-mybridge0"]
    edit(links, '"forward_delay":0,', '"forward_delay":401,')
    assert drift(audit(prof, cap)) == [("delay", "bridge/mybridge0", 4, 4.01, "error")]
    edit(links, '"forward_delay":401,', '"forward_delay":400,')
    assert audit(prof, cap)["in_sync"]


def test_mac_pinned_and_unpinned(tmp_path):
    cap = captures(tmp_path, "nat-default")
    xml = cap / "caldera02" / "net" / "default.xml"
    edit(xml, "<mac address='52:54:00:53:d4:ee'/>", "<mac address='52:54:00:AB:CD:EF'/>")
    assert drift(audit("nat-default", cap)) == [
        ("mac", "network/default", "52:54:00:53:d4:ee", "52:54:00:ab:cd:ef", "error")]
    unpinned = profile("nat-default", tmp_path, ('    mac: "52:54:00:53:d4:ee"\n', ""))
    assert audit(unpinned, cap)["in_sync"]
    edit(xml, "  <mac address='52:54:00:AB:CD:EF'/>\n", "")
    assert drift(audit("nat-default", cap)) == [("mac", "network/default", "52:54:00:53:d4:ee", None, "error")]


def test_uuid_pinned_unpinned_and_case(tmp_path):
    cap = captures(tmp_path, "nat-default")
    xml = cap / "caldera02" / "net" / "default.xml"
    edit(xml, "f6514662-26e5-431e-8544-fd216bed9312", "F6514662-26E5-431E-8544-FD216BED9312")
    assert audit("nat-default", cap)["in_sync"]
    edit(xml, "F6514662-26E5-431E-8544-FD216BED9312", "00000000-26e5-431e-8544-fd216bed9312")
    report = audit("nat-default", cap)
    assert drift(report) == [("uuid", "network/default", "f6514662-26e5-431e-8544-fd216bed9312",
                              "00000000-26e5-431e-8544-fd216bed9312", "error")]
    # libvirt refuses to redefine a network under another UUID; autostart goes with the old definition.
    assert fixes(report) == ["virsh net-destroy default && virsh net-undefine default && "
                             "virsh net-define networks/default.xml && virsh net-start default && "
                             "virsh net-autostart default"]
    unpinned = profile("nat-default", tmp_path, ("    uuid: f6514662-26e5-431e-8544-fd216bed9312\n", ""))
    assert audit(unpinned, cap)["in_sync"]


def test_ip_address_both_ways_and_by_meaning(tmp_path):
    cap = captures(tmp_path, "nat-default")
    xml = cap / "caldera02" / "net" / "default.xml"
    edit(xml, "netmask='255.255.255.0'", "prefix='24'")
    edit(xml, "</network>", "  <ip family='ipv6' address='fd00::1' prefix='64'/>\n</network>")
    assert audit("nat-default", cap)["in_sync"]  # prefix as netmask; IPv6 is not in the profile's language
    edit(xml, "prefix='24'", "prefix='16'")
    assert drift(audit("nat-default", cap)) == [
        ("ip-address", "network/default", "192.168.122.1/24", "192.168.122.1/16", "error")]
    cap = captures(tmp_path / "b", "isolated")  # unnumbered: any <ip> is drift
    edit(cap / "caldera03" / "net" / "default.xml", "</network>",
         "  <ip address='10.9.0.1' prefix='24'/>\n</network>")
    assert drift(audit("isolated", cap), "caldera03") == [
        ("ip-address", "network/default", None, "10.9.0.1/24", "error")]


def test_ip_address_missing(tmp_path):
    cap = captures(tmp_path, "routed")
    xml = cap / "caldera02" / "net" / "router.xml"
    edit(xml, "  <ip address='192.168.132.1' netmask='255.255.255.0'>\n  </ip>\n", "")
    report = audit("routed", cap)
    assert ("ip-address", "network/router", "192.168.132.1/24", None, "error") in drift(report)


def test_dhcp_range_both_ways(tmp_path):
    cap = captures(tmp_path, "nat-default")
    edit(cap / "caldera02" / "net" / "default.xml",
         "    <dhcp>\n      <range start='192.168.122.2' end='192.168.122.254'/>\n    </dhcp>\n", "")
    report = audit("nat-default", cap)
    assert drift(report) == [("dhcp-range", "network/default", "192.168.122.2-192.168.122.254", None, "error")]
    assert fixes(report) == ["virsh net-update default add ip-dhcp-range "
                             "\"<range start='192.168.122.2' end='192.168.122.254'/>\" --live --config"]
    cap = captures(tmp_path / "b", "routed")  # router is numbered without DHCP
    edit(cap / "caldera02" / "net" / "router.xml", "netmask='255.255.255.0'>\n",
         "netmask='255.255.255.0'>\n    <dhcp>\n      <range start='192.168.132.10' end='192.168.132.20'/>\n"
         "    </dhcp>\n")
    report = audit("routed", cap)
    assert drift(report) == [("dhcp-range", "network/router", None, "192.168.132.10-192.168.132.20", "error")]
    assert fixes(report) == ["virsh net-update router delete ip-dhcp-range "
                             "\"<range start='192.168.132.10' end='192.168.132.20'/>\" --live --config"]


def test_dhcp_host_missing_and_by_meaning(tmp_path):
    lease = "      hosts: [{mac: \"52:54:00:6D:33:55\", ip: 192.168.122.91, name: VM1}]\n"
    prof = profile("nat-default", tmp_path, ("      end: 192.168.122.254\n", "      end: 192.168.122.254\n" + lease))
    cap = captures(tmp_path, "nat-default")
    report = audit(prof, cap)
    assert drift(report) == [("dhcp-host", "network/default", ["52:54:00:6d:33:55|VM1|192.168.122.91"], [],
                              "error")]
    assert fixes(report) == ["virsh net-update default add ip-dhcp-host "
                             "\"<host mac='52:54:00:6d:33:55' name='VM1' ip='192.168.122.91'/>\" --live --config"]
    # libvirt keeps a lease's MAC as written; attribute order carries no meaning either.
    edit(cap / "caldera02" / "net" / "default.xml", "end='192.168.122.254'/>\n",
         "end='192.168.122.254'/>\n      <host ip='192.168.122.91' name='VM1' mac='52:54:00:6D:33:55'/>\n")
    assert audit(prof, cap)["in_sync"]


def test_dhcp_change_on_a_stopped_network_is_config_only(tmp_path):
    cap = captures(tmp_path, "bridged")  # its default network is (rightly) stopped
    edit(cap / "caldera02" / "net" / "default.xml", "start='192.168.122.2'", "start='192.168.122.3'")
    assert fixes(audit("bridged", cap)) == [
        "virsh net-update default delete ip-dhcp-range \"<range start='192.168.122.3' end='192.168.122.254'/>\" "
        "--config && virsh net-update default add ip-dhcp-range "
        "\"<range start='192.168.122.2' end='192.168.122.254'/>\" --config"]


def test_fixes_of_a_network_to_start_come_before_its_start(tmp_path):
    cap = captures(tmp_path, "two-hosts", "stopped")
    edit(cap / "caldera02" / "net" / "default.xml", "end='192.168.122.254'", "end='192.168.122.99'")
    edit(cap / "caldera02" / "net" / "default.xml", "stp='on'", "stp='off'")
    report = audit("two-hosts", cap, ["caldera02"])
    assert [d[0] for d in drift(report)] == ["stp", "dhcp-range", "network-inactive"]
    # Configuration only, then net-start: the network starts with the fixed definition.
    assert fixes(report) == [
        "virsh net-define networks/default.xml",
        "virsh net-update default delete ip-dhcp-range \"<range start='192.168.122.2' end='192.168.122.99'/>\" "
        "--config && virsh net-update default add ip-dhcp-range "
        "\"<range start='192.168.122.2' end='192.168.122.254'/>\" --config",
        "virsh net-start default"]


def test_fixes_of_a_network_to_stop_do_not_restart_it(tmp_path):
    cap = captures(tmp_path, "bridged")
    edit(cap / "caldera02" / "virsh-net-list.txt", " default           inactive", " default           active  ")
    edit(cap / "caldera02" / "net" / "default.xml", "stp='on'", "stp='off'")
    assert fixes(audit("bridged", cap)) == ["virsh net-destroy default", "virsh net-define networks/default.xml"]


# --- bridges and ports -------------------------------------------------------------------

def test_bridge_missing_hides_its_settings_and_ports(tmp_path):
    cap = captures(tmp_path, "bridged")
    edit(cap / "caldera02" / "brctl-show.txt", "mybridge0\t\t8000.0024810d3f8d\tno\t\tenp0s25\n\t\t\t\t\t\t\tvnet0\n",
         "")
    report = audit("bridged", cap)
    assert drift(report) == [("bridge-missing", "bridge/mybridge0", "mybridge0", None, "error")]
    assert fixes(report) == ["brctl addbr mybridge0"]
    assert report["hosts"]["caldera02"]["not_audited"] == LAYOUT_1_NOT_AUDITED


def test_bridge_missing_on_a_host_without_brctl(tmp_path):
    cap = captures(tmp_path, "bridged", "iproute")
    edit(cap / "caldera02" / "ip-link-bridge.json", '"ifname":"mybridge0"', '"ifname":"otherbr0"')
    report = audit("bridged", cap)
    assert drift(report) == [("bridge-missing", "bridge/mybridge0", "mybridge0", None, "error")]
    assert fixes(report) == ["brctl addbr mybridge0"]  # el7 (captured where brctl was absent)
    report = audit(without_brctl("bridged", tmp_path), cap)
    assert drift(report) == [("bridge-missing", "bridge/mybridge0", "mybridge0", None, "error")]
    assert fixes(report) == ["nmcli connection up id vnetgen-mybridge0"]


def test_unknown_host_bridges_are_not_drift(tmp_path):
    cap = captures(tmp_path, "nat-default")
    with (cap / "caldera02" / "brctl-show.txt").open("a") as f:
        f.write("docker0\t\t8000.0242ac110002\tno\t\tveth1234\n")
    assert audit("nat-default", cap, strict=True)["in_sync"]


def test_host_bridge_port_missing_and_extra(tmp_path):
    cap = captures(tmp_path, "bridged")
    brctl = cap / "caldera02" / "brctl-show.txt"
    edit(brctl, "\tenp0s25\n\t\t\t\t\t\t\tvnet0\n", "\tvnet0\n\t\t\t\t\t\t\teth7\n")
    report = audit("bridged", cap)
    assert drift(report) == [("port-missing", "bridge/mybridge0", "enp0s25", None, "error"),
                             ("port-extra", "bridge/mybridge0", ["enp0s25"], ["eth7"], "error")]
    assert fixes(report) == ["brctl addif mybridge0 enp0s25", "brctl delif mybridge0 eth7"]


def test_network_ports_on_a_host_without_brctl(tmp_path):
    cap = captures(tmp_path, "two-hosts", "iproute")
    ports = cap / "caldera02" / "bridge-link.json"
    edit(ports, '"ifname":"ens2"', '"ifname":"eth5"')
    report = audit(without_brctl("two-hosts", tmp_path), cap, ["caldera02"])
    assert drift(report) == [("port-missing", "bridge/virbr0", "ens2", None, "error"),
                             ("port-extra", "bridge/virbr0", ["ens2"], ["eth5"], "error")]
    assert fixes(report) == ["ip link set dev ens2 master virbr0", "ip link set dev eth5 nomaster"]


@pytest.mark.parametrize("port", ["vnet12", "tap0", "macvtap3", "veth9", "virbr0-nic"])
def test_automatic_ports_are_not_extra(tmp_path, port):
    cap = captures(tmp_path, "two-hosts")
    edit(cap / "caldera02" / "brctl-show.txt", "\tvnet1\n", f"\tvnet1\n\t\t\t\t\t\t\t{port}\n")
    assert audit("two-hosts", cap, ["caldera02"], strict=True)["in_sync"]


def test_the_nic_dummy_of_any_bridge_name_is_automatic(tmp_path):
    prof = profile("two-hosts", tmp_path, ("        bridge: virbr0\n        mac: \"52:54:00:53:d4:ee\"",
                                           "        bridge: labbr\n        mac: \"52:54:00:53:d4:ee\""))
    cap = captures(tmp_path, "two-hosts")
    edit(cap / "caldera02" / "net" / "default.xml", "name='virbr0'", "name='labbr'")
    edit(cap / "caldera02" / "brctl-show.txt", "virbr0\t", "labbr\t")
    edit(cap / "caldera02" / "brctl-show.txt", "\tvnet1\n", "\tvnet1\n\t\t\t\t\t\t\tlabbr-nic\n")
    assert audit(prof, cap, ["caldera02"], strict=True)["in_sync"]
    edit(cap / "caldera02" / "brctl-show.txt", "labbr-nic", "other-nic")
    assert drift(audit(prof, cap, ["caldera02"])) == [
        ("port-extra", "bridge/labbr", ["ens2"], ["ens2", "other-nic"], "error")]


def test_ports_brctl_could_not_read_are_not_audited(tmp_path):
    cap = captures(tmp_path, "two-hosts")
    # Old bridge-utils (RHEL 7) when it cannot read a bridge's ports.
    (cap / "caldera02" / "brctl-show.txt").write_text(
        "bridge name\tbridge id\t\tSTP enabled\tinterfaces\nvirbr0\t\t8000.52540053d4ee\tyes\t can't get port info\n")
    report = audit("two-hosts", cap, ["caldera02"])
    assert report["in_sync"]
    assert report["hosts"]["caldera02"]["not_audited"] == ["bridge/virbr0 ports: brctl could not list them"]


# --- host settings and guests -----------------------------------------------------------

def test_ip_forward(tmp_path):
    cap = captures(tmp_path, "routed")
    edit(cap / "caldera02" / "sysctl.txt", "= 1", "= 0")
    report = audit("routed", cap)
    assert drift(report) == [("ip-forward", "host", 1, 0, "error")]
    assert fixes(report) == ["sysctl -w net.ipv4.ip_forward=1"]
    (cap / "caldera02" / "sysctl.txt").write_text("net.ipv6.conf.all.forwarding = 0\n")
    report = audit("routed", cap)
    assert report["in_sync"]
    assert report["hosts"]["caldera02"]["not_audited"] == [
        "host ip-forward: net.ipv4.ip_forward is not in the sysctl capture"]


def test_vm_missing_hides_its_networks(tmp_path):
    cap = captures(tmp_path, "nat-default")
    edit(cap / "caldera02" / "virsh-list.txt", " 2    VM2    running\n", " 2    web    running\n")
    report = audit("nat-default", cap)
    assert drift(report) == [("vm-missing", "vm/VM2", "VM2", None, "error")]
    assert fixes(report) == ["bash runbook.sh  # its VM step installs VM2"]


def test_vm_network_wrong_and_extra(tmp_path):
    cap = captures(tmp_path, "nat-default")
    iflist = cap / "caldera02" / "domiflist" / "VM1.txt"
    edit(iflist, "network   default   virtio", "network   other     virtio")
    report = audit("nat-default", cap)
    mac = re.search(r"52:54:00:[0-9a-f:]{8}", iflist.read_text()).group(0)
    assert drift(report) == [("vm-network", "vm/VM1", "default", [f"other {mac}"], "error"),
                             ("vm-network", "vm/VM1", None, f"other {mac}", "warning")]
    assert fixes(report) == ["virsh attach-interface VM1 network default --config",
                             f"virsh detach-interface VM1 network --mac {mac} --config"]


def test_vm_network_extra_nic_is_a_warning(tmp_path):
    cap = captures(tmp_path, "nat-default")
    with (cap / "caldera02" / "domiflist" / "VM2.txt").open("a") as f:
        f.write(" vnet9       bridge    br0       e1000    52:54:00:11:22:33\n")
    report = audit("nat-default", cap)
    assert report["in_sync"]
    assert drift(report) == [("vm-network", "vm/VM2", None, "bridge:br0 52:54:00:11:22:33", "warning")]


def test_vm_network_pinned_mac(tmp_path):
    cap = captures(tmp_path, "nat-default")
    iflist = cap / "caldera02" / "domiflist" / "VM1.txt"
    mac = re.search(r"52:54:00:[0-9a-f:]{8}", iflist.read_text()).group(0)
    right = profile("nat-default", tmp_path, ("    networks: [default]\n    disk: {path: /data/vm-images/vm1.img",
                                              f"    networks: [{{network: default, mac: \"{mac.upper()}\"}}]\n"
                                              "    disk: {path: /data/vm-images/vm1.img"))
    assert audit(right, cap)["in_sync"]
    wrong = profile("nat-default", tmp_path / "b", (
        "    networks: [default]\n    disk: {path: /data/vm-images/vm1.img",
        "    networks: [{network: default, mac: \"52:54:00:00:00:01\"}]\n    disk: {path: /data/vm-images/vm1.img"))
    report = audit(wrong, cap)
    assert drift(report) == [("vm-network", "vm/VM1", "default 52:54:00:00:00:01", [f"default {mac}"], "error"),
                             ("vm-network", "vm/VM1", None, f"default {mac}", "warning")]
    assert fixes(report)[0] == "virsh attach-interface VM1 network default --mac 52:54:00:00:00:01 --config"


def test_missing_optional_files_are_not_audited(tmp_path):
    cap = captures(tmp_path, "nat-default")
    (cap / "caldera02" / "domiflist" / "VM1.txt").unlink()
    edit(cap / "caldera02" / "domiflist" / "VM2.txt", "default", "other")
    report = audit("nat-default", cap)
    assert report["hosts"]["caldera02"]["not_audited"] == ["vm/VM1 networks: domiflist/VM1.txt not captured"]
    assert [d[0] for d in drift(report)] == ["vm-network", "vm-network"]  # VM2's still are
    (cap / "caldera02" / "virsh-list.txt").unlink()
    report = audit("nat-default", cap)
    assert report["in_sync"] and not drift(report)
    assert report["hosts"]["caldera02"]["not_audited"] == ["VMs: virsh-list.txt not captured"]


# --- unreadable input: exit 2, naming the file (and line) --------------------------------------

def invoke(*args):
    from vnetgen.cli import app

    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


NAT = ROOT / "profiles" / "nat-default.yaml"


@pytest.mark.parametrize("name, text, where", [
    ("net/default.xml", "<network>\n  <name>default</name>\n  <bridge stp='maybe'/>\n</network>\n", ":3: "),
    ("net/default.xml", "<network>\n  <name>other</name>\n</network>\n", ":2: holds network 'other'"),
    ("virsh-net-list.txt", " Name State Autostart Persistent\n----\n default active yes\n", ":3: "),
    ("brctl-show.txt", "bridge name\tbridge id\t\tSTP enabled\tinterfaces\ngarbage here\n", ":2: "),
    ("sysctl.txt", "net.ipv4.ip_forward = 1\nnonsense\n", ":2: "),
    ("virsh-list.txt", "error: failed to connect to the hypervisor\n", ":1: virsh failed"),
    ("domiflist/VM1.txt", " Interface Type Source Model MAC\n---\n vnet0 network default virtio zz\n", ":3: "),
])
def test_junk_capture_files_exit_2_with_file_and_line(tmp_path, name, text, where):
    cap = captures(tmp_path, "nat-default")
    (cap / "caldera02" / name).write_text(text)
    with pytest.raises(FactError) as error:
        audit("nat-default", cap)
    assert str(error.value).startswith(str(cap / "caldera02" / name) + where)
    code, out = invoke("audit", NAT, "--captures", cap)
    assert code == 2 and f"{cap / 'caldera02' / name}{where}" in out


@pytest.mark.parametrize("name, message", [
    ("sysctl.txt", "sysctl.txt: missing"),
    ("virsh-net-list.txt", "virsh-net-list.txt: missing"),
    ("net/default.xml", "net/default.xml: missing"),
    ("brctl-show.txt", "brctl-show.txt: missing"),
])
def test_missing_required_files_exit_2(tmp_path, name, message):
    cap = captures(tmp_path, "nat-default")
    (cap / "caldera02" / name).unlink()
    code, out = invoke("audit", NAT, "--captures", cap)
    assert code == 2 and message in out


def test_half_an_iproute_capture_names_the_other_half(tmp_path):
    cap = captures(tmp_path, "nat-default", "iproute")
    (cap / "caldera02" / "bridge-link.json").unlink()
    with pytest.raises(AuditError, match="bridge-link.json: missing"):
        audit("nat-default", cap)


def test_capture_directory_and_hosts(tmp_path):
    code, out = invoke("audit", NAT, "--captures", tmp_path / "nope")
    assert code == 2 and "no such capture directory" in out
    two = ROOT / "profiles" / "two-hosts.yaml"
    cap = captures(tmp_path, "two-hosts")
    shutil.rmtree(cap / "caldera03")
    code, out = invoke("audit", two, "--captures", cap)
    assert code == 2 and "no capture of caldera03" in out and "--host (caldera02)" in out
    assert invoke("audit", two, "--captures", cap, "--host", "caldera02")[0] == 0
    code, out = invoke("audit", two, "--captures", cap, "--host", "caldera09")
    assert code == 2 and "no host caldera09" in out


def test_invalid_profile_and_format_exit_2(tmp_path, write_profile):
    bad = write_profile("vnetgen: 1\nnetworks:\n  n: {mode: nat}\n")
    assert invoke("audit", bad, "--captures", tmp_path)[0] == 2
    code, out = invoke("audit", NAT, "--captures", FIXTURES / "insync" / "nat-default", "--format", "yaml")
    assert code == 2 and "--format is text or json" in out


# --- CLI and reports --------------------------------------------------------------------------

def test_cli_exit_codes_and_strict(tmp_path):
    cap = captures(tmp_path, "nat-default")
    assert invoke("audit", NAT, "--captures", cap)[0] == 0
    edit(cap / "caldera02" / "virsh-net-list.txt", " default ", " extra     inactive no          yes\n default ")
    assert invoke("audit", NAT, "--captures", cap)[0] == 0
    assert invoke("audit", NAT, "--captures", cap, "--strict")[0] == 1
    edit(cap / "caldera02" / "sysctl.txt", "= 1", "= 0")
    assert invoke("audit", NAT, "--captures", cap)[0] == 1


def test_json_report_shape():
    code, out = invoke("audit", ROOT / "profiles" / "two-hosts.yaml", "--captures",
                       FIXTURES / "perturbed" / "two-hosts", "--host", "caldera02", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert list(report) == ["in_sync", "hosts"] and report["in_sync"] is False
    host = report["hosts"]["caldera02"]
    assert list(host) == ["in_sync", "drift", "not_audited"]
    assert all(list(d) == ["kind", "object", "expected", "actual", "severity", "fix"] for d in host["drift"])


def test_json_report_snapshot(file_snapshot):
    code, out = invoke("audit", ROOT / "profiles" / "two-hosts.yaml", "--captures",
                       FIXTURES / "perturbed" / "two-hosts", "--host", "caldera02", "--format", "json")
    assert out == file_snapshot


def test_text_report_snapshot(file_snapshot):
    code, out = invoke("audit", ROOT / "profiles" / "two-hosts.yaml", "--captures",
                       FIXTURES / "perturbed" / "two-hosts", "--host", "caldera02")
    assert code == 1 and out.rstrip("\n").split("\n")[-1].startswith("drift: 5 errors and 1 warning on 1 of 1 host")
    assert "\033[" not in out  # not a terminal: no colour
    assert out == file_snapshot


def test_text_report_in_sync_snapshot(file_snapshot):
    code, out = invoke("audit", ROOT / "profiles" / "bridged.yaml", "--captures", FIXTURES / "insync" / "bridged")
    assert code == 0 and out.endswith("in sync: 1 host\n")
    assert out == file_snapshot


def test_text_colour_only_when_asked():
    report = audit("two-hosts", FIXTURES / "perturbed" / "two-hosts", ["caldera02"])
    coloured = format_text(report, color=True)
    assert "\033[31merror" in coloured and "\033[33mwarning" in coloured
    assert re.sub(r"\033\[[0-9]+m", "", coloured) == format_text(report)


def test_cli_colour_follows_tty_and_no_color(monkeypatch):
    import sys

    from vnetgen import cli

    seen = {}

    def fake_format(report, color=False):
        seen["color"] = color
        return "x\n"

    monkeypatch.setattr("vnetgen.audit.format_text", fake_format)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    args = ["audit", str(NAT), "--captures", str(FIXTURES / "insync" / "nat-default")]
    with pytest.raises(SystemExit):
        cli.app(args)
    assert seen["color"] is True
    monkeypatch.setenv("NO_COLOR", "1")
    with pytest.raises(SystemExit):
        cli.app(args)
    assert seen["color"] is False


# --- library API --------------------------------------------------------------------------

def test_audit_host_returns_drift_items():
    from vnetgen.plan import plan_profile

    prof = profile("two-hosts")
    plan = plan_profile(prof, _pm(), ["caldera02"])[0]
    observed = read_capture(FIXTURES / "perturbed" / "two-hosts", plan)
    items = audit_host(plan, observed)
    assert all(isinstance(d, Drift) for d in items)
    assert [d.kind for d in items] == ["dhcp-range", "dhcp-host", "port-missing", "port-extra", "ip-forward",
                                       "network-extra"]


def test_audit_captures_takes_a_path():
    report = audit_captures(ROOT / "profiles" / "nat-default.yaml", FIXTURES / "insync" / "nat-default")
    assert report["in_sync"]


def test_local_host():
    two = profile("two-hosts")
    assert local_host(two, "caldera03.lab.example") == "caldera03"
    assert local_host(profile("nat-default"), "anything") == "caldera02"
    with pytest.raises(AuditError, match="name one with --host"):
        local_host(two, "elsewhere")


def test_an_unreadable_capture_directory_is_a_clear_error(tmp_path, monkeypatch):
    """`--captures DIR` that cannot be read (permissions, /proc): exit 2 with the reason, no traceback."""
    import os as _os

    from vnetgen import cli

    cap = captures(tmp_path, "nat-default")
    real = _os.listdir

    def denied(path):
        if str(path) == str(cap):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(_os, "listdir", denied)
    with pytest.raises(AuditError, match=r"cannot read the capture directory: Permission denied"):
        audit("nat-default", cap)
    result = CliRunner().invoke(cli.app, ["audit", str(ROOT / "profiles" / "nat-default.yaml"), "--captures", str(cap)])
    assert result.exit_code == 2 and "cannot read the capture directory: Permission denied" in result.output


def test_an_audit_plan_carries_no_bash_and_finds_the_same_drift_with_the_same_fixes(tmp_path):
    """An audit plans without the runbook: its checks hold no bash test (nothing runs it), and
    definition checks no fix (their kinds report their own), yet every drift and fix is the same as
    a runbook plan's checks give."""
    from vnetgen.checks import Evaluation, kinds
    from vnetgen.plan import plan_profile

    caps = captures(tmp_path, "two-hosts", "perturbed")
    xml = caps / "caldera02" / "net" / "default.xml"
    edit(xml, "<forward mode='nat'>", "<forward mode='route'>")
    edit(xml, "stp='on' delay='0'", "stp='off' delay='3'")
    edit(caps / "caldera02" / "virsh-net-list.txt", "default ", "defaulx ")   # missing, and an extra one
    stopped = tmp_path / "stopped"
    shutil.copytree(FIXTURES / "stopped" / "two-hosts", stopped)
    edit(stopped / "caldera02" / "virsh-net-list.txt", "inactive   yes ", "inactive   no  ")
    prof = profile("two-hosts")
    reports = []
    for runbook in (True, False):
        plans = plan_profile(prof, _pm(), ["caldera02"], runbook=runbook)
        tests = [c.test for c in plans[0].checks if (c.kind.startswith("network-") or c.network)
                 and not c.kind.startswith("port-")]
        assert all(tests) if runbook else not any(tests)
        reports.append([[d.to_dict() for d in Evaluation(plans[0], read_capture(c, plans[0]), kinds(_pm())).run().drift]
                        for c in (caps, FIXTURES / "perturbed" / "two-hosts", stopped)])
    assert reports[0] == reports[1]
    kinds_found = {d["kind"] for report in reports[0] for d in report}
    assert {"network-missing", "network-inactive", "network-autostart", "dhcp-range", "ip-forward",
            "network-extra"} <= kinds_found
