"""A network's `ips:` — its IPv4 and IPv6 addresses (`<ip>`), each with its DHCP — read, checked and
written as libvirt's XML. The IPv4 entry becomes the network's `ip`/`dhcp` (everything that knew the
single `ip:` keeps working unchanged); the IPv6 entry is `Network.ip6`."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from . import model as m

# libvirt announces an IPv6 <ip>'s prefix by router advertisement (dnsmasq's enable-ra) and serves
# DHCPv6 ranges on it: SLAAC needs a /64, and dnsmasq refuses RA on other prefix lengths.
IPV6_PREFIX = 64


def load(net: m.Network, raw: Any) -> None:
    """Read `ips:` of a network's raw (schema-checked) mapping into `net`."""
    items = raw.get("ips")
    if not items:
        return
    for index, item in enumerate(items):
        if not hasattr(item, "get"):
            continue
        entry = m.IpEntry(mark=items.item_marks[index], marks=dict(item.value_marks), address=item.get("address"))
        dhcp = item.get("dhcp")
        if hasattr(dhcp, "get"):
            entry.dhcp = m.IpDhcp(mark=item.at("dhcp"), marks=dict(dhcp.value_marks),
                                  start=dhcp.get("start"), end=dhcp.get("end"))
            hosts = dhcp.get("hosts") or []
            for at, host in enumerate(hosts):
                entry.dhcp.hosts.append(m.IpHost(mark=hosts.item_marks[at], marks=dict(host.value_marks),
                                                 **{k: host.get(k) for k in ("ip", "mac", "id", "name")}))
        net.ips.append(entry)
    if "ip" in raw or "dhcp" in raw:   # refused by validate(): the addresses belong in one place
        return
    for entry in net.ips:
        if not _consistent(entry) or (entry.address.version == 6 and net.ip6 is not None) \
                or (entry.address.version == 4 and net.ip is not None):
            continue   # validate() says what is wrong
        if entry.address.version == 6:
            net.ip6 = entry
            continue
        net.ip, net.marks["ip"] = entry.address, entry.at("address")
        if entry.dhcp is not None:
            d = entry.dhcp
            net.marks["dhcp"] = d.mark
            net.dhcp = m.Dhcp(mark=d.mark, marks=dict(d.marks), start=d.start, end=d.end, hosts=[
                m.DhcpHost(mark=h.mark, marks=dict(h.marks), ip=h.ip, mac=h.mac, name=h.name) for h in d.hosts])


def _consistent(entry: m.IpEntry) -> bool:
    """Every address of the entry is of its own family (else comparing them would be meaningless)."""
    if entry.address is None or not hasattr(entry.address, "version"):
        return False
    family = entry.address.version
    dhcp = entry.dhcp
    values = [] if dhcp is None else [dhcp.start, dhcp.end] + [h.ip for h in dhcp.hosts]
    return all(getattr(v, "version", None) == family for v in values)


def validate(net: m.Network, mode: Any, report: Any) -> None:
    """Located errors (and the RA warning) for a network's `ips:`."""
    if not net.ips:
        return
    who = f"network {net.name}"
    for key in ("ip", "dhcp"):
        if key in net.marks and net.at(key) not in {e.at("address") for e in net.ips} | \
                {e.dhcp.mark for e in net.ips if e.dhcp is not None}:
            report.error(net.at(key), f"{who}: '{key}' and 'ips' together; give every address (and its "
                                      "DHCP) in 'ips'")
    seen: Dict[int, m.IpEntry] = {}
    for entry in net.ips:
        address = entry.address
        if address is None or not hasattr(address, "version"):
            continue
        family = f"IPv{address.version}"
        if address.version in seen:
            report.error(entry.at("address"), f"{who}: a second {family} address (first at line "
                                              f"{seen[address.version].at('address')[0]}); libvirt serves DHCP "
                                              f"on one <ip> per family, and vnetgen keeps one {family} address "
                                              "per network")
            continue
        seen[address.version] = entry
        if mode.ip == "forbidden":
            continue   # the IPv4 rules already refuse addresses on this mode
        _family_of_values(entry, who, report)
        if address.version == 6 and _consistent(entry):
            _check_ip6(net, entry, mode, who, report)


def _family_of_values(entry: m.IpEntry, who: str, report: Any) -> None:
    family = entry.address.version
    dhcp = entry.dhcp
    if dhcp is None:
        return
    for key in ("start", "end"):
        value = getattr(dhcp, key)
        if value is not None and value.version != family:
            report.error(dhcp.at(key), f"{who}: dhcp {key} {value} is IPv{value.version}, the address "
                                       f"{entry.address} IPv{family}")
    for host in dhcp.hosts:
        if host.ip is not None and host.ip.version != family:
            report.error(host.at("ip"), f"{who}: static host {host.ip} is IPv{host.ip.version}, the address "
                                        f"{entry.address} IPv{family}")
        if family == 6 and host.mac:
            report.error(host.at("mac"), f"{who}: an IPv6 static host goes by 'id' (the client's DUID) or "
                                         "'name'; libvirt refuses a MAC address there")
        if family == 4 and host.id:
            report.error(host.at("id"), f"{who}: 'id' (a DUID) is for IPv6 static hosts; an IPv4 one goes by "
                                        "'mac' or 'name'")
        if not (host.mac or host.id or host.name):
            report.error(host.mark, f"{who}: static host {host.ip} needs "
                                    + ("'id' or 'name'" if family == 6 else "'mac' or 'name'"))


def _check_ip6(net: m.Network, entry: m.IpEntry, mode: Any, who: str, report: Any) -> None:
    address = entry.address
    ip, subnet = address.ip, address.network
    mark = entry.at("address")
    if ip.is_link_local or ip.is_multicast or ip.is_loopback or ip.is_unspecified:
        kind = ("link-local" if ip.is_link_local else "multicast" if ip.is_multicast
                else "loopback" if ip.is_loopback else "unspecified")
        report.error(mark, f"{who}: {ip} is a {kind} address; give a global or unique-local (fd00::/8) one")
        return
    if subnet.prefixlen != IPV6_PREFIX:
        why = ("/128 is one address: no room for guests" if subnet.prefixlen == 128 else
               f"libvirt announces the prefix by router advertisement and serves DHCPv6 on it, and both "
               f"need a /64 (SLAAC builds guests' addresses from 64 bits; dnsmasq refuses RA on /{subnet.prefixlen})")
        report.error(mark, f"{who}: IPv6 prefix /{subnet.prefixlen}: {why}")
        return
    if mode.forwards_ipv4 and net.state == "active":
        report.warning(mark, f"{who}: IPv6 on a {net.mode} network makes this host an IPv6 router "
                             "(net.ipv6.conf.all.forwarding=1); a host that takes its own IPv6 address or default "
                             "route by router advertisement ignores them once it forwards: set "
                             "net.ipv6.conf.UPLINK.accept_ra=2 on its uplink, or it loses its IPv6 default route")
    dhcp = entry.dhcp
    if dhcp is None:
        return
    start, end = dhcp.start, dhcp.end
    for key, value in (("start", start), ("end", end)):
        if value is not None and value not in subnet:
            report.error(dhcp.at(key), f"{who}: dhcp {key} {value} is outside {subnet}")
    if start is not None and end is not None and start in subnet and end in subnet:
        if start > end:
            report.error(dhcp.at("start"), f"{who}: dhcp start {start} is after end {end}")
        elif start <= ip <= end:
            report.error(dhcp.at("start"), f"{who}: dhcp range {start}-{end} contains the network's own "
                                           f"address {ip}")
    seen_ip: Dict[Any, m.IpHost] = {}
    seen_id: Dict[str, m.IpHost] = {}
    for host in dhcp.hosts:
        if host.ip is None:
            continue
        if host.ip not in subnet:
            report.error(host.at("ip"), f"{who}: static host {host.ip} is outside {subnet}")
        elif host.ip == ip:
            report.error(host.at("ip"), f"{who}: static host {host.ip} is the network's own address")
        if host.ip in seen_ip:
            report.error(host.at("ip"), f"{who}: static host ip {host.ip} used twice "
                                        f"(first at line {seen_ip[host.ip].mark[0]})")
        seen_ip.setdefault(host.ip, host)
        key = (host.id or "").lower()
        if key and key in seen_id:
            report.error(host.at("id"), f"{who}: DUID {host.id} used twice (first at line {seen_id[key].mark[0]})")
        if key:
            seen_id.setdefault(key, host)


def validate_host(host: m.Host, report: Any) -> None:
    """libvirt refuses to start a network whose IPv6 subnet collides with another network's."""
    nets = [n for n in host.networks.values() if n.ip6 is not None and n.state != "absent"]
    for index, net in enumerate(nets):
        for other in nets[:index]:
            if net.ip6.address.network.overlaps(other.ip6.address.network):
                report.error(net.ip6.at("address"), f"network {net.name}: subnet {net.ip6.address.network} "
                                                    f"overlaps network {other.name}'s {other.ip6.address.network} "
                                                    f"(line {other.ip6.at('address')[0]})")


def add_xml(root: Any, net: m.Network) -> None:
    """The IPv6 `<ip family='ipv6'>` after the IPv4 one, as libvirt prints it (host: id, name, ip)."""
    from lxml import etree

    entry = net.ip6
    if entry is None:
        return
    ip = etree.SubElement(root, "ip", family="ipv6", address=str(entry.address.ip),
                          prefix=str(entry.address.network.prefixlen))
    if entry.dhcp is not None:
        from .xml import add_dhcp

        add_dhcp(ip, entry.dhcp, "id")


def words(net: m.Network) -> Optional[str]:
    """What REVIEW.md and `vnetgen diff` say of the IPv6 address."""
    entry = net.ip6
    if entry is None:
        return None
    text = f"IPv6 {entry.address.with_prefixlen} (router advertisements by libvirt's dnsmasq)"
    if entry.dhcp is not None:
        text += f", DHCPv6 {entry.dhcp.start}-{entry.dhcp.end}"
        if entry.dhcp.hosts:
            text += f" with {len(entry.dhcp.hosts)} static host" + ("s" if len(entry.dhcp.hosts) > 1 else "")
    return text


def expected(net: m.Network) -> Optional[Dict[str, Any]]:
    """The IPv6 `<ip>` as the audit compares it (static hosts by name and ip: net-dumpxml's parser keeps
    no DUID)."""
    entry = net.ip6
    if entry is None:
        return None
    dhcp = entry.dhcp
    return {"address": entry.address.with_prefixlen,
            "range": f"{dhcp.start}-{dhcp.end}" if dhcp else None,
            "hosts": sorted(f"{h.name or ''}|{h.ip}" for h in dhcp.hosts) if dhcp else []}


def observed(definition: Any, _: Any) -> Optional[Dict[str, Any]]:
    found = [ip for ip in definition.ips if ip.family == "ipv6"]
    if not found:
        return None
    ip = found[0]
    return {"address": ip.address.with_prefixlen if len(found) == 1 else [str(i.address) for i in found],
            "range": "-".join(str(a) for a in ip.dhcp_ranges[0]) if len(ip.dhcp_ranges) == 1 else
            ([f"{s}-{e}" for s, e in ip.dhcp_ranges] or None),
            "hosts": sorted(f"{h.name or ''}|{h.ip}" for h in ip.dhcp_hosts)}


def host_line(host: Any) -> str:
    """How libvirt prints an IPv6 static host (attributes id, name, ip): also the XML `virsh net-update
    … ip-dhcp-host` takes to add or delete it."""
    parts = [f"id='{host.id}'" if host.id else "", f"name='{host.name}'" if host.name else "", f"ip='{host.ip}'"]
    return "<host " + " ".join(p for p in parts if p) + "/>"


def hosts(net: m.Network) -> List[str]:
    """The network's DHCPv6 static hosts, each as `host_line` writes it, in profile order."""
    entry = net.ip6
    return [host_line(h) for h in entry.dhcp.hosts] if entry is not None and entry.dhcp is not None else []


def named_first(net: m.Network) -> int:
    """How many DHCPv6 hosts libvirt prints as `<host name=` (no DUID): the IPv4 leases' count of that
    text in net-dumpxml (checks.py) adds them, so that one count holds for both families."""
    entry = net.ip6
    return sum(1 for h in entry.dhcp.hosts if not h.id) if entry is not None and entry.dhcp is not None else 0


def parent_index(net: m.Network) -> int:
    """Which `<ip>` (0-based) of the network's XML is its IPv6 one, for `virsh net-update --parent-index`:
    without it libvirt picks the first `<ip>` that serves DHCP, the IPv4 one, and refuses an IPv6 host
    there. vnetgen writes the IPv4 `<ip>` first (add_xml)."""
    return 1 if net.ip is not None else 0


def tokens(plan: Any, value: Dict[str, Any]) -> Any:
    address, _, prefix = value["address"].partition("/")
    found = [f"has:<ip family='ipv6' address='{address}' prefix='{prefix}'>"]
    if value["range"]:
        start, end = value["range"].split("-")
        found.append(f"has:<range start='{start}' end='{end}'/>")
    lines = hosts(plan.net)
    found += [f"has:{line}" for line in lines]
    if lines:
        # Hosts by DUID are counted here; by name only, with the IPv4 leases (checks.py), or here on a
        # network without an IPv4 address.
        found.append(f"count:{len(lines) - named_first(plan.net)}:<host id=")
        if plan.net.ip is None:
            found.append(f"count:{named_first(plan.net)}:<host name=")
    return tuple(found)


def field_words(value: Dict[str, Any]) -> str:
    return f"IPv6 {value['address']}" + (f", DHCPv6 {value['range']}" if value["range"] else "")


ROW = ("ipv6", "the network's IPv6 `<ip>`: address and prefix, DHCPv6 range and static hosts (by name and ip), "
       "when the profile gives one", expected, observed, tokens, field_words)
