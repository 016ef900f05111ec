"""Parse `virsh net-dumpxml NAME`: a libvirt network's definition, by meaning rather than text."""

from __future__ import annotations

import ipaddress
import re
import socket
import uuid as uuidlib
from typing import Any, Dict, List, Optional, Tuple

from ..factbase import net_dumpxml_command
from .model import (DhcpHostDef, DnsDef, DnsForwarderDef, DnsHostDef, DnsSrvDef, DnsTxtDef, FactError, IPAddress,
                    IpDef, NetworkDef, check_virsh_error, numbered_lines, parse_mac, parse_uint)

_STP = {"on": True, "off": False, "yes": True, "no": False}
_LOCATION = re.compile(r",? line \d+, column \d+$")


class NetDumpXml:
    """`virsh net-dumpxml [--inactive] --network NAME` → NetworkDef."""

    def command(self, name: str, inactive: bool = False) -> List[str]:
        return net_dumpxml_command(name, inactive)

    def process(self, text: str, source: str) -> NetworkDef:
        start = text.lstrip()[:6]   # the first non-blank line starts there: the lines are looked at only for an error
        if not start or start == "error:":
            first = next(((n, line) for n, line in numbered_lines(text) if line.strip()), None)
            if first is None:
                raise FactError(source, 1, "empty capture: expected <network>")
            check_virsh_error(first[1], source, first[0])
        root = _parse_xml(text, source)
        return _network(root, source)


_PARSER: List[Any] = []   # one parser for every capture file: an audit reads thousands


def _parser() -> Any:
    # Imported here: `import vnetgen.facts` stays cheap for the commands that need no XML.
    if not _PARSER:
        from lxml import etree

        _PARSER.append(etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                                       load_dtd=False, remove_comments=True, remove_pis=True))
    return _PARSER[0]


def _parse_xml(text: str, source: str, root_tag: str = "network") -> Any:
    from lxml import etree

    parser = _parser()
    # Bytes, not str: lxml refuses a str with an encoding declaration or a NUL, and
    # surrogates (bytes that were not UTF-8) become invalid UTF-8 that it reports.
    data = text.encode("utf-8", "surrogatepass")
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        line, column = error.position if error.position and error.position[0] else (1, 0)
        # libxml2's message repeats ", line L, column C" after a newline: keep the first line.
        message = _LOCATION.sub("", str(error.msg).split("\n")[0]).strip()
        raise FactError(source, line, f"not well-formed XML: {message} (column {column})") from None
    except (etree.LxmlError, ValueError) as error:
        raise FactError(source, 1, f"unreadable XML: {error}") from None
    if root.getroottree().docinfo.doctype:
        # libvirt never writes one; a DTD is only a way to smuggle in entities.
        raise FactError(source, 1, "a DOCTYPE is not expected in libvirt's XML")
    if root.tag != root_tag:
        raise FactError(source, _line(root), f"expected <{root_tag}>, got <{_tag(root)}>")
    return root


def _network(root: Any, source: str) -> NetworkDef:
    first: Dict[str, Any] = {}   # each tag's first child: one pass over <network> for every lookup below
    for child in root:
        first.setdefault(child.tag, child)
    name = first.get("name")
    if name is None or not (name.text or "").strip():
        raise FactError(source, _line(root), "<network> without <name>")
    forward = first.get("forward")
    bridge = first.get("bridge")
    mac = first.get("mac")
    virtualport = first.get("virtualport")
    # Elements a network rarely has are looked for only when there: the common network is parsed in
    # a few dozen microseconds, and an audit reads ten thousand of them.
    if forward is None:
        forward_mode, forward_dev, nat_ports, nat_addresses = None, None, None, None
        interfaces: Tuple[str, ...] = ()
        pci: Tuple[str, ...] = ()
        pf = None
    else:
        forward_mode = forward.get("mode", "nat")  # no mode: nat
        forward_dev = _forward_dev(forward)
        if len(forward):
            nat_ports, nat_addresses = _nat_ports(forward, source), _nat_addresses(forward, source)
            interfaces = tuple(i.get("dev", "") for i in _children(forward, "interface"))
            pci = tuple(_pci(a, source) for a in _children(forward, "address"))
            pf = _child(forward, "pf")
        else:
            nat_ports, nat_addresses, interfaces, pci, pf = None, None, (), (), None
    optional = first.keys() - _COMMON
    return NetworkDef(
        name=name.text.strip(),
        uuid=_uuid(first.get("uuid"), source),
        forward_mode=forward_mode,
        forward_dev=forward_dev,
        bridge=None if bridge is None else bridge.get("name"),
        stp=_stp(bridge, source),
        delay=_uint_attr(bridge, "delay", source),
        mac=_mac_attr(mac, "address", source),
        ips=_ips(root, source) if "ip" in first else (),
        connections=_uint_attr(root, "connections", source),
        nat_ports=nat_ports,
        nat_addresses=nat_addresses,
        mtu=_uint_attr(first.get("mtu"), "size", source) if optional else None,
        bandwidth=_bandwidth(first.get("bandwidth"), source) if optional else None,
        dns=_dns(first.get("domain"), first.get("dns"), source) if optional else None,
        interfaces=interfaces,
        pf=(pf.get("dev") if pf is not None else None),
        pci=pci,
        virtualport=(virtualport.get("type") if virtualport is not None else None),
        vlan=_vlan(first.get("vlan"), source) if optional else None,
        portgroups=tuple((g.get("name", ""), g.get("default") == "yes", _vlan(_child(g, "vlan"), source))
                         for g in _children(root, "portgroup")) if "portgroup" in first else (),
    )


# The children of <network> every network has or the parse above reads anyway; any other (mtu,
# bandwidth, domain, dns, vlan, ...) sends it through the lookups of the rarer settings.
_COMMON = frozenset(("name", "uuid", "forward", "bridge", "mac", "ip", "virtualport", "portgroup"))


def _pci(address: Any, source: str) -> str:
    """<address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x1'/> → 0000:03:10.1."""
    parts = []
    for key, width in (("domain", 4), ("bus", 2), ("slot", 2), ("function", 1)):
        text = (address.get(key) or "0").strip()
        try:
            value = int(text, 16 if text.lower().startswith("0x") else 10)
        except ValueError:
            raise FactError(source, _line(address), f"{key}={text[:20]!r} is not a number") from None
        parts.append(f"{value:0{width}x}")
    return f"{parts[0]}:{parts[1]}:{parts[2]}.{parts[3]}"


def _vlan(element: Optional[Any], source: str) -> Optional[Tuple[int, ...]]:
    if element is None:
        return None
    return tuple(_uint_attr(tag, "id", source) or 0 for tag in _children(element, "tag"))


def _children(element: Any, tag: str) -> List[Any]:
    # Only elements: comments and PIs are removed by the parser, and a namespaced
    # element ({uri}name, from a <metadata> of some tool) never equals a bare tag.
    return [child for child in element if child.tag == tag]


def _child(element: Optional[Any], tag: str) -> Optional[Any]:
    if element is None:
        return None
    for child in element:
        if child.tag == tag:
            return child
    return None


def _line(element: Any) -> int:
    return element.sourceline or 1


def _tag(element: Any) -> str:
    return element.tag if isinstance(element.tag, str) else "?"


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(element: Optional[Any], source: str) -> Optional[str]:
    if element is None:
        return None
    text = (element.text or "").strip()
    if _CANONICAL_UUID.fullmatch(text):
        return text   # what libvirt writes, and what str(UUID(text)) would give back
    try:
        return str(uuidlib.UUID(text))  # canonical: lower case, with dashes
    except ValueError:
        raise FactError(source, _line(element), f"uuid {text[:60]!r} is not a UUID") from None


def _forward_dev(forward: Optional[Any]) -> Optional[str]:
    if forward is None:
        return None
    if forward.get("dev"):
        return forward.get("dev")
    # libvirt expands dev= into <interface dev=…/>; a pool of them names the first.
    for interface in _children(forward, "interface"):
        if interface.get("dev"):
            return interface.get("dev")
    return None


def _stp(bridge: Optional[Any], source: str) -> Optional[bool]:
    value = None if bridge is None else bridge.get("stp")
    if value is None:
        return None
    if value not in _STP:
        raise FactError(source, _line(bridge), f"stp={value[:20]!r} is neither 'on' nor 'off'")
    return _STP[value]


def _uint_attr(element: Optional[Any], attribute: str, source: str) -> Optional[int]:
    value = None if element is None else element.get(attribute)
    if value is None:
        return None
    return parse_uint(value.strip(), source, _line(element), f"{attribute}=")


def _mac_attr(element: Optional[Any], attribute: str, source: str) -> Optional[str]:
    value = None if element is None else element.get(attribute)
    if value is None:
        return None
    return parse_mac(value.strip(), source, _line(element))


def _address(element: Any, attribute: str, source: str) -> Optional[IPAddress]:
    value = element.get(attribute)
    if value is None:
        return None
    text = value.strip()
    try:
        # A dotted quad, the common case, without ipaddress's parser (inet_pton takes exactly the
        # dotted quads ipaddress takes: four decimal octets, no leading zeros); anything else as before.
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):
        pass
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise FactError(source, _line(element), f"{attribute}={value[:60]!r} is not an IP address") from None


def _nat_ports(forward: Optional[Any], source: str) -> Optional[Tuple[int, int]]:
    port = _child(_child(forward, "nat"), "port")
    if port is None:
        return None
    start = _uint_attr(port, "start", source)
    end = _uint_attr(port, "end", source)
    if start is None or end is None:
        raise FactError(source, _line(port), "<port> needs start= and end=")
    return (start, end)


def _nat_addresses(forward: Optional[Any], source: str) -> Optional[Tuple[IPAddress, IPAddress]]:
    address = _child(_child(forward, "nat"), "address")
    if address is None:
        return None
    start = _address(address, "start", source)
    if start is None:
        raise FactError(source, _line(address), "<address> needs start=")
    return (start, _address(address, "end", source) or start)


_RATE_ATTRS = ("average", "peak", "burst", "floor")


def _bandwidth(element: Optional[Any], source: str) -> Optional[Tuple[Tuple[str, Tuple[Tuple[str, int], ...]], ...]]:
    if element is None:
        return None
    found = []
    for direction in ("inbound", "outbound"):
        rate = _child(element, direction)
        if rate is not None:
            found.append((direction, tuple((k, _uint_attr(rate, k, source)) for k in _RATE_ATTRS
                                           if rate.get(k) is not None)))
    return tuple(found) or None


_YES_NO = {"yes": True, "no": False}


def _yes_no(element: Optional[Any], attribute: str, source: str) -> Optional[bool]:
    value = None if element is None else element.get(attribute)
    if value is None:
        return None
    if value not in _YES_NO:
        raise FactError(source, _line(element), f"{attribute}={value[:20]!r} is neither 'yes' nor 'no'")
    return _YES_NO[value]


def _dns(domain: Optional[Any], dns: Optional[Any], source: str) -> Optional[DnsDef]:
    if domain is None and dns is None:
        return None
    if domain is not None and not domain.get("name"):
        raise FactError(source, _line(domain), "<domain> without name=")
    records: Dict[str, List[Any]] = {"forwarder": [], "txt": [], "srv": [], "host": []}
    for element in dns if dns is not None else ():
        if element.tag == "forwarder":
            records["forwarder"].append(DnsForwarderDef(addr=element.get("addr"), domain=element.get("domain")))
        elif element.tag == "txt":
            records["txt"].append(DnsTxtDef(name=element.get("name") or "", value=element.get("value") or ""))
        elif element.tag == "srv":
            numbers = {k: _uint_attr(element, k, source) for k in ("port", "priority", "weight")}
            records["srv"].append(DnsSrvDef(service=element.get("service") or "", protocol=element.get("protocol") or "",
                                            domain=element.get("domain"), target=element.get("target"), **numbers))
        elif element.tag == "host":
            ip = _address(element, "ip", source)
            if ip is None:
                raise FactError(source, _line(element), "DNS <host> without ip=")
            names = tuple((n.text or "").strip() for n in _children(element, "hostname"))
            records["host"].append(DnsHostDef(ip=ip, names=names))
    ordered = {k: tuple(sorted(v, key=lambda r: tuple(str(x) for x in vars(r).values()))) for k, v in records.items()}
    return DnsDef(enable=_yes_no(dns, "enable", source), forward_plain_names=_yes_no(dns, "forwardPlainNames", source),
                  domain=None if domain is None else domain.get("name"),
                  domain_local_only=_yes_no(domain, "localOnly", source), forwarders=ordered["forwarder"],
                  txts=ordered["txt"], srvs=ordered["srv"], hosts=ordered["host"])


def _ips(root: Any, source: str) -> Tuple[IpDef, ...]:
    ips = [_ip(element, source) for element in _children(root, "ip")]
    if len(ips) < 2:
        return tuple(ips)
    # Sorted: the order of <ip> elements carries no meaning for the audit.
    return tuple(sorted(ips, key=lambda ip: (ip.address.version, int(ip.address.ip),
                                             ip.address.network.prefixlen)))


def _ip(element: Any, source: str) -> IpDef:
    address = _address(element, "address", source)
    if address is None:
        raise FactError(source, _line(element), "<ip> without address=")
    family = "ipv4" if address.version == 4 else "ipv6"
    declared = element.get("family")
    if declared is not None and declared != family:
        raise FactError(source, _line(element), f"family={declared[:20]!r} but the address is {family}")
    prefix = _prefix(element, address, source)
    if address.version == 4:   # from the number: no second parse of the address's text
        key = (int(address), prefix)
        interface: Any = _INTERFACES.get(key)
        if interface is None:
            interface = ipaddress.IPv4Interface(key)
            if len(_INTERFACES) >= 4096:   # bounded: a fleet's gateways repeat (192.168.122.1/24), few are new
                _INTERFACES.clear()
            _INTERFACES[key] = interface
    else:
        interface = ipaddress.ip_interface(f"{address}/{prefix}")
    ranges, hosts = _dhcp(element, source)
    return IpDef(family=family, address=interface, dhcp_ranges=ranges, dhcp_hosts=hosts)


def _prefix(element: Any, address: Any, source: str) -> int:
    prefix, netmask = element.get("prefix"), element.get("netmask")
    if prefix is not None and netmask is not None:
        raise FactError(source, _line(element), "<ip> with both prefix= and netmask=")
    if prefix is not None:
        value = parse_uint(prefix.strip(), source, _line(element), "prefix=")
        if value > address.max_prefixlen:
            raise FactError(source, _line(element), f"prefix={value} is too long for {address}")
        return value
    if netmask is not None:
        if address.version == 6:
            raise FactError(source, _line(element), "netmask= on an IPv6 address (libvirt wants prefix=)")
        try:
            return _netmask_prefix(netmask.strip())
        except ValueError:
            raise FactError(source, _line(element), f"netmask={netmask[:60]!r} is not a netmask") from None
    return _default_prefix(element, address, source)


_NETMASKS: Dict[str, int] = {}
_INTERFACES: Dict[Tuple[int, int], Any] = {}   # (address, prefix) → IPv4Interface: immutable, so shared


def _netmask_prefix(netmask: str) -> int:
    """The prefix length of a netmask (ValueError if it is none); the few netmasks of a fleet, remembered."""
    prefix = _NETMASKS.get(netmask)
    if prefix is None:
        prefix = ipaddress.ip_network(f"0.0.0.0/{netmask}").prefixlen
        if len(_NETMASKS) < 256:
            _NETMASKS[netmask] = prefix
    return prefix


def _default_prefix(element: Any, address: Any, source: str) -> int:
    # As libvirt does (virSocketAddrGetIPPrefix): IPv4 by its old class, IPv6 /64.
    if address.version == 6:
        return 64
    first = int(address) >> 24
    if first < 128:
        return 8
    if first < 192:
        return 16
    if first < 224:
        return 24
    raise FactError(source, _line(element), f"{address} has no prefix= and no class to infer one from")


def _dhcp(ip: Any, source: str) -> Tuple[Tuple[Tuple[Any, Any], ...], Tuple[DhcpHostDef, ...]]:
    ranges, hosts = [], []
    for dhcp in _children(ip, "dhcp"):
        for element in _children(dhcp, "range"):
            start, end = _address(element, "start", source), _address(element, "end", source)
            if start is None or end is None:
                raise FactError(source, _line(element), "<range> needs start= and end=")
            ranges.append((start, end))
        for element in _children(dhcp, "host"):
            hosts.append(_host(element, source))
    return (tuple(ranges) if len(ranges) < 2 else tuple(sorted(set(ranges), key=lambda r: (r[0].version, int(r[0]), int(r[1])))),
            tuple(hosts) if len(hosts) < 2 else tuple(sorted(set(hosts), key=_host_key)))


def _host(element: Any, source: str) -> DhcpHostDef:
    name, duid = element.get("name"), element.get("id")
    return DhcpHostDef(mac=_mac_attr(element, "mac", source), ip=_address(element, "ip", source),
                       name=None if name is None else name.strip(), id=None if duid is None else duid.strip())


def _host_key(host: DhcpHostDef) -> Tuple[int, int, str, str, str]:
    return (host.ip.version if host.ip else 0, int(host.ip) if host.ip else -1,
            host.mac or "", host.name or "", host.id or "")
