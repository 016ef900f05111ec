"""A port forward into a NAT guest, for real (issue 14): the runbook applies it to the running network,
a TCP connection from the upstream router to the host's uplink address and port reaches a listener in
the guest's namespace, libvirt's stop/start of the network removes and re-adds it through the hook, the
audit reads it from the capture, and after rollback.sh it is gone. Only namespaces the lab made."""
from __future__ import annotations

import pytest

import labkit as kit
from vnetgen.lab import in_private_netns
from vnetgen.lab.processes import wait_until

pytestmark = pytest.mark.lab

PROFILE = """\
vnetgen: 1
host: caldera02
networks:
  lab:
    mode: nat
    bridge: virbr5
    ip: 192.168.100.1/24
    forwards:
      - {proto: tcp, port: 2222, to: 192.168.100.91:8000}
"""

def _reach(router) -> bool:
    """One connection from the router to the host's port 2222: the guest's web server answers."""
    return kit.http_answers(router, "10.10.10.98", 2222)


def _rules(host) -> str:
    return host.run("iptables -w -t nat -S; iptables -w -S FORWARD").stdout


def test_a_port_forward_reaches_the_guest_and_is_gone_after_rollback(lab, tmp_path):
    host = lab.host("caldera02")
    assert in_private_netns(host.pid)
    host.assert_private()
    kit.uplink(lab, host)
    router = lab.router()
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    bundle = kit.build(profile, tmp_path / "bundle")
    before = kit.host_state(host)
    assert "vnetgen forward" not in _rules(host)

    out = kit.apply(host, bundle)
    assert "port forwards of network lab" in out

    vm = lab.vm(host, "VM1", "virbr5")
    vm.set_static("192.168.100.91/24", gw="192.168.100.1")
    kit.serve_http(lab, vm, "192.168.100.91", 8000)
    assert wait_until(lambda: _reach(router), timeout=20), _rules(host)
    rules = _rules(host)
    assert '--comment "vnetgen forward lab tcp/2222" -j DNAT --to-destination 192.168.100.91:8000' in rules
    assert "-A FORWARD -d 192.168.100.91/32 -o virbr5 -p tcp" in rules   # first in FORWARD, before libvirt's
    assert rules.index("-A FORWARD -d 192.168.100.91/32") < rules.index("-A FORWARD -j LIBVIRT_FWX")
    kit.assert_second_run_changes_nothing(host, bundle)
    kit.assert_audit_in_sync(host, bundle, profile, tmp_path / "captures")
    assert "-j DNAT --to-destination 192.168.100.91:8000" in \
        (tmp_path / "captures" / "caldera02" / "iptables-nat.txt").read_text()

    # libvirt runs the hook (read when libvirtd starts): stopping the network removes the forward,
    # starting it puts it back
    host.restart_libvirtd()
    host.virsh("net-destroy", "lab")
    assert "vnetgen forward" not in _rules(host)
    host.virsh("net-start", "lab")
    host.ip("link", "set", vm.host_ifname, "master", "virbr5", "up")   # libvirt would re-plug a real guest
    assert "vnetgen forward lab tcp/2222" in _rules(host)
    assert wait_until(lambda: _reach(router), timeout=20), _rules(host)

    kit.assert_rollback_restores(host, bundle, before)
    assert "vnetgen forward" not in _rules(host)
    assert wait_until(lambda: not _reach(router), timeout=20)
