"""Semantic checks of a loaded profile: names, address plan, bridges, fleet segments, warnings."""
from __future__ import annotations

import difflib
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Dict, Iterable, List, Optional, Tuple

from . import model as m
from . import netdns, netip6
from .diagnostics import Mark, Report
from .plugins import modes as plugin_modes
from .plugins import targets as plugin_targets
from .schema import MODE_KEYS


def validate(profile: m.Profile, report: Report, pm: Any) -> None:
    """Run every semantic rule, adding all problems to `report`."""
    known_modes = plugin_modes(pm)
    known_targets = plugin_targets(pm)
    default_targets(profile, pm)
    for host in profile.hosts.values():
        _check_host_name(host, report)
        target = known_targets.get(host.target or "")
        if target is None:
            report.error(host.at("target"), f"host {host.name}: unknown target '{host.target}'"
                                            f"{_suggest(host.target or '', known_targets)}; known: "
                                            f"{', '.join(sorted(known_targets)) or 'none'}")
        _check_host(host, known_modes, report)
        if target is not None:
            target.validate(host, report)
        pm.hook.vnetgen_validate_host(host=host, report=report)
        for net in host.networks.values():
            if net.mode in known_modes:
                pm.hook.vnetgen_validate_network(host=host, network=net, report=report)
    _check_fleet(profile, known_modes, report)


def default_targets(profile: m.Profile, pm: Any) -> None:
    """A host that names no target gets the default one (the only change validation makes to a profile)."""
    from .plugins import default_target

    fallback = default_target(pm)
    for host in profile.hosts.values():
        if host.target is None:
            host.target = fallback


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_host(host: m.Host, known_modes: Dict[str, Any], report: Report) -> None:
    for net in host.networks.values():
        mode = known_modes.get(net.mode)
        if mode is None:
            if net.mode:  # the schema already reported an unknown or missing mode
                report.error(net.at("mode"), f"network {net.name}: unknown mode '{net.mode}'")
            continue
        _check_network_addresses(net, mode, report)
        if not mode.libvirt_bridge:
            for key in ("stp", "delay", "mac", "ports", "mtu", "bandwidth"):
                if key in net.marks:
                    report.error(net.at(key), f"network {net.name}: '{key}' does not apply to mode "
                                              f"{net.mode} (libvirt does not own that bridge)")
        _check_mode_keys(net, mode, known_modes, report)
        _check_forward_dev(host, net, mode, report)
        _check_bandwidth(net, report)
        netdns.validate(net, mode, report)
        netip6.validate(net, mode, report)
    netip6.validate_host(host, report)
    _check_host_bridges(host, report)
    _check_identities(host, report)
    _check_bridge_names(host, known_modes, report)
    _check_enslaved_once(host, report)
    _check_overlaps(host, known_modes, report)
    _check_vms(host, report)


def _check_mode_keys(net: m.Network, mode: Any, known_modes: Dict[str, Any], report: Report) -> None:
    for key in MODE_KEYS:
        if key in net.marks and key not in mode.keys:
            takers = sorted(name for name, other in known_modes.items() if key in other.keys)
            report.error(net.at(key), f"network {net.name}: '{key}' does not apply to mode {net.mode} "
                                      f"(only to mode {', '.join(takers) or 'none'})")


def _check_forward_dev(host: m.Host, net: m.Network, mode: Any, report: Report) -> None:
    """<forward dev>: the host interface a nat/route network's traffic leaves by."""
    dev = net.dev
    if dev is None:
        return
    who = f"network {net.name}"
    if "dev" not in mode.keys:
        return  # _check_mode_keys said so
    if dev == LOOPBACK_IFNAME:
        report.error(net.at("dev"), f"{who}: dev lo is the host's loopback interface")
    elif dev == net.bridge:
        report.error(net.at("dev"), f"{who}: dev {dev} is the network's own bridge; name the uplink")
    elif dev in net.ports:
        report.error(net.at("dev"), f"{who}: dev {dev} is a port of the network's own bridge")
    else:
        for bridge in host.bridges.values():
            if dev in bridge.ports:
                report.error(net.at("dev"), f"{who}: dev {dev} is a port of host bridge {bridge.name}; the "
                                            f"traffic leaves by the bridge: use dev {bridge.name}")


def _check_bandwidth(net: m.Network, report: Report) -> None:
    for direction in ("inbound", "outbound"):
        rate = getattr(net.bandwidth, direction, None) if net.bandwidth else None
        if rate is not None and rate.peak is not None and rate.average is not None and rate.peak < rate.average:
            report.error(rate.at("peak"), f"network {net.name}: bandwidth {direction} peak {rate.peak} is below "
                                          f"its average {rate.average} (kB/s)")


def _check_host_name(host: m.Host, report: Report) -> None:
    """A host is a top-level directory of the bundle: it may not take the name of a file beside it
    (compared without case, for case-insensitive file systems)."""
    from .bundle import TOP_LEVEL

    for reserved in TOP_LEVEL:
        if host.name.lower() == reserved.lower():
            report.error(host.mark, f"host {host.name}: the name is reserved for the bundle's own {reserved} "
                                    f"(reserved: {', '.join(TOP_LEVEL)})")


LOOPBACK_IFNAME = "lo"


def _check_mac(report: Report, mark: Mark, who: str, mac: Optional[str]) -> None:
    """A unicast MAC: libvirt, the kernel and dnsmasq refuse multicast (and so broadcast) and all-zero ones."""
    if mac is None:
        return
    try:
        first = int(mac.split(":")[0], 16)
    except ValueError:
        return  # the schema reported it
    if mac.lower() == "ff:ff:ff:ff:ff:ff":
        report.error(mark, f"{who}: mac {mac} is the broadcast address")
    elif first & 1:
        report.error(mark, f"{who}: mac {mac} is a multicast address (the first byte is odd); use a unicast "
                           "one, e.g. 52:54:00:xx:xx:xx")
    elif mac.replace(":", "").strip("0") == "":
        report.error(mark, f"{who}: mac {mac} is all zeros")


def _check_subnet_kind(report: Report, mark: Mark, who: str, address: Any) -> bool:
    """False (and an error) for an address plan no host can use: /0, loopback, multicast, unspecified."""
    problem = None
    if address.network.prefixlen == 0:
        problem = "/0 covers every address; give the subnet's real prefix"
    elif address.ip.is_loopback or address.network.overlaps(_LOOPBACK):
        problem = f"{address.network} is (or covers) loopback 127.0.0.0/8"
    elif address.ip.is_multicast or address.network.overlaps(_MULTICAST):
        problem = f"{address.network} is (or covers) multicast 224.0.0.0/4"
    elif address.ip.is_unspecified or address.ip == _BROADCAST:
        problem = f"{address.ip} is not a host address"
    if problem:
        report.error(mark, f"{who}: {problem}")
    return problem is None


_LOOPBACK = IPv4Network("127.0.0.0/8")
_MULTICAST = IPv4Network("224.0.0.0/4")
_BROADCAST = IPv4Address("255.255.255.255")


def _check_identities(host: m.Host, report: Report) -> None:
    """Pinned UUIDs unique per host, MACs unicast, no interface called lo, usable subnets."""
    uuids: Dict[str, m.Network] = {}
    for net in host.networks.values():
        if net.uuid is not None:
            key = net.uuid.lower().replace("-", "")
            if key in uuids:
                first = uuids[key]
                report.error(net.at("uuid"), f"network {net.name}: uuid {net.uuid} is also network {first.name}'s "
                                             f"(line {first.at('uuid')[0]}); libvirt refuses a second network "
                                             "with one UUID")
            uuids.setdefault(key, net)
        _check_mac(report, net.at("mac"), f"network {net.name}", net.mac)
        if net.bridge == LOOPBACK_IFNAME:
            report.error(net.at("bridge"), f"network {net.name}: bridge 'lo' is the host's loopback interface")
        if net.ip is not None:
            _check_subnet_kind(report, net.at("ip"), f"network {net.name} ip", net.ip)
        for lease in net.dhcp.hosts if net.dhcp else ():
            _check_mac(report, lease.at("mac"), f"network {net.name} static lease", lease.mac)
    for nic in host.nics.values():
        if nic.name == LOOPBACK_IFNAME:
            report.error(nic.mark, "NIC lo is the host's loopback interface: vnetgen would replace its "
                                   "configuration (ifcfg-lo); leave it out")
        _check_mac(report, nic.at("hwaddr"), f"NIC {nic.name} hwaddr", nic.hwaddr)
        if nic.ip is not None:
            _check_subnet_kind(report, nic.at("ip"), f"NIC {nic.name} ip", nic.ip)
    for bridge in host.bridges.values():
        if bridge.name == LOOPBACK_IFNAME:
            report.error(bridge.mark, "bridge lo: that is the host's loopback interface")
        for index, port in enumerate(bridge.ports):
            if port == LOOPBACK_IFNAME:
                report.error(bridge.at(f"ports[{index}]"), f"bridge {bridge.name}: port lo is the host's loopback "
                                                           "interface")
        if bridge.ip is not None:
            _check_subnet_kind(report, bridge.at("ip"), f"bridge {bridge.name} ip", bridge.ip)
    for net in host.networks.values():
        for index, port in enumerate(net.ports):
            if port == LOOPBACK_IFNAME:
                report.error(net.at(f"ports[{index}]"), f"network {net.name}: port lo is the host's loopback "
                                                        "interface")
    for vm in host.vms.values():
        for nic in vm.networks:
            _check_mac(report, nic.at("mac"), f"vm {vm.name}", nic.mac)


def _check_gateway(report: Report, mark: Mark, what: str, address: IPv4Address, subnet: IPv4Network) -> None:
    if address not in subnet:
        report.error(mark, f"{what}: {address} is outside {subnet}")
    elif subnet.prefixlen < 31 and address in (subnet.network_address, subnet.broadcast_address):
        kind = "network" if address == subnet.network_address else "broadcast"
        report.error(mark, f"{what}: {address} is the {kind} address of {subnet}")


def _check_network_addresses(net: m.Network, mode: Any, report: Report) -> None:
    who = f"network {net.name}"
    if net.ip is None:
        if mode.ip == "required" and net.state != "absent" and net.ip6 is None:
            report.error(net.mark, f"{who}: mode {net.mode} needs 'ip' (libvirt refuses it without one)")
        if net.dhcp is not None:
            report.error(net.at("dhcp"), f"{who}: 'dhcp' needs 'ip' on the network")
        return
    if mode.ip == "forbidden":
        report.error(net.at("ip"), f"{who}: mode {net.mode} takes no 'ip' (the host bridge carries the "
                                   "addresses; libvirt refuses <ip> here)")
        return
    subnet = net.ip.network
    if subnet.prefixlen > 30:
        report.error(net.at("ip"), f"{who}: /{subnet.prefixlen} leaves no room for guests")
        return
    _check_gateway(report, net.at("ip"), f"{who} ip", net.ip.ip, subnet)
    dhcp = net.dhcp
    if dhcp is None:
        return
    start, end = dhcp.start, dhcp.end
    if start is not None and end is not None:
        for key, value in (("start", start), ("end", end)):
            _check_gateway(report, dhcp.at(key), f"{who} dhcp {key}", value, subnet)
        if start > end:
            report.error(dhcp.at("start"), f"{who}: dhcp start {start} is after end {end}")
        elif start <= net.ip.ip <= end:
            report.error(dhcp.at("start"), f"{who}: dhcp range {start}-{end} contains the network's own "
                                           f"address {net.ip.ip}")
    seen_mac: Dict[str, m.DhcpHost] = {}
    seen_ip: Dict[IPv4Address, m.DhcpHost] = {}
    for lease in dhcp.hosts:
        if lease.ip is None:
            continue
        _check_gateway(report, lease.at("ip"), f"{who} static lease", lease.ip, subnet)
        if lease.ip == net.ip.ip:
            report.error(lease.at("ip"), f"{who}: static lease {lease.ip} is the network's own address")
        if lease.mac is None and lease.name is None:
            report.error(lease.mark, f"{who}: a static lease needs 'mac' or 'name'")
        if lease.ip in seen_ip:
            report.error(lease.at("ip"), f"{who}: static lease ip {lease.ip} used twice "
                                         f"(first at line {seen_ip[lease.ip].mark[0]})")
        seen_ip.setdefault(lease.ip, lease)
        if lease.mac is not None:
            key = lease.mac.lower()
            if key in seen_mac:
                report.error(lease.at("mac"), f"{who}: static lease mac {lease.mac} used twice "
                                              f"(first at line {seen_mac[key].mark[0]})")
            seen_mac.setdefault(key, lease)
        if start is not None and end is not None and start <= lease.ip <= end:
            report.warning(lease.at("ip"), f"{who}: static lease {lease.ip} lies inside the dhcp range "
                                           f"{start}-{end}; dnsmasq may hand it out only to this MAC, but "
                                           "keeping leases outside the range avoids surprises")


def _check_host_bridges(host: m.Host, report: Report) -> None:
    for bridge in host.bridges.values():
        who = f"bridge {bridge.name}"
        if bridge.ip is not None:
            subnet = bridge.ip.network
            _check_gateway(report, bridge.at("ip"), f"{who} ip", bridge.ip.ip, subnet)
            if bridge.gateway is not None:
                _check_gateway(report, bridge.at("gateway"), f"{who} gateway", bridge.gateway, subnet)
                if bridge.gateway == bridge.ip.ip:
                    report.error(bridge.at("gateway"), f"{who}: gateway is the bridge's own address")
        elif bridge.gateway is not None:
            report.error(bridge.at("gateway"), f"{who}: 'gateway' needs 'ip'")
        if bridge.external and any(k in bridge.marks for k in ("ports", "ip", "gateway", "dns")):
            report.error(bridge.mark, f"{who}: an external bridge is not managed by vnetgen; "
                                      "give it no ports or addresses")
        if not bridge.stp and len(bridge.ports) >= 2:
            _warn_stp_off(report, bridge.at("stp"), who, len(bridge.ports))
        if bridge.stp and bridge.delay is not None and bridge.delay < 2:
            report.error(bridge.at("delay"), f"{who}: with stp on the kernel refuses a forward delay "
                                             "below 2 seconds")


def _warn_stp_off(report: Report, mark: Mark, who: str, ports: int) -> None:
    report.warning(mark, f"{who}: stp is off with {ports} physical ports: a loop between them would flood the LAN")


def _check_bridge_names(host: m.Host, known_modes: Dict[str, Any], report: Report) -> None:
    owners: Dict[str, m.Network] = {}
    for net in host.networks.values():
        mode = known_modes.get(net.mode)
        if mode is None or net.bridge is None or net.state == "absent":
            continue
        if net.bridge in owners:
            first = owners[net.bridge]
            report.error(net.at("bridge"), f"network {net.name}: bridge {net.bridge} is already used by "
                                           f"network {first.name} (line {first.mark[0]})")
            continue
        owners[net.bridge] = net
        if mode.libvirt_bridge and net.bridge in host.bridges:
            report.error(net.at("bridge"), f"network {net.name}: {net.bridge} is a host bridge, but mode "
                                           f"{net.mode} makes libvirt create its own bridge")
        if mode.libvirt_bridge and net.bridge in host.nics:
            report.error(net.at("bridge"), f"network {net.name}: {net.bridge} is a NIC of this host")
    for bridge in host.bridges:
        if bridge in host.nics:
            report.error(host.bridges[bridge].mark, f"bridge {bridge}: the name is also a NIC of this host")


def _check_enslaved_once(host: m.Host, report: Report) -> None:
    """A NIC joins at most one bridge, is no bridge itself, and carries no address of its own."""
    enslaved: Dict[str, str] = {}
    holders: List[Tuple[str, Any, List[str]]] = [(f"bridge {b.name}", b, b.ports) for b in host.bridges.values()]
    holders += [(f"network {n.name}", n, n.ports) for n in host.networks.values() if n.state != "absent"]
    bridge_names = set(host.bridges) | {n.bridge for n in host.networks.values() if n.bridge}
    for who, obj, ports in holders:
        for index, port in enumerate(ports):
            mark = obj.at(f"ports[{index}]")
            if port in bridge_names:
                report.error(mark, f"{who}: port {port} is a bridge, not a NIC")
            elif port in enslaved:
                report.error(mark, f"{who}: NIC {port} is already a port of {enslaved[port]}")
            else:
                enslaved[port] = who
                nic = host.nics.get(port)
                if nic is not None and nic.ip is not None:
                    report.error(nic.at("ip"), f"NIC {port} is a port of {who} and cannot keep an address "
                                               "of its own (give the address to the bridge)")


def _check_overlaps(host: m.Host, known_modes: Dict[str, Any], report: Report) -> None:
    """libvirt refuses to start a network whose subnet collides with a route the host has."""
    nets = [n for n in host.networks.values() if n.ip is not None and n.state != "absent"
            and getattr(known_modes.get(n.mode), "ip", "") != "forbidden"]
    seen: List[m.Network] = []
    for net in nets:
        for other in seen:
            if net.ip.network.overlaps(other.ip.network):
                report.error(net.at("ip"), f"network {net.name}: subnet {net.ip.network} overlaps network "
                                           f"{other.name}'s {other.ip.network} (line {other.at('ip')[0]})")
        seen.append(net)
        for owner, iface in _host_subnets(host):
            if net.ip.network.overlaps(iface.network):
                report.error(net.at("ip"), f"network {net.name}: subnet {net.ip.network} overlaps {owner}'s "
                                           f"{iface.network}; libvirt refuses to start a network whose "
                                           "subnet the host already routes")


def _host_subnets(host: m.Host) -> Iterable[Tuple[str, Any]]:
    for bridge in host.bridges.values():
        if bridge.ip is not None:
            yield f"host bridge {bridge.name}", bridge.ip
    for nic in host.nics.values():
        if nic.ip is not None:
            yield f"NIC {nic.name}", nic.ip


def _check_vms(host: m.Host, report: Report) -> None:
    macs: Dict[str, Mark] = {}
    for vm in host.vms.values():
        who = f"vm {vm.name}"
        if vm.location is None and not vm.import_:
            report.error(vm.mark, f"{who}: needs 'location' (install media) or 'import: true'")
        if vm.location is not None and vm.import_:
            report.error(vm.at("import"), f"{who}: 'location' and 'import: true' exclude each other")
        if vm.import_ and vm.disk_path is None:
            report.error(vm.mark, f"{who}: 'import: true' needs a disk path")
        if vm.graphics is not None and vm.graphics not in ("none", "vnc", "spice"):
            report.error(vm.at("graphics"), f"{who}: graphics must be none, vnc or spice")
        for nic in vm.networks:
            net = host.networks.get(nic.network)
            if net is None:
                report.error(nic.mark, f"{who}: no network '{nic.network}' on host {host.name}"
                                       f"{_suggest(nic.network, host.networks)}")
            elif net.state == "absent":
                report.error(nic.mark, f"{who}: network {nic.network} is marked absent")
            if nic.mac is not None:
                key = nic.mac.lower()
                if key in macs:
                    report.error(nic.at("mac"), f"{who}: mac {nic.mac} already used on this host "
                                                f"(line {macs[key][0]})")
                macs.setdefault(key, nic.at("mac"))


# --- fleet -----------------------------------------------------------------------------

class UnionFind:
    """Disjoint sets of hashable nodes (L2 segments); path compression keeps it linear overall."""

    def __init__(self) -> None:
        self.parent: Dict[Any, Any] = {}

    def find(self, node: Any) -> Any:
        root = node
        while self.parent.setdefault(root, root) != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def join(self, a: Any, b: Any) -> None:
        self.parent[self.find(a)] = self.find(b)


def segments(profile: m.Profile, known_modes: Dict[str, Any]) -> List[List[Tuple[str, str]]]:
    """L2 segments: lists of (host, bridge) joined by links, each bridge with its NIC ports."""
    from .plan import resolve_bridges

    joined = UnionFind()
    find = joined.find
    port_owner: Dict[Tuple[str, str], Tuple[str, str]] = {}
    for host in profile.hosts.values():
        bridge_of = resolve_bridges(host, known_modes)
        for bridge in host.bridges.values():
            find((host.name, bridge.name))
            for port in bridge.ports:
                port_owner[(host.name, port)] = (host.name, bridge.name)
        for net in host.networks.values():
            bridge = bridge_of.get(net.name)
            if bridge and net.state != "absent":
                find((host.name, bridge))
                for port in net.ports:
                    port_owner[(host.name, port)] = (host.name, bridge)
    for link in profile.links:
        a, b = (port_owner.get((end.host, end.nic)) for end in link.ends)
        if a and b:
            joined.join(a, b)
    groups: Dict[Tuple[str, str], List[Tuple[str, str]]] = {}
    for node in list(joined.parent):
        groups.setdefault(find(node), []).append(node)
    return [sorted(group) for _, group in sorted(groups.items())]


def _check_fleet(profile: m.Profile, known_modes: Dict[str, Any], report: Report) -> None:
    linked: Dict[Tuple[str, str], Mark] = {}
    for link in profile.links:
        ends = link.ends
        if (ends[0].host, ends[0].nic) == (ends[1].host, ends[1].nic):
            report.error(link.mark, "link joins a NIC to itself")
        for end, key in zip(ends, ("a", "b")):
            host = profile.hosts.get(end.host)
            if host is None:
                report.error(link.at(key), f"link: no host '{end.host}'{_suggest(end.host, profile.hosts)}")
                continue
            if (end.host, end.nic) in linked:
                report.error(link.at(key), f"link: {end.host}:{end.nic} is already cabled "
                                           f"(line {linked[(end.host, end.nic)][0]})")
            linked[(end.host, end.nic)] = link.at(key)
            if not _is_port(host, end.nic):
                report.error(link.at(key), f"link: {end.nic} is not a port of any bridge on {end.host}; "
                                           "add it to a bridge's or network's 'ports'")
    for host in profile.hosts.values():
        for net in host.networks.values():
            mode = known_modes.get(net.mode)
            if mode is None:
                continue
            if len(net.ports) >= 2 and net.stp is False:
                _warn_stp_off(report, net.at("stp"), f"network {net.name}", len(net.ports))
            if not mode.forwards_ipv4:
                continue
            for index, port in enumerate(net.ports):
                if (host.name, port) not in linked:
                    report.warning(net.at(f"ports[{index}]"),
                                   f"network {net.name}: port {port} on a {net.mode} bridge without a link "
                                   "explaining it: libvirt's bridge is private to the host unless a cable "
                                   "joins it to another host (add it to 'links')")
    on_bridge = networks_by_bridge(profile, known_modes)
    for group in segments(profile, known_modes):
        if len({h for h, _ in group}) > 1:
            _check_segment(group, [x for node in group for x in on_bridge.get(node, ())], report)


def _is_port(host: m.Host, nic: str) -> bool:
    return any(nic in b.ports for b in host.bridges.values()) or \
        any(nic in n.ports for n in host.networks.values())


def networks_by_bridge(profile: m.Profile, known_modes: Dict[str, Any]) -> Dict[Tuple[str, str], List[Tuple[m.Host, m.Network]]]:
    """(host, bridge) → the host's live networks on that bridge; computed once, linear in the profile."""
    from .plan import resolve_bridges

    found: Dict[Tuple[str, str], List[Tuple[m.Host, m.Network]]] = {}
    for host in profile.hosts.values():
        bridge_of = resolve_bridges(host, known_modes)
        for net in host.networks.values():
            bridge = bridge_of.get(net.name)
            if bridge and net.state != "absent":
                found.setdefault((host.name, bridge), []).append((host, net))
    return found


def _check_segment(group: List[Tuple[str, str]], nets: List[Tuple[m.Host, m.Network]], report: Report) -> None:
    where = ", ".join(f"{h}/{b}" for h, b in group)
    servers = [(h, n) for h, n in nets if n.dhcp is not None]
    for host, net in servers[1:]:
        first_host, first = servers[0]
        report.error(net.at("dhcp"), f"segment {where}: a second DHCP server ({host.name}/{net.name}); "
                                     f"{first_host.name}/{first.name} already serves it (line {first.at('dhcp')[0]})")
    subnets = [(h, n) for h, n in nets if n.ip is not None]
    for host, net in subnets[1:]:
        first_host, first = subnets[0]
        if net.ip.network != first.ip.network:
            report.error(net.at("ip"), f"segment {where}: {host.name}/{net.name} is on {net.ip.network} but "
                                       f"{first_host.name}/{first.name} is on {first.ip.network}")
        elif net.ip.ip == first.ip.ip:
            report.error(net.at("ip"), f"segment {where}: {host.name}/{net.name} and {first_host.name}/"
                                       f"{first.name} both take {net.ip.ip}")
    macs: Dict[str, str] = {}

    def claim(mac: Optional[str], mark: Mark, who: str) -> None:
        if mac is None:
            return
        key = mac.lower()
        if key in macs and macs[key] != who:
            report.error(mark, f"segment {where}: mac {mac} of {who} is also used by {macs[key]}")
        macs.setdefault(key, who)

    for host, net in nets:
        claim(net.mac, net.at("mac"), f"{host.name}/network {net.name}")
        for vm in host.vms.values():
            for nic in vm.networks:
                if nic.network == net.name:
                    claim(nic.mac, nic.at("mac"), f"{host.name}/vm {vm.name}")
