"""A lab VM: a namespace whose eth0 is plugged into a bridge of its host like a libvirt guest's, and
the DHCP lease it takes with busybox udhcpc."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import time
from typing import Dict, List, Optional, Sequence

from .errors import LabError
from .hosts import LabHost
from .nodes import LabNode, Owner


class LabVm(LabNode):
    """A simulated guest: a netns whose eth0 is a veth plugged into a bridge of its host."""

    kind = "vm"

    def __init__(self, lab: Owner, name: str, pid: int, host: LabHost, bridge: str, mac: str, host_ifname: str) -> None:
        super().__init__(lab, name, pid)
        self.host = host
        self.bridge = bridge
        self.mac = mac
        self.host_ifname = host_ifname
        self.lease: Optional[Lease] = None

    def dhcp(self, timeout: float = 20) -> "Lease":
        """Get a lease on eth0 with busybox udhcpc; apply it (address and default route).

        With libvirt's stp='on' the kernel keeps a new port out of forwarding for 2 x forward_delay
        (libvirt asks for 0, the kernel's minimum with STP is 2 s), and libvirt's dnsmasq pings an
        address for ~3 s before offering it: a first lease takes about 7 s. Use dhcp_all() for
        several VMs.
        """
        script = udhcpc_script(self.lab.workdir)
        leasefile = os.path.join(self.lab.workdir, f"lease-{self.name}.env")
        try:
            os.unlink(leasefile)
        except FileNotFoundError:
            pass
        deadline = time.monotonic() + timeout
        log = ""
        # udhcpc -n gives up as soon as its 3 REQUESTs go unanswered, which happens when dnsmasq
        # is busy with another client's ping check: so retry until the deadline.
        while True:
            tries = max(1, int(deadline - time.monotonic()))
            argv = ["busybox", "udhcpc", "-i", "eth0", "-f", "-n", "-q", "-t", str(tries), "-T", "1",
                    "-s", script]
            if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", self.name):
                argv += ["-x", f"hostname:{self.name}"]
            res = self.run(argv, env={"LAB_LEASE_FILE": leasefile}, check=False, timeout=tries * 2 + 10)
            log += res.stdout + res.stderr
            if res.returncode == 0 and os.path.exists(leasefile):
                break
            if time.monotonic() >= deadline:
                raise LabError(
                    f"vm {self.name}: no DHCP lease on {self.host.name}/{self.bridge} within {timeout}s\n"
                    + log[-3000:]
                )
        self.lease = Lease.from_env_file(leasefile)
        return self.lease

    def set_static(self, ip_cidr: str, gw: Optional[str] = None) -> None:
        """Configure eth0 statically (routed-mode guests get no DHCP)."""
        iface = ipaddress.ip_interface(ip_cidr)
        self.ip("-4", "addr", "flush", "dev", "eth0")
        self.ip("addr", "add", str(iface), "dev", "eth0")
        self.ip("link", "set", "eth0", "up")
        if gw:
            self.ip("route", "replace", "default", "via", str(ipaddress.ip_address(gw)), "dev", "eth0")


def dhcp_all(vms: Sequence[LabVm], timeout: Optional[float] = None) -> List["Lease"]:
    """Lease for every VM, concurrently, so their STP waits (~4 s) overlap.

    libvirt's dnsmasq still serialises its ~3 s ping check per new client, hence the default
    timeout grows with the number of VMs.
    """
    import concurrent.futures

    if not vms:
        return []
    if timeout is None:
        timeout = max(20.0, 8.0 + 4.0 * len(vms))
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(vms)) as pool:
        return list(pool.map(lambda vm: vm.dhcp(timeout), vms))


@dataclasses.dataclass
class Lease:
    """What udhcpc was given."""

    ip: str
    prefix: int
    router: Optional[str]
    server: Optional[str] = None
    dns: List[str] = dataclasses.field(default_factory=list)
    lease_time: Optional[int] = None

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefix}"

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.cidr)

    @classmethod
    def from_env_file(cls, path: str) -> "Lease":
        values: Dict[str, str] = {}
        with open(path) as fh:
            for line in fh:
                key, sep, val = line.rstrip("\n").partition("=")
                if sep:
                    values[key] = val
        mask = values.get("mask", "")
        if mask.isdigit():
            prefix = int(mask)
        else:
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{values.get('subnet', '255.255.255.255')}").prefixlen
        router = values.get("router", "").split()
        return cls(
            ip=values["ip"],
            prefix=prefix,
            router=router[0] if router else None,
            server=values.get("serverid") or None,
            dns=values.get("dns", "").split(),
            lease_time=int(values["lease"]) if values.get("lease", "").isdigit() else None,
        )


def udhcpc_script(workdir: str) -> str:
    """The event script udhcpc runs in lab VMs, written once into the lab's `workdir`."""
    path = os.path.join(workdir, "udhcpc.sh")
    if not os.path.exists(path):
        with open(path, "w") as fh:
            fh.write(_UDHCPC_SCRIPT)
        os.chmod(path, 0o755)
    return path


_UDHCPC_SCRIPT = r"""#!/bin/sh
# busybox udhcpc event script for lab VMs: apply the lease and record it for the harness.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "${router:-}" ]; then
        ip route replace default via "${router%% *}" dev "$interface"
    fi
    if [ -n "${LAB_LEASE_FILE:-}" ]; then
        {
            echo "ip=$ip"; echo "mask=${mask:-}"; echo "subnet=${subnet:-}"
            echo "router=${router:-}"; echo "dns=${dns:-}"; echo "serverid=${serverid:-}"
            echo "lease=${lease:-}"
        } > "$LAB_LEASE_FILE.tmp" && mv "$LAB_LEASE_FILE.tmp" "$LAB_LEASE_FILE"
    fi
    ;;
esac
exit 0
"""
