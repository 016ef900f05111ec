"""A dual-stack NAT network, for real (issue 14): the runbook defines a nat network with `ips:` IPv4 and
IPv6 (a /64 with a DHCPv6 range and a static DHCPv6 host by DUID) in a lab host with an uplink; a lab
VM takes an IPv4 lease (busybox udhcpc) and its static IPv6 address by DHCPv6 (ISC dhclient -6, DUID-LL)
from libvirt's dnsmasq, and its IPv6 default route from dnsmasq's router advertisement (the kernel's
accept_ra, as a guest has it); it reaches the "internet" host behind the upstream router over IPv4
(masqueraded by libvirt: the internet host sees the host's uplink address) and over IPv6 (libvirt does
not NAT IPv6: the internet host sees the guest's own address; the upstream router has a route to the
network's prefix via the host's uplink IPv6 address, as a real upstream would be told). An IPv6 port
forward (`to: "[ADDRESS]:PORT"`) takes a connection from the router to the host's uplink IPv6 address
to the guest's web server (ip6tables DNAT, by the network hook). The verify step and the audit are in
sync; rollback.sh removes the network, the forward and puts the IPv6 forwarding sysctl back.
Only namespaces the lab made."""
from __future__ import annotations

import pytest

import labkit as kit
from conftest import require_tool
from vnetgen.lab import in_private_netns
from vnetgen.lab.processes import wait_until

pytestmark = pytest.mark.lab

GUEST_MAC = "52:54:00:16:00:05"
GUEST_DUID = "00:03:00:01:" + GUEST_MAC          # DUID-LL: type 3, hardware type 1 (Ethernet), the MAC
GUEST_IP6 = "2001:db8:160::50"
PREFIX6 = "2001:db8:160::/64"                     # RFC 3849 documentation space: routed only inside the lab
HOST_UPLINK6, ROUTER_LAN6 = "2001:db8:10::98", "2001:db8:10::1"
ROUTER_WAN6, INTERNET6 = "2001:db8:ff::1", "2001:db8:ff::10"

PROFILE = f"""\
vnetgen: 1
host: caldera02
networks:
  dual:
    mode: nat
    bridge: virbr6
    ips:
      - address: 192.168.160.1/24
        dhcp: {{start: 192.168.160.10, end: 192.168.160.99}}
      - address: 2001:db8:160::1/64
        dhcp:
          start: 2001:db8:160::100
          end: 2001:db8:160::1ff
          hosts: [{{id: "{GUEST_DUID}", name: vm1, ip: "{GUEST_IP6}"}}]
    forwards:
      - {{proto: tcp, port: 2222, to: "[{GUEST_IP6}]:8000"}}
"""


def _upstream(lab, host):
    """The host's uplink on lan0 (IPv4 and IPv6, static, default routes to the router), the router's
    IPv6 on both sides with forwarding on and a route to the network's prefix via the host, the
    internet host's IPv6 — all before the runbook, as a host's existing network is."""
    kit.uplink(lab, host)
    router = lab.router()
    internet = router.internet
    # nodad: no duplicate address detection wait on a segment the lab alone owns
    host.ip("-6", "addr", "add", f"{HOST_UPLINK6}/64", "dev", "enp0s25", "nodad")
    host.ip("-6", "route", "replace", "default", "via", ROUTER_LAN6, "dev", "enp0s25")
    router.ip("-6", "addr", "add", f"{ROUTER_LAN6}/64", "dev", "lan0", "nodad")
    router.ip("-6", "addr", "add", f"{ROUTER_WAN6}/64", "dev", "wan0", "nodad")
    router.run(["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"], timeout=10)
    router.add_route(PREFIX6, HOST_UPLINK6)
    internet.ip("-6", "addr", "add", f"{INTERNET6}/64", "dev", "eth0", "nodad")
    internet.ip("-6", "route", "replace", "default", "via", ROUTER_WAN6)
    return router, internet


def _count_sources(internet) -> None:
    """Counters on the internet host: ICMP from the host's uplink (NATed IPv4), from the guest's
    network (IPv4 that escaped the NAT), ICMPv6 from the guest's own address."""
    internet.run("iptables -w -A INPUT -p icmp -s 10.10.10.98 && iptables -w -A INPUT -p icmp -s 192.168.160.0/24 "
                 f"&& ip6tables -w -A INPUT -p ipv6-icmp -s {GUEST_IP6}")


def _counts(internet, tool: str) -> dict:
    """Packets counted per source (`-S -v`: "-A INPUT -s SOURCE ... -c PACKETS BYTES")."""
    counts = {}
    for line in internet.run([tool, "-w", "-v", "-S", "INPUT"]).stdout.splitlines():
        words = line.split()
        if words[:2] == ["-A", "INPUT"] and "-s" in words and "-c" in words:
            counts[words[words.index("-s") + 1]] = int(words[words.index("-c") + 1])
    return counts


def _forwarding6(host) -> str:
    return host.run(["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]).stdout.strip()


def test_a_dual_stack_nat_guest_gets_both_addresses_and_reaches_upstream_over_both(lab, tmp_path):
    require_tool("dhclient", "ip6tables")
    host = lab.host("caldera02")
    assert in_private_netns(host.pid)
    host.assert_private()
    router, internet = _upstream(lab, host)
    _count_sources(internet)
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    bundle = kit.build(profile, tmp_path / "bundle")
    assert "net.ipv6.conf.all.forwarding = 1" in (bundle / "caldera02/sysctl.d/90-vnetgen.conf").read_text()
    before = kit.host_state(host)
    assert _forwarding6(host) == "0"

    kit.apply(host, bundle)
    assert _forwarding6(host) == "1"
    dumped = host.virsh("net-dumpxml", "dual").stdout
    assert "<ip family='ipv6' address='2001:db8:160::1' prefix='64'>" in dumped, dumped
    assert f"<host id='{GUEST_DUID}' name='vm1' ip='{GUEST_IP6}'/>" in dumped, dumped

    vm = lab.vm(host, "VM1", "virbr6", mac=GUEST_MAC)
    lease = vm.dhcp(timeout=30)
    assert kit.in_range(lease.ip, "192.168.160.10", "192.168.160.99") and lease.router == "192.168.160.1", lease
    assert kit.dhcp6(lab, vm, timeout=30) == GUEST_IP6   # the static host, found by the guest's DUID
    # the default route comes from dnsmasq's router advertisement (enable-ra), to the bridge's link-local
    bridge_ll = host.ip("-6", "-o", "addr", "show", "dev", "virbr6", "scope", "link").stdout.split()[3].split("/")[0]
    assert wait_until(lambda: f"default via {bridge_ll} dev eth0 proto ra" in vm.ip("-6", "route").stdout,
                      timeout=20), vm.ip("-6", "route").stdout
    assert wait_until(lambda: GUEST_IP6 in host.virsh("net-dhcp-leases", "dual").stdout, timeout=20), \
        host.virsh("net-dhcp-leases", "dual").stdout

    assert vm.ping("203.0.113.10", timeout=10), vm.run("ip -4 route", check=False).stdout
    assert vm.ping(INTERNET6, timeout=10), vm.run("ip -6 route", check=False).stdout + host.run("ip6tables -S").stdout
    # the IPv6 port forward: the router's connection to the host's uplink port 2222 reaches the guest
    kit.serve_http(lab, vm, GUEST_IP6, 8000)
    assert wait_until(lambda: kit.http_answers(vm, GUEST_IP6, 8000), timeout=20)   # the server listens
    assert kit.http_answers(router, HOST_UPLINK6, 2222), host.run("ip6tables -w -t nat -S").stdout
    assert "vnetgen forward6 dual tcp/2222" in host.run("ip6tables -w -t nat -S PREROUTING").stdout
    v4, v6 = _counts(internet, "iptables"), _counts(internet, "ip6tables")
    assert v4["10.10.10.98/32"] >= 1 and v4["192.168.160.0/24"] == 0, v4   # masqueraded behind the uplink
    assert v6[f"{GUEST_IP6}/128"] >= 1, v6                              # routed, not NATed

    verify = kit.run_script(host, str(bundle / "caldera02"), "runbook.sh", "--verify", "--no-vms")
    assert verify.returncode == 0 and "checks hold" in verify.stdout, verify.stdout + verify.stderr
    kit.assert_second_run_changes_nothing(host, bundle)
    kit.assert_audit_in_sync(host, bundle, profile, tmp_path / "captures")

    kit.assert_rollback_restores(host, bundle, before)   # host_state holds net.ipv6.conf.all.forwarding
    assert "dual" not in host.virsh("net-list", "--all", "--name").stdout.split()
    assert _forwarding6(host) == "0"
    assert PREFIX6.split("/")[0] not in host.ip("-6", "route").stdout
    assert not vm.ping(INTERNET6, timeout=2)
    assert "vnetgen forward6" not in host.run("ip6tables -w -t nat -S; ip6tables -w -S FORWARD").stdout
    assert not kit.http_answers(router, HOST_UPLINK6, 2222)
