"""Lab test helpers: build a profile's bundle, run its scripts in lab hosts, then prove idempotency, audit and rollback."""
from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from vnetgen.lab.processes import wait_until
from vnetgen.lab.rehearse import failed_step, run_script  # noqa: F401  (re-exported for the tests)
from vnetgen.lab.snapshots import host_state, host_state_ignoring, state_changes  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
PROFILE_DIR = ROOT / "profiles"


def profile_path(name: str) -> Path:
    return PROFILE_DIR / f"{name}.yaml"


def build(profile: Path, out: Path) -> Path:
    """Write the bundle of `profile` to `out` (the library's build + write, as `vnetgen build` does)."""
    from vnetgen.bundle import build as build_bundle
    from vnetgen.bundle import write
    from vnetgen.plugins import get_plugin_manager
    from vnetgen.profile import load_valid

    pm = get_plugin_manager()
    loaded, _ = load_valid(str(profile), pm)
    write(build_bundle(loaded, pm, profile_file=profile.name), str(out))
    return out


def run_order(bundle: Path) -> List[str]:
    """Hosts in the order REVIEW.md's "Run order" section gives."""
    text = (bundle / "REVIEW.md").read_text()
    section = text.split("## Run order", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\d+\. \*\*([^*]+)\*\*", section, re.M)


def apply(host, bundle: Path, *args: str) -> str:
    """Run the host's runbook.sh (--no-vms: the lab's libvirtd has no domain driver); it must succeed."""
    host.assert_private()
    result = run_script(host, str(bundle / host.name), "runbook.sh", "--no-vms", *args)
    assert result.returncode == 0, f"runbook.sh on {host.name} failed:\n{result.stdout}\n{result.stderr}"
    assert "every check holds" in result.stdout or "nothing to change" in result.stdout, result.stdout
    return result.stdout


def assert_second_run_changes_nothing(host, bundle: Path) -> None:
    result = run_script(host, str(bundle / host.name), "runbook.sh", "--no-vms")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith(f"nothing to change: host {host.name} already matches the profile"), \
        result.stdout
    assert "\n   + " not in result.stdout, f"the second run changed something:\n{result.stdout}"


def assert_audit_in_sync(host, bundle: Path, profile: Path, captures: Path) -> None:
    """capture.sh inside the lab host, `vnetgen audit --captures` from here; and a live audit inside
    the host (its own virsh, brctl and sysctl): both in sync (exit 0)."""
    host.assert_private()
    result = run_script(host, str(bundle / host.name), "capture.sh", str(captures))
    assert result.returncode == 0, result.stdout + result.stderr
    audit = subprocess.run([sys.executable, "-m", "vnetgen", "audit", str(profile), "--captures", str(captures),
                            "--host", host.name], capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, f"audit of {host.name}'s capture:\n{audit.stdout}\n{audit.stderr}"
    live = host.run([sys.executable, "-m", "vnetgen", "audit", str(profile), "--host", host.name], check=False)
    assert live.returncode == 0, f"live audit inside {host.name}:\n{live.stdout}\n{live.stderr}"


def assert_rollback_restores(host, bundle: Path, before: Dict[str, str]) -> None:
    """rollback.sh returns the host to `before` (taken before the first runbook run); a second
    rollback has nothing left to undo."""
    host.assert_private()
    result = run_script(host, str(bundle / host.name), "rollback.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    taps = [vm.host_ifname for vm in host.vms]
    changes = state_changes(host_state_ignoring(before, taps), host_state(host, ignore=taps))
    assert not changes, f"rollback.sh left {host.name} different:\n" + "\n".join(changes) + "\n" + result.stdout
    again = run_script(host, str(bundle / host.name), "rollback.sh")
    assert again.returncode == 0 and again.stdout.rstrip().endswith("nothing to undo"), again.stdout + again.stderr


def finish(hosts: Sequence, bundle: Path, profile: Path, befores: Dict[str, Dict[str, str]], tmp: Path) -> None:
    """After a replay: second runs change nothing, the audit is in sync, rollback (newest host
    first) restores every host."""
    for host in hosts:
        assert_second_run_changes_nothing(host, bundle)
    for host in hosts:
        assert_audit_in_sync(host, bundle, profile, tmp / "captures")
    for host in reversed(list(hosts)):
        assert_rollback_restores(host, bundle, befores[host.name])


def uplink(lab, host):
    """The host's uplink as profiles/bridged.yaml knows it: NIC enp0s25 (its MAC) at 10.10.10.98/24 on
    the lab LAN lan0, default route via 10.10.10.1 (the router's side, when the test makes one). The LAN."""
    lan = lab.lan("lan0", "10.10.10.0/24", dhcp=False, gateway_ip="10.10.10.1")
    lab.nic(host, "enp0s25", lan, mac="00:24:81:0d:3f:8d", ip="10.10.10.98/24", gateway="10.10.10.1")
    return lan


def in_range(address: str, first: str, last: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ipaddress.ip_address(first) <= ip <= ipaddress.ip_address(last)


def count_icmp_sources(node, *sources: str) -> None:
    """iptables counters on `node` (the "internet" host): who its ICMP arrives from."""
    for source in sources:
        node.run(["iptables", "-A", "INPUT", "-p", "icmp", "-s", source])


def icmp_counts(node) -> Dict[str, int]:
    """Packets counted per source by count_icmp_sources()."""
    counts = {}
    for line in node.run(["iptables", "-nvxL", "INPUT"]).stdout.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0].isdigit():
            counts[fields[-2]] = int(fields[0])
    return counts


def bridge_ports(host, bridge: str) -> List[str]:
    """Ports of `bridge` as `brctl show BRIDGE` lists them (the tutorial's view)."""
    out = host.run(["brctl", "show", bridge]).stdout.splitlines()[1:]
    ports = []
    for line in out:
        fields = line.split("\t")
        if fields and fields[-1].strip():
            ports.append(fields[-1].strip())
    return ports


def default_route(node) -> Optional[str]:
    out = node.run(["ip", "-4", "route", "show", "default"]).stdout.split()
    return out[out.index("via") + 1] if "via" in out else None


LIBVIRT_DEFAULT = """<network>
  <name>default</name>{uuid}
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
</network>
"""


def libvirt_default(host, tmp: Path, uuid: Optional[str] = None, transient: bool = False) -> Tuple[str, str]:
    """libvirt's stock "default" network, running, as a fresh install has it (a UUID libvirt picks,
    unless `uuid` pins one; `transient`: made with net-create). Returns its UUID and inactive XML."""
    xml = tmp / "libvirt-default.xml"
    xml.write_text(LIBVIRT_DEFAULT.format(uuid=f"\n  <uuid>{uuid}</uuid>" if uuid else ""))
    if transient:
        host.virsh("net-create", str(xml))
    else:
        host.virsh("net-define", str(xml))
        host.virsh("net-start", "default")
        host.virsh("net-autostart", "default")
    return host.virsh("net-uuid", "default").stdout.strip(), host.virsh("net-dumpxml", "--inactive", "default").stdout


# dhclient's event script for lab VMs: dhclient runs it with a clean environment, so it only applies
# the address; the harness waits for the address itself.
_DHCLIENT6_SCRIPT = r"""#!/bin/sh
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
    if [ -n "${new_ip6_address:-}" ]; then
        ip -6 addr replace "$new_ip6_address/${new_ip6_prefixlen:-128}" dev "$interface" nodad
    fi ;;
EXPIRE6|RELEASE6|STOP6)
    if [ -n "${old_ip6_address:-}" ]; then
        ip -6 addr del "$old_ip6_address/${old_ip6_prefixlen:-128}" dev "$interface" 2>/dev/null || :
    fi ;;
esac
exit 0
"""


def global_ip6(node, ifname: str = "eth0") -> List[str]:
    """Global IPv6 addresses (no prefix length) of `ifname` in `node`'s netns."""
    out = node.ip("-6", "-o", "addr", "show", "dev", ifname, "scope", "global").stdout
    return re.findall(r"\binet6 ([0-9a-f:]+)/", out)


def dhcp6(lab, vm, timeout: float = 30) -> str:
    """A DHCPv6 address for `vm`'s eth0 from the network's dnsmasq, by ISC dhclient -6 with a DUID-LL
    (00:03:00:01 + the VM's MAC: what a profile's static DHCPv6 host `id` names). dhclient stays in the
    foreground as a lab process (the lab kills it at the end); every file it writes is in the lab's
    workdir, none on this machine. Returns the address once eth0 holds it."""
    vm.assert_private()
    work = Path(lab.workdir)
    script = work / "dhclient6.sh"
    if not script.exists():
        script.write_text(_DHCLIENT6_SCRIPT)
        script.chmod(0o755)
    # dhclient -6 binds to eth0's link-local address: it must have passed duplicate address detection
    def link_local_ready() -> bool:
        out = vm.ip("-6", "-o", "addr", "show", "dev", "eth0", "scope", "link").stdout
        return "inet6 fe80:" in out and "tentative" not in out

    assert wait_until(link_local_ready, timeout=10), vm.ip("-6", "addr", "show", "dev", "eth0").stdout
    base = work / f"dhclient6-{vm.name}"
    lab._spawn(vm._nsenter() + ["dhclient", "-6", "-d", "-v", "-D", "LL", "-cf", "/dev/null",
                                "-lf", f"{base}.leases", "-pf", f"{base}.pid", "-sf", str(script), "eth0"],
               log=f"{base}.log")
    if not wait_until(lambda: bool(global_ip6(vm)), timeout=timeout):
        log = Path(f"{base}.log")
        raise AssertionError(f"vm {vm.name}: no DHCPv6 address within {timeout}s\n"
                             + (log.read_text(errors="replace")[-3000:] if log.exists() else ""))
    return global_ip6(vm)[0]


_HTTP_GET = ("import socket, sys\n"
             "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n"
             "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
             "sys.stdout.write(s.recv(64).decode(errors='replace'))\n")


def serve_http(lab, vm, address: str, port: int) -> None:
    """A web server in `vm` on ADDRESS:PORT, a lab process (killed with the lab)."""
    lab._spawn(vm._nsenter() + [sys.executable, "-m", "http.server", str(port), "--bind", address])


def http_answers(node, address: str, port: int) -> bool:
    """One HTTP request from `node` to ADDRESS:PORT: a web server answers (through any forward)."""
    result = node.run([sys.executable, "-c", _HTTP_GET, address, str(port)], check=False, timeout=10)
    return result.returncode == 0 and result.stdout.startswith("HTTP/1.0")
