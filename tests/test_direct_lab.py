"""Mode direct (plugins/direct.py, libvirt's macvtap networks), for real as far as a lab can go (issue 14).

The network half is libvirt's own: the runbook defines, starts and autostarts a direct network on the
lab host's uplink in the real libvirtd (starting one creates no device: libvirt only keeps the pool of
NICs), the verify step and the audit are in sync, and libvirt hands a guest's port its NIC from the
pool (`virsh net-port-create`, what libvirt's QEMU driver asks when a guest with `<interface
type='network'>` starts: the answer is `<plug type='direct' dev='enp0s25' mode='bridge'/>`).

The guest half uses a STAND-IN: the lab has no QEMU, and its guests are namespaces, which cannot read a
macvtap device's tap character device as QEMU does. So where libvirt's QEMU driver would create a
macvtap device on the plug's NIC in the plug's mode, the test creates a macvlan device (macvtap is a
macvlan with that character device added: the same kernel driver, the same forwarding) on that NIC in
that mode and moves it into the guest's namespace. Through it the guest takes a lease from the upstream
LAN's DHCP server and is reached by the upstream router, while the host itself cannot reach it (the
caveat REVIEW.md states for direct mode). Then rollback.sh removes the network. Only namespaces the lab
made."""
from __future__ import annotations

import pytest

import labkit as kit
from vnetgen.lab import in_private_netns

pytestmark = pytest.mark.lab

PROFILE = """\
vnetgen: 1
host: caldera02
networks:
  lan:
    mode: direct
    dev: enp0s25
"""

GUEST_MAC = "52:54:00:16:00:07"
PORT = f"""\
<networkport>
  <uuid>5d2b4a9e-3f8c-4f7e-9c3e-2b1a0d9e8f71</uuid>
  <owner><name>vm1</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid></owner>
  <mac address='{GUEST_MAC}'/>
</networkport>
"""


def test_a_direct_network_runs_in_libvirt_and_puts_a_guest_on_the_upstream_lan(lab, tmp_path):
    host = lab.host("caldera02")
    assert in_private_netns(host.pid)
    host.assert_private()
    lan = lab.lan("lan0", "10.10.10.0/24", dhcp=True, gateway_ip="10.10.10.1", dhcp_range=("10.10.10.100", "10.10.10.199"))
    lab.nic(host, "enp0s25", lan, mac="00:24:81:0d:3f:8d", ip="10.10.10.98/24", gateway="10.10.10.1")
    router = lab.router()
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    bundle = kit.build(profile, tmp_path / "bundle")
    assert "the host cannot reach its guests on enp0s25" in (bundle / "REVIEW.md").read_text()
    before = kit.host_state(host)
    links_before = host.interfaces()

    out = kit.apply(host, bundle)
    assert "ok: require_nics enp0s25" in out and "virsh net-start lan" in out, out
    assert host.virsh("net-info", "lan").stdout.split("Active:")[1].split()[0] == "yes"
    dumped = host.virsh("net-dumpxml", "lan").stdout
    assert "<forward dev='enp0s25' mode='bridge'>" in dumped and "<interface dev='enp0s25'/>" in dumped, dumped
    assert host.interfaces() == links_before   # starting a direct network creates no device
    verify = kit.run_script(host, str(bundle / "caldera02"), "runbook.sh", "--verify", "--no-vms")
    assert verify.returncode == 0 and "checks hold" in verify.stdout, verify.stdout + verify.stderr
    kit.assert_second_run_changes_nothing(host, bundle)
    kit.assert_audit_in_sync(host, bundle, profile, tmp_path / "captures")

    # A guest's port: libvirt picks the NIC from the network's pool and the macvtap mode.
    port_xml = tmp_path / "port.xml"
    port_xml.write_text(PORT)
    host.virsh("net-port-create", "lan", str(port_xml))
    plug = host.virsh("net-port-dumpxml", "lan", "5d2b4a9e-3f8c-4f7e-9c3e-2b1a0d9e8f71").stdout
    assert "<plug type='direct' dev='enp0s25' mode='bridge'/>" in plug, plug
    assert "connections='1'" in host.virsh("net-dumpxml", "lan").stdout

    # What libvirt's QEMU driver makes for that plug: a macvtap on the NIC in the plug's mode (made and
    # removed here: a namespace cannot read its tap device, so the guest below uses a macvlan).
    host.ip("link", "add", "link", "enp0s25", "name", "macvtap0", "type", "macvtap", "mode", "bridge")
    assert "macvtap mode bridge " in host.ip("-d", "link", "show", "dev", "macvtap0").stdout
    host.ip("link", "delete", "macvtap0")

    # The guest's device on that NIC in that mode (a macvlan standing in for the macvtap QEMU would read).
    vm = lab.vm_direct(host, "VM1", "enp0s25", mode="bridge", mac=GUEST_MAC)
    lease = vm.dhcp(timeout=30)
    assert kit.in_range(lease.ip, "10.10.10.100", "10.10.10.199") and lease.router == "10.10.10.1", lease
    assert GUEST_MAC in [entry["mac"] for entry in lan.leases()]   # the upstream LAN's DHCP server gave it
    assert router.ping(lease.ip, timeout=10)       # on the upstream LAN itself
    assert vm.ping("203.0.113.10", timeout=10)     # and through the router beyond it, not through the host
    assert not host.ping(lease.ip, timeout=3)      # the host cannot reach its guest over macvtap
    assert host.ping("10.10.10.1", timeout=5)      # (while the host's own uplink works)

    # The guest goes: its device and its port; then rollback.sh removes the network.
    vm.ip("link", "del", "eth0")
    host.virsh("net-port-delete", "lan", "5d2b4a9e-3f8c-4f7e-9c3e-2b1a0d9e8f71")
    kit.assert_rollback_restores(host, bundle, before)
    assert "lan" not in host.virsh("net-list", "--all", "--name").stdout.split()
