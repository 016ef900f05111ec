"""A network's settings beyond the seed's (mtu, forward dev, NAT ranges, bandwidth, VLAN, portgroups), each defined once:
its expected value, what `net-dumpxml` shows of it, the runbook's tokens and the words REVIEW.md and
`vnetgen diff` use. A setting the profile leaves out is libvirt's to choose, never drift."""
from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, Callable, Dict, List, Optional, Tuple

from .dataclassc import dataclass
from .netdns import DNS_ROWS
from .netip6 import ROW as IP6_ROW

RATE_ATTRS = ("average", "peak", "burst")   # libvirt's attribute order in net-dumpxml
DIRECTIONS = ("inbound", "outbound")


def span(text: Optional[str], parse: Callable[[str], Any]) -> Optional[Tuple[Any, Any]]:
    """"START-END" (or one value, START = END) parsed with `parse`; ValueError when unreadable."""
    if text is None:
        return None
    start, _, end = text.partition("-")
    return parse(start), parse(end or start)


def nat_addresses(net: Any) -> Optional[Tuple[IPv4Address, IPv4Address]]:
    return span(net.nat.addresses if net.nat else None, IPv4Address)


def nat_ports(net: Any) -> Optional[Tuple[int, int]]:
    return span(net.nat.ports if net.nat else None, int)


def rates(net: Any) -> Dict[str, Dict[str, int]]:
    """The profile's bandwidth as net-dumpxml shows it: direction → attribute → value."""
    found: Dict[str, Dict[str, int]] = {}
    for direction in DIRECTIONS:
        rate = getattr(net.bandwidth, direction, None) if net.bandwidth else None
        if rate is not None:
            found[direction] = {k: getattr(rate, k) for k in RATE_ATTRS if getattr(rate, k) is not None}
    return found


def rate_line(direction: str, attrs: Dict[str, int]) -> str:
    """How libvirt prints one direction of <bandwidth>."""
    return f"<{direction} " + " ".join(f"{k}='{v}'" for k, v in attrs.items()) + "/>"


def _nat_expected(net: Any) -> Optional[Dict[str, str]]:
    wanted = {}
    for key, value in (("addresses", nat_addresses(net)), ("ports", nat_ports(net))):
        if value is not None:
            wanted[key] = f"{value[0]}-{value[1]}"
    return wanted or None


def _nat_observed(definition: Any, expected: Dict[str, str]) -> Dict[str, Optional[str]]:
    """Only what the profile sets: libvirt fills in ports 1024-65535 itself when the profile gives none."""
    seen = {"addresses": definition.nat_addresses, "ports": definition.nat_ports}
    return {k: (f"{seen[k][0]}-{seen[k][1]}" if seen[k] else None) for k in expected}


def _nat_tokens(plan: Any, value: Dict[str, str]) -> Tuple[str, ...]:
    tokens = []
    for key, element in (("addresses", "address"), ("ports", "port")):
        if key in value:
            start, end = value[key].split("-")
            tokens.append(f"has:<{element} start='{start}' end='{end}'/>")
    return tuple(tokens)


def _nat_words(value: Dict[str, str]) -> str:
    return "NAT " + ", ".join(f"{k} {v}" for k, v in value.items())


def _bandwidth_words(value: Dict[str, Dict[str, int]]) -> str:
    parts = []
    for direction, attrs in value.items():
        shown = [f"{attrs['average']} kB/s"] if "average" in attrs else []
        shown += [f"peak {attrs['peak']} kB/s"] if "peak" in attrs else []
        shown += [f"burst {attrs['burst']} kB"] if "burst" in attrs else []
        parts.append(f"{direction} " + " ".join(shown))
    return "bandwidth " + ", ".join(parts)


def vlan_words(tags: List[int]) -> str:
    return ("VLAN trunk " if len(tags) > 1 else "VLAN ") + ", ".join(str(t) for t in tags)


def _vlan_tokens(tags: List[int]) -> Tuple[str, ...]:
    # The runbook matches lines: a tag of a portgroup matches too (the audit compares exactly).
    return (("has:<vlan trunk='yes'>",) if len(tags) > 1 else ()) + tuple(f"has:<tag id='{t}'/>" for t in tags)


def _portgroups_expected(net: Any) -> Optional[Dict[str, Dict[str, Any]]]:
    return {name: {"default": g.default, "vlan": g.vlan} for name, g in sorted(net.portgroups.items())} or None


def _portgroups_observed(definition: Any, _: Any) -> Optional[Dict[str, Dict[str, Any]]]:
    return {name: {"default": default, "vlan": list(vlan) if vlan is not None else None}
            for name, default, vlan in sorted(definition.portgroups)} or None


def _portgroups_tokens(plan: Any, value: Dict[str, Dict[str, Any]]) -> Tuple[str, ...]:
    tokens: List[str] = [f"count:{len(value)}:<portgroup "]
    for name, group in value.items():
        tokens.append(f"has:<portgroup name='{name}'" + (" default='yes'" if group["default"] else ""))
        tokens.extend(_vlan_tokens(group["vlan"] or []))
    return tuple(tokens)


def _portgroups_words(value: Dict[str, Dict[str, Any]]) -> str:
    return "portgroups " + ", ".join(name + (" (default)" if g["default"] else "") +
                                     (f" {vlan_words(g['vlan'])}" if g["vlan"] else "") for name, g in value.items())


@dataclass(frozen=True)
class NetField:
    """One setting of a network's definition: a drift kind of its own, applied by redefining the network
    (and so a restart of a running one: `virsh net-update` cannot change it)."""

    kind: str
    summary: str
    expected: Callable[[Any], Any]             # network → JSON-able value, None when the profile leaves it out
    observed: Callable[[Any, Any], Any]        # (NetworkDef, expected) → the same shape, from net-dumpxml
    tokens: Callable[[Any, Any], Tuple[str, ...]]   # (NetworkPlan, expected) → net-dumpxml lines it shows
    words: Callable[[Any], str]                # expected → words, e.g. "MTU 9000"
    # A setting `virsh net-update SECTION` changes live (no restart): its section, and (expected, actual)
    # → the (verb, XML) updates that fix it. "": applied by redefining and restarting.
    live: str = ""
    updates: Optional[Callable[[Any, Any], List[Tuple[str, str]]]] = None


FIELDS: Tuple[NetField, ...] = (
    NetField("mtu", "the MTU of a libvirt-created bridge (`<mtu size>`), when the profile sets one",
             lambda net: net.mtu, lambda d, _: d.mtu,
             lambda plan, v: (f"has:<mtu size='{v}'/>",), lambda v: f"MTU {v}"),
    NetField("forward-dev", "the interface a nat/route network forwards through (`<forward dev>`), when set",
             lambda net: net.dev, lambda d, _: d.forward_dev,
             lambda plan, v: (f"has:<forward dev='{v}' mode='{plan.forward}'",),
             lambda v: f"forwarding through {v}"),
    NetField("nat-range", "the addresses and ports NAT uses (`<nat>`), when set (libvirt's default ports "
             "are not drift)", _nat_expected, _nat_observed, _nat_tokens, _nat_words),
    NetField("bandwidth", "the network's traffic shaping (`<bandwidth>`), when set",
             lambda net: rates(net) or None, lambda d, _: {k: dict(v) for k, v in (d.bandwidth or ())} or None,
             lambda plan, v: tuple(f"has:{rate_line(k, a)}" for k, a in v.items()), _bandwidth_words),
    NetField("vlan", "the network's VLAN ids (`<vlan>`; ovs, hostdev and direct passthrough networks), when set",
             lambda net: net.vlan, lambda d, _: list(d.vlan) if d.vlan is not None else None,
             lambda plan, v: _vlan_tokens(v), vlan_words),
    NetField("portgroups", "the network's `<portgroup>`s (name, default, VLAN ids), when set",
             _portgroups_expected, _portgroups_observed, _portgroups_tokens, _portgroups_words),
)


FIELDS += tuple(NetField(*row) for row in DNS_ROWS)   # domain and dns (vnetgen/netdns.py)
FIELDS += (NetField(*IP6_ROW),)                        # ipv6 (vnetgen/netip6.py)


def set_fields(net: Any) -> List[Tuple[NetField, Any]]:
    """The fields `net` sets, with their expected values, in table order."""
    return [(f, value) for f in FIELDS for value in (f.expected(net),) if value is not None]


def details(net: Any) -> List[str]:
    """What REVIEW.md adds to a network's line."""
    return [f.words(value) for f, value in set_fields(net)]
