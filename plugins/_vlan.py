"""VLAN sub-interfaces as bridge ports: a port named PARENT.ID (the kernel's, initscripts' and netplan's
own convention, e.g. `ens2.100`) is VLAN ID on NIC PARENT. A library for the target plugins and the
`vlan` plugin, not a plugin itself."""
from __future__ import annotations

import re
from typing import Any, Dict, NamedTuple, Optional, Tuple

_NAME = r"(?P<parent>.+)\.(?P<id>[0-9]+)"   # compiled when a name has a dot (most ports have none)
VLAN_MIN, VLAN_MAX = 1, 4094   # 0 (priority tags) and 4095 are reserved by 802.1Q


class Vlan(NamedTuple):   # not a dataclass: Python 3.11 compiles a dataclass's methods at import (~0.4 ms)
    """A VLAN sub-interface PARENT.ID a host needs, and the bridge it is a port of."""
    name: str          # the sub-interface, PARENT.ID
    parent: str        # the NIC that carries the tagged frames
    id: int
    master: str        # the bridge it is a port of (a host bridge, or a libvirt network's bridge)
    host_bridge: bool  # True: a host bridge's port; False: a libvirt network's trunk port


def split(name: str) -> Optional[Tuple[str, str]]:
    """(PARENT, ID as written) of a port name PARENT.ID, else None (a plain NIC)."""
    match = re.fullmatch(_NAME, name) if "." in name else None
    return (match["parent"], match["id"]) if match else None


def host_vlans(host: Any, bridge_of: Optional[Dict[str, str]] = None) -> Dict[str, Vlan]:
    """Every VLAN port of a host (valid ids only), by name, in profile order: host bridges' ports, then
    libvirt networks' trunk ports (bridge_of: network name → its bridge, when known)."""
    found: Dict[str, Vlan] = {}
    for bridge in host.bridges.values():
        if bridge.external:
            continue
        for port in bridge.ports:
            _add(found, port, bridge.name, True)
    for net in host.networks.values():
        if net.state == "absent":
            continue
        for port in net.ports:
            _add(found, port, (bridge_of or {}).get(net.name) or net.bridge or "", False)
    return found


def _add(found: Dict[str, Vlan], port: str, master: str, host_bridge: bool) -> None:
    parts = split(port)
    if parts is None or port in found or parts[1] != str(int(parts[1])):
        return
    if VLAN_MIN <= int(parts[1]) <= VLAN_MAX:
        found[port] = Vlan(port, parts[0], int(parts[1]), master, host_bridge)
