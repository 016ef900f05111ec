"""The hosts' surroundings: the upstream router, the "internet" host behind it, and the LANs it serves."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Dict, List, Optional, Tuple

from .nodes import LabNode, Owner


class LabRouter(LabNode):
    """The upstream router: owns the LAN bridges and a link to the "internet" node."""

    kind = "router"

    def __init__(self, lab: Owner, name: str, pid: int) -> None:
        super().__init__(lab, name, pid)
        self.internet: Optional[LabNode] = None
        self.internet_ip: Optional[str] = None
        self.lans: Dict[str, LabLan] = {}

    def add_route(self, dest: str, via: str) -> None:
        """Static route on the router, e.g. routed mode: 192.168.132.0/24 via the host."""
        self.ip("route", "replace", str(ipaddress.ip_network(dest, strict=False)), "via",
                str(ipaddress.ip_address(via)))


@dataclasses.dataclass
class LabLan:
    """An upstream L2 segment: a bridge in the router's netns, optionally with a DHCP server."""

    name: str
    router: LabRouter
    subnet: ipaddress.IPv4Network
    gateway_ip: str
    dhcp_range: Optional[Tuple[str, str]]
    leasefile: str
    ports: int = 0

    @property
    def bridge(self) -> str:
        return self.name

    def leases(self) -> List[Dict[str, str]]:
        """dnsmasq's lease file: [{'mac', 'ip', 'hostname'}]."""
        out = []
        try:
            with open(self.leasefile) as fh:
                for line in fh:
                    f = line.split()
                    if len(f) >= 4:
                        out.append({"mac": f[1], "ip": f[2], "hostname": f[3]})
        except OSError:
            pass
        return out
