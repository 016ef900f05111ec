"""`vnetgen import`: a profile v1 from what hosts run — read from captures (DIR/<host>/, the audit's
layout) or live on this machine — such that auditing the same state against it reports in sync.

What a capture shows is mapped onto the profile: every libvirt network (its mode from `<forward
mode>` through the registered modes' `forward`, bridge, stp/delay, mac and uuid pinned, IPv4
address, DHCP range and static leases, trunk ports on the bridge libvirt made), host bridges (ports,
address, default route via it, stp/delay), and the VMs (memory, vcpus, disk, NICs, `import: true`
from domxml/ of a layout-4 capture; older captures give only their NICs, kept as a comment). What vnetgen does not model is kept as a comment and listed;
anything unreadable is skipped with the file and the reason. Nothing from a capture reaches the
output unescaped: names must match the profile's name patterns, values are re-formatted from parsed
facts, and comments escape every non-printable character.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import tempfile
from dataclasses import field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

from .checks import AUTOMATIC_PORT_PREFIXES
from .dataclassc import dataclass
from .facts import DomDumpXml, DomIfList, FactError, NetList, NetListEntry, NetworkDef, VirshList
from .observe import (DOMAINS, DOMIFLIST, DOMXML, NET_LIST, NET_XML, OS_RELEASE, TIMEOUT, AuditError, Runner,
                      _Captures, _Live, run_command, sysctl_file)

__all__ = ["ImportError_", "Imported", "import_captures", "import_live", "render_profile"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DEFAULT_NAT_PORTS = (1024, 65535)


class ImportError_(Exception):
    """Nothing usable was found (exit 2)."""


# --- what one host gives ------------------------------------------------------------------------


@dataclass
class Entry:
    """A named object of the profile: its keys in output order, comments above and beside it."""

    name: str
    keys: List[Tuple[str, Any, str]] = field(default_factory=list)   # (key, value, trailing comment)
    notes: List[str] = field(default_factory=list)                   # comment lines above its keys
    comment_out: bool = False                                        # written only as a comment

    def set(self, key: str, value: Any, comment: str = "") -> None:
        self.keys.append((key, value, comment))

    def get(self, key: str) -> Any:
        return next((v for k, v, _ in self.keys if k == key), None)


@dataclass
class HostImport:
    name: str
    origin: str
    target: str = ""
    target_why: str = ""
    networks: List[Entry] = field(default_factory=list)
    bridges: List[Entry] = field(default_factory=list)
    vms: List[Entry] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)         # comment lines at the end of the host
    skipped: List[str] = field(default_factory=list)       # "WHERE: why", for stderr
    unmodelled: List[str] = field(default_factory=list)    # "WHAT: what", kept as comments, for stderr
    claimed: Set[str] = field(default_factory=set)         # networks a mode plugin claimed (no host bridge)
    # trunk ports of libvirt bridges, for guessing links: port → (network, subnet or None, has DHCP)
    trunks: Dict[str, Tuple[str, Optional[Any], bool]] = field(default_factory=dict)


@dataclass
class Imported:
    hosts: List[HostImport]
    links: List[Tuple[str, str, str]] = field(default_factory=list)   # (end, end, why guessed)
    skipped: List[str] = field(default_factory=list)
    source: str = ""
    live: Any = None    # a live import's command source: its answers are reused by the self-check

    def messages(self) -> List[str]:
        """stderr lines: what was skipped (file and reason) and what is kept only as a comment."""
        lines = [f"skipped {s}" for s in self.skipped]
        for host in self.hosts:
            lines += [f"{host.name}: target {host.target}: {host.target_why}"]
            lines += [f"{host.name}: skipped {s}" for s in host.skipped]
            lines += [f"{host.name}: not modelled (kept as a comment): {u}" for u in host.unmodelled]
        lines += [f"guessed link {a} -- {b}: {why} (marked as a guess in a comment)" for a, b, why in self.links]
        return [safe(line) for line in lines]


def safe(text: Any) -> str:
    """One printable ASCII line: control characters, newlines and non-ASCII escaped (\\x1b, \\n)."""
    return str(text).encode("unicode_escape", "backslashreplace").decode("ascii")


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and len(name.encode("utf-8", "surrogatepass")) <= 64


def valid_ifname(name: str) -> bool:
    return bool(_IFNAME.fullmatch(name)) and len(name) <= 15 and name != "lo"


def valid_host(name: str) -> bool:
    from .bundle import TOP_LEVEL

    return valid_name(name) and name.lower() not in {n.lower() for n in TOP_LEVEL}


def unicast(mac: Optional[str]) -> bool:
    if not mac:
        return False
    first = int(mac.split(":")[0], 16)
    return not first & 1 and mac.lower() != "00:00:00:00:00:00"


# --- reading a host ---------------------------------------------------------------------------------


class _Reader:
    """Reads through an observe source, turning unreadable files into "skipped" lines."""

    def __init__(self, source: Any, host: HostImport) -> None:
        self.source = source
        self.host = host

    def read(self, name: str, status_ok: bool = False) -> Optional[Tuple[str, str]]:
        try:
            got, why = self.source.get(name, required=False, status_ok=status_ok)
        except AuditError as error:
            self.host.skipped.append(str(error))
            return None
        return got

    def parse(self, fact: Any, got: Tuple[str, str]) -> Any:
        try:
            return fact.process(*got)
        except FactError as error:
            self.host.skipped.append(f"{error} (file skipped)")
            return None


def _modes(pm: Any) -> Dict[str, Any]:
    from .plugins import modes

    return modes(pm)


def _mode_for(forward: Optional[str], modes: Dict[str, Any]) -> Optional[Any]:
    """The registered mode whose `forward` is the network's <forward mode> ("" for none)."""
    wanted = forward or ""
    found = [m for m in modes.values() if m.forward == wanted and getattr(m, "importable", True)]
    if not found:
        return None
    # Several modes may share one forward mode (a plugin's macvtap-like mode): the one named after it
    # wins, else the first by name.
    found.sort(key=lambda m: (m.name != wanted, m.name))
    return found[0]


def _targets(pm: Any) -> Dict[str, Any]:
    from .plugins import targets

    return targets(pm)


def parse_os_release(text: str) -> Dict[str, str]:
    """KEY=value lines of os-release(5), values unquoted; anything else is ignored."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        found[key] = value
    return found


def _release_target(release: Dict[str, str], targets: Dict[str, Any]) -> Tuple[Optional[str], str]:
    """(the target /etc/os-release names, why) or (None, what it says): the targets claiming its ID,
    else the first word of ID_LIKE some target claims; two targets claiming one release name none."""
    os_id, version = release.get("ID", "").lower(), release.get("VERSION_ID", "")
    said = f"ID={os_id[:40]}" + (f", ID_LIKE={release['ID_LIKE'][:80]}" if release.get("ID_LIKE") else "") + \
        (f", VERSION_ID={version[:20]}" if version else "")
    for candidate in [os_id, *release.get("ID_LIKE", "").lower().split()]:
        claiming = sorted(name for name, t in targets.items() if candidate and t.claims_os(candidate, version))
        if len(claiming) == 1:
            return claiming[0], f"from the host's /etc/os-release ({said})"
        if claiming:
            return None, f"/etc/os-release ({said}) fits targets {', '.join(claiming)}"
    return None, f"/etc/os-release ({said}) names no release a target claims"


def _guess_target(host: HostImport, present: Set[str], pm: Any, release: Optional[Dict[str, str]] = None) -> Any:
    from .plugins import default_target

    targets = _targets(pm)
    if release is not None:
        name, why = _release_target(release, targets)
        if name is not None:
            host.target, host.target_why = name, why
            return targets[name]
    said = sorted(name for name, t in targets.items() if t.recognizes(frozenset(present)))
    default = default_target(pm) or sorted(targets)[0]
    if len(said) == 1:
        host.target = said[0]
        host.target_why = (f"guessed from the capture's files ({', '.join(sorted(present & _evidence(targets)))})"
                           if present & _evidence(targets) else "guessed from the capture's files")
    else:
        host.target = default
        others = ", ".join(n for n in sorted(targets) if n != default)
        host.target_why = (f"guessed (the default target): {'nothing in the capture tells' if not said else 'the capture fits ' + ', '.join(said)}"
                           f" which OS the host runs; set target to one of {others} if it is not {default}")
    if release is not None:
        host.target_why = f"{why}; {host.target_why}"
    return targets[host.target]


def _evidence(targets: Dict[str, Any]) -> Set[str]:
    """Capture files some target records and another does not: what a guess can rest on."""
    per = [{c.name for c in t.capture_files()} for t in targets.values()]
    every = set.intersection(*per) if per else set()
    return set().union(*per) - every if per else set()


def _observe_host(source: Any, host: HostImport, pm: Any, modes: Dict[str, Any], present: Set[str]) -> bool:
    """Fill `host` from one host's files; False when nothing usable was found."""
    reader = _Reader(source, host)
    got = reader.read(NET_LIST.path())
    listed: Optional[Dict[str, NetListEntry]] = None
    if got is None:
        host.skipped.append(f"{NET_LIST.path()}: {source.why(NET_LIST.path()) or 'missing'}; no network imported")
    else:
        entries = reader.parse(NetList(), got)
        if entries is not None:
            listed = {e.name: e for e in entries}
    got = reader.read(OS_RELEASE.path())
    target = _guess_target(host, present, pm, None if got is None else parse_os_release(got[0]))
    networking = None
    try:
        networking = target.observe(source)
    except (AuditError, FactError) as error:
        host.skipped.append(f"{error} (host bridges and trunk ports not imported)")
    definitions: Dict[str, Tuple[NetListEntry, NetworkDef, Any]] = {}
    for name, entry in sorted((listed or {}).items()):
        if not valid_name(name):
            host.skipped.append(f"network {name}: not a valid profile name (letters, digits, _ . -)")
            continue
        got = reader.read(NET_XML.path(name))
        if got is None:
            host.skipped.append(f"{NET_XML.path(name)}: {source.why(NET_XML.path(name)) or 'missing'}; "
                                f"network {name} not imported")
            continue
        parsed = _parse_network(got, host)
        if parsed is None:
            continue
        definition, root = parsed
        if definition.name != name:
            host.skipped.append(f"{got[1]}: holds network {definition.name}, expected {name} (file skipped)")
            continue
        definitions[name] = (entry, definition, root)
    libvirt_bridges = {}
    for name, (entry, definition, root) in definitions.items():
        net = _network(name, entry, definition, root, modes, networking, host,
                       pm.hook.vnetgen_import_network(definition=definition))
        if net is not None:
            host.networks.append(net)
            mode = modes[net.get("mode")]
            if mode.libvirt_bridge and definition.bridge:
                libvirt_bridges[definition.bridge] = name
    _host_bridges(host, networking, libvirt_bridges, modes, target)
    _vms(reader, host, {n.name for n in host.networks})
    return listed is not None or bool(host.bridges)


def _parse_network(got: Tuple[str, str], host: HostImport) -> Optional[Tuple[NetworkDef, Any]]:
    """net-dumpxml with the audit's safe parser (no entities, no network, no DTD, size-bounded)."""
    from .facts.model import check_virsh_error, numbered_lines
    from .facts.net_dumpxml import _network, _parse_xml

    text, where = got
    try:
        first = next(((n, line) for n, line in numbered_lines(text) if line.strip()), None)
        if first is None:
            raise FactError(where, 1, "empty capture: expected <network>")
        check_virsh_error(first[1], where, first[0])
        root = _parse_xml(text, where)
        return _network(root, where), root
    except FactError as error:
        host.skipped.append(f"{error} (file skipped)")
        return None


# What of a network's XML the profile models; anything else is kept as a comment.
_MODELLED = {"name", "uuid", "forward", "bridge", "mac", "ip"}
_BRIDGE_ATTRS = {"name", "stp", "delay"}
_IP_ATTRS = {"address", "netmask", "prefix", "family"}


def _unmodelled_xml(root: Any, definition: NetworkDef) -> List[str]:
    found = []
    for child in root:
        tag = child.tag if isinstance(child.tag, str) else "?"
        if tag not in _MODELLED:
            found.append(f"<{tag}>")
        elif tag == "bridge":
            found += [f"<bridge {a}=>" for a in sorted(child.attrib) if a not in _BRIDGE_ATTRS]
        elif tag == "forward":
            for sub in child:
                stag = sub.tag if isinstance(sub.tag, str) else "?"
                if stag == "nat":
                    extra = [s for s in sub if s.tag != "port"] or list(sub.attrib)
                    if extra or (definition.nat_ports not in (None, _DEFAULT_NAT_PORTS)):
                        found.append("<forward><nat> settings")
                elif stag != "interface":
                    found.append(f"<forward><{stag}>")
        elif tag == "ip":
            found += [f"<ip {a}=>" for a in sorted(child.attrib) if a not in _IP_ATTRS]
            for sub in child:
                stag = sub.tag if isinstance(sub.tag, str) else "?"
                if stag != "dhcp":
                    found.append(f"<ip><{stag}>")
                    continue
                found += [f"<dhcp><{s.tag if isinstance(s.tag, str) else '?'}>" for s in sub
                          if s.tag not in ("range", "host")]
                found += ["<dhcp><range> lease settings" for s in sub if s.tag == "range" and len(s)]
    return sorted(set(found))


def _network(name: str, entry: NetListEntry, definition: NetworkDef, root: Any, modes: Dict[str, Any],
             networking: Any, host: HostImport, claimed: Any = None) -> Optional[Entry]:
    what = f"network {name}"
    mode = modes.get(claimed.mode) if claimed is not None else _mode_for(definition.forward_mode, modes)
    if mode is None:
        forward = definition.forward_mode or "none"
        host.skipped.append(f"{what}: <forward mode='{forward}'> is no registered mode's (kept as a comment)")
        host.notes.append(f"network {name} (forward mode {forward}) not imported: no mode plugin for it")
        return None
    net = Entry(name)
    net.set("mode", mode.name)
    if claimed is not None:
        host.claimed.add(name)
        for key, value in claimed.keys:
            net.set(key, value)
    elif not mode.libvirt_bridge:
        if not definition.bridge or not valid_ifname(definition.bridge):
            host.skipped.append(f"{what}: mode {mode.name} needs a host bridge, the network names "
                                f"{definition.bridge or 'none'} (kept as a comment)")
            host.notes.append(f"{what} (mode {mode.name} without a usable bridge) not imported")
            return None
        net.set("bridge", definition.bridge)
    else:
        if definition.bridge is not None:
            if not valid_ifname(definition.bridge):
                host.skipped.append(f"{what}: bridge name {definition.bridge} is not a valid interface name")
                return None
            net.set("bridge", definition.bridge)
        if definition.stp is False:
            net.set("stp", False)
        if definition.delay:
            if definition.delay > 30:
                host.unmodelled.append(f"{what}: delay {definition.delay} (the profile allows 0..30)")
                net.notes.append(f"not modelled: forward delay {definition.delay} s")
            else:
                net.set("delay", definition.delay)
        if definition.mac is not None:
            if unicast(definition.mac):
                net.set("mac", Quoted(definition.mac.lower()))
            else:
                host.unmodelled.append(f"{what}: mac {definition.mac} is not unicast")
                net.notes.append(f"not modelled: mac {definition.mac} (not unicast)")
    if definition.uuid:
        net.set("uuid", definition.uuid)
    ipv4 = [ip for ip in definition.ips if ip.family == "ipv4"]
    ipv6 = [ip for ip in definition.ips if ip.family == "ipv6"]
    problem6 = (f"mode {mode.name} takes none" if mode.ip == "forbidden" else _ip6_problem(ipv6[0])) if ipv6 else ""
    kept = ipv4[:1] + ([] if problem6 else ipv6[:1])
    for ip in definition.ips:
        if any(ip is k for k in kept):
            continue
        why = problem6 if ipv6 and ip is ipv6[0] else "the profile speaks one <ip> per family"
        host.unmodelled.append(f"{what}: address {ip.address.with_prefixlen} ({why})")
        net.notes.append(f"not modelled: <ip> {ip.address.with_prefixlen}"
                         + (f" with DHCP {', '.join(f'{a}-{b}' for a, b in ip.dhcp_ranges)}" if ip.dhcp_ranges else "")
                         + (f" ({why})" if why == problem6 else ""))
    ipv6 = [] if problem6 else ipv6[:1]
    addresses = Items([])   # `ips:`, only with an IPv6 address: without one, `ip` and `dhcp` as before
    if ipv4:
        ip = ipv4[0]
        if mode.ip == "forbidden":
            host.unmodelled.append(f"{what}: address {ip.address.with_prefixlen} (mode {mode.name} takes none)")
            net.notes.append(f"not modelled: <ip> {ip.address.with_prefixlen} (mode {mode.name} takes none)")
        elif ipv6:
            item = Entry("ipv4")
            item.set("address", ip.address.with_prefixlen)
            _dhcp(item, ip, host, what)
            net.notes += item.notes
            item.notes = []
            addresses.items.append(item)
        else:
            net.set("ip", ip.address.with_prefixlen)
            _dhcp(net, ip, host, what)
    if ipv6:
        addresses.items.append(_ip6_entry(net, ipv6[0], host, what))
        net.set("ips", addresses)
    elif not ipv4 and mode.ip == "required":
        host.skipped.append(f"{what}: mode {mode.name} needs an IPv4 address, the network has none (kept as a comment)")
        host.notes.append(f"{what} (mode {mode.name} without an IPv4 address) not imported")
        return None
    modelled = _settings(net, definition, mode) + _vlans(net, definition, mode) + list(claimed.covers if claimed else ())
    if definition.forward_dev and "dev" not in modelled:
        host.unmodelled.append(f"{what}: <forward dev='{definition.forward_dev}'>")
        net.notes.append(f"not modelled: forward dev {definition.forward_dev}")
    for item in _unmodelled_xml(root, definition):
        if item in modelled or any(item.startswith(c) for c in modelled if c.startswith("<")):
            continue
        host.unmodelled.append(f"{what}: {item}")
        net.notes.append(f"not modelled: {item} (see its net-dumpxml; a bundle's definition leaves it out)")
    if mode.libvirt_bridge and entry.active and definition.bridge and networking is not None:
        ports = _ports(definition.bridge, networking, host, what)
        if ports:
            net.set("ports", ports)
            subnet = ipv4[0].address.network if ipv4 and mode.ip != "forbidden" else None
            for port in ports:
                host.trunks[port] = (name, subnet, bool(ipv4 and ipv4[0].dhcp_ranges))
    elif mode.libvirt_bridge and not entry.active:
        net.notes.append("stopped: its bridge and any trunk ports are not on the host to be seen")
    if not entry.autostart:
        net.set("autostart", False)
    if not entry.active:
        net.set("state", "inactive")
    if not entry.persistent:
        net.notes.append("transient in libvirt (net-create): a bundle defines it persistently")
    return net


def _settings(net: Entry, definition: NetworkDef, mode: Any) -> List[str]:
    """mtu, forward dev, NAT ranges and bandwidth, where the profile can say them as libvirt does
    (validate.py's and plugins/nat.py's rules); the XML items they account for, for _unmodelled_xml."""
    done: List[str] = []
    if not mode.libvirt_bridge:
        return done
    if definition.mtu is not None and 68 <= definition.mtu <= 65535:
        net.set("mtu", definition.mtu)
        done.append("<mtu>")
    dev = definition.forward_dev
    if dev and "dev" in mode.keys and valid_ifname(dev) and dev not in ("lo", definition.bridge):
        net.set("dev", dev)
        done.append("dev")
    addresses, ports = definition.nat_addresses, definition.nat_ports
    ipv4 = [ip.address.network for ip in definition.ips if ip.family == "ipv4"]
    nat: List[Tuple[str, Any]] = []
    if addresses and addresses[0].version == 4 and addresses[0] <= addresses[1] and \
            not any(a in subnet for a in addresses for subnet in ipv4):
        nat.append(("addresses", f"{addresses[0]}-{addresses[1]}"))
    if ports and ports != _DEFAULT_NAT_PORTS and 1 <= ports[0] <= ports[1] <= 65535:
        nat.append(("ports", f"{ports[0]}-{ports[1]}"))
    if nat and "nat" in mode.keys:
        net.set("nat", Flow(nat))
        done.append("<forward><nat> settings")
    rates = dict(definition.bandwidth or ())
    flows = []
    for direction, attrs in rates.items():
        values = dict(attrs)
        if set(values) - {"average", "peak", "burst"} or "average" not in values or \
                not all(1 <= v <= 999999999 for v in values.values()) or values.get("peak", values["average"]) < values["average"]:
            return done
        flows.append((direction, Flow([(k, values[k]) for k in ("average", "peak", "burst") if k in values])))
    if flows:
        net.set("bandwidth", Flow(flows))
        done.append("<bandwidth>")
    return done + _dns_keys(net, definition)


def _vlan_value(tags: Any) -> Any:
    return tags[0] if len(tags) == 1 else list(tags)


def _vlans(net: Entry, definition: NetworkDef, mode: Any) -> List[str]:
    """`vlan` and `portgroups` (netfields' keys) of a mode that takes them."""
    done = []
    if definition.vlan and "vlan" in mode.keys:
        net.set("vlan", _vlan_value(definition.vlan))
        done.append("<vlan>")
    if definition.portgroups and "portgroups" in mode.keys and all(valid_name(g[0]) for g in definition.portgroups):
        groups = Entry("portgroups")
        for group, default, tags in definition.portgroups:
            groups.set(group, Flow(([("default", True)] if default else []) +
                                   ([("vlan", _vlan_value(tags))] if tags else [])))
        net.set("portgroups", groups)
        done.append("<portgroup>")
    return done


def _dns_keys(net: Entry, definition: NetworkDef) -> List[str]:
    """`domain` and `dns` (netdns.py's keys) when the profile can say all of them as libvirt has them
    (every name a DNS name, each DNS host in the network's IPv4 subnet or its imported IPv6 one); else
    both stay "not modelled"."""
    from .netdns import SRV_ATTRS, name_problem

    dns = definition.dns
    ipv4 = [ip.address.network for ip in definition.ips if ip.family == "ipv4"][:1]
    # a DNS host's subnet, by family: an IPv6 one only when the network's IPv6 address was imported
    # (in `ips:`, set above when the profile can say it)
    subnets = {4: ipv4, 6: [ip.address.network for ip in definition.ips if ip.family == "ipv6"][:1]
               if net.get("ips") else []}
    if dns is None:
        return []
    names = [dns.domain] if dns.domain else []
    names += [n for h in dns.hosts for n in h.names] + [f.domain for f in dns.forwarders if f.domain]
    names += [t.name for t in dns.txts] + [getattr(s, k) for s in dns.srvs for k in ("domain", "target") if getattr(s, k)]
    if any(name_problem(n) for n in names) or any(not ipv4 or not any(h.ip in subnet for subnet in subnets[h.ip.version])
                                              or not h.names for h in dns.hosts) \
            or (dns.enable is False and dns.domain) or ((dns.domain or dns.hosts or dns.srvs or dns.txts) and not ipv4):
        return []
    if dns.domain:
        local = dns.domain_local_only
        net.set("domain", dns.domain if local is None else Flow([("name", dns.domain), ("local_only", local)]))
    if dns.enable is False:
        net.set("dns", False)
        return ["<domain>", "<dns>"]
    entry = Entry("dns")
    if dns.forward_plain_names is not None:
        entry.set("forward_plain_names", dns.forward_plain_names)
    for key, items in (("hosts", [[("ip", str(h.ip)), ("names", list(h.names))] for h in dns.hosts]),
                       ("forwarders", [[(k, v) for k, v in (("addr", f.addr), ("domain", f.domain)) if v is not None]
                                       for f in dns.forwarders]),
                       ("srv", [[(k, getattr(s, k)) for k in SRV_ATTRS if getattr(s, k) is not None] for s in dns.srvs]),
                       ("txt", [[("name", t.name), ("value", t.value)] for t in dns.txts])):
        if items:
            entry.set(key, Seq(items))
    if entry.keys:
        net.set("dns", entry)
    return ["<domain>", "<dns>"]


def _dhcp(net: Entry, ip: Any, host: HostImport, what: str) -> None:
    ranges = [r for r in ip.dhcp_ranges if r[0].version == 4]
    leases = []
    for lease in ip.dhcp_hosts:
        if lease.ip is None or lease.ip.version != 4:
            host.unmodelled.append(f"{what}: static lease without an IPv4 address ({lease.mac or lease.name})")
            net.notes.append(f"not modelled: static lease {lease.mac or lease.name} without an IPv4 address")
            continue
        item: List[Tuple[str, Any]] = []
        if lease.mac:
            item.append(("mac", Quoted(lease.mac.lower())))
        item.append(("ip", str(lease.ip)))
        if lease.name:
            if not valid_name(lease.name):
                host.skipped.append(f"{what}: static lease {lease.ip} named {lease.name}: not a valid "
                                    f"profile name")
                net.notes.append(f"not modelled: static lease {lease.ip} (its name is not a valid profile name)")
                continue
            item.append(("name", lease.name))
        leases.append(item)
    if not ranges:
        if leases:
            host.unmodelled.append(f"{what}: static leases without a DHCP range")
            net.notes.append("not modelled: static leases without a DHCP range: " +
                             ", ".join(str(dict(item)["ip"]) for item in leases))
        return
    for start, end in ranges[1:]:
        host.unmodelled.append(f"{what}: DHCP range {start}-{end} (the profile has one range)")
        net.notes.append(f"not modelled: DHCP range {start}-{end}")
    net.set("dhcp", _dhcp_entry(ranges[0], leases))


def _dhcp_entry(span: Tuple[Any, Any], hosts: List[List[Tuple[str, Any]]]) -> Entry:
    """`dhcp:` of either family: its range and static hosts."""
    dhcp = Entry("dhcp")
    dhcp.set("start", str(span[0]))
    dhcp.set("end", str(span[1]))
    if hosts:
        dhcp.set("hosts", Seq(hosts))
    return dhcp


def _ip6_problem(ip: Any) -> str:
    """Why an IPv6 `<ip>` is not one the profile can say (netip6.validate's rules), or ""."""
    from .netip6 import IPV6_PREFIX

    address = ip.address.ip
    if address.is_link_local or address.is_multicast or address.is_loopback or address.is_unspecified:
        return "not a global or unique-local address"
    if ip.address.network.prefixlen != IPV6_PREFIX:
        return f"prefix /{ip.address.network.prefixlen}: the profile's IPv6 prefix is a /{IPV6_PREFIX}"
    return ""


def _ip6_entry(net: Entry, ip: Any, host: HostImport, what: str) -> "Entry":
    """The IPv6 entry of `ips:`: address, DHCPv6 range and static hosts (by DUID `id` and/or `name`);
    what the profile cannot say (a second range, a host outside the prefix or without id and name)
    is a "not modelled" note of the network."""
    from .netip6 import host_line

    item = Entry("ipv6")
    item.set("address", ip.address.with_prefixlen)
    subnet = ip.address.network
    ranges = [r for r in ip.dhcp_ranges if r[0] in subnet and r[1] in subnet and r[0] <= r[1]
              and not r[0] <= ip.address.ip <= r[1]]
    for start, end in [r for r in ip.dhcp_ranges if r not in ranges[:1]]:
        host.unmodelled.append(f"{what}: DHCPv6 range {start}-{end}" + (" (the profile has one range)" if ranges
                                                                      else " (not inside the prefix)"))
        net.notes.append(f"not modelled: DHCPv6 range {start}-{end}")
    hosts = []
    for lease in ip.dhcp_hosts:
        problem = ("no IPv6 address" if lease.ip is None or lease.ip.version != 6 else
                   "outside the prefix" if lease.ip not in subnet or lease.ip == ip.address.ip else
                   "neither id nor name" if not (lease.id or lease.name) else
                   "a MAC address (libvirt takes none for IPv6)" if lease.mac else
                   "its id is not a DUID (hex pairs separated by ':')" if lease.id and not _DUID.fullmatch(lease.id) else
                   "its name is not a valid profile name" if lease.name and not valid_name(lease.name) else "")
        if problem:
            host.unmodelled.append(f"{what}: DHCPv6 host {host_line(lease)}: {problem}")
            net.notes.append(f"not modelled: DHCPv6 host {host_line(lease)} ({problem})")
            continue
        hosts.append([(k, v) for k, v in (("id", Quoted(lease.id) if lease.id else None), ("name", lease.name),
                                           ("ip", str(lease.ip))) if v is not None])
    if not ranges:
        if hosts:
            host.unmodelled.append(f"{what}: DHCPv6 hosts without a DHCPv6 range")
            net.notes.append("not modelled: DHCPv6 hosts without a DHCPv6 range: " +
                             ", ".join(str(dict(h)["ip"]) for h in hosts))
        return item
    item.set("dhcp", _dhcp_entry(ranges[0], hosts))
    return item


# The profile's DUID (schema.DUID): 4 to 130 hex pairs.
_DUID = re.compile(r"[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2}){3,129}")


def _automatic(port: str, bridge: str) -> bool:
    return port.startswith(AUTOMATIC_PORT_PREFIXES) or port == f"{bridge}-nic"


def _ports(bridge: str, networking: Any, host: HostImport, what: str) -> List[str]:
    info = networking.bridges.get(bridge)
    if info is None:
        return []
    if not info.ports_known:
        host.unmodelled.append(f"{what}: the ports of {bridge} ({networking.tool} could not list them)")
        return []
    ports = []
    for port in sorted(info.ports):
        if _automatic(port, bridge):
            continue
        if not valid_ifname(port):
            host.skipped.append(f"{what}: port {port} of {bridge}: not a valid interface name")
            continue
        ports.append(port)
    return ports


def _ipv4_addresses(networking: Any, dev: str) -> Optional[List[Any]]:
    links = networking.links
    if links is None or dev not in links or links[dev].addresses is None:
        return None
    found = []
    for text in links[dev].addresses:
        try:
            address = ipaddress.ip_interface(text)
        except ValueError:
            continue
        if address.version == 4 and not address.ip.is_loopback and not address.ip.is_link_local:
            found.append(address)
    return found


def _host_bridges(host: HostImport, networking: Any, libvirt_bridges: Dict[str, str], modes: Dict[str, Any],
                  target: Any) -> None:
    users: Dict[str, List[str]] = {}
    for net in host.networks:
        if not modes[net.get("mode")].libvirt_bridge and net.name not in host.claimed:
            users.setdefault(net.get("bridge"), []).append(net.name)
    seen = dict(networking.bridges) if networking is not None else {}
    for name in sorted(set(seen) | set(users)):
        if name in libvirt_bridges:
            continue
        if not valid_ifname(name):
            host.skipped.append(f"bridge {name}: not a valid interface name")
            continue
        bridge = Entry(name)
        info = seen.get(name)
        if info is None:
            bridge.set("external", True)
            why = "not captured" if networking is None else "not on the host"
            bridge.notes.append(f"used by {', '.join(users[name])} but {why}: declared external "
                                "(the audit reports it missing until it exists)")
            host.bridges.append(bridge)
            continue
        if name not in users:
            # Not used by any libvirt network (docker0, lxcbr0, a bridge of another tool): vnetgen only
            # checks it exists; what it holds is said, so that managing it is one edit away.
            bridge.set("external", True)
            held = _describe_bridge(name, info, networking)
            bridge.notes.append("no libvirt network uses it: external (vnetgen checks only that it exists); "
                                f"to manage it, drop external and add{held}")
            host.bridges.append(bridge)
            continue
        ports = _ports(name, networking, host, f"bridge {name}")
        if ports or info.ports_known:
            bridge.set("ports", ports)
        addresses = _ipv4_addresses(networking, name)
        if addresses is None:
            bridge.notes.append("its address is not in the capture (no ip-addr.json): add ip/gateway/dns if it has one")
        elif addresses:
            address = addresses[0]
            bridge.set("ip", address.with_prefixlen)
            for extra in addresses[1:]:
                host.unmodelled.append(f"bridge {name}: address {extra.with_prefixlen} (the profile has one)")
                bridge.notes.append(f"not modelled: address {extra.with_prefixlen}")
            gateway = _gateway(networking, name, address)
            if gateway is not None:
                bridge.set("gateway", gateway)
            _dns(bridge, networking, host)
        for port in ports:
            held = _ipv4_addresses(networking, port)
            for extra in held or ():
                host.unmodelled.append(f"bridge {name}: port {port} holds {extra.with_prefixlen} of its own")
                bridge.notes.append(f"not modelled: port {port} holds {extra.with_prefixlen} of its own")
        if info.stp is not None:
            bridge.set("stp", info.stp)
        # A target that sets the forward delay only with STP on (NetworkManager) leaves the kernel's
        # value of an STP-less bridge as it found it: it is no setting of the bridge, not imported.
        if info.delay is not None and (info.stp or target.delay_without_stp):
            seconds = int(round(info.delay))
            if abs(info.delay - seconds) >= 0.005 or not 0 <= seconds <= 30 or (info.stp and seconds < 2):
                host.unmodelled.append(f"bridge {name}: forward delay {info.delay:g} s")
                bridge.notes.append(f"not modelled: forward delay {info.delay:g} s")
            else:
                bridge.set("delay", seconds)
        host.bridges.append(bridge)


def _dns(bridge: Entry, networking: Any, host: HostImport) -> None:
    """The resolvers the bridge's own configuration gives the host (a capture of layout 5 holds them)."""
    name = bridge.name
    why = networking.missing.get(f"resolvers {name}")
    if networking.resolvers is None or why:
        why = why or networking.missing.get("resolvers") or "not captured"
        bridge.notes.append(f"dns: its resolvers are not in the capture ({why}); add them (dns: [...]) if "
                            "this bridge's configuration gives them")
        return
    found = networking.resolvers.get(name, ())
    ipv4 = [a for a in found if ipaddress.ip_address(a).version == 4]
    for extra in [a for a in found if a not in ipv4[:3]]:
        host.unmodelled.append(f"bridge {name}: resolver {extra} (the profile has up to three IPv4 ones)")
        bridge.notes.append(f"not modelled: resolver {extra}")
    if ipv4:
        bridge.set("dns", ipv4[:3])


def _describe_bridge(name: str, info: Any, networking: Any) -> str:
    parts = []
    ports = [p for p in info.ports if not _automatic(p, name) and valid_ifname(p)]
    if ports:
        parts.append(f" ports [{', '.join(ports)}]")
    addresses = _ipv4_addresses(networking, name) or []
    if addresses:
        parts.append(f" ip {addresses[0].with_prefixlen}")
    if info.stp is not None:
        parts.append(f" stp {'true' if info.stp else 'false'}")
    return ",".join(parts) or " what it should hold"


def _gateway(networking: Any, bridge: str, address: Any) -> Optional[str]:
    if networking.routes is None:
        return None
    for route in networking.routes:
        if route.dst == "default" and route.family == "ipv4" and route.dev == bridge and route.gateway:
            try:
                gateway = ipaddress.ip_address(route.gateway)
            except ValueError:
                return None
            network = address.network
            if gateway in network and gateway not in (network.network_address, network.broadcast_address):
                return str(gateway)
    return None


def _vms(reader: _Reader, host: HostImport, networks: Set[str]) -> None:
    """Each domain: a profile VM (`import: true`) when its persistent definition was captured
    (domxml/, layout 4), else its NICs as a comment (older captures hold no memory, vCPUs or disks)."""
    got = reader.read(DOMAINS.path())
    if got is None:
        return
    domains = reader.parse(VirshList(), got)
    for domain in sorted(domains or (), key=lambda d: d.name):
        name = domain.name
        if not valid_name(name):
            host.skipped.append(f"VM {name}: not a valid profile name")
            continue
        vm = Entry(name)
        got = reader.read(DOMXML.path(name))
        definition = None if got is None else reader.parse(DomDumpXml(), got)
        if definition is not None and definition.name != name:
            host.skipped.append(f"{got[1]}: holds domain {definition.name}, expected {name} (file skipped)")
            definition = None
        got = reader.read(DOMIFLIST.path(name))
        nics = None if got is None else reader.parse(DomIfList(), got)
        if nics is None and definition is not None:
            nics = definition.interfaces    # the audit reads domiflist/; without it, the definition's NICs
        if definition is not None:
            _vm_definition(vm, definition, host)
        else:
            vm.comment_out = True
        if nics is None:
            vm.notes.append("its NICs are not in the capture")
            host.vms.append(vm)
            continue
        items = []
        for nic in nics:
            if nic.type == "network" and nic.source in networks:
                items.append([("network", nic.source), ("mac", Quoted(nic.mac.lower()))])
            else:
                kind = f"{nic.type} {nic.source or '-'}"
                host.unmodelled.append(f"vm {name}: NIC {nic.mac} on {kind} (a profile VM joins libvirt networks)")
                vm.notes.append(f"not modelled: NIC {nic.mac} on {kind}")
        vm.set("networks", Seq(items))
        host.vms.append(vm)


_GRAPHICS = ("vnc", "spice")


def _vm_definition(vm: Entry, definition: Any, host: HostImport) -> None:
    """memory, vcpus, disk and graphics of a defined domain; `import: true` (it boots its disk as is:
    the runbook never reinstalls an existing VM). Without a usable disk the VM stays a comment."""
    what = f"vm {vm.name}"
    memory = definition.memory_kib // 1024
    if definition.memory_kib % 1024 or memory < 1:
        host.unmodelled.append(f"{what}: memory {definition.memory_kib} KiB (the profile counts whole MiB)")
        vm.notes.append(f"not modelled: memory {definition.memory_kib} KiB")
    if definition.vcpus_current is not None and definition.vcpus_current != definition.vcpus:
        host.unmodelled.append(f"{what}: {definition.vcpus_current} of {definition.vcpus} vCPUs online")
        vm.notes.append(f"not modelled: vcpu current={definition.vcpus_current}")
    disks = [d for d in definition.disks if d.device == "disk" and d.source and _DISK_PATH.fullmatch(d.source)]
    for disk in definition.disks:
        if not disks or disk is not disks[0]:
            shown = f"{disk.device} {disk.source or '(' + disk.type + ')'}"
            host.unmodelled.append(f"{what}: {shown} (a profile VM has one disk)")
            vm.notes.append(f"not modelled: {shown}")
    graphics = [g for g in definition.graphics if g in _GRAPHICS]
    for kind in definition.graphics:
        if not graphics or kind != graphics[0]:
            host.unmodelled.append(f"{what}: graphics {kind}")
            vm.notes.append(f"not modelled: graphics {kind}")
    if definition.os_id:
        vm.notes.append(f"libosinfo: {definition.os_id} (os_variant is used only to install it: not imported)")
    if memory < 1 or not disks:
        vm.notes.append("no disk file or device to boot as is: add disk and location (install media), then "
                        "uncomment")
        host.unmodelled.append(f"{what}: no disk file or device (kept as a comment)")
        vm.comment_out = True
    vm.set("memory", memory, "MiB")
    vm.set("vcpus", definition.vcpus)
    if disks:
        vm.set("disk", Flow([("path", disks[0].source)]))
    vm.set("import", True)
    if graphics:
        vm.set("graphics", graphics[0])


# A profile disk path (schema PATH): absolute, no commas (virt-install splits sub-options on them).
_DISK_PATH = re.compile(r"/[^,\x00-\x1f\x7f]{0,1023}")


# --- links between hosts --------------------------------------------------------------------------


def guess_links(hosts: Sequence[HostImport]) -> List[Tuple[str, str, str]]:
    """Trunk ports of two hosts that look like one cable: the same NIC name on libvirt bridges of
    exactly two hosts, whose networks agree on the subnet (or one is unnumbered) and do not both
    serve DHCP. A guess: the output marks it so. Linear: grouped by NIC name."""
    by_port: Dict[str, List[HostImport]] = {}
    for host in hosts:
        for port in host.trunks:
            by_port.setdefault(port, []).append(host)
    links = []
    for port, group in sorted(by_port.items()):
        if len(group) != 2:
            continue
        (a, b) = group
        _, subnet_a, dhcp_a = a.trunks[port]
        _, subnet_b, dhcp_b = b.trunks[port]
        if dhcp_a and dhcp_b:
            continue
        if subnet_a is not None and subnet_b is not None and subnet_a != subnet_b:
            continue
        links.append((f"{a.name}:{port}", f"{b.name}:{port}",
                      f"{port} is a trunk port of network {a.trunks[port][0]} on {a.name} and of "
                      f"{b.trunks[port][0]} on {b.name}, and no other host has one"))
    return links


def unpin_shared_macs(hosts: Sequence[HostImport]) -> None:
    """A MAC that NICs of two imported VMs share (clones, or hosts apart that never meet) is not
    pinned on either: validation refuses one MAC twice on a segment. Said in a comment."""
    users: Dict[str, List[Tuple[HostImport, Entry]]] = {}
    for host in hosts:
        for vm in host.vms:
            for item in (vm.get("networks") or Seq([])).items:
                mac = dict(item).get("mac")
                if mac:
                    users.setdefault(mac, []).append((host, vm))
    for mac, holders in users.items():
        if len(holders) < 2:
            continue
        names = ", ".join(sorted({f"{h.name}/vm {v.name}" for h, v in holders}))
        for host, vm in holders:
            for item in vm.get("networks").items:
                if dict(item).get("mac") == mac:
                    item[:] = [(k, v) for k, v in item if k != "mac"]
            note = f"not pinned: MAC {mac} is used by {names} (a profile pins a MAC once per segment)"
            if note not in vm.notes:
                vm.notes.append(note)
                host.unmodelled.append(f"vm {vm.name}: {note}")


# --- entry points ---------------------------------------------------------------------------------


def import_captures(directory: Union[str, Path], hosts: Sequence[str] = (), pm: Any = None) -> Imported:
    """Read DIR/<host>/ for every host directory (or those named); ImportError_ when none is usable."""
    from .plugins import get_plugin_manager

    pm = pm or get_plugin_manager()
    modes = _modes(pm)
    root = Path(directory)
    if not root.is_dir():
        raise ImportError_(f"{root}: no such capture directory")
    result = Imported(hosts=[], source=str(root))
    if hosts:
        names = list(dict.fromkeys(hosts))
    else:
        if (root / NET_LIST.path()).exists():
            raise ImportError_(f"{root}: holds one host's files itself; captures are DIR/<host>/ (capture.sh "
                               f"DIR writes them so): give its parent directory")
        names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    for name in names:
        where = root / name
        if not valid_host(name):
            result.skipped.append(f"{where}: {name} is not a valid host name")
            continue
        if not where.is_dir():
            result.skipped.append(f"{where}: no such host directory")
            continue
        if not (where / NET_LIST.path()).exists() and not hosts:
            result.skipped.append(f"{where}: no {NET_LIST.path()}: not a host capture")
            continue
        host = HostImport(name=name, origin=str(where))
        try:
            source = _Captures(where, root)
        except AuditError as error:
            result.skipped.append(str(error))
            continue
        present = _present(where)
        if _observe_host(source, host, pm, modes, present):
            result.hosts.append(host)
        else:
            result.skipped += [f"{host.name}: {s}" for s in host.skipped]
            result.skipped.append(f"{where}: nothing usable (host not imported)")
    if not result.hosts:
        raise ImportError_(f"{root}: nothing usable found" + "".join(f"\n  skipped {safe(s)}" for s in result.skipped))
    result.links = guess_links(result.hosts)
    unpin_shared_macs(result.hosts)
    return result


def _present(where: Path) -> Set[str]:
    """The capture files of a host directory (top level, by name), for the target guess."""
    try:
        return {entry.name for entry in os.scandir(where) if entry.is_file(follow_symlinks=False)}
    except OSError:
        return set()


def live_table(pm: Any) -> List[Any]:
    """Every capture file any target records, with libvirt's: what a live import runs."""
    table = [NET_LIST, NET_XML]
    seen = {NET_LIST.name, NET_XML.name}
    for target in _targets(pm).values():
        for entry in target.capture_files():
            if entry.name not in seen:
                seen.add(entry.name)
                table.append(entry)
    return table + [sysctl_file([]), DOMAINS, DOMIFLIST, DOMXML, OS_RELEASE]


def import_live(host: Optional[str] = None, pm: Any = None, uri: Optional[str] = None,
                runner: Runner = run_command, timeout: float = TIMEOUT) -> Imported:
    """This machine, by running the commands capture.sh runs; ImportError_ when nothing is usable."""
    from .plugins import get_plugin_manager

    pm = pm or get_plugin_manager()
    name = host or socket.gethostname().split(".")[0]
    if not valid_host(name):
        raise ImportError_(f"this machine's name {safe(name)!s} is not a valid host name: give one with --host")
    table = live_table(pm)
    source = _Live(table, uri, runner, timeout)
    result = Imported(hosts=[], source="live")
    imported = HostImport(name=name, origin="live")
    try:
        source.require(NET_LIST.path())
    except AuditError as error:
        raise ImportError_(str(error)) from None
    present = {entry.name for entry in table if not entry.each and source.read(entry.path()) is not None}
    if not _observe_host(source, imported, pm, _modes(pm), present):
        raise ImportError_("nothing usable found on this machine" +
                           "".join(f"\n  skipped {safe(s)}" for s in imported.skipped))
    result.hosts.append(imported)
    result.live = source
    return result


# --- the profile text --------------------------------------------------------------------------------


class Quoted(str):
    """A string always written double-quoted (MACs, as the shipped profiles write them)."""


@dataclass
class Flow:
    """A flow mapping: {key: value, ...} (a VM's disk)."""

    items: List[Tuple[str, Any]]


@dataclass
class Seq:
    """A block sequence of flow mappings: [(key, value), ...] per item."""

    items: List[List[Tuple[str, Any]]]


@dataclass
class Items:
    """A block sequence of block mappings (a network's `ips:`), one Entry per item."""

    items: List[Entry]


def _resolves_to_str(text: str) -> bool:
    import yaml

    return yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str"


_PLAIN = re.compile(r"[A-Za-z0-9_/](?:[A-Za-z0-9_./:-]*[A-Za-z0-9_./-])?")


def scalar(value: Any) -> str:
    """One YAML scalar that reads back as exactly `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if not isinstance(value, Quoted) and _PLAIN.fullmatch(text) and _resolves_to_str(text):
        return text
    return json.dumps(text, ensure_ascii=True)   # a JSON string is a YAML double-quoted scalar


def _flow(items: List[Tuple[str, Any]]) -> str:
    return "{" + ", ".join(f"{scalar(k)}: {_flow_value(v)}" for k, v in items) + "}"


def _flow_value(value: Any) -> str:
    if isinstance(value, Flow):
        return _flow(value.items)
    if isinstance(value, list):
        return "[" + ", ".join(_flow_value(v) for v in value) + "]"
    return scalar(value)


def _comment(text: str, indent: str) -> str:
    return f"{indent}# {safe(text)}"


def _entry_lines(entry: Entry, indent: str, comment_out: bool = False) -> List[str]:
    lines = [_comment(n, indent) for n in entry.notes]
    pre = "# " if comment_out else ""
    for key, value, trailing in entry.keys:
        tail = f"   # {safe(trailing)}" if trailing else ""
        if isinstance(value, Entry):
            lines.append(f"{indent}{pre}{scalar(key)}:{tail}")
            lines += _entry_lines(value, indent + "  ", comment_out)
        elif isinstance(value, Seq):
            if not value.items:
                lines.append(f"{indent}{pre}{scalar(key)}: []{tail}")
                continue
            if key == "networks":   # a VM's NICs: one flow list, as the shipped profiles write them
                lines.append(f"{indent}{pre}{scalar(key)}: [{', '.join(_flow(i) for i in value.items)}]{tail}")
                continue
            lines.append(f"{indent}{pre}{scalar(key)}:{tail}")
            lines += [f"{indent}{pre}  - {_flow(item)}" for item in value.items]
        elif isinstance(value, Items):
            lines.append(f"{indent}{pre}{scalar(key)}:{tail}")
            for item in value.items:
                body = _entry_lines(item, indent + "    ", comment_out)
                lines += [body[0].replace(f"{indent}    {pre}", f"{indent}{pre}  - ", 1)] + body[1:]
        elif isinstance(value, Flow):
            lines.append(f"{indent}{pre}{scalar(key)}: {_flow(value.items)}{tail}")
        elif isinstance(value, list):
            lines.append(f"{indent}{pre}{scalar(key)}: [{', '.join(scalar(v) for v in value)}]{tail}")
        else:
            lines.append(f"{indent}{pre}{scalar(key)}: {scalar(value)}{tail}")
    return lines


def _host_lines(host: HostImport, indent: str, shorthand: bool) -> List[str]:
    lines = []
    if shorthand:
        lines.append(f"host: {scalar(host.name)}")
    lines.append(f"{indent}target: {scalar(host.target)}   # {safe(host.target_why)}")
    for key, entries in (("bridges", host.bridges), ("networks", host.networks)):
        if not entries:
            continue
        lines.append(f"{indent}{key}:")
        for entry in entries:
            lines.append(f"{indent}  {scalar(entry.name)}:")
            lines += _entry_lines(entry, indent + "    ")
    imported = [vm for vm in host.vms if not vm.comment_out]
    if imported:
        lines.append(f"{indent}vms:")
        for vm in imported:
            lines.append(f"{indent}  {scalar(vm.name)}:")
            lines += _entry_lines(vm, indent + "    ")
    commented = [vm for vm in host.vms if vm.comment_out]
    if commented:
        lines.append(f"{indent}# VMs not imported (their definition is not in the capture: capture.sh of layout 4 "
                     "writes domxml/):")
        lines.append(f"{indent}# add memory, vcpus, disk and location (or import: true), then uncomment:")
        lines.append(f"{indent}# {'vms:' if not imported else 'vms (continued):'}")
        for vm in commented:
            lines.append(f"{indent}#   {scalar(vm.name)}:")
            lines += _entry_lines(vm, indent + "#     ")
    for note in host.notes:
        lines.append(_comment(note, indent))
    return lines


def render_profile(imported: Imported) -> str:
    """The profile text: deterministic, ordered like the shipped examples, commented."""
    origin = "this machine (live)" if imported.source == "live" else f"the captures in {imported.source}"
    lines = [f"# Imported by `vnetgen import` from {safe(origin)}: review it before building.",
             "# uuid, mac and bridge names are pinned to what libvirt runs; what vnetgen does not model is",
             "# kept as a comment (\"not modelled:\")."]
    lines.append("vnetgen: 1")
    if len(imported.hosts) == 1 and not imported.links:
        lines += _host_lines(imported.hosts[0], "", shorthand=True)
    else:
        lines.append("hosts:")
        for host in imported.hosts:
            lines.append(f"  {scalar(host.name)}:")
            lines += _host_lines(host, "    ", shorthand=False)
    if imported.links:
        lines.append("links:")
        for a, b, why in imported.links:
            lines.append(f"  # guessed: {safe(why)}")
            lines.append(f"  - [{scalar(a)}, {scalar(b)}]")
    return "\n".join(lines) + "\n"


# --- checking the result ---------------------------------------------------------------------------


def self_check(text: str, imported: Imported, pm: Any) -> List[str]:
    """Load, validate and (for captures) audit the imported profile against what it came from:
    the validation warnings and the drift that remains, as stderr lines (none when the round trip holds)."""
    from .checks import Evaluation, kinds
    from .diagnostics import InvalidProfile
    from .observe import _observe, capture_table, read_capture
    from .plan import plan_profile
    from .profile import load_valid

    lines: List[str] = []
    with tempfile.TemporaryDirectory(prefix="vnetgen-import-") as scratch:
        path = os.path.join(scratch, "imported.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            profile, report = load_valid(path, pm)
        except InvalidProfile as error:
            return [f"the imported profile does not validate (a bug of vnetgen import): "
                    f"{safe(str(d).replace(path, 'PROFILE'))}" for d in error.report.sorted()]
        lines += [f"validation: {safe(str(d).replace(path, 'PROFILE'))}" for d in report.sorted()]
    registry = kinds(pm)
    for plan in plan_profile(profile, pm, runbook=False):   # an audit's plans
        try:
            if imported.live is not None:
                # the same answers the import read (commands it did not run are run now)
                imported.live.table = capture_table(plan)
                observed = _observe(imported.live, plan)
            else:
                observed = read_capture(imported.source, plan)
            audit = Evaluation(plan, observed, registry).run()
        except (AuditError, FactError) as error:
            lines.append(f"{plan.name}: the audit cannot read the capture: {safe(str(error))}")
            continue
        for drift in audit.drift:
            lines.append(f"{plan.name}: the audit will still report {drift.severity} {drift.kind} {drift.object}: "
                         f"expected {safe(json.dumps(drift.expected))}, actual {safe(json.dumps(drift.actual))}")
    return lines
