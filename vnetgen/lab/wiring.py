"""How the lab stands in for the hosts' surroundings: the profile's NICs on lab LANs or cabled to each
other, uplinks for hosts without a way out, upstream routes for routed networks, and which L2
segments the result joins (what a guest can reach, where DHCP serves)."""
from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ..validate import UnionFind
from .hosts import LabHost, lab_os_release
from .upstream import LabLan
from .world import Lab

# Lab subnets the profile cannot know: RFC 2544's benchmark range, never routed anywhere real.
_POOL = ipaddress.ip_network("198.18.0.0/15")
_WAN = ipaddress.ip_network("203.0.113.0/24")  # the lab router's "internet" side (RFC 5737)


class Wiring:
    """How the lab stands in for the hosts' surroundings."""

    def __init__(self, profile: Any, plans: Sequence[Any]) -> None:
        self.profile = profile
        self.plans = plans
        self.segments = UnionFind()
        self.lans: Dict[str, LabLan] = {}       # by subnet
        self.upstream_ip: Dict[str, str] = {}   # host → address the router reaches
        self.dhcp_nodes: Set[Any] = set()       # L2 nodes with a DHCP server
        self.lines: List[str] = []              # what was wired, for the report
        used = self._profile_subnets()
        self.pool = (net for net in _POOL.subnets(new_prefix=24) if not any(net.overlaps(u) for u in used))

    # -- small tools ---------------------------------------------------------------------

    def _profile_subnets(self) -> List[Any]:
        nets = [_WAN]
        for host in self.profile.hosts.values():
            nets += [n.ip.network for n in host.networks.values() if n.ip is not None]
            nets += [b.ip.network for b in host.bridges.values() if b.ip is not None]
            nets += [n.ip.network for n in host.nics.values() if n.ip is not None]
        return nets

    def _lan(self, lab: Lab, subnet: Any = None, dhcp: bool = True, gateway: Optional[str] = None,
             used: Sequence[Any] = ()) -> LabLan:
        """The lab LAN of `subnet` (shared by every host on it), or a fresh one from the pool."""
        subnet = ipaddress.ip_network(subnet) if subnet is not None else next(self.pool)
        key = str(subnet)
        if key in self.lans:
            return self.lans[key]
        taken = {ipaddress.ip_address(u) for u in used}
        if gateway is None:
            gateway = str(next(a for a in subnet.hosts() if a not in taken))
        taken.add(ipaddress.ip_address(gateway))
        rng = _free_range(subnet, taken) if dhcp else None
        lan = lab.lan(f"lan{len(self.lans)}", str(subnet), dhcp=rng is not None, gateway_ip=gateway,
                      dhcp_range=rng)
        self.lans[key] = lan
        if rng:
            self.dhcp_nodes.add(("lan", lan.name))
        self.lines.append(f"LAN {subnet} on the lab router (gateway {gateway}"
                                 + (f", DHCP {rng[0]}-{rng[1]})" if rng else ", no DHCP)"))
        return lan

    def _addresses_in(self, subnet: Any) -> List[str]:
        found = []
        for host in self.profile.hosts.values():
            for item in list(host.bridges.values()) + list(host.nics.values()):
                if item.ip is not None and item.ip.ip in subnet:
                    found.append(str(item.ip.ip))
        return found

    # -- wiring --------------------------------------------------------------------------

    def wire(self, lab: Lab) -> Dict[str, LabHost]:
        """Lab hosts for the chosen hosts, with their NICs, cables, LANs and an upstream route."""
        router = lab.router()
        hosts = {plan.name: lab.host(plan.name) for plan in self.plans}
        port_bridge: Dict[Tuple[str, str], str] = {}
        for plan in self.plans:
            for bridge in plan.host.bridges.values():
                for port in bridge.ports:
                    port_bridge[(plan.name, port)] = bridge.name
            for net_plan in plan.networks.values():
                if net_plan.bridge and net_plan.mode.libvirt_bridge and net_plan.net.state != "absent":
                    for port in net_plan.net.ports:
                        port_bridge[(plan.name, port)] = net_plan.bridge
        cables = {}
        for link in self.profile.links:
            a, b = link.ends
            if a.host in hosts and b.host in hosts:
                cables[(a.host, a.nic)] = (b.host, b.nic)
                cables[(b.host, b.nic)] = (a.host, a.nic)
        cabled: Set[Tuple[str, str]] = set()
        for plan in self.plans:
            self._wire_host(lab, plan, hosts, port_bridge, cables, cabled)
            release = lab_os_release(plan.target)
            if release:   # the host says which OS it stands for (`vnetgen import` reads it)
                hosts[plan.name].set_os_release(release)
        self._uplinks(lab, hosts)
        for plan in self.plans:
            if "NetworkManager" in plan.target.lab_services:
                self._networkmanager(hosts[plan.name])
        for plan in self.plans:
            for net_plan in plan.networks.values():
                # Routed networks need upstream to know them (the seed: "put static routes").
                if net_plan.mode.forward in ("route", "open") and net_plan.net.ip is not None and net_plan.net.state == "active":
                    via = self.upstream_ip[plan.name]
                    router.add_route(str(net_plan.net.ip.network), via)
                    self.lines.append(f"upstream route {net_plan.net.ip.network} via {plan.name} ({via}), "
                                             f"as routed mode requires")
        return hosts

    def _networkmanager(self, host: LabHost) -> None:
        """NetworkManager runs the host, each wired NIC with a profile of its own, as on an installed host."""
        host.start_networkmanager()
        for ifname in host.interfaces():
            if ifname != "lo":
                host.nm_adopt(ifname)
        self.lines.append(f"{host.name}: NetworkManager runs; each NIC has its own profile (System NIC)")

    def _hwaddr(self, plan: Any, nic: str) -> Optional[str]:
        found = plan.host.nics.get(nic)
        return found.hwaddr.lower() if found is not None and found.hwaddr else None

    def _wire_host(self, lab: Lab, plan: Any, hosts: Dict[str, LabHost],
                   port_bridge: Dict[Tuple[str, str], str], cables: Dict, cabled: Set) -> None:
        name, host = plan.name, hosts[plan.name]
        done: Set[str] = set()
        for index, bridge in enumerate(plan.host.bridges.values()):
            node = ("br", name, bridge.name)
            self.segments.find(node)
            if bridge.external:
                # The profile says it exists already: make it, joined to a LAN of its own.
                host.run(["ip", "link", "add", bridge.name, "type", "bridge"])
                host.run(["ip", "link", "set", bridge.name, "up"])
                lan = self._lan(lab)
                uplink = self._free_ifname(plan, f"rhx{index}")
                lab.nic(host, uplink, lan)
                host.run(["ip", "link", "set", uplink, "master", bridge.name])
                self.segments.join(node, ("lan", lan.name))
                self.lines.append(f"{name}: external bridge {bridge.name} made by the lab, "
                                         f"joined to LAN {lan.subnet}")
                continue
            for number, port in enumerate(bridge.ports):
                done.add(port)
                if number == 0 and bridge.ip is not None:
                    subnet = bridge.ip.network
                    gateway = str(bridge.gateway) if bridge.gateway is not None else None
                    lan = self._lan(lab, subnet, gateway=gateway, used=self._addresses_in(subnet))
                    lab.nic(host, port, lan, mac=self._hwaddr(plan, port), ip=str(bridge.ip), gateway=gateway)
                    self.upstream_ip.setdefault(name, str(bridge.ip.ip))
                    self.lines.append(f"{name}: NIC {port} on LAN {subnet} holding {bridge.ip}"
                                             + (f", default via {gateway}" if gateway else "")
                                             + f" (the runbook moves it to {bridge.name})")
                elif number == 0:
                    lan = self._lan(lab)
                    lab.nic(host, port, lan, mac=self._hwaddr(plan, port))
                    self.lines.append(f"{name}: NIC {port} on LAN {lan.subnet}")
                else:
                    # A second cable into the same LAN would be a loop: a dead-end segment instead.
                    lan = self._lan(lab, dhcp=False)
                    lab.nic(host, port, lan, mac=self._hwaddr(plan, port))
                    self.lines.append(f"{name}: NIC {port} on a LAN of its own ({lan.subnet})")
                self.segments.join(node, ("lan", lan.name))
        for port, bridge in ((p, b) for (h, p), b in port_bridge.items() if h == name):
            if port in done:
                continue
            done.add(port)
            node = ("br", name, bridge)
            far = cables.get((name, port))
            if far is not None:
                self.segments.join(node, ("br", far[0], port_bridge.get(far, "?")))
                if (name, port) not in cabled:
                    far_plan = next(p for p in self.plans if p.name == far[0])
                    lab.link(host, port, hosts[far[0]], far[1], mac_a=self._hwaddr(plan, port),
                             mac_b=self._hwaddr(far_plan, far[1]))
                    cabled.update({(name, port), far})
                    self.lines.append(f"cable {name}:{port} — {far[0]}:{far[1]}")
                continue
            lan = self._lan(lab, dhcp=False)
            lab.nic(host, port, lan, mac=self._hwaddr(plan, port))
            self.segments.join(node, ("lan", lan.name))
            self.lines.append(f"{name}: NIC {port} on a LAN of its own ({lan.subnet}); "
                                     "the far end of its link is not rehearsed")
        for nic in plan.host.nics.values():
            if nic.name in done:
                continue
            if nic.ip is not None:
                lan = self._lan(lab, nic.ip.network, used=self._addresses_in(nic.ip.network))
                lab.nic(host, nic.name, lan, mac=self._hwaddr(plan, nic.name), ip=str(nic.ip))
                self.upstream_ip.setdefault(name, str(nic.ip.ip))
                self.lines.append(f"{name}: NIC {nic.name} on LAN {nic.ip.network} holding {nic.ip}")
            else:
                lan = self._lan(lab, dhcp=False)
                lab.nic(host, nic.name, lan, mac=self._hwaddr(plan, nic.name))
                self.lines.append(f"{name}: NIC {nic.name} on a LAN of its own ({lan.subnet})")

    def _free_ifname(self, plan: Any, wanted: str) -> str:
        taken = set(plan.host.nics) | set(plan.host.bridges) | {n.bridge for n in plan.networks.values() if n.bridge}
        for p in plan.host.networks.values():
            taken.update(p.ports)
        candidate, number = wanted, 0
        while candidate in taken:
            number += 1
            candidate = f"{wanted}{number}"
        return candidate

    def _uplinks(self, lab: Lab, hosts: Dict[str, LabHost]) -> None:
        """A host whose profile gives it no way out gets one (every real host has one): an uplink
        NIC on a lab LAN, its default route, so NAT to the "internet" host can be shown."""
        lan = None
        for plan in self.plans:
            has_default = any(b.gateway is not None and b.ports and not b.external for b in plan.host.bridges.values())
            if has_default:
                continue
            if lan is None:
                lan = self._lan(lab, dhcp=False)
            address = lan.subnet.network_address + 10 + len(self.upstream_ip)
            ifname = self._free_ifname(plan, "uplink0")
            lab.nic(hosts[plan.name], ifname, lan, ip=f"{address}/{lan.subnet.prefixlen}", gateway=lan.gateway_ip)
            self.upstream_ip[plan.name] = str(address)
            self.lines.append(f"{plan.name}: uplink {ifname} {address}/{lan.subnet.prefixlen} on LAN "
                                     f"{lan.subnet}, default via {lan.gateway_ip} (stands in for its way out)")


def _free_range(subnet: Any, taken: Set[Any]) -> Optional[Tuple[str, str]]:
    """The longest run of free host addresses (at most 100) for a lab LAN's DHCP range."""
    best: Tuple[int, Any, Any] = (0, None, None)
    start = prev = None
    length = 0
    for address in list(subnet.hosts()) + [None]:
        if address is not None and address not in taken:
            if start is None:
                start, length = address, 0
            length += 1
            prev = address
            if length > best[0]:
                best = (length, start, prev)
        else:
            start = None
    if best[0] == 0:
        return None
    first = best[1]
    last = min(best[2], first + 99)
    return str(first), str(last)
