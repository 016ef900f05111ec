"""Mode direct giving a guest an address on the upstream LAN, for real (issue 14): lab host caldera02
has its uplink ens3 (address 10.10.10.5) on a lab LAN whose router runs a DHCP server; the runbook
defines and starts `mode: direct` network `lan` on ens3 in the host's real libvirtd; the guest then
takes a lease from the upstream LAN's DHCP server and reaches the router and the "internet" host
behind it, while the host itself cannot reach the guest over its uplink (the documented caveat of
macvtap's bridge mode). Second runs change nothing, the audit is in sync, rollback.sh restores the host.

The guest is a stand-in, not a libvirt domain: the lab's libvirtd has no domain driver and there is
no QEMU guest. It is what libvirt makes for a guest on this network, one device on the uplink in the
macvtap mode `virsh net-dumpxml` gives (bridge here) — but a macvlan, macvtap's in-kernel base with
the same modes, moved into a namespace of its own: a macvtap hands the frames it receives to the
/dev/tapN a QEMU reads, so nothing in a namespace would see them. That a macvtap in that mode can be
made on the uplink is checked too. Needs a kernel with macvlan and macvtap: this machine's has
neither, so it runs in a VM with Debian's kernel (tests/test_vm_lab.py) and skips here. Only
namespaces the lab made."""
from __future__ import annotations

import pytest
from lxml import etree

import labkit as kit
from vnetgen.lab import LabVm, in_private_netns

pytestmark = pytest.mark.lab

PROFILE = """\
vnetgen: 1
host: caldera02
networks:
  lan:
    mode: direct
    dev: ens3
"""
HOST_IP, GUEST_MAC = "10.10.10.5", "52:54:00:d1:7e:01"


def _kernel_has(host, kind: str) -> str:
    """'' if `ip link add … type KIND` works on the host's ens3, else the kernel's error."""
    probe = host.ip("link", "add", "link", "ens3", "name", f"{kind}probe", "type", kind, "mode", "bridge", check=False)
    if probe.returncode != 0:
        return probe.stderr.strip()
    host.ip("link", "delete", f"{kind}probe")
    return ""


def test_direct_network_puts_a_guest_on_the_upstream_lan(lab, tmp_path):
    host = lab.host("caldera02")
    assert in_private_netns(host.pid)
    host.assert_private()
    lan = lab.lan("lan0", "10.10.10.0/24", dhcp=True)
    router = lan.router
    lab.nic(host, "ens3", lan, ip=f"{HOST_IP}/24", gateway=lan.gateway_ip)
    for kind in ("macvlan", "macvtap"):
        error = _kernel_has(host, kind)
        if error:
            # CONFIG_MACVLAN / CONFIG_MACVTAP missing, and no module is loaded for them here
            pytest.skip(f"this kernel has no {kind}: {error}")
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    bundle = kit.build(profile, tmp_path / "bundle")
    before = kit.host_state(host)

    kit.apply(host, bundle)
    xml = etree.fromstring(host.virsh("net-dumpxml", "lan").stdout.encode())
    forward = xml.find("forward")
    mode = forward.get("mode")
    assert mode == "bridge" and [i.get("dev") for i in forward.findall("interface")] == ["ens3"], \
        etree.tostring(xml).decode()
    assert "yes" in host.virsh("net-info", "lan").stdout.split("Active:", 1)[1].splitlines()[0]

    # what libvirt would make for a guest: a macvtap on ens3 in the network's mode
    host.ip("link", "add", "link", "ens3", "name", "macvtap0", "type", "macvtap", "mode", mode)
    assert f"macvtap mode {mode} " in host.ip("-d", "link", "show", "dev", "macvtap0").stdout
    host.ip("link", "delete", "macvtap0")

    # the stand-in guest: the same device as a macvlan, its eth0 in a namespace of its own
    guest = lab._sleeper("guest1", LabVm, host=host, bridge="ens3", mac=GUEST_MAC, host_ifname="macvlan0")
    guest.assert_private()
    host.ip("link", "add", "link", "ens3", "name", "macvlan0", "address", GUEST_MAC, "type", "macvlan", "mode", mode)
    host.ip("link", "set", "macvlan0", "netns", str(guest.pid))
    guest.ip("link", "set", "macvlan0", "name", "eth0")
    guest.ip("link", "set", "eth0", "up")

    lease = guest.dhcp(timeout=60)
    assert kit.in_range(lease.ip, *lan.dhcp_range) and lease.router == lan.gateway_ip, lease
    assert {"mac": GUEST_MAC, "ip": lease.ip} in [{"mac": e["mac"], "ip": e["ip"]} for e in lan.leases()]
    assert guest.ping(lan.gateway_ip, timeout=20)              # the upstream router
    assert guest.ping(router.internet_ip, timeout=20)          # and beyond it, through the router
    assert router.ping(lease.ip, timeout=20)
    assert router.ping(HOST_IP, timeout=20)                    # the LAN reaches the host as well…
    # …but the host and its guest cannot reach each other over ens3: macvtap's (macvlan's) bridge
    # mode passes frames between its devices and the wire, never to the NIC's own stack.
    assert not host.ping(lease.ip, count=2, timeout=3)
    assert not guest.ping(HOST_IP, count=2, timeout=3)

    guest.ip("link", "delete", "eth0")                         # the guest shuts down
    kit.finish([host], bundle, profile, {host.name: before}, tmp_path)
    assert host.virsh("net-info", "lan", check=False).returncode != 0
