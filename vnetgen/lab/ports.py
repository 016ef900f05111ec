"""The profile's VMs in the lab: a lab VM per VM interface on its network's bridge, statically
addressed or leased where its segment has a DHCP server."""
from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Set

from .errors import LabError
from .guests import LabVm
from .hosts import LabHost
from .wiring import Wiring
from .world import Lab


@dataclass
class Port:
    """One network interface of one profile VM, simulated by a lab VM."""

    host: str
    vm: str
    network: str
    mode: str
    bridge: str
    mac: Optional[str]
    segment: Any = None
    node: Optional[LabVm] = None
    how: str = ""                 # "dhcp" | "static" | "" (not attached)
    address: Optional[str] = None  # CIDR once configured
    gateway: Optional[str] = None
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.host}/{self.vm}"

    @property
    def ip(self) -> Optional[str]:
        return self.address.split("/")[0] if self.address else None


def attach_vms(lab: Lab, hosts: Dict[str, LabHost], wiring: Wiring) -> List[Port]:
    """A lab VM per VM interface, on its network's bridge; DHCP where the segment has a server."""
    ports: List[Port] = []
    for plan in wiring.plans:
        for np_ in plan.networks.values():
            if np_.bridge and np_.net.dhcp is not None and np_.net.state == "active":
                wiring.dhcp_nodes.add(("br", plan.name, np_.bridge))
    dhcp_roots = {wiring.segments.find(node) for node in wiring.dhcp_nodes}
    statics: Dict[Any, Iterator[Any]] = {}
    names: Set[str] = set()
    for plan in wiring.plans:
        wanted = [(vm.name if len(vm.networks) == 1 else f"{vm.name}#{index}", nic.network,
                   nic.mac.lower() if nic.mac else None)
                  for vm in plan.host.vms.values() for index, nic in enumerate(vm.networks)]
        # A network no VM of the profile uses still gets one guest, so it is shown working too.
        used = {network for _, network, _ in wanted}
        wanted += [(f"probe-{name}", name, None) for name, np_ in plan.networks.items()
                   if name not in used and np_.net.state == "active" and np_.bridge]
        for vm_name, network, mac in wanted:
            np_ = plan.networks[network]
            port = Port(plan.name, vm_name, network, np_.net.mode, np_.bridge or "", mac)
            ports.append(port)
            if np_.net.state != "active" or not np_.bridge:
                port.note = f"not attached: network {network} is {np_.net.state}"
                continue
            port.segment = wiring.segments.find(("br", plan.name, np_.bridge))
            port.node = lab.vm(hosts[plan.name], _vm_name(plan.name, vm_name, names), np_.bridge, mac=mac)
            if port.segment in dhcp_roots:
                port.how = "dhcp"
                continue
            port.how = "static"
            net = np_.net
            if net.ip is not None:
                # Routed/open networks without DHCP: guests are set statically (the seed's routed mode).
                pool = statics.setdefault(port.segment, _top_down(net.ip.network, {net.ip.ip}))
                port.address = f"{next(pool)}/{net.ip.network.prefixlen}"
                port.gateway = str(net.ip.ip)
            else:
                if port.segment not in statics:
                    statics[port.segment] = _top_down(next(wiring.pool), set())
                port.address = f"{next(statics[port.segment])}/24"
            port.node.set_static(port.address, port.gateway)
            if port.gateway is None:
                # An on-link default route: any address is then tried on the segment itself,
                # so "unreachable" proves the segment is closed, not just a missing route.
                port.node.ip("route", "replace", "default", "dev", "eth0")
    return ports


def leases(ports: List[Port]) -> None:
    """DHCP for every port that takes it, concurrently (the STP and ping-check waits overlap)."""
    wanting = [p for p in ports if p.how == "dhcp"]
    if not wanting:
        return
    timeout = max(20.0, 8.0 + 4.0 * len(wanting))

    def one(port: Port) -> None:
        try:
            lease = port.node.dhcp(timeout)
        except LabError as exc:
            port.note = "no DHCP lease: " + str(exc).splitlines()[0]
            return
        port.address, port.gateway = lease.cidr, lease.router

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(wanting)) as pool:
        list(pool.map(one, wanting))


def _vm_name(host: str, vm: str, taken: Set[str]) -> str:
    """A lab node name for a guest interface: unique across hosts, safe for the lab."""
    base = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in f"{host}.{vm}")[:60]
    name, number = base, 0
    while name in taken:
        number += 1
        name = f"{base[:56]}-{number}"
    taken.add(name)
    return name


def _top_down(subnet: Any, taken: Set[Any]) -> Iterator[Any]:
    """Addresses from the top of `subnet` down, skipping `taken` (DHCP ranges sit low by habit)."""
    for address in reversed(list(subnet.hosts())):
        if address not in taken:
            yield address
