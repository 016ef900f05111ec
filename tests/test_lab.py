"""Real-stack tests of the namespace lab: libvirtd, dnsmasq and iptables, never on this machine's own network."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess

import pytest

import labkit as kit
from vnetgen import lab as labmod
from vnetgen.lab import namespaces
from vnetgen.lab.processes import alive
from vnetgen.lab import (
    Lab,
    LabNode,
    NotPrivateError,
    dhcp_all,
    in_private_netns,
    lab_available,
    require_lab,
)

pytestmark = pytest.mark.lab

# The seed's default network (NAT, DHCP .2-.254).
NAT_DEFAULT_XML = """\
<network>
  <name>default</name>
  <uuid>f6514662-26e5-431e-8544-fd216bed9312</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:53:d4:ee'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
"""

# The seed's second host: isolated and unnumbered.
ISOLATED_DEFAULT_XML = """\
<network>
  <name>default</name>
  <uuid>e8849d67-243a-4b0f-83ea-bc2b447580cf</uuid>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:22:1b:5f'/>
</network>
"""

# The seed's routed network.
ROUTED_XML = """\
<network>
  <name>router</name>
  <uuid>186ffd11-ce2d-452a-9970-baf07b723de8</uuid>
  <forward mode='route'/>
  <bridge name='virbr1' stp='on' delay='0'/>
  <mac address='52:54:00:56:e6:21'/>
  <ip address='192.168.132.1' netmask='255.255.255.0'>
  </ip>
</network>
"""

DHCP_RANGE = (ipaddress.IPv4Address("192.168.122.2"), ipaddress.IPv4Address("192.168.122.254"))


@pytest.fixture
def xml_dir(tmp_path):
    (tmp_path / "default.xml").write_text(NAT_DEFAULT_XML)
    (tmp_path / "isolated.xml").write_text(ISOLATED_DEFAULT_XML)
    (tmp_path / "router.xml").write_text(ROUTED_XML)
    return tmp_path


def _outer(argv):
    # Read-only look at this machine's own namespace.
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout


def _outer_link_names():
    return {line.split(":", 2)[1].strip().split("@")[0] for line in _outer(["ip", "-o", "link"]).splitlines()}


def _in_range(ip):
    return DHCP_RANGE[0] <= ipaddress.IPv4Address(ip) <= DHCP_RANGE[1]


def _start_nat_default(host, xml_dir):
    host.run(["virsh", "net-define", str(xml_dir / "default.xml")])
    host.run(["virsh", "net-start", "default"])


# --- no lab needed -----------------------------------------------------------------------------


def test_own_process_is_not_private():
    assert in_private_netns(os.getpid()) is False
    assert in_private_netns(1) is False
    assert in_private_netns(2**22 + 12345) is False  # no such process: cannot be proven private


def test_lab_available_says_why():
    ok, reason = lab_available()
    assert isinstance(ok, bool) and isinstance(reason, str) and reason


def test_run_refuses_outer_namespace(tmp_path):
    # A node pointing at our own process must never run anything.
    marker = tmp_path / "ran"
    with Lab(workdir_parent=str(tmp_path)) as the_lab:
        fake = LabNode(the_lab, "fake", os.getpid())
        with pytest.raises(NotPrivateError):
            fake.run(["touch", str(marker)])
        with pytest.raises(NotPrivateError):
            fake.ip("link", "add", "evil0", "type", "veth", "peer", "name", "evil1")
    assert not marker.exists()
    assert "evil0" not in _outer_link_names()


def test_require_lab_skips_or_fails_in_ci(monkeypatch):
    monkeypatch.setattr(namespaces, "lab_available", lambda: (False, "no busybox"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no busybox"):
        require_lab()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no busybox"):
        require_lab()


def test_lab_creates_nothing_until_asked():
    the_lab = Lab()
    with the_lab:
        assert the_lab.pids() == []
        assert the_lab._workdir is None
    with pytest.raises(labmod.LabError):
        the_lab.host("late")


# --- real stack ----------------------------------------------------------------------------------


def test_nat_network_lives_inside_host_only(lab, xml_dir):
    forward_before = open("/proc/sys/net/ipv4/ip_forward").read()
    host = lab.host("caldera02")
    host.assert_private()
    assert in_private_netns(host.pid)
    assert host.netns_id() != os.stat("/proc/self/ns/net").st_ino
    assert host.run("hostname").stdout.strip() == "caldera02"
    assert host.run("virsh net-list --all --name").stdout.strip() == ""

    _start_nat_default(host, xml_dir)

    assert "virbr0" in host.interfaces()
    assert "192.168.122.1/24" in host.addresses("virbr0")
    assert "virbr0" not in _outer_link_names()
    listing = host.run("virsh net-list --all").stdout
    assert re.search(r"default\s+active", listing), listing
    assert re.search(r"^virbr0\s+8000\.52540053d4ee\s+yes", host.run("brctl show").stdout, re.M)
    assert host.run(["pgrep", "-x", "dnsmasq"], check=False).returncode == 0
    assert "MASQUERADE" in host.run("iptables-save -t nat").stdout
    # libvirt turned on forwarding for the host's netns only.
    assert host.run("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert open("/proc/sys/net/ipv4/ip_forward").read() == forward_before
    # libvirt's own files went to the host's tmpfs, not to this machine's /etc.
    assert os.path.exists(host.root_path("/etc/libvirt/qemu/networks/default.xml"))
    assert not os.path.exists("/etc/libvirt/qemu/networks/default.xml")
    # Files a runbook writes to /etc or /var land in the host's private overlays.
    host.run("mkdir -p /etc/sysctl.d /etc/sysconfig/network-scripts /var/lib/vnetgen-lab-test"
             " && echo net.ipv4.ip_forward=1 > /etc/sysctl.d/90-vnetgen.conf"
             " && echo DEVICE=mybridge0 > /etc/sysconfig/network-scripts/ifcfg-mybridge0"
             " && echo x > /var/lib/vnetgen-lab-test/backup")
    assert host.changed_files() == [
        "/etc/sysconfig/network-scripts/ifcfg-mybridge0",
        "/etc/sysctl.d/90-vnetgen.conf",
        "/var/lib/vnetgen-lab-test/backup",
    ]
    for path in host.changed_files():
        assert not os.path.exists(path)
        assert os.path.exists(host.root_path(path))
    # A libvirtd restart keeps the running network, as on a real host.
    old_pid = host.run("cat /run/libvirt/libvirtd.pid").stdout.strip()
    host.restart_libvirtd()
    assert host.run("cat /run/libvirt/libvirtd.pid").stdout.strip() != old_pid
    assert re.search(r"default\s+active", host.run("virsh net-list").stdout)
    assert "virbr0" in host.interfaces()
    # Commands run in our cwd, and a timeout kills what ran inside.
    assert host.run("pwd").stdout.strip() == os.getcwd()
    with pytest.raises(subprocess.TimeoutExpired):
        host.run("sleep 30", timeout=1)
    assert host.run(["pgrep", "-x", "sleep", "-a"], check=False).stdout.count("sleep 30") == 0


def test_two_vms_lease_and_ping(lab, xml_dir):
    host = lab.host("caldera02")
    _start_nat_default(host, xml_dir)
    vm1 = lab.vm(host, "VM1", "virbr0", mac="52:54:00:6d:33:55")
    vm2 = lab.vm(host, "VM2", "virbr0", mac="52:54:00:b7:1a:b9")
    assert (vm1.host_ifname, vm2.host_ifname) == ("vnet0", "vnet1")

    lease1, lease2 = dhcp_all([vm1, vm2])

    for lease in (lease1, lease2):
        assert _in_range(lease.ip), lease
        assert lease.prefix == 24 and lease.router == "192.168.122.1"
    assert lease1.ip != lease2.ip
    assert vm1.addresses("eth0") == [lease1.cidr]
    assert "default via 192.168.122.1" in vm1.run("ip route").stdout
    assert vm1.ping(lease2.ip) and vm2.ping(lease1.ip)
    assert vm1.ping("192.168.122.1") and vm2.ping("192.168.122.1")
    ports = host.run("brctl show virbr0").stdout
    assert "vnet0" in ports and "vnet1" in ports
    # libvirt's lease helper saw them too: dnsmasq tells it after the lease is given, so wait for
    # that state (bounded), never for a time.
    def recorded() -> bool:
        leases = host.run("virsh net-dhcp-leases default").stdout
        return all(x in leases for x in ("52:54:00:6d:33:55", "52:54:00:b7:1a:b9", lease1.ip, lease2.ip))

    assert labmod.wait_until(recorded, timeout=30, interval=0.2), host.run("virsh net-dhcp-leases default").stdout


def test_nat_to_internet_is_masqueraded(lab, xml_dir):
    host = lab.host("caldera02")
    _start_nat_default(host, xml_dir)
    router = lab.router()
    kit.uplink(lab, host)
    internet = router.internet
    # Count ICMP by source where it arrives: translated (the host's uplink) vs. raw guest addresses.
    internet.run("iptables -A INPUT -p icmp -s 10.10.10.98 && iptables -A INPUT -p icmp -s 192.168.122.0/24")
    vm = lab.vm(host, "VM1", "virbr0")
    vm.dhcp()

    assert host.ping("203.0.113.10")
    assert vm.ping("203.0.113.10", count=2)

    counters = internet.run("iptables -nvxL INPUT").stdout
    rows = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+\d+\s+.*?\s(\S+)\s+0\.0\.0\.0/0\s*$",
                                                               counters, re.M)}
    assert rows.get("10.10.10.98", 0) >= 3, counters  # host ping + 2 from the VM
    assert rows.get("192.168.122.0/24") == 0, counters
    # The router has no route back to the guests: only masquerade can explain the replies.
    assert "192.168.122." not in router.run("ip route").stdout


def test_routed_network_via_router_static_route(lab, xml_dir):
    host = lab.host("caldera02")
    host.run(["virsh", "net-define", str(xml_dir / "router.xml")])
    host.run(["virsh", "net-start", "router"])
    router = lab.router()
    lan = lab.lan("lan0", "10.10.10.0/24", dhcp=False)
    lab.nic(host, "enp0s25", lan, ip="10.10.10.98/24", gateway="10.10.10.1")
    vm = lab.vm(host, "VM1", "virbr1")
    vm.set_static("192.168.132.10/24", "192.168.132.1")
    assert vm.ping("192.168.132.1", timeout=8)  # keeps trying through the STP wait
    assert not vm.ping("203.0.113.10")  # upstream does not know the routed subnet yet
    router.add_route("192.168.132.0/24", via="10.10.10.98")
    assert vm.ping("203.0.113.10", count=2)


def test_two_hosts_trunk_over_ens2(lab, xml_dir):
    a = lab.host("caldera02")
    b = lab.host("caldera03")
    _start_nat_default(a, xml_dir)
    b.run(["virsh", "net-define", str(xml_dir / "isolated.xml")])
    b.run(["virsh", "net-start", "default"])
    lab.link(a, "ens2", b, "ens2")
    assert "ens2" in a.interfaces() and "ens2" in b.interfaces()
    assert "ens2" not in _outer_link_names()
    b.run("brctl addif virbr0 ens2")
    a.run("ip link set ens2 master virbr0")
    vm = lab.vm(b, "VM1", "virbr0", mac="52:54:00:36:5a:aa")

    lease = vm.dhcp()

    assert _in_range(lease.ip) and lease.router == "192.168.122.1"
    assert labmod.wait_until(lambda: "52:54:00:36:5a:aa" in a.run("virsh net-dhcp-leases default").stdout,
                             timeout=30, interval=0.2)   # libvirt records the lease after dnsmasq gives it
    assert b.run("ip -o -4 addr show dev virbr0").stdout.strip() == ""  # B stays unnumbered
    assert vm.ping("192.168.122.1")


def _snapshot():
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as fh:
                    procs[int(entry)] = fh.read().strip()
            except OSError:
                pass
    return {
        "link_names": _outer_link_names(),
        "addrs": _outer(["ip", "-o", "addr"]),
        "routes": _outer(["ip", "route", "show", "table", "all"]),
        "mounts": open("/proc/self/mounts").read(),
        "netns": _outer(["ip", "netns", "list"]),
        "forward": open("/proc/sys/net/ipv4/ip_forward").read(),
        # In this machine's own network namespace: labs running beside this one (pytest -n) keep
        # theirs in their own namespaces.
        "daemons": {pid for pid, comm in procs.items() if comm in ("libvirtd", "dnsmasq") and _netns(pid) == _netns("self")},
    }


def _netns(pid):
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[19]
    except OSError:
        return None


def _processes_in(netns_ids):
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in netns_ids:
                    with open(f"/proc/{entry}/comm") as fh:
                        found[int(entry)] = (fh.read().strip(), _start_time(entry))
            except OSError:
                pass
    return found


def test_teardown_leaves_nothing_even_after_failure(lab_ready, xml_dir):
    before = _snapshot()
    seen = {}

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with Lab() as the_lab:
            a = the_lab.host("caldera02")
            b = the_lab.host("caldera03")
            _start_nat_default(a, xml_dir)
            lan = the_lab.lan("lan0", "10.10.10.0/24", dhcp=True)
            the_lab.nic(a, "enp0s25", lan, ip="10.10.10.98/24", gateway="10.10.10.1")
            the_lab.link(a, "ens2", b, "ens2")
            the_lab.vm(a, "VM1", "virbr0")
            workdir = the_lab.workdir
            ids = {node.netns_id() for node in the_lab.nodes.values()}
            seen = _processes_in(ids)
            during = _snapshot()
            raise Boom("half-way")

    comms = {comm for comm, _ in seen.values()}
    assert {"libvirtd", "dnsmasq", "sleep"} <= comms, comms  # the check below is meaningful
    # While the lab ran, this machine's network, mounts and named netns were untouched.
    for key in ("link_names", "addrs", "routes", "mounts", "netns", "forward"):
        assert during[key] == before[key], key
    after = _snapshot()
    for key in ("link_names", "addrs", "routes", "mounts", "netns", "forward"):
        assert after[key] == before[key], key
    assert after["daemons"] <= before["daemons"]
    survivors = {pid: info for pid, info in seen.items() if _start_time(pid) == info[1]}
    assert survivors == {}
    assert not os.path.exists(workdir)


_CRASHING_CHILD = r"""
import json, os, signal, sys
from vnetgen.lab import Lab
lab = Lab(workdir_parent=sys.argv[1])
host = lab.host("caldera02")
lan = lab.lan("lan0", "10.10.10.0/24", dhcp=True)
lab.nic(host, "enp0s25", lan)
host.run("ip link add virbr0 type bridge && ip link set virbr0 up")
lab.vm(host, "VM1", "virbr0")
ids = sorted({n.netns_id() for n in lab.nodes.values()})
print(json.dumps({"pids": lab.pids(), "netns": ids}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit, no finally
"""


def test_hard_crash_of_the_owner_kills_the_lab(lab_ready, tmp_path):
    import json
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(labmod.__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    res = subprocess.run([sys.executable, "-c", _CRASHING_CHILD, str(tmp_path)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert res.returncode == -9, res.stderr
    info = json.loads(res.stdout)
    assert len(info["pids"]) >= 5
    # PR_SET_PDEATHSIG on every namespace holder: the kernel cleans up for the dead owner.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (any(alive(p) for p in info["pids"]) or
                                           _processes_in(set(info["netns"]))):
        time.sleep(0.1)
    assert not [p for p in info["pids"] if alive(p)]
    assert _processes_in(set(info["netns"])) == {}


def test_bridged_vm_leases_from_upstream_lan(lab):
    # The seed's bridged mode: the host's NIC moves into mybridge0, guests share the LAN's DHCP.
    host = lab.host("caldera02")
    lan = lab.lan("lan0", "10.10.10.0/24", dhcp=True, gateway_ip="10.10.10.1")
    lab.nic(host, "enp0s25", lan, ip="10.10.10.98/24", gateway="10.10.10.1")
    host.run(
        "brctl addbr mybridge0 && ip addr flush dev enp0s25 && brctl addif mybridge0 enp0s25"
        " && ip addr add 10.10.10.98/24 dev mybridge0 && ip link set mybridge0 up"
        " && ip route replace default via 10.10.10.1"
    )
    vm = lab.vm(host, "VM3", "mybridge0", mac="52:54:00:33:cc:01")

    lease = vm.dhcp()

    assert ipaddress.ip_address(lease.ip) in ipaddress.ip_network("10.10.10.0/24")
    assert lease.router == "10.10.10.1"
    assert any(entry["mac"] == "52:54:00:33:cc:01" for entry in lan.leases())
    assert vm.ping("203.0.113.10") and host.ping("203.0.113.10")
