"""Parse iproute2's JSON (`ip -j -d link show type bridge`, `bridge -j link`): bridges where brctl is absent."""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..factbase import (bridge_ports_command, ip_addrs_command, ip_link_bridges_command, ip_links_command, ip_routes_command,
                        is_ifname)
from .model import BridgeInfo, BridgePort, FactError, LinkInfo, RouteInfo

# iproute2 prints a bridge id as "%.2x%.2x.%x:%x:%x:%x:%x:%x": the MAC bytes are
# NOT zero-padded ("8000.2:0:0:0:b0:2"). brctl pads them ("8000.02000000b002").
_IP_BRIDGE_ID = re.compile(r"([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5})")
_WS = " \t\n\r"


class IpLinkBridges:
    """`ip -j -d link show type bridge` → tuple of BridgeInfo, sorted by name.

    Ports are not in this output: each bridge has ports_known=False until
    `combine()` adds the ports from `bridge -j link`. Non-bridge links (as in
    `ip -j -d link show`) are skipped. Times are centiseconds; delay is in seconds.
    """

    def command(self) -> List[str]:
        return ip_link_bridges_command()

    def process(self, text: str, source: str) -> Tuple[BridgeInfo, ...]:
        bridges: Dict[str, BridgeInfo] = {}
        for number, link in json_array(text, source):
            bridge = _bridge(link, source, number)
            if bridge is None:
                continue
            if bridge.name in bridges:
                raise FactError(source, number, f"bridge {bridge.name!r} is listed twice")
            bridges[bridge.name] = bridge
        return tuple(bridges[name] for name in sorted(bridges))


class BridgePorts:
    """`bridge -j link` or `ip -j link show master BR` → tuple of BridgePort, sorted.

    Links without a master (in `ip -j -d link show`: the bridges themselves,
    loopback, veth peers) are skipped.
    """

    def command(self, master: Optional[str] = None) -> List[str]:
        return bridge_ports_command(master)

    def process(self, text: str, source: str) -> Tuple[BridgePort, ...]:
        ports = set()
        for number, link in json_array(text, source):
            name = _ifname(link, source, number)
            master = link.get("master")
            # `bridge link` may list a bridge as its own port (vlan "self" entries).
            if master is None or master == name:
                continue
            if not isinstance(master, str) or not is_ifname(master):
                raise FactError(source, number, f"link {name!r} has master {master!r}: not an interface name")
            ports.add(BridgePort(name=name, master=master))
        return tuple(sorted(ports, key=lambda p: (p.master, p.name)))


def combine(bridges: Sequence[BridgeInfo], ports: Sequence[BridgePort]) -> Tuple[BridgeInfo, ...]:
    """Bridges from IpLinkBridges with their ports from BridgePorts (ports_known=True).

    A port whose master is not among the bridges is ignored: it belongs to a
    link of another kind (a bond, an Open vSwitch) or to a bridge created between
    the two captures.
    """
    by_master: Dict[str, List[str]] = {}
    for port in ports:
        by_master.setdefault(port.master, []).append(port.name)
    return tuple(
        BridgeInfo(name=b.name, bridge_id=b.bridge_id, stp=b.stp, delay=b.delay,
                   ports=tuple(sorted(set(by_master.get(b.name, ())))), ports_known=True)
        for b in sorted(bridges, key=lambda b: b.name)
    )


class IpLinks:
    """`ip -j -d link show` → tuple of LinkInfo (kind, master, admin state), sorted by name.

    The same output read by IpLinkBridges gives the bridges' settings; here every link counts,
    so that a port's master, a NIC's state and an interface name taken by something else are known.
    """

    def command(self) -> List[str]:
        return ip_links_command()

    def process(self, text: str, source: str) -> Tuple[LinkInfo, ...]:
        links: Dict[str, LinkInfo] = {}
        for number, link in json_array(text, source):
            name = _ifname(link, source, number)
            if "promiscuity" not in link and "linkinfo" not in link:
                raise FactError(source, number, "no link details: capture with `ip -j -d link show`")
            info = link.get("linkinfo")
            kind = info.get("info_kind") if isinstance(info, dict) else None
            master = link.get("master")
            if master is not None and (not isinstance(master, str) or not is_ifname(master)):
                raise FactError(source, number, f"link {name!r} has master {master!r}: not an interface name")
            flags = link.get("flags", [])
            if not isinstance(flags, list):
                raise FactError(source, number, f"flags of {name!r} is not a list")
            mac = link.get("address")
            if name in links:
                raise FactError(source, number, f"link {name!r} is listed twice")
            parent = link.get("link")
            data = info.get("info_data") if isinstance(info, dict) else None
            vlan_id = data.get("id") if kind == "vlan" and isinstance(data, dict) else None
            links[name] = LinkInfo(name=name, kind=kind if isinstance(kind, str) else None, master=master,
                                   up="UP" in flags, mac=mac if isinstance(mac, str) else None,
                                   parent=parent if isinstance(parent, str) and is_ifname(parent) else None,
                                   vlan_id=vlan_id if isinstance(vlan_id, int) and not isinstance(vlan_id, bool)
                                   else None)
        return tuple(links[name] for name in sorted(links))


class IpAddrs:
    """`ip -j addr show` → {ifname: ("ADDR/PREFIX", ...)}: global and host scope, IPv4 and IPv6, sorted.

    Link-local IPv6 addresses are left out: the kernel makes them by itself on every link.
    """

    def command(self) -> List[str]:
        return ip_addrs_command()

    def process(self, text: str, source: str) -> Dict[str, Tuple[str, ...]]:
        import ipaddress

        found: Dict[str, Tuple[str, ...]] = {}
        for number, link in json_array(text, source):
            name = _ifname(link, source, number)
            infos = link.get("addr_info", [])
            if not isinstance(infos, list):
                raise FactError(source, number, f"addr_info of {name!r} is not a list")
            addresses = set()
            for info in infos:
                if not isinstance(info, dict) or info.get("family") not in ("inet", "inet6"):
                    continue
                if info.get("scope") == "link":
                    continue
                try:
                    address = ipaddress.ip_interface(f"{info.get('local')}/{info.get('prefixlen')}")
                except ValueError:
                    raise FactError(source, number, f"address {info.get('local')!r}/{info.get('prefixlen')!r} "
                                                    f"of {name!r} is not an address") from None
                addresses.add(address.with_prefixlen)
            if name in found:
                raise FactError(source, number, f"link {name!r} is listed twice")
            found[name] = tuple(sorted(addresses))
        return found


class IpRoutes:
    """`ip -j route show` (or `ip -j -6 route show`) → tuple of RouteInfo, as listed."""

    def __init__(self, family: str = "ipv4") -> None:
        self.family = family

    def command(self) -> List[str]:
        return ip_routes_command(self.family)

    def process(self, text: str, source: str) -> Tuple[RouteInfo, ...]:
        routes = []
        for number, route in json_array(text, source):
            dst, dev, gateway = route.get("dst"), route.get("dev"), route.get("gateway")
            if not isinstance(dst, str) or not dst:
                raise FactError(source, number, f"route without a destination: {str(route)[:80]!r}")
            if dev is not None and (not isinstance(dev, str) or not is_ifname(dev)):
                raise FactError(source, number, f"route dev {dev!r} is not an interface name")
            if gateway is not None and not isinstance(gateway, str):
                raise FactError(source, number, f"route gateway {gateway!r} is not an address")
            routes.append(RouteInfo(dst=dst, dev=dev, gateway=gateway, family=self.family))
        return tuple(routes)


def bridges_from_iproute(links_text: str, links_source: str,
                         ports_text: str, ports_source: str) -> Tuple[BridgeInfo, ...]:
    """The two captures of a host without brctl, read and combined into BridgeInfo."""
    return combine(IpLinkBridges().process(links_text, links_source),
                   BridgePorts().process(ports_text, ports_source))


def json_array(text: str, source: str) -> List[Tuple[int, Dict[str, Any]]]:
    """The objects of a JSON array, each with the line it starts on (for `ip -j -p` too)."""
    decoder = json.JSONDecoder()
    lines = _LineCounter(text)
    pos = _skip_ws(text, 0)
    if not text.startswith("[", pos):
        raise FactError(source, lines.at(pos), "expected a JSON array (the output of `ip -j`)")
    items: List[Tuple[int, Dict[str, Any]]] = []
    pos = _skip_ws(text, pos + 1)
    closed = text.startswith("]", pos)
    while not closed:
        obj, end = _decode(decoder, text, pos, source, lines)
        if not isinstance(obj, dict):
            raise FactError(source, lines.at(pos), f"expected a JSON object, got {type(obj).__name__}")
        items.append((lines.at(pos), obj))
        pos = _skip_ws(text, end)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
        elif text.startswith("]", pos):
            closed = True
        else:
            raise FactError(source, lines.at(pos), "expected ',' or ']' in the JSON array")
    rest = _skip_ws(text, pos + 1)
    if rest != len(text):
        raise FactError(source, lines.at(rest), "unexpected text after the JSON array")
    return items


class _LineCounter:
    """Line numbers of increasing offsets, counted once (a capture can be large)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def at(self, pos: int) -> int:
        if pos < self.pos:
            return self.text.count("\n", 0, pos) + 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _decode(decoder: json.JSONDecoder, text: str, pos: int, source: str,
            lines: _LineCounter) -> Tuple[Any, int]:
    try:
        return decoder.raw_decode(text, pos)
    except json.JSONDecodeError as error:
        raise FactError(source, error.lineno, f"invalid JSON: {error.msg}") from None
    except (ValueError, RecursionError) as error:
        # ValueError: an integer beyond Python's digit limit; RecursionError: deep nesting.
        raise FactError(source, lines.at(pos), f"unreadable JSON: {type(error).__name__}") from None


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _ifname(link: Dict[str, Any], source: str, number: int) -> str:
    name = link.get("ifname")
    if name is None:
        # `ip -j link show type bridge_slave` prints {} for every link that is not one.
        raise FactError(source, number, "link without 'ifname' (use `bridge -j link` or "
                                        "`ip -j link show master BR`, not `type bridge_slave`)")
    if not isinstance(name, str) or not is_ifname(name):
        raise FactError(source, number, f"ifname {name!r} is not an interface name")
    return name


def _bridge(link: Dict[str, Any], source: str, number: int) -> Optional[BridgeInfo]:
    name = _ifname(link, source, number)
    info = link.get("linkinfo")
    if info is None:
        # Without -d there is no linkinfo at all, and no "promiscuity" either; with -d
        # a link without linkinfo (loopback, a plain NIC) is simply not a bridge.
        if "promiscuity" not in link:
            raise FactError(source, number, "no link details: capture with `ip -j -d link show`")
        return None
    if not isinstance(info, dict):
        raise FactError(source, number, f"linkinfo of {name!r} is not an object")
    if info.get("info_kind") != "bridge":
        return None
    data = info.get("info_data", {})
    if not isinstance(data, dict):
        raise FactError(source, number, f"info_data of {name!r} is not an object")
    return BridgeInfo(name=name, bridge_id=_bridge_id(data, source, number),
                      stp=_stp(data, source, number), delay=_delay(data, source, number),
                      ports=(), ports_known=False)


def _bridge_id(data: Dict[str, Any], source: str, number: int) -> Optional[str]:
    value = data.get("bridge_id")
    if value is None:
        return None
    match = _IP_BRIDGE_ID.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise FactError(source, number, f"bridge_id {value!r} is not PRIO.MAC")
    mac = "".join(part.zfill(2) for part in match.group(2).split(":"))
    return f"{match.group(1)}.{mac}".lower()


def _stp(data: Dict[str, Any], source: str, number: int) -> Optional[bool]:
    value = data.get("stp_state")
    if value is None:
        return None
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise FactError(source, number, f"stp_state {value!r} is not 0, 1 or 2")
    return value != 0  # 1: kernel STP, 2: user-space STP (mstpd)


def _delay(data: Dict[str, Any], source: str, number: int) -> Optional[float]:
    value = data.get("forward_delay")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9:
        raise FactError(source, number, f"forward_delay {value!r} is not a number of centiseconds")
    return value / 100
