"""libvirt network XML, built with lxml from a NetworkPlan, and checked against network.rng."""
from __future__ import annotations

import functools
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from .netdns import add_xml as add_dns
from .netip6 import add_xml as add_ip6
from .netfields import rates

RNG_PATHS = ("/usr/share/libvirt/schemas/network.rng",)


def network_element(plan: Any) -> Any:
    """The <network> element libvirt expects for `plan`, driven only by its Mode's properties."""
    from lxml import etree

    net, mode = plan.net, plan.mode
    root = etree.Element("network")
    etree.SubElement(root, "name").text = net.name
    etree.SubElement(root, "uuid").text = plan.uuid
    if mode.forward:
        forward = etree.SubElement(root, "forward", mode=mode.forward)
        if net.dev:
            forward.set("dev", net.dev)
    if plan.bridge:
        bridge = etree.SubElement(root, "bridge", name=plan.bridge)
        if mode.libvirt_bridge:
            bridge.set("stp", "on" if plan.stp else "off")
            bridge.set("delay", str(plan.delay))
    if net.mtu is not None:
        etree.SubElement(root, "mtu", size=str(net.mtu))
    if plan.mac:
        etree.SubElement(root, "mac", address=plan.mac)
    add_dns(root, net)
    shaping = rates(net)
    if shaping:
        bandwidth = etree.SubElement(root, "bandwidth")
        for direction, attrs in shaping.items():
            etree.SubElement(bandwidth, direction, {k: str(v) for k, v in attrs.items()})
    _vlan(root, net.vlan)
    for group in net.portgroups.values():
        element = etree.SubElement(root, "portgroup", name=group.name)
        if group.default:
            element.set("default", "yes")
        _vlan(element, group.vlan)
    if net.ip is not None:
        ip = etree.SubElement(root, "ip", address=str(net.ip.ip), netmask=str(net.ip.netmask))
        if net.dhcp is not None:
            add_dhcp(ip, net.dhcp, "mac")
    add_ip6(root, net)
    return root


def generic_forward(plan: Any) -> Tuple[str, Optional[str]]:
    """The mode and dev= of network_element(plan)'s <forward> ("", None: none), without building it."""
    mode = plan.mode.forward
    if not mode:
        return "", None
    return mode, plan.net.dev or None


def add_dhcp(ip: Any, dhcp: Any, guest_key: str) -> None:
    """`<dhcp><range/><host …/>…</dhcp>` under an `<ip>`: a static lease names its guest by
    `guest_key` (mac for IPv4, id — the DUID — for IPv6), lower-cased as libvirt prints it."""
    from lxml import etree

    element = etree.SubElement(ip, "dhcp")
    etree.SubElement(element, "range", start=str(dhcp.start), end=str(dhcp.end))
    for lease in dhcp.hosts:
        host = etree.SubElement(element, "host")
        guest = getattr(lease, guest_key)
        if guest:
            host.set(guest_key, guest.lower())
        if lease.name:
            host.set("name", lease.name)
        host.set("ip", str(lease.ip))


def _vlan(parent: Any, tags: Any) -> None:
    """<vlan> (a trunk with two or more ids) under `parent`, when the profile gives ids."""
    from lxml import etree

    if tags:
        vlan = etree.SubElement(parent, "vlan", trunk="yes") if len(tags) > 1 else etree.SubElement(parent, "vlan")
        for tag in tags:
            etree.SubElement(vlan, "tag", id=str(tag))


def network_xml(plan: Any, element: Optional[Any] = None) -> str:
    """Serialize the plugin's element (or the generic one) the way libvirt lays it out."""
    from lxml import etree

    if element is None:
        element = network_element(plan)
    etree.indent(element, space="  ")
    return etree.tostring(element, encoding="unicode") + "\n"


@functools.lru_cache(maxsize=None)
def _schema(path: str) -> Any:
    from lxml import etree

    return etree.RelaxNG(file=path)   # libxml2 reads it: no Python tree of the schema (~0.1 ms)


def rng_path() -> Optional[str]:
    return next((p for p in RNG_PATHS if os.path.exists(p)), None)


# The values a fleet's network definitions differ in most, written as vnetgen writes them: a UUID in
# <uuid>, a unicast MAC in <mac address> and in a DHCP <host mac>. In network.rng each of these
# positions takes every value of its kind (basictypes.rng's UUID, uniMacAddr, macAddr), so two
# documents that differ only there are both valid or both not: rng_errors validates one of them.
_INTERCHANGEABLE = (
    r"(?<=<uuid>)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?=</uuid>)"
    r'|(?<=<mac address=")[0-9a-f][02468ace](?::[0-9a-f]{2}){5}(?=")'
    r'|(?<=<host mac=")[0-9a-f][02468ace](?::[0-9a-f]{2}){5}(?=")')
_VALID: Dict[Tuple[str, str], bool] = {}   # (schema, text with those values replaced) known valid
# The first document found valid, before its key is made: a process that validates one document (a
# one-network build) never compiles _INTERCHANGEABLE. Keyed into _VALID when a second one comes.
_UNKEYED: List[Tuple[str, str]] = []


def _key(path: str, text: str) -> Optional[Tuple[str, str]]:
    # NUL stands for a replaced value: no XML document holds one, so no other text gets the same key.
    return (path, re.sub(_INTERCHANGEABLE, "\0", text)) if "\0" not in text else None


def rng_errors(text: str, path: Optional[str] = None) -> Optional[str]:
    """None when `text` is valid against libvirt's network.rng (or no schema is installed).

    A fleet's networks are mostly the same definition under another UUID and MAC: a document whose
    only differences from one already found valid are such values (_INTERCHANGEABLE) is valid without
    validating it again. Errors are always those of `text` itself."""
    from lxml import etree

    path = path or rng_path()
    if path is None:
        return None
    key = None
    if _VALID or _UNKEYED:
        while _UNKEYED:
            known = _key(*_UNKEYED.pop())
            if known is not None:
                _VALID[known] = True
        key = _key(path, text)
        if key in _VALID:
            return None
    schema = _schema(path)
    if schema.validate(etree.fromstring(text.encode())):
        if key is not None:
            _VALID[key] = True
        elif not _VALID and not _UNKEYED:
            _UNKEYED.append((path, text))
        return None
    return "; ".join(f"line {e.line}: {e.message}" for e in schema.error_log)
