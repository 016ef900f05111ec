"""The seed tutorial's scenarios replayed for real: each host's runbook.sh in a lab, then what the tutorial shows."""
from __future__ import annotations

import concurrent.futures
import ipaddress
import os

import pytest

import labkit as kit
from vnetgen.lab import dhcp_all, in_private_netns, wait_until

pytestmark = pytest.mark.lab

INTERNET = "203.0.113.10"
NAT_RANGE = ("192.168.122.2", "192.168.122.254")


def _host(lab, name):
    host = lab.host(name)
    # Explicitly, before any runbook runs: the host is a namespace of its own, not this machine.
    assert in_private_netns(host.pid)
    host.assert_private()
    return host


def _uplink(lab, host, dhcp=False):
    """The seed's LAN: the host's enp0s25 holds 10.10.10.98/24, default via 10.10.10.1 (the lab router)."""
    lan = lab.lan("lan0", "10.10.10.0/24", dhcp=dhcp, gateway_ip="10.10.10.1")
    lab.nic(host, "enp0s25", lan, mac="00:24:81:0d:3f:8d", ip="10.10.10.98/24", gateway="10.10.10.1")
    return lan


def _net_list(host):
    """{name: (state, autostart, persistent)} from `virsh net-list --all`."""
    rows = {}
    for line in host.virsh("net-list", "--all").stdout.splitlines()[2:]:
        fields = line.split()
        if len(fields) == 4:
            rows[fields[0]] = tuple(fields[1:])
    return rows


def _none_reach(vm, targets, timeout=2.0):
    """True if `vm` reaches none of `targets` (tried concurrently: each miss waits out its timeout)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return not any(pool.map(lambda t: vm.ping(t, timeout=timeout), targets))


def _setup(tmp_path, name):
    profile = kit.profile_path(name)
    return profile, kit.build(profile, tmp_path / "bundle")


def test_nat_default(lab, tmp_path):
    profile, bundle = _setup(tmp_path, "nat-default")
    host = _host(lab, "caldera02")
    _uplink(lab, host)
    internet = lab.router().internet
    kit.count_icmp_sources(internet, "10.10.10.98", "192.168.122.0/24")
    before = kit.host_state(host)

    out = kit.apply(host, bundle)

    assert "Network default started" in out
    assert _net_list(host)["default"] == ("active", "yes", "yes")
    assert "192.168.122.1/24" in host.addresses("virbr0")
    vm1 = lab.vm(host, "VM1", "virbr0", mac="52:54:00:6d:33:55")
    vm2 = lab.vm(host, "VM2", "virbr0", mac="52:54:00:b7:1a:b9")
    lease1, lease2 = dhcp_all([vm1, vm2])
    for vm, lease in ((vm1, lease1), (vm2, lease2)):
        assert kit.in_range(lease.ip, *NAT_RANGE) and lease.prefix == 24, lease
        assert lease.router == "192.168.122.1"
        assert kit.default_route(vm) == "192.168.122.1"  # the tutorial's `netstat -nr`
    assert lease1.ip != lease2.ip
    assert vm2.ping(lease1.ip) and vm1.ping(lease2.ip)  # tracepath VM2 → VM1
    assert vm1.ping(INTERNET, count=2) and vm2.ping(INTERNET, count=2)
    counts = kit.icmp_counts(internet)
    # Masquerade: the internet host sees only the host's LAN address, never a guest's.
    assert counts["10.10.10.98"] >= 4 and counts["192.168.122.0/24"] == 0, counts
    assert sorted(kit.bridge_ports(host, "virbr0")) == ["vnet0", "vnet1"]

    kit.finish([host], bundle, profile, {"caldera02": before}, tmp_path)


def test_bridged(lab, tmp_path):
    profile, bundle = _setup(tmp_path, "bridged")
    host = _host(lab, "caldera02")
    lan = _uplink(lab, host, dhcp=True)
    router = lab.router()
    before = kit.host_state(host)

    kit.apply(host, bundle)

    # The NIC and its address moved onto mybridge0, the default route with them.
    assert host.addresses("mybridge0") == ["10.10.10.98/24"]
    assert host.addresses("enp0s25") == []
    assert kit.bridge_ports(host, "mybridge0") == ["enp0s25"]
    assert "default via 10.10.10.1 dev mybridge0" in host.run(["ip", "route"]).stdout
    assert router.ping("10.10.10.98")  # the host is still reachable from the LAN side
    ifcfg = open(host.root_path("/etc/sysconfig/network-scripts/ifcfg-mybridge0")).read()
    assert "IPADDR=10.10.10.98" in ifcfg and "TYPE=Bridge" in ifcfg
    nets = _net_list(host)
    assert nets["bridged_network"] == ("active", "yes", "yes")
    assert nets["default"][0] == "inactive"  # the seed stops it before bridging
    vm3 = lab.vm(host, "VM3", "mybridge0", mac="52:54:00:33:cc:01")
    lease = vm3.dhcp()
    # Its lease comes from the upstream LAN's DHCP server, like the host's own network.
    assert ipaddress.ip_address(lease.ip) in ipaddress.ip_network("10.10.10.0/24")
    assert kit.in_range(lease.ip, *lan.dhcp_range) and lease.router == "10.10.10.1"
    assert lease.server == "10.10.10.1"
    assert any(entry["mac"] == "52:54:00:33:cc:01" for entry in lan.leases())
    assert vm3.ping(INTERNET, count=2)
    assert sorted(kit.bridge_ports(host, "mybridge0")) == ["enp0s25", "vnet0"]

    kit.finish([host], bundle, profile, {"caldera02": before}, tmp_path)


def test_bridged_el9_under_networkmanager(lab, tmp_path):
    """The bridged scenario on an el9 host: NetworkManager runs it, enp0s25 in its own profile."""
    from conftest import require_tool

    require_tool("NetworkManager", "nmcli", "dbus-daemon")
    profile, bundle = _setup(tmp_path, "bridged-el9")
    host = _host(lab, "caldera02")
    lan = _uplink(lab, host, dhcp=True)
    router = lab.router()
    host.start_networkmanager()
    host.nm_adopt("enp0s25")
    assert _nm_connection(host, "enp0s25") == "System enp0s25"
    before = kit.host_state(host)

    out = kit.apply(host, bundle)

    assert "+ nmcli connection up id vnetgen-mybridge0-port-enp0s25" in out
    assert _nm_connection(host, "mybridge0") == "vnetgen-mybridge0"
    assert _nm_connection(host, "enp0s25") == "vnetgen-mybridge0-port-enp0s25"
    assert host.addresses("mybridge0") == ["10.10.10.98/24"] and host.addresses("enp0s25") == []
    assert kit.bridge_ports(host, "mybridge0") == ["enp0s25"]
    assert "default via 10.10.10.1 dev mybridge0" in host.run(["ip", "route"]).stdout
    assert router.ping("10.10.10.98")
    keyfile = host.root_path("/etc/NetworkManager/system-connections/vnetgen-mybridge0.nmconnection")
    assert os.stat(keyfile).st_mode & 0o777 == 0o600
    assert "stp=false" in open(keyfile).read()
    assert host.run(["cat", "/sys/class/net/mybridge0/bridge/stp_state"]).stdout.strip() == "0"
    vm3 = lab.vm(host, "VM3", "mybridge0", mac="52:54:00:33:cc:01")
    lease = vm3.dhcp()
    assert kit.in_range(lease.ip, *lan.dhcp_range) and lease.router == "10.10.10.1"
    assert vm3.ping(INTERNET, count=2)

    kit.finish([host], bundle, profile, {"caldera02": before}, tmp_path)
    # rollback.sh gave the NIC its own profile back, with the address and the default route
    assert _nm_connection(host, "enp0s25") == "System enp0s25"
    assert host.addresses("enp0s25") == ["10.10.10.98/24"]
    assert "mybridge0" not in host.interfaces()


def _nm_connection(host, device):
    return host.run(["nmcli", "-g", "GENERAL.CONNECTION", "device", "show", device]).stdout.strip()


def test_nat_and_bridged_side_by_side(lab, tmp_path):
    profile, bundle = _setup(tmp_path, "nat-and-bridged")
    host = _host(lab, "caldera02")
    lan = _uplink(lab, host, dhcp=True)
    internet = lab.router().internet
    before = kit.host_state(host)

    kit.apply(host, bundle)

    assert _net_list(host) == {"bridged_network": ("active", "yes", "yes"), "default": ("active", "yes", "yes")}
    vm1 = lab.vm(host, "VM1", "virbr0", mac="52:54:00:6d:33:55")
    vm2 = lab.vm(host, "VM2", "virbr0", mac="52:54:00:b7:1a:b9")
    vm3 = lab.vm(host, "VM3", "mybridge0", mac="52:54:00:33:cc:01")
    lease1, lease2, lease3 = dhcp_all([vm1, vm2, vm3])
    assert kit.in_range(lease1.ip, *NAT_RANGE) and kit.in_range(lease2.ip, *NAT_RANGE)
    assert lease1.router == lease2.router == "192.168.122.1"
    assert kit.in_range(lease3.ip, *lan.dhcp_range) and lease3.router == "10.10.10.1"
    kit.count_icmp_sources(internet, "10.10.10.98", lease3.ip, "192.168.122.0/24")
    assert vm1.ping(INTERNET) and vm2.ping(INTERNET) and vm3.ping(INTERNET)
    counts = kit.icmp_counts(internet)
    # NAT guests arrive as the host; the bridged guest with its own LAN address.
    assert counts["10.10.10.98"] >= 2 and counts[lease3.ip] >= 1 and counts["192.168.122.0/24"] == 0, counts
    assert vm1.ping(lease2.ip)
    assert sorted(kit.bridge_ports(host, "virbr0")) == ["vnet0", "vnet1"]
    assert sorted(kit.bridge_ports(host, "mybridge0")) == ["enp0s25", "vnet2"]

    kit.finish([host], bundle, profile, {"caldera02": before}, tmp_path)


def test_routed(lab, tmp_path):
    profile, bundle = _setup(tmp_path, "routed")
    host = _host(lab, "caldera02")
    _uplink(lab, host)
    router = lab.router()
    internet = router.internet
    kit.count_icmp_sources(internet, "10.10.10.98", "192.168.132.0/24")
    before = kit.host_state(host)

    kit.apply(host, bundle)

    assert "192.168.132.1/24" in host.addresses("virbr1")
    assert "192.168.132.0/24 dev virbr1" in host.run(["ip", "route"]).stdout  # the tutorial's netstat -nr
    vm = lab.vm(host, "VM1", "virbr1")
    vm.set_static("192.168.132.10/24", "192.168.132.1")  # routed guests are set statically
    assert vm.ping("192.168.132.1", timeout=8)
    # Upstream does not know 192.168.132.0/24 yet: the replies have no way back.
    assert _none_reach(vm, [INTERNET])
    assert not internet.ping("192.168.132.10", timeout=2)
    router.add_route("192.168.132.0/24", via="10.10.10.98")
    assert vm.ping(INTERNET, count=2, timeout=8)
    assert internet.ping("192.168.132.10", timeout=8)  # reached from upstream by its own address
    counts = kit.icmp_counts(internet)
    assert counts["192.168.132.0/24"] >= 2 and counts["10.10.10.98"] == 0, counts  # no NAT

    kit.finish([host], bundle, profile, {"caldera02": before}, tmp_path)


def test_isolated(lab, tmp_path):
    profile, bundle = _setup(tmp_path, "isolated")
    host = _host(lab, "caldera03")
    _uplink(lab, host)  # the host's own LAN, which the guests must not reach
    before = kit.host_state(host)

    kit.apply(host, bundle)

    assert host.addresses("virbr0") == []  # unnumbered: no <ip>, no DHCP
    assert _net_list(host)["default"] == ("active", "yes", "yes")
    vm1 = lab.vm(host, "VM1", "virbr0")
    vm2 = lab.vm(host, "VM2", "virbr0")
    # Addresses in the host LAN's own subnet: only L2 isolation can keep them from reaching it.
    vm1.set_static("10.10.10.201/24", "10.10.10.1")
    vm2.set_static("10.10.10.202/24", "10.10.10.1")
    assert vm1.ping("10.10.10.202", timeout=8) and vm2.ping("10.10.10.201", timeout=8)
    for vm in (vm1, vm2):
        assert _none_reach(vm, ["10.10.10.1", "10.10.10.98", INTERNET])
    assert sorted(kit.bridge_ports(host, "virbr0")) == ["vnet0", "vnet1"]

    kit.finish([host], bundle, profile, {"caldera03": before}, tmp_path)


def test_two_hosts(lab, tmp_path):
    profile, bundle = _setup(tmp_path, "two-hosts")
    order = kit.run_order(bundle)
    assert order == ["caldera02", "caldera03"]  # the DHCP server's host first
    hosts = {name: _host(lab, name) for name in order}
    gw, far = hosts["caldera02"], hosts["caldera03"]
    _uplink(lab, gw)  # only caldera02 reaches the internet
    lab.link(gw, "ens2", far, "ens2")
    internet = lab.router().internet
    kit.count_icmp_sources(internet, "10.10.10.98", "192.168.122.0/24")
    befores = {name: kit.host_state(host) for name, host in hosts.items()}

    for name in order:
        kit.apply(hosts[name], bundle)

    assert far.addresses("virbr0") == []  # caldera03 stays unnumbered
    near_vm = lab.vm(gw, "caldera02-VM1", "virbr0")
    far_vm = lab.vm(far, "VM1", "virbr0", mac="52:54:00:36:5a:aa")
    near_lease, far_lease = dhcp_all([near_vm, far_vm])
    # caldera03's guest is served by caldera02's dnsmasq, over ens2.
    assert kit.in_range(far_lease.ip, *NAT_RANGE) and far_lease.router == "192.168.122.1"
    assert far_lease.server == "192.168.122.1"
    # dnsmasq has answered; libvirt records the lease a moment later: wait for that state.
    assert wait_until(lambda: "52:54:00:36:5a:aa" in gw.virsh("net-dhcp-leases", "default").stdout, 20)
    assert kit.default_route(far_vm) == "192.168.122.1"
    assert far_vm.ping(near_lease.ip)
    assert far_vm.ping(INTERNET, count=2)  # through caldera02's NAT
    counts = kit.icmp_counts(internet)
    assert counts["10.10.10.98"] >= 2 and counts["192.168.122.0/24"] == 0, counts
    assert sorted(kit.bridge_ports(gw, "virbr0")) == ["ens2", "vnet0"]
    assert sorted(kit.bridge_ports(far, "virbr0")) == ["ens2", "vnet0"]
    # The hook keeps the trunk: libvirtd (restarted, so it reads the new hook) re-adds ens2 when the
    # network restarts.
    far.restart_libvirtd()
    far.virsh("net-destroy", "default")
    far.virsh("net-start", "default")
    assert kit.bridge_ports(far, "virbr0") == ["ens2"], far.run(["brctl", "show"]).stdout

    kit.finish([gw, far], bundle, profile, befores, tmp_path)


def test_every_shipped_profile_is_replayed():
    """A new profile in profiles/ needs its replay in this file."""
    # bridged-ubuntu: every seed scenario is rehearsed on ubuntu (test_rehearse.py), bridged among them
    replayed = {"nat-default", "bridged", "nat-and-bridged", "routed", "isolated", "two-hosts", "bridged-el9",
                "bridged-ubuntu"}
    assert {p.stem for p in kit.PROFILE_DIR.glob("*.yaml")} == replayed
