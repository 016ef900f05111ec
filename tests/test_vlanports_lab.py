"""VLAN sub-interfaces as bridge ports, for real (issue 14): two lab hosts cabled over ens2, each with
host bridge br100 whose port is ens2.100. The runbooks create the VLANs and bridges; frames tagged 100
carry br100's traffic across, while untagged frames on ens2 never reach the other host's br100. Then
second runs change nothing, the audit (capture and live) is in sync, rollback.sh restores each host.
Only namespaces the lab made."""
from __future__ import annotations

import pytest

import labkit as kit
from vnetgen.lab import in_private_netns

pytestmark = pytest.mark.lab

PROFILE = """\
vnetgen: 1
hosts:
  caldera02:
    bridges:
      br100: {ports: [ens2.100], ip: 10.100.0.1/24, stp: false}
  caldera03:
    bridges:
      br100: {ports: [ens2.100], ip: 10.100.0.2/24, stp: false}
"""


def test_vlan_ports_carry_tagged_frames_between_two_hosts(lab, tmp_path):
    a = lab.host("caldera02")
    b = lab.host("caldera03")
    for host in (a, b):
        assert in_private_netns(host.pid)
        host.assert_private()
    lab.link(a, "ens2", b, "ens2")
    probe = a.ip("link", "add", "link", "ens2", "name", "vlanprobe", "type", "vlan", "id", "1", check=False)
    if probe.returncode != 0:
        # a kernel without 802.1Q (CONFIG_VLAN_8021Q) cannot run VLANs at all; no module is loaded for it
        pytest.skip(f"this kernel has no 802.1Q VLAN support: {probe.stderr.strip()}")
    a.ip("link", "delete", "vlanprobe")
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    bundle = kit.build(profile, tmp_path / "bundle")
    befores = {host.name: kit.host_state(host) for host in (a, b)}

    for host in (a, b):
        out = kit.apply(host, bundle)
        assert "VLAN port ens2.100" in out
        link = host.ip("-d", "-o", "link", "show", "dev", "ens2.100").stdout
        assert "ens2.100@ens2:" in link and "vlan protocol 802.1Q id 100 " in link and "master br100" in link

    # a guest on caldera03's br100: only L2 through br100 reaches it
    vm = lab.vm(b, "VM1", "br100")
    vm.set_static("10.100.0.91/24")
    assert a.ping("10.100.0.2", timeout=20)
    assert a.ping("10.100.0.91", timeout=20)

    # untagged: caldera02's ens2 itself reaches caldera03's ens2, never the guest behind br100
    a.ip("addr", "add", "10.77.0.1/24", "dev", "ens2")
    b.ip("addr", "add", "10.77.0.2/24", "dev", "ens2")
    vm.ip("addr", "add", "10.77.0.91/24", "dev", "eth0")
    assert a.ping("10.77.0.2", timeout=20)            # the cable carries untagged frames
    assert not a.ping("10.77.0.91", count=2, timeout=3)
    for node, dev, cidr in ((a, "ens2", "10.77.0.1/24"), (b, "ens2", "10.77.0.2/24")):
        node.ip("addr", "del", cidr, "dev", dev)

    kit.finish([a, b], bundle, profile, befores, tmp_path)
    for host in (a, b):
        assert host.ip("link", "show", "dev", "ens2.100", check=False).returncode != 0
